//! The console's overview, key pages, key creation and audit over plain
//! HTTP on both backends: the figures a page shows against the usage API,
//! what needs attention and what does not, least privilege at creation,
//! newest-first audit and its CSV. The browser side (axe, 400 px,
//! screenshots) is in `tests/console/console.spec.mjs`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::console_webhooks::{Person as Browser, hidden};
use crate::helpers::{Backend, TestApp, person, s, spawn_app_with, status_and_json};

/// No background flush during a test: only [`flush`] writes usage; and
/// room for a dozen wrong secrets before the throttle answers 429.
const NO_FLUSH: [(&str, &str); 2] = [
    ("KEYPORT_USAGE_FLUSH_SECONDS", "300"),
    ("KEYPORT_CLIENT_AUTH_MAX_FAILURES", "50"),
];

async fn flush(app: &TestApp) {
    app.service.usage_counts.flush(&app.service.store).await;
}

async fn token_status(app: &TestApp, client_id: &str, secret: &str) -> u16 {
    app.request_token(client_id, secret).await.status().as_u16()
}

/// The sum of the chart's drawn segments for `outcome`.
fn drawn(html: &str, outcome: &str) -> u64 {
    let marker = format!("data-outcome=\"{outcome}\" data-count=\"");
    html.match_indices(&marker)
        .map(|(at, _)| {
            html[at + marker.len()..]
                .split('"')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .expect("a count")
        })
        .sum()
}

/// The table's total for `outcome`.
fn tabled(html: &str, outcome: &str) -> u64 {
    let marker = format!("<td class=\"num\" data-outcome=\"{outcome}\">");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no total for {outcome} in the table:\n{html}"))
        + marker.len();
    html[at..]
        .split('<')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

/// The `<li>` of the overview's attention list about `subject`, if any.
fn attention_about<'a>(html: &'a str, subject: &str) -> Option<&'a str> {
    let marker = format!("data-subject=\"{subject}\"");
    let at = html.find(&marker)?;
    let start = html[..at].rfind("<li").unwrap_or(at);
    Some(html[start..].split("</li>").next().unwrap_or_default())
}

