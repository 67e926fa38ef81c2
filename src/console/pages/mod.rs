//! The console's handlers: read the form, call one service function, render
//! the page or redirect with a notice. The rules are the service's: a page
//! shows what the signed-in person's session may see, nothing more. This
//! module holds what every page shares; one module per area holds its pages.

mod audit;
mod exchange;
mod insight;
mod keys;
mod public_keys;
mod session;
mod users;
mod webhooks;

pub use audit::audit;
pub use audit::audit_csv;
pub use exchange::{add_issuer, add_rule, delete_issuer, delete_rule, exchange_trust};
pub use insight::{key_page, overview};
pub use keys::{
    change_settings, create_key, delete_key, disable_key, enable_key, keys, mark_webhook_signing,
    postman, revoke_key, roll_key,
};
pub use public_keys::{add_public_key, key_public_keys, remove_public_key};
pub use session::{
    set_password, set_password_form, setup, setup_form, sign_in, sign_in_form, sign_out,
};
pub use users::{
    add_user, disable_user, enable_user, set_permissions, set_policy, unlock_user, users,
};
pub use webhooks::{
    add_endpoint, delete_endpoint, disable_endpoint, enable_endpoint, redeliver, test_endpoint,
    webhook, webhooks,
};

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
use crate::domain::{Credential, Role, UnixTime, UserStatus, WEBHOOKS_MANAGE, now};
use crate::routes::client_address;
use crate::routes::error::service_status;
use crate::service::audit::AuditFilter;
use crate::service::keys::{self as key_service, KeyListing, NewKeyRequest};
use crate::service::{ServiceError, sessions, setup, tenants, users as user_service};
use crate::state::AppState;

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

/// The notice the previous redirect left, if any.
fn read_flash(req: &HttpRequest) -> Option<String> {
    let cookie = req.cookie(FLASH_COOKIE)?;
    Some(
        percent_encoding::percent_decode_str(cookie.value())
            .decode_utf8_lossy()
            .chars()
            .take(300)
            .collect(),
    )
}

/// A page that showed the notice removes it, so it shows once.
fn shown_once(mut response: HttpResponse, req: &HttpRequest, state: &AppState) -> HttpResponse {
    if req.cookie(FLASH_COOKIE).is_some() {
        let mut removal = Cookie::build(FLASH_COOKIE, "")
            .path("/console")
            .secure(tls(state))
            .finish();
        removal.make_removal();
        let _ = response.add_cookie(&removal);
    }
    response
}

async fn nav(state: &AppState, visitor: &Visitor, active: &'static str) -> Nav {
    let email = match &visitor.principal.user {
        Some(user) => user_service::get_user(&state.service, &visitor.principal, &user.user_id)
            .await
            .map(|u| u.email)
            .unwrap_or_default(),
        None => String::new(),
    };
    Nav {
        email,
        admin: is_admin(visitor),
        webhooks: visitor.principal.scopes.contains(WEBHOOKS_MANAGE),
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

/// A page a member may not see (403), or could not be shown: in words.
fn forbidden(err: &ServiceError) -> HttpResponse {
    HttpResponse::build(service_status(err))
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!("{} ({})", PageError::from(err).message, err.code()))
}

pub async fn home(req: HttpRequest, state: State) -> HttpResponse {
    match auth::visitor(&req, &state).await {
        Some(_) => redirect("/console/overview"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::error::ApiError;
    use crate::service::StorageError;

    /// One of every `ServiceError`, with each kind of storage failure.
    fn every_refusal() -> Vec<ServiceError> {
        let all = vec![
            ServiceError::Invalid("a name is required".into()),
            ServiceError::NotFound("no such key".into()),
            ServiceError::Conflict("a user with that email already exists".into()),
            ServiceError::KeyLimitReached { limit: 5 },
            ServiceError::TrustedIssuerLimitReached("at most 20 issuers".into()),
            ServiceError::EndpointLimitReached("at most 5 endpoints".into()),
            ServiceError::Forbidden("only an admin may".into()),
            ServiceError::InsufficientScope("keys:manage"),
            ServiceError::CredentialRevoked("the key was revoked"),
            ServiceError::ConfirmationRequired {
                phrase: "delete key-1".into(),
            },
            ServiceError::BadCredentials,
            ServiceError::ApiOnly,
            ServiceError::WeakPassword("a password needs at least 12 characters".into()),
            ServiceError::InvalidSetPasswordToken,
            ServiceError::Storage(StorageError::Unavailable(sqlx::Error::PoolTimedOut)),
            ServiceError::Storage(StorageError::RefusedValue("a NUL character")),
            ServiceError::Storage(StorageError::Constraint("keys_pkey".into())),
            ServiceError::Storage(StorageError::Corrupt("role `x`".into())),
            ServiceError::Storage(StorageError::Database(sqlx::Error::PoolClosed)),
            ServiceError::Internal("argon2 task panicked: salt=sekrit".into()),
        ];
        // A new variant stops this compiling until it is listed above.
        for refusal in &all {
            match refusal {
                ServiceError::Invalid(_)
                | ServiceError::NotFound(_)
                | ServiceError::Conflict(_)
                | ServiceError::KeyLimitReached { .. }
                | ServiceError::TrustedIssuerLimitReached(_)
                | ServiceError::EndpointLimitReached(_)
                | ServiceError::Forbidden(_)
                | ServiceError::InsufficientScope(_)
                | ServiceError::CredentialRevoked(_)
                | ServiceError::ConfirmationRequired { .. }
                | ServiceError::BadCredentials
                | ServiceError::ApiOnly
                | ServiceError::WeakPassword(_)
                | ServiceError::InvalidSetPasswordToken
                | ServiceError::Storage(_)
                | ServiceError::Internal(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_service_refusal_gets_the_same_status_from_the_api_and_the_console() {
        for (api_side, console_side) in every_refusal().into_iter().zip(every_refusal()) {
            let api = ApiError::from(api_side).status;
            let console = forbidden(&console_side).status();
            assert_eq!(console, api, "{console_side:?}");
        }
    }

    #[test]
    fn the_console_answers_api_only_403_a_bad_set_password_token_400_and_a_failure_500() {
        for (refusal, status) in [
            (ServiceError::ApiOnly, StatusCode::FORBIDDEN),
            (
                ServiceError::InvalidSetPasswordToken,
                StatusCode::BAD_REQUEST,
            ),
            (
                ServiceError::Internal("argon2 task panicked".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ] {
            assert_eq!(forbidden(&refusal).status(), status, "{refusal:?}");
        }
    }

    #[test]
    fn a_server_failure_keeps_its_cause_out_of_the_console_page() {
        for refusal in every_refusal() {
            let shown = PageError::from(&refusal).message;
            assert!(!shown.contains("sekrit"), "{shown}");
            assert!(!shown.contains("keys_pkey"), "{shown}");
        }
    }
}
