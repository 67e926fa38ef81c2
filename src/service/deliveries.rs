//! The delivery worker every instance runs: it leases due deliveries from the
//! outbox, signs each with the endpoint owner's webhook-signing key(s)
//! (Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`),
//! sends it, and decides what the answer means: 2xx delivered; 410 disables
//! the endpoint; anything else is retried with exponential backoff and
//! jitter until `webhook_retry_for_seconds`, keeping the same `webhook-id`.
//! An endpoint failing for `webhook_disable_after_seconds` is disabled
//! (audited). Delivery is at least once: a worker killed after sending and
//! before recording leaves the lease to expire, and the delivery is sent again.
//!
//! Just before sending, the worker looks at the endpoint's owner as they
//! stand now: a delivery is dropped (failed, with an attempt row that says
//! why, and one audit row per endpoint and reason per batch) when the owner
//! is disabled, no longer holds `webhooks:manage`, or may no longer see what
//! the event is about. Events are also never queued for such endpoints; the
//! check here covers what was queued before the owner changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rand::Rng;

use super::audit::{self, Event};
use super::{Result, Service};
use crate::domain::{Unheard, WebhookSigningKey, now};
use crate::storage::{AttemptOutcome, DueDelivery, EndpointHealth, NewAttempt};
use crate::telemetry::Metrics;
use crate::telemetry::traces::{self, Attribute};
use crate::webhooks::{SendResult, Sender};

/// The longest wait between two attempts of one delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How many polls apart the worker looks for keys about to expire.
const EXPIRY_SCAN_EVERY_POLLS: u32 = 10;

/// One attempt made, waiting to be recorded with its batch.
struct Attempted {
    delivery: DueDelivery,
    at: i64,
    result: SendResult,
    outcome: AttemptOutcome,
    health: EndpointHealth<'static>,
}

pub struct Dispatcher {
    service: Service,
    sender: Sender,
    metrics: Arc<Metrics>,
}

/// One delivery attempt's span: a child of the request that queued the
/// event, when traces were on for it.
fn delivery_span(delivery: &DueDelivery) -> traces::Leaf {
    traces::Leaf::start_detached(
        "webhook.deliver",
        traces::Kind::Client,
        delivery.traceparent.as_deref(),
        || {
            // The host only: a receiver's path or query may hold a secret.
            let host = url::Url::parse(&delivery.url)
                .ok()
                .and_then(|url| url.host_str().map(str::to_owned))
                .unwrap_or_default();
            vec![
                Attribute::new("http.request.method", "POST"),
                Attribute::new("server.address", host),
                Attribute::new("keyport.webhook.endpoint_id", delivery.endpoint_id.clone()),
                Attribute::new("keyport.webhook.event_id", delivery.event_id.clone()),
                Attribute::new("keyport.webhook.event_type", delivery.event_type.clone()),
                Attribute::new("keyport.webhook.attempt", delivery.attempts + 1),
            ]
        },
    )
}

impl Dispatcher {
    pub fn new(service: Service, metrics: Arc<Metrics>) -> std::result::Result<Self, String> {
        let sender = Sender::new(&service.settings.webhooks).map_err(|e| e.to_string())?;
        Ok(Dispatcher {
            service,
            sender,
            metrics,
        })
    }

