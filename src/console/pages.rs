//! The console's handlers: read the form, call one service function, render
//! the page or redirect with a notice. The rules are the service's: a page
//! shows what the signed-in person's session may see, nothing more.

use actix_web::cookie::Cookie;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::NaiveDate;
use serde_json::json;

use super::ConsoleState;
use super::auth::{self, Visitor};
use super::forms::FormFields;
use super::views::*;
use crate::domain::{Credential, Role, UnixTime, UserStatus, now};
use crate::routes::{AppState, client_address};
use crate::service::audit as audit_service;
use crate::service::keys::{self as key_service, KeyListing, NewKeyRequest};
use crate::service::{ServiceError, sessions, tenants, users};
use crate::storage::AuditFilter;

type State = web::Data<AppState>;
type Console = web::Data<ConsoleState>;

const FLASH_COOKIE: &str = "keyport_flash";

fn tls(state: &AppState) -> bool {
    state.service.settings.tls.is_some()
}

/// A rendered page: never cached, since every page is one person's.
fn page(status: StatusCode, template: &impl Template) -> HttpResponse {
    match template.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(html),
        Err(err) => {
            log::error!("console template failed: {err}");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body("the page could not be rendered; the error was logged")
        }
    }
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_owned()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// A redirect that shows `notice` on the next page.
fn redirect_with(to: &str, notice: &str, state: &AppState) -> HttpResponse {
    let mut response = redirect(to);
    let cookie = Cookie::build(
        FLASH_COOKIE,
        percent_encoding::utf8_percent_encode(notice, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
    )
    .path("/console")
    .http_only(true)
    .same_site(actix_web::cookie::SameSite::Strict)
    .secure(tls(state))
    .max_age(actix_web::cookie::time::Duration::seconds(60))
    .finish();
    let _ = response.add_cookie(&cookie);
    response
}

/// The notice left by the previous redirect, once.
fn take_flash(req: &HttpRequest, response: &mut HttpResponse, state: &AppState) -> Option<String> {
    let cookie = req.cookie(FLASH_COOKIE)?;
    let text = percent_encoding::percent_decode_str(cookie.value())
        .decode_utf8_lossy()
        .chars()
        .take(300)
        .collect::<String>();
    let mut removal = Cookie::build(FLASH_COOKIE, "")
        .path("/console")
        .secure(tls(state))
        .finish();
    removal.make_removal();
    let _ = response.add_cookie(&removal);
    Some(text)
}

/// Renders, with the pending notice (if any) handed to `build`.
fn page_with_flash<T: Template>(
    req: &HttpRequest,
    state: &AppState,
    build: impl FnOnce(Option<String>) -> T,
) -> HttpResponse {
    let mut response = HttpResponse::Ok().finish();
    let flash = take_flash(req, &mut response, state);
    let mut rendered = page(StatusCode::OK, &build(flash));
    for cookie in response.cookies() {
        let _ = rendered.add_cookie(&cookie);
    }
    rendered
}

async fn nav(state: &AppState, visitor: &Visitor, active: &'static str) -> Nav {
    let email = match &visitor.principal.user {
        Some(user) => users::get_user(&state.service, &visitor.principal, &user.user_id)
            .await
            .map(|u| u.email)
            .unwrap_or_default(),
        None => String::new(),
    };
    Nav {
        email,
        admin: is_admin(visitor),
        csrf: visitor.csrf.clone(),
        active,
    }
}

fn is_admin(visitor: &Visitor) -> bool {
    visitor
        .principal
        .user
        .as_ref()
        .is_some_and(|u| u.role == Role::Admin)
}

fn wants_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn json_error(status: StatusCode, error: &PageError, field: Option<&str>) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "error": error.code, "message": error.message, "field": field }))
}

