//! `--migrate`: carry the daemon's images, containers and volumes between
//! the non-remapped data root and `<data-root>/<uid>.<gid>`, by rename and
//! id shift (never a copy), with a journal so that an interrupted run is
//! completed by the next one.
//!
//! What moves: the daemon-state entries at the top of the data root. What
//! is shifted: only what container processes own, as dockerd lays out a
//! remapped root itself: layer contents (`overlay2/*/diff`, `work`), volume
//! data (`volumes/*/_data`) and the per-container `hostname`, `hosts`,
//! `resolv.conf`. What is rewritten: the absolute paths a container's
//! `config.v2.json` keeps (logs, hostname, hosts, resolv.conf and named
//! volume sources), which dockerd does not recompute for volumes.
//!
//! Every file is reached from the data root's descriptor, opened once
//! beneath `--root`, one name at a time without following links (see
//! `at`); everything a container or an image could have swapped for a
//! link is checked before the first write, so a refusal changes nothing.

mod at;
pub mod containerd;
pub mod content;
mod journal;
mod progress;

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde_json::Value;

use crate::host::{self, Host, HostError};
use crate::phases::Phases;
use crate::shift::{self, IdMap, ShiftOptions};
use at::{At, Entry, Owner, io_err, temp_name};

/// Top-level entries of a data root that belong to the daemon's state.
const STATE: &[&str] = &[
    "image",
    "overlay2",
    "containers",
    "volumes",
    "network",
    "buildkit",
    "plugins",
    "runtimes",
    "swarm",
    "tmp",
    "trust",
    "containerd",
    ENGINE_ID,
];
/// How long mounts below the data root may take to go after dockerd stops.
const MOUNTS_SETTLE: std::time::Duration = std::time::Duration::from_secs(10);
/// The daemon's identity (Engine 27+), a file in each root it runs on.
const ENGINE_ID: &str = "engine-id";
/// Storage drivers whose layers this module cannot shift.
const OTHER_DRIVERS: &[&str] = &[
    "vfs",
    "btrfs",
    "zfs",
    "aufs",
    "devicemapper",
    "fuse-overlayfs",
];
/// What moves on the containerd image store: images and containers are
/// carried through the API instead (see `containerd`).
const VOLUME_STATE: &[&str] = &["volumes", "network"];
/// Files dockerd writes into a container's directory for its process.
const CONTAINER_FILES: &[&str] = &["hostname", "hosts", "resolv.conf"];
const CONFIG: &str = "config.v2.json";
/// What a layer holds that container processes own.
const LAYER_TREES: &[&str] = &["diff", "work"];
/// Path fields of `config.v2.json` that point into the data root.
const PATH_FIELDS: &[&str] = &["LogPath", "HostnamePath", "HostsPath", "ResolvConfPath"];

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("shifting {path}: {source}")]
    Shift {
        path: PathBuf,
        #[source]
        source: shift::ShiftError,
    },
    #[error("{0}")]
    Refused(String),
    /// A link, a file of the wrong kind, a mount or a hard link where the
    /// migration would act.
    #[error("{path} {what}")]
    Unexpected { path: PathBuf, what: String },
    #[error(
        "{source:#}; dockerd is left stopped and the journal in {journal} records the migration: run the same command again to finish it"
    )]
    Interrupted {
        #[source]
        source: Box<MigrateError>,
        journal: PathBuf,
    },
    #[error("shifting {path}: {count} entries failed, first: {first}; rerun to finish")]
    Entries {
        path: PathBuf,
        count: u64,
        first: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Non-remapped root -> `<uid>.<gid>` (enable).
    IntoRemapped,
    /// `<uid>.<gid>` -> non-remapped root (disable).
    OutOfRemapped,
    /// `<old_uid>.<old_gid>` -> `<uid>.<gid>`, when the mapping changed.
    Between { old_uid: u32, old_gid: u32 },
}

/// What a migration moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Everything of the daemon's state (a graph driver's store).
    #[default]
    All,
    /// Volumes and networks only: the images and containers of the
    /// containerd store are not files a graph driver can use.
    Volumes,
}

/// One migration: where, which way, and the mapping.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Migration {
    /// The data root as the host sees it (already joined to `--root`),
    /// for messages.
    pub data_root: PathBuf,
    /// The data root as dockerd sees it: what is opened inside `--root`,
    /// and what the configs' paths use.
    pub daemon_data_root: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub count: u32,
    pub direction: Direction,
    #[serde(default)]
    pub scope: Scope,
}

/// What a migration did, for the report (`migration` in JSON).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MigrateReport {
    pub moved: Vec<String>,
    pub configs_rewritten: usize,
    pub entries_shifted: u64,
    pub ids_left_alone: u64,
    /// Entries the shift left unchanged on purpose (a hard link with names
    /// outside the tree), and why.
    pub warnings: Vec<String>,
    pub resumed: bool,
    #[serde(
        rename = "seconds",
        serialize_with = "crate::phases::serialize_seconds"
    )]
    pub elapsed: std::time::Duration,
    /// Time spent moving (with the checks before), shifting, and setting
    /// the layout's owners; the command's report sums them up.
    #[serde(skip)]
    pub phases: Phases,
    /// The source's engine-id when it did not move (the target has its
    /// own), as it was before the run, which may have removed it with its
    /// emptied `<uid>.<gid>` root: what a roll-back puts back.
    #[serde(skip)]
    pub kept_identity: Option<Identity>,
    /// What a roll-back removed where the data went back: the state the
    /// daemon that failed made there.
    #[serde(skip)]
    pub cleared: Vec<String>,
}

