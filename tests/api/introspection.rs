//! POST /oauth/introspect (RFC 7662) and POST /oauth/revoke (RFC 7009).

use serde_json::Value;

use crate::helpers::GRANTABLE;
use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, Integration, READ_AND_PUSH, json_body, spawn_acme, spawn_app,
    spawn_app_with_integration, spawn_app_with_token, spawn_sibling,
};
use serde_json::json;

async fn introspection_describes_a_live_token(backend: Backend) {
    let (app, integration, token) = spawn_app_with_token(backend, "member", "reports:read").await;

    let response = app
        .token_call("/oauth/introspect", &integration, &token)
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = json_body(response).await;
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], integration.client_id());
    assert_eq!(body["sub"], integration.user.id.as_str());
    assert_eq!(body["scope"], "reports:read");
    assert_eq!(body["token_type"], "Bearer");
}

async fn introspection_says_only_inactive_for_garbage_or_other_tenants(backend: Backend) {
    let (app, acme) = spawn_app_with_integration(backend, "admin", "reports:read").await;
    let globex = app.integration("admin", "reports:read").await;
    let globex_token = app.token_for(&globex).await;

    for token in ["garbage", globex_token.as_str()] {
        let body = json_body(app.token_call("/oauth/introspect", &acme, token).await).await;
        assert_eq!(body, serde_json::json!({"active": false}));
    }
}

async fn introspection_needs_client_authentication(backend: Backend) {
    let (app, integration, token) = spawn_app_with_token(backend, "member", "reports:read").await;

    let anonymous = app.anonymous_token_call("/oauth/introspect", &token).await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(json_body(anonymous).await["error"], "invalid_client");
    let no_token = app
        .client
        .post(app.url("/oauth/introspect"))
        .basic_auth(integration.client_id(), Some(integration.secret()))
        .form(&[("token_type_hint", "access_token")])
        .sent()
        .await;
    assert_eq!(no_token.status(), 400);
}

async fn a_revoked_token_is_refused_everywhere_keyport_checks(backend: Backend) {
    let (app, integration, token) = spawn_app_with_token(backend, "member", READ_AND_PUSH).await;
    let other = app.token_for(&integration).await;
    app.push(&token, "orders", &serde_json::json!({"n": 1}), None)
        .await;

    let revoked = app.token_call("/oauth/revoke", &integration, &token).await;
    assert_eq!(revoked.status(), 200);

    assert_eq!(app.pull(&token, "orders", "").await.status(), 401);
    let body: Value = json_body(
        app.token_call("/oauth/introspect", &integration, &token)
            .await,
    )
    .await;
    assert_eq!(body["active"], false);
    assert_eq!(
        app.pull(&other, "orders", "").await.status(),
        200,
        "other tokens still work"
    );

    let restarted = spawn_sibling(&app, &[]).await;
    assert_eq!(
        restarted.pull(&token, "orders", "").await.status(),
        401,
        "the revocation is stored"
    );
}

async fn revoking_garbage_or_anothers_token_answers_200_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.tenant("Acme").await;
    let ana = app
        .user(&tenant, "ana@acme.io", "member", "reports:read")
        .await;
    let bob = app
        .user(&tenant, "bob@acme.io", "member", "reports:read")
        .await;
    let ana_key = app.key(&ana.email, None).await;
    let bob_key = app.key(&bob.email, None).await;
    let bob_token = app.token_for_key(&bob_key).await;
    let ana = Integration {
        tenant: tenant.clone(),
        user: ana,
        key: ana_key,
    };

    assert_eq!(
        app.token_call("/oauth/revoke", &ana, "garbage")
            .await
            .status(),
        200
    );
    assert_eq!(
        app.token_call("/oauth/revoke", &ana, &bob_token)
            .await
            .status(),
        200
    );

    assert_eq!(
        app.pull(&bob_token, "orders", "").await.status(),
        200,
        "bob's token still valid"
    );
}

/// Introspection by an admin's key of the same company: a live token is
/// active; a revoked key's token and a disabled owner's token are not.
async fn introspection_reports_tokens_of_revoked_keys_and_disabled_owners_inactive(
    backend: Backend,
) {
    let (app, acme) = spawn_acme(backend).await;
    let inspector = app.key(&acme.admin.email, None).await;
    let introspect = |token: String| {
        let request = app
            .client
            .post(app.url("/oauth/introspect"))
            .basic_auth(&inspector.key.client_id, Some(inspector.secret.expose()))
            .form(&[("token", token)]);
        async move { json_body(request.sent().await).await }
    };
    let ana = acme.employ(&app, "ana", "member", GRANTABLE).await;
    app.key(&ana.email, None).await;
    let l = app.key(&ana.email, None).await;
    let of_revoked = app
        .narrowed_token(&l.key.client_id, l.secret.expose(), None)
        .await;
    let bob = acme.employ(&app, "bob", "member", GRANTABLE).await;
    let bobs = app.key(&bob.email, None).await;
    let of_disabled = app
        .narrowed_token(&bobs.key.client_id, bobs.secret.expose(), None)
        .await;
    let cyd = acme.employ(&app, "cyd", "member", GRANTABLE).await;
    let cyds = app.key(&cyd.email, None).await;
    let live = app
        .narrowed_token(&cyds.key.client_id, cyds.secret.expose(), None)
        .await;

    assert_eq!(introspect(live.clone()).await["active"], true, "live token");

    acme.act_on(&app, &format!("/api/v1/keys/{}", l.key.client_id), "revoke")
        .await;
    assert_eq!(
        introspect(of_revoked).await,
        json!({"active": false}),
        "token of a revoked key"
    );

    acme.act_on(&app, &format!("/api/v1/users/{}", bob.id), "disable")
        .await;
    assert_eq!(
        introspect(of_disabled).await,
        json!({"active": false}),
        "token of a disabled owner"
    );
    assert_eq!(introspect(live).await["active"], true, "live token, again");
}

crate::on_both_backends!(
    introspection_describes_a_live_token,
    introspection_says_only_inactive_for_garbage_or_other_tenants,
    introspection_needs_client_authentication,
    a_revoked_token_is_refused_everywhere_keyport_checks,
    revoking_garbage_or_anothers_token_answers_200_and_changes_nothing,
    introspection_reports_tokens_of_revoked_keys_and_disabled_owners_inactive,
);
