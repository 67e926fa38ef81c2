//! `Caller`: who is calling Keyport's own API. Accepts, in order of
//! preference for integrations:
//! - `Authorization: Bearer <access token>`: validated offline (plus this
//!   instance's in-memory list of revoked `jti`s);
//! - the API key itself, as `x-api-key: <secret>` or `Authorization: Bearer
//!   <secret>` (told apart from a JWT by its `kps_` prefix), acting as its owner;
//! - `Authorization: Bearer <session token>` from `POST /api/v1/session`;
//! - `?api_key=<secret>` only when `allow_api_key_query` is on.

use std::net::IpAddr;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use futures_util::future::LocalBoxFuture;

use super::AppState;
use super::observe::note_client_id;
use crate::audit::Actor;
use crate::clients::{self, ClientAuthError};
use crate::domain::{ClientSecret, Role, ScopeSet, SessionToken, UserStatus, now};
use crate::error::ApiError;
use crate::tokens::{BearerError, TokenVerifier, bearer_value};

#[derive(Debug, Clone)]
pub enum Credential {
    AccessToken { jti: String },
    ApiKey { key_id: String },
    Session(SessionToken),
}

#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub tenant_id: String,
    pub role: Role,
    pub scopes: ScopeSet,
    /// The key behind the request, when a key (or its token) made it.
    pub client_id: Option<String>,
    pub credential: Credential,
    pub source_address: Option<IpAddr>,
}

impl Caller {
    pub fn require_scope(&self, scope: &'static str) -> Result<(), BearerError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(BearerError::InsufficientScope(scope))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Refuses non-admins with 403.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::new(
                actix_web::http::StatusCode::FORBIDDEN,
                "forbidden",
                "only admins may do this",
            ))
        }
    }

    pub fn actor(&self) -> Actor {
        Actor::user(
            &self.user_id,
            &self.tenant_id,
            self.role,
            self.scopes.clone(),
            self.source_address.map(|ip| ip.to_string()),
        )
    }
}

enum Presented {
    AccessToken(String),
    ApiKey(String),
    Session(String),
}

fn presented(req: &HttpRequest, allow_query: bool) -> Result<Presented, BearerError> {
    let header_key = req.headers().get("x-api-key");
    let has_authorization = req.headers().contains_key(AUTHORIZATION);
    // Most requests carry no query: skip the parse for them.
    let query = req.query_string();
    let query_key = (!query.is_empty())
        .then(|| serde_urlencoded::from_str::<Vec<(String, String)>>(query).ok())
        .flatten()
        .and_then(|params| {
            params
                .into_iter()
                .find(|(k, _)| k == "api_key")
                .map(|(_, v)| v)
        });
    let sources = usize::from(header_key.is_some())
        + usize::from(has_authorization)
        + usize::from(query_key.is_some());
    if sources > 1 {
        return Err(BearerError::InvalidRequest(
            "present exactly one credential",
        ));
    }
    if let Some(value) = header_key {
        let value = value
            .to_str()
            .map_err(|_| BearerError::InvalidRequest("the x-api-key header is not ASCII"))?;
        return Ok(Presented::ApiKey(value.trim().to_owned()));
    }
    if let Some(value) = query_key {
        if !allow_query {
            return Err(BearerError::InvalidRequest(
                "the api_key query parameter is disabled on this server: send the key in the x-api-key header",
            ));
        }
        return Ok(Presented::ApiKey(value));
    }
    let value = bearer_value(req)?;
    Ok(if ClientSecret::has_secret_prefix(value) {
        Presented::ApiKey(value.to_owned())
    } else if SessionToken::has_session_prefix(value) {
        Presented::Session(value.to_owned())
    } else {
        Presented::AccessToken(value.to_owned())
    })
}

impl FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or(BearerError::NotConfigured)?
                .clone();
            let verifier = req
                .app_data::<web::Data<TokenVerifier>>()
                .ok_or(BearerError::NotConfigured)?
                .clone();
            let source_address = req.peer_addr().map(|a| a.ip());
            let presented = presented(&req, state.settings.security.allow_api_key_query)?;
            match presented {
                Presented::AccessToken(token) => {
                    let verified = verifier.verify(&token).map_err(BearerError::InvalidToken)?;
                    if state.revoked.is_revoked(&verified.claims.jti) {
                        return Err(
                            BearerError::Rejected("the access token has been revoked").into()
                        );
                    }
                    note_client_id(&req, &verified.claims.client_id);
                    let role = if verified.is_admin() {
                        Role::Admin
                    } else {
                        Role::Member
                    };
                    Ok(Caller {
                        user_id: verified.claims.sub,
                        tenant_id: verified.claims.tenant_id,
                        role,
                        scopes: verified.scopes,
                        client_id: Some(verified.claims.client_id),
                        credential: Credential::AccessToken {
                            jti: verified.claims.jti,
                        },
                        source_address,
                    })
                }
                Presented::ApiKey(raw) => {
                    let throttle_ip = source_address.unwrap_or(IpAddr::from([0, 0, 0, 0]));
                    if state.throttle.check("x-api-key", throttle_ip).is_some() {
                        return Err(
                            BearerError::Rejected("too many failed attempts; retry later").into(),
                        );
                    }
                    let secret = ClientSecret::parse(&raw).map_err(|_| {
                        state.throttle.record_failure("x-api-key", throttle_ip);
                        BearerError::Rejected("the API key is not valid")
                    })?;
                    let at = now();
                    let key = clients::authenticate_secret(&state.store, &secret, at)
                        .await
                        .map_err(|e| -> actix_web::Error {
                            match e {
                                ClientAuthError::Storage(err) => ApiError::from(err).into(),
                                ClientAuthError::BadCredentials => {
                                    state.throttle.record_failure("x-api-key", throttle_ip);
                                    BearerError::Rejected("the API key is not valid").into()
                                }
                                other => BearerError::Rejected(other.message()).into(),
                            }
                        })?;
                    state.last_used.touch(&key.key_id, at);
                    note_client_id(&req, &key.client_id);
                    Ok(Caller {
                        user_id: key.owner_id,
                        tenant_id: key.tenant_id,
                        role: key.owner_role,
                        scopes: key.scopes,
                        client_id: Some(key.client_id),
                        credential: Credential::ApiKey { key_id: key.key_id },
                        source_address,
                    })
                }
                Presented::Session(raw) => {
                    let token = SessionToken::parse(&raw)
                        .map_err(|_| BearerError::Rejected("the session is not valid"))?;
                    let session = state
                        .store
                        .find_session(&token.digest().to_hex(), now())
                        .await
                        .map_err(ApiError::from)?
                        .ok_or(BearerError::Rejected(
                            "the session expired or was signed out",
                        ))?;
                    if session.status != UserStatus::Active.as_str() {
                        return Err(BearerError::Rejected("the user is disabled").into());
                    }
                    let role: Role = session.role.parse().map_err(|_| ApiError::internal())?;
                    let scopes =
                        ScopeSet::parse(&session.permissions).map_err(|_| ApiError::internal())?;
                    Ok(Caller {
                        user_id: session.user_id,
                        tenant_id: session.tenant_id,
                        role,
                        scopes,
                        client_id: None,
                        credential: Credential::Session(token),
                        source_address,
                    })
                }
            }
        })
    }
}
