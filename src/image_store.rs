//! Which image store dockerd uses (a graph driver's, or containerd's
//! snapshotter store), pinning the graph driver in daemon.json for
//! remapping, and the record of the user's own setting that `disable`
//! puts back byte for byte.
//!
//! With userns-remap, Engine 29 refuses to start when daemon.json says
//! `"containerd-snapshotter": true` (and forces the graph driver when it is
//! only its default); 26-28 start, but BuildKit builds break (moby#47377).
//! So a remapped daemon gets `"containerd-snapshotter": false`, explicitly.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::ParseError;
use crate::config::daemon_json::DaemonConfig;
use crate::daemon::api::DaemonInfo;
use crate::files::atomic;
use crate::host::{Host, HostError};

pub const FEATURES: &str = "features";
pub const SNAPSHOTTER: &str = "containerd-snapshotter";
/// What daemon.json says when there was no `features` before.
pub const PINNED_FEATURES: &str = "{\"containerd-snapshotter\": false}";
/// The `DriverStatus` entry of the containerd image store.
const SNAPSHOTTER_DRIVER_TYPE: &str = "io.containerd.snapshotter.v1";
/// The first engine whose default store is containerd's.
const CONTAINERD_DEFAULT_MAJOR: u32 = 29;
/// The directories a graph driver keeps in the data root: Engine 29 keeps
/// using a driver whose directory it finds there.
pub const GRAPH_DRIVERS: &[&str] = &[
    "overlay2",
    "fuse-overlayfs",
    "btrfs",
    "zfs",
    "vfs",
    "devicemapper",
    "aufs",
];
const RECORD_SUFFIX: &str = ".docker-userns-features";
const RECORD_LIMIT: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{path}: {reason}; remove it if docker-userns did not write it")]
    Record { path: PathBuf, reason: String },
}

impl StoreError {
    /// The input file position behind this error, if any.
    pub fn location(&self) -> Option<crate::error::Location> {
        match self {
            StoreError::Parse(e) => e.location(),
            StoreError::Host(_) | StoreError::Record { .. } => None,
        }
    }
}

/// Where dockerd keeps images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    GraphDriver,
    /// containerd's snapshotter store, and what shows it.
    Containerd {
        why: String,
    },
}

impl Store {
    #[cfg(test)]
    pub fn is_containerd(&self) -> bool {
        matches!(self, Store::Containerd { .. })
    }
}

/// What the running daemon and the files say about the store.
pub struct Evidence<'a> {
    pub config: &'a DaemonConfig,
    /// `/info` of the running daemon, when it answers.
    pub info: Option<&'a DaemonInfo>,
    /// The engine's major version, from the API or the dockerd binary.
    pub engine_major: Option<u32>,
    /// Whether the data root has a graph driver's directory.
    pub graph_driver_dir: bool,
}

/// daemon.json's explicit choice first (it is what the next start uses),
/// then what the running daemon reports, then Engine 29's default.
pub fn detect(evidence: &Evidence<'_>) -> Store {
    match snapshotter_setting(evidence.config) {
        Some(true) => {
            return Store::Containerd {
                why: format!("daemon.json sets \"{FEATURES}\": {{\"{SNAPSHOTTER}\": true}}"),
            };
        }
        Some(false) => return Store::GraphDriver,
        None => {}
    }
    if let Some(info) = evidence.info {
        if reports_snapshotter(info) && !info.userns_active() {
            return Store::Containerd {
                why: format!(
                    "dockerd reports Driver {:?} with driver-type {SNAPSHOTTER_DRIVER_TYPE}",
                    info.driver
                ),
            };
        }
        return Store::GraphDriver;
    }
    match evidence.engine_major {
        Some(major) if major >= CONTAINERD_DEFAULT_MAJOR && !evidence.graph_driver_dir => {
            Store::Containerd {
                why: format!(
                    "Engine {major} uses it by default on a data root without a graph driver's directory"
                ),
            }
        }
        _ => Store::GraphDriver,
    }
}

