//! The `keyport` command line: serve, migrate, and the admin commands. Every
//! admin command prints a human summary, or one JSON document with `--json`.
//!
//! This file holds the top-level parser, the errors and the dispatch; each
//! command group has its own file (its clap types and what it runs),
//! `parse.rs` reads arguments and `output.rs` prints results.

mod issuer;
mod key;
mod master_key;
mod operations;
mod output;
mod parse;
mod postman;
mod progress;
mod public_key;
mod signing_key;
mod tenant;
mod user;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::json;

pub use issuer::IssuerCommand;
pub use key::{KeyCommand, KeyCreateArgs, KeyUpdateArgs};
pub use master_key::MasterKeyCommand;
pub use postman::PostmanCommand;
pub use public_key::PublicKeyCommand;
pub use signing_key::SigningKeyCommand;
pub use tenant::TenantCommand;
pub use user::{UserCommand, UserCreateArgs};

use crate::config::Settings;
use crate::domain::Principal;
use crate::service::backup::BackupError;
use crate::service::{Service, ServiceError};
use crate::startup::Application;
use crate::storage::Store;
use output::{Output, redact_url};

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
    /// Write a consistent copy of the SQLite database to FILE (mode 0600)
    /// while the server runs and takes writes. PostgreSQL: use pg_dump.
    Backup {
        /// Where to write the backup; an existing file is never replaced.
        file: PathBuf,
    },
    /// Restore a backup into an empty data directory (where database_url
    /// points), after checking that the configured master key opens it.
    /// Never replaces a database.
    Restore {
        /// The backup `keyport backup` wrote.
        file: PathBuf,
    },
    /// Exit 0 when the server answers ready at GET /readyz, 1 otherwise
    /// (for container health checks; needs no database).
    Healthcheck {
        /// The readiness URL; by default /readyz on loopback at bind's port.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
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
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("not ready: {url}: {reason}")]
    Healthcheck { url: String, reason: String },
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
            CliError::Healthcheck { .. } => "not_ready",
            CliError::Backup(err) => match err {
                BackupError::Postgres => "unsupported_backend",
                BackupError::DestinationExists(_) | BackupError::TargetExists(_) => "exists",
                BackupError::NoMasterKey { .. } | BackupError::WrongMasterKey { .. } => {
                    "wrong_master_key"
                }
                BackupError::NotABackup { .. } | BackupError::NewerSchema { .. } => "not_a_backup",
                _ => "error",
            },
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
    match parse_from(&args) {
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

/// The command line, with what clap alone does not refuse: a switch given
/// a value (`--require-dpop false`) and `--json` where nothing is printed.
fn parse_from(args: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
    use clap::CommandFactory;
    use clap::error::ErrorKind;
    let text: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(message) = parse::switch_given_a_value(&text, &switch_names(&Cli::command())) {
        return Err(Cli::command().error(ErrorKind::ValueValidation, message));
    }
    let cli = Cli::try_parse_from(args)?;
    if cli.json && matches!(cli.command, Command::Serve) {
        return Err(Cli::command().error(
            ErrorKind::ArgumentConflict,
            "--json is for the admin commands' results; serve prints none (its log goes to \
             stderr)",
        ));
    }
    Ok(cli)
}

/// The long names of every switch (a flag that takes no value), in every
/// subcommand.
fn switch_names(command: &clap::Command) -> Vec<String> {
    let mut names: Vec<String> = command
        .get_arguments()
        .filter(|arg| matches!(arg.get_action(), clap::ArgAction::SetTrue))
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .collect();
    for sub in command.get_subcommands() {
        names.extend(switch_names(sub));
    }
    names
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
        return postman::export(
            &settings,
            variant,
            out.as_deref(),
            &Output { json: cli.json },
        );
    }
    if let Command::MasterKey(MasterKeyCommand::Generate { file }) = &cli.command {
        return master_key::generate(file, &Output { json: cli.json });
    }
    let out = Output { json: cli.json };
    match &cli.command {
        Command::Backup { file } => return operations::backup(&settings, file, &out),
        Command::Restore { file } => return operations::restore(&settings, file, &out),
        Command::Healthcheck { url } => {
            return operations::healthcheck(&settings, url.as_deref(), &out).await;
        }
        _ => {}
    }
    if let Command::Serve = cli.command {
        let tracing = &settings.observability.traces;
        let traces = crate::telemetry::traces::install(
            tracing.otlp_endpoint.as_deref(),
            tracing.sample_ratio,
        )
        .map_err(crate::startup::StartupError::from)?;
        let app = Application::build(settings.clone()).await?;
        log::info!(
            "keyport listening on port {} (database: {})",
            app.port(),
            redact_url(&settings.database.url)
        );
        let served = app.run_until_stopped().await;
        if let Some(traces) = traces {
            traces.shutdown().await;
        }
        served?;
        return Ok(());
    }
    // Only `serve` (above) and `migrate` create a database; every other
    // command opens the one that is there.
    let store = if let Command::Migrate = cli.command {
        let progress = progress::Reporter::new(cli.json, "migrate", "migrations");
        let store = Store::connect_and_migrate_with(&settings.database, Some(&progress)).await;
        progress.finish();
        store?
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
    let result = dispatch(cli.command, &service, &out).await;
    store.close().await;
    result
}

/// Runs an admin command as the operator: the same service functions, and
/// so the same rules and audit trail, as the HTTP API.
async fn dispatch(command: Command, service: &Service, out: &Output) -> Result<(), CliError> {
    let operator = Principal::operator();
    match command {
        Command::Serve
        | Command::Postman(_)
        | Command::Backup { .. }
        | Command::Restore { .. }
        | Command::Healthcheck { .. }
        | Command::MasterKey(MasterKeyCommand::Generate { .. }) => {
            unreachable!("handled before connecting")
        }
        Command::MasterKey(MasterKeyCommand::Rotate) => master_key::rotate(service, out).await?,
        Command::Migrate => out.print(json!({ "migrated": true }), "database is up to date"),
        Command::Issuer(command) => issuer::run(command, service, &operator, out).await?,
        Command::Tenant(command) => tenant::run(command, service, &operator, out).await?,
        Command::User(command) => user::run(command, service, &operator, out).await?,
        Command::Key(command) => key::run(command, service, &operator, out).await?,
        Command::SigningKey(command) => signing_key::run(command, service, out).await?,
    }
    Ok(())
}
