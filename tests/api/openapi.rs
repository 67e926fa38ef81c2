//! `GET /openapi.json`: it documents exactly the routes the app registers
//! (`keyport::routes::ROUTES`, the table `configure` registers), and
//! schemathesis, driven by that document against a running server, finds no
//! 5xx and no response that violates the document.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use keyport::routes::ROUTES;
use keyport::routes::error::OAuthErrorCode;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::Sent as _;
use crate::helpers::{Backend, TestApp, json_body, spawn_app, spawn_app_with, succeeded};

const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn fetch_document(app: &TestApp) -> Value {
    let response = app.client.get(app.url("/openapi.json")).sent().await;
    assert_eq!(response.status(), 200, "GET /openapi.json");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    json_body(response).await
}

/// (path template, lower-case method) of every operation in the document.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("`paths` is an object");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("a path item is an object");
            item.keys()
                .filter(|key| HTTP_METHODS.contains(&key.as_str()))
                .map(|method| (path.clone(), method.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// (path template, lower-case method) of every operation the app registers.
fn registered_operations() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|route| {
            (
                route.path.to_owned(),
                route.method.as_str().to_ascii_lowercase(),
            )
        })
        .collect()
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    documented_operations(doc)
        .into_iter()
        .map(|(path, method)| {
            let operation = &doc["paths"][&path][&method];
            (path, method, operation)
        })
        .collect()
}

/// Every route `configure` registers is in the document with exactly its
/// methods, and the document describes nothing the app does not serve.
#[tokio::test]
async fn every_registered_route_is_documented_with_its_methods() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = fetch_document(&app).await;

    let registered = registered_operations();
    assert_eq!(
        registered.len(),
        ROUTES.len(),
        "ROUTES lists an operation twice"
    );
    let documented = documented_operations(&doc);
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "registered but not in GET /openapi.json (add #[utoipa::path] to the handler and list it \
         in src/routes/openapi.rs): {undocumented:?}\n\
         documented but not registered in keyport::routes::ROUTES: {unserved:?}"
    );
    for expected in [
        ("/openapi.json", "get"),
        ("/oauth/token", "post"),
        ("/api/v1/session", "delete"),
        ("/api/v1/keys/{id}", "delete"),
        ("/api/v1/tenant/policy", "put"),
    ] {
        assert!(
            registered.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} is not registered"
        );
    }
}

/// `ROUTES` is what the server answers: each of its operations reaches a
/// handler (no 405, no "no endpoint" 404), and other methods on its paths
/// answer 405.
#[tokio::test]
async fn the_route_table_is_what_the_server_serves() {
    let app = spawn_app(Backend::Sqlite).await;
    let paths: BTreeSet<&str> = ROUTES.iter().map(|r| r.path).collect();
    for path in paths {
        let concrete = path
            .replace("{collection}", "orders")
            .replace("{record_id}", &Uuid::new_v4().to_string())
            .replace("{delivery_id}", &Uuid::new_v4().to_string())
            .replace("{rule_id}", "kpx_00000000000000000000000000000000")
            .replace("{thumbprint}", "thumbprint")
            .replace("{id}", "some-id");
        assert!(!concrete.contains('{'), "unfilled parameter in {path}");
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let served = ROUTES
                .iter()
                .any(|r| r.path == path && r.method.as_str() == method);
            let response = app
                .client
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    app.url(&concrete),
                )
                .sent()
                .await;
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            if served {
                assert_ne!(status, 405, "{method} {concrete} is in ROUTES: {body}");
                assert!(
                    !body.contains("no endpoint at"),
                    "{method} {concrete} is in ROUTES but no route matched: {body}"
                );
            } else {
                assert_eq!(status, 405, "{method} {concrete} is not in ROUTES: {body}");
            }
        }
    }
}