fn status_of(err: &ServiceError) -> StatusCode {
    match err {
        ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
        ServiceError::Forbidden(_) | ServiceError::InsufficientScope(_) => StatusCode::FORBIDDEN,
        ServiceError::Conflict(_)
        | ServiceError::KeyLimitReached { .. }
        | ServiceError::ConfirmationRequired { .. } => StatusCode::CONFLICT,
        ServiceError::CredentialRevoked(_) | ServiceError::BadCredentials => {
            StatusCode::UNAUTHORIZED
        }
        ServiceError::Storage(_) | ServiceError::Internal(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// The signed-in visitor, or the answer that sends them to sign in.
async fn signed_in(req: &HttpRequest, state: &State) -> Result<Visitor, HttpResponse> {
    match auth::visitor(req, state).await {
        Some(visitor) => Ok(visitor),
        None if wants_json(req) => Err(json_error(
            StatusCode::UNAUTHORIZED,
            &PageError::new(
                "session_expired",
                "your session ended: sign in again (nothing was changed)",
            ),
            None,
        )),
        None => Err(redirect_with(
            "/console/sign-in",
            "Please sign in. If you were signed in, your session ended and nothing was changed.",
            state,
        )),
    }
}

/// The visitor and the form of a state change that passed the CSRF and
/// origin checks.
async fn checked_change(
    req: &HttpRequest,
    state: &State,
    body: &[u8],
) -> Result<(Visitor, FormFields), HttpResponse> {
    let visitor = signed_in(req, state).await?;
    let form = FormFields::parse(body);
    let presented = form.get("csrf").unwrap_or("");
    if !auth::state_change_allowed(req, &visitor.csrf, presented) {
        let error = PageError::new(
            "csrf_failed",
            "this form did not come from this console page (or the page is too old): reload and try again",
        );
        return Err(if wants_json(req) {
            json_error(StatusCode::FORBIDDEN, &error, None)
        } else {
            HttpResponse::Forbidden()
                .content_type("text/plain; charset=utf-8")
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body(format!("{} ({})", error.message, error.code))
        });
    }
    Ok((visitor, form))
}

pub async fn home(req: HttpRequest, state: State) -> HttpResponse {
    match auth::visitor(&req, &state).await {
        Some(visitor) if is_admin(&visitor) => redirect("/console/keys"),
        Some(_) => redirect("/console/keys?owner=me"),
        None => redirect("/console/sign-in"),
    }
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!(
            "no console page at {}",
            crate::domain::redact_credentials(req.path())
                .chars()
                .take(200)
                .collect::<String>()
        ))
}

// --- first run, sign-in, set-password ------------------------------------

#[derive(serde::Deserialize)]
pub struct SetupQuery {
    token: Option<String>,
}

pub async fn setup_form(
    state: State,
    console: Console,
    query: web::Query<SetupQuery>,
) -> HttpResponse {
    let token = query.token.clone().unwrap_or_default();
    let first_run = tenants::is_first_run(&state.service).await.unwrap_or(false);
    if !first_run || !console.setup_armed(&token) {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body("this setup link is not valid: it works once, on a server nobody uses yet, until the server restarts");
    }
    page(
        StatusCode::OK,
        &SetupPage {
            error: None,
            token,
            company: String::new(),
            email: String::new(),
        },
    )
}

pub async fn setup(
    req: HttpRequest,
    state: State,
    console: Console,
    body: web::Bytes,
) -> HttpResponse {
    let form = FormFields::parse(&body);
    let token = form.get("token").unwrap_or("").to_owned();
    let company = form.get("company").unwrap_or("").to_owned();
    let email = form.get("email").unwrap_or("").to_owned();
    let password = form.get("password").unwrap_or("");
    let again = |error: PageError| {
        page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &SetupPage {
                error: Some(error),
                token: token.clone(),
                company: company.clone(),
                email: email.clone(),
            },
        )
    };
    if !auth::same_origin(&req) || !console.setup_armed(&token) {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("this setup link is not valid any more");
    }
    if password.chars().count() < 12 {
        return again(PageError::new(
            "weak_password",
            "a password needs at least 12 characters",
        ));
    }
    if !console.take_setup(&token) {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("this setup link was used already");
    }
    let address = client_address(&req).map(|ip| ip.to_string());
    match tenants::first_run(&state.service, address, &company, &email, password).await {
        Ok(()) => start_session(&req, &state, &email, password).await,
        Err(err) => {
            // Nothing was created (or only what a retry reports): let the
            // operator try again with the same link.
            console.rearm_setup(&token);
            again(PageError::from(&err))
        }
    }
}

/// Signs in with a password and sets the session cookie.
async fn start_session(
    req: &HttpRequest,
    state: &State,
    email: &str,
    password: &str,
) -> HttpResponse {
    let address = client_address(req).map(|ip| ip.to_string());
    match sessions::sign_in(&state.service, email, password, address).await {
        Ok(session) => {
            let mut response = redirect("/console/");
            let max_age = session.expires_at - now();
            let _ = response.add_cookie(&auth::session_cookie(&session.token, max_age, tls(state)));
            response
        }
        Err(err) => page(
            status_of(&err),
            &SignInPage {
                flash: None,
                error: Some(sign_in_error(&err)),
                email: email.to_owned(),
            },
        ),
    }
}

/// A refused sign-in in words. A locked account answers like a wrong
/// password (nobody learns which emails exist), so the words cover both.
fn sign_in_error(err: &ServiceError) -> PageError {
    match err {
        ServiceError::BadCredentials => PageError::new(
            err.code(),
            "The email or password is wrong, or the account is locked after repeated failed \
             sign-ins (for 15 minutes, or until an admin unlocks it).",
        ),
        other => PageError::from(other),
    }
}

pub async fn sign_in_form(req: HttpRequest, state: State) -> HttpResponse {
    if auth::visitor(&req, &state).await.is_some() {
        return redirect("/console/");
    }
    page_with_flash(&req, &state, |flash| SignInPage {
        flash,
        error: None,
        email: String::new(),
    })
}

pub async fn sign_in(req: HttpRequest, state: State, body: web::Bytes) -> HttpResponse {
    if !auth::same_origin(&req) {
        return HttpResponse::Forbidden().body("sign in from this server's page");
    }
    let form = FormFields::parse(&body);
    let email = form.get("email").unwrap_or("");
    let password = form.get("password").unwrap_or("");
    start_session(&req, &state, email, password).await
}

pub async fn sign_out(req: HttpRequest, state: State, body: web::Bytes) -> HttpResponse {
    let (visitor, _) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    if let Err(err) = sessions::sign_out(&state.service, &visitor.principal, &visitor.session).await
    {
        log::warn!(
            "console sign-out failed: {}",
            crate::telemetry::error_chain(&err)
        );
    }
    let mut response = redirect_with("/console/sign-in", "You are signed out.", &state);
    let _ = response.add_cookie(&auth::removal_cookie(tls(&state)));
    response
}

pub async fn set_password_form() -> HttpResponse {
    page(StatusCode::OK, &SetPasswordPage { error: None })
}

pub async fn set_password(req: HttpRequest, state: State, body: web::Bytes) -> HttpResponse {
    if !auth::same_origin(&req) {
        return HttpResponse::Forbidden().body("set your password from this server's page");
    }
    let form = FormFields::parse(&body);
    let result = sessions::set_password_with_token(
        &state.service,
        client_address(&req).map(|ip| ip.to_string()),
        form.get("token").unwrap_or(""),
        form.get("new_password").unwrap_or(""),
    )
    .await;
    match result {
        Ok(()) => redirect_with(
            "/console/sign-in",
            "Your password is set: sign in with it.",
            &state,
        ),
        Err(err) => page(
            status_of(&err),
            &SetPasswordPage {
                error: Some(PageError::from(&err)),
            },
        ),
    }
}

// --- keys -------------------------------------------------------------------

#[derive(serde::Deserialize, Default)]
pub struct KeysQuery {
    owner: Option<String>,
    status: Option<String>,
    sort: Option<String>,
}

fn form_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn keys_page(
    state: &State,
    visitor: &Visitor,
    query: &KeysQuery,
    flash: Option<String>,
    create_error: Option<PageError>,
    created: Option<CreatedView>,
) -> (StatusCode, KeysPage) {
    let mine = query.owner.as_deref() == Some("me") || !is_admin(visitor);
    let status = query
        .status
        .as_deref()
        .filter(|s| STATUS_OPTIONS.iter().any(|(value, _)| value == s))
        .unwrap_or("all")
        .to_owned();
    let sort = match query.sort.as_deref() {
        Some("last_used") => "last_used",
        _ => "created",
    }
    .to_owned();
    let at = now();
    let (keys, may_manage, error) =
        match key_service::list_keys(&state.service, &visitor.principal, KeyListing::All).await {
            Ok(keys) => (keys, true, None),
            Err(ServiceError::InsufficientScope(_)) => (Vec::new(), false, None),
            Err(err) => (Vec::new(), true, Some(PageError::from(&err))),
        };
    let own_id = visitor.principal.user_id().unwrap_or_default().to_owned();
    let mut keys: Vec<KeyView> = keys
        .into_iter()
        .filter(|k| !mine || k.owner_id == own_id)
        .filter(|k| status == "all" || k.status.as_str() == status)
        .map(|k| KeyView::of(k, &own_id, at))
        .collect();
    if sort == "last_used" {
        keys.sort_by_key(|k| std::cmp::Reverse(k.last_used_at.unwrap_or(i64::MIN)));
    } else {
        keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    }
    let status_code = if error.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today + chrono::Days::new(1);
    // Keys expire at most ten years out (key_service::MAX_KEY_LIFETIME).
    let latest = today + chrono::Days::new(key_service::MAX_KEY_LIFETIME.as_secs() / 86_400 - 1);
    (
        status_code,
        KeysPage {
            nav: nav(state, visitor, if mine { "mine" } else { "keys" }).await,
            heading: if mine { "My keys" } else { "API Keys" },
            flash,
            error,
            create_error,
            mine,
            may_manage,
            keys,
            status,
            status_options: STATUS_OPTIONS,
            sort,
            scopes: visitor.principal.scopes.iter().map(str::to_owned).collect(),
            max_ttl: state.service.settings.tokens.max_ttl.as_secs(),
            tomorrow: tomorrow.format("%Y-%m-%d").to_string(),
            latest: latest.format("%Y-%m-%d").to_string(),
            form_id: form_id(),
            created,
        },
    )
}

pub async fn keys(req: HttpRequest, state: State, query: web::Query<KeysQuery>) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    let mut carrier = HttpResponse::Ok().finish();
    let flash = take_flash(&req, &mut carrier, &state);
    let (status, template) = keys_page(&state, &visitor, &query, flash, None, None).await;
    let mut response = page(status, &template);
    for cookie in carrier.cookies() {
        let _ = response.add_cookie(&cookie);
    }
    response
}

