//! `disable` on temp roots: the key goes, everything else stays; the
//! account and ranges stay unless `--purge`, which removes only dockremap.

use crate::support::*;

#[test]
fn disable_removes_only_the_key_and_keeps_account_and_ranges() {
    require_root();
    let root = TestRoot::debian();
    root.write(
        "etc/docker/daemon.json",
        "{\n  \"debug\": true,\n  \"log-level\": \"warn\"\n}\n",
        0o644,
    );
    assert_eq!(root.run_json(&["enable"]).0, 0);
    let subuid = root.read("etc/subuid");
    let (code, out) = root.run_json(&["disable"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["changed"], true);
    assert_eq!(out["actions"][0]["action"], "remove_userns_remap");
    assert_eq!(
        root.read("etc/docker/daemon.json"),
        "{\n  \"debug\": true,\n  \"log-level\": \"warn\"\n}\n"
    );
    assert_eq!(root.read("etc/subuid"), subuid);
    assert!(root.read("etc/passwd").contains("\ndockremap:"));
    let before = root.snapshot();
    let (code, out) = root.run_json(&["disable"]);
    assert_eq!(
        (code, &out["changed"]),
        (0, &serde_json::Value::Bool(false))
    );
    assert_same_tree(&before, &root.snapshot());
}

#[test]
fn dry_run_disable_changes_nothing() {
    require_root();
    let root = TestRoot::debian();
    assert_eq!(root.run_json(&["enable"]).0, 0);
    let before = root.snapshot();
    let (code, out) = root.run_json(&["disable", "--dry-run", "--diff", "--purge"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out["diff"]
            .as_str()
            .unwrap()
            .contains("-  \"userns-remap\": \"default\"")
    );
    let kinds = action_kinds(&out);
    assert_eq!(
        kinds,
        ["remove_userns_remap", "remove_ranges", "remove_account"]
    );
    assert_same_tree(&before, &root.snapshot());
}

#[test]
fn purge_removes_dockremap_and_its_ranges_only() {
    require_root();
    let root = TestRoot::debian();
    root.write("etc/subuid", "alice:100000:65536\n", 0o644);
    root.write("etc/subgid", "alice:100000:65536\n", 0o644);
    assert_eq!(root.run_json(&["enable"]).0, 0);
    let (code, out) = root.run_json(&["disable", "--purge"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(root.read("etc/subuid"), "alice:100000:65536\n");
    assert_eq!(root.read("etc/subgid"), "alice:100000:65536\n");
    for file in ["etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"] {
        assert!(
            !root.read(file).contains("dockremap"),
            "{file} still has dockremap"
        );
    }
    assert_eq!(root.read("etc/passwd"), DEBIAN_PASSWD);
    assert_eq!(root.read("etc/group"), DEBIAN_GROUP);
    for lock in ["passwd.lock", "subuid.lock", "gshadow.lock"] {
        assert!(!root.path(&format!("etc/{lock}")).exists());
    }
    // And enable brings it all back.
    assert_eq!(root.run_json(&["enable"]).1["uid_start"], 165536);
}

#[test]
fn purge_keeps_a_named_users_account_and_ranges() {
    require_root();
    let root = TestRoot::debian();
    root.write("etc/subuid", "alice:200000:65536\n", 0o644);
    root.write("etc/subgid", "alice:200000:65536\n", 0o644);
    assert_eq!(root.run_json(&["enable", "--user", "alice"]).0, 0);
    let (code, out) = root.run_json(&["disable", "--purge"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["actions"].as_array().unwrap().len(), 1);
    assert!(
        out["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("keeps alice's account and ranges")
    );
    assert_eq!(root.read("etc/subuid"), "alice:200000:65536\n");
}
