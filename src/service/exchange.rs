//! RFC 8693 token exchange, and the trust it rests on.
//!
//! Two kinds of subject token:
//! - **A Keyport access token**, exchanged by a key holding
//!   `tokens:exchange` in the same company: the new token may only narrow
//!   (scopes a subset, lifetime never past the subject token's `exp`) and
//!   may name another audience from `exchange_audiences`. With an actor
//!   token, it carries `act` (§4.1), nesting the subject token's own.
//! - **A trusted issuer's JWT** (a CI job's or a workload's identity token):
//!   verified against the issuer's published keys, its audience checked,
//!   then the company's rules decide which user it acts as and which scopes
//!   it gets. The subject token is the credential: no client authentication
//!   is needed (a key that does authenticate must hold `tokens:exchange`,
//!   and only its company's rules are tried). The token's `client_id` is the
//!   rule's id, so deleting the rule ends it at every re-check.
//!
//! Admins (`tenant:manage`) manage issuers and rules; every change is audited.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::audit::{self, Event};
use super::clients::{self, AuthenticatedKey, ClientAuthError};
use super::grant::{GrantError, IssuedToken, TokenSpec, sign};
use super::{Result, Service, ServiceError, authz, preview, stored_permissions};
use crate::domain::exchange::{
    ACCESS_TOKEN_TYPE, Actor, Conditions, IssuerId, JWT_TOKEN_TYPE, MAX_ACTOR_DEPTH,
    SubjectTokenType, new_rule_id, parse_audience, parse_description,
};
use crate::domain::{
    Principal, ScopeSet, TENANT_MANAGE, TOKENS_EXCHANGE, UnixTime, UserStatus, WebhookUrl, now,
};
use crate::storage::{ExchangeCandidate, ExchangeRuleRow, IssuerInsert, TrustedIssuerRow};
use crate::tokens::{JwtTimeError, KeyRing, UnverifiedJwt, VerifiedJwt, VerifiedToken};

// ---------------------------------------------------------------------------
// Managing trust
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TrustedIssuer {
    pub id: String,
    pub issuer: String,
    pub jwks_url: String,
    pub audience: String,
    pub description: String,
    pub created_at: UnixTime,
    pub rules: Vec<ExchangeRule>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExchangeRule {
    /// Also the `client_id` of the tokens the rule grants.
    pub id: String,
    pub issuer_id: String,
    pub description: String,
    /// `[{"claim": "sub", "equals": "…"} | {"claim": "…", "matches": "a*"}]`
    #[schema(value_type = Vec<Object>)]
    pub conditions: Value,
    pub user_id: String,
    pub scopes: String,
    pub created_at: UnixTime,
}

impl ExchangeRule {
    fn from_row(row: ExchangeRuleRow) -> Self {
        let conditions = Conditions::from_stored(&row.conditions)
            .map(|c| c.to_json())
            .unwrap_or(Value::Null);
        ExchangeRule {
            id: row.id,
            issuer_id: row.issuer_id,
            description: row.description,
            conditions,
            user_id: row.user_id,
            scopes: row.scopes,
            created_at: row.created_at,
        }
    }
}

impl TrustedIssuer {
    fn from_row(row: TrustedIssuerRow, rules: Vec<ExchangeRule>) -> Self {
        TrustedIssuer {
            id: row.id,
            issuer: row.issuer,
            jwks_url: row.jwks_url,
            audience: row.audience,
            description: row.description,
            created_at: row.created_at,
            rules,
        }
    }
}

pub struct NewTrustedIssuer<'a> {
    pub issuer: &'a str,
    pub jwks_url: &'a str,
    pub audience: &'a str,
    pub description: Option<&'a str>,
}

pub struct NewExchangeRule<'a> {
    pub conditions: &'a Value,
    /// The user the exchanged tokens act as: an id, or an email.
    pub user: &'a str,
    pub scopes: &'a str,
    pub description: Option<&'a str>,
}

/// The principal's company; the operator names one.
async fn managed_tenant(
    service: &Service,
    principal: &Principal,
    tenant: Option<&str>,
) -> Result<(Principal, String)> {
    let principal = authz::require(service, principal, TENANT_MANAGE).await?;
    let tenant_id = super::tenants::acting_tenant(service, &principal, tenant).await?;
    Ok((principal, tenant_id))
}

fn invalid(err: impl std::fmt::Display) -> ServiceError {
    ServiceError::Invalid(err.to_string())
}

