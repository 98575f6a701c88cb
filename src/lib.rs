//! docker-userns: converge a Docker host to user-namespace remapping.
//!
//! Data flows one way: `cli` turns arguments into a `request::Request`,
//! `observe` reads the `host::Host` once, `plan` computes a plan of actions
//! from that snapshot with the pure parsers in [`config`] and the allocator
//! in `accounts`, `execute` carries it out (stop, migrate, restart, verify,
//! roll back) through the few modules with side effects, and each command
//! (`commands`) renders its own outcome. Every failure ends as one
//! `error::Error`.
//!
//! The program is [`app::main`]. What else is public is what the
//! integration tests and fuzz targets drive directly: the file parsers
//! ([`config`]), id ranges ([`ids`]), the shift engine ([`shift`]) and the
//! Engine API client ([`daemon::api`]).

mod access;
mod accounts;
mod activate;
pub mod app;
mod binds;
mod cli;
mod commands;
pub mod config;
pub mod daemon;
mod error;
mod execute;
mod failpoint;
mod files;
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
#[cfg(test)]
mod testing;
