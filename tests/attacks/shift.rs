//! Attacks on `shift`.

#[allow(unused_imports)]
use crate::harness::*;
