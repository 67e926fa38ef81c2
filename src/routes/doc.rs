//! The schemas and reusable responses `/openapi.json` documents: most
//! handlers build their JSON with `json!`, so these structs describe those
//! bodies by hand. Handlers name them in their `#[utoipa::path]`
//! annotations; `openapi.rs` gathers the handlers into the document.

#![allow(dead_code)] // The structs below exist for their schemas only.

use serde::Serialize;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

// --- errors ----------------------------------------------------------------

/// The error of every endpoint but the OAuth ones. Some errors carry extra
/// members: `confirmation_phrase` (409 `confirmation_required`), `scope`
/// (403 `insufficient_scope`).
#[derive(Serialize, ToSchema)]
#[schema(as = ApiError)]
pub struct ApiErrorBody {
    /// A stable code, e.g. `invalid_token`, `not_found`, `invalid_input`.
    error: String,
    /// For people; may change.
    message: String,
    /// The scope the credential lacks; `insufficient_scope` only.
    #[schema(required = false)]
    scope: String,
    /// The `confirm` value that deletes the key; `confirmation_required` only.
    #[schema(required = false)]
    confirmation_phrase: String,
}

/// The `error` of the OAuth endpoints' answers: the codes of
/// [`super::error::OAuthErrorCode`], taken from the enum itself.
#[derive(Serialize)]
pub struct OAuthErrorCode;

impl PartialSchema for OAuthErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "RFC 6749 §5.2 error codes, plus RFC 8707's `invalid_target`, RFC 7009's \
                 `unsupported_token_type` and RFC 9449's DPoP errors (`invalid_dpop_proof`: the \
                 proof failed a check; `use_dpop_nonce`: retry with the nonce in `DPoP-Nonce`)",
            ))
            .enum_values(Some(
                super::error::OAuthErrorCode::ALL
                    .iter()
                    .map(|code| code.as_str()),
            ))
            .into()
    }
}

impl ToSchema for OAuthErrorCode {}

/// An RFC 6749 §5.2 error of the OAuth endpoints.
#[derive(Serialize, ToSchema)]
#[schema(as = OAuthError)]
pub struct OAuthErrorBody {
    error: OAuthErrorCode,
    error_description: String,
}

/// A reusable response: `$name` answers `$status` with `$schema`'s body.
macro_rules! error_response {
    ($name:ident, $schema:literal, $description:literal $(, $header:literal => $header_description:literal)* $(,)?) => {
        pub struct $name;
        impl<'r> utoipa::ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                let builder = ResponseBuilder::new().description($description).content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name($schema)))
                        .build(),
                );
                $(
                    let builder = builder.header(
                        $header,
                        HeaderBuilder::new()
                            .schema(String::schema())
                            .description(Some($header_description))
                            .build(),
                    );
                )*
                (stringify!($name), builder.build().into())
            }
        }
    };
}

