//! `--migrate` on a temp root (offline, as for an image): what moves, what
//! is shifted, what is rewritten, and the exact way back.

mod support;

use std::os::unix::fs::MetadataExt;

use support::*;

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

    let (code, out) = root.run_json(&["enable", "--migrate"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["actions"][0]["action"], "migrate_data");
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
    assert_eq!(root.run_json(&["enable", "--migrate"]).1["changed"], false);

    let (code, out) = root.run_json(&["disable", "--migrate"]);
    assert_eq!(code, 0, "{out}");
    assert!(!root.path(m).exists());
    // Back exactly: the data root's files have their bytes and owners again
    // (config.v2.json is re-serialized the way dockerd writes it).
    let after = root.snapshot();
    for (path, (bytes, _, mode, ..)) in &before {
        let p = path.display().to_string();
        if !p.starts_with("var/lib/docker") {
            continue;
        }
        let (now, _, now_mode, ..) = after.get(path).unwrap_or_else(|| panic!("{p} is missing"));
        assert_eq!(mode, now_mode, "{p} mode/type");
        if !p.ends_with("config.v2.json")
            && std::fs::symlink_metadata(root.path(&p)).unwrap().is_file()
        {
            assert_eq!(bytes, now, "{p} bytes");
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