/// Trusts `input.issuer`'s tokens addressed to `input.audience`, verified
/// with the keys at `input.jwks_url`.
pub async fn add_issuer(
    service: &Service,
    principal: &Principal,
    tenant: Option<&str>,
    input: NewTrustedIssuer<'_>,
) -> Result<TrustedIssuer> {
    let (principal, tenant_id) = managed_tenant(service, principal, tenant).await?;
    let policy = service.settings.exchange.targets;
    let issuer = IssuerId::parse(input.issuer, policy.allow_http).map_err(invalid)?;
    let jwks_url = WebhookUrl::parse(input.jwks_url, &policy).map_err(|e| {
        ServiceError::Invalid(format!(
            "`jwks_url`: {}",
            e.to_string().replace("webhook_allow", "exchange_allow")
        ))
    })?;
    crate::webhooks::check_target(&jwks_url, &policy)
        .await
        .map_err(|e| ServiceError::Invalid(format!("`jwks_url`: {e}")))?;
    let audience = parse_audience(input.audience).map_err(invalid)?;
    let description = parse_description(input.description).map_err(invalid)?;
    // An audience is one company's: a token names its audience to say
    // whom it is for, so no other company may trust the same issuer for it.
    let taken = |owner: Option<String>| {
        match owner {
        Some(owner) if owner == tenant_id => ServiceError::Conflict(
            "this issuer is already trusted for this audience".to_owned(),
        ),
        _ => ServiceError::Conflict(
            "another company trusts this issuer for this audience: an audience names one company, so choose one of your own (for example your company's name) and set it as the audience your tokens request"
                .to_owned(),
        ),
    }
    };
    let row = TrustedIssuerRow {
        id: Uuid::now_v7().to_string(),
        tenant_id: tenant_id.clone(),
        issuer: issuer.as_str().to_owned(),
        jwks_url: jwks_url.as_str().to_owned(),
        audience,
        description,
        created_at: now(),
    };
    let max = service.settings.exchange.max_trusted_issuers;
    match service
        .store
        .insert_trusted_issuer_within_limit(&row, max)
        .await
    {
        Ok(IssuerInsert::Inserted) => {}
        Ok(IssuerInsert::LimitReached { trusted }) => {
            return Err(ServiceError::TrustedIssuerLimitReached(format!(
                "this company already trusts {trusted} issuers, the most it may \
                 (exchange_max_trusted_issuers = {max}); remove one first"
            )));
        }
        // `trusted_issuers_audience_unique` decides, races included; only
        // then is the owner read, to say whose it is.
        Err(crate::storage::StorageError::Constraint(_)) => {
            let owner = service
                .store
                .trusted_audience_owner(&row.issuer, &row.audience)
                .await?;
            return Err(taken(owner));
        }
        Err(other) => return Err(other.into()),
    }
    audit::record(
        &service.store,
        &principal,
        Event::new("exchange.issuer.add")
            .tenant(&tenant_id)
            .target(&row.id)
            .detail(format!(
                "issuer={} audience={} jwks_url={}",
                row.issuer, row.audience, row.jwks_url
            )),
    )
    .await;
    Ok(TrustedIssuer::from_row(row, Vec::new()))
}

/// The company's trusted issuers, each with its rules.
pub async fn list_issuers(
    service: &Service,
    principal: &Principal,
    tenant: Option<&str>,
) -> Result<Vec<TrustedIssuer>> {
    let (_, tenant_id) = managed_tenant(service, principal, tenant).await?;
    let issuers = service.store.list_trusted_issuers(&tenant_id).await?;
    let mut rules = service.store.list_exchange_rules(&tenant_id).await?;
    Ok(issuers
        .into_iter()
        .map(|issuer| {
            let (own, rest): (Vec<_>, Vec<_>) =
                rules.drain(..).partition(|r| r.issuer_id == issuer.id);
            rules = rest;
            TrustedIssuer::from_row(
                issuer,
                own.into_iter().map(ExchangeRule::from_row).collect(),
            )
        })
        .collect())
}

