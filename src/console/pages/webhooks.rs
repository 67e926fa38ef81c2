//! Webhook endpoints (holders of `webhooks:manage`; admins see the
//! company's, members their own): the list and its add form, one endpoint's
//! attempts, and what their buttons do. Every rule is the service's
//! (`service::webhooks`), the SSRF guard included.

use super::*;
use crate::service::webhooks::{self as webhook_service, EndpointRequest};

/// How many of an endpoint's latest attempts its page lists.
const ATTEMPTS_SHOWN: u32 = 50;

fn form_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Which key signs `owner_id`'s deliveries, if the visitor may list keys.
async fn signing_key(state: &State, visitor: &Visitor, owner_id: &str) -> SigningKey {
    match key_service::list_keys(&state.service, &visitor.principal, KeyListing::All).await {
        Ok(keys) => keys
            .into_iter()
            .find(|k| k.owner_id == owner_id && k.signs_webhooks)
            .map_or(SigningKey::None, |k| SigningKey::Marked {
                name: k.name,
                client_id: k.client_id,
            }),
        Err(_) => SigningKey::Unknown,
    }
}

async fn webhooks_page(
    state: &State,
    visitor: &Visitor,
    flash: Option<String>,
    error: Option<PageError>,
    form: EndpointForm,
) -> Result<WebhooksPage, ServiceError> {
    let listed = webhook_service::list_endpoints(&state.service, &visitor.principal).await?;
    let at = now();
    let own_id = visitor.principal.user_id().unwrap_or_default().to_owned();
    Ok(WebhooksPage {
        nav: nav(state, visitor, "webhooks").await,
        flash,
        error,
        endpoints: listed
            .into_iter()
            .map(|e| EndpointView::of(e, at))
            .collect(),
        choices: form.choices(),
        form,
        form_id: form_id(),
        signing: signing_key(state, visitor, &own_id).await,
        signing_subject: "Deliveries to your endpoints",
        signing_mine: true,
        admin: is_admin(visitor),
    })
}

/// The list page, with `status` (an error's, or 200).
async fn show_list(
    state: &State,
    visitor: &Visitor,
    status: StatusCode,
    error: Option<PageError>,
    form: EndpointForm,
) -> HttpResponse {
    match webhooks_page(state, visitor, None, error, form).await {
        Ok(template) => page(status, &template),
        Err(err) => forbidden(&err),
    }
}

pub async fn webhooks(req: HttpRequest, state: State) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    match webhooks_page(
        &state,
        &visitor,
        read_flash(&req),
        None,
        EndpointForm::default(),
    )
    .await
    {
        Ok(template) => shown_once(page(StatusCode::OK, &template), &req, &state),
        Err(err) => forbidden(&err),
    }
}

async fn endpoint_page(
    state: &State,
    visitor: &Visitor,
    id: &str,
    flash: Option<String>,
    error: Option<PageError>,
) -> Result<WebhookPage, ServiceError> {
    let principal = &visitor.principal;
    let endpoint = webhook_service::get_endpoint(&state.service, principal, id).await?;
    let attempts =
        webhook_service::list_attempts(&state.service, principal, &endpoint.id, ATTEMPTS_SHOWN)
            .await?;
    let at = now();
    let signing = signing_key(state, visitor, &endpoint.owner_id).await;
    let signing_mine = principal.user_id() == Some(endpoint.owner_id.as_str());
    Ok(WebhookPage {
        nav: nav(state, visitor, "webhooks").await,
        flash,
        error,
        endpoint: EndpointView::of(endpoint, at),
        attempts: AttemptView::list(attempts, at),
        form_id: form_id(),
        signing,
        signing_subject: "Deliveries to this endpoint",
        signing_mine,
    })
}

/// One endpoint: its settings and its latest attempts.
pub async fn webhook(req: HttpRequest, state: State, path: web::Path<String>) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    match endpoint_page(&state, &visitor, &path, read_flash(&req), None).await {
        Ok(template) => shown_once(page(StatusCode::OK, &template), &req, &state),
        Err(err) => forbidden(&err),
    }
}

fn already_submitted() -> PageError {
    PageError::new(
        "already_submitted",
        "this form was already submitted: nothing was changed (reload the page to send it again)",
    )
}

/// "a, b c" → ["a", "b", "c"]: the form takes collections comma-separated.
fn split_collections(raw: &str) -> Vec<String> {
    raw.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

pub async fn add_endpoint(
    req: HttpRequest,
    state: State,
    console: Console,
    body: web::Bytes,
) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let events: Vec<String> = form.all("event").into_iter().map(str::to_owned).collect();
    let collections = split_collections(form.get("collections").unwrap_or(""));
    let mut typed = EndpointForm {
        url: form.get("url").unwrap_or("").to_owned(),
        events: events.clone(),
        collections: form.get("collections").unwrap_or("").to_owned(),
        description: form.get("description").unwrap_or("").to_owned(),
        ..EndpointForm::default()
    };
    let Some(url) = form.get("url") else {
        typed.url_error =
            Some("give the URL deliveries go to, e.g. https://erp.example.com/keyport".to_owned());
        return show_list(
            &state,
            &visitor,
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            typed,
        )
        .await;
    };
    let form_id = form.get("form_id").unwrap_or("");
    if !console.first_submission(form_id) {
        typed.error = Some(already_submitted());
        return show_list(&state, &visitor, StatusCode::CONFLICT, None, typed).await;
    }
    let created = webhook_service::create_endpoint(
        &state.service,
        &visitor.principal,
        EndpointRequest {
            url: Some(url),
            description: Some(form.get("description")),
            events: Some(&events),
            collections: Some(&collections),
            enabled: None,
        },
    )
    .await;
    match created {
        Ok(endpoint) => redirect_with(
            "/console/webhooks",
            &format!("Endpoint {} added.", endpoint.url),
            &state,
        ),
        Err(err) => {
            // Nothing was added: the corrected form may be sent again.
            console.release_submission(form_id);
            typed.refused(PageError::from(&err));
            show_list(&state, &visitor, service_status(&err), None, typed).await
        }
    }
}

