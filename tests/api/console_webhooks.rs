//! The console's Webhooks pages (issue 13): over plain HTTP on both backends
//! (who sees the page, what a form post does, what is refused and where the
//! refusal shows), and in a real browser (`tests/console/webhooks.spec.mjs`:
//! a real receiver, the signature checked, attempts, Deliver again, disable,
//! delete, accessibility).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION};

use crate::console::{BROWSER, CHROMIUM, node, tail};
use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, ServedBinary, TestApp, TestDatabase, master_key_env, spawn_app_with,
};

/// Endpoints on this machine may be registered (the tests' receivers).
const LOOPBACK_ALLOWED: [(&str, &str); 3] = [
    ("KEYPORT_WEBHOOK_ALLOW_HTTP", "true"),
    ("KEYPORT_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
    ("KEYPORT_WEBHOOK_POLL_INTERVAL_MS", "100"),
];

/// A browser without script: the session cookie, the page's CSRF token and
/// this server's `Origin` on every post; redirects are not followed.
pub(crate) struct Person {
    client: reqwest::Client,
    base: String,
    cookie: String,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    csp: String,
    pub(crate) location: String,
    pub(crate) html: String,
}

impl Person {
    pub(crate) async fn signed_in(app: &TestApp, email: &str) -> Person {
        let session = app
            .session_for(email, "a long enough passphrase for tests")
            .await;
        Person {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            base: app.address.clone(),
            cookie: format!("keyport_session={session}"),
        }
    }

    async fn read(response: reqwest::Response) -> Page {
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        Page {
            status: response.status(),
            csp: header(CONTENT_SECURITY_POLICY),
            location: header(LOCATION),
            html: response.text().await.expect("page body"),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .sent()
            .await;
        Self::read(response).await
    }

    /// Posts `fields` plus the CSRF token and a fresh form id taken from the
    /// page at `from`, with this server's `Origin` unless `origin` is false.
    async fn post(&self, from: &str, path: &str, fields: &[(&str, &str)], origin: bool) -> Page {
        let page = self.get(from).await;
        let csrf = hidden(&page.html, "csrf");
        let form_id = hidden(&page.html, "form_id");
        self.post_as(path, fields, &csrf, &form_id, origin).await
    }

    pub(crate) async fn post_as(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        csrf: &str,
        form_id: &str,
        origin: bool,
    ) -> Page {
        let mut form: Vec<(&str, &str)> = vec![("csrf", csrf), ("form_id", form_id)];
        form.extend_from_slice(fields);
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(&form);
        if origin {
            request = request.header("origin", &self.base);
        }
        Self::read(request.sent().await).await
    }
}

/// The value of the first hidden input named `name`.
pub(crate) fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in the page:\n{html}"))
        + marker.len();
    html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The text of the element with `id` (up to its first tag), unescaped as a
/// browser would show it.
fn text_of(html: &str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}\">");
    let start = html.find(&marker)? + marker.len();
    let raw = html[start..].split('<').next().unwrap_or_default();
    Some(
        raw.replace("&#39;", "'")
            .replace("&#34;", "\"")
            .replace("&#60;", "<")
            .replace("&#62;", ">")
            .replace("&#38;", "&"),
    )
}

const WEBHOOKS_LINK: &str = "href=\"/console/webhooks\"";

async fn the_webhooks_page_is_for_holders_of_webhooks_manage_and_shows_only_what_they_may_manage(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &LOOPBACK_ALLOWED).await;
    let acme = app.tenant("Acme").await;
    let all = "reports:read webhooks:write keys:manage webhooks:manage";
    app.user(&acme, "ana@acme.io", "admin", all).await;
    app.user(&acme, "ben@acme.io", "member", "reports:read keys:manage")
        .await;
    app.user(&acme, "cy@acme.io", "member", "keys:manage webhooks:manage")
        .await;
    let admin = Person::signed_in(&app, "ana@acme.io").await;
    let without = Person::signed_in(&app, "ben@acme.io").await;
    let member = Person::signed_in(&app, "cy@acme.io").await;

    assert!(
        admin
            .get("/console/keys")
            .await
            .html
            .contains(WEBHOOKS_LINK)
    );
    assert!(
        member
            .get("/console/keys?owner=me")
            .await
            .html
            .contains(WEBHOOKS_LINK)
    );
    let plain = without.get("/console/keys?owner=me").await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(
        !plain.html.contains(WEBHOOKS_LINK),
        "a member without webhooks:manage is shown the Webhooks link"
    );
    let refused = without.get("/console/webhooks").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    assert!(refused.html.contains("webhooks:manage"), "{}", refused.html);

    // Each adds an endpoint from the page.
    for (person, url) in [
        (&admin, "http://127.0.0.1:9/admin"),
        (&member, "http://127.0.0.1:9/member"),
    ] {
        let added = person
            .post(
                "/console/webhooks",
                "/console/webhooks",
                &[("url", url), ("event", "key.created")],
                true,
            )
            .await;
        assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.html);
        assert_eq!(added.location, "/console/webhooks");
    }
    let admin_page = admin.get("/console/webhooks").await;
    let member_page = member.get("/console/webhooks").await;
    assert!(admin_page.html.contains("http://127.0.0.1:9/admin"));
    assert!(
        admin_page.html.contains("http://127.0.0.1:9/member"),
        "an admin sees the company's endpoints"
    );
    assert!(member_page.html.contains("http://127.0.0.1:9/member"));
    assert!(
        !member_page.html.contains("http://127.0.0.1:9/admin"),
        "a member sees only their own endpoints"
    );

    // The admin's endpoint's page and buttons are not the member's.
    let admin_id = endpoint_id(&admin_page.html, "http://127.0.0.1:9/admin");
    let page = member.get(&format!("/console/webhooks/{admin_id}")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.html);
    let delete = member
        .post(
            "/console/webhooks",
            &format!("/console/webhooks/{admin_id}/delete"),
            &[],
            true,
        )
        .await;
    assert_eq!(delete.status, StatusCode::FORBIDDEN, "{}", delete.html);
    assert!(
        admin
            .get("/console/webhooks")
            .await
            .html
            .contains("http://127.0.0.1:9/admin")
    );
    let unknown = admin.get("/console/webhooks/no-such-endpoint").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

