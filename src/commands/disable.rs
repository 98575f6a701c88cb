//! `disable`: take `userns-remap` out of daemon.json, restart dockerd and
//! verify remapping is gone; with `--purge`, then remove the `dockremap`
//! account and its ranges.

mod render;

use std::path::{Path, PathBuf};

use crate::activate::{self, ActivateError, Daemon, Expect};
use crate::config::daemon_json::USERNS_REMAP;
use crate::execute::{self, Carry, Engine, ExecuteError, Executed, Failpoints, Job, StoreRecord};
use crate::host::Host;
use crate::ids::{DEFAULT_USER, RemapSpec};
use crate::image_store::{self, Record};
use crate::migrate::containerd::{self as carry, CarryReport, Inventory};
use crate::migrate::content::Content;
use crate::migrate::{self, Direction, MigrateReport, Migration};
use crate::observe::{Observed, observe};
use crate::outcome::DaemonState;
use crate::paths::PASSWD;
use crate::phases::Phases;
use crate::plan::{Action, FileChange, PlanError, Warning};
use crate::request::{DisableRequest, Global};

#[derive(Debug, thiserror::Error)]
pub enum DisableError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Activate(#[from] ActivateError),
    #[error(transparent)]
    Store(#[from] image_store::StoreError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
}

impl DisableError {
    /// The input file position behind this error, if any.
    pub fn location(&self) -> Option<crate::error::Location> {
        match self {
            DisableError::Plan(e) => e.location(),
            DisableError::Activate(e) => e.location(),
            DisableError::Store(e) => e.location(),
            DisableError::Execute(e) => e.location(),
        }
    }
}

const FAILPOINTS: Failpoints = Failpoints {
    before_action: None,
    before_restart: None,
    before_purge: Some("disable.before_purge"),
};

const CONTAINERD_BACK: &str =
    "the containerd image store comes back with the images and containers it had before enable";

#[derive(Debug, Clone)]
pub struct DisableOutcome {
    pub actions: Vec<Action>,
    pub changes: Vec<FileChange>,
    pub warnings: Vec<Warning>,
    pub config_path: PathBuf,
    pub applied: bool,
    pub daemon: DaemonState,
    /// Images loaded and containers re-created in the containerd store.
    pub carried: Option<CarryReport>,
    /// What `--migrate` moved and shifted.
    pub migrated: Option<MigrateReport>,
    /// Time spent in each phase that ran (stop, save, move, shift, ...).
    pub phases: Phases,
}

impl DisableOutcome {
    pub fn changed(&self) -> bool {
        self.applied && !self.actions.is_empty()
    }
}

pub fn run(
    host: &Host,
    global: &Global,
    request: &DisableRequest,
) -> Result<DisableOutcome, DisableError> {
    run_with(host, global, request, || {
        Daemon::managed(host, global, request.restart)
    })
}

/// [`run`] with the daemon `connect` gives: the host's, or a fake.
pub(crate) fn run_with(
    host: &Host,
    global: &Global,
    request: &DisableRequest,
    connect: impl FnOnce() -> Result<Option<Daemon>, ActivateError>,
) -> Result<DisableOutcome, DisableError> {
    let observed = observe(host, global)
        .complete(host)
        .map_err(PlanError::from)?;
    let (outcome, engine) = plan(host, request, &observed, connect)?;
    if global.dry_run || outcome.actions.is_empty() {
        return Ok(outcome);
    }
    let data_root = observed.data_root.clone().map_err(PlanError::from)?;
    let engine_side = engine.for_executor(restarts(&outcome.actions));
    let job = Job::new(
        host,
        &observed,
        &data_root,
        &outcome.actions,
        engine_side,
        global,
    )
    .config(outcome.changes.first().map(|c| c.new.as_str()))
    .failpoints(FAILPOINTS);
    let executed = execute::execute(&job)?;
    Ok(applied(outcome, executed))
}

/// The planned outcome with what the executor did.
fn applied(outcome: DisableOutcome, executed: Executed) -> DisableOutcome {
    let daemon = match executed.verified {
        Some(info) => DaemonState::Verified {
            restarted: true,
            info,
        },
        None => outcome.daemon,
    };
    DisableOutcome {
        applied: true,
        daemon,
        migrated: executed.migrated,
        carried: executed.carried,
        phases: executed.phases,
        ..outcome
    }
}

/// What `disable` planned on the engine's side, for the executor.
struct EnginePlan {
    daemon: Option<Daemon>,
    migration: Option<Migration>,
    /// The remapped daemon's images and containers to carry back.
    carry: Option<Inventory>,
    /// Whether daemon.json gets the user's own image-store setting back.
    restores: bool,
}

impl EnginePlan {
    /// The engine side as the executor takes it: the restarted daemon is
    /// verified to run without the mapping when the plan `restarts` it.
    fn for_executor(&self, restarts: bool) -> Engine<'_> {
        let api = self.daemon.as_ref().and_then(Daemon::api);
        Engine {
            daemon: self.daemon.as_ref(),
            validator: None,
            migration: self.migration.as_ref(),
            // daemon.json about to lose the mapping no longer says where
            // the data is: the journal does, for a rerun.
            journal_first: true,
            carry: self
                .carry
                .as_ref()
                .zip(api)
                .map(|(inventory, api)| Carry { api, inventory }),
            expect: restarts.then_some(Expect::NotRemapped),
            record: match self.restores {
                true => StoreRecord::Restored,
                false => StoreRecord::Kept,
            },
        }
    }
}

