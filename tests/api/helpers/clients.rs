//! Third-party clients (Node, Python) run as processes: what they print.

use serde_json::Value;

/// The last non-empty line a client script printed, as JSON, after
/// asserting it succeeded; `what` names it in a failure.
pub fn findings(output: std::process::Output, what: &str) -> Value {
    let (stdout, stderr) = succeeded(&output, what);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{what} printed nothing; stderr: {stderr}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("findings are not JSON ({e}): {line}"))
}

/// What a process printed (stdout, stderr), after asserting it succeeded;
/// `what` names it in a failure.
pub fn succeeded(output: &std::process::Output, what: &str) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    (stdout, stderr)
}
