//! The containerd image store on temp roots: `enable` pins the graph
//! driver in daemon.json keeping every other byte, a second run changes
//! nothing, and `disable` puts the user's own value back byte for byte.

use crate::support::*;

const CONTAINERD_ON: &str = "{\n  \"features\": {\"buildkit\": true, \"containerd-snapshotter\": true},\n  \"log-level\": \"warn\"\n}\n";

#[test]
fn enable_pins_the_graph_driver_and_disable_restores_the_exact_value() {
    require_root();
    let root = TestRoot::debian();
    root.write("etc/docker/daemon.json", CONTAINERD_ON, 0o644);

    let (code, dry) = root.run_json(&["enable", "--dry-run"]);
    assert_eq!(code, 1, "{dry}");
    assert!(
        action_kinds(&dry).contains(&"pin_image_store".to_owned()),
        "{dry}"
    );
    assert_eq!(root.read("etc/docker/daemon.json"), CONTAINERD_ON);

    let (code, out) = root.run_json(&["enable"]);
    assert_eq!(code, 0, "{out}");
    let pinned = root.read("etc/docker/daemon.json");
    assert_eq!(
        pinned,
        "{\n  \"features\": {\"buildkit\": true, \"containerd-snapshotter\": false},\n  \"log-level\": \"warn\",\n  \"userns-remap\": \"default\"\n}\n"
    );
    let (code, again) = root.run_json(&["enable"]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["changed"], false, "{again}");

    let (code, out) = root.run_json(&["disable"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        action_kinds(&out).contains(&"restore_image_store".to_owned()),
        "{out}"
    );
    assert_eq!(root.read("etc/docker/daemon.json"), CONTAINERD_ON);
    assert!(
        !root
            .path("etc/docker/daemon.json.docker-userns-features")
            .exists()
    );
}

#[test]
fn a_features_value_edited_after_enable_is_kept() {
    require_root();
    let root = TestRoot::debian();
    root.write("etc/docker/daemon.json", CONTAINERD_ON, 0o644);
    let (code, out) = root.run_json(&["enable"]);
    assert_eq!(code, 0, "{out}");
    let edited = root
        .read("etc/docker/daemon.json")
        .replace("\"buildkit\": true", "\"buildkit\": false");
    root.write("etc/docker/daemon.json", &edited, 0o644);
    let (code, out) = root.run_json(&["disable"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out["warnings"].to_string().contains("changed since enable"),
        "{out}"
    );
    assert!(
        root.read("etc/docker/daemon.json")
            .contains("\"buildkit\": false, \"containerd-snapshotter\": false")
    );
}
