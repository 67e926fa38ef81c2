//! `keyport user …`: create, list, enable/disable, passwords, permissions.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::CliError;
use super::output::{Output, human_time_now};
use crate::domain::{Principal, UserStatus};
use crate::service::{Service, sessions, users};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user in a tenant.
    Create(UserCreateArgs),
    /// List a tenant's users (email, role, status, permissions).
    List {
        /// The tenant's id or name.
        #[arg(long)]
        tenant: String,
    },
    /// Disable a user: their keys stop getting tokens at once.
    Disable {
        /// The user's email.
        email: String,
    },
    /// Enable a disabled user.
    Enable {
        /// The user's email.
        email: String,
    },
    /// Set a user's password, read from standard input (one line).
    SetPassword {
        /// The user's email.
        email: String,
    },
    /// Lift a sign-in lock after repeated failed sign-ins.
    Unlock {
        /// The user's email.
        email: String,
    },
    /// Replace a user's permissions (comma-separated scopes).
    SetPermissions {
        /// The user's email.
        email: String,
        /// e.g. reports:read,webhooks:write,keys:manage
        permissions: String,
    },
}

#[derive(Debug, Args)]
pub struct UserCreateArgs {
    /// The tenant's id or name.
    #[arg(long)]
    pub tenant: String,
    /// The user's email, unique across Keyport.
    #[arg(long)]
    pub email: String,
    /// admin (sees the whole tenant) or member (sees their own records).
    #[arg(long, value_parser = ["admin", "member"])]
    pub role: String,
    /// Comma-separated scopes, e.g. reports:read,webhooks:write,keys:manage.
    #[arg(long, default_value = "")]
    pub permissions: String,
}

/// Runs one `user` command as the operator.
pub(super) async fn run(
    command: UserCommand,
    service: &Service,
    operator: &Principal,
    out: &Output,
) -> Result<(), CliError> {
    match command {
        UserCommand::List { tenant } => {
            let listed = users::list_users(service, operator, Some(&tenant)).await?;
            let human = if listed.is_empty() {
                format!("no users in {tenant}")
            } else {
                listed
                    .iter()
                    .map(|u| {
                        format!(
                            "{}  {:<28} {:<6} {:<8} permissions={}{}",
                            u.id,
                            u.email,
                            u.role,
                            u.status,
                            if u.permissions.is_empty() {
                                "none".to_owned()
                            } else {
                                u.permissions.join(",")
                            },
                            if u.locked { " locked" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            out.print(json!({ "users": listed }), &human);
        }
        UserCommand::Create(args) => {
            let created = users::create_user(
                service,
                operator,
                users::NewUserRequest {
                    tenant: Some(&args.tenant),
                    email: &args.email,
                    role: &args.role,
                    permissions: &args.permissions,
                },
            )
            .await?;
            let user = &created.user;
            let mut doc = serde_json::to_value(user).unwrap_or(Value::Null);
            doc["set_password_token"] = created.set_password_token.expose().into();
            doc["set_password_expires_at"] = created.set_password_expires_at.into();
            out.print(
                doc,
                &format!(
                    "created {} {} ({}) with permissions: {}\n\
                     To choose a password, they send this one-time token (until {}) to POST /api/v1/password:\n  {}",
                    user.role,
                    user.email,
                    user.id,
                    if user.permissions.is_empty() {
                        "none".to_owned()
                    } else {
                        user.permissions.join(",")
                    },
                    human_time_now(created.set_password_expires_at),
                    created.set_password_token.expose(),
                ),
            );
        }
        UserCommand::SetPassword { email } => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']);
            sessions::set_password(service, operator, &email, password).await?;
            out.print(
                json!({ "email": email, "password_set": true }),
                &format!("password set for {email}"),
            );
        }
        UserCommand::Unlock { email } => {
            users::unlock_user(service, operator, &email).await?;
            out.print(
                json!({ "email": email, "unlocked": true }),
                &format!("unlocked {email}"),
            );
        }
        UserCommand::Disable { email } => {
            users::set_user_status(service, operator, &email, UserStatus::Disabled).await?;
            out.print(
                json!({ "email": email, "status": "disabled" }),
                &format!("disabled {email}"),
            );
        }
        UserCommand::Enable { email } => {
            users::set_user_status(service, operator, &email, UserStatus::Active).await?;
            out.print(
                json!({ "email": email, "status": "active" }),
                &format!("enabled {email}"),
            );
        }
        UserCommand::SetPermissions { email, permissions } => {
            users::change_user(
                service,
                operator,
                &email,
                users::UserChange {
                    role: None,
                    permissions: Some(&permissions),
                },
            )
            .await?;
            out.print(
                json!({ "email": email, "permissions": permissions }),
                &format!("set permissions of {email}"),
            );
        }
    }
    Ok(())
}
