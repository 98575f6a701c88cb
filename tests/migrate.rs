//! `--migrate` on a temp root (offline, as for an image): what moves, what
//! is shifted, what is rewritten, and the exact way back.

use std::os::unix::fs::MetadataExt;

use crate::support::*;

/// Runs with `--format json`, timing the whole process.
fn run_timed(root: &TestRoot, args: &[&str]) -> (i32, serde_json::Value, f64) {
    let started = std::time::Instant::now();
    let (code, out) = root.run_json(args);
    (code, out, started.elapsed().as_secs_f64())
}

/// `phases` names exactly `names`, in that order, each a non-negative
/// number of seconds, adding up to no more than the command took.
fn assert_phases(out: &serde_json::Value, names: &[&str], elapsed: f64) {
    let phases = out["phases"]
        .as_object()
        .unwrap_or_else(|| panic!("no phases: {out}"));
    let keys: Vec<&str> = phases.keys().map(String::as_str).collect();
    assert_eq!(keys, names, "{out}");
    let seconds: Vec<f64> = phases.values().map(|v| v.as_f64().unwrap()).collect();
    assert!(seconds.iter().all(|s| *s >= 0.0), "{out}");
    let sum: f64 = seconds.iter().sum();
    assert!(
        sum <= elapsed,
        "phases add up to {sum} s of {elapsed} s: {out}"
    );
}

fn owner(root: &TestRoot, rel: &str) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(root.path(rel)).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

