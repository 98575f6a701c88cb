//! Carrying the containerd image store's content into a remapped daemon,
//! which runs on a graph driver and cannot see it: images through the API
//! (`GET /images/get` into a root-only spool on the data root's filesystem
//! before the switch, `POST /images/load` after it), containers re-created
//! from their inspected settings under their own names. Volumes move with
//! the file migration (`Scope::Volumes`).
//!
//! The originals stay where they are (containerd's content, the old
//! containers' directories), hidden while remapping is on.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::at::At;
use super::{MigrateError, open_data_root};
use crate::daemon::api::{ApiError, DockerApi};
use crate::host::Host;
use crate::phases::Phases;

/// The spool directory in the data root.
pub const SPOOL: &str = ".docker-userns-spool";
const IMAGES: &str = "images.tar";
const CONTAINERS: &str = "containers.json";
/// Room kept free besides the images: the spool and the unpacked layers
/// both need it, and a full data root stops dockerd.
const SPARE: u64 = 256 << 20;
/// No byte moved for this long ends a transfer.
const MIN_IDLE: Duration = Duration::from_secs(300);
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum CarryError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error(
        "{spool} exists: an earlier run left its saved images there; load them with `docker load -i {spool}/{IMAGES}` if they are needed, then remove it"
    )]
    SpoolExists { spool: PathBuf },
    #[error(
        "{root} has {free} MiB free, saving and loading the images needs about {needed} MiB; free some space first"
    )]
    Space {
        root: PathBuf,
        free: u64,
        needed: u64,
    },
    #[error("saving the images to {spool}: {source}; nothing was changed")]
    Save {
        spool: PathBuf,
        #[source]
        source: Box<CarryError>,
    },
    #[error(
        "dockerd was switched and restarted, but loading the images into it failed: {message}\nthe saved images are kept: retry with `docker load -i {spool}/{IMAGES}`, then re-create the containers described in {spool}/{CONTAINERS} and remove {spool}"
    )]
    Load { spool: PathBuf, message: String },
}

/// What the daemon on the containerd store holds.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Tags of the images to carry.
    pub images: Vec<String>,
    /// Short ids of images without a tag: `docker load` would give them
    /// none, so they are not carried.
    pub untagged: Vec<String>,
    /// Sum of the images' sizes.
    pub bytes: u64,
    pub containers: Vec<Recreate>,
    pub volumes: Vec<String>,
}

/// One container to re-create, from `GET /containers/{id}/json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recreate {
    pub name: String,
    pub running: bool,
    /// The body of `POST /containers/create`.
    pub create: Value,
    /// Networks to connect after creation, with their endpoint settings.
    pub connect: Vec<(String, Value)>,
    /// Why it cannot run under remapping as it is, if it cannot.
    pub refused: Option<String>,
    /// Leave a container of the same name in place instead.
    pub keep_existing: bool,
}

impl Inventory {
    /// Reads images, containers and volumes from the running daemon.
    pub fn read(api: &DockerApi) -> Result<Inventory, ApiError> {
        let mut inventory = Inventory::default();
        for image in array(api.get_value("/images/json")?) {
            inventory.bytes += image["Size"].as_u64().unwrap_or(0);
            let tags: Vec<String> = array(image["RepoTags"].clone())
                .into_iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .filter(|t| t != "<none>:<none>")
                .collect();
            if tags.is_empty() {
                let id = image["Id"].as_str().unwrap_or_default();
                inventory.untagged.push(short_id(id));
            }
            inventory.images.extend(tags);
        }
        for summary in array(api.get_value("/containers/json?all=1")?) {
            let id = summary["Id"].as_str().unwrap_or_default();
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            match api.get_value(&format!("/containers/{id}/json")) {
                Ok(inspected) => inventory
                    .containers
                    .push(Recreate::from_inspect(&inspected)),
                // Removed since it was listed: nothing to carry.
                Err(ApiError::Transfer { reason, .. }) if reason.contains("HTTP 404") => {}
                Err(e) => return Err(e),
            }
        }
        let volumes = api.get_value("/volumes")?;
        inventory.volumes = array(volumes["Volumes"].clone())
            .iter()
            .filter_map(|v| v["Name"].as_str().map(str::to_owned))
            .collect();
        inventory.images.sort();
        inventory.volumes.sort();
        Ok(inventory)
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
            && self.untagged.is_empty()
            && self.containers.is_empty()
            && self.volumes.is_empty()
    }

