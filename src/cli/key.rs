//! `keyport key …`: create, show, list, roll, change and retire API keys
//! (their public keys are in `public_key.rs`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::CliError;
use super::output::{
    Output, human_time_now, key_line, print_created_key, print_created_without_secret,
};
use super::parse::{
    allow_list, comma_list, label_pairs, parse_duration, parse_rate, rate_with_burst, switch,
};
use super::public_key::{self, PublicKeyCommand, read_jwk};
use super::user::user_email;
use crate::domain::{Principal, RateLimit};
use crate::service::keys::{
    self, ClientAuthSetup, CreatedKey, KeyChange, KeyControls, KeyListing, KeySummary,
    NewKeyRequest,
};
use crate::service::{Service, ServiceError};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key for a user; prints the client ID and the secret, once.
    Create(KeyCreateArgs),
    /// Show one key (never its secret): status, owner, scopes, expiry,
    /// controls.
    Show(KeyRef),
    /// List keys (never their secrets).
    List {
        /// Only this user's keys (id or email).
        #[arg(long, conflicts_with = "tenant")]
        user: Option<String>,
        /// Only this tenant's keys (id or name).
        #[arg(long)]
        tenant: Option<String>,
        /// Only keys carrying this label, e.g. env=prod; repeat to require several.
        #[arg(long = "label", value_name = "NAME=VALUE")]
        labels: Vec<String>,
    },
    /// Roll a key: create its successor (same owner, name, scopes, token
    /// lifetime, allow-list, description, labels, rate; the webhook-signing mark
    /// moves with it) and let the old key work only until the grace period
    /// ends. Prints the new client ID and secret, once.
    Roll {
        /// The key's id or client ID.
        key: String,
        /// How long the old key keeps working, e.g. 24h (the default), 90m,
        /// 7d; at most max_roll_grace_seconds.
        #[arg(long, value_parser = parse_duration, value_name = "DURATION",
              allow_hyphen_values = true)]
        grace: Option<Duration>,
    },
    /// Disable a key: refused everywhere at once, like a revoked key, until enabled.
    Disable(KeyRef),
    /// Enable a disabled key again (a revoked key never comes back).
    Enable(KeyRef),
    /// Change a key's name, description, labels, source-address allow-list or rate.
    Update(KeyUpdateArgs),
    /// Revoke a key: it stops getting tokens at once; the row stays for the audit trail.
    Revoke(KeyRef),
    /// Delete a key entirely.
    Delete(KeyRef),
    /// Make this key the one that signs its owner's webhooks.
    MarkWebhookSigning(KeyRef),
    /// A key's public keys, for private_key_jwt client authentication (RFC 7523).
    #[command(subcommand)]
    PublicKey(PublicKeyCommand),
}

/// The one key a command acts on.
#[derive(Debug, Args)]
pub struct KeyRef {
    /// The key's id or client ID.
    pub key: String,
}

