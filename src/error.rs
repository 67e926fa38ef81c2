//! Every error → HTTP mapping, in one place. Three boundaries, three shapes:
//! - the token endpoint speaks RFC 6749 §5.2 (`OAuthError`);
//! - resource authentication speaks RFC 6750 §3 (`BearerError`);
//! - everything else answers `{"error": code, "message": text}` (`ApiError`).
//!
//! A 5xx body never carries internal detail; the log line carries the cause.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::admin::AdminError;
use crate::routes::BodyError;
use crate::storage::StorageError;
use crate::tokens::BearerError;

const REALM: &str = "keyport";

/// The JSON error of the management, report and webhook APIs.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra members of the error object (e.g. the confirmation phrase).
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    }
    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send Content-Type: {expected}"),
        )
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the server failed; the error was logged",
        )
    }
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database is unavailable; retry shortly",
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.code.into());
        body.insert("message".into(), self.message.clone().into());
        if let Some(details) = &self.details {
            body.extend(details.clone());
        }
        response
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(body)
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Unavailable(_) => {
                log::warn!("database unavailable: {}", error_chain(&err));
                ApiError::unavailable()
            }
            // PostgreSQL refuses a NUL character in text (SQLSTATE 22021,
            // "invalid byte sequence for encoding UTF8: 0x00"), e.g. in a key
            // id or an audit filter: the request is at fault, not the server.
            StorageError::Database(sqlx::Error::Database(db))
                if db.code().as_deref() == Some("22021") =>
            {
                ApiError::bad_request(
                    "invalid_request",
                    "the request contains a NUL character, which no parameter accepts",
                )
            }
            other => {
                log::error!("storage failure: {}", error_chain(&other));
                ApiError::internal()
            }
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::TooLarge { limit } => ApiError::payload_too_large(limit),
            BodyError::Unreadable => {
                ApiError::bad_request("unreadable_body", "the request body could not be read")
            }
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> Self {
        match err {
            AdminError::Invalid(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
            }
            AdminError::NotFound(message) => ApiError::not_found(message),
            AdminError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            AdminError::KeyLimitReached { limit } => ApiError::new(
                StatusCode::CONFLICT,
                "key_limit_reached",
                format!(
                    "the owner already holds {limit} active keys; revoke one before creating another"
                ),
            ),
            AdminError::Forbidden(message) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
            }
            AdminError::ConfirmationRequired { phrase } => {
                let mut error = ApiError::new(
                    StatusCode::CONFLICT,
                    "confirmation_required",
                    format!(
                        "deleting a key cannot be undone: send {{\"confirm\": \"{phrase}\"}} to delete it"
                    ),
                );
                let mut details = serde_json::Map::new();
                details.insert("confirmation_phrase".into(), phrase.into());
                error.details = Some(details);
                error
            }
            AdminError::Storage(err) => err.into(),
        }
    }
}

/// RFC 6749 §5.2 error codes, plus RFC 8707's `invalid_target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    ServerError,
    TemporarilyUnavailable,
}

impl OAuthErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::InvalidTarget => "invalid_target",
            OAuthErrorCode::ServerError => "server_error",
            OAuthErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

/// An error of the token endpoint. The description is meant for the
/// integration's developer and never contains a secret.
#[derive(Debug, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: String,
    status: StatusCode,
    retry_after: Option<u64>,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        let status = match code {
            OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            OAuthErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        OAuthError {
            code,
            description: description.into(),
            status,
            retry_after: (code == OAuthErrorCode::TemporarilyUnavailable).then_some(1),
        }
    }
    /// The label under which metrics count this refusal.
    pub fn reason(&self) -> &'static str {
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            "throttled"
        } else {
            self.code.as_str()
        }
    }

    /// Too many failed authentications from here: 429 with `Retry-After`.
    pub fn throttled(retry_after: std::time::Duration) -> Self {
        OAuthError {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(retry_after.as_secs().max(1)),
            ..Self::new(
                OAuthErrorCode::TemporarilyUnavailable,
                "too many failed client authentications; retry later",
            )
        }
    }
    /// `invalid_request`, answered 413 so HTTP tooling sees what happened.
    pub fn payload_too_large(limit: usize) -> Self {
        OAuthError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..Self::invalid_request(format!("the request body exceeds {limit} bytes"))
        }
    }
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, description)
    }
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidClient, description)
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"));
        // RFC 6749 §5.2: a 401 names the scheme the client should use.
        if self.code == OAuthErrorCode::InvalidClient {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"keyport\", charset=\"UTF-8\""),
            ));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(json!({
            "error": self.code.as_str(),
            "error_description": self.description,
        }))
    }
}

impl From<StorageError> for OAuthError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Unavailable(_) => {
                log::warn!("database unavailable: {}", error_chain(&err));
                OAuthError::new(
                    OAuthErrorCode::TemporarilyUnavailable,
                    "the database is unavailable; retry shortly",
                )
            }
            other => {
                log::error!("storage failure: {}", error_chain(&other));
                OAuthError::new(
                    OAuthErrorCode::ServerError,
                    "the server failed; the error was logged",
                )
            }
        }
    }
}

impl ResponseError for BearerError {
    fn status_code(&self) -> StatusCode {
        match self {
            BearerError::Missing | BearerError::InvalidToken(_) | BearerError::Rejected(_) => {
                StatusCode::UNAUTHORIZED
            }
            BearerError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            BearerError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            BearerError::NotConfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let description = self.to_string();
        let (code, challenge) = match self {
            BearerError::Missing => ("missing_token", format!("Bearer realm=\"{REALM}\"")),
            BearerError::InvalidRequest(_) => (
                "invalid_request",
                format!(
                    "Bearer realm=\"{REALM}\", error=\"invalid_request\", error_description=\"{description}\""
                ),
            ),
            BearerError::InvalidToken(_) | BearerError::Rejected(_) => (
                "invalid_token",
                format!(
                    "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{description}\""
                ),
            ),
            BearerError::InsufficientScope(scope) => (
                "insufficient_scope",
                format!(
                    "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scope}\", error_description=\"{description}\""
                ),
            ),
            BearerError::NotConfigured => {
                log::error!("BearerToken used without a TokenVerifier in app data");
                return ApiError::internal().error_response();
            }
        };
        HttpResponse::build(self.status_code())
            .insert_header((header::WWW_AUTHENTICATE, challenge))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({ "error": code, "message": description }))
    }
}

/// `err: cause: cause…`, for log lines.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
