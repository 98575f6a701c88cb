//! `enable` on temp roots: accounts, ranges and daemon.json end up right,
//! a second run changes nothing, and bad input changes nothing.

use std::os::unix::fs::MetadataExt;

use crate::support::*;
use serde_json::json;

fn subid_lines(root: &TestRoot, file: &str) -> Vec<String> {
    root.read(file).lines().map(str::to_owned).collect()
}

fn passwd_entry(root: &TestRoot, name: &str) -> Vec<String> {
    root.read("etc/passwd")
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("{name} not in passwd"))
        .split(':')
        .map(str::to_owned)
        .collect()
}

/// A Debian-like root where dockremap (997) is in passwd and group only.
fn debian_with_dockremap() -> TestRoot {
    let root = TestRoot::debian();
    root.write(
        "etc/passwd",
        format!("{DEBIAN_PASSWD}dockremap:x:997:997::/nonexistent:/bin/false\n"),
        0o644,
    );
    root.write(
        "etc/group",
        format!("{DEBIAN_GROUP}dockremap:x:997:\n"),
        0o644,
    );
    root
}

#[test]
fn fresh_debian_root_gets_dockremap_ranges_and_config() {
    require_root();
    let root = TestRoot::debian();
    let (code, out) = root.run_json(&["enable"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["changed"], true);
    assert_eq!(out["user"], "dockremap");
    assert_eq!(out["group"], "dockremap");
    assert_eq!(out["uid_start"], 100000);
    assert_eq!(out["gid_start"], 100000);
    assert_eq!(out["count"], 65536);
    assert_eq!(out["data_root_dir"], "100000.100000");
    let kinds = action_kinds(&out);
    assert_eq!(
        kinds,
        [
            "create_group",
            "create_user",
            "add_subuid_range",
            "add_subgid_range",
            "set_userns_remap"
        ]
    );

    let user = passwd_entry(&root, "dockremap");
    let uid: u32 = user[2].parse().unwrap();
    assert!((100..1000).contains(&uid), "a system uid, got {uid}");
    assert_eq!(user[5], "/nonexistent");
    assert_eq!(user[6], "/usr/sbin/nologin");
    assert_eq!(out["uid"], uid);
    assert!(
        !root.path("nonexistent").exists(),
        "no home directory is created"
    );
    let gid = root
        .read("etc/group")
        .lines()
        .find(|l| l.starts_with("dockremap:"))
        .unwrap()
        .split(':')
        .nth(2)
        .unwrap()
        .to_owned();
    assert_eq!(user[3], gid, "primary group is dockremap");
    assert!(
        root.read("etc/shadow")
            .lines()
            .any(|l| l.starts_with("dockremap:!"))
    );

    assert_eq!(subid_lines(&root, "etc/subuid"), ["dockremap:100000:65536"]);
    assert_eq!(subid_lines(&root, "etc/subgid"), ["dockremap:100000:65536"]);
    for file in ["etc/subuid", "etc/subgid", "etc/docker/daemon.json"] {
        let meta = std::fs::metadata(root.path(file)).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o644, 0, 0),
            "{file}"
        );
    }
    let config: serde_json::Value =
        serde_json::from_str(&root.read("etc/docker/daemon.json")).unwrap();
    assert_eq!(config, json!({"userns-remap": "default"}));
    for lock in [
        "etc/passwd.lock",
        "etc/group.lock",
        "etc/subuid.lock",
        "etc/subgid.lock",
    ] {
        assert!(!root.path(lock).exists(), "{lock} left behind");
    }
}

