//! Every error → HTTP mapping, in one place. Three boundaries, three shapes:
//! - the token endpoint speaks RFC 6749 §5.2 (`OAuthError`);
//! - resource authentication speaks RFC 6750 §3 (`BearerError`);
//! - everything else answers `{"error": code, "message": text}` (`ApiError`).
//!
//! A 5xx body never carries internal detail; the log line carries the cause.
//! The web console renders its own bodies but takes a `ServiceError`'s
//! status from here ([`service_status`]), so both answer a refusal alike.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use super::BodyError;
use super::bearer::BearerError;
use crate::service::ServiceError;
use crate::service::StorageError;
use crate::service::authz::CredentialRefusal;
use crate::service::clients::ClientAuthError;
use crate::service::grant::GrantError;
use crate::service::rate_limit::RateLimited;
use crate::service::sigv4::Sigv4Refusal;
use crate::telemetry::error_chain;
use crate::tokens::DpopError;
use crate::tokens::dpop::{DPOP_ALGS, DPOP_NONCE_HEADER};

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
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
    /// A `WWW-Authenticate` challenge other than the Bearer one.
    pub challenge: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
            challenge: None,
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
    /// Too many failed attempts from here: 429 with `Retry-After`.
    pub fn throttled(retry_after: std::time::Duration) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many failed attempts; retry later",
        );
        error.retry_after = Some(retry_after.as_secs().max(1));
        error
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
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if let Some(challenge) = &self.challenge {
            response.insert_header((header::WWW_AUTHENTICATE, challenge.clone()));
        } else if self.status == StatusCode::UNAUTHORIZED && self.code == "invalid_token" {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""),
            ));
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

/// A storage failure outside a service call answers as the same failure
/// inside one: [`service_status`] decides.
impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        ApiError::from(ServiceError::Storage(err))
    }
}

