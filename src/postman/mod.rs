//! A Postman Collection v2.1 for this server: import it, paste a key's client
//! ID and secret into the collection's Variables tab, press Send. A
//! collection-level pre-request script gets (and renews) the access token with
//! the client credentials grant, so every request just works; every request
//! carries tests on its status and the shape of its answer, so the same file
//! runs unattended under newman.
//!
//! Served at `GET /api/v1/postman/collection.json` and written by
//! `keyport postman export`.

use serde_json::{Value, json};

use crate::config::Settings;

/// The Postman Collection format this document follows.
pub const SCHEMA: &str = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json";

/// The file name Postman users get (`Content-Disposition`; the book's Postman guide).
pub const FILE_NAME: &str = "keyport.postman_collection.json";

/// Renew the token when it expires within this many milliseconds.
const RENEW_MARGIN_MS: u64 = 30_000;

// The JavaScript, one file per script beside this one (`script` splits each
// into `exec` lines).

/// The collection's pre-request script, with `__RENEW_MARGIN_S__` and
/// `__RENEW_MARGIN_MS__` standing for [`RENEW_MARGIN_MS`]; see
/// [`collection_pre_request`].
const COLLECTION_PRE_REQUEST: &str = include_str!("collection_pre_request.js");
/// Auth / Get an access token: tests.
const TOKEN_TESTS: &str = include_str!("token_tests.js");
/// Webhooks / Push a record: pre-request (a fresh Idempotency-Key).
const PUSH_PRE_REQUEST: &str = include_str!("push_pre_request.js");
/// Webhooks / Push a record: tests.
const PUSH_TESTS: &str = include_str!("push_tests.js");
/// Webhooks / Replay the push: tests.
const REPLAY_TESTS: &str = include_str!("replay_tests.js");
/// Reports / List records: tests.
const LIST_TESTS: &str = include_str!("list_tests.js");
/// Reports / Get the pushed record: tests.
const RECORD_TESTS: &str = include_str!("record_tests.js");
/// Discovery / Authorization server metadata: tests.
const METADATA_TESTS: &str = include_str!("metadata_tests.js");
/// Discovery / JSON Web Key Set: tests.
const JWKS_TESTS: &str = include_str!("jwks_tests.js");
/// (AWS Signature variant) Who am I: tests.
const WHOAMI_TESTS: &str = include_str!("whoami_tests.js");

/// Which way the collection authenticates its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// A token from the key's client ID and secret (the default).
    Token,
    /// Postman's own "AWS Signature" (`awsv4`) auth on every request, with
    /// the key's access key ID and secret: for keys created with SigV4
    /// allowed, as integrations that sign every request expect.
    Sigv4,
}

impl Variant {
    /// `token` or `sigv4`, as `?auth=` and `--auth` name them.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "token" => Some(Variant::Token),
            "sigv4" => Some(Variant::Sigv4),
            _ => None,
        }
    }
}

/// The collection in `variant`.
pub fn collection_variant(settings: &Settings, variant: Variant) -> Value {
    match variant {
        Variant::Token => collection(settings),
        Variant::Sigv4 => sigv4_collection(settings),
    }
}

/// The AWS Signature variant: no token exchange; Postman signs every
/// request with AWS Signature Version 4 (its built-in `awsv4` auth), from
/// the `access_key` and `secret_key` variables, with this server's region
/// and service filled in. The user fills in the two variables and presses
/// Send.
pub fn sigv4_collection(settings: &Settings) -> Value {
    let sigv4 = &settings.sigv4;
    json!({
        "info": {
            "name": "Keyport (AWS Signature)",
            "description": SIGV4_DESCRIPTION
                .replace("__REGION__", &sigv4.region)
                .replace("__SERVICE__", &sigv4.service),
            "schema": SCHEMA,
        },
        "auth": {
            "type": "awsv4",
            "awsv4": [
                { "key": "accessKey", "value": "{{access_key}}", "type": "string" },
                { "key": "secretKey", "value": "{{secret_key}}", "type": "string" },
                { "key": "region", "value": sigv4.region, "type": "string" },
                { "key": "service", "value": sigv4.service, "type": "string" },
                { "key": "addAuthDataToQuery", "value": false, "type": "boolean" }
            ],
        },
        "variable": sigv4_variables(&settings.tokens.issuer),
        "item": [
            folder(
                "Who am I",
                "Check the key: who a signed request acts as.",
                vec![whoami_item()],
            ),
            signed_webhooks_folder(),
            reports_folder(),
            discovery_folder(),
        ],
    })
}

