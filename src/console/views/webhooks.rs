//! What the Webhooks pages show: the endpoints, the add form as it was
//! typed, and one endpoint's attempts.

use askama::Template;

use super::{Nav, PageError, When};
use crate::domain::{UnixTime, WEBHOOK_EVENT_TYPES};
use crate::service::webhooks::{AttemptSummary, EndpointSummary};

/// What each event means, for the add form's checkboxes.
fn event_hint(event: &str) -> &'static str {
    match event {
        "record.created" => "records were pushed (optionally only to some collections)",
        "key.created" => "a key was created or rolled",
        "key.revoked" => "a key was revoked",
        "key.deleted" => "a key was deleted",
        "key.expiring" => "a key is about to expire (once per expiry)",
        "user.locked" => "failed sign-ins locked an account",
        _ => "",
    }
}

pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// `record.created` only for these; empty: every collection.
    pub collections: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub status: String,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<When>,
    pub created: When,
}

impl EndpointView {
    pub fn of(endpoint: EndpointSummary, now: UnixTime) -> Self {
        EndpointView {
            enabled: endpoint.status == "enabled",
            failing_since: endpoint.failing_since.map(|at| When::at(at, now)),
            created: When::at(endpoint.created_at, now),
            description: endpoint.description.unwrap_or_default(),
            id: endpoint.id,
            url: endpoint.url,
            events: endpoint.events,
            collections: endpoint.collections,
            status: endpoint.status,
            disabled_reason: endpoint.disabled_reason,
        }
    }
}

/// One event type on the add form.
pub struct EventChoice {
    pub name: &'static str,
    pub hint: &'static str,
    pub checked: bool,
}

/// The add form as the person left it, and what the service refused in it,
/// next to the field at fault.
#[derive(Default)]
pub struct EndpointForm {
    pub url: String,
    pub events: Vec<String>,
    pub collections: String,
    pub description: String,
    /// A refusal that is no one field's (too many endpoints, a double submit).
    pub error: Option<PageError>,
    pub url_error: Option<String>,
    pub events_error: Option<String>,
    pub collections_error: Option<String>,
    pub description_error: Option<String>,
}

impl EndpointForm {
    pub fn has_errors(&self) -> bool {
        self.error.is_some()
            || self.url_error.is_some()
            || self.events_error.is_some()
            || self.collections_error.is_some()
            || self.description_error.is_some()
    }

    pub fn choices(&self) -> Vec<EventChoice> {
        WEBHOOK_EVENT_TYPES
            .iter()
            .map(|name| EventChoice {
                name,
                hint: event_hint(name),
                checked: self.events.iter().any(|e| e == name),
            })
            .collect()
    }

    /// Puts a service refusal next to the field its message is about.
    pub fn refused(&mut self, error: PageError) {
        let message = error.message.clone();
        let field = if message.contains("URL") {
            &mut self.url_error
        } else if message.contains("event") {
            &mut self.events_error
        } else if message.contains("collection") {
            &mut self.collections_error
        } else if message.contains("description") {
            &mut self.description_error
        } else {
            self.error = Some(error);
            return;
        };
        *field = Some(message);
    }
}

