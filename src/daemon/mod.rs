//! Talking to dockerd: its API socket, its service manager and its flags.

pub mod api;
pub mod binary;
pub mod containers;
pub mod control;
pub mod envfile;
pub mod flags;
pub mod http;
pub mod service;
pub mod transfer;
pub mod unit;
pub mod words;
