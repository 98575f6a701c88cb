//! What the suites share: the binary under test, the root check, output
//! helpers, and the fixtures in the submodules (temp roots, attack scenes,
//! file fingerprints, Docker engines, the real-dockerd harness, shift trees).

pub mod engine;
pub mod fingerprint;
pub mod harness;
pub mod root;
pub mod scene;
pub mod shift;

use std::path::Path;
use std::process::{Command, Output};

pub use fingerprint::assert_same_tree;
pub use root::*;
pub use scene::PrivateEtc;

pub const BIN: &str = env!("CARGO_BIN_EXE_docker-userns");

/// These tests create accounts, chown files, set capabilities and mount
/// namespaces: they need root and say so instead of passing vacuously.
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test must run as root (it creates accounts, chowns files, sets capabilities \
         and mounts namespaces)"
    );
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `action` of each entry of a report's `actions`, in order.
pub fn action_kinds(out: &serde_json::Value) -> Vec<String> {
    out["actions"]
        .as_array()
        .unwrap_or_else(|| panic!("no actions: {out}"))
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_owned())
        .collect()
}

/// The entry of `check --format json`'s `checks` with this id.
pub fn check_entry<'a>(checked: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    checked["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
}

/// The checks of `check --format json` that are neither ok nor skipped,
/// but for the ids in `except`, each as `"id" "status": "detail"`.
pub fn unclean_checks(checked: &serde_json::Value, except: &[&str]) -> Vec<String> {
    checked["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "ok" && c["status"] != "skip")
        .filter(|c| !except.iter().any(|id| c["id"] == *id))
        .map(|c| format!("{} {}: {}", c["id"], c["status"], c["detail"]))
        .collect()
}

/// `text` as one single-quoted shell word.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `cp -a /etc DEST`: the copy a private namespace mounts over /etc.
pub fn copy_etc(dest: &Path) {
    let status = Command::new("cp")
        .args(["-a", "/etc"])
        .arg(dest)
        .status()
        .unwrap();
    assert!(status.success(), "copying /etc");
}

/// `sh -ec PRELUDE SCRIPT` in a new private mount namespace, with `$T` the
/// scratch dir `dir` (whose mounts the prelude makes) and `$BIN`
/// docker-userns.
pub fn in_private_mounts(dir: &Path, prelude: &str, script: &str) -> Command {
    let mut command = Command::new("unshare");
    command
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-ec",
        ])
        .arg(format!("{prelude}{script}"))
        .env("T", dir)
        .env("BIN", BIN);
    command
}
