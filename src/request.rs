//! What the user asked for, as plain data: the only thing `cli` hands on.

use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

/// Options every command shares.
#[derive(Debug, Clone)]
pub struct Global {
    /// `/`, or the image root given with `--root`.
    pub root: PathBuf,
    /// daemon.json, as a path inside the root.
    pub config: Option<PathBuf>,
    pub data_root: Option<PathBuf>,
    pub format: Format,
    pub dry_run: bool,
    pub diff: bool,
    pub quiet: bool,
    pub verbose: bool,
}

#[derive(Debug, Clone)]
pub struct EnableRequest {
    /// The `userns-remap` value: `default`, NAME, NAME:GROUP, UID or UID:GID.
    pub user: String,
    pub count: u64,
}

#[derive(Debug, Clone)]
pub enum Command {
    Enable(EnableRequest),
    Check,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub global: Global,
    pub command: Command,
}