/// `features.containerd-snapshotter` when daemon.json sets it to a bool.
pub fn snapshotter_setting(config: &DaemonConfig) -> Option<bool> {
    config.value(FEATURES)?.get(SNAPSHOTTER)?.as_bool()
}

fn reports_snapshotter(info: &DaemonInfo) -> bool {
    info.driver_status.iter().any(|pair| {
        pair.first().is_some_and(|k| k == "driver-type")
            && pair.get(1).is_some_and(|v| v == SNAPSHOTTER_DRIVER_TYPE)
    })
}

/// The major version of a `ServerVersion` such as `28.5.2+dfsg1`.
pub fn major_version(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}

/// The `features` value that pins the graph driver, from the current one:
/// only `containerd-snapshotter` changes, every other byte stays. `None`
/// when it is pinned already.
pub fn pinned_features(config: &DaemonConfig, path: &Path) -> Result<Option<String>, StoreError> {
    if snapshotter_setting(config) == Some(false) {
        return Ok(None);
    }
    let Some(raw) = config.raw(FEATURES) else {
        return Ok(Some(PINNED_FEATURES.to_owned()));
    };
    let inner = DaemonConfig::parse(path, raw.as_bytes())?;
    Ok(Some(inner.with_raw(SNAPSHOTTER, "false")))
}

/// The user's `features` value before it was pinned: its exact text, or
/// `None` when daemon.json had no `features`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub features: Option<String>,
}

impl Record {
    pub fn of(config: &DaemonConfig) -> Record {
        Record {
            features: config.raw(FEATURES).map(str::to_owned),
        }
    }

    /// daemon.json `config` (as it will be written otherwise) with the
    /// user's value back, when `features` is still exactly what was pinned
    /// from it; `None` when someone changed it since (theirs is kept).
    pub fn restore(&self, config: &DaemonConfig, path: &Path) -> Option<String> {
        let pinned = match &self.features {
            None => PINNED_FEATURES.to_owned(),
            Some(raw) => DaemonConfig::parse(path, raw.as_bytes())
                .ok()?
                .with_raw(SNAPSHOTTER, "false"),
        };
        if config.raw(FEATURES) != Some(pinned.as_str()) {
            return None;
        }
        Some(match &self.features {
            None => config.without(FEATURES),
            Some(raw) => config.with_raw(FEATURES, raw),
        })
    }

    /// Whether the user's own setting asked for the containerd store (or
    /// left Engine 29 its default).
    pub fn wanted_containerd(&self) -> bool {
        let Some(raw) = &self.features else {
            return true;
        };
        serde_json::from_str::<Value>(raw)
            .ok()
            .and_then(|v| v.get(SNAPSHOTTER)?.as_bool())
            != Some(false)
    }
}

/// Where the record lives: beside daemon.json, in a directory only root
/// can write.
pub fn record_path(config_path: &Path) -> PathBuf {
    let mut name = config_path.file_name().unwrap_or_default().to_owned();
    name.push(RECORD_SUFFIX);
    config_path.with_file_name(name)
}

/// The record, if one was written (read bounded, regular files only).
pub fn read_record(host: &Host, config_path: &Path) -> Result<Option<Record>, StoreError> {
    let path = record_path(config_path);
    let Some(snapshot) = host.read(&path)? else {
        return Ok(None);
    };
    let shown = host.display(&path);
    let refuse = |reason: String| StoreError::Record {
        path: shown.clone(),
        reason,
    };
    if snapshot.meta.uid != 0 || snapshot.bytes.len() as u64 > RECORD_LIMIT {
        return Err(refuse(format!(
            "owned by uid {} or larger than {RECORD_LIMIT} bytes",
            snapshot.meta.uid
        )));
    }
    serde_json::from_slice(&snapshot.bytes)
        .map(Some)
        .map_err(|e| refuse(format!("not a docker-userns record: {e}")))
}

