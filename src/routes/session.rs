//! Human sign-in:
//! - `POST   /api/v1/session`           email + password → session token (no credential needed)
//! - `DELETE /api/v1/session`           signs the presented session out
//! - `POST   /api/v1/session/password`  the signed-in user changes their password
//! - `POST   /api/v1/password`          a new user sets their password with the one-time token (no credential needed)

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::body::read_json;
use super::doc;
use super::error::ApiError;
use super::{AppState, Caller, client_address};
use crate::domain::{Credential, SessionToken};
use crate::service::sessions;

const SESSION_BODY_LIMIT: usize = 8 * 1024;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignIn)]
struct SignInBody {
    email: String,
    password: String,
}

/// Email and password in, session token out (argon2id hashes). Repeated
/// failures lock the account; a locked account answers exactly like a wrong
/// password, so nobody learns which emails exist.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    operation_id = "signIn",
    tag = "session",
    request_body = SignInBody,
    responses(
        (status = 201, description = "Signed in", body = doc::SessionCreated),
        (status = 400, response = doc::BadRequest),
        (status = 401, description = "Wrong email or password, or a locked account (`invalid_credentials`)", body = doc::ApiErrorBody),
        (status = 403, response = doc::Forbidden),
        doc::BodyErrors,
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn sign_in(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body: SignInBody = read_json(&req, payload, SESSION_BODY_LIMIT).await?;
    let session = sessions::sign_in(
        &state.service,
        &body.email,
        &body.password,
        client_address(&req),
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({
            "session_token": session.token.expose(),
            "token_type": "Bearer",
            "expires_at": session.expires_at,
            "user_id": session.user_id,
        })))
}

/// The session token the caller presented; other credentials are refused.
fn session_of(req: &HttpRequest, caller: &Caller) -> Result<SessionToken, ApiError> {
    let presented = super::bearer_value(req)
        .ok()
        .and_then(|raw| SessionToken::parse(raw).ok());
    match (&caller.credential, presented) {
        (Credential::Session { .. }, Some(token)) => Ok(token),
        _ => Err(ApiError::bad_request(
            "not_a_session",
            "present the session token from POST /api/v1/session",
        )),
    }
}

/// Signs the presented session out.
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    operation_id = "signOut",
    tag = "session",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthenticated),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn sign_out(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let token = session_of(&req, &caller)?;
    sessions::sign_out(&state.service, &caller, &token).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PasswordChange)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// The signed-in user changes their password (at least 12 characters);
/// every session of the user ends. A wrong current password counts toward
/// the sign-in lockout.
#[utoipa::path(
    post,
    path = "/api/v1/session/password",
    operation_id = "changePassword",
    tag = "session",
    request_body = PasswordBody,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Changed; every session of the user ended"),
        (status = 400, response = doc::BadRequest),
        (status = 401, description = "No valid session (`missing_token`, `invalid_token`) or a wrong current password (`invalid_credentials`)", body = doc::ApiErrorBody),
        doc::BodyErrors,
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn change_password(
    req: HttpRequest,
    payload: web::Payload,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    session_of(&req, &caller)?;
    let body: PasswordBody = read_json(&req, payload, SESSION_BODY_LIMIT).await?;
    sessions::change_password(
        &state.service,
        &caller,
        &body.current_password,
        &body.new_password,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SetPassword)]
struct SetPasswordBody {
    /// The `set_password_token` from `POST /api/v1/users` (`kpset_…`).
    token: String,
    /// At least 12 characters.
    new_password: String,
}

/// A new user chooses their password with the one-time token their admin
/// received. No credential: the token is the credential, used once.
#[utoipa::path(
    post,
    path = "/api/v1/password",
    operation_id = "setPassword",
    tag = "session",
    request_body = SetPasswordBody,
    responses(
        (status = 204, description = "Set; the user can sign in"),
        (status = 400, description = "The token is unknown, used or expired (`invalid_token`), or the request is malformed", body = doc::ApiErrorBody),
        doc::BodyErrors,
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn set_password(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body: SetPasswordBody = read_json(&req, payload, SESSION_BODY_LIMIT).await?;
    sessions::set_password_with_token(
        &state.service,
        client_address(&req),
        &body.token,
        &body.new_password,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