/// The actions, file changes and warnings of `disable`, and what the
/// engine side needs, after checking everything that can refuse it.
fn plan(
    host: &Host,
    request: &DisableRequest,
    observed: &Observed,
    connect: impl FnOnce() -> Result<Option<Daemon>, ActivateError>,
) -> Result<(DisableOutcome, EnginePlan), DisableError> {
    let current = observed
        .config
        .string(USERNS_REMAP)
        .map_err(PlanError::from)?;
    let mut outcome = unplanned(host, observed);
    if let Some(from) = &current {
        outcome.actions.push(Action::RemoveRemap {
            path: outcome.config_path.clone(),
            from: from.clone(),
        });
        outcome.changes.push(FileChange {
            path: outcome.config_path.clone(),
            old: observed.config.text().to_owned(),
            new: observed.config.without(USERNS_REMAP),
        });
    }
    let record = image_store::read_record(host, &observed.config_path)?;
    let restores = match &record {
        Some(record) => plan_store_restore(observed, record, &mut outcome)?,
        None => false,
    };
    let daemon = connect()?;
    let migration = if request.migrate {
        let containerd = record.as_ref().is_some_and(Record::wanted_containerd);
        plan_migration(host, observed, current.as_deref(), containerd, &mut outcome)?
    } else {
        None
    };
    let carry = match (&daemon, &migration) {
        (Some(d), Some(m)) if m.scope == migrate::Scope::Volumes => {
            plan_carry_back(host, d, &m.daemon_data_root, &mut outcome)?
        }
        _ => None,
    };
    if let Some(daemon) = &daemon {
        let changes = current.is_some() || restores || migration.is_some();
        preflight(host, daemon, changes, request.yes, &mut outcome)?;
    }
    if request.purge {
        plan_purge(host, observed, current.as_deref(), &mut outcome);
    }
    let engine = EnginePlan {
        daemon,
        migration,
        carry,
        restores,
    };
    Ok((outcome, engine))
}

/// The outcome before anything is planned.
fn unplanned(host: &Host, observed: &Observed) -> DisableOutcome {
    DisableOutcome {
        actions: Vec::new(),
        changes: Vec::new(),
        warnings: Vec::new(),
        config_path: host.display(&observed.config_path),
        applied: false,
        carried: None,
        migrated: None,
        phases: Phases::default(),
        daemon: DaemonState::NotManaged {
            reason: if host.is_live() {
                "--no-restart".into()
            } else {
                "--root: an image root has no running daemon".into()
            },
        },
    }
}