/// A root's engine-id file: its bytes, owner and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    bytes: Vec<u8>,
    owner: Owner,
}

impl Identity {
    fn of(dir: &At) -> Result<Option<Identity>, MigrateError> {
        let Some(file) = dir.file(ENGINE_ID)? else {
            return Ok(None);
        };
        Ok(Some(Identity {
            bytes: file.read()?,
            owner: Owner::of(&file.stat),
        }))
    }
}

impl MigrateReport {
    /// One `warning:` line for each entry left alone on purpose.
    pub fn warning_lines(&self, paint: &crate::report::Paint) -> String {
        self.warnings
            .iter()
            .map(|w| format!("{} {w}\n", paint.wrap("33", "warning:")))
            .collect()
    }
}

impl Migration {
    pub fn remapped_root(&self) -> PathBuf {
        self.data_root.join(self.remapped_name())
    }

    pub fn source(&self) -> PathBuf {
        match self.source_name() {
            Some(name) => self.data_root.join(name),
            None => self.data_root.clone(),
        }
    }

    fn target(&self) -> PathBuf {
        match self.target_name() {
            Some(name) => self.data_root.join(name),
            None => self.data_root.clone(),
        }
    }

    fn remapped_name(&self) -> String {
        format!("{}.{}", self.uid, self.gid)
    }

    /// The source's name in the data root; `None` for the data root itself.
    fn source_name(&self) -> Option<String> {
        match self.direction {
            Direction::IntoRemapped => None,
            Direction::OutOfRemapped => Some(self.remapped_name()),
            Direction::Between { old_uid, old_gid } => Some(format!("{old_uid}.{old_gid}")),
        }
    }

    fn target_name(&self) -> Option<String> {
        match self.direction {
            Direction::IntoRemapped | Direction::Between { .. } => Some(self.remapped_name()),
            Direction::OutOfRemapped => None,
        }
    }

    /// The migration that carries back what this one moved: its target
    /// is this one's source and its id maps are this one's inverted.
    pub fn inverse(&self) -> Migration {
        let (direction, uid, gid) = match self.direction {
            Direction::IntoRemapped => (Direction::OutOfRemapped, self.uid, self.gid),
            Direction::OutOfRemapped => (Direction::IntoRemapped, self.uid, self.gid),
            Direction::Between { old_uid, old_gid } => (
                Direction::Between {
                    old_uid: self.uid,
                    old_gid: self.gid,
                },
                old_uid,
                old_gid,
            ),
        };
        Migration {
            uid,
            gid,
            direction,
            ..self.clone()
        }
    }

    /// The id maps that carry the source's owners to the target's.
    fn maps(&self) -> (IdMap, IdMap) {
        let count = self.count;
        let map = |from, to| IdMap { from, to, count };
        match self.direction {
            Direction::IntoRemapped => (map(0, self.uid), map(0, self.gid)),
            Direction::OutOfRemapped => (map(self.uid, 0), map(self.gid, 0)),
            Direction::Between { old_uid, old_gid } => {
                (map(old_uid, self.uid), map(old_gid, self.gid))
            }
        }
    }