/// The Webhooks folder, its replay signed as a retry. A signed write is
/// accepted once, and `X-Amz-Date` counts whole seconds: a replay sent in
/// the same second as the push (newman's run, a quick second click) would
/// carry the push's very signature, and be refused as a copy of it. So the
/// replay numbers its attempt in a signed header, as SigV4 client
/// libraries do on a retry; its signature is then its own.
fn signed_webhooks_folder() -> Value {
    let mut folder = webhooks_folder();
    let replays = folder["item"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .filter(|item| item["name"] == REPLAY_NAME);
    for replay in replays {
        if let Some(headers) = replay["request"]["header"].as_array_mut() {
            headers.push(json!({
                "key": "amz-sdk-request",
                "value": "attempt=2; max=2",
                "description": "A retry's attempt number, signed: a signed write is accepted \
                                once, so each attempt must differ from the last in something \
                                signed (X-Amz-Date counts whole seconds).",
            }));
        }
    }
    folder
}

/// The AWS Signature variant for one key, its access key ID filled in.
pub fn sigv4_collection_for_key(settings: &Settings, access_key: &str) -> Value {
    let mut document = sigv4_collection(settings);
    if let Some(variables) = document["variable"].as_array_mut() {
        for variable in variables {
            if variable["key"] == "access_key" {
                variable["value"] = access_key.into();
            }
        }
    }
    document["info"]["name"] = format!("Keyport ({access_key}, AWS Signature)").into();
    document
}

const SIGV4_DESCRIPTION: &str = "Keyport's report (pull) and webhook (push) endpoints, every request signed with AWS Signature Version 4 (Postman's **AWS Signature** auth, region `__REGION__`, service `__SERVICE__`).\n\n\
1. Open the collection's **Variables** tab and paste your key: `access_key` (its client ID, `kpc_…`) and `secret_key` (its secret, `kps_…`). The key must have been created with SigV4 allowed (`\"sigv4\": true`, `keyport key create --sigv4`, or the console's checkbox).\n\
2. Press **Send** on any request.\n\n\
The key's owner needs `webhooks:write` to push and `reports:read` to pull. Run the folders in \
order: the push creates the `{{collection}}` collection the reports read. Every request has \
tests, so the collection also runs under newman.";

fn sigv4_variables(base_url: &str) -> Value {
    json!([
        variable(
            "base_url",
            base_url,
            "The server's public base URL (its issuer)."
        ),
        variable(
            "access_key",
            "",
            "Paste your key's client ID here (kpc_…): the access key ID.",
        ),
        variable(
            "secret_key",
            "",
            "Paste your key's client secret here (kps_…): the secret access key. Keep it in the \
             current value only: it is shown once when the key is created and must not be shared.",
        ),
        variable(
            "collection",
            "orders",
            "The record collection the Webhooks and Reports requests use.",
        ),
        variable(
            "idempotency_key",
            "",
            "Set by the push request's pre-request script; the replay sends it again.",
        ),
        variable(
            "record_id",
            "",
            "The id of the record the push stored; set by its tests.",
        ),
    ])
}

fn whoami_item() -> Value {
    json!({
        "name": "Who am I",
        "event": [tests(WHOAMI_TESTS)],
        "request": {
            "description": "Who the key acts as, and its scopes; any key that allows SigV4.",
            "method": "GET",
            "header": [{ "key": "Accept", "value": "application/json" }],
            "url": url(&["api", "v1", "whoami"], &[]),
        },
    })
}

/// The whole collection for the server these settings describe; `base_url` is
/// the issuer (the server's public base URL).
pub fn collection(settings: &Settings) -> Value {
    json!({
        "info": {
            "name": "Keyport",
            "description": DESCRIPTION,
            "schema": SCHEMA,
        },
        "auth": {
            "type": "bearer",
            "bearer": [
                { "key": "token", "value": "{{access_token}}", "type": "string" }
            ],
        },
        "event": [
            {
                "listen": "prerequest",
                "script": script(&collection_pre_request()),
            }
        ],
        "variable": variables(&settings.tokens.issuer),
        "item": [auth_folder(), webhooks_folder(), reports_folder(), discovery_folder()],
    })
}

/// The collection for one key: its client ID is filled in; the secret,
/// which the server never keeps, is for the user to paste.
pub fn collection_for_key(settings: &Settings, client_id: &str) -> Value {
    let mut document = collection(settings);
    if let Some(variables) = document["variable"].as_array_mut() {
        for variable in variables {
            if variable["key"] == "client_id" {
                variable["value"] = client_id.into();
            }
        }
    }
    document["info"]["name"] = format!("Keyport ({client_id})").into();
    document
}

const DESCRIPTION: &str = "Keyport's token exchange and its report (pull) and webhook (push) \
endpoints.\n\n\
1. Open the collection's **Variables** tab and paste your key: `client_id` (`kpc_…`) and \
`client_secret` (`kps_…`). Create a key with `keyport key create` or `POST /api/v1/keys`.\n\
2. Press **Send** on any request. A collection-level pre-request script exchanges the key for \
an access token at `POST /oauth/token` (client credentials, HTTP Basic) whenever there is none \
or it expires within 30 s, and stores it in `access_token`; every request sends it as a \
Bearer token.\n\n\
The key's owner needs `webhooks:write` to push and `reports:read` to pull. Run the folders in \
order (Auth, Webhooks, Reports, Discovery): the push creates the `{{collection}}` collection \
the reports read. Every request has tests, so the collection also runs under newman.";

fn variables(base_url: &str) -> Value {
    json!([
        variable(
            "base_url",
            base_url,
            "The server's public base URL (its issuer)."
        ),
        variable("client_id", "", "Paste your key's client ID here (kpc_…).",),
        variable(
            "client_secret",
            "",
            "Paste your key's client secret here (kps_…). Keep it in the current value only: \
             it is shown once when the key is created and must not be shared.",
        ),
        variable(
            "access_token",
            "",
            "Set by the collection's pre-request script; leave it blank.",
        ),
        variable(
            "token_expires_at",
            "",
            "When access_token expires, in milliseconds since the epoch; set by the scripts.",
        ),
        variable(
            "collection",
            "orders",
            "The record collection the Webhooks and Reports requests use.",
        ),
        variable(
            "idempotency_key",
            "",
            "Set by the push request's pre-request script; the replay sends it again.",
        ),
        variable(
            "record_id",
            "",
            "The id of the record the push stored; set by its tests.",
        ),
    ])
}

fn variable(key: &str, value: &str, description: &str) -> Value {
    json!({ "key": key, "value": value, "type": "string", "description": description })
}

/// A script object from JavaScript source, one `exec` entry per line.
fn script(source: &str) -> Value {
    json!({
        "type": "text/javascript",
        "exec": source.lines().collect::<Vec<_>>(),
    })
}

fn prerequest(source: &str) -> Value {
    json!({ "listen": "prerequest", "script": script(source) })
}

fn tests(source: &str) -> Value {
    json!({ "listen": "test", "script": script(source) })
}

/// `{{base_url}}/<path>` with query parameters, in Postman's URL object form.
fn url(path: &[&str], query: &[(&str, &str)]) -> Value {
    let mut raw = format!("{{{{base_url}}}}/{}", path.join("/"));
    if !query.is_empty() {
        let pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        raw = format!("{raw}?{}", pairs.join("&"));
    }
    let mut url = json!({ "raw": raw, "host": ["{{base_url}}"], "path": path });
    if !query.is_empty() {
        url["query"] = query
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect();
    }
    url
}

fn folder(name: &str, description: &str, items: Vec<Value>) -> Value {
    json!({ "name": name, "description": description, "item": items })
}

/// The collection-level pre-request script, its renewal margin filled in.
fn collection_pre_request() -> String {
    COLLECTION_PRE_REQUEST
        .replace("__RENEW_MARGIN_S__", &(RENEW_MARGIN_MS / 1000).to_string())
        .replace("__RENEW_MARGIN_MS__", &RENEW_MARGIN_MS.to_string())
}

fn auth_folder() -> Value {
    let token = json!({
        "name": "Get an access token",
        "event": [tests(TOKEN_TESTS)],
        "request": {
            "description": "RFC 6749 §4.4 client credentials: the key's client ID and secret \
                            (HTTP Basic) for a short-lived JWT. The collection's pre-request \
                            script does this on its own; send it to see the token.",
            "method": "POST",
            "auth": {
                "type": "basic",
                "basic": [
                    { "key": "username", "value": "{{client_id}}", "type": "string" },
                    { "key": "password", "value": "{{client_secret}}", "type": "string" }
                ],
            },
            "header": [
                { "key": "Accept", "value": "application/json" }
            ],
            "body": {
                "mode": "urlencoded",
                "urlencoded": [
                    { "key": "grant_type", "value": "client_credentials", "type": "text" }
                ],
            },
            "url": url(&["oauth", "token"], &[]),
        },
    });
    folder(
        "Auth",
        "Exchange the key (client_id, client_secret) for an access token.",
        vec![token],
    )
}

const PUSH_BODY: &str = r#"{
    "order": 1001,
    "total": 99.5,
    "currency": "EUR",
    "source": "postman",
    "request": "{{idempotency_key}}"
}"#;

