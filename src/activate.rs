//! Making a configuration live: checks before dockerd is restarted, the
//! restart, proof from the daemon itself, and the roll-back when that
//! proof does not come.

use std::io::{Seek, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::daemon::api::{ApiError, ContainerSummary, DaemonInfo, DockerApi};
use crate::daemon::flags::{self, FlagSource};
use crate::daemon::service::{self, Action as ServiceAction, ServiceError, ServiceManager};
use crate::files::atomic;
use crate::host::{Host, HostError, Snapshot};
use crate::phases::Phases;

/// Log lines quoted from dockerd when it fails.
const LOG_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error(
        "{} already passes {} to dockerd (line {}); dockerd refuses a setting given both as a flag and in daemon.json; \
         remove the flag there and run again (nothing was changed)",
        .0.file.display(), .0.flag, .0.line
    )]
    FlagConflict(FlagSource),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(
        "{count} running container{s} would stop and be hidden by the restart: {names}; \
         stop them first or pass --yes (nothing was changed)",
        s = if *.count == 1 { "" } else { "s" }
    )]
    Running { count: usize, names: String },
    #[error("running {command}: {message}")]
    Restart { command: String, message: String },
    #[error("{0}")]
    Verify(String),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(
        "{cause}\n{rollback}{logs}",
        logs = .logs.as_deref().map(|l| format!("\ndockerd's last log lines:\n{l}")).unwrap_or_default()
    )]
    RolledBack {
        cause: String,
        rollback: String,
        logs: Option<String>,
    },
}

impl ActivateError {
    /// The line of a unit or environment file that passes a conflicting
    /// flag; no other failure here is about a position in a file.
    pub fn location(&self) -> Option<crate::error::Location> {
        match self {
            ActivateError::FlagConflict(source) => Some(crate::error::Location {
                file: source.file.clone(),
                line: source.line,
                column: None,
            }),
            ActivateError::Service(_)
            | ActivateError::Api(_)
            | ActivateError::Running { .. }
            | ActivateError::Restart { .. }
            | ActivateError::Verify(_)
            | ActivateError::Host(_)
            | ActivateError::RolledBack { .. } => None,
        }
    }
}

/// What the daemon must show once restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Remapped {
        uid: u64,
        gid: u64,
        /// The real path of the data root: dockerd resolves its links
        /// before it appends `<uid>.<gid>`.
        data_root: PathBuf,
    },
    NotRemapped,
}

impl Expect {
    /// What a remapping to `uid`:`gid` must show, on the real path of
    /// `data_root` (resolved only on the live host, where the daemon is).
    pub fn remapped(host: &Host, uid: u64, gid: u64, data_root: &Path) -> Expect {
        let real = host
            .is_live()
            .then(|| std::fs::canonicalize(data_root).ok())
            .flatten();
        Expect::Remapped {
            uid,
            gid,
            data_root: real.unwrap_or_else(|| data_root.to_owned()),
        }
    }

    pub fn met_by(&self, info: &DaemonInfo) -> bool {
        match self {
            Expect::NotRemapped => !info.userns_active(),
            Expect::Remapped {
                uid,
                gid,
                data_root,
            } => {
                let suffix = format!("{uid}.{gid}");
                info.userns_active()
                    && Path::new(&info.docker_root_dir) == data_root.join(&suffix)
                    // Engine 27+ names the namespace; 26 remaps it unreported.
                    && info
                        .containers_namespace()
                        .is_none_or(|ns| ns.ends_with(&format!("-{suffix}")))
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Expect::NotRemapped => "no name=userns in SecurityOptions".into(),
            Expect::Remapped {
                uid,
                gid,
                data_root,
            } => format!(
                "name=userns in SecurityOptions, DockerRootDir {} and (where /info reports it) \
                 the containerd namespace moby-{uid}.{gid}",
                data_root.join(format!("{uid}.{gid}")).display()
            ),
        }
    }
}

/// How to reach and restart the daemon.
pub struct Daemon {
    pub manager: ServiceManager,
    pub api: DockerApi,
    pub timeout: Duration,
    root: PathBuf,
    /// `--stop-command`, for a custom manager that can only restart.
    stop_command: Option<String>,
}

impl Daemon {
    pub fn new(
        host: &Host,
        restart_command: Option<&str>,
        socket: PathBuf,
        timeout: Duration,
    ) -> Result<Self, ActivateError> {
        Ok(Daemon {
            manager: service::detect(host.root(), restart_command)?,
            api: DockerApi::new(socket, Duration::from_secs(5).min(timeout)),
            timeout,
            root: host.root().to_owned(),
            stop_command: None,
        })
    }

