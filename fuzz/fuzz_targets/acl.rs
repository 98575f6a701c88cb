//! The raw POSIX ACL xattr.
//!
//! Invariants beyond "no panic":
//! - a decoded ACL encodes back to the input byte for byte;
//! - a shift that succeeds keeps the length and the sequence of tags, keeps
//!   each run of same-tag entries as the same (perm, mapped id) multiset,
//!   leaves every named-user and named-group run it changed sorted by
//!   strictly increasing id, reports a change exactly when the bytes
//!   changed, and re-decodes;
//! - a shift that fails does so because some changed run would name an id
//!   twice;
//! - the identity map changes nothing.

#![no_main]

use docker_userns::shift::acl::{Acl, AclEntry, AclError, GROUP, USER};
use libfuzzer_sys::fuzz_target;

/// A typical remap: the first 65536 ids move up by 100000 (uids) or
/// 200000 (gids); everything else is outside the map.
fn uid_map(id: u32) -> Option<u32> {
    (id < 65536).then(|| id + 100_000)
}

fn gid_map(id: u32) -> Option<u32> {
    (id < 65536).then(|| id + 200_000)
}

fn mapped(e: &AclEntry) -> AclEntry {
    let id = match e.tag {
        USER => uid_map(e.id).unwrap_or(e.id),
        GROUP => gid_map(e.id).unwrap_or(e.id),
        _ => e.id,
    };
    AclEntry { id, ..*e }
}

/// Maximal runs of consecutive entries with the same tag.
fn runs(entries: &[AclEntry]) -> Vec<&[AclEntry]> {
    entries.chunk_by(|a, b| a.tag == b.tag).collect()
}

fn sorted(run: &[AclEntry]) -> Vec<(u32, u16)> {
    let mut v: Vec<(u32, u16)> = run.iter().map(|e| (e.id, e.perm)).collect();
    v.sort_unstable();
    v
}

fuzz_target!(|data: &[u8]| {
    let Ok(acl) = Acl::decode(data) else {
        return;
    };
    assert_eq!(acl.encode(), data, "encode does not round-trip");

    let expected: Vec<AclEntry> = acl.entries.iter().map(mapped).collect();
    let any_change = expected != acl.entries;
    let mut shifted = acl.clone();
    match shifted.shift(uid_map, gid_map) {
        Ok(changed) => {
            assert_eq!(changed, any_change, "shift's change flag is wrong");
            let bytes = shifted.encode();
            assert_eq!(bytes.len(), data.len(), "shift changed the length");
            assert_eq!(changed, bytes != data, "bytes changed without the flag");
            assert_eq!(Acl::decode(&bytes).as_ref(), Ok(&shifted));
            let want = runs(&expected);
            let got = runs(&shifted.entries);
            assert_eq!(want.len(), got.len(), "shift changed the tag sequence");
            for (w, g) in want.iter().zip(&got) {
                assert_eq!(w.len(), g.len(), "shift changed the tag sequence");
                assert_eq!(w[0].tag, g[0].tag, "shift changed the tag sequence");
                assert_eq!(sorted(w), sorted(g), "shift lost or changed an entry");
                if changed && (g[0].tag == USER || g[0].tag == GROUP) {
                    assert!(
                        g.windows(2).all(|p| p[0].id < p[1].id),
                        "named run not sorted by unique id: {g:?}"
                    );
                }
            }
        }
        Err(AclError::Duplicate(id)) => {
            assert!(
                any_change,
                "Duplicate({id}) from a shift that changed nothing"
            );
            let named_twice = runs(&expected).iter().any(|r| {
                (r[0].tag == USER || r[0].tag == GROUP)
                    && r.iter().filter(|e| e.id == id).count() >= 2
            });
            assert!(named_twice, "Duplicate({id}) but no run names {id} twice");
        }
        Err(e) => panic!("shift failed with {e:?}"),
    }

    // The identity map changes nothing.
    let mut same = acl.clone();
    assert_eq!(same.shift(Some, Some), Ok(false));
    assert_eq!(same, acl);
});
