//! `enable` from end to end: plan the files, check the daemon side before
//! writing anything, apply, restart dockerd, verify from the daemon itself,
//! and roll daemon.json back when the daemon does not prove it.

use std::path::PathBuf;

use crate::activate::{self, ActivateError, Daemon, Expect};
use crate::config::daemon_json::USERNS_REMAP;
use crate::daemon::api::DaemonInfo;
use crate::host::Host;
use crate::ids::{self, RemapSpec};
use crate::plan::{self, Action, Plan, PlanError};
use crate::request::{EnableRequest, Global};

#[derive(Debug, thiserror::Error)]
pub enum EnableError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Activate(#[from] ActivateError),
}

impl EnableError {
    pub fn location(&self) -> Option<&crate::config::ParseError> {
        match self {
            EnableError::Plan(e) => e.location(),
            EnableError::Activate(_) => None,
        }
    }
}

/// What the daemon showed after `enable`, or why it was not asked.
#[derive(Debug, Clone)]
pub enum DaemonState {
    /// `--no-restart`, or `--root` (an image has no running daemon).
    NotManaged { reason: String },
    /// Restarted (or already running as wanted) and verified.
    Verified { restarted: bool, info: DaemonInfo },
    /// `--dry-run`: what would happen.
    Planned { restart: bool },
}

/// The result of `enable`, for the report.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub plan: Plan,
    pub applied: bool,
    pub daemon: DaemonState,
}

impl Outcome {
    pub fn changed(&self) -> bool {
        self.applied && !self.plan.actions.is_empty()
    }
}

pub fn run(host: &Host, global: &Global, request: &EnableRequest) -> Result<Outcome, EnableError> {
    let spec = RemapSpec::parse(&request.user).map_err(|source| PlanError::Spec {
        value: request.user.clone(),
        source,
    })?;
    if request.count < ids::MIN_COUNT {
        return Err(PlanError::CountTooSmall(request.count).into());
    }
    let observed = plan::observe(host, global)?;
    let mut plan = plan::plan(host, &observed, global, &spec, request)?;
    let daemon = Daemon::managed(host, global, request.restart)?;
    let expect = expected(&plan);
    if let Some(daemon) = &daemon {
        preflight(host, daemon, &mut plan, &expect, request.yes)?;
    }
    let daemon_state = |restart| match &daemon {
        None => DaemonState::NotManaged {
            reason: not_managed_reason(host, request),
        },
        Some(_) => DaemonState::Planned { restart },
    };
    let restart = plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::RestartDaemon { .. }));
    if global.dry_run || plan.actions.is_empty() {
        let state = match (&daemon, global.dry_run) {
            (Some(d), false) => DaemonState::Verified {
                restarted: false,
                info: d.observe().unwrap_or_default(),
            },
            _ => daemon_state(restart),
        };
        return Ok(Outcome {
            plan,
            applied: false,
            daemon: state,
        });
    }
    plan::apply(host, &observed, &plan, request.count)?;
    let after = plan::plan(host, &plan::observe(host, global)?, global, &spec, request)?;
    if let Some(pending) = after.actions.first() {
        return Err(PlanError::NotConverged(pending.describe()).into());
    }
    crate::failpoint::hit("enable.before_restart");
    let state = match &daemon {
        None => daemon_state(false),
        Some(d) if restart => match d.restart_and_verify(&expect) {
            Ok(info) => DaemonState::Verified {
                restarted: true,
                info,
            },
            Err(cause) => {
                let original = observed.config_file.as_ref();
                return Err(
                    activate::roll_back(host, d, &observed.config_path, original, cause).into(),
                );
            }
        },
        Some(d) => DaemonState::Verified {
            restarted: false,
            info: d.observe().unwrap_or_default(),
        },
    };
    Ok(Outcome {
        plan: Plan {
            mapping: after.mapping,
            ..plan
        },
        applied: true,
        daemon: state,
    })
}

fn not_managed_reason(host: &Host, request: &EnableRequest) -> String {
    if !host.is_live() {
        "--root: an image root has no running daemon".into()
    } else if !request.restart {
        "--no-restart: restart dockerd to make it active".into()
    } else {
        String::new()
    }
}

fn expected(plan: &Plan) -> Expect {
    let m = &plan.mapping;
    match (m.uid_ranges.first(), m.gid_ranges.first()) {
        (Some(u), Some(g)) => Expect::Remapped {
            uid: u.start,
            gid: g.start,
            data_root: plan.data_root.clone(),
        },
        _ => Expect::NotRemapped,
    }
}

/// Everything that can refuse the change is checked before the first write.
fn preflight(
    host: &Host,
    daemon: &Daemon,
    plan: &mut Plan,
    expect: &Expect,
    yes: bool,
) -> Result<(), EnableError> {
    activate::refuse_flag_conflicts(host, &[USERNS_REMAP])?;
    let info = daemon.observe();
    let live = info.as_ref().is_some_and(|i| expect_met(expect, i));
    if plan.actions.is_empty() && live {
        return Ok(());
    }
    if info.is_some() {
        let containers = daemon.api.containers(false).map_err(ActivateError::from)?;
        activate::refuse_running(&containers, yes)?;
    }
    if let Some(dockerd) = activate::dockerd_validates(host) {
        if let Some(change) = plan.changes.iter().find(|c| c.path == plan.config_path) {
            activate::validate_with_dockerd(host, &dockerd, &change.new)?;
        }
    }
    plan.actions.push(Action::RestartDaemon {
        command: daemon.restart_command()?,
    });
    Ok(())
}

fn expect_met(expect: &Expect, info: &DaemonInfo) -> bool {
    expect.met_by(info)
}

/// The data root the daemon will use for the mapping, for reports.
pub fn remapped_root(plan: &Plan) -> Option<PathBuf> {
    plan.mapping.data_root_dir().map(|d| plan.data_root.join(d))
}
