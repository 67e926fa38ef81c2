//! The `keyport` command line: serve, migrate, and the admin commands. Every
//! admin command prints a human summary, or one JSON document with `--json`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::config::Settings;
use crate::domain::{KeyLabels, Principal, RateLimit, UserStatus};
use crate::service::keys::{
    self, ClientAuthSetup, CreatedKey, KeyChange, KeyControls, KeyListing, KeySummary,
    NewKeyRequest,
};
use crate::service::public_keys::{self, PublicKeySummary};
use crate::service::{Service, ServiceError, sessions, tenants, users};
use crate::startup::Application;
use crate::storage::Store;
use crate::tokens::KeyRing;

#[derive(Debug, Parser)]
#[command(
    name = "keyport",
    version,
    about = "Token exchange authorization server: client credentials in, short-lived JWTs out",
    long_about = "Keyport exchanges an integration's client ID and secret for a short-lived JWT \
                  access token at POST /oauth/token, and serves report (pull) and webhook (push) \
                  endpoints that validate those tokens offline.\n\n\
                  Configuration comes from the built-in defaults, then --config FILE, then \
                  KEYPORT_* environment variables (e.g. KEYPORT_DATABASE_URL, KEYPORT_BIND)."
)]
pub struct Cli {
    /// A TOML file overriding the built-in defaults (see config/default.toml).
    #[arg(long, global = true, env = "KEYPORT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print one JSON document instead of a human summary.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (creates and migrates the database on first start).
    Serve,
    /// Create the database if there is none, apply pending migrations and
    /// exit. Every other admin command needs an existing database.
    Migrate,
    /// Manage tenants (companies).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys (client ID + client secret pairs).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Token exchange (RFC 8693): the external issuers a tenant trusts and
    /// the rules that map their tokens to users.
    #[command(subcommand)]
    Issuer(IssuerCommand),
    /// Manage the JWT signing keys.
    #[command(subcommand, name = "signing-key")]
    SigningKey(SigningKeyCommand),
    /// Manage the master key that seals the server-side secrets (signing
    /// keys' private halves, webhook-signing keys) in the database.
    #[command(subcommand, name = "master-key")]
    MasterKey(MasterKeyCommand),
    /// Postman: the collection for this server (needs no database).
    #[command(subcommand)]
    Postman(PostmanCommand),
}

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

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key for a user; prints the client ID and the secret, once.
    Create(KeyCreateArgs),
    /// Show one key (never its secret): status, owner, scopes, expiry,
    /// controls.
    Show {
        /// The key's id or client ID.
        key: String,
    },
    /// List keys (never their secrets).
    List {
        /// Only this user's keys.
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
    Disable {
        /// The key's id or client ID.
        key: String,
    },
    /// Enable a disabled key again (a revoked key never comes back).
    Enable {
        /// The key's id or client ID.
        key: String,
    },
    /// Change a key's name, description, labels, source-address allow-list or rate.
    Update(KeyUpdateArgs),
    /// Revoke a key: it stops getting tokens at once; the row stays for the audit trail.
    Revoke {
        /// The key's id or client ID.
        key: String,
    },
    /// Delete a key entirely.
    Delete {
        /// The key's id or client ID.
        key: String,
    },
    /// Make this key the one that signs its owner's webhooks.
    MarkWebhookSigning {
        /// The key's id or client ID.
        key: String,
    },
    /// A key's public keys, for private_key_jwt client authentication (RFC 7523).
    #[command(subcommand)]
    PublicKey(PublicKeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum PublicKeyCommand {
    /// Register a public key (a JWK file: EC P-256, OKP Ed25519 or RSA; `-`
    /// reads stdin). The key may then authenticate with assertions it signs.
    Add {
        /// The key's id or client ID.
        key: String,
        /// The public JWK, as a JSON file; `-` for stdin.
        file: PathBuf,
    },
    /// List a key's public keys (thumbprint, kid, alg, created).
    List {
        /// The key's id or client ID.
        key: String,
    },
    /// Remove a public key; its assertions are refused from then on. A key
    /// without a secret keeps its last one.
    Remove {
        /// The key's id or client ID.
        key: String,
        /// The public key's RFC 7638 thumbprint (see `list`). Base64url, so
        /// it may start with `-`: it is taken as the value, never a flag.
        #[arg(allow_hyphen_values = true)]
        thumbprint: String,
    },
}

#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    /// The owner's email: the key acts as this user.
    #[arg(long)]
    pub user: String,
    /// What the key is for, e.g. "ERP nightly sync".
    #[arg(long)]
    pub name: String,
    /// Comma-separated scopes within the owner's permissions (default: all of them).
    #[arg(long)]
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
    #[arg(long, value_name = "CIDRS")]
    pub allow: Option<String>,
    /// The key's rate for reports and webhooks, e.g. 600/min, 100/10s,
    /// 5000/h (default: its company's default rate, if any).
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
    /// (needs --public-key), and no secret is shown or kept.
    #[arg(long, requires = "public_keys", conflicts_with = "sigv4")]
    pub no_secret: bool,
    /// Require a DPoP proof (RFC 9449) with every token request: the key's
    /// tokens are then always bound to the client's own key pair.
    #[arg(long)]
    pub require_dpop: bool,
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
    #[arg(long, value_name = "CIDRS")]
    pub allow: Option<String>,
    /// The key's rate for reports and webhooks from now on, e.g. 600/min.
    #[arg(long, value_parser = parse_rate, value_name = "RATE", allow_hyphen_values = true,
          conflicts_with = "no_rate")]
    pub rate: Option<RateLimit>,
    /// Requests allowed at once under --rate (default: its request count).
    #[arg(
        long,
        requires = "rate",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub burst: Option<i64>,
    /// Remove the key's own rate: its company's default applies, if any.
    #[arg(long)]
    pub no_rate: bool,
    /// Require a DPoP proof (RFC 9449) with every token request (true), or
    /// stop requiring it (false).
    #[arg(long, value_name = "true|false")]
    pub require_dpop: Option<bool>,
}