#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    /// The owner's id or email: the key acts as this user.
    #[arg(long)]
    pub user: String,
    /// What the key is for, e.g. "ERP nightly sync".
    #[arg(long)]
    pub name: String,
    /// Comma-separated scopes within the owner's permissions (default: all of them).
    #[arg(long, value_parser = comma_list, value_name = "SCOPES")]
    pub scopes: Option<String>,
    /// Expire the key after this long, with its unit: e.g. 30d, 12h, 90m, 45s.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION",
          allow_hyphen_values = true)]
    pub expires_in: Option<Duration>,
    /// Lifetime of this key's tokens, with its unit: e.g. 10m, 600s, 1h.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION",
          allow_hyphen_values = true)]
    pub ttl: Option<Duration>,
    /// What the key is for, at length (at most 500 characters).
    #[arg(long)]
    pub description: Option<String>,
    /// A label, e.g. env=prod; repeat for more (at most 10).
    #[arg(long = "label", value_name = "NAME=VALUE")]
    pub labels: Vec<String>,
    /// Comma-separated CIDR ranges the key may be used from, e.g.
    /// 10.0.0.0/8,2001:db8::/32 (default: anywhere).
    #[arg(long, value_parser = comma_list, value_name = "CIDRS")]
    pub allow: Option<String>,
    #[command(flatten)]
    pub rate: KeyRateArgs,
    /// Allow AWS Signature Version 4 (curl --aws-sigv4, botocore, aws4,
    /// Postman's AWS Signature): the client ID is the access key ID and the
    /// secret the secret access key. The secret is then kept, sealed under
    /// the master key, instead of only its digest.
    #[arg(long)]
    pub sigv4: bool,
    /// A public JWK file for private_key_jwt (RFC 7523); repeat for more
    /// (at most 5); `-` reads stdin.
    #[arg(long = "public-key", value_name = "FILE")]
    pub public_keys: Vec<PathBuf>,
    /// Give the key no secret: it authenticates only with its public keys
    /// or its certificate (needs --public-key, --tls-client-auth or
    /// --tls-client-certificate), and no secret is shown or kept.
    #[arg(long, conflicts_with = "sigv4")]
    pub no_secret: bool,
    /// Require a DPoP proof (RFC 9449) with every token request: the key's
    /// tokens are then always bound to the client's own key pair.
    #[arg(long)]
    pub require_dpop: bool,
    #[command(flatten)]
    pub certificates: KeyCertificateArgs,
}

/// Mutual-TLS client authentication (RFC 8705), as `key create` and `key
/// update` take it.
#[derive(Debug, Args)]
pub struct KeyCertificateArgs {
    /// tls_client_auth: what the key's certificate must show, issued by a
    /// CA in tls_client_ca_file: subject_dn:<DN>, san_dns:<name>,
    /// san_uri:<URI>, san_ip:<address> or san_email:<address>.
    #[arg(long, value_name = "SUBJECT")]
    pub tls_client_auth: Option<String>,
    /// self_signed_tls_client_auth: a certificate the key accepts, as a PEM
    /// file or its x5t#S256 thumbprint; repeat for more (at most 5). On
    /// `key update`, the whole list from now on.
    #[arg(long = "tls-client-certificate", value_name = "FILE|X5T")]
    pub tls_client_certificates: Vec<String>,
}

impl KeyCertificateArgs {
    /// The registered certificates as the service takes them (PEM text or
    /// thumbprints); `None` when none was given.
    fn certificates(&self) -> Result<Option<Vec<String>>, CliError> {
        if self.tls_client_certificates.is_empty() {
            return Ok(None);
        }
        self.tls_client_certificates
            .iter()
            .map(|value| {
                if crate::domain::CertificateThumbprint::parse(value).is_ok() {
                    return Ok(value.clone());
                }
                std::fs::read_to_string(value).map_err(|e| {
                    ServiceError::Invalid(format!(
                        "--tls-client-certificate {value}: neither an x5t#S256 thumbprint nor \
                         a readable PEM file ({e})"
                    ))
                    .into()
                })
            })
            .collect::<Result<Vec<_>, CliError>>()
            .map(Some)
    }
}

#[derive(Debug, Args)]
pub struct KeyUpdateArgs {
    /// The key's id or client ID.
    pub key: String,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    /// A new description; '' removes it.
    #[arg(long)]
    pub description: Option<String>,
    /// The key's labels from now on, e.g. env=prod; repeat for more. Replaces them all.
    #[arg(
        long = "label",
        value_name = "NAME=VALUE",
        conflicts_with = "no_labels"
    )]
    pub labels: Vec<String>,
    /// Remove every label.
    #[arg(long)]
    pub no_labels: bool,
    /// The comma-separated CIDR ranges the key may be used from from now on;
    /// '' lets it be used from anywhere.
    #[arg(long, value_parser = comma_list, value_name = "CIDRS")]
    pub allow: Option<String>,
    #[command(flatten)]
    pub rate: KeyRateArgs,
    /// Remove the key's own rate: its company's default applies, if any.
    #[arg(long, conflicts_with = "rate")]
    pub no_rate: bool,
    /// Require a DPoP proof (RFC 9449) with every token request from now on.
    #[arg(long, conflicts_with = "no_require_dpop")]
    pub require_dpop: bool,
    /// Stop requiring a DPoP proof.
    #[arg(long)]
    pub no_require_dpop: bool,
    #[command(flatten)]
    pub certificates: KeyCertificateArgs,
    /// Remove the key's tls_client_auth subject.
    #[arg(long, conflicts_with = "tls_client_auth")]
    pub no_tls_client_auth: bool,
    /// Remove every registered certificate (self_signed_tls_client_auth).
    #[arg(long, conflicts_with = "tls_client_certificates")]
    pub no_tls_client_certificates: bool,
}

