//! Outbound webhook endpoints: register, list, change, delete, send a test
//! event, list attempts, deliver again. Every operation needs
//! `webhooks:manage`; an endpoint belongs to the user who registered it (their
//! marked key signs its deliveries). Admins manage their company's endpoints;
//! members only their own, which hear only of their own keys and records.

use serde::Serialize;
use uuid::Uuid;

use super::audit::{self, Event};
use super::authz::Reach;
use super::{Result, Service, ServiceError, authz};
use crate::domain::{
    Principal, TEST_EVENT_TYPE, UnixTime, WEBHOOKS_MANAGE, WebhookEventTypes, WebhookUrl, now,
    parse_collections,
};
use crate::storage::{
    AttemptRow, EndpointInsert, EndpointRow, EndpointSettings, EventData, NewEndpoint,
    StorageError, WebhookEvent,
};

/// An endpoint as shown to people.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EndpointSummary {
    pub id: String,
    pub tenant_id: String,
    /// The user who registered it: their marked key signs its deliveries.
    pub owner_id: String,
    pub url: String,
    pub description: Option<String>,
    pub events: Vec<String>,
    /// For `record.created`: only these collections; empty: every one.
    pub collections: Vec<String>,
    /// `enabled` or `disabled`.
    #[schema(examples("enabled", "disabled"))]
    pub status: String,
    /// Why it was disabled: by a person, a 410 answer, or failing too long.
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed.
    #[schema(value_type = Option<i64>)]
    pub failing_since: Option<UnixTime>,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
}

impl EndpointSummary {
    fn from_row(row: EndpointRow) -> Self {
        EndpointSummary {
            events: row
                .events
                .split(' ')
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect(),
            collections: row
                .collections
                .as_deref()
                .unwrap_or("")
                .split(' ')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
            id: row.id,
            tenant_id: row.tenant_id,
            owner_id: row.owner_id,
            url: row.url,
            description: row.description,
            status: row.status,
            disabled_reason: row.disabled_reason,
            failing_since: row.failing_since,
            created_at: row.created_at,
        }
    }
}

/// One attempt, as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptSummary {
    pub id: String,
    pub delivery_id: String,
    /// The `webhook-id` header: the same on every attempt of one delivery.
    pub event_id: String,
    pub event_type: String,
    #[schema(value_type = i64)]
    pub attempted_at: UnixTime,
    /// `null` when no answer came.
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    /// The first 1 KiB of the answer.
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    /// Where the delivery stands now: `pending`, `delivered` or `failed`.
    pub delivery_state: String,
}

impl From<AttemptRow> for AttemptSummary {
    fn from(row: AttemptRow) -> Self {
        AttemptSummary {
            id: row.id,
            delivery_id: row.delivery_id,
            event_id: row.event_id,
            event_type: row.event_type,
            attempted_at: row.attempted_at,
            status_code: row.status_code,
            latency_ms: row.latency_ms,
            response_excerpt: row.response_excerpt,
            error: row.error,
            delivery_state: row.delivery_state,
        }
    }
}

/// What a registration or a change asks for; `None` keeps what is there.
#[derive(Debug, Default)]
pub struct EndpointRequest<'a> {
    pub url: Option<&'a str>,
    pub description: Option<Option<&'a str>>,
    pub events: Option<&'a [String]>,
    pub collections: Option<&'a [String]>,
    pub enabled: Option<bool>,
}

fn parse_description(raw: Option<&str>) -> Result<Option<String>> {
    let Some(raw) = raw.map(str::trim).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    if raw.chars().count() > 500 || raw.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(
            "the description must be at most 500 characters, without control characters".to_owned(),
        ));
    }
    Ok(Some(raw.to_owned()))
}

async fn checked_url(service: &Service, raw: &str) -> Result<WebhookUrl> {
    let policy = service.settings.webhooks.targets;
    let url = WebhookUrl::parse(raw, &policy).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    crate::webhooks::check_target(&url, &policy)
        .await
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    Ok(url)
}

fn stored_collections(raw: &[String]) -> Result<Option<String>> {
    let parsed = parse_collections(raw).map_err(ServiceError::Invalid)?;
    Ok((!parsed.is_empty()).then(|| {
        parsed
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }))
}

