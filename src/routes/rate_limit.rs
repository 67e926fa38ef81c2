//! Per-key rate limits at the report and webhook endpoints (see
//! `service::rate_limit`), and the headers that tell a client where it
//! stands, in the structured-field form of draft-ietf-httpapi-ratelimit-headers:
//! - `RateLimit-Policy: "key";q=600;w=60`: the key's quota `q` per window
//!   of `w` seconds;
//! - `RateLimit: "key";r=42;t=6`: `r` requests left now, and `t` seconds
//!   until the whole burst is available again;
//!
//! on every answer to a key that has a rate, allowed or refused; a refusal
//! is 429 `rate_limited` with `Retry-After` (`routes/error.rs`).

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpMessage, HttpRequest};

use super::error::ApiError;
use crate::domain::Principal;
use crate::service::Service;
use crate::service::rate_limit::{Allowance, RateLimited};

const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Counts this request against its key's rate: `Err` (429) past it. The
/// outcome is kept on the request for [`add_headers`].
pub async fn admit(
    req: &HttpRequest,
    service: &Service,
    principal: &Principal,
) -> Result<(), ApiError> {
    let outcome = service.rate_limits.admit(principal).await;
    let allowance = match &outcome {
        Ok(allowance) => *allowance,
        Err(RateLimited(allowance)) => Some(*allowance),
    };
    if let Some(allowance) = allowance {
        req.extensions_mut().insert(allowance);
    }
    outcome.map(|_| ()).map_err(ApiError::from)
}

/// The `RateLimit` and `RateLimit-Policy` headers, when [`admit`] counted
/// the request; called for every answer by `observe`.
pub fn add_headers<B: MessageBody>(response: &mut ServiceResponse<B>) {
    let Some(allowance) = response.request().extensions().get::<Allowance>().copied() else {
        return;
    };
    let (policy, state) = header_values(&allowance);
    let headers = response.headers_mut();
    for (name, value) in [(RATE_LIMIT_POLICY, policy), (RATE_LIMIT, state)] {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
}

/// `(RateLimit-Policy, RateLimit)`.
fn header_values(allowance: &Allowance) -> (String, String) {
    let limit = allowance.limit;
    (
        format!("\"key\";q={};w={}", limit.requests(), limit.per_seconds()),
        format!(
            "\"key\";r={};t={}",
            allowance.remaining,
            allowance.reset_after_seconds()
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::RateLimit;

    #[test]
    fn the_headers_are_structured_field_lists_of_one_named_policy() {
        let allowance = Allowance {
            limit: RateLimit::new(600, 60, Some(100)).unwrap(),
            allowed: true,
            remaining: 42,
            reset_after: Duration::from_millis(5_800),
            retry_after: Duration::ZERO,
        };
        let (policy, state) = header_values(&allowance);
        assert_eq!(policy, r#""key";q=600;w=60"#);
        assert_eq!(state, r#""key";r=42;t=6"#, "seconds are rounded up");
    }
}
