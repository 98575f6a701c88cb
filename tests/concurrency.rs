//! Concurrency with the real shadow tools: many `enable --user uN` runs at
//! once while `useradd` and `usermod --add-subuids` run in loops, all on
//! one private copy of /etc. No line may be lost or duplicated, no two
//! owners' ranges may overlap, and every file must parse.

use std::collections::HashMap;
use std::fs;

use crate::support::*;
use docker_userns::config::subid::SubIdFile;
use docker_userns::ids::IdRange;

const ENABLES: usize = 200;
const USERADDS: usize = 100;
const USERMODS: usize = 100;
const PARALLEL: usize = 8;

#[test]
fn concurrent_enables_useradd_and_usermod_lose_nothing() {
    let etc = PrivateEtc::new();
    fs::create_dir(etc.path("out")).unwrap();
    fs::create_dir(etc.path("dj")).unwrap();
    let script = format!(
        r#"
for i in $(seq 1 {ENABLES}); do echo "u$i:x:$((20000 + i)):$((20000 + i))::/nonexistent:/usr/sbin/nologin"; done >> /etc/passwd
for i in $(seq 1 {ENABLES}); do echo "u$i:x:$((20000 + i)):"; done >> /etc/group
: > /etc/subuid; : > /etc/subgid
( for i in $(seq 1 {USERADDS}); do useradd -M t$i || exit 1; done ) > "$T/useradd.log" 2>&1 &
A=$!
( for i in $(seq 1 {USERMODS}); do s=$((3000000000 + i * 100)); usermod --add-subuids $s-$((s + 9)) --add-subgids $s-$((s + 9)) u$i || exit 1; done ) > "$T/usermod.log" 2>&1 &
B=$!
seq 1 {ENABLES} | xargs -P {PARALLEL} -I@ sh -c '"$BIN" enable --no-restart --user u@ --config "$T/dj/u@.json" --format json > "$T/out/u@.json" || echo "u@" >> "$T/failed"'
wait $A || {{ echo "useradd loop failed"; cat "$T/useradd.log"; exit 1; }}
wait $B || {{ echo "usermod loop failed"; cat "$T/usermod.log"; exit 1; }}
test ! -e "$T/failed" || {{ for u in $(cat "$T/failed"); do echo "enable failed for $u:"; cat "$T/out/$u.json"; done; exit 1; }}
for i in $(seq 1 {ENABLES}); do
  "$BIN" enable --no-restart --user u$i --config "$T/dj/u$i.json" --format json | grep -q '"changed": false' || {{ echo "rerun changed u$i"; exit 1; }}
done
pwck -r -q && grpck -r
cp /etc/subuid /etc/subgid /etc/passwd "$T/out/"
ls /etc/*.lock 2>/dev/null && {{ echo "lock files left"; exit 1; }} || true
"#
    );
    etc.run(&script);

    let passwd = fs::read_to_string(etc.path("out/passwd")).unwrap();
    for name in (1..=ENABLES)
        .map(|i| format!("u{i}"))
        .chain((1..=USERADDS).map(|i| format!("t{i}")))
    {
        let count = passwd
            .lines()
            .filter(|l| l.starts_with(&format!("{name}:")))
            .count();
        assert_eq!(count, 1, "{name} appears {count} times in passwd");
    }
    for file in ["subuid", "subgid"] {
        let text = fs::read(etc.path(&format!("out/{file}"))).unwrap();
        let parsed = SubIdFile::parse(std::path::Path::new(file), &text).unwrap();
        assert!(
            parsed.malformed.is_empty(),
            "{file}: {:?}",
            parsed.malformed
        );
        let mut by_owner: HashMap<&str, Vec<IdRange>> = HashMap::new();
        for e in &parsed.entries {
            by_owner.entry(&e.owner).or_default().push(e.range);
        }
        for i in 1..=ENABLES {
            let total: u64 = by_owner[format!("u{i}").as_str()]
                .iter()
                .map(|r| r.count)
                .sum();
            assert!(total >= 65536, "{file}: u{i} has {total} ids");
        }
        for i in 1..=USERADDS {
            assert_eq!(by_owner[format!("t{i}").as_str()].len(), 1, "{file}: t{i}");
        }
        for i in 1..=USERMODS {
            let start = 3_000_000_000 + i as u64 * 100;
            let lines = parsed
                .entries
                .iter()
                .filter(|e| e.range.start == start && e.owner == format!("u{i}"))
                .count();
            assert_eq!(
                lines, 1,
                "{file}: usermod's range for u{i} appears {lines} times"
            );
        }
        for (a, x) in parsed.entries.iter().enumerate() {
            for y in &parsed.entries[a + 1..] {
                assert!(
                    x.owner == y.owner || !x.range.overlaps(&y.range),
                    "{file}: {x:?} overlaps {y:?}"
                );
            }
        }
    }
}