#[tokio::test]
async fn the_documented_oauth_error_codes_are_exactly_those_the_token_endpoint_answers() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = fetch_document(&app).await;
    let codes = &doc["components"]["schemas"]["OAuthErrorCode"];
    assert_eq!(codes["type"], "string", "{codes}");
    let documented: Vec<&str> = codes["enum"]
        .as_array()
        .expect("the codes are an enum")
        .iter()
        .map(|code| code.as_str().expect("a code is a string"))
        .collect();
    let answered: Vec<&str> = OAuthErrorCode::ALL
        .iter()
        .map(|code| code.as_str())
        .collect();
    assert_eq!(documented, answered);
    assert!(documented.contains(&"use_dpop_nonce"), "{documented:?}");
    assert_eq!(
        doc["components"]["schemas"]["OAuthError"]["properties"]["error"]["$ref"],
        "#/components/schemas/OAuthErrorCode"
    );
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_the_issuer_as_server_and_the_security_schemes() {
    let issuer = "https://keyport.example.com";
    let app = spawn_app_with(Backend::Sqlite, &[("KEYPORT_ISSUER", issuer)]).await;
    let doc = fetch_document(&app).await;

    let version = doc["openapi"].as_str().expect("`openapi` is a string");
    assert!(version.starts_with("3.1"), "openapi {version}");
    assert_eq!(doc["servers"], json!([{ "url": issuer }]));
    assert_eq!(doc["info"]["title"], "Keyport");

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["clientBasic"]["type"], "http", "{schemes:#}");
    assert_eq!(schemes["clientBasic"]["scheme"], "basic", "{schemes:#}");
    assert_eq!(schemes["bearer"]["type"], "http", "{schemes:#}");
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes:#}");
    assert_eq!(schemes["apiKey"]["type"], "apiKey", "{schemes:#}");
    assert_eq!(schemes["apiKey"]["in"], "header", "{schemes:#}");
    assert_eq!(schemes["apiKey"]["name"], "x-api-key", "{schemes:#}");

    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["ApiError"]["required"],
        json!(["error", "message"]),
        "{:#}",
        schemas["ApiError"]
    );
    assert_eq!(
        schemas["OAuthError"]["required"],
        json!(["error", "error_description"]),
        "{:#}",
        schemas["OAuthError"]
    );
}

/// Each operation names its authentication and documents its errors; request
/// bodies are forms at /oauth/* and JSON elsewhere; operation ids are unique.
#[tokio::test]
async fn operations_document_their_auth_bodies_and_errors() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = fetch_document(&app).await;
    let public = [
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/readyz", "get"),
        ("/openapi.json", "get"),
        ("/.well-known/oauth-authorization-server", "get"),
        ("/.well-known/jwks.json", "get"),
        ("/api/v1/session", "post"),
        // The one-time set-password token is the credential, in the body.
        ("/api/v1/password", "post"),
    ];
    let mut operation_ids = BTreeSet::new();
    for (path, method, operation) in operations(&doc) {
        let at = format!("{} {path}", method.to_uppercase());
        let id = operation["operationId"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{at}: no operationId");
        assert!(
            operation_ids.insert(id.to_owned()),
            "{at}: operationId {id} is repeated"
        );
        let responses = operation["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{at}: no success response"
        );
        let security = &operation["security"];
        if path.starts_with("/oauth/") {
            assert_eq!(security, &json!([{ "clientBasic": [] }]), "{at}");
            for status in ["400", "401", "413", "429", "503"] {
                assert_eq!(
                    responses[status]["$ref"],
                    json!(format!(
                        "#/components/responses/{}",
                        match status {
                            "400" => "OAuthBadRequest",
                            "401" => "OAuthInvalidClient",
                            "413" => "OAuthPayloadTooLarge",
                            "429" => "OAuthThrottled",
                            _ => "OAuthUnavailable",
                        }
                    )),
                    "{at}: {status}"
                );
            }
            let content = operation["requestBody"]["content"]
                .as_object()
                .unwrap_or_else(|| panic!("{at}: no request body"));
            assert!(
                content.contains_key("application/x-www-form-urlencoded"),
                "{at}: {content:?}"
            );
        } else if public.contains(&(path.as_str(), method.as_str())) {
            assert!(security.is_null(), "{at} is public: {security}");
        } else {
            let schemes: Vec<&str> = security
                .as_array()
                .unwrap_or_else(|| panic!("{at}: no security"))
                .iter()
                .flat_map(|requirement| requirement.as_object().unwrap().keys())
                .map(String::as_str)
                .collect();
            assert!(schemes.contains(&"bearer"), "{at}: {schemes:?}");
            assert!(
                responses.contains_key("401"),
                "{at}: a protected operation without 401"
            );
        }
        if !path.starts_with("/oauth/")
            && let Some(content) = operation["requestBody"]["content"].as_object()
        {
            assert!(
                content.keys().all(|media| media == "application/json"),
                "{at}: {content:?}"
            );
            assert!(
                responses.contains_key("415"),
                "{at}: a JSON body without 415"
            );
            assert!(responses.contains_key("413"), "{at}: a body without 413");
        }
    }

    // Every `$ref` resolves inside the document.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {reference}"));
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {reference}");
    }
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => refs.push(target.clone()),
                    _ => collect_refs(value, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
        _ => {}
    }
}

/// `.venv/bin/schemathesis` (installed by `scripts/test` from
/// tests/clients/requirements.txt), or `KEYPORT_TEST_SCHEMATHESIS`. Missing
/// both is a failure, never a skip.
fn schemathesis_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KEYPORT_TEST_SCHEMATHESIS").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/schemathesis");
    assert!(
        venv.exists(),
        "schemathesis is not installed: {} does not exist. Run `scripts/test`, which installs \
         tests/clients/requirements.txt into .venv (or: python3 -m venv .venv && \
         .venv/bin/pip install -r tests/clients/requirements.txt), or set KEYPORT_TEST_SCHEMATHESIS",
        venv.display()
    );
    venv
}

