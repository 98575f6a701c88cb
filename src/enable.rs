//! `enable` from end to end: plan the files, check the daemon side before
//! writing anything, apply, restart dockerd, verify from the daemon itself,
//! and roll daemon.json back when the daemon does not prove it.

mod render;

pub use crate::outcome::DaemonState;

use crate::activate::{self, ActivateError, Daemon, Expect, Validator};

use crate::migrate::content::Content;
use std::path::Path;

use crate::config::daemon_json::{DaemonConfig, USERNS_REMAP};
use crate::daemon::api::DaemonInfo;
use crate::daemon::binary;
use crate::execute::{ExecuteError, Steps, WriteError, Writes};
use crate::host::Host;
use crate::ids::{self, RemapSpec};
use crate::image_store::{self, Store};
use crate::migrate::containerd::{self as carry, CarryError, CarryReport, Inventory, Spool};
use crate::migrate::{self, Direction, MigrateReport, Migration};
use crate::observe::{Observed, observe};
use crate::phases::Phases;
use crate::plan::{self, Action, FileChange, Plan, PlanError, Warning};
use crate::request::{EnableRequest, Global};

#[derive(Debug, thiserror::Error)]
pub enum EnableError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Activate(#[from] ActivateError),
    #[error(transparent)]
    Migrate(#[from] migrate::MigrateError),
    #[error(transparent)]
    Carry(#[from] CarryError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    #[error(transparent)]
    Write(#[from] WriteError),
    /// `dockerd --validate` refused the new daemon.json before any write.
    #[error("{0} (nothing was changed)")]
    Rejected(ActivateError),
    /// `dockerd --validate` refused the whole new daemon.json once the
    /// account and ranges it names were written; those stay.
    #[error(
        "{cause}\n{} was not changed; kept, unused until userns-remap names them: {kept}",
        config.display()
    )]
    RejectedWithAccounts {
        cause: Box<ActivateError>,
        config: std::path::PathBuf,
        kept: String,
    },
}

impl EnableError {
    /// The input file position behind this error, if any.
    pub fn location(&self) -> Option<crate::error::Location> {
        match self {
            EnableError::Plan(e) => e.location(),
            EnableError::Activate(e) => e.location(),
            EnableError::Execute(e) => e.location(),
            EnableError::Write(e) => e.location(),
            EnableError::Rejected(_) | EnableError::RejectedWithAccounts { .. } => None,
            EnableError::Migrate(_) | EnableError::Carry(_) => None,
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

/// The containerd store's content to carry, found while planning.
struct Carry {
    inventory: Inventory,
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
    let spec = RemapSpec::parse(&request.user).map_err(|source| PlanError::Spec {
        value: request.user.clone(),
        source,
    })?;
    if request.count < ids::MIN_COUNT {
        return Err(PlanError::CountTooSmall(request.count).into());
    }
    let observed = observe(host, global)
        .complete(host)
        .map_err(PlanError::from)?;
    let mut plan = plan::plan(host, &observed, &spec, request)?;
    let daemon = match connect() {
        Err(e) if provisioning(host, global, &e) => None,
        result => result?,
    };
    // None under --root: no program of the image is run.
    let pidfile = observed.config.value("pidfile");
    let pidfile = pidfile.as_ref().and_then(|v| v.as_str()).map(Path::new);
    let api = daemon.as_ref().and_then(Daemon::api);
    let validator = activate::dockerd_validates(host, api, pidfile);
    let info = daemon.as_ref().and_then(Daemon::observe);
    let store = detect_store(host, &observed, &plan, info.as_ref(), validator.as_ref());
    let found = Found {
        daemon: daemon.as_ref(),
        info: info.as_ref(),
    };
    let (migration, carry) = match &store {
        Store::Containerd { why } => {
            plan_containerd(host, &observed, &mut plan, why, found, request.migrate)?
        }
        Store::GraphDriver => (
            plan_migration(host, &observed, &mut plan, found, request.migrate)?,
            None,
        ),
    };
    leftover_spool_warning(host, &mut plan);
    let expect = expected(host, &plan);
    if let Some(daemon) = &daemon {
        let refused = api
            .map(crate::daemon::containers::refused_under_remapping)
            .unwrap_or_default();
        if !refused.is_empty() {
            plan.warnings.push(Warning {
                file: plan.config_path.clone(),
                line: None,
                message: format!(
                    "will not start under remapping: {} (run them with --userns=host, or without those options)",
                    refused.join(", ")
                ),
            });
        }
        preflight(
            host,
            daemon,
            &mut plan,
            &expect,
            request.yes,
            global.dry_run,
        )?;
    }
    engine_warnings(
        host,
        &mut plan,
        &observed,
        daemon.as_ref(),
        validator.as_ref(),
    );
    if let Some(validator) = &validator {
        validate_before_writes(host, validator, &plan)?;
    }
    let breaking = crate::binds::plan_warnings(host, global.socket.as_deref(), &plan);
    plan.warnings.extend(breaking);
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
            migrated: None,
            carried: None,
            phases: Phases::default(),
        });
    }
    let fresh_record = image_store::read_record(host, &observed.config_path)
        .map_err(PlanError::from)?
        .is_none();
    let mut phases = Phases::default();
    // Images leave the containerd store while it still serves them.
    let spool = match (&carry, api) {
        (Some(c), Some(api)) => Some(phases.time("save", || {
            Spool::save(host, &plan.data_root, api, &c.inventory, global.timeout)
        })?),
        _ => None,
    };
    // On the way out after a failure the originals are untouched in the
    // containerd store: neither the spool nor a record made now is needed.
    let abandon = |spool: Option<(Spool, u64)>| {
        if let Some((spool, _)) = spool {
            spool.discard();
        }
        if fresh_record {
            let _ = image_store::remove_record(host, &observed.config_path);
        }
    };
    if let Err(e) = apply(host, &observed, &plan, request.count, validator.as_ref()) {
        abandon(spool);
        return Err(e);
    }
    // daemon.json is written: the record stays with it.
    let after = match converge(host, global, &spec, request) {
        Ok(after) => after,
        Err(e) => {
            if let Some((spool, _)) = spool {
                spool.discard();
            }
            return Err(e);
        }
    };
    crate::failpoint::hit("enable.before_restart");
    let steps = Steps {
        host,
        daemon: daemon.as_ref(),
        config_path: &observed.config_path,
        original: observed.config_file.as_ref(),
        migration: migration.as_ref(),
        expect: restart.then(|| expect.clone()),
        progress: global.progress(),
    };
    let mut spool = spool;
    // Interrupted (a migration stopped part way): daemon.json stays as
    // planned for the rerun that finishes the move, and the saved images
    // stay for loading; a roll-back has abandoned them.
    let executed = steps.run(&mut phases, &mut || abandon(spool.take()))?;
    let state = match (&daemon, executed.verified) {
        (None, _) => daemon_state(false),
        (Some(_), Some(info)) => DaemonState::Verified {
            restarted: true,
            info,
        },
        (Some(d), None) => DaemonState::Verified {
            restarted: false,
            info: d.observe().unwrap_or_default(),
        },
    };
    let migrated = executed.migrated;
    let carried = match (spool, &carry, api) {
        (Some((spool, bytes)), Some(c), Some(api)) => {
            let mut report = spool.load(api, &c.inventory, global.timeout)?;
            report.images_bytes = bytes;
            phases.extend(&report.phases);
            Some(report)
        }
        _ => None,
    };
    Ok(Outcome {
        plan: Plan {
            mapping: after.mapping,
            ..plan
        },
        applied: true,
        daemon: state,
        migrated,
        carried,
        phases,
    })
}

/// A converged host plans nothing more.
fn converge(
    host: &Host,
    global: &Global,
    spec: &RemapSpec,
    request: &EnableRequest,
) -> Result<Plan, EnableError> {
    let observed = observe(host, global)
        .complete(host)
        .map_err(PlanError::from)?;
    let after = plan::plan(host, &observed, spec, request)?;
    if let Some(pending) = after.actions.first() {
        return Err(PlanError::NotConverged(pending.describe()).into());
    }
    Ok(after)
}

/// Which image store the daemon uses now (or will at its first start).
fn detect_store(
    host: &Host,
    observed: &Observed,
    plan: &Plan,
    info: Option<&DaemonInfo>,
    validator: Option<&activate::Validator>,
) -> Store {
    let engine_major = info
        .and_then(|i| image_store::major_version(&i.server_version))
        .or(validator.map(|v| v.major));
    image_store::detect(&image_store::Evidence {
        config: &observed.config,
        info,
        engine_major,
        graph_driver_dir: image_store::GRAPH_DRIVERS
            .iter()
            .any(|d| host.has_entry(&plan.data_root.join(d))),
    })
}

/// A spool an interrupted run left holds the only copy outside containerd
/// of images it was carrying: say where it is and how to load it.
fn leftover_spool_warning(host: &Host, plan: &mut Plan) {
    let spool = plan.data_root.join(carry::SPOOL);
    if host.has_entry(&spool) {
        let shown = host.display(&spool);
        plan.warnings.push(Warning {
            file: shown.clone(),
            line: None,
            message: format!(
                "an earlier --migrate left saved images here: load them with `docker load -i {}/images.tar`, then remove it",
                shown.display()
            ),
        });
    }
}

/// ": images a; containers b; volumes c", when the daemon that answers
/// is the one whose root stays behind (the plain one).
fn hidden_names(found: &Found<'_>, migration: &Migration) -> String {
    let (Some(api), Some(info)) = (found.daemon.and_then(Daemon::api), found.info) else {
        return String::new();
    };
    if info.userns_active() || migration.direction != Direction::IntoRemapped {
        return String::new();
    }
    Inventory::read(api).map_or_else(|_| String::new(), |i| format!(": {}", i.describe()))
}

/// The running daemon, as found before planning.
#[derive(Clone, Copy)]
struct Found<'a> {
    daemon: Option<&'a Daemon>,
    info: Option<&'a DaemonInfo>,
}

