//! The raw `security.capability` xattr (`struct vfs_ns_cap_data`):
//! decoding, encoding, and shifting the namespace root id of version 3.

const REVISION_MASK: u32 = 0xff00_0000;
const REVISION_1: u32 = 0x0100_0000;
const REVISION_2: u32 = 0x0200_0000;
const REVISION_3: u32 = 0x0300_0000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsError {
    #[error("file capability of {0} bytes is too short for its header")]
    TooShort(usize),
    #[error("file capability revision {0:#x} is unknown")]
    Revision(u32),
    #[error("file capability revision {revision} must be {expected} bytes, not {len}")]
    Length {
        revision: u8,
        expected: usize,
        len: usize,
    },
}

/// One file's capabilities. Version 1 holds the low 32 bits of each set
/// only; version 3 adds the uid that is root in the namespace the
/// capabilities are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCaps {
    /// Revision in the top byte, `VFS_CAP_FLAGS_EFFECTIVE` in bit 0.
    pub(crate) magic_etc: u32,
    /// `[low, high]` words, as stored.
    pub(crate) permitted: [u32; 2],
    pub(crate) inheritable: [u32; 2],
    /// Version 3 only.
    pub rootid: Option<u32>,
}

impl FileCaps {
    #[cfg(test)]
    pub(crate) fn revision(&self) -> u8 {
        (self.magic_etc >> 24) as u8
    }

    fn expected_len(magic_etc: u32) -> Result<usize, CapsError> {
        match magic_etc & REVISION_MASK {
            REVISION_1 => Ok(12),
            REVISION_2 => Ok(20),
            REVISION_3 => Ok(24),
            other => Err(CapsError::Revision(other >> 24)),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<FileCaps, CapsError> {
        let word = |i: usize| u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4"));
        if bytes.len() < 4 {
            return Err(CapsError::TooShort(bytes.len()));
        }
        let magic_etc = word(0);
        let expected = Self::expected_len(magic_etc)?;
        if bytes.len() != expected {
            return Err(CapsError::Length {
                revision: (magic_etc >> 24) as u8,
                expected,
                len: bytes.len(),
            });
        }
        let high = |i: usize| if expected > 12 { word(i) } else { 0 };
        Ok(FileCaps {
            magic_etc,
            permitted: [word(1), high(3)],
            inheritable: [word(2), high(4)],
            rootid: (expected == 24).then(|| word(5)),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut words = vec![self.magic_etc, self.permitted[0], self.inheritable[0]];
        if self.magic_etc & REVISION_MASK != REVISION_1 {
            words.extend([self.permitted[1], self.inheritable[1]]);
        }
        words.extend(self.rootid);
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Maps the version 3 root id with `uid` (`None` leaves it alone).
    /// Versions 1 and 2 carry no id. Returns whether it changed.
    pub fn shift(&mut self, uid: impl Fn(u32) -> Option<u32>) -> bool {
        match self.rootid.and_then(|r| uid(r).filter(|new| *new != r)) {
            Some(new) => {
                self.rootid = Some(new);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `setcap cap_net_raw+ep FILE`, as the kernel returns it.
    const NET_RAW_V2: [u8; 20] = [
        0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    fn v3(rootid: u32) -> Vec<u8> {
        let mut b = NET_RAW_V2.to_vec();
        b[3] = 0x03;
        b.extend_from_slice(&rootid.to_le_bytes());
        b
    }

    #[test]
    fn decodes_v2_without_a_root_id() {
        let caps = FileCaps::decode(&NET_RAW_V2).unwrap();
        assert_eq!(caps.revision(), 2);
        assert_eq!(caps.permitted, [1 << 13, 0]);
        assert_eq!(caps.rootid, None);
        assert_eq!(caps.encode(), NET_RAW_V2);
    }

    #[test]
    fn shifts_the_v3_root_id_at_offset_20() {
        let mut caps = FileCaps::decode(&v3(5)).unwrap();
        assert_eq!((caps.revision(), caps.rootid), (3, Some(5)));
        assert!(caps.shift(|u| Some(u + 100000)));
        assert_eq!(caps.encode(), v3(100005));
        assert_eq!(&caps.encode()[20..], 100005u32.to_le_bytes());
    }

    #[test]
    fn v2_and_unmapped_root_ids_are_unchanged() {
        let mut v2 = FileCaps::decode(&NET_RAW_V2).unwrap();
        assert!(!v2.shift(|u| Some(u + 1)));
        let mut outside = FileCaps::decode(&v3(7)).unwrap();
        assert!(!outside.shift(|_| None));
        assert_eq!(outside.encode(), v3(7));
    }

    #[test]
    fn rejects_wrong_lengths_and_revisions() {
        assert_eq!(FileCaps::decode(&[1, 0]), Err(CapsError::TooShort(2)));
        assert_eq!(
            FileCaps::decode(&NET_RAW_V2[..19]),
            Err(CapsError::Length {
                revision: 2,
                expected: 20,
                len: 19
            })
        );
        let mut v3_short = v3(1);
        v3_short.pop();
        assert!(matches!(
            FileCaps::decode(&v3_short),
            Err(CapsError::Length { revision: 3, .. })
        ));
        let mut v9 = NET_RAW_V2;
        v9[3] = 9;
        assert_eq!(FileCaps::decode(&v9), Err(CapsError::Revision(9)));
    }

    #[test]
    fn v1_round_trips() {
        let v1 = [0, 0, 0, 1, 4, 0, 0, 0, 0, 0, 0, 0];
        let caps = FileCaps::decode(&v1).unwrap();
        assert_eq!((caps.revision(), caps.permitted), (1, [4, 0]));
        assert_eq!(caps.encode(), v1);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_valid_ones_round_trip(
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
            revision in 0u8..5,
        ) {
            let mut bytes = bytes;
            if bytes.len() >= 4 {
                bytes[3] = revision;
            }
            if let Ok(caps) = FileCaps::decode(&bytes) {
                prop_assert_eq!(caps.encode(), bytes);
            }
        }

        #[test]
        fn v3_shift_only_moves_the_root_id(words in any::<[u32; 4]>(), rootid in any::<u32>(), effective in any::<bool>()) {
            let mut bytes = (REVISION_3 | u32::from(effective)).to_le_bytes().to_vec();
            for w in words {
                bytes.extend_from_slice(&w.to_le_bytes());
            }
            bytes.extend_from_slice(&rootid.to_le_bytes());
            let mut caps = FileCaps::decode(&bytes).unwrap();
            caps.shift(|u| u.checked_add(1));
            let shifted = caps.encode();
            prop_assert_eq!(&shifted[..20], &bytes[..20]);
            prop_assert_eq!(&shifted[20..], &rootid.checked_add(1).unwrap_or(rootid).to_le_bytes());
        }
    }
}
