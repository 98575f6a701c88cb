//! Attacks on `grant`: a container root (host uid 100000) or a local user
//! swaps the path root asks to open up for a link to /etc, a hard link to
//! /etc/shadow, a FIFO or a device, or keeps a parent it can rewrite.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;

#[allow(unused_imports)]
use crate::support::fingerprint::*;
use crate::support::scene::*;
use crate::support::*;

/// The scene's /etc configured for remapping to 100000:65536, as `enable`
/// leaves it, so `grant` has a mapping to grant to.
fn configured() -> Scene {
    let scene = Scene::new();
    let append = |name: &str, line: &str| {
        let path = scene.etc(name);
        let mut text = fs::read_to_string(&path).unwrap_or_default();
        text.push_str(line);
        fs::write(&path, text).unwrap();
    };
    append(
        "passwd",
        "dockremap:x:64990:64990::/nonexistent:/usr/sbin/nologin\n",
    );
    append("group", "dockremap:x:64990:\n");
    append("subuid", "dockremap:100000:65536\n");
    append("subgid", "dockremap:100000:65536\n");
    fs::create_dir_all(scene.etc("docker")).unwrap();
    fs::write(
        scene.etc("docker/daemon.json"),
        "{\"userns-remap\": \"dockremap\"}\n",
    )
    .unwrap();
    scene
}

/// A directory made by root with `mode`, owned by `uid:uid`.
fn dir(path: &Path, mode: u32, uid: u32) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

/// `$T/srv` (root, 0755) and `$T/srv/bind` owned by `owner`: a bind-mount
/// source, given to the container by an earlier grant when owner is 100000.
fn bind_source(scene: &Scene, owner: u32) {
    dir(&scene.path("srv"), 0o755, 0);
    dir(&scene.path("srv/bind"), 0o755, owner);
}

fn grant(scene: &Scene, args: &str) -> Output {
    // `timeout` so a grant that blocks on a FIFO fails instead of hanging.
    scene.run(&format!("timeout 30 \"$BIN\" grant {args}"))
}

/// Exit 2 and a message that names `component` and says `why`.
fn assert_refused(out: &Output, component: &Path, why: &str) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "grant should refuse:\nstdout:\n{}\nstderr:\n{err}",
        stdout(out)
    );
    let named = format!("{}:", component.display());
    assert!(
        err.contains(&named) && err.contains(why),
        "the refusal should name {named} and say {why:?}:\n{err}"
    );
}

#[test]
fn grant_refuses_symlink_component_to_etc() {
    let scene = configured();
    bind_source(&scene, CONTAINER_ROOT);
    dir(&scene.path("srv/bind/sub"), 0o755, CONTAINER_ROOT);
    // Container root replaces a subdirectory of its bind mount with a link.
    scene.run_ok(&as_uid(
        CONTAINER_ROOT,
        "cd \"$T/srv/bind\" && rmdir sub && ln -s /etc sub",
    ));
    let out = scene.keeping_etc(|| grant(&scene, "\"$T/srv/bind/sub\""));
    assert_refused(&out, &scene.path("srv/bind/sub"), "symbolic link");
}

#[test]
fn grant_acl_refuses_symlink_to_etc_shadow() {
    let scene = configured();
    bind_source(&scene, CONTAINER_ROOT);
    scene.run_ok(&as_uid(
        CONTAINER_ROOT,
        "ln -s /etc/shadow \"$T/srv/bind/data\"",
    ));
    let out = scene.keeping_etc(|| grant(&scene, "--acl \"$T/srv/bind/data\""));
    assert_refused(&out, &scene.path("srv/bind/data"), "symbolic link");
}

#[test]
fn grant_refuses_symlink_in_the_middle_of_the_path() {
    let scene = configured();
    bind_source(&scene, CONTAINER_ROOT);
    scene.run_ok(&as_uid(CONTAINER_ROOT, "ln -s /etc \"$T/srv/bind/mid\""));
    let out = scene.keeping_etc(|| grant(&scene, "\"$T/srv/bind/mid/cron.d\""));
    assert_refused(&out, &scene.path("srv/bind/mid"), "symbolic link");
}

#[test]
fn grant_refuses_final_symlink_to_a_directory_planted_in_tmp() {
    let scene = configured();
    // A local user's name in the shared sticky /tmp, pointing at /etc.
    scene.run_ok(&as_uid(USER, "ln -s /etc /tmp/share"));
    let out = scene.keeping_etc(|| grant(&scene, "/tmp/share"));
    assert_refused(&out, Path::new("/tmp/share"), "symbolic link");
}

#[test]
fn grant_refuses_dot_dot_component() {
    let scene = configured();
    bind_source(&scene, 0);
    let out = scene.keeping_etc(|| grant(&scene, "\"$T/srv/bind/../../etc\""));
    assert_refused(&out, &scene.path("srv/bind/../../etc"), "`..`");
}

#[test]
fn grant_refuses_hard_link_to_etc_shadow() {
    let scene = configured();
    bind_source(&scene, 0);
    // fs.protected_hardlinks stops container root from linking a file it
    // does not own, and sysctls are not ours to change: root plants the
    // link in setup. What is tested is that grant refuses a file with more
    // than one name whoever made it.
    fs::hard_link(scene.etc("shadow"), scene.path("srv/bind/shadow")).unwrap();
    let etc = scene.etc_fingerprint();
    for args in ["", "--acl "] {
        let out = grant(&scene, &format!("{args}\"$T/srv/bind/shadow\""));
        assert_unchanged("/etc", &etc, &scene.etc_fingerprint());
        assert_refused(&out, &scene.path("srv/bind/shadow"), "2 hard links");
    }
}

