//! The console offers what the server takes, over plain HTTP on both
//! backends: the key page's settings form changes what the API shows (and
//! says in a sentence what it refuses), no row offers an action the server
//! would refuse for the viewer, and an invitation is one link whose code
//! rides in the fragment. The browser side (the Actions menu, the link
//! opened for real, requests watched) is in `tests/console/console.spec.mjs`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::console_webhooks::{Person as Browser, hidden};
use crate::helpers::{Backend, TestApp, colleague, person, s, spawn_app, status_and_json};
use crate::signed_webhooks::forget_webhook_key;

/// Posts `fields` with the CSRF token of the page at `from`.
async fn post_from(
    browser: &Browser,
    from: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> crate::console_webhooks::Page {
    let csrf = hidden(&browser.get(from).await.html, "csrf");
    browser.post_as(path, fields, &csrf, "", true).await
}

/// The key as the API shows it, read with `credential` (a token).
async fn api_key(app: &TestApp, credential: &str, id: &str) -> Value {
    let (status, key) = status_and_json(
        app.call(Method::GET, &format!("/api/v1/keys/{id}"), credential)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{key}");
    key
}

/// The `<tr>` of the key list about `client_id`.
fn row_of(html: &str, client_id: &str) -> String {
    let marker = format!("data-client-id=\"{client_id}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for {client_id}:\n{html}"));
    html[at..]
        .split("</tr>")
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn the_key_page_settings_form_changes_what_the_api_shows(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = person(&app, "admin").await;
    let key = app
        .create_key_over_http(&ana.session, json!({"name": "ERP"}))
        .await;
    let id = s(&key, "id").to_owned();
    // The API is read with another key's token.
    let reader = app
        .create_key_over_http(&ana.session, json!({"name": "reader"}))
        .await;
    let token = app
        .request_token(s(&reader, "client_id"), s(&reader, "client_secret"))
        .await
        .json::<Value>()
        .await
        .expect("a token");
    let api = s(&token, "access_token").to_owned();
    let page = format!("/console/keys/{id}");
    let browser = Browser::signed_in(&app, &ana.email).await;
    let html = browser.get(&page).await.html;
    assert!(
        html.contains("id=\"key-settings\""),
        "a settings form:\n{html}"
    );
    assert!(html.contains(&format!("action=\"/console/keys/{id}/settings\"")));

    let saved = post_from(
        &browser,
        &page,
        &format!("{page}/settings"),
        &[
            ("name", "ERP nightly"),
            ("description", "The warehouse sync"),
            ("allowed_sources", "10.0.0.0/8\r\n203.0.113.0/24"),
            ("rate_limit", "600/min"),
            ("require_dpop", "on"),
        ],
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
    assert_eq!(saved.location, page);
    let shown = api_key(&app, &api, &id).await;
    assert_eq!(shown["name"], "ERP nightly", "{shown}");
    assert_eq!(shown["description"], "The warehouse sync");
    assert_eq!(
        shown["allowed_sources"],
        json!(["10.0.0.0/8", "203.0.113.0/24"])
    );
    assert_eq!(shown["rate_limit"]["requests"], 600, "{shown}");
    assert_eq!(shown["rate_limit"]["per_seconds"], 60);
    assert_eq!(shown["require_dpop"], true);
    // The form shows the key as it now is.
    let html = browser.get(&page).await.html;
    assert!(html.contains("value=\"ERP nightly\""), "{html}");
    assert!(html.contains("value=\"600/60s\""), "{html}");
    assert!(
        html.contains("10.0.0.0/8\n203.0.113.0/24</textarea>"),
        "{html}"
    );

    // A bad range: refused in a sentence next to its field, nothing changed.
    let refused = post_from(
        &browser,
        &page,
        &format!("{page}/settings"),
        &[
            ("name", "ERP renamed"),
            ("allowed_sources", "10.0.0.0/8\nnot-an-address"),
            ("rate_limit", "600/60s"),
            ("require_dpop", "on"),
        ],
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.html
    );
    assert!(
        refused.html.contains("An allowed address is not valid: ")
            && refused.html.contains("Nothing was changed."),
        "{}",
        refused.html
    );
    assert!(
        !refused.html.contains("allowed_sources:"),
        "{}",
        refused.html
    );
    assert!(
        refused.html.contains("not-an-address</textarea>"),
        "the form keeps what was typed"
    );
    let invalid_marked = refused.html.split("<textarea").nth(1).is_some_and(|t| {
        t.split('>')
            .next()
            .unwrap_or_default()
            .contains("aria-invalid=\"true\"")
    });
    assert!(invalid_marked, "{}", refused.html);
    let bad_rate = post_from(
        &browser,
        &page,
        &format!("{page}/settings"),
        &[("name", "ERP nightly"), ("rate_limit", "fast")],
    )
    .await;
    assert_eq!(bad_rate.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad_rate.html.contains("The rate is not valid: "),
        "{}",
        bad_rate.html
    );
    assert_eq!(api_key(&app, &api, &id).await, shown, "nothing changed");

    // Empty fields remove: the rate, the allow-list, the description.
    let cleared = post_from(
        &browser,
        &page,
        &format!("{page}/settings"),
        &[("name", "ERP nightly")],
    )
    .await;
    assert_eq!(cleared.status, StatusCode::SEE_OTHER, "{}", cleared.html);
    let shown = api_key(&app, &api, &id).await;
    assert!(shown["rate_limit"].is_null(), "{shown}");
    assert_eq!(shown["allowed_sources"], json!([]));
    assert_eq!(shown["require_dpop"], false);

    // Without the page's CSRF token: refused, nothing changed.
    let forged = browser
        .post_as(
            &format!("{page}/settings"),
            &[("name", "Forged")],
            "nope",
            "",
            true,
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(api_key(&app, &api, &id).await["name"], "ERP nightly");

    // A revoked key shows no form, and a post is refused in words.
    let csrf = hidden(&browser.get(&page).await.html, "csrf");
    let revoked = browser
        .post_as(&format!("{page}/revoke"), &[], &csrf, "", true)
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let html = browser.get(&page).await.html;
    assert!(!html.contains("id=\"key-settings\""), "{html}");
    let late = browser
        .post_as(
            &format!("{page}/settings"),
            &[("name", "Late")],
            &csrf,
            "",
            true,
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.html);
    assert!(
        late.html
            .contains("is revoked and cannot be changed. Nothing was changed."),
        "{}",
        late.html
    );
}

async fn no_row_offers_an_action_the_server_would_refuse(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = person(&app, "admin").await;
    let ben = colleague(&app, &ana.tenant, "member").await;
    let own = app
        .create_key_over_http(&ana.session, json!({"name": "Ana's"}))
        .await;
    let second = app
        .create_key_over_http(&ana.session, json!({"name": "Ana's second"}))
        .await;
    let legacy = app
        .create_key_over_http(&ana.session, json!({"name": "Legacy"}))
        .await;
    forget_webhook_key(&app, s(&legacy, "id")).await;
    let bens = app
        .create_key_over_http(&ben.session, json!({"name": "Ben's"}))
        .await;
    let browser = Browser::signed_in(&app, &ana.email).await;
    let html = browser.get("/console/keys").await.html;

    // One Actions button per row; the items live in its menu.
    let mine = row_of(&html, s(&own, "client_id"));
    assert_eq!(mine.matches("popovertarget=").count(), 1, "{mine}");
    assert!(
        mine.contains(">Roll</button>"),
        "the owner may roll: {mine}"
    );
    let second = row_of(&html, s(&second, "client_id"));
    assert!(second.contains(">Use with webhooks</button>"), "{second}");
    // Destructive items are plain menu items, Delete the danger one.
    assert!(
        second.contains("class=\"danger-item\" data-confirm=\"delete\""),
        "{second}"
    );
    let menu = second.split("<dialog").next().unwrap_or_default();
    assert!(
        !menu.contains("class=\"danger\""),
        "no filled red button on the row: {menu}"
    );
    assert!(
        !menu.contains("class=\"primary\""),
        "no filled button on the row: {menu}"
    );
    // Without script, the row still leads to the key's page.
    assert!(
        mine.contains(&format!(
            "<noscript><a href=\"/console/keys/{}\">Manage</a></noscript>",
            s(&own, "id")
        )),
        "{mine}"
    );

    // Only its owner may roll a key: the admin is not offered Ben's.
    let his = row_of(&html, s(&bens, "client_id"));
    assert!(!his.contains(">Roll</button>"), "{his}");
    let csrf = hidden(&html, "csrf");
    let refused = browser
        .post_as(
            &format!("/console/keys/{}/roll", s(&bens, "id")),
            &[],
            &csrf,
            "",
            true,
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::FORBIDDEN,
        "the server refuses it too"
    );

    // A key without a webhook signing key is not offered to sign webhooks,
    // on the list or on its page; the server refuses it too.
    let old = row_of(&html, s(&legacy, "client_id"));
    assert!(!old.contains("Use with webhooks"), "{old}");
    let page = browser
        .get(&format!("/console/keys/{}", s(&legacy, "id")))
        .await
        .html;
    assert!(!page.contains("Use with webhooks"), "{page}");
    let marked = browser
        .post_as(
            &format!("/console/keys/{}/webhook-signing", s(&legacy, "id")),
            &[],
            &csrf,
            "",
            true,
        )
        .await;
    assert_eq!(marked.status, StatusCode::CONFLICT, "{}", marked.html);

    // The confirmation of "Use with webhooks" warns about the receivers.
    assert!(
        html.contains("Every receiver must switch to this key's webhook signing key"),
        "{html}"
    );
    // One dialog per confirmation for the whole list, none per row.
    assert_eq!(html.matches("<dialog id=\"confirm-").count(), 4, "{html}");
    assert!(!second.contains("<dialog"), "{second}");
}

async fn an_invitation_is_one_link_with_the_code_in_its_fragment(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = person(&app, "admin").await;
    let browser = Browser::signed_in(&app, &ana.email).await;
    let added = post_from(
        &browser,
        "/console/users",
        "/console/users",
        &[
            ("email", "cy@acme.io"),
            ("role", "member"),
            ("permission", "reports:read"),
        ],
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.html);
    let issuer = app
        .service
        .settings
        .tokens
        .issuer
        .trim_end_matches('/')
        .to_owned();
    let marker = format!("value=\"{issuer}/console/set-password#code=");
    let at = added
        .html
        .find(&marker)
        .unwrap_or_else(|| panic!("no invitation link {marker}:\n{}", added.html))
        + marker.len();
    let code: String = added.html[at..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(code.starts_with("kpset_"), "{code}");
    assert!(
        !added.html.contains(&format!("?code={code}"))
            && !added.html.contains(&format!("token={code}"))
    );
    assert!(added.html.contains(">Copy link</button>"), "{}", added.html);

    // The page the link opens, without the fragment (all a server sees),
    // has the field the page's script fills and a person can paste into.
    let form = browser.get("/console/set-password").await.html;
    assert!(form.contains("data-code-from-fragment"), "{form}");

    // A weak password keeps the code in the form; then the code works once.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let send = |password: &'static str| {
        client
            .post(format!("{}/console/set-password", app.address))
            .header("origin", &app.address)
            .form(&[("token", code.as_str()), ("new_password", password)])
            .send()
    };
    let weak = send("short").await.expect("post");
    assert_eq!(weak.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        weak.text()
            .await
            .expect("body")
            .contains(&format!("value=\"{code}\""))
    );
    let set = send("a long enough passphrase").await.expect("post");
    assert_eq!(set.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        send("another long passphrase")
            .await
            .expect("post")
            .status(),
        StatusCode::BAD_REQUEST
    );

    // The audit trail names the invitation, never its code.
    let csv = browser.get("/console/audit.csv").await.html;
    assert!(csv.contains("user.set_password_with_token"), "{csv}");
    assert!(!csv.contains(&code), "{csv}");
}

/// The key page is where the key list sends a browser without script: every
/// action there must work from plain forms. Tried: a delete with a name that
/// is not the key's, then the name in another case; a revoke; a roll of a
/// colleague's key posted by hand (the page does not offer it).
async fn the_key_page_revokes_rolls_and_deletes_without_script(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = person(&app, "admin").await;
    // The first key signs its owner's webhooks (and cannot be deleted).
    let key = app
        .create_key_over_http(&ana.session, json!({"name": "Dashboard"}))
        .await;
    let doomed = app
        .create_key_over_http(&ana.session, json!({"name": "Old ERP"}))
        .await;
    let bo = colleague(&app, &ana.tenant, "member").await;
    let theirs = app
        .create_key_over_http(&bo.session, json!({"name": "Bo sync"}))
        .await;
    // Read with a token of another key: signing in below ends Ana's session.
    let reader = app
        .create_key_over_http(&ana.session, json!({"name": "reader"}))
        .await;
    let api = s(
        &app.request_token(s(&reader, "client_id"), s(&reader, "client_secret"))
            .await
            .json::<Value>()
            .await
            .expect("a token"),
        "access_token",
    )
    .to_owned();
    let browser = Browser::signed_in(&app, &ana.email).await;
    let doomed_id = s(&doomed, "id").to_owned();
    let page = format!("/console/keys/{doomed_id}");
    let html = browser.get(&page).await.html;
    assert!(
        !html.contains("data-open="),
        "nothing on the key page needs script to open:\n{html}"
    );
    for action in ["revoke", "delete", "roll"] {
        assert!(
            html.contains(&format!("action=\"/console/keys/{doomed_id}/{action}\"")),
            "a plain form to {action}:\n{html}"
        );
    }
    assert!(
        html.contains("id=\"delete-confirm\"") && !html.contains("id=\"delete-confirm\" open"),
        "the delete confirmation starts closed:\n{html}"
    );

    // A name that is not the key's: the key page again, saying so, with the
    // confirmation open; the key is still there.
    let mismatch = post_from(
        &browser,
        &page,
        &format!("{page}/delete"),
        &[("return_to", "key"), ("confirm", "Old ERP 2")],
    )
    .await;
    assert_ne!(mismatch.status, StatusCode::SEE_OTHER, "{}", mismatch.html);
    assert!(mismatch.status.is_client_error(), "{}", mismatch.status);
    assert!(
        mismatch.html.contains("<h1>Old ERP</h1>"),
        "{}",
        mismatch.html
    );
    assert!(
        mismatch.html.contains("is not the key&#39;s name"),
        "{}",
        mismatch.html
    );
    assert!(
        mismatch.html.contains("id=\"delete-confirm\" open>"),
        "the confirmation stays open:\n{}",
        mismatch.html
    );
    let (status, _) = status_and_json(
        app.call(Method::GET, &format!("/api/v1/keys/{doomed_id}"), &api)
            .await,
    )
    .await;
    assert_eq!(status, 200, "nothing was deleted");

    // The name in another case deletes it, and goes back to the list.
    let deleted = post_from(
        &browser,
        &page,
        &format!("{page}/delete"),
        &[("return_to", "key"), ("confirm", "old erp")],
    )
    .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.html);
    assert_eq!(deleted.location, "/console/keys");
    let (status, _) = status_and_json(
        app.call(Method::GET, &format!("/api/v1/keys/{doomed_id}"), &api)
            .await,
    )
    .await;
    assert_eq!(status, 404);

    // Revoke comes back to the key's page, which shows it revoked.
    let key_page = format!("/console/keys/{}", s(&key, "id"));
    let revoked = post_from(
        &browser,
        &key_page,
        &format!("{key_page}/revoke"),
        &[("return_to", "key")],
    )
    .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.html);
    assert_eq!(revoked.location, key_page);
    let html = browser.get(&key_page).await.html;
    assert!(html.contains("id=\"key-status\">revoked</span>"), "{html}");
    assert!(
        !html.contains("/revoke\""),
        "no revoke offered twice:\n{html}"
    );

    // A colleague's key: no Roll on its page, and a roll posted by hand is
    // refused on that page, in words.
    let their_page = format!("/console/keys/{}", s(&theirs, "id"));
    let html = browser.get(&their_page).await.html;
    assert!(
        !html.contains("/roll\""),
        "no Roll on a colleague's key:\n{html}"
    );
    let rolled = post_from(
        &browser,
        &their_page,
        &format!("{their_page}/roll"),
        &[("return_to", "key"), ("grace_seconds", "3600")],
    )
    .await;
    assert_eq!(rolled.status, StatusCode::FORBIDDEN, "{}", rolled.html);
    assert!(rolled.html.contains("<h1>Bo sync</h1>"), "{}", rolled.html);
    assert!(rolled.html.contains("role=\"alert\""), "{}", rolled.html);
}

crate::on_both_backends!(
    the_key_page_settings_form_changes_what_the_api_shows,
    no_row_offers_an_action_the_server_would_refuse,
    an_invitation_is_one_link_with_the_code_in_its_fragment,
    the_key_page_revokes_rolls_and_deletes_without_script,
);
