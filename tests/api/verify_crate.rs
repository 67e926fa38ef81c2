//! `keyport-verify`, the resource-server crate, against a real Keyport on
//! port 0: it finds the keys from the metadata, accepts Keyport's tokens,
//! refuses every kind of wrong token with the RFC 6750 answer, fetches the
//! JWKS at most once per interval however many made-up kids arrive, and
//! fails closed (503, no hang) when it can never get the keys.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyport_verify::{KeySettings, Verifier, VerifyError};
use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app, spawn_app_with_integration};

/// `token` with its header replaced by `header` (the signature no longer
/// matches, which the checks before the signature must not need).
fn with_header(token: &str, header: &Value) -> String {
    let rest = token.split_once('.').unwrap().1;
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

fn header_of(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn the_verifier_accepts_keyport_tokens_and_refuses_every_wrong_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let issuer = app.settings.tokens.issuer.clone();
    let audience = app.settings.tokens.audience.clone();
    let integration = app.integration("member", "reports:read").await;
    let token = app
        .narrowed_token(integration.client_id(), integration.secret(), None)
        .await;

    let verifier = Verifier::discover(&issuer, &audience)
        .await
        .expect("metadata");
    let claims = verifier.verify_bearer(&token).await.expect("a good token");
    assert_eq!(claims.sub, integration.user.id);
    assert_eq!(claims.client_id.as_deref(), Some(integration.client_id()));
    claims.require_scope("reports:read").unwrap();
    let missing = claims.require_scope("keys:manage").unwrap_err();
    assert_eq!(missing.status(), 403);
    assert!(
        missing
            .challenge("api")
            .unwrap()
            .contains("error=\"insufficient_scope\"")
            && missing
                .challenge("api")
                .unwrap()
                .contains("scope=\"keys:manage\"")
    );

    // Tampered: one character in the middle of the signature.
    let mut tampered = token.clone().into_bytes();
    let at = token.rfind('.').unwrap() + 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let header = header_of(&token);
    let kid = header["kid"].as_str().unwrap().to_owned();
    let hs256 = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}).to_string()),
        token.split('.').nth(1).unwrap(),
        URL_SAFE_NO_PAD.encode([7u8; 32])
    );
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string()),
        token.split('.').nth(1).unwrap(),
    );
    let cases: Vec<(&str, String, VerifyError)> = vec![
        ("a tampered signature", tampered, VerifyError::BadSignature),
        (
            "typ JWT (not an access token)",
            with_header(
                &token,
                &json!({"alg": header["alg"], "typ": "JWT", "kid": kid}),
            ),
            VerifyError::NotAnAccessToken,
        ),
        (
            "HS256 under the real kid",
            hs256,
            VerifyError::UnsupportedAlgorithm,
        ),
        ("alg none", none, VerifyError::Malformed),
        (
            "a kid the issuer does not publish",
            with_header(
                &token,
                &json!({"alg": header["alg"], "typ": "at+jwt", "kid": "made-up"}),
            ),
            VerifyError::UnknownKey,
        ),
        (
            "not a JWT",
            "eyJ.not.a-token".to_owned(),
            VerifyError::Malformed,
        ),
    ];
    for (what, bad, expected) in cases {
        let refused = verifier.verify(&bad).await.unwrap_err();
        assert_eq!(refused, expected, "{what}");
        assert_eq!(refused.status(), 401, "{what}");
        assert!(
            refused
                .challenge("api")
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
    }

    let elsewhere = Verifier::builder(&issuer, "another-api")
        .jwks_uri(format!("{issuer}/.well-known/jwks.json"))
        .build()
        .await
        .unwrap();
    assert_eq!(
        elsewhere.verify(&token).await.unwrap_err(),
        VerifyError::WrongAudience
    );
    let other_issuer = Verifier::builder("https://other.example.com", &audience)
        .jwks_uri(format!("{issuer}/.well-known/jwks.json"))
        .build()
        .await
        .unwrap();
    assert_eq!(
        other_issuer.verify(&token).await.unwrap_err(),
        VerifyError::WrongIssuer
    );
}