/// Stops trusting an issuer: its rules go with it, and the tokens they
/// granted fail every re-check from now on.
pub async fn remove_issuer(
    service: &Service,
    principal: &Principal,
    tenant: Option<&str>,
    issuer_id: &str,
) -> Result<()> {
    let (principal, tenant_id) = managed_tenant(service, principal, tenant).await?;
    if !service
        .store
        .delete_trusted_issuer(&tenant_id, issuer_id)
        .await?
    {
        return Err(ServiceError::NotFound(format!(
            "no trusted issuer `{}`",
            preview(issuer_id)
        )));
    }
    audit::record(
        &service.store,
        &principal,
        Event::new("exchange.issuer.remove")
            .tenant(&tenant_id)
            .target(issuer_id),
    )
    .await;
    Ok(())
}

/// Adds a rule: tokens of the issuer whose claims meet every condition act
/// as `input.user` with at most `input.scopes`.
pub async fn add_rule(
    service: &Service,
    principal: &Principal,
    tenant: Option<&str>,
    issuer_id: &str,
    input: NewExchangeRule<'_>,
) -> Result<ExchangeRule> {
    let (principal, tenant_id) = managed_tenant(service, principal, tenant).await?;
    let issuer = service
        .store
        .find_trusted_issuer(&tenant_id, issuer_id)
        .await?
        .ok_or_else(|| {
            ServiceError::NotFound(format!("no trusted issuer `{}`", preview(issuer_id)))
        })?;
    let conditions = Conditions::parse(input.conditions).map_err(invalid)?;
    let description = parse_description(input.description).map_err(invalid)?;
    let user = match service.store.find_user_by_id(input.user).await? {
        Some(user) => Some(user),
        None => service.store.find_user_by_email(input.user).await?,
    }
    .filter(|user| user.tenant_id == tenant_id)
    .ok_or_else(|| {
        ServiceError::NotFound(format!("no user `{}` in this company", preview(input.user)))
    })?;
    let scopes = ScopeSet::parse_known(input.scopes).map_err(invalid)?;
    if scopes.is_empty() {
        return Err(ServiceError::Invalid(
            "`scopes`: name at least one scope the exchanged tokens may carry".to_owned(),
        ));
    }
    let (_, permissions) = stored_permissions(&user.role, &user.permissions)?;
    let beyond = scopes.missing_from(&permissions);
    if !beyond.is_empty() {
        return Err(ServiceError::Invalid(format!(
            "`scopes`: the user does not hold {beyond}"
        )));
    }
    let row = ExchangeRuleRow {
        id: new_rule_id(),
        issuer_id: issuer.id.clone(),
        tenant_id: tenant_id.clone(),
        description,
        conditions: conditions.to_stored(),
        user_id: user.id.clone(),
        scopes: scopes.to_string(),
        created_at: now(),
    };
    service.store.insert_exchange_rule(&row).await?;
    audit::record(
        &service.store,
        &principal,
        Event::new("exchange.rule.add")
            .tenant(&tenant_id)
            .target(&row.id)
            .detail(format!(
                "issuer={} user={} scopes=[{}] conditions={}",
                issuer.issuer, row.user_id, row.scopes, row.conditions
            )),
    )
    .await;
    Ok(ExchangeRule::from_row(row))
}

pub async fn remove_rule(
    service: &Service,
    principal: &Principal,
    tenant: Option<&str>,
    issuer_id: &str,
    rule_id: &str,
) -> Result<()> {
    let (principal, tenant_id) = managed_tenant(service, principal, tenant).await?;
    if !service
        .store
        .delete_exchange_rule(&tenant_id, issuer_id, rule_id)
        .await?
    {
        return Err(ServiceError::NotFound(format!(
            "no rule `{}` for this issuer",
            preview(rule_id)
        )));
    }
    audit::record(
        &service.store,
        &principal,
        Event::new("exchange.rule.remove")
            .tenant(&tenant_id)
            .target(rule_id),
    )
    .await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Exchanging
// ---------------------------------------------------------------------------

/// An RFC 8693 §2.1 request, parsed.
#[derive(Debug)]
pub struct ExchangeRequest<'a> {
    pub subject_token: &'a str,
    pub subject_token_type: SubjectTokenType,
    /// A Keyport access token of whoever acts for the subject.
    pub actor_token: Option<&'a str>,
    pub requested_token_type: Option<&'a str>,
    pub scope: Option<&'a str>,
    /// `resource` or `audience` (RFC 8707 / RFC 8693 §2.1).
    pub audience: Option<&'a str>,
    /// The thumbprint of the request's checked DPoP proof, if it sent one
    /// (RFC 9449): the new token is bound to that key.
    pub dpop_jkt: Option<&'a str>,
    /// The `x5t#S256` thumbprint of the client certificate the request came
    /// with (RFC 8705), if any: a certificate-bound subject token needs it,
    /// and the new token is bound to it (unless bound to a DPoP key).
    pub certificate: Option<&'a str>,
}

