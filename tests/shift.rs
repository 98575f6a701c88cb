//! `docker-userns shift` on trees built with the real tools: exact owners,
//! modes, ACLs, capabilities and times afterwards; symlinks, races, mount
//! points, hardlinks, failures, interruptions and reruns.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::shift::*;
use crate::support::{BIN, require_root};
use docker_userns::shift::{IdMap, ShiftOptions, shift_tree, unfinished_shift};
use serde_json::json;

/// Builds a tree with every kind of entry and everything chown disturbs,
/// using the real tools. `$1` is the tree, `$2` a directory outside it.
const REAL_TREE: &str = r#"
cd "$1"
mkdir -p etc bin usr/lib sgid-dir
echo root > etc/passwd
echo five > owned-5-6 && chown 5:6 owned-5-6
echo user > owned-1000 && chown 1000:1000 owned-1000
echo far > outside-ids && chown 70000:70001 outside-ids
echo mixed > mixed && chown 70000:7 mixed
cp /bin/true bin/suid && chmod u+s,g+s bin/suid
cp /bin/true bin/sgid && chown 0:50 bin/sgid && chmod g+s bin/sgid
echo x > bin/sgid-noexec && chmod 2644 bin/sgid-noexec
chown 0:50 sgid-dir && chmod g+s sgid-dir
echo acl > acl-file && setfacl -m u:1000:rw,g:50:r,u:70000:r acl-file
mkdir acl-dir && setfacl -m u:1000:rwx acl-dir && setfacl -d -m u:1000:rwx,g:50:rx acl-dir
echo inherits > acl-dir/inherited
mkdir acl-dir/inner
cp /bin/true bin/ping && setcap cap_net_raw+ep bin/ping
cp /bin/true bin/ping-v3 && setcap -n 1000 cap_net_raw+ep bin/ping-v3
cp /bin/true bin/ping-v3-outside && setcap -n 70000 cap_net_raw+ep bin/ping-v3-outside
cp /bin/true bin/suid-caps && chown 0:4 bin/suid-caps && chmod 6755 bin/suid-caps
setcap cap_net_admin+ep bin/suid-caps
cp /bin/true bin/acl-caps && setfacl -m g:50:rx bin/acl-caps && setcap -n 33 cap_chown+ep bin/acl-caps
ln -s /etc/shadow abs-link
ln -s "$2/target" outside-link
ln -s ../../../../../.. up-link
ln -s missing dangling && chown -h 1000:1000 dangling
echo hard > hard && chown 33:33 hard && ln hard hard2 && ln hard usr/lib/hard3
mkfifo fifo && chown 7:7 fifo
mkfifo setgid-fifo && chmod 2666 setgid-fifo
mknod chardev c 1 3 && chown 0:5 chardev
mknod blockdev b 7 200 && chown 0:6 blockdev && chmod 6600 blockdev
find . -depth -exec sh -c 'touch -h -a -d @978307200.123456789 "$@"; touch -h -m -d @1012608000.987654321 "$@"' sh {} +
"#;

fn outside_dir(base: &Path) -> PathBuf {
    let outside = base.join("outside");
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("target"), "host file").unwrap();
    std::fs::write(outside.join("sub/file"), "host file").unwrap();
    outside
}

fn real_tree(base: &Path) -> (PathBuf, PathBuf) {
    let tree = base.join("tree");
    std::fs::create_dir(&tree).unwrap();
    let outside = outside_dir(base);
    // A socket has no tool of its own; bind one and leave the file behind.
    drop(std::os::unix::net::UnixListener::bind(tree.join("socket")).unwrap());
    sh(REAL_TREE, &[&tree, &outside]);
    (tree, outside)
}

fn getfacl(path: &Path) -> String {
    stdout_of("getfacl", &["-n", "-p", path.to_str().unwrap()])
}

fn getcap(path: &Path) -> String {
    stdout_of("getcap", &["-n", path.to_str().unwrap()])
}

