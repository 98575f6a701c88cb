//! Attacks on `enable`: a local user's links where the candidate daemon.json
//! used to be written for `dockerd --validate`, and `--validate` itself
//! creating the remap account (dockerd 26+) during a dry run. The real
//! engines come from `scripts/engines` (fetched when missing).

use std::path::{Path, PathBuf};

use crate::support::engine;
use crate::support::fingerprint::*;
use crate::support::scene::*;
use crate::support::*;

/// How many process ids, from 1, the attacker plants for.
const PLANTED_PIDS: u32 = 500;

/// The unpacked engine (`20.10`, `26`, `28`), fetched when missing.
fn engine(version: &str) -> PathBuf {
    engine::unpacked(version).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Shell lines putting the engine's dockerd (and its docker-proxy) first
/// in /usr/sbin, where docker-userns looks for dockerd; the rest of
/// /usr/sbin (useradd, ...) stays visible below it.
fn use_engine(dir: &Path) -> String {
    let lower = format!("lowerdir={}:/usr/sbin", dir.join("usr/sbin").display());
    format!(
        "mount -t overlay docker-userns-engine -o {} /usr/sbin\n",
        shell_quote(&lower)
    )
}

/// A scene whose /etc has no dockremap and no /etc/subuid or /etc/subgid,
/// and an empty /etc/docker: a host about to be remapped for the first time.
fn fresh_scene() -> Scene {
    let scene = Scene::new();
    for name in ["subuid", "subgid", "subuid-", "subgid-"] {
        let _ = std::fs::remove_file(scene.etc(name));
    }
    let _ = std::fs::remove_dir_all(scene.etc("docker"));
    std::fs::create_dir(scene.etc("docker")).unwrap();
    for name in ["passwd", "group", "shadow", "gshadow"] {
        let text = std::fs::read_to_string(scene.etc(name)).unwrap_or_default();
        assert!(
            !text.lines().any(|l| l.starts_with("dockremap:")),
            "the machine's /etc/{name} already has dockremap"
        );
    }
    scene
}

/// Runs `enable ARGS` with `env` in front, as root, against a daemon that
/// is not there (`--restart-command /bin/true`); the last stdout line is
/// `rc=<exit status> pid=<the tool's pid>`.
fn enable(engine: &Path, env: &str, args: &str) -> String {
    format!(
        r#"{}
set +e
{env} "$BIN" enable --host "unix://$T/no-daemon.sock" --restart-command /bin/true \
    --timeout 1 --data-root "$T/data" {args} &
pid=$!
wait $pid
echo "rc=$? pid=$pid"
"#,
        use_engine(engine)
    )
}

/// Exit status and pid from the script's last line.
fn status_and_pid(stdout: &str) -> (i32, u32) {
    let last = stdout.lines().last().unwrap_or_default();
    let field = |name: &str| {
        last.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {last:?}"))
    };
    (field("rc=") as i32, field("pid=") as u32)
}

/// The attacker (uid 1000) plants, for each of the first process ids,
/// `<dir>/docker-userns-validate.<pid>/daemon.json -> /etc/shadow` in /tmp
/// and in a TMPDIR of their own, `/tmp/u`. The tool then runs in a new pid
/// namespace, where it gets one of those ids whatever else the machine is
/// running: the ids an attacker would guess.
fn plant_validate_links() -> String {
    let perl = format!(
        r#"perl -e 'mkdir "/tmp/u", 0755 or die;
for my $pid (1 .. {PLANTED_PIDS}) {{
  for my $dir ("/tmp", "/tmp/u") {{
    mkdir "$dir/docker-userns-validate.$pid", 0755 or die;
    symlink "/etc/shadow", "$dir/docker-userns-validate.$pid/daemon.json" or die;
  }}
}}'"#
    );
    as_uid(USER, &perl)
}

/// Whether the tool's pid was one the attacker planted for, so the attack
/// would have hit the old predictable name.
fn planted_for(pid: u32) -> bool {
    (1..=PLANTED_PIDS).contains(&pid)
}

/// `script` in a new pid namespace (with its own /proc), so the pids it
/// hands out start at 1.
fn in_new_pid_namespace(script: &str) -> String {
    format!(
        "unshare --pid --fork --mount-proc -- /bin/sh -ec {}\n",
        shell_quote(script)
    )
}

/// Plants, fingerprints /etc and /tmp, runs `enable ARGS` with an
/// attacker's TMPDIR; asserts the links were in the tool's way and that
/// nothing in /etc or /tmp changed. Returns the tool's exit status.
fn enable_past_planted_links(scene: &Scene, engine: &Path, args: &str) -> (i32, String) {
    scene.run_ok(&plant_validate_links());
    let shadow = fingerprint_all(&[scene.etc("shadow")]);
    let etc = scene.etc_fingerprint();
    let tmp = fingerprint_tree(&scene.path("tmp"));
    let out = scene.run(&in_new_pid_namespace(&enable(
        engine,
        "TMPDIR=/tmp/u",
        args,
    )));
    let stdout = stdout(&out);
    let (rc, pid) = status_and_pid(&stdout);
    assert!(
        planted_for(pid),
        "the tool ran as pid {pid}, outside the planted 1..={PLANTED_PIDS}: the attack proves nothing"
    );
    let shadow_after = fingerprint_all(&[scene.etc("shadow")]);
    assert_unchanged("/etc/shadow", &shadow, &shadow_after);
    assert_unchanged("/etc", &etc, &scene.etc_fingerprint());
    assert_unchanged("/tmp", &tmp, &fingerprint_tree(&scene.path("tmp")));
    (rc, format!("{stdout}{}", stderr(&out)))
}

#[test]
fn enable_dry_run_does_not_write_through_planted_validate_links_to_etc_shadow() {
    let scene = fresh_scene();
    let (rc, output) = enable_past_planted_links(&scene, &engine("26"), "--dry-run");
    assert_eq!(rc, 1, "a dry run with changes pending exits 1:\n{output}");
}

#[test]
fn enable_does_not_write_through_planted_validate_links_to_etc_shadow() {
    let scene = fresh_scene();
    let engine = engine("28");
    // The account and ranges exist already (made by an earlier run), so the
    // whole file is validated before the write and /etc/shadow is not ours
    // to change.
    scene.run_ok(&format!(
        "{}\"$BIN\" enable --no-restart --data-root \"$T/data\"\nrm /etc/docker/daemon.json\n",
        use_engine(&engine)
    ));
    let (rc, output) = enable_past_planted_links(&scene, &engine, "");
    // No daemon answers: daemon.json is written, then rolled back.
    assert_eq!(rc, 2, "{output}");
    assert!(output.contains("rolled back"), "{output}");
}

/// `enable --dry-run` with no dockremap yet on `version`: every file of
/// /etc stays byte for byte, and absent subuid/subgid stay absent.
fn dry_run_creates_nothing(version: &str) {
    let scene = fresh_scene();
    let engine = engine(version);
    let etc = scene.etc_fingerprint();
    let out = scene.run(&enable(&engine, "", "--dry-run"));
    let (rc, _) = status_and_pid(&stdout(&out));
    assert_unchanged("/etc", &etc, &scene.etc_fingerprint());
    assert!(!scene.etc("subuid").exists() && !scene.etc("subgid").exists());
    assert_eq!(
        rc,
        1,
        "dry run on dockerd {version}:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("dockremap"),
        "the plan names the account it would create:\n{}",
        stdout(&out)
    );
}

#[test]
fn enable_dry_run_on_dockerd_26_does_not_let_validate_create_dockremap() {
    dry_run_creates_nothing("26");
}

#[test]
fn enable_dry_run_on_dockerd_28_does_not_let_validate_create_dockremap() {
    dry_run_creates_nothing("28");
}

#[test]
fn enable_dry_run_on_dockerd_20_10_changes_nothing() {
    dry_run_creates_nothing("20.10");
}

#[test]
fn enable_refuses_a_daemon_json_dockerd_rejects_before_creating_anything() {
    let scene = fresh_scene();
    std::fs::write(scene.etc("docker/daemon.json"), "{\"debg\": true}\n").unwrap();
    let etc = scene.etc_fingerprint();
    let out = scene.run(&enable(&engine("28"), "", ""));
    let (rc, _) = status_and_pid(&stdout(&out));
    assert_unchanged("/etc", &etc, &scene.etc_fingerprint());
    let message = stderr(&out);
    assert_eq!(rc, 2, "{message}");
    assert!(
        message.contains("dockerd --validate rejects") && message.contains("debg"),
        "{message}"
    );
}

#[test]
fn enable_creates_the_account_itself_then_dockerd_26_accepts_the_whole_file() {
    let scene = fresh_scene();
    let plan = scene.run_ok(&enable(&engine("26"), "", "--dry-run --format json"));
    let out = scene.run(&enable(&engine("26"), "", "--no-restart"));
    let (rc, _) = status_and_pid(&stdout(&out));
    assert_eq!(rc, 0, "{}{}", stdout(&out), stderr(&out));
    let daemon_json = std::fs::read_to_string(scene.etc("docker/daemon.json")).unwrap();
    assert!(
        daemon_json.contains("\"userns-remap\": \"default\""),
        "{daemon_json}"
    );
    // The ranges are the ones the dry run announced: ours, not dockerd's.
    for name in ["subuid", "subgid"] {
        let text = std::fs::read_to_string(scene.etc(name)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: {text}");
        let start = lines[0].split(':').nth(1).unwrap();
        assert!(
            plan.contains(start),
            "{name} {text} is not in the plan {plan}"
        );
    }
    let passwd = std::fs::read_to_string(scene.etc("passwd")).unwrap();
    assert_eq!(
        passwd
            .lines()
            .filter(|l| l.starts_with("dockremap:"))
            .count(),
        1
    );
}