/// The key a form asks for.
struct KeyForm {
    name: String,
    scopes: String,
    expires_in: Option<u64>,
    token_ttl: Option<u64>,
}

/// The key a form asks for, or the error and the field at fault.
fn new_key_request(form: &FormFields) -> Result<KeyForm, (PageError, &'static str)> {
    let name = form
        .get("name")
        .ok_or_else(|| {
            (
                PageError::new(
                    "invalid_input",
                    "give the key a name, e.g. \"ERP nightly sync\"",
                ),
                "name",
            )
        })?
        .to_owned();
    let scopes = form.all("scope");
    if scopes.is_empty() {
        return Err((
            PageError::new("invalid_input", "pick at least one scope for the key"),
            "scope",
        ));
    }
    let expires_in = match form.get("expires_on") {
        None => None,
        Some(day) => {
            let date = NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| {
                (
                    PageError::new("invalid_input", "the expiry date is not a date"),
                    "expires_on",
                )
            })?;
            let end: UnixTime = date
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp())
                .unwrap_or(0);
            let seconds = end - now();
            if seconds <= 0 {
                return Err((
                    PageError::new("invalid_input", "the expiry date must be in the future"),
                    "expires_on",
                ));
            }
            Some(seconds as u64)
        }
    };
    let token_ttl = match form.get("token_ttl") {
        None => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            (
                PageError::new("invalid_input", "the token lifetime is a number of seconds"),
                "token_ttl",
            )
        })?),
    };
    Ok(KeyForm {
        name,
        scopes: scopes.join(" "),
        expires_in,
        token_ttl,
    })
}