#[test]
fn every_entry_of_a_real_tree_is_shifted_exactly() {
    require_root();
    let base = scratch();
    let (tree, outside) = real_tree(base.path());
    let before = snapshot(&tree);
    let outside_before = snapshot(&outside);
    let facl_before: BTreeMap<&PathBuf, String> = before
        .iter()
        .filter(|(_, s)| s.acl_access.is_some())
        .map(|(p, _)| (p, getfacl(&tree.join(p))))
        .collect();
    let caps_before: BTreeMap<&PathBuf, String> = before
        .iter()
        .filter(|(_, s)| s.caps.is_some())
        .map(|(p, _)| (p, getcap(&tree.join(p))))
        .collect();

    // The fixture has what it claims to have.
    let state = |p: &str| &before[Path::new(p)];
    assert_eq!(state("bin/suid").mode, 0o6755);
    assert_eq!(state("bin/suid-caps").mode, 0o6755);
    assert_eq!(state("blockdev").mode, 0o6600);
    assert_eq!(state("bin/ping-v3").caps.as_ref().unwrap().len(), 24);
    assert_eq!(state("bin/ping").caps.as_ref().unwrap().len(), 20);
    assert_eq!(
        acl_ids(state("acl-file").acl_access.as_ref().unwrap()),
        [(2, 1000), (2, 70000), (8, 50)]
    );
    assert!(state("acl-dir/inner").acl_default.is_some());
    assert_eq!(state("hard").nlink, 3);
    let kinds: BTreeSet<char> = before.values().map(|s| s.kind).collect();
    assert_eq!(kinds, BTreeSet::from(['b', 'c', 'd', 'f', 'l', 'p', 's']));

    let run = shift(&tree, &[]);
    run.assert_ok();
    let after = snapshot(&tree);

    let expected: BTreeMap<_, _> = before
        .iter()
        .map(|(p, s)| (p.clone(), s.shifted()))
        .collect();
    let actual: BTreeMap<_, _> = after
        .iter()
        .map(|(p, s)| (p.clone(), s.without_ctime()))
        .collect();
    let wrong = differences(&expected, &actual);
    assert!(
        wrong.is_empty(),
        "entries not shifted exactly:\n{}",
        wrong.join("\n")
    );

    // The same, as the real tools print it.
    // getfacl lists named entries by id, so compare lines, not their order.
    let lines = |text: &str| text.lines().map(str::to_owned).collect::<BTreeSet<_>>();
    for (path, text) in &facl_before {
        let (actual, expected) = (getfacl(&tree.join(path)), map_getfacl(text));
        assert_eq!(
            lines(&actual),
            lines(&expected),
            "{}:\n{actual}",
            path.display()
        );
    }
    for (path, text) in &caps_before {
        let expected = text
            .replace("[rootid=1000]", "[rootid=101000]")
            .replace("[rootid=33]", "[rootid=100033]");
        assert_eq!(getcap(&tree.join(path)), expected, "{}", path.display());
    }
    assert!(getcap(&tree.join("bin/ping-v3")).contains("[rootid=101000]"));
    assert!(getcap(&tree.join("bin/ping-v3-outside")).contains("[rootid=70000]"));
    assert!(getfacl(&tree.join("acl-file")).contains("user:70000:r--\nuser:101000:rw-\n"));
    let stored = after[Path::new("acl-file")].acl_access.as_ref().unwrap();
    assert_eq!(
        acl_ids(stored),
        [(2, 70000), (2, 101000), (8, 100050)],
        "named entries stay sorted"
    );

    // Symlinks are re-owned themselves; what they point to is not touched.
    assert_eq!(after[Path::new("outside-link")].uid, 100000);
    assert!(differences(&outside_before, &snapshot(&outside)).is_empty());
    assert_eq!(std::fs::metadata("/etc/shadow").unwrap().uid(), 0);

    // The counts: every name seen, each inode once, outside ids left alone.
    let names = before.len() as u64;
    assert_eq!(run.count("entries"), names);
    assert_eq!(run.count("hardlinks_skipped"), 2);
    assert_eq!(run.count("entries_changed"), names - 2 - 1);
    assert_eq!(run.json["left_alone"], json!({"uid": 2, "gid": 1}));
    assert_eq!(run.json["errors"]["count"], 0);
    assert!(!tree.join(MARKER).exists());
}

