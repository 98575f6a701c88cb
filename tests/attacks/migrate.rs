//! Attacks on `migrate`.

#[allow(unused_imports)]
use crate::harness::*;