/// A refused key creation: JSON for the page's script, else the page with
/// the error next to the form.
async fn refuse_create(
    state: &State,
    visitor: &Visitor,
    json: bool,
    error: PageError,
    field: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    if json {
        return json_error(status, &error, field);
    }
    let (_, template) = keys_page(
        state,
        visitor,
        &KeysQuery::default(),
        None,
        Some(error),
        None,
    )
    .await;
    page(status, &template)
}

pub async fn create_key(
    req: HttpRequest,
    state: State,
    console: Console,
    body: web::Bytes,
) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let json = wants_json(&req);
    let KeyForm {
        name,
        scopes,
        expires_in,
        token_ttl,
    } = match new_key_request(&form) {
        Ok(parts) => parts,
        Err((error, field)) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return refuse_create(&state, &visitor, json, error, Some(field), status).await;
        }
    };
    let form_id = form.get("form_id").unwrap_or("");
    if !console.first_submission(form_id) {
        let error = PageError::new(
            "already_submitted",
            "this form was already submitted: nothing was changed (reload the page to create another key)",
        );
        return refuse_create(&state, &visitor, json, error, None, StatusCode::CONFLICT).await;
    }
    let created = key_service::create_key(
        &state.service,
        &visitor.principal,
        NewKeyRequest {
            owner_email: None,
            name: &name,
            scopes: Some(&scopes),
            expires_in: expires_in.map(std::time::Duration::from_secs),
            token_ttl: token_ttl.map(std::time::Duration::from_secs),
        },
    )
    .await;
    let created = match created {
        Ok(created) => created,
        Err(err) => {
            // Nothing was created: the corrected form may be sent again.
            console.release_submission(form_id);
            let field = match &err {
                ServiceError::Invalid(message) if message.contains("name") => Some("name"),
                ServiceError::Invalid(message) if message.contains("scope") => Some("scope"),
                ServiceError::Invalid(message) if message.contains("expir") => Some("expires_on"),
                ServiceError::Invalid(message) if message.contains("lifetime") => Some("token_ttl"),
                _ => None,
            };
            let status = status_of(&err);
            return refuse_create(&state, &visitor, json, PageError::from(&err), field, status)
                .await;
        }
    };
    let view = created_view(&state, &created);
    if json {
        return HttpResponse::Created()
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .json(json!({
                "id": view.id,
                "client_id": view.client_id,
                "client_secret": view.secret,
                "curl": view.curl,
                "postman": format!("/console/keys/{}/postman.json", view.id),
            }));
    }
    let (_, template) = keys_page(
        &state,
        &visitor,
        &KeysQuery::default(),
        Some(format!("Key {} created.", created.key.name)),
        None,
        Some(view),
    )
    .await;
    page(StatusCode::CREATED, &template)
}