fn push_request(description: &str, idempotency_key: &str) -> Value {
    json!({
        "description": description,
        "method": "POST",
        "header": [
            { "key": "Content-Type", "value": "application/json" },
            { "key": "Accept", "value": "application/json" },
            { "key": "Idempotency-Key", "value": idempotency_key }
        ],
        "body": {
            "mode": "raw",
            "raw": PUSH_BODY,
            "options": { "raw": { "language": "json" } },
        },
        "url": url(&["api", "v1", "webhooks", "{{collection}}"], &[]),
    })
}

/// Webhooks / the push sent again.
const REPLAY_NAME: &str = "Replay the push (same Idempotency-Key)";

fn webhooks_folder() -> Value {
    let push = json!({
        "name": "Push a record",
        "event": [
            prerequest(PUSH_PRE_REQUEST),
            tests(PUSH_TESTS),
        ],
        "request": push_request(
            "Store a JSON object (or an array of them) in {{collection}}; needs webhooks:write. \
             The pre-request script sets a fresh Idempotency-Key.",
            "{{idempotency_key}}",
        ),
    });
    let replay = json!({
        "name": REPLAY_NAME,
        "event": [tests(REPLAY_TESTS)],
        "request": push_request(
            "The same push again, with the same Idempotency-Key and body: Keyport stores \
             nothing new and answers the original response with Idempotent-Replayed: true.",
            "{{idempotency_key}}",
        ),
    });
    folder(
        "Webhooks",
        "Push records; needs webhooks:write. Runs before Reports, which reads what it pushed.",
        vec![push, replay],
    )
}