/// The acting user: endpoints belong to a person, never to the operator.
fn acting_user(principal: &Principal) -> Result<&crate::domain::ActingUser> {
    principal.user.as_ref().ok_or_else(|| {
        ServiceError::Forbidden(
            "webhook endpoints belong to a user: register one with a user's credential".to_owned(),
        )
    })
}

pub async fn create_endpoint(
    service: &Service,
    principal: &Principal,
    request: EndpointRequest<'_>,
) -> Result<EndpointSummary> {
    let principal = authz::require(service, principal, WEBHOOKS_MANAGE).await?;
    let user = acting_user(&principal)?;
    let url = checked_url(
        service,
        request
            .url
            .ok_or_else(|| ServiceError::Invalid("`url` is required".to_owned()))?,
    )
    .await?;
    let events =
        WebhookEventTypes::parse(request.events.unwrap_or(&[])).map_err(ServiceError::Invalid)?;
    let collections = stored_collections(request.collections.unwrap_or(&[]))?;
    let description = parse_description(request.description.flatten())?;
    let id = Uuid::now_v7().to_string();
    let settings = &service.settings.webhooks;
    let (per_owner, per_tenant) = (
        settings.max_endpoints_per_owner,
        settings.max_endpoints_per_tenant,
    );
    let inserted = service
        .store
        .insert_endpoint_within_limits(
            NewEndpoint {
                id: &id,
                tenant_id: &user.tenant_id,
                owner_id: &user.user_id,
                url: url.as_str(),
                description: description.as_deref(),
                events: &events.to_stored(),
                collections: collections.as_deref(),
                now: now(),
            },
            per_owner,
            per_tenant,
        )
        .await?;
    match inserted {
        EndpointInsert::Inserted => {}
        EndpointInsert::OwnerLimitReached { registered } => {
            return Err(ServiceError::EndpointLimitReached(format!(
                "you hold {registered} webhook endpoints, and one user may register at most \
                 {per_owner}; delete one before registering another"
            )));
        }
        EndpointInsert::TenantLimitReached { registered } => {
            return Err(ServiceError::EndpointLimitReached(format!(
                "your company holds {registered} webhook endpoints, and it may register at \
                 most {per_tenant}; delete one before registering another"
            )));
        }
    }
    audit::record(
        &service.store,
        &principal,
        Event::new("webhook_endpoint.create")
            .tenant(&user.tenant_id)
            .target(&id)
            .detail(format!("events={}", events.to_stored())),
    )
    .await;
    visible_endpoint(service, &principal, &id).await
}

/// An endpoint the principal may manage, or why not.
async fn visible_endpoint(
    service: &Service,
    principal: &Principal,
    id: &str,
) -> Result<EndpointSummary> {
    let not_found = || ServiceError::NotFound(format!("no webhook endpoint `{}`", preview(id)));
    let found = service
        .store
        .find_endpoint(id)
        .await?
        .ok_or_else(not_found)?;
    let user = acting_user(principal)?;
    match authz::reach(user.into(), &found.tenant_id, &found.owner_id) {
        Reach::Manages => Ok(EndpointSummary::from_row(found)),
        Reach::OtherCompany => Err(not_found()),
        Reach::Colleagues => Err(ServiceError::Forbidden(
            "members may manage only their own webhook endpoints".to_owned(),
        )),
    }
}

fn preview(raw: &str) -> String {
    raw.chars().take(64).filter(|c| !c.is_control()).collect()
}

pub async fn list_endpoints(
    service: &Service,
    principal: &Principal,
) -> Result<Vec<EndpointSummary>> {
    let principal = authz::require(service, principal, WEBHOOKS_MANAGE).await?;
    let user = acting_user(&principal)?;
    let owner = authz::visible_owner(user.into());
    Ok(service
        .store
        .list_endpoints(&user.tenant_id, owner)
        .await?
        .into_iter()
        .map(EndpointSummary::from_row)
        .collect())
}

pub async fn get_endpoint(
    service: &Service,
    principal: &Principal,
    id: &str,
) -> Result<EndpointSummary> {
    let principal = authz::require(service, principal, WEBHOOKS_MANAGE).await?;
    visible_endpoint(service, &principal, id).await
}

