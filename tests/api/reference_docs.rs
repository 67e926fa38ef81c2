//! The book's reference pages that are generated from the code, so they
//! cannot drift: each test renders its page and fails when the committed one
//! differs. After changing what a page is made from, regenerate it with
//! `KEYPORT_BLESS_DOCS=1 cargo test --test api reference_docs` and commit it.

use crate::helpers::Sent as _;
use std::path::PathBuf;

fn book_page(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs/src/reference")
        .join(name)
}

/// Compares `rendered` with the committed page, or writes it when blessing.
fn check_generated(name: &str, rendered: &str) {
    let path = book_page(name);
    if std::env::var_os("KEYPORT_BLESS_DOCS").is_some() {
        std::fs::write(&path, rendered).expect("write the generated page");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != rendered {
        let line = committed
            .lines()
            .zip(rendered.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || committed.lines().count().min(rendered.lines().count()) + 1,
                |n| n + 1,
            );
        panic!(
            "docs/src/reference/{name} is stale (first difference at line {line}): \
             regenerate it with `KEYPORT_BLESS_DOCS=1 cargo test --test api reference_docs` \
             and commit it"
        );
    }
}

/// One key of `config/default.toml`: its section, the comment above it.
struct ConfigKey {
    section: String,
    name: String,
    default: String,
    comment: String,
    env_line: String,
}

/// Reads `config/default.toml` as its comments document it: a `# --- Title
/// ---` line starts a section; a comment block describes the keys right
/// below it (until a blank line); its `# env:` line names their variables.
fn config_keys(text: &str) -> Vec<ConfigKey> {
    let mut keys = Vec::new();
    let mut section = "Server and database".to_owned();
    let mut comment: Vec<String> = Vec::new();
    let mut env_line = String::new();
    let mut in_env = false;
    let mut preamble = true;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            if preamble && !comment.is_empty() {
                preamble = false;
            }
            comment.clear();
            env_line.clear();
            in_env = false;
            continue;
        }
        if let Some(title) = trimmed
            .strip_prefix("# ---")
            .and_then(|t| t.strip_suffix("---"))
        {
            section = title.trim().to_owned();
            comment.clear();
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('#') {
            let rest = rest.trim();
            if let Some(env) = rest.strip_prefix("env:") {
                env_line = env.trim().to_owned();
                in_env = true;
            } else if in_env && rest.starts_with("KEYPORT_") {
                env_line.push(' ');
                env_line.push_str(rest);
            } else {
                in_env = false;
                comment.push(rest.to_owned());
            }
            continue;
        }
        preamble = false;
        let (name, default) = trimmed.split_once('=').expect("a `key = value` line");
        keys.push(ConfigKey {
            section: section.clone(),
            name: name.trim().to_owned(),
            default: default.trim().to_owned(),
            comment: comment.join(" "),
            env_line: env_line.clone(),
        });
    }
    keys
}

fn env_name(key: &str) -> String {
    format!("KEYPORT_{}", key.to_uppercase())
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Every key of `config/default.toml`, with its variable, default and
/// comment, rendered as the book's configuration reference; every key's
/// comment names its variable (else the file drifted from the code's
/// naming rule).
#[test]
fn the_configuration_reference_is_generated_from_default_toml() {
    let text = include_str!("../../config/default.toml");
    let keys = config_keys(text);
    assert!(keys.len() > 50, "read only {} keys", keys.len());
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from `config/default.toml`, the defaults the binary embeds; do not edit\n\
         by hand. A file given with `keyport --config FILE` (or `KEYPORT_CONFIG`)\n\
         overrides the defaults key by key, and each key's environment variable\n\
         (`KEYPORT_` and the key in upper case) overrides both. The [operations\n\
         guide](../operations/configuration.md) says which to set for production.\n",
    );
    let mut section = String::new();
    for key in &keys {
        let env = env_name(&key.name);
        assert!(
            key.env_line
                .split_whitespace()
                .any(|w| w.trim_end_matches(',') == env),
            "config/default.toml: the comment of `{}` does not name {env}",
            key.name
        );
        assert!(
            !key.comment.is_empty(),
            "config/default.toml: `{}` has no comment",
            key.name
        );
        if key.section != section {
            section = key.section.clone();
            out.push_str(&format!(
                "\n## {section}\n\n| key | default | environment variable | what it does |\n| --- | --- | --- | --- |\n"
            ));
        }
        out.push_str(&format!(
            "| `{}` | `{}` | `{env}` | {} |\n",
            key.name,
            cell(&key.default),
            cell(&key.comment)
        ));
    }
    check_generated("configuration.md", &out);
}

