//! The console's Public keys page of a key (private_key_jwt, RFC 7523):
//! add a JWK, see it listed by thumbprint, remove it; a private key, a
//! non-JSON paste and a colleague's key are refused; the added key then
//! authenticates an assertion at `/oauth/token`. Plain HTTP, both backends.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::console_webhooks::{Person, hidden};
use crate::helpers::Sent as _;
use crate::helpers::{Backend, spawn_app};

async fn post(
    person: &Person,
    from: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> crate::console_webhooks::Page {
    let csrf = hidden(&person.get(from).await.html, "csrf");
    person.post_as(path, fields, &csrf, "", true).await
}

async fn a_key_owner_adds_and_removes_public_keys_from_the_console(backend: Backend) {
    use crate::dpop::DpopKey;
    let app = spawn_app(backend).await;
    let acme = app.tenant("Acme").await;
    app.user(&acme, "ana@acme.io", "member", "reports:read keys:manage")
        .await;
    app.user(&acme, "ben@acme.io", "member", "reports:read keys:manage")
        .await;
    let key = app.key("ana@acme.io", None).await;
    let colleague_key = app.key("ben@acme.io", None).await;
    let ana = Person::signed_in(&app, "ana@acme.io").await;
    let page_path = format!("/console/keys/{}/public-keys", key.key.id);

    let page = ana.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("0 public keys"), "{}", page.html);
    assert!(
        ana.get("/console/keys?owner=me")
            .await
            .html
            .contains(&page_path),
        "the key's row links to its public keys"
    );

    // A private key, and something that is not JSON: refused on the page.
    let signer = DpopKey::new();
    let mut private = signer.jwk.clone();
    private["d"] = json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
    for (what, pasted) in [
        ("a private key", private.to_string()),
        ("not JSON", "ssh-ed25519 AAAA".to_owned()),
    ] {
        let refused = post(&ana, &page_path, &page_path, &[("jwk", &pasted)]).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: {}",
            refused.html
        );
        assert!(refused.html.contains("role=\"alert\""), "{what}");
    }

    let mut public = signer.jwk.clone();
    public["kid"] = json!("ci-2026");
    let added = post(
        &ana,
        &page_path,
        &page_path,
        &[("jwk", &public.to_string())],
    )
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.html);
    let page = ana.get(&page_path).await;
    assert!(
        page.html
            .contains(&format!("data-thumbprint=\"{}\"", signer.jkt)),
        "{}",
        page.html
    );
    assert!(page.html.contains("ci-2026"));

    // The key added in the console authenticates an assertion.
    let token_url = app.url("/oauth/token");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let assertion = signer.sign(
        &json!({"alg": "ES256", "typ": "JWT", "kid": "ci-2026"}),
        &json!({
            "iss": key.key.client_id, "sub": key.key.client_id, "aud": token_url,
            "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "exp": now + 60
        }),
    );
    let response = app
        .client
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ])
        .sent()
        .await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");

    // A member cannot reach a colleague's key's page or change it.
    let colleague_path = format!("/console/keys/{}/public-keys", colleague_key.key.id);
    assert_eq!(ana.get(&colleague_path).await.status, StatusCode::FORBIDDEN);
    let forged = post(
        &ana,
        &page_path,
        &colleague_path,
        &[("jwk", &public.to_string())],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.html);

    let removed = post(
        &ana,
        &page_path,
        &format!("{page_path}/{}/remove", signer.jkt),
        &[],
    )
    .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.html);
    assert!(ana.get(&page_path).await.html.contains("0 public keys"));
}

crate::on_both_backends!(a_key_owner_adds_and_removes_public_keys_from_the_console);
