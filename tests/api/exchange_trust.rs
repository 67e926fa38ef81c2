//! Token exchange across companies: an audience names one company, a token
//! is matched against every issuer that could admit it (never the first
//! JWKS URL in some order), a key that authenticates keeps the decision in
//! its company, a slow issuer delays nobody else, and what a rule or an
//! external token may be is bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::{Backend, TestApp, json_body, spawn_app_with};
use crate::token_exchange::{
    CI_AUDIENCE, CI_ISSUER, Company, JWT, MAIN_BRANCH, add_rule, admit_main_branch,
    assert_invalid_grant, claims, company, exchange_jwt, issue, overrides, serve_jwks, spawn,
    trust_main_branch,
};

const OTHER_AUDIENCE: &str = "keyport-globex";

async fn trust_as(app: &TestApp, admin: &str, jwks_url: &str, audience: &str) -> (u16, Value) {
    app.send_json(
        reqwest::Method::POST,
        "/api/v1/trusted-issuers",
        admin,
        &json!({"issuer": CI_ISSUER, "jwks_url": jwks_url, "audience": audience}),
    )
    .await
}

/// Trusts the CI issuer for `audience` with a rule admitting the main
/// branch's token as the company's user.
async fn trust_main_branch_for(app: &TestApp, company: &Company, jwks_url: &str, audience: &str) {
    let (status, issuer) = trust_as(app, &company.admin_session, jwks_url, audience).await;
    assert_eq!(status, 201, "{issuer}");
    admit_main_branch(app, company, &issuer).await;
}