/// On the containerd store: pin the graph driver in daemon.json, and say
/// exactly what stays hidden, or (with `--migrate`) plan to carry it:
/// images and containers through the API, volumes by the file migration.
fn plan_containerd(
    host: &Host,
    observed: &Observed,
    plan: &mut Plan,
    why: &str,
    found: Found<'_>,
    wanted: bool,
) -> Result<(Option<Migration>, Option<Carry>), EnableError> {
    pin_store(observed, plan, why)?;
    let Some(base) = base_migration(host, plan) else {
        return Ok((None, None));
    };
    let data_root = host.display(&plan.data_root);
    let inventory = match (found.daemon.and_then(Daemon::api), found.info) {
        (Some(api), Some(_)) => Some(Inventory::read(api).map_err(ActivateError::from)?),
        _ => None,
    };
    // A remapped daemon on the containerd store keeps its volumes in
    // `<uid>.<gid>` already: only images and containers need carrying.
    let remapped = found.info.is_some_and(DaemonInfo::userns_active);
    let Some(inventory) = inventory else {
        if wanted && !Content::count(host, &plan.data_root).is_empty() {
            return Err(PlanError::CarryNeedsDaemon {
                why: why.to_owned(),
            }
            .into());
        }
        plan.warnings.push(Warning {
            file: data_root,
            line: None,
            message: format!(
                "the containerd image store is in use ({why}): its images and containers are hidden under remapping; dockerd does not answer, so they cannot be listed"
            ),
        });
        return Ok((None, None));
    };
    if inventory.is_empty() {
        return Ok((None, None));
    }
    if !wanted {
        plan.warnings.push(Warning {
            file: data_root,
            line: None,
            message: format!(
                "the containerd image store is in use ({why}); under remapping dockerd uses the graph driver and these are hidden: {}; add --migrate to carry them over",
                inventory.describe()
            ),
        });
        return Ok((None, None));
    }
    refuse_live_restore(observed)?;
    left_behind_warnings(plan, &inventory, &data_root);
    let migration = match remapped {
        true => None,
        false => plan_volume_move(host, plan, base, &inventory)?,
    };
    plan.actions.push(Action::CarryImages {
        spool: carry::spool_path(&data_root),
        images: inventory.images.clone(),
        containers: inventory
            .containers
            .iter()
            .filter(|c| c.refused.is_none())
            .map(|c| c.name.clone())
            .collect(),
        back: false,
    });
    Ok((migration, Some(Carry { inventory })))
}

