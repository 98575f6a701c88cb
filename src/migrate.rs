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

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::host::HostError;
use crate::shift::{self, IdMap, ShiftOptions};

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
];
/// Storage drivers whose layers this module cannot shift.
const OTHER_DRIVERS: &[&str] = &[
    "vfs",
    "btrfs",
    "zfs",
    "aufs",
    "devicemapper",
    "fuse-overlayfs",
];
const JOURNAL: &str = ".docker-userns-migrate.json";
/// Files dockerd writes into a container's directory for its process.
const CONTAINER_FILES: &[&str] = &["hostname", "hosts", "resolv.conf"];
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
    #[error(transparent)]
    Shift(#[from] shift::ShiftError),
    #[error("{0}")]
    Refused(String),
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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MigrateError + '_ {
    move |source| MigrateError::Io {
        path: path.to_owned(),
        source,
    }
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

/// One migration: where, which way, and the mapping.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Migration {
    /// The data root as the host sees it (already joined to `--root`).
    pub data_root: PathBuf,
    /// The data root as dockerd sees it, which the configs' paths use
    /// (differs from `data_root` under `--root`).
    pub daemon_data_root: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub count: u32,
    pub direction: Direction,
}

/// What a migration did, for the report.
#[derive(Debug, Clone, Default)]
pub struct MigrateReport {
    pub moved: Vec<String>,
    pub configs_rewritten: usize,
    pub entries_shifted: u64,
    pub ids_left_alone: u64,
    pub resumed: bool,
    pub elapsed: std::time::Duration,
}

impl MigrateReport {
    pub fn to_json(&self) -> Value {
        json!({
            "moved": self.moved,
            "configs_rewritten": self.configs_rewritten,
            "entries_shifted": self.entries_shifted,
            "ids_left_alone": self.ids_left_alone,
            "resumed": self.resumed,
            "seconds": self.elapsed.as_secs_f64(),
        })
    }
}

impl Migration {
    pub fn remapped_root(&self) -> PathBuf {
        self.data_root.join(format!("{}.{}", self.uid, self.gid))
    }

    pub fn source(&self) -> PathBuf {
        match self.direction {
            Direction::IntoRemapped => self.data_root.clone(),
            Direction::OutOfRemapped => self.remapped_root(),
            Direction::Between { old_uid, old_gid } => {
                self.data_root.join(format!("{old_uid}.{old_gid}"))
            }
        }
    }