/// A key past its rate at the report and webhook endpoints: 429
/// `rate_limited`, with `Retry-After` (the `RateLimit` headers are added by
/// `routes::rate_limit`).
impl From<RateLimited> for ApiError {
    fn from(err: RateLimited) -> Self {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            err.to_string(),
        );
        error.retry_after = Some(err.0.retry_after_seconds());
        error
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

/// The status a refusal of the service answers, for the API and the console
/// alike: the one place that decides it. Pure; [`service_status`] is what
/// an answer calls.
pub fn status_of(err: &ServiceError) -> StatusCode {
    match err {
        ServiceError::Invalid(_) | ServiceError::WeakPassword(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
        ServiceError::Conflict(_)
        | ServiceError::KeyLimitReached { .. }
        | ServiceError::TrustedIssuerLimitReached(_)
        | ServiceError::EndpointLimitReached(_)
        | ServiceError::ConfirmationRequired { .. } => StatusCode::CONFLICT,
        ServiceError::Forbidden(_) | ServiceError::InsufficientScope(_) | ServiceError::ApiOnly => {
            StatusCode::FORBIDDEN
        }
        ServiceError::CredentialRevoked(_) | ServiceError::BadCredentials => {
            StatusCode::UNAUTHORIZED
        }
        // A token the caller typed or pasted is malformed input, like an
        // unknown session at `POST /sessions/password`.
        ServiceError::InvalidSetPasswordToken => StatusCode::BAD_REQUEST,
        ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        // The caller should retry: 503 with `Retry-After`.
        ServiceError::Storage(StorageError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
        // e.g. a NUL character in a key id or an audit filter: the request
        // is at fault, not the server.
        ServiceError::Storage(StorageError::RefusedValue(_)) => StatusCode::BAD_REQUEST,
        ServiceError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// [`status_of`], and the cause of a 5xx logged with its whole chain. Call
/// it once per answer, so each failure is logged once. The causes are the
/// server's own (database, hashing, randomness) and carry no secret.
pub fn service_status(err: &ServiceError) -> StatusCode {
    let status = status_of(err);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        log::warn!("database unavailable: {}", error_chain(err));
    } else if status.is_server_error() {
        match err {
            ServiceError::Storage(_) => log::error!("storage failure: {}", error_chain(err)),
            _ => log::error!("internal failure: {}", error_chain(err)),
        }
    }
    status
}

/// What a refusal may tell the caller: a 5xx keeps its cause in the log.
pub fn public_message(err: &ServiceError) -> String {
    match err {
        ServiceError::Storage(StorageError::RefusedValue(message)) => (*message).to_owned(),
        _ if status_of(err).is_server_error() => {
            "the server failed; the error was logged".to_owned()
        }
        other => other.to_string(),
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        let status = service_status(&err);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return ApiError::unavailable();
        }
        if status.is_server_error() {
            return ApiError::internal();
        }
        let mut error = ApiError::new(status, err.code(), public_message(&err));
        let mut details = serde_json::Map::new();
        match &err {
            ServiceError::ConfirmationRequired { phrase } => {
                details.insert("confirmation_phrase".into(), phrase.clone().into());
            }
            ServiceError::InsufficientScope(scope) => {
                details.insert("scope".into(), (*scope).into());
            }
            _ => {}
        }
        if !details.is_empty() {
            error.details = Some(details);
        }
        error
    }
}

/// A credential refused before any rule: RFC 6750 for tokens and keys alike,
/// or 429 when the caller has failed too often.
impl From<CredentialRefusal> for actix_web::Error {
    fn from(err: CredentialRefusal) -> Self {
        match err {
            CredentialRefusal::Rejected(message) => BearerError::Rejected(message).into(),
            CredentialRefusal::Throttled(retry_after) => ApiError::throttled(retry_after).into(),
            CredentialRefusal::Storage(err) => ApiError::from(err).into(),
        }
    }
}

/// A refused SigV4 signature: 401 with a code naming what was wrong (429
/// when the caller has failed too often). A mismatch carries the canonical
/// request and string to sign Keyport computed, as AWS does: they hold no
/// secret, and comparing them with the client's finds the mistake.
impl From<Sigv4Refusal> for actix_web::Error {
    fn from(err: Sigv4Refusal) -> Self {
        let code = err.code();
        let mut error = match err {
            Sigv4Refusal::Key(ClientAuthError::Throttled(retry_after)) => {
                return ApiError::throttled(retry_after).into();
            }
            Sigv4Refusal::Key(ClientAuthError::Storage(err)) => return ApiError::from(err).into(),
            Sigv4Refusal::Mismatch {
                ref canonical_request,
                ref string_to_sign,
            } => {
                let mut error = ApiError::new(StatusCode::UNAUTHORIZED, code, err.to_string());
                let mut details = serde_json::Map::new();
                details.insert("canonical_request".into(), canonical_request.clone().into());
                details.insert("string_to_sign".into(), string_to_sign.clone().into());
                error.details = Some(details);
                error
            }
            Sigv4Refusal::Key(ref key) => {
                ApiError::new(StatusCode::UNAUTHORIZED, code, key.message())
            }
            other => ApiError::new(StatusCode::UNAUTHORIZED, code, other.to_string()),
        };
        error.challenge = Some(format!(
            "{} realm=\"{REALM}\", error=\"{code}\"",
            crate::domain::sigv4::ALGORITHM
        ));
        error.into()
    }
}

impl From<BodyError> for OAuthError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::TooLarge { limit } => OAuthError::payload_too_large(limit),
            BodyError::Unreadable => {
                OAuthError::invalid_request("the request body could not be read")
            }
        }
    }
}

/// A refusal at the report and webhook endpoints, which speak RFC 6750: a
/// missing scope is `insufficient_scope` with its `WWW-Authenticate`
/// challenge, as resource servers answer.
pub fn resource_refusal(err: ServiceError) -> actix_web::Error {
    match err {
        ServiceError::InsufficientScope(scope) => BearerError::InsufficientScope(scope).into(),
        other => ApiError::from(other).into(),
    }
}

/// A failed client authentication at the OAuth endpoints.
impl From<ClientAuthError> for OAuthError {
    fn from(err: ClientAuthError) -> Self {
        match err {
            ClientAuthError::Storage(err) => err.into(),
            ClientAuthError::Throttled(retry_after) => OAuthError::throttled(retry_after),
            // The caller proved the secret for the others, so it may learn why.
            other => OAuthError::invalid_client(other.message()),
        }
    }
}

