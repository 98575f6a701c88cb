//! Attacks by a hostile image given to `--root` on enable and disable: the
//! image's /etc (or names in it) lead back to the host's /etc by symlink,
//! by another path to the same directory, or by hard link, or hold FIFOs
//! where account tools expect files. Whatever the image holds, nothing
//! outside it may change, and nothing may block.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;

#[allow(unused_imports)]
use crate::support::fingerprint::*;
use crate::support::scene::*;
use crate::support::*;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
";
const GROUP: &str = "root:x:0:
daemon:x:1:
nogroup:x:65534:
";
const SHADOW: &str = "root:*:19700:0:99999:7:::
daemon:*:19700:0:99999:7:::
nobody:*:19700:0:99999:7:::
";
const GSHADOW: &str = "root:*::
daemon:*::
nogroup:*::
";

/// The account files every image below starts from.
const ACCOUNT_FILES: [&str; 4] = ["passwd", "group", "shadow", "gshadow"];

/// `$T/img`: a Debian-like image root with shadow's tools (so the
/// machine's useradd would be chosen), account files, login.defs and
/// nologin, all as a real image has them.
fn debian_image(scene: &Scene) -> PathBuf {
    let img = scene.path("img");
    let write = |rel: &str, text: &str, mode: u32| {
        let path = img.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    write("etc/passwd", PASSWD, 0o644);
    write("etc/group", GROUP, 0o644);
    write("etc/shadow", SHADOW, 0o640);
    write("etc/gshadow", GSHADOW, 0o640);
    write(
        "etc/login.defs",
        &fs::read_to_string("/etc/login.defs").unwrap(),
        0o644,
    );
    for tool in ["useradd", "groupadd", "nologin"] {
        write(&format!("usr/sbin/{tool}"), "#!/bin/false\n", 0o755);
    }
    img
}

/// The image after a successful `enable`, for `disable --purge`.
fn enabled_image(scene: &Scene) -> PathBuf {
    let img = debian_image(scene);
    scene.run_ok("\"$BIN\" --root \"$T/img\" enable");
    img
}

/// Runs docker-userns on the image; `timeout` so a FIFO that blocks fails
/// the test instead of hanging it.
fn on_image(scene: &Scene, args: &str) -> Output {
    scene.run(&format!("timeout 60 \"$BIN\" --root \"$T/img\" {args}"))
}

fn link(target: impl AsRef<Path>, at: &Path) {
    let _ = fs::remove_file(at);
    fs::create_dir_all(at.parent().unwrap()).unwrap();
    symlink(target, at).unwrap();
}

fn fifo(at: &Path) {
    let _ = fs::remove_file(at);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        at,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

fn assert_ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "the command should succeed:\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// Exit 2 and a message that names `path` and says `why`.
fn assert_refused(out: &Output, path: &Path, why: &str) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the command should refuse:\nstdout:\n{}\nstderr:\n{err}",
        stdout(out)
    );
    let named = path.display().to_string();
    assert!(
        err.contains(&named) && err.contains(why),
        "the refusal should name {named} and say {why:?}:\n{err}"
    );
}

/// The image's own account files are sane after enable: a regular file
/// each, ending with the remap account, and the ranges allotted.
fn assert_image_enabled(img: &Path) {
    let read = |name: &str| {
        let path = img.join("etc").join(name);
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file(), "{} is a regular file", path.display());
        assert_eq!(meta.nlink(), 1, "{} has one link", path.display());
        fs::read_to_string(&path).unwrap()
    };
    let passwd = read("passwd");
    assert!(passwd.starts_with(PASSWD), "{passwd}");
    assert!(
        passwd
            .lines()
            .last()
            .unwrap()
            .ends_with(":/nonexistent:/usr/sbin/nologin")
            && passwd.lines().last().unwrap().starts_with("dockremap:x:"),
        "{passwd}"
    );
    assert!(read("group").starts_with(GROUP));
    assert!(read("group").contains("\ndockremap:x:"));
    assert!(read("shadow").starts_with(SHADOW));
    assert!(read("shadow").contains("\ndockremap:!:"));
    assert!(read("gshadow").starts_with(GSHADOW));
    assert!(read("gshadow").contains("\ndockremap:!::"));
    assert_eq!(read("subuid"), "dockremap:100000:65536\n");
    assert_eq!(read("subgid"), "dockremap:100000:65536\n");
    let config = read("docker/daemon.json");
    assert!(config.contains("\"userns-remap\": \"default\""), "{config}");
    for name in ACCOUNT_FILES.iter().chain(&["subuid", "subgid"]) {
        let lock = img.join("etc").join(format!("{name}.lock"));
        assert!(
            fs::symlink_metadata(&lock).is_err(),
            "{} left behind",
            lock.display()
        );
    }
}