    fn target(&self) -> PathBuf {
        match self.direction {
            Direction::IntoRemapped | Direction::Between { .. } => self.remapped_root(),
            Direction::OutOfRemapped => self.data_root.clone(),
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

    fn journal(&self) -> PathBuf {
        self.data_root.join(JOURNAL)
    }

    /// The entries to move; refuses what rename cannot do or would
    /// clobber. Runs before anything is written; mounts are checked when
    /// dockerd is stopped (a running dockerd mounts its own root).
    pub fn preflight(&self) -> Result<Vec<String>, MigrateError> {
        let source = self.source();
        let target = self.target();
        let root_dev = fs::metadata(&self.data_root)
            .map_err(io(&self.data_root))?
            .dev();
        let mut entries = Vec::new();
        for name in STATE {
            let from = source.join(name);
            let Ok(meta) = fs::symlink_metadata(&from) else {
                continue;
            };
            if meta.dev() != root_dev {
                return Err(MigrateError::Refused(format!(
                    "{} is on another filesystem than {}: moving it would need a copy; migrate it by hand or keep it",
                    from.display(),
                    self.data_root.display()
                )));
            }
            let existing = target.join(name);
            if existing.exists() && !is_empty_dir(&existing) {
                return Err(MigrateError::Refused(format!(
                    "both {} and {} exist; remove the one you do not need first",
                    from.display(),
                    existing.display()
                )));
            }
            entries.push((*name).to_owned());
        }
        for driver in OTHER_DRIVERS {
            if source.join(driver).exists() {
                return Err(MigrateError::Refused(format!(
                    "{} holds layers of the {driver} storage driver; only overlay2 layers can be migrated",
                    source.join(driver).display()
                )));
            }
        }
        Ok(entries)
    }

    /// Runs (or, when a journal for the same migration exists, finishes)
    /// the migration. Every step is idempotent.
    pub fn run(&self) -> Result<MigrateReport, MigrateError> {
        let started = std::time::Instant::now();
        let mut report = MigrateReport::default();
        match pending(&self.data_root) {
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
            self.resumable_entries()
        } else {
            self.preflight()?
        };
        if let Some(mount) = mounts_under(&self.data_root)?.first() {
            return Err(MigrateError::Refused(format!(
                "{mount} is mounted inside the data root; stop dockerd (and unmount it) before migrating"
            )));
        }
        write_journal(&self.journal(), self)?;
        crate::failpoint::hit("migrate.after_journal");
        report.moved = self.move_entries(&entries)?;
        crate::failpoint::hit("migrate.after_move");
        report.configs_rewritten = self.rewrite_configs()?;
        self.shift_owned(&mut report)?;
        crate::failpoint::hit("migrate.after_shift");
        self.set_layout_owners()?;
        fs::remove_file(self.journal()).map_err(io(&self.journal()))?;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Records the migration before anything else changes, so that a
    /// crash right after the config is rewritten still leaves a record
    /// of what is left to do.
    pub fn record_intent(&self) -> Result<(), MigrateError> {
        write_journal(&self.journal(), self)
    }

    /// [`Migration::run`] once dockerd is stopped: a failure then says
    /// how the daemon was left and how to finish.
    pub fn run_stopped(&self) -> Result<MigrateReport, MigrateError> {
        self.run().map_err(|source| MigrateError::Interrupted {
            source: Box::new(source),
            journal: self.journal(),
        })
    }

    fn resumable_entries(&self) -> Vec<String> {
        STATE
            .iter()
            .filter(|n| self.source().join(n).exists())
            .map(|n| (*n).to_owned())
            .collect()
    }

    fn move_entries(&self, entries: &[String]) -> Result<Vec<String>, MigrateError> {
        let target = self.target();
        if !target.exists() {
            fs::create_dir(&target).map_err(io(&target))?;
            set_owner_mode(&target, 0, self.gid, 0o710)?;
        }
        let mut moved = Vec::new();
        for name in entries {
            let from = self.source().join(name);
            let to = target.join(name);
            if !from.exists() {
                continue;
            }
            if is_empty_dir(&to) {
                fs::remove_dir(&to).map_err(io(&to))?;
            }
            fs::rename(&from, &to).map_err(io(&from))?;
            moved.push(name.clone());
        }
        Ok(moved)
    }

    /// Points the paths each container config keeps at the new root.
    fn rewrite_configs(&self) -> Result<usize, MigrateError> {
        let seen_by_daemon = |host_path: PathBuf| match host_path.strip_prefix(&self.data_root) {
            Ok(rel) if !rel.as_os_str().is_empty() => prefix(&self.daemon_data_root.join(rel)),
            _ => prefix(&self.daemon_data_root),
        };
        let (from, to) = (seen_by_daemon(self.source()), seen_by_daemon(self.target()));
        let containers = self.target().join("containers");
        let mut rewritten = 0;
        for dir in list(&containers)? {
            let path = containers.join(&dir).join("config.v2.json");
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            let Ok(mut config) = serde_json::from_str::<Value>(&text) else {
                return Err(MigrateError::Refused(format!(
                    "{}: not valid JSON; fix or remove it",
                    path.display()
                )));
            };
            if rewrite_paths(&mut config, &from, &to) {
                let bytes = serde_json::to_vec(&config).expect("JSON values serialize");
                write_replacing(&path, &bytes)?;
                rewritten += 1;
            }
        }
        Ok(rewritten)
    }

    /// Shifts what container processes own; ids already in the target
    /// range are outside the source range, so a rerun shifts nothing twice.
    fn shift_owned(&self, report: &mut MigrateReport) -> Result<(), MigrateError> {
        let (uid_map, gid_map) = self.maps();
        let options = ShiftOptions {
            uid_maps: vec![uid_map],
            gid_maps: vec![gid_map],
            dry_run: false,
            progress: false,
        };
        let target = self.target();
        let mut trees = Vec::new();
        for layer in list(&target.join("overlay2"))?
            .into_iter()
            .filter(|l| l != "l")
        {
            for part in ["diff", "work"] {
                trees.push(target.join("overlay2").join(&layer).join(part));
            }
        }
        for volume in list(&target.join("volumes"))? {
            trees.push(target.join("volumes").join(volume).join("_data"));
        }
        for tree in trees.iter().filter(|t| t.is_dir()) {
            let shifted = shift::shift_tree(tree, &options)?;
            if !shifted.ok() {
                let first = shifted
                    .errors
                    .first()
                    .map_or_else(String::new, |e| e.path.display().to_string());
                return Err(MigrateError::Entries {
                    path: tree.clone(),
                    count: shifted.error_count,
                    first,
                });
            }
            report.entries_shifted += shifted.changed;
            report.ids_left_alone += shifted.uids_left_alone + shifted.gids_left_alone;
        }
        for container in list(&target.join("containers"))? {
            for file in CONTAINER_FILES {
                let path = target.join("containers").join(&container).join(file);
                if shift_file(&path, uid_map, gid_map)? {
                    report.entries_shifted += 1;
                }
            }
        }
        Ok(())
    }

    /// The owners and modes dockerd gives a root of this kind, where it
    /// does not set them itself at start.
    fn set_layout_owners(&self) -> Result<(), MigrateError> {
        let target = self.target();
        let gid = match self.direction {
            Direction::IntoRemapped | Direction::Between { .. } => self.gid,
            Direction::OutOfRemapped => 0,
        };
        for layer in list(&target.join("overlay2"))?
            .into_iter()
            .filter(|l| l != "l")
        {
            set_owner_mode(&target.join("overlay2").join(layer), 0, gid, 0o710)?;
        }
        for container in list(&target.join("containers"))? {
            let dir = target.join("containers").join(container);
            set_owner_mode(&dir, 0, gid, 0o710)?;
            if dir.join("mounts").is_dir() {
                set_owner_mode(&dir.join("mounts"), 0, gid, 0o710)?;
            }
        }
        if self.direction != Direction::IntoRemapped && is_empty_dir(&self.source()) {
            fs::remove_dir(self.source()).map_err(io(&self.source()))?;
        }
        Ok(())
    }
}

/// The unfinished migration recorded in a data root, if any.
pub fn pending(data_root: &Path) -> Option<Migration> {
    let text = fs::read_to_string(data_root.join(JOURNAL)).ok()?;
    serde_json::from_str(&text).ok()
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

fn shift_file(path: &Path, uid_map: IdMap, gid_map: IdMap) -> Result<bool, MigrateError> {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(false);
    };
    let uid = uid_map.apply(meta.uid());
    let gid = gid_map.apply(meta.gid());
    if uid.is_none() && gid.is_none() {
        return Ok(false);
    }
    std::os::unix::fs::lchown(path, uid, gid).map_err(io(path))?;
    // chown clears set-id bits; these files have none, but keep the mode exact.
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io(path))?;
    Ok(true)
}

fn set_owner_mode(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), MigrateError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io(path))
}

