//! Attacks on `enable`.

#[allow(unused_imports)]
use crate::harness::*;