/// What `--migrate` leaves in the containerd store, and why.
fn left_behind_warnings(plan: &mut Plan, inventory: &Inventory, data_root: &std::path::Path) {
    let refused = inventory.refused();
    if !refused.is_empty() {
        plan.warnings.push(Warning {
            file: data_root.to_owned(),
            line: None,
            message: format!(
                "not re-created under remapping (they stay, hidden, in {}): {}",
                data_root.display(),
                refused.join("; ")
            ),
        });
    }
    if !inventory.untagged.is_empty() {
        plan.warnings.push(Warning {
            file: data_root.to_owned(),
            line: None,
            message: format!(
                "untagged images are not carried (a load gives them no name): {}",
                inventory.untagged.join(", ")
            ),
        });
    }
}

/// Volumes and networks go into the remapped root by the file migration,
/// checked now so that a refusal changes nothing.
fn plan_volume_move(
    host: &Host,
    plan: &mut Plan,
    base: Migration,
    inventory: &Inventory,
) -> Result<Option<Migration>, EnableError> {
    let migration = Migration {
        scope: migrate::Scope::Volumes,
        ..base
    };
    let moved = migration
        .preflight(host)
        .map_err(PlanError::MigrateRefused)?;
    if moved.is_empty() {
        return Ok(None);
    }
    plan.actions.push(Action::MigrateData {
        from: migration.source(),
        to: migration.remapped_root(),
        content: format!(
            "{} (volumes {})",
            moved.join(" and "),
            inventory.volumes.join(", ")
        ),
        back: false,
    });
    Ok(Some(migration))
}

