//! Attacks on `shift`: a DIR that leaves `--root` through `..` or a
//! symlink, a hard link in the tree to a file outside it, resume state
//! planted by the container that owns the tree's root (a FIFO, a symlink, a
//! forged record), and a directory swapped for a symlink mid-walk.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::support::fingerprint::*;
use crate::support::scene::*;
use crate::support::*;

const MAP: &str = "0:100000:65536";
const MARKER: &str = ".docker-userns-shift.json";
const SPECIALS: &str = ".docker-userns-shift.specials";

/// `$BIN shift DIR` with `map` for uids and gids, under `timeout` so that a
/// shift that blocks fails the test instead of hanging it (exit 124).
fn shift_cmd(dir: &str, map: &str) -> String {
    format!("timeout 20 \"$BIN\" shift {dir} --uid-map {map} --gid-map {map}")
}

/// Exit status and everything said, of `script` run in the scene.
fn run_status(scene: &Scene, script: &str) -> (i32, String) {
    let out = scene.run(&format!("set +e\n{script}\necho \"exit=$?\""));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    let code = stdout(&out)
        .rsplit_once("exit=")
        .and_then(|(_, c)| c.trim().parse().ok())
        .unwrap_or(-1);
    (code, said)
}

fn owner(path: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

/// A tree whose root the container owns, holding root-owned content.
fn container_tree(scene: &Scene) -> std::path::PathBuf {
    let tree = scene.path("tree");
    scene.run_ok(
        r#"mkdir -p "$T/tree/d/e" && echo x > "$T/tree/d/e/f" && echo y > "$T/tree/g"
        chown 100000:100000 "$T/tree""#,
    );
    tree
}

/// An unfinished shift of `$T/tree` with `map`: an immutable file makes
/// one entry fail, so the marker and the specials record stay behind.
fn interrupted_shift(scene: &Scene, map: &str) {
    scene.run_ok(
        r#"echo frozen > "$T/tree/frozen" && chown 5:5 "$T/tree/frozen" && chattr +i "$T/tree/frozen""#,
    );
    let (code, said) = run_status(scene, &shift_cmd("\"$T/tree\"", map));
    assert_eq!(code, 2, "the frozen entry fails the first run: {said}");
    assert!(scene.path("tree").join(MARKER).exists(), "{said}");
    scene.run_ok(r#"chattr -i "$T/tree/frozen""#);
}

#[test]
fn shift_refuses_dotdot_leaving_the_root() {
    let scene = Scene::new();
    scene.run_ok(r#"mkdir -p "$T/img/a""#);
    let etc = scene.etc_fingerprint();
    let (code, said) = run_status(
        &scene,
        &format!(
            "timeout 20 \"$BIN\" --root \"$T/img\" shift /a/../../etc --uid-map {MAP} --gid-map {MAP}"
        ),
    );
    assert_unchanged("the scene's /etc", &etc, &scene.etc_fingerprint());
    assert_eq!(code, 2, "{said}");
    assert!(
        said.contains("..") && said.contains("/a/../../etc"),
        "{said}"
    );
}

#[test]
fn shift_refuses_symlink_component_to_outside_the_root() {
    let scene = Scene::new();
    scene.run_ok(
        r#"mkdir -p "$T/img" "$T/victim/x" && echo secret > "$T/victim/x/file"
        ln -s "$T/victim" "$T/img/link-to-outside""#,
    );
    let victim = fingerprint_tree(&scene.path("victim"));
    let etc = scene.etc_fingerprint();
    let (code, said) = run_status(
        &scene,
        &format!(
            "timeout 20 \"$BIN\" --root \"$T/img\" shift /link-to-outside/x --uid-map {MAP} --gid-map {MAP}"
        ),
    );
    assert_unchanged(
        "the victim outside the root",
        &victim,
        &fingerprint_tree(&scene.path("victim")),
    );
    assert_unchanged("the scene's /etc", &etc, &scene.etc_fingerprint());
    assert_eq!(code, 2, "{said}");
    assert!(
        said.contains("link-to-outside") && said.contains("symbolic link"),
        "{said}"
    );
}

#[test]
fn shift_leaves_a_hard_link_to_a_file_outside_the_tree_unchanged() {
    let scene = Scene::new();
    let tree = container_tree(&scene);
    // As root, as fs.protected_hardlinks=0 would let anyone: a second name
    // of the scene's /etc/shadow inside the tree.
    scene.run_ok(r#"ln "$T/etc/shadow" "$T/tree/d/shadow-link""#);
    let etc = scene.etc_fingerprint();
    let (code, said) = run_status(&scene, &shift_cmd("\"$T/tree\"", MAP));
    assert_unchanged("the scene's /etc", &etc, &scene.etc_fingerprint());
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("d/shadow-link") && said.contains("only 1 inside the tree"),
        "{said}"
    );
    assert_eq!(owner(&tree.join("d/e/f")), (100000, 100000));
}

#[test]
fn shift_never_blocks_on_a_fifo_planted_at_the_specials_record() {
    let scene = Scene::new();
    let tree = container_tree(&scene);
    interrupted_shift(&scene, MAP);
    let etc = scene.etc_fingerprint();
    // The tree's root is the container's: it swaps the record for a FIFO.
    scene.run_ok(&as_uid(
        CONTAINER_ROOT,
        &format!(r#"cd "$T/tree" && rm -f {SPECIALS} && mkfifo {SPECIALS}"#),
    ));
    let (code, said) = run_status(&scene, &shift_cmd("\"$T/tree\"", MAP));
    assert_ne!(code, 124, "shift blocked on the FIFO: {said}");
    assert_unchanged("the scene's /etc", &etc, &scene.etc_fingerprint());
    assert_eq!(code, 0, "{said}");
    assert!(said.contains(SPECIALS), "{said}");
    assert_eq!(owner(&tree.join("frozen")), (100005, 100005));
    assert!(!tree.join(MARKER).exists() && !tree.join(SPECIALS).exists());
}

#[test]
fn shift_never_blocks_on_a_fifo_planted_at_the_marker() {
    let scene = Scene::new();
    let tree = container_tree(&scene);
    let etc = scene.etc_fingerprint();
    scene.run_ok(&as_uid(
        CONTAINER_ROOT,
        &format!(r#"cd "$T/tree" && mkfifo {MARKER} {MARKER}.tmp"#),
    ));
    let (code, said) = run_status(&scene, &shift_cmd("\"$T/tree\"", MAP));
    assert_ne!(code, 124, "shift blocked on the FIFO: {said}");
    assert_unchanged("the scene's /etc", &etc, &scene.etc_fingerprint());
    assert_eq!(code, 0, "{said}");
    assert!(said.contains(MARKER) && said.contains("Fifo"), "{said}");
    assert_eq!(owner(&tree.join("d/e/f")), (100000, 100000));
    assert!(std::fs::symlink_metadata(tree.join(MARKER)).is_err());
}

/// `security.capability` v2 granting cap_setuid=ep.
const CAP_SETUID_EP: &str = "0100000280000000000000000000000000000000";

#[test]
fn shift_ignores_a_forged_specials_record_for_a_root_binary() {
    let scene = Scene::new();
    let tree = container_tree(&scene);
    // Maps that leave root's files alone: the root-owned binary inside the
    // tree is visited but never changes owner.
    let map = "1:100001:65535";
    scene.run_ok(r#"cp /bin/true "$T/tree/victim" && chmod 0755 "$T/tree/victim""#);
    interrupted_shift(&scene, map);
    let victim = tree.join("victim");
    let meta = std::fs::metadata(&victim).unwrap();
    let dev = meta.dev();
    let record = format!(
        "{} {} {} 4755 {CAP_SETUID_EP}\n",
        rustix::fs::major(dev),
        rustix::fs::minor(dev),
        meta.ino()
    );
    let before = fingerprint_all(std::slice::from_ref(&victim));
    let etc = scene.etc_fingerprint();
    scene.run_ok(&as_uid(
        CONTAINER_ROOT,
        &format!(
            r#"cd "$T/tree" && rm -f {SPECIALS} && printf '{}' > {SPECIALS}"#,
            record.replace('\n', "\\n")
        ),
    ));
    let (code, said) = run_status(&scene, &shift_cmd("\"$T/tree\"", map));
    assert_unchanged(
        "the root-owned binary",
        &before,
        &fingerprint_all(&[victim]),
    );
    assert_unchanged("the scene's /etc", &etc, &scene.etc_fingerprint());
    assert_eq!(code, 0, "{said}");
    assert!(said.contains(SPECIALS), "{said}");
}

#[test]
fn shift_replaces_a_symlink_planted_at_the_marker_without_following_it() {
    let scene = Scene::new();
    let tree = container_tree(&scene);
    let etc = scene.etc_fingerprint();
    scene.run_ok(&as_uid(
        CONTAINER_ROOT,
        &format!(
            r#"cd "$T/tree" && ln -s /etc/shadow {MARKER} && ln -s /etc/passwd {SPECIALS} && ln -s /etc/group {MARKER}.tmp"#
        ),
    ));
    let (code, said) = run_status(&scene, &shift_cmd("\"$T/tree\"", MAP));
    assert_unchanged("the scene's /etc", &etc, &scene.etc_fingerprint());
    assert_eq!(code, 0, "{said}");
    assert!(said.contains(MARKER), "{said}");
    assert_eq!(owner(&tree.join("d/e/f")), (100000, 100000));
    assert!(std::fs::symlink_metadata(tree.join(MARKER)).is_err());
}

#[test]
fn shift_never_follows_a_directory_swapped_for_a_symlink_mid_walk() {
    let scene = Scene::new();
    let tree = container_tree(&scene);
    scene.run_ok(
        r#"cd "$T/tree" && for i in 1 2 3 4 5 6 7 8; do mkdir -p d/s$i/t && touch d/s$i/f d/s$i/t/f; done
        chown 100000:100000 d"#,
    );
    let etc = scene.etc_fingerprint();
    // The container swaps d for a symlink to /etc and back, in a loop,
    // while shifts with maps that leave its own ids alone run to and fro.
    let racer = as_uid(
        CONTAINER_ROOT,
        r#"cd "$T/tree"; while :; do mv d aside; ln -s /etc d; rm d; mv aside d; done"#,
    );
    let (_, said) = run_status(
        &scene,
        &format!(
            r#"{racer} & pid=$!
            for i in $(seq 20); do
              timeout 20 "$BIN" shift "$T/tree" --uid-map 0:200000:65536 --gid-map 0:200000:65536 >/dev/null 2>&1
              rm -f "$T/tree/{MARKER}"
              timeout 20 "$BIN" shift "$T/tree" --uid-map 200000:0:65536 --gid-map 200000:0:65536 >/dev/null 2>&1
              rm -f "$T/tree/{MARKER}"
            done
            kill $pid; wait $pid"#
        ),
    );
    assert_unchanged("the scene's /etc", &etc, &scene.etc_fingerprint());
    assert!(tree.exists(), "{said}");
}

#[test]
fn shift_of_a_legitimate_tree_still_shifts_everything() {
    let scene = Scene::new();
    let tree = container_tree(&scene);
    scene.run_ok(
        r#"cd "$T/tree" && cp /bin/true suid && chmod 4755 suid
        echo h > d/hard && ln d/hard d/e/hard2 && chown 7:8 d/hard
        ln -s /etc/shadow abs-link"#,
    );
    let etc = scene.etc_fingerprint();
    let (code, said) = run_status(&scene, &shift_cmd("\"$T/tree\"", MAP));
    assert_unchanged("the scene's /etc", &etc, &scene.etc_fingerprint());
    assert_eq!(code, 0, "{said}");
    assert_eq!(owner(&tree), (100000, 100000));
    for name in ["d", "d/e", "d/e/f", "g", "suid", "abs-link"] {
        assert_eq!(owner(&tree.join(name)), (100000, 100000), "{name}");
    }
    assert_eq!(owner(&tree.join("d/e/hard2")), (100007, 100008));
    assert_eq!(
        std::fs::metadata(tree.join("suid")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert!(!tree.join(MARKER).exists() && !tree.join(SPECIALS).exists());
}
