//! `check` on temp roots: each finding names the file and line and gives
//! a remedy; exit 0 when nothing fails, 1 when something does.

use std::os::unix::fs::PermissionsExt;

use crate::support::*;
use serde_json::Value;

fn check(root: &TestRoot) -> (i32, Value) {
    root.run_json(&["check"])
}

fn find<'a>(out: &'a Value, id: &str) -> &'a Value {
    check_entry(out, id).unwrap_or_else(|| panic!("no check {id} in {out}"))
}

fn status(out: &Value, id: &str) -> String {
    find(out, id)["status"].as_str().unwrap().to_owned()
}

fn enabled_root() -> TestRoot {
    let root = TestRoot::debian();
    assert_eq!(root.run_json(&["enable"]).0, 0);
    root
}

#[test]
fn unconfigured_root_fails_with_the_remedy() {
    require_root();
    let root = TestRoot::debian();
    let before = root.snapshot();
    let (code, out) = check(&root);
    assert_eq!(code, 1);
    assert_eq!(out["ok"], false);
    let present = find(&out, "config.present");
    assert_eq!(present["status"], "fail");
    assert_eq!(present["remedy"], "docker-userns enable");
    assert_eq!(
        status(&out, "kernel.userns_enabled"),
        "skip",
        "--root has no kernel of its own"
    );
    for c in out["checks"].as_array().unwrap() {
        for key in ["id", "title", "status", "detail", "remedy", "file", "line"] {
            assert!(c.get(key).is_some(), "{key} missing in {c}");
        }
    }
    assert_same_tree(&before, &root.snapshot());
}

#[test]
fn enabled_root_passes_and_says_the_daemon_has_not_made_its_root_yet() {
    require_root();
    let root = enabled_root();
    let (code, out) = check(&root);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["ok"], true);
    for id in [
        "config.valid",
        "config.permissions",
        "config.userns_remap",
        "accounts.remap_user",
        "ranges.subuid",
        "ranges.subgid",
        "ranges.overlap",
        "ranges.account_ids",
    ] {
        assert_eq!(status(&out, id), "ok", "{id}: {}", find(&out, id));
    }
    assert_eq!(status(&out, "data_root.remapped_dir"), "warn");
    assert!(
        find(&out, "data_root.remapped_dir")["detail"]
            .as_str()
            .unwrap()
            .contains("100000.100000 does not exist yet")
    );
    let text = String::from_utf8(root.run(&["check"]).stdout).unwrap();
    assert!(text.contains("ok    config.userns_remap"), "{text}");
    assert!(text.lines().last().unwrap().ends_with("skipped"), "{text}");
}

#[test]
fn invalid_daemon_json_is_reported_with_its_line() {
    require_root();
    let root = enabled_root();
    root.write(
        "etc/docker/daemon.json",
        "{\n  \"userns-remap\": \"default\",\n}\n",
        0o644,
    );
    let (code, out) = check(&root);
    assert_eq!(code, 1);
    let valid = find(&out, "config.valid");
    assert_eq!(valid["status"], "fail");
    assert_eq!(valid["line"], 3);
    assert!(
        valid["detail"]
            .as_str()
            .unwrap()
            .contains("daemon.json:3:1: trailing comma"),
        "{valid}"
    );
}

#[test]
fn loose_permissions_and_the_containerd_store_fail() {
    require_root();
    let root = enabled_root();
    root.write(
        "etc/docker/daemon.json",
        "{\"userns-remap\": \"default\",\n \"features\": {\"containerd-snapshotter\": true}}",
        0o666,
    );
    let (code, out) = check(&root);
    assert_eq!(code, 1);
    let perms = find(&out, "config.permissions");
    assert_eq!(perms["status"], "fail");
    assert!(perms["remedy"].as_str().unwrap().contains("chmod 0644"));
    let snap = find(&out, "config.containerd_snapshotter");
    assert_eq!(snap["status"], "fail");
    assert_eq!(snap["line"], 2);
}

