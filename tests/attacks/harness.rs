//! The stage every attack is played on: a scene directory holding a copy of
//! /etc, a private /tmp and scratch space, a script runner that enters a
//! private mount namespace where the copy *is* /etc, ways to act as an
//! unprivileged user or as a remapped container's root, and fingerprints of
//! files that prove a target was left exactly as it was.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_docker-userns");

/// A local unprivileged user (owns /tmp names, its home).
pub const USER: u32 = 1000;
/// Root inside a container remapped to the default first range.
pub const CONTAINER_ROOT: u32 = 100000;

pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the attack suite must run as root: it plays the attacker with setpriv and mounts namespaces"
    );
}

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
        let status = Command::new("cp")
            .args(["-a", "/etc"])
            .arg(dir.path().join("etc"))
            .status()
            .unwrap();
        assert!(status.success(), "copying /etc");
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).unwrap();
        Scene { dir }
    }

    /// `$T`, as seen from outside the namespace too.
    pub fn dir(&self) -> &Path {
        self.dir.path()
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
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-ec",
            ])
            .arg(format!("{prelude}{script}"))
            .env("T", self.dir.path())
            .env("BIN", BIN)
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
}

/// A shell command line that runs `command` (sh -c) as `uid:uid` with no
/// supplementary groups and no capabilities: the attacker.
pub fn as_uid(uid: u32, command: &str) -> String {
    format!(
        "setpriv --reuid={uid} --regid={uid} --clear-groups --inh-caps=-all -- /bin/sh -ec {}",
        shell_quote(command)
    )
}

pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// What must not change about one file: kind, bytes (or link target),
/// owner, mode, inode, link count and every xattr (ACLs, capabilities).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub kind: &'static str,
    pub content: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub ino: u64,
    pub nlink: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

pub type Fingerprints = BTreeMap<PathBuf, Fingerprint>;

/// One file, not following a final symlink.
pub fn fingerprint(path: &Path) -> Fingerprint {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ft = meta.file_type();
    let (kind, content) = if ft.is_symlink() {
        let target = fs::read_link(path).unwrap();
        ("symlink", target.into_os_string().into_encoded_bytes())
    } else if ft.is_file() {
        ("file", fs::read(path).unwrap())
    } else if ft.is_dir() {
        ("dir", Vec::new())
    } else {
        ("special", Vec::new())
    };
    Fingerprint {
        kind,
        content,
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode(),
        ino: meta.ino(),
        nlink: meta.nlink(),
        xattrs: xattrs(path),
    }
}

fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 64 * 1024];
    let Ok(len) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return BTreeMap::new();
    };
    names.truncate(len);
    let mut out = BTreeMap::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 64 * 1024];
        if let Ok(len) = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..]) {
            value.truncate(len);
            out.insert(name, value);
        }
    }
    out
}

/// Every entry below `dir` (and `dir` itself), without following links.
pub fn fingerprint_tree(dir: &Path) -> Fingerprints {
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

fn walk(path: &Path, out: &mut Fingerprints) {
    let print = fingerprint(path);
    let is_dir = print.kind == "dir";
    out.insert(path.to_owned(), print);
    if is_dir {
        let mut entries: Vec<_> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for entry in entries {
            walk(&entry, out);
        }
    }
}

/// Fingerprints of a list of paths (each alone, not recursive).
pub fn fingerprint_all(paths: &[PathBuf]) -> Fingerprints {
    paths.iter().map(|p| (p.clone(), fingerprint(p))).collect()
}

/// Fails naming every entry that differs, appeared or vanished.
pub fn assert_unchanged(what: &str, before: &Fingerprints, after: &Fingerprints) {
    let mut diffs = Vec::new();
    for (path, old) in before {
        match after.get(path) {
            None => diffs.push(format!("{} vanished", path.display())),
            Some(new) if new != old => diffs.push(format!(
                "{} changed:\n    before {:?}\n    after  {:?}",
                path.display(),
                brief(old),
                brief(new)
            )),
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("{} appeared", path.display()));
    }
    assert!(
        diffs.is_empty(),
        "the attack changed {what}:\n  {}",
        diffs.join("\n  ")
    );
}

fn brief(f: &Fingerprint) -> String {
    format!(
        "{} {}:{} {:o} ino {} nlink {} {} bytes xattrs {:?}",
        f.kind,
        f.uid,
        f.gid,
        f.mode,
        f.ino,
        f.nlink,
        f.content.len(),
        f.xattrs.keys().collect::<Vec<_>>()
    )
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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
