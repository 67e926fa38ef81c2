//! What the Token exchange page shows: the trusted issuers, their rules,
//! and the forms to add both.

use askama::Template;

use super::{Nav, PageError, When};
use crate::domain::UnixTime;
use crate::service::exchange::TrustedIssuer;

pub struct RuleView {
    pub id: String,
    pub conditions: Vec<String>,
    pub user: String,
    pub scopes: String,
    pub description: String,
}

pub struct IssuerView {
    pub id: String,
    pub issuer: String,
    pub jwks_url: String,
    pub audience: String,
    pub description: String,
    pub created: When,
    pub rules: Vec<RuleView>,
}

impl IssuerView {
    /// `emails` names users by id, so rules read as people.
    pub fn of(issuer: TrustedIssuer, emails: &[(String, String)], now: UnixTime) -> Self {
        let email_of = |id: &str| {
            emails
                .iter()
                .find(|(user_id, _)| user_id == id)
                .map(|(_, email)| email.clone())
                .unwrap_or_else(|| id.to_owned())
        };
        IssuerView {
            created: When::at(issuer.created_at, now),
            rules: issuer
                .rules
                .into_iter()
                .map(|rule| RuleView {
                    conditions: rule
                        .conditions
                        .as_array()
                        .map(|all| all.iter().map(condition_text).collect())
                        .unwrap_or_default(),
                    user: email_of(&rule.user_id),
                    id: rule.id,
                    scopes: rule.scopes,
                    description: rule.description,
                })
                .collect(),
            id: issuer.id,
            issuer: issuer.issuer,
            jwks_url: issuer.jwks_url,
            audience: issuer.audience,
            description: issuer.description,
        }
    }
}

/// `sub = value` or `sub ~ pattern`, as typed in the form.
fn condition_text(condition: &serde_json::Value) -> String {
    let claim = condition["claim"].as_str().unwrap_or("");
    match (condition["equals"].as_str(), condition["matches"].as_str()) {
        (Some(value), _) => format!("{claim}={value}"),
        (None, Some(pattern)) => format!("{claim}~{pattern}"),
        _ => claim.to_owned(),
    }
}

/// A user a rule may act as.
pub struct UserChoice {
    pub id: String,
    pub email: String,
}

#[derive(Template)]
#[template(path = "exchange.html")]
pub struct ExchangePage {
    pub nav: Nav,
    pub flash: Option<String>,
    pub error: Option<PageError>,
    pub issuers: Vec<IssuerView>,
    pub users: Vec<UserChoice>,
    pub grantable: &'static [&'static str],
}
