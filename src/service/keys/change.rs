//! Changing a key's name, description, labels, allow-list or rate.

use super::{
    KeyControls, KeyStatus, KeySummary, parse_certificates, parse_description, parse_labels,
    parse_sources, parse_tls_subject, rate_columns, refuse_above_default, visible_key,
};
use crate::domain::{
    KEYS_MANAGE, KeyName, Principal, RegisteredCertificates, SourceAllowList, now,
};
use crate::service::audit::{self, Event};
use crate::service::{Result, Service, ServiceError, authz};
use crate::storage::{KeyDetails, StorageError};

/// What [`update_key`] changes; `None` leaves that part as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyChange<'a> {
    pub name: Option<&'a str>,
    pub controls: KeyControls<'a>,
}

/// Changes a key's name, description, labels, allow-list or rate. A new
/// allow-list applies to the key's next authentication, and to its tokens
/// at Keyport's management endpoints at once; tokens issued before keep
/// the ranges they carry until they expire. A new rate applies to the key
/// presented directly at once, and to tokens issued from now on (a token
/// carries the rate it was issued with, in `kp_rl`). A member may not set
/// a rate above the company's default. A revoked key is not changed.
pub async fn update_key(
    service: &Service,
    principal: &Principal,
    key: &str,
    change: KeyChange<'_>,
) -> Result<KeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let found = visible_key(service, &principal, key).await?;
    if change.name.is_none() && change.controls.is_empty() {
        return Err(ServiceError::Invalid(
            "nothing to change: send name, description, labels, allowed_sources, rate_limit, \
             require_dpop, tls_client_auth or tls_client_certificates"
                .to_owned(),
        ));
    }
    if found.status == KeyStatus::Revoked {
        return Err(ServiceError::Conflict(format!(
            "key {} is revoked and cannot be changed",
            found.client_id
        )));
    }
    let name = match change.name {
        Some(raw) => KeyName::parse(raw)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?
            .as_str()
            .to_owned(),
        None => found.name.clone(),
    };
    let description = match change.controls.description {
        Some(raw) => parse_description(raw)?.map(|d| d.as_str().to_owned()),
        None => found.description.clone(),
    };
    let labels = match change.controls.labels {
        Some(pairs) => parse_labels(pairs)?,
        None => found.labels.clone(),
    };
    let allowed_sources = match change.controls.allowed_sources {
        Some(ranges) => parse_sources(ranges)?,
        None => SourceAllowList::parse(&found.allowed_sources).map_err(StorageError::Corrupt)?,
    };
    let rate_limit = match change.controls.rate_limit {
        Some(rate) => {
            let company_default =
                crate::service::tenants::default_rate_limit(service, &found.tenant_id).await?;
            refuse_above_default(&principal, rate, company_default)?;
            rate
        }
        None => found.own_rate_limit(),
    };
    let tls_subject = match change.controls.tls_client_auth {
        Some(Some(raw)) => Some(parse_tls_subject(raw)?.to_stored()),
        Some(None) => None,
        None => found.tls_client_auth.clone(),
    };
    let certificates = match change.controls.tls_client_certificates {
        Some(entries) => parse_certificates(entries)?,
        None => RegisteredCertificates::parse(&found.tls_client_certificates)
            .map_err(|e| StorageError::Corrupt(e.to_string()))?,
    };
    if !found.secret_enabled
        && found.public_key_count == 0
        && tls_subject.is_none()
        && certificates.is_empty()
    {
        return Err(ServiceError::Invalid(format!(
            "key {} has no secret and no public keys: removing its certificates would leave \
             it no way to authenticate",
            found.client_id
        )));
    }
    let stored_certificates = certificates.to_stored();
    let stored_labels = labels.to_stored();
    let stored_sources = allowed_sources.to_stored();
    let updated = service
        .store
        .update_key_details(
            &found.id,
            KeyDetails {
                name: &name,
                description: description.as_deref(),
                labels: stored_labels.as_deref(),
                allowed_sources: stored_sources.as_deref(),
                rate_limit: rate_limit.map(rate_columns),
                require_dpop: change.controls.require_dpop.unwrap_or(found.require_dpop),
                tls_client_auth: tls_subject.as_deref(),
                tls_client_certificates: stored_certificates.as_deref(),
            },
            now(),
        )
        .await;
    service.credentials.forget_key(&found.client_id);
    if !updated? {
        return Err(ServiceError::NotFound(format!(
            "key {} was deleted",
            found.client_id
        )));
    }
    let mut changed: Vec<String> = Vec::new();
    if change.name.is_some() {
        changed.push("name".to_owned());
    }
    if change.controls.description.is_some() {
        changed.push("description".to_owned());
    }
    if change.controls.labels.is_some() {
        changed.push("labels".to_owned());
    }
    if change.controls.allowed_sources.is_some() {
        changed.push(format!(
            "allowed_sources=[{}]",
            allowed_sources.to_strings().join(" ")
        ));
    }
    match change.controls.rate_limit {
        Some(Some(rate)) => changed.push(format!("rate_limit=[{rate}]")),
        Some(None) => changed.push("rate_limit=none".to_owned()),
        None => {}
    }
    if let Some(required) = change.controls.require_dpop {
        changed.push(format!("require_dpop={required}"));
    }
    if change.controls.tls_client_auth.is_some() {
        changed.push(format!(
            "tls_client_auth={}",
            tls_subject.as_deref().unwrap_or("none")
        ));
    }
    if change.controls.tls_client_certificates.is_some() {
        let thumbprints: Vec<String> = certificates.iter().map(|t| t.to_string()).collect();
        changed.push(format!(
            "tls_client_certificates=[{}]",
            thumbprints.join(" ")
        ));
    }
    audit::record(
        &service.store,
        &principal,
        Event::new("key.update")
            .tenant(&found.tenant_id)
            .target(&found.client_id)
            .detail(format!("changed {}", changed.join(", "))),
    )
    .await;
    visible_key(service, &principal, &found.id).await
}
