//! An actix-web extractor: a handler that takes [`BearerClaims`] runs only
//! for a valid Keyport bearer token; anything else is answered as RFC 6750
//! says (401 with a `WWW-Authenticate: Bearer …` challenge, or 503 when the
//! issuer's keys cannot be had).
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use keyport_verify::{Verifier, actix::BearerClaims};
//!
//! async fn protected(token: BearerClaims) -> actix_web::Result<String> {
//!     token.require_scope("reports:read")?;
//!     Ok(token.sub.clone())
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let verifier = Verifier::discover("https://auth.example.com", "keyport-api")
//!     .await
//!     .expect("the issuer's metadata");
//! HttpServer::new(move || {
//!     App::new()
//!         .app_data(web::Data::new(verifier.clone()))
//!         .route("/protected", web::get().to(protected))
//! })
//! .bind("127.0.0.1:8081")?
//! .run()
//! .await
//! # }
//! ```

use std::ops::Deref;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use futures_util::future::LocalBoxFuture;

use crate::{Claims, Verifier, VerifyError};

/// The realm named in challenges.
const REALM: &str = "keyport";

/// The claims of a valid bearer token (a `Verifier` must be in the app's
/// data as `web::Data<Verifier>`).
#[derive(Debug, Clone)]
pub struct BearerClaims(pub Claims);

impl Deref for BearerClaims {
    type Target = Claims;
    fn deref(&self) -> &Claims {
        &self.0
    }
}

impl ResponseError for VerifyError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::UNAUTHORIZED)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(challenge) = self
            .challenge(REALM)
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        response.json(serde_json::json!({
            "error": self.code(),
            "error_description": self.to_string(),
        }))
    }
}

/// A missing or malformed `Authorization` header: RFC 6750 §3.1 answers it
/// with a bare challenge, no error code.
#[derive(Debug)]
struct NoToken;

impl std::fmt::Display for NoToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a bearer token is required")
    }
}

impl ResponseError for NoToken {
    fn status_code(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::Unauthorized()
            .insert_header((
                header::WWW_AUTHENTICATE,
                format!("Bearer realm=\"{REALM}\""),
            ))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish()
    }
}

impl FromRequest for BearerClaims {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let verifier = req.app_data::<web::Data<Verifier>>().cloned();
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_owned())
            });
        Box::pin(async move {
            let verifier = verifier.ok_or_else(|| {
                actix_web::error::ErrorInternalServerError(
                    "no keyport_verify::Verifier in app data",
                )
            })?;
            let token = token.filter(|t| !t.is_empty()).ok_or(NoToken)?;
            Ok(BearerClaims(verifier.verify_bearer(&token).await?))
        })
    }
}