/// A key action from a row's dialog, then back to the list.
async fn key_action(
    req: HttpRequest,
    state: State,
    body: web::Bytes,
    key_id: String,
    action: KeyAction,
) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let principal = &visitor.principal;
    let done = match action {
        KeyAction::Revoke => key_service::revoke_key(&state.service, principal, &key_id)
            .await
            .map(|k| format!("Key {} is revoked.", k.name)),
        KeyAction::Delete => {
            key_service::delete_key(&state.service, principal, &key_id, form.get("confirm"))
                .await
                .map(|k| format!("Key {} is deleted.", k.name))
        }
        KeyAction::MarkWebhookSigning => {
            key_service::mark_webhook_signing(&state.service, principal, &key_id)
                .await
                .map(|k| format!("Key {} now signs webhooks.", k.name))
        }
        KeyAction::Disable => key_service::disable_key(&state.service, principal, &key_id)
            .await
            .map(|k| format!("Key {} is disabled: it is refused until enabled.", k.name)),
        KeyAction::Enable => key_service::enable_key(&state.service, principal, &key_id)
            .await
            .map(|k| format!("Key {} is enabled.", k.name)),
    };
    let back = req
        .headers()
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .filter(|r| r.contains("owner=me"))
        .map_or("/console/keys", |_| "/console/keys?owner=me");
    match done {
        Ok(notice) => redirect_with(back, &notice, &state),
        Err(err) => {
            let error = match &err {
                ServiceError::ConfirmationRequired { phrase } => PageError::new(
                    err.code(),
                    format!(
                        "the phrase did not match: type {phrase} exactly. Nothing was deleted."
                    ),
                ),
                other => PageError::from(other),
            };
            let (_, mut template) =
                keys_page(&state, &visitor, &KeysQuery::default(), None, None, None).await;
            template.error = Some(error);
            page(status_of(&err), &template)
        }
    }
}