/// Plans the restart when the daemon has a change to take up (`changes`,
/// or remapping still active), once nothing refuses it.
fn preflight(
    host: &Host,
    daemon: &Daemon,
    changes: bool,
    yes: bool,
    outcome: &mut DisableOutcome,
) -> Result<(), DisableError> {
    activate::refuse_flag_conflicts(host, &[USERNS_REMAP])?;
    let info = daemon.observe();
    let active = info.as_ref().is_some_and(|i| i.userns_active());
    if changes || active {
        if info.is_some() {
            let containers = daemon.running_containers()?;
            activate::refuse_running(&containers, yes)?;
        }
        outcome.actions.push(Action::RestartDaemon {
            command: daemon.restart_command()?,
        });
    }
    outcome.daemon = DaemonState::Planned {
        restart: restarts(&outcome.actions),
    };
    Ok(())
}

fn restarts(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::RestartDaemon { .. }))
}

/// Back to the containerd store: the remapped daemon's images and
/// containers go back through the API, as `enable --migrate` brought them.
/// Its containers from before enable are back by themselves; one of the
/// same name is kept rather than replaced.
fn plan_carry_back(
    host: &Host,
    daemon: &Daemon,
    data_root: &Path,
    outcome: &mut DisableOutcome,
) -> Result<Option<Inventory>, DisableError> {
    let Some(api) = daemon.api() else {
        return Ok(None);
    };
    if !daemon.observe().is_some_and(|i| i.userns_active()) {
        return Ok(None);
    }
    let mut inventory = Inventory::read(api).map_err(ActivateError::from)?;
    for container in &mut inventory.containers {
        container.keep_existing = true;
    }
    if inventory.images.is_empty() && inventory.containers.is_empty() {
        return Ok(None);
    }
    outcome
        .warnings
        .retain(|w| !w.message.contains(CONTAINERD_BACK));
    outcome.actions.push(Action::CarryImages {
        spool: carry::spool_path(&host.display(data_root)),
        images: inventory.images.clone(),
        containers: inventory.container_names(),
        back: true,
    });
    Ok(Some(inventory))
}

/// Puts the user's own `features` value back into the daemon.json that
/// `disable` writes, when it is still exactly what `enable` pinned; true
/// when it does.
fn plan_store_restore(
    observed: &Observed,
    record: &Record,
    outcome: &mut DisableOutcome,
) -> Result<bool, DisableError> {
    let path = outcome.config_path.clone();
    let index = outcome.changes.iter().position(|c| c.path == path);
    let base = index.map_or_else(
        || observed.config.text().to_owned(),
        |i| outcome.changes[i].new.clone(),
    );
    let config = crate::config::daemon_json::DaemonConfig::parse(&path, base.as_bytes())
        .map_err(PlanError::from)?;
    let Some(restored) = record.restore(&config, &path) else {
        if image_store::snapshotter_setting(&config) != Some(false) {
            return Ok(false);
        }
        outcome.warnings.push(Warning {
            file: path.clone(),
            line: None,
            message: format!(
                "\"features\" changed since enable pinned the graph driver; kept as it is (the value before enable is in {})",
                image_store::record_path(&path).display()
            ),
        });
        return Ok(false);
    };
    match index {
        Some(i) => outcome.changes[i].new = restored,
        None => outcome.changes.push(FileChange {
            path: path.clone(),
            old: observed.config.text().to_owned(),
            new: restored,
        }),
    }
    outcome.actions.push(Action::RestoreImageStore {
        path,
        to: record.features.clone(),
    });
    Ok(true)
}

