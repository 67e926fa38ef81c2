//! What a caller may set on a key besides its name, at creation and
//! after: description, labels, allow-list and rate, parsed, and the
//! ceiling a member's rate is held to.

use crate::domain::{
    KeyDescription, KeyLabels, Principal, RateLimit, RegisteredCertificates, Role, SourceAllowList,
    TlsClientSubject,
};
use crate::service::{Result, ServiceError};
use crate::storage::RateColumns;

/// A rate as the storage layer's three columns.
pub(super) fn rate_columns(limit: RateLimit) -> RateColumns {
    let (requests, per_seconds, burst) = limit.to_stored();
    RateColumns {
        requests,
        per_seconds,
        burst,
    }
}

/// A key's description, labels, allow-list and rate, as a caller sent
/// them; each `None` leaves it as it is (at creation: without one).
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyControls<'a> {
    /// Free text; empty clears it.
    pub description: Option<&'a str>,
    /// Name/value pairs; the whole set (empty clears it).
    pub labels: Option<&'a [(String, String)]>,
    /// CIDR ranges; the whole list (empty: anywhere).
    pub allowed_sources: Option<&'a [String]>,
    /// The key's own rate for reports and webhooks; `Some(None)` removes
    /// it (the company's default applies, if any).
    pub rate_limit: Option<Option<RateLimit>>,
    /// Whether token requests must carry a DPoP proof (RFC 9449).
    pub require_dpop: Option<bool>,
    /// RFC 8705 `tls_client_auth`: the subject DN or SAN its certificate
    /// must show (`TlsClientSubject`'s form); `Some(None)` removes it.
    pub tls_client_auth: Option<Option<&'a str>>,
    /// RFC 8705 `self_signed_tls_client_auth`: the whole list of registered
    /// certificates (PEM or `x5t#S256`); empty removes them.
    pub tls_client_certificates: Option<&'a [String]>,
}

impl KeyControls<'_> {
    pub(super) fn is_empty(&self) -> bool {
        self.require_dpop.is_none()
            && self.tls_client_auth.is_none()
            && self.tls_client_certificates.is_none()
            && self.description.is_none()
            && self.labels.is_none()
            && self.allowed_sources.is_none()
            && self.rate_limit.is_none()
    }
}

/// Members may give a key at most their company's default rate: the
/// default is what the admins chose for everyone, and only they go beyond
/// it. Without a default, a rate only ever restricts a key.
pub(super) fn refuse_above_default(
    principal: &Principal,
    rate: Option<RateLimit>,
    company_default: Option<RateLimit>,
) -> Result<()> {
    let is_member = principal
        .user
        .as_ref()
        .is_some_and(|user| user.role != Role::Admin);
    match (rate, company_default) {
        (Some(rate), Some(ceiling)) if is_member && rate.exceeds(ceiling) => {
            Err(ServiceError::Forbidden(format!(
                "a member may give a key at most the company's default rate ({ceiling}); \
                 {rate} is above it: ask an admin"
            )))
        }
        _ => Ok(()),
    }
}

/// A description as sent: empty or blank means none.
pub(super) fn parse_description(raw: &str) -> Result<Option<KeyDescription>> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    KeyDescription::parse(raw)
        .map(Some)
        .map_err(|e| ServiceError::Invalid(e.to_string()))
}

pub(super) fn parse_labels(pairs: &[(String, String)]) -> Result<KeyLabels> {
    KeyLabels::parse(pairs).map_err(|e| ServiceError::Invalid(e.to_string()))
}

/// A `tls_client_auth` subject as sent.
pub(super) fn parse_tls_subject(raw: &str) -> Result<TlsClientSubject> {
    TlsClientSubject::parse(raw).map_err(|e| ServiceError::Invalid(e.to_string()))
}

/// Registered certificates as sent (PEM or thumbprints).
pub(super) fn parse_certificates(entries: &[String]) -> Result<RegisteredCertificates> {
    RegisteredCertificates::parse(entries)
        .map_err(|e| ServiceError::Invalid(format!("tls_client_certificates: {e}")))
}

pub(super) fn parse_sources(ranges: &[String]) -> Result<SourceAllowList> {
    SourceAllowList::parse(ranges)
        .map_err(|e| ServiceError::Invalid(format!("allowed_sources: {e}")))
}
