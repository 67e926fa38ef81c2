//! `keyport issuer …`: token exchange (RFC 8693), the issuers a tenant
//! trusts and the rules that map their tokens to users.

use clap::Subcommand;
use serde_json::{Value, json};

use super::CliError;
use super::output::Output;
use crate::domain::Principal;
use crate::service::{Service, ServiceError};

#[derive(Debug, Subcommand)]
pub enum IssuerCommand {
    /// Trust an issuer's tokens (e.g. a CI platform's) for token exchange.
    Add {
        /// The tenant's id or name.
        #[arg(long)]
        tenant: String,
        /// The `iss` its tokens carry, e.g. https://token.actions.githubusercontent.com
        #[arg(long)]
        issuer: String,
        /// Where it publishes its public keys (JWKS).
        #[arg(long)]
        jwks_url: String,
        /// The audience its tokens must name to be meant for this tenant.
        #[arg(long)]
        audience: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// The tenant's trusted issuers and their rules.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// One trusted issuer and its rules.
    Show {
        /// The tenant's id or name.
        #[arg(long)]
        tenant: String,
        /// The trusted issuer's id.
        id: String,
    },
    /// Stop trusting an issuer (its rules go with it).
    Remove {
        #[arg(long)]
        tenant: String,
        /// The trusted issuer's id.
        id: String,
    },
    /// Add a rule: tokens whose claims meet every --claim act as --user.
    AddRule {
        #[arg(long)]
        tenant: String,
        /// The trusted issuer's id.
        issuer_id: String,
        /// `NAME=VALUE` (the claim equals VALUE) or `NAME~PATTERN` (`*` is
        /// any run of characters); repeat for more (all must hold).
        #[arg(long = "claim", required = true, value_name = "CONDITION")]
        claims: Vec<String>,
        /// The user the exchanged tokens act as: id or email.
        #[arg(long)]
        user: String,
        /// Space-separated scopes, within the user's permissions.
        #[arg(long)]
        scopes: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a rule; tokens it granted fail every re-check from now on.
    RemoveRule {
        #[arg(long)]
        tenant: String,
        issuer_id: String,
        rule_id: String,
    },
}

/// Runs one `issuer` command as the operator.
pub(super) async fn run(
    command: IssuerCommand,
    service: &Service,
    operator: &Principal,
    out: &Output,
) -> Result<(), CliError> {
    use crate::service::exchange::{self, NewExchangeRule, NewTrustedIssuer};
    match command {
        IssuerCommand::Add {
            tenant,
            issuer,
            jwks_url,
            audience,
            description,
        } => {
            let added = exchange::add_issuer(
                service,
                operator,
                Some(&tenant),
                NewTrustedIssuer {
                    issuer: &issuer,
                    jwks_url: &jwks_url,
                    audience: &audience,
                    description: description.as_deref(),
                },
            )
            .await?;
            out.print(
                serde_json::to_value(&added).unwrap_or(Value::Null),
                &format!(
                    "trusting {} (audience {}) as {}; add rules with `keyport issuer add-rule --tenant {tenant} {}`",
                    added.issuer, added.audience, added.id, added.id
                ),
            );
        }
        IssuerCommand::Show { tenant, id } => {
            let issuers = exchange::list_issuers(service, operator, Some(&tenant)).await?;
            let Some(found) = issuers.into_iter().find(|i| i.id == id) else {
                return Err(ServiceError::NotFound(format!(
                    "no trusted issuer `{}` in {tenant}",
                    id.chars().take(64).collect::<String>()
                ))
                .into());
            };
            let human = issuer_lines(&found);
            out.print(serde_json::to_value(&found).unwrap_or(Value::Null), &human);
        }
        IssuerCommand::List { tenant } => {
            let issuers = exchange::list_issuers(service, operator, Some(&tenant)).await?;
            let human = issuers
                .iter()
                .map(issuer_lines)
                .collect::<Vec<_>>()
                .join("\n");
            out.print(json!({ "issuers": issuers }), &human);
        }
        IssuerCommand::Remove { tenant, id } => {
            exchange::remove_issuer(service, operator, Some(&tenant), &id).await?;
            out.print(
                json!({ "removed": id }),
                &format!("no longer trusting {id}"),
            );
        }
        IssuerCommand::AddRule {
            tenant,
            issuer_id,
            claims,
            user,
            scopes,
            description,
        } => {
            let conditions = Value::Array(
                claims
                    .iter()
                    .map(|c| {
                        crate::domain::exchange::condition_from_text(c)
                            .map_err(|e| ServiceError::Invalid(format!("--claim {e}")))
                    })
                    .collect::<Result<_, _>>()?,
            );
            let rule = exchange::add_rule(
                service,
                operator,
                Some(&tenant),
                &issuer_id,
                NewExchangeRule {
                    conditions: &conditions,
                    user: &user,
                    scopes: &scopes,
                    description: description.as_deref(),
                },
            )
            .await?;
            out.print(
                serde_json::to_value(&rule).unwrap_or(Value::Null),
                &format!(
                    "added rule {} → user {} [{}]",
                    rule.id, rule.user_id, rule.scopes
                ),
            );
        }
        IssuerCommand::RemoveRule {
            tenant,
            issuer_id,
            rule_id,
        } => {
            exchange::remove_rule(service, operator, Some(&tenant), &issuer_id, &rule_id).await?;
            out.print(
                json!({ "removed": rule_id }),
                &format!("removed rule {rule_id}"),
            );
        }
    }
    Ok(())
}

/// A trusted issuer and its rules, for people.
fn issuer_lines(i: &crate::service::exchange::TrustedIssuer) -> String {
    let rules: Vec<String> = i
        .rules
        .iter()
        .map(|r| {
            format!(
                "    rule {} → user {} [{}] {}",
                r.id, r.user_id, r.scopes, r.conditions
            )
        })
        .collect();
    format!(
        "{} {} (audience {}, keys {})\n{}",
        i.id,
        i.issuer,
        i.audience,
        i.jwks_url,
        rules.join("\n")
    )
}
