//! Per-request observation. Every answer carries `X-Request-Id` (a trusted
//! proxy's, when well formed, or a new UUIDv7), and so does every JSON error
//! body (`request_id`), every log line written while answering, and every
//! audit row the request writes. One access line per request: the route
//! template (never the raw path, which may hold an id or a secret), status,
//! duration, client address, credential kind and id (never a secret),
//! company, and for a refusal its error code and why. Also the latency
//! histogram; `Cache-Control: no-store` on every answer to a request that
//! carried a credential; and `GET /metrics` (Prometheus text).

use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::client_address::{client_address, peer_is_trusted_proxy};
use crate::domain::Principal;
use crate::telemetry::request::{self, RequestId, RequestNotes};
use crate::telemetry::traces::{self, ServerSpan};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Error bodies are a few hundred bytes; a larger one is passed on as is.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// Notes who the request authenticated as, for its log line (ids only).
pub fn note_principal(principal: &Principal) {
    request::note_credential(principal.credential.kind(), principal.credential.id());
    if let Some(company) = principal.tenant_id() {
        request::note_company(company);
    }
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let authenticated = carries_credential(req.request());
    let proxied_trace = proxied_trace(req.request());
    let id = proxied_request_id(req.request())
        .or_else(|| proxied_trace.as_ref().and_then(traces::request_id_of))
        .unwrap_or_else(RequestId::generate);
    let client = client_address(req.request());
    let span = ServerSpan::start(method.as_str(), &id, proxied_trace, client);
    // Handlers' and extractors' errors arrive as answers; the layers
    // inside answer their refusals too, so an `Err` here is actix's own.
    let (answer, notes) = span.run(request::within(id.clone(), next.call(req))).await;
    let mut response = answer?.map_into_left_body();
    super::rate_limit::add_headers(&mut response);
    let headers = response.headers_mut();
    if authenticated {
        // An answer to a credential is for that caller alone. `x-api-key`
        // is not `Authorization`, so shared caches would not know that
        // without being told.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::VARY,
            HeaderValue::from_static("Authorization, X-Api-Key"),
        );
    }
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    let (response, error_code) = if response.status().as_u16() >= 400 {
        stamp_error_body(response, &id).await
    } else {
        (response, None)
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    span.finish(method.as_str(), &route, status, error_code.as_deref());
    super::usage::count(&state, &route, status, &error_code, &notes, client);
    log_access(&AccessLine {
        id: &id,
        method: method.as_str(),
        route: &route,
        status,
        milliseconds: elapsed.as_secs_f64() * 1000.0,
        client: client.map(|ip| ip.to_string()).unwrap_or_default(),
        notes,
        error_code: error_code.unwrap_or_default(),
    });
    if let Some(state) = state {
        state
            .metrics
            .observe_request(&route, method.as_str(), status, elapsed.as_secs_f64());
    }
    Ok(response)
}

/// A trusted proxy's `X-Request-Id`, when it has a well-formed one.
fn proxied_request_id(req: &HttpRequest) -> Option<RequestId> {
    let raw = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    if !peer_is_trusted_proxy(req) {
        return None;
    }
    RequestId::parse(raw)
}

/// The trace a trusted proxy's well-formed `traceparent` continues.
fn proxied_trace(req: &HttpRequest) -> Option<traces::RemoteParent> {
    let raw = req.headers().get("traceparent")?.to_str().ok()?;
    if !peer_is_trusted_proxy(req) {
        return None;
    }
    traces::remote_parent(raw)
}

/// Adds `request_id` to a JSON error body; returns the body's error code
/// (its `error` member) for the log line. Any other body is left alone.
async fn stamp_error_body<B: MessageBody + 'static>(
    response: ServiceResponse<EitherBody<B, BoxBody>>,
    id: &RequestId,
) -> (ServiceResponse<EitherBody<B, BoxBody>>, Option<String>) {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let small =
        matches!(response.response().body().size(), BodySize::Sized(n) if n <= MAX_ERROR_BODY);
    if !is_json || !small {
        return (response, None);
    }
    let (http_request, http_response) = response.into_parts();
    let (http_response, body) = http_response.into_parts();
    let Ok(bytes) = actix_web::body::to_bytes(body).await else {
        let response = http_response.set_body(EitherBody::right(BoxBody::new(())));
        return (ServiceResponse::new(http_request, response), None);
    };
    let (bytes, code) = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut object)) => {
            let code = object
                .get("error")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            object.insert("request_id".to_owned(), id.as_str().into());
            let stamped = serde_json::to_vec(&object).map_or(bytes, web::Bytes::from);
            (stamped, code)
        }
        _ => (bytes, None),
    };
    let response = http_response.set_body(EitherBody::right(BoxBody::new(bytes)));
    (ServiceResponse::new(http_request, response), code)
}

struct AccessLine<'a> {
    id: &'a RequestId,
    method: &'a str,
    route: &'a str,
    status: u16,
    milliseconds: f64,
    client: String,
    notes: RequestNotes,
    error_code: String,
}

/// The access line, under target `keyport::access` (so `RUST_LOG` can
/// silence or keep it on its own). Unknown fields are empty, and left out.
fn log_access(line: &AccessLine) {
    let notes = &line.notes;
    log::info!(
        target: "keyport::access",
        request_id = line.id.as_str(),
        method = line.method,
        route = line.route,
        status = line.status,
        duration_ms = (line.milliseconds * 1000.0).round() / 1000.0,
        client_address = line.client.as_str(),
        credential_kind = notes.credential_kind.unwrap_or_default(),
        credential_id = notes.credential_id.as_deref().unwrap_or_default(),
        company_id = notes.company_id.as_deref().unwrap_or_default(),
        error = line.error_code.as_str(),
        reason = notes.refusal.unwrap_or_default();
        "{} {} {}", line.method, line.route, line.status
    );
}

/// Whether the request presented anything that may be a credential.
fn carries_credential(req: &HttpRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::AUTHORIZATION)
        || headers.contains_key("x-api-key")
        || req.query_string().contains("api_key=")
        || req.query_string().contains("X-Amz-Signature=")
}

/// Prometheus metrics (text exposition format). Served on `metrics_bind`
/// when that is set, else on the public port. A scrape reads no database:
/// the gauges that need one are refreshed in the background.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "meta",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
    )
)]
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let on_own_listener = req
        .app_data::<web::Data<crate::state::MetricsListener>>()
        .is_some();
    if state.service.settings.observability.metrics_bind.is_some() && !on_own_listener {
        return super::not_found(req).await;
    }
    let text = state.metrics.render(
        state.service.store.pool_size(),
        state.service.store.pool_idle(),
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}
