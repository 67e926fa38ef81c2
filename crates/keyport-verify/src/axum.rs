//! axum: [`Authenticated`] as an extractor, [`RequireToken`] as a tower
//! layer that refuses a request before its handler runs, and
//! [`resource_metadata`] as the handler of the RFC 9728 document. Refusals
//! answer as RFC 6750 / RFC 9449 say ([`Rejection`] is a response).
//!
//! ```no_run
//! use axum::{Extension, Json, Router, routing::get};
//! use keyport_verify::axum::RequireToken;
//! use keyport_verify::{Authenticated, Verifier};
//!
//! async fn protected(token: Authenticated) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "sub": token.sub }))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::discover("https://auth.example.com", "keyport-api").await?;
//! let app: Router = Router::new().route(
//!     "/protected",
//!     get(protected).layer(RequireToken::new(verifier.clone()).scope("reports:read")),
//! );
//! # Ok(()) }
//! ```
//!
//! The extractor takes the token the layer accepted; without the layer it
//! authenticates the request itself with the [`Verifier`] in the request's
//! extensions (`.layer(Extension(verifier))`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum_core::body::Body;
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, StatusCode};

use crate::{Authenticated, Rejection, TokenRequest, Verifier};

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body().to_string()));
        *response.status_mut() =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for challenge in self.challenges() {
            if let Ok(value) = HeaderValue::from_str(challenge) {
                headers.append(header::WWW_AUTHENTICATE, value);
            }
        }
        if let Some(nonce) = self
            .dpop_nonce()
            .and_then(|n| HeaderValue::from_str(n).ok())
        {
            headers.insert("dpop-nonce", nonce);
        }
        response
    }
}

/// What the verifier needs of a request's head.
async fn authenticate(verifier: &Verifier, parts: &Parts) -> Result<Authenticated, Rejection> {
    let headers = &parts.headers;
    // The absolute URL the client used: HTTP/1.1 sends a path and a Host
    // header; without a resource identifier (behind TLS or a proxy, set
    // one) the scheme is taken to be http.
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // Only a DPoP proof is checked against the URL: a bearer request does
    // without building it.
    let dpop = authorization.is_some_and(|a| {
        a.trim_start()
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("dpop "))
    });
    let url = match (dpop, parts.uri.scheme_str(), parts.uri.authority()) {
        (false, _, _) => String::new(),
        (true, Some(scheme), Some(authority)) => {
            format!("{scheme}://{authority}{}", parts.uri.path())
        }
        (true, _, _) => format!(
            "http://{}{}",
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost"),
            parts.uri.path()
        ),
    };
    let proofs: Vec<&str> = headers
        .get_all("dpop")
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    // Put there by the application from its TLS layer (see
    // `ClientCertificate`), never from a request header.
    let certificate = parts
        .extensions
        .get::<crate::ClientCertificate>()
        .map(|c| c.thumbprint().to_owned());
    let request = TokenRequest {
        method: parts.method.as_str(),
        url: &url,
        authorization,
        dpop_proofs: &proofs,
        client_certificate: certificate.as_deref(),
    };
    verifier.authenticate(&request).await
}

fn no_verifier() -> Response {
    log::error!("no keyport_verify::Verifier in the request's extensions");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        if let Some(done) = parts.extensions.get::<Authenticated>() {
            return Ok(done.clone());
        }
        let verifier = parts
            .extensions
            .get::<Verifier>()
            .cloned()
            .ok_or_else(no_verifier)?;
        authenticate(&verifier, parts)
            .await
            .map_err(IntoResponse::into_response)
    }
}

/// A tower layer that lets a request through only with a valid token (and
/// the scopes named with [`RequireToken::scope`]); the handler finds the
/// token as [`Authenticated`] and the verifier as an extension.
#[derive(Debug, Clone)]
pub struct RequireToken {
    verifier: Verifier,
    scopes: Vec<String>,
}

impl RequireToken {
    /// Requires a valid token, checked by `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        RequireToken {
            verifier,
            scopes: Vec::new(),
        }
    }

    /// Requires `scope` too (403 `insufficient_scope` naming it).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }
}

impl<S> tower_layer::Layer<S> for RequireToken {
    type Service = RequireTokenService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequireTokenService {
            inner,
            settings: std::sync::Arc::new(self.clone()),
        }
    }
}

/// The service [`RequireToken`] wraps around a handler.
#[derive(Debug, Clone)]
pub struct RequireTokenService<S> {
    inner: S,
    settings: std::sync::Arc<RequireToken>,
}

impl<S, B> tower_service::Service<Request<B>> for RequireTokenService<S>
where
    S: tower_service::Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settings = std::sync::Arc::clone(&self.settings);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let checked = authenticate(&settings.verifier, &parts)
                .await
                .and_then(|token| {
                    settings
                        .scopes
                        .iter()
                        .try_for_each(|scope| token.require_scope(scope))
                        .map(|()| token)
                });
            match checked {
                Ok(token) => {
                    parts.extensions.insert(token);
                    parts.extensions.insert(settings.verifier.clone());
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}

/// The handler of the resource's RFC 9728 metadata (serve it at
/// [`Verifier::resource_metadata_path`]); 404 when the verifier has no
/// resource identifier. The verifier comes from the request's extensions.
pub async fn resource_metadata(parts: Parts) -> Response {
    let Some(verifier) = parts.extensions.get::<Verifier>() else {
        return no_verifier();
    };
    match verifier.resource_metadata() {
        Some(document) => {
            let mut response = Response::new(Body::from(document.to_string()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
