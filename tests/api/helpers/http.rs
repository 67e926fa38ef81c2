//! Calls over HTTP: tokens, pushes and pulls, sessions, and management
//! calls presenting a credential.

use keyport::domain::Principal;
use keyport::service::keys::CreatedKey;
use reqwest::Response;
use serde_json::Value;

use super::{Integration, TestApp};

/// `send().await` for a test: the request must get an answer (any status),
/// or the test stops there.
pub trait Sent {
    fn sent(self) -> impl Future<Output = Response> + Send;
    /// The answer's JSON body, whatever the status.
    fn sent_json<T: serde::de::DeserializeOwned>(self) -> impl Future<Output = T> + Send;
}

impl Sent for reqwest::RequestBuilder {
    async fn sent(self) -> Response {
        self.send().await.expect("the server answered")
    }

    async fn sent_json<T: serde::de::DeserializeOwned>(self) -> T {
        self.sent().await.json().await.expect("a JSON answer")
    }
}

/// A client_credentials token request to `url` (a server's `/oauth/token`)
/// through `client`, with the client ID and secret in Basic auth.
pub fn client_credentials(
    client: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    client_id: &str,
    secret: &str,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
}

impl TestApp {
    /// POST `path` (`/oauth/introspect`, `/oauth/revoke`) about `token`, as
    /// `caller`.
    pub async fn token_call(&self, path: &str, caller: &Integration, token: &str) -> Response {
        self.client
            .post(self.url(path))
            .basic_auth(caller.client_id(), Some(caller.secret()))
            .form(&[("token", token)])
            .sent()
            .await
    }

    /// A token request that must answer `status` (`why` says why it must).
    pub async fn token_answer(
        &self,
        client_id: &str,
        secret: &str,
        status: u16,
        why: &str,
    ) -> Response {
        let response = self.request_token(client_id, secret).await;
        assert_eq!(response.status(), status, "{why}");
        response
    }

    /// The status a token request for the key answers.
    pub async fn token_status(&self, client_id: &str, secret: &str) -> u16 {
        self.request_token(client_id, secret)
            .await
            .status()
            .as_u16()
    }

    /// POST `path` (`/oauth/introspect`, `/oauth/revoke`) about `token`,
    /// without client authentication.
    pub async fn anonymous_token_call(&self, path: &str, token: &str) -> Response {
        self.client
            .post(self.url(path))
            .form(&[("token", token)])
            .sent()
            .await
    }

    pub async fn request_token(&self, client_id: &str, secret: &str) -> Response {
        client_credentials(&self.client, self.url("/oauth/token"), client_id, secret)
            .sent()
            .await
    }

    /// A token request for `scope` only (space-separated).
    pub async fn request_scoped_token(
        &self,
        client_id: &str,
        secret: &str,
        scope: &str,
    ) -> Response {
        self.client
            .post(self.url("/oauth/token"))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("scope", scope)])
            .sent()
            .await
    }

    /// A token for the integration's key; panics unless the server issues one.
    pub async fn token_for(&self, integration: &Integration) -> String {
        self.token_for_key(&integration.key).await
    }

    pub async fn token_for_key(&self, key: &CreatedKey) -> String {
        let response = self
            .request_token(&key.key.client_id, key.secret.expose())
            .await;
        string_in(response, 200, "access_token").await
    }

    pub async fn push(
        &self,
        token: &str,
        collection: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> Response {
        let mut request = self
            .client
            .post(self.url(&format!("/api/v1/webhooks/{collection}")))
            .bearer_auth(token)
            .json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("push request")
    }

    pub async fn pull(&self, token: &str, collection: &str, query: &str) -> Response {
        self.client
            .get(self.url(&format!("/api/v1/reports/{collection}{query}")))
            .bearer_auth(token)
            .sent()
            .await
    }

    /// Every record id visible to `token` in `collection`, following cursors.
    pub async fn pull_all_ids(&self, token: &str, collection: &str, page: u32) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let query = match &cursor {
                Some(c) => format!("?limit={page}&cursor={c}"),
                None => format!("?limit={page}"),
            };
            let response = self.pull(token, collection, &query).await;
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.expect("page json");
            for record in body["records"].as_array().expect("records") {
                ids.push(record["id"].as_str().expect("id").to_owned());
            }
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return ids,
            }
        }
    }
}

impl TestApp {
    pub async fn set_password(&self, email: &str, password: &str) {
        keyport::service::sessions::set_password(
            &self.service(),
            &Principal::operator(),
            email,
            password,
        )
        .await
        .expect("set password");
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Response {
        self.client
            .post(self.url("/api/v1/session"))
            .json(&serde_json::json!({ "email": email, "password": password }))
            .sent()
            .await
    }

    /// A session token for `email`, whose password is set to `password` first.
    pub async fn session_for(&self, email: &str, password: &str) -> String {
        self.set_password(email, password).await;
        let response = self.sign_in(email, password).await;
        string_in(response, 201, "session_token").await
    }

    /// A bodiless API call presenting `credential` as a bearer token.
    /// An unauthenticated GET of `path`.
    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).sent().await
    }

    /// The JSON answer to a GET of `path` presenting `credential`, whatever
    /// its status.
    pub async fn get_json(&self, path: &str, credential: &str) -> Value {
        json_body(self.call(reqwest::Method::GET, path, credential).await).await
    }

    /// A management GET, presenting `credential`.
    pub async fn get_as(&self, path: &str, credential: &str) -> Response {
        self.call(reqwest::Method::GET, path, credential).await
    }

    /// A management POST without a body (revoke, disable, unlock, …),
    /// presenting `credential`.
    pub async fn post(&self, path: &str, credential: &str) -> Response {
        self.call(reqwest::Method::POST, path, credential).await
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, credential: &str) -> Response {
        self.api(method, path, credential).sent().await
    }

    /// A management API call with a JSON `body`, presenting `credential`:
    /// the status and the JSON answer.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        credential: &str,
        body: &Value,
    ) -> (u16, Value) {
        let response = self.api(method, path, credential).json(body).sent().await;
        status_and_json(response).await
    }

    /// A management API call presenting `credential` as a bearer token.
    pub fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        credential: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(credential)
    }
}

