//! The console's key form takes a rate for reports and webhooks (issue 17),
//! and the key list shows each key's rate, its own or the company's
//! default; a malformed rate is refused next to its field. Plain HTTP, both
//! backends.

use reqwest::StatusCode;

use crate::console_webhooks::{Person, hidden};
use crate::helpers::{Backend, spawn_app};

async fn a_key_gets_its_rate_from_the_console_form_and_the_list_shows_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = app.tenant("Acme").await;
    app.user(
        &acme,
        "ana@acme.io",
        "admin",
        "reports:read webhooks:write keys:manage",
    )
    .await;
    let ana = Person::signed_in(&app, "ana@acme.io").await;
    let create = |fields: Vec<(&'static str, &'static str)>| {
        let ana = &ana;
        async move {
            let csrf = hidden(&ana.get("/console/keys").await.html, "csrf");
            let form_id = uuid::Uuid::new_v4().simple().to_string();
            let mut all = vec![("name", "rated"), ("scope", "reports:read")];
            all.extend(fields);
            ana.post_as("/console/keys", &all, &csrf, &form_id, true)
                .await
        }
    };
    for bad in ["fast", "0/min", "10/fortnight"] {
        let refused = create(vec![("rate_limit", bad)]).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            refused.html
        );
        assert!(refused.html.contains("role=\"alert\""), "{bad}");
    }
    let created = create(vec![("rate_limit", "120/min")]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.html);
    let list = ana.get("/console/keys").await.html;
    assert!(list.contains("Rate: 120 per 60 s (burst 120)"), "{list}");

    // The key holds that rate (its enforcement: tests/api/rate_limits.rs).
    let keys = keyport::service::keys::list_keys(
        &app.service(),
        &keyport::domain::Principal::operator(),
        keyport::service::keys::KeyListing::All,
    )
    .await
    .expect("list keys");
    let rated = keys.iter().find(|k| k.name == "rated").expect("the key");
    let rate = rated.rate_limit.expect("a rate");
    assert_eq!((rate.requests, rate.per_seconds), (120, 60));
}

crate::on_both_backends!(a_key_gets_its_rate_from_the_console_form_and_the_list_shows_it);