#[test]
fn a_rerun_changes_nothing_and_writes_nothing() {
    require_root();
    let base = scratch();
    let (tree, _) = real_tree(base.path());
    shift(&tree, &[]).assert_ok();
    let first = snapshot(&tree);
    let run = shift(&tree, &[]);
    run.assert_ok();
    assert_eq!(run.count("entries_changed"), 0);
    assert_eq!(run.json["changed"], false);
    // Not even a ctime moved: nothing was written to any entry. The root
    // is the exception, for its ctime only: the marker comes and goes there.
    let mut second = snapshot(&tree);
    let root = second.get_mut(Path::new("")).unwrap();
    assert_eq!(root.without_ctime(), first[Path::new("")].without_ctime());
    *root = first[Path::new("")].clone();
    let wrong = differences(&first, &second);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn dry_run_counts_changes_and_touches_nothing() {
    require_root();
    let base = scratch();
    let (tree, _) = real_tree(base.path());
    let before = snapshot(&tree);
    let run = shift(&tree, &["--dry-run"]);
    run.assert_ok();
    assert_eq!(run.json["dry_run"], true);
    assert_eq!(run.count("entries_changed"), before.len() as u64 - 3);
    let wrong = differences(&before, &snapshot(&tree));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(!tree.join(MARKER).exists());
}

#[test]
fn overlapping_maps_are_refused_and_nothing_changes() {
    require_root();
    let base = scratch();
    let (tree, _) = real_tree(base.path());
    let before = snapshot(&tree);
    let dir = tree.to_str().unwrap();
    for maps in [
        ["--uid-map", "0:1000:65536", "--gid-map", MAP],
        ["--uid-map", MAP, "--gid-map", "100:0:200"],
    ] {
        let run = run(&[&["shift", dir][..], &maps[..]].concat());
        assert_eq!(run.code, 2, "{maps:?}: {}{}", run.stdout, run.stderr);
        let said = format!("{}{}", run.stdout, run.stderr);
        assert!(said.contains("overlap"), "{said}");
    }
    let run = run(&[
        "shift",
        dir,
        "--uid-map",
        "0:100000:10",
        "--uid-map",
        "5:200000:10",
        "--gid-map",
        MAP,
    ]);
    assert_eq!(run.code, 2);
    let wrong = differences(&before, &snapshot(&tree));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(!tree.join(MARKER).exists());
}

#[test]
fn several_maps_and_ids_outside_them() {
    require_root();
    let base = scratch();
    let tree = base.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    sh(
        r#"cd "$1"
        touch a b c d && chown 5:5 a && chown 70000:70000 b && chown 65535:0 c && chown 200:300 d"#,
        &[&tree],
    );
    let dir = tree.to_str().unwrap();
    let run = run(&[
        "shift",
        dir,
        "--uid-map",
        "0:100000:100",
        "--uid-map",
        "100:300000:65436",
        "--gid-map",
        "0:500000:65536",
        "--format",
        "json",
    ]);
    run.assert_ok();
    let owner = |name: &str| {
        let m = std::fs::symlink_metadata(tree.join(name)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner("a"), (100005, 500005));
    assert_eq!(owner("b"), (70000, 70000));
    assert_eq!(owner("c"), (365435, 500000));
    assert_eq!(owner("d"), (300100, 500300));
    assert_eq!(run.json["left_alone"], json!({"uid": 1, "gid": 1}));
}

#[test]
fn hardlinked_inodes_are_shifted_once() {
    require_root();
    let base = scratch();
    let tree = base.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    sh(
        r#"cd "$1"
        mkdir a b
        echo x > a/one && chown 5:7 a/one && ln a/one a/two && ln a/one b/three
        echo y > lone && ln lone lone2 && chown 70000:9 lone"#,
        &[&tree],
    );
    let run = shift(&tree, &[]);
    run.assert_ok();
    assert_eq!(run.count("entries"), 8);
    assert_eq!(run.count("hardlinks_skipped"), 3);
    // Root, a, b, a/one (the other names are skipped), lone.
    assert_eq!(run.count("entries_changed"), 5);
    for name in ["a/one", "a/two", "b/three"] {
        let m = std::fs::metadata(tree.join(name)).unwrap();
        assert_eq!((m.uid(), m.gid(), m.nlink()), (100005, 100007, 3), "{name}");
    }
    let m = std::fs::metadata(tree.join("lone2")).unwrap();
    assert_eq!((m.uid(), m.gid()), (70000, 100009));
}

#[test]
fn a_directory_swapped_for_a_symlink_mid_walk_never_leads_outside() {
    require_root();
    let base = scratch();
    let tree = base.path().join("tree");
    let outside = outside_dir(base.path());
    bulk_tree(&outside, 2, 5);
    let swapped = tree.join("swapped");
    bulk_tree(&swapped, 1, 3);
    let outside_before = snapshot(&outside);

    // Swaps the directory for a symlink to `outside` and back, as fast as
    // it can, while short shifts run over and over: a walk that stats the
    // directory, then opens it by name, sees the symlink in between.
    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let (stop, swapped, outside) = (stop.clone(), swapped.clone(), outside.clone());
        let aside = tree.join("aside");
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::fs::rename(&swapped, &aside).unwrap();
                symlink(&outside, &swapped).unwrap();
                std::fs::remove_file(&swapped).unwrap();
                std::fs::rename(&aside, &swapped).unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let dir = tree.to_str().unwrap();
    let mut lost_races = 0;
    for round in 0..400 {
        // Back and forth, so every round has owners to change.
        let map = if round % 2 == 0 {
            MAP
        } else {
            "100000:0:65536"
        };
        let r = run(&[
            "shift",
            dir,
            "--uid-map",
            map,
            "--gid-map",
            map,
            "--format",
            "json",
        ]);
        assert!(r.code == 0 || r.code == 2, "{}{}", r.stdout, r.stderr);
        lost_races += u64::from(r.code == 2);
        // A round that lost a race leaves its marker; the next uses other maps.
        let _ = std::fs::remove_file(tree.join(MARKER));
        // Checked every round: a later round could undo an earlier escape.
        {
            let wrong = differences(&outside_before, &snapshot(&outside));
            assert!(
                wrong.is_empty(),
                "round {round} reached outside the tree:\n{}",
                wrong.join("\n")
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = racer.join().unwrap();
    assert!(swaps > 1000, "the racer swapped only {swaps} times");
    eprintln!("{swaps} swaps; {lost_races} of 400 shifts met a swapped entry");
}

#[test]
fn mount_points_inside_are_not_entered() {
    require_root();
    let base = scratch();
    let tree = base.path().join("tree");
    let elsewhere = base.path().join("elsewhere");
    std::fs::create_dir_all(tree.join("mnt")).unwrap();
    std::fs::create_dir_all(tree.join("bind")).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("file"), "").unwrap();
    std::fs::write(tree.join("file"), "").unwrap();
    let json_out = base.path().join("out.json");
    // In a private mount namespace: a tmpfs, and a bind mount from the
    // same filesystem (same st_dev, another mount).
    sh(
        r#"tree="$1"; elsewhere="$2"; out="$3"; bin="$4"
        unshare -m --propagation private sh -ec '
          mount -t tmpfs none "$1/mnt"
          touch "$1/mnt/on-tmpfs"
          mount --bind "$2" "$1/bind"
          set +e
          "$4" shift "$1" --uid-map 0:100000:65536 --gid-map 0:100000:65536 --format json > "$3"
          echo "exit $?" >> "$3.status"
          stat -c "%u:%g %n" "$1/mnt" "$1/mnt/on-tmpfs" >> "$3.status"
        ' sh "$tree" "$elsewhere" "$out" "$bin""#,
        &[&tree, &elsewhere, &json_out, Path::new(BIN)],
    );
    let status = std::fs::read_to_string(json_out.with_extension("json.status")).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    let mut lines = status.lines();
    assert_eq!(lines.next(), Some("exit 0"), "{status}\n{report}");
    assert!(
        lines.all(|l| l.starts_with("0:0 ")),
        "the tmpfs was shifted: {status}"
    );
    assert_eq!(report["mount_points"]["count"], 2, "{report}");
    let paths: BTreeSet<&str> = report["mount_points"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let expect = |name: &str| tree.join(name).to_str().unwrap().to_owned();
    assert_eq!(
        paths,
        BTreeSet::from([expect("mnt").as_str(), expect("bind").as_str()])
    );
    // Outside the namespace the mount points are plain directories again,
    // never shifted; the bind mount's source was not touched.
    assert_eq!(std::fs::metadata(elsewhere.join("file")).unwrap().uid(), 0);
    assert_eq!(std::fs::metadata(&elsewhere).unwrap().uid(), 0);
    assert_eq!(std::fs::metadata(tree.join("mnt")).unwrap().uid(), 0);
    assert_eq!(std::fs::metadata(tree.join("file")).unwrap().uid(), 100000);
}

#[test]
fn a_failing_entry_is_reported_and_a_rerun_finishes_the_job() {
    require_root();
    let base = scratch();
    let tree = base.path().join("tree");
    std::fs::create_dir_all(tree.join("frozen-dir/sub")).unwrap();
    for name in [
        "a",
        "frozen",
        "frozen-dir/inside",
        "frozen-dir/sub/deeper",
        "z",
    ] {
        std::fs::write(tree.join(name), name).unwrap();
    }
    // chattr +i makes chown fail with EPERM, even for root.
    let frozen = Immutable::set(&[tree.join("frozen"), tree.join("frozen-dir")]);

    let run = shift(&tree, &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.json["ok"], false);
    assert_eq!(run.json["errors"]["count"], 2);
    let failed: BTreeSet<String> = run.error_paths().into_iter().collect();
    let path = |p: &str| tree.join(p).to_str().unwrap().to_owned();
    assert_eq!(failed, BTreeSet::from([path("frozen"), path("frozen-dir")]));
    assert!(
        run.json["errors"]["entries"][0]["error"]
            .as_str()
            .unwrap()
            .contains("chown")
    );
    // The walk went on, into the directory that failed too.
    for name in [
        "",
        "a",
        "z",
        "frozen-dir/inside",
        "frozen-dir/sub",
        "frozen-dir/sub/deeper",
    ] {
        assert_eq!(
            std::fs::symlink_metadata(tree.join(name)).unwrap().uid(),
            100000,
            "{name}"
        );
    }
    // The shift is recorded as unfinished, in a marker that is not content.
    let marker = unfinished_shift(&tree).expect("a marker after a failed shift");
    assert_eq!(marker.uid_maps, [IdMap::parse(MAP).unwrap()]);
    assert_eq!(marker.gid_maps, [IdMap::parse(MAP).unwrap()]);
    assert_eq!(std::fs::metadata(tree.join(MARKER)).unwrap().uid(), 0);

    frozen.clear();
    let rerun = shift(&tree, &[]);
    rerun.assert_ok();
    assert_eq!(rerun.json["resumed"], true);
    assert_eq!(rerun.count("entries_changed"), 2);
    assert_eq!(rerun.count("entries"), run.count("entries"));
    assert!(unfinished_shift(&tree).is_none());
    assert!(!tree.join(MARKER).exists());
    assert!(
        snapshot(&tree)
            .values()
            .all(|s| s.uid == 100000 && s.gid == 100000)
    );
}

#[test]
fn a_killed_shift_leaves_its_marker_and_a_rerun_completes_it() {
    require_root();
    let base = scratch();
    let tree = base.path().join("tree");
    bulk_tree(&tree, 20, 200);
    let mut child = std::process::Command::new(BIN)
        .args([
            "shift",
            tree.to_str().unwrap(),
            "--uid-map",
            MAP,
            "--gid-map",
            MAP,
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let marker = tree.join(MARKER);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "no marker appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the shift ended before it could be killed"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let found = unfinished_shift(&tree).expect("the marker survives the kill");
    assert!(found.same_maps(&[IdMap::parse(MAP).unwrap()], &[IdMap::parse(MAP).unwrap()]));
    let owners = |s: &Snapshot| s.values().filter(|e| e.uid == 100000).count();
    let partly = snapshot(&tree);
    assert!(
        owners(&partly) < partly.len(),
        "the kill came too late to interrupt anything"
    );

    let rerun = shift(&tree, &[]);
    rerun.assert_ok();
    assert_eq!(rerun.json["resumed"], true);
    let done = snapshot(&tree);
    assert_eq!(owners(&done), done.len());
    assert!(unfinished_shift(&tree).is_none());
}

#[test]
fn a_marker_with_other_maps_is_refused() {
    require_root();
    let base = scratch();
    let tree = base.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("f"), "").unwrap();
    std::fs::write(
        tree.join(MARKER),
        r#"{"version": 1, "uid_maps": ["0:200000:65536"], "gid_maps": ["0:200000:65536"], "started": 1}"#,
    )
    .unwrap();
    let run = shift(&tree, &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("0:200000:65536") || run.stdout.contains("0:200000:65536"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(std::fs::metadata(tree.join("f")).unwrap().uid(), 0);
    let same = run_same_maps(&tree, "0:200000:65536");
    same.assert_ok();
    assert_eq!(std::fs::metadata(tree.join("f")).unwrap().uid(), 200000);
}

fn run_same_maps(tree: &Path, map: &str) -> Run {
    run(&[
        "shift",
        tree.to_str().unwrap(),
        "--uid-map",
        map,
        "--gid-map",
        map,
        "--format",
        "json",
    ])
}

#[test]
fn a_tree_deeper_than_the_fd_limit_allows_open_is_walked_whole() {
    require_root();
    let base = scratch();
    let tree = base.path().join("tree");
    let mut dir = tree.clone();
    for depth in 0..150 {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("file"), "").unwrap();
        if depth % 10 == 0 {
            // Siblings after the descent make the walk climb back into
            // directories whose fds it had closed.
            for s in 0..3 {
                std::fs::create_dir_all(dir.join(format!("side{s}"))).unwrap();
                std::fs::write(dir.join(format!("side{s}/file")), "").unwrap();
            }
        }
        dir = dir.join("d");
    }
    let entries = snapshot(&tree).len();
    // Room for only a few open directories per worker.
    let out = output(
        "prlimit",
        &[&["--nofile=72:72", BIN][..], &shift_args(&tree, &[])].concat(),
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["entries"], entries);
    let after = snapshot(&tree);
    assert!(
        after.values().all(|s| s.uid == 100000),
        "some entries were missed"
    );

    // And with the default limit, back the other way.
    let back = run(&[
        "shift",
        tree.to_str().unwrap(),
        "--uid-map",
        "100000:0:65536",
        "--gid-map",
        "100000:0:65536",
        "--format",
        "json",
    ]);
    back.assert_ok();
    assert!(snapshot(&tree).values().all(|s| s.uid == 0 && s.gid == 0));
}

#[test]
fn the_library_reports_what_the_cli_prints() {
    require_root();
    let base = scratch();
    let tree = base.path().join("tree");
    bulk_tree(&tree, 3, 3);
    let options = ShiftOptions {
        uid_maps: vec![IdMap::parse(MAP).unwrap()],
        gid_maps: vec![IdMap::parse(MAP).unwrap()],
        dry_run: true,
        progress: false,
    };
    let report = shift_tree(&tree, &options).unwrap();
    assert!(report.ok());
    assert_eq!((report.entries, report.changed), (13, 13));
    assert_eq!(report.to_json()["entries_changed"], 13);
    assert!(report.human().starts_with(&format!(
        "dry run, nothing written: {}: 13 entries, 13 would change",
        tree.display()
    )));
    let human = run(&[
        "shift",
        tree.to_str().unwrap(),
        "--uid-map",
        MAP,
        "--gid-map",
        MAP,
    ]);
    assert_eq!(human.code, 0);
    assert!(
        human.stdout.starts_with(&format!(
            "shifted: {}: 13 entries, 13 changed",
            tree.display()
        )),
        "{}",
        human.stdout
    );
    assert!(
        human.stderr.is_empty(),
        "no progress without a terminal: {}",
        human.stderr
    );
}

#[test]
fn progress_goes_to_stderr_on_a_terminal() {
    require_root();
    let base = scratch();
    let tree = base.path().join("tree");
    bulk_tree(&tree, 2, 2);
    // script(1) gives the command a terminal; progress is for people, so
    // it comes with human output only.
    let command = format!(
        "{BIN} shift {} --uid-map {MAP} --gid-map {MAP}",
        tree.display()
    );
    let out = output("script", &["-qec", &command, "/dev/null"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // The tree is part of a filesystem: its used inodes are an upper bound.
    assert!(text.contains("\rshift: 7 of at most "), "{text}");
    // The last line has no time left, and erases what a longer one left.
    assert!(text.contains(" entries/s\x1b[K\r\n"), "{text}");
    assert!(text.contains("shifted: "), "{text}");
}
