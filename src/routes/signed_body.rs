//! The body of a SigV4-signed request, read before its signature is checked.
//!
//! A SigV4 signature covers the body through its SHA-256 (the last line of
//! the canonical request, or `X-Amz-Content-Sha256`). The `Caller` extractor
//! decides who is calling, but it cannot read the body itself: a handler that
//! names `web::Payload` before `Caller` takes the body first. So this
//! middleware, for requests that carry a SigV4 signature only, reads the
//! whole body (at most `max_body_bytes`, 413 past it), records its digest in
//! the request, and hands the same bytes on to the handler. The signature is
//! then checked against the bytes the handler reads, never against a
//! client's claim about them. Other requests are not touched, and still
//! stream.

use std::borrow::Cow;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, CONTENT_LENGTH};
use actix_web::middleware::Next;
use actix_web::web::{self, BytesMut};
use actix_web::{Error, HttpMessage};
use futures_util::StreamExt;

use super::AppState;
use super::body::BodyError;
use super::error::ApiError;
use crate::domain::sigv4::{self, Presentation};

/// The SHA-256 (lower-case hex) of a signed request's body, as received;
/// that of nothing, most signed requests' (reads), is not computed.
#[derive(Debug, Clone)]
pub(super) struct SignedBodyDigest(pub Cow<'static, str>);

/// How a request is signed, if it is: a SigV4 `Authorization` header or a
/// presigned URL.
pub(super) fn presentation(req: &actix_web::HttpRequest) -> Option<Presentation> {
    sigv4::presentation(
        req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()),
        req.query_string(),
    )
}

pub async fn buffer_signed_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static, BoxBody>>, Error> {
    // Refusals are answers, not errors: the layers outside (the request id,
    // the access log) see every request through to its answer.
    let refuse = |req: ServiceRequest, err: BodyError| {
        Ok(req
            .error_response(ApiError::from(err))
            .map_into_right_body())
    };
    if presentation(req.request()).is_some() {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map(|state| state.service.settings.max_body_bytes)
            .unwrap_or(1024 * 1024);
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|d| d > limit as u64) {
            return refuse(req, BodyError::TooLarge { limit });
        }
        let mut payload = req.take_payload();
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let Ok(chunk) = chunk else {
                return refuse(req, BodyError::Unreadable);
            };
            if body.len() + chunk.len() > limit {
                return refuse(req, BodyError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        let body = body.freeze();
        let digest = if body.is_empty() {
            Cow::Borrowed(sigv4::EMPTY_PAYLOAD_SHA256)
        } else {
            Cow::Owned(sigv4::sha256_hex(&body))
        };
        req.extensions_mut().insert(SignedBodyDigest(digest));
        req.set_payload(Payload::from(body));
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
