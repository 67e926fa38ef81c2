//! Who may call which management endpoint: every operation against every kind
//! of credential, as one table. An operation succeeds only when the credential
//! holds the scope it needs, the role or ownership permits it, the target is
//! in the caller's company, and the credential is still live.

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, Cred, Integration, TestApp, json_body, spawn_acme, spawn_app, spawn_app_with,
};
use crate::helpers::{audit_events, create_key_as, keys_of, status_and_text, whoami_status};

/// Exchange rules may name plain-HTTP and private issuers (the table's
/// issuers are served by this test process).
const LOCAL_ISSUERS: &[(&str, &str)] = &[
    ("KEYPORT_EXCHANGE_ALLOW_HTTP", "true"),
    ("KEYPORT_EXCHANGE_ALLOW_PRIVATE_TARGETS", "true"),
];

const PASSWORD: &str = "correct horse battery staple";
/// Everything a user can be granted; admins also hold the admin scopes.
const GRANTABLE: &str = "reports:read webhooks:write keys:manage";
const ADMIN_SCOPES: [&str; 3] = ["users:manage", "tenant:manage", "audit:read"];

/// A key made over HTTP by its owner's session: `(client_id, secret)`.
async fn create_key_http(
    app: &TestApp,
    session: &str,
    scopes: Option<&[&str]>,
) -> (String, String) {
    let mut body = json!({"name": "fixture"});
    if let Some(scopes) = scopes {
        body["scopes"] = json!(scopes);
    }
    let created = app.create_key_over_http(session, body).await;
    (
        created["client_id"].as_str().unwrap().to_owned(),
        created["client_secret"].as_str().unwrap().to_owned(),
    )
}

#[derive(Debug, Clone, Copy)]
enum Op {
    ListKeys,
    CreateKey,
    ShowColleaguesKey,
    ShowMembersOwnKey,
    ColleaguesKeyUsage,
    MembersOwnKeyUsage,
    CompanyUsage,
    RevokeKey,
    MarkWebhookSigning,
    DeleteKey,
    ChangeKey,
    DisableKey,
    EnableKey,
    /// Another user's key: only a key's owner may roll it.
    RollOthersKey,
    /// A colleague's key's public keys (`private_key_jwt`).
    ListPublicKeys,
    /// Only a key's owner may add one: its assertions act as the owner.
    AddPublicKey,
    /// A key of the caller's own user.
    AddPublicKeyToOwnKey,
    RemovePublicKey,
    ListUsers,
    CreateUser,
    ShowColleague,
    ShowSelf,
    PatchUser,
    DisableUser,
    EnableUser,
    UnlockUser,
    SetPolicy,
    ReadAudit,
    ListTrustedIssuers,
    TrustIssuer,
}

/// What a row expects.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// 2xx.
    Success,
    /// 403 `insufficient_scope`: the credential lacks the scope.
    Scope,
    /// 403 `forbidden`: a member on a colleague's key or user.
    Owner,
    /// 403 `forbidden` or `insufficient_scope`: a member trying an admin operation.
    Admin,
    /// 404 `not_found`: another company's user or key.
    Hidden,
    /// 401: the key was revoked or its owner disabled after the token was issued.
    Dead,
}

const OK: Want = Want::Success;
const SCOPE: Want = Want::Scope;
const OWNER: Want = Want::Owner;
const ADMIN: Want = Want::Admin;
const HIDDEN: Want = Want::Hidden;
const DEAD: Want = Want::Dead;

/// The principals, in the order of the table's columns.
const PRINCIPALS: [&str; 12] = [
    "admin session",
    "member session (keys:manage)",
    "admin's key scoped reports:read (x-api-key)",
    "admin's key scoped keys:manage (x-api-key)",
    "admin's key scoped users:manage (x-api-key)",
    "admin's key scoped tenant:manage (x-api-key)",
    "admin's key scoped audit:read (x-api-key)",
    "admin's key with all scopes (x-api-key)",
    "token narrowed to reports:read from the admin's full key",
    "token of a key revoked after issue",
    "token of an owner disabled after issue",
    "another company's admin session",
];