enum KeyAction {
    Revoke,
    Delete,
    MarkWebhookSigning,
    Disable,
    Enable,
}

pub async fn disable_key(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    key_action(req, state, body, path.into_inner(), KeyAction::Disable).await
}

pub async fn enable_key(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    key_action(req, state, body, path.into_inner(), KeyAction::Enable).await
}

/// Rolls a key: the successor's secret is shown once, on this answer only.
pub async fn roll_key(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let grace = form
        .get("grace_seconds")
        .and_then(|g| g.parse::<i64>().ok());
    match key_service::roll_key(&state.service, &visitor.principal, &path, grace).await {
        Ok(rolled) => {
            let view = created_view(&state, &rolled.new);
            let notice = format!(
                "Key {} was rolled: the new key is below; the old one keeps working until it expires.",
                rolled.old.name
            );
            let (_, template) = keys_page(
                &state,
                &visitor,
                &KeysQuery::default(),
                Some(notice),
                None,
                Some(view),
            )
            .await;
            page(StatusCode::CREATED, &template)
        }
        Err(err) => {
            let (_, mut template) =
                keys_page(&state, &visitor, &KeysQuery::default(), None, None, None).await;
            template.error = Some(PageError::from(&err));
            page(status_of(&err), &template)
        }
    }
}

/// How the one-time dialog shows a new key.
fn created_view(state: &AppState, created: &key_service::CreatedKey) -> CreatedView {
    let issuer = &state.service.settings.tokens.issuer;
    CreatedView {
        curl: format!(
            "curl -u '{}:{}' -d grant_type=client_credentials {issuer}/oauth/token",
            created.key.client_id,
            created.secret.expose()
        ),
        id: created.key.id.clone(),
        client_id: created.key.client_id.clone(),
        secret: created.secret.expose().to_owned(),
    }
}

pub async fn revoke_key(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    key_action(req, state, body, path.into_inner(), KeyAction::Revoke).await
}

pub async fn delete_key(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    key_action(req, state, body, path.into_inner(), KeyAction::Delete).await
}

pub async fn mark_webhook_signing(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    key_action(
        req,
        state,
        body,
        path.into_inner(),
        KeyAction::MarkWebhookSigning,
    )
    .await
}

/// This key's Postman collection: the client ID and the server filled in,
/// never the secret.
pub async fn postman(req: HttpRequest, state: State, path: web::Path<String>) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    match key_service::find_key(&state.service, &visitor.principal, &path).await {
        Ok(key) => {
            let document =
                crate::postman::collection_for_key(&state.service.settings, &key.client_id);
            HttpResponse::Ok()
                .insert_header((
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"keyport-{}.postman_collection.json\"",
                        key.client_id
                    ),
                ))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .content_type("application/json")
                .body(
                    serde_json::to_string_pretty(&document)
                        .unwrap_or_else(|_| document.to_string()),
                )
        }
        Err(err) => HttpResponse::build(status_of(&err))
            .content_type("text/plain; charset=utf-8")
            .body(format!(
                "{} ({})",
                PageError::from(&err).message,
                err.code()
            )),
    }
}

