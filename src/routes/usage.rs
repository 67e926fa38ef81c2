//! Usage per key (session, access token or key, needing `keys:manage`;
//! members see their own keys, admins their company's):
//! - `GET /api/v1/keys/{id}/usage`  `?from=&to=&granularity=hour|day`
//! - `GET /api/v1/usage`            the same, for every key the caller manages
//!
//! And [`count`], which the observe middleware calls once per answer: what
//! the answer says about the key behind it (a token issued, a direct use, a
//! refusal and why) is counted in memory by `service::key_usage`.

use std::net::IpAddr;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::doc;
use super::error::ApiError;
use super::{AppState, Caller};
use crate::domain::now;
use crate::service::key_usage::{self, Outcome, Refusal, UsageRange};
use crate::telemetry::request::RequestNotes;

/// Counts the answer to one request for the key it names, if any: the
/// request's notes (which credential, why refused), its route and status.
pub fn count(
    state: &Option<web::Data<AppState>>,
    route: &str,
    status: u16,
    error_code: &Option<String>,
    notes: &RequestNotes,
    address: Option<IpAddr>,
) {
    let (Some(state), Some(client_id)) = (state, notes.credential_id.as_deref()) else {
        return;
    };
    if let Some(outcome) = outcome(route, status, error_code.as_deref(), notes) {
        state
            .service
            .usage_counts
            .count(client_id, outcome, now(), address);
    }
}

/// What an answer means for the key behind it; `None`: nothing to count
/// (a session, a reason that names no key, an introspection).
fn outcome(
    route: &str,
    status: u16,
    error_code: Option<&str>,
    notes: &RequestNotes,
) -> Option<Outcome> {
    let kind = notes.credential_kind?;
    if !matches!(
        kind,
        "client_secret" | "private_key_jwt" | "api_key" | "sigv4" | "access_token"
    ) {
        return None;
    }
    if let Some(reason) = notes.refusal {
        return Some(Outcome::Refused(match Refusal::from_log_reason(reason)? {
            // An assertion signed with none of the key's public keys is
            // as wrong as a wrong secret, but it is the assertion that failed.
            Refusal::Other | Refusal::WrongSecret if kind == "private_key_jwt" => {
                Refusal::Assertion
            }
            refusal => refusal,
        }));
    }
    if error_code == Some("rate_limited") {
        return Some(Outcome::Refused(Refusal::RateLimited));
    }
    if status == 429 {
        // The failure throttle (a SigV4 signature's, here).
        return Some(Outcome::Refused(Refusal::LockedOut));
    }
    if matches!(error_code, Some("invalid_dpop_proof" | "use_dpop_nonce")) {
        return Some(Outcome::Refused(Refusal::Dpop));
    }
    if kind == "sigv4" {
        let refusal = match error_code {
            Some("signature_mismatch") => Some(Refusal::WrongSecret),
            Some("key_revoked") => Some(Refusal::Revoked),
            Some("key_disabled") => Some(Refusal::Disabled),
            Some("key_expired") => Some(Refusal::Expired),
            Some("owner_disabled") => Some(Refusal::OwnerDisabled),
            Some("source_not_allowed") => Some(Refusal::AddressNotAllowed),
            Some("signature_replayed") => Some(Refusal::Replayed),
            _ => None,
        };
        return Some(refusal.map_or(Outcome::Sigv4Use, Outcome::Refused));
    }
    match kind {
        "api_key" => Some(Outcome::DirectUse),
        "access_token" => Some(Outcome::TokenUse),
        _ if status >= 400 => Some(Outcome::Refused(Refusal::Other)),
        _ if route == "/oauth/token" && status == 200 => Some(Outcome::TokenIssued),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageParams {
    from: Option<i64>,
    to: Option<i64>,
    granularity: Option<String>,
    /// The credential (`allow_api_key_query`), read by `Caller`.
    #[serde(rename = "api_key")]
    _api_key: Option<String>,
}

/// The range asked for, or 400 saying what is wrong with it.
fn range(req: &HttpRequest) -> Result<UsageRange, ApiError> {
    let params: UsageParams = serde_urlencoded::from_str(&super::query_without_signature(req))
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_query",
                format!(
                    "invalid query parameters: {}",
                    crate::domain::redact_credentials(&e.to_string())
                ),
            )
        })?;
    UsageRange::parse(params.from, params.to, params.granularity.as_deref(), now())
        .map_err(|message| ApiError::bad_request("invalid_query", message))
}