/// Exchanges `request.subject_token` for a Keyport access token. `client`
/// is the key that authenticated, if one did.
pub async fn exchange(
    service: &Service,
    keys: &KeyRing,
    client: Option<&AuthenticatedKey>,
    request: ExchangeRequest<'_>,
    source_address: Option<IpAddr>,
) -> Result<IssuedToken, GrantError> {
    if let Some(requested) = request.requested_token_type
        && requested != ACCESS_TOKEN_TYPE
        && requested != JWT_TOKEN_TYPE
    {
        return Err(GrantError::InvalidRequest(format!(
            "requested_token_type: Keyport issues access tokens ({ACCESS_TOKEN_TYPE})"
        )));
    }
    if let Some(client) = client {
        if !client.scopes.contains(TOKENS_EXCHANGE) {
            return Err(GrantError::UnauthorizedClient(
                "this key may not exchange tokens: it needs the tokens:exchange scope",
            ));
        }
        if client.require_dpop && request.dpop_jkt.is_none() {
            return Err(GrantError::DpopRequired);
        }
    }
    let audience = target_audience(service, request.audience)?;
    match request.subject_token_type {
        SubjectTokenType::AccessToken => {
            let client = client.ok_or(GrantError::ClientRequired)?;
            exchange_keyport_token(service, keys, client, &request, audience).await
        }
        SubjectTokenType::ExternalJwt => {
            exchange_external_token(service, keys, client, &request, audience, source_address).await
        }
    }
}

/// The audience the new token names: Keyport's own, or one configured.
fn target_audience(service: &Service, requested: Option<&str>) -> Result<String, GrantError> {
    let own = &service.settings.tokens.audience;
    match requested {
        None => Ok(own.clone()),
        Some(asked) if asked == own => Ok(own.clone()),
        Some(asked)
            if service
                .settings
                .exchange
                .audiences
                .iter()
                .any(|a| a == asked) =>
        {
            Ok(asked.to_owned())
        }
        Some(asked) => Err(GrantError::ExchangeTarget(format!(
            "`{}` is not an audience tokens may be exchanged for here (exchange_audiences)",
            preview(asked)
        ))),
    }
}

/// `requested` narrowed from `held`; empty asks for everything held.
fn narrowed(held: &ScopeSet, requested: Option<&str>) -> Result<ScopeSet, GrantError> {
    let scopes = match requested {
        None => held.clone(),
        Some(raw) => {
            let asked =
                ScopeSet::parse(raw).map_err(|e| GrantError::InvalidScope(e.to_string()))?;
            let beyond = asked.missing_from(held);
            if !beyond.is_empty() {
                return Err(GrantError::InvalidScope(format!(
                    "an exchange may only narrow: the subject does not hold {beyond}"
                )));
            }
            if asked.is_empty() {
                held.clone()
            } else {
                asked
            }
        }
    };
    if scopes.is_empty() {
        return Err(GrantError::InvalidScope(
            "the subject holds no scopes it may use".to_owned(),
        ));
    }
    Ok(scopes)
}

/// A Keyport access token given as `which`: it verifies, is not revoked,
/// and its key and owner are live now. Answers the token and its key.
async fn live_keyport_token(
    service: &Service,
    keys: &KeyRing,
    raw: &str,
    which: &str,
) -> Result<(VerifiedToken, AuthenticatedKey), GrantError> {
    let token = keys
        .verifier()
        .verify(raw)
        .map_err(|e| GrantError::InvalidGrant(format!("{which}: {e}")))?;
    if service.revoked.is_revoked(&token.claims.jti) {
        return Err(GrantError::InvalidGrant(format!(
            "{which}: the access token has been revoked"
        )));
    }
    let key = match clients::current_key(&service.store, &token.claims.client_id).await {
        Ok(key) if key.owner_id == token.claims.sub => key,
        Ok(_) => {
            return Err(GrantError::InvalidGrant(format!(
                "{which}: the key behind the token is not valid"
            )));
        }
        Err(ClientAuthError::Storage(err)) => return Err(GrantError::Storage(err)),
        Err(err) => return Err(GrantError::InvalidGrant(format!("{which}: {err}"))),
    };
    Ok((token, key))
}