/// A fixed seed keeps CI reproducible; `KEYPORT_SCHEMATHESIS_SEED=random`
/// explores new inputs, any other value replays that seed.
fn schemathesis_seed() -> Option<String> {
    match std::env::var("KEYPORT_SCHEMATHESIS_SEED") {
        Ok(seed) if seed == "random" => None,
        Ok(seed) if !seed.is_empty() => Some(seed),
        _ => Some("20261122".to_owned()),
    }
}

async fn schemathesis_finds_no_server_error_and_no_schema_violation(backend: Backend) {
    let schemathesis = schemathesis_binary();
    let app = spawn_app(backend).await;
    let integration = app
        .integration("admin", "reports:read webhooks:write keys:manage")
        .await;
    let token = app.token_for(&integration).await;
    // Records to read, so the report endpoints answer 200 as well as 404.
    let pushed = app
        .push(
            &token,
            "orders",
            &json!([{ "order": 1, "total": 9.5 }, { "order": 2, "total": 12 }]),
            None,
        )
        .await;
    assert_eq!(pushed.status(), 201, "the setup push failed");

    let work =
        std::env::temp_dir().join(format!("keyport_schemathesis_{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work).expect("schemathesis work directory");
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/schemathesis.toml");
    let mut command = tokio::process::Command::new(&schemathesis);
    command
        .arg("--no-color")
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(app.url("/openapi.json"))
        // The document's server is the configured issuer; test the app here.
        .args(["--url", &app.address])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--max-examples", "20"])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "10"]);
    if let Some(seed) = schemathesis_seed() {
        command.args(["--seed", &seed]);
    }
    let started = Instant::now();
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        command
            // Credentials go through the environment (tests/clients/schemathesis.toml).
            .env("KEYPORT_ST_CLIENT_ID", integration.client_id())
            .env("KEYPORT_ST_CLIENT_SECRET", integration.secret())
            .env("KEYPORT_ST_ACCESS_TOKEN", &token)
            .env("NO_COLOR", "1")
            .current_dir(&work)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("schemathesis finished within 300 s")
    .unwrap_or_else(|e| panic!("cannot run {} ({e})", schemathesis.display()));
    let elapsed = started.elapsed();
    let _ = std::fs::remove_dir_all(&work);

    let (stdout, _) = succeeded(
        &output,
        &format!("schemathesis on {backend:?} (after {elapsed:.1?})"),
    );
    // It really ran: every operation was tested, but for GET /openapi.json
    // itself, which schemathesis leaves out (it is the document's location).
    let operations = registered_operations().len() - 1;
    assert!(
        stdout.contains(&format!("Tested: {operations}\n")),
        "schemathesis did not test {operations} operations:\n{stdout}"
    );
    eprintln!("schemathesis on {backend:?}: passed in {elapsed:.1?}");
}

/// Found while checking the document: PostgreSQL refuses a NUL character in
/// text, which used to answer 500 there. Now 400 on PostgreSQL; SQLite stores
/// and compares such text, so it answers as for any unknown value.
async fn a_nul_character_in_a_parameter_is_not_a_server_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let integration = app
        .integration("admin", "reports:read webhooks:write keys:manage")
        .await;
    let token = app.token_for(&integration).await;
    for (method, path) in [
        (Method::GET, "/api/v1/keys/a%00b"),
        (Method::DELETE, "/api/v1/keys/a%00b"),
        (Method::POST, "/api/v1/keys/a%00b/revoke"),
        (Method::POST, "/api/v1/keys/a%00b/webhook-signing"),
        (Method::POST, "/api/v1/users/a%00b/unlock"),
        (Method::GET, "/api/v1/audit?action=a%00b"),
        (Method::GET, "/api/v1/audit?actor=a%00b&target=a%00b"),
        (Method::GET, "/api/v1/reports/orders/a%00b"),
    ] {
        let response = app.api(method.clone(), path, &token).sent().await;
        let status = response.status();
        let body = json_body(response).await;
        assert!(
            !status.is_server_error(),
            "{method} {path} on {backend:?}: {status} {body}"
        );
        if backend == Backend::Postgres && !path.starts_with("/api/v1/reports/") {
            assert_eq!(status, 400, "{method} {path}: {body}");
            assert_eq!(body["error"], "invalid_request", "{method} {path}: {body}");
        }
    }
}

crate::on_both_backends!(
    schemathesis_finds_no_server_error_and_no_schema_violation,
    a_nul_character_in_a_parameter_is_not_a_server_error,
);