    /// The top-level entries this migration moves.
    fn state(&self) -> &'static [&'static str] {
        match self.scope {
            Scope::All => STATE,
            Scope::Volumes => VOLUME_STATE,
        }
    }

    fn carries_layers(&self) -> bool {
        self.scope == Scope::All
    }

    fn journal(&self) -> PathBuf {
        self.data_root.join(journal::NAME)
    }

    fn open_root(&self, host: &Host) -> Result<At, MigrateError> {
        open_data_root(host, &self.daemon_data_root)
    }

    /// A `<uid>.<gid>` directory of the data root, or the root itself.
    fn open_named(root: &At, name: Option<String>) -> Result<Option<At>, MigrateError> {
        match name {
            Some(name) => root.dir(name),
            None => root.dup().map(Some),
        }
    }

    /// The entries to move; refuses what rename cannot do or would
    /// clobber, and anything planted where the migration would act. Runs
    /// before anything is written; mounts are checked when dockerd is
    /// stopped (a running dockerd mounts its own root).
    pub fn preflight(&self, host: &Host) -> Result<Vec<String>, MigrateError> {
        let root = self.open_root(host)?;
        journal::read(&root)?;
        let entries = self.movable(&root)?;
        self.inspect(&root)?;
        Ok(entries)
    }

    fn movable(&self, root: &At) -> Result<Vec<String>, MigrateError> {
        let Some(source) = Self::open_named(root, self.source_name())? else {
            return Ok(Vec::new());
        };
        let target = Self::open_named(root, self.target_name())?;
        let root_dev = root.dev();
        let mut entries = Vec::new();
        for name in self.state() {
            let Some(meta) = source.lstat(name)? else {
                continue;
            };
            if meta.st_dev != root_dev {
                return Err(MigrateError::Refused(format!(
                    "{} is on another filesystem than {}: moving it would need a copy; migrate it by hand or keep it",
                    source.join(name).display(),
                    self.data_root.display()
                )));
            }
            if let Some(target) = &target {
                if target.lstat(name)?.is_some() && !target.is_empty_dir(name) {
                    // Each root's daemon has its identity: the target's stays.
                    if *name == ENGINE_ID {
                        continue;
                    }
                    return Err(MigrateError::Refused(format!(
                        "both {} and {} exist; remove the one you do not need first",
                        source.join(name).display(),
                        target.join(name).display()
                    )));
                }
            }
            entries.push((*name).to_owned());
        }
        for driver in OTHER_DRIVERS.iter().filter(|_| self.carries_layers()) {
            if source.lstat(driver)?.is_some() {
                return Err(MigrateError::Refused(format!(
                    "{} holds layers of the {driver} storage driver; only overlay2 layers can be migrated",
                    source.join(driver).display()
                )));
            }
        }
        Ok(entries)
    }

    /// Checks, on both sides, every place the migration will act on:
    /// layer and volume trees are directories, container files regular
    /// files, none is a link or on another filesystem, and no temp name
    /// is taken.
    fn inspect(&self, root: &At) -> Result<(), MigrateError> {
        journal::require_no_temp(root)?;
        for name in [self.source_name(), self.target_name()] {
            if let Some(state) = Self::open_named(root, name)? {
                inspect_state(&state)?;
            }
        }
        Ok(())
    }

    /// Runs (or, when a journal for the same migration exists, finishes)
    /// the migration, with a progress line on stderr during the shift when
    /// `progress` (the caller knows stderr is a terminal). Every step is
    /// idempotent.
    pub fn run_with(&self, host: &Host, progress: bool) -> Result<MigrateReport, MigrateError> {
        self.run_as(host, progress, Pass::Forward)
    }

    fn run_as(
        &self,
        host: &Host,
        progress: bool,
        pass: Pass,
    ) -> Result<MigrateReport, MigrateError> {
        let started = std::time::Instant::now();
        let mut report = MigrateReport::default();
        let root = self.open_root(host)?;
        match journal::read(&root)? {
            Some(existing) if existing == *self => report.resumed = true,
            Some(other) => {
                return Err(MigrateError::Refused(format!(
                    "{} records another unfinished migration ({:?} for {}.{}); finish that one first",
                    self.journal().display(),
                    other.direction,
                    other.uid,
                    other.gid
                )));
            }
            None => {}
        }
        let entries = if report.resumed {
            self.resumable_entries(&root)?
        } else {
            self.movable(&root)?
        };
        self.inspect(&root)?;
        if let Some(mount) = settled_mounts(&root)?.first() {
            return Err(MigrateError::Refused(format!(
                "{mount} is mounted inside the data root; stop dockerd (and unmount it) before migrating"
            )));
        }
        report.kept_identity = self.kept_identity(&root)?;
        journal::write(&root, self)?;
        crate::failpoint::hit("migrate.after_journal");
        report.moved = self.move_entries(&root, &entries)?;
        crate::failpoint::hit("migrate.after_move");
        report.configs_rewritten = self.rewrite_configs(&root)?;
        report.phases.add("move", started.elapsed());
        let shifting = std::time::Instant::now();
        let counter = progress::Counter::default();
        let at_most = progress.then(|| root.used_inodes()).flatten();
        progress::while_shifting(progress, at_most, &counter, || {
            self.shift_owned(&root, &mut report, &counter)
        })?;
        report.phases.add("shift", shifting.elapsed());
        crate::failpoint::hit("migrate.after_shift");
        let layout = std::time::Instant::now();
        self.set_layout_owners(&root, pass)?;
        journal::remove(&root)?;
        report.phases.add("layout", layout.elapsed());
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Records the migration before anything else changes, so that a
    /// crash right after the config is rewritten still leaves a record
    /// of what is left to do.
    pub fn record_intent(&self, host: &Host) -> Result<(), MigrateError> {
        let root = self.open_root(host)?;
        journal::require_no_temp(&root)?;
        journal::write(&root, self)
    }

    /// Takes back what [`Migration::record_intent`] recorded, once a
    /// failure before the first move leaves nothing for a rerun to finish:
    /// only a journal recording exactly this migration goes.
    pub fn withdraw_intent(&self, host: &Host) -> Result<(), MigrateError> {
        let root = self.open_root(host)?;
        if journal::read(&root)?.as_ref() == Some(self) {
            journal::remove(&root)?;
        }
        Ok(())
    }

    /// Takes back this migration, done as `done` reports, once the daemon
    /// restarted on it failed the verify and was stopped: what that daemon
    /// made where the data came from goes (it started on a root emptied
    /// minutes ago), the source's own engine-id is put back, and the
    /// inverse migration carries the data back, each root keeping the
    /// identity it had.
    pub fn undo(&self, host: &Host, done: &MigrateReport) -> Result<MigrateReport, MigrateError> {
        let back = self.inverse();
        let root = self.open_root(host)?;
        if let Some(mount) = settled_mounts(&root)?.first() {
            return Err(MigrateError::Refused(format!(
                "{mount} is still mounted inside the data root after dockerd stopped; unmount it first"
            )));
        }
        let cleared = back.clear_failed_start(&root, done.kept_identity.as_ref())?;
        let mut report = back.run_as(host, false, Pass::Undo)?;
        report.cleared = cleared;
        Ok(report)
    }

    /// Empties this migration's target of the state names a daemon made
    /// there, but for `kept` (the target's own engine-id, put back when
    /// the failed daemon replaced or the run removed it).
    fn clear_failed_start(
        &self,
        root: &At,
        kept: Option<&Identity>,
    ) -> Result<Vec<String>, MigrateError> {
        let target = self.open_target(root)?;
        let mut cleared = Vec::new();
        for name in self.state() {
            let ours = *name == ENGINE_ID && Identity::of(&target)?.as_ref() == kept;
            if ours || target.lstat(name)?.is_none() {
                continue;
            }
            target.remove_tree(name)?;
            cleared.push((*name).to_owned());
        }
        if let Some(identity) = kept {
            if Identity::of(&target)?.as_ref() != Some(identity) {
                target.replace(ENGINE_ID, &identity.bytes, identity.owner)?;
            }
        }
        Ok(cleared)
    }

    /// The source's engine-id when it does not move: the target has one.
    fn kept_identity(&self, root: &At) -> Result<Option<Identity>, MigrateError> {
        let target_has_one = match Self::open_named(root, self.target_name())? {
            Some(target) => target.lstat(ENGINE_ID)?.is_some(),
            None => false,
        };
        if !target_has_one && self.state().contains(&ENGINE_ID) {
            return Ok(None);
        }
        match Self::open_named(root, self.source_name())? {
            Some(source) => Identity::of(&source),
            None => Ok(None),
        }
    }

    /// [`Migration::run_with`] once dockerd is stopped: a failure then says
    /// how the daemon was left and how to finish.
    pub fn run_stopped(&self, host: &Host, progress: bool) -> Result<MigrateReport, MigrateError> {
        self.run_with(host, progress)
            .map_err(|source| MigrateError::Interrupted {
                source: Box::new(source),
                journal: self.journal(),
            })
    }

    fn resumable_entries(&self, root: &At) -> Result<Vec<String>, MigrateError> {
        let Some(source) = Self::open_named(root, self.source_name())? else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        for name in self.state() {
            if source.lstat(name)?.is_some() {
                entries.push((*name).to_owned());
            }
        }
        Ok(entries)
    }

    /// The target directory, created as dockerd would when it is new.
    fn open_target(&self, root: &At) -> Result<At, MigrateError> {
        let Some(name) = self.target_name() else {
            return root.dup();
        };
        let created = root.create_dir(&name, 0o700)?;
        let target = root
            .dir(&name)?
            .ok_or_else(|| io_err(root.join(&name), Errno::NOENT))?;
        if created {
            target.set_owner_mode(0, self.gid, 0o710)?;
        }
        Ok(target)
    }

    fn move_entries(&self, root: &At, entries: &[String]) -> Result<Vec<String>, MigrateError> {
        let target = self.open_target(root)?;
        let Some(source) = Self::open_named(root, self.source_name())? else {
            return Ok(Vec::new());
        };
        let mut moved = Vec::new();
        for name in entries {
            if source.lstat(name)?.is_none() {
                continue;
            }
            if target.is_empty_dir(name) {
                target.remove_dir(name)?;
            }
            // As in `movable`: the target's identity stays, also when a
            // rerun finishes the move.
            if name == ENGINE_ID && target.lstat(name)?.is_some() {
                continue;
            }
            source.rename_into(name, &target)?;
            moved.push(name.clone());
        }
        Ok(moved)
    }

    /// Points the paths each container config keeps at the new root.
    fn rewrite_configs(&self, root: &At) -> Result<usize, MigrateError> {
        let seen_by_daemon = |host_path: PathBuf| match host_path.strip_prefix(&self.data_root) {
            Ok(rel) if !rel.as_os_str().is_empty() => prefix(&self.daemon_data_root.join(rel)),
            _ => prefix(&self.daemon_data_root),
        };
        let (from, to) = (seen_by_daemon(self.source()), seen_by_daemon(self.target()));
        let containers = match self.carries_layers() {
            true => self.target_subdir(root, "containers")?,
            false => None,
        };
        let Some(containers) = containers else {
            return Ok(0);
        };
        let mut rewritten = 0;
        for name in containers.subdirs(&[])? {
            let Some(container) = containers.dir(&name)? else {
                continue;
            };
            let Some(file) = container.file(CONFIG)? else {
                continue;
            };
            let Ok(mut config) = serde_json::from_slice::<Value>(&file.read()?) else {
                return Err(MigrateError::Refused(format!(
                    "{}: not valid JSON; fix or remove it",
                    file.path.display()
                )));
            };
            if rewrite_paths(&mut config, &from, &to) {
                let bytes = serde_json::to_vec(&config).expect("JSON values serialize");
                container.replace(CONFIG, &bytes, Owner::of(&file.stat))?;
                rewritten += 1;
            }
        }
        Ok(rewritten)
    }

    fn target_subdir(&self, root: &At, name: &str) -> Result<Option<At>, MigrateError> {
        match Self::open_named(root, self.target_name())? {
            Some(target) => target.dir(name),
            None => Ok(None),
        }
    }

    /// A layer or container directory of the target, when this migration
    /// moved them.
    fn layer_subdir(
        &self,
        root: &At,
        name: &str,
        layers: bool,
    ) -> Result<Option<At>, MigrateError> {
        if !layers {
            return Ok(None);
        }
        self.target_subdir(root, name)
    }

    /// Shifts what container processes own; ids already in the target
    /// range are outside the source range, so a rerun shifts nothing twice.
    fn shift_owned(
        &self,
        root: &At,
        report: &mut MigrateReport,
        counter: &progress::Counter,
    ) -> Result<(), MigrateError> {
        let (uid_map, gid_map) = self.maps();
        let options = ShiftOptions {
            uid_maps: vec![uid_map],
            gid_maps: vec![gid_map],
            dry_run: false,
            progress: false,
        };
        // One directory open at a time: a root may hold thousands.
        let layers = self.carries_layers();
        if let Some(overlay) = self.layer_subdir(root, "overlay2", layers)? {
            for name in overlay.subdirs(&["l"])? {
                let Some(layer) = overlay.dir(&name)? else {
                    continue;
                };
                for part in LAYER_TREES {
                    if let Some(tree) = layer.dir(part)? {
                        shift_tree(&tree, &options, report, counter)?;
                    }
                }
            }
        }
        if let Some(volumes) = self.target_subdir(root, "volumes")? {
            for name in volumes.subdirs(&[])? {
                let Some(volume) = volumes.dir(&name)? else {
                    continue;
                };
                if let Some(data) = volume.dir("_data")? {
                    shift_tree(&data, &options, report, counter)?;
                }
            }
        }
        if let Some(containers) = self.layer_subdir(root, "containers", layers)? {
            for name in containers.subdirs(&[])? {
                let Some(container) = containers.dir(&name)? else {
                    continue;
                };
                for file in CONTAINER_FILES {
                    if let Some(entry) = container.file(file)? {
                        if shift_file(&entry, uid_map, gid_map)? {
                            report.entries_shifted += 1;
                        }
                        counter.add(1);
                    }
                }
            }
        }
        Ok(())
    }

    /// The owners and modes dockerd gives a root of this kind, where it
    /// does not set them itself at start.
    fn set_layout_owners(&self, root: &At, pass: Pass) -> Result<(), MigrateError> {
        let gid = match self.direction {
            Direction::IntoRemapped | Direction::Between { .. } => self.gid,
            Direction::OutOfRemapped => 0,
        };
        let layers = self.carries_layers();
        if let Some(overlay) = self.layer_subdir(root, "overlay2", layers)? {
            for name in overlay.subdirs(&["l"])? {
                if let Some(layer) = overlay.dir(&name)? {
                    layer.set_owner_mode(0, gid, 0o710)?;
                }
            }
        }
        if let Some(containers) = self.layer_subdir(root, "containers", layers)? {
            for name in containers.subdirs(&[])? {
                let Some(container) = containers.dir(&name)? else {
                    continue;
                };
                container.set_owner_mode(0, gid, 0o710)?;
                if let Some(mounts) = container.dir("mounts")? {
                    mounts.set_owner_mode(0, gid, 0o710)?;
                }
            }
        }
        if let Some(source) = self.source_name() {
            // A roll-back leaves the root it empties as it was: with the
            // identity it had before the run.
            if pass == Pass::Forward {
                remove_lone_identity(root, &source)?;
            }
            if root.is_empty_dir(&source) {
                root.remove_dir(&source)?;
            }
        }
        Ok(())
    }
}