/// Adds `"containerd-snapshotter": false` to the daemon.json the plan
/// writes, every other byte kept.
fn pin_store(observed: &Observed, plan: &mut Plan, why: &str) -> Result<(), EnableError> {
    let path = plan.config_path.clone();
    let Some(features) =
        image_store::pinned_features(&observed.config, &path).map_err(PlanError::from)?
    else {
        return Ok(());
    };
    let index = plan.changes.iter().position(|c| c.path == path);
    let base = index.map_or_else(
        || observed.config.text().to_owned(),
        |i| plan.changes[i].new.clone(),
    );
    let edited = DaemonConfig::parse(&path, base.as_bytes())
        .map_err(PlanError::from)?
        .with_raw(image_store::FEATURES, &features);
    match index {
        Some(i) => plan.changes[i].new = edited,
        None => plan.changes.push(FileChange {
            path: path.clone(),
            old: observed.config.text().to_owned(),
            new: edited,
        }),
    }
    plan.actions.push(Action::PinImageStore {
        path,
        from: observed
            .config
            .raw(image_store::FEATURES)
            .map(str::to_owned),
        to: features,
        why: why.to_owned(),
    });
    Ok(())
}

/// The migration into the remapped root the plan's mapping names.
fn base_migration(host: &Host, plan: &Plan) -> Option<Migration> {
    let uids = plan.mapping.uid_ranges.first()?;
    let gids = plan.mapping.gid_ranges.first()?;
    Some(Migration {
        data_root: host.display(&plan.data_root),
        daemon_data_root: plan.data_root.clone(),
        uid: uids.start as u32,
        gid: gids.start as u32,
        count: uids.count.min(gids.count).min(u64::from(u32::MAX)) as u32,
        direction: Direction::IntoRemapped,
        scope: migrate::Scope::All,
    })
}

