//! `keyport postman export`: the Postman collection (needs no database).

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::CliError;
use super::output::Output;
use crate::config::Settings;

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

/// `postman export`: settings only, no database.
pub(super) fn export(
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