impl From<GrantError> for OAuthError {
    fn from(err: GrantError) -> Self {
        match err {
            GrantError::InvalidScope(message) => {
                OAuthError::new(OAuthErrorCode::InvalidScope, message)
            }
            GrantError::InvalidTarget(_) => {
                OAuthError::new(OAuthErrorCode::InvalidTarget, err.to_string())
            }
            GrantError::ExchangeTarget(message) => {
                OAuthError::new(OAuthErrorCode::InvalidTarget, message)
            }
            GrantError::InvalidGrant(message) => {
                OAuthError::new(OAuthErrorCode::InvalidGrant, message)
            }
            GrantError::UnauthorizedClient(message) => {
                OAuthError::new(OAuthErrorCode::UnauthorizedClient, message)
            }
            GrantError::InvalidRequest(message) => OAuthError::invalid_request(message),
            GrantError::ClientRequired => OAuthError::invalid_client(err.to_string()),
            GrantError::UnsupportedTokenType(_) => {
                OAuthError::new(OAuthErrorCode::UnsupportedTokenType, err.to_string())
            }
            GrantError::Signing(_) => {
                log::error!("{}", error_chain(&err));
                OAuthError::new(
                    OAuthErrorCode::ServerError,
                    "the server failed; the error was logged",
                )
            }
            // RFC 9449 §5 names no code for a proof that is missing where
            // one is required: a required parameter is missing.
            GrantError::DpopRequired => OAuthError::invalid_request(err.to_string()),
            GrantError::Storage(err) => err.into(),
        }
    }
}

/// A DPoP proof refused at the token endpoint (RFC 9449 §5, §8): 400
/// `invalid_dpop_proof`, or `use_dpop_nonce` with the nonce in `DPoP-Nonce`.
impl From<DpopError> for OAuthError {
    fn from(err: DpopError) -> Self {
        match err {
            DpopError::InvalidProof(_) => {
                OAuthError::new(OAuthErrorCode::InvalidDpopProof, err.to_string())
            }
            DpopError::UseNonce { message, nonce } => OAuthError {
                dpop_nonce: Some(nonce),
                ..OAuthError::new(OAuthErrorCode::UseDpopNonce, message)
            },
            DpopError::InvalidToken(_) | DpopError::InvalidRequest(_) => {
                OAuthError::invalid_request(err.to_string())
            }
            DpopError::Unavailable => OAuthError::new(
                OAuthErrorCode::TemporarilyUnavailable,
                "the database is unavailable; retry shortly",
            ),
            DpopError::NotConfigured => {
                log::error!("DPoP verification is not configured");
                OAuthError::new(
                    OAuthErrorCode::ServerError,
                    "the server failed; the error was logged",
                )
            }
        }
    }
}

/// A DPoP presentation refused at a resource (RFC 9449 §7.1): 401 with a
/// `WWW-Authenticate: DPoP` challenge naming the algorithms and the error,
/// `DPoP-Nonce` with `use_dpop_nonce`, and the JSON error body the resource
/// endpoints answer with.
impl ResponseError for DpopError {
    fn status_code(&self) -> StatusCode {
        match self {
            DpopError::InvalidProof(_)
            | DpopError::UseNonce { .. }
            | DpopError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            DpopError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            DpopError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            DpopError::NotConfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            DpopError::Unavailable => return ApiError::unavailable().error_response(),
            DpopError::NotConfigured => {
                log::error!(
                    "DpopToken used without a TokenVerifier and a DpopVerifier in app data"
                );
                return ApiError::internal().error_response();
            }
            _ => {}
        }
        let description = self.to_string();
        let code = self.code();
        let challenge = format!(
            "DPoP realm=\"{REALM}\", algs=\"{}\", error=\"{code}\", error_description={}",
            DPOP_ALGS.join(" "),
            quoted_string(&description)
        );
        let mut response = HttpResponse::build(self.status_code());
        response
            .insert_header((header::WWW_AUTHENTICATE, challenge))
            .insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(nonce) = self.nonce() {
            response.insert_header((DPOP_NONCE_HEADER, nonce.to_owned()));
        }
        response.json(json!({ "error": code, "message": description }))
    }
}

