//! The web console under `/console/`: server-rendered pages (askama
//! templates compiled into the binary) over the same service functions as the
//! JSON API, with one small script of our own for dialogs, copying and "Test
//! connection". Every asset is embedded: no CDN, no Node.js at run time.
//!
//! Pages: sign-in, first-run setup, set-password, the overview (home: what
//! needs attention, trends, top keys, housekeeping), API keys (admins: the
//! company's; everyone: their own) and each key's page (usage chart, events,
//! settings, danger zone), users and policy (admins), audit (admins, with a
//! CSV export),
//! webhooks (holders of `webhooks:manage`: admins the company's endpoints,
//! members their own) with each endpoint's attempts, token exchange trust
//! (admins: trusted issuers and their rules).
//! Every answer carries a strict Content-Security-Policy (no inline script)
//! and `Cache-Control: no-store`; every state change needs the session's CSRF
//! token and an `Origin` from this server.

mod auth;
mod forms;
mod pages;
mod views;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpResponse, web};

use crate::domain::{SecretDigest, SetupToken};

/// What the console remembers between requests, per instance.
#[derive(Default)]
pub struct ConsoleState {
    /// The first-run setup token's digest, until it is used or the process
    /// ends (it is only made while the database has no user).
    setup: Mutex<Option<SecretDigest>>,
    /// Form ids already submitted, so a double submit changes nothing.
    submitted: Mutex<HashMap<String, Instant>>,
}

/// How long a submitted form's id is remembered.
const FORM_MEMORY: Duration = Duration::from_secs(3600);

impl ConsoleState {
    /// Makes the one-time setup token; its link is for the operator's log.
    pub fn arm_setup(&self) -> SetupToken {
        let token = SetupToken::generate();
        *self.setup.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.digest());
        token
    }

    /// Uses up the setup token if `presented` is it.
    fn take_setup(&self, presented: &str) -> bool {
        let Ok(token) = SetupToken::parse(presented) else {
            return false;
        };
        let mut armed = self.setup.lock().unwrap_or_else(|e| e.into_inner());
        match armed.as_ref() {
            Some(digest) if digest.matches(&token.digest()) => {
                *armed = None;
                true
            }
            _ => false,
        }
    }

    /// Puts a setup token back after a refused setup (weak password, bad
    /// email), so the operator's link still works.
    fn rearm_setup(&self, presented: &str) {
        if let Ok(token) = SetupToken::parse(presented) {
            let mut armed = self.setup.lock().unwrap_or_else(|e| e.into_inner());
            if armed.is_none() {
                *armed = Some(token.digest());
            }
        }
    }

    fn setup_armed(&self, presented: &str) -> bool {
        let Ok(token) = SetupToken::parse(presented) else {
            return false;
        };
        self.setup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|digest| digest.matches(&token.digest()))
    }

    /// Forgets a form id whose submission changed nothing, so the person
    /// can correct the form and send it again.
    fn release_submission(&self, form_id: &str) {
        self.submitted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(form_id);
    }

    /// True the first time `form_id` is seen (within the memory window).
    fn first_submission(&self, form_id: &str) -> bool {
        let mut seen = self.submitted.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        seen.retain(|_, at| now.duration_since(*at) < FORM_MEMORY);
        if form_id.is_empty() || form_id.len() > 64 || seen.contains_key(form_id) {
            return false;
        }
        seen.insert(form_id.to_owned(), now);
        true
    }
}