/// Targets: "colleague" is another member of the first company; destructive
/// operations get a fresh target per row; the other company's admin always
/// aims at the first company's targets.
#[rustfmt::skip]
const TABLE: &[(Op, [Want; 12])] = &[
    //                          admin  member k:read k:keys k:usrs k:tnt  k:aud  k:all  t:read t:rev  t:dis  other
    (Op::ListKeys,           [OK,    OK,    SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  OK    ]),
    (Op::CreateKey,          [OK,    OK,    SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  OK    ]),
    (Op::ShowColleaguesKey,  [OK,    OWNER, SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::ShowMembersOwnKey,  [OK,    OK,    SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::ColleaguesKeyUsage, [OK,    OWNER, SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::MembersOwnKeyUsage, [OK,    OK,    SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::CompanyUsage,       [OK,    OK,    SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  OK    ]),
    (Op::RevokeKey,          [OK,    OWNER, SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::MarkWebhookSigning, [OK,    OWNER, SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::DeleteKey,          [OK,    OWNER, SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::ChangeKey,          [OK,    OWNER, SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::DisableKey,         [OK,    OWNER, SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::EnableKey,          [OK,    OWNER, SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::RollOthersKey,      [OWNER, OWNER, SCOPE, OWNER, SCOPE, SCOPE, SCOPE, OWNER, SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::ListPublicKeys,     [OK,    OWNER, SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::AddPublicKey,       [OWNER, OWNER, SCOPE, OWNER, SCOPE, SCOPE, SCOPE, OWNER, SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::AddPublicKeyToOwnKey, [OK,  OK,    SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  OK    ]),
    (Op::RemovePublicKey,    [OK,    OWNER, SCOPE, OK,    SCOPE, SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::ListUsers,          [OK,    ADMIN, SCOPE, SCOPE, OK,    SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  OK    ]),
    (Op::CreateUser,         [OK,    ADMIN, SCOPE, SCOPE, OK,    SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  OK    ]),
    (Op::ShowColleague,      [OK,    OWNER, SCOPE, SCOPE, OK,    SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::ShowSelf,           [OK,    OK,    OK,    OK,    OK,    OK,    OK,    OK,    OK,    DEAD,  DEAD,  OK    ]),
    (Op::PatchUser,          [OK,    ADMIN, SCOPE, SCOPE, OK,    SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::DisableUser,        [OK,    ADMIN, SCOPE, SCOPE, OK,    SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::EnableUser,         [OK,    ADMIN, SCOPE, SCOPE, OK,    SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::UnlockUser,         [OK,    ADMIN, SCOPE, SCOPE, OK,    SCOPE, SCOPE, OK,    SCOPE, DEAD,  DEAD,  HIDDEN]),
    (Op::SetPolicy,          [OK,    ADMIN, SCOPE, SCOPE, SCOPE, OK,    SCOPE, OK,    SCOPE, DEAD,  DEAD,  OK    ]),
    (Op::ReadAudit,          [OK,    ADMIN, SCOPE, SCOPE, SCOPE, SCOPE, OK,    OK,    SCOPE, DEAD,  DEAD,  OK    ]),
    (Op::ListTrustedIssuers, [OK,    ADMIN, SCOPE, SCOPE, SCOPE, OK,    SCOPE, OK,    SCOPE, DEAD,  DEAD,  OK    ]),
    (Op::TrustIssuer,        [OK,    ADMIN, SCOPE, SCOPE, SCOPE, OK,    SCOPE, OK,    SCOPE, DEAD,  DEAD,  OK    ]),
];

struct Principal {
    cred: Cred,
    /// The user the credential acts as.
    user_id: String,
    /// A key of that user (the credential's own, where it is a key).
    own_key: String,
}

struct Fixture {
    /// The first company; its user is admin A1, its key A1's full key.
    acme: Integration,
    /// A1's session: arranges targets (and is the first principal).
    admin_session: String,
    principals: Vec<Principal>,
    colleague_id: String,
    colleague_key: String,
    member_key: String,
}

async fn fixture(app: &TestApp) -> Fixture {
    // Acme. A1 is the integration's admin; its key (no scopes) is the full key.
    let acme = app.integration("admin", GRANTABLE).await;
    let a1 = &acme.user;
    let admin_session = app.session_for(&a1.email, PASSWORD).await;
    // Owners are spread so nobody passes the limit of 3 active keys, counting
    // the keys the CreateKey row makes.
    let member = app
        .user(&acme.tenant, "member@acme.io", "member", GRANTABLE)
        .await;
    let member_session = app.session_for(&member.email, PASSWORD).await;
    let member_key = app.key(&member.email, None).await.key.client_id.clone();
    let colleague = app
        .user(&acme.tenant, "colleague@acme.io", "member", GRANTABLE)
        .await;
    let colleague_key = app.key(&colleague.email, None).await.key.client_id.clone();

    // A2 holds the reports:read and keys:manage keys; A5 the admin-scope keys.
    let a2 = app
        .user(&acme.tenant, "a2@acme.io", "admin", GRANTABLE)
        .await;
    let a2_session = app.session_for(&a2.email, PASSWORD).await;
    let (_, k_read) = create_key_http(app, &a2_session, Some(&["reports:read"])).await;
    let (k_keys_id, k_keys) = create_key_http(app, &a2_session, Some(&["keys:manage"])).await;
    let a5 = app
        .user(&acme.tenant, "a5@acme.io", "admin", GRANTABLE)
        .await;
    let a5_session = app.session_for(&a5.email, PASSWORD).await;
    let (k_users_id, k_users) = create_key_http(app, &a5_session, Some(&["users:manage"])).await;
    let (_, k_tenant) = create_key_http(app, &a5_session, Some(&["tenant:manage"])).await;
    let (_, k_audit) = create_key_http(app, &a5_session, Some(&["audit:read"])).await;

    // A token narrowed to reports:read from A1's full key.
    let t_read = app
        .narrowed_token(acme.client_id(), acme.secret(), Some("reports:read"))
        .await;

    // A3's key L (not the webhook signer, so today's server lets it go too):
    // its token is taken, then A1 revokes L.
    let a3 = app
        .user(&acme.tenant, "a3@acme.io", "admin", GRANTABLE)
        .await;
    let a3_key = app.key(&a3.email, None).await.key.client_id.clone();
    let l = app.key(&a3.email, None).await;
    let t_revoked = app
        .narrowed_token(&l.key.client_id, l.secret.expose(), None)
        .await;
    let revoked = app
        .post(
            &format!("/api/v1/keys/{}/revoke", l.key.client_id),
            &admin_session,
        )
        .await;
    assert_eq!(revoked.status(), 200, "setup: revoking L");

    // A4's token is taken, then A1 disables A4.
    let a4 = app
        .user(&acme.tenant, "a4@acme.io", "admin", GRANTABLE)
        .await;
    let k4 = app.key(&a4.email, None).await;
    let t_disabled = app
        .narrowed_token(&k4.key.client_id, k4.secret.expose(), None)
        .await;
    let disabled = app
        .post(&format!("/api/v1/users/{}/disable", a4.id), &admin_session)
        .await;
    let disabled_status = disabled.status();
    assert_eq!(
        disabled_status,
        200,
        "setup: disabling A4: {}",
        disabled.text().await.unwrap_or_default()
    );

    // Globex: an admin of another company.
    let globex = app.integration("admin", GRANTABLE).await;
    let globex_session = app.session_for(&globex.user.email, PASSWORD).await;

    let bearer = |s: &str| Cred::Bearer(s.to_owned());
    let key = |s: &str| Cred::ApiKey(s.to_owned());
    let principals = vec![
        Principal {
            cred: bearer(&admin_session),
            user_id: a1.id.clone(),
            own_key: acme.client_id().to_owned(),
        },
        Principal {
            cred: bearer(&member_session),
            user_id: member.id.clone(),
            own_key: member_key.clone(),
        },
        Principal {
            cred: key(&k_read),
            user_id: a2.id.clone(),
            own_key: k_keys_id.clone(),
        },
        Principal {
            cred: key(&k_keys),
            user_id: a2.id.clone(),
            own_key: k_keys_id.clone(),
        },
        Principal {
            cred: key(&k_users),
            user_id: a5.id.clone(),
            own_key: k_users_id.clone(),
        },
        Principal {
            cred: key(&k_tenant),
            user_id: a5.id.clone(),
            own_key: k_users_id.clone(),
        },
        Principal {
            cred: key(&k_audit),
            user_id: a5.id.clone(),
            own_key: k_users_id.clone(),
        },
        Principal {
            cred: key(acme.secret()),
            user_id: a1.id.clone(),
            own_key: acme.client_id().to_owned(),
        },
        Principal {
            cred: bearer(&t_read),
            user_id: a1.id.clone(),
            own_key: acme.client_id().to_owned(),
        },
        Principal {
            cred: bearer(&t_revoked),
            user_id: a3.id.clone(),
            own_key: a3_key.clone(),
        },
        Principal {
            cred: bearer(&t_disabled),
            user_id: a4.id.clone(),
            own_key: k4.key.client_id.clone(),
        },
        Principal {
            cred: bearer(&globex_session),
            user_id: globex.user.id.clone(),
            own_key: globex.client_id().to_owned(),
        },
    ];
    assert_eq!(principals.len(), PRINCIPALS.len());
    Fixture {
        colleague_id: colleague.id.clone(),
        colleague_key,
        member_key,
        acme,
        admin_session,
        principals,
    }
}

/// A fresh Acme member holding two keys; returns the second (active, not the
/// webhook signer), so revoking or deleting it meets no other rule.
async fn fresh_key(app: &TestApp, fx: &Fixture, n: usize) -> String {
    let email = format!("key-owner-{n}@acme.io");
    app.user(&fx.acme.tenant, &email, "member", GRANTABLE).await;
    app.key(&email, None).await;
    app.key(&email, None).await.key.client_id.clone()
}

async fn fresh_user(app: &TestApp, fx: &Fixture, n: usize) -> String {
    let email = format!("subject-{n}@acme.io");
    app.user(&fx.acme.tenant, &email, "member", GRANTABLE)
        .await
        .id
        .clone()
}

/// The request for one row; `n` makes the row's fresh targets unique.
async fn prepare(
    app: &TestApp,
    fx: &Fixture,
    op: Op,
    who: &Principal,
    n: usize,
) -> (Method, String, Option<Value>) {
    match op {
        Op::ListKeys => (Method::GET, "/api/v1/keys".into(), None),
        Op::CreateKey => (
            Method::POST,
            "/api/v1/keys".into(),
            Some(json!({"name": format!("row {n}")})),
        ),
        Op::ShowColleaguesKey => (
            Method::GET,
            format!("/api/v1/keys/{}", fx.colleague_key),
            None,
        ),
        Op::ShowMembersOwnKey => (Method::GET, format!("/api/v1/keys/{}", fx.member_key), None),
        Op::ColleaguesKeyUsage => (
            Method::GET,
            format!("/api/v1/keys/{}/usage", fx.colleague_key),
            None,
        ),
        Op::MembersOwnKeyUsage => (
            Method::GET,
            format!("/api/v1/keys/{}/usage", fx.member_key),
            None,
        ),
        Op::CompanyUsage => (Method::GET, "/api/v1/usage".into(), None),
        Op::RevokeKey => {
            let key = fresh_key(app, fx, n).await;
            (Method::POST, format!("/api/v1/keys/{key}/revoke"), None)
        }
        Op::MarkWebhookSigning => {
            let key = fresh_key(app, fx, n).await;
            (
                Method::POST,
                format!("/api/v1/keys/{key}/webhook-signing"),
                None,
            )
        }
        Op::DeleteKey => {
            let key = fresh_key(app, fx, n).await;
            (
                Method::DELETE,
                format!("/api/v1/keys/{key}"),
                Some(json!({"confirm": format!("delete {key}")})),
            )
        }
        Op::ChangeKey => {
            let key = fresh_key(app, fx, n).await;
            (
                Method::PATCH,
                format!("/api/v1/keys/{key}"),
                Some(json!({"labels": {"env": "prod"}})),
            )
        }
        Op::DisableKey => {
            let key = fresh_key(app, fx, n).await;
            (Method::POST, format!("/api/v1/keys/{key}/disable"), None)
        }
        Op::EnableKey => {
            let key = fresh_key(app, fx, n).await;
            // Disabled first by A1, so enabling has something to do.
            app.post(&format!("/api/v1/keys/{key}/disable"), &fx.admin_session)
                .await;
            (Method::POST, format!("/api/v1/keys/{key}/enable"), None)
        }
        Op::RollOthersKey => {
            let key = fresh_key(app, fx, n).await;
            (Method::POST, format!("/api/v1/keys/{key}/roll"), None)
        }
        Op::ListPublicKeys => (
            Method::GET,
            format!("/api/v1/keys/{}/public-keys", fx.colleague_key),
            None,
        ),
        Op::AddPublicKey => {
            let key = fresh_key(app, fx, n).await;
            (
                Method::POST,
                format!("/api/v1/keys/{key}/public-keys"),
                Some(public_jwk()),
            )
        }
        Op::AddPublicKeyToOwnKey => (
            Method::POST,
            format!("/api/v1/keys/{}/public-keys", who.own_key),
            Some(public_jwk()),
        ),
        Op::RemovePublicKey => {
            let key = fresh_key(app, fx, n).await;
            let thumbprint = keyport::service::public_keys::add_public_key(
                &app.service(),
                &keyport::domain::Principal::operator(),
                &key,
                &public_jwk(),
            )
            .await
            .expect("a public key to remove")
            .thumbprint;
            (
                Method::DELETE,
                format!("/api/v1/keys/{key}/public-keys/{thumbprint}"),
                None,
            )
        }
        Op::ListUsers => (Method::GET, "/api/v1/users".into(), None),
        Op::CreateUser => (
            Method::POST,
            "/api/v1/users".into(),
            Some(json!({
                "email": format!("new-{n}@acme.io"),
                "role": "member",
                "permissions": ["reports:read"],
            })),
        ),
        Op::ShowColleague => (
            Method::GET,
            format!("/api/v1/users/{}", fx.colleague_id),
            None,
        ),
        Op::ShowSelf => (Method::GET, format!("/api/v1/users/{}", who.user_id), None),
        Op::PatchUser => {
            let id = fresh_user(app, fx, n).await;
            (
                Method::PATCH,
                format!("/api/v1/users/{id}"),
                Some(json!({"permissions": ["reports:read"]})),
            )
        }
        Op::DisableUser => {
            let id = fresh_user(app, fx, n).await;
            (Method::POST, format!("/api/v1/users/{id}/disable"), None)
        }
        Op::EnableUser => {
            let id = fresh_user(app, fx, n).await;
            // Disabled first by A1, so enabling has something to do.
            app.post(&format!("/api/v1/users/{id}/disable"), &fx.admin_session)
                .await;
            (Method::POST, format!("/api/v1/users/{id}/enable"), None)
        }
        Op::UnlockUser => (
            Method::POST,
            format!("/api/v1/users/{}/unlock", fx.colleague_id),
            None,
        ),
        // `false` is the default: setting it changes nothing the other rows
        // depend on (`true` would end sessions of users holding keys).
        Op::SetPolicy => (
            Method::PUT,
            "/api/v1/tenant/policy".into(),
            Some(json!({"api_only_users": false})),
        ),
        Op::ReadAudit => (Method::GET, "/api/v1/audit".into(), None),
        Op::ListTrustedIssuers => (Method::GET, "/api/v1/trusted-issuers".into(), None),
        // A fresh audience per row: one issuer is trusted once per audience.
        Op::TrustIssuer => (
            Method::POST,
            "/api/v1/trusted-issuers".into(),
            Some(json!({
                "issuer": "https://token.actions.example.com",
                "jwks_url": "http://127.0.0.1:9/jwks.json",
                "audience": format!("row-{n}"),
            })),
        ),
    }
}

/// A fresh public key, as a JWK.
fn public_jwk() -> Value {
    let (key, _) = keyport::tokens::SigningKey::generate(keyport::tokens::SigningAlgorithm::Es256)
        .expect("a key pair");
    serde_json::to_value(&key.jwk).expect("a JWK")
}

fn answer_fits(want: Want, status: u16, error: Option<&str>) -> bool {
    match want {
        Want::Success => (200..300).contains(&status),
        Want::Scope => status == 403 && error == Some("insufficient_scope"),
        Want::Owner => status == 403 && error == Some("forbidden"),
        Want::Admin => {
            status == 403 && matches!(error, Some("forbidden") | Some("insufficient_scope"))
        }
        Want::Hidden => status == 404 && error == Some("not_found"),
        Want::Dead => status == 401,
    }
}

/// The whole table on one app: fixtures once, then one request per cell.
async fn every_operation_answers_every_principal_as_the_table_says(backend: Backend) {
    let app = spawn_app_with(backend, LOCAL_ISSUERS).await;
    let fx = fixture(&app).await;

    let mut failures = Vec::new();
    let mut n = 0;
    for (op, wants) in TABLE {
        for (column, (who, want)) in fx.principals.iter().zip(wants).enumerate() {
            n += 1;
            let (method, path, body) = prepare(&app, &fx, *op, who, n).await;
            let mut builder = app.request(method.clone(), &path, &who.cred);
            if let Some(body) = &body {
                builder = builder.json(body);
            }
            let response: Response = builder.sent().await;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let error = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned));
            if !answer_fits(*want, status, error.as_deref()) {
                failures.push(format!(
                    "{op:?} ({method} {path}) as {}: want {want:?}, got {status} {}",
                    PRINCIPALS[column],
                    text.chars().take(200).collect::<String>()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cells differ from the table:\n{}",
        failures.len(),
        n,
        failures.join("\n")
    );
}

/// Admins hold the admin scopes implicitly, and a key that names no scopes
/// inherits them; a key that names its scopes holds only those; members never
/// hold admin scopes. Discovery lists all six.
async fn admin_scopes_are_implicit_for_admins_and_listed_in_discovery(backend: Backend) {
    let app = spawn_app(backend).await;

    let discovery = json_body(app.get("/.well-known/oauth-authorization-server").await).await;
    let supported: Vec<&str> = discovery["scopes_supported"]
        .as_array()
        .expect("scopes_supported")
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for scope in GRANTABLE.split(' ').chain(ADMIN_SCOPES) {
        assert!(
            supported.contains(&scope),
            "{scope} missing from {supported:?}"
        );
    }

    // An admin's key created with no scopes: its token carries all six.
    let admin = app.integration("admin", GRANTABLE).await;
    let full = app.token_for(&admin).await;
    let whoami = app.get_json("/api/v1/whoami", &full).await;
    let scope = whoami["scope"].as_str().unwrap().to_owned();
    for wanted in GRANTABLE.split(' ').chain(ADMIN_SCOPES) {
        assert!(
            scope.split(' ').any(|s| s == wanted),
            "{wanted} missing from {scope:?}"
        );
    }

    // The same admin's key scoped reports:read (made over HTTP) holds only that.
    let session = app.session_for(&admin.user.email, PASSWORD).await;
    let (client_id, secret) = create_key_http(&app, &session, Some(&["reports:read"])).await;
    let narrow = app.narrowed_token(&client_id, &secret, None).await;
    let whoami = app.get_json("/api/v1/whoami", &narrow).await;
    assert_eq!(whoami["scope"], "reports:read");

    // A member's key never carries an admin scope, and cannot ask for one.
    let member = app.integration("member", GRANTABLE).await;
    let member_token = app.token_for(&member).await;
    let whoami = app.get_json("/api/v1/whoami", &member_token).await;
    let scope = whoami["scope"].as_str().unwrap();
    for admin_scope in ADMIN_SCOPES {
        assert!(
            !scope.split(' ').any(|s| s == admin_scope),
            "member holds {admin_scope}"
        );
    }
    let member_session = app.session_for(&member.user.email, PASSWORD).await;
    let asked = app
        .api(Method::POST, "/api/v1/keys", &member_session)
        .json(&json!({"name": "escalate", "scopes": ["users:manage"]}))
        .sent()
        .await;
    assert_eq!(asked.status(), 422, "a member asked for an admin scope");
}

/// An admin's key scoped reports:read (x-api-key), and a token narrowed to
/// reports:read from the admin's full key, pass no admin check: the
/// credential's scopes count, not only the owner's role.
async fn a_reports_read_key_or_token_of_an_admin_gets_no_management_rights(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let full = app.key(&acme.admin.email, None).await;
    let reader = app.key(&acme.admin.email, Some("reports:read")).await;
    let ana = acme.employ(&app, "ana", "member", GRANTABLE).await;
    app.key(&ana.email, None).await;
    let other = app.key(&ana.email, None).await.key.client_id.clone();
    let narrowed = app
        .narrowed_token(
            &full.key.client_id,
            full.secret.expose(),
            Some("reports:read"),
        )
        .await;

    let operations = [
        (Method::GET, "/api/v1/users".to_owned(), None),
        (Method::GET, "/api/v1/audit".to_owned(), None),
        (
            Method::POST,
            format!("/api/v1/users/{}/unlock", ana.id),
            None,
        ),
        (
            Method::PUT,
            "/api/v1/tenant/policy".to_owned(),
            Some(json!({"api_only_users": true})),
        ),
        (Method::POST, format!("/api/v1/keys/{other}/revoke"), None),
        (
            Method::DELETE,
            format!("/api/v1/keys/{other}"),
            Some(json!({"confirm": format!("delete {other}")})),
        ),
        (
            Method::POST,
            format!("/api/v1/keys/{other}/webhook-signing"),
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (label, cred) in [
        (
            "x-api-key scoped reports:read",
            Cred::ApiKey(reader.secret.expose().to_owned()),
        ),
        ("token narrowed to reports:read", Cred::Bearer(narrowed)),
    ] {
        assert_eq!(whoami_status(&app, &cred).await, 200, "{label} is live");
        for (method, path, body) in &operations {
            let mut builder = app.request(method.clone(), path, &cred);
            if let Some(body) = body {
                builder = builder.json(body);
            }
            let (status, text) = status_and_text(builder.sent().await).await;
            let error = serde_json::from_str::<Value>(&text).unwrap_or_default()["error"].clone();
            if status != 403 || error != "insufficient_scope" {
                failures.push(format!("{label}: {method} {path} → {status} {text}"));
            }
        }
    }
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));
    let target = app
        .get_json(&format!("/api/v1/keys/{other}"), &acme.admin_session)
        .await;
    assert_eq!(target["status"], "active");
    assert_eq!(target["signs_webhooks"], false);
}

/// A token of key L, L revoked afterwards: the token manages no keys from
/// then on, though it has not expired.
async fn a_token_of_a_revoked_key_cannot_create_keys(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let ana = acme.employ(&app, "ana", "member", GRANTABLE).await;
    app.key(&ana.email, None).await; // signs webhooks, so L may be revoked
    let l = app.key(&ana.email, None).await;
    let t = app
        .narrowed_token(&l.key.client_id, l.secret.expose(), None)
        .await;
    acme.act_on(&app, &format!("/api/v1/keys/{}", l.key.client_id), "revoke")
        .await;

    let created = create_key_as(&app, &Cred::Bearer(t), json!({"name": "after revoke"})).await;

    assert_eq!(created.status(), 401);
    assert_eq!(
        keys_of(&app, &acme.admin_session, &ana.email).await.len(),
        2,
        "a key was created"
    );
}

/// A disabled admin's token, issued before the disable, tried to change the
/// tenant policy.
async fn a_disabled_admins_earlier_token_cannot_change_the_policy(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let bea = acme.employ(&app, "bea", "admin", GRANTABLE).await;
    let key = app.key(&bea.email, None).await;
    let t = app
        .narrowed_token(&key.key.client_id, key.secret.expose(), None)
        .await;
    acme.act_on(&app, &format!("/api/v1/users/{}", bea.id), "disable")
        .await;

    let policy = app
        .api(Method::PUT, "/api/v1/tenant/policy", &t)
        .json(&json!({"api_only_users": true}))
        .sent()
        .await;

    assert_eq!(policy.status(), 401);
    let changes = audit_events(
        &app,
        &acme.admin_session,
        &[("action", "tenant.set_policy")],
    )
    .await;
    assert!(changes.is_empty(), "the policy changed: {changes:?}");
}

/// A token issued while its owner held keys:manage, used after an admin
/// withdrew it (PATCH permissions to reports:read only).
async fn a_token_issued_before_keys_manage_was_withdrawn_cannot_create_keys(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let ana = acme.employ(&app, "ana", "member", GRANTABLE).await;
    let key = app.key(&ana.email, None).await;
    let t = app
        .narrowed_token(&key.key.client_id, key.secret.expose(), None)
        .await;
    let patched = app
        .api(
            Method::PATCH,
            &format!("/api/v1/users/{}", ana.id),
            &acme.admin_session,
        )
        .json(&json!({"permissions": ["reports:read"]}))
        .sent()
        .await;
    assert_eq!(patched.status(), 200, "withdraw keys:manage");

    let created = create_key_as(&app, &Cred::Bearer(t), json!({"name": "stale grant"})).await;

    let status = created.status().as_u16();
    assert!(status == 403 || status == 401, "got {status}");
    assert_eq!(
        keys_of(&app, &acme.admin_session, &ana.email).await.len(),
        1,
        "a key was created"
    );
}

crate::on_both_backends!(
    every_operation_answers_every_principal_as_the_table_says,
    admin_scopes_are_implicit_for_admins_and_listed_in_discovery,
    a_reports_read_key_or_token_of_an_admin_gets_no_management_rights,
    a_token_of_a_revoked_key_cannot_create_keys,
    a_disabled_admins_earlier_token_cannot_change_the_policy,
    a_token_issued_before_keys_manage_was_withdrawn_cannot_create_keys,
);
