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
    // A small body (a token request's form) arrives in one chunk: it is
    // answered as is, without a copy; only a second chunk starts a buffer.
    let mut first: Option<Bytes> = None;
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
        let held = first.as_ref().map_or(0, Bytes::len) + body.len();
        if held + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        match first.take() {
            None if body.is_empty() => first = Some(chunk),
            Some(earlier) => {
                body.extend_from_slice(&earlier);
                body.extend_from_slice(&chunk);
            }
            None => body.extend_from_slice(&chunk),
        }
    }
    Ok(first.unwrap_or_else(|| body.freeze()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::FromRequest;
    use actix_web::test::TestRequest;

    /// `read_limited` over a body sent in `chunks`.
    async fn read(chunks: &[&'static str], limit: usize) -> Result<Bytes, BodyError> {
        let (req, _) = TestRequest::default().to_http_parts();
        let stream = futures_util::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, actix_web::error::PayloadError>(Bytes::from_static(c.as_bytes())))
                .collect::<Vec<_>>(),
        );
        let mut payload: actix_web::dev::Payload = actix_web::dev::Payload::Stream {
            payload: Box::pin(stream),
        };
        let payload = web::Payload::from_request(&req, &mut payload)
            .await
            .expect("a payload");
        read_limited(&req, payload, limit).await
    }

    #[actix_web::test]
    async fn a_body_is_read_whole_from_one_chunk_or_many_and_refused_past_the_limit() {
        let one = read(&["grant_type=client_credentials"], 64).await;
        assert_eq!(
            one.ok().as_deref(),
            Some(&b"grant_type=client_credentials"[..])
        );
        let many = read(&["grant_type=", "client_", "credentials"], 64).await;
        assert_eq!(
            many.ok().as_deref(),
            Some(&b"grant_type=client_credentials"[..])
        );
        let with_empty = read(&["", "a=1", "", "&b=2"], 64).await;
        assert_eq!(with_empty.ok().as_deref(), Some(&b"a=1&b=2"[..]));
        assert!(read(&[], 64).await.is_ok_and(|b| b.is_empty()));
        assert!(matches!(
            read(&["0123456789", "0123456789"], 15).await,
            Err(BodyError::TooLarge { limit: 15 })
        ));
        assert!(matches!(
            read(&["0123456789012345"], 15).await,
            Err(BodyError::TooLarge { limit: 15 })
        ));
        assert!(read(&["01234", "56789", "01234"], 15).await.is_ok());
    }
}
