//! Adding a public key to a key is its owner's alone, like rolling it:
//! assertions signed with the added key act as the owner, so an admin who
//! could add their own public key to a colleague's key would hold
//! credentials that act as the colleague. Refused (403 `forbidden`, as a
//! roll by someone else is) and audited, in the API and in the console; a
//! narrowed key of the owner cannot add one to a broader key either. The
//! CLI, acting as the operator, may (tests/api/cli.rs). Removing stays open
//! to admins: it only takes a way in away. Both backends.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::console_webhooks::{Person, hidden};
use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, Cred, TestApp, json_body, spawn_app, spawn_app_with_integration, status_and_json,
};
use crate::private_key_jwt::{ClientKey, JWT_BEARER, claims_for};
use keyport::tokens::SigningAlgorithm;

const PASSWORD: &str = "a long enough passphrase for tests";
const PERMISSIONS: &str = "reports:read webhooks:write keys:manage";

/// `POST /oauth/token` with `client_id`'s claims signed by `signer`.
async fn token_by_assertion(app: &TestApp, client_id: &str, signer: &ClientKey) -> (u16, Value) {
    let assertion = signer.sign(&claims_for(app, client_id), Some("k1"));
    let response = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ])
        .sent()
        .await;
    status_and_json(response).await
}

async fn add_public_key(app: &TestApp, cred: &Cred, key: &str, jwk: &Value) -> (u16, Value) {
    let response = app
        .request(
            Method::POST,
            &format!("/api/v1/keys/{key}/public-keys"),
            cred,
        )
        .json(jwk)
        .sent()
        .await;
    status_and_json(response).await
}

async fn an_admin_cannot_add_a_public_key_to_a_colleagues_key_and_gets_no_token_as_them(
    backend: Backend,
) {
    let (app, acme) = spawn_app_with_integration(backend, "admin", PERMISSIONS).await;
    let admin = Cred::Bearer(app.session_for(&acme.user.email, PASSWORD).await);
    let colleague = app
        .user(&acme.tenant, "colleague@acme.io", "member", PERMISSIONS)
        .await;
    let colleagues_key = app.key(&colleague.email, None).await;
    let client_id = colleagues_key.key.client_id.clone();

    // Rolling the colleague's key is refused: the new secret acts as them.
    let rolled = app
        .request(
            Method::POST,
            &format!("/api/v1/keys/{client_id}/roll"),
            &admin,
        )
        .sent()
        .await;
    assert_eq!(rolled.status(), 403);
    let roll_code = json_body(rolled).await["error"].clone();

    // Adding the admin's own public key to it is the same power: refused
    // alike, over the session and over the admin's full key.
    let admins_signer = ClientKey::new(SigningAlgorithm::Es256);
    let jwk = admins_signer.jwk(Some("k1"));
    for cred in [&admin, &Cred::ApiKey(acme.secret().to_owned())] {
        let (status, body) = add_public_key(&app, cred, &client_id, &jwk).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"], roll_code, "{body}");
        assert_eq!(body["error"], "forbidden", "{body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("only a key's owner")),
            "{body}"
        );
    }

    // Nothing was registered, so the admin's assertion gets no token.
    let listed = json_body(
        app.request(
            Method::GET,
            &format!("/api/v1/keys/{client_id}/public-keys"),
            &admin,
        )
        .sent()
        .await,
    )
    .await;
    assert_eq!(listed["public_keys"], json!([]), "{listed}");
    let (status, body) = token_by_assertion(&app, &client_id, &admins_signer).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");
    assert!(body.get("access_token").is_none(), "{body}");

    // Each refusal is audited: who, which key, why.
    let audit = json_body(
        app.request(
            Method::GET,
            "/api/v1/audit?action=key.public_key.add_refused",
            &admin,
        )
        .sent()
        .await,
    )
    .await;
    let rows = audit["events"].as_array().expect("events");
    assert_eq!(rows.len(), 2, "{audit}");
    for row in rows {
        assert_eq!(row["actor"], acme.user.id.as_str(), "{row}");
        assert_eq!(row["target"], client_id.as_str(), "{row}");
        assert_eq!(row["detail"], "refused: not the owner", "{row}");
    }
    assert!(!audit.to_string().contains("kps_"), "{audit}");

    // The owner adds their own, and it authenticates the key.
    let owner = Cred::Bearer(app.session_for(&colleague.email, PASSWORD).await);
    let owners_signer = ClientKey::new(SigningAlgorithm::Es256);
    let (status, body) =
        add_public_key(&app, &owner, &client_id, &owners_signer.jwk(Some("k1"))).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = token_by_assertion(&app, &client_id, &owners_signer).await;
    assert_eq!(status, 200, "{body}");

    // The admin may still take that way in away.
    let thumbprint = body_thumbprint(&app, &admin, &client_id).await;
    let removed = app
        .request(
            Method::DELETE,
            &format!("/api/v1/keys/{client_id}/public-keys/{thumbprint}"),
            &admin,
        )
        .sent()
        .await;
    assert_eq!(removed.status(), 200);
    let (status, _) = token_by_assertion(&app, &client_id, &owners_signer).await;
    assert_eq!(status, 401);
}

