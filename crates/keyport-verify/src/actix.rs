//! actix-web extractors: a handler that takes [`Authenticated`] runs only
//! for a valid Keyport token, `Bearer` or (when the verifier accepts it)
//! `DPoP` with its proof; [`BearerClaims`] accepts bearer tokens only.
//! Anything else is answered as RFC 6750 / RFC 9449 say (401 with
//! `WWW-Authenticate` challenges, 403 `insufficient_scope`, or 503 when the
//! issuer's keys cannot be had). [`resource_metadata`] serves the RFC 9728
//! document.
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

use actix_web::HttpMessage;

use crate::{
    Authenticated, Claims, ClientCertificate, Rejection, TokenRequest, Verifier, VerifyError,
};

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
        let certificate = client_certificate(req);
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
            Ok(BearerClaims(
                verifier
                    .verify_bearer_with_certificate(&token, certificate.as_deref())
                    .await?,
            ))
        })
    }
}

impl ResponseError for Rejection {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::UNAUTHORIZED)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        for challenge in self.challenges() {
            if let Ok(value) = HeaderValue::from_str(challenge) {
                response.append_header((header::WWW_AUTHENTICATE, value));
            }
        }
        if let Some(nonce) = self.dpop_nonce() {
            response.insert_header(("DPoP-Nonce", nonce));
        }
        response.json(self.body())
    }
}

impl FromRequest for Authenticated {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let verifier = req.app_data::<web::Data<Verifier>>().cloned();
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let authorization = header(header::AUTHORIZATION);
        let proofs: Vec<String> = req
            .headers()
            .get_all("dpop")
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .collect();
        let method = req.method().as_str().to_owned();
        let certificate = client_certificate(req);
        // The URL the client used, as this server sees it (its Host, its
        // scheme); a resource identifier on the verifier overrides it.
        let info = req.connection_info();
        let url = format!("{}://{}{}", info.scheme(), info.host(), req.path());
        drop(info);
        Box::pin(async move {
            let verifier = verifier.ok_or_else(|| {
                actix_web::error::ErrorInternalServerError(
                    "no keyport_verify::Verifier in app data",
                )
            })?;
            let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
            let request = TokenRequest {
                method: &method,
                url: &url,
                authorization: authorization.as_deref(),
                dpop_proofs: &proofs,
                client_certificate: certificate.as_deref(),
            };
            Ok(verifier.authenticate(&request).await?)
        })
    }
}

/// The thumbprint of the client certificate the request came with: a
/// [`ClientCertificate`] in the connection's data (put there by
/// `HttpServer::on_connect`) or in the request's extensions (put there by
/// a middleware that trusts a proxy's `Client-Cert`).
fn client_certificate(req: &HttpRequest) -> Option<String> {
    if let Some(certificate) = req.conn_data::<ClientCertificate>() {
        return Some(certificate.thumbprint().to_owned());
    }
    req.extensions()
        .get::<ClientCertificate>()
        .map(|c| c.thumbprint().to_owned())
}

/// The handler of the resource's RFC 9728 metadata: route
/// [`Verifier::resource_metadata_path`] to it. 404 when the verifier has no
/// resource identifier.
pub async fn resource_metadata(verifier: web::Data<Verifier>) -> HttpResponse {
    match verifier.resource_metadata() {
        Some(document) => HttpResponse::Ok().json(document),
        None => HttpResponse::NotFound().finish(),
    }
}
