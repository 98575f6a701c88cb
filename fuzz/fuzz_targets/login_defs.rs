//! /etc/login.defs and the id bounds read from it.
//!
//! Invariants beyond "no panic": for both id kinds, `subordinate_bounds` and
//! `system_bounds` give `min <= max < 2^32` when they succeed, and an error
//! names a line of the file (or 0 when no line set the value).

#![no_main]

use std::path::Path;

use docker_userns::config::login_defs::{IdKind, LoginDefs};
use libfuzzer_sys::fuzz_target;

const ID_LIMIT: u64 = 1 << 32;

fuzz_target!(|data: &[u8]| {
    let Ok(defs) = LoginDefs::parse(Path::new("f"), data) else {
        return;
    };
    let lines = data.split(|&b| b == b'\n').count();
    for kind in [IdKind::Uid, IdKind::Gid] {
        for (what, bounds) in [
            ("subordinate", defs.subordinate_bounds(kind)),
            ("system", defs.system_bounds(kind)),
        ] {
            match bounds {
                Ok((min, max)) => {
                    assert!(min <= max, "{what} {kind:?} bounds {min} > {max}");
                    assert!(
                        max < ID_LIMIT,
                        "{what} {kind:?} max {max} is not below 2^32"
                    );
                }
                Err(e) => assert!(
                    e.line <= lines,
                    "{what} {kind:?} error on line {} of {lines}",
                    e.line
                ),
            }
        }
    }
});