/// A flood of tokens naming made-up kids costs at most one JWKS fetch per
/// interval: here one for the first token, then none for 1,000 made-up
/// kids within the interval.
async fn made_up_kids_cost_at_most_one_fetch_per_interval(backend: Backend) {
    let app = spawn_app(backend).await;
    let issuer = app.settings.tokens.issuer.clone();
    let integration = app.integration("member", "reports:read").await;
    let token = app
        .narrowed_token(integration.client_id(), integration.secret(), None)
        .await;
    let verifier = Verifier::builder(&issuer, &app.settings.tokens.audience)
        .key_settings(KeySettings {
            min_refresh: std::time::Duration::from_secs(3600),
            ..KeySettings::default()
        })
        .build()
        .await
        .unwrap();
    verifier.verify(&token).await.expect("a good token");
    assert_eq!(verifier.jwks_fetches(), 1);
    let alg = header_of(&token)["alg"].clone();
    for n in 0..1000 {
        let forged = with_header(
            &token,
            &json!({"alg": alg, "typ": "at+jwt", "kid": format!("kid-{n}")}),
        );
        assert_eq!(
            verifier.verify(&forged).await.unwrap_err(),
            VerifyError::UnknownKey
        );
    }
    assert_eq!(
        verifier.jwks_fetches(),
        1,
        "made-up kids fetched the JWKS again"
    );
    verifier
        .verify(&token)
        .await
        .expect("the real key still answers");
}

/// An issuer whose keys can never be fetched: refused with 503 and no
/// challenge, quickly, never accepted.
#[tokio::test]
async fn without_any_keys_the_verifier_fails_closed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let verifier = Verifier::builder("https://auth.example.com", "keyport-api")
        .jwks_uri(format!("http://127.0.0.1:{port}/jwks.json"))
        .build()
        .await
        .unwrap();
    let token = with_header(
        "e30.eyJzdWIiOiJ4In0.c2ln",
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}),
    );
    let refused = tokio::time::timeout(std::time::Duration::from_secs(30), verifier.verify(&token))
        .await
        .expect("the verifier hung")
        .unwrap_err();
    assert!(
        matches!(refused, VerifyError::KeysUnavailable(_)),
        "{refused:?}"
    );
    assert_eq!((refused.status(), refused.challenge("api")), (503, None));
}

/// A DPoP-bound token presented as a bearer token is refused: the bearer
/// proves nothing about the key.
async fn a_bound_token_is_refused_as_a_bearer_token(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let key = crate::dpop::DpopKey::new();
    let token = crate::dpop::bound_token(&app, &integration, &key).await;
    let verifier = Verifier::discover(&app.settings.tokens.issuer, &app.settings.tokens.audience)
        .await
        .unwrap();
    let claims = verifier.verify(&token).await.expect("a valid bound token");
    assert_eq!(claims.dpop_jkt(), Some(key.jkt.as_str()));
    assert_eq!(
        verifier.verify_bearer(&token).await.unwrap_err(),
        VerifyError::BoundToken
    );
}

/// The crate's actix-web extractor in a real resource server on port 0, as
/// its example is written: a token with the scope gets the subject; one
/// without it 403 `insufficient_scope` naming the scope; no token a bare
/// `Bearer` challenge; a bad token 401 `invalid_token`.
async fn the_actix_extractor_answers_as_rfc_6750_says(backend: Backend) {
    use actix_web::{App, HttpResponse, HttpServer, web};
    use keyport_verify::actix::BearerClaims;

    async fn protected(token: BearerClaims) -> actix_web::Result<HttpResponse> {
        token.require_scope("reports:read")?;
        Ok(HttpResponse::Ok().json(json!({ "sub": token.sub })))
    }

    let (app, reader) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let writer = app.integration("member", "webhooks:write").await;
    let verifier = Verifier::discover(&app.settings.tokens.issuer, &app.settings.tokens.audience)
        .await
        .unwrap();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(verifier.clone()))
            .route("/protected", web::get().to(protected))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let address = server.addrs()[0];
    tokio::spawn(server.run());
    let url = format!("http://{address}/protected");
    let call = |token: Option<String>| {
        let request = app.client.get(&url);
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move { request.send().await.expect("the resource server answers") }
    };

    let token = app
        .narrowed_token(reader.client_id(), reader.secret(), None)
        .await;
    let answer = call(Some(token)).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json::<Value>().await.unwrap()["sub"], reader.user.id);

    let token = app
        .narrowed_token(writer.client_id(), writer.secret(), None)
        .await;
    let answer = call(Some(token)).await;
    assert_eq!(answer.status(), 403);
    let challenge = answer.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"reports:read\""),
        "{challenge}"
    );

    let answer = call(None).await;
    assert_eq!(answer.status(), 401);
    assert_eq!(
        answer.headers()["www-authenticate"],
        "Bearer realm=\"keyport\""
    );

    let answer = call(Some("not-a-token".to_owned())).await;
    assert_eq!(answer.status(), 401);
    assert!(
        answer.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
}

crate::on_both_backends!(
    the_verifier_accepts_keyport_tokens_and_refuses_every_wrong_one,
    made_up_kids_cost_at_most_one_fetch_per_interval,
    a_bound_token_is_refused_as_a_bearer_token,
    the_actix_extractor_answers_as_rfc_6750_says,
);
