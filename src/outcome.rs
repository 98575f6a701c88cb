//! What `enable` and `disable` both report: their action lines, and after
//! their actions the warnings, the daemon's state, what a migration moved
//! and left alone, what was carried through the API, and where the time
//! went.

use serde::Serialize;

use crate::daemon::api::DaemonInfo;
use crate::migrate::MigrateReport;
use crate::migrate::containerd::CarryReport;
use crate::phases::Phases;
use crate::plan::{Action, FileChange, Warning};
use crate::report::{self, Paint};

/// What the daemon showed after the command, or why it was not asked.
#[derive(Debug, Clone)]
pub enum DaemonState {
    /// `--no-restart`, or `--root` (an image has no running daemon).
    NotManaged { reason: String },
    /// Restarted (or already running as wanted) and verified.
    Verified { restarted: bool, info: DaemonInfo },
    /// `--dry-run`: what would happen.
    Planned { restart: bool },
}

/// `daemon` in the JSON of `enable` and `disable`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum DaemonView<'a> {
    NotManaged {
        managed: bool,
        restarted: bool,
        note: &'a str,
    },
    Planned {
        managed: bool,
        restarted: bool,
        restart_needed: bool,
    },
    Verified {
        managed: bool,
        restarted: bool,
        userns_active: bool,
        docker_root_dir: &'a str,
        security_options: &'a [String],
        server_version: &'a str,
    },
}

impl DaemonState {
    pub fn view(&self) -> DaemonView<'_> {
        match self {
            DaemonState::NotManaged { reason } => DaemonView::NotManaged {
                managed: false,
                restarted: false,
                note: reason,
            },
            DaemonState::Planned { restart } => DaemonView::Planned {
                managed: true,
                restarted: false,
                restart_needed: *restart,
            },
            DaemonState::Verified { restarted, info } => DaemonView::Verified {
                managed: true,
                restarted: *restarted,
                userns_active: info.userns_active(),
                docker_root_dir: &info.docker_root_dir,
                security_options: &info.security_options,
                server_version: &info.server_version,
            },
        }
    }

    /// The `daemon` line of the human report.
    pub fn render_human(&self) -> String {
        match self {
            DaemonState::NotManaged { reason } => format!("daemon      not restarted: {reason}\n"),
            DaemonState::Planned { restart: true } => {
                "daemon      would be restarted and verified\n".into()
            }
            DaemonState::Planned { restart: false } => {
                "daemon      already runs with this mapping\n".into()
            }
            DaemonState::Verified { restarted, info } => format!(
                "daemon      {}; remapping {}, DockerRootDir {}\n",
                if *restarted { "restarted" } else { "unchanged" },
                if info.userns_active() {
                    "active"
                } else {
                    "off"
                },
                info.docker_root_dir
            ),
        }
    }
}

/// How an action line is marked: what `enable` adds, what `disable` takes
/// away.
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    Add,
    Remove,
}

/// `  + what` (or `  - what`) for each action, and with `-v` the command
/// that creates an account.
pub fn action_lines(paint: &Paint, mark: Mark, actions: &[Action], verbose: bool) -> String {
    let mark = match mark {
        Mark::Add => paint.wrap("32", "+"),
        Mark::Remove => paint.wrap("31", "-"),
    };
    let mut out = String::new();
    for action in actions {
        out.push_str(&format!("  {mark} {}\n", action.describe()));
        if let (
            true,
            Action::CreateGroup {
                command: Some(c), ..
            }
            | Action::CreateUser {
                command: Some(c), ..
            },
        ) = (verbose, action)
        {
            out.push_str(&format!("      $ {c}\n"));
        }
    }
    out
}

/// What the `enable` and `disable` reports end with.
pub struct Closing<'a> {
    pub warnings: &'a [Warning],
    pub daemon: &'a DaemonState,
    pub migrated: Option<&'a MigrateReport>,
    pub carried: Option<&'a CarryReport>,
    pub phases: &'a Phases,
}

/// The last fields of the `enable` and `disable` JSON, flattened into each.
#[derive(Debug, Serialize)]
pub struct ClosingView<'a> {
    warnings: &'a [Warning],
    daemon: DaemonView<'a>,
    migration: Option<&'a MigrateReport>,
    carried: Option<&'a CarryReport>,
    phases: &'a Phases,
    /// Only with `--diff`.
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<String>,
}

impl<'a> Closing<'a> {
    /// The JSON fields, with the diffs of `changes` when `diff` asks.
    pub fn view(&self, changes: &[FileChange], diff: bool) -> ClosingView<'a> {
        ClosingView {
            warnings: self.warnings,
            daemon: self.daemon.view(),
            migration: self.migrated,
            carried: self.carried,
            phases: self.phases,
            diff: diff.then(|| report::diffs(changes)),
        }
    }

    /// The warnings, what the migration left alone, the daemon, what was
    /// carried, and (after a migration, which is what takes long, or with
    /// `-v`) where the time went.
    pub fn render_human(&self, paint: &Paint, verbose: bool) -> String {
        let mut out = report::warning_lines(paint, self.warnings);
        if let Some(migrated) = self.migrated {
            out.push_str(&migrated.warning_lines(paint));
        }
        out.push_str(&self.daemon.render_human());
        if let Some(carried) = self.carried {
            out.push_str(&carried.human());
        }
        if verbose || self.migrated.is_some() || self.carried.is_some() {
            out.push_str(&self.phases.took_line());
        }
        out
    }
}