/// A migration of its own, or the roll-back of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Forward,
    Undo,
}

/// A `<uid>.<gid>` root emptied by the migration but for the identity its
/// daemon wrote (the target kept its own) goes away whole.
fn remove_lone_identity(root: &At, name: &str) -> Result<(), MigrateError> {
    let Some(dir) = root.dir(name)? else {
        return Ok(());
    };
    if dir.names()? == [std::ffi::OsString::from(ENGINE_ID)] && dir.file(ENGINE_ID)?.is_some() {
        dir.remove_file(ENGINE_ID)?;
    }
    Ok(())
}

/// Refuses, in one side's state, a link or a file of the wrong kind where
/// the migration will shift, chown, rewrite or create.
fn inspect_state(state: &At) -> Result<(), MigrateError> {
    if let Some(overlay) = state.dir("overlay2")? {
        for name in overlay.subdirs(&["l"])? {
            if let Some(layer) = overlay.dir(&name)? {
                for part in LAYER_TREES {
                    layer.dir(part)?;
                }
            }
        }
    }
    if let Some(volumes) = state.dir("volumes")? {
        for name in volumes.subdirs(&[])? {
            if let Some(volume) = volumes.dir(&name)? {
                volume.dir("_data")?;
            }
        }
    }
    if let Some(containers) = state.dir("containers")? {
        for name in containers.subdirs(&[])? {
            let Some(container) = containers.dir(&name)? else {
                continue;
            };
            for file in CONTAINER_FILES.iter().chain([&CONFIG]) {
                container.file(file)?;
            }
            container.dir("mounts")?;
            container.require_absent(&temp_name(CONFIG))?;
        }
    }
    Ok(())
}

