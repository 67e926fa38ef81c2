//! `keyport serve` run as a process of its own.

use std::time::Duration;

use super::{Sent as _, client_credentials, master_key_env, string_in};

/// `keyport serve` as a process of its own, on the port the OS picked (read
/// from its `listening on port N` log line), its log lines collected;
/// killed when dropped.
pub struct ServedBinary {
    pub child: std::process::Child,
    pub port: u16,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ServedBinary {
    /// An access token for the key `id`; panics unless the server issues one.
    pub async fn token(&self, http: &reqwest::Client, id: &str, secret: &str) -> String {
        let response = client_credentials(http, self.url("/oauth/token"), id, secret)
            .sent()
            .await;
        string_in(response, 200, "access_token").await
    }

    /// A `keyport` command with the environment every served test needs:
    /// `url`'s database, port 0, `workers` workers, info logs.
    pub fn command(url: &str, workers: u32) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keyport"));
        command
            .env("KEYPORT_DATABASE_URL", url)
            .env("KEYPORT_BIND", "127.0.0.1:0")
            .env("KEYPORT_WORKERS", workers.to_string())
            .envs(master_key_env(url))
            .env("RUST_LOG", "info");
        command
    }

    /// Runs `command serve`, appending its log lines to `log`; panics with
    /// the log if it never says which port it listens on.
    pub fn start(
        mut command: std::process::Command,
        log: std::sync::Arc<std::sync::Mutex<String>>,
    ) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = command
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start keyport serve");
        let stderr = child.stderr.take().expect("stderr");
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let sink = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
                drop(log);
                if let Some(rest) = line.split("listening on port ").nth(1) {
                    let port = rest.split_whitespace().next().unwrap_or("").parse();
                    let _ = port_tx.send(port.unwrap_or(0u16));
                }
            }
        });
        let Ok(port) = port_rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "keyport serve never said which port it listens on:\n{}",
                log.lock().unwrap_or_else(|e| e.into_inner())
            );
        };
        ServedBinary { child, port, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A plain-HTTP URL on the served port.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }
}

impl Drop for ServedBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test server written in Python (`tests/clients/NAME.py DIR ARGS…`) that
/// keeps what it receives in a fresh directory and says `listening on port
/// N` first: the process, its directory and its port.
pub fn python_server(name: &str, args: &[&str]) -> (std::process::Child, std::path::PathBuf, u16) {
    use std::io::{BufRead, BufReader};
    let dir = std::env::temp_dir().join(format!("keyport-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a directory for the server");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(format!("{name}.py"));
    let mut child = std::process::Command::new(crate::python_client::python_interpreter())
        .arg(script)
        .arg(&dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("start {name}.py: {err}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .unwrap_or_else(|err| panic!("{name}.py says its port: {err}"));
    let port = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (child, dir, port)
}
