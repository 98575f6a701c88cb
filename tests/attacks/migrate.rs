//! Attacks on `migrate` by a hostile image given to `--root`: symlinks
//! planted where the migration re-owns, renames or writes (volume data,
//! container files, layer directories, the journal and temp files), a
//! data root that leads out of the image, and a FIFO as the journal.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::fingerprint::*;
use crate::support::scene::*;
use crate::support::*;

/// The data root inside the image.
const DATA: &str = "var/lib/docker";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/bash
";
const GROUP: &str = "root:x:0:
daemon:x:1:
nogroup:x:65534:
alice:x:1000:
";
const SHADOW: &str = "root:*:19700:0:99999:7:::
daemon:*:19700:0:99999:7:::
nobody:*:19700:0:99999:7:::
alice:$y$j9T$abc:19700:0:99999:7:::
";
const GSHADOW: &str = "root:*::
daemon:*::
nogroup:*::
alice:!::
";

fn write(path: &Path, content: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// `$T/img`: a Debian-like image root (account files, login.defs, shadow's
/// tools present so the machine's are used with --prefix) holding a
/// dockerd 20.10 data root at /var/lib/docker.
fn image(scene: &Scene) -> PathBuf {
    let img = scene.path("img");
    write(&img.join("etc/passwd"), PASSWD, 0o644);
    write(&img.join("etc/group"), GROUP, 0o644);
    write(&img.join("etc/shadow"), SHADOW, 0o640);
    write(&img.join("etc/gshadow"), GSHADOW, 0o640);
    fs::copy("/etc/login.defs", img.join("etc/login.defs")).unwrap();
    for tool in ["useradd", "groupadd", "nologin"] {
        write(
            &img.join(format!("usr/sbin/{tool}")),
            "#!/bin/false\n",
            0o755,
        );
    }
    docker_state(&img.join(DATA));
    img
}

/// A small non-remapped data root as dockerd 20.10 leaves it: an image,
/// one overlay2 layer, a container whose config keeps absolute paths, and
/// a named volume.
fn docker_state(d: &Path) {
    use std::os::unix::fs::chown;
    let daemon_root = "/var/lib/docker";
    write(
        &d.join("image/overlay2/imagedb/content/sha256/abc"),
        "{}",
        0o600,
    );
    write(&d.join("image/overlay2/repositories.json"), "{}", 0o600);
    write(&d.join("overlay2/L1/diff/etc/motd"), "hi\n", 0o644);
    write(
        &d.join("overlay2/L1/diff/home/u/tool"),
        "#!/bin/sh\n",
        0o755,
    );
    chown(
        d.join("overlay2/L1/diff/home/u/tool"),
        Some(1000),
        Some(1000),
    )
    .unwrap();
    chown(d.join("overlay2/L1/diff/home/u"), Some(1000), Some(1000)).unwrap();
    fs::create_dir_all(d.join("overlay2/L1/work")).unwrap();
    write(&d.join("overlay2/L1/link"), "ABC", 0o644);
    fs::create_dir_all(d.join("overlay2/l")).unwrap();
    symlink("../L1/diff", d.join("overlay2/l/ABC")).unwrap();
    let config = serde_json::json!({
        "ID": "C1",
        "LogPath": format!("{daemon_root}/containers/C1/C1-json.log"),
        "HostnamePath": format!("{daemon_root}/containers/C1/hostname"),
        "HostsPath": format!("{daemon_root}/containers/C1/hosts"),
        "ResolvConfPath": format!("{daemon_root}/containers/C1/resolv.conf"),
        "MountPoints": {"/data": {"Source": format!("{daemon_root}/volumes/v/_data"), "Name": "v"}}
    });
    write(
        &d.join("containers/C1/config.v2.json"),
        &config.to_string(),
        0o600,
    );
    for file in ["hostname", "hosts", "resolv.conf"] {
        write(&d.join(format!("containers/C1/{file}")), "x\n", 0o644);
    }
    fs::create_dir_all(d.join("containers/C1/mounts")).unwrap();
    write(&d.join("volumes/v/_data/f"), "data\n", 0o640);
    chown(d.join("volumes/v/_data/f"), Some(1000), Some(0)).unwrap();
    write(&d.join("volumes/metadata.db"), "", 0o600);
    write(&d.join("network/files/local-kv.db"), "", 0o644);
    for dir in ["overlay2/L1", "containers/C1", "containers/C1/mounts"] {
        fs::set_permissions(d.join(dir), fs::Permissions::from_mode(0o710)).unwrap();
    }
}

/// A directory outside the image with files root owns, which a migration
/// following a link would shift to 100000.
fn victim(scene: &Scene) -> PathBuf {
    let dir = scene.path("victim");
    write(&dir.join("secret"), "keep me\n", 0o600);
    write(&dir.join("sub/file"), "keep me too\n", 0o644);
    dir
}

/// Replaces `path` (a file or a tree) with a symlink to `target`.
fn plant_symlink(path: &Path, target: &str) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).unwrap(),
        Ok(_) => fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
    symlink(target, path).unwrap();
}