/// The unfinished migration recorded in a data root (as dockerd sees it,
/// inside the host's root), if any. Whatever is there is read without
/// following a link or blocking, and only when it is a small regular file
/// root owns.
pub fn pending(host: &Host, data_root: &Path) -> Option<Migration> {
    read_pending(host, data_root).ok().flatten()
}

/// [`pending`], saying why a journal (or the data root) was refused.
pub fn read_pending(host: &Host, data_root: &Path) -> Result<Option<Migration>, MigrateError> {
    journal::read(&open_data_root(host, data_root)?)
}

/// Opens the data root inside the host's root. Under `--root` it must lie
/// beneath the image: a `..` in it, or a symlink on the way that leads out
/// of the image, is refused, never clamped into a guess.
fn open_data_root(host: &Host, data_root: &Path) -> Result<At, MigrateError> {
    let display = host.display(data_root);
    if data_root.components().any(|c| c == Component::ParentDir) {
        return Err(MigrateError::Refused(format!(
            "data-root {} contains `..`; write it without `..` (under --root it would lead out of {})",
            data_root.display(),
            host.root().display()
        )));
    }
    if host.is_live() {
        return At::root(host.open_dir(data_root)?, display);
    }
    let image = host.open_dir(Path::new("/"))?;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    match rfs::openat2(&image, host::relative(data_root), flags, Mode::empty(), how) {
        Ok(fd) => At::root(fd, display),
        Err(Errno::XDEV) => Err(MigrateError::Refused(format!(
            "{}: the data root resolves through a symbolic link that is absolute or leads out of {}; point data-root at the real directory",
            display.display(),
            host.root().display()
        ))),
        Err(e) => Err(io_err(display, e)),
    }
}