/// Whether the certificate presented is the one a token is bound to
/// (thumbprints compared in constant time).
fn same_certificate(bound: &str, presented: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    presented.is_some_and(|presented| bool::from(bound.as_bytes().ct_eq(presented.as_bytes())))
}

/// The `act` claim for a token acting for `subject`: the actor's, with the
/// subject's own chain nested (§4.1); without an actor, the subject's chain.
async fn actor_claim(
    service: &Service,
    keys: &KeyRing,
    subject_act: Option<Actor>,
    tenant_id: &str,
    actor_token: Option<&str>,
    certificate: Option<&str>,
) -> Result<Option<Actor>, GrantError> {
    let Some(raw) = actor_token else {
        return Ok(subject_act);
    };
    let (actor, _) = live_keyport_token(service, keys, raw, "actor_token").await?;
    if actor.claims.dpop_jkt().is_some() {
        // One request carries one proof, for the subject's key: a bound
        // actor token could not prove its holder here.
        return Err(GrantError::InvalidGrant(
            "actor_token: a DPoP-bound token cannot act here; use a bearer token".to_owned(),
        ));
    }
    if let Some(bound) = actor.claims.bound_certificate()
        && !same_certificate(bound, certificate)
    {
        return Err(GrantError::InvalidGrant(
            "actor_token: the token is bound to a client certificate this request did not \
             present (RFC 8705)"
                .to_owned(),
        ));
    }
    if actor.claims.tenant_id != tenant_id {
        return Err(GrantError::InvalidGrant(
            "actor_token: the actor belongs to another company".to_owned(),
        ));
    }
    let act = Actor {
        sub: actor.claims.sub,
        client_id: Some(actor.claims.client_id),
        act: subject_act.map(Box::new),
    };
    if act.depth() > MAX_ACTOR_DEPTH {
        return Err(GrantError::InvalidGrant(format!(
            "actor_token: delegation chains are limited to {MAX_ACTOR_DEPTH} actors"
        )));
    }
    Ok(Some(act))
}

async fn exchange_keyport_token(
    service: &Service,
    keys: &KeyRing,
    client: &AuthenticatedKey,
    request: &ExchangeRequest<'_>,
    audience: String,
) -> Result<IssuedToken, GrantError> {
    let (subject, key) =
        live_keyport_token(service, keys, request.subject_token, "subject_token").await?;
    if subject.claims.tenant_id != client.tenant_id {
        return Err(GrantError::InvalidGrant(
            "subject_token: the token belongs to another company".to_owned(),
        ));
    }
    // A DPoP-bound token is only exchanged by whoever holds its key: else a
    // stolen bound token could be laundered into a bearer token.
    if let Some(bound) = subject.claims.dpop_jkt()
        && request.dpop_jkt != Some(bound)
    {
        return Err(GrantError::InvalidGrant(
            "subject_token: the token is DPoP-bound; send a DPoP proof signed by its key"
                .to_owned(),
        ));
    }
    // Likewise a certificate-bound one (RFC 8705 §3) only over mutual TLS
    // with its certificate.
    if let Some(bound) = subject.claims.bound_certificate()
        && !same_certificate(bound, request.certificate)
    {
        return Err(GrantError::InvalidGrant(
            "subject_token: the token is bound to a client certificate; present it over \
             mutual TLS with that certificate"
                .to_owned(),
        ));
    }
    // What the token carries, within what its key may do now.
    let held = subject.scopes.intersection(&key.scopes);
    let scopes = narrowed(&held, request.scope)?;
    let settings = &service.settings.tokens;
    let remaining = subject.claims.exp - now();
    if remaining <= 0 {
        return Err(GrantError::InvalidGrant(
            "subject_token: the access token expired".to_owned(),
        ));
    }
    let ttl = (settings.default_ttl.as_secs() as i64)
        .min(remaining)
        .min(settings.max_ttl.as_secs() as i64)
        .max(1);
    let act = actor_claim(
        service,
        keys,
        subject.claims.act.clone(),
        &client.tenant_id,
        request.actor_token,
        request.certificate,
    )
    .await?;
    sign(
        keys,
        settings,
        TokenSpec {
            sub: subject.claims.sub,
            client_id: subject.claims.client_id,
            tenant_id: subject.claims.tenant_id,
            role: key.owner_role,
            scopes,
            audience,
            ttl,
            kp_src: subject.claims.kp_src,
            kp_rl: subject.claims.kp_rl,
            act,
            dpop_jkt: request.dpop_jkt.map(str::to_owned),
            certificate: request.certificate.map(str::to_owned),
        },
    )
}

