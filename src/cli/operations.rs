//! `keyport backup FILE`, `keyport restore FILE` and `keyport healthcheck`:
//! the operator's own work on a deployment. None of them opens the database
//! through the pool: backup and restore work on the SQLite file
//! (`service/backup.rs`), and the health check asks the running server.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::CliError;
use super::output::Output;
use super::progress::Reporter;
use crate::config::Settings;
use crate::service::backup;

/// `backup FILE`: a consistent copy of the running SQLite database.
pub(super) fn backup(settings: &Settings, file: &Path, out: &Output) -> Result<(), CliError> {
    let progress = Reporter::new(out.json, "backup", "pages");
    let result = backup::backup(&settings.database, file, &progress);
    progress.finish();
    let report = result?;
    let keys = if report.master_key_ids.is_empty() {
        "no sealed values".to_owned()
    } else {
        format!(
            "restoring it needs master key {}: keep a copy of that key apart from the backup",
            report.master_key_ids.join(", ")
        )
    };
    out.print(
        serde_json::to_value(&report).unwrap_or_default(),
        &format!(
            "wrote a backup of the database to {} ({} bytes, mode 0600, schema version {}); {keys}",
            report.file.display(),
            report.bytes,
            report.schema_version,
        ),
    );
    Ok(())
}

/// `restore FILE`: the backup into the empty place `database_url` names.
pub(super) fn restore(settings: &Settings, file: &Path, out: &Output) -> Result<(), CliError> {
    let progress = Reporter::new(out.json, "restore", "bytes");
    let result = backup::restore(&settings.database, file, &progress);
    progress.finish();
    let report = result?;
    let key = match &report.master_key_id {
        Some(id) => format!("its sealed values open with master key {id}"),
        None => "it holds no sealed values".to_owned(),
    };
    out.print(
        serde_json::to_value(&report).unwrap_or_default(),
        &format!(
            "restored {} into {} (schema version {}); {key}; start the server to use it",
            file.display(),
            report.database.display(),
            report.schema_version,
        ),
    );
    Ok(())
}

/// How long the health check waits for an answer in all.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The readiness URL of the server these settings describe: `bind`'s port
/// on loopback (an address bound to every interface answers there too).
pub(super) fn readiness_url(settings: &Settings) -> Result<String, CliError> {
    let bad = || CliError::Healthcheck {
        url: settings.bind.clone(),
        reason: "cannot tell the server's port from `bind`; give --url".to_owned(),
    };
    let address: std::net::SocketAddr = settings.bind.parse().map_err(|_| bad())?;
    if address.port() == 0 {
        return Err(bad());
    }
    let host = match address.ip() {
        ip if ip.is_unspecified() && ip.is_ipv6() => "[::1]".to_owned(),
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    Ok(format!("{scheme}://{host}:{}/readyz", address.port()))
}

/// `healthcheck [--url URL]`: succeeds (exit 0) only when the server
/// answers 200 at its readiness endpoint within the timeout.
pub(super) async fn healthcheck(
    settings: &Settings,
    url: Option<&str>,
    out: &Output,
) -> Result<(), CliError> {
    let derived = url.is_none();
    let url = match url {
        Some(url) => url.to_owned(),
        None => readiness_url(settings)?,
    };
    let failed = |reason: String| CliError::Healthcheck {
        url: url.clone(),
        reason,
    };
    // The URL derived from `bind` is this server on loopback: its
    // certificate names the public host, not 127.0.0.1, and nothing secret
    // is sent, so the name is not checked there. A URL given is checked.
    let client = reqwest::Client::builder()
        .timeout(HEALTHCHECK_TIMEOUT)
        .no_proxy()
        .tls_danger_accept_invalid_certs(derived)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| failed(crate::telemetry::error_chain(&e)))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(failed(format!("it answered {status}")));
    }
    out.print(
        json!({ "ready": true, "url": url }),
        &format!("ready ({url})"),
    );
    Ok(())
}
