//! Token exchange trust (admins): the issuers the company trusts and the
//! rules that map their tokens to users. The same service functions as
//! `/api/v1/trusted-issuers`, so the same checks and audit rows.

use super::*;
use crate::console::views::{ExchangePage, IssuerView, UserChoice};
use crate::domain::exchange::condition_from_text;
use crate::service::exchange::{self, NewExchangeRule, NewTrustedIssuer};

async fn exchange_page(
    state: &State,
    visitor: &Visitor,
    flash: Option<String>,
    error: Option<PageError>,
) -> Result<ExchangePage, ServiceError> {
    let at = now();
    let issuers = exchange::list_issuers(&state.service, &visitor.principal, None).await?;
    let users = user_service::list_users(&state.service, &visitor.principal, None).await?;
    let emails: Vec<(String, String)> = users
        .iter()
        .map(|u| (u.id.clone(), u.email.clone()))
        .collect();
    Ok(ExchangePage {
        nav: nav(state, visitor, "exchange").await,
        flash,
        error,
        issuers: issuers
            .into_iter()
            .map(|issuer| IssuerView::of(issuer, &emails, at))
            .collect(),
        users: users
            .into_iter()
            .filter(|u| u.status == "active")
            .map(|u| UserChoice {
                id: u.id,
                email: u.email,
            })
            .collect(),
        grantable: &crate::domain::GRANTABLE_SCOPES,
    })
}

pub async fn exchange_trust(req: HttpRequest, state: State) -> HttpResponse {
    let visitor = match signed_in(&req, &state).await {
        Ok(visitor) => visitor,
        Err(response) => return response,
    };
    match exchange_page(&state, &visitor, read_flash(&req), None).await {
        Ok(template) => shown_once(page(StatusCode::OK, &template), &req, &state),
        Err(err) => forbidden(&err),
    }
}

/// The page again with `err` shown, after a refused change.
async fn exchange_error(state: &State, visitor: &Visitor, err: ServiceError) -> HttpResponse {
    match exchange_page(state, visitor, None, Some(PageError::from(&err))).await {
        Ok(template) => page(service_status(&err), &template),
        Err(err) => forbidden(&err),
    }
}

const PAGE_PATH: &str = "/console/exchange";

pub async fn add_issuer(req: HttpRequest, state: State, body: web::Bytes) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let added = exchange::add_issuer(
        &state.service,
        &visitor.principal,
        None,
        NewTrustedIssuer {
            issuer: form.get("issuer").unwrap_or(""),
            jwks_url: form.get("jwks_url").unwrap_or(""),
            audience: form.get("audience").unwrap_or(""),
            description: form.get("description"),
        },
    )
    .await;
    match added {
        Ok(issuer) => redirect_with(
            PAGE_PATH,
            &format!(
                "{} is trusted for audience {}. Add a rule to say which user its tokens act as.",
                issuer.issuer, issuer.audience
            ),
            &state,
        ),
        Err(err) => exchange_error(&state, &visitor, err).await,
    }
}

pub async fn delete_issuer(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (visitor, _) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    match exchange::remove_issuer(&state.service, &visitor.principal, None, &path).await {
        Ok(()) => redirect_with(
            PAGE_PATH,
            "The issuer is no longer trusted; its rules and the tokens they granted stopped.",
            &state,
        ),
        Err(err) => exchange_error(&state, &visitor, err).await,
    }
}

pub async fn add_rule(
    req: HttpRequest,
    state: State,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (visitor, form) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let conditions: Result<Vec<serde_json::Value>, String> = form
        .get("conditions")
        .unwrap_or("")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(condition_from_text)
        .collect();
    let conditions = match conditions {
        Ok(conditions) => serde_json::Value::Array(conditions),
        Err(message) => {
            return exchange_error(
                &state,
                &visitor,
                ServiceError::Invalid(format!("conditions: {message}")),
            )
            .await;
        }
    };
    let scopes = form.all("scope").join(" ");
    let added = exchange::add_rule(
        &state.service,
        &visitor.principal,
        None,
        &path,
        NewExchangeRule {
            conditions: &conditions,
            user: form.get("user").unwrap_or(""),
            scopes: &scopes,
            description: form.get("description"),
        },
    )
    .await;
    match added {
        Ok(rule) => redirect_with(
            PAGE_PATH,
            &format!(
                "Rule {} added: matching tokens get [{}].",
                rule.id, rule.scopes
            ),
            &state,
        ),
        Err(err) => exchange_error(&state, &visitor, err).await,
    }
}

pub async fn delete_rule(
    req: HttpRequest,
    state: State,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (visitor, _) = match checked_change(&req, &state, &body).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let (issuer_id, rule_id) = path.into_inner();
    match exchange::remove_rule(
        &state.service,
        &visitor.principal,
        None,
        &issuer_id,
        &rule_id,
    )
    .await
    {
        Ok(()) => redirect_with(
            PAGE_PATH,
            "The rule is deleted; tokens it granted stopped.",
            &state,
        ),
        Err(err) => exchange_error(&state, &visitor, err).await,
    }
}
