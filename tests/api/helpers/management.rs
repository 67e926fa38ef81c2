//! Reads and writes through the management API that many areas check
//! against: the audit trail, the user and key listings, whoami, and key
//! creation with any credential.

use reqwest::{Method, Response};
use serde_json::Value;

use super::{Cred, Sent as _, TestApp, json_body};

/// Every audit event matching `filters`, following `next_cursor`.
pub async fn audit_events(app: &TestApp, session: &str, filters: &[(&str, &str)]) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query: Vec<(&str, &str)> = filters.to_vec();
        query.push(("limit", "500"));
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let path = format!(
            "/api/v1/audit?{}",
            serde_urlencoded::to_string(&query).unwrap()
        );
        let response = app.call(Method::GET, &path, session).await;
        assert_eq!(response.status(), 200, "audit read refused");
        let page = json_body(response).await;
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return events,
        }
    }
}

/// The rows of GET /api/v1/`what` (users, keys) whose `field` is `email`,
/// as `session` sees them.
async fn rows_of(app: &TestApp, session: &str, what: &str, field: &str, email: &str) -> Vec<Value> {
    let listing = app.get_json(&format!("/api/v1/{what}"), session).await;
    let rows = listing[what].as_array().expect(what);
    rows.iter()
        .filter(|row| row[field] == email)
        .cloned()
        .collect()
}

/// The row of `email` in GET /api/v1/users.
pub async fn user_row(app: &TestApp, session: &str, email: &str) -> Value {
    let rows = rows_of(app, session, "users", "email", email).await;
    rows.into_iter()
        .next()
        .unwrap_or_else(|| panic!("{email} not listed"))
}

/// The keys of `email` in GET /api/v1/keys, as `session` sees them.
pub async fn keys_of(app: &TestApp, session: &str, email: &str) -> Vec<Value> {
    rows_of(app, session, "keys", "owner_email", email).await
}

/// The status GET /api/v1/whoami answers `cred`: 200 while it is live.
pub async fn whoami_status(app: &TestApp, cred: &Cred) -> u16 {
    app.request(Method::GET, "/api/v1/whoami", cred)
        .sent()
        .await
        .status()
        .as_u16()
}

/// `POST /api/v1/keys` with `body`, presenting `cred`, whatever the answer.
pub async fn create_key_as(app: &TestApp, cred: &Cred, body: Value) -> Response {
    app.request(Method::POST, "/api/v1/keys", cred)
        .json(&body)
        .sent()
        .await
}

/// The status and text of a response (empty when it has none).
pub async fn status_and_text(response: Response) -> (u16, String) {
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

/// The `name` of each of `body["keys"]` (a key listing or a usage report),
/// sorted.
pub fn key_names(body: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = body["keys"]
        .as_array()
        .expect("a list of keys")
        .iter()
        .map(|k| k["name"].as_str().expect("a name").to_owned())
        .collect();
    names.sort();
    names
}