/// Shifts one tree through the shift engine, handed a duplicate of the
/// descriptor that was checked, so nothing is looked up again by name.
fn shift_tree(
    tree: &At,
    options: &ShiftOptions,
    report: &mut MigrateReport,
    counter: &progress::Counter,
) -> Result<(), MigrateError> {
    let fd = tree.duplicate_fd()?;
    // The engine reports this tree's running count; the line shows the sum
    // over every tree of the migration.
    let seen = AtomicU64::new(0);
    let advance_to = |entries: u64| {
        let before = seen.swap(entries, Ordering::Relaxed);
        counter.add(entries.saturating_sub(before));
    };
    let watch = |p: &shift::Progress| advance_to(p.entries);
    let shifted =
        shift::shift_open_tree_watched(fd, tree.path(), options, &watch).map_err(|source| {
            MigrateError::Shift {
                path: tree.path().to_owned(),
                source,
            }
        })?;
    advance_to(shifted.entries);
    if !shifted.ok() {
        let first = shifted.errors.first().map_or_else(String::new, |e| {
            format!("{} ({})", e.path.display(), e.kind)
        });
        return Err(MigrateError::Entries {
            path: tree.path().to_owned(),
            count: shifted.error_count,
            first,
        });
    }
    report.entries_shifted += shifted.changed;
    report.ids_left_alone += shifted.uids_left_alone + shifted.gids_left_alone;
    report
        .warnings
        .extend(shifted.warnings.iter().map(ToString::to_string));
    Ok(())
}

fn shift_file(entry: &Entry, uid_map: IdMap, gid_map: IdMap) -> Result<bool, MigrateError> {
    let uid = uid_map.apply(entry.stat.st_uid);
    let gid = gid_map.apply(entry.stat.st_gid);
    if uid.is_none() && gid.is_none() {
        return Ok(false);
    }
    entry.chown(uid, gid)?;
    Ok(true)
}

/// A stopped dockerd unmounts the bind mount it puts on its root (where
/// the parent mount is private) on its way out; a stop command can return
/// a moment before that is visible. What is still mounted after a short
/// wait stays mounted.
fn settled_mounts(root: &At) -> Result<Vec<String>, MigrateError> {
    let deadline = std::time::Instant::now() + MOUNTS_SETTLE;
    loop {
        let mounts = mounts_under(root)?;
        if mounts.is_empty() || std::time::Instant::now() >= deadline {
            return Ok(mounts);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Mount points at or below the data root (from /proc/self/mountinfo).
fn mounts_under(root: &At) -> Result<Vec<String>, MigrateError> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| MigrateError::Io {
            path: "/proc/self/mountinfo".into(),
            source,
        })?;
    let dir = root.real_path()?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| Path::new(m).starts_with(&dir))
        .collect())
}

fn prefix(path: &Path) -> String {
    format!("{}/", path.display())
}

