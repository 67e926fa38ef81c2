//! Report (pull) and webhook (push) endpoints, guarded by access tokens:
//! - `GET  /api/v1/reports/{collection}`             needs `reports:read`
//! - `GET  /api/v1/reports/{collection}/{record_id}` needs `reports:read`
//! - `POST /api/v1/webhooks/{collection}`            needs `webhooks:write`
//!
//! Members see the records they pushed; admins see their whole tenant; nobody
//! sees another tenant's. A key with a rate is held to it on all three
//! (429 `rate_limited` past it; `RateLimit` headers on every answer).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::Caller;
use super::body::read_json_bytes;
use super::doc;
use super::error::{ApiError, resource_refusal};
use super::rate_limit;
use crate::domain::{
    CollectionName, IdempotencyKey, REPORTS_READ, RecordBatch, RecordError, WEBHOOKS_WRITE,
};
use crate::service::authz::RecordAccess;
use crate::service::records::{self, Pushed, Record, RecordPage};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageParams {
    limit: Option<u32>,
    cursor: Option<String>,
    /// A credential, when `allow_api_key_query` is on; read by `Caller`.
    #[serde(rename = "api_key")]
    _api_key: Option<String>,
}

fn collection(raw: &str) -> Result<CollectionName, ApiError> {
    CollectionName::parse(raw).map_err(|e| ApiError::bad_request("invalid_collection", e.0))
}

/// What `caller` may do with records under `scope`.
fn access<'a>(
    caller: &'a Caller,
    scope: &'static str,
) -> Result<RecordAccess<'a>, actix_web::Error> {
    records::access(caller, scope).map_err(resource_refusal)
}

/// Records of a collection, oldest first, one page at a time (an empty page
/// for a collection nobody has pushed to). Members see
/// the records they pushed; admins the whole tenant's.
#[utoipa::path(
    get,
    path = "/api/v1/reports/{collection}",
    operation_id = "pullRecords",
    tag = "reports",
    params(
        ("collection" = String, Path, description = "1 to 64 letters, digits, '_', '-' or '.', starting with a letter or digit", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
        ("limit" = Option<u32>, Query, description = "Page size (default 50)", minimum = 1, maximum = 500),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "A page of records", body = RecordPage),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthenticated),
        (status = 403, response = doc::InsufficientScope),
        (status = 429, response = doc::RateLimited),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn pull(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let access = access(&caller, REPORTS_READ)?;
    rate_limit::admit(&req, &state.service, &caller).await?;
    let collection = collection(&path)?;
    let params: PageParams = serde_urlencoded::from_str(&super::query_without_signature(&req))
        .map_err(|e| {
            ApiError::bad_request("invalid_query", format!("invalid query parameters: {e}"))
        })?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_PAGE}"),
        )
        .into());
    }
    let after_id = params
        .cursor
        .as_deref()
        .map(|raw| {
            records::cursor_id(raw).ok_or_else(|| {
                ApiError::bad_request("invalid_cursor", "the cursor is not one this API returned")
            })
        })
        .transpose()?;
    let page = records::pull(
        &state.service,
        access,
        &collection,
        after_id.as_deref(),
        limit,
    )
    .await
    .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(page))
}

/// One record; 404 for a record the caller may not see.
#[utoipa::path(
    get,
    path = "/api/v1/reports/{collection}/{record_id}",
    operation_id = "pullRecord",
    tag = "reports",
    params(
        ("collection" = String, Path, description = "The collection", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
        ("record_id" = String, Path, description = "The record's id (a UUID)"),
    ),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The record", body = Record),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthenticated),
        (status = 403, response = doc::InsufficientScope),
        (status = 404, response = doc::NotFound),
        (status = 429, response = doc::RateLimited),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn pull_one(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let access = access(&caller, REPORTS_READ)?;
    rate_limit::admit(&req, &state.service, &caller).await?;
    let (collection_raw, record_id) = path.into_inner();
    let collection = collection(&collection_raw)?;
    let not_found = || ApiError::not_found("no such record");
    let record_id = Uuid::parse_str(&record_id).map_err(|_| not_found())?;
    let record = records::pull_one(&state.service, access, &collection, record_id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(record))
}

/// Stores one JSON object or an array of them. A retry with the same
/// `Idempotency-Key` stores nothing new and answers the original response.
/// On a SigV4-signed push the key must be signed, and each attempt signed
/// anew (`Caller` refuses the rest).
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{collection}",
    operation_id = "pushRecords",
    tag = "webhooks",
    params(
        ("collection" = String, Path, description = "1 to 64 letters, digits, '_', '-' or '.', starting with a letter or digit", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters without spaces, optionally in double quotes. On a request signed with AWS Signature Version 4 it must be among the signed headers (401 `header_not_signed` otherwise), and a retry is signed again: a signed push is accepted once (401 `signature_replayed`)", pattern = "^[!#-~]{1,255}$"),
    ),
    request_body(content = doc::PushBody, content_type = "application/json"),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 201, description = "Stored (or replayed)", body = doc::PushResult,
            headers(("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same Idempotency-Key"))),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthenticated),
        (status = 403, response = doc::InsufficientScope),
        doc::BodyErrors,
        (status = 429, response = doc::RateLimited),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn push(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let access = access(&caller, WEBHOOKS_WRITE)?;
    rate_limit::admit(&req, &state.service, &caller).await?;
    let collection = collection(&path)?;
    let idempotency_key = idempotency_key(&req)?;
    let settings = &state.service.settings;
    let body = read_json_bytes(&req, payload, settings.max_body_bytes).await?;
    let batch = RecordBatch::parse(&body, settings.max_records_per_push).map_err(|e| match e {
        RecordError::Malformed(message) => ApiError::bad_request("invalid_json", message),
        RecordError::Shape(message) => unprocessable(message),
    })?;

    let (body, replayed) = match records::push(
        &state.pushes,
        access,
        &collection,
        idempotency_key.as_ref(),
        &body,
        batch,
    )
    .await
    .map_err(ApiError::from)?
    {
        Pushed::Stored(answer) => (answer, false),
        Pushed::Replayed(answer) => (answer, true),
        Pushed::KeyReused => {
            return Err(unprocessable(
                "this Idempotency-Key was already used for a different request",
            )
            .into());
        }
    };
    let mut answer = HttpResponse::Created();
    if replayed {
        answer.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(answer.content_type("application/json").body(body))
}

/// The `Idempotency-Key` header, parsed. On a SigV4-signed request it is
/// trusted because `Caller` (run before the handler) refused the request
/// unless the header is among the signed ones: the key is then the signer's,
/// not whatever a copy of the request was given.
fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = req.headers().get_all("idempotency-key");
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |m: String| ApiError::bad_request("invalid_idempotency_key", m);
    if values.next().is_some() {
        return Err(invalid("send one Idempotency-Key header".to_owned()));
    }
    let raw = value
        .to_str()
        .map_err(|_| invalid("Idempotency-Key must be printable ASCII".to_owned()))?;
    // RFC draft-ietf-httpapi-idempotency-key-header: a Structured Field
    // string, so quotes are allowed around the value.
    let raw = raw.trim().trim_matches('"');
    IdempotencyKey::parse(raw)
        .map(Some)
        .map_err(|e| invalid(e.0))
}

fn unprocessable(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_record", message)
}
