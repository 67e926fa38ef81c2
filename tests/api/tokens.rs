//! The tokens themselves (RFC 9068), the JWKS (RFC 7517) and the metadata
//! document (RFC 8414), checked with jsonwebtoken as an outside verifier would.

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use keyport::tokens::{KeyRing, SigningAlgorithm, TokenVerifier};
use serde_json::Value;

use crate::helpers::{
    Backend, READ_AND_PUSH, json_body, spawn_app, spawn_app_with, spawn_app_with_integration,
    spawn_app_with_token, spawn_sibling, verify_with_jwks,
};

async fn fetch_jwks(app: &crate::helpers::TestApp) -> JwkSet {
    let response = app.get("/.well-known/jwks.json").await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("a JWK set")
}

async fn tokens_carry_the_rfc_9068_header_and_claims(backend: Backend) {
    let (app, integration, token) = spawn_app_with_token(backend, "admin", READ_AND_PUSH).await;

    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, Algorithm::ES256, "ES256 is the default");
    let claims = verify_with_jwks(&fetch_jwks(&app).await, &token, &app);

    assert_eq!(claims["iss"], app.settings.tokens.issuer.as_str());
    assert_eq!(claims["aud"], app.settings.tokens.audience.as_str());
    assert_eq!(claims["sub"], integration.user.id.as_str());
    assert_eq!(claims["client_id"], integration.client_id());
    assert_eq!(claims["tenant_id"], integration.tenant.id.as_str());
    // An admin's key holds the administration scopes through the role.
    assert_eq!(
        claims["scope"],
        "audit:read reports:read tenant:manage users:manage webhooks:write"
    );
    assert_eq!(claims["roles"], serde_json::json!(["admin"]));
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 600);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
}

async fn every_token_has_its_own_jti(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let a = app.token_for(&integration).await;
    let b = app.token_for(&integration).await;
    let jti = |t: &str| {
        jsonwebtoken::dangerous::insecure_decode::<Value>(t)
            .unwrap()
            .claims["jti"]
            .clone()
    };
    assert_ne!(jti(&a), jti(&b));
}

async fn eddsa_and_rs256_are_available_by_configuration(backend: Backend) {
    for (name, alg) in [("EdDSA", Algorithm::EdDSA), ("RS256", Algorithm::RS256)] {
        let app = spawn_app_with(backend, &[("KEYPORT_SIGNING_ALGORITHM", name)]).await;
        let integration = app.integration("member", "reports:read").await;
        let token = app.token_for(&integration).await;

        assert_eq!(jsonwebtoken::decode_header(&token).unwrap().alg, alg);
        verify_with_jwks(&fetch_jwks(&app).await, &token, &app);
        let pulled = app.pull(&token, "nothing-yet", "").await;
        assert_eq!(
            pulled.status(),
            200,
            "{name} token accepted by the resource endpoint"
        );
    }
}

async fn the_jwks_never_publishes_private_key_material(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json_body(app.get("/.well-known/jwks.json").await).await;
    let keys = body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(
                key.get(private).is_none(),
                "private member {private} published"
            );
        }
        assert_eq!(key["use"], "sig");
        assert!(key["kid"].is_string() && key["alg"].is_string());
    }
}

async fn signing_keys_live_in_the_database_and_survive_restarts(backend: Backend) {
    let first = spawn_app(backend).await;
    let integration = first.integration("member", READ_AND_PUSH).await;
    let pushed = first
        .push(
            &first.token_for(&integration).await,
            "orders",
            &serde_json::json!({"n": 1}),
            None,
        )
        .await;
    assert_eq!(pushed.status(), 201);
    let token = first.token_for(&integration).await;

    let second = spawn_sibling(&first, &[]).await;

    assert_eq!(fetch_jwks(&first).await.keys.len(), 1);
    assert_eq!(
        serde_json::to_value(fetch_jwks(&second).await).unwrap(),
        serde_json::to_value(fetch_jwks(&first).await).unwrap(),
        "a second instance publishes the same keys"
    );
    assert_eq!(second.pull(&token, "orders", "").await.status(), 200);
}

async fn a_rotated_signing_key_stays_published_while_its_tokens_live(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let old_token = app.token_for(&integration).await;
    let old_kid = jsonwebtoken::decode_header(&old_token)
        .unwrap()
        .kid
        .unwrap();

    let new_kid = KeyRing::rotate(&app.store, SigningAlgorithm::Es256)
        .await
        .unwrap();
    // A restarted instance reads the keys as they are now.
    let restarted = spawn_sibling(&app, &[]).await;

    let jwks = fetch_jwks(&restarted).await;
    assert!(
        jwks.find(&old_kid).is_some(),
        "the retired key is still published"
    );
    assert!(jwks.find(&new_kid).is_some());
    let new_token = restarted.token_for(&integration).await;
    assert_eq!(
        jsonwebtoken::decode_header(&new_token)
            .unwrap()
            .kid
            .unwrap(),
        new_kid
    );
    assert_ne!(restarted.pull(&old_token, "none", "").await.status(), 401);
}

async fn the_metadata_document_points_at_the_token_endpoint_and_jwks(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json_body(app.get("/.well-known/oauth-authorization-server").await).await;
    let issuer = app.settings.tokens.issuer.as_str();
    assert_eq!(body["issuer"], issuer);
    assert_eq!(body["token_endpoint"], format!("{issuer}/oauth/token"));
    assert_eq!(body["jwks_uri"], format!("{issuer}/.well-known/jwks.json"));
    assert_eq!(
        body["grant_types_supported"],
        serde_json::json!([
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ])
    );
    let methods = body["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    assert!(
        methods.contains(&"client_secret_basic".into())
            && methods.contains(&"client_secret_post".into())
    );
}

async fn a_third_party_verifier_built_from_the_jwks_accepts_keyport_tokens(backend: Backend) {
    let (app, integration, token) = spawn_app_with_token(backend, "member", "reports:read").await;

    let verifier = TokenVerifier::from_jwks(
        &fetch_jwks(&app).await,
        &app.settings.tokens.issuer,
        &app.settings.tokens.audience,
        std::time::Duration::from_secs(30),
    );

    let verified = verifier.verify(&token).expect("verifies");
    assert_eq!(verified.claims.sub, integration.user.id);
    assert!(verified.has_scope("reports:read"));
    let wrong_audience = TokenVerifier::from_jwks(
        &fetch_jwks(&app).await,
        &app.settings.tokens.issuer,
        "someone-else",
        std::time::Duration::from_secs(30),
    );
    assert!(wrong_audience.verify(&token).is_err());
}

async fn healthz_answers_while_the_process_is_up(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    app.store.close().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 503);
}

crate::on_both_backends!(
    tokens_carry_the_rfc_9068_header_and_claims,
    every_token_has_its_own_jti,
    eddsa_and_rs256_are_available_by_configuration,
    the_jwks_never_publishes_private_key_material,
    signing_keys_live_in_the_database_and_survive_restarts,
    a_rotated_signing_key_stays_published_while_its_tokens_live,
    the_metadata_document_points_at_the_token_endpoint_and_jwks,
    a_third_party_verifier_built_from_the_jwks_accepts_keyport_tokens,
    healthz_answers_while_the_process_is_up,
);