/// `enable --migrate` on the image, in the scene.
fn migrate(scene: &Scene) -> Output {
    scene.run(r#""$BIN" --root "$T/img" enable --migrate --yes --format json"#)
}

/// The command refused with exit 2 and a message naming `path`.
fn assert_refused(out: &Output, path: &str) {
    let text = format!("{}{}", stdout(out), stderr(out));
    assert_eq!(out.status.code(), Some(2), "expected a refusal:\n{text}");
    assert!(
        text.contains(path),
        "the message should name {path}:\n{text}"
    );
}

/// Runs `run` and asserts what every refused attack must leave: the
/// scene's /etc and each of `kept` (a name and a tree) unchanged, and a
/// refusal naming `path`.
fn assert_refused_unharmed(
    scene: &Scene,
    run: impl FnOnce(&Scene) -> Output,
    kept: &[(&str, &Path)],
    path: &str,
) {
    let before: Vec<_> = kept.iter().map(|(_, dir)| fingerprint_tree(dir)).collect();
    let out = scene.keeping_etc(|| run(scene));
    for ((what, dir), before) in kept.iter().zip(&before) {
        assert_unchanged(what, before, &fingerprint_tree(dir));
    }
    assert_refused(&out, path);
}

#[test]
fn migrate_refuses_volume_data_symlink_to_etc_cron_d() {
    let scene = Scene::new();
    let img = image(&scene);
    let victim = victim(&scene);
    plant_symlink(&img.join(DATA).join("volumes/v/_data"), "/etc/cron.d");
    fs::create_dir(img.join(DATA).join("volumes/x")).unwrap();
    symlink(&victim, img.join(DATA).join("volumes/x/_data")).unwrap();
    assert_refused_unharmed(
        &scene,
        migrate,
        &[("the victim", &victim)],
        "volumes/v/_data",
    );
}

#[test]
fn migrate_refuses_volume_dir_symlink_to_outside_dir() {
    let scene = Scene::new();
    let img = image(&scene);
    let victim = victim(&scene);
    fs::create_dir(victim.join("_data")).unwrap();
    symlink(&victim, img.join(DATA).join("volumes/w")).unwrap();
    assert_refused_unharmed(&scene, migrate, &[("the victim", &victim)], "volumes/w");
}

#[test]
fn migrate_refuses_container_hostname_symlink_to_etc_shadow() {
    let scene = Scene::new();
    let img = image(&scene);
    plant_symlink(
        &img.join(DATA).join("containers/C1/hostname"),
        "/etc/shadow",
    );
    assert_refused_unharmed(&scene, migrate, &[], "containers/C1/hostname");
}

#[test]
fn migrate_refuses_container_hosts_hard_link_to_outside_file() {
    let scene = Scene::new();
    let img = image(&scene);
    let victim = victim(&scene);
    let hosts = img.join(DATA).join("containers/C1/hosts");
    fs::remove_file(&hosts).unwrap();
    fs::hard_link(victim.join("secret"), &hosts).unwrap();
    assert_refused_unharmed(
        &scene,
        migrate,
        &[("the victim", &victim)],
        "containers/C1/hosts",
    );
}

#[test]
fn migrate_refuses_layer_dir_symlink_to_etc_ssl() {
    let scene = Scene::new();
    let img = image(&scene);
    symlink("/etc/ssl", img.join(DATA).join("overlay2/L2")).unwrap();
    assert_refused_unharmed(&scene, migrate, &[], "overlay2/L2");
}

#[test]
fn migrate_refuses_layer_diff_symlink_to_outside_dir() {
    let scene = Scene::new();
    let img = image(&scene);
    let victim = victim(&scene);
    plant_symlink(
        &img.join(DATA).join("overlay2/L1/diff"),
        victim.to_str().unwrap(),
    );
    plant_symlink(&img.join(DATA).join("overlay2/L1/work"), "/etc");
    assert_refused_unharmed(
        &scene,
        migrate,
        &[("the victim", &victim)],
        "overlay2/L1/diff",
    );
}

#[test]
fn migrate_refuses_remapped_root_symlink_to_outside_dir() {
    let scene = Scene::new();
    let img = image(&scene);
    let victim = victim(&scene);
    symlink(&victim, img.join(DATA).join("100000.100000")).unwrap();
    assert_refused_unharmed(&scene, migrate, &[("the victim", &victim)], "100000.100000");
}

#[test]
fn migrate_refuses_journal_symlink_to_etc_shadow() {
    let scene = Scene::new();
    let img = image(&scene);
    symlink(
        "/etc/shadow",
        img.join(DATA).join(".docker-userns-migrate.json"),
    )
    .unwrap();
    assert_refused_unharmed(&scene, migrate, &[], ".docker-userns-migrate.json");
}

/// The temp names carry the pid; in a fresh pid namespace the command
/// runs as pid 1, so the attacker knows them.
fn migrate_as_pid_1(scene: &Scene) -> Output {
    scene.run(
        r#"exec unshare --pid --fork --mount-proc "$BIN" --root "$T/img" enable --migrate --yes --format json"#,
    )
}

#[test]
fn migrate_refuses_journal_temp_symlink_into_etc_cron_d() {
    let scene = Scene::new();
    let img = image(&scene);
    let d = img.join(DATA);
    for temp in [
        ".docker-userns-migrate.tmp",
        ".docker-userns-migrate.json.1.tmp",
    ] {
        symlink("/etc/cron.d/docker-userns", d.join(temp)).unwrap();
    }
    assert_refused_unharmed(
        &scene,
        migrate_as_pid_1,
        &[],
        ".docker-userns-migrate.json.1.tmp",
    );
}

#[test]
fn migrate_refuses_config_temp_symlink_into_etc_cron_d() {
    let scene = Scene::new();
    let img = image(&scene);
    symlink(
        "/etc/cron.d/docker-userns",
        img.join(DATA).join("containers/C1/.config.v2.json.1.tmp"),
    )
    .unwrap();
    assert_refused_unharmed(
        &scene,
        migrate_as_pid_1,
        &[],
        "containers/C1/.config.v2.json.1.tmp",
    );
}

#[test]
fn migrate_refuses_data_root_with_dotdot_leaving_the_image() {
    let scene = Scene::new();
    let img = image(&scene);
    // Inside the image `/d/../../outside` is /outside; from the host it is
    // `$T/outside`, a data root that is not the image's.
    fs::create_dir(img.join("d")).unwrap();
    docker_state(&img.join("outside"));
    let outside = scene.path("outside");
    docker_state(&outside);
    write(
        &img.join("etc/docker/daemon.json"),
        r#"{"data-root": "/d/../../outside"}"#,
        0o644,
    );
    assert_refused_unharmed(
        &scene,
        migrate,
        &[("the outside data root", &outside)],
        "/d/../../outside",
    );
}

#[test]
fn migrate_refuses_data_root_symlink_leaving_the_image() {
    let scene = Scene::new();
    let img = image(&scene);
    let outside = scene.path("outside");
    docker_state(&outside);
    // From the host the link leads to `$T/outside`; inside the image, to
    // the image's own /outside.
    fs::rename(img.join(DATA), img.join("outside")).unwrap();
    symlink("../../../outside", img.join(DATA)).unwrap();
    assert_refused_unharmed(
        &scene,
        migrate,
        &[("the outside data root", &outside)],
        DATA,
    );
}

#[test]
fn check_and_migrate_do_not_block_on_a_fifo_journal() {
    let scene = Scene::new();
    let img = image(&scene);
    let journal = img.join(DATA).join(".docker-userns-migrate.json");
    let status = std::process::Command::new("mkfifo")
        .arg(&journal)
        .status()
        .unwrap();
    assert!(status.success());
    let etc = scene.etc_fingerprint();
    let check = scene.run(r#"timeout 20 "$BIN" --root "$T/img" check --format json"#);
    assert_ne!(
        check.status.code(),
        Some(124),
        "check blocked on the FIFO journal"
    );
    let out =
        scene.run(r#"timeout 20 "$BIN" --root "$T/img" enable --migrate --yes --format json"#);
    assert_ne!(out.status.code(), Some(124), "enable blocked on the FIFO");
    assert_unchanged("/etc", &etc, &scene.etc_fingerprint());
    assert_refused(&out, ".docker-userns-migrate.json");
}

#[test]
fn migrate_still_moves_and_shifts_a_real_data_root() {
    let scene = Scene::new();
    let img = image(&scene);
    let etc = scene.etc_fingerprint();
    let out = migrate(&scene);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_unchanged("/etc", &etc, &scene.etc_fingerprint());
    let m = img.join(DATA).join("100000.100000");
    let data = fingerprint(&m.join("volumes/v/_data/f"));
    assert_eq!((data.uid, data.gid), (101000, 100000));
    let host = fingerprint(&m.join("containers/C1/hostname"));
    assert_eq!(
        (host.uid, host.gid, host.mode & 0o7777),
        (100000, 100000, 0o644)
    );
    let layer = fingerprint(&m.join("overlay2/L1"));
    assert_eq!(
        (layer.uid, layer.gid, layer.mode & 0o7777),
        (0, 100000, 0o710)
    );
    let config = fs::read_to_string(m.join("containers/C1/config.v2.json")).unwrap();
    assert!(
        config.contains("/var/lib/docker/100000.100000/volumes/v/_data"),
        "{config}"
    );
    assert!(!img.join(DATA).join(".docker-userns-migrate.json").exists());
}

#[test]
fn migrate_leaves_a_volume_hard_link_to_etc_shadow_unchanged_and_says_so() {
    let scene = Scene::new();
    let img = image(&scene);
    // A second name of /etc/shadow inside a volume (made by root here: the
    // kernel's protected_hardlinks stops uid 100000 from making it, but not
    // every host sets it).
    fs::hard_link(
        scene.etc("shadow"),
        img.join(DATA).join("volumes/v/_data/shadow"),
    )
    .unwrap();
    let etc = scene.etc_fingerprint();
    let out = migrate(&scene);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{text}");
    let mut expected = etc.clone();
    // Only the link count of shadow may differ: the volume's name moved.
    let after = scene.etc_fingerprint();
    expected.get_mut(&scene.etc("shadow")).unwrap().nlink = after[&scene.etc("shadow")].nlink;
    assert_unchanged("/etc", &expected, &after);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = report["migration"]["warnings"].to_string();
    assert!(
        warnings.contains("_data/shadow") && warnings.contains("left unchanged"),
        "the migration should report the hard link it left alone: {text}"
    );
}

/// The image's daemon.json asks for the containerd image store, so
/// `enable` pins the graph driver and keeps the user's value in a record
/// beside it; the image plants that record as a link to its shadow file.
#[test]
fn pin_refuses_a_store_record_planted_as_link_to_etc_shadow() {
    let scene = Scene::new();
    let img = image(&scene);
    let config = img.join("etc/docker/daemon.json");
    write(
        &config,
        "{\"features\": {\"containerd-snapshotter\": true}}\n",
        0o644,
    );
    symlink(
        "/etc/shadow",
        img.join("etc/docker/daemon.json.docker-userns-features"),
    )
    .unwrap();
    assert_refused_unharmed(
        &scene,
        |scene| scene.run(r#""$BIN" --root "$T/img" enable --yes --format json"#),
        &[("image /etc", &img.join("etc"))],
        "daemon.json.docker-userns-features",
    );
}