fn refuse_live_restore(observed: &Observed) -> Result<(), EnableError> {
    if observed.config.value("live-restore") == Some(serde_json::Value::Bool(true)) {
        return Err(PlanError::LiveRestore.into());
    }
    Ok(())
}

/// With `--migrate`, the migration to do: the non-remapped root's state
/// into the remapped one, or another `<uid>.<gid>` root's when the mapping
/// changed, or the rest of an interrupted one. Without it, a warning about
/// what stays hidden.
fn plan_migration(
    host: &Host,
    observed: &Observed,
    plan: &mut Plan,
    found: Found<'_>,
    wanted: bool,
) -> Result<Option<Migration>, EnableError> {
    let Some(new) = base_migration(host, plan) else {
        return Ok(None);
    };
    let data_root = new.data_root.clone();
    let unfinished =
        migrate::pending(host, &plan.data_root).filter(|p| p.uid == new.uid && p.gid == new.gid);
    // What the containerd store left in the plain root was carried when
    // the store was pinned; the graph driver cannot use it.
    let pinned = image_store::read_record(host, &observed.config_path)
        .map_err(PlanError::from)?
        .is_some();
    let (migration, content) = match unfinished {
        Some(m) => {
            let content = Content::count(host, &plan.data_root);
            (m, content)
        }
        None if pinned => return Ok(None),
        None => match source_with_content(host, plan, &new) {
            Some(found) => found,
            None => return Ok(None),
        },
    };
    if !wanted {
        plan.warnings.push(Warning {
            file: data_root,
            line: None,
            message: format!(
                "{content} in {} stay there and are hidden under this mapping; add --migrate to carry them over{}",
                migration.source().display(),
                hidden_names(&found, &migration)
            ),
        });
        return Ok(None);
    }
    refuse_live_restore(observed)?;
    if migrate::pending(host, &plan.data_root).is_none() {
        migration
            .preflight(host)
            .map_err(PlanError::MigrateRefused)?;
    }
    plan.actions.push(Action::MigrateData {
        from: migration.source(),
        to: migration.remapped_root(),
        content: content.to_string(),
        back: false,
    });
    Ok(Some(migration))
}

/// Where the daemon's state is, if not already in the wanted root: the
/// non-remapped root, else the one other `<uid>.<gid>` root holding it.
fn source_with_content(host: &Host, plan: &Plan, new: &Migration) -> Option<(Migration, Content)> {
    let plain = Content::count(host, &plan.data_root);
    if !plain.is_empty() {
        return Some((new.clone(), plain));
    }
    let wanted = new.remapped_root();
    let mut others = Vec::new();
    for name in host.list_dir(&plan.data_root).ok()?? {
        let name = name.to_string_lossy().into_owned();
        let Some((u, g)) = name
            .split_once('.')
            .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)))
        else {
            continue;
        };
        let content = Content::count(host, &plan.data_root.join(&name));
        if new.data_root.join(&name) != wanted && !content.is_empty() {
            others.push((u, g, content));
        }
    }
    // With several candidates there is no telling which one is meant.
    let [(old_uid, old_gid, content)] = <[_; 1]>::try_from(others).ok()?;
    let between = Migration {
        direction: Direction::Between { old_uid, old_gid },
        ..new.clone()
    };
    Some((between, content))
}

