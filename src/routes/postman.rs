//! `GET /api/v1/postman/collection.json`: this server's Postman Collection
//! (v2.1), as a download. Any valid credential (token, key or session); no
//! scope needed.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use super::AppState;
use super::Caller;
use crate::postman;

/// This server's Postman Collection (v2.1), as a download. Any valid
/// credential; no scope needed.
#[utoipa::path(
    get,
    path = "/api/v1/postman/collection.json",
    operation_id = "postmanCollection",
    tag = "meta",
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "A Postman Collection v2.1 document", content_type = "application/json", body = Object),
        (status = 400, response = super::doc::BadRequest),
        (status = 401, response = super::doc::Unauthenticated),
        (status = 503, response = super::doc::Unavailable),
    )
)]
pub async fn collection(_caller: Caller, state: web::Data<AppState>) -> HttpResponse {
    let document = postman::collection(&state.service.settings);
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", postman::FILE_NAME),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("application/json")
        .body(serde_json::to_string_pretty(&document).unwrap_or_else(|_| document.to_string()))
}
