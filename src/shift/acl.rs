//! The raw POSIX ACL xattr (`system.posix_acl_access`,
//! `system.posix_acl_default`): decoding, encoding, and shifting the ids of
//! its named-user and named-group entries.

/// The only version Linux writes and accepts.
pub(crate) const VERSION: u32 = 2;
/// Named user: the entry's id is a uid.
pub const USER: u16 = 0x02;
/// Named group: the entry's id is a gid.
pub const GROUP: u16 = 0x08;

const HEADER: usize = 4;
const ENTRY: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("ACL of {0} bytes is not a 4-byte header followed by 8-byte entries")]
    Length(usize),
    #[error("ACL version {0} is not 2")]
    Version(u32),
    #[error(
        "ACL would name id {0} twice after the shift (it names both an id and what the id maps to)"
    )]
    Duplicate(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclEntry {
    pub tag: u16,
    pub perm: u16,
    /// Meaningful only for [`USER`] and [`GROUP`] entries; the kernel keeps
    /// 0xffffffff in the others.
    pub id: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    pub entries: Vec<AclEntry>,
}

impl Acl {
    /// Decodes the little-endian xattr value. Tags other than named user
    /// and group are kept as they are, so an ACL round-trips byte for byte.
    pub fn decode(bytes: &[u8]) -> Result<Acl, AclError> {
        if bytes.len() < HEADER || !(bytes.len() - HEADER).is_multiple_of(ENTRY) {
            return Err(AclError::Length(bytes.len()));
        }
        let version = u32::from_le_bytes(bytes[..HEADER].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(AclError::Version(version));
        }
        let entries = bytes[HEADER..]
            .chunks_exact(ENTRY)
            .map(|e| AclEntry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect();
        Ok(Acl { entries })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER + ENTRY * self.entries.len());
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.entries {
            bytes.extend_from_slice(&e.tag.to_le_bytes());
            bytes.extend_from_slice(&e.perm.to_le_bytes());
            bytes.extend_from_slice(&e.id.to_le_bytes());
        }
        bytes
    }

    /// Rewrites named-user ids with `uid` and named-group ids with `gid`,
    /// each returning `None` for an id it leaves alone. Returns whether any
    /// id changed. Named entries stay sorted by id, as setfacl writes them.
    pub fn shift(
        &mut self,
        uid: impl Fn(u32) -> Option<u32>,
        gid: impl Fn(u32) -> Option<u32>,
    ) -> Result<bool, AclError> {
        let mut changed = false;
        for e in &mut self.entries {
            let new = match e.tag {
                USER => uid(e.id),
                GROUP => gid(e.id),
                _ => None,
            };
            if let Some(id) = new.filter(|id| *id != e.id) {
                e.id = id;
                changed = true;
            }
        }
        if changed {
            self.sort_named_runs()?;
        }
        Ok(changed)
    }

    /// Sorts each run of consecutive named-user (named-group) entries by id
    /// and refuses an id named twice in a run.
    fn sort_named_runs(&mut self) -> Result<(), AclError> {
        let mut start = 0;
        while start < self.entries.len() {
            let tag = self.entries[start].tag;
            let len = self.entries[start..]
                .iter()
                .take_while(|e| e.tag == tag)
                .count();
            if tag == USER || tag == GROUP {
                let run = &mut self.entries[start..start + len];
                run.sort_by_key(|e| e.id);
                if let Some(pair) = run.windows(2).find(|p| p[0].id == p[1].id) {
                    return Err(AclError::Duplicate(pair[0].id));
                }
            }
            start += len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const USER_OBJ: u16 = 0x01;
    const GROUP_OBJ: u16 = 0x04;
    const MASK: u16 = 0x10;
    const OTHER: u16 = 0x20;
    const UNDEFINED: u32 = u32::MAX;

    /// What `setfacl -m u:1000:rw,g:50:r FILE` stores on a 0640 file.
    fn sample() -> Vec<u8> {
        let mut b = vec![2, 0, 0, 0];
        for (tag, perm, id) in [
            (USER_OBJ, 6u16, UNDEFINED),
            (USER, 6, 1000),
            (GROUP_OBJ, 4, UNDEFINED),
            (GROUP, 4, 50),
            (MASK, 6, UNDEFINED),
            (OTHER, 0, UNDEFINED),
        ] {
            b.extend_from_slice(&tag.to_le_bytes());
            b.extend_from_slice(&perm.to_le_bytes());
            b.extend_from_slice(&id.to_le_bytes());
        }
        b
    }

    #[test]
    fn decodes_the_kernel_layout() {
        let acl = Acl::decode(&sample()).unwrap();
        assert_eq!(acl.entries.len(), 6);
        assert_eq!(
            acl.entries[1],
            AclEntry {
                tag: USER,
                perm: 6,
                id: 1000
            }
        );
        assert_eq!(acl.entries[3].id, 50);
        assert_eq!(acl.encode(), sample());
    }

    #[test]
    fn shifts_only_named_user_and_group_ids() {
        let mut acl = Acl::decode(&sample()).unwrap();
        let changed = acl.shift(|u| Some(u + 100000), |g| Some(g + 200000));
        assert_eq!(changed, Ok(true));
        let ids: Vec<u32> = acl.entries.iter().map(|e| e.id).collect();
        assert_eq!(
            ids,
            [UNDEFINED, 101000, UNDEFINED, 200050, UNDEFINED, UNDEFINED]
        );
    }

    #[test]
    fn ids_outside_the_maps_are_left_alone() {
        let mut acl = Acl::decode(&sample()).unwrap();
        assert_eq!(acl.shift(|_| None, |_| None), Ok(false));
        assert_eq!(acl.encode(), sample());
    }

    fn named(tag: u16, id: u32) -> AclEntry {
        AclEntry { tag, perm: 4, id }
    }

    #[test]
    fn named_entries_stay_sorted_by_id() {
        let mut acl = Acl {
            entries: vec![
                named(USER_OBJ, UNDEFINED),
                named(USER, 1000),
                named(USER, 70000),
                named(GROUP_OBJ, UNDEFINED),
                named(GROUP, 5),
                named(GROUP, 6),
                named(MASK, UNDEFINED),
            ],
        };
        let outside = |id: u32| (id < 65536).then_some(id + 100000);
        assert_eq!(acl.shift(outside, outside), Ok(true));
        let ids: Vec<u32> = acl.entries.iter().map(|e| e.id).collect();
        assert_eq!(
            ids,
            [
                UNDEFINED, 70000, 101000, UNDEFINED, 100005, 100006, UNDEFINED
            ]
        );
    }

    #[test]
    fn an_id_and_its_image_in_one_acl_is_refused() {
        let mut acl = Acl {
            entries: vec![named(USER, 1), named(USER, 100001)],
        };
        let outside = |id: u32| (id < 65536).then_some(id + 100000);
        assert_eq!(
            acl.shift(outside, outside),
            Err(AclError::Duplicate(100001))
        );
    }

    #[test]
    fn rejects_bad_lengths_and_versions() {
        assert_eq!(Acl::decode(&[]), Err(AclError::Length(0)));
        assert_eq!(Acl::decode(&[2, 0, 0]), Err(AclError::Length(3)));
        assert_eq!(Acl::decode(&sample()[..11]), Err(AclError::Length(11)));
        let mut v1 = sample();
        v1[0] = 1;
        assert_eq!(Acl::decode(&v1), Err(AclError::Version(1)));
        assert_eq!(Acl::decode(&[2, 0, 0, 0]).unwrap().entries, []);
    }

    fn entry() -> impl Strategy<Value = AclEntry> {
        (
            prop_oneof![
                Just(USER_OBJ),
                Just(USER),
                Just(GROUP_OBJ),
                Just(GROUP),
                Just(MASK),
                Just(OTHER),
                any::<u16>()
            ],
            any::<u16>(),
            any::<u32>(),
        )
            .prop_map(|(tag, perm, id)| AclEntry { tag, perm, id })
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(entries in proptest::collection::vec(entry(), 0..40)) {
            let acl = Acl { entries };
            prop_assert_eq!(Acl::decode(&acl.encode()), Ok(acl));
        }

        #[test]
        fn decode_then_encode_keeps_every_byte(
            entries in proptest::collection::vec(any::<[u8; 8]>(), 0..40)
        ) {
            let mut bytes = vec![2, 0, 0, 0];
            bytes.extend(entries.concat());
            prop_assert_eq!(Acl::decode(&bytes).unwrap().encode(), bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(acl) = Acl::decode(&bytes) {
                prop_assert_eq!(acl.encode(), bytes);
            }
        }

        #[test]
        fn shifting_touches_ids_of_named_entries_only(
            entries in proptest::collection::vec(entry(), 0..40),
            delta in 1u32..1000,
        ) {
            let before = Acl { entries };
            let mut after = before.clone();
            let uid = |u: u32| u.checked_add(delta);
            let gid = |g: u32| g.checked_add(2 * delta);
            let Ok(_) = after.shift(uid, gid) else {
                // Only an ACL that names an id twice may be refused.
                let mut ids: Vec<_> = before.entries.iter().filter(|e| e.tag == USER || e.tag == GROUP).collect();
                ids.sort_by_key(|e| (e.tag, e.id));
                prop_assert!(ids.windows(2).any(|p| p[0].tag == p[1].tag && p[0].id == p[1].id));
                return Ok(());
            };
            let key = |e: &AclEntry| (e.tag, e.perm, e.id);
            let mut expected: Vec<_> = before.entries.iter().map(|e| AclEntry {
                id: match e.tag {
                    USER => uid(e.id).unwrap_or(e.id),
                    GROUP => gid(e.id).unwrap_or(e.id),
                    _ => e.id,
                },
                ..*e
            }).map(|e| key(&e)).collect();
            let mut actual: Vec<_> = after.entries.iter().map(key).collect();
            expected.sort_unstable();
            actual.sort_unstable();
            prop_assert_eq!(actual, expected);
            for pair in after.entries.windows(2) {
                if pair[0].tag == pair[1].tag && (pair[0].tag == USER || pair[0].tag == GROUP) {
                    prop_assert!(pair[0].id < pair[1].id);
                }
            }
        }
    }
}
