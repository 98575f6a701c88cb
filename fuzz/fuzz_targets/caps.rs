//! The raw file-capability xattr (`security.capability`, v1, v2 and v3).
//!
//! Invariants beyond "no panic":
//! - a decoded value encodes back to the input byte for byte;
//! - shifting the root id keeps the length, changes at most the v3 root id
//!   (bytes 20..24) and only as the map says, reports a change exactly when
//!   the bytes changed, and re-decodes.
//!
//! The body is compiled only when `docker_userns::shift::caps::FileCaps`
//! exists (see build.rs); otherwise this target accepts every input and
//! `scripts/fuzz` skips it.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[cfg(has_caps)]
fn uid_map(id: u32) -> Option<u32> {
    (id < 65536).then(|| id + 100_000)
}

#[cfg(has_caps)]
fuzz_target!(|data: &[u8]| {
    use docker_userns::shift::caps::FileCaps;
    let Ok(caps) = FileCaps::decode(data) else {
        return;
    };
    assert_eq!(caps.encode(), data, "encode does not round-trip");

    let mut shifted = caps;
    let changed = shifted.shift(uid_map);
    let bytes = shifted.encode();
    assert_eq!(bytes.len(), data.len(), "shift changed the length");
    assert_eq!(changed, bytes != data, "shift's change flag is wrong");
    assert_eq!(FileCaps::decode(&bytes), Ok(shifted));
    let prefix = data.len().min(20);
    assert_eq!(
        bytes[..prefix],
        data[..prefix],
        "shift changed more than the root id"
    );
    assert_eq!(shifted.rootid, caps.rootid.map(|r| uid_map(r).unwrap_or(r)));
    assert_eq!(shifted.rootid.is_some(), data.len() == 24);

    let mut same = caps;
    assert!(!same.shift(Some));
    assert_eq!(same, caps);
});

#[cfg(not(has_caps))]
fuzz_target!(|_data: &[u8]| {});
