//! Per-request observation: one log line (method, path, status, latency and
//! the client ID when one is known — never a query string, secret or token:
//! anything credential-shaped in the path is redacted) and the latency
//! histogram; `Cache-Control: no-store` on every answer to a request that
//! carried a credential; and `GET /metrics` (public, Prometheus text).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};

use super::AppState;
use crate::domain::{now, redact_credentials};

/// The client ID a request authenticated as (or presented), for the log.
#[derive(Debug, Clone)]
pub struct LoggedClientId(pub String);

/// Notes the client ID for the request's log line. Callers pass only a
/// parsed `ClientId` or one read from a verified token or the database:
/// never raw request text, which would let anyone write into the logs.
pub fn note_client_id(req: &HttpRequest, client_id: &str) {
    req.extensions_mut()
        .insert(LoggedClientId(client_id.to_owned()));
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = redact_credentials(req.path())
        .chars()
        .take(200)
        .collect::<String>();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let authenticated = carries_credential(req.request());
    let mut response = next.call(req).await?;
    super::rate_limit::add_headers(&mut response);
    if authenticated {
        // An answer to a credential is for that caller alone. `x-api-key`
        // is not `Authorization`, so shared caches would not know that
        // without being told.
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::VARY,
            HeaderValue::from_static("Authorization, X-Api-Key"),
        );
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let client = response
        .request()
        .extensions()
        .get::<LoggedClientId>()
        .map(|c| c.0.clone())
        .unwrap_or_else(|| "-".to_owned());
    log::info!(
        "{method} {path} {status} {:.3}ms client={client}",
        elapsed.as_secs_f64() * 1000.0
    );
    if let Some(state) = state {
        state
            .metrics
            .observe_request(&route, method.as_str(), status, elapsed.as_secs_f64());
    }
    Ok(response)
}

/// Whether the request presented anything that may be a credential.
fn carries_credential(req: &HttpRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::AUTHORIZATION)
        || headers.contains_key("x-api-key")
        || req.query_string().contains("api_key=")
        || req.query_string().contains("X-Amz-Signature=")
}

/// Prometheus metrics (text exposition format). Public.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "meta",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
    )
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let active = match state.service.store.count_all_active_keys(now()).await {
        Ok(active) => Some(active),
        Err(err) => {
            log::warn!(
                "metrics: active keys unavailable: {}",
                crate::telemetry::error_chain(&err)
            );
            None
        }
    };
    let text = state.metrics.render(
        active,
        state.service.store.pool_size(),
        state.service.store.pool_idle(),
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}
