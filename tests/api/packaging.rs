//! The packaging, as far as it can run here: no container engine starts
//! containers on these machines, so instead of building the image these
//! tests prove what its runtime stage relies on.
//!
//! - The binary needs no shared library that `debian:bookworm-slim` lacks
//!   (`ldd`, each library traced to its Debian package).
//! - It migrates, serves and answers `keyport healthcheck` as an
//!   unprivileged user, with its configuration from environment variables
//!   alone and only a `/data`-like folder writable (what the Dockerfile's
//!   `USER`, `ENV` and a `--read-only` container give it).
//! - `systemd-analyze verify` accepts `deploy/keyport.service`.
//! - The Dockerfile, compose.yaml and the unit name only settings Keyport
//!   reads, and compose.yaml says what each of its settings is for.
//!
//! These use the debug binary the suite builds anyway: which shared
//! libraries a Rust binary links is decided by its crates' link directives
//! (the standard library's libc, libm and libgcc_s; SQLite and aws-lc are
//! compiled in statically), not by the optimisation level, so the release
//! build the image ships links the same set, and no second, three-minute
//! release build is made in the tests.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::Sent as _;
use crate::helpers::ServedBinary;

const KEYPORT: &str = env!("CARGO_BIN_EXE_keyport");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(relative: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(relative))
        .unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

fn run(command: &mut Command) -> (i32, String, String) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The shared libraries the runtime image may provide, and why each is
/// there. Every one comes from `libc6` or `libgcc-s1`: `libc6` is
/// Essential in Debian and `libgcc-s1` is needed by `apt` itself (through
/// `libstdc++6`), so both are in every Debian image, `bookworm-slim`
/// included. Anything else (`libssl3`, `libsqlite3-0`, `libz`) would need
/// an `apt-get install` in the Dockerfile, and this test would say so.
const ALLOWED_LIBRARIES: &[(&str, &str)] = &[
    ("linux-vdso.so.1", "the kernel's, in every process"),
    ("ld-linux-x86-64.so.2", "libc6: the dynamic loader"),
    ("libc.so.6", "libc6"),
    ("libm.so.6", "libc6: the standard library's float functions"),
    ("libgcc_s.so.1", "libgcc-s1: unwinding, for panics"),
    ("libpthread.so.0", "libc6 (a stub since glibc 2.34)"),
    ("libdl.so.2", "libc6 (a stub since glibc 2.34)"),
    ("librt.so.1", "libc6 (a stub since glibc 2.34)"),
];
const ALLOWED_PACKAGES: &[&str] = &["libc6", "libgcc-s1"];

/// The Debian package that owns `path`, trying the path as given and as
/// resolved (bookworm's dpkg database knows some files by /lib, some by
/// /usr/lib).
fn owning_package(path: &str) -> Option<String> {
    let mut candidates = vec![path.to_owned()];
    if let Ok(real) = std::fs::canonicalize(path) {
        candidates.push(real.display().to_string());
    }
    for candidate in candidates.clone() {
        if let Some(rest) = candidate.strip_prefix("/usr") {
            candidates.push(rest.to_owned());
        } else {
            candidates.push(format!("/usr{candidate}"));
        }
    }
    candidates.into_iter().find_map(|candidate| {
        let (code, stdout, _) = run(Command::new("dpkg").args(["-S", &candidate]));
        (code == 0).then(|| {
            stdout
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
    })
}

#[test]
fn the_binary_needs_only_libraries_every_bookworm_slim_image_has() {
    let (code, stdout, stderr) = run(Command::new("ldd").arg(KEYPORT));
    assert_eq!(code, 0, "ldd failed: {stderr}");
    let allowed: BTreeSet<&str> = ALLOWED_LIBRARIES.iter().map(|(name, _)| *name).collect();
    let mut seen = Vec::new();
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // `name => /path (0x…)`, `/path (0x…)` or `name (0x…)`.
        let (name, path) = match line.split_once(" => ") {
            Some((name, rest)) => (name.to_owned(), rest.split(" (").next().map(str::to_owned)),
            None => {
                let first = line.split(" (").next().unwrap_or(line);
                let name = Path::new(first)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let path = first.starts_with('/').then(|| first.to_owned());
                (name, path)
            }
        };
        assert!(
            allowed.contains(name.as_str()),
            "the binary links {name} ({line}), which debian:bookworm-slim does not have: \
             install its package in the Dockerfile's runtime stage and add it here"
        );
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            let package =
                owning_package(&path).unwrap_or_else(|| panic!("no Debian package owns {path}"));
            let package = package.split(':').next().unwrap_or_default().to_owned();
            assert!(
                ALLOWED_PACKAGES.contains(&package.as_str()),
                "{path} comes from {package}, not from a package every Debian image has"
            );
        }
        seen.push(name);
    }
    assert!(seen.iter().any(|n| n == "libc.so.6"), "ldd said: {stdout}");
}