// --- users and policy -----------------------------------------------------

async fn users_page(
    state: &State,
    visitor: &Visitor,
    flash: Option<String>,
    error: Option<PageError>,
    invite: Option<InviteView>,
) -> Result<UsersPage, ServiceError> {
    let at = now();
    let listed = users::list_users(&state.service, &visitor.principal, None).await?;
    let api_only_users = tenants::api_only_users(&state.service, &visitor.principal)
        .await
        .unwrap_or(false);
    Ok(UsersPage {
        nav: nav(state, visitor, "users").await,
        flash,
        error,
        users: listed.into_iter().map(|u| UserView::of(u, at)).collect(),
        grantable: crate::domain::GRANTABLE_SCOPES,
        api_only_users,
        invite,
    })
}

/// A page a member may not see: 403, in words.
fn forbidden(err: &ServiceError) -> HttpResponse {
    HttpResponse::build(status_of(err))
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!("{} ({})", PageError::from(err).message, err.code()))
}

pub async fn users(req: HttpRequest, state: State) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    let mut carrier = HttpResponse::Ok().finish();
    let flash = take_flash(&req, &mut carrier, &state);
    match users_page(&state, &visitor, flash, None, None).await {
        Ok(template) => {
            let mut response = page(StatusCode::OK, &template);
            for cookie in carrier.cookies() {
                let _ = response.add_cookie(&cookie);
            }
            response
        }
        Err(err) => forbidden(&err),
    }
}

/// The users page again with `err` shown, after a refused change.
async fn users_error(state: &State, visitor: &Visitor, err: ServiceError) -> HttpResponse {
    match users_page(state, visitor, None, Some(PageError::from(&err)), None).await {
        Ok(template) => page(status_of(&err), &template),
        Err(err) => forbidden(&err),
    }
}

pub async fn add_user(req: HttpRequest, state: State, body: web::Bytes) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let permissions = form.all("permission").join(" ");
    let created = users::create_user(
        &state.service,
        &visitor.principal,
        users::NewUserRequest {
            tenant: None,
            email: form.get("email").unwrap_or(""),
            role: form.get("role").unwrap_or("member"),
            permissions: &permissions,
        },
    )
    .await;
    match created {
        Ok(created) => {
            let expires = When::at(created.set_password_expires_at, now());
            let invite = InviteView {
                email: created.user.email.clone(),
                token: created.set_password_token.expose().to_owned(),
                expires: expires.exact,
            };
            let notice = format!("{} was added.", created.user.email);
            match users_page(&state, &visitor, Some(notice), None, Some(invite)).await {
                Ok(template) => page(StatusCode::CREATED, &template),
                Err(err) => forbidden(&err),
            }
        }
        Err(err) => users_error(&state, &visitor, err).await,
    }
}

async fn user_action(
    req: HttpRequest,
    state: State,
    body: web::Bytes,
    user_id: String,
    action: UserAction,
) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let principal = &visitor.principal;
    let service = &state.service;
    let done = match action {
        UserAction::Permissions => {
            let permissions = form.all("permission").join(" ");
            users::change_user(
                service,
                principal,
                &user_id,
                users::UserChange {
                    role: None,
                    permissions: Some(&permissions),
                },
            )
            .await
            .map(|u| format!("Permissions of {} saved.", u.email))
        }
        UserAction::Disable => {
            users::set_user_status(service, principal, &user_id, UserStatus::Disabled)
                .await
                .map(|u| format!("{} is disabled: their keys and sessions stopped.", u.email))
        }
        UserAction::Enable => {
            users::set_user_status(service, principal, &user_id, UserStatus::Active)
                .await
                .map(|u| format!("{} is enabled.", u.email))
        }
        UserAction::Unlock => users::unlock_user(service, principal, &user_id)
            .await
            .map(|()| "The account is unlocked.".to_owned()),
    };
    match done {
        Ok(notice) => redirect_with("/console/users", &notice, &state),
        Err(err) => users_error(&state, &visitor, err).await,
    }
}

