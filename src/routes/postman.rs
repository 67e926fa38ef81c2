//! `GET /api/v1/postman/collection.json`: this server's Postman Collection
//! (v2.1), as a download. Any valid credential (token, key, session or
//! SigV4 signature); no scope needed. `?auth=sigv4` gives the AWS Signature
//! variant.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::AppState;
use super::Caller;
use super::error::ApiError;
use crate::postman::{self, Variant};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectionParams {
    auth: Option<String>,
    /// A credential, when `allow_api_key_query` is on; read by `Caller`.
    #[serde(rename = "api_key")]
    _api_key: Option<String>,
}

/// This server's Postman Collection (v2.1), as a download. Any valid
/// credential; no scope needed.
#[utoipa::path(
    get,
    path = "/api/v1/postman/collection.json",
    operation_id = "postmanCollection",
    tag = "meta",
    params(
        ("auth" = Option<String>, Query, description = "`token` (default): a pre-request script exchanges client_id and client_secret for a token; `sigv4`: every request signed with Postman's AWS Signature auth from access_key and secret_key", pattern = "^(token|sigv4)$"),
    ),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "A Postman Collection v2.1 document", content_type = "application/json", body = Object),
        (status = 400, response = super::doc::BadRequest),
        (status = 401, response = super::doc::Unauthenticated),
        (status = 503, response = super::doc::Unavailable),
    )
)]
pub async fn collection(
    req: HttpRequest,
    _caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params: CollectionParams =
        serde_urlencoded::from_str(&super::query_without_signature(&req)).map_err(|e| {
            ApiError::bad_request("invalid_query", format!("invalid query parameters: {e}"))
        })?;
    let variant = match params.auth.as_deref() {
        None => Variant::Token,
        Some(raw) => Variant::parse(raw)
            .ok_or_else(|| ApiError::bad_request("invalid_query", "auth must be token or sigv4"))?,
    };
    let document = postman::collection_variant(&state.service.settings, variant);
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", postman::FILE_NAME),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("application/json")
        .body(serde_json::to_string_pretty(&document).unwrap_or_else(|_| document.to_string())))
}
