//! Talking to dockerd: its API socket, its service manager and its flags.

pub mod api;
pub(crate) mod binary;
pub(crate) mod containers;
pub(crate) mod control;
pub(crate) mod envfile;
pub(crate) mod flags;
pub(crate) mod http;
pub(crate) mod service;
pub(crate) mod transfer;
pub(crate) mod unit;
pub(crate) mod words;