    /// The daemon to restart and verify, unless `--no-restart` or `--root`
    /// (an image root has no running daemon).
    pub fn managed(
        host: &Host,
        global: &crate::request::Global,
        restart: bool,
    ) -> Result<Option<Self>, ActivateError> {
        if !host.is_live() || !restart {
            return Ok(None);
        }
        let env = std::env::var("DOCKER_HOST").ok();
        let socket = crate::daemon::api::resolve_socket(global.socket.as_deref(), env.as_deref())?;
        let mut daemon = Daemon::new(
            host,
            global.restart_command.as_deref(),
            socket,
            global.timeout,
        )?;
        daemon.stop_command = global.stop_command.clone();
        Ok(Some(daemon))
    }

    /// Stops dockerd and waits until its socket no longer answers.
    pub fn stop(&self) -> Result<(), ActivateError> {
        let invocation = match (&self.manager, &self.stop_command) {
            (_, Some(command)) => ServiceManager::Custom {
                argv: service::split_words(command)?,
            }
            .command(&self.root, ServiceAction::Restart)?,
            (ServiceManager::Custom { .. }, None) => {
                return Err(ActivateError::Verify(
                    "--migrate must stop dockerd: with --restart-command, also give --stop-command"
                        .into(),
                ));
            }
            (manager, None) => manager.command(&self.root, ServiceAction::Stop)?,
        };
        run(&invocation)?;
        let deadline = Instant::now() + self.timeout;
        while self.api.ping().is_ok() {
            if Instant::now() >= deadline {
                return Err(ActivateError::Verify(format!(
                    "dockerd still answers on {} after `{invocation}`",
                    self.api.socket().display()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// What the daemon says now, or `None` when it does not answer.
    pub fn observe(&self) -> Option<DaemonInfo> {
        self.api.info().ok()
    }

    pub fn restart_command(&self) -> Result<String, ActivateError> {
        Ok(self
            .manager
            .command(&self.root, ServiceAction::Restart)?
            .to_string())
    }

    /// Restarts dockerd and waits until it shows `expect`.
    pub fn restart_and_verify(&self, expect: &Expect) -> Result<DaemonInfo, ActivateError> {
        self.restart_and_verify_timed(expect, &mut Phases::default())
    }

    /// [`Daemon::restart_and_verify`], counting the restart command as
    /// `start` and the wait until dockerd shows `expect` as `verify`.
    pub fn restart_and_verify_timed(
        &self,
        expect: &Expect,
        phases: &mut Phases,
    ) -> Result<DaemonInfo, ActivateError> {
        phases.time("start", || self.restart())?;
        crate::failpoint::hit("daemon.after_restart");
        phases.time("verify", || self.wait_for(expect))
    }

    fn restart(&self) -> Result<(), ActivateError> {
        run(&self.manager.command(&self.root, ServiceAction::Restart)?)
    }

    /// Polls until the daemon answers and shows `expect`: a restart command
    /// may return before the new daemon is up, or while the old one still
    /// answers.
    fn wait_for(&self, expect: &Expect) -> Result<DaemonInfo, ActivateError> {
        let deadline = Instant::now() + self.timeout;
        let mut last = None;
        loop {
            if self.api.wait_ready(deadline).is_ok() {
                if let Ok(info) = self.api.info() {
                    if expect.met_by(&info) {
                        return Ok(info);
                    }
                    last = Some(info);
                }
            }
            if Instant::now() >= deadline {
                let seen = match last {
                    None => format!("dockerd did not answer on {}", self.api.socket().display()),
                    Some(info) => format!(
                        "dockerd answers with SecurityOptions {:?}, DockerRootDir {:?} and containerd namespace {:?}",
                        info.security_options,
                        info.docker_root_dir,
                        info.containers_namespace().unwrap_or("(not reported)")
                    ),
                };
                return Err(ActivateError::Verify(format!(
                    "after {:?}, expected {}; {seen}",
                    self.timeout,
                    expect.describe()
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn last_logs(&self) -> Option<String> {
        service::last_log_lines(&self.root, &self.manager, LOG_LINES)
    }
}

/// Runs a service command and fails with its stderr when it fails.
fn run(invocation: &service::Invocation) -> Result<(), ActivateError> {
    let output = invocation
        .command()
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ActivateError::Restart {
            command: invocation.to_string(),
            message: e.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(ActivateError::Restart {
        command: invocation.to_string(),
        message: format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    })
}

/// Refuses when a key about to be set in daemon.json is also a flag.
pub fn refuse_flag_conflicts(host: &Host, keys: &[&str]) -> Result<(), ActivateError> {
    let found = flags::scan(host)
        .map_err(|e| ActivateError::Verify(format!("cannot read how dockerd is started: {e}")))?;
    match flags::conflicts(&found, keys).into_iter().next() {
        Some(conflict) => Err(ActivateError::FlagConflict(conflict)),
        None => Ok(()),
    }
}

/// Refuses a restart that would stop running containers, unless allowed.
pub fn refuse_running(containers: &[ContainerSummary], allowed: bool) -> Result<(), ActivateError> {
    let running: Vec<&ContainerSummary> =
        containers.iter().filter(|c| c.state == "running").collect();
    if running.is_empty() || allowed {
        return Ok(());
    }
    let names: Vec<String> = running
        .iter()
        .map(|c| {
            c.names.first().map_or_else(
                || c.id.chars().take(12).collect(),
                |n| n.trim_start_matches('/').to_owned(),
            )
        })
        .collect();
    Err(ActivateError::Running {
        count: running.len(),
        names: names.join(", "),
    })
}

/// Puts daemon.json back byte for byte (or removes it if it did not
/// exist), restarts dockerd and checks it answers; returns the failure
/// with what the roll-back did.
pub fn roll_back(
    host: &Host,
    daemon: &Daemon,
    config_path: &Path,
    original: Option<&Snapshot>,
    cause: ActivateError,
) -> ActivateError {
    let logs = daemon.last_logs();
    let restored = restore(host, config_path, original);
    let rollback = match restored {
        Err(e) => format!(
            "roll-back FAILED: could not restore {}: {e:#}",
            host.display(config_path).display()
        ),
        Ok(()) => match daemon.restart().and_then(|()| {
            daemon
                .api
                .wait_ready(Instant::now() + daemon.timeout)
                .map_err(Into::into)
        }) {
            Ok(()) => format!(
                "rolled back: {} restored byte for byte and dockerd answers again",
                host.display(config_path).display()
            ),
            Err(e) => format!(
                "rolled back {} byte for byte, but dockerd does not answer after the restart: {e:#}",
                host.display(config_path).display()
            ),
        },
    };
    ActivateError::RolledBack {
        cause: format!("{cause:#}"),
        rollback,
        logs,
    }
}

fn restore(host: &Host, path: &Path, original: Option<&Snapshot>) -> Result<(), HostError> {
    let current = host.read(path)?;
    match original {
        Some(snapshot) => {
            let job = atomic::Replace {
                path,
                bytes: &snapshot.bytes,
                previous: current.as_ref(),
                backup: None,
            };
            atomic::replace(host, &job)
        }
        None => atomic::remove(host, path),
    }
}

/// Engine 23 added `dockerd --validate`.
const VALIDATE_SINCE: u32 = 23;
/// From Engine 26, `--validate` also sets up userns-remap: for `"default"`
/// it creates dockremap and its subordinate ranges when they are missing.
const VALIDATE_USERNS_SINCE: u32 = 26;

/// The live host's dockerd, which can check a daemon.json without starting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validator {
    pub dockerd: PathBuf,
    pub major: u32,
}

impl Validator {
    /// Whether `--validate` acts on userns-remap: then it must only ever
    /// see a remap account that already exists with its ranges, or it
    /// creates them itself.
    pub fn checks_userns(&self) -> bool {
        self.major >= VALIDATE_USERNS_SINCE
    }
}

/// The dockerd to validate with, when it has `--validate` (Engine 23+):
/// the running daemon's binary, else the one installed (see
/// [`crate::daemon::binary`]). Never under `--root`: an image's dockerd is
/// the image's program.
pub fn dockerd_validates(
    host: &Host,
    api: Option<&DockerApi>,
    pidfile: Option<&Path>,
) -> Option<Validator> {
    let dockerd = crate::daemon::binary::locate(host, api, pidfile)?;
    let major = dockerd.major(host, api)?;
    (major >= VALIDATE_SINCE).then_some(Validator {
        dockerd: dockerd.path,
        major,
    })
}

/// Runs `dockerd --validate` on `text`. The text is handed over as a
/// sealed memfd on dockerd's standard input: a file with no path, so no
/// one can plant a link where it is written or swap it before dockerd
/// reads it.
pub fn validate_with_dockerd(
    host: &Host,
    validator: &Validator,
    path: &Path,
    text: &str,
) -> Result<(), ActivateError> {
    let input = sealed_memfd(text.as_bytes()).map_err(|e| {
        ActivateError::Verify(format!(
            "cannot hand the new {} to dockerd --validate: {e}",
            path.display()
        ))
    })?;
    let args = [
        "--validate".into(),
        "--config-file".into(),
        "/proc/self/fd/0".into(),
    ];
    host.runner()
        .run_with_input(&validator.dockerd, &args, input)
        .map(drop)
        .map_err(|e| {
            ActivateError::Verify(format!(
                "dockerd --validate rejects the new {} (given on its standard input): {e}",
                path.display()
            ))
        })
}

/// An anonymous in-memory file holding `bytes`, sealed against change.
fn sealed_memfd(bytes: &[u8]) -> std::io::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create(
        "docker-userns-daemon.json",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    let seals = SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL;
    rustix::fs::fcntl_add_seals(&file, seals)?;
    // Read from the start whether reopened through /proc or read as is.
    file.rewind()?;
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    fn info(root_dir: &str, namespace: Option<&str>) -> DaemonInfo {
        let containerd = namespace.map(|ns| {
            serde_json::from_value(serde_json::json!({"Namespaces": {"Containers": ns}})).unwrap()
        });
        DaemonInfo {
            security_options: vec!["name=seccomp,profile=builtin".into(), "name=userns".into()],
            docker_root_dir: root_dir.into(),
            containerd,
            ..DaemonInfo::default()
        }
    }

    fn remapped(data_root: &str) -> Expect {
        Expect::Remapped {
            uid: 100000,
            gid: 100000,
            data_root: data_root.into(),
        }
    }

    #[test]
    fn the_remapped_root_must_be_exactly_under_the_data_root() {
        let expect = remapped("/var/lib/docker");
        assert!(expect.met_by(&info("/var/lib/docker/100000.100000", None)));
        assert!(!expect.met_by(&info("/var/lib/docker/100000.100001", None)));
        assert!(!expect.met_by(&info("/srv/docker/100000.100000", None)));
        assert!(!expect.met_by(&info("/var/lib/docker", None)));
    }

    #[test]
    fn a_reported_containerd_namespace_must_be_the_remapped_one() {
        let expect = remapped("/var/lib/docker");
        let root = "/var/lib/docker/100000.100000";
        assert!(expect.met_by(&info(root, Some("moby-100000.100000"))));
        assert!(!expect.met_by(&info(root, Some("moby"))));
        assert!(!expect.met_by(&info(root, Some("moby-200000.200000"))));
    }

    #[test]
    fn a_symlinked_data_root_is_expected_at_its_real_path() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let host = Host::open(Path::new("/"), Box::new(crate::host::SystemRunner)).unwrap();
        let expect = Expect::remapped(&host, 100000, 100000, &link);
        let real_root = real.canonicalize().unwrap().join("100000.100000");
        assert!(expect.met_by(&info(real_root.to_str().unwrap(), None)));
        let via_link = link.join("100000.100000");
        assert!(!expect.met_by(&info(via_link.to_str().unwrap(), None)));
    }

    #[test]
    fn the_candidate_is_a_sealed_file_without_a_name() {
        let fd = sealed_memfd(b"{}\n").unwrap();
        let mut file = std::fs::File::from(fd);
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "{}\n");
        assert!(file.write_all(b"x").is_err(), "sealed against writes");
        let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
        assert!(link.to_string_lossy().starts_with("/memfd:"), "{link:?}");
    }
}
