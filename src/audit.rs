//! Who did what to which key or user, when, and from where. Every change to a
//! key, every sign-in attempt, lock and unlock lands here; secrets never do
//! (events carry ids, client IDs and emails only).

use uuid::Uuid;

use crate::domain::{Role, ScopeSet, now};
use crate::storage::{AuditRow, Store};

/// Who is acting: a signed-in user, a key acting as its owner, or the CLI
/// (an operator on the server, allowed everything).
#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: ActorKind,
    pub source_address: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ActorKind {
    Operator,
    User {
        user_id: String,
        tenant_id: String,
        role: Role,
        /// What this actor may do now: the user's permissions, or the
        /// scopes of the token or key it presented.
        scopes: ScopeSet,
    },
}

impl Actor {
    pub fn operator() -> Self {
        Actor {
            kind: ActorKind::Operator,
            source_address: None,
        }
    }

    /// A user (or a key or token acting as one) holding `scopes` right now.
    pub fn user(
        user_id: &str,
        tenant_id: &str,
        role: Role,
        scopes: ScopeSet,
        source_address: Option<String>,
    ) -> Self {
        Actor {
            kind: ActorKind::User {
                user_id: user_id.to_owned(),
                tenant_id: tenant_id.to_owned(),
                role,
                scopes,
            },
            source_address,
        }
    }

    /// The label stored in audit rows: a user id, or `cli`.
    pub fn label(&self) -> &str {
        match &self.kind {
            ActorKind::Operator => "cli",
            ActorKind::User { user_id, .. } => user_id,
        }
    }

    pub fn tenant_id(&self) -> Option<&str> {
        match &self.kind {
            ActorKind::Operator => None,
            ActorKind::User { tenant_id, .. } => Some(tenant_id),
        }
    }
}

/// Stores one audit event. A failure to write it is logged, not raised: the
/// change it describes has already happened.
pub async fn record(
    store: &Store,
    actor: &Actor,
    tenant_id: Option<&str>,
    action: &str,
    target: Option<&str>,
    detail: Option<String>,
) {
    let event = AuditRow {
        id: Uuid::now_v7().to_string(),
        tenant_id: tenant_id.or(actor.tenant_id()).map(str::to_owned),
        actor: actor.label().to_owned(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        source_address: actor.source_address.clone(),
        detail,
        created_at: now(),
    };
    if let Err(err) = store.insert_audit(&event).await {
        log::error!(
            "audit event {action} on {} could not be stored: {}",
            target.unwrap_or("-"),
            crate::error::error_chain(&err)
        );
    }
}