/// A host where Docker is not installed yet: no restart method, no
/// `--restart-command` and no dockerd. The files are written and
/// dockerd's first start will use them.
fn provisioning(host: &Host, global: &Global, error: &ActivateError) -> bool {
    matches!(
        error,
        ActivateError::Service(crate::daemon::service::ServiceError::NotDetected { .. })
    ) && global.restart_command.is_none()
        && !binary::installed(host)
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

fn expected(host: &Host, plan: &Plan) -> Expect {
    let m = &plan.mapping;
    match (m.uid_ranges.first(), m.gid_ranges.first()) {
        (Some(u), Some(g)) => Expect::remapped(host, u.start, g.start, &plan.data_root),
        _ => Expect::NotRemapped,
    }
}

/// Engine 26 moved a remapped daemon's containers and plugins to their
/// own containerd namespaces (`moby-<uid>.<gid>`).
const NAMESPACED_SINCE: u32 = 26;
/// Where dockerd keeps managed plugins, one directory per plugin id.
const PLUGINS_DIR: &str = "plugins";

/// What turning remapping on leaves behind on this engine: managed
/// plugins (their store is per data root and, from 26, per containerd
/// namespace) and, from 26, containers that live-restore keeps running
/// in the old namespace.
fn engine_warnings(
    host: &Host,
    plan: &mut Plan,
    observed: &Observed,
    daemon: Option<&Daemon>,
    validator: Option<&Validator>,
) {
    let Expect::Remapped { uid, gid, .. } = expected(host, plan) else {
        return;
    };
    if plan.actions.is_empty() {
        return;
    }
    let info = daemon.and_then(Daemon::observe);
    let major = info
        .as_ref()
        .and_then(|i| binary::major_version(&i.server_version))
        .or(validator.map(|v| v.major));
    let namespaced = major.is_some_and(|m| m >= NAMESPACED_SINCE);
    let plugins = managed_plugins(host, &plan.data_root);
    if !plugins.is_empty() {
        let store = if namespaced {
            format!(" and containerd namespace plugins.moby-{uid}.{gid}")
        } else {
            String::new()
        };
        plan.warnings.push(Warning {
            file: host.display(&plan.data_root.join(PLUGINS_DIR)),
            line: None,
            message: format!(
                "managed plugins vanish under remapping (the remapped daemon has its own plugin store{store}): {}; \
                 reinstall them with `docker plugin install` afterwards",
                plugins.join(", ")
            ),
        });
    }
    let live_restore = observed.config.value("live-restore") == Some(serde_json::Value::Bool(true))
        || info.as_ref().is_some_and(|i| i.live_restore_enabled);
    if namespaced && live_restore {
        plan.warnings.push(Warning {
            file: plan.config_path.clone(),
            line: observed.config.line_of("live-restore"),
            message: format!(
                "\"live-restore\": true keeps containers running through the restart, in containerd namespace moby; \
                 the remapped daemon (namespace moby-{uid}.{gid}) neither sees nor stops them: stop them first"
            ),
        });
    }
}

/// Managed plugins in the (non-remapped) data root: their names from
/// each `plugins/<id>/config.json`, else their ids.
fn managed_plugins(host: &Host, data_root: &Path) -> Vec<String> {
    let dir = data_root.join(PLUGINS_DIR);
    let Ok(Some(names)) = host.list_dir(&dir) else {
        return Vec::new();
    };
    let mut plugins: Vec<String> = names
        .iter()
        .filter_map(|n| n.to_str())
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|id| plugin_name(host, &dir.join(id)).unwrap_or_else(|| id[..12].to_owned()))
        .collect();
    plugins.sort();
    plugins
}

const PLUGIN_CONFIG_LIMIT: u64 = 1024 * 1024;

fn plugin_name(host: &Host, dir: &Path) -> Option<String> {
    let bytes = host
        .read_resolved(&dir.join("config.json"), PLUGIN_CONFIG_LIMIT)
        .ok()??;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(value.get("Name")?.as_str()?.to_owned())
}