enum EndpointAction {
    Test,
    Enable,
    Disable,
    Delete,
    Redeliver(String),
}

/// A button of a row or of the endpoint's page, then back where it was
/// pressed (the endpoint's page, or the list).
async fn endpoint_action(
    req: HttpRequest,
    state: State,
    console: Console,
    body: web::Bytes,
    id: String,
    action: EndpointAction,
) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let on_endpoint_page = form.get("return_to") == Some("endpoint");
    let form_id = form.get("form_id").unwrap_or("");
    if !console.first_submission(form_id) {
        return refuse_action(
            &state,
            &visitor,
            &id,
            on_endpoint_page,
            already_submitted(),
            StatusCode::CONFLICT,
        )
        .await;
    }
    let service = &state.service;
    let principal = &visitor.principal;
    let change = |enabled| EndpointRequest {
        enabled: Some(enabled),
        ..EndpointRequest::default()
    };
    let done = match &action {
        EndpointAction::Test => webhook_service::send_test_event(service, principal, &id)
            .await
            .map(|event_id| test_notice(&event_id)),
        EndpointAction::Enable => {
            webhook_service::update_endpoint(service, principal, &id, change(true))
                .await
                .map(|e| format!("{} is enabled.", e.url))
        }
        EndpointAction::Disable => {
            webhook_service::update_endpoint(service, principal, &id, change(false))
                .await
                .map(|e| {
                    format!(
                        "{} is disabled: nothing is sent to it until it is enabled.",
                        e.url
                    )
                })
        }
        EndpointAction::Delete => delete_and_say(service, principal, &id).await,
        EndpointAction::Redeliver(delivery_id) => {
            webhook_service::redeliver(service, principal, &id, delivery_id)
                .await
                .map(|()| "Queued again, with the same webhook-id.".to_owned())
        }
    };
    match done {
        Ok(notice) => {
            let back = match action {
                EndpointAction::Delete => "/console/webhooks".to_owned(),
                EndpointAction::Redeliver(_) => endpoint_path(&id),
                _ if on_endpoint_page => endpoint_path(&id),
                _ => "/console/webhooks".to_owned(),
            };
            redirect_with(&back, &notice, &state)
        }
        Err(err) => {
            console.release_submission(form_id);
            let status = service_status(&err);
            refuse_action(
                &state,
                &visitor,
                &id,
                on_endpoint_page,
                PageError::from(&err),
                status,
            )
            .await
        }
    }
}

/// Deletes the endpoint, and says which it was.
async fn delete_and_say(
    service: &crate::service::Service,
    principal: &crate::domain::Principal,
    id: &str,
) -> Result<String, ServiceError> {
    let found = webhook_service::get_endpoint(service, principal, id).await?;
    webhook_service::delete_endpoint(service, principal, &found.id).await?;
    Ok(format!(
        "{} is deleted, with its pending deliveries.",
        found.url
    ))
}

fn test_notice(event_id: &str) -> String {
    format!(
        "Test event queued (webhook-id {event_id}); its attempts are listed on the endpoint's page."
    )
}

/// The endpoint's page. Only called once the service found the endpoint,
/// so `id` is a stored id (a UUID), safe in a `Location` header as it is.
fn endpoint_path(id: &str) -> String {
    format!("/console/webhooks/{id}")
}

/// The page the button was on, showing why nothing changed.
async fn refuse_action(
    state: &State,
    visitor: &Visitor,
    id: &str,
    on_endpoint_page: bool,
    error: PageError,
    status: StatusCode,
) -> HttpResponse {
    if on_endpoint_page {
        match endpoint_page(state, visitor, id, None, Some(error)).await {
            Ok(template) => return page(status, &template),
            Err(err) => return forbidden(&err),
        }
    }
    show_list(state, visitor, status, Some(error), EndpointForm::default()).await
}

pub async fn test_endpoint(
    req: HttpRequest,
    state: State,
    console: Console,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    endpoint_action(
        req,
        state,
        console,
        body,
        path.into_inner(),
        EndpointAction::Test,
    )
    .await
}

pub async fn enable_endpoint(
    req: HttpRequest,
    state: State,
    console: Console,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    endpoint_action(
        req,
        state,
        console,
        body,
        path.into_inner(),
        EndpointAction::Enable,
    )
    .await
}

pub async fn disable_endpoint(
    req: HttpRequest,
    state: State,
    console: Console,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    endpoint_action(
        req,
        state,
        console,
        body,
        path.into_inner(),
        EndpointAction::Disable,
    )
    .await
}

pub async fn delete_endpoint(
    req: HttpRequest,
    state: State,
    console: Console,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    endpoint_action(
        req,
        state,
        console,
        body,
        path.into_inner(),
        EndpointAction::Delete,
    )
    .await
}

pub async fn redeliver(
    req: HttpRequest,
    state: State,
    console: Console,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (id, delivery_id) = path.into_inner();
    endpoint_action(
        req,
        state,
        console,
        body,
        id,
        EndpointAction::Redeliver(delivery_id),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_are_split_on_commas_and_spaces() {
        assert_eq!(
            split_collections(" orders, invoices ,,returns  shipments"),
            ["orders", "invoices", "returns", "shipments"]
        );
        assert!(split_collections(" , ").is_empty());
    }
}
