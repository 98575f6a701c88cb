//! Crash consistency: the process is aborted at every named point of
//! `enable` and `disable --purge` (built with `--features failpoints`).
//! After each crash every file is entirely old or entirely new and parses,
//! shadow's own tools are not blocked by what was left, and a rerun
//! converges to exactly the state of an uninterrupted run.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use crate::support::harness::Harness;
use crate::support::*;
use docker_userns::config::daemon_json::DaemonConfig;
use docker_userns::config::passwd::{Groups, Passwd};
use docker_userns::config::subid::SubIdFile;

const POINTS: &[&str] = &[
    "enable.before_action",
    "lock.before_link",
    "lock.held",
    "write.after_backup",
    "write.before_rename",
    "write.after_rename",
    "enable.before_restart",
    "account.between_files",
    "disable.before_purge",
    "migrate.after_journal",
    "migrate.after_move",
    "migrate.after_shift",
    "shift.entry",
    "shift.after_chown",
];

const MANAGED: &[&str] = &[
    "passwd",
    "group",
    "shadow",
    "gshadow",
    "subuid",
    "subgid",
    "docker/daemon.json",
];

/// The managed files' bytes (`None` when absent).
fn managed(root: &TestRoot) -> BTreeMap<&'static str, Option<Vec<u8>>> {
    MANAGED
        .iter()
        .map(|f| (*f, std::fs::read(root.path(&format!("etc/{f}"))).ok()))
        .collect()
}

/// Every file under the root except backups and lock files, which a crash
/// may leave with a dead owner: bytes, owner, mode (set-id bits included)
/// and the file capability.
/// Bytes, uid, gid, mode and capability of one file.
type FileState = (Vec<u8>, u32, u32, u32, Option<Vec<u8>>);

fn content(root: &TestRoot) -> BTreeMap<String, FileState> {
    root.snapshot()
        .into_iter()
        .map(|(path, print)| {
            let caps = print.xattrs.get("security.capability").cloned();
            (
                path.display().to_string(),
                (print.content, print.uid, print.gid, print.mode, caps),
            )
        })
        .filter(|(path, _)| !is_backup_or_lock(path))
        .collect()
}

fn is_backup_or_lock(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with('-')
        || name.ends_with(".bak")
        || name.ends_with(".lock")
        || name
            .rsplit_once('.')
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

fn assert_parses(root: &TestRoot) {
    let read = |f: &str| std::fs::read(root.path(&format!("etc/{f}"))).unwrap_or_default();
    let path = Path::new("x");
    Passwd::parse(path, &read("passwd")).unwrap();
    Groups::parse(path, &read("group")).unwrap();
    for f in ["subuid", "subgid"] {
        let file = SubIdFile::parse(path, &read(f)).unwrap();
        assert!(file.malformed.is_empty(), "{f}: {:?}", file.malformed);
    }
    DaemonConfig::parse(path, &read("docker/daemon.json")).unwrap();
}

/// shadow's useradd must still lock and write every file of a copy.
fn assert_shadow_not_blocked(root: &TestRoot) {
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .args(["-a"])
        .arg(root.path("etc"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("useradd")
        .args(["-M", "--prefix"])
        .arg(copy.path())
        .arg("probe")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "useradd is blocked after the crash: {}",
        stderr(&out)
    );
}

struct Scenario {
    name: &'static str,
    make: fn() -> TestRoot,
    args: &'static [&'static str],
}

fn debian_with_config() -> TestRoot {
    let root = TestRoot::debian();
    root.write("etc/docker/daemon.json", "{\n  \"debug\": true\n}\n", 0o644);
    root.write("etc/subuid", "alice:100000:65536\n", 0o644);
    root.write("etc/subgid", "alice:100000:65536\n", 0o644);
    root
}

fn busybox() -> TestRoot {
    TestRoot::busybox_style()
}

fn enabled_for_purge() -> TestRoot {
    let root = debian_with_config();
    assert_eq!(root.run(&["enable"]).status.code(), Some(0));
    root
}

fn docker_state() -> TestRoot {
    let root = debian_with_config();
    fake_docker_state(&root);
    root
}

fn migrated() -> TestRoot {
    let root = docker_state();
    assert_eq!(root.run(&["enable", "--migrate"]).status.code(), Some(0));
    root
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "enable (debian image)",
        make: debian_with_config,
        args: &["enable"],
    },
    Scenario {
        name: "enable (busybox image)",
        make: busybox,
        args: &["enable"],
    },
    Scenario {
        name: "disable --purge",
        make: enabled_for_purge,
        args: &["disable", "--purge"],
    },
    Scenario {
        name: "shift",
        make: docker_state,
        args: &[
            "shift",
            "/var/lib/docker",
            "--uid-map",
            "0:200000:65536",
            "--gid-map",
            "0:200000:65536",
        ],
    },
    Scenario {
        name: "enable --migrate",
        make: docker_state,
        args: &["enable", "--migrate"],
    },
    Scenario {
        name: "disable --migrate",
        make: migrated,
        args: &["disable", "--migrate"],
    },
];