/// Writes the record unless one exists: the first one holds the user's
/// own choice, a later run would only see the pinned value.
pub fn write_record(host: &Host, config_path: &Path, record: &Record) -> Result<(), StoreError> {
    if read_record(host, config_path)?.is_some() {
        return Ok(());
    }
    let path = record_path(config_path);
    let bytes = serde_json::to_vec_pretty(record).expect("serializable");
    let job = atomic::Replace {
        path: &path,
        bytes: &bytes,
        previous: None,
        backup: None,
    };
    Ok(atomic::replace(host, &job)?)
}

pub fn remove_record(host: &Host, config_path: &Path) -> Result<(), StoreError> {
    Ok(atomic::remove(host, &record_path(config_path))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> DaemonConfig {
        DaemonConfig::parse(Path::new("/etc/docker/daemon.json"), text.as_bytes()).unwrap()
    }

    fn evidence<'a>(config: &'a DaemonConfig, info: Option<&'a DaemonInfo>) -> Evidence<'a> {
        Evidence {
            config,
            info,
            engine_major: None,
            graph_driver_dir: false,
        }
    }

    #[test]
    fn daemon_json_wins_then_the_daemon_then_engine_29_default() {
        let on = config(r#"{"features": {"containerd-snapshotter": true}}"#);
        assert!(detect(&evidence(&on, None)).is_containerd());
        let off = config(r#"{"features": {"containerd-snapshotter": false}}"#);
        let info = DaemonInfo {
            driver: "overlayfs".into(),
            driver_status: vec![vec!["driver-type".into(), SNAPSHOTTER_DRIVER_TYPE.into()]],
            ..DaemonInfo::default()
        };
        assert_eq!(detect(&evidence(&off, Some(&info))), Store::GraphDriver);
        let none = config("{}");
        assert!(detect(&evidence(&none, Some(&info))).is_containerd());
        assert_eq!(
            detect(&evidence(&none, Some(&DaemonInfo::default()))),
            Store::GraphDriver
        );
        let mut fresh = evidence(&none, None);
        fresh.engine_major = Some(29);
        assert!(detect(&fresh).is_containerd());
        fresh.graph_driver_dir = true;
        assert_eq!(detect(&fresh), Store::GraphDriver);
        fresh.engine_major = Some(28);
        fresh.graph_driver_dir = false;
        assert_eq!(detect(&fresh), Store::GraphDriver);
        assert_eq!(major_version("28.5.2+dfsg1"), Some(28));
    }

    #[test]
    fn pinning_changes_only_the_snapshotter_and_restoring_gives_the_bytes_back() {
        let path = Path::new("/etc/docker/daemon.json");
        for text in [
            "{\n  \"debug\": true\n}\n",
            "{\n  \"features\": {\"containerd-snapshotter\": true},\n  \"debug\": true\n}\n",
            "{\"features\": {\n    \"buildkit\": true,\n    \"containerd-snapshotter\": true\n  }}",
            "{\"features\": {\"buildkit\": true}}",
        ] {
            let original = config(text);
            let record = Record::of(&original);
            let features = pinned_features(&original, path).unwrap().unwrap();
            let pinned = config(&original.with_raw(FEATURES, &features));
            assert_eq!(snapshotter_setting(&pinned), Some(false), "{text}");
            assert_eq!(pinned_features(&pinned, path).unwrap(), None);
            assert_eq!(record.restore(&pinned, path).as_deref(), Some(text));
        }
        let record = Record::of(&config("{}"));
        let changed = config(r#"{"features": {"containerd-snapshotter": false, "x": 1}}"#);
        assert_eq!(
            record.restore(&changed, path),
            None,
            "a user's edit is kept"
        );
    }

    #[test]
    fn the_record_says_which_store_the_user_wanted() {
        let wanted = |text: &str| Record::of(&config(text)).wanted_containerd();
        assert!(wanted(r#"{"features": {"containerd-snapshotter": true}}"#));
        assert!(wanted("{}"));
        assert!(!wanted(
            r#"{"features": {"containerd-snapshotter": false}}"#
        ));
    }
}