#[test]
fn image_enable_legitimate_root_gets_account_ranges_and_config() {
    let scene = Scene::new();
    let img = debian_image(&scene);
    let out = scene.keeping_etc(|| on_image(&scene, "enable"));
    assert_ok(&out);
    assert_image_enabled(&img);
    // A second run finds nothing to do.
    let image = fingerprint_tree(&img);
    assert_ok(&on_image(&scene, "enable"));
    assert_unchanged("the image", &image, &fingerprint_tree(&img));
}

#[test]
fn image_backup_names_linked_to_host_etc_are_not_followed() {
    let scene = Scene::new();
    let img = debian_image(&scene);
    // shadow's tools write `NAME-` with fopen(…, "w"), which follows links:
    // the image's passwd would land in the host's shadow.
    for name in ACCOUNT_FILES.iter().chain(&["subuid", "subgid"]) {
        link("/etc/shadow", &img.join(format!("etc/{name}-")));
    }
    let out = scene.keeping_etc(|| on_image(&scene, "enable"));
    assert_ok(&out);
    assert_image_enabled(&img);
    for name in ACCOUNT_FILES {
        let backup = img.join(format!("etc/{name}-"));
        assert!(
            fs::symlink_metadata(&backup).unwrap().is_file(),
            "{} replaced by a regular backup",
            backup.display()
        );
    }
}

#[test]
fn image_temp_names_linked_to_host_etc_are_not_followed() {
    let scene = Scene::new();
    let img = debian_image(&scene);
    // shadow writes the new file as `NAME+` (fopen, following links) and
    // renames it; ours are `.NAME.<pid>.tmp`: plant both kinds.
    for name in ACCOUNT_FILES.iter().chain(&["subuid", "subgid"]) {
        link(format!("/etc/{name}"), &img.join(format!("etc/{name}+")));
        for pid in 2..400 {
            link("/etc/shadow", &img.join(format!("etc/.{name}.{pid}.tmp")));
        }
    }
    let out = scene.keeping_etc(|| on_image(&scene, "enable"));
    // The planted temp names may make a write fail (exit 2, nothing
    // written) or be stepped around; either way only the image may change.
    if out.status.success() {
        assert_image_enabled(&img);
    } else {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    }
}

#[test]
fn image_lock_name_linked_to_host_shadow_is_not_opened() {
    let scene = Scene::new();
    let img = debian_image(&scene);
    // `NAME.lock` a link to the host's shadow (shadow's tools open it and
    // print what they read as "an invalid PID"), and `NAME.<pid>` links
    // for the pids a run could get.
    link("/etc/shadow", &img.join("etc/passwd.lock"));
    for pid in 2..400 {
        link("/etc/shadow", &img.join(format!("etc/group.{pid}")));
    }
    let out = scene.keeping_etc(|| on_image(&scene, "enable"));
    assert_refused(
        &out,
        &img.join("etc/passwd.lock"),
        "is a symbolic link, not a lock file",
    );
    assert!(
        !stderr(&out).contains("root:"),
        "the host's shadow leaked into the message:\n{}",
        stderr(&out)
    );
}

#[test]
fn image_lock_name_planted_as_fifo_does_not_block() {
    let scene = Scene::new();
    let img = debian_image(&scene);
    fifo(&img.join("etc/group.lock"));
    let etc = scene.etc_fingerprint();
    let started = std::time::Instant::now();
    let out = on_image(&scene, "enable");
    assert_unchanged("/etc", &etc, &scene.etc_fingerprint());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(50),
        "enable blocked on the FIFO lock"
    );
    assert_refused(
        &out,
        &img.join("etc/group.lock"),
        "is a special file, not a lock file",
    );
}

#[test]
fn image_etc_reaching_host_etc_by_another_path_is_not_written() {
    let scene = Scene::new();
    let img = debian_image(&scene);
    // Inside the image `$T/etc` is a plausible /etc of its own; on the
    // machine that same path is the host's /etc. The image's etc points
    // there: resolved in the root it finds the decoy, resolved by path
    // (as useradd --prefix does) it finds the host.
    let host_etc = scene.path("etc");
    let decoy = img.join(host_etc.strip_prefix("/").unwrap());
    fs::create_dir_all(decoy.parent().unwrap()).unwrap();
    fs::rename(img.join("etc"), &decoy).unwrap();
    link(&host_etc, &img.join("etc"));
    let out = scene.keeping_etc(|| on_image(&scene, "enable"));
    // Everything was resolved inside the image: the decoy got the account.
    assert_ok(&out);
    let passwd = fs::read_to_string(decoy.join("passwd")).unwrap();
    assert!(passwd.contains("\ndockremap:x:"), "{passwd}");
    assert!(decoy.join("subuid").is_file());
}