/// Everything that can refuse the change is checked before the first write.
fn preflight(
    host: &Host,
    daemon: &Daemon,
    plan: &mut Plan,
    expect: &Expect,
    yes: bool,
    dry_run: bool,
) -> Result<(), EnableError> {
    activate::refuse_flag_conflicts(host, &[USERNS_REMAP])?;
    let info = daemon.observe();
    let live = info.as_ref().is_some_and(|i| expect.met_by(i));
    if plan.actions.is_empty() && live {
        return Ok(());
    }
    if info.is_some() {
        let containers = daemon.running_containers()?;
        match activate::refuse_running(&containers, yes) {
            // A dry run shows the whole plan; the refusal becomes a warning.
            Err(refusal) if dry_run => plan.warnings.push(Warning {
                file: plan.config_path.clone(),
                line: None,
                message: refusal.to_string().replace(" (nothing was changed)", ""),
            }),
            result => result?,
        }
    }
    plan.actions.push(Action::RestartDaemon {
        command: daemon.restart_command()?,
    });
    Ok(())
}

/// The new daemon.json, when the plan changes it.
fn new_config(plan: &Plan) -> Option<&str> {
    plan.changes
        .iter()
        .find(|c| c.path == plan.config_path)
        .map(|c| c.new.as_str())
}

/// Whether the plan still creates the remap account or its ranges. Until
/// they exist dockerd must not see userns-remap: `--validate` (26+) would
/// create them itself, with its own allocator, even in a dry run.
fn creates_accounts(plan: &Plan) -> bool {
    plan.actions.iter().any(creates)
}

fn creates(action: &Action) -> bool {
    matches!(
        action,
        Action::CreateGroup { .. } | Action::CreateUser { .. } | Action::AddRange { .. }
    )
}

/// Checks the new daemon.json before anything is written (in a dry run
/// too): whole when the remap account and its ranges exist, else without
/// userns-remap, so every other key is still checked and nothing created.
fn validate_before_writes(
    host: &Host,
    validator: &Validator,
    plan: &Plan,
) -> Result<(), EnableError> {
    let Some(text) = new_config(plan) else {
        return Ok(());
    };
    let text = if creates_accounts(plan) {
        DaemonConfig::parse(&plan.config_path, text.as_bytes())
            .map_err(PlanError::from)?
            .without(USERNS_REMAP)
    } else {
        text.to_owned()
    };
    activate::validate_with_dockerd(host, validator, &plan.config_path, &text)
        .map_err(EnableError::Rejected)
}

/// Carries out the plan with dockerd's check in between: the accounts and
/// ranges first, then daemon.json only once dockerd accepts it whole.
fn apply(
    host: &Host,
    observed: &Observed,
    plan: &Plan,
    count: u64,
    validator: Option<&Validator>,
) -> Result<(), EnableError> {
    let (config, accounts): (Vec<Action>, Vec<Action>) = plan
        .actions
        .iter()
        .cloned()
        .partition(|a| matches!(a, Action::SetRemap { .. } | Action::PinImageStore { .. }));
    let writes = Writes {
        host,
        observed,
        config: new_config(plan),
        count,
        creating: plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateGroup { .. } | Action::CreateUser { .. })),
        failpoint: Some("enable.before_action"),
    };
    writes.run(&accounts)?;
    if let Some(validator) = validator {
        validate_after_accounts(host, validator, plan)?;
    }
    writes.run(&config)?;
    Ok(())
}

