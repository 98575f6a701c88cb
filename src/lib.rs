//! docker-userns: converge a Docker host to user-namespace remapping.
//!
//! Data flows one way: `cli` turns arguments into a [`request::Request`],
//! [`observe`] reads the [`host::Host`] once, [`plan`] computes a plan of
//! actions from that snapshot with the pure parsers in [`config`] and the
//! allocator in [`accounts`], each command renders its own outcome (with
//! what [`report`] shares), and `plan::apply` carries it out through the few
//! modules with side effects ([`files`], [`accounts`]). Every failure ends
//! as one [`error::Error`].

pub mod app;
mod access;
mod accounts;
mod activate;
mod binds;
mod check;
mod cli;
pub mod config;
pub mod daemon;
mod disable;
mod enable;
mod error;
mod execute;
mod failpoint;
mod files;
mod grant;
mod host;
pub mod ids;
mod image_store;
mod migrate;
mod observe;
mod outcome;
mod paths;
mod phases;
mod plan;
mod report;
mod request;
mod resolve;
pub mod shift;
