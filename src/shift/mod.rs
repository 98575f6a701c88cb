//! The ID-shift engine: re-owning a tree from one id mapping to another.

pub mod acl;