/// Waits until `fetches` reaches `count`, failing (never hanging) after 30 s.
async fn wait_for_fetches(fetches: &AtomicUsize, count: usize, why: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while fetches.load(Ordering::SeqCst) < count {
        assert!(tokio::time::Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `sub` of the token an exchange answered, asserting it answered one.
fn issued_to(status: u16, body: &Value) -> String {
    assert_eq!(status, 200, "{body}");
    claims(body["access_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A second company cannot trust an issuer for an audience a company
/// already uses, whatever JWKS URL it names: so it can neither take that
/// company's tokens (a copy of the issuer's keys at its own URL) nor block
/// them with a rule of its own. Its own audience is fine.
async fn an_audience_trusted_by_one_company_cannot_be_trusted_by_another(backend: Backend) {
    let app = spawn(backend).await;
    let acme = company(&app).await;
    let globex = company(&app).await;
    let (jwks, tokens) = issue(&json!({
        "issuer": CI_ISSUER,
        "keys": ["k1"],
        "tokens": [{"kid": "k1", "claims": {"sub": MAIN_BRANCH, "aud": CI_AUDIENCE}}]
    }));
    let genuine = serve_jwks(&jwks).await;
    let copy = serve_jwks(&jwks).await;
    trust_main_branch(&app, &acme, &genuine.url).await;

    // The same issuer and audience, at another URL serving a copy of the
    // keys, or at the same URL: refused, saying why.
    for url in [&copy.url, &genuine.url] {
        let (status, body) = trust_as(&app, &globex.admin_session, url, CI_AUDIENCE).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (409, Some("conflict")),
            "{body}"
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("another company"),
            "{body}"
        );
    }
    // Acme's own second attempt is a plain duplicate.
    let (status, body) = trust_as(&app, &acme.admin_session, &copy.url, CI_AUDIENCE).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("already trusted"),
        "{body}"
    );

    // Acme's CI job, exchanging with no client authentication, acts as
    // Acme's user.
    let (status, body) = exchange_jwt(&app, None, &tokens[0]).await;
    assert_eq!(issued_to(status, &body), acme.user_id);

    // Globex trusts the issuer for an audience of its own.
    trust_main_branch_for(&app, &globex, &copy.url, OTHER_AUDIENCE).await;
    let (status, body) = exchange_jwt(&app, None, &tokens[0]).await;
    assert_eq!(
        issued_to(status, &body),
        acme.user_id,
        "a token for Acme's audience went elsewhere"
    );
}

/// A token naming two companies' audiences is checked against both
/// companies' issuers, not only the one whose JWKS URL sorts first (there,
/// a copy of the issuer's keys): with no client authentication it is
/// refused; a key that authenticates gets its own company's rule.
async fn a_token_for_two_companies_is_refused_unless_a_key_says_which(backend: Backend) {
    let app = spawn(backend).await;
    let acme = company(&app).await;
    let globex = company(&app).await;
    let (jwks, tokens) = issue(&json!({
        "issuer": CI_ISSUER,
        "keys": ["k1"],
        "tokens": [
            {"kid": "k1", "claims": {"sub": MAIN_BRANCH, "aud": [CI_AUDIENCE, OTHER_AUDIENCE]}},
            {"kid": "k1", "claims": {"sub": MAIN_BRANCH, "aud": CI_AUDIENCE}}
        ]
    }));
    let first = serve_jwks(&jwks).await;
    let second = serve_jwks(&jwks).await;
    // Globex's URL (the copy) sorts first.
    let (copy, genuine) = if first.url < second.url {
        (&first, &second)
    } else {
        (&second, &first)
    };
    trust_main_branch_for(&app, &acme, &genuine.url, CI_AUDIENCE).await;
    trust_main_branch_for(&app, &globex, &copy.url, OTHER_AUDIENCE).await;

    let (status, body) = exchange_jwt(&app, None, &tokens[0]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "rules of two companies admit the token: {body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("more than one company"),
        "{body}"
    );

    // Acme's exchanging key decides for Acme, Globex's for Globex.
    for (company, user) in [(&acme, &acme.user_id), (&globex, &globex.user_id)] {
        let (status, body) = exchange_jwt(&app, Some(&company.exchanger), &tokens[0]).await;
        assert_eq!(issued_to(status, &body), *user);
    }
    // A token for Acme alone is Acme's, with or without a key, and never
    // Globex's, even with Globex's key.
    let (status, body) = exchange_jwt(&app, None, &tokens[1]).await;
    assert_eq!(issued_to(status, &body), acme.user_id);
    let (status, body) = exchange_jwt(&app, Some(&globex.exchanger), &tokens[1]).await;
    assert_invalid_grant(status, &body);
}

/// One issuer whose JWKS never answers holds up only the exchanges that
/// need its keys: another company's first exchange goes through while the
/// slow fetch is still waiting.
async fn a_hanging_issuer_delays_no_other_companys_exchange(backend: Backend) {
    let mut settings = overrides();
    // Long enough that waiting behind the slow fetch would show.
    settings.push(("KEYPORT_EXCHANGE_JWKS_TIMEOUT_SECONDS", "60"));
    settings.push(("KEYPORT_EXCHANGE_JWKS_CONNECT_TIMEOUT_SECONDS", "60"));
    let app = spawn_app_with(backend, &settings).await;
    let slow_company = company(&app).await;
    let quick_company = company(&app).await;
    let (jwks, tokens) = issue(&json!({
        "issuer": CI_ISSUER,
        "keys": ["k1"],
        "tokens": [
            {"kid": "k1", "claims": {"sub": MAIN_BRANCH, "aud": CI_AUDIENCE}},
            {"kid": "k1", "claims": {"sub": MAIN_BRANCH, "aud": OTHER_AUDIENCE}}
        ]
    }));
    let slow = serve_jwks(&jwks).await;
    slow.hold.send_replace(true);
    let quick = serve_jwks(&jwks).await;
    trust_main_branch_for(&app, &slow_company, &slow.url, CI_AUDIENCE).await;
    trust_main_branch_for(&app, &quick_company, &quick.url, OTHER_AUDIENCE).await;

    let waiting = {
        let app_url = app.url("/oauth/token");
        let token = tokens[0].clone();
        let client = app.client.clone();
        tokio::spawn(async move {
            client
                .post(app_url)
                .form(&[
                    ("grant_type", crate::token_exchange::EXCHANGE),
                    ("subject_token", token.as_str()),
                    ("subject_token_type", JWT),
                ])
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    // The slow issuer has the request and holds it.
    wait_for_fetches(
        &slow.fetches,
        1,
        "the slow issuer was never asked for its keys",
    )
    .await;
    let quick_answer = tokio::time::timeout(
        Duration::from_secs(30),
        exchange_jwt(&app, None, &tokens[1]),
    )
    .await
    .expect("an exchange waited for another company's issuer");
    assert_eq!(quick_answer.0, 200, "{}", quick_answer.1);
    assert!(!waiting.is_finished(), "the slow fetch ended early");

    // Once the slow issuer answers, its exchange goes through too.
    slow.hold.send_replace(false);
    let status = waiting.await.unwrap().expect("an answer");
    assert_eq!(status, 200);
}

/// Keys older than their maximum age keep answering while the refresh is
/// slow: the refresh happens in the background.
async fn stale_keys_keep_answering_while_their_refresh_hangs(backend: Backend) {
    let mut settings = overrides();
    settings.push(("KEYPORT_EXCHANGE_JWKS_TIMEOUT_SECONDS", "60"));
    settings.push(("KEYPORT_EXCHANGE_JWKS_MAX_AGE_SECONDS", "1"));
    let app = spawn_app_with(backend, &settings).await;
    let acme = company(&app).await;
    let (jwks, tokens) = issue(&json!({
        "issuer": CI_ISSUER,
        "keys": ["k1"],
        "tokens": [{"kid": "k1", "claims": {"sub": MAIN_BRANCH, "aud": CI_AUDIENCE}}]
    }));
    let server = serve_jwks(&jwks).await;
    trust_main_branch(&app, &acme, &server.url).await;
    let (status, body) = exchange_jwt(&app, None, &tokens[0]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);

    server.hold.send_replace(true);
    // Past the maximum age (1 s), with margin.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(30),
        exchange_jwt(&app, None, &tokens[0]),
    )
    .await
    .expect("the exchange waited for the refresh");
    assert_eq!(status, 200, "{body}");
    // The refresh was asked for, and is still held.
    wait_for_fetches(&server.fetches, 2, "the stale keys were never refreshed").await;
    server.hold.send_replace(false);
}

/// A company trusts at most `exchange_max_trusted_issuers` issuers; the
/// limit is per company.
async fn a_company_trusts_at_most_the_configured_number_of_issuers(backend: Backend) {
    let mut settings = overrides();
    settings.push(("KEYPORT_EXCHANGE_MAX_TRUSTED_ISSUERS", "2"));
    let app = spawn_app_with(backend, &settings).await;
    let acme = company(&app).await;
    let globex = company(&app).await;
    let url = "http://127.0.0.1:9/jwks.json";
    for audience in ["acme-1", "acme-2"] {
        let (status, body) = trust_as(&app, &acme.admin_session, url, audience).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = trust_as(&app, &acme.admin_session, url, "acme-3").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("trusted_issuer_limit_reached")),
        "{body}"
    );
    let (status, body) = trust_as(&app, &globex.admin_session, url, "globex-1").await;
    assert_eq!(status, 201, "another company has its own limit: {body}");
}

/// Rules whose conditions hold for every subject of the issuer are
/// refused, whatever way they are written.
async fn rules_that_admit_every_subject_of_the_issuer_are_refused(backend: Backend) {
    let app = spawn(backend).await;
    let acme = company(&app).await;
    let (status, issuer) = trust_as(
        &app,
        &acme.admin_session,
        "http://127.0.0.1:9/jwks.json",
        CI_AUDIENCE,
    )
    .await;
    assert_eq!(status, 201, "{issuer}");
    let issuer_id = issuer["id"].as_str().unwrap();
    for (what, conditions) in [
        ("`**`", json!([{"claim": "sub", "matches": "**"}])),
        ("`.*`", json!([{"claim": "sub", "matches": ".*"}])),
        ("`*:*`", json!([{"claim": "sub", "matches": "*:*"}])),
        (
            "iss equals the issuer",
            json!([{"claim": "iss", "equals": CI_ISSUER}]),
        ),
        (
            "aud equals the audience",
            json!([{"claim": "aud", "equals": CI_AUDIENCE}]),
        ),
        (
            "both together",
            json!([{"claim": "iss", "equals": CI_ISSUER}, {"claim": "aud", "equals": CI_AUDIENCE}]),
        ),
    ] {
        let (status, body) = add_rule(
            &app,
            &acme.admin_session,
            issuer_id,
            json!({"conditions": conditions, "user": acme.user_id, "scopes": "reports:read"}),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (422, Some("invalid_input")),
            "{what}: {body}"
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("tell subjects apart"),
            "{what}: {body}"
        );
    }
    let (status, body) = add_rule(
        &app,
        &acme.admin_session,
        issuer_id,
        json!({"conditions": [{"claim": "iss", "equals": CI_ISSUER}, {"claim": "sub", "matches": "repo:acme/*"}],
               "user": acme.user_id, "scopes": "reports:read"}),
    )
    .await;
    assert_eq!(status, 201, "a narrowing rule is fine: {body}");
}

/// A token from a trusted issuer's exchange is limited like the company's
/// keys (its default rate in `kp_rl`) and never outlives the token it came
/// from; an external token that lives longer than
/// `exchange_max_subject_token_lifetime_seconds` is refused.
async fn external_exchanges_carry_the_company_rate_and_never_outlive_their_subject(
    backend: Backend,
) {
    let app = spawn(backend).await;
    let acme = company(&app).await;
    let response = app
        .api(
            reqwest::Method::PUT,
            "/api/v1/tenant/policy",
            &acme.admin_session,
        )
        .json(&json!({"default_rate_limit": {"requests": 120, "per_seconds": 60}}))
        .sent()
        .await;
    assert_eq!(response.status(), 200, "{}", json_body(response).await);
    let good = json!({"sub": MAIN_BRANCH, "aud": CI_AUDIENCE});
    let ten_years = 10 * 365 * 86_400;
    let (jwks, tokens) = issue(&json!({
        "issuer": CI_ISSUER,
        "keys": ["k1"],
        "tokens": [
            {"kid": "k1", "claims": good, "exp_in": 120},
            {"kid": "k1", "claims": good, "exp_in": 7200},
            {"kid": "k1", "claims": good, "exp_in": ten_years},
            {"kid": "k1", "claims": {"sub": MAIN_BRANCH, "aud": CI_AUDIENCE, "iat": null}, "exp_in": 7200},
        ]
    }));
    let server = serve_jwks(&jwks).await;
    trust_main_branch(&app, &acme, &server.url).await;

    let (status, body) = exchange_jwt(&app, None, &tokens[0]).await;
    assert_eq!(status, 200, "{body}");
    let subject = claims(&tokens[0]);
    let issued = claims(body["access_token"].as_str().unwrap());
    assert!(
        issued["exp"].as_i64().unwrap() <= subject["exp"].as_i64().unwrap(),
        "the token outlives its subject token: {issued} {subject}"
    );
    assert!(body["expires_in"].as_i64().unwrap() <= 120, "{body}");
    assert_eq!(issued["kp_rl"]["requests"], 120, "{issued}");
    assert_eq!(issued["kp_rl"]["per_seconds"], 60, "{issued}");

    for (what, token) in [
        ("two hours", &tokens[1]),
        ("ten years", &tokens[2]),
        ("two hours from now, no iat", &tokens[3]),
    ] {
        let (status, body) = exchange_jwt(&app, None, token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{what}: {body}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("lives longer"),
            "{what}: {body}"
        );
    }
}

/// However many rules other companies hold for the same issuer, a company's
/// own rules are read for its tokens: rules are read per audience.
async fn other_companies_rules_never_crowd_out_a_companys_own(backend: Backend) {
    let app = spawn(backend).await;
    let acme = company(&app).await;
    let globex = company(&app).await;
    let (jwks, tokens) = issue(&json!({
        "issuer": CI_ISSUER,
        "keys": ["k1"],
        "tokens": [{"kid": "k1", "claims": {"sub": MAIN_BRANCH, "aud": CI_AUDIENCE}}]
    }));
    let server = serve_jwks(&jwks).await;
    let (status, issuer) = trust_as(&app, &globex.admin_session, &server.url, OTHER_AUDIENCE).await;
    assert_eq!(status, 201, "{issuer}");
    // A thousand rules, older than any of Acme's (stored directly: the API
    // would take a while).
    let globex_tenant = issuer_tenant(&app, &globex).await;
    for n in 0..1000 {
        app.store
            .insert_exchange_rule(&keyport::storage::ExchangeRuleRow {
                id: keyport::domain::exchange::new_rule_id(),
                issuer_id: issuer["id"].as_str().unwrap().to_owned(),
                tenant_id: globex_tenant.clone(),
                description: String::new(),
                conditions: json!([{"claim": "sub", "equals": format!("repo:globex/app-{n}")}])
                    .to_string(),
                user_id: globex.user_id.clone(),
                scopes: "reports:read".to_owned(),
                created_at: 1,
            })
            .await
            .unwrap();
    }
    trust_main_branch(&app, &acme, &server.url).await;
    let (status, body) = exchange_jwt(&app, None, &tokens[0]).await;
    assert_eq!(issued_to(status, &body), acme.user_id);
}

/// The company id of `company`, read from its admin's own account.
async fn issuer_tenant(app: &TestApp, company: &Company) -> String {
    let me = app.get_as("/api/v1/whoami", &company.admin_session).await;
    json_body(me).await["tenant_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

crate::on_both_backends!(
    other_companies_rules_never_crowd_out_a_companys_own,
    an_audience_trusted_by_one_company_cannot_be_trusted_by_another,
    a_token_for_two_companies_is_refused_unless_a_key_says_which,
    a_hanging_issuer_delays_no_other_companys_exchange,
    stale_keys_keep_answering_while_their_refresh_hangs,
    a_company_trusts_at_most_the_configured_number_of_issuers,
    rules_that_admit_every_subject_of_the_issuer_are_refused,
    external_exchanges_carry_the_company_rate_and_never_outlive_their_subject,
);
