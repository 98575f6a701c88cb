//! Temp roots shaped like real systems, given to `--root`, their
//! snapshots, and a small Docker data root to migrate.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::BIN;
use super::fingerprint::{Fingerprints, fingerprint_tree};

pub struct TestRoot {
    pub dir: tempfile::TempDir,
}

pub const DEBIAN_PASSWD: &str = "root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
_apt:x:42:65534::/nonexistent:/usr/sbin/nologin
systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/bash
";
pub const DEBIAN_GROUP: &str = "root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:alice
nogroup:x:65534:
systemd-network:x:998:
alice:x:1000:
";
pub const DEBIAN_SHADOW: &str = "root:*:19700:0:99999:7:::
daemon:*:19700:0:99999:7:::
bin:*:19700:0:99999:7:::
sys:*:19700:0:99999:7:::
nobody:*:19700:0:99999:7:::
_apt:*:19700:0:99999:7:::
systemd-network:!*:19700::::::
alice:$y$j9T$abc:19700:0:99999:7:::
";
pub const DEBIAN_GSHADOW: &str = "root:*::
daemon:*::
bin:*::
sys:*::
adm:*::alice
nogroup:*::
systemd-network:!::
alice:!::
";

impl TestRoot {
    /// A Debian-like root: account files, login.defs, shadow's tools
    /// present (never run: under --root accounts are direct edits), nologin.
    pub fn debian() -> Self {
        let root = TestRoot::bare();
        root.write("etc/passwd", DEBIAN_PASSWD, 0o644);
        root.write("etc/group", DEBIAN_GROUP, 0o644);
        root.write("etc/shadow", DEBIAN_SHADOW, 0o640);
        root.write("etc/gshadow", DEBIAN_GSHADOW, 0o640);
        fs::copy("/etc/login.defs", root.path("etc/login.defs")).unwrap();
        for tool in ["useradd", "groupadd", "nologin"] {
            root.write(&format!("usr/sbin/{tool}"), "#!/bin/false\n", 0o755);
        }
        root
    }

    /// A BusyBox-style root: account files but no shadow tools at all.
    pub fn busybox_style() -> Self {
        let root = TestRoot::bare();
        root.write(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/ash\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n",
            0o644,
        );
        root.write(
            "etc/group",
            "root:x:0:root\nnogroup:x:65533:\nnobody:x:65534:\n",
            0o644,
        );
        root.write("etc/shadow", "root:*::0:::::\nnobody:!::0:::::\n", 0o640);
        root.write("sbin/nologin", "#!/bin/false\n", 0o755);
        root
    }

    pub fn bare() -> Self {
        TestRoot {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>, mode: u32) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut full = vec!["--root", self.root().to_str().unwrap()];
        full.extend_from_slice(args);
        Command::new(BIN)
            .args(&full)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }

    /// Runs with `--format json` and parses the one object on stdout.
    pub fn run_json(&self, args: &[&str]) -> (i32, Value) {
        let mut full = args.to_vec();
        full.extend(["--format", "json"]);
        let out = self.run(&full);
        let value: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap(), value)
    }

    /// Every entry under the root, by relative path, fingerprinted.
    pub fn snapshot(&self) -> Fingerprints {
        fingerprint_tree(self.root())
            .into_iter()
            .filter_map(|(path, print)| {
                let rel = path.strip_prefix(self.root()).unwrap();
                (rel != Path::new("")).then(|| (rel.to_owned(), print))
            })
            .collect()
    }
}

/// A small non-remapped Docker data root under `root/var/lib/docker`, laid
/// out as dockerd 20.10 leaves it: an image, one overlay2 layer with files
/// of two owners (one setuid), a container whose config keeps absolute
/// paths, and a named volume.
pub fn fake_docker_state(root: &TestRoot) {
    use std::os::unix::fs::{chown, symlink};
    let d = "var/lib/docker";
    root.write(
        &format!("{d}/image/overlay2/imagedb/content/sha256/abc"),
        "{}",
        0o600,
    );
    root.write(
        &format!("{d}/image/overlay2/repositories.json"),
        "{}",
        0o600,
    );
    root.write(&format!("{d}/overlay2/L1/diff/etc/motd"), "hi\n", 0o644);
    root.write(
        &format!("{d}/overlay2/L1/diff/home/u/tool"),
        "#!/bin/sh\n",
        0o755,
    );
    chown(
        root.path(&format!("{d}/overlay2/L1/diff/home/u/tool")),
        Some(1000),
        Some(1000),
    )
    .unwrap();
    // A file capability, which chown would drop too.
    let ping = root.path(&format!("{d}/overlay2/L1/diff/etc/motd"));
    let status = Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(&ping)
        .status()
        .unwrap();
    assert!(status.success(), "setcap (libcap2-bin) is needed");
    // After the chown, which would clear it.
    fs::set_permissions(
        root.path(&format!("{d}/overlay2/L1/diff/home/u/tool")),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    chown(
        root.path(&format!("{d}/overlay2/L1/diff/home/u")),
        Some(1000),
        Some(1000),
    )
    .unwrap();
    fs::create_dir_all(root.path(&format!("{d}/overlay2/L1/work"))).unwrap();
    root.write(&format!("{d}/overlay2/L1/link"), "ABC", 0o644);
    fs::create_dir_all(root.path(&format!("{d}/overlay2/l"))).unwrap();
    symlink("../L1/diff", root.path(&format!("{d}/overlay2/l/ABC"))).unwrap();
    let config = serde_json::json!({
        "ID": "C1",
        "LogPath": "/var/lib/docker/containers/C1/C1-json.log",
        "HostnamePath": "/var/lib/docker/containers/C1/hostname",
        "HostsPath": "/var/lib/docker/containers/C1/hosts",
        "ResolvConfPath": "/var/lib/docker/containers/C1/resolv.conf",
        "MountPoints": {"/data": {"Source": "/var/lib/docker/volumes/v/_data", "Name": "v"}, "/srv": {"Source": "/srv/x"}}
    });
    root.write(
        &format!("{d}/containers/C1/config.v2.json"),
        config.to_string(),
        0o600,
    );
    for file in ["hostname", "hosts", "resolv.conf"] {
        root.write(&format!("{d}/containers/C1/{file}"), "x\n", 0o644);
    }
    fs::create_dir_all(root.path(&format!("{d}/containers/C1/mounts"))).unwrap();
    root.write(&format!("{d}/volumes/v/_data/f"), "data\n", 0o640);
    chown(
        root.path(&format!("{d}/volumes/v/_data/f")),
        Some(1000),
        Some(0),
    )
    .unwrap();
    root.write(&format!("{d}/volumes/metadata.db"), "", 0o600);
    root.write(&format!("{d}/network/files/local-kv.db"), "", 0o644);
    // dockerd 20.10 makes these 0710 (owned by the remapped root's group
    // when remapping is on).
    for dir in ["overlay2/L1", "containers/C1", "containers/C1/mounts"] {
        fs::set_permissions(
            root.path(&format!("{d}/{dir}")),
            fs::Permissions::from_mode(0o710),
        )
        .unwrap();
    }
}