/// The id of the listed endpoint whose URL is `url`.
fn endpoint_id(html: &str, url: &str) -> String {
    let marker = format!("data-url=\"{url}\"");
    let row_start = html[..html.find(&marker).expect("the endpoint is listed")]
        .rfind("data-endpoint-id=\"")
        .expect("its row has an id")
        + "data-endpoint-id=\"".len();
    html[row_start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn the_add_form_shows_the_services_refusals_next_to_their_fields_and_guards_against_double_submits(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &LOOPBACK_ALLOWED).await;
    let acme = app.tenant("Acme").await;
    app.user(&acme, "ana@acme.io", "admin", "keys:manage webhooks:manage")
        .await;
    let admin = Person::signed_in(&app, "ana@acme.io").await;
    let add = |fields: Vec<(&'static str, &'static str)>| {
        let admin = &admin;
        async move {
            admin
                .post("/console/webhooks", "/console/webhooks", &fields, true)
                .await
        }
    };

    let scheme = add(vec![
        ("url", "ftp://127.0.0.1/x"),
        ("event", "key.created"),
        ("description", "<b>nightly</b>"),
    ])
    .await;
    assert_eq!(scheme.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        scheme.csp.contains("script-src 'self'"),
        "the refusal keeps the CSP"
    );
    let error = text_of(&scheme.html, "url-error").expect("an error next to the URL");
    assert!(error.contains("must use https"), "{error}");
    assert!(scheme.html.contains("aria-invalid=\"true\" autofocus"));
    assert!(
        scheme
            .html
            .contains("value=\"&#60;b&#62;nightly&#60;/b&#62;\""),
        "what was typed comes back, escaped:\n{}",
        scheme.html
    );

    let no_event = add(vec![("url", "http://127.0.0.1:9/x")]).await;
    assert_eq!(no_event.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        text_of(&no_event.html, "events-error").as_deref(),
        Some("name at least one event")
    );
    let forged = add(vec![
        ("url", "http://127.0.0.1:9/x"),
        ("event", "key.stolen"),
    ])
    .await;
    assert_eq!(forged.status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = text_of(&forged.html, "events-error").expect("an error next to the events");
    assert!(error.contains("`key.stolen` is not an event"), "{error}");
    let collection = add(vec![
        ("url", "http://127.0.0.1:9/x"),
        ("event", "record.created"),
        ("collections", "orders, bad/name"),
    ])
    .await;
    assert_eq!(collection.status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = text_of(&collection.html, "collections-error").expect("next to the collections");
    assert!(error.contains("not a collection name"), "{error}");
    let blank = add(vec![("url", "  "), ("event", "key.created")]).await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text_of(&blank.html, "url-error").is_some());
    let listed = admin.get("/console/webhooks").await;
    assert!(listed.html.contains("0 endpoints"), "nothing was added");

    // A refused form may be corrected and sent again with the same form id;
    // a form that succeeded may not be sent twice.
    let page = admin.get("/console/webhooks").await;
    let (csrf, form_id) = (hidden(&page.html, "csrf"), hidden(&page.html, "form_id"));
    let url = ("url", "http://127.0.0.1:9/orders");
    let refused = admin
        .post_as("/console/webhooks", &[url], &csrf, &form_id, true)
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields = [url, ("event", "record.created"), ("collections", "orders")];
    let first = admin
        .post_as("/console/webhooks", &fields, &csrf, &form_id, true)
        .await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.html);
    let second = admin
        .post_as("/console/webhooks", &fields, &csrf, &form_id, true)
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert!(second.html.contains("already_submitted"));
    let listed = admin.get("/console/webhooks").await;
    assert!(
        listed.html.contains("1 endpoint of your company"),
        "one endpoint"
    );

    // Without Origin, or with another session's token: refused, unchanged.
    let id = endpoint_id(&listed.html, "http://127.0.0.1:9/orders");
    let path = format!("/console/webhooks/{id}/disable");
    let bare = admin.post("/console/webhooks", &path, &[], false).await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN);
    let wrong = admin
        .post_as(&path, &[], "00112233445566778899aabbccddeeff", "f1", true)
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(
        admin
            .get("/console/webhooks")
            .await
            .html
            .contains("status-enabled")
    );

    let disabled = admin.post("/console/webhooks", &path, &[], true).await;
    assert_eq!(disabled.status, StatusCode::SEE_OTHER);
    assert_eq!(disabled.location, "/console/webhooks");
    let listed = admin.get("/console/webhooks").await;
    assert!(
        listed.html.contains("disabled by a person"),
        "{}",
        listed.html
    );
    let enabled = admin
        .post(
            &format!("/console/webhooks/{id}"),
            &format!("/console/webhooks/{id}/enable"),
            &[("return_to", "endpoint")],
            true,
        )
        .await;
    assert_eq!(enabled.location, format!("/console/webhooks/{id}"));
    let page = admin.get(&format!("/console/webhooks/{id}")).await;
    assert_eq!(
        text_of(&page.html, "endpoint-status").as_deref(),
        Some("enabled")
    );
    assert!(page.csp.contains("frame-ancestors 'none'"));
    assert!(page.html.contains("No attempts yet"));
}

