//! `keyport tenant …`: create, list, set a tenant's policies.

use clap::Subcommand;
use serde_json::{Value, json};

use super::CliError;
use super::output::{Output, human_time_now};
use super::parse::{parse_rate, rate_with_burst};
use crate::domain::{Principal, RateLimit};
use crate::service::{Service, tenants};

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints its id.
    Create {
        /// The tenant's name, unique across Keyport.
        name: String,
    },
    /// List every tenant (id, name, created).
    List,
    /// Set the tenant's policies (any of them; what is not named stays).
    #[command(group = clap::ArgGroup::new("policy").required(true).multiple(true)
        .args(["api_only_users", "default_rate", "no_default_rate"]))]
    SetPolicy {
        /// The tenant's id or name.
        tenant: String,
        /// When on, a user holding an active key can no longer sign in with a password.
        #[arg(long, action = clap::ArgAction::Set, value_name = "true|false")]
        api_only_users: Option<bool>,
        /// The rate of keys without their own, for reports and webhooks
        /// (also the most a member may give a key), e.g. 600/min, 100/10s,
        /// 5000/h.
        #[arg(long, value_parser = parse_rate, value_name = "RATE", allow_hyphen_values = true,
              conflicts_with = "no_default_rate")]
        default_rate: Option<RateLimit>,
        /// Requests allowed at once under --default-rate (default: its request count).
        #[arg(
            long,
            requires = "default_rate",
            value_name = "N",
            allow_negative_numbers = true
        )]
        default_burst: Option<i64>,
        /// Remove the default rate: keys without their own are unlimited.
        #[arg(long)]
        no_default_rate: bool,
    },
}

/// Runs one `tenant` command as the operator.
pub(super) async fn run(
    command: TenantCommand,
    service: &Service,
    operator: &Principal,
    out: &Output,
) -> Result<(), CliError> {
    match command {
        TenantCommand::Create { name } => {
            let tenant = tenants::create_tenant(service, operator, &name).await?;
            out.print(
                serde_json::to_value(&tenant).unwrap_or(Value::Null),
                &format!("created tenant {} ({})", tenant.name, tenant.id),
            );
        }
        TenantCommand::List => {
            let listed = tenants::list_tenants(service, operator).await?;
            let human = if listed.is_empty() {
                "no tenants".to_owned()
            } else {
                listed
                    .iter()
                    .map(|t| {
                        format!(
                            "{}  {}  created {}",
                            t.id,
                            t.name,
                            human_time_now(t.created_at)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            out.print(json!({ "tenants": listed }), &human);
        }
        TenantCommand::SetPolicy {
            tenant,
            api_only_users,
            default_rate,
            default_burst,
            no_default_rate,
        } => {
            let default_rate_limit = if no_default_rate {
                Some(None)
            } else {
                rate_with_burst(default_rate, default_burst)?.map(Some)
            };
            let policy = tenants::set_policy(
                service,
                operator,
                Some(&tenant),
                tenants::PolicyChange {
                    api_only_users,
                    default_rate_limit,
                },
            )
            .await?;
            let mut doc = serde_json::to_value(policy).unwrap_or(Value::Null);
            doc["tenant"] = tenant.clone().into();
            out.print(
                doc,
                &format!(
                    "policy of {tenant}: api-only users {}, default rate {}",
                    if policy.api_only_users { "on" } else { "off" },
                    policy
                        .default_rate_limit
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "none (unlimited)".to_owned())
                ),
            );
        }
    }
    Ok(())
}