/// `--rate 600/min`.
fn parse_rate(raw: &str) -> Result<RateLimit, String> {
    RateLimit::parse_cli(raw).map_err(|e| e.to_string())
}

/// `--rate` with `--burst` applied.
fn rate_with_burst(
    rate: Option<RateLimit>,
    burst: Option<i64>,
) -> Result<Option<RateLimit>, CliError> {
    match (rate, burst) {
        (Some(rate), Some(burst)) => rate
            .with_burst(burst)
            .map(Some)
            .map_err(|e| CliError::Service(ServiceError::Invalid(e.to_string()))),
        (rate, _) => Ok(rate),
    }
}

/// `name=value` labels as typed on the command line.
fn label_pairs(raw: &[String]) -> Result<Vec<(String, String)>, CliError> {
    raw.iter()
        .map(|label| {
            KeyLabels::parse_assignment(label)
                .map_err(|e| CliError::Service(ServiceError::Invalid(e.to_string())))
        })
        .collect()
}

/// `--allow 10.0.0.0/8,2001:db8::/32`; `''`: no ranges.
fn allow_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

#[derive(Debug, Subcommand)]
pub enum PostmanCommand {
    /// Write a Postman Collection (v2.1) for this server, whose base URL is the
    /// configured issuer (KEYPORT_ISSUER). Import it into Postman, paste a key's
    /// client_id and client_secret into the collection's Variables tab, press Send.
    Export {
        /// Write the collection to this file instead of standard output,
        /// e.g. keyport.postman_collection.json.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The AWS Signature variant: every request signed by Postman's
        /// AWS Signature auth (SigV4) from the access_key and secret_key
        /// variables, for keys created with --sigv4.
        #[arg(long)]
        sigv4: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Generate a new signing key and retire the current one (still published
    /// until its tokens have expired).
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum MasterKeyCommand {
    /// Write a new random master key to FILE (mode 0600; an existing file is
    /// never replaced). Needs no database.
    Generate {
        /// Where to write the key, e.g. /etc/keyport/master-key.
        file: PathBuf,
    },
    /// Re-seal every sealed value under the current master key, in one
    /// transaction. Run it with the new key as the master key and the old one
    /// as KEYPORT_MASTER_KEY_PREVIOUS (or master_key_previous_file), after
    /// every instance has been given both.
    Rotate,
}

/// A duration with its unit (`45s`, `30m`, `12h`, `90d`, or `1h 30m`). A bare
/// number is refused rather than guessed: `--expires-in 90` meaning 90
/// seconds once cost a key, so the unit is always written out.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    if text.starts_with('-') {
        return Err("a duration cannot be negative".to_owned());
    }
    if text.is_empty() {
        return Err("a duration is needed, e.g. 45s, 30m, 12h or 90d".to_owned());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}` has no unit: did you mean {text}d, {text}h, {text}m or {text}s?"
        ));
    }
    humantime::parse_duration(text).map_err(|e| {
        format!("{e} (use a number and a unit: s, m, h or d, e.g. 45s, 30m, 12h or 90d)")
    })
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Startup(#[from] crate::startup::StartupError),
    #[error("cannot open the database")]
    Storage(#[from] crate::storage::StorageError),
    /// An admin command's database cannot be opened: says which one it
    /// tried and how to name another.
    #[error(
        "cannot open the database {url} (database_url; point at the right one with --config FILE \
         or KEYPORT_DATABASE_URL)"
    )]
    Open {
        url: String,
        #[source]
        source: crate::storage::StorageError,
    },
    #[error(transparent)]
    NoDatabase(crate::storage::StorageError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("cannot rotate the signing key")]
    Keys(#[from] crate::tokens::KeyRingError),
    #[error(transparent)]
    MasterKey(#[from] crate::sealing::MasterKeyError),
    #[error("server error")]
    Io(#[from] std::io::Error),
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    fn code(&self) -> &'static str {
        match self {
            CliError::Config(_) => "invalid_config",
            CliError::NoDatabase(_) => "no_database",
            CliError::Service(err) => err.code(),
            _ => "error",
        }
    }
}

/// The command line, or the process ends: help and version print as usual;
/// a usage error exits 2, as one JSON document on stdout (the shape of every
/// other error) when `--json` was given, else clap's text on stderr.
pub fn parse_or_exit() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            let wants_json = args
                .iter()
                .skip(1)
                .take_while(|a| *a != "--")
                .any(|a| a == "--json");
            let informational = matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            );
            if wants_json && !informational {
                let text = if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    "error: a subcommand is needed; --help lists them".to_owned()
                } else {
                    err.render().to_string()
                };
                let message = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let message = message.strip_prefix("error: ").unwrap_or(&message);
                println!("{}", json!({ "error": "usage", "message": message }));
                std::process::exit(2);
            }
            err.exit()
        }
    }
}

/// Warns, on stderr, about every `KEYPORT_*` variable Keyport does not read.
fn warn_about_unknown_env_vars() {
    let names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    for (name, closest) in crate::config::unknown_env_vars(names) {
        match closest {
            Some(known) => {
                eprintln!("warning: {name} is not a Keyport setting; did you mean {known}?")
            }
            None => eprintln!(
                "warning: {name} is not a Keyport setting and is ignored (see config/default.toml)"
            ),
        }
    }
}

/// Runs the command; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    warn_about_unknown_env_vars();
    let json = cli.json;
    match execute(cli).await {
        Ok(()) => 0,
        Err(err) => {
            let message = crate::telemetry::error_chain(&err);
            if json {
                println!("{}", json!({ "error": err.code(), "message": message }));
            } else {
                eprintln!("error: {message}");
            }
            1
        }
    }
}

async fn execute(cli: Cli) -> Result<(), CliError> {
    let settings = Settings::load(cli.config.as_deref())?;
    crate::telemetry::set_log_format(settings.observability.log_format);
    if let Command::Postman(PostmanCommand::Export { out, sigv4 }) = &cli.command {
        let variant = if *sigv4 {
            crate::postman::Variant::Sigv4
        } else {
            crate::postman::Variant::Token
        };
        return export_postman(
            &settings,
            variant,
            out.as_deref(),
            &Output { json: cli.json },
        );
    }
    if let Command::MasterKey(MasterKeyCommand::Generate { file }) = &cli.command {
        let key = crate::sealing::MasterKey::generate();
        key.write_new_file(file)?;
        Output { json: cli.json }.print(
            json!({ "file": file.display().to_string(), "key_id": key.id() }),
            &format!(
                "wrote master key {} to {} (mode 0600); give every instance the same one",
                key.id(),
                file.display()
            ),
        );
        return Ok(());
    }
    if let Command::Serve = cli.command {
        let app = Application::build(settings.clone()).await?;
        log::info!(
            "keyport listening on port {} (database: {})",
            app.port(),
            redact_url(&settings.database.url)
        );
        app.run_until_stopped().await?;
        return Ok(());
    }
    // Only `serve` (above) and `migrate` create a database; every other
    // command opens the one that is there.
    let store = if let Command::Migrate = cli.command {
        Store::connect_and_migrate(&settings.database).await?
    } else {
        Store::open_existing_and_migrate(&settings.database)
            .await
            .map_err(|source| match source {
                crate::storage::StorageError::NoDatabase(_) => CliError::NoDatabase(source),
                source => CliError::Open {
                    url: redact_url(&settings.database.url),
                    source,
                },
            })?
    };
    let service = Service::new(store.clone(), std::sync::Arc::new(settings));
    let out = Output { json: cli.json };
    let result = dispatch(cli.command, &service, &out).await;
    store.close().await;
    result
}

/// Runs an admin command as the operator: the same service functions, and
/// so the same rules and audit trail, as the HTTP API.
async fn dispatch(command: Command, service: &Service, out: &Output) -> Result<(), CliError> {
    let operator = Principal::operator();
    let settings = service.settings.as_ref();
    match command {
        Command::Serve
        | Command::Postman(_)
        | Command::MasterKey(MasterKeyCommand::Generate { .. }) => {
            unreachable!("handled before connecting")
        }
        Command::MasterKey(MasterKeyCommand::Rotate) => {
            let report = service.store.reseal_all().await?;
            out.print(
                json!({
                    "key_id": service.store.master_key_id(),
                    "resealed": report.resealed,
                    "sealed": report.sealed,
                    "unchanged": report.unchanged,
                }),
                &format!(
                    "re-sealed {} value(s) under master key {} ({} already were); the previous \
                     key can now be removed from every instance",
                    report.resealed,
                    service.store.master_key_id(),
                    report.unchanged
                ),
            );
        }
        Command::Migrate => out.print(json!({ "migrated": true }), "database is up to date"),
        Command::Issuer(command) => issuer_command(command, service, &operator, out).await?,
        Command::Tenant(TenantCommand::Create { name }) => {
            let tenant = tenants::create_tenant(service, &operator, &name).await?;
            out.print(
                serde_json::to_value(&tenant).unwrap_or(Value::Null),
                &format!("created tenant {} ({})", tenant.name, tenant.id),
            );
        }
        Command::Tenant(TenantCommand::List) => {
            let listed = tenants::list_tenants(service, &operator).await?;
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
        Command::User(UserCommand::List { tenant }) => {
            let listed = users::list_users(service, &operator, Some(&tenant)).await?;
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
        Command::User(UserCommand::Create(args)) => {
            let created = users::create_user(
                service,
                &operator,
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
        Command::Tenant(TenantCommand::SetPolicy {
            tenant,
            api_only_users,
            default_rate,
            default_burst,
            no_default_rate,
        }) => {
            let default_rate_limit = if no_default_rate {
                Some(None)
            } else {
                rate_with_burst(default_rate, default_burst)?.map(Some)
            };
            let policy = tenants::set_policy(
                service,
                &operator,
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
        Command::User(UserCommand::SetPassword { email }) => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']);
            sessions::set_password(service, &operator, &email, password).await?;
            out.print(
                json!({ "email": email, "password_set": true }),
                &format!("password set for {email}"),
            );
        }
        Command::User(UserCommand::Unlock { email }) => {
            users::unlock_user(service, &operator, &email).await?;
            out.print(
                json!({ "email": email, "unlocked": true }),
                &format!("unlocked {email}"),
            );
        }
        Command::Key(KeyCommand::MarkWebhookSigning { key }) => {
            let marked = keys::mark_webhook_signing(service, &operator, &key).await?;
            out.print(
                serde_json::to_value(&marked).unwrap_or(Value::Null),
                &format!("{} ({}) now signs webhooks", marked.client_id, marked.name),
            );
        }
        Command::User(UserCommand::Disable { email }) => {
            users::set_user_status(service, &operator, &email, UserStatus::Disabled).await?;
            out.print(
                json!({ "email": email, "status": "disabled" }),
                &format!("disabled {email}"),
            );
        }
        Command::User(UserCommand::Enable { email }) => {
            users::set_user_status(service, &operator, &email, UserStatus::Active).await?;
            out.print(
                json!({ "email": email, "status": "active" }),
                &format!("enabled {email}"),
            );
        }
        Command::User(UserCommand::SetPermissions { email, permissions }) => {
            users::change_user(
                service,
                &operator,
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
        Command::Key(KeyCommand::Create(args)) => {
            let labels = (!args.labels.is_empty())
                .then(|| label_pairs(&args.labels))
                .transpose()?;
            let allowed_sources = args.allow.as_deref().map(allow_list);
            let rate_limit = rate_with_burst(args.rate, args.burst)?;
            let jwks = args
                .public_keys
                .iter()
                .map(|path| read_jwk(path))
                .collect::<Result<Vec<_>, _>>()?;
            let created = keys::create_client(
                service,
                &operator,
                NewKeyRequest {
                    owner_email: Some(&args.user),
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
        Command::Key(KeyCommand::PublicKey(PublicKeyCommand::Add { key, file })) => {
            let jwk = read_jwk(&file)?;
            let added = public_keys::add_public_key(service, &operator, &key, &jwk).await?;
            out.print(
                serde_json::to_value(&added).unwrap_or(Value::Null),
                &format!(
                    "registered public key {} ({}{}) with {key}",
                    added.thumbprint,
                    added.alg,
                    added
                        .kid
                        .as_deref()
                        .map(|kid| format!(", kid {kid}"))
                        .unwrap_or_default()
                ),
            );
        }
        Command::Key(KeyCommand::PublicKey(PublicKeyCommand::List { key })) => {
            let listed = public_keys::list_public_keys(service, &operator, &key).await?;
            let human = if listed.is_empty() {
                format!("{key} has no public keys")
            } else {
                listed
                    .iter()
                    .map(public_key_line)
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            out.print(json!({ "public_keys": listed }), &human);
        }
        Command::Key(KeyCommand::PublicKey(PublicKeyCommand::Remove { key, thumbprint })) => {
            let removed =
                public_keys::remove_public_key(service, &operator, &key, &thumbprint).await?;
            out.print(
                serde_json::to_value(&removed).unwrap_or(Value::Null),
                &format!("removed public key {} from {key}", removed.thumbprint),
            );
        }
        Command::Key(KeyCommand::Roll { key, grace }) => {
            let grace_seconds = grace.map(|g| i64::try_from(g.as_secs()).unwrap_or(i64::MAX));
            let rolled = keys::roll_key(service, &operator, &key, grace_seconds).await?;
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
        Command::Key(KeyCommand::Disable { key }) => {
            let disabled = keys::disable_key(service, &operator, &key).await?;
            out.print(
                serde_json::to_value(&disabled).unwrap_or(Value::Null),
                &format!("disabled {} ({})", disabled.client_id, disabled.name),
            );
        }
        Command::Key(KeyCommand::Enable { key }) => {
            let enabled = keys::enable_key(service, &operator, &key).await?;
            out.print(
                serde_json::to_value(&enabled).unwrap_or(Value::Null),
                &format!("enabled {} ({})", enabled.client_id, enabled.name),
            );
        }
        Command::Key(KeyCommand::Update(args)) => {
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
                rate_with_burst(args.rate, args.burst)?.map(Some)
            };
            let updated = keys::update_key(
                service,
                &operator,
                &args.key,
                KeyChange {
                    name: args.name.as_deref(),
                    controls: KeyControls {
                        description: args.description.as_deref(),
                        labels: labels.as_deref(),
                        allowed_sources: allowed_sources.as_deref(),
                        rate_limit,
                        require_dpop: args.require_dpop,
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
        Command::Key(KeyCommand::List {
            user,
            tenant,
            labels,
        }) => {
            let listing = match (&user, &tenant) {
                (Some(email), _) => KeyListing::OwnedBy(email),
                (None, Some(tenant)) => KeyListing::InTenant(tenant),
                (None, None) => KeyListing::All,
            };
            let keys = keys::list_keys_labelled(service, &operator, listing, &labels).await?;
            let human = if keys.is_empty() {
                "no keys".to_owned()
            } else {
                keys.iter().map(key_line).collect::<Vec<_>>().join("\n")
            };
            out.print(json!({ "keys": keys }), &human);
        }
        Command::Key(KeyCommand::Show { key }) => {
            let found = keys::find_key(service, &operator, &key).await?;
            let mut human = key_line(&found);
            if let Some(description) = &found.description {
                human.push_str(&format!("\n  description: {description}"));
            }
            out.print(serde_json::to_value(&found).unwrap_or(Value::Null), &human);
        }
        Command::Key(KeyCommand::Revoke { key }) => {
            let revoked = keys::revoke_key(service, &operator, &key).await?;
            out.print(
                serde_json::to_value(&revoked).unwrap_or(Value::Null),
                &format!("revoked {} ({})", revoked.client_id, revoked.name),
            );
        }
        Command::Key(KeyCommand::Delete { key }) => {
            let deleted = keys::delete_key(service, &operator, &key, None).await?;
            out.print(
                json!({ "id": deleted.id, "client_id": deleted.client_id, "deleted": true }),
                &format!("deleted {} ({})", deleted.client_id, deleted.name),
            );
        }
        Command::SigningKey(SigningKeyCommand::Rotate) => {
            let kid = KeyRing::rotate(&service.store, settings.tokens.signing_algorithm).await?;
            out.print(
                json!({ "kid": kid, "algorithm": settings.tokens.signing_algorithm.as_str() }),
                &format!(
                    "new signing key {kid}; running servers pick it up within {} s",
                    settings.tokens.signing_key_refresh.as_secs()
                ),
            );
        }
    }
    Ok(())
}

/// `postman export`: settings only, no database.
fn export_postman(
    settings: &Settings,
    variant: crate::postman::Variant,
    out_file: Option<&std::path::Path>,
    out: &Output,
) -> Result<(), CliError> {
    let document = crate::postman::collection_variant(settings, variant);
    let variables = match variant {
        crate::postman::Variant::Token => "client_id and client_secret",
        crate::postman::Variant::Sigv4 => "access_key and secret_key",
    };
    let text = serde_json::to_string_pretty(&document).unwrap_or_else(|_| document.to_string());
    let Some(path) = out_file else {
        use std::io::Write;
        // `keyport postman export | head` is not an error.
        return match writeln!(std::io::stdout().lock(), "{text}") {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(()),
        };
    };
    std::fs::write(path, format!("{text}\n")).map_err(|source| CliError::Write {
        path: path.to_owned(),
        source,
    })?;
    out.print(
        json!({ "out": path.display().to_string(), "base_url": settings.tokens.issuer }),
        &format!(
            "wrote {} (base_url {}): import it into Postman, then fill {variables} in the \
             collection's Variables tab",
            path.display(),
            settings.tokens.issuer
        ),
    );
    Ok(())
}

/// A public JWK from a file, or stdin for `-`.
fn read_jwk(path: &std::path::Path) -> Result<Value, CliError> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| ServiceError::Invalid(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        ServiceError::Invalid(format!("{} is not a JSON JWK: {e}", path.display())).into()
    })
}

fn public_key_line(key: &PublicKeySummary) -> String {
    format!(
        "{}  {:<6} kid={} created {}",
        key.thumbprint,
        key.alg,
        key.kid.as_deref().unwrap_or("-"),
        human_time_now(key.created_at)
    )
}

/// A key created without a secret: its JSON, or a summary saying how it
/// authenticates.
fn print_created_without_secret(out: &Output, created: &keys::CreatedClient, settings: &Settings) {
    let mut doc = serde_json::to_value(&created.key).unwrap_or(Value::Null);
    doc["webhook_signing_key"] = Value::String(created.webhook_signing_key.to_whsec());
    doc["public_keys"] = serde_json::to_value(&created.public_keys).unwrap_or(Value::Null);
    let keys: Vec<String> = created.public_keys.iter().map(public_key_line).collect();
    let human = format!(
        "created key {name} for {owner}, without a secret\n\n  client_id:     {client_id}\n         webhook signing key: {webhook_key}\n  public keys:\n    {keys}\n\n         It authenticates only with private_key_jwt (RFC 7523): a JWT signed with one of these\n         keys, iss and sub {client_id}, aud {issuer} (or {issuer}/oauth/token), a short exp and a\n         new jti each time, sent as client_assertion with\n         client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
        name = created.key.name,
        owner = created.key.owner_email,
        client_id = created.key.client_id,
        webhook_key = created.webhook_signing_key.to_whsec(),
        keys = keys.join("\n    "),
        issuer = settings.tokens.issuer,
    );
    out.print(doc, &human);
}

/// The new key's JSON (with the secret), or the human summary plus `note`.
fn print_created_key(
    out: &Output,
    created: &CreatedKey,
    settings: &Settings,
    note: Option<&str>,
    public_keys: &[PublicKeySummary],
) {
    let mut doc = serde_json::to_value(&created.key).unwrap_or(Value::Null);
    doc["client_secret"] = Value::String(created.secret.expose().to_owned());
    doc["webhook_signing_key"] = Value::String(created.webhook_signing_key.to_whsec());
    if !public_keys.is_empty() {
        doc["public_keys"] = serde_json::to_value(public_keys).unwrap_or(Value::Null);
    }
    let human = format!(
        "created key {name} for {owner}\n\n  client_id:     {client_id}\n  client_secret: {secret}\n\
         webhook signing key: {webhook_key}\n\n\
         The secret is shown only now: store it in a secrets manager. Receivers of signed webhooks\n\
         verify them with the webhook signing key (derived from the secret).\n\
         Get a token: curl -u '{client_id}:<secret>' -d grant_type=client_credentials {issuer}/oauth/token",
        name = created.key.name,
        owner = created.key.owner_email,
        client_id = created.key.client_id,
        secret = created.secret.expose(),
        webhook_key = created.webhook_signing_key.to_whsec(),
        issuer = settings.tokens.issuer,
    );
    let human = if created.key.sigv4 {
        format!(
            "{human}\nSigV4 signing is allowed: curl --aws-sigv4 \"aws:amz:{region}:{service}\" \
             --user '{client_id}:<secret>' {issuer}/api/v1/whoami",
            region = settings.sigv4.region,
            service = settings.sigv4.service,
            client_id = created.key.client_id,
            issuer = settings.tokens.issuer,
        )
    } else {
        human
    };
    let human = match note {
        Some(note) => format!("{human}\n{note}"),
        None => human,
    };
    out.print(doc, &human);
}

fn key_line(key: &KeySummary) -> String {
    let mut line = format!(
        "{}  {:<8} {:<24} owner={} scopes={} expires {}",
        key.client_id,
        key.status.as_str(),
        key.name,
        key.owner_email,
        key.scopes
            .as_ref()
            .map(|s| s.join(","))
            .unwrap_or_else(|| "(owner's)".to_owned()),
        key.expires_at
            .map(human_time_now)
            .unwrap_or_else(|| "never".to_owned()),
    );
    if !key.labels.is_empty() {
        let labels: Vec<String> = key.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        line.push_str(&format!(" labels={}", labels.join(",")));
    }
    if !key.allowed_sources.is_empty() {
        line.push_str(&format!(" allow={}", key.allowed_sources.join(",")));
    }
    if let Some(rate) = &key.rate_limit {
        line.push_str(&format!(
            " rate={}/{}s,burst={}({})",
            rate.requests,
            rate.per_seconds,
            rate.burst,
            match rate.source {
                keys::RateLimitSource::Key => "own",
                keys::RateLimitSource::Default => "company default",
            }
        ));
    }
    if let Some(successor) = &key.rolled_to {
        line.push_str(&format!(" rolled_to={successor}"));
    }
    if key.sigv4 {
        line.push_str(" sigv4");
    }
    if key.require_dpop {
        line.push_str(" require_dpop");
    }
    line
}

struct Output {
    json: bool,
}

async fn issuer_command(
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

impl Output {
    /// Writes the result; a closed stdout (`keyport … | head`) is not a
    /// reason to panic.
    fn print(&self, doc: Value, human: &str) {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = if self.json {
            writeln!(stdout, "{doc}")
        } else {
            writeln!(stdout, "{human}")
        };
    }
}

/// A stored time for people: RFC 3339 in UTC and how far it is from `now`,
/// e.g. `2027-03-04T10:00:00Z (in 89 days)`. `--json` keeps Unix seconds.
fn human_time(at: crate::domain::UnixTime, now: crate::domain::UnixTime) -> String {
    let stamp = chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| at.to_string());
    let distance = at.saturating_sub(now).unsigned_abs();
    let (count, unit) = match distance {
        0..60 => (distance, "second"),
        60..3600 => (distance / 60, "minute"),
        3600..86400 => (distance / 3600, "hour"),
        _ => (distance / 86400, "day"),
    };
    let span = format!("{count} {unit}{}", if count == 1 { "" } else { "s" });
    if at >= now {
        format!("{stamp} (in {span})")
    } else {
        format!("{stamp} ({span} ago)")
    }
}

/// [`human_time`] from the current time.
fn human_time_now(at: crate::domain::UnixTime) -> String {
    human_time(at, crate::domain::now())
}

/// The database URL without its password, for log lines.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{}@{}", &url[..scheme_end], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit_and_cannot_be_negative() {
        assert_eq!(parse_duration("600s").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(
            parse_duration("90")
                .unwrap_err()
                .contains("did you mean 90d")
        );
        assert!(parse_duration("0").unwrap_err().contains("0s"));
        assert_eq!(
            parse_duration("-5d").unwrap_err(),
            "a duration cannot be negative"
        );
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn times_read_as_rfc3339_utc_with_how_far_away_they_are() {
        let now = 1_700_000_000; // 2023-11-14T22:13:20Z
        // at → text
        let table = [
            (now, "2023-11-14T22:13:20Z (in 0 seconds)"),
            (now + 1, "2023-11-14T22:13:21Z (in 1 second)"),
            (now + 89 * 86400 + 5, "2024-02-11T22:13:25Z (in 89 days)"),
            (now + 7200, "2023-11-15T00:13:20Z (in 2 hours)"),
            (now - 90, "2023-11-14T22:11:50Z (1 minute ago)"),
            (now - 3 * 86400, "2023-11-11T22:13:20Z (3 days ago)"),
        ];
        for (at, text) in table {
            assert_eq!(human_time(at, now), text);
        }
    }

    #[test]
    fn database_passwords_never_reach_the_log() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/keyport"),
            "postgres://app@db:5432/keyport"
        );
        assert_eq!(
            redact_url("sqlite://data/keyport.db"),
            "sqlite://data/keyport.db"
        );
    }
}
