//! What the user asked for, as plain data: the only thing `cli` hands on.

use std::path::PathBuf;
use std::time::Duration;

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
    /// The Docker API socket as `unix:///PATH` (`--host`, else DOCKER_HOST).
    pub socket: Option<String>,
    /// How to restart dockerd when no service manager is recognised.
    pub restart_command: Option<String>,
    /// How to stop it then (needed by `--migrate`).
    pub stop_command: Option<String>,
    /// How long to wait for dockerd to come back and show the mapping.
    pub timeout: Duration,
}

impl Global {
    /// Whether a long step draws a progress line: only for a person
    /// watching a terminal, never into a log or a script's JSON.
    pub fn progress(&self) -> bool {
        use std::io::IsTerminal;
        self.format == Format::Human && !self.quiet && std::io::stderr().is_terminal()
    }
}

#[derive(Debug, Clone)]
pub struct EnableRequest {
    /// The `userns-remap` value: `default`, NAME, NAME:GROUP, UID or UID:GID.
    pub user: String,
    pub count: u64,
    /// Restart dockerd and verify; off with `--no-restart` (and under `--root`).
    pub restart: bool,
    /// Allow a restart that stops running containers.
    pub yes: bool,
    /// Carry images, containers and volumes into the remapped root.
    pub migrate: bool,
}

#[derive(Debug, Clone)]
pub struct DisableRequest {
    /// Also remove the `dockremap` account and its ranges.
    pub purge: bool,
    pub restart: bool,
    pub yes: bool,
    /// Carry images, containers and volumes back to the non-remapped root.
    pub migrate: bool,
}

/// A container user by its ids inside the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InsideIds {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Default)]
pub struct CheckRequest {
    /// Bind-mount sources to check access to.
    pub paths: Vec<PathBuf>,
    pub as_ids: InsideIds,
}

#[derive(Debug, Clone)]
pub struct GrantRequest {
    pub path: PathBuf,
    pub as_ids: InsideIds,
    /// ACL entries instead of chown/chmod.
    pub acl: bool,
}

#[derive(Debug, Clone)]
pub struct ShiftRequest {
    pub dir: PathBuf,
    /// `FROM:TO:COUNT`, as given; parsed by the shift engine.
    pub uid_maps: Vec<String>,
    pub gid_maps: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Command {
    Enable(EnableRequest),
    Disable(DisableRequest),
    Check(CheckRequest),
    Grant(GrantRequest),
    Shift(ShiftRequest),
}

#[derive(Debug, Clone)]
pub struct Request {
    pub global: Global,
    pub command: Command,
}
