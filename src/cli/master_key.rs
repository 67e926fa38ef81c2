//! `keyport master-key …`: generate a master key (no database) and re-seal
//! every sealed value under the current one.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;

use super::CliError;
use super::output::Output;
use crate::service::Service;

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

/// `master-key generate`: a new key file; needs no database.
pub(super) fn generate(file: &Path, out: &Output) -> Result<(), CliError> {
    let key = crate::sealing::MasterKey::generate();
    key.write_new_file(file)?;
    out.print(
        json!({ "file": file.display().to_string(), "key_id": key.id() }),
        &format!(
            "wrote master key {} to {} (mode 0600); give every instance the same one",
            key.id(),
            file.display()
        ),
    );
    Ok(())
}

/// `master-key rotate`: re-seal under the current key.
pub(super) async fn rotate(service: &Service, out: &Output) -> Result<(), CliError> {
    let progress = super::progress::Reporter::new(out.json, "master-key rotate", "values");
    let report = service.store.reseal_all_with(&progress).await;
    progress.finish();
    let report = report?;
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
    Ok(())
}