/// With `--migrate`: the remapped root's content goes back to the
/// non-remapped root (also to finish an interrupted migration). When the
/// user's store is containerd's, only volumes and networks go back: its
/// own images and containers from before enable are still there, and it
/// cannot use a graph driver's.
fn plan_migration(
    host: &Host,
    observed: &Observed,
    current: Option<&str>,
    containerd: bool,
    outcome: &mut DisableOutcome,
) -> Result<Option<Migration>, DisableError> {
    let data_root = observed.data_root.clone().map_err(PlanError::from)?;
    let host_root = host.display(&data_root);
    let migration = match migrate::pending(host, &data_root) {
        Some(m) if m.direction == Direction::OutOfRemapped => Some(m),
        _ => current.and_then(|value| remapped(host, observed, value, &host_root, &data_root)),
    };
    let Some(mut migration) = migration else {
        return Ok(None);
    };
    if containerd && migrate::pending(host, &data_root).is_none() {
        migration.scope = migrate::Scope::Volumes;
        outcome.warnings.push(Warning {
            file: host_root.clone(),
            line: None,
            message: format!(
                "{CONTAINERD_BACK}; those of the remapped daemon stay in {} (the containerd store cannot use them, and dockerd does not answer to carry them)",
                migration.remapped_root().display()
            ),
        });
    }
    let content = Content::count(
        host,
        &data_root.join(format!("{}.{}", migration.uid, migration.gid)),
    );
    if content.is_empty() && migrate::pending(host, &data_root).is_none() {
        return Ok(None);
    }
    if migrate::pending(host, &data_root).is_none() {
        migration
            .preflight(host)
            .map_err(PlanError::MigrateRefused)?;
    }
    outcome.actions.push(Action::MigrateData {
        from: migration.remapped_root(),
        to: host_root,
        content: content.to_string(),
        back: true,
    });
    Ok(Some(migration))
}

/// The migration out of the root the current `userns-remap` value uses.
fn remapped(
    host: &Host,
    observed: &Observed,
    value: &str,
    data_root: &Path,
    daemon_data_root: &Path,
) -> Option<Migration> {
    let spec = RemapSpec::parse(value).ok()?;
    let accounts = crate::accounts::resolve::resolve_accounts(
        host,
        &observed.passwd,
        &observed.groups,
        &spec,
        value,
    )
    .ok()?;
    let uid = accounts.uid.unwrap_or(u32::MAX);
    let uids = *observed.subuid.ranges_of(&accounts.user, uid).first()?;
    let gids = *observed.subgid.ranges_of(&accounts.user, uid).first()?;
    Some(Migration {
        data_root: data_root.to_owned(),
        daemon_data_root: daemon_data_root.to_owned(),
        uid: uids.start as u32,
        gid: gids.start as u32,
        count: uids.count.min(gids.count).min(u64::from(u32::MAX)) as u32,
        direction: Direction::OutOfRemapped,
        scope: migrate::Scope::All,
    })
}

/// `--purge` removes only `dockremap`: another remap user's account and
/// ranges may serve other tools (rootless podman, LXD).
fn plan_purge(
    host: &Host,
    observed: &Observed,
    current: Option<&str>,
    outcome: &mut DisableOutcome,
) {
    let user = current
        .and_then(|v| RemapSpec::parse(v).ok())
        .and_then(|s| {
            crate::accounts::resolve::resolve_accounts(
                host,
                &observed.passwd,
                &observed.groups,
                &s,
                "",
            )
            .ok()
        })
        .map_or_else(|| DEFAULT_USER.to_owned(), |a| a.user);
    if user != DEFAULT_USER {
        outcome.warnings.push(Warning {
            file: host.display(Path::new(PASSWD)),
            line: None,
            message: format!(
                "--purge keeps {user}'s account and ranges: only {DEFAULT_USER} is removed"
            ),
        });
        return;
    }
    let uid = observed.passwd.by_name(&user).map(|e| e.uid);
    let has_ranges = [&observed.subuid, &observed.subgid]
        .iter()
        .any(|f| !f.ranges_of(&user, uid.unwrap_or(u32::MAX)).is_empty());
    if has_ranges {
        outcome.actions.push(Action::RemoveRanges {
            owner: user.clone(),
        });
    }
    let listed = |names: &Option<Vec<String>>| names.as_ref().is_some_and(|n| n.contains(&user));
    // Any of the four files: an interrupted purge may have left only some.
    if uid.is_some()
        || observed.groups.by_name(&user).is_some()
        || listed(&observed.shadow_names)
        || listed(&observed.gshadow_names)
    {
        outcome.actions.push(Action::RemoveAccount { name: user });
    }
}
