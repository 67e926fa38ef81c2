//! Human sign-in:
//! - `POST   /api/v1/session`           email + password → session token (no credential needed)
//! - `DELETE /api/v1/session`           signs the presented session out
//! - `POST   /api/v1/session/password`  the signed-in user changes their password

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::body::read_json;
use super::openapi as doc;
use super::{AppState, Caller, Credential};
use crate::error::ApiError;
use crate::sessions::{self, SignInError};

const SESSION_BODY_LIMIT: usize = 8 * 1024;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SignIn)]
struct SignInBody {
    email: String,
    password: String,
}

impl From<SignInError> for ApiError {
    fn from(err: SignInError) -> Self {
        match err {
            SignInError::BadCredentials => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                err.to_string(),
            ),
            SignInError::Locked { until } => {
                let mut error =
                    ApiError::new(StatusCode::LOCKED, "account_locked", err.to_string());
                let mut details = serde_json::Map::new();
                details.insert("locked_until".into(), until.into());
                error.details = Some(details);
                error
            }
            SignInError::ApiOnly => {
                ApiError::new(StatusCode::FORBIDDEN, "api_only_user", err.to_string())
            }
            SignInError::WeakPassword(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "weak_password", message)
            }
            SignInError::Storage(err) => err.into(),
        }
    }
}

/// Email and password in, session token out (argon2id hashes). Repeated
/// failures lock the account.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    operation_id = "signIn",
    tag = "session",
    request_body = SignInBody,
    responses(
        (status = 201, description = "Signed in", body = doc::SessionCreated),
        (status = 400, response = doc::BadRequest),
        (status = 401, description = "Wrong email or password (`invalid_credentials`)", body = doc::ApiErrorBody),
        (status = 403, response = doc::Forbidden),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 415, response = doc::UnsupportedMediaType),
        (status = 422, response = doc::Unprocessable),
        (status = 423, description = "Locked after repeated failures (`account_locked`, with `locked_until`)", body = doc::ApiErrorBody),
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
        &state.store,
        &state.settings.security,
        &body.email,
        &body.password,
        req.peer_addr().map(|a| a.ip().to_string()),
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

fn session_of(caller: &Caller) -> Result<&crate::domain::SessionToken, ApiError> {
    match &caller.credential {
        Credential::Session(token) => Ok(token),
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
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let token = session_of(&caller)?;
    sessions::sign_out(&state.store, &caller.actor(), token).await?;
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
/// every session of the user ends.
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
        (status = 413, response = doc::PayloadTooLarge),
        (status = 415, response = doc::UnsupportedMediaType),
        (status = 422, response = doc::Unprocessable),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn change_password(
    req: HttpRequest,
    payload: web::Payload,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    session_of(&caller)?;
    let body: PasswordBody = read_json(&req, payload, SESSION_BODY_LIMIT).await?;
    sessions::change_password(
        &state.store,
        &caller.actor(),
        &caller.user_id,
        &body.current_password,
        &body.new_password,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