/// Responses many operations share, listed once: each names the component
/// response (`#/components/responses/…`) it stands for.
macro_rules! shared_responses {
    ($(#[$doc:meta])* $name:ident { $($status:literal => $response:ident),+ $(,)? }) => {
        $(#[$doc])*
        pub struct $name;
        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<String, RefOr<Response>> {
                [$(($status.to_owned(), Ref::from_response_name(stringify!($response)).into())),+]
                    .into_iter()
                    .collect()
            }
        }
    };
}

shared_responses!(
    /// What any call with a credential may be refused with.
    CallerErrors {
        "400" => BadRequest,
        "401" => Unauthenticated,
        "403" => Forbidden,
        "503" => Unavailable,
    }
);
shared_responses!(
    /// What a call with a JSON body may be refused with.
    BodyErrors {
        "413" => PayloadTooLarge,
        "415" => UnsupportedMediaType,
        "422" => Unprocessable,
    }
);
shared_responses!(
    /// The OAuth endpoints' RFC 6749 §5.2 refusals.
    OAuthErrors {
        "400" => OAuthBadRequest,
        "401" => OAuthInvalidClient,
        "413" => OAuthPayloadTooLarge,
        "429" => OAuthThrottled,
        "503" => OAuthUnavailable,
    }
);

error_response!(
    BadRequest,
    "ApiError",
    "A malformed request: `invalid_request` (more than one credential, a disabled `api_key` \
     parameter), `invalid_json`, `invalid_query`, `invalid_cursor`, `invalid_collection`, \
     `invalid_idempotency_key`, `not_a_session`, `unreadable_body`"
);
error_response!(
    Unauthenticated,
    "ApiError",
    "No credential (`missing_token`), or one that is not valid: a bad, expired or revoked \
     token, key or session (`invalid_token`), or a refused AWS Signature Version 4 \
     (`signature_mismatch`, `request_expired`, `invalid_credential_scope`, … naming the fault; \
     a mismatch also carries `canonical_request` and `string_to_sign`)",
    "WWW-Authenticate" => "`Bearer realm=\"keyport\"`, with `error=\"invalid_token\"` when a credential was refused; `AWS4-HMAC-SHA256 realm=\"keyport\", error=\"…\"` for a refused signature",
);
error_response!(
    InsufficientScope,
    "ApiError",
    "The credential lacks the scope this endpoint needs (`insufficient_scope`)",
    "WWW-Authenticate" => "`Bearer realm=\"keyport\", error=\"insufficient_scope\", scope=\"…\"`",
);
error_response!(
    Forbidden,
    "ApiError",
    "The caller may not do this: the credential lacks the scope the operation needs \
     (`insufficient_scope`, with `scope`), or the role or ownership forbids it (`forbidden`, \
     `api_only_user`)"
);
error_response!(
    NotFound,
    "ApiError",
    "No such object in the caller's tenant (`not_found`)"
);
error_response!(
    Conflict,
    "ApiError",
    "The request conflicts with the current state (`conflict`, `key_limit_reached`, \
     `webhook_endpoint_limit_reached`, `trusted_issuer_limit_reached`, \
     `confirmation_required` with `confirmation_phrase`)"
);
error_response!(
    PayloadTooLarge,
    "ApiError",
    "The body exceeds the limit (`payload_too_large`)"
);
error_response!(
    UnsupportedMediaType,
    "ApiError",
    "The body is not JSON (`unsupported_media_type`)"
);
error_response!(
    Unprocessable,
    "ApiError",
    "JSON of the wrong shape or values the rules refuse (`invalid_input`, `invalid_record`, \
     `weak_password`)"
);
error_response!(
    Unavailable,
    "ApiError",
    "The database could not be reached (`unavailable`); retry",
    "Retry-After" => "Seconds to wait",
);
error_response!(
    RateLimited,
    "ApiError",
    "The key used up its rate for reports and webhooks (`rate_limited`)",
    "Retry-After" => "Seconds until one more request is allowed",
    "RateLimit-Policy" => "The key's policy, e.g. `\"key\";q=600;w=60`: `q` requests per `w` seconds",
    "RateLimit" => "Where the key stands, e.g. `\"key\";r=0;t=60`: `r` requests left, `t` seconds until the whole burst is back",
);
error_response!(
    OAuthBadRequest,
    "OAuthError",
    "`invalid_request`, `unsupported_grant_type`, `invalid_scope`, `invalid_target`, \
     `invalid_dpop_proof` or `use_dpop_nonce` (RFC 9449; the latter with a `DPoP-Nonce` header), or (at \
     `/oauth/revoke`, for an API key, session or set-password token) `unsupported_token_type`"
);
error_response!(
    OAuthInvalidClient,
    "OAuthError",
    "Client authentication failed (`invalid_client`)",
    "WWW-Authenticate" => "`Basic realm=\"keyport\", charset=\"UTF-8\", error=\"invalid_client\", error_description=\"…\"`",
);
error_response!(
    OAuthPayloadTooLarge,
    "OAuthError",
    "The body exceeds 16 KiB (`invalid_request`)"
);
error_response!(
    OAuthThrottled,
    "OAuthError",
    "Too many failed client authentications from this address (`temporarily_unavailable`)",
    "Retry-After" => "Seconds to wait",
);
error_response!(
    OAuthUnavailable,
    "OAuthError",
    "The database could not be reached (`temporarily_unavailable`); retry",
    "Retry-After" => "Seconds to wait",
);

// --- OAuth -----------------------------------------------------------------

/// The grant types this server supports.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    ClientCredentials,
    /// RFC 8693 token exchange.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
}