fn reports_folder() -> Value {
    let list = json!({
        "name": "List records",
        "event": [tests(LIST_TESTS)],
        "request": {
            "description": "Records of {{collection}}, oldest first; needs reports:read. \
                            Follow next_cursor (as cursor) for the next page.",
            "method": "GET",
            "header": [{ "key": "Accept", "value": "application/json" }],
            "url": url(&["api", "v1", "reports", "{{collection}}"], &[("limit", "50")]),
        },
    });
    let one = json!({
        "name": "Get the pushed record",
        "event": [tests(RECORD_TESTS)],
        "request": {
            "description": "One record by id (the one Webhooks / Push a record stored); needs \
                            reports:read.",
            "method": "GET",
            "header": [{ "key": "Accept", "value": "application/json" }],
            "url": url(&["api", "v1", "reports", "{{collection}}", "{{record_id}}"], &[]),
        },
    });
    folder(
        "Reports",
        "Pull records; needs reports:read.",
        vec![list, one],
    )
}

fn discovery_folder() -> Value {
    let metadata = json!({
        "name": "Authorization server metadata",
        "event": [tests(METADATA_TESTS)],
        "request": {
            "auth": { "type": "noauth" },
            "description": "RFC 8414 metadata; public.",
            "method": "GET",
            "header": [{ "key": "Accept", "value": "application/json" }],
            "url": url(&[".well-known", "oauth-authorization-server"], &[]),
        },
    });
    let jwks = json!({
        "name": "JSON Web Key Set",
        "event": [tests(JWKS_TESTS)],
        "request": {
            "auth": { "type": "noauth" },
            "description": "RFC 7517 public keys that verify Keyport's tokens; public.",
            "method": "GET",
            "header": [{ "key": "Accept", "value": "application/json" }],
            "url": url(&[".well-known", "jwks.json"], &[]),
        },
    });
    folder(
        "Discovery",
        "Public documents: the server's metadata and the keys that verify its tokens.",
        vec![metadata, jwks],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::load_from(
            None,
            vec![(
                "KEYPORT_ISSUER".to_owned(),
                "https://keyport.example.com".to_owned(),
            )],
        )
        .expect("settings")
    }

    fn variable_value<'a>(doc: &'a Value, key: &str) -> &'a Value {
        doc["variable"]
            .as_array()
            .expect("variables")
            .iter()
            .find(|v| v["key"] == key)
            .map(|v| &v["value"])
            .unwrap_or_else(|| panic!("no variable {key}"))
    }

    fn exec(event: &Value) -> String {
        event["script"]["exec"]
            .as_array()
            .expect("exec lines")
            .iter()
            .map(|l| l.as_str().expect("a line"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every embedded script file, by name.
    const SCRIPTS: [(&str, &str); 9] = [
        ("collection_pre_request.js", COLLECTION_PRE_REQUEST),
        ("token_tests.js", TOKEN_TESTS),
        ("push_pre_request.js", PUSH_PRE_REQUEST),
        ("push_tests.js", PUSH_TESTS),
        ("replay_tests.js", REPLAY_TESTS),
        ("list_tests.js", LIST_TESTS),
        ("record_tests.js", RECORD_TESTS),
        ("metadata_tests.js", METADATA_TESTS),
        ("jwks_tests.js", JWKS_TESTS),
    ];

    /// Every script event in the collection, wherever it is.
    fn events(doc: &Value) -> Vec<&Value> {
        let mut events: Vec<&Value> = doc["event"].as_array().unwrap().iter().collect();
        for folder in doc["item"].as_array().unwrap() {
            for item in folder["item"].as_array().unwrap() {
                events.extend(item["event"].as_array().unwrap());
            }
        }
        events
    }

    #[test]
    fn the_scripts_are_embedded_and_the_margin_filled_in() {
        for (name, source) in SCRIPTS {
            assert!(!source.trim().is_empty(), "{name} is empty");
        }
        for token in ["__RENEW_MARGIN_S__", "__RENEW_MARGIN_MS__"] {
            assert!(
                COLLECTION_PRE_REQUEST.contains(token),
                "collection_pre_request.js lacks {token}"
            );
        }

        let pre = collection_pre_request();
        assert!(!pre.contains("__"), "a placeholder is left:\n{pre}");
        assert!(pre.contains("expires within 30 s"), "{pre}");
        assert!(pre.contains("expiresAt - Date.now() < 30000)"), "{pre}");

        // One script in the collection per file, none empty and none still
        // carrying a placeholder.
        let doc = collection(&settings());
        let events = events(&doc);
        assert_eq!(events.len(), SCRIPTS.len());
        for event in events {
            let source = exec(event);
            assert!(!source.trim().is_empty(), "an empty script: {event}");
            assert!(!source.contains("__"), "a placeholder is left:\n{source}");
        }
    }

    #[test]
    fn the_aws_signature_variant_signs_every_request_with_the_two_variables() {
        let doc = sigv4_collection(&settings());
        assert_eq!(doc["info"]["schema"], SCHEMA);
        assert_eq!(doc["auth"]["type"], "awsv4");
        let auth: std::collections::BTreeMap<&str, &Value> = doc["auth"]["awsv4"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["key"].as_str().unwrap(), &a["value"]))
            .collect();
        assert_eq!(auth["accessKey"], "{{access_key}}");
        assert_eq!(auth["secretKey"], "{{secret_key}}");
        assert_eq!(auth["region"], "us-east-1");
        assert_eq!(auth["service"], "keyport");
        for blank in ["access_key", "secret_key"] {
            assert_eq!(variable_value(&doc, blank), "", "{blank}");
        }
        assert_eq!(
            variable_value(&doc, "base_url"),
            "https://keyport.example.com"
        );
        // No token exchange anywhere: no pre-request script, no Auth folder,
        // no request overriding the collection's auth except the public ones.
        assert!(doc.get("event").is_none());
        let folders: Vec<&str> = doc["item"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(folders, ["Who am I", "Webhooks", "Reports", "Discovery"]);
        // The replay is signed as a retry: a signed header tells it apart.
        let replay = &doc["item"][1]["item"][1];
        assert_eq!(replay["name"], REPLAY_NAME);
        assert!(
            replay["request"]["header"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["key"] == "amz-sdk-request"),
            "{replay}"
        );
        let keyed = sigv4_collection_for_key(&settings(), "kpc_abc");
        assert_eq!(variable_value(&keyed, "access_key"), "kpc_abc");
        assert_eq!(variable_value(&keyed, "secret_key"), "");
        assert_eq!(Variant::parse("sigv4"), Some(Variant::Sigv4));
        assert_eq!(Variant::parse("token"), Some(Variant::Token));
        assert_eq!(Variant::parse("bearer"), None);
    }

    #[test]
    fn the_collection_has_its_variables_folders_and_scripts() {
        let doc = collection(&settings());
        assert_eq!(doc["info"]["schema"], SCHEMA);
        assert_eq!(doc["info"]["name"], "Keyport");

        assert_eq!(
            variable_value(&doc, "base_url"),
            "https://keyport.example.com"
        );
        for blank in [
            "client_id",
            "client_secret",
            "access_token",
            "token_expires_at",
        ] {
            assert_eq!(variable_value(&doc, blank), "", "{blank}");
        }
        assert_eq!(variable_value(&doc, "collection"), "orders");
        for pasted in ["client_id", "client_secret"] {
            let description = doc["variable"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["key"] == pasted)
                .unwrap()["description"]
                .as_str()
                .unwrap();
            assert!(description.contains("Paste"), "{pasted}: {description}");
        }

        assert_eq!(doc["auth"]["type"], "bearer");
        assert_eq!(doc["auth"]["bearer"][0]["value"], "{{access_token}}");

        let pre = &doc["event"][0];
        assert_eq!(pre["listen"], "prerequest");
        let source = exec(pre);
        for needle in [
            "/oauth/token",
            "grant_type",
            "client_credentials",
            "client_id",
            "client_secret",
            "access_token",
            "token_expires_at",
            "30000",
            "pm.sendRequest",
        ] {
            assert!(source.contains(needle), "pre-request lacks {needle}");
        }

        let folders: Vec<&str> = doc["item"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(folders, ["Auth", "Webhooks", "Reports", "Discovery"]);

        // Every request has tests asserting its status.
        let mut requests = 0;
        for folder in doc["item"].as_array().unwrap() {
            for item in folder["item"].as_array().unwrap() {
                requests += 1;
                let name = item["name"].as_str().unwrap();
                let test = item["event"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["listen"] == "test")
                    .unwrap_or_else(|| panic!("{name} has no tests"));
                assert!(
                    exec(test).contains("pm.response.to.have.status("),
                    "{name} does not assert its status"
                );
                let raw = item["request"]["url"]["raw"].as_str().unwrap();
                assert!(raw.starts_with("{{base_url}}/"), "{name}: {raw}");
            }
        }
        assert_eq!(requests, 7);

        let token = &doc["item"][0]["item"][0]["request"];
        assert_eq!(token["method"], "POST");
        assert_eq!(token["url"]["raw"], "{{base_url}}/oauth/token");
        assert_eq!(token["auth"]["type"], "basic");

        let push = &doc["item"][1]["item"][0];
        assert_eq!(
            push["request"]["url"]["raw"],
            "{{base_url}}/api/v1/webhooks/{{collection}}"
        );
        assert!(exec(&push["event"][0]).contains("{{$guid}}"));
        let replay_tests = exec(&doc["item"][1]["item"][1]["event"][0]);
        assert!(replay_tests.contains("Idempotent-Replayed"));

        assert_eq!(
            doc["item"][2]["item"][0]["request"]["url"]["raw"],
            "{{base_url}}/api/v1/reports/{{collection}}?limit=50"
        );
    }
}