    pub fn container_names(&self) -> Vec<String> {
        self.containers.iter().map(|c| c.name.clone()).collect()
    }

    /// "images a, b; containers c; volumes d", each list complete.
    pub fn describe(&self) -> String {
        let list = |what: &str, names: &[String]| match names {
            [] => format!("no {what}"),
            _ => format!("{what} {}", names.join(", ")),
        };
        let mut text = format!(
            "{}; {}; {}",
            list("images", &self.images),
            list("containers", &self.container_names()),
            list("volumes", &self.volumes)
        );
        if !self.untagged.is_empty() {
            text.push_str(&format!("; untagged images {}", self.untagged.join(", ")));
        }
        text
    }

    pub fn refused(&self) -> Vec<String> {
        self.containers
            .iter()
            .filter_map(|c| Some(format!("{} ({})", c.name, c.refused.as_ref()?)))
            .collect()
    }
}

impl Recreate {
    pub fn from_inspect(inspected: &Value) -> Recreate {
        let name = inspected["Name"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned();
        let host_config = inspected["HostConfig"].clone();
        let mut create = match inspected["Config"].clone() {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let mut host_config = match host_config {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        keep_anonymous_volumes(inspected, &mut host_config);
        let (primary, connect) = networks(inspected, &host_config);
        let refused = refusal(&create, &host_config);
        create.insert("HostConfig".into(), Value::Object(host_config));
        if let Some((network, endpoint)) = primary {
            create.insert(
                "NetworkingConfig".into(),
                json!({"EndpointsConfig": {network: endpoint}}),
            );
        }
        Recreate {
            name,
            running: inspected["State"]["Running"].as_bool().unwrap_or(false),
            create: Value::Object(create),
            connect,
            refused,
            keep_existing: false,
        }
    }

    /// Whether the daemon has a container of this name already.
    fn exists(&self, api: &DockerApi) -> bool {
        api.get_value(&format!("/containers/{}/json", query_escape(&self.name)))
            .is_ok()
    }

    /// Creates the container, connects its other networks, and starts it
    /// when it ran before.
    fn apply(&self, api: &DockerApi) -> Result<(), ApiError> {
        let answer = api.post_json(
            &format!("/containers/create?name={}", query_escape(&self.name)),
            Some(&self.create),
        )?;
        let id = serde_json::from_slice::<Value>(&answer)
            .ok()
            .and_then(|v| v["Id"].as_str().map(str::to_owned))
            .unwrap_or_else(|| self.name.clone());
        for (network, endpoint) in &self.connect {
            api.post_json(
                &format!("/networks/{}/connect", query_escape(network)),
                Some(&json!({"Container": id, "EndpointConfig": endpoint})),
            )?;
        }
        if self.running {
            api.post_json(&format!("/containers/{id}/start"), None)?;
        }
        Ok(())
    }
}

/// A volume the container got without naming it keeps its data only if
/// the new container mounts that same volume by name.
fn keep_anonymous_volumes(inspected: &Value, host_config: &mut Map<String, Value>) {
    let binds: Vec<String> = array(host_config.get("Binds").cloned().unwrap_or_default())
        .into_iter()
        .filter_map(|b| b.as_str().map(str::to_owned))
        .collect();
    let mounted: Vec<String> = array(host_config.get("Mounts").cloned().unwrap_or_default())
        .into_iter()
        .filter_map(|m| m["Source"].as_str().map(str::to_owned))
        .collect();
    let mut added = Vec::new();
    for mount in array(inspected["Mounts"].clone()) {
        let (Some("volume"), Some(name), Some(dest)) = (
            mount["Type"].as_str(),
            mount["Name"].as_str(),
            mount["Destination"].as_str(),
        ) else {
            continue;
        };
        let named = binds.iter().any(|b| b.split(':').next() == Some(name))
            || mounted.iter().any(|m| m == name);
        if !named {
            let ro = if mount["RW"].as_bool() == Some(false) {
                ":ro"
            } else {
                ""
            };
            added.push(Value::String(format!("{name}:{dest}{ro}")));
        }
    }
    if !added.is_empty() {
        let mut all: Vec<Value> = binds.into_iter().map(Value::String).collect();
        all.extend(added);
        host_config.insert("Binds".into(), Value::Array(all));
    }
}

/// The network to create the container on, and the others to connect:
/// only the settings a user gives (aliases, addresses, links, options).
type Networks = (Option<(String, Value)>, Vec<(String, Value)>);

fn networks(inspected: &Value, host_config: &Map<String, Value>) -> Networks {
    let mode = host_config
        .get("NetworkMode")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if matches!(mode, "none" | "host" | "") || mode.starts_with("container:") {
        return (None, Vec::new());
    }
    let Value::Object(attached) = inspected["NetworkSettings"]["Networks"].clone() else {
        return (None, Vec::new());
    };
    let endpoint = |settings: &Value| {
        let mut kept = Map::new();
        for key in ["Aliases", "IPAMConfig", "Links", "DriverOpts"] {
            match settings.get(key) {
                Some(Value::Null) | None => {}
                Some(value) => {
                    kept.insert(key.into(), value.clone());
                }
            }
        }
        Value::Object(kept)
    };
    let primary_name = if attached.contains_key(mode) || mode == "default" {
        mode.to_owned()
    } else {
        attached.keys().next().cloned().unwrap_or_default()
    };
    let mut primary = None;
    let mut others = Vec::new();
    for (name, settings) in &attached {
        if *name == primary_name {
            primary = Some((name.clone(), endpoint(settings)));
        } else {
            others.push((name.clone(), endpoint(settings)));
        }
    }
    (primary, others)
}

/// What keeps a container from starting under remapping, or from being
/// re-created at all.
fn refusal(config: &Map<String, Value>, host_config: &Map<String, Value>) -> Option<String> {
    let text = |key: &str| host_config.get(key).and_then(Value::as_str).unwrap_or("");
    let image = config.get("Image").and_then(Value::as_str).unwrap_or("");
    if image.starts_with("sha256:") || image.is_empty() {
        return Some("its image has no tag to load it by".into());
    }
    if text("UsernsMode") == "host" {
        return None;
    }
    let mut needs = Vec::new();
    if host_config.get("Privileged").and_then(Value::as_bool) == Some(true) {
        needs.push("privileged".to_owned());
    }
    for (key, what) in [
        ("NetworkMode", "host network"),
        ("PidMode", "host pid"),
        ("IpcMode", "host ipc"),
        ("UTSMode", "host uts"),
    ] {
        if text(key) == "host" {
            needs.push(what.to_owned());
        }
    }
    (!needs.is_empty()).then(|| {
        format!(
            "{}: needs --userns=host under remapping; re-create it with --userns=host",
            needs.join(", ")
        )
    })
}

/// The saved images and container settings, in a directory only root can
/// enter, on the data root's filesystem.
pub struct Spool {
    root: At,
    dir: At,
}

/// What carrying did, for the report (`carried` in JSON).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CarryReport {
    pub images_bytes: u64,
    pub loaded: Vec<String>,
    #[serde(rename = "containers_recreated")]
    pub recreated: Vec<String>,
    /// Containers not re-created, with why.
    #[serde(rename = "containers_not_recreated")]
    pub not_recreated: Vec<String>,
    /// Containers not re-created because one of that name is there.
    #[serde(rename = "containers_kept")]
    pub kept: Vec<String>,
    /// Time spent loading the images and re-creating the containers; the
    /// command's report sums them up.
    #[serde(skip)]
    pub phases: Phases,
}

impl CarryReport {
    /// What was loaded and re-created, and what was not.
    pub fn human(&self) -> String {
        let list = |names: &[String]| match names {
            [] => "none".to_owned(),
            _ => names.join(", "),
        };
        let mut out = format!(
            "images      loaded {} ({} MiB saved and loaded)\ncontainers  re-created {}\n",
            list(&self.loaded),
            self.images_bytes >> 20,
            list(&self.recreated)
        );
        if !self.kept.is_empty() {
            out.push_str(&format!(
                "            kept, as one of the same name is there: {}\n",
                self.kept.join(", ")
            ));
        }
        if !self.not_recreated.is_empty() {
            out.push_str(&format!(
                "            NOT re-created: {}\n",
                self.not_recreated.join("; ")
            ));
        }
        out
    }
}

/// The spool's path, for the plan.
pub fn spool_path(data_root: &Path) -> PathBuf {
    data_root.join(SPOOL)
}

fn idle(timeout: Duration) -> Duration {
    timeout.max(MIN_IDLE)
}

impl Spool {
    /// Saves the images (and the containers' settings) before the switch;
    /// on any failure nothing is left behind.
    pub fn save(
        host: &Host,
        daemon_data_root: &Path,
        api: &DockerApi,
        inventory: &Inventory,
        timeout: Duration,
    ) -> Result<(Spool, u64), CarryError> {
        let root = open_data_root(host, daemon_data_root)?;
        let shown = root.join(SPOOL);
        if root.lstat(SPOOL)?.is_some() {
            return Err(CarryError::SpoolExists { spool: shown });
        }
        let needed = inventory.bytes.saturating_mul(2).saturating_add(SPARE);
        let free = root.free_bytes()?;
        if free < needed {
            return Err(CarryError::Space {
                root: root.path().to_owned(),
                free: free >> 20,
                needed: needed >> 20,
            });
        }
        let dir = root.create_private_dir(SPOOL)?;
        let spool = Spool { root, dir };
        match spool.fill(api, inventory, timeout) {
            Ok(bytes) => Ok((spool, bytes)),
            Err(source) => {
                spool.remove();
                Err(CarryError::Save {
                    spool: shown,
                    source: Box::new(source),
                })
            }
        }
    }

    fn fill(
        &self,
        api: &DockerApi,
        inventory: &Inventory,
        timeout: Duration,
    ) -> Result<u64, CarryError> {
        let settings = serde_json::to_vec_pretty(&inventory.containers).expect("serializable");
        let mut file = self.dir.create_file(CONTAINERS)?;
        file.write_all(&settings)
            .and_then(|()| file.sync_all())
            .map_err(|e| self.io(CONTAINERS, e))?;
        if inventory.images.is_empty() {
            return Ok(0);
        }
        let names: Vec<String> = inventory
            .images
            .iter()
            .map(|t| format!("names={}", query_escape(t)))
            .collect();
        let target = format!("/images/get?{}", names.join("&"));
        let mut file = self.dir.create_file(IMAGES)?;
        let mut progress = Progress::new("saving images");
        let bytes = api.get_to(&target, &mut file, idle(timeout), &mut |n| progress.show(n))?;
        progress.done(bytes);
        file.sync_all().map_err(|e| self.io(IMAGES, e))?;
        Ok(bytes)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Loads the images into the (remapped) daemon, then re-creates the
    /// containers. The spool is removed only when the load succeeded.
    pub fn load(
        self,
        api: &DockerApi,
        inventory: &Inventory,
        timeout: Duration,
    ) -> Result<CarryReport, CarryError> {
        let mut report = CarryReport::default();
        if !inventory.images.is_empty() {
            let loading = Instant::now();
            report.loaded = self
                .load_images(api, timeout)
                .map_err(|e| CarryError::Load {
                    spool: self.path().to_owned(),
                    message: e.to_string(),
                })?;
            report.phases.add("load", loading.elapsed());
        }
        let recreating = Instant::now();
        for container in &inventory.containers {
            if let Some(why) = &container.refused {
                report
                    .not_recreated
                    .push(format!("{} ({why})", container.name));
                continue;
            }
            if container.keep_existing && container.exists(api) {
                report.kept.push(container.name.clone());
                continue;
            }
            match container.apply(api) {
                Ok(()) => report.recreated.push(container.name.clone()),
                Err(e) => report
                    .not_recreated
                    .push(format!("{} ({e})", container.name)),
            }
        }
        report.phases.add("recreate", recreating.elapsed());
        self.remove();
        Ok(report)
    }

    fn load_images(&self, api: &DockerApi, timeout: Duration) -> Result<Vec<String>, CarryError> {
        let entry = self
            .dir
            .file(IMAGES)?
            .ok_or_else(|| self.io(IMAGES, std::io::ErrorKind::NotFound.into()))?;
        let len = entry.stat.st_size as u64;
        let mut file = std::fs::File::from(entry.open()?);
        let mut progress = Progress::new("loading images");
        let answer = api.post_from(
            "/images/load?quiet=1",
            "application/x-tar",
            &mut file,
            len,
            idle(timeout),
            &mut |n| progress.show(n),
        )?;
        progress.done(len);
        load_messages(&answer).map_err(|message| {
            CarryError::Api(ApiError::Transfer {
                method: "POST",
                path: api.socket().to_owned(),
                target: "/images/load".into(),
                reason: message,
            })
        })
    }

    /// Removes the spool when its images are not to be loaded (the switch
    /// was rolled back; the originals are still in the containerd store).
    pub fn discard(self) {
        self.remove();
    }

    /// Removes the spool's files and directory, by descriptor.
    fn remove(&self) {
        for name in [IMAGES, CONTAINERS] {
            let _ = self.dir.remove_file(name);
        }
        let _ = self.root.remove_dir(SPOOL);
    }

    fn io(&self, name: &str, source: std::io::Error) -> CarryError {
        CarryError::Migrate(MigrateError::Io {
            path: self.dir.join(name),
            source,
        })
    }
}

/// The `Loaded image: ...` lines of a load's JSON message stream, or the
/// first error in it.
fn load_messages(answer: &[u8]) -> Result<Vec<String>, String> {
    let mut loaded = Vec::new();
    for message in serde_json::Deserializer::from_slice(answer).into_iter::<Value>() {
        let message = message.map_err(|e| format!("unreadable answer: {e}"))?;
        if let Some(error) = message.get("error").and_then(Value::as_str) {
            return Err(error.to_owned());
        }
        if let Some(text) = message.get("stream").and_then(Value::as_str) {
            if let Some(tag) = text.trim().strip_prefix("Loaded image: ") {
                loaded.push(tag.to_owned());
            }
        }
    }
    Ok(loaded)
}

/// Progress on stderr, only when it is a terminal.
struct Progress {
    what: &'static str,
    shown: Option<Instant>,
    on: bool,
}

impl Progress {
    fn new(what: &'static str) -> Progress {
        Progress {
            what,
            shown: None,
            on: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, bytes: u64) {
        if !self.on || self.shown.is_some_and(|t| t.elapsed() < PROGRESS_EVERY) {
            return;
        }
        self.shown = Some(Instant::now());
        eprint!("\r{}: {} MiB", self.what, bytes >> 20);
    }

    fn done(&mut self, bytes: u64) {
        if self.on {
            eprintln!("\r{}: {} MiB, done", self.what, bytes >> 20);
        }
    }
}

fn array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// Percent-encodes all but the characters a query value keeps as is.
fn query_escape(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspected() -> Value {
        json!({
            "Id": "abc",
            "Name": "/web",
            "State": {"Running": true},
            "Config": {"Image": "busybox:latest", "Cmd": ["sleep", "1d"], "Volumes": {"/anon": {}}},
            "HostConfig": {"Binds": ["data:/data"], "NetworkMode": "net1", "Privileged": false},
            "Mounts": [
                {"Type": "volume", "Name": "data", "Destination": "/data", "RW": true},
                {"Type": "volume", "Name": "f00d", "Destination": "/anon", "RW": false}
            ],
            "NetworkSettings": {"Networks": {
                "net1": {"Aliases": ["w"], "IPAddress": "10.0.0.2", "NetworkID": "n1"},
                "net2": {"Aliases": null, "IPAMConfig": {"IPv4Address": "10.1.0.9"}}
            }}
        })
    }

    #[test]
    fn a_container_is_recreated_from_what_the_user_gave() {
        let r = Recreate::from_inspect(&inspected());
        assert_eq!(r.name, "web");
        assert!(r.running);
        assert_eq!(r.refused, None);
        assert_eq!(r.create["Cmd"], json!(["sleep", "1d"]));
        assert_eq!(
            r.create["HostConfig"]["Binds"],
            json!(["data:/data", "f00d:/anon:ro"]),
            "the anonymous volume is mounted by name"
        );
        assert_eq!(
            r.create["NetworkingConfig"],
            json!({"EndpointsConfig": {"net1": {"Aliases": ["w"]}}})
        );
        assert_eq!(
            r.connect,
            vec![(
                "net2".to_owned(),
                json!({"IPAMConfig": {"IPv4Address": "10.1.0.9"}})
            )]
        );
    }

    #[test]
    fn privileged_and_host_namespaces_are_refused_unless_userns_host() {
        let mut c = inspected();
        c["HostConfig"]["Privileged"] = json!(true);
        c["HostConfig"]["PidMode"] = json!("host");
        let why = Recreate::from_inspect(&c).refused.unwrap();
        assert!(
            why.starts_with("privileged, host pid: needs --userns=host"),
            "{why}"
        );
        c["HostConfig"]["UsernsMode"] = json!("host");
        assert_eq!(Recreate::from_inspect(&c).refused, None);
        c["Config"]["Image"] = json!("sha256:0123");
        assert!(Recreate::from_inspect(&c).refused.is_some());
    }

    fn image_root() -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/lib/docker")).unwrap();
        let host = Host::open(dir.path(), Box::new(crate::host::SystemRunner)).unwrap();
        (dir, host)
    }

    fn inventory(bytes: u64) -> Inventory {
        Inventory {
            images: vec!["busybox:latest".into()],
            bytes,
            ..Inventory::default()
        }
    }

    /// Never reached: every refusal comes before the first request.
    fn nowhere() -> DockerApi {
        DockerApi::new("/nonexistent/docker.sock", Duration::from_secs(1))
    }

    #[test]
    fn a_link_at_the_spool_name_is_refused_and_not_followed() {
        let (dir, host) = image_root();
        let victim = dir.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        let spool = dir.path().join("var/lib/docker").join(SPOOL);
        std::os::unix::fs::symlink(&victim, &spool).unwrap();
        let data_root = Path::new("/var/lib/docker");
        let err = Spool::save(&host, data_root, &nowhere(), &inventory(0), MIN_IDLE)
            .err()
            .unwrap();
        assert!(matches!(err, CarryError::SpoolExists { .. }), "{err}");
        assert!(err.to_string().contains(SPOOL), "{err}");
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
        assert!(std::fs::symlink_metadata(&spool).unwrap().is_symlink());
    }

    #[test]
    fn too_little_space_is_refused_before_the_spool_exists() {
        let (dir, host) = image_root();
        let data_root = Path::new("/var/lib/docker");
        let err = Spool::save(
            &host,
            data_root,
            &nowhere(),
            &inventory(u64::MAX / 4),
            MIN_IDLE,
        )
        .err()
        .unwrap();
        assert!(matches!(err, CarryError::Space { .. }), "{err}");
        assert!(!dir.path().join("var/lib/docker").join(SPOOL).exists());
    }

    #[test]
    fn a_failed_save_leaves_no_spool_behind() {
        let (dir, host) = image_root();
        let data_root = Path::new("/var/lib/docker");
        let err = Spool::save(&host, data_root, &nowhere(), &inventory(0), MIN_IDLE)
            .err()
            .unwrap();
        assert!(matches!(err, CarryError::Save { .. }), "{err}");
        assert!(err.to_string().contains("nothing was changed"), "{err}");
        assert!(!dir.path().join("var/lib/docker").join(SPOOL).exists());
    }

    /// Answers one request per connection, in order, reading each whole.
    fn daemon(dir: &Path, answers: Vec<&'static [u8]>) -> std::thread::JoinHandle<Vec<String>> {
        use std::io::Read;
        let listener = std::os::unix::net::UnixListener::bind(dir.join("d.sock")).unwrap();
        std::thread::spawn(move || {
            let mut heads = Vec::new();
            for answer in answers {
                let (mut conn, _) = listener.accept().unwrap();
                let mut seen = Vec::new();
                let mut buf = [0u8; 65536];
                loop {
                    let n = conn.read(&mut buf).unwrap();
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).into_owned();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    if n == 0 || seen.len() >= end + 4 + len {
                        heads.push(text[..end].to_owned());
                        break;
                    }
                }
                conn.write_all(answer).unwrap();
            }
            heads
        })
    }

    #[test]
    fn a_failed_load_keeps_the_spool_and_says_how_to_retry_a_good_one_removes_it() {
        let (dir, host) = image_root();
        let data_root = Path::new("/var/lib/docker");
        let spool_dir = dir.path().join("var/lib/docker").join(SPOOL);
        let server = daemon(
            dir.path(),
            vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\ntarbytes\r\n0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n{\"errorDetail\":{},\"error\":\"disk is full\"}\n",
            ],
        );
        let api = DockerApi::new(dir.path().join("d.sock"), Duration::from_secs(5));
        let (spool, bytes) = Spool::save(&host, data_root, &api, &inventory(0), MIN_IDLE).unwrap();
        assert_eq!(bytes, 8);
        let err = spool.load(&api, &inventory(0), MIN_IDLE).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("disk is full"), "{message}");
        assert!(
            message.contains(&format!("docker load -i {}/{IMAGES}", spool_dir.display())),
            "{message}"
        );
        assert_eq!(std::fs::read(spool_dir.join(IMAGES)).unwrap(), b"tarbytes");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&spool_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o700);
        let heads = server.join().unwrap();
        assert!(
            heads[0].starts_with("GET /images/get?names=busybox%3Alatest "),
            "{heads:?}"
        );
        assert!(
            heads[1].starts_with("POST /images/load?quiet=1 "),
            "{heads:?}"
        );

        std::fs::remove_dir_all(&spool_dir).unwrap();
        std::fs::remove_file(dir.path().join("d.sock")).unwrap();
        let server = daemon(
            dir.path(),
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntar",
                b"HTTP/1.1 200 OK\r\nContent-Length: 43\r\n\r\n{\"stream\":\"Loaded image: busybox:latest\\n\"}",
            ],
        );
        let (spool, _) = Spool::save(&host, data_root, &api, &inventory(0), MIN_IDLE).unwrap();
        let report = spool.load(&api, &inventory(0), MIN_IDLE).unwrap();
        assert_eq!(report.loaded, ["busybox:latest"]);
        assert!(!spool_dir.exists(), "the spool is removed once loaded");
        server.join().unwrap();
    }

    #[test]
    fn load_answers_give_tags_or_the_error() {
        let ok =
            br#"{"stream":"Loaded image: busybox:latest\n"}{"stream":"Loaded image: a/b:1\n"}"#;
        assert_eq!(load_messages(ok).unwrap(), ["busybox:latest", "a/b:1"]);
        let bad = br#"{"errorDetail":{"message":"no space"},"error":"no space"}"#;
        assert_eq!(load_messages(bad).unwrap_err(), "no space");
        assert_eq!(query_escape("reg:5000/a/b:1"), "reg%3A5000%2Fa%2Fb%3A1");
    }
}