    /// Runs until `alive` is gone (the server stopped).
    pub fn spawn(self, alive: Weak<()>) {
        let dispatcher = Arc::new(self);
        tokio::spawn(async move {
            let settings = &dispatcher.service.settings.webhooks;
            let mut ticker = tokio::time::interval(settings.poll_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_expiry_scan: Option<tokio::time::Instant> = None;
            loop {
                ticker.tick().await;
                if alive.upgrade().is_none() {
                    break;
                }
                let scan_every = settings.poll_interval * EXPIRY_SCAN_EVERY_POLLS;
                if last_expiry_scan.is_none_or(|at| at.elapsed() >= scan_every) {
                    last_expiry_scan = Some(tokio::time::Instant::now());
                    dispatcher.announce_expiring_keys().await;
                }
                // Drain what is due before waiting for the next tick.
                while let Ok(attempted) = Arc::clone(&dispatcher).run_once().await {
                    if attempted == 0 || alive.upgrade().is_none() {
                        break;
                    }
                }
                dispatcher.observe_queue().await;
            }
        });
    }

    async fn announce_expiring_keys(&self) {
        let window = self.service.settings.webhooks.key_expiring_within.as_secs() as i64;
        if let Err(err) = self
            .service
            .store
            .announce_expiring_keys(now(), window)
            .await
        {
            log::warn!(
                "cannot announce expiring keys: {}",
                crate::telemetry::error_chain(&err)
            );
        }
    }

    async fn observe_queue(&self) {
        if let Ok(stats) = self.service.store.webhook_queue_stats().await {
            self.metrics.webhook_queue_depth.set(stats.pending);
            self.metrics
                .webhook_oldest_pending_seconds
                .set(stats.oldest_created_at.map_or(0, |at| (now() - at).max(0)));
        }
    }

    /// Leases what is due (at most `webhook_concurrency`) and attempts it all
    /// at once; returns how many it attempted.
    pub async fn run_once(self: Arc<Self>) -> Result<usize> {
        let settings = &self.service.settings.webhooks;
        let at = now();
        // Long enough for an attempt to finish, with room for clocks that
        // differ a little between instances; a crashed worker's lease runs
        // out after it and any instance takes the delivery again.
        let lease = (settings.connect_timeout + settings.timeout * 2).as_secs() as i64 + 5;
        let due = self
            .service
            .store
            .claim_due_deliveries(at, at + lease, settings.concurrency as u32)
            .await
            .inspect_err(|err| {
                log::warn!(
                    "cannot claim webhook deliveries: {}",
                    crate::telemetry::error_chain(err)
                )
            })?;
        let count = due.len();
        // Whether each owner may still hear what was queued for them.
        let (due, dropped): (Vec<_>, Vec<_>) = due
            .into_iter()
            .map(|delivery| {
                let unheard = delivery
                    .owner()
                    .refuses(delivery.subject_owner_id.as_deref());
                (delivery, unheard)
            })
            .partition(|(_, unheard)| unheard.is_none());
        let due: Vec<DueDelivery> = due.into_iter().map(|(delivery, _)| delivery).collect();
        let dropped: Vec<(DueDelivery, Unheard)> = dropped
            .into_iter()
            .filter_map(|(delivery, unheard)| unheard.map(|u| (delivery, u)))
            .collect();
        // One read (and one unsealing) of an owner's signing keys per batch:
        // a backlog's deliveries mostly share a few owners.
        let overlap = settings.signature_overlap.as_secs() as i64;
        let mut keys_of: HashMap<String, Arc<Vec<WebhookSigningKey>>> = HashMap::new();
        for delivery in &due {
            if !keys_of.contains_key(&delivery.owner_id) {
                let keys = self
                    .service
                    .store
                    .webhook_signing_keys_of(&delivery.owner_id, at - overlap, at)
                    .await?;
                keys_of.insert(delivery.owner_id.clone(), Arc::new(keys));
            }
        }
        let mut attempts = tokio::task::JoinSet::new();
        for delivery in due {
            let dispatcher = Arc::clone(&self);
            let keys = keys_of.get(&delivery.owner_id).cloned().unwrap_or_default();
            attempts.spawn(async move { dispatcher.attempt(delivery, &keys).await });
        }
        let mut finished: Vec<Attempted> = dropped
            .iter()
            .map(|(delivery, unheard)| drop_delivery(delivery.clone(), *unheard, at))
            .collect();
        while let Some(joined) = attempts.join_next().await {
            match joined {
                Ok(Ok(Some(done))) => finished.push(done),
                Ok(Ok(None)) => {}
                Ok(Err(err)) => log::warn!(
                    "a webhook delivery was not attempted: {}",
                    crate::telemetry::error_chain(&err)
                ),
                Err(err) => log::warn!("a webhook delivery task failed: {err}"),
            }
        }
        // Audited before the drop is recorded: a worker that dies between
        // the two audits the drop again later, rather than never.
        self.audit_drops(&dropped).await;
        self.record(&finished).await;
        Ok(count)
    }

    /// One audit row (and log line) per endpoint and reason for the
    /// deliveries this batch dropped: the endpoint, the reason and how many.
    async fn audit_drops(&self, dropped: &[(DueDelivery, Unheard)]) {
        let mut per_endpoint: BTreeMap<(&str, &str, Unheard), usize> = BTreeMap::new();
        for (delivery, unheard) in dropped {
            *per_endpoint
                .entry((&delivery.tenant_id, &delivery.endpoint_id, *unheard))
                .or_default() += 1;
        }
        for ((tenant_id, endpoint_id, unheard), count) in per_endpoint {
            let detail = format!(
                "dropped {count} pending deliver{}: {}",
                if count == 1 { "y" } else { "ies" },
                unheard.reason()
            );
            log::info!("webhook endpoint {endpoint_id}: {detail}");
            audit::record_system(
                &self.service.store,
                Event::new("webhook_delivery.drop")
                    .tenant(tenant_id)
                    .target(endpoint_id)
                    .detail(detail),
            )
            .await;
        }
    }

    /// Records a batch's attempts in one transaction (so one disk flush per
    /// batch, not per delivery), then counts them and audits disablings.
    /// When the write fails, the leases run out and the deliveries are sent
    /// again: at least once.
    async fn record(&self, finished: &[Attempted]) {
        let store = &self.service.store;
        let rows: Vec<_> = finished
            .iter()
            .map(|done| {
                (
                    NewAttempt {
                        delivery_id: &done.delivery.id,
                        endpoint_id: &done.delivery.endpoint_id,
                        attempted_at: done.at,
                        status_code: done.result.status,
                        latency_ms: done.result.latency_ms,
                        response_excerpt: done.result.excerpt.as_deref(),
                        error: done.result.error.as_deref(),
                    },
                    done.outcome,
                    done.health,
                )
            })
            .collect();
        let disabled = match store.record_attempts(&rows).await {
            Ok(disabled) => disabled,
            Err(err) => {
                log::warn!(
                    "{} webhook attempts were not recorded (they will be sent again): {}",
                    rows.len(),
                    crate::telemetry::error_chain(&err)
                );
                return;
            }
        };
        for (done, disabled) in finished.iter().zip(disabled) {
            let label = match (done.outcome, done.health) {
                (_, EndpointHealth::Unchanged) => "dropped",
                (AttemptOutcome::Delivered, _) => "delivered",
                (AttemptOutcome::RetryAt(_), _) => "retry",
                (AttemptOutcome::GiveUp, _) => "failed",
            };
            self.metrics
                .webhook_deliveries
                .with_label_values(&[label])
                .inc();
            if let (true, EndpointHealth::Disable(reason)) = (disabled, done.health) {
                log::warn!(
                    "webhook endpoint {} disabled: {reason}",
                    done.delivery.endpoint_id
                );
                audit::record_system(
                    store,
                    Event::new("webhook_endpoint.disable")
                        .tenant(&done.delivery.tenant_id)
                        .target(&done.delivery.endpoint_id)
                        .detail(reason.to_owned()),
                )
                .await;
            }
        }
    }

    /// Sends one delivery; `None` when it was not attempted (its endpoint
    /// was disabled meanwhile).
    async fn attempt(
        &self,
        delivery: DueDelivery,
        keys: &[WebhookSigningKey],
    ) -> Result<Option<Attempted>> {
        let store = &self.service.store;
        let settings = &self.service.settings.webhooks;
        let at = now();
        if delivery.endpoint_status != "enabled" {
            // Disabled meanwhile: the delivery waits for it to be enabled
            // again, within its retry time.
            let next = at + settings.retry_initial.as_secs() as i64 * 60;
            store.release_delivery(&delivery.id, next).await?;
            return Ok(None);
        }
        let result = if keys.is_empty() {
            SendResult {
                status: None,
                latency_ms: 0,
                excerpt: None,
                error: Some(
                    "not sent: the endpoint's owner has no key marked to sign webhooks \
                     (mark one of their keys created since webhook signing)"
                        .to_owned(),
                ),
            }
        } else {
            let signatures: Vec<String> = keys
                .iter()
                .map(|key| key.sign(&delivery.event_id, at, delivery.payload.as_bytes()))
                .collect();
            let mut span = delivery_span(&delivery);
            let mut headers = vec![
                ("webhook-id", delivery.event_id.clone()),
                ("webhook-timestamp", at.to_string()),
                ("webhook-signature", signatures.join(" ")),
            ];
            if let Some(traceparent) = span.traceparent() {
                headers.push(("traceparent", traceparent));
            }
            let result = self
                .sender
                .send(&delivery.url, &headers, delivery.payload.clone())
                .await;
            match result.status {
                Some(status) => {
                    span.set(|| Attribute::new("http.response.status_code", i64::from(status)));
                    if !(200..300).contains(&status) {
                        span.fail("the endpoint refused the delivery");
                    }
                }
                None => span.fail("the delivery was not answered"),
            }
            result
        };
        let (outcome, health) = self.judge(&delivery, &result, at);
        Ok(Some(Attempted {
            delivery,
            at,
            result,
            outcome,
            health,
        }))
    }

    /// What an attempt's result means for its delivery and its endpoint.
    fn judge(
        &self,
        delivery: &DueDelivery,
        result: &SendResult,
        at: i64,
    ) -> (AttemptOutcome, EndpointHealth<'static>) {
        let settings = &self.service.settings.webhooks;
        match result.status {
            Some(status) if (200..300).contains(&status) => {
                return (AttemptOutcome::Delivered, EndpointHealth::Succeeded);
            }
            Some(410) => {
                return (
                    AttemptOutcome::GiveUp,
                    EndpointHealth::Disable("the receiver answered 410 Gone"),
                );
            }
            _ => {}
        }
        let failing_for = delivery.failing_since.map_or(0, |since| at - since);
        let health = if failing_for >= settings.disable_after.as_secs() as i64 {
            EndpointHealth::Disable(
                "every attempt failed for longer than webhook_disable_after_seconds",
            )
        } else {
            EndpointHealth::Failing
        };
        let retried_for = at - delivery.created_at;
        if retried_for >= settings.retry_for.as_secs() as i64 {
            return (AttemptOutcome::GiveUp, health);
        }
        let delay = backoff(settings.retry_initial, delivery.attempts);
        (AttemptOutcome::RetryAt(at + delay.as_secs() as i64), health)
    }
}

/// A delivery its endpoint's owner may no longer hear: recorded as failed,
/// with an attempt that sent nothing and says why, leaving the endpoint's
/// health as it was.
fn drop_delivery(delivery: DueDelivery, unheard: Unheard, at: i64) -> Attempted {
    Attempted {
        delivery,
        at,
        result: SendResult {
            status: None,
            latency_ms: 0,
            excerpt: None,
            error: Some(format!("not sent, dropped: {}", unheard.reason())),
        },
        outcome: AttemptOutcome::GiveUp,
        health: EndpointHealth::Unchanged,
    }
}

/// `initial` doubled per attempt so far, at most [`MAX_BACKOFF`], with "equal
/// jitter": half fixed, half random, so retries of many deliveries spread.
fn backoff(initial: Duration, attempts_so_far: i64) -> Duration {
    let exponent = attempts_so_far.clamp(0, 20) as u32;
    let full = initial
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(MAX_BACKOFF);
    let half = full.as_secs().max(1) / 2;
    Duration::from_secs(half + rand::rng().random_range(0..=half.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stops_growing_at_an_hour() {
        let initial = Duration::from_secs(10);
        for attempts in 0..6 {
            let full = 10u64 << attempts;
            let delay = backoff(initial, attempts).as_secs();
            assert!(
                (full / 2..=full).contains(&delay),
                "attempt {attempts}: {delay} s"
            );
        }
        for _ in 0..50 {
            let delay = backoff(initial, 30).as_secs();
            assert!((1800..=3600).contains(&delay), "{delay}");
        }
    }
}
