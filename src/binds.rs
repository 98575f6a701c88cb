//! Bind mounts of existing containers whose source the remapped root
//! cannot use, each with the `grant` that fixes it.
//!
//! Under remapping container root is an unprivileged host uid: a source
//! only host root could read or write stops working. The mounts come from
//! the daemon when it answers, else from the containers' stored configs
//! (`<root>/containers/<id>/config.v2.json`), read below the data root
//! without following links. Each source is judged by the same walk as
//! `check --path`, at its real path (the one the kernel mounts).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::FileType;
use serde::Deserialize;

use crate::access::{self, Component, Subject, Use};
use crate::daemon::api::{self, ContainerDetails, DockerApi};
use crate::host::{Host, MAX_DIR_ENTRIES};
use crate::ids::IdRange;
use crate::plan::{Plan, Warning};

/// A stored container config holds its whole environment and labels:
/// larger than a config file, still bounded.
const MAX_CONFIG: u64 = 4 << 20;

/// One bind mount of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub container: String,
    pub source: PathBuf,
    pub destination: String,
    pub rw: bool,
}

/// The bind mounts found, and the stored configs that could not be read.
#[derive(Debug, Default, Clone)]
pub struct Found {
    pub binds: Vec<Bind>,
    /// From the daemon (true) or the stored configs.
    pub live: bool,
    pub unreadable: Vec<String>,
}

/// A bind source the remapped root cannot use, and who mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The real path inside the root (links resolved): what grant takes.
    pub source: PathBuf,
    /// The source as the user finds it (under `--root`, with it).
    pub shown: PathBuf,
    /// "name at /dst (rw)" for each container that mounts it.
    pub users: Vec<String>,
    pub problem: String,
    /// The exact `grant` that makes the source usable, or what to do
    /// when grant is not the fix.
    pub remedy: String,
}

impl Broken {
    pub fn describe(&self) -> String {
        format!(
            "{} (mounted by {}): {}",
            self.shown.display(),
            self.users.join(", "),
            self.problem
        )
    }
}

/// Container root under `uid_ranges`/`gid_ranges`, as the host sees it.
pub fn container_root(uid_ranges: &[IdRange], gid_ranges: &[IdRange]) -> Option<Subject> {
    (!uid_ranges.is_empty() && !gid_ranges.is_empty()).then(|| Subject {
        inside_uid: 0,
        inside_gid: 0,
        uid_ranges: uid_ranges.to_vec(),
        gid_ranges: gid_ranges.to_vec(),
    })
}

/// The daemon's API when it answers on the live host.
pub fn live_api(host: &Host, socket: Option<&str>) -> Option<DockerApi> {
    if !host.is_live() {
        return None;
    }
    let env = std::env::var("DOCKER_HOST").ok();
    let socket = api::resolve_socket(socket, env.as_deref()).ok()?;
    let api = DockerApi::new(socket, Duration::from_secs(5));
    api.ping().ok().map(|()| api)
}

/// Every container's bind mounts: from `api` when it answers, else from
/// the stored configs under each of `roots` (data roots).
pub fn gather(host: &Host, api: Option<&DockerApi>, roots: &[PathBuf]) -> Found {
    let inspected = api.and_then(|api| {
        let list = api.containers(true).ok()?;
        Some(
            list.iter()
                .filter_map(|c| api.inspect(&c.id).ok())
                .collect::<Vec<_>>(),
        )
    });
    match inspected {
        Some(details) => from_details(&details),
        None => stored_in(host, roots),
    }
}

/// The bind mounts of containers the daemon described.
pub fn from_details(details: &[ContainerDetails]) -> Found {
    let binds = details
        .iter()
        .flat_map(|c| {
            let name = c.display_name();
            c.mounts
                .iter()
                .filter(|m| m.kind == "bind")
                .map(move |m| Bind {
                    container: name.clone(),
                    source: PathBuf::from(&m.source),
                    destination: m.destination.clone(),
                    rw: m.rw,
                })
        })
        .collect();
    Found {
        binds,
        live: true,
        unreadable: Vec::new(),
    }
}

/// The bind mounts in the stored configs of each data root in `roots`.
pub fn stored_in(host: &Host, roots: &[PathBuf]) -> Found {
    let mut found = Found::default();
    for root in roots {
        stored(host, &root.join("containers"), &mut found);
    }
    found
}

/// `config.v2.json`, reduced to the mounts.
#[derive(Debug, Deserialize)]
struct StoredContainer {
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "MountPoints", default)]
    mount_points: Option<BTreeMap<String, StoredMount>>,
}

