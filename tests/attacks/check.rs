//! Attacks on `check`.

#[allow(unused_imports)]
use crate::harness::*;