#[test]
fn image_etc_linked_to_host_etc_is_refused() {
    let scene = Scene::new();
    let img = debian_image(&scene);
    fs::remove_dir_all(img.join("etc")).unwrap();
    link("/etc", &img.join("etc"));
    let out = scene.keeping_etc(|| on_image(&scene, "enable"));
    assert_refused(&out, &img.join("etc"), "loops inside the root");
}

#[test]
fn image_useradd_defaults_fifo_does_not_hang() {
    let scene = Scene::new();
    let img = debian_image(&scene);
    // useradd reads /etc/default/useradd with a plain open: a FIFO there
    // holds it (and us) forever.
    fs::create_dir_all(img.join("etc/default")).unwrap();
    fifo(&img.join("etc/default/useradd"));
    let out = scene.keeping_etc(|| on_image(&scene, "enable"));
    assert_ok(&out);
    assert_image_enabled(&img);
}

#[test]
fn image_login_defs_fifo_is_refused() {
    let scene = Scene::new();
    let img = debian_image(&scene);
    fifo(&img.join("etc/login.defs"));
    let out = scene.keeping_etc(|| on_image(&scene, "enable"));
    assert_refused(&out, &img.join("etc/login.defs"), "not a regular file");
}

#[test]
fn image_docker_dir_linked_to_host_docker_is_refused() {
    let scene = Scene::new();
    let img = debian_image(&scene);
    fs::create_dir_all(scene.etc("docker")).unwrap();
    fs::write(scene.etc("docker/daemon.json"), "{\"debug\": true}\n").unwrap();
    link("/etc/docker", &img.join("etc/docker"));
    let out = scene.keeping_etc(|| on_image(&scene, "enable"));
    assert_refused(&out, &img.join("etc/docker"), "loops inside the root");
}

#[test]
fn image_snap_config_link_stays_inside_the_image() {
    let scene = Scene::new();
    let img = debian_image(&scene);
    fs::create_dir_all(scene.etc("docker")).unwrap();
    fs::write(scene.etc("docker/daemon.json"), "{\"debug\": true}\n").unwrap();
    // No /etc/docker/daemon.json in the image, but a snap whose config
    // directory is a link to /etc/docker: in the root that is the image's.
    fs::create_dir_all(img.join("var/snap/docker")).unwrap();
    link("/etc/docker", &img.join("var/snap/docker/current/config"));
    fs::create_dir_all(img.join("etc/docker")).unwrap();
    link(
        "/etc/shadow",
        &img.join("etc/docker/daemon.json.docker-userns.bak"),
    );
    let out = scene.keeping_etc(|| on_image(&scene, "enable"));
    assert_ok(&out);
    let config = fs::read_to_string(img.join("etc/docker/daemon.json")).unwrap();
    assert!(config.contains("userns-remap"), "{config}");
}

#[test]
fn image_daemon_json_backup_linked_to_host_shadow_is_not_followed() {
    let scene = Scene::new();
    let img = debian_image(&scene);
    fs::create_dir_all(img.join("etc/docker")).unwrap();
    fs::write(img.join("etc/docker/daemon.json"), "{\"debug\": true}\n").unwrap();
    let backup = img.join("etc/docker/daemon.json.docker-userns.bak");
    link("/etc/shadow", &backup);
    let out = scene.keeping_etc(|| on_image(&scene, "enable"));
    assert_ok(&out);
    assert_eq!(fs::read_to_string(&backup).unwrap(), "{\"debug\": true}\n");
    assert!(fs::symlink_metadata(&backup).unwrap().is_file());
}

#[test]
fn image_disable_purge_with_subuid_hard_linked_to_host_leaves_host_copy() {
    let scene = Scene::new();
    let img = enabled_image(&scene);
    // The host's subuid holds the same account; the image's subuid is a
    // hard link to it (made by root: protected_hardlinks stops others).
    let host_subuid = scene.etc("subuid");
    fs::write(&host_subuid, "dockremap:100000:65536\nalice:165536:65536\n").unwrap();
    fs::remove_file(img.join("etc/subuid")).unwrap();
    fs::hard_link(&host_subuid, img.join("etc/subuid")).unwrap();
    let etc = scene.etc_fingerprint();
    let mut victim = fingerprint(&host_subuid);
    let out = on_image(&scene, "disable --purge");
    assert_ok(&out);
    // The host's inode keeps its bytes, owner and mode; only its link
    // count drops, as the image's name now holds a file of its own.
    let mut after = scene.etc_fingerprint();
    let now = after.get_mut(&host_subuid).unwrap();
    assert_eq!(now.nlink, victim.nlink - 1);
    victim.nlink = now.nlink;
    assert_eq!(*now, victim);
    let mut expected = etc.clone();
    expected.insert(host_subuid.clone(), victim);
    assert_unchanged("/etc", &expected, &after);
    assert_eq!(
        fs::read_to_string(img.join("etc/subuid")).unwrap(),
        "alice:165536:65536\n"
    );
    for name in ACCOUNT_FILES {
        let text = fs::read_to_string(img.join("etc").join(name)).unwrap();
        assert!(!text.contains("dockremap"), "{name}: {text}");
    }
}