#[derive(Debug, Deserialize)]
struct StoredMount {
    #[serde(rename = "Source", default)]
    source: Option<String>,
    #[serde(rename = "Destination", default)]
    destination: Option<String>,
    #[serde(rename = "RW", default)]
    rw: bool,
    #[serde(rename = "Type", default)]
    kind: Option<String>,
    /// A volume's name; empty for a bind.
    #[serde(rename = "Name", default)]
    name: Option<String>,
}

impl StoredMount {
    /// Old configs have no `Type`: a bind is a mount with a source and no
    /// volume name.
    fn is_bind(&self) -> bool {
        match self.kind.as_deref() {
            Some("bind") => true,
            None | Some("") => {
                self.name.as_deref().unwrap_or("").is_empty()
                    && !self.source.as_deref().unwrap_or("").is_empty()
            }
            Some(_) => false,
        }
    }
}

/// The bind mounts in the stored configs below `dir` (a `containers`
/// directory). Only root writes there, but each config is still read
/// without following a link, bounded, and only when regular.
fn stored(host: &Host, dir: &Path, found: &mut Found) {
    let Ok(fd) = host.open_dir(dir) else {
        return;
    };
    let Ok(listing) = rustix::fs::Dir::read_from(&fd) else {
        return;
    };
    let names = listing
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_container_id(n))
        .take(MAX_DIR_ENTRIES);
    for id in names {
        let rel = Path::new(&id).join("config.v2.json");
        let shown = host.display(&dir.join(&rel));
        let bytes = match host.read_below(&fd, dir, &rel, MAX_CONFIG) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => continue,
            Err(e) => {
                found.unreadable.push(format!("{e:#}"));
                continue;
            }
        };
        match serde_json::from_slice::<StoredContainer>(&bytes) {
            Ok(c) => found.binds.extend(stored_binds(&id, c)),
            Err(e) => found
                .unreadable
                .push(format!("{}: not a container config: {e}", shown.display())),
        }
    }
}