/// World-writable places an unprivileged process could otherwise write to.
const WORLD_WRITABLE: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/run/lock"];

/// A `keyport` command run as `nobody` in a mount namespace of its own
/// where the world-writable folders are read-only and `data` alone can be
/// written, with no environment but `env`, from `/`. (The tests run as
/// root; `unshare` and `setpriv` are util-linux's.)
fn sandboxed(binary: &Path, data: &Path, env: &[(&str, String)]) -> Command {
    let script = r#"
set -e
data="$1"; shift
for d in $WORLD_WRITABLE; do [ -d "$d" ] && mount --bind "$d" "$d"; done
mount --bind "$data" "$data"
for d in $WORLD_WRITABLE; do [ -d "$d" ] && mount -o remount,bind,ro "$d"; done
cd /
exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
  --bounding-set=-all --no-new-privs -- env -i $KEYPORT_ENV "$@"
"#;
    let mut command = Command::new("unshare");
    let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    command
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(data)
        .env("WORLD_WRITABLE", WORLD_WRITABLE.join(" "))
        .env("KEYPORT_ENV", vars.join(" "))
        .arg(binary);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_migrates_serves_and_answers_healthcheck_as_nobody_writing_only_its_data() {
    assert_eq!(
        run(Command::new("id").arg("-u")).1.trim(),
        "0",
        "this test drops from root to nobody: run the suite as root (as CI does)"
    );
    // The image's layout: the binary where anyone may run it, /data owned
    // by the service's user and closed to others.
    let root: PathBuf =
        std::env::temp_dir().join(format!("keyport_pkg_{}", uuid::Uuid::new_v4().simple()));
    let cleanup = RemoveOnDrop(root.clone());
    let (bin, data) = (root.join("bin"), root.join("data"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    for dir in [&root, &bin] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let binary = bin.join("keyport");
    std::fs::copy(KEYPORT, &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();

    // Its whole configuration: environment variables (no file, no HOME).
    let env = [
        (
            "KEYPORT_DATABASE_URL",
            format!("sqlite://{}/keyport.db", data.display()),
        ),
        ("KEYPORT_BIND", "127.0.0.1:0".to_owned()),
        ("KEYPORT_WORKERS", "1".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];

    // The sandbox is what it claims: nobody writes to /data and nowhere else.
    let probe = run(sandboxed(Path::new("/bin/sh"), &data, &[]).args([
        "-c",
        &format!(
            "id -u; touch {}/probe && echo data; for d in / /tmp /var/tmp {}; do \
             touch $d/keyport-probe 2>/dev/null && echo wrote $d; done; rm -f {}/probe",
            data.display(),
            root.display(),
            data.display()
        ),
    ]));
    assert_eq!(probe.1, "65534\ndata\n", "sandbox: {probe:?}");

    let migrate = run(sandboxed(&binary, &data, &env).arg("migrate"));
    assert_eq!(migrate.0, 0, "migrate as nobody: {migrate:?}");

    let log = Arc::new(Mutex::new(String::new()));
    let server = ServedBinary::start(sandboxed(&binary, &data, &env), log);
    let readyz = format!("http://127.0.0.1:{}/readyz", server.port);
    let healthcheck = tokio::task::spawn_blocking({
        let (binary, data, env) = (binary.clone(), data.clone(), env.clone());
        move || run(sandboxed(&binary, &data, &env).args(["healthcheck", "--url", &readyz]))
    })
    .await
    .unwrap();
    assert_eq!(
        healthcheck.0,
        0,
        "healthcheck as nobody: {healthcheck:?}\n{}",
        server.log()
    );
    let jwks = reqwest::Client::new()
        .get(server.url("/.well-known/jwks.json"))
        .timeout(Duration::from_secs(10))
        .sent()
        .await;
    assert_eq!(jwks.status(), 200, "{}", server.log());
    drop(server);

    // What it wrote is in /data, its own and for its eyes only.
    for entry in std::fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        let metadata = entry.metadata().unwrap();
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(metadata.uid(), 65534, "{:?}", entry.path());
        assert_eq!(
            metadata.mode() & 0o077,
            0,
            "{:?} is open to others",
            entry.path()
        );
    }
    assert!(data.join("keyport.db").exists() && data.join("keyport.master-key").exists());
    drop(cleanup);
}

/// Removes the folder when dropped, even when an assertion failed.
struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn systemd_accepts_the_unit_without_a_warning() {
    let unit = read("deploy/keyport.service");
    // `verify` checks that ExecStart's program exists: point it at the
    // binary built here instead of /usr/local/bin/keyport; nothing else
    // changes.
    assert!(unit.contains("ExecStart=/usr/local/bin/keyport serve"));
    let dir = std::env::temp_dir().join(format!("keyport_unit_{}", uuid::Uuid::new_v4().simple()));
    let _cleanup = RemoveOnDrop(dir.clone());
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keyport.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/keyport", KEYPORT)).unwrap();
    let (code, stdout, stderr) = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    // It exits 0 on unknown keys and bad values too, warning: so no output.
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        format!("{stdout}{stderr}").trim(),
        "",
        "systemd-analyze warned"
    );

    // What the unit promises.
    for line in [
        "DynamicUser=yes",
        "StateDirectory=keyport",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(line), "the unit lacks {line:?}");
    }
}

#[test]
fn the_dockerfile_builds_on_rust_and_runs_on_bookworm_slim_as_a_user_with_a_healthcheck() {
    let dockerfile = read("Dockerfile");
    let from: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(from.len(), 2, "two stages: {from:?}");
    assert!(from[0].starts_with("FROM rust:") && from[0].contains("bookworm"));
    assert_eq!(from[1], "FROM debian:bookworm-slim");
    let runtime = dockerfile
        .split("FROM debian:bookworm-slim")
        .nth(1)
        .unwrap();
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "{user}"
    );
    assert!(runtime.contains("EXPOSE 8080"));
    assert!(runtime.contains(r#"CMD ["keyport", "healthcheck"]"#));
    assert!(runtime.contains("VOLUME [\"/data\"]"));
    assert!(
        !runtime
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("curl")),
        "the healthcheck needs no curl"
    );
}

#[test]
fn compose_runs_keyport_postgres_and_redis_with_secrets_from_an_env_file_and_every_setting_explained()
 {
    let compose = read("compose.yaml");
    for service in ["  keyport:", "  postgres:", "  redis:"] {
        assert!(compose.lines().any(|l| l == service), "{service}");
    }
    assert!(compose.contains("env_file: .env"));
    let example = read("deploy/keyport.env.example");
    for name in [
        "KEYPORT_MASTER_KEY=",
        "KEYPORT_ISSUER=",
        "POSTGRES_PASSWORD=",
    ] {
        assert!(example.lines().any(|l| l.starts_with(name)), "{name}");
        assert!(!compose.contains(name), "{name} belongs in .env");
    }
    // Every key has a comment above it or beside it; list items belong to
    // the key above them.
    let mut previous = "";
    for (number, line) in compose.lines().enumerate() {
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let is_key = text.split_once(':').is_some_and(|(key, _)| {
            !key.is_empty() && !key.starts_with(['#', '-', '"']) && !key.contains(' ')
        });
        if is_key {
            assert!(
                previous.starts_with('#') || text.contains(" # "),
                "compose.yaml line {}: `{text}` has no comment",
                number + 1
            );
        }
        previous = text;
    }
}

#[test]
fn the_packaging_names_only_settings_keyport_reads() {
    let known = keyport::config::known_env_vars();
    for file in [
        "Dockerfile",
        "compose.yaml",
        "deploy/keyport.service",
        "deploy/keyport.env.example",
    ] {
        let text = read(file);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("KEYPORT_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            // `KEYPORT_*` in prose names the prefix, not a setting.
            assert!(
                name == "KEYPORT_" || known.contains(&name),
                "{file} names {name}, which is not a setting"
            );
            rest = &rest[at + name.len()..];
        }
    }
}