async fn under_the_default_policy_a_loopback_url_is_refused_next_to_the_url_field(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &[]).await;
    let acme = app.tenant("Acme").await;
    app.user(&acme, "ana@acme.io", "admin", "webhooks:manage")
        .await;
    let admin = Person::signed_in(&app, "ana@acme.io").await;
    for url in [
        "https://127.0.0.1/x",
        "https://169.254.169.254/latest",
        "http://example.com/x",
    ] {
        let refused = admin
            .post(
                "/console/webhooks",
                "/console/webhooks",
                &[("url", url), ("event", "key.created")],
                true,
            )
            .await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        let error = text_of(&refused.html, "url-error").expect("an error next to the URL");
        assert!(
            error.contains("loopback") || error.contains("link-local") || error.contains("https"),
            "{url}: {error}"
        );
    }
    // No keys:manage: the note cannot name the signing key, and says nothing
    // wrong about it.
    let page = admin.get("/console/webhooks").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("whsec_"), "the note on signing is shown");
}

crate::on_both_backends!(
    the_webhooks_page_is_for_holders_of_webhooks_manage_and_shows_only_what_they_may_manage,
    the_add_form_shows_the_services_refusals_next_to_their_fields_and_guards_against_double_submits,
    under_the_default_policy_a_loopback_url_is_refused_next_to_the_url_field,
);

/// `keyport serve` on an empty database with `env`, and the first-run link
/// it logs.
fn serve(db: &TestDatabase, env: &[(&str, &str)]) -> (ServedBinary, String) {
    let mut command = ServedBinary::command(&db.url, 2);
    command.envs(env.iter().copied());
    let server = ServedBinary::start(command, Arc::default());
    let log = server.log();
    let setup_url = log
        .split_whitespace()
        .find(|word| word.contains("/console/setup?token=kpsetup_"))
        .unwrap_or_else(|| panic!("serve logs no first-run setup link:\n{log}"))
        .to_owned();
    (server, setup_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhooks_page_delivers_to_a_real_receiver_in_a_real_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let node = node(&root);
    // A folder of its own: the other browser test empties its own files.
    let screenshots = root.join("target/console-screenshots/webhooks");
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).expect("create target/console-screenshots/webhooks");
    // One browser at a time on two cores.
    let _browser = BROWSER.lock().await;

    let db = TestDatabase::create(Backend::Sqlite).await;
    let (server, setup_url) = serve(&db, &LOOPBACK_ALLOWED);
    // The default policy, for the refusal of a loopback URL.
    let strict_db = TestDatabase::create(Backend::Sqlite).await;
    let (strict, strict_setup_url) = serve(&strict_db, &[]);

    let output = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new(&node)
            .arg("tests/console/webhooks.spec.mjs")
            .current_dir(&root)
            .env("BASE_URL", server.url(""))
            .env("SETUP_URL", &setup_url)
            .env("STRICT_BASE_URL", strict.url(""))
            .env("STRICT_SETUP_URL", &strict_setup_url)
            .env("SCREENSHOT_DIR", &screenshots)
            .env("CHROMIUM", CHROMIUM)
            .envs(master_key_env(&db.url))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser tests finished within 240 s")
    .unwrap_or_else(|e| panic!("cannot run {} ({e}); set KEYPORT_TEST_NODE", node.display()));

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Webhooks pages' browser tests failed ({}); screenshots in {}\n\
         --- node stdout ---\n{stdout}\n--- node stderr ---\n{stderr}\n\
         --- server log (last 60 lines) ---\n{}",
        output.status,
        screenshots.display(),
        tail(&server.log(), 60),
    );
    for page in [
        "webhooks-1280.png",
        "webhook-attempts-1280.png",
        "webhooks-refused-loopback-400.png",
    ] {
        assert!(
            screenshots.join(page).exists(),
            "no screenshot {page}:\n{stdout}"
        );
    }
}