#[test]
fn image_disable_purge_lock_link_to_host_is_refused() {
    let scene = Scene::new();
    let img = enabled_image(&scene);
    // The first lock purge takes is a link to the host's subuid.
    link("/etc/subuid", &img.join("etc/subuid.lock"));
    let etc = scene.etc_fingerprint();
    let accounts: Vec<PathBuf> = ACCOUNT_FILES
        .iter()
        .chain(&["subuid", "subgid", "subuid.lock"])
        .map(|name| img.join("etc").join(name))
        .collect();
    let image = fingerprint_all(&accounts);
    let out = on_image(&scene, "disable --purge");
    assert_unchanged("/etc", &etc, &scene.etc_fingerprint());
    assert_refused(
        &out,
        &img.join("etc/subuid.lock"),
        "is a symbolic link, not a lock file",
    );
    // daemon.json is written first (a live purge waits for the daemon to
    // run without the mapping); the account files are left as they were.
    assert_unchanged("the image's accounts", &image, &fingerprint_all(&accounts));
}

#[test]
fn image_disable_purge_backup_links_to_host_are_replaced_not_followed() {
    let scene = Scene::new();
    let img = enabled_image(&scene);
    for name in ACCOUNT_FILES.iter().chain(&["subuid", "subgid"]) {
        link("/etc/shadow", &img.join(format!("etc/{name}-")));
    }
    let out = scene.keeping_etc(|| on_image(&scene, "disable --purge"));
    assert_ok(&out);
    for name in ACCOUNT_FILES.iter().chain(&["subuid", "subgid"]) {
        let text = fs::read_to_string(img.join("etc").join(name)).unwrap();
        assert!(!text.contains("dockremap"), "{name}: {text}");
        let backup = img.join(format!("etc/{name}-"));
        assert!(fs::symlink_metadata(&backup).unwrap().is_file(), "{name}-");
    }
}

#[test]
fn image_account_files_linked_to_host_are_refused() {
    for name in ["passwd", "shadow", "subuid", "login.defs"] {
        let scene = Scene::new();
        let img = debian_image(&scene);
        fs::write(scene.etc("subuid"), "alice:100000:65536\n").unwrap();
        link(format!("/etc/{name}"), &img.join("etc").join(name));
        let etc = scene.etc_fingerprint();
        let image = fingerprint_tree(&img);
        let out = on_image(&scene, "enable");
        assert_unchanged("/etc", &etc, &scene.etc_fingerprint());
        assert_refused(
            &out,
            &img.join("etc").join(name),
            &format!("is a symbolic link to /etc/{name}; docker-userns does not write through"),
        );
        assert!(
            stderr(&out).contains("replace the link with the file")
                && !stderr(&out).contains("--config"),
            "{}",
            stderr(&out)
        );
        assert_unchanged("the image", &image, &fingerprint_tree(&img));
    }
}

#[test]
fn image_login_defs_cannot_make_the_remap_user_a_second_root() {
    let scene = Scene::new();
    let img = debian_image(&scene);
    // No root entry, and system ids "0..=0": the only id left is root's.
    fs::write(
        img.join("etc/passwd"),
        "nobody:x:65534:65534::/:/bin/false\n",
    )
    .unwrap();
    fs::write(img.join("etc/group"), "nogroup:x:65534:\n").unwrap();
    fs::write(
        img.join("etc/login.defs"),
        "SYS_UID_MIN 0\nSYS_UID_MAX 0\nSYS_GID_MIN 0\nSYS_GID_MAX 0\n",
    )
    .unwrap();
    let out = scene.keeping_etc(|| on_image(&scene, "enable"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no free system id left in 1..=0"),
        "{}",
        stderr(&out)
    );
    let group = fs::read_to_string(img.join("etc/group")).unwrap();
    assert!(!group.contains(":0:"), "{group}");
}