/// `--rate` and `--burst`, as `key create` and `key update` take them.
#[derive(Debug, Args)]
pub struct KeyRateArgs {
    /// The key's rate for reports and webhooks, e.g. 600/min, 100/10s,
    /// 5000/h (a key without one follows its company's default rate, if any).
    #[arg(long, value_parser = parse_rate, value_name = "RATE", allow_hyphen_values = true)]
    pub rate: Option<RateLimit>,
    /// Requests allowed at once under --rate (default: its request count).
    #[arg(
        long,
        requires = "rate",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub burst: Option<i64>,
}

/// Runs one `key` command as the operator.
pub(super) async fn run(
    command: KeyCommand,
    service: &Service,
    operator: &Principal,
    out: &Output,
) -> Result<(), CliError> {
    let settings = service.settings.as_ref();
    match command {
        KeyCommand::PublicKey(command) => public_key::run(command, service, operator, out).await?,
        KeyCommand::MarkWebhookSigning(KeyRef { key }) => {
            let marked = keys::mark_webhook_signing(service, operator, &key).await?;
            out.print(
                serde_json::to_value(&marked).unwrap_or(Value::Null),
                &format!("{} ({}) now signs webhooks", marked.client_id, marked.name),
            );
        }
        KeyCommand::Create(args) => {
            let owner = user_email(service, operator, &args.user).await?;
            let labels = (!args.labels.is_empty())
                .then(|| label_pairs(&args.labels))
                .transpose()?;
            let allowed_sources = args.allow.as_deref().map(allow_list);
            let rate_limit = rate_with_burst(args.rate.rate, args.rate.burst)?;
            let jwks = args
                .public_keys
                .iter()
                .map(|path| read_jwk(path))
                .collect::<Result<Vec<_>, _>>()?;
            let certificates = args.certificates.certificates()?;
            let created = keys::create_client(
                service,
                operator,
                NewKeyRequest {
                    owner_email: Some(&owner),
                    name: &args.name,
                    scopes: args.scopes.as_deref(),
                    expires_in: args.expires_in,
                    token_ttl: args.ttl,
                    sigv4: args.sigv4,
                },
                KeyControls {
                    description: args.description.as_deref(),
                    labels: labels.as_deref(),
                    allowed_sources: allowed_sources.as_deref(),
                    rate_limit: rate_limit.map(Some),
                    require_dpop: Some(args.require_dpop),
                    tls_client_auth: args.certificates.tls_client_auth.as_deref().map(Some),
                    tls_client_certificates: certificates.as_deref(),
                },
                ClientAuthSetup {
                    secret: !args.no_secret,
                    public_keys: &jwks,
                },
            )
            .await?;
            match &created.secret {
                Some(secret) => print_created_key(
                    out,
                    &CreatedKey {
                        key: created.key.clone(),
                        secret: secret.clone(),
                        webhook_signing_key: created.webhook_signing_key.clone(),
                    },
                    settings,
                    None,
                    &created.public_keys,
                ),
                None => print_created_without_secret(out, &created, settings),
            }
        }
        KeyCommand::Roll { key, grace } => {
            let grace_seconds = grace.map(|g| i64::try_from(g.as_secs()).unwrap_or(i64::MAX));
            let rolled = keys::roll_key(service, operator, &key, grace_seconds).await?;
            let note = format!(
                "{} keeps working until {}, then expires; switch the integration to the new \
                 key before then.",
                rolled.old.client_id,
                rolled
                    .old
                    .expires_at
                    .map(human_time_now)
                    .unwrap_or_else(|| "it is revoked".to_owned()),
            );
            print_created_key(out, &rolled.new, settings, Some(&note), &[]);
        }
        KeyCommand::Disable(KeyRef { key }) => {
            let disabled = keys::disable_key(service, operator, &key).await?;
            print_changed(out, &disabled, "disabled");
        }
        KeyCommand::Enable(KeyRef { key }) => {
            let enabled = keys::enable_key(service, operator, &key).await?;
            print_changed(out, &enabled, "enabled");
        }
        KeyCommand::Update(args) => {
            let labels = if args.no_labels {
                Some(Vec::new())
            } else if args.labels.is_empty() {
                None
            } else {
                Some(label_pairs(&args.labels)?)
            };
            let allowed_sources = args.allow.as_deref().map(allow_list);
            let rate_limit = if args.no_rate {
                Some(None)
            } else {
                rate_with_burst(args.rate.rate, args.rate.burst)?.map(Some)
            };
            let certificates = if args.no_tls_client_certificates {
                Some(Vec::new())
            } else {
                args.certificates.certificates()?
            };
            let tls_client_auth = if args.no_tls_client_auth {
                Some(None)
            } else {
                args.certificates.tls_client_auth.as_deref().map(Some)
            };
            let updated = keys::update_key(
                service,
                operator,
                &args.key,
                KeyChange {
                    name: args.name.as_deref(),
                    controls: KeyControls {
                        description: args.description.as_deref(),
                        labels: labels.as_deref(),
                        allowed_sources: allowed_sources.as_deref(),
                        rate_limit,
                        require_dpop: switch(args.require_dpop, args.no_require_dpop),
                        tls_client_auth,
                        tls_client_certificates: certificates.as_deref(),
                    },
                },
            )
            .await?;
            out.print(
                serde_json::to_value(&updated).unwrap_or(Value::Null),
                &format!(
                    "updated {}
{}",
                    updated.client_id,
                    key_line(&updated)
                ),
            );
        }
        KeyCommand::List {
            user,
            tenant,
            labels,
        } => {
            let owner = match &user {
                Some(user) => Some(user_email(service, operator, user).await?),
                None => None,
            };
            let listing = match (&owner, &tenant) {
                (Some(email), _) => KeyListing::OwnedBy(email),
                (None, Some(tenant)) => KeyListing::InTenant(tenant),
                (None, None) => KeyListing::All,
            };
            let keys = keys::list_keys_labelled(service, operator, listing, &labels).await?;
            let human = if keys.is_empty() {
                "no keys".to_owned()
            } else {
                keys.iter().map(key_line).collect::<Vec<_>>().join("\n")
            };
            out.print(json!({ "keys": keys }), &human);
        }
        KeyCommand::Show(KeyRef { key }) => {
            let found = keys::find_key(service, operator, &key).await?;
            let mut human = key_line(&found);
            if let Some(description) = &found.description {
                human.push_str(&format!("\n  description: {description}"));
            }
            out.print(serde_json::to_value(&found).unwrap_or(Value::Null), &human);
        }
        KeyCommand::Revoke(KeyRef { key }) => {
            let revoked = keys::revoke_key(service, operator, &key).await?;
            print_changed(out, &revoked, "revoked");
        }
        KeyCommand::Delete(KeyRef { key }) => {
            let deleted = keys::delete_key(service, operator, &key, None).await?;
            out.print(
                json!({ "id": deleted.id, "client_id": deleted.client_id, "deleted": true }),
                &format!("deleted {} ({})", deleted.client_id, deleted.name),
            );
        }
    }
    Ok(())
}

/// A changed key as JSON, or `<what> <client ID> (<name>)` for people.
fn print_changed(out: &Output, key: &KeySummary, what: &str) {
    out.print(
        serde_json::to_value(key).unwrap_or(Value::Null),
        &format!("{what} {} ({})", key.client_id, key.name),
    );
}