/// The whole new daemon.json, userns-remap included, once the account and
/// ranges it names exist (so dockerd finds and creates nothing), when the
/// preflight could only check it without that key.
///
/// On refusal the account and ranges just written stay: putting the
/// account files back could undo what another tool wrote meanwhile, they
/// are inert while daemon.json does not name them, and a later run reuses
/// them instead of allocating again.
fn validate_after_accounts(
    host: &Host,
    validator: &Validator,
    plan: &Plan,
) -> Result<(), EnableError> {
    if !creates_accounts(plan) || !validator.checks_userns() {
        return Ok(());
    }
    let Some(text) = new_config(plan) else {
        return Ok(());
    };
    activate::validate_with_dockerd(host, validator, &plan.config_path, text).map_err(|e| {
        let kept: Vec<String> = plan
            .actions
            .iter()
            .filter(|a| creates(a) || matches!(a, Action::CompleteAccount { .. }))
            .map(Action::describe)
            .collect();
        EnableError::RejectedWithAccounts {
            cause: Box::new(e),
            config: plan.config_path.clone(),
            kept: kept.join("; "),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Mapping;
    use crate::host::{HostError, Runner};
    use crate::plan::FileChange;
    use std::cell::RefCell;
    use std::ffi::OsString;
    use std::io::Read;
    use std::os::fd::OwnedFd;
    use std::path::{Path, PathBuf};
    use std::rc::Rc;

    /// Records what `dockerd --validate` would have read, and accepts it.
    struct Recorder(Rc<RefCell<Vec<String>>>);

    impl Runner for Recorder {
        fn run(&self, program: &Path, _: &[OsString]) -> Result<String, HostError> {
            Err(HostError::Command {
                program: program.to_owned(),
                message: "not expected".into(),
            })
        }

        fn run_with_input(
            &self,
            _: &Path,
            args: &[OsString],
            input: OwnedFd,
        ) -> Result<String, HostError> {
            assert_eq!(args[2], "/proc/self/fd/0");
            let mut text = String::new();
            std::fs::File::from(input)
                .read_to_string(&mut text)
                .unwrap();
            self.0.borrow_mut().push(text);
            Ok(String::new())
        }
    }

    const NEW: &str = "{\n  \"debug\": true,\n  \"userns-remap\": \"default\"\n}\n";

    fn plan(actions: Vec<Action>) -> Plan {
        let path = PathBuf::from("/etc/docker/daemon.json");
        Plan {
            mapping: Mapping {
                spec: "default".into(),
                user: "dockremap".into(),
                group: "dockremap".into(),
                uid: None,
                gid: None,
                uid_ranges: Vec::new(),
                gid_ranges: Vec::new(),
            },
            actions,
            changes: vec![FileChange {
                path: path.clone(),
                old: "{\n  \"debug\": true\n}\n".into(),
                new: NEW.into(),
            }],
            warnings: Vec::new(),
            config_path: path,
            data_root: "/var/lib/docker".into(),
        }
    }

    fn set_remap() -> Action {
        Action::SetRemap {
            path: "/etc/docker/daemon.json".into(),
            from: None,
            to: "default".into(),
        }
    }

    fn create_user() -> Action {
        Action::CreateUser {
            name: "dockremap".into(),
            group: "dockremap".into(),
            tool: "useradd",
            command: None,
        }
    }

    fn seen(major: u32, plan: &Plan, after_accounts: bool) -> Vec<String> {
        let texts = Rc::new(RefCell::new(Vec::new()));
        let host = Host::open(Path::new("/"), Box::new(Recorder(texts.clone()))).unwrap();
        let validator = Validator {
            dockerd: "/usr/sbin/dockerd".into(),
            major,
        };
        validate_before_writes(&host, &validator, plan).unwrap();
        if after_accounts {
            validate_after_accounts(&host, &validator, plan).unwrap();
        }
        texts.take()
    }

    #[test]
    fn dockerd_never_sees_userns_remap_before_the_account_exists() {
        let plan = plan(vec![create_user(), set_remap()]);
        let before = seen(28, &plan, false);
        assert_eq!(before, ["{\n  \"debug\": true\n}\n"]);
    }

    #[test]
    fn the_whole_file_is_validated_once_the_account_exists_on_26_and_later() {
        let plan = plan(vec![create_user(), set_remap()]);
        let texts = seen(26, &plan, true);
        assert_eq!(texts.len(), 2);
        assert_eq!(texts[1], NEW);
    }

    #[test]
    fn before_26_the_file_without_the_key_is_all_there_is_to_check() {
        let plan = plan(vec![create_user(), set_remap()]);
        assert_eq!(seen(25, &plan, true).len(), 1);
    }

    #[test]
    fn with_the_account_in_place_the_whole_file_is_validated_up_front() {
        let plan = plan(vec![set_remap()]);
        assert_eq!(seen(28, &plan, true), [NEW]);
    }
}
