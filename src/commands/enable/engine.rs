//! What `enable` plans on the engine's side, before any write: which
//! image store dockerd uses, what `--migrate` moves or carries, what the
//! running daemon refuses, and dockerd's own check of the new daemon.json.
//! Nothing here writes; it adds actions and warnings to the plan.

use std::path::Path;

use super::EnableError;
use crate::activate::{self, ActivateError, Daemon, Expect, Validator};
use crate::config::daemon_json::{DaemonConfig, USERNS_REMAP};
use crate::daemon::api::DaemonInfo;
use crate::daemon::binary;
use crate::execute::{Carry, Engine, StoreRecord};
use crate::host::Host;
use crate::image_store::{self, Store};
use crate::migrate::containerd::{self as carry, Inventory};
use crate::migrate::content::Content;
use crate::migrate::{self, Direction, Migration};
use crate::observe::Observed;
use crate::plan::{Action, FileChange, Plan, PlanError, Warning};
use crate::request::{EnableRequest, Global};

/// What the engine side planned, for the executor.
pub(super) struct EnginePlan {
    /// `None` when no dockerd is managed (`--root`, `--no-restart`, a host
    /// where Docker is not installed yet).
    pub daemon: Option<Daemon>,
    /// The dockerd that checks a daemon.json; `None` under `--root`.
    pub validator: Option<Validator>,
    pub migration: Option<Migration>,
    /// The containerd store's content to carry.
    pub carry: Option<Inventory>,
    /// What the restarted daemon must show.
    pub expect: Expect,
}

impl EnginePlan {
    /// The engine side as the executor takes it: the restarted daemon is
    /// verified when the plan `restarts` it; `record` says what becomes of
    /// the image-store record.
    pub(super) fn for_executor(&self, restarts: bool, record: StoreRecord) -> Engine<'_> {
        let api = self.daemon.as_ref().and_then(Daemon::api);
        Engine {
            daemon: self.daemon.as_ref(),
            validator: self.validator.as_ref(),
            migration: self.migration.as_ref(),
            journal_first: false,
            carry: self
                .carry
                .as_ref()
                .zip(api)
                .map(|(inventory, api)| Carry { api, inventory }),
            expect: restarts.then(|| self.expect.clone()),
            record,
        }
    }
}

/// Adds to `plan` what the engine side needs (the store pin, the
/// migration, the restart) and its warnings, after checking everything
/// that can refuse the change; `connect` gives the daemon.
pub(super) fn plan(
    host: &Host,
    global: &Global,
    request: &EnableRequest,
    observed: &Observed,
    plan: &mut Plan,
    connect: impl FnOnce() -> Result<Option<Daemon>, ActivateError>,
) -> Result<EnginePlan, EnableError> {
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
    let store = detect_store(host, observed, plan, info.as_ref(), validator.as_ref());
    let found = Found {
        daemon: daemon.as_ref(),
        info: info.as_ref(),
    };
    let (migration, carry) = match &store {
        Store::Containerd { why } => {
            plan_containerd(host, observed, plan, why, found, request.migrate)?
        }
        Store::GraphDriver => (
            plan_migration(host, observed, plan, found, request.migrate)?,
            None,
        ),
    };
    leftover_spool_warning(host, plan);
    let expect = expected(host, plan);
    if let Some(daemon) = &daemon {
        refused_warning(api, plan);
        preflight(host, daemon, plan, &expect, request.yes, global.dry_run)?;
    }
    engine_warnings(host, plan, observed, daemon.as_ref(), validator.as_ref());
    if let Some(validator) = &validator {
        validate_before_writes(host, validator, plan)?;
    }
    let breaking = crate::binds::plan_warnings(host, global.socket.as_deref(), plan);
    plan.warnings.extend(breaking);
    Ok(EnginePlan {
        daemon,
        validator,
        migration,
        carry,
        expect,
    })
}

/// Containers whose options the remapped daemon refuses to start.
fn refused_warning(api: Option<&crate::daemon::api::DockerApi>, plan: &mut Plan) {
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
) -> Result<(Option<Migration>, Option<Inventory>), EnableError> {
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
    Ok((migration, Some(inventory)))
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
pub(super) fn new_config(plan: &Plan) -> Option<&str> {
    plan.changes
        .iter()
        .find(|c| c.path == plan.config_path)
        .map(|c| c.new.as_str())
}

/// Checks the new daemon.json before anything is written (in a dry run
/// too): whole when the remap account and its ranges exist, else without
/// userns-remap, so every other key is still checked and nothing created
/// (`--validate` from 26 would create them itself, even in a dry run).
fn validate_before_writes(
    host: &Host,
    validator: &Validator,
    plan: &Plan,
) -> Result<(), EnableError> {
    let Some(text) = new_config(plan) else {
        return Ok(());
    };
    let text = if plan.actions.iter().any(Action::creates_account) {
        DaemonConfig::parse(&plan.config_path, text.as_bytes())
            .map_err(PlanError::from)?
            .without(USERNS_REMAP)
    } else {
        text.to_owned()
    };
    activate::validate_with_dockerd(host, validator, &plan.config_path, &text)
        .map_err(EnableError::Rejected)
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
            let config = new_config(plan);
            crate::execute::validate_after_accounts(
                &host,
                &validator,
                &plan.actions,
                config,
                &plan.config_path,
            )
            .unwrap();
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
