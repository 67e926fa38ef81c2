//! Names the commit the binary is built from (`keyport_build_info` in
//! `/metrics`): `SOURCE_COMMIT` when the build sets it (a build from a
//! source tarball has no `.git`), else `git rev-parse`, else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_COMMIT");
    let commit = match std::env::var("SOURCE_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => {
            // Rebuild when HEAD moves: HEAD itself, the branch it names, and
            // packed refs (where a branch may live).
            // Only files that exist: cargo reruns for a missing one every time.
            let branch = git(&["symbolic-ref", "-q", "HEAD"]);
            for path in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
                if let Some(file) = git(&["rev-parse", "--git-path", path])
                    && std::path::Path::new(&file).exists()
                {
                    println!("cargo:rerun-if-changed={file}");
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    let well_formed = commit.len() <= 64
        && commit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let commit = if well_formed {
        commit
    } else {
        "unknown".to_owned()
    };
    println!("cargo:rustc-env=KEYPORT_COMMIT={commit}");
}