/// An RFC 6749 §4.4.2 token request. Unrecognised parameters are ignored;
/// each parameter at most once.
#[derive(Serialize, ToSchema)]
pub struct TokenRequest {
    grant_type: GrantType,
    /// With `client_secret`, instead of HTTP Basic.
    #[schema(required = false)]
    client_id: String,
    /// Only without an Authorization header.
    #[schema(required = false)]
    client_secret: String,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, with
    /// `client_assertion` (RFC 7523 `private_key_jwt`); not with a secret or
    /// an Authorization header.
    #[schema(
        required = false,
        examples("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    )]
    client_assertion_type: String,
    /// A JWT signed with one of the key's public keys: `iss` and `sub` the
    /// client ID, `aud` this server's issuer or token endpoint URL, `exp` at
    /// most an hour ahead (`client_assertion_max_lifetime_seconds`), a `jti`
    /// never used before (RFC 7523 §3).
    #[schema(required = false)]
    client_assertion: String,
    /// Space-separated scopes, within the key's; absent: all of the key's.
    #[schema(required = false, examples("reports:read webhooks:write"))]
    scope: String,
    /// RFC 8707: must be this server's audience. Not with `audience`.
    #[schema(required = false)]
    resource: String,
    /// Same as `resource`. Not with `resource`.
    #[schema(required = false)]
    audience: String,
    /// Token exchange (RFC 8693 §2.1): the token exchanged. Required then.
    #[schema(required = false)]
    subject_token: String,
    /// Token exchange: `urn:ietf:params:oauth:token-type:access_token` (a
    /// Keyport token), `…:jwt` or `…:id_token` (a trusted issuer's).
    #[schema(required = false)]
    subject_token_type: String,
    /// Token exchange: a Keyport access token of whoever acts for the
    /// subject; the new token carries `act`.
    #[schema(required = false)]
    actor_token: String,
    /// Token exchange, with `actor_token`:
    /// `urn:ietf:params:oauth:token-type:access_token`.
    #[schema(required = false)]
    actor_token_type: String,
    /// Token exchange: an access token is all Keyport issues.
    #[schema(required = false)]
    requested_token_type: String,
}

/// An RFC 7662 §2.1 introspection or RFC 7009 §2.1 revocation request.
#[derive(Serialize, ToSchema)]
pub struct TokenQuery {
    /// The access token asked about.
    #[schema(min_length = 1)]
    token: String,
    /// `access_token` (RFC 7662 §2.1, RFC 7009 §2.1); this server ignores it.
    #[schema(required = false)]
    token_type_hint: String,
    #[schema(required = false)]
    client_id: String,
    #[schema(required = false)]
    client_secret: String,
    /// As at the token endpoint (RFC 7523 `private_key_jwt`).
    #[schema(
        required = false,
        examples("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    )]
    client_assertion_type: String,
    /// As at the token endpoint; `aud` may also be this endpoint's URL.
    #[schema(required = false)]
    client_assertion: String,
}

/// An RFC 7662 §2.2 answer. An inactive token (invalid, expired, revoked, or
/// one the caller may not see) is `{"active": false}` and nothing else.
#[derive(Serialize, ToSchema)]
pub struct IntrospectionResponse {
    active: bool,
    #[schema(required = false)]
    scope: String,
    #[schema(required = false)]
    client_id: String,
    /// The key's owner.
    #[schema(required = false)]
    sub: String,
    #[schema(required = false)]
    aud: String,
    #[schema(required = false)]
    iss: String,
    #[schema(required = false)]
    exp: i64,
    #[schema(required = false)]
    iat: i64,
    #[schema(required = false)]
    nbf: i64,
    #[schema(required = false)]
    jti: String,
    #[schema(required = false)]
    token_type: String,
    #[schema(required = false)]
    tenant_id: String,
    #[schema(required = false)]
    roles: Vec<String>,
    /// The CIDR ranges the token's key may be used from, when it has an allow-list.
    #[schema(required = false)]
    kp_src: Vec<String>,
    /// The key's rate for reports and webhooks when the token was issued,
    /// when it has one.
    #[schema(required = false, value_type = Object)]
    kp_rl: serde_json::Value,
}

/// RFC 8414 authorization server metadata.
#[derive(Serialize, ToSchema)]
pub struct ServerMetadata {
    issuer: String,
    token_endpoint: String,
    jwks_uri: String,
    introspection_endpoint: String,
    revocation_endpoint: String,
    /// `client_secret_basic`, `client_secret_post`, `private_key_jwt`,
    /// `tls_client_auth`, `self_signed_tls_client_auth`.
    introspection_endpoint_auth_methods_supported: Vec<String>,
    /// What `private_key_jwt` assertions may be signed with.
    introspection_endpoint_auth_signing_alg_values_supported: Vec<String>,
    revocation_endpoint_auth_methods_supported: Vec<String>,
    revocation_endpoint_auth_signing_alg_values_supported: Vec<String>,
    grant_types_supported: Vec<String>,
    response_types_supported: Vec<String>,
    token_endpoint_auth_methods_supported: Vec<String>,
    /// ES256, EdDSA, RS256.
    token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    scopes_supported: Vec<String>,
    access_token_signing_alg_values_supported: Vec<String>,
    /// RFC 9449 §5.1: the algorithms DPoP proofs may be signed with.
    #[schema(examples(json!(["ES256", "EdDSA", "RS256"])))]
    dpop_signing_alg_values_supported: Vec<String>,
    /// RFC 8705 §3.3: always true; tokens issued to a client that presented
    /// a certificate are bound to it (`cnf.x5t#S256`).
    tls_client_certificate_bound_access_tokens: bool,
    /// RFC 8705 §5: the token, introspection and revocation endpoints on
    /// the mutual-TLS listener; present when `mtls_bind` is set.
    #[schema(required = false, value_type = Object)]
    mtls_endpoint_aliases: serde_json::Value,
}

/// One RFC 7517 public key; the members depend on `kty`.
#[derive(Serialize, ToSchema)]
pub struct Jwk {
    /// `EC`, `OKP` or `RSA`.
    kty: String,
    #[schema(required = false)]
    kid: String,
    #[schema(required = false)]
    alg: String,
    #[serde(rename = "use")]
    #[schema(required = false)]
    use_: String,
}

/// RFC 7517 key set: the active signing key and recently retired ones.
#[derive(Serialize, ToSchema)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

// --- health ----------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(examples("ok"))]
    status: String,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    #[schema(examples("ready"))]
    status: String,
    /// The `kid` of the key that signs new tokens.
    signing_key: String,
    /// `trusted`: keys read before are checked in memory, every change
    /// heard; `bypassed`: the instance is not sure it hears every change
    /// (its listening connection is down), so every request reads the
    /// database; `off`: no cache.
    #[schema(examples("trusted"))]
    credential_cache: String,
}

// --- records ---------------------------------------------------------------

/// One JSON object, or an array of them (1 to `max_records_per_push`).
pub struct PushBody;

impl PartialSchema for PushBody {
    fn schema() -> RefOr<Schema> {
        let object = || ObjectBuilder::new().schema_type(Type::Object);
        OneOfBuilder::new()
            .item(object())
            .item(
                ArrayBuilder::new()
                    .items(object())
                    .min_items(Some(1))
                    .build(),
            )
            .description(Some(
                "One JSON object, or an array of 1 to `max_records_per_push` (1000) objects",
            ))
            .into()
    }
}

impl ToSchema for PushBody {}

/// What a push stored (or, replayed, what it stored the first time).
#[derive(Serialize, ToSchema)]
pub struct PushResult {
    collection: String,
    count: u64,
    ids: Vec<String>,
    /// Unix seconds.
    created_at: i64,
}

// --- session ---------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct SessionCreated {
    /// `kpsess_…`; present it as `Authorization: Bearer`.
    session_token: String,
    #[schema(examples("Bearer"))]
    token_type: String,
    /// Unix seconds.
    expires_at: i64,
    user_id: String,
}

