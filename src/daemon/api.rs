//! The Docker Engine API on its unix socket: where the socket is, the
//! read-only calls docker-userns needs (`/_ping`, `/info`,
//! `/containers/json`, `/containers/{id}/json`) and the Docker types they
//! answer with. Every request opens a fresh connection with
//! `Connection: close`, and one deadline bounds connect, write and read
//! (the framing is in `http`).

use std::io::{self, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::http::{self, DeadlineStream, HttpError, Response};
use crate::paths::DEFAULT_SOCKET;

const POLL_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{value:?} is not a Docker unix socket address: {reason}")]
    Host { value: String, reason: String },
    #[error("cannot connect to the Docker socket {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sending a request to the Docker socket {path}: {source}")]
    Send {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the answer to GET {target} from {path}: {source}")]
    Http {
        path: PathBuf,
        target: String,
        #[source]
        source: HttpError,
    },
    #[error("GET {target} on {path} answered HTTP {status}: {message}")]
    Status {
        path: PathBuf,
        target: String,
        status: u16,
        message: String,
    },
    #[error("unexpected answer to GET {target} from {path}: {reason}")]
    Unexpected {
        path: PathBuf,
        target: String,
        reason: String,
    },
    #[error("dockerd did not answer on {path} in time; last error: {last}")]
    NotReady { path: PathBuf, last: Box<ApiError> },
    /// A streaming or non-GET request (see `transfer`).
    #[error("{method} {target} on {path}: {reason}")]
    Transfer {
        method: &'static str,
        path: PathBuf,
        target: String,
        reason: String,
    },
}

/// The parts of `GET /info` that matter for remapping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DaemonInfo {
    #[serde(rename = "ID", default, deserialize_with = "null_as_default")]
    pub(crate) id: String,
    #[serde(
        rename = "ServerVersion",
        default,
        deserialize_with = "null_as_default"
    )]
    pub(crate) server_version: String,
    #[serde(
        rename = "SecurityOptions",
        default,
        deserialize_with = "null_as_default"
    )]
    pub security_options: Vec<String>,
    #[serde(
        rename = "DockerRootDir",
        default,
        deserialize_with = "null_as_default"
    )]
    pub docker_root_dir: String,
    #[serde(
        rename = "LiveRestoreEnabled",
        default,
        deserialize_with = "null_as_default"
    )]
    pub(crate) live_restore_enabled: bool,
    #[serde(rename = "Driver", default, deserialize_with = "null_as_default")]
    pub(crate) driver: String,
    /// `[name, value]` pairs; the containerd image store shows
    /// `["driver-type", "io.containerd.snapshotter.v1"]`.
    #[serde(rename = "DriverStatus", default, deserialize_with = "null_as_default")]
    pub(crate) driver_status: Vec<Vec<String>>,
    /// Engine 27+; `None` before.
    #[serde(rename = "Containerd", default)]
    pub(crate) containerd: Option<ContainerdInfo>,
}

/// `Containerd` in `GET /info` (Engine 27+).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct ContainerdInfo {
    #[serde(rename = "Namespaces", default)]
    pub(crate) namespaces: Option<ContainerdNamespaces>,
}

/// The containerd namespaces the daemon uses; a remapped one appends
/// `-<uid>.<gid>` to both (Engine 26+).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct ContainerdNamespaces {
    #[serde(rename = "Containers", default, deserialize_with = "null_as_default")]
    pub(crate) containers: String,
    #[serde(rename = "Plugins", default, deserialize_with = "null_as_default")]
    pub(crate) plugins: String,
}

impl DaemonInfo {
    /// Whether the running daemon reports user-namespace remapping.
    ///
    /// Entries look like `name=seccomp,profile=default`; daemons older than
    /// API 1.26 listed bare names such as `userns`, which are accepted too.
    pub fn userns_active(&self) -> bool {
        self.security_options
            .iter()
            .any(|opt| security_option_name(opt) == Some("userns"))
    }

    /// The containerd namespace of containers, when /info reports it.
    pub fn containers_namespace(&self) -> Option<&str> {
        let name = &self.containerd.as_ref()?.namespaces.as_ref()?.containers;
        (!name.is_empty()).then_some(name.as_str())
    }