#[test]
fn overlapping_and_missing_ranges_fail() {
    require_root();
    let root = enabled_root();
    root.write(
        "etc/subuid",
        "alice:100000:65536\ndockremap:150000:65536\n",
        0o644,
    );
    let (code, out) = check(&root);
    assert_eq!(code, 1);
    let overlap = find(&out, "ranges.overlap");
    assert_eq!(overlap["status"], "fail");
    assert_eq!(overlap["line"], 2);
    assert!(
        overlap["detail"]
            .as_str()
            .unwrap()
            .contains("overlaps alice's 100000-165535"),
        "{overlap}"
    );

    root.write("etc/subgid", "alice:100000:65536\n", 0o644);
    let (_, out) = check(&root);
    let subgid = find(&out, "ranges.subgid");
    assert_eq!(subgid["status"], "fail");
    assert!(
        subgid["detail"]
            .as_str()
            .unwrap()
            .contains("no entry for dockremap"),
        "{subgid}"
    );
    assert_eq!(subgid["remedy"], "docker-userns enable");
}

#[test]
fn ranges_over_account_ids_and_malformed_lines_are_reported() {
    require_root();
    let root = enabled_root();
    root.write(
        "etc/passwd",
        format!("{}ldap:x:100500:100::/:/bin/sh\n", root.read("etc/passwd")),
        0o644,
    );
    root.write(
        "etc/subgid",
        format!("{}oops\n", root.read("etc/subgid")),
        0o644,
    );
    let (code, out) = check(&root);
    assert_eq!(code, 1);
    assert!(
        find(&out, "ranges.account_ids")["detail"]
            .as_str()
            .unwrap()
            .contains("uid 100500 (ldap)")
    );
    let syntax = find(&out, "ranges.subgid_syntax");
    assert_eq!(syntax["status"], "warn");
    assert_eq!(syntax["line"], 2);
}

#[test]
fn unresolvable_remap_user_fails() {
    require_root();
    let root = TestRoot::debian();
    root.write(
        "etc/docker/daemon.json",
        "{\"userns-remap\": \"ghost\"}",
        0o644,
    );
    let (code, out) = check(&root);
    assert_eq!(code, 1);
    let user = find(&out, "accounts.remap_user");
    assert_eq!(user["status"], "fail");
    assert!(
        user["detail"]
            .as_str()
            .unwrap()
            .contains("user \"ghost\" does not exist"),
        "{user}"
    );
}

