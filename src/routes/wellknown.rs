//! `GET /.well-known/oauth-authorization-server` (RFC 8414) and
//! `GET /.well-known/jwks.json` (RFC 7517). Public.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use super::doc;

/// How clients authenticate at the token, introspection and revocation
/// endpoints: a secret (Basic or body), a JWT assertion (RFC 7523), or a
/// certificate (RFC 8705 §2: over the mutual-TLS listener, or through a
/// trusted proxy's `Client-Cert`).
const CLIENT_AUTH_METHODS: [&str; 5] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
];

/// What a `private_key_jwt` assertion may be signed with (src/tokens/jws.rs).
const ASSERTION_ALGORITHMS: [&str; 3] = ["ES256", "EdDSA", "RS256"];

/// RFC 8414 authorization server metadata.
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    operation_id = "serverMetadata",
    tag = "discovery",
    responses((status = 200, description = "The metadata", body = doc::ServerMetadata))
)]
pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let issuer = &state.service.settings.tokens.issuer;
    let mut metadata = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "grant_types_supported": ["client_credentials", crate::domain::exchange::TOKEN_EXCHANGE_GRANT],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "scopes_supported": crate::domain::SUPPORTED_SCOPES,
        "access_token_signing_alg_values_supported": [state.keys.algorithm().as_str()],
        // RFC 9449 §5.1: DPoP proofs are accepted, signed with these.
        "dpop_signing_alg_values_supported": crate::tokens::dpop::DPOP_ALGS,
        // Extension members (RFC 8414 §2 allows them): the credential
        // scope AWS Signature Version 4 requests must name.
        "sigv4_region": state.service.settings.sigv4.region,
        "sigv4_service": state.service.settings.sigv4.service,
        "sigv4_algorithm": crate::domain::sigv4::ALGORITHM,
        // RFC 8705 §3.3: tokens issued over mutual TLS are bound to the
        // client's certificate.
        "tls_client_certificate_bound_access_tokens": true,
    });
    // RFC 8705 §5: where clients reach the endpoints with a certificate.
    if let Some(mtls) = &state.service.settings.mtls.url {
        metadata["mtls_endpoint_aliases"] = json!({
            "token_endpoint": format!("{mtls}/oauth/token"),
            "introspection_endpoint": format!("{mtls}/oauth/introspect"),
            "revocation_endpoint": format!("{mtls}/oauth/revoke"),
        });
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(metadata)
}

/// RFC 7517 public keys: the active signing key and recently retired ones.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "jwks",
    tag = "discovery",
    responses((status = 200, description = "The key set", body = doc::JwkSet))
)]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let refresh = state.service.settings.tokens.signing_key_refresh.as_secs();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, format!("public, max-age={refresh}")))
        .content_type("application/json")
        .body(state.keys.jwks_json().to_string())
}
