//! `check --path` and `grant` on temp roots, cross-checked with the real
//! `getfacl`: which component blocks the remapped user, and the fix.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use crate::support::*;
use serde_json::Value;

fn prepared() -> TestRoot {
    let root = TestRoot::debian();
    assert_eq!(root.run_json(&["enable"]).0, 0);
    std::fs::create_dir_all(root.path("srv/data")).unwrap();
    std::fs::set_permissions(root.path("srv"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::set_permissions(
        root.path("srv/data"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    root
}

fn path_check(root: &TestRoot, args: &[&str]) -> Value {
    let mut full = vec!["check", "--path", "/srv/data"];
    full.extend_from_slice(args);
    let (_, out) = root.run_json(&full);
    check_entry(&out, "path.access").unwrap().clone()
}

fn getfacl(path: &std::path::Path) -> String {
    let out = Command::new("getfacl")
        .args(["-n", "-p"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn check_path_names_the_blocking_component_and_the_fix() {
    require_root();
    let root = prepared();
    let c = path_check(&root, &[]);
    assert_eq!(c["status"], "fail");
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("container uid 0 (host 100000) cannot traverse"),
        "{detail}"
    );
    assert!(
        detail.contains("/srv: it is 0:0 0750, other bits give --- of the --x it needs"),
        "{detail}"
    );
    assert_eq!(
        c["remedy"],
        "docker-userns grant /srv/data (add --acl to grant by ACL instead of chown/chmod)"
    );
    let c = path_check(&root, &["--as", "1000"]);
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("container uid 1000 (host 101000)"),
        "{c}"
    );
}

#[test]
fn grant_dry_run_shows_the_change_and_touches_nothing() {
    require_root();
    let root = prepared();
    let before = root.snapshot();
    let (code, out) = root.run_json(&["grant", "/srv/data", "--dry-run", "--diff"]);
    assert_eq!(code, 1, "{out}");
    let diff = out["diff"].as_str().unwrap();
    assert!(diff.contains("-mode 0750\n+mode 0751"), "{diff}");
    assert!(diff.contains("-owner 0:0\n+owner 100000:100000"), "{diff}");
    assert_same_tree(&before, &root.snapshot());
}

#[test]
fn grant_by_chown_and_o_x_makes_the_path_usable() {
    require_root();
    let root = prepared();
    let (code, out) = root.run_json(&["grant", "/srv/data"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["changed"], true);
    assert_eq!(
        std::fs::metadata(root.path("srv")).unwrap().mode() & 0o7777,
        0o751
    );
    let data = std::fs::metadata(root.path("srv/data")).unwrap();
    assert_eq!((data.uid(), data.gid()), (100000, 100000));
    assert_eq!(path_check(&root, &[])["status"], "ok");
    let (code, again) = root.run_json(&["grant", "/srv/data"]);
    assert_eq!((code, &again["changed"]), (0, &Value::Bool(false)));
}

#[test]
fn grant_by_acl_writes_entries_getfacl_reads() {
    require_root();
    let root = prepared();
    let (code, out) = root.run_json(&["grant", "/srv/data", "--acl", "--as", "1000:1000"]);
    assert_eq!(code, 0, "{out}");
    let srv = getfacl(&root.path("srv"));
    assert!(srv.contains("user:101000:--x"), "{srv}");
    let data = getfacl(&root.path("srv/data"));
    assert!(data.contains("user:101000:rwx"), "{data}");
    assert!(data.contains("default:user:101000:rwx"), "{data}");
    assert!(data.contains("mask::rwx"), "{data}");
    let meta = std::fs::metadata(root.path("srv/data")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "ownership untouched with --acl"
    );
    assert_eq!(path_check(&root, &["--as", "1000:1000"])["status"], "ok");
    assert_eq!(
        path_check(&root, &["--as", "2000"])["status"],
        "fail",
        "only the granted user"
    );
}
