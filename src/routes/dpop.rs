//! DPoP (RFC 9449) over HTTP: the proofs a request carries, its base URL,
//! and [`DpopToken`], the actix extractor beside [`super::BearerToken`]:
//! `Authorization: DPoP <token>` with a proof bound to the token's
//! `cnf.jkt`. The checks themselves are `tokens::dpop`'s.

use std::borrow::Cow;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use futures_util::future::LocalBoxFuture;

use crate::tokens::dpop::{
    CheckedProof, DPOP_HEADER, DpopError, DpopVerifier, ProofTarget, TokenScheme,
    authorization_token, required_binding,
};
use crate::tokens::{TokenVerifier, VerifiedToken};

/// Every `DPoP` header of a request.
pub fn proof_headers(req: &HttpRequest) -> Vec<&[u8]> {
    req.headers()
        .get_all(DPOP_HEADER)
        .map(|v| v.as_bytes())
        .collect()
}

/// The request's own base URL (scheme and Host), for a verifier without a
/// configured one. Behind a proxy, configure the public URL instead.
pub fn request_base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

/// An access token presented as `Authorization: DPoP <token>` with a valid
/// proof signed by the key the token is bound to. Needs a
/// [`TokenVerifier`] and a [`DpopVerifier`] in the app data. A fresh nonce
/// to return, if any, is in [`DpopToken::fresh_nonce`].
#[derive(Debug, Clone)]
pub struct DpopToken {
    pub token: VerifiedToken,
    pub fresh_nonce: Option<String>,
}

/// Checks an `Authorization` token and its proof: the shared path of
/// [`DpopToken`] and Keyport's own `Caller`. A Bearer token is returned as
/// is unless it is bound.
pub async fn check_presentation(
    verifier: &TokenVerifier,
    dpop: &DpopVerifier,
    req: &HttpRequest,
    scheme: TokenScheme,
    token: &str,
) -> Result<(VerifiedToken, Option<CheckedProof>), DpopError> {
    let verified = verifier
        .verify(token)
        .map_err(|e| DpopError::InvalidToken(Cow::Owned(e.to_string())))?;
    let Some(jkt) = required_binding(&verified, scheme)? else {
        return Ok((verified, None));
    };
    let proofs = proof_headers(req);
    let target = ProofTarget {
        method: req.method().as_str(),
        path: req.path(),
        access_token: Some(token),
        bound_to: Some(jkt),
    };
    // The request's own URL only when no public one is configured.
    let base = (!dpop.has_public_base_url()).then(|| request_base_url(req));
    let proof = dpop.verify(&proofs, &target, base.as_deref()).await?;
    Ok((verified, Some(proof)))
}

impl FromRequest for DpopToken {
    type Error = DpopError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let verifier = req
                .app_data::<web::Data<TokenVerifier>>()
                .ok_or(DpopError::NotConfigured)?
                .clone();
            let dpop = req
                .app_data::<web::Data<DpopVerifier>>()
                .ok_or(DpopError::NotConfigured)?
                .clone();
            let mut values = req.headers().get_all(AUTHORIZATION);
            let value = values.next().ok_or_else(|| {
                DpopError::proof("an access token is required: Authorization: DPoP <token>")
            })?;
            if values.next().is_some() {
                return Err(DpopError::InvalidRequest(
                    "send exactly one Authorization header",
                ));
            }
            let value = value
                .to_str()
                .map_err(|_| DpopError::InvalidRequest("the Authorization header is not ASCII"))?;
            let (scheme, token) = authorization_token(value).ok_or(DpopError::InvalidRequest(
                "use the DPoP scheme: Authorization: DPoP <access token>",
            ))?;
            if token.is_empty() {
                return Err(DpopError::InvalidRequest("the access token is empty"));
            }
            if scheme == TokenScheme::Bearer {
                // Whatever the token is, this endpoint wants DPoP; a bound
                // one gets the reason.
                let verified = verifier
                    .verify(token)
                    .map_err(|e| DpopError::InvalidToken(Cow::Owned(e.to_string())))?;
                required_binding(&verified, scheme)?;
                return Err(DpopError::InvalidToken(Cow::Borrowed(
                    "this endpoint accepts DPoP-bound tokens only",
                )));
            }
            let (token, proof) = check_presentation(&verifier, &dpop, &req, scheme, token).await?;
            Ok(DpopToken {
                token,
                fresh_nonce: proof.and_then(|p| p.fresh_nonce),
            })
        })
    }
}
