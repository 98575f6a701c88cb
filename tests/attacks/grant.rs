//! Attacks on `grant`.

#[allow(unused_imports)]
use crate::harness::*;
