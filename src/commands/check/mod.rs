//! `check`: read-only diagnostics. Each check has a stable id, a status, a
//! detail naming the file, line or object, and a remedy that is an exact
//! command or edit.

pub mod accounts;
pub mod config;
pub mod containers;
pub mod daemon;
pub mod data_root;
pub mod kernel;
pub mod paths;
mod render;

pub use render::CheckView;

use std::path::{Path, PathBuf};

use crate::host::{FileMeta, Host};
use crate::observe::{Snapshot, observe};
use crate::paths::DEFAULT_DATA_ROOT;
use crate::request::Global;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// One diagnostic result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub id: &'static str,
    pub title: &'static str,
    pub status: Status,
    pub detail: String,
    pub remedy: Option<String>,
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
}

impl Check {
    pub fn new(
        id: &'static str,
        title: &'static str,
        status: Status,
        detail: impl Into<String>,
    ) -> Self {
        Check {
            id,
            title,
            status,
            detail: detail.into(),
            remedy: None,
            file: None,
            line: None,
        }
    }

    pub fn ok(id: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Check::new(id, title, Status::Ok, detail)
    }

    pub fn warn(id: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Check::new(id, title, Status::Warn, detail)
    }

    pub fn fail(id: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Check::new(id, title, Status::Fail, detail)
    }

    pub fn skip(id: &'static str, title: &'static str, reason: impl Into<String>) -> Self {
        Check::new(id, title, Status::Skip, reason)
    }

    pub fn remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }

    pub fn at(mut self, file: &Path, line: Option<usize>) -> Self {
        self.file = Some(file.to_owned());
        self.line = line;
        self
    }
}

/// The remap user's resolved accounts and ranges, as `enable` computes them.
pub use crate::accounts::Mapping as Remap;
/// What the checks look at: the host's snapshot and what follows from it.
pub struct Facts<'a> {
    pub host: &'a Host,
    pub observed: Snapshot,
    /// daemon.json's path as shown.
    pub config_path: PathBuf,
    pub config_meta: Option<FileMeta>,
    pub data_root: PathBuf,
    /// The configured `userns-remap` value, when daemon.json sets one.
    pub remap_spec: Option<String>,
    /// Resolved when the spec and the account files allow.
    pub remap: Option<Remap>,
}

impl<'a> Facts<'a> {
    pub fn gather(host: &'a Host, global: &Global) -> Self {
        let observed = observe(host, global);
        Facts {
            host,
            config_path: host.display(&observed.config_path),
            config_meta: observed.config_file.as_ref().map(|f| f.meta),
            // A data-root that is not a string is reported by its own check.
            data_root: observed
                .data_root
                .clone()
                .unwrap_or_else(|_| DEFAULT_DATA_ROOT.into()),
            remap_spec: observed.remap_spec(),
            remap: observed.configured_mapping(host),
            observed,
        }
    }
}

/// Runs every check group in order.
pub fn run(host: &Host, global: &Global, request: &crate::request::CheckRequest) -> Vec<Check> {
    let facts = Facts::gather(host, global);
    let mut checks = Vec::new();
    checks.extend(kernel::checks(&facts));
    checks.extend(config::checks(&facts));
    checks.extend(accounts::checks(&facts));
    checks.extend(data_root::checks(&facts));
    let (live, daemon) = daemon::checks(&facts, global.socket.as_deref());
    checks.extend(live);
    checks.extend(containers::checks(&facts, daemon.as_ref()));
    checks.extend(paths::checks(&facts, request));
    checks
}

/// True when no check failed.
pub fn healthy(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.status != Status::Fail)
}