#[test]
fn every_crash_point_leaves_consistent_files_and_a_rerun_converges() {
    require_root();
    let mut crashes = 0;
    let mut covered = std::collections::BTreeSet::new();
    for scenario in SCENARIOS {
        let reference = (scenario.make)();
        assert_eq!(
            reference.run(scenario.args).status.code(),
            Some(0),
            "{}",
            scenario.name
        );
        let want = content(&reference);
        let final_files = managed(&reference);
        for point in POINTS {
            for nth in 1.. {
                let root = (scenario.make)();
                let original = managed(&root);
                let out = Command::new(BIN)
                    .arg("--root")
                    .arg(root.root())
                    .args(scenario.args)
                    .env("DOCKER_USERNS_FAILPOINT", format!("{point}:{nth}"))
                    .output()
                    .unwrap();
                if out.status.success() {
                    break;
                }
                let at = format!("{} at {point}:{nth}", scenario.name);
                assert_eq!(
                    out.status.signal(),
                    Some(6),
                    "{at}: expected an abort, got {:?}: {}",
                    out.status,
                    stderr(&out)
                );
                crashes += 1;
                covered.insert(*point);
                for (file, bytes) in managed(&root) {
                    assert!(
                        bytes == original[file] || bytes == final_files[file],
                        "{at}: {file} is neither the old nor the new content"
                    );
                }
                assert_parses(&root);
                assert_shadow_not_blocked(&root);
                let rerun = root.run(scenario.args);
                assert_eq!(
                    rerun.status.code(),
                    Some(0),
                    "{at}: rerun failed: {}",
                    stderr(&rerun)
                );
                let got = content(&root);
                let differing: Vec<&String> = want
                    .keys()
                    .chain(got.keys())
                    .filter(|k| want.get(*k) != got.get(*k))
                    .collect();
                assert!(
                    differing.is_empty(),
                    "{at}: the rerun did not converge; differing: {differing:?}"
                );
            }
        }
    }
    eprintln!("crash points covered: {covered:?}; crashes simulated: {crashes}");
    assert_eq!(
        covered.len(),
        POINTS.len(),
        "points never reached: {covered:?}"
    );
    assert!(crashes >= 40, "only {crashes} crashes simulated");
}

/// The point after dockerd was restarted with the new configuration, with
/// a real dockerd: the files are complete, the daemon answers, and a rerun
/// finds nothing left to do and leaves the daemon alone.
#[test]
fn a_crash_after_the_restart_leaves_a_host_a_rerun_accepts() -> anyhow::Result<()> {
    use anyhow::ensure;
    let h = Harness::new()?;
    h.start()?;
    let run = |failpoint: Option<&str>| -> anyhow::Result<std::process::Output> {
        let mut command = h.ns_command(BIN);
        command
            .args(["enable", "--format", "json", "--host"])
            .arg(h.docker_host())
            .arg("--data-root")
            .arg(&h.paths().data_root)
            .arg("--restart-command")
            .arg(h.restart_command());
        if let Some(point) = failpoint {
            command.env("DOCKER_USERNS_FAILPOINT", point);
        }
        h.run(command, std::time::Duration::from_secs(240))
    };
    let crashed = run(Some("daemon.after_restart:1"))?;
    ensure!(
        crashed.status.signal() == Some(6),
        "expected an abort: {crashed:?}"
    );
    let info = h.info()?;
    ensure!(
        info.userns_active(),
        "the restarted daemon remaps: {info:?}"
    );
    let pid = h.daemon_pid();
    let rerun = run(None)?;
    ensure!(
        rerun.status.success(),
        "rerun: {}",
        String::from_utf8_lossy(&rerun.stdout)
    );
    let out: serde_json::Value = serde_json::from_slice(&rerun.stdout)?;
    ensure!(
        out["changed"] == false,
        "nothing is left to do after the restart: {out}"
    );
    ensure!(h.daemon_pid() == pid, "the rerun left the daemon alone");
    Ok(())
}