#[test]
fn second_run_changes_nothing_and_rewrites_nothing() {
    require_root();
    let root = TestRoot::debian();
    root.write("etc/docker/daemon.json", "{\"debug\": true}\n", 0o600);
    assert_eq!(root.run_json(&["enable"]).0, 0);
    let before = root.snapshot();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (code, out) = root.run_json(&["enable"]);
    assert_eq!(code, 0);
    assert_eq!(out["changed"], false);
    assert_eq!(out["actions"], json!([]));
    assert_eq!(out["uid_start"], 100000);
    assert_same_tree(&before, &root.snapshot());
    // The replaced daemon.json kept its owner and mode.
    let meta = std::fs::metadata(root.path("etc/docker/daemon.json")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(
        root.read("etc/docker/daemon.json.docker-userns.bak"),
        "{\"debug\": true}\n"
    );
}

#[test]
fn dry_run_touches_nothing_and_exits_1_with_the_plan() {
    require_root();
    let root = TestRoot::debian();
    let before = root.snapshot();
    let (code, out) = root.run_json(&["enable", "--dry-run", "--diff"]);
    assert_eq!(code, 1, "pending changes");
    assert_eq!(out["changed"], false);
    assert_eq!(out["dry_run"], true);
    assert_eq!(out["actions"].as_array().unwrap().len(), 5);
    assert_eq!(
        out["uid"],
        serde_json::Value::Null,
        "the account does not exist yet"
    );
    let diff = out["diff"].as_str().unwrap();
    assert!(diff.contains("+dockremap:100000:65536"), "{diff}");
    assert!(diff.contains("+  \"userns-remap\": \"default\""), "{diff}");
    assert_same_tree(&before, &root.snapshot());
    // And the real run then does exactly what was planned.
    let (_, applied) = root.run_json(&["enable"]);
    assert_eq!(applied["actions"], out["actions"]);
    assert_eq!(applied["uid_start"], out["uid_start"]);
}

#[test]
fn other_owners_ranges_are_never_overlapped() {
    require_root();
    let root = TestRoot::debian();
    // podman's alice, an LXD root range, and a small range strictly inside
    // the first candidate window.
    root.write(
        "etc/subuid",
        "alice:100000:65536\nroot:1000000:1000000000\nlxd:170000:10\n",
        0o644,
    );
    root.write(
        "etc/subgid",
        "alice:100000:65536\nroot:1000000:1000000000\n",
        0o644,
    );
    let (code, out) = root.run_json(&["enable"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["uid_start"], 170010);
    assert_eq!(out["gid_start"], 165536);
    assert_eq!(out["data_root_dir"], "170010.165536");
    assert_eq!(
        root.read("etc/subuid"),
        "alice:100000:65536\nroot:1000000:1000000000\nlxd:170000:10\ndockremap:170010:65536\n"
    );
    assert_eq!(
        root.read("etc/subuid-"),
        "alice:100000:65536\nroot:1000000:1000000000\nlxd:170000:10\n"
    );
}

#[test]
fn ranges_keep_clear_of_account_ids() {
    require_root();
    let root = TestRoot::debian();
    let passwd = format!("{DEBIAN_PASSWD}ldapuser:x:120000:1000::/home/l:/bin/sh\n");
    root.write("etc/passwd", passwd, 0o644);
    let (code, out) = root.run_json(&["enable"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["uid_start"], 120001);
    assert_eq!(out["gid_start"], 100000);
}

#[test]
fn numeric_owners_are_recognised_both_ways() {
    require_root();
    let root = TestRoot::debian();
    let passwd = format!("{DEBIAN_PASSWD}app:x:1001:1001::/home/app:/bin/sh\n");
    root.write("etc/passwd", passwd, 0o644);
    root.write("etc/group", format!("{DEBIAN_GROUP}app:x:1001:\n"), 0o644);
    // alice's range is under her uid; app's own range is under its uid.
    root.write(
        "etc/subuid",
        "1000:100000:65536\n1001:300000:65536\n",
        0o644,
    );
    root.write("etc/subgid", "1000:100000:65536\n", 0o644);
    let (code, out) = root.run_json(&["enable", "--user", "app"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["uid_start"], 300000, "the numeric-owner line is app's");
    assert_eq!(out["gid_start"], 165536, "alice's numeric line is taken");
    assert_eq!(
        root.read("etc/subuid"),
        "1000:100000:65536\n1001:300000:65536\n"
    );
    assert_eq!(
        root.read("etc/subgid"),
        "1000:100000:65536\napp:165536:65536\n"
    );
    let config: serde_json::Value =
        serde_json::from_str(&root.read("etc/docker/daemon.json")).unwrap();
    assert_eq!(config["userns-remap"], "app");
}

#[test]
fn custom_login_defs_bounds_are_used() {
    require_root();
    let root = TestRoot::debian();
    root.write(
        "etc/login.defs",
        "SUB_UID_MIN 300000\nSUB_UID_MAX 400000\nSUB_GID_MIN\t0x80000\nSUB_GID_MAX 1000000\n",
        0o644,
    );
    let (code, out) = root.run_json(&["enable"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["uid_start"], 300000);
    assert_eq!(out["gid_start"], 0x80000);
    // A second range of 65536 no longer fits under SUB_UID_MAX.
    root.write("etc/subuid", "other:300000:65536\n", 0o644);
    let before = root.snapshot();
    let out = root.run(&["enable"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no free range of 65536 ids left within 300000..=400000"),
        "{}",
        stderr(&out)
    );
    assert_same_tree(&before, &root.snapshot());
}

#[test]
fn busybox_style_root_gets_the_account_by_direct_edits() {
    require_root();
    let root = TestRoot::busybox_style();
    let (code, out) = root.run_json(&["enable", "--verbose"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out["actions"][0]["description"],
        "create system group dockremap (direct edit, locked)"
    );
    let user = passwd_entry(&root, "dockremap");
    assert_eq!(
        &user[2..],
        [
            "999",
            "999",
            "docker-userns remap user",
            "/nonexistent",
            "/sbin/nologin"
        ]
    );
    assert!(
        root.read("etc/group")
            .ends_with("nobody:x:65534:\ndockremap:x:999:\n")
    );
    let shadow = root.read("etc/shadow");
    let last = shadow.lines().last().unwrap();
    assert!(
        last.starts_with("dockremap:!:") && last.ends_with("::::::"),
        "{last}"
    );
    assert!(!root.path("etc/gshadow").exists(), "no gshadow is invented");
    assert_eq!(
        root.read("etc/passwd-"),
        "root:x:0:0:root:/root:/bin/ash\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n"
    );
    for lock in [
        "passwd.lock",
        "group.lock",
        "shadow.lock",
        "gshadow.lock",
        "subuid.lock",
    ] {
        assert!(
            !root.path(&format!("etc/{lock}")).exists(),
            "{lock} left behind"
        );
    }
    assert_eq!(out["uid_start"], 100000);
    assert_eq!(root.run_json(&["enable"]).1["changed"], false);
}

#[test]
fn existing_dockremap_without_ranges_is_repaired_not_recreated() {
    require_root();
    let root = debian_with_dockremap();
    root.write(
        "etc/shadow",
        format!("{DEBIAN_SHADOW}dockremap:!:19700::::::\n"),
        0o640,
    );
    root.write(
        "etc/gshadow",
        format!("{DEBIAN_GSHADOW}dockremap:!::\n"),
        0o640,
    );
    let (code, out) = root.run_json(&["enable"]);
    assert_eq!(code, 0, "{out}");
    let kinds = action_kinds(&out);
    assert_eq!(
        kinds,
        ["add_subuid_range", "add_subgid_range", "set_userns_remap"]
    );
    assert_eq!(out["uid"], 997);
    assert_eq!(root.read("etc/passwd").matches("dockremap:").count(), 1);
}

#[test]
fn named_user_with_existing_ranges_only_gets_the_config() {
    require_root();
    let root = TestRoot::debian();
    root.write("etc/subuid", "alice:200000:65536\n", 0o644);
    root.write("etc/subgid", "alice:300000:65536\n", 0o644);
    let before_subuid = std::fs::metadata(root.path("etc/subuid")).unwrap();
    let (code, out) = root.run_json(&["enable", "--user", "alice:adm"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["actions"].as_array().unwrap().len(), 1);
    assert_eq!(
        (out["user"].as_str(), out["group"].as_str()),
        (Some("alice"), Some("adm"))
    );
    assert_eq!(out["data_root_dir"], "200000.300000");
    let after_subuid = std::fs::metadata(root.path("etc/subuid")).unwrap();
    assert_eq!(
        before_subuid.ino(),
        after_subuid.ino(),
        "subuid not rewritten"
    );
}

#[test]
fn a_larger_count_adds_a_stacked_range() {
    require_root();
    let root = TestRoot::debian();
    root.write("etc/subuid", "alice:100000:65536\n", 0o644);
    root.write("etc/subgid", "alice:100000:131072\n", 0o644);
    let (code, out) = root.run_json(&["enable", "--user", "alice", "--count", "131072"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out["uid_ranges"],
        json!([{"start": 100000, "count": 65536}, {"start": 165536, "count": 65536}])
    );
    assert_eq!(
        out["gid_ranges"],
        json!([{"start": 100000, "count": 131072}])
    );
    assert_eq!(out["count"], 131072);
}

#[test]
fn daemon_json_keeps_other_keys_nesting_order_and_bom() {
    require_root();
    let root = TestRoot::debian();
    let original = "\u{feff}{\n\t\"log-driver\": \"json-file\",\n\t\"log-opts\": {\"max-size\": \"10m\", \"labels\": [\"a\", \"b\"]},\n\t\"default-ulimits\": {\"nofile\": {\"Name\": \"nofile\", \"Hard\": 64000, \"Soft\": 64000}},\n\t\"registry-mirrors\": []\n}\n";
    root.write("etc/docker/daemon.json", original, 0o644);
    assert_eq!(root.run_json(&["enable"]).0, 0);
    let expected = original.replace(
        "\t\"registry-mirrors\": []\n}",
        "\t\"registry-mirrors\": [],\n\t\"userns-remap\": \"default\"\n}",
    );
    assert_eq!(root.read("etc/docker/daemon.json"), expected);
}

#[test]
fn existing_equivalent_value_is_left_alone() {
    require_root();
    let root = TestRoot::debian();
    assert_eq!(root.run_json(&["enable"]).0, 0);
    root.write(
        "etc/docker/daemon.json",
        "{\"userns-remap\": \"dockremap:dockremap\"}",
        0o644,
    );
    let (code, out) = root.run_json(&["enable", "--user", "default"]);
    assert_eq!(code, 0);
    assert_eq!(out["changed"], false, "{out}");
}

#[test]
fn snap_config_is_used_when_that_is_where_docker_lives() {
    require_root();
    let root = TestRoot::debian();
    std::fs::create_dir_all(root.path("var/snap/docker/current/config")).unwrap();
    let (code, out) = root.run_json(&["enable"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        root.path("var/snap/docker/current/config/daemon.json")
            .exists()
    );
    assert!(!root.path("etc/docker").exists());
}

#[test]
fn stale_lock_of_a_dead_process_is_taken_over() {
    require_root();
    let root = TestRoot::debian();
    // A PID that cannot be alive: above the kernel's pid_max.
    root.write("etc/subuid.lock", "4194305", 0o600);
    root.write("etc/subuid", "", 0o644);
    let (code, out) = root.run_json(&["enable"]);
    assert_eq!(code, 0, "{out}");
    assert!(!root.path("etc/subuid.lock").exists());
}

#[test]
fn malformed_subid_lines_are_kept_and_reported() {
    require_root();
    let root = TestRoot::debian();
    let subuid = "garbage line\nbob:0x10:5\nalice:100000:65536\r\n";
    root.write("etc/subuid", subuid, 0o644);
    let (code, out) = root.run_json(&["enable"]);
    assert_eq!(code, 0, "{out}");
    let warned: Vec<_> = out["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["line"].as_u64().unwrap())
        .collect();
    assert_eq!(warned, [1, 2, 3]);
    assert!(
        out["warnings"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("/etc/subuid")
    );
    // The CRLF line's range is still treated as taken.
    assert_eq!(out["uid_start"], 165536);
    assert_eq!(
        root.read("etc/subuid"),
        format!("{subuid}dockremap:165536:65536\n")
    );
}

#[test]
fn numeric_uid_spec_resolves_user_and_group_like_dockerd() {
    require_root();
    let root = TestRoot::debian();
    let (code, out) = root.run_json(&["enable", "--user", "1000"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        (out["user"].as_str(), out["group"].as_str()),
        (Some("alice"), Some("alice"))
    );
    assert_eq!(
        root.read("etc/subuid"),
        "alice:100000:65536\n",
        "subuid keyed by the user name"
    );
    assert_eq!(
        root.read("etc/subgid"),
        "alice:100000:65536\n",
        "subgid keyed by the user name too"
    );
    let config: serde_json::Value =
        serde_json::from_str(&root.read("etc/docker/daemon.json")).unwrap();
    assert_eq!(config["userns-remap"], "1000");
    // The same mapping spelled by name is already in place.
    assert_eq!(
        root.run_json(&["enable", "--user", "alice:1000"]).1["changed"],
        false
    );
}

#[test]
fn human_output_lists_actions_and_the_mapping() {
    require_root();
    let root = TestRoot::debian();
    let out = root.run(&["enable"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("enable: 5 changes made\n"), "{text}");
    assert!(
        text.contains("  + add dockremap:100000:65536 to /etc/subuid"),
        "{text}"
    );
    assert!(
        text.contains("data root   /var/lib/docker/100000.100000\n"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour when not a terminal");
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    let quiet = root.run(&["enable", "-q"]);
    assert_eq!(quiet.status.code(), Some(0));
    assert!(quiet.stdout.is_empty());
}

#[test]
fn dockremap_missing_from_shadow_and_gshadow_is_completed() {
    require_root();
    let root = debian_with_dockremap();
    let (code, out) = root.run_json(&["enable"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["actions"][0]["action"], "complete_account");
    assert!(
        root.read("etc/shadow")
            .lines()
            .last()
            .unwrap()
            .starts_with("dockremap:!:")
    );
    assert_eq!(
        root.read("etc/gshadow").lines().last().unwrap(),
        "dockremap:!::"
    );
    assert_eq!(root.run_json(&["enable"]).1["changed"], false);
}

#[test]
fn an_image_without_dockerd_is_provisioned_for_its_first_start() {
    require_root();
    let root = TestRoot::debian();
    let before = root.snapshot();
    let (code, planned) = root.run_json(&["enable", "--dry-run"]);
    assert_eq!(code, 1, "a dry run with changes exits 1: {planned}");
    assert_same_tree(&before, &root.snapshot());
    let note = planned["daemon"]["note"].as_str().unwrap_or_default();
    assert!(note.contains("first start"), "{planned}");

    let (code, out) = root.run_json(&["enable"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["daemon"]["managed"], false, "{out}");
    assert!(
        out["daemon"]["note"]
            .as_str()
            .unwrap_or_default()
            .contains("first start will be remapped")
    );
    assert!(
        root.read("etc/docker/daemon.json")
            .contains("\"userns-remap\": \"default\"")
    );
}

/// A live host where Docker is not installed yet: no dockerd on any path,
/// no pidfile, no unit, init script or runit service, no socket. The files
/// are written for dockerd's first start instead of failing for want of a
/// daemon to restart.
#[test]
fn a_live_host_without_docker_is_provisioned_for_its_first_start() {
    let etc = PrivateEtc::new();
    let _ = std::fs::remove_file(etc.path("etc/init.d/docker"));
    for gone in ["etc/docker", "etc/sv/docker"] {
        let _ = std::fs::remove_dir_all(etc.path(gone));
    }
    // /run and the data root hidden by empty tmpfs; every dockerd the
    // search could find hidden by /dev/null (a device, not a program).
    let hide = r#"
mount -t tmpfs tmpfs /run
mkdir -p "$T/data"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/bin
for f in /usr/sbin/dockerd /usr/bin/dockerd /usr/local/bin/dockerd /sbin/dockerd /bin/dockerd; do
    if [ -f "$f" ]; then mount --bind /dev/null "$f"; fi
done
run() { "$BIN" --format json --data-root "$T/data" "$@" >"$T/$1.out" || echo "$1 exit $?" >>"$T/codes"; }
"#;
    etc.run(&format!(
        "{hide}run enable --dry-run --diff\nmv \"$T/enable.out\" \"$T/planned.out\"\n\
         cp -a \"$T/etc\" \"$T/etc.before\"\n\
         run enable\nmv \"$T/enable.out\" \"$T/first.out\"\nrun enable\n"
    ));
    let codes = std::fs::read_to_string(etc.path("codes")).unwrap_or_default();
    assert_eq!(codes.trim(), "enable exit 1", "only the dry run exits 1");

    let planned = etc.json("planned.out");
    let first = etc.json("first.out");
    for out in [&planned, &first] {
        let note = out["daemon"]["note"].as_str().unwrap_or_default();
        assert!(
            note.contains("no dockerd") && note.contains("first start"),
            "{out}"
        );
        let kinds = action_kinds(out);
        assert!(kinds.iter().any(|k| k == "set_userns_remap"), "{out}");
        assert!(!kinds.iter().any(|k| k.contains("restart")), "{out}");
    }
    assert_eq!(first["changed"], true, "{first}");
    let config = std::fs::read_to_string(etc.path("etc/docker/daemon.json")).unwrap();
    assert!(config.contains("\"userns-remap\": \"default\""), "{config}");
    assert!(
        std::fs::read_to_string(etc.path("etc/subuid"))
            .unwrap()
            .contains("dockremap:")
    );
    // The dry run wrote nothing: the copy taken after it has no config.
    assert!(!etc.path("etc.before/docker/daemon.json").exists());
    let again = etc.json("enable.out");
    assert_eq!(again["changed"], false, "a rerun changes nothing: {again}");
}