fn is_container_id(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn stored_binds(id: &str, c: StoredContainer) -> Vec<Bind> {
    let name = c
        .name
        .as_deref()
        .map(|n| n.trim_start_matches('/'))
        .filter(|n| !n.is_empty())
        .map_or_else(|| id.chars().take(12).collect(), str::to_owned);
    c.mount_points
        .unwrap_or_default()
        .into_values()
        .filter(StoredMount::is_bind)
        .map(|m| Bind {
            container: name.clone(),
            source: PathBuf::from(m.source.unwrap_or_default()),
            destination: m.destination.unwrap_or_default(),
            rw: m.rw,
        })
        .collect()
}

/// The sources `subject` cannot use as their containers mount them, one
/// entry per source (write is needed when any container mounts it rw).
pub fn breaking(host: &Host, binds: &[Bind], subject: &Subject) -> Vec<Broken> {
    let mut by_source: BTreeMap<&Path, Vec<&Bind>> = BTreeMap::new();
    for bind in binds.iter().filter(|b| b.source.is_absolute()) {
        by_source.entry(&bind.source).or_default().push(bind);
    }
    let root_arg = if host.is_live() {
        String::new()
    } else {
        format!("--root {} ", host.root().display())
    };
    by_source
        .into_iter()
        .filter_map(|(source, users)| {
            let usage = if users.iter().any(|b| b.rw) {
                Use::ReadWrite
            } else {
                Use::ReadOnly
            };
            let found = problem(host, source, subject, usage)?;
            let remedy = if found.grantable {
                let grant = format!("docker-userns {root_arg}grant {}", found.path.display());
                format!("{grant} (or {grant} --acl)")
            } else {
                format!(
                    "mount the real path of {} instead, one that only root can change",
                    source.display()
                )
            };
            Some(Broken {
                shown: host.display(&found.path),
                source: found.path,
                remedy,
                users: users
                    .iter()
                    .map(|b| {
                        let mode = if b.rw { "rw" } else { "ro" };
                        format!("{} at {} ({mode})", b.container, b.destination)
                    })
                    .collect(),
                problem: found.why,
            })
        })
        .collect()
}

/// What keeps `subject` from using `source`, at its real path; `None`
/// when nothing does, or when it is missing or not a directory or a
/// regular file (sockets and devices are not grant's to fix).
fn problem(host: &Host, source: &Path, subject: &Subject, usage: Use) -> Option<Problem> {
    let real = match crate::resolve::real_path(host, source) {
        Ok(Some(real)) => real,
        Ok(None) => return None,
        Err(e) => {
            return Some(Problem {
                path: source.to_owned(),
                why: format!("{e:#}"),
                grantable: false,
            });
        }
    };
    let walk = match access::open_components(host, &real) {
        Ok(walk) => walk,
        Err(e) => {
            return Some(Problem {
                path: real,
                why: format!("{e:#}"),
                grantable: false,
            });
        }
    };
    let kind = walk.last()?.file_type();
    if kind != FileType::Directory && kind != FileType::RegularFile {
        return None;
    }
    let components = access::assess_for(&walk, subject, usage);
    let block = components.iter().find(|c| c.blocked())?;
    let why = blocked_reason(host, block, subject, block.path == real);
    Some(Problem {
        path: real,
        why,
        grantable: true,
    })
}

/// What keeps a source from being used, at which path, and whether
/// `grant` on that path is the fix (not when a link or a race is in the way).
struct Problem {
    path: PathBuf,
    why: String,
    grantable: bool,
}

fn blocked_reason(host: &Host, block: &Component, subject: &Subject, is_source: bool) -> String {
    let verb = match (is_source, block.needs & access::WRITE != 0) {
        (false, _) => "traverse",
        (true, true) => "read and write",
        (true, false) => "read",
    };
    let acl = if block.acl.is_some() {
        " with an ACL"
    } else {
        ""
    };
    format!(
        "container root (host uid {}) cannot {verb} {}: it is {}:{} {:04o}{acl}, {} give {} of the {} it needs",
        subject
            .host_uid()
            .map_or_else(|| "unmapped".to_owned(), |u| u.to_string()),
        host.display(&block.path).display(),
        block.uid,
        block.gid,
        block.mode,
        block.decided_by,
        access::perm_letters(block.needs & !block.missing),
        access::perm_letters(block.needs),
    )
}

/// `enable`'s warnings: existing containers' bind mounts whose source
/// container root will not be able to use under the planned mapping,
/// each with the `grant` that fixes it. The containers come from the
/// daemon on `socket` when it answers, else from the stored configs.
pub fn plan_warnings(host: &Host, socket: Option<&str>, plan: &Plan) -> Vec<Warning> {
    let m = &plan.mapping;
    let Some(subject) = container_root(&m.uid_ranges, &m.gid_ranges) else {
        return Vec::new();
    };
    let api = live_api(host, socket);
    let roots = data_roots(&plan.data_root, m.data_root_dir().as_deref());
    let found = gather(host, api.as_ref(), &roots);
    breaking(host, &found.binds, &subject)
        .into_iter()
        .map(|b| Warning {
            message: format!(
                "bind mount of {} will break under remapping: {}; fix: {}",
                b.users.join(", "),
                b.problem,
                b.remedy
            ),
            file: b.shown,
            line: None,
        })
        .collect()
}

/// The data roots whose stored containers `enable` looks at: the
/// non-remapped one (what `--migrate` carries over) and `<uid>.<gid>`.
pub fn data_roots(data_root: &Path, dir_name: Option<&str>) -> Vec<PathBuf> {
    let mut roots = vec![data_root.to_owned()];
    roots.extend(dir_name.map(|d| data_root.join(OsStr::new(d))));
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Vec<Bind> {
        stored_binds("abc", serde_json::from_str(json).unwrap())
    }

    #[test]
    fn stored_configs_give_binds_not_volumes() {
        let binds = parse(
            r#"{"Name": "/web", "MountPoints": {
                "/data": {"Source": "/srv/data", "Destination": "/data", "RW": true, "Type": "bind", "Name": ""},
                "/cache": {"Source": "/var/lib/docker/volumes/c/_data", "Destination": "/cache",
                           "RW": true, "Type": "volume", "Name": "c"},
                "/old": {"Source": "/srv/old", "Destination": "/old", "RW": false}
            }}"#,
        );
        assert_eq!(
            binds,
            [
                Bind {
                    container: "web".into(),
                    source: "/srv/data".into(),
                    destination: "/data".into(),
                    rw: true
                },
                Bind {
                    container: "web".into(),
                    source: "/srv/old".into(),
                    destination: "/old".into(),
                    rw: false
                },
            ]
        );
    }

    #[test]
    fn a_config_without_mounts_or_name_is_fine() {
        assert!(parse(r#"{"MountPoints": null}"#).is_empty());
        let binds = parse(r#"{"MountPoints": {"/x": {"Source": "/x", "Destination": "/x"}}}"#);
        assert_eq!(binds[0].container, "abc");
    }
}