// --- keys, users, audit ----------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    keys: Vec<crate::service::keys::KeySummary>,
}

/// The new key, with its secret: the only time the secret is shown.
#[derive(Serialize, ToSchema)]
pub struct NewKey {
    #[serde(flatten)]
    key: crate::service::keys::KeySummary,
    /// `kps_…`; store it in a secrets manager. Absent for a key created
    /// with `"client_secret": false` (it authenticates with its public keys).
    #[schema(required = false)]
    client_secret: String,
    /// The public keys registered at creation (`private_key_jwt`); absent
    /// when none were given.
    #[schema(required = false)]
    public_keys: Vec<crate::service::public_keys::PublicKeySummary>,
    /// `whsec_…`: verifies this key's signed webhook deliveries (Standard
    /// Webhooks). Derived from the secret with HKDF-SHA256; shown only here.
    webhook_signing_key: String,
}

#[derive(Serialize, ToSchema)]
pub struct PublicKeyList {
    public_keys: Vec<crate::service::public_keys::PublicKeySummary>,
}

/// A public key as a JWK (RFC 7517): `kty` EC (`crv` P-256, `x`, `y`), OKP
/// (`crv` Ed25519, `x`) or RSA (`n`, `e`); optional `kid` (at most 128
/// characters), `alg` (must match the key type), `use` (`sig`). Private
/// members (`d`, …) and symmetric keys are refused. Other members are
/// ignored and not stored.
#[derive(Serialize, ToSchema)]
#[schema(as = PublicJwk)]
pub struct PublicJwkBody {
    #[schema(examples("EC", "OKP", "RSA"))]
    kty: String,
    #[schema(required = false)]
    crv: String,
    #[schema(required = false)]
    x: String,
    #[schema(required = false)]
    y: String,
    #[schema(required = false)]
    n: String,
    #[schema(required = false)]
    e: String,
    #[schema(required = false)]
    kid: String,
    #[schema(required = false)]
    alg: String,
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    users: Vec<crate::service::users::UserSummary>,
}

/// The new user, with the one-time token that lets them choose a password.
#[derive(Serialize, ToSchema)]
pub struct NewUser {
    #[serde(flatten)]
    user: crate::service::users::UserSummary,
    /// `kpset_…`: send it with a password to `POST /api/v1/password`; shown once.
    set_password_token: String,
    /// Unix seconds.
    set_password_expires_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Unlocked {
    unlocked: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TenantPolicy {
    api_only_users: bool,
    /// `null`: keys without their own rate are unlimited.
    #[schema(value_type = Option<RateLimitDoc>)]
    default_rate_limit: Option<RateLimitDoc>,
}

/// A rate, as answers show it.
#[derive(Serialize, ToSchema)]
#[schema(as = RateLimitSetting)]
pub struct RateLimitDoc {
    requests: u32,
    per_seconds: u32,
    burst: u32,
}

/// One page of audit events, oldest first.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    events: Vec<crate::service::audit::AuditRow>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}
