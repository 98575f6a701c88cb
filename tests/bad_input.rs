//! Bad input: a clear error naming the file and line, exit status 2, and
//! every file on disk exactly as it was (bytes, inode, mode, mtime).

use std::os::unix::fs::symlink;

use crate::support::*;

/// Runs `enable` and asserts the failure contract; returns stderr.
fn refused(root: &TestRoot, args: &[&str]) -> String {
    let before = root.snapshot();
    let mut full = vec!["enable"];
    full.extend_from_slice(args);
    let out = root.run(&full);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout for a human-format error"
    );
    assert_same_tree(&before, &root.snapshot());
    stderr(&out)
}

fn with_config(text: &[u8]) -> TestRoot {
    let root = TestRoot::debian();
    root.write("etc/docker/daemon.json", text, 0o644);
    root
}

fn config_path(root: &TestRoot) -> String {
    root.path("etc/docker/daemon.json").display().to_string()
}

#[test]
fn daemon_json_syntax_errors_name_line_and_column() {
    require_root();
    let cases: &[(&[u8], &str)] = &[
        (
            b"{\n  \"debug\": true,\n}\n",
            ":3:1: trailing comma before '}'",
        ),
        (
            b"{\n  \"a\": 1,\n  \"a\": 2\n}",
            ":3:3: duplicate key \"a\" (first set on line 2)",
        ),
        (
            b"[\"userns-remap\"]",
            ":1:1: the top-level value must be an object, found an array",
        ),
        (
            b"{\n  // comment\n  \"a\": 1\n}",
            ":2:3: comments are not allowed in JSON",
        ),
        (b"{\"a\": \"\xff\xfe\"}", ":1:8: invalid UTF-8"),
        (b"\xff\xfe{\x00}\x00", ":1:1: invalid UTF-8"),
        (
            b"{\"userns-remap\": 1000}",
            ":1:18: \"userns-remap\" must be a string, found 1000",
        ),
        (b"{\"a\": 1", ":1:8: unexpected end of file"),
        (
            b"{\"a\": 1}\n{\"b\": 2}",
            ":2:1: unexpected content after the top-level object",
        ),
    ];
    for (text, expected) in cases {
        let root = with_config(text);
        let err = refused(&root, &[]);
        let wanted = format!("{}{expected}", config_path(&root));
        assert!(
            err.contains(&wanted),
            "for {:?}\nwanted: {wanted}\ngot: {err}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn json_errors_are_json_with_file_line_and_column() {
    require_root();
    let root = with_config(b"{\n  \"debug\": true,\n}\n");
    let before = root.snapshot();
    let (code, out) = root.run_json(&["enable"]);
    assert_eq!(code, 2);
    assert_eq!(out["ok"], false);
    assert_eq!(out["changed"], false);
    assert_eq!(out["error"]["file"], config_path(&root));
    assert_eq!(out["error"]["line"], 3);
    assert_eq!(out["error"]["column"], 1);
    assert_same_tree(&before, &root.snapshot());
}

#[test]
fn daemon_json_symlink_is_refused_not_followed() {
    require_root();
    let root = TestRoot::debian();
    std::fs::create_dir_all(root.path("etc/docker")).unwrap();
    symlink("/etc/shadow", root.path("etc/docker/daemon.json")).unwrap();
    let err = refused(&root, &[]);
    assert!(err.contains("is a symbolic link to /etc/shadow"), "{err}");
}

#[test]
fn daemon_json_directory_or_fifo_is_refused() {
    require_root();
    let root = TestRoot::debian();
    std::fs::create_dir_all(root.path("etc/docker/daemon.json")).unwrap();
    assert!(refused(&root, &[]).contains("is a directory, expected a regular file"));
    let root = TestRoot::debian();
    std::fs::create_dir_all(root.path("etc/docker")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.path("etc/docker/daemon.json"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    assert!(refused(&root, &[]).contains("is not a regular file (Fifo)"));
}

#[test]
fn symlinks_inside_the_root_cannot_lead_outside_it() {
    require_root();
    let outside = tempfile::tempdir().unwrap();
    let root = TestRoot::debian();
    symlink(outside.path(), root.path("etc/docker")).unwrap();
    // The same path exists inside the root: that is where the link leads there.
    let inside_dir = root.path(outside.path().strip_prefix("/").unwrap().to_str().unwrap());
    std::fs::create_dir_all(&inside_dir).unwrap();
    let out = root.run(&["enable"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written outside the root"
    );
    // The absolute link resolved inside the root, as in a chroot.
    let inside = inside_dir.join("daemon.json");
    assert!(inside.exists(), "{} should exist", inside.display());
}

#[test]
fn oversized_config_is_refused() {
    require_root();
    let mut big = b"{\"a\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 17 << 20));
    big.extend(b"\"}");
    let root = with_config(&big);
    assert!(refused(&root, &[]).contains("larger than the 16 MiB accepted"));
}

#[test]
fn bad_user_specs_and_counts_are_refused() {
    require_root();
    let root = TestRoot::debian();
    assert!(refused(&root, &["--user", "a:b:c"]).contains("more than two ':'-separated parts"));
    assert!(refused(&root, &["--user", "root"]).contains("turns remapping off"));
    assert!(
        refused(&root, &["--user", "ghost"]).contains("etc/passwd: user \"ghost\" does not exist")
    );
    assert!(refused(&root, &["--user", "4242"]).contains("uid 4242 does not exist"));
    assert!(
        refused(&root, &["--user", "alice:nosuchgroup"])
            .contains("group \"nosuchgroup\" does not exist")
    );
    assert!(refused(&root, &["--count", "1000"]).contains("at least 65536 ids are needed"));
}

#[test]
fn bad_login_defs_value_names_its_line() {
    require_root();
    let root = TestRoot::debian();
    root.write("etc/login.defs", "UMASK 022\nSUB_UID_MIN lots\n", 0o644);
    let err = refused(&root, &[]);
    assert!(
        err.contains("etc/login.defs:2: SUB_UID_MIN is \"lots\", not a number below 2^32"),
        "{err}"
    );
}

#[test]
fn invalid_utf8_in_subuid_names_its_line() {
    require_root();
    let root = TestRoot::debian();
    root.write("etc/subuid", b"alice:100000:65536\nb\xffb:1:1\n", 0o644);
    let err = refused(&root, &[]);
    assert!(err.contains("etc/subuid:2:2: invalid UTF-8"), "{err}");
}

#[test]
fn missing_root_is_an_error() {
    let out = std::process::Command::new(BIN)
        .args(["--root", "/nonexistent/root", "enable", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/root"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn changing_a_host_needs_root() {
    require_root();
    let root = TestRoot::debian();
    let before = root.snapshot();
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                BIN,
                "--root",
            ])
            .arg(root.root())
            .args(args)
            .output()
            .unwrap()
    };
    let out = as_nobody(&["enable"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("changing a host needs root"),
        "{}",
        stderr(&out)
    );
    assert_same_tree(&before, &root.snapshot());
}