#[test]
fn data_root_ownership_traversal_and_hidden_content() {
    require_root();
    let root = enabled_root();
    let data = root.path("var/lib/docker");
    for dir in [
        "100000.100000",
        "231072.231072/containers/c1",
        "containers/a",
        "containers/b",
        "volumes/v1",
        "image/overlay2/imagedb/content/sha256/x",
    ] {
        std::fs::create_dir_all(data.join(dir)).unwrap();
    }
    std::fs::write(data.join("volumes/metadata.db"), "").unwrap();
    std::fs::set_permissions(root.path("var/lib"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let (code, out) = check(&root);
    assert_eq!(code, 1);
    let dir = find(&out, "data_root.remapped_dir");
    assert_eq!(dir["status"], "warn");
    assert!(
        dir["remedy"]
            .as_str()
            .unwrap()
            .starts_with("chown root:100000 "),
        "{dir}"
    );
    let traverse = find(&out, "data_root.traversable");
    assert_eq!(traverse["status"], "fail");
    assert!(
        traverse["remedy"].as_str().unwrap().ends_with("var/lib"),
        "{traverse}"
    );
    let hidden = find(&out, "data_root.inactive");
    assert_eq!(hidden["status"], "warn");
    let detail = hidden["detail"].as_str().unwrap();
    assert!(
        detail.contains("231072.231072 (0 images, 1 containers, 0 volumes, "),
        "{detail}"
    );
    assert!(
        detail.contains("non-remapped root (1 images, 2 containers, 1 volumes, "),
        "{detail}"
    );
    // Sizes: the non-remapped root leaves out the namespaced roots in it.
    std::fs::write(
        data.join("231072.231072/containers/c1/log"),
        vec![7u8; 1 << 20],
    )
    .unwrap();
    let (_, out) = check(&root);
    let detail = find(&out, "data_root.inactive")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        detail.contains("0 volumes, 1.0 MiB)") || detail.contains("0 volumes, 1.1 MiB)"),
        "{detail}"
    );
    let own = detail.split("non-remapped root (").nth(1).unwrap();
    assert!(own.ends_with(" KiB)"), "{detail}");

    std::fs::set_permissions(root.path("var/lib"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        data.join("100000.100000"),
        std::fs::Permissions::from_mode(0o710),
    )
    .unwrap();
    std::os::unix::fs::chown(data.join("100000.100000"), Some(0), Some(100000)).unwrap();
    let (_, out) = check(&root);
    assert_eq!(status(&out, "data_root.remapped_dir"), "ok");
    assert_eq!(status(&out, "data_root.traversable"), "ok");
}

#[test]
fn check_spelled_as_an_option_works() {
    require_root();
    let root = enabled_root();
    let out = root.run(&["--check", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["ok"], true);
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    require_root();
    let root = TestRoot::debian();
    let command = format!("{BIN} --root {} check", root.root().display());
    let on_tty = |no_color: bool| {
        let mut script = std::process::Command::new("script");
        script.args(["-qec", &command, "/dev/null"]);
        script.env_remove("NO_COLOR");
        if no_color {
            script.env("NO_COLOR", "1");
        }
        String::from_utf8(script.output().unwrap().stdout).unwrap()
    };
    let coloured = on_tty(false);
    assert!(coloured.contains("\x1b[1;31mFAIL"), "{coloured:?}");
    assert!(!on_tty(true).contains('\x1b'));
    let piped = String::from_utf8(root.run(&["check"]).stdout).unwrap();
    assert!(!piped.contains('\x1b'));
}

#[test]
fn an_interrupted_migration_is_reported_with_the_command_that_finishes_it() {
    require_root();
    let root = enabled_root();
    let data = root.path("var/lib/docker");
    std::fs::create_dir_all(&data).unwrap();
    let journal = serde_json::json!({
        "data_root": data, "daemon_data_root": "/var/lib/docker", "uid": 100000, "gid": 100000, "count": 65536, "direction": "into_remapped"
    });
    std::fs::write(
        data.join(".docker-userns-migrate.json"),
        journal.to_string(),
    )
    .unwrap();
    let (code, out) = check(&root);
    assert_eq!(code, 1);
    let c = find(&out, "data_root.unfinished");
    assert_eq!(c["status"], "fail", "{c}");
    assert_eq!(
        c["remedy"],
        "docker-userns enable --migrate (it resumes from the journal)"
    );
}

/// dockerd leaves the data root 0710 root:<remapped gid> and its parents
/// 0711: its own rule (world x, or owner/group x for the remapped ids)
/// lets the remapped root through, so check must too.
#[test]
fn data_root_as_dockerd_leaves_it_is_traversable() {
    require_root();
    let root = enabled_root();
    let mode = |rel: &str, m: u32| {
        std::fs::set_permissions(root.path(rel), std::fs::Permissions::from_mode(m)).unwrap()
    };
    std::fs::create_dir_all(root.path("var/lib/docker/100000.100000")).unwrap();
    for dir in ["var/lib/docker", "var/lib/docker/100000.100000"] {
        std::os::unix::fs::chown(root.path(dir), Some(0), Some(100000)).unwrap();
        mode(dir, 0o710);
    }
    mode("var", 0o711);
    mode("var/lib", 0o711);
    let (_, out) = check(&root);
    let traverse = find(&out, "data_root.traversable");
    assert_eq!(traverse["status"], "ok", "{traverse}");

    mode("var/lib", 0o700);
    let (code, out) = check(&root);
    assert_eq!(code, 1);
    let traverse = find(&out, "data_root.traversable");
    assert_eq!(traverse["status"], "fail", "{traverse}");
    let lib = root.path("var/lib").display().to_string();
    assert!(
        traverse["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{lib} is 0:0 0700")),
        "{traverse}"
    );
    assert_eq!(traverse["remedy"], format!("chmod o+x {lib}"), "{traverse}");
}

/// dockerd checks the real path of a linked data root, not the link's.
#[test]
fn a_linked_data_root_is_checked_where_it_really_is() {
    require_root();
    let root = enabled_root();
    std::fs::create_dir_all(root.path("srv/docker")).unwrap();
    std::fs::create_dir_all(root.path("var/lib")).unwrap();
    std::fs::remove_dir_all(root.path("var/lib/docker")).ok();
    std::os::unix::fs::symlink("/srv/docker", root.path("var/lib/docker")).unwrap();
    std::fs::set_permissions(root.path("srv"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let (_, out) = check(&root);
    let traverse = find(&out, "data_root.traversable");
    assert_eq!(traverse["status"], "fail", "{traverse}");
    assert_eq!(
        traverse["remedy"],
        format!("chmod o+x {}", root.path("srv").display()),
        "{traverse}"
    );
}

const CONTAINER_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A stored container config (what dockerd keeps in
/// `containers/<id>/config.v2.json`) with a rw bind of a 0700 directory,
/// a rw bind of a root-owned 0755 one, a read-only bind of a 0755 one and
/// a volume.
fn store_container(root: &TestRoot, containers: &str) {
    root.write(
        &format!("{containers}/{CONTAINER_ID}/config.v2.json"),
        r#"{"ID": "0123", "Name": "/web", "MountPoints": {
            "/secret": {"Source": "/srv/secret", "Destination": "/secret", "RW": true, "Type": "bind"},
            "/shared": {"Source": "/srv/shared", "Destination": "/shared", "RW": true, "Type": "bind"},
            "/conf": {"Source": "/srv/conf", "Destination": "/conf", "RW": false, "Type": "bind"},
            "/cache": {"Source": "/var/lib/docker/volumes/c/_data", "Destination": "/cache",
                       "RW": true, "Type": "volume", "Name": "c"}
        }}"#,
        0o600,
    );
    for (dir, mode) in [
        ("srv/secret", 0o700),
        ("srv/shared", 0o755),
        ("srv/conf", 0o755),
    ] {
        std::fs::create_dir_all(root.path(dir)).unwrap();
        std::fs::set_permissions(root.path(dir), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(root.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn enable_plan_lists_stored_bind_mounts_that_break_with_their_grant() {
    require_root();
    let root = TestRoot::debian();
    store_container(&root, "var/lib/docker/containers");
    let (_, out) = root.run_json(&["enable", "--dry-run"]);
    let warnings: Vec<String> = out["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["message"].as_str().unwrap().contains("bind mount"))
        .map(|w| format!("{} {}", w["file"].as_str().unwrap(), w["message"]))
        .collect();
    assert_eq!(warnings.len(), 2, "{out}");
    let r = root.root().display();
    assert!(
        warnings[0].starts_with(&format!("{r}/srv/secret ")),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("web at /secret (rw)"), "{warnings:?}");
    assert!(
        warnings[0].contains(&format!("docker-userns --root {r} grant /srv/secret --acl")),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with(&format!("{r}/srv/shared ")),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("other bits give r-x of the rwx it needs"),
        "{warnings:?}"
    );
    let human = stderr_and_stdout(&root.run(&["enable", "--dry-run"]));
    assert!(
        human.contains(&format!("docker-userns --root {r} grant /srv/shared")),
        "{human}"
    );
}

#[test]
fn check_lists_stored_bind_mounts_until_they_are_granted() {
    require_root();
    let root = enabled_root();
    store_container(&root, "var/lib/docker/100000.100000/containers");
    let (_, out) = check(&root);
    let binds = find(&out, "containers.bind_mounts");
    assert_eq!(binds["status"], "warn", "{binds}");
    let detail = binds["detail"].as_str().unwrap();
    let r = root.root().display();
    assert!(
        detail.contains(&format!("{r}/srv/secret (mounted by web at /secret (rw))")),
        "{detail}"
    );
    assert!(detail.contains(&format!("{r}/srv/shared")), "{detail}");
    assert!(!detail.contains("/srv/conf"), "{detail}");
    assert!(
        binds["remedy"]
            .as_str()
            .unwrap()
            .contains(&format!("docker-userns --root {r} grant /srv/secret")),
        "{binds}"
    );
    for source in ["/srv/secret", "/srv/shared"] {
        let (code, out) = root.run_json(&["grant", source]);
        assert_eq!(code, 0, "{out}");
    }
    let (_, out) = check(&root);
    let binds = find(&out, "containers.bind_mounts");
    assert_eq!(binds["status"], "ok", "{binds}");
    assert!(
        binds["detail"]
            .as_str()
            .unwrap()
            .starts_with("3 bind mounts in the stored container configs"),
        "{binds}"
    );
}

fn stderr_and_stdout(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
