//! Reading request bodies with a hard size limit, before any parsing.

use actix_web::HttpRequest;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::{self, Bytes, BytesMut};
use futures_util::StreamExt;

use super::error::ApiError;
use crate::domain::check_unique_members;

#[derive(Debug)]
pub enum BodyError {
    TooLarge {
        limit: usize,
    },
    /// The client went away or sent a broken body.
    Unreadable,
}

/// Reads the whole body, refusing as soon as it passes `limit` bytes (a
/// declared Content-Length above the limit is refused without reading).
pub async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, BodyError> {
    if let Some(declared) = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && declared > limit as u64
    {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The media type of the request without parameters, lower-cased.
pub fn media_type(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Reads a JSON request body's bytes: 415 unless JSON, 413 past `limit`.
pub async fn read_json_bytes(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    if !media_type(req).is_some_and(|m| m == "application/json" || m.ends_with("+json")) {
        return Err(ApiError::unsupported_media_type("application/json"));
    }
    Ok(read_limited(req, payload, limit).await?)
}

/// Reads a JSON request body into `T`: 415 unless JSON, 413 past `limit`,
/// 400 `invalid_json` for broken JSON or a member named twice in any object
/// (a plain map would keep the last one silently, so two readers of one
/// body could disagree about what it says), 422 for the wrong shape.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    let body = read_json_bytes(req, payload, limit).await?;
    check_unique_members(&body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("the body does not have the expected fields: {e}"),
        )
    })
}
