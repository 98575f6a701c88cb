//! Attacks by a hostile image given to `--root` on enable and disable.

#[allow(unused_imports)]
use crate::harness::*;