/// The thumbprint of the key's only public key.
async fn body_thumbprint(app: &TestApp, cred: &Cred, client_id: &str) -> String {
    let listed = json_body(
        app.request(
            Method::GET,
            &format!("/api/v1/keys/{client_id}/public-keys"),
            cred,
        )
        .sent()
        .await,
    )
    .await;
    listed["public_keys"][0]["thumbprint"]
        .as_str()
        .expect("thumbprint")
        .to_owned()
}

async fn a_narrowed_key_cannot_add_a_public_key_to_its_owners_broader_key(backend: Backend) {
    let (app, acme) = spawn_app_with_integration(backend, "admin", PERMISSIONS).await;
    let session = app.session_for(&acme.user.email, PASSWORD).await;
    let narrow = app
        .create_key_over_http(
            &session,
            json!({ "name": "keys only", "scopes": ["keys:manage"] }),
        )
        .await;
    let narrow = Cred::ApiKey(narrow["client_secret"].as_str().expect("secret").to_owned());
    // The integration's key names no scopes: it holds all its owner's.
    let signer = ClientKey::new(SigningAlgorithm::Es256);
    let (status, body) =
        add_public_key(&app, &narrow, acme.client_id(), &signer.jwk(Some("k1"))).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "forbidden", "{body}");
    let (status, _) = token_by_assertion(&app, acme.client_id(), &signer).await;
    assert_eq!(status, 401);
}

async fn the_console_offers_adding_a_public_key_to_the_keys_owner_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = app.tenant("Acme").await;
    app.user(&acme, "ana@acme.io", "admin", PERMISSIONS).await;
    app.user(&acme, "ben@acme.io", "member", PERMISSIONS).await;
    let own_key = app.key("ana@acme.io", None).await;
    let colleagues_key = app.key("ben@acme.io", None).await;
    let ana = Person::signed_in(&app, "ana@acme.io").await;

    let own_path = format!("/console/keys/{}/public-keys", own_key.key.id);
    let own = ana.get(&own_path).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.html.contains("id=\"add-public-key\""), "{}", own.html);

    // An admin sees a colleague's key's public keys, without the form.
    let path = format!("/console/keys/{}/public-keys", colleagues_key.key.id);
    let page = ana.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.html.contains("id=\"add-public-key\""),
        "{}",
        page.html
    );
    assert!(
        page.html
            .contains("Only the key's owner can add a public key"),
        "{}",
        page.html
    );

    // A post made anyway is refused on the page, and nothing is added.
    let signer = ClientKey::new(SigningAlgorithm::Es256);
    let csrf = hidden(&page.html, "csrf");
    let refused = ana
        .post_as(
            &path,
            &[("jwk", &signer.jwk(Some("k1")).to_string())],
            &csrf,
            "",
            true,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    assert!(
        refused.html.contains("role=\"alert\"")
            && refused.html.contains("owner may add a public key to it"),
        "{}",
        refused.html
    );
    assert!(ana.get(&path).await.html.contains("0 public keys"));
    let (status, _) = token_by_assertion(&app, &colleagues_key.key.client_id, &signer).await;
    assert_eq!(status, 401);
}

crate::on_both_backends!(
    an_admin_cannot_add_a_public_key_to_a_colleagues_key_and_gets_no_token_as_them,
    a_narrowed_key_cannot_add_a_public_key_to_its_owners_broader_key,
    the_console_offers_adding_a_public_key_to_the_keys_owner_only,
);