/// Verifies a trusted issuer's token and finds the rule it meets.
async fn exchange_external_token(
    service: &Service,
    keys: &KeyRing,
    client: Option<&AuthenticatedKey>,
    request: &ExchangeRequest<'_>,
    audience: String,
    source_address: Option<IpAddr>,
) -> Result<IssuedToken, GrantError> {
    let (verified, rule) = matching_rule(service, client, request.subject_token).await?;
    let (role, permissions) = stored_permissions(&rule.user_role, &rule.user_permissions)?;
    let granted = ScopeSet::parse(&rule.scopes)
        .map_err(|e| crate::storage::StorageError::Corrupt(e.to_string()))?;
    let scopes = narrowed(&granted.intersection(&permissions), request.scope)?;
    let settings = &service.settings.tokens;
    // Never past the subject token's own `exp` (checked present above).
    let remaining = verified.time_claim("exp").map_or(0, |exp| exp - now());
    let ttl = (settings.default_ttl.as_secs() as i64)
        .min(settings.max_ttl.as_secs() as i64)
        .min(remaining)
        .max(1);
    let act = actor_claim(
        service,
        keys,
        None,
        &rule.tenant_id,
        request.actor_token,
        request.certificate,
    )
    .await?;
    // Limited like the company's keys without a rate of their own.
    let kp_rl = super::tenants::default_rate_limit(service, &rule.tenant_id)
        .await
        .map_err(|e| match e {
            ServiceError::Storage(err) => GrantError::Storage(err),
            other => GrantError::Storage(crate::storage::StorageError::Corrupt(other.to_string())),
        })?;
    let issued = sign(
        keys,
        settings,
        TokenSpec {
            sub: rule.user_id.clone(),
            client_id: rule.rule_id.clone(),
            tenant_id: rule.tenant_id.clone(),
            role,
            scopes,
            audience,
            ttl,
            kp_src: Vec::new(),
            kp_rl,
            act,
            dpop_jkt: request.dpop_jkt.map(str::to_owned),
            certificate: request.certificate.map(str::to_owned),
        },
    )?;
    // Who came in with what: the issuer and subject of the external token,
    // never the token itself.
    let principal = match client {
        Some(key) => key
            .clone()
            .into_principal(source_address, crate::domain::KeyProof::Secret),
        None => Principal::anonymous(source_address),
    };
    audit::record(
        &service.store,
        &principal,
        Event::new("token.exchange")
            .tenant(&rule.tenant_id)
            .target(&rule.rule_id)
            .detail(format!(
                "iss={} sub={} user={} scope=[{}]",
                preview(verified.string_claim("iss").unwrap_or("")),
                preview(verified.string_claim("sub").unwrap_or("")),
                rule.user_id,
                issued.scope
            )),
    )
    .await;
    Ok(issued)
}

/// Audiences a subject token may name: more is not a token meant for us.
const MAX_SUBJECT_AUDIENCES: usize = 16;