#[test]
fn grant_refuses_parent_owned_by_container_root() {
    let scene = configured();
    bind_source(&scene, CONTAINER_ROOT);
    dir(&scene.path("srv/bind/sub"), 0o750, 0);
    let etc = scene.etc_fingerprint();
    let sub = fingerprint_all(&[scene.path("srv/bind/sub")]);
    // Container root can rename sub away and put a link in its place
    // between any lookup of grant and the next: grant must not start.
    let out = grant(&scene, "\"$T/srv/bind/sub\"");
    assert_unchanged("/etc", &etc, &scene.etc_fingerprint());
    assert_unchanged(
        "the source",
        &sub,
        &fingerprint_all(&[scene.path("srv/bind/sub")]),
    );
    assert_refused(&out, &scene.path("srv/bind"), "owned by uid 100000");
}

#[test]
fn grant_refuses_world_writable_parent_without_sticky_bit() {
    let scene = configured();
    dir(&scene.path("srv"), 0o755, 0);
    dir(&scene.path("srv/drop"), 0o777, 0);
    dir(&scene.path("srv/drop/data"), 0o750, 0);
    let etc = scene.etc_fingerprint();
    let data = fingerprint_all(&[scene.path("srv/drop/data")]);
    let out = grant(&scene, "--acl \"$T/srv/drop/data\"");
    assert_unchanged("/etc", &etc, &scene.etc_fingerprint());
    assert_unchanged(
        "the source",
        &data,
        &fingerprint_all(&[scene.path("srv/drop/data")]),
    );
    assert_refused(&out, &scene.path("srv/drop"), "writable");
}

#[test]
fn grant_refuses_fifo_without_blocking_or_changing_it() {
    let scene = configured();
    scene.run_ok(&as_uid(USER, "mkfifo -m 0600 /tmp/pipe"));
    let pipe = scene.path("tmp/pipe");
    let before = fingerprint_all(std::slice::from_ref(&pipe));
    let out = scene.keeping_etc(|| grant(&scene, "/tmp/pipe"));
    assert_unchanged(
        "the FIFO",
        &before,
        &fingerprint_all(std::slice::from_ref(&pipe)),
    );
    assert_refused(&out, Path::new("/tmp/pipe"), "FIFO");
}

#[test]
fn grant_refuses_device_target() {
    let scene = configured();
    bind_source(&scene, 0);
    // Only root can make a device node; one left in a bind-mount source.
    scene.run_ok("mknod -m 0600 \"$T/srv/bind/null\" c 1 3");
    let node = scene.path("srv/bind/null");
    let before = fingerprint_all(std::slice::from_ref(&node));
    let out = scene.keeping_etc(|| grant(&scene, "--acl \"$T/srv/bind/null\""));
    assert_unchanged(
        "the device",
        &before,
        &fingerprint_all(std::slice::from_ref(&node)),
    );
    assert_refused(&out, &node, "character device");
}

#[test]
fn grant_under_root_refuses_symlink_inside_the_image() {
    let scene = configured();
    let image = scene.path("image");
    dir(&image, 0o755, 0);
    fs::create_dir_all(image.join("etc/docker")).unwrap();
    for name in ["passwd", "group", "subuid", "subgid", "docker/daemon.json"] {
        fs::copy(scene.etc(name), image.join("etc").join(name)).unwrap();
    }
    dir(&image.join("srv"), 0o755, 0);
    // The hostile image ships /srv/data as a link to its own /etc.
    std::os::unix::fs::symlink("/etc", image.join("srv/data")).unwrap();
    let etc = scene.etc_fingerprint();
    let image_etc = fingerprint_tree(&image.join("etc"));
    let out = scene.run("\"$BIN\" --root \"$T/image\" grant /srv/data");
    assert_unchanged("/etc", &etc, &scene.etc_fingerprint());
    assert_unchanged(
        "the image's /etc",
        &image_etc,
        &fingerprint_tree(&image.join("etc")),
    );
    assert_refused(&out, &image.join("srv/data"), "symbolic link");
}

#[test]
fn grant_still_opens_up_a_real_bind_mount_source() {
    let scene = configured();
    dir(&scene.path("srv"), 0o750, 0);
    dir(&scene.path("srv/data"), 0o755, 0);
    dir(&scene.path("srv/shared"), 0o750, 0);
    let etc = scene.etc_fingerprint();
    let out = grant(&scene, "\"$T/srv/data\"");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = grant(&scene, "--acl --as 1000 \"$T/srv/shared\"");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_unchanged("/etc", &etc, &scene.etc_fingerprint());
    assert_eq!(
        fs::metadata(scene.path("srv")).unwrap().mode() & 0o7777,
        0o751
    );
    let data = fs::metadata(scene.path("srv/data")).unwrap();
    assert_eq!((data.uid(), data.gid()), (CONTAINER_ROOT, CONTAINER_ROOT));
    let shared = fingerprint(&scene.path("srv/shared"));
    assert_eq!(
        (shared.uid, shared.gid),
        (0, 0),
        "--acl leaves owners alone"
    );
    assert!(
        shared.xattrs.contains_key("system.posix_acl_access")
            && shared.xattrs.contains_key("system.posix_acl_default"),
        "{shared:?}"
    );
}
