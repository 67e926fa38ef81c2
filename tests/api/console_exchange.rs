//! The console's Token exchange page (issue 16): admins trust an issuer and
//! add and delete rules through forms, over plain HTTP on both backends;
//! members cannot see the page; bad input shows on the page, not as a 5xx.

use reqwest::StatusCode;

use crate::console_webhooks::{Person, hidden};
use crate::helpers::{Backend, spawn_app_with};

const ALLOWED: [(&str, &str); 2] = [
    ("KEYPORT_EXCHANGE_ALLOW_HTTP", "true"),
    ("KEYPORT_EXCHANGE_ALLOW_PRIVATE_TARGETS", "true"),
];

async fn post(
    person: &Person,
    path: &str,
    fields: &[(&str, &str)],
) -> crate::console_webhooks::Page {
    let page = person.get("/console/exchange").await;
    let csrf = hidden(&page.html, "csrf");
    person.post_as(path, fields, &csrf, "", true).await
}

async fn admins_trust_issuers_and_manage_rules_from_the_console(backend: Backend) {
    let app = spawn_app_with(backend, &ALLOWED).await;
    let acme = app.tenant("Acme").await;
    app.user(&acme, "ana@acme.io", "admin", "reports:read keys:manage")
        .await;
    let deployer = app
        .user(&acme, "ci@acme.io", "member", "reports:read webhooks:write")
        .await;
    let admin = Person::signed_in(&app, "ana@acme.io").await;
    let member = Person::signed_in(&app, "ci@acme.io").await;

    let page = admin.get("/console/exchange").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.html.contains("No issuer is trusted yet"),
        "{}",
        page.html
    );
    assert!(
        admin
            .get("/console/keys")
            .await
            .html
            .contains("href=\"/console/exchange\"")
    );
    // Members hold no tenant:manage: no page, no link.
    assert_eq!(
        member.get("/console/exchange").await.status,
        StatusCode::FORBIDDEN
    );
    assert!(
        !member
            .get("/console/keys?owner=me")
            .await
            .html
            .contains("href=\"/console/exchange\"")
    );

    // A refused issuer (not a URL) shows why, on the page.
    let refused = post(
        &admin,
        "/console/exchange/issuers",
        &[
            ("issuer", "github"),
            ("jwks_url", "http://127.0.0.1:9/jwks"),
            ("audience", "a"),
        ],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.html.contains("role=\"alert\""), "{}", refused.html);
    assert!(refused.html.contains("issuer"), "{}", refused.html);

    let added = post(
        &admin,
        "/console/exchange/issuers",
        &[
            ("issuer", "https://token.actions.example.com"),
            ("jwks_url", "http://127.0.0.1:9/jwks.json"),
            ("audience", "keyport-acme"),
        ],
    )
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.html);
    let page = admin.get("/console/exchange").await;
    assert!(
        page.html
            .contains("data-issuer=\"https://token.actions.example.com\"")
    );
    let issuer_id = page
        .html
        .split("action=\"/console/exchange/issuers/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the issuer's forms")
        .to_owned();

    // A rule with a malformed condition line is refused on the page.
    let bad = post(
        &admin,
        &format!("/console/exchange/issuers/{issuer_id}/rules"),
        &[
            ("conditions", "no operator here"),
            ("user", &deployer.id),
            ("scope", "reports:read"),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.html.contains("NAME=VALUE"), "{}", bad.html);

    let rule = post(
        &admin,
        &format!("/console/exchange/issuers/{issuer_id}/rules"),
        &[
            (
                "conditions",
                "sub~repo:acme/erp:ref:refs/heads/*\nrepository_owner=acme",
            ),
            ("user", &deployer.id),
            ("scope", "reports:read"),
        ],
    )
    .await;
    assert_eq!(rule.status, StatusCode::SEE_OTHER, "{}", rule.html);
    let page = admin.get("/console/exchange").await;
    assert!(
        page.html.contains("sub~repo:acme/erp:ref:refs/heads/*"),
        "{}",
        page.html
    );
    assert!(page.html.contains("repository_owner=acme"));
    assert!(
        page.html.contains("ci@acme.io"),
        "rules name their user by email"
    );
    let rule_id = page
        .html
        .split("data-rule=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the rule's row")
        .to_owned();

    // A member's forged post is refused by the service, not the template.
    let csrf = hidden(&member.get("/console/keys?owner=me").await.html, "csrf");
    let forged = member
        .post_as(
            &format!("/console/exchange/issuers/{issuer_id}/delete"),
            &[],
            &csrf,
            "",
            true,
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let deleted = post(
        &admin,
        &format!("/console/exchange/issuers/{issuer_id}/rules/{rule_id}/delete"),
        &[],
    )
    .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert!(
        !admin
            .get("/console/exchange")
            .await
            .html
            .contains("data-rule=\"")
    );
    let gone = post(
        &admin,
        &format!("/console/exchange/issuers/{issuer_id}/delete"),
        &[],
    )
    .await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER);
    assert!(
        admin
            .get("/console/exchange")
            .await
            .html
            .contains("No issuer is trusted yet")
    );
}

crate::on_both_backends!(admins_trust_issuers_and_manage_rules_from_the_console);