/// The rule a trusted issuer's token meets: the first (oldest first) of the
/// rules whose issuer's keys verify the token, whose audience the token
/// names, whose conditions hold and whose user is active. Every trusted
/// issuer of that `iss` and audience is tried, in every company (or, when a
/// key authenticated, in its company alone), so which company's JWKS URL a
/// verification happened to try first decides nothing; rules of more than
/// one company admitting the token is a refusal.
async fn matching_rule(
    service: &Service,
    client: Option<&AuthenticatedKey>,
    raw: &str,
) -> Result<(VerifiedJwt, ExchangeCandidate), GrantError> {
    let bad = |why: &str| GrantError::InvalidGrant(format!("subject_token: {why}"));
    let token = UnverifiedJwt::parse(raw).map_err(|e| bad(&e.to_string()))?;
    let issuer = token
        .unverified_claims()
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the token has no `iss`"))?
        .to_owned();
    // The audience picks the trusted issuer (one company's per audience);
    // the signature, checked below with its keys, makes the claims (and so
    // the audience) true. Read per audience, so no other company's rules
    // can crowd a company's out of the answer.
    let mut audiences: Vec<&str> = token.audiences();
    audiences.sort_unstable();
    audiences.dedup();
    if audiences.len() > MAX_SUBJECT_AUDIENCES {
        return Err(bad(&format!(
            "the token names more than {MAX_SUBJECT_AUDIENCES} audiences"
        )));
    }
    let mut candidates = Vec::new();
    for audience in audiences {
        candidates.extend(service.store.exchange_candidates(&issuer, audience).await?);
    }
    if let Some(client) = client {
        candidates.retain(|c| c.tenant_id == client.tenant_id);
    }
    if candidates.is_empty() {
        return Err(bad(
            "no issuer is trusted here for the token's `iss` and audience",
        ));
    }
    candidates
        .sort_by(|a, b| (a.rule_created_at, &a.rule_id).cmp(&(b.rule_created_at, &b.rule_id)));
    let kid = token.kid();
    let algorithm = token.algorithm();
    let mut urls: Vec<String> = candidates.iter().map(|c| c.jwks_url.clone()).collect();
    urls.sort_unstable();
    urls.dedup();
    // Each URL on its own: a slow one delays this exchange, never another's.
    let outcomes = futures_util::future::join_all(urls.iter().map(|url| async move {
        let outcome = service.issuer_keys.candidates(url, kid, algorithm).await;
        (url.as_str(), outcome)
    }))
    .await;
    let mut verified: Option<VerifiedJwt> = None;
    let mut verifying_urls: Vec<&str> = Vec::new();
    let mut fetch_failed = false;
    for (url, outcome) in outcomes {
        let keys = match outcome {
            Ok(keys) => keys,
            Err(crate::issuer_keys::IssuerKeysError::Unavailable { .. }) => {
                fetch_failed = true;
                continue;
            }
            Err(crate::issuer_keys::IssuerKeysError::UnknownKey) => continue,
        };
        // Re-parsed per key: `verify` consumes the parse.
        if let Some(jwt) = keys.iter().find_map(|key| {
            UnverifiedJwt::parse(raw)
                .ok()
                .and_then(|jwt| jwt.verify(key).ok())
        }) {
            verifying_urls.push(url);
            verified.get_or_insert(jwt);
        }
    }
    let Some(jwt) = verified else {
        return Err(if fetch_failed {
            bad("the issuer's keys could not be fetched; try again later")
        } else {
            bad("the signature does not verify with the issuer's published keys")
        });
    };
    let leeway = service.settings.tokens.leeway.as_secs() as i64;
    let now = now();
    jwt.check_times(now, leeway).map_err(|e| {
        bad(match e {
            JwtTimeError::NoExpiry => "the token has no `exp`",
            JwtTimeError::Expired => "the token expired",
            JwtTimeError::NotYetValid => "the token is not valid yet",
            JwtTimeError::IssuedInFuture => "the token was issued in the future",
        })
    })?;
    let max_lifetime = service
        .settings
        .exchange
        .max_subject_token_lifetime
        .as_secs() as i64;
    if subject_lifetime(&jwt, now) > max_lifetime + leeway {
        return Err(bad(&format!(
            "the token lives longer than {max_lifetime} seconds: ask the issuer for a \
             shorter-lived token"
        )));
    }
    let matches: Vec<ExchangeCandidate> = candidates
        .into_iter()
        .filter(|c| verifying_urls.contains(&c.jwks_url.as_str()))
        .filter(|c| jwt.has_audience(&c.audience))
        .filter(|c| c.user_status == UserStatus::Active.as_str())
        .filter(|c| {
            Conditions::from_stored(&c.conditions).is_ok_and(|conditions| {
                conditions.narrow_subjects().is_ok() && conditions.hold_for(&jwt.claims)
            })
        })
        .collect();
    let Some(first) = matches.first() else {
        return Err(bad("no rule admits this token (audience, claims or user)"));
    };
    if matches.iter().any(|c| c.tenant_id != first.tenant_id) {
        return Err(bad(
            "rules of more than one company admit this token: authenticate as a key of the company it is meant for",
        ));
    }
    let rule = first.clone();
    Ok((jwt, rule))
}

/// How long a verified external token is valid for in all: from its `iat`
/// (or from now, when it has none) to its `exp`.
fn subject_lifetime(jwt: &VerifiedJwt, now: UnixTime) -> i64 {
    let exp = jwt.time_claim("exp").unwrap_or(i64::MAX);
    let from = jwt.time_claim("iat").unwrap_or(now).min(now);
    exp.saturating_sub(from)
}