/// Rewrites `from`-prefixed paths to `to`; true when anything changed.
/// A path that already has the target prefix is left alone, so that a
/// rerun after a crash is harmless in both directions.
pub fn rewrite_paths(config: &mut Value, from: &str, to: &str) -> bool {
    // Of two nested prefixes, the longer one marks a path already done
    // when it is the target.
    let fix = |value: &mut Value| -> bool {
        let Some(text) = value.as_str() else {
            return false;
        };
        let done = to.len() > from.len() && text.starts_with(to);
        match text.strip_prefix(from) {
            Some(rest) if !done => {
                *value = Value::String(format!("{to}{rest}"));
                true
            }
            _ => false,
        }
    };
    let mut changed = false;
    for field in PATH_FIELDS {
        if let Some(value) = config.get_mut(*field) {
            changed |= fix(value);
        }
    }
    if let Some(Value::Object(mounts)) = config.get_mut("MountPoints") {
        for mount in mounts.values_mut() {
            if let Some(source) = mount.get_mut("Source") {
                changed |= fix(source);
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Value {
        json!({
            "LogPath": "/var/lib/docker/containers/abc/abc-json.log",
            "HostnamePath": "/var/lib/docker/containers/abc/hostname",
            "HostsPath": "/var/lib/docker/containers/abc/hosts",
            "ResolvConfPath": "/var/lib/docker/containers/abc/resolv.conf",
            "MountPoints": {
                "/data": {"Source": "/var/lib/docker/volumes/vol/_data", "Name": "vol"},
                "/host": {"Source": "/srv/host"}
            }
        })
    }

    #[test]
    fn the_inverse_swaps_source_and_target_and_inverts_the_maps() {
        let migration = |direction| Migration {
            data_root: "/var/lib/docker".into(),
            daemon_data_root: "/var/lib/docker".into(),
            uid: 100000,
            gid: 100001,
            count: 65536,
            direction,
            scope: Scope::Volumes,
        };
        let between = Direction::Between {
            old_uid: 200000,
            old_gid: 200001,
        };
        for direction in [Direction::IntoRemapped, Direction::OutOfRemapped, between] {
            let forward = migration(direction);
            let back = forward.inverse();
            assert_eq!(back.source(), forward.target(), "{direction:?}");
            assert_eq!(back.target(), forward.source(), "{direction:?}");
            let ((fu, fg), (bu, bg)) = (forward.maps(), back.maps());
            assert_eq!((bu.from, bu.to, bu.count), (fu.to, fu.from, fu.count));
            assert_eq!((bg.from, bg.to, bg.count), (fg.to, fg.from, fg.count));
            assert_eq!(back.scope, forward.scope);
            assert_eq!(back.inverse(), forward);
        }
    }

    #[test]
    fn temp_names_carry_the_pid_after_one_leading_dot() {
        let pid = std::process::id();
        assert_eq!(temp_name(CONFIG), format!(".config.v2.json.{pid}.tmp"));
        assert_eq!(
            temp_name(journal::NAME),
            format!(".docker-userns-migrate.json.{pid}.tmp")
        );
    }

    #[test]
    fn rewrites_forward_and_back_exactly_and_idempotently() {
        let (plain, mapped) = ("/var/lib/docker/", "/var/lib/docker/100000.100000/");
        let mut c = config();
        assert!(rewrite_paths(&mut c, plain, mapped));
        assert_eq!(
            c["LogPath"],
            "/var/lib/docker/100000.100000/containers/abc/abc-json.log"
        );
        assert_eq!(
            c["MountPoints"]["/data"]["Source"],
            "/var/lib/docker/100000.100000/volumes/vol/_data"
        );
        assert_eq!(
            c["MountPoints"]["/host"]["Source"], "/srv/host",
            "bind mounts stay"
        );
        assert!(
            !rewrite_paths(&mut c, plain, mapped),
            "a rerun changes nothing"
        );
        assert!(rewrite_paths(&mut c, mapped, plain));
        assert_eq!(c, config());
        assert!(!rewrite_paths(&mut c, mapped, plain));
    }
    mod undo {
        //! A roll-back after the daemon restarted on the migrated data
        //! failed: the data goes back and each root keeps its engine-id.

        use super::*;
        use std::os::unix::fs::{PermissionsExt, chown};

        const REMAPPED: &str = "100000.100000";
        const BASE: u32 = 100000;

        /// An image root whose data root holds `files`: (path below the
        /// data root, bytes or `None` for a directory, owner).
        fn root_with(files: &[(&str, Option<&str>, u32)]) -> (tempfile::TempDir, Host) {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("var/lib/docker");
            std::fs::create_dir_all(&data).unwrap();
            for (rel, bytes, owner) in files {
                let path = data.join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                match bytes {
                    Some(bytes) => std::fs::write(&path, bytes).unwrap(),
                    None => std::fs::create_dir_all(&path).unwrap(),
                }
                chown(&path, Some(*owner), Some(*owner)).unwrap();
            }
            if data.join(REMAPPED).is_dir() {
                chown(data.join(REMAPPED), Some(0), Some(BASE)).unwrap();
                let mode = std::fs::Permissions::from_mode(0o710);
                std::fs::set_permissions(data.join(REMAPPED), mode).unwrap();
            }
            let host = Host::open(dir.path(), Box::new(crate::host::SystemRunner)).unwrap();
            (dir, host)
        }

        fn migration(dir: &tempfile::TempDir, direction: Direction) -> Migration {
            Migration {
                data_root: dir.path().join("var/lib/docker"),
                daemon_data_root: "/var/lib/docker".into(),
                uid: BASE,
                gid: BASE,
                count: 65536,
                direction,
                scope: Scope::All,
            }
        }

        fn tree(dir: &tempfile::TempDir) -> crate::testing::Tree {
            crate::testing::data_root_tree(dir.path())
        }

        /// What a daemon starting on an empty root makes there.
        fn failed_start(dir: &tempfile::TempDir, name: &str, identity: Option<&str>) {
            let root = dir.path().join("var/lib/docker").join(name);
            std::fs::create_dir_all(root.join("image/overlay2")).unwrap();
            std::fs::write(root.join("image/overlay2/repositories.json"), "{}").unwrap();
            std::fs::create_dir_all(root.join("network/files")).unwrap();
            if let Some(identity) = identity {
                std::fs::write(root.join(ENGINE_ID), identity).unwrap();
            }
        }

        fn identity(dir: &tempfile::TempDir, name: &str) -> Option<String> {
            let path = dir.path().join("var/lib/docker").join(name).join(ENGINE_ID);
            std::fs::read_to_string(path).ok()
        }

        #[test]
        fn enable_undone_keeps_both_roots_identities() {
            let (dir, host) = root_with(&[
                ("engine-id", Some("plain-id"), 0),
                ("volumes/v/_data/f", Some("x"), 1000),
                ("image/overlay2/repositories.json", Some("{}"), 0),
                ("100000.100000/engine-id", Some("remapped-id"), 0),
            ]);
            let before = tree(&dir);
            let forward = migration(&dir, Direction::IntoRemapped);
            let done = forward.run_with(&host, false).unwrap();
            assert_eq!(identity(&dir, "").as_deref(), Some("plain-id"));
            // The daemon came back on the plain root, which kept its identity.
            failed_start(&dir, "", None);
            let undone = forward.undo(&host, &done).unwrap();
            assert_eq!(undone.cleared, ["image", "network"]);
            assert_eq!(tree(&dir), before);
        }

        #[test]
        fn disable_undone_keeps_both_roots_identities() {
            let (dir, host) = root_with(&[
                ("engine-id", Some("plain-id"), 0),
                ("100000.100000/engine-id", Some("remapped-id"), 0),
                ("100000.100000/volumes/v/_data", None, BASE),
                ("100000.100000/volumes/v/_data/f", Some("x"), BASE + 1000),
                (
                    "100000.100000/image/overlay2/repositories.json",
                    Some("{}"),
                    0,
                ),
            ]);
            let before = tree(&dir);
            let forward = migration(&dir, Direction::OutOfRemapped);
            let done = forward.run_with(&host, false).unwrap();
            assert_eq!(identity(&dir, "").as_deref(), Some("plain-id"));
            assert!(!dir.path().join("var/lib/docker").join(REMAPPED).exists());
            // The daemon came back remapped on a root it made anew.
            let remapped = dir.path().join("var/lib/docker").join(REMAPPED);
            std::fs::create_dir(&remapped).unwrap();
            chown(&remapped, Some(0), Some(BASE)).unwrap();
            std::fs::set_permissions(&remapped, std::fs::Permissions::from_mode(0o710)).unwrap();
            failed_start(&dir, REMAPPED, Some("fresh-id"));
            let undone = forward.undo(&host, &done).unwrap();
            assert_eq!(undone.cleared, ["image", "network", "engine-id"]);
            assert_eq!(tree(&dir), before);
        }

        #[test]
        fn disable_undone_after_a_restart_that_started_nothing_swaps_no_identity() {
            let (dir, host) = root_with(&[
                ("engine-id", Some("plain-id"), 0),
                ("100000.100000/engine-id", Some("remapped-id"), 0),
                ("100000.100000/volumes/v/_data", None, BASE),
            ]);
            let before = tree(&dir);
            let forward = migration(&dir, Direction::OutOfRemapped);
            let done = forward.run_with(&host, false).unwrap();
            let undone = forward.undo(&host, &done).unwrap();
            assert!(undone.cleared.is_empty());
            assert_eq!(identity(&dir, REMAPPED).as_deref(), Some("remapped-id"));
            assert_eq!(identity(&dir, "").as_deref(), Some("plain-id"));
            assert_eq!(tree(&dir), before);
        }

        #[test]
        fn enable_undone_after_a_fresh_identity_takes_back_the_moved_one() {
            let (dir, host) = root_with(&[
                ("engine-id", Some("plain-id"), 0),
                ("volumes/v/_data/f", Some("x"), 1000),
            ]);
            let before = tree(&dir);
            let forward = migration(&dir, Direction::IntoRemapped);
            let done = forward.run_with(&host, false).unwrap();
            assert_eq!(identity(&dir, REMAPPED).as_deref(), Some("plain-id"));
            // Engine 27+ gives the emptied plain root an identity of its own.
            failed_start(&dir, "", Some("fresh-id"));
            forward.undo(&host, &done).unwrap();
            assert_eq!(tree(&dir), before);
        }
    }
}
