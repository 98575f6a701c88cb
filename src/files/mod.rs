//! Writing files the way shadow-utils does: atomically, under its locks.

pub mod atomic;
pub mod lock;
