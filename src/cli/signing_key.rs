//! `keyport signing-key rotate`.

use clap::Subcommand;
use serde_json::json;

use super::CliError;
use super::output::Output;
use crate::service::Service;
use crate::tokens::KeyRing;

#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Generate a new signing key and retire the current one (still published
    /// until its tokens have expired).
    Rotate,
}

/// Runs one `signing-key` command.
pub(super) async fn run(
    command: SigningKeyCommand,
    service: &Service,
    out: &Output,
) -> Result<(), CliError> {
    let settings = service.settings.as_ref();
    match command {
        SigningKeyCommand::Rotate => {
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
