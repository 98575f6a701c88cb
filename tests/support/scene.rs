//! Private copies of /etc that scripts run against in their own mount
//! namespace: the attack stage (a scene with a private /tmp, ways to act as
//! an unprivileged user or as a remapped container's root) and a plain
//! private /etc for the account-tool and concurrency tests.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::fingerprint::{Fingerprints, assert_unchanged, fingerprint_tree};
use super::{copy_etc, in_private_mounts, require_root, shell_quote, stderr};

/// A local unprivileged user (owns /tmp names, its home).
pub const USER: u32 = 1000;
/// Root inside a container remapped to the default first range.
pub const CONTAINER_ROOT: u32 = 100000;

/// A scene: `$T/etc` (a copy of the machine's /etc, mounted over /etc in
/// the namespace), `$T/tmp` (mounted over /tmp, mode 1777), and free space
/// under `$T` for trees, images and bind-mount sources. `$T` lives in
/// /var/tmp and is 0755 so every attacker id can reach inside it.
pub struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    pub fn new() -> Self {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("attack.")
            .tempdir_in("/var/tmp")
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        copy_etc(&dir.path().join("etc"));
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).unwrap();
        Scene { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The scene's copy of a file of /etc (`etc("shadow")`).
    pub fn etc(&self, name: &str) -> PathBuf {
        self.dir.path().join("etc").join(name)
    }

    /// Runs `script` with `sh -e` in a private mount namespace where
    /// `$T/etc` is /etc and `$T/tmp` is /tmp; `$BIN` is docker-userns.
    /// Returns the output whatever the exit status: attacks expect refusals.
    pub fn run(&self, script: &str) -> Output {
        // The binary may live under /tmp (a checkout there): bind it into
        // the scene first, so the private /tmp does not hide it.
        let prelude = r#"
: > "$T/docker-userns"
mount --bind "$BIN" "$T/docker-userns"
BIN="$T/docker-userns"
mount --bind "$T/etc" /etc
mount --bind "$T/tmp" /tmp
"#;
        in_private_mounts(self.dir.path(), prelude, script)
            .env("NO_COLOR", "1")
            .env_remove("TMPDIR")
            .output()
            .unwrap()
    }

    /// Like [`Scene::run`], but the script must succeed; returns stdout.
    pub fn run_ok(&self, script: &str) -> String {
        let out = self.run(script);
        assert!(
            out.status.success(),
            "script failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every entry of the scene's /etc, fingerprinted.
    pub fn etc_fingerprint(&self) -> Fingerprints {
        fingerprint_tree(&self.path("etc"))
    }

    /// Runs `run` and fails unless the scene's /etc comes out of it
    /// unchanged; returns what `run` returned.
    pub fn keeping_etc<T>(&self, run: impl FnOnce() -> T) -> T {
        let before = self.etc_fingerprint();
        let out = run();
        assert_unchanged("/etc", &before, &self.etc_fingerprint());
        out
    }
}

/// A shell command line that runs `command` (sh -c) as `uid:uid` with no
/// supplementary groups and no capabilities: the attacker.
pub fn as_uid(uid: u32, command: &str) -> String {
    format!(
        "setpriv --reuid={uid} --regid={uid} --clear-groups --inh-caps=-all -- /bin/sh -ec {}",
        shell_quote(command)
    )
}

/// Makes `path` (and everything below it) owned by `uid:uid`.
pub fn chown_tree(path: &Path, uid: u32) {
    let status = Command::new("chown")
        .args(["-R", "-h", &format!("{uid}:{uid}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown -R {}", path.display());
}

/// A private copy of /etc plus scratch dirs that a script mounts over the
/// real ones inside its own mount namespace.
pub struct PrivateEtc {
    dir: tempfile::TempDir,
}

impl PrivateEtc {
    pub fn new() -> Self {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        copy_etc(&dir.path().join("etc"));
        for sub in ["home", "log", "mail"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        // Start from a host without a remap user or ranges.
        let etc = dir.path().join("etc");
        for file in ["passwd", "group", "shadow", "gshadow"] {
            let path = etc.join(file);
            let kept: String = fs::read_to_string(&path)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("dockremap:") && !l.starts_with("tester:"))
                .map(|l| format!("{l}\n"))
                .collect();
            fs::write(&path, kept).unwrap();
        }
        let _ = fs::remove_file(etc.join("subuid"));
        let _ = fs::remove_file(etc.join("subgid"));
        PrivateEtc { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs `script` with `sh -e` in a new mount namespace where the copy
    /// is /etc; `$BIN` is docker-userns and `$T` the scratch dir.
    pub fn run(&self, script: &str) -> String {
        let prelude = r#"
mount --bind "$T/etc" /etc
mount --bind "$T/home" /home
mount --bind "$T/log" /var/log
mount --bind "$T/mail" /var/mail
"#;
        let out = in_private_mounts(self.dir.path(), prelude, script)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "script failed: {}\nstdout:\n{stdout}",
            stderr(&out)
        );
        stdout
    }

    pub fn json(&self, name: &str) -> serde_json::Value {
        serde_json::from_slice(&fs::read(self.path(name)).unwrap()).unwrap()
    }
}