/// Whose key signs this person's deliveries, as far as they may see keys.
pub enum SigningKey {
    /// Their key that holds the mark.
    Marked { name: String, client_id: String },
    /// They hold no key with the mark: deliveries are not sent.
    None,
    /// They may not list keys (no `keys:manage`).
    Unknown,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
pub struct WebhooksPage {
    pub nav: Nav,
    pub flash: Option<String>,
    pub error: Option<PageError>,
    pub endpoints: Vec<EndpointView>,
    pub form: EndpointForm,
    pub choices: Vec<EventChoice>,
    pub form_id: String,
    pub signing: SigningKey,
    /// Whose deliveries `signing` is about, as the note says it.
    pub signing_subject: &'static str,
    /// The visitor is the owner whose key signs.
    pub signing_mine: bool,
    pub admin: bool,
}

pub struct AttemptView {
    pub at: When,
    pub event_type: String,
    /// The `webhook-id` header.
    pub event_id: String,
    pub delivery_id: String,
    pub status_code: Option<i64>,
    pub ok: bool,
    pub error: Option<String>,
    pub latency_ms: i64,
    /// At most 1 KiB of the answer (askama escapes it).
    pub excerpt: Option<String>,
    pub delivery_state: String,
    /// The newest attempt of its delivery carries "Deliver again".
    pub latest_of_delivery: bool,
}

impl AttemptView {
    /// Newest first, as the service lists them.
    pub fn list(attempts: Vec<AttemptSummary>, now: UnixTime) -> Vec<AttemptView> {
        let mut seen = std::collections::HashSet::new();
        attempts
            .into_iter()
            .map(|attempt| AttemptView {
                latest_of_delivery: seen.insert(attempt.delivery_id.clone()),
                at: When::at(attempt.attempted_at, now),
                ok: attempt.status_code.is_some_and(|s| (200..300).contains(&s)),
                status_code: attempt.status_code,
                error: attempt.error,
                latency_ms: attempt.latency_ms,
                excerpt: attempt.response_excerpt.filter(|e| !e.is_empty()),
                delivery_state: attempt.delivery_state,
                event_type: attempt.event_type,
                event_id: attempt.event_id,
                delivery_id: attempt.delivery_id,
            })
            .collect()
    }
}

#[derive(Template)]
#[template(path = "webhook.html")]
pub struct WebhookPage {
    pub nav: Nav,
    pub flash: Option<String>,
    pub error: Option<PageError>,
    pub endpoint: EndpointView,
    pub attempts: Vec<AttemptView>,
    pub form_id: String,
    pub signing: SigningKey,
    pub signing_subject: &'static str,
    pub signing_mine: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_land_next_to_the_field_they_are_about() {
        let mut form = EndpointForm::default();
        form.refused(PageError::new(
            "invalid_input",
            "the URL's host 127.0.0.1 is a loopback address; …",
        ));
        form.refused(PageError::new("invalid_input", "name at least one event"));
        form.refused(PageError::new(
            "invalid_input",
            "`a b` is not a collection name: use …",
        ));
        form.refused(PageError::new(
            "invalid_input",
            "the description must be at most 500 characters",
        ));
        form.refused(PageError::new(
            "webhook_endpoint_limit_reached",
            "you hold 5 webhook endpoints, and one user may register at most 5; \
             delete one before registering another",
        ));
        assert!(form.url_error.as_deref().unwrap().contains("loopback"));
        assert_eq!(
            form.events_error.as_deref(),
            Some("name at least one event")
        );
        assert!(form.collections_error.is_some());
        assert!(form.description_error.is_some());
        assert_eq!(
            form.error.map(|e| e.code).as_deref(),
            Some("webhook_endpoint_limit_reached")
        );
    }

    #[test]
    fn only_the_newest_attempt_of_a_delivery_offers_to_deliver_again() {
        let attempt = |id: &str, delivery: &str, status: Option<i64>| AttemptSummary {
            id: id.to_owned(),
            delivery_id: delivery.to_owned(),
            event_id: format!("msg_{delivery}"),
            event_type: "webhook.test".to_owned(),
            attempted_at: 1_800_000_000,
            status_code: status,
            latency_ms: 3,
            response_excerpt: Some(String::new()),
            error: None,
            delivery_state: "delivered".to_owned(),
        };
        let views = AttemptView::list(
            vec![
                attempt("3", "b", Some(200)),
                attempt("2", "a", Some(204)),
                attempt("1", "a", Some(500)),
            ],
            1_800_000_000,
        );
        let offered: Vec<bool> = views.iter().map(|v| v.latest_of_delivery).collect();
        assert_eq!(offered, [true, true, false]);
        assert!(views[1].ok && !views[2].ok);
        assert!(views[0].excerpt.is_none(), "an empty answer shows as none");
    }
}