/// Declares [`OAuthErrorCode`] with each variant's wire code, and
/// [`OAuthErrorCode::ALL`] listing them, from one list: `/openapi.json`
/// documents `ALL`, so it cannot name a code the server never answers or
/// miss one it does.
macro_rules! oauth_error_codes {
    ($($(#[$doc:meta])* $variant:ident => $code:literal,)+) => {
        /// RFC 6749 §5.2 error codes, plus RFC 8707's `invalid_target`, RFC
        /// 7009's `unsupported_token_type` and RFC 9449's DPoP errors.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum OAuthErrorCode {
            $($(#[$doc])* $variant,)+
        }

        impl OAuthErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &[OAuthErrorCode] = &[$(OAuthErrorCode::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(OAuthErrorCode::$variant => $code,)+
                }
            }
        }
    };
}

oauth_error_codes! {
    InvalidRequest => "invalid_request",
    InvalidClient => "invalid_client",
    InvalidGrant => "invalid_grant",
    UnauthorizedClient => "unauthorized_client",
    UnsupportedGrantType => "unsupported_grant_type",
    InvalidScope => "invalid_scope",
    InvalidTarget => "invalid_target",
    UnsupportedTokenType => "unsupported_token_type",
    ServerError => "server_error",
    TemporarilyUnavailable => "temporarily_unavailable",
    /// RFC 9449 §5: the DPoP proof failed a check.
    InvalidDpopProof => "invalid_dpop_proof",
    /// RFC 9449 §8: retry with the nonce in `DPoP-Nonce`.
    UseDpopNonce => "use_dpop_nonce",
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
    /// A server nonce for the client's next DPoP proof (RFC 9449 §8).
    pub dpop_nonce: Option<String>,
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
            dpop_nonce: None,
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
        // RFC 6749 §5.2: a 401 names the scheme the client should use. The
        // challenge repeats the error, as node oidc-provider's does: clients
        // built on oauth4webapi (openid-client 6) read a challenge before the
        // body and report only what it carries.
        if self.code == OAuthErrorCode::InvalidClient {
            response.insert_header((header::WWW_AUTHENTICATE, basic_challenge(&self.description)));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if let Some(nonce) = &self.dpop_nonce {
            response.insert_header((DPOP_NONCE_HEADER, nonce.clone()));
        }
        response.json(json!({
            "error": self.code.as_str(),
            "error_description": self.description,
        }))
    }
}

/// `Basic realm="keyport", error="invalid_client", error_description="…"`,
/// with the description as an RFC 7235 quoted-string.
fn basic_challenge(description: &str) -> HeaderValue {
    let challenge = format!(
        "Basic realm=\"{REALM}\", charset=\"UTF-8\", error=\"invalid_client\", error_description={}",
        quoted_string(description)
    );
    HeaderValue::from_str(&challenge).unwrap_or_else(|_| {
        HeaderValue::from_static(
            "Basic realm=\"keyport\", charset=\"UTF-8\", error=\"invalid_client\"",
        )
    })
}

/// RFC 7235 §2.2 quoted-string: `"` and `\` are escaped; anything that is
/// not printable ASCII (RFC 6749 limits `error_description` to it) becomes `?`.
fn quoted_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            ' '..='~' => quoted.push(c),
            _ => quoted.push('?'),
        }
    }
    quoted.push('"');
    quoted
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

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(response: &HttpResponse) -> &str {
        response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[test]
    fn an_invalid_client_challenge_carries_the_error_and_an_escaped_description() {
        let response = OAuthError::invalid_client(r#"the "key" \ is wrong"#).error_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenge(&response),
            r#"Basic realm="keyport", charset="UTF-8", error="invalid_client", error_description="the \"key\" \\ is wrong""#
        );
    }

    #[test]
    fn a_description_that_is_not_printable_ascii_still_makes_a_valid_challenge() {
        let response = OAuthError::invalid_client("clé\r\nX-Injected: 1").error_response();
        assert_eq!(
            challenge(&response),
            r#"Basic realm="keyport", charset="UTF-8", error="invalid_client", error_description="cl???X-Injected: 1""#
        );
    }

    #[test]
    fn an_unexpected_failure_is_a_500_that_keeps_its_cause_out_of_the_answer() {
        let error = ApiError::from(ServiceError::Internal(
            "argon2 task panicked: salt=sekrit".to_owned(),
        ));
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error.code, "internal_error");
        assert!(!error.message.contains("sekrit"), "{}", error.message);
    }

    #[test]
    fn other_oauth_errors_carry_no_challenge() {
        let response = OAuthError::invalid_request("token is required").error_response();
        assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