/// Changes what `request` names. Enabling an endpoint clears its failure
/// record; disabling it by hand says so in `disabled_reason`.
pub async fn update_endpoint(
    service: &Service,
    principal: &Principal,
    id: &str,
    request: EndpointRequest<'_>,
) -> Result<EndpointSummary> {
    let principal = authz::require(service, principal, WEBHOOKS_MANAGE).await?;
    let found = visible_endpoint(service, &principal, id).await?;
    let url = match request.url {
        Some(raw) => checked_url(service, raw).await?.as_str().to_owned(),
        None => found.url.clone(),
    };
    let events = match request.events {
        Some(events) => WebhookEventTypes::parse(events).map_err(ServiceError::Invalid)?,
        None => WebhookEventTypes::parse(&found.events).map_err(|e| {
            ServiceError::Storage(StorageError::Corrupt(format!("endpoint {id}: {e}")))
        })?,
    };
    let collections = match request.collections {
        Some(collections) => stored_collections(collections)?,
        None => (!found.collections.is_empty()).then(|| found.collections.join(" ")),
    };
    let description = match request.description {
        Some(description) => parse_description(description)?,
        None => found.description.clone(),
    };
    let (status, reason) = match request.enabled {
        Some(true) => ("enabled", None),
        Some(false) => ("disabled", Some("disabled by a person".to_owned())),
        None => (found.status.as_str(), found.disabled_reason.clone()),
    };
    service
        .store
        .update_endpoint(
            &found.id,
            EndpointSettings {
                url: &url,
                description: description.as_deref(),
                events: &events.to_stored(),
                collections: collections.as_deref(),
                status,
                disabled_reason: reason.as_deref(),
            },
            now(),
        )
        .await?;
    audit::record(
        &service.store,
        &principal,
        Event::new("webhook_endpoint.update")
            .tenant(&found.tenant_id)
            .target(&found.id)
            .detail(format!("status={status} events={}", events.to_stored())),
    )
    .await;
    visible_endpoint(service, &principal, &found.id).await
}

pub async fn delete_endpoint(service: &Service, principal: &Principal, id: &str) -> Result<()> {
    let principal = authz::require(service, principal, WEBHOOKS_MANAGE).await?;
    let found = visible_endpoint(service, &principal, id).await?;
    service.store.delete_endpoint(&found.id).await?;
    audit::record(
        &service.store,
        &principal,
        Event::new("webhook_endpoint.delete")
            .tenant(&found.tenant_id)
            .target(&found.id),
    )
    .await;
    Ok(())
}

/// Queues a `webhook.test` event for this endpoint alone; returns its id.
pub async fn send_test_event(service: &Service, principal: &Principal, id: &str) -> Result<String> {
    let principal = authz::require(service, principal, WEBHOOKS_MANAGE).await?;
    let found = visible_endpoint(service, &principal, id).await?;
    let event_id = service
        .store
        .queue_event_for(
            &found.id,
            &WebhookEvent {
                tenant_id: &found.tenant_id,
                subject_owner_id: &found.owner_id,
                event_type: TEST_EVENT_TYPE,
                trace: None,
                collection: None,
                data: EventData::Json(serde_json::json!({ "endpoint_id": found.id })),
            },
            now(),
        )
        .await?;
    Ok(event_id)
}

pub async fn list_attempts(
    service: &Service,
    principal: &Principal,
    id: &str,
    limit: u32,
) -> Result<Vec<AttemptSummary>> {
    let principal = authz::require(service, principal, WEBHOOKS_MANAGE).await?;
    let found = visible_endpoint(service, &principal, id).await?;
    Ok(service
        .store
        .list_attempts(&found.id, limit.clamp(1, 200))
        .await?
        .into_iter()
        .map(AttemptSummary::from)
        .collect())
}

/// Queues one delivery again, now, with the same `webhook-id`.
pub async fn redeliver(
    service: &Service,
    principal: &Principal,
    endpoint_id: &str,
    delivery_id: &str,
) -> Result<()> {
    let principal = authz::require(service, principal, WEBHOOKS_MANAGE).await?;
    let found = visible_endpoint(service, &principal, endpoint_id).await?;
    let belongs = service.store.delivery_endpoint(delivery_id).await? == Some(found.id.clone());
    if !belongs || !service.store.redeliver(delivery_id, now()).await? {
        return Err(ServiceError::NotFound(format!(
            "no delivery `{}` to this endpoint",
            preview(delivery_id)
        )));
    }
    audit::record(
        &service.store,
        &principal,
        Event::new("webhook_delivery.redeliver")
            .tenant(&found.tenant_id)
            .target(delivery_id),
    )
    .await;
    Ok(())
}