    /// The `<uid>.<gid>` that a remapping daemon appends to its data root.
    pub fn remapped_suffix(&self) -> Option<(u32, u32)> {
        let last = Path::new(&self.docker_root_dir).file_name()?.to_str()?;
        let (uid, gid) = last.split_once('.')?;
        Some((parse_id(uid)?, parse_id(gid)?))
    }
}

fn security_option_name(option: &str) -> Option<&str> {
    if !option.contains('=') {
        return Some(option);
    }
    option
        .split(',')
        .find_map(|field| field.strip_prefix("name="))
}

fn parse_id(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct ContainerSummary {
    #[serde(rename = "Id", default, deserialize_with = "null_as_default")]
    pub(crate) id: String,
    #[serde(rename = "Names", default, deserialize_with = "null_as_default")]
    pub(crate) names: Vec<String>,
    #[serde(rename = "State", default, deserialize_with = "null_as_default")]
    pub(crate) state: String,
    #[serde(rename = "Image", default, deserialize_with = "null_as_default")]
    pub(crate) image: String,
}

// The Engine sends `null` instead of `[]` or `""` in several fields.
/// `GET /containers/{id}/json`, reduced to what remapping changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct ContainerDetails {
    #[serde(rename = "Id", default, deserialize_with = "null_as_default")]
    pub(crate) id: String,
    #[serde(rename = "Name", default, deserialize_with = "null_as_default")]
    pub(crate) name: String,
    #[serde(rename = "State", default, deserialize_with = "null_as_default")]
    pub(crate) state: ContainerState,
    #[serde(rename = "Config", default, deserialize_with = "null_as_default")]
    pub(crate) config: ContainerConfig,
    #[serde(rename = "HostConfig", default, deserialize_with = "null_as_default")]
    pub(crate) host_config: HostConfig,
    #[serde(rename = "Mounts", default, deserialize_with = "null_as_default")]
    pub(crate) mounts: Vec<MountPoint>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct ContainerState {
    #[serde(rename = "Running", default)]
    pub(crate) running: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct ContainerConfig {
    #[serde(rename = "User", default, deserialize_with = "null_as_default")]
    pub(crate) user: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct HostConfig {
    #[serde(rename = "Privileged", default)]
    pub(crate) privileged: bool,
    #[serde(rename = "UsernsMode", default, deserialize_with = "null_as_default")]
    pub(crate) userns_mode: String,
    #[serde(rename = "NetworkMode", default, deserialize_with = "null_as_default")]
    pub(crate) network_mode: String,
    #[serde(rename = "PidMode", default, deserialize_with = "null_as_default")]
    pub(crate) pid_mode: String,
    #[serde(rename = "IpcMode", default, deserialize_with = "null_as_default")]
    pub(crate) ipc_mode: String,
    #[serde(rename = "UTSMode", default, deserialize_with = "null_as_default")]
    pub(crate) uts_mode: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct MountPoint {
    #[serde(rename = "Source", default, deserialize_with = "null_as_default")]
    pub(crate) source: String,
    #[serde(rename = "Destination", default, deserialize_with = "null_as_default")]
    pub(crate) destination: String,
    /// `bind`, `volume`, `tmpfs`, ...
    #[serde(rename = "Type", default, deserialize_with = "null_as_default")]
    pub(crate) kind: String,
    #[serde(rename = "RW", default)]
    pub(crate) rw: bool,
}

impl ContainerDetails {
    pub(crate) fn display_name(&self) -> String {
        let name = self.name.trim_start_matches('/');
        if name.is_empty() {
            self.id.chars().take(12).collect()
        } else {
            name.to_owned()
        }
    }

    /// Host namespaces shared, by name (`net`, `pid`, `ipc`, `uts`).
    pub(crate) fn host_namespaces(&self) -> Vec<&'static str> {
        let h = &self.host_config;
        [
            ("net", &h.network_mode),
            ("pid", &h.pid_mode),
            ("ipc", &h.ipc_mode),
            ("uts", &h.uts_mode),
        ]
        .into_iter()
        .filter(|(_, mode)| mode.as_str() == "host")
        .map(|(name, _)| name)
        .collect()
    }

    /// True when the process runs as uid 0 inside (no user, or root/0).
    pub(crate) fn runs_as_root(&self) -> bool {
        let user = self.config.user.split(':').next().unwrap_or("");
        user.is_empty() || user == "root" || user == "0"
    }

    pub(crate) fn mounts_docker_socket(&self) -> bool {
        self.mounts
            .iter()
            .any(|m| m.source.ends_with("/docker.sock"))
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Turns a `--host`/`DOCKER_HOST` value into a socket path. Only
/// `unix:///abs/path` is accepted: remapping has to be changed on the
/// machine that runs dockerd, so remote endpoints are refused.
pub(crate) fn parse_host(value: &str) -> Result<PathBuf, ApiError> {
    let fail = |reason: &str| ApiError::Host {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if let Some(path) = value.strip_prefix("unix://") {
        if path.is_empty() {
            return Ok(PathBuf::from(DEFAULT_SOCKET));
        }
        if !path.starts_with('/') {
            return Err(fail(
                "the socket path must be absolute, as in unix:///var/run/docker.sock",
            ));
        }
        return Ok(PathBuf::from(path));
    }
    match value.split_once("://") {
        Some((scheme, _)) => Err(fail(&format!(
            "{scheme}:// endpoints are not supported; run docker-userns on the Docker host \
             and give the local socket as unix:///path/to/docker.sock"
        ))),
        None => Err(fail("expected unix:///path/to/docker.sock")),
    }
}

/// The socket to use: the `--host` flag wins over `DOCKER_HOST`, and an
/// empty `DOCKER_HOST` counts as unset, as the Docker CLI treats it.
pub(crate) fn resolve_socket(flag: Option<&str>, env: Option<&str>) -> Result<PathBuf, ApiError> {
    match flag.or(env.filter(|v| !v.is_empty())) {
        Some(value) => parse_host(value),
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
    }
}

/// A Docker Engine API endpoint on a unix socket.
#[derive(Debug, Clone)]
pub struct DockerApi {
    socket: PathBuf,
    timeout: Duration,
}

impl DockerApi {
    /// `timeout` bounds each whole request: connect, send and receive.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        DockerApi {
            socket: socket.into(),
            timeout,
        }
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    pub(super) fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// `GET /_ping`, which answers `OK` once the daemon serves requests.
    pub fn ping(&self) -> Result<(), ApiError> {
        let target = "/_ping";
        let response = self.get(target, self.timeout)?;
        let body = String::from_utf8_lossy(&response.body);
        if body.trim() != "OK" {
            return Err(self.unexpected(
                target,
                format!("expected OK, got {:?}", http::truncate(&body)),
            ));
        }
        Ok(())
    }

    pub fn info(&self) -> Result<DaemonInfo, ApiError> {
        self.get_json("/info")
    }

    pub(crate) fn containers(&self, all: bool) -> Result<Vec<ContainerSummary>, ApiError> {
        self.get_json(if all {
            "/containers/json?all=1"
        } else {
            "/containers/json"
        })
    }

    /// One container's settings that matter under remapping. The id comes
    /// from the daemon's own list, so it needs no escaping in the path.
    pub(crate) fn inspect(&self, id: &str) -> Result<ContainerDetails, ApiError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(self.unexpected(
                "/containers/{id}/json",
                format!("{id:?} is not a container id"),
            ));
        }
        self.get_json(&format!("/containers/{id}/json"))
    }

    /// Polls `/_ping` until it answers or `deadline` passes; the error then
    /// carries the last failure, which usually says why (no socket, refused).
    pub fn wait_ready(&self, deadline: Instant) -> Result<(), ApiError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = DockerApi::new(&self.socket, self.timeout.min(left));
            let last = match attempt.ping() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ApiError::NotReady {
                    path: self.socket.clone(),
                    last: Box::new(last),
                });
            }
            thread::sleep(POLL_INTERVAL.min(left));
        }
    }

    fn get_json<T: DeserializeOwned>(&self, target: &str) -> Result<T, ApiError> {
        let response = self.get(target, self.timeout)?;
        serde_json::from_slice(&response.body).map_err(|e| self.unexpected(target, e.to_string()))
    }

    fn get(&self, target: &str, timeout: Duration) -> Result<Response, ApiError> {
        let deadline = Instant::now() + timeout;
        let stream = self.connect(timeout)?;
        let mut stream = DeadlineStream::new(stream, deadline);
        let request = http::request_head("GET", target, None, 0);
        stream
            .write_all(request.as_bytes())
            .and_then(|()| stream.flush())
            .map_err(|source| ApiError::Send {
                path: self.socket.clone(),
                source,
            })?;
        let response =
            http::read_response(BufReader::new(stream)).map_err(|source| ApiError::Http {
                path: self.socket.clone(),
                target: target.to_string(),
                source,
            })?;
        self.check_status(target, response)
    }

    pub(super) fn connect(&self, timeout: Duration) -> Result<UnixStream, ApiError> {
        http::connect(self.socket.clone(), timeout).map_err(|source| ApiError::Connect {
            path: self.socket.clone(),
            source,
        })
    }

    fn check_status(&self, target: &str, response: Response) -> Result<Response, ApiError> {
        if (200..300).contains(&response.status) {
            return Ok(response);
        }
        Err(ApiError::Status {
            path: self.socket.clone(),
            target: target.to_string(),
            status: response.status,
            message: error_message(&response.body),
        })
    }

    fn unexpected(&self, target: &str, reason: String) -> ApiError {
        ApiError::Unexpected {
            path: self.socket.clone(),
            target: target.to_string(),
            reason,
        }
    }
}

