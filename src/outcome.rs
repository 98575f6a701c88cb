//! What `enable` and `disable` both report after their actions: the
//! daemon's state, what a migration moved and left alone, what was carried
//! through the API, and where the time went.

use serde::Serialize;

use crate::daemon::api::DaemonInfo;
use crate::migrate::MigrateReport;
use crate::migrate::containerd::CarryReport;
use crate::phases::Phases;
use crate::report::Paint;

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

/// The end of the `enable` and `disable` reports: what the migration left
/// alone, the daemon, what was carried, and (after a migration, which is
/// what takes long, or with `-v`) where the time went.
pub fn moved_human(
    paint: &Paint,
    migrated: Option<&MigrateReport>,
    daemon: &DaemonState,
    carried: Option<&CarryReport>,
    phases: &Phases,
    verbose: bool,
) -> String {
    let mut out = String::new();
    if let Some(migrated) = migrated {
        out.push_str(&migrated.warning_lines(paint));
    }
    out.push_str(&daemon.render_human());
    if let Some(carried) = carried {
        out.push_str(&carried.human());
    }
    if verbose || migrated.is_some() || carried.is_some() {
        out.push_str(&phases.took_line());
    }
    out
}