/// A key's usage per hour or day: tokens issued, direct uses, refusals by
/// reason, its busiest minute and where it was used from. Counts reach
/// the database every `usage_flush_seconds`.
#[utoipa::path(
    get,
    path = "/api/v1/keys/{id}/usage",
    operation_id = "keyUsage",
    tag = "keys",
    params(
        ("id" = String, Path, description = "The key's id or client ID"),
        ("from" = Option<i64>, Query, description = "Unix seconds (rounded down to the bucket); default: a day (hour) or 30 days (day) before `to`"),
        ("to" = Option<i64>, Query, description = "Unix seconds, exclusive; default: now"),
        ("granularity" = Option<String>, Query, description = "`hour` (default; at most 31 days) or `day` (at most 400 days)"),
    ),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The key's usage", body = key_usage::UsageReport),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
    )
)]
pub async fn key(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let range = range(&req)?;
    let report = key_usage::key_usage(&state.service, &caller, &path, range).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// The usage of every key the caller manages (an admin: the company's; a
/// member: their own), summed per hour or day, with each key's totals.
#[utoipa::path(
    get,
    path = "/api/v1/usage",
    operation_id = "companyUsage",
    tag = "keys",
    params(
        ("from" = Option<i64>, Query, description = "Unix seconds (rounded down to the bucket); default: a day (hour) or 30 days (day) before `to`"),
        ("to" = Option<i64>, Query, description = "Unix seconds, exclusive; default: now"),
        ("granularity" = Option<String>, Query, description = "`hour` (default; at most 31 days) or `day` (at most 400 days)"),
    ),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The usage of the caller's keys", body = key_usage::UsageReport),
        doc::CallerErrors,
    )
)]
pub async fn company(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let range = range(&req)?;
    let report = key_usage::company_usage(&state.service, &caller, range).await?;
    Ok(HttpResponse::Ok().json(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notes(kind: &'static str, refusal: Option<&'static str>) -> RequestNotes {
        RequestNotes {
            credential_kind: Some(kind),
            credential_id: Some("kp_x".to_owned()),
            company_id: None,
            refusal,
        }
    }

    #[test]
    fn answers_are_counted_as_what_they_say() {
        let token = "/oauth/token";
        let reports = "/api/v1/reports/{collection}";
        for (route, status, code, notes, expected) in [
            (
                token,
                200,
                None,
                notes("client_secret", None),
                Some(Outcome::TokenIssued),
            ),
            (
                token,
                401,
                Some("invalid_client"),
                notes("client_secret", Some("wrong secret")),
                Some(Outcome::Refused(Refusal::WrongSecret)),
            ),
            (
                token,
                401,
                Some("invalid_client"),
                notes("client_secret", Some("unknown client")),
                None,
            ),
            (
                token,
                401,
                Some("invalid_client"),
                notes("client_secret", Some("revoked")),
                Some(Outcome::Refused(Refusal::Revoked)),
            ),
            (
                token,
                400,
                Some("invalid_dpop_proof"),
                notes("client_secret", None),
                Some(Outcome::Refused(Refusal::Dpop)),
            ),
            (
                token,
                401,
                Some("invalid_client"),
                notes("private_key_jwt", Some("the assertion has expired")),
                Some(Outcome::Refused(Refusal::Assertion)),
            ),
            (
                token,
                400,
                Some("invalid_scope"),
                notes("client_secret", None),
                Some(Outcome::Refused(Refusal::Other)),
            ),
            (
                "/oauth/introspect",
                200,
                None,
                notes("client_secret", None),
                None,
            ),
            (
                reports,
                200,
                None,
                notes("api_key", None),
                Some(Outcome::DirectUse),
            ),
            (
                reports,
                429,
                Some("rate_limited"),
                notes("api_key", None),
                Some(Outcome::Refused(Refusal::RateLimited)),
            ),
            (
                reports,
                200,
                None,
                notes("access_token", None),
                Some(Outcome::TokenUse),
            ),
            (
                reports,
                200,
                None,
                notes("sigv4", None),
                Some(Outcome::Sigv4Use),
            ),
            (
                reports,
                403,
                Some("signature_mismatch"),
                notes("sigv4", None),
                Some(Outcome::Refused(Refusal::WrongSecret)),
            ),
            (reports, 200, None, notes("session", None), None),
        ] {
            assert_eq!(
                outcome(route, status, code, &notes),
                expected,
                "{route} {status} {code:?} {notes:?}"
            );
        }
    }
}