#[test]
fn enable_migrate_moves_shifts_and_rewrites_and_disable_migrate_undoes_it() {
    require_root();
    let root = TestRoot::debian();
    fake_docker_state(&root);
    let before = root.snapshot();

    let (code, plain) = root.run_json(&["enable"]);
    assert_eq!(code, 0);
    let warning = plain["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["message"].as_str().unwrap().contains("hidden"));
    assert!(
        warning.is_some_and(|w| w["message"]
            .as_str()
            .unwrap()
            .starts_with("1 images, 1 containers, 1 volumes")),
        "{plain}"
    );

    let (code, out, elapsed) = run_timed(&root, &["enable", "--migrate"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["actions"][0]["action"], "migrate_data");
    // No daemon under --root: nothing to stop, start or verify.
    assert_phases(&out, &["move", "shift", "layout"], elapsed);
    let m = "var/lib/docker/100000.100000";
    for gone in ["image", "overlay2", "containers", "volumes", "network"] {
        assert!(
            !root.path(&format!("var/lib/docker/{gone}")).exists(),
            "{gone} still in the plain root"
        );
    }
    assert_eq!(owner(&root, m), (0, 100000, 0o710));
    assert_eq!(
        owner(&root, &format!("{m}/overlay2/L1/diff/etc/motd")),
        (100000, 100000, 0o644)
    );
    assert_eq!(
        owner(&root, &format!("{m}/overlay2/L1/diff/home/u/tool")),
        (101000, 101000, 0o4755),
        "setuid kept"
    );
    assert_eq!(
        owner(&root, &format!("{m}/overlay2/L1/link")),
        (0, 0, 0o644),
        "layer metadata stays root's"
    );
    let caps = std::process::Command::new("getcap")
        .arg(root.path(&format!("{m}/overlay2/L1/diff/etc/motd")))
        .output()
        .unwrap();
    let caps = String::from_utf8_lossy(&caps.stdout);
    assert!(
        caps.contains("cap_net_raw=ep"),
        "the capability survives the shift: {caps}"
    );
    assert_eq!(
        owner(&root, &format!("{m}/overlay2/L1")),
        (0, 100000, 0o710)
    );
    assert_eq!(
        owner(&root, &format!("{m}/containers/C1")),
        (0, 100000, 0o710)
    );
    assert_eq!(
        owner(&root, &format!("{m}/containers/C1/mounts")),
        (0, 100000, 0o710)
    );
    assert_eq!(
        owner(&root, &format!("{m}/containers/C1/hostname")),
        (100000, 100000, 0o644)
    );
    assert_eq!(
        owner(&root, &format!("{m}/containers/C1/config.v2.json")),
        (0, 0, 0o600)
    );
    assert_eq!(
        owner(&root, &format!("{m}/volumes/v/_data/f")),
        (101000, 100000, 0o640)
    );
    assert_eq!(
        owner(&root, &format!("{m}/image/overlay2/repositories.json")),
        (0, 0, 0o600)
    );
    let config: serde_json::Value =
        serde_json::from_str(&root.read(&format!("{m}/containers/C1/config.v2.json"))).unwrap();
    assert_eq!(
        config["HostnamePath"], "/var/lib/docker/100000.100000/containers/C1/hostname",
        "paths as dockerd sees them"
    );
    assert_eq!(
        config["MountPoints"]["/data"]["Source"],
        "/var/lib/docker/100000.100000/volumes/v/_data"
    );
    assert_eq!(config["MountPoints"]["/srv"]["Source"], "/srv/x");
    assert!(
        !root
            .path("var/lib/docker/.docker-userns-migrate.json")
            .exists()
    );
    let again = root.run_json(&["enable", "--migrate"]).1;
    assert_eq!(again["changed"], false);
    assert_eq!(again["phases"], serde_json::Value::Null, "nothing ran");

    let (code, out, elapsed) = run_timed(&root, &["disable", "--migrate"]);
    assert_eq!(code, 0, "{out}");
    assert_phases(&out, &["move", "shift", "layout"], elapsed);
    assert!(
        out["migration"]["moved"].as_array().unwrap().len() >= 4,
        "{out}"
    );
    assert!(!root.path(m).exists());
    // Back exactly: the data root's files have their bytes and owners again
    // (config.v2.json is re-serialized the way dockerd writes it).
    let after = root.snapshot();
    for (path, old) in &before {
        let p = path.display().to_string();
        if !p.starts_with("var/lib/docker") {
            continue;
        }
        let now = after.get(path).unwrap_or_else(|| panic!("{p} is missing"));
        assert_eq!(old.mode, now.mode, "{p} mode/type");
        if !p.ends_with("config.v2.json")
            && std::fs::symlink_metadata(root.path(&p)).unwrap().is_file()
        {
            assert_eq!(old.content, now.content, "{p} bytes");
        }
        let m = std::fs::symlink_metadata(root.path(&p)).unwrap();
        let was = before_owner(&p);
        assert_eq!((m.uid(), m.gid()), was, "{p} owner");
    }
    let config: serde_json::Value =
        serde_json::from_str(&root.read("var/lib/docker/containers/C1/config.v2.json")).unwrap();
    assert_eq!(
        config["MountPoints"]["/data"]["Source"],
        "/var/lib/docker/volumes/v/_data"
    );
}

/// The owners `fake_docker_state` gives.
fn before_owner(path: &str) -> (u32, u32) {
    if path.ends_with("home/u/tool") || path.ends_with("home/u") {
        (1000, 1000)
    } else if path.ends_with("_data/f") {
        (1000, 0)
    } else {
        (0, 0)
    }
}

#[test]
fn migrate_refuses_a_layout_it_cannot_rename() {
    require_root();
    let root = TestRoot::debian();
    fake_docker_state(&root);
    std::fs::create_dir_all(root.path("var/lib/docker/vfs/dir/x")).unwrap();
    let before = root.snapshot();
    let (code, out) = root.run_json(&["enable", "--migrate"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only overlay2 layers can be migrated"),
        "{out}"
    );
    // Refused before anything was written, files included.
    let changed: Vec<_> = before
        .keys()
        .filter(|k| before.get(*k) != root.snapshot().get(*k))
        .collect();
    assert!(changed.is_empty(), "{changed:?}");
}

#[test]
fn a_changed_mapping_carries_the_old_remapped_root_over() {
    require_root();
    let root = TestRoot::debian();
    fake_docker_state(&root);
    assert_eq!(root.run_json(&["enable", "--migrate"]).0, 0);
    // The range moves (an administrator fixed an overlap, say).
    root.write("etc/subuid", "dockremap:300000:65536\n", 0o644);
    root.write("etc/subgid", "dockremap:300000:65536\n", 0o644);
    let (code, plain) = root.run_json(&["enable"]);
    assert_eq!(code, 0);
    assert!(
        plain["warnings"]
            .to_string()
            .contains("100000.100000 stay there and are hidden under this mapping"),
        "{plain}"
    );
    let (code, out) = root.run_json(&["enable", "--migrate"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["data_root_dir"], "300000.300000");
    let m = "var/lib/docker/300000.300000";
    assert!(!root.path("var/lib/docker/100000.100000").exists());
    assert_eq!(owner(&root, m), (0, 300000, 0o710));
    assert_eq!(
        owner(&root, &format!("{m}/overlay2/L1/diff/home/u/tool")),
        (301000, 301000, 0o4755)
    );
    assert_eq!(
        owner(&root, &format!("{m}/overlay2/L1")),
        (0, 300000, 0o710)
    );
    assert_eq!(
        owner(&root, &format!("{m}/volumes/v/_data/f")),
        (301000, 300000, 0o640)
    );
    let config: serde_json::Value =
        serde_json::from_str(&root.read(&format!("{m}/containers/C1/config.v2.json"))).unwrap();
    assert_eq!(
        config["MountPoints"]["/data"]["Source"],
        "/var/lib/docker/300000.300000/volumes/v/_data"
    );
}

/// What `script` captured of a run with stdin, stdout and stderr on a
/// terminal.
fn on_terminal(root: &TestRoot, args: &str) -> String {
    let command = format!("{BIN} --root {} {args}", root.root().display());
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_shift_shows_progress_on_a_terminal_and_only_there() {
    require_root();
    let root = TestRoot::debian();
    fake_docker_state(&root);
    let shown = on_terminal(&root, "enable --migrate");
    assert!(
        shown.contains("shift: ") && shown.contains("entries/s") && shown.contains(", done"),
        "{shown:?}"
    );
    assert!(shown.contains("took "), "the phase summary: {shown:?}");

    let out = root.run(&["disable", "--migrate"]);
    assert_eq!(out.status.code(), Some(0));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        !stderr.contains("entries/s"),
        "stderr is no terminal: {stderr:?}"
    );
    assert!(!stdout.contains("entries/s"), "{stdout:?}");
    assert!(
        stdout.contains("took "),
        "the summary is not progress: {stdout:?}"
    );
}