/// Docker errors are `{"message": "..."}`; anything else is shown as text.
pub(super) fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        message: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => e.message,
        Err(_) => http::truncate(String::from_utf8_lossy(body).trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;
    use std::sync::{Arc, Mutex};

    fn parse(bytes: &[u8]) -> Result<Response, HttpError> {
        http::read_response(bytes)
    }

    #[test]
    fn error_status_is_parsed_like_any_other() {
        let raw = b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
                    Content-Length: 32\r\n\r\n{\"message\":\"page not found\"}\n\n\n\n";
        let r = parse(raw).unwrap();
        assert_eq!(r.status, 500);
        assert_eq!(error_message(&r.body), "page not found");
        assert_eq!(error_message(b"  plain text\n"), "plain text");
    }

    #[test]
    fn userns_is_read_from_the_name_field() {
        let mut info = DaemonInfo {
            security_options: vec![
                "name=seccomp,profile=default".into(),
                "name=cgroupns".into(),
            ],
            docker_root_dir: "/var/lib/docker".into(),
            ..DaemonInfo::default()
        };
        assert!(!info.userns_active());
        assert_eq!(info.remapped_suffix(), None);
        info.security_options.push("name=userns".into());
        info.docker_root_dir = "/var/lib/docker/231072.231072".into();
        assert!(info.userns_active());
        assert_eq!(info.remapped_suffix(), Some((231072, 231072)));
        let old = DaemonInfo {
            security_options: vec!["apparmor".into(), "userns".into()],
            ..DaemonInfo::default()
        };
        assert!(old.userns_active());
        let lookalike = DaemonInfo {
            security_options: vec!["name=seccomp,profile=userns".into(), "name=usernsx".into()],
            ..DaemonInfo::default()
        };
        assert!(!lookalike.userns_active());
    }

    #[test]
    fn remapped_suffix_needs_two_plain_numbers() {
        for dir in [
            "/d/100000",
            "/d/1.2.3",
            "/d/+1.2",
            "/d/1.",
            "/d/4294967296.1",
            "",
        ] {
            let info = DaemonInfo {
                docker_root_dir: dir.into(),
                ..DaemonInfo::default()
            };
            assert_eq!(info.remapped_suffix(), None, "{dir}");
        }
    }

    #[test]
    fn info_tolerates_nulls_and_extra_fields() {
        let info: DaemonInfo = serde_json::from_str(
            r#"{"ID":"X:Y","Containers":3,"SecurityOptions":null,"ServerVersion":"20.10.24+dfsg1","DockerRootDir":"/var/lib/docker"}"#,
        )
        .unwrap();
        assert_eq!(info.id, "X:Y");
        assert!(info.security_options.is_empty());
        assert_eq!(info.server_version, "20.10.24+dfsg1");
    }

    #[test]
    fn host_values() {
        assert_eq!(
            parse_host("unix:///run/d.sock").unwrap(),
            PathBuf::from("/run/d.sock")
        );
        assert_eq!(
            parse_host("unix://").unwrap(),
            PathBuf::from(DEFAULT_SOCKET)
        );
        for bad in [
            "tcp://1.2.3.4:2375",
            "ssh://me@host",
            "fd://",
            "unix://rel.sock",
            "/run/d.sock",
        ] {
            assert!(
                matches!(parse_host(bad), Err(ApiError::Host { .. })),
                "{bad}"
            );
        }
        let err = parse_host("tcp://x:2376").unwrap_err().to_string();
        assert!(err.contains("tcp:// endpoints are not supported"), "{err}");
        assert_eq!(
            resolve_socket(None, None).unwrap(),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert_eq!(
            resolve_socket(None, Some("")).unwrap(),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert_eq!(
            resolve_socket(None, Some("unix:///e")).unwrap(),
            PathBuf::from("/e")
        );
        assert_eq!(
            resolve_socket(Some("unix:///f"), Some("unix:///e")).unwrap(),
            PathBuf::from("/f")
        );
    }

    /// Serves canned responses, one per connection, recording requests.
    struct Server {
        dir: tempfile::TempDir,
        requests: Arc<Mutex<Vec<String>>>,
    }

    impl Server {
        fn start(responses: Vec<&'static [u8]>) -> Server {
            let dir = tempfile::tempdir().unwrap();
            let listener = UnixListener::bind(dir.path().join("docker.sock")).unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let seen = Arc::clone(&requests);
            thread::spawn(move || {
                for response in responses {
                    let Ok((mut conn, _)) = listener.accept() else {
                        return;
                    };
                    seen.lock().unwrap().push(read_request(&mut conn));
                    let _ = conn.write_all(response);
                }
            });
            Server { dir, requests }
        }

        fn api(&self) -> DockerApi {
            DockerApi::new(self.dir.path().join("docker.sock"), Duration::from_secs(5))
        }
    }

    fn read_request(conn: &mut UnixStream) -> String {
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
            seen.push(byte[0]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    }

    #[test]
    fn client_pings_and_reads_info_and_containers() {
        let server = Server::start(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              1e\r\n{\"SecurityOptions\":[\"name=user\r\n\
              2b\r\nns\"],\"DockerRootDir\":\"/var/lib/docker/5.6\"}\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n[{\"Id\":\"abc\",\"Names\":[\"/x\"],\"State\":\"running\",\"Image\":\"busybox\"}]",
        ]);
        let api = server.api();
        api.ping().unwrap();
        let info = api.info().unwrap();
        assert!(info.userns_active());
        assert_eq!(info.remapped_suffix(), Some((5, 6)));
        let containers = api.containers(true).unwrap();
        assert_eq!(containers[0].names, ["/x"]);
        assert_eq!(containers[0].state, "running");
        let requests = server.requests.lock().unwrap();
        assert!(
            requests[0].starts_with("GET /_ping HTTP/1.1\r\n"),
            "{}",
            requests[0]
        );
        assert!(requests[0].contains("\r\nHost: docker\r\n"));
        assert!(requests[2].starts_with("GET /containers/json?all=1 HTTP/1.1\r\n"));
    }

    #[test]
    fn client_reports_docker_error_messages() {
        let server = Server::start(vec![
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 27\r\n\r\n{\"message\":\"daemon is ill\"}",
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nNOPE",
        ]);
        let api = server.api();
        match api.info() {
            Err(ApiError::Status {
                status, message, ..
            }) => {
                assert_eq!(status, 500);
                assert_eq!(message, "daemon is ill");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(api.ping(), Err(ApiError::Unexpected { .. })));
    }

    #[test]
    fn silent_server_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let api = DockerApi::new(&path, Duration::from_millis(300));
        let started = Instant::now();
        let err = api.ping().unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
        assert!(matches!(err, ApiError::Http { .. }), "{err:?}");
        drop(listener);
    }

    #[test]
    fn wait_ready_gives_up_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let api = DockerApi::new(dir.path().join("missing.sock"), Duration::from_secs(1));
        let started = Instant::now();
        let err = api
            .wait_ready(Instant::now() + Duration::from_millis(500))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        match err {
            ApiError::NotReady { last, .. } => assert!(matches!(*last, ApiError::Connect { .. })),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn wait_ready_returns_once_the_daemon_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let late = path.clone();
        let server = thread::spawn(move || {
            thread::sleep(Duration::from_millis(400));
            let listener = UnixListener::bind(late).unwrap();
            let (mut conn, _) = listener.accept().unwrap();
            read_request(&mut conn);
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                .unwrap();
        });
        let api = DockerApi::new(&path, Duration::from_secs(1));
        api.wait_ready(Instant::now() + Duration::from_secs(10))
            .unwrap();
        server.join().unwrap();
    }
}
