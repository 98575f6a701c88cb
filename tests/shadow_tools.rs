//! Cross-checks with shadow's own tools on the live-system code path, run
//! in a private mount namespace whose /etc is a copy: the machine's real
//! /etc, /home, /var/log and /var/mail are never touched.

use std::fs;
use std::path::Path;

use crate::support::*;

fn getsubids_line(out: &str, flag: &str, name: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(&format!("{flag} 0: {name} ")))
        .unwrap_or_else(|| panic!("no getsubids {flag} line for {name} in:\n{out}"))
        .to_owned()
}

fn range_of(line: &str) -> (u64, u64) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let n = words.len();
    (words[n - 2].parse().unwrap(), words[n - 1].parse().unwrap())
}

fn disjoint(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0
}

const CROSS_CHECK: &str = r#"
"$BIN" enable --no-restart --format json > "$T/first.json"
"$BIN" enable --no-restart --format json > "$T/second.json"
for u in dockremap tester; do
  if [ "$u" = tester ]; then useradd -m tester; fi
  printf 'u '; getsubids "$u"
  printf 'g '; getsubids -g "$u"
done
pwck -r -q
grpck -r
test ! -e /etc/passwd.lock -a ! -e /etc/subuid.lock -a ! -e /etc/subgid.lock
"#;

fn assert_cross_check(etc: &PrivateEtc, out: &str, first_run_changes: bool) {
    let first = etc.json("first.json");
    assert_eq!(first["changed"], first_run_changes);
    assert_eq!(etc.json("second.json")["changed"], false);
    let ours_u = range_of(&getsubids_line(out, "u", "dockremap"));
    let ours_g = range_of(&getsubids_line(out, "g", "dockremap"));
    assert_eq!(ours_u, (first["uid_start"].as_u64().unwrap(), 65536));
    assert_eq!(ours_g, (first["gid_start"].as_u64().unwrap(), 65536));
    let tester_u = range_of(&getsubids_line(out, "u", "tester"));
    let tester_g = range_of(&getsubids_line(out, "g", "tester"));
    assert!(
        disjoint(ours_u, tester_u),
        "useradd's range {tester_u:?} overlaps ours {ours_u:?}"
    );
    assert!(
        disjoint(ours_g, tester_g),
        "useradd's range {tester_g:?} overlaps ours {ours_g:?}"
    );
}

#[test]
fn getsubids_reads_our_ranges_and_useradd_allocates_around_them() {
    let etc = PrivateEtc::new();
    let real_passwd = fs::read("/etc/passwd").unwrap();
    let out = etc.run(CROSS_CHECK);
    assert_cross_check(&etc, &out, true);
    assert!(
        etc.json("first.json")["actions"][1]["description"]
            .as_str()
            .unwrap()
            .ends_with("(useradd)")
    );
    assert_eq!(
        fs::read("/etc/passwd").unwrap(),
        real_passwd,
        "the real /etc is untouched"
    );
    assert!(!Path::new("/home/tester").exists());
}

#[test]
fn direct_edits_under_lckpwdf_satisfy_pwck_and_later_useradd() {
    let etc = PrivateEtc::new();
    // Hide shadow's tools so the direct-edit path runs on the live system.
    let script = format!(
        r#"
mount --bind /dev/null /usr/sbin/useradd
mount --bind /dev/null /usr/sbin/groupadd
"$BIN" enable --no-restart --format json > "$T/files.json"
umount /usr/sbin/useradd /usr/sbin/groupadd
getent passwd dockremap
getent group dockremap
{CROSS_CHECK}"#
    );
    let out = etc.run(&script);
    let files = etc.json("files.json");
    assert!(
        files["actions"][1]["description"]
            .as_str()
            .unwrap()
            .contains("(direct edit"),
        "{files}"
    );
    assert!(
        out.lines().any(
            |l| l.starts_with("dockremap:x:") && l.ends_with(":/nonexistent:/usr/sbin/nologin")
        ),
        "{out}"
    );
    // Once shadow's tools are back, `enable` finds nothing left to do.
    assert_cross_check(&etc, &out, false);
}