fn list(dir: &Path) -> Result<Vec<String>, MigrateError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

fn is_empty_dir(path: &Path) -> bool {
    fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

/// Writes a file through a temp file and rename, keeping owner and mode.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), MigrateError> {
    use std::io::Write;
    let meta = fs::metadata(path).map_err(io(path))?;
    let mut temp_name = OsString::from(".");
    temp_name.push(path.file_name().expect("file path"));
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let mut file = fs::File::create(&temp).map_err(io(&temp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(&temp))?;
    std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid())).map_err(io(&temp))?;
    fs::set_permissions(&temp, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io(&temp))?;
    fs::rename(&temp, path).map_err(io(path))
}

fn write_journal(path: &Path, migration: &Migration) -> Result<(), MigrateError> {
    let bytes = serde_json::to_vec_pretty(migration).expect("serializable");
    if fs::read(path).is_ok_and(|b| b == bytes) {
        return Ok(());
    }
    let temp = path.with_extension("tmp");
    fs::write(&temp, &bytes).map_err(io(&temp))?;
    fs::File::open(&temp)
        .and_then(|f| f.sync_all())
        .map_err(io(&temp))?;
    fs::rename(&temp, path).map_err(io(path))
}

/// Mount points at or below `dir` (from /proc/self/mountinfo).
fn mounts_under(dir: &Path) -> Result<Vec<String>, MigrateError> {
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(io(Path::new("/proc/self/mountinfo")))?;
    let dir = fs::canonicalize(dir).map_err(io(dir))?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| Path::new(m).starts_with(&dir))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
