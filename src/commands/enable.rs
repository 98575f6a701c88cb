//! `enable` from end to end: plan the files and the engine side, checking
//! everything that can refuse the change before writing anything, then
//! have the executor apply, restart dockerd, verify it from the daemon
//! itself, and roll back when the daemon does not prove it.

mod engine;
mod render;

pub use crate::outcome::DaemonState;

use crate::activate::{ActivateError, Daemon};
use crate::daemon::binary;
use crate::execute::{self, ExecuteError, Executed, Failpoints, Job, StoreRecord};
use crate::host::Host;
use crate::ids::{self, RemapSpec};
use crate::image_store;
use crate::migrate::MigrateReport;
use crate::migrate::containerd::CarryReport;
use crate::observe::{Observed, observe};
use crate::phases::Phases;
use crate::plan::{self, Action, Plan, PlanError};
use crate::request::{EnableRequest, Global};

const FAILPOINTS: Failpoints = Failpoints {
    before_action: Some("enable.before_action"),
    before_restart: Some("enable.before_restart"),
    before_purge: None,
};

#[derive(Debug, thiserror::Error)]
pub enum EnableError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Activate(#[from] ActivateError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    /// `dockerd --validate` refused the new daemon.json before any write.
    #[error("{0} (nothing was changed)")]
    Rejected(ActivateError),
}

impl EnableError {
    /// The input file position behind this error, if any.
    pub fn location(&self) -> Option<crate::error::Location> {
        match self {
            EnableError::Plan(e) => e.location(),
            EnableError::Activate(e) => e.location(),
            EnableError::Execute(e) => e.location(),
            EnableError::Rejected(_) => None,
        }
    }
}

/// The result of `enable`, for the report.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub plan: Plan,
    pub applied: bool,
    pub daemon: DaemonState,
    pub migrated: Option<MigrateReport>,
    /// Images loaded and containers re-created from the containerd store.
    pub carried: Option<CarryReport>,
    /// Time spent in each phase that ran (stop, save, move, shift, ...).
    pub phases: Phases,
}

impl Outcome {
    pub fn changed(&self) -> bool {
        self.applied && !self.plan.actions.is_empty()
    }
}

pub fn run(host: &Host, global: &Global, request: &EnableRequest) -> Result<Outcome, EnableError> {
    run_with(host, global, request, || {
        Daemon::managed(host, global, request.restart)
    })
}

/// [`run`] with the daemon `connect` gives: the host's, or a fake.
pub(crate) fn run_with(
    host: &Host,
    global: &Global,
    request: &EnableRequest,
    connect: impl FnOnce() -> Result<Option<Daemon>, ActivateError>,
) -> Result<Outcome, EnableError> {
    let spec = parse(request)?;
    let observed = observe(host, global)
        .complete(host)
        .map_err(PlanError::from)?;
    let mut plan = plan::plan(host, &observed, &spec, request)?;
    let engine = engine::plan(host, global, request, &observed, &mut plan, connect)?;
    if global.dry_run || plan.actions.is_empty() {
        return Ok(not_applied(host, global, request, plan, &engine));
    }
    let record = store_record(host, &observed)?;
    let converge = || converge(host, global, &spec, request);
    let engine_side = engine.for_executor(restarts(&plan), record);
    let job = Job::new(
        host,
        &observed,
        &plan.data_root,
        &plan.actions,
        engine_side,
        global,
    )
    .config(engine::new_config(&plan))
    .count(request.count)
    .converge(&converge)
    .failpoints(FAILPOINTS);
    let executed = execute::execute(&job)?;
    Ok(applied(host, request, plan, &engine, executed))
}

/// What becomes of the image-store record: one this run writes goes
/// again when the run is abandoned.
fn store_record(host: &Host, observed: &Observed) -> Result<StoreRecord, PlanError> {
    let record = image_store::read_record(host, &observed.config_path)?;
    Ok(match record {
        None => StoreRecord::Fresh,
        Some(_) => StoreRecord::Kept,
    })
}

/// The remap spec and count asked for, checked before anything is read.
fn parse(request: &EnableRequest) -> Result<RemapSpec, PlanError> {
    let spec = RemapSpec::parse(&request.user).map_err(|source| PlanError::Spec {
        value: request.user.clone(),
        source,
    })?;
    if request.count < ids::MIN_COUNT {
        return Err(PlanError::CountTooSmall(request.count));
    }
    Ok(spec)
}

fn restarts(plan: &Plan) -> bool {
    plan.actions
        .iter()
        .any(|a| matches!(a, Action::RestartDaemon { .. }))
}

/// What the daemon's state is when nothing was restarted.
fn planned_state(
    host: &Host,
    request: &EnableRequest,
    daemon: Option<&Daemon>,
    restart: bool,
) -> DaemonState {
    match daemon {
        None => DaemonState::NotManaged {
            reason: not_managed_reason(host, request),
        },
        Some(_) => DaemonState::Planned { restart },
    }
}

/// A dry run, or a host with nothing to do.
fn not_applied(
    host: &Host,
    global: &Global,
    request: &EnableRequest,
    plan: Plan,
    engine: &engine::EnginePlan,
) -> Outcome {
    let daemon = match (&engine.daemon, global.dry_run) {
        (Some(d), false) => DaemonState::Verified {
            restarted: false,
            info: d.observe().unwrap_or_default(),
        },
        (daemon, _) => planned_state(host, request, daemon.as_ref(), restarts(&plan)),
    };
    Outcome {
        plan,
        applied: false,
        daemon,
        migrated: None,
        carried: None,
        phases: Phases::default(),
    }
}

/// What the executor did, with the mapping as planned again after it.
fn applied(
    host: &Host,
    request: &EnableRequest,
    plan: Plan,
    engine: &engine::EnginePlan,
    executed: Executed,
) -> Outcome {
    let daemon = match (&engine.daemon, executed.verified) {
        (None, _) => planned_state(host, request, None, false),
        (Some(_), Some(info)) => DaemonState::Verified {
            restarted: true,
            info,
        },
        (Some(d), None) => DaemonState::Verified {
            restarted: false,
            info: d.observe().unwrap_or_default(),
        },
    };
    let mapping = executed
        .converged
        .map_or(plan.mapping.clone(), |after| after.mapping);
    Outcome {
        plan: Plan { mapping, ..plan },
        applied: true,
        daemon,
        migrated: executed.migrated,
        carried: executed.carried,
        phases: executed.phases,
    }
}

/// A converged host plans nothing more.
fn converge(
    host: &Host,
    global: &Global,
    spec: &RemapSpec,
    request: &EnableRequest,
) -> Result<Plan, PlanError> {
    let observed = observe(host, global)
        .complete(host)
        .map_err(PlanError::from)?;
    let after = plan::plan(host, &observed, spec, request)?;
    if let Some(pending) = after.actions.first() {
        return Err(PlanError::NotConverged(pending.describe()));
    }
    Ok(after)
}

/// Said when there is no dockerd to restart.
const FIRST_START: &str = "no dockerd yet; its first start will be remapped";

fn not_managed_reason(host: &Host, request: &EnableRequest) -> String {
    if !host.is_live() && !binary::installed(host) {
        "--root: no dockerd; its first start will be remapped".into()
    } else if !host.is_live() {
        "--root: an image root has no running daemon".into()
    } else if !binary::installed(host) {
        FIRST_START.into()
    } else if !request.restart {
        "--no-restart: restart dockerd to make it active".into()
    } else {
        String::new()
    }
}
