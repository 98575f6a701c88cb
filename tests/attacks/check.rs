//! Attacks on `check` and the readers behind it (the dockerd flag scan of
//! systemd units, drop-ins and init environment files), a hostile image
//! given to `--root`, a closed stdout, and a full disk under a lock.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
use crate::support::fingerprint::*;
use crate::support::scene::*;
use crate::support::*;

/// Planted in the scene's /etc/shadow (the host's, as the command sees
/// it). The lines parse as a unit, an init environment file and an
/// EnvironmentFile, so a reader that was led to the host's /etc/shadow
/// would put the marker in the report.
const MARKER: &str = "hostshadowmarker7c1e";

/// What a unit or environment file inside the image says instead.
const IMAGE_SIDE: &str = "imagesidevalue4b2d";

fn mark_victim(scene: &Scene) {
    let path = scene.etc("shadow");
    let mut text = fs::read(&path).unwrap();
    text.extend_from_slice(
        format!(
            "\n[Service]\nExecStart=/usr/bin/dockerd --userns-remap={MARKER}\n\
             EnvironmentFile=/etc/shadow\nDOCKER_OPTS=--userns-remap={MARKER}\n\
             OPTIONS=--userns-remap={MARKER}\n"
        )
        .as_bytes(),
    );
    fs::write(&path, text).unwrap();
}