/// How a credential is presented to the management API.
#[derive(Clone)]
pub enum Cred {
    /// `Authorization: Bearer` (a session, an access token, or a key).
    Bearer(String),
    /// `x-api-key: kps_…`.
    ApiKey(String),
}

impl From<&str> for Cred {
    fn from(token: &str) -> Self {
        Cred::Bearer(token.to_owned())
    }
}

impl From<&String> for Cred {
    fn from(token: &String) -> Self {
        Cred::Bearer(token.clone())
    }
}

impl From<&Cred> for Cred {
    fn from(cred: &Cred) -> Self {
        cred.clone()
    }
}

impl TestApp {
    /// DELETE the key `id`, confirmed with its client ID as the API asks.
    pub async fn delete_key(&self, cred: impl Into<Cred>, id: &str, client_id: &str) -> Response {
        self.request(
            reqwest::Method::DELETE,
            &format!("/api/v1/keys/{id}"),
            &cred.into(),
        )
        .json(&serde_json::json!({ "confirm": format!("delete {client_id}") }))
        .sent()
        .await
    }

    /// A request presenting `cred`.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        cred: &Cred,
    ) -> reqwest::RequestBuilder {
        match cred {
            Cred::Bearer(token) => self.api(method, path, token),
            Cred::ApiKey(secret) => self
                .client
                .request(method, self.url(path))
                .header("x-api-key", secret),
        }
    }

    /// A request presenting `secret` as `x-api-key`.
    pub fn request_with_key(
        &self,
        method: reqwest::Method,
        path: &str,
        secret: &str,
    ) -> reqwest::RequestBuilder {
        self.request(method, path, &Cred::ApiKey(secret.to_owned()))
    }

    /// `POST /api/v1/keys` with `body`, presenting `credential`; panics
    /// unless the key is created (201). The answer carries the secret.
    pub async fn create_key_over_http(&self, credential: &str, body: Value) -> Value {
        let response = self
            .api(reqwest::Method::POST, "/api/v1/keys", credential)
            .json(&body)
            .sent()
            .await;
        json_answer(response, 201).await
    }

    /// An access token for a key, narrowed to `scope` when given; panics
    /// unless the server issues one.
    pub async fn narrowed_token(
        &self,
        client_id: &str,
        secret: &str,
        scope: Option<&str>,
    ) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let response = self
            .client
            .post(self.url("/oauth/token"))
            .basic_auth(client_id, Some(secret))
            .form(&form)
            .sent()
            .await;
        let status = response.status();
        let body = json_body(response).await;
        assert_eq!(status, 200, "token refused: {body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }
}

/// The value of the header `name`, which must be there and be text.
pub fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response.headers()[name].to_str().expect("a text header")
}

/// The string `field` of each item of the array `doc[list]`.
pub fn strings_in<'a>(doc: &'a Value, list: &str, field: &str) -> Vec<&'a str> {
    let items = doc[list]
        .as_array()
        .unwrap_or_else(|| panic!("no `{list}` in {doc}"));
    items.iter().map(|item| s(item, field)).collect()
}

/// The JSON body of a response that must have `status`.
pub async fn json_answer(response: Response, status: u16) -> Value {
    let (got, body) = status_and_json(response).await;
    assert_eq!(got, status, "{body}");
    body
}

/// The string `field` of a JSON answer that must have `status`.
pub async fn string_in(response: Response, status: u16, field: &str) -> String {
    s(&json_answer(response, status).await, field).to_owned()
}

/// The JSON body of a response, asserting it is JSON.
pub async fn json_body(response: Response) -> Value {
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// The status and JSON body of a response.
pub async fn status_and_json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, json_body(response).await)
}

/// `doc[field]` as a string; panics, showing `doc`, when it is not one.
pub fn s<'a>(doc: &'a Value, field: &str) -> &'a str {
    doc[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` is not a string in {doc}"))
}

/// An error body without its `request_id` (which every error body has, and
/// which differs per request): what two answers are compared on when they
/// must not tell their causes apart.
pub fn without_request_id(mut body: Value) -> Value {
    let id = body
        .as_object_mut()
        .and_then(|object| object.remove("request_id"));
    assert!(
        id.as_ref()
            .and_then(Value::as_str)
            .is_some_and(|id| !id.is_empty()),
        "an error body without its request_id: {body}"
    );
    body
}

/// The value of one series (`name{labels}`, as written) in a `/metrics`
/// text; 0 when the series is absent (a counter not touched yet).
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0)
}