enum UserAction {
    Permissions,
    Disable,
    Enable,
    Unlock,
}

pub async fn set_permissions(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    user_action(req, state, body, path.into_inner(), UserAction::Permissions).await
}

pub async fn disable_user(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    user_action(req, state, body, path.into_inner(), UserAction::Disable).await
}

pub async fn enable_user(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    user_action(req, state, body, path.into_inner(), UserAction::Enable).await
}

pub async fn unlock_user(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    user_action(req, state, body, path.into_inner(), UserAction::Unlock).await
}

pub async fn set_policy(req: HttpRequest, state: State, body: web::Bytes) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let on = form.get("api_only_users") == Some("true");
    match tenants::set_api_only_users(&state.service, &visitor.principal, None, on).await {
        Ok(()) => {
            let notice = if on {
                "API-only users is on: users holding an active key sign in no more, and their sessions ended."
            } else {
                "API-only users is off."
            };
            let mut response = redirect_with("/console/users", notice, &state);
            // The admin's own session may have been one of those ended.
            if on
                && matches!(visitor.principal.credential, Credential::Session { .. })
                && auth::visitor(&req, &state).await.is_none()
            {
                response = redirect_with("/console/sign-in", notice, &state);
            }
            response
        }
        Err(err) => users_error(&state, &visitor, err).await,
    }
}

// --- audit --------------------------------------------------------------------

#[derive(serde::Deserialize, Default)]
pub struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<String>,
}

fn day_start(day: &str) -> Option<i64> {
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()?
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
}

pub async fn audit(req: HttpRequest, state: State, query: web::Query<AuditQuery>) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    let blank = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let action = blank(&query.action);
    let actor = blank(&query.actor);
    let since = blank(&query.since);
    let until = blank(&query.until);
    let mut error = None;
    let since_at = since.as_deref().and_then(|d| {
        day_start(d).or_else(|| {
            error = Some(PageError::new(
                "invalid_query",
                "the From date is not a date",
            ));
            None
        })
    });
    let until_at = until.as_deref().and_then(|d| {
        day_start(d).map(|t| t + 86_399).or_else(|| {
            error = Some(PageError::new("invalid_query", "the To date is not a date"));
            None
        })
    });
    let after = blank(&query.after).filter(|id| uuid::Uuid::parse_str(id).is_ok());
    const PAGE: u32 = 50;
    let listed = audit_service::list(
        &state.service,
        &visitor.principal,
        AuditFilter {
            action: action.as_deref(),
            actor: actor.as_deref(),
            target: None,
            since: since_at,
            until: until_at,
            after_id: after.as_deref(),
            limit: PAGE,
        },
    )
    .await;
    let (events, has_more) = match listed {
        Ok(found) => found,
        Err(err) => return forbidden(&err),
    };
    let next_page = if has_more {
        events.last().map(|last| {
            let mut params = vec![("after", last.id.clone())];
            for (name, value) in [
                ("action", &action),
                ("actor", &actor),
                ("since", &since),
                ("until", &until),
            ] {
                if let Some(value) = value {
                    params.push((name, value.clone()));
                }
            }
            format!(
                "/console/audit?{}",
                serde_urlencoded::to_string(&params).unwrap_or_default()
            )
        })
    } else {
        None
    };
    let at = now();
    let template = AuditPage {
        nav: nav(&state, &visitor, "audit").await,
        error,
        filter: AuditFilterView {
            action: action.unwrap_or_default(),
            actor: actor.unwrap_or_default(),
            since: since.unwrap_or_default(),
            until: until.unwrap_or_default(),
        },
        known_actions: KNOWN_ACTIONS,
        events: events.into_iter().map(|e| EventView::of(e, at)).collect(),
        next_page,
    };
    page(StatusCode::OK, &template)
}