/// A small image root at `$T/img`: account files and, with `systemd`,
/// the directory that says systemd runs the machine.
fn image(scene: &Scene, systemd: bool) -> PathBuf {
    let img = scene.path("img");
    put(&img, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    put(&img, "etc/group", "root:x:0:\n");
    if systemd {
        fs::create_dir_all(img.join("run/systemd/system")).unwrap();
    }
    img
}

fn put(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn link(root: &Path, rel: &str, target: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    symlink(target, path).unwrap();
}

/// `check --root $T/img` in the namespace, bounded by `timeout 20`;
/// returns stdout and stderr together, the exit status and the time taken.
fn check_image(scene: &Scene, format: &str) -> (String, i32, Duration) {
    let started = Instant::now();
    let out = scene.run(&format!(
        r#"rc=0
timeout 20 "$BIN" --root "$T/img" --format {format} check || rc=$?
echo "exit=$rc""#
    ));
    let took = started.elapsed();
    let text = stdout(&out) + &stderr(&out);
    let code = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("exit="))
        .unwrap_or_else(|| panic!("no exit status in:\n{text}"))
        .parse()
        .unwrap();
    (text, code, took)
}

fn assert_no_leak(text: &str) {
    assert!(
        !text.contains(MARKER),
        "the host's /etc/shadow leaked into the report:\n{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}

/// The exit status check gives for a finished run (0 healthy, 1 failures,
/// 2 refused): anything else is a timeout, a signal or a panic.
fn assert_finished(text: &str, code: i32) {
    assert!(
        matches!(code, 0..=2),
        "check did not finish normally (exit {code}):\n{text}"
    );
}

/// `check_image`, with what every attack on it must leave true: the
/// scene's /etc unchanged, a normal exit and nothing of the host's
/// /etc/shadow in the report. Returns the report and the time taken.
fn check_image_unharmed(scene: &Scene, format: &str) -> (String, Duration) {
    let before = scene.etc_fingerprint();
    let (text, code, took) = check_image(scene, format);
    assert_unchanged("the scene's /etc", &before, &scene.etc_fingerprint());
    assert_finished(&text, code);
    assert_no_leak(&text);
    (text, took)
}

#[test]
fn check_unit_symlink_to_etc_shadow_resolves_inside_the_image() {
    let scene = Scene::new();
    mark_victim(&scene);
    let img = image(&scene, true);
    // The image's own /etc/shadow: where the absolute link leads when it
    // is resolved inside the image, as systemd inside it would.
    put(
        &img,
        "etc/shadow",
        &format!("[Service]\nExecStart=/usr/bin/dockerd --userns-remap={IMAGE_SIDE}\n"),
    );
    link(&img, "etc/systemd/system/docker.service", "/etc/shadow");
    let (text, _) = check_image_unharmed(&scene, "json");
    assert!(
        text.contains(IMAGE_SIDE),
        "the link was not followed inside the image:\n{text}"
    );
}

#[test]
fn check_environment_file_symlink_to_etc_shadow_resolves_inside_the_image() {
    let scene = Scene::new();
    mark_victim(&scene);
    let img = image(&scene, true);
    put(
        &img,
        "lib/systemd/system/docker.service",
        "[Service]\nEnvironmentFile=-/etc/default/docker\nExecStart=/usr/bin/dockerd $DOCKER_OPTS\n",
    );
    link(&img, "etc/default/docker", "/etc/shadow");
    put(
        &img,
        "etc/shadow",
        &format!("DOCKER_OPTS=--userns-remap={IMAGE_SIDE}\n"),
    );
    let (text, _) = check_image_unharmed(&scene, "human");
    assert!(text.contains(IMAGE_SIDE), "{text}");
}

#[test]
fn check_drop_in_dir_symlinked_out_of_the_image_stays_inside() {
    let scene = Scene::new();
    mark_victim(&scene);
    // A directory of the host's /etc full of what a drop-in looks like.
    let victim_dir = scene.etc("leak.d");
    fs::create_dir(&victim_dir).unwrap();
    fs::write(
        victim_dir.join("override.conf"),
        format!("[Service]\nExecStart=\nExecStart=/usr/bin/dockerd --userns-remap={MARKER}\n"),
    )
    .unwrap();
    let img = image(&scene, true);
    put(
        &img,
        "lib/systemd/system/docker.service",
        "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
    );
    link(&img, "etc/systemd/system/docker.service.d", "/etc/leak.d");
    let (text, _) = check_image_unharmed(&scene, "human");
    assert!(text.contains("no dockerd flag sets it"), "{text}");
}

#[test]
fn check_daemon_json_symlink_to_etc_shadow_does_not_leak() {
    let scene = Scene::new();
    mark_victim(&scene);
    let img = image(&scene, false);
    link(&img, "etc/docker/daemon.json", "/etc/shadow");
    let (text, _) = check_image_unharmed(&scene, "human");
    assert!(text.contains("etc/docker/daemon.json"), "{text}");
}

#[test]
fn check_default_docker_fifo_does_not_hang() {
    let scene = Scene::new();
    mark_victim(&scene);
    let img = image(&scene, false);
    fs::create_dir_all(img.join("etc/default")).unwrap();
    let status = Command::new("mkfifo")
        .arg(img.join("etc/default/docker"))
        .status()
        .unwrap();
    assert!(status.success());
    let before = scene.etc_fingerprint();
    let (text, code, took) = check_image(&scene, "human");
    assert_unchanged("the scene's /etc", &before, &scene.etc_fingerprint());
    assert_ne!(code, 124, "check blocked on the FIFO:\n{text}");
    assert_finished(&text, code);
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_no_leak(&text);
    assert!(
        text.contains("etc/default/docker") && text.contains("not a regular file"),
        "the FIFO is not named:\n{text}"
    );
}

#[test]
fn check_huge_sparse_default_docker_is_refused_quickly() {
    let scene = Scene::new();
    mark_victim(&scene);
    let img = image(&scene, false);
    put(&img, "etc/default/docker", "");
    fs::File::options()
        .write(true)
        .open(img.join("etc/default/docker"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let (text, took) = check_image_unharmed(&scene, "human");
    assert!(took < Duration::from_secs(10), "reading took {took:?}");
    assert!(
        text.contains("etc/default/docker") && text.contains("larger than"),
        "the oversized file is not named:\n{text}"
    );
}

/// Runs `args` with stdout a pipe whose reader is already closed.
fn run_into_closed_pipe(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn closed_stdout_ends_quietly_for_every_output() {
    let scene = Scene::new();
    let img = image(&scene, false);
    let root = img.to_str().unwrap();
    let before = scene.etc_fingerprint();
    let normal = Command::new(BIN)
        .args(["--root", root, "check"])
        .output()
        .unwrap()
        .status
        .code();
    let runs: &[&[&str]] = &[
        &["--root", root, "check"],
        &["--root", root, "--format", "json", "check"],
        &["--root", root, "--dry-run", "enable"],
        &["--root", root, "--format", "json", "--dry-run", "enable"],
        &["--root", root, "--dry-run", "disable"],
        &["--root", root, "--format", "json", "grant", "/nonexistent"],
        &["--root", root, "grant", "/nonexistent"],
        &[
            "--root",
            root,
            "--dry-run",
            "shift",
            "/etc",
            "--uid-map",
            "0:100000:65536",
            "--gid-map",
            "0:100000:65536",
        ],
        &["completions", "bash"],
        &["docker-cli-plugin-metadata"],
        &["--help"],
    ];
    for args in runs {
        let (code, stderr) = run_into_closed_pipe(args);
        assert_ne!(code, Some(101), "{args:?} panicked:\n{stderr}");
        assert!(code.is_some(), "{args:?} died of a signal");
        assert!(!stderr.contains("panicked"), "{args:?}:\n{stderr}");
        assert!(
            !stderr.contains("Broken pipe"),
            "{args:?} complained:\n{stderr}"
        );
    }
    let (code, _) = run_into_closed_pipe(&["--root", root, "check"]);
    assert_eq!(code, normal, "check's status changed with a closed stdout");
    assert_unchanged("the scene's /etc", &before, &scene.etc_fingerprint());
}

/// Runs `enable --root $T/img` with the image's /etc on a 64 KiB tmpfs
/// that `fill` (shell) fills, and returns the output with a line telling
/// whether the listing of /etc (names, sizes, inodes) changed.
fn enable_on_full_etc(scene: &Scene, fill: &str) -> String {
    let img = image(scene, false);
    // The remap account exists, so enable only has to lock and write
    // /etc/subuid and /etc/subgid: our own lock and temp file code.
    put(
        &img,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\ndockremap:x:999:999::/nonexistent:/bin/false\n",
    );
    put(&img, "etc/group", "root:x:0:\ndockremap:x:999:\n");
    put(&img, "etc/subuid", "");
    put(&img, "etc/subgid", "");
    let out = scene.run(&format!(
        r#"I="$T/img"
cp -a "$I/etc" "$T/etc.copy"
mount -t tmpfs -o size=64k tmpfs "$I/etc"
cp -a "$T/etc.copy/." "$I/etc/"
{fill}
list() {{ (cd "$I/etc" && find . -printf '%p %s %i\n' | sort); }}
list > "$T/before.txt"
rc=0
"$BIN" --root "$I" enable --no-restart || rc=$?
echo "exit=$rc"
list > "$T/after.txt"
if cmp -s "$T/before.txt" "$T/after.txt"; then echo "etc unchanged"; else
  echo "etc changed:"; diff "$T/before.txt" "$T/after.txt" || true; fi
"#
    ));
    stdout(&out) + &stderr(&out)
}

#[test]
fn full_disk_leaves_no_lock_or_temp_file_in_etc() {
    let scene = Scene::new();
    let before = scene.etc_fingerprint();
    // Nothing free: writing the PID into `subuid.<pid>` fails.
    let no_room = enable_on_full_etc(
        &scene,
        r#"dd if=/dev/zero of="$I/etc/filler" bs=4k 2>/dev/null || true"#,
    );
    assert!(no_room.contains("exit=2"), "{no_room}");
    assert!(no_room.contains("subuid.lock"), "{no_room}");
    assert!(no_room.contains("No space left on device"), "{no_room}");
    assert!(no_room.contains("etc unchanged"), "{no_room}");
    fs::remove_dir_all(scene.path("img")).unwrap();
    fs::remove_dir_all(scene.path("etc.copy")).unwrap();
    // One page free: the lock file takes it, the temp file finds none.
    let one_page = enable_on_full_etc(
        &scene,
        r#"dd if=/dev/zero of="$I/etc/spare" bs=4k count=1 2>/dev/null
dd if=/dev/zero of="$I/etc/filler" bs=4k 2>/dev/null || true
rm "$I/etc/spare""#,
    );
    assert!(one_page.contains("exit=2"), "{one_page}");
    assert!(one_page.contains(".tmp"), "{one_page}");
    assert!(one_page.contains("No space left on device"), "{one_page}");
    assert!(one_page.contains("etc unchanged"), "{one_page}");
    assert_unchanged("the scene's /etc", &before, &scene.etc_fingerprint());
}

#[test]
fn check_follows_unit_links_that_stay_inside_the_image() {
    let scene = Scene::new();
    mark_victim(&scene);
    let img = image(&scene, true);
    put(
        &img,
        "lib/systemd/system/docker.service",
        "[Service]\nEnvironmentFile=-/etc/default/docker\nExecStart=/usr/bin/dockerd -H fd:// $DOCKER_OPTS\n",
    );
    // How packages enable a unit: a link from /etc to the packaged file.
    link(
        &img,
        "etc/systemd/system/docker.service",
        "/lib/systemd/system/docker.service",
    );
    put(
        &img,
        "usr/share/docker/override.conf",
        "[Service]\nEnvironment=EXTRA=--debug\n",
    );
    link(
        &img,
        "etc/systemd/system/docker.service.d/10-debug.conf",
        "../../../usr/share/docker/override.conf",
    );
    put(
        &img,
        "etc/default/docker",
        &format!("DOCKER_OPTS=\"--userns-remap={IMAGE_SIDE}\"\n"),
    );
    let (text, _) = check_image_unharmed(&scene, "json");
    assert!(
        text.contains(&format!("--userns-remap={IMAGE_SIDE}")),
        "the flag set through linked units was not found:\n{text}"
    );
    assert!(text.contains("etc/default/docker"), "{text}");
}

#[test]
fn check_data_root_link_out_of_the_image_is_not_measured() {
    let scene = Scene::new();
    mark_victim(&scene);
    // Outside the image: 4 MiB that only a walk led out of it would count.
    let victim = scene.path("victim");
    fs::create_dir(&victim).unwrap();
    fs::write(victim.join("data"), vec![7u8; 4 << 20]).unwrap();
    let img = image(&scene, false);
    link(
        &img,
        "var/lib/docker/1.1",
        victim.to_str().expect("a UTF-8 scene path"),
    );
    let (text, _) = check_image_unharmed(&scene, "human");
    assert!(
        text.contains("/var/lib/docker/1.1 (0 images, 0 containers, 0 volumes, 0.0 B)"),
        "the walk left the image:\n{text}"
    );
}

/// An image root whose remap user and ranges are set, with a stored
/// container that bind-mounts `/srv/data/sub` read-write; container root
/// owns `/srv/data` (a source granted to it earlier).
fn image_with_bind(scene: &Scene) -> PathBuf {
    let img = image(scene, false);
    put(
        &img,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\ndockremap:x:999:999::/:/bin/false\n",
    );
    put(&img, "etc/group", "root:x:0:\ndockremap:x:999:\n");
    put(&img, "etc/subuid", "dockremap:100000:65536\n");
    put(&img, "etc/subgid", "dockremap:100000:65536\n");
    put(
        &img,
        "etc/docker/daemon.json",
        "{\"userns-remap\": \"default\"}\n",
    );
    put(
        &img,
        "var/lib/docker/100000.100000/containers/0123abcd/config.v2.json",
        r#"{"Name": "/web", "MountPoints": {"/sub": {"Source": "/srv/data/sub",
            "Destination": "/sub", "RW": true, "Type": "bind"}}}"#,
    );
    fs::create_dir_all(img.join("srv/data")).unwrap();
    chown_tree(&img.join("srv/data"), 100_000);
    img
}

#[test]
fn check_never_offers_grant_on_a_bind_source_link_container_root_planted() {
    let scene = Scene::new();
    let img = image_with_bind(&scene);
    // Container root swaps its bind source for a link to /etc.
    scene.run_ok(&as_uid(100_000, r#"ln -s /etc "$T/img/srv/data/sub""#));
    let etc = scene.etc_fingerprint();
    let image_etc = fingerprint_tree(&img.join("etc"));
    for command in ["check", "enable --dry-run"] {
        let out = scene.run(&format!(
            r#"rc=0; "$BIN" --root "$T/img" {command} || rc=$?; echo "exit=$rc""#
        ));
        let text = stdout(&out) + &stderr(&out);
        assert!(!text.contains("panicked"), "{text}");
        assert!(
            text.contains(
                "srv/data/sub: is a symbolic link (to /etc) that someone other than root controls"
            ),
            "{command}: the planted link is not named:\n{text}"
        );
        assert!(
            !text.contains("grant /etc"),
            "{command} offers to grant what the link points to:\n{text}"
        );
    }
    assert_unchanged("the scene's /etc", &etc, &scene.etc_fingerprint());
    assert_unchanged(
        "the image's /etc",
        &image_etc,
        &fingerprint_tree(&img.join("etc")),
    );
}

#[test]
fn check_lists_a_real_bind_source_container_root_cannot_write() {
    let scene = Scene::new();
    let img = image_with_bind(&scene);
    fs::create_dir_all(img.join("srv/data/sub")).unwrap();
    let out = scene.run(r#"rc=0; "$BIN" --root "$T/img" check || rc=$?; echo "exit=$rc""#);
    let text = stdout(&out) + &stderr(&out);
    let img = img.display();
    assert!(
        text.contains(&format!("docker-userns --root {img} grant /srv/data/sub")),
        "{text}"
    );
}