async fn the_key_page_chart_its_table_and_the_api_agree_once_flushed(backend: Backend) {
    let app = spawn_app_with(backend, &NO_FLUSH).await;
    let ana = person(&app, "admin").await;
    let key = app
        .create_key_over_http(&ana.session, json!({"name": "ERP"}))
        .await;
    let other = app
        .create_key_over_http(&ana.session, json!({"name": "other"}))
        .await;
    let (id, client_id, secret) = (
        s(&key, "id"),
        s(&key, "client_id"),
        s(&key, "client_secret"),
    );
    const N: u64 = 4;
    const M: u64 = 3;
    for _ in 0..N {
        assert_eq!(token_status(&app, client_id, secret).await, 200);
    }
    for _ in 0..M {
        let wrong = s(&other, "client_secret");
        assert_eq!(token_status(&app, client_id, wrong).await, 401);
    }
    flush(&app).await;
    let (status, api) = status_and_json(
        app.call(
            Method::GET,
            &format!("/api/v1/keys/{id}/usage"),
            &ana.session,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{api}");
    assert_eq!(api["total"]["tokens_issued"], N);
    assert_eq!(api["total"]["refused"], M);

    let browser = Browser::signed_in(&app, &ana.email).await;
    for period in ["", "?period=7d", "?period=30d"] {
        let page = browser.get(&format!("/console/keys/{id}{period}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.html);
        let html = &page.html;
        assert_eq!(drawn(html, "tokens_issued"), N, "chart {period}");
        assert_eq!(drawn(html, "refused"), M, "chart {period}");
        assert_eq!(tabled(html, "tokens_issued"), N, "table {period}");
        assert_eq!(tabled(html, "refused"), M, "table {period}");
        assert!(
            html.contains("<title id=\"chart-title\">"),
            "the chart has a title"
        );
        assert!(
            html.contains(&format!("Tokens issued: {N}")),
            "the chart's desc"
        );
        assert!(
            html.contains(
                "data-reason=\"wrong_secret\">Wrong secret or signature: <strong>3</strong>"
            ),
            "refusals by reason:\n{html}"
        );
    }
    // The page names the key's events, newest first, and its danger zone
    // comes last.
    let html = browser.get(&format!("/console/keys/{id}")).await.html;
    assert!(html.contains("Key created by"), "{html}");
    let danger = html.find("Danger zone").expect("a danger zone");
    for earlier in ["Usage", "Events", "Settings"] {
        assert!(html.find(earlier).expect(earlier) < danger, "{earlier}");
    }

    // Another company's key does not exist for this admin.
    let stranger = person(&app, "admin").await;
    let theirs = Browser::signed_in(&app, &stranger.email).await;
    assert_eq!(
        theirs.get(&format!("/console/keys/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn the_overview_lists_a_key_expiring_soon_and_one_with_a_refusal_spike_but_not_a_healthy_one(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &NO_FLUSH).await;
    let ana = person(&app, "admin").await;
    let key = |body: Value| {
        let (app, ana) = (&app, &ana);
        async move { app.create_key_over_http(&ana.session, body).await }
    };
    let expiring = key(json!({"name": "expiring", "expires_in_seconds": 3 * 86_400})).await;
    let spiking = key(json!({"name": "spiking", "expires_in_seconds": 90 * 86_400})).await;
    let healthy = key(json!({"name": "healthy", "expires_in_seconds": 90 * 86_400})).await;
    for _ in 0..5 {
        let (id, secret) = (s(&healthy, "client_id"), s(&healthy, "client_secret"));
        assert_eq!(token_status(&app, id, secret).await, 200);
    }
    for _ in 0..12 {
        let wrong = s(&healthy, "client_secret");
        assert_eq!(
            token_status(&app, s(&spiking, "client_id"), wrong).await,
            401
        );
    }
    flush(&app).await;

    let browser = Browser::signed_in(&app, &ana.email).await;
    let page = browser.get("/console/overview").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let html = &page.html;
    let soon = attention_about(html, s(&expiring, "client_id")).expect("the expiring key");
    assert!(soon.contains("data-kind=\"expiring\""), "{soon}");
    assert!(
        soon.contains("expires in 2 days") || soon.contains("expires in 3 days"),
        "{soon}"
    );
    assert!(
        soon.contains(&format!("/console/keys/{}", s(&expiring, "id"))),
        "links to its page"
    );
    let spike = attention_about(html, s(&spiking, "client_id")).expect("the spiking key");
    assert!(spike.contains("data-kind=\"spike\""), "{spike}");
    assert!(spike.contains("refused 12 times"), "{spike}");
    assert_eq!(
        attention_about(html, s(&healthy, "client_id")),
        None,
        "{html}"
    );
    // The busiest key, and the most refused one.
    let busiest = html.split("id=\"top-volume\"").nth(1).expect("top keys");
    assert!(busiest.split("</ol>").next().unwrap().contains("healthy"));
    let refused = html
        .split("id=\"top-refused\"")
        .nth(1)
        .expect("top refused");
    assert!(refused.split("</ol>").next().unwrap().contains("spiking"));

    // Home is the overview.
    let home = browser.get("/console/").await;
    assert_eq!(home.location, "/console/overview");
}

/// The overview reads each key's fortnight as fourteen 24-hour windows
/// ending with the current hour: refusals 23 hours ago are "the last 24
/// hours", refusals 24 hours ago are not, whatever the time of day. And a
/// housekeeping list names at most 25 keys, saying how many more there are.
async fn the_overview_reads_the_last_24_hours_in_whole_hours_and_caps_its_lists(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            NO_FLUSH[0],
            NO_FLUSH[1],
            ("KEYPORT_MAX_ACTIVE_KEYS_PER_USER", "40"),
        ],
    )
    .await;
    let ana = person(&app, "admin").await;
    let inside = app
        .create_key_over_http(&ana.session, json!({"name": "inside"}))
        .await;
    let outside = app
        .create_key_over_http(&ana.session, json!({"name": "outside"}))
        .await;
    for n in 0..27 {
        app.create_key_over_http(&ana.session, json!({"name": format!("spare {n:02}")}))
            .await;
    }
    // The page must be read in the hour the rows are placed from: near the
    // hour's end, wait for the next one to start.
    let left_in_hour = 3600 - keyport::domain::now() % 3600;
    if left_in_hour < 60 {
        tokio::time::sleep(std::time::Duration::from_secs(left_in_hour as u64 + 1)).await;
    }
    let now = keyport::domain::now();
    let current_hour = now - now % 3600;
    let refused = |key: &Value, hours_ago: i64| keyport::storage::UsageCount {
        client_id: s(key, "client_id").to_owned(),
        hour: current_hour - hours_ago * 3600,
        outcome: "refused:wrong_secret".to_owned(),
        count: 12,
    };
    app.store
        .add_key_usage(&[refused(&inside, 23), refused(&outside, 24)], &[], &[])
        .await
        .expect("usage stored");

    let browser = Browser::signed_in(&app, &ana.email).await;
    let page = browser.get("/console/overview").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let html = &page.html;
    let spike =
        attention_about(html, s(&inside, "client_id")).expect("23 hours ago is the last day");
    assert!(spike.contains("refused 12 times"), "{spike}");
    assert_eq!(
        attention_about(html, s(&outside, "client_id")),
        None,
        "24 hours ago is the day before:\n{html}"
    );

    // 29 keys without expiry: 25 named, 4 more counted.
    let chore = html
        .split("id=\"no-expiry\"")
        .nth(1)
        .and_then(|rest| rest.split("</details>").next())
        .expect("the no-expiry chore");
    assert!(chore.contains("No expiry date: 29 keys"), "{chore}");
    assert_eq!(chore.matches("<li>").count(), 25, "{chore}");
    assert!(chore.contains("And 4 more"), "{chore}");
}

async fn key_creation_starts_with_no_permission_and_ninety_days_and_refuses_none(backend: Backend) {
    let app = spawn_app_with(backend, &NO_FLUSH).await;
    let ana = person(&app, "admin").await;
    let browser = Browser::signed_in(&app, &ana.email).await;
    let html = browser.get("/console/keys").await.html;
    let form = html
        .split("id=\"create-key\"")
        .nth(1)
        .and_then(|f| f.split("</form>").next())
        .expect("the create form");
    assert!(
        form.contains("name=\"scope\" value=\"reports:read\""),
        "{form}"
    );
    assert!(
        !form.contains("checked> <span><strong>"),
        "a permission is ticked:\n{form}"
    );
    assert!(form.contains("value=\"90\" checked"), "90 days by default");
    assert!(form.contains("<strong>Read reports</strong> <code>reports:read</code>"));

    let csrf = hidden(&html, "csrf");
    let post = |fields: Vec<(&'static str, &'static str)>| {
        let (browser, csrf) = (&browser, &csrf);
        async move {
            let form_id = uuid::Uuid::new_v4().simple().to_string();
            browser
                .post_as("/console/keys", &fields, csrf, &form_id, true)
                .await
        }
    };
    let none = post(vec![("name", "no permission"), ("expiry", "90")]).await;
    assert_eq!(none.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(none.html.contains("pick at least one"), "{}", none.html);
    let custom = post(vec![
        ("name", "k"),
        ("scope", "reports:read"),
        ("expiry", "custom"),
    ])
    .await;
    assert_eq!(custom.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(custom.html.contains("pick the day the key expires"));

    let made = post(vec![
        ("name", "ninety"),
        ("scope", "reports:read"),
        ("expiry", "90"),
    ])
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.html);
    let never = post(vec![
        ("name", "forever"),
        ("scope", "reports:read"),
        ("expiry", "never"),
    ])
    .await;
    assert_eq!(never.status, StatusCode::CREATED, "{}", never.html);
    let keys = keyport::service::keys::list_keys(
        &app.service(),
        &keyport::domain::Principal::operator(),
        keyport::service::keys::KeyListing::All,
    )
    .await
    .expect("list keys");
    let ninety = keys.iter().find(|k| k.name == "ninety").expect("ninety");
    let left = ninety.expires_at.expect("an expiry") - ninety.created_at;
    assert!((89 * 86_400..=90 * 86_400 + 60).contains(&left), "{left}");
    assert_eq!(
        ninety.scopes.as_deref(),
        Some(&["reports:read".to_owned()][..])
    );
    let forever = keys.iter().find(|k| k.name == "forever").expect("forever");
    assert_eq!(forever.expires_at, None);
}

async fn the_audit_page_shows_the_newest_event_first_with_names_and_exports_csv(backend: Backend) {
    let app = spawn_app_with(backend, &NO_FLUSH).await;
    let ana = person(&app, "admin").await;
    let first = app
        .create_key_over_http(&ana.session, json!({"name": "first key"}))
        .await;
    let last = app
        .create_key_over_http(&ana.session, json!({"name": "=last key"}))
        .await;
    let browser = Browser::signed_in(&app, &ana.email).await;
    let html = browser.get("/console/audit?action=key.create").await.html;
    let rows: Vec<&str> = html.split("<tr data-action=").skip(1).collect();
    assert!(rows.len() >= 2, "{html}");
    assert!(
        rows[0].contains("=last key"),
        "the first row is the newest event:\n{}",
        rows[0]
    );
    assert!(rows[0].contains("Key created"), "a readable action");
    assert!(rows[0].contains(&ana.email), "the actor by email");
    assert!(
        rows[0].contains(&format!("href=\"/console/keys/{}\"", s(&last, "id"))),
        "the row links to its key"
    );
    let older = rows
        .iter()
        .position(|r| r.contains("first key"))
        .expect("the first key's event");
    assert!(older > 0);

    let csv = browser.get("/console/audit.csv?action=key.create").await;
    assert_eq!(csv.status, StatusCode::OK);
    let lines: Vec<&str> = csv.html.lines().collect();
    assert!(lines[0].starts_with("time_utc,action,action_name,actor,actor_name"));
    assert_eq!(lines.len(), 3, "{}", csv.html);
    assert!(
        lines[1].contains("\"'=last key\""),
        "formulas defused: {}",
        lines[1]
    );
    assert!(lines[2].contains(s(&first, "client_id")));
    assert!(lines[2].contains(&ana.email));
}

crate::on_both_backends!(
    the_overview_reads_the_last_24_hours_in_whole_hours_and_caps_its_lists,
    the_key_page_chart_its_table_and_the_api_agree_once_flushed,
    the_overview_lists_a_key_expiring_soon_and_one_with_a_refusal_spike_but_not_a_healthy_one,
    key_creation_starts_with_no_permission_and_ninety_days_and_refuses_none,
    the_audit_page_shows_the_newest_event_first_with_names_and_exports_csv,
    the_users_page_offers_no_disable_the_server_would_refuse,
    the_key_list_searches_highlights_close_expiry_and_draws_seven_days,
    the_key_list_shows_fifty_keys_a_page_and_keeps_its_filters_from_page_to_page,
);

async fn the_users_page_offers_no_disable_the_server_would_refuse(backend: Backend) {
    let app = spawn_app_with(backend, &NO_FLUSH).await;
    let ana = person(&app, "admin").await;
    let ben = crate::helpers::colleague(&app, &ana.tenant, "member").await;
    let browser = Browser::signed_in(&app, &ana.email).await;
    let html = browser.get("/console/users").await.html;
    assert!(
        !html.contains(&format!("Disable {}", ana.email)),
        "the only admin, and the viewer, is offered Disable:\n{html}"
    );
    assert!(html.contains("You cannot disable yourself"), "{html}");
    assert!(html.contains(&format!("Disable {}", ben.email)), "{html}");
    assert!(
        html.contains("Read reports <code>reports:read</code>"),
        "{html}"
    );
}

async fn the_key_list_searches_highlights_close_expiry_and_draws_seven_days(backend: Backend) {
    let app = spawn_app_with(backend, &NO_FLUSH).await;
    let ana = person(&app, "admin").await;
    let soon = app
        .create_key_over_http(
            &ana.session,
            json!({"name": "Payroll export", "expires_in_seconds": 5 * 86_400}),
        )
        .await;
    let later = app
        .create_key_over_http(
            &ana.session,
            json!({"name": "Dashboard", "expires_in_seconds": 60 * 86_400}),
        )
        .await;
    for _ in 0..3 {
        let (id, secret) = (s(&later, "client_id"), s(&later, "client_secret"));
        assert_eq!(token_status(&app, id, secret).await, 200);
    }
    flush(&app).await;
    let browser = Browser::signed_in(&app, &ana.email).await;
    let html = browser.get("/console/keys").await.html;
    let row_of = |html: &str, client_id: &str| -> String {
        let marker = format!("data-client-id=\"{client_id}\"");
        let at = html.find(&marker).expect("the key's row");
        html[at..]
            .split("</tr>")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let soon_row = row_of(&html, s(&soon, "client_id"));
    assert!(soon_row.contains("class=\"soon\""), "{soon_row}");
    assert!(soon_row.contains("in 4 days") || soon_row.contains("in 5 days"));
    let later_row = row_of(&html, s(&later, "client_id"));
    assert!(!later_row.contains("class=\"soon\""), "{later_row}");
    assert!(
        later_row.contains("data-total=\"3\""),
        "the sparkline: {later_row}"
    );
    assert!(later_row.contains("Requests per day over the last 7 days: "));

    // Search by name (any case), client ID or owner.
    for (query, finds_soon, finds_later) in [
        ("payroll", true, false),
        (s(&later, "client_id"), false, true),
        (ana.email.as_str(), true, true),
        ("nothing like it", false, false),
    ] {
        let found = browser
            .get(&format!(
                "/console/keys?q={}",
                percent_encoding::utf8_percent_encode(query, percent_encoding::NON_ALPHANUMERIC)
            ))
            .await
            .html;
        assert_eq!(found.contains(s(&soon, "client_id")), finds_soon, "{query}");
        assert_eq!(
            found.contains(s(&later, "client_id")),
            finds_later,
            "{query}"
        );
    }
}

/// 55 keys: two pages of the key list, newest first, each key on exactly
/// one, with links that keep the search, status and sort. Tried as `page`:
/// nothing, 2, `abc`, 0, -1 and 99.
async fn the_key_list_shows_fifty_keys_a_page_and_keeps_its_filters_from_page_to_page(
    backend: Backend,
) {
    let app = spawn_app_with(
        backend,
        &[
            NO_FLUSH[0],
            NO_FLUSH[1],
            ("KEYPORT_MAX_ACTIVE_KEYS_PER_USER", "60"),
        ],
    )
    .await;
    let ana = person(&app, "admin").await;
    let mut client_ids = Vec::new();
    let mut secrets = std::collections::HashMap::new();
    for n in 0..55 {
        let key = app
            .create_key_over_http(&ana.session, json!({"name": format!("batch {n:02}")}))
            .await;
        client_ids.push(s(&key, "client_id").to_owned());
        secrets.insert(
            s(&key, "client_id").to_owned(),
            s(&key, "client_secret").to_owned(),
        );
    }
    let browser = Browser::signed_in(&app, &ana.email).await;
    let rows = |html: &str| -> Vec<String> {
        client_ids
            .iter()
            .filter(|id| html.contains(&format!("<tr data-client-id=\"{id}\"")))
            .cloned()
            .collect()
    };

    let first = browser.get("/console/keys").await.html;
    let second = browser.get("/console/keys?page=2").await.html;
    let (on_first, on_second) = (rows(&first), rows(&second));
    assert_eq!((on_first.len(), on_second.len()), (50, 5));
    assert!(
        on_first.iter().all(|id| !on_second.contains(id)),
        "a key on both pages"
    );
    assert!(first.contains("55 keys: 1–50 shown"), "{first}");
    assert!(first.contains("Page 1 of 2"));
    assert!(first.contains("<a href=\"/console/keys?page=2\" rel=\"next\">"));
    assert!(!first.contains("rel=\"prev\""));
    assert!(second.contains("55 keys: 51–55 shown"));
    assert!(second.contains("<a href=\"/console/keys\" rel=\"prev\">"));
    assert!(!second.contains("rel=\"next\""));
    // Keys made in the same second keep one order from page to page.
    assert_eq!(rows(&browser.get("/console/keys").await.html), on_first);

    // A key on the second page draws its own week of use there.
    let used = &on_second[0];
    for _ in 0..2 {
        assert_eq!(token_status(&app, used, &secrets[used]).await, 200);
    }
    flush(&app).await;
    let second = browser.get("/console/keys?page=2").await.html;
    let row = second
        .split(&format!("<tr data-client-id=\"{used}\""))
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .expect("the used key's row");
    assert!(row.contains("data-total=\"2\""), "{row}");

    for (page, shows) in [("abc", 1), ("0", 1), ("-1", 1), ("99", 2)] {
        let listed = browser.get(&format!("/console/keys?page={page}")).await;
        assert_eq!(listed.status, StatusCode::OK, "page={page}");
        assert!(
            listed.html.contains(&format!("Page {shows} of 2")),
            "page={page}"
        );
    }

    // The filters ride along to the next page.
    let searched = browser
        .get("/console/keys?q=batch&status=active&sort=last_used")
        .await
        .html
        .replace("&#38;", "&");
    assert!(
        searched.contains(
            "<a href=\"/console/keys?status=active&sort=last_used&q=batch&page=2\" rel=\"next\">"
        ),
        "{searched}"
    );
    let own = browser.get("/console/keys?owner=me").await.html;
    assert!(
        own.contains("<a href=\"/console/keys?owner=me&#38;page=2\" rel=\"next\">"),
        "{own}"
    );
    let narrowed = browser.get("/console/keys?q=batch+0").await.html;
    assert_eq!(rows(&narrowed).len(), 10, "batch 00 to batch 09");
    assert!(narrowed.contains("10 keys matching"));
    assert!(
        !narrowed.contains("class=\"pager\""),
        "one page needs no pager"
    );
}