/// One line of text: newlines and runs of spaces folded, pipes escaped.
fn one_line(text: &str) -> String {
    cell(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Every path and method of `GET /openapi.json`, with what it does, the
/// scopes it needs and every answer it documents (error codes included),
/// rendered as the book's HTTP reference.
#[tokio::test]
async fn the_http_reference_is_generated_from_the_openapi_document() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
    let spec: serde_json::Value = app.client.get(app.url("/openapi.json")).sent_json().await;
    let mut out = String::from(
        "# HTTP reference\n\n\
         Generated from the OpenAPI document a running server answers at\n\
         `GET /openapi.json`; do not edit by hand. Error bodies: the token endpoint\n\
         answers as RFC 6749 §5.2 (`error`, `error_description`), resources as\n\
         RFC 6750 (a `WWW-Authenticate` challenge and a JSON body), management\n\
         endpoints `{\"error\": code, \"message\": text}`; see [endpoints and\n\
         errors](endpoints.md).\n",
    );
    let paths = spec["paths"].as_object().expect("paths");
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().expect("operations") {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            out.push_str(&format!("\n## `{} {path}`\n\n", method.to_uppercase()));
            let summary = operation["summary"].as_str().unwrap_or("");
            let description = operation["description"].as_str().unwrap_or("");
            for text in [summary, description] {
                if !text.trim().is_empty() {
                    out.push_str(&format!("{}\n\n", one_line(text)));
                }
            }
            let scopes: Vec<String> = operation["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|requirement| requirement.as_object())
                .flat_map(|requirement| {
                    requirement.iter().map(|(scheme, scopes)| {
                        let scopes: Vec<&str> = scopes
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|s| s.as_str())
                            .collect();
                        if scopes.is_empty() {
                            format!("`{scheme}`")
                        } else {
                            format!("`{scheme}` ({})", scopes.join(", "))
                        }
                    })
                })
                .collect();
            if !scopes.is_empty() {
                out.push_str(&format!("Credentials: {}.\n\n", scopes.join(" or ")));
            }
            out.push_str("| answer | when |\n| --- | --- |\n");
            for (status, response) in operation["responses"].as_object().expect("responses") {
                // Shared answers are references to `components/responses`.
                let response = match response["$ref"].as_str() {
                    Some(reference) => {
                        let name = reference.rsplit('/').next().unwrap_or("");
                        &spec["components"]["responses"][name]
                    }
                    None => response,
                };
                out.push_str(&format!(
                    "| {status} | {} |\n",
                    one_line(response["description"].as_str().unwrap_or(""))
                ));
            }
        }
    }
    check_generated("http.md", &out);
}

/// Every command and flag of `keyport`, exactly as `keyport … --help`
/// prints them (the commands found by walking the command-line parser),
/// rendered as the book's CLI reference.
#[test]
fn the_cli_reference_is_generated_from_the_command_line_parser() {
    use clap::CommandFactory;

    fn walk(command: &clap::Command, path: &mut Vec<String>, out: &mut String) {
        if command.is_hide_set() {
            return;
        }
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyport"))
            .args(path.iter())
            .arg("--help")
            .env_remove("KEYPORT_CONFIG")
            .output()
            .expect("run keyport --help");
        assert!(output.status.success(), "keyport {path:?} --help failed");
        let help = String::from_utf8_lossy(&output.stdout);
        let name = std::iter::once("keyport".to_owned())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        out.push_str(&format!(
            "\n## `{name}`\n\n```text\n{}\n```\n",
            help.trim_end()
        ));
        for sub in command.get_subcommands() {
            if sub.get_name() != "help" {
                path.push(sub.get_name().to_owned());
                walk(sub, path, out);
                path.pop();
            }
        }
    }

    let mut out = String::from(
        "# CLI reference\n\n\
         Generated from `keyport --help` and `keyport COMMAND --help`; do not edit by\n\
         hand. Add `--json` to any command for one JSON document (errors too, exit\n\
         code 1, or 2 for a usage error); `--config FILE` and the `KEYPORT_*`\n\
         variables apply to every command (see the [configuration\n\
         reference](configuration.md)).\n",
    );
    walk(&keyport::cli::Cli::command(), &mut Vec::new(), &mut out);
    check_generated("cli.md", &out);
}
