//! docker-userns: converge a Docker host to user-namespace remapping.
//!
//! Data flows one way: `cli` turns arguments into a [`request::Request`],
//! [`observe`] reads the [`host::Host`] once, [`plan`] computes a plan of
//! actions from that snapshot with the pure parsers in [`config`] and the
//! allocator in [`accounts`], each command renders its own outcome (with
//! what [`report`] shares), and `plan::apply` carries it out through the few
//! modules with side effects ([`files`], [`accounts`]). Every failure ends
//! as one [`error::Error`].

pub mod access;
pub mod accounts;
pub mod activate;
pub mod binds;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod disable;
pub mod enable;
pub mod error;
pub mod execute;
pub mod failpoint;
pub mod files;
pub mod grant;
pub mod host;
pub mod ids;
pub mod image_store;
pub mod migrate;
pub mod observe;
pub mod outcome;
pub mod paths;
pub mod phases;
pub mod plan;
pub mod report;
pub mod request;
pub mod resolve;
pub mod shift;
