//! `keyport key public-key …`: a key's public keys for private_key_jwt.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{Value, json};

use super::CliError;
use super::output::{Output, public_key_line};
use crate::domain::Principal;
use crate::service::{Service, ServiceError, public_keys};

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

/// Runs one `key public-key` command as the operator.
pub(super) async fn run(
    command: PublicKeyCommand,
    service: &Service,
    operator: &Principal,
    out: &Output,
) -> Result<(), CliError> {
    match command {
        PublicKeyCommand::Add { key, file } => {
            let jwk = read_jwk(&file)?;
            let added = public_keys::add_public_key(service, operator, &key, &jwk).await?;
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
        PublicKeyCommand::List { key } => {
            let listed = public_keys::list_public_keys(service, operator, &key).await?;
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
        PublicKeyCommand::Remove { key, thumbprint } => {
            let removed =
                public_keys::remove_public_key(service, operator, &key, &thumbprint).await?;
            out.print(
                serde_json::to_value(&removed).unwrap_or(Value::Null),
                &format!("removed public key {} from {key}", removed.thumbprint),
            );
        }
    }
    Ok(())
}

/// A public JWK from a file, or stdin for `-`.
pub(super) fn read_jwk(path: &std::path::Path) -> Result<Value, CliError> {
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
