//! Who did what to which key or user, when, from where and with which
//! credential. Every change to a key or user, every sign-in attempt, lock and
//! unlock lands here; secrets never do (events carry ids, client IDs, session
//! handles and emails only).

use uuid::Uuid;

use crate::domain::{Principal, now};
use crate::storage::Store;
/// What an audit query asks for and what it answers: handed up to routes/
/// and the console as they are.
pub use crate::storage::{AuditFilter, AuditRow};
use crate::telemetry::request;

/// One event about to be stored.
pub struct Event<'a> {
    pub action: &'a str,
    pub tenant_id: Option<&'a str>,
    pub target: Option<&'a str>,
    pub detail: Option<String>,
}

impl<'a> Event<'a> {
    pub fn new(action: &'a str) -> Self {
        Event {
            action,
            tenant_id: None,
            target: None,
            detail: None,
        }
    }
    pub fn tenant(mut self, tenant_id: &'a str) -> Self {
        self.tenant_id = Some(tenant_id);
        self
    }
    pub fn target(mut self, target: &'a str) -> Self {
        self.target = Some(target);
        self
    }
    pub fn detail(mut self, detail: String) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// Stores one audit event. A failure to write it is logged, not raised: the
/// change it describes has already happened.
pub async fn record(store: &Store, principal: &Principal, event: Event<'_>) {
    let row = AuditRow {
        id: Uuid::now_v7().to_string(),
        tenant_id: event.tenant_id.or(principal.tenant_id()).map(str::to_owned),
        actor: principal.actor_label().to_owned(),
        action: event.action.to_owned(),
        target: event.target.map(str::to_owned),
        source_address: principal.source_address.map(|ip| ip.to_string()),
        detail: event.detail,
        credential_kind: Some(principal.credential.kind().to_owned()),
        credential_id: principal.credential.id().map(str::to_owned),
        request_id: request::current_id().map(|id| id.to_string()),
        created_at: now(),
    };
    if let Err(err) = store.insert_audit(&row).await {
        log::error!(
            "audit event {} on {} could not be stored: {}",
            event.action,
            event.target.unwrap_or("-"),
            crate::telemetry::error_chain(&err)
        );
    }
}

/// Stores an event Keyport did on its own (the delivery worker disabling a
/// failing endpoint): actor `keyport`, credential kind `system`.
pub async fn record_system(store: &Store, event: Event<'_>) {
    let row = AuditRow {
        id: Uuid::now_v7().to_string(),
        tenant_id: event.tenant_id.map(str::to_owned),
        actor: "keyport".to_owned(),
        action: event.action.to_owned(),
        target: event.target.map(str::to_owned),
        source_address: None,
        detail: event.detail,
        credential_kind: Some("system".to_owned()),
        credential_id: None,
        request_id: request::current_id().map(|id| id.to_string()),
        created_at: now(),
    };
    if let Err(err) = store.insert_audit(&row).await {
        log::error!(
            "audit event {} could not be stored: {}",
            event.action,
            crate::telemetry::error_chain(&err)
        );
    }
}