/// The Content-Security-Policy of every console answer: our own script and
/// styles only, no inline code, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Registers `/console` and its pages.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/console",
        web::get().to(|| async {
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/console/"))
                .finish()
        }),
    );
    cfg.service(
        web::scope("/console")
            .wrap(
                DefaultHeaders::new()
                    .add((header::CONTENT_SECURITY_POLICY, CSP))
                    .add((header::X_FRAME_OPTIONS, "DENY"))
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .add((header::REFERRER_POLICY, "same-origin")),
            )
            .route("/", web::get().to(pages::home))
            .route("/assets/console.css", web::get().to(stylesheet))
            .route("/assets/console.js", web::get().to(script))
            .route("/setup", web::get().to(pages::setup_form))
            .route("/setup", web::post().to(pages::setup))
            .route("/sign-in", web::get().to(pages::sign_in_form))
            .route("/sign-in", web::post().to(pages::sign_in))
            .route("/sign-out", web::post().to(pages::sign_out))
            .route("/set-password", web::get().to(pages::set_password_form))
            .route("/set-password", web::post().to(pages::set_password))
            .route("/overview", web::get().to(pages::overview))
            .route("/keys", web::get().to(pages::keys))
            .route("/keys/{id}", web::get().to(pages::key_page))
            .route("/keys", web::post().to(pages::create_key))
            .route("/keys/{id}/revoke", web::post().to(pages::revoke_key))
            .route("/keys/{id}/delete", web::post().to(pages::delete_key))
            .route("/keys/{id}/disable", web::post().to(pages::disable_key))
            .route("/keys/{id}/enable", web::post().to(pages::enable_key))
            .route("/keys/{id}/roll", web::post().to(pages::roll_key))
            .route(
                "/keys/{id}/settings",
                web::post().to(pages::change_settings),
            )
            .route(
                "/keys/{id}/webhook-signing",
                web::post().to(pages::mark_webhook_signing),
            )
            .route("/keys/{id}/postman.json", web::get().to(pages::postman))
            .route(
                "/keys/{id}/public-keys",
                web::get().to(pages::key_public_keys),
            )
            .route(
                "/keys/{id}/public-keys",
                web::post().to(pages::add_public_key),
            )
            .route(
                "/keys/{id}/public-keys/{thumbprint}/remove",
                web::post().to(pages::remove_public_key),
            )
            .route("/users", web::get().to(pages::users))
            .route("/users", web::post().to(pages::add_user))
            .route(
                "/users/{id}/permissions",
                web::post().to(pages::set_permissions),
            )
            .route("/users/{id}/disable", web::post().to(pages::disable_user))
            .route("/users/{id}/enable", web::post().to(pages::enable_user))
            .route("/users/{id}/unlock", web::post().to(pages::unlock_user))
            .route("/policy", web::post().to(pages::set_policy))
            .route("/audit", web::get().to(pages::audit))
            .route("/audit.csv", web::get().to(pages::audit_csv))
            .route("/exchange", web::get().to(pages::exchange_trust))
            .route("/exchange/issuers", web::post().to(pages::add_issuer))
            .route(
                "/exchange/issuers/{id}/delete",
                web::post().to(pages::delete_issuer),
            )
            .route(
                "/exchange/issuers/{id}/rules",
                web::post().to(pages::add_rule),
            )
            .route(
                "/exchange/issuers/{id}/rules/{rule_id}/delete",
                web::post().to(pages::delete_rule),
            )
            .route("/webhooks", web::get().to(pages::webhooks))
            .route("/webhooks", web::post().to(pages::add_endpoint))
            .route("/webhooks/{id}", web::get().to(pages::webhook))
            .route("/webhooks/{id}/test", web::post().to(pages::test_endpoint))
            .route(
                "/webhooks/{id}/enable",
                web::post().to(pages::enable_endpoint),
            )
            .route(
                "/webhooks/{id}/disable",
                web::post().to(pages::disable_endpoint),
            )
            .route(
                "/webhooks/{id}/delete",
                web::post().to(pages::delete_endpoint),
            )
            .route(
                "/webhooks/{id}/deliveries/{delivery_id}/redeliver",
                web::post().to(pages::redeliver),
            )
            .default_service(web::to(pages::not_found)),
    );
}

const STYLESHEET: &str = include_str!("assets/console.css");
const SCRIPT: &str = include_str!("assets/console.js");

async fn stylesheet() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLESHEET)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        ))
        .body(body)
}
