//! Making a configuration live: checks before dockerd is restarted, the
//! restart, proof from the daemon itself, and the roll-back when that
//! proof does not come.

use std::io::{Seek, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::daemon::api::{ApiError, ContainerSummary, DaemonInfo, DockerApi};
use crate::daemon::control::{ControlError, DaemonControl, SystemDaemon};
use crate::daemon::flags::{self, FlagSource};
use crate::daemon::service::ServiceError;
use crate::files::atomic;
use crate::host::{Host, HostError, Snapshot};
use crate::phases::Phases;

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
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(
        "{count} running container{s} would stop and be hidden by the restart: {names}; \
         stop them first or pass --yes (nothing was changed)",
        s = if *.count == 1 { "" } else { "s" }
    )]
    Running { count: usize, names: String },
    /// A failure after the data was migrated, and what became of that data.
    #[error("{cause:#}\n{undo}")]
    MigrationUndo {
        cause: Box<ActivateError>,
        undo: MigrationUndo,
    },
    /// The restarted daemon did not show what the change promises.
    #[error("after {timeout:?}, expected {expected}; {seen}")]
    NotVerified {
        timeout: Duration,
        expected: String,
        seen: String,
    },
    #[error("cannot read how dockerd is started: {0}")]
    StartupUnreadable(crate::daemon::envfile::ReadError),
    #[error("cannot hand the new {} to dockerd --validate: {cause}", .path.display())]
    ValidateInput {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("dockerd --validate rejects the new {} (given on its standard input): {cause}", .path.display())]
    ValidateRejected {
        path: PathBuf,
        cause: Box<HostError>,
    },
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

/// What a roll-back did with data a failed run had migrated.
#[derive(Debug, thiserror::Error)]
pub enum MigrationUndo {
    #[error(
        "the migrated data was moved back{}",
        cleared_note(.cleared)
    )]
    MovedBack {
        /// What the failed daemon had made where the data went back.
        cleared: Vec<String>,
    },
    /// The daemon that failed may be running on the data: it stays put.
    #[error(
        "the migrated data was NOT moved back, dockerd did not stop: {error:#}; it stays in {}",
        stays.display()
    )]
    NotStopped {
        error: Box<ActivateError>,
        stays: PathBuf,
    },
    #[error("moving the migrated data back FAILED: {error:#}")]
    MoveFailed { error: crate::migrate::MigrateError },
}

/// Names what a roll-back removed to make room for the data.
fn cleared_note(cleared: &[String]) -> String {
    match cleared {
        [] => String::new(),
        names => format!(
            " (in place of what the failed daemon had made there: {})",
            names.join(", ")
        ),
    }
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
            | ActivateError::Control(_)
            | ActivateError::MigrationUndo { .. }
            | ActivateError::NotVerified { .. }
            | ActivateError::StartupUnreadable(_)
            | ActivateError::ValidateInput { .. }
            | ActivateError::ValidateRejected { .. }
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

/// The daemon to restart and verify, and how long it may take.
pub struct Daemon {
    control: Box<dyn DaemonControl>,
    pub timeout: Duration,
}

impl Daemon {
    pub fn new(control: Box<dyn DaemonControl>, timeout: Duration) -> Self {
        Daemon { control, timeout }
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
        let control = SystemDaemon::new(
            host.root(),
            global.restart_command.as_deref(),
            global.stop_command.clone(),
            socket,
            Duration::from_secs(5).min(global.timeout),
        )?;
        Ok(Some(Daemon::new(Box::new(control), global.timeout)))
    }

    /// The API for carrying images and containers; none from a fake.
    pub fn api(&self) -> Option<&DockerApi> {
        self.control.api()
    }

    /// Stops dockerd and waits until its socket no longer answers.
    pub fn stop(&self) -> Result<(), ActivateError> {
        Ok(self.control.stop(self.timeout)?)
    }

    /// What the daemon says now, or `None` when it does not answer.
    pub fn observe(&self) -> Option<DaemonInfo> {
        self.control.info().ok()
    }

    /// The containers running now.
    pub fn running_containers(&self) -> Result<Vec<ContainerSummary>, ActivateError> {
        Ok(self.control.running_containers()?)
    }

    pub fn restart_command(&self) -> Result<String, ActivateError> {
        Ok(self.control.restart_command()?)
    }

    /// Restarts dockerd and waits until it shows `expect`.
    #[cfg(test)]
    pub fn restart_and_verify(&self, expect: &Expect) -> Result<DaemonInfo, ActivateError> {
        self.restart_and_verify_timed(expect, &mut Phases::default())
    }

    /// Restarts dockerd and waits until it shows `expect`, counting the
    /// restart command as `start` and the wait as `verify`.
    pub fn restart_and_verify_timed(
        &self,
        expect: &Expect,
        phases: &mut Phases,
    ) -> Result<DaemonInfo, ActivateError> {
        phases.time("start", || self.control.restart())?;
        crate::failpoint::hit("daemon.after_restart");
        phases.time("verify", || self.wait_for(expect))
    }

    /// Polls until the daemon answers and shows `expect`: a restart command
    /// may return before the new daemon is up, or while the old one still
    /// answers.
    fn wait_for(&self, expect: &Expect) -> Result<DaemonInfo, ActivateError> {
        let deadline = Instant::now() + self.timeout;
        let mut last = None;
        loop {
            if self.control.wait_ready(deadline).is_ok() {
                if let Ok(info) = self.control.info() {
                    if expect.met_by(&info) {
                        return Ok(info);
                    }
                    last = Some(info);
                }
            }
            if Instant::now() >= deadline {
                let seen = match last {
                    None => format!(
                        "dockerd did not answer on {}",
                        self.control.socket().display()
                    ),
                    Some(info) => format!(
                        "dockerd answers with SecurityOptions {:?}, DockerRootDir {:?} and containerd namespace {:?}",
                        info.security_options,
                        info.docker_root_dir,
                        info.containers_namespace().unwrap_or("(not reported)")
                    ),
                };
                return Err(ActivateError::NotVerified {
                    timeout: self.timeout,
                    expected: expect.describe(),
                    seen,
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Restarts the daemon on the configuration put back and waits until
    /// it answers, whatever it shows.
    fn restart_restored(&self) -> Result<(), ActivateError> {
        self.control.restart()?;
        self.control
            .wait_ready(Instant::now() + self.timeout)
            .map_err(Into::into)
    }

    pub fn last_logs(&self) -> Option<String> {
        self.control.last_logs()
    }
}

/// Refuses when a key about to be set in daemon.json is also a flag.
pub fn refuse_flag_conflicts(host: &Host, keys: &[&str]) -> Result<(), ActivateError> {
    let found = flags::scan(host).map_err(ActivateError::StartupUnreadable)?;
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
        Ok(()) => match daemon.restart_restored() {
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
    let input = sealed_memfd(text.as_bytes()).map_err(|cause| ActivateError::ValidateInput {
        path: path.to_owned(),
        cause,
    })?;
    let args = [
        "--validate".into(),
        "--config-file".into(),
        "/proc/self/fd/0".into(),
    ];
    host.runner()
        .run_with_input(&validator.dockerd, &args, input)
        .map(drop)
        .map_err(|cause| ActivateError::ValidateRejected {
            path: path.to_owned(),
            cause: Box::new(cause),
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

    mod rollback {
        use super::*;
        use crate::daemon::api::ContainerSummary;
        use crate::daemon::control::fake::{FakeDaemon, Restart, State};

        const CONFIG: &str = "/etc/docker/daemon.json";
        const BEFORE: &[u8] = b"{\n  \"debug\": true\n}\n";
        const AFTER: &[u8] = b"{\n  \"debug\": true,\n  \"userns-remap\": \"default\"\n}\n";

        fn plain() -> State {
            State::Up(
                Box::new(DaemonInfo {
                    docker_root_dir: "/var/lib/docker".into(),
                    ..DaemonInfo::default()
                }),
                Vec::new(),
            )
        }

        /// An image root whose daemon.json `enable` has just rewritten,
        /// and the snapshot of it taken before.
        fn written(before: Option<&[u8]>) -> (tempfile::TempDir, Host, Option<Snapshot>) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("etc/docker")).unwrap();
            let file = dir.path().join("etc/docker/daemon.json");
            if let Some(bytes) = before {
                std::fs::write(&file, bytes).unwrap();
            }
            let host = Host::open(dir.path(), Box::new(crate::host::SystemRunner)).unwrap();
            let original = host.read(Path::new(CONFIG)).unwrap();
            std::fs::write(&file, AFTER).unwrap();
            (dir, host, original)
        }

        fn daemon(fake: &FakeDaemon) -> Daemon {
            Daemon::new(Box::new(fake.clone()), Duration::ZERO)
        }

        /// Restarts and verifies as `enable` does, rolling back on failure.
        fn activate(host: &Host, fake: &FakeDaemon, original: Option<&Snapshot>) -> String {
            let daemon = daemon(fake);
            let cause = daemon
                .restart_and_verify(&remapped("/var/lib/docker"))
                .unwrap_err();
            format!(
                "{:#}",
                roll_back(host, &daemon, Path::new(CONFIG), original, cause)
            )
        }

        fn config(dir: &tempfile::TempDir) -> Option<Vec<u8>> {
            std::fs::read(dir.path().join("etc/docker/daemon.json")).ok()
        }

        #[test]
        fn a_failed_restart_restores_daemon_json_byte_for_byte_and_restarts_the_old_daemon() {
            let (dir, host, original) = written(Some(BEFORE));
            let fake = FakeDaemon::new(plain())
                .then(Restart::Fails(
                    "exit status: 1: Job for docker.service failed".into(),
                ))
                .then(Restart::To(plain()));
            let message = activate(&host, &fake, original.as_ref());
            assert_eq!(config(&dir).as_deref(), Some(BEFORE));
            assert_eq!(fake.restarts(), 2, "the restart, then the old config's");
            assert!(
                message.starts_with(
                    "running /bin/systemctl restart docker: exit status: 1: Job for docker.service failed\n"
                ),
                "{message}"
            );
            assert!(
                message.contains("restored byte for byte and dockerd answers again"),
                "{message}"
            );
            assert!(message.contains("dockerd's last log lines:\n"), "{message}");
        }

        #[test]
        fn a_daemon_that_comes_back_not_remapped_is_rolled_back() {
            let (dir, host, original) = written(Some(BEFORE));
            let fake = FakeDaemon::new(plain()).then(Restart::To(plain()));
            let message = activate(&host, &fake, original.as_ref());
            assert_eq!(config(&dir).as_deref(), Some(BEFORE));
            assert_eq!(fake.restarts(), 2);
            assert!(
                message.starts_with("after 0ns, expected name=userns in SecurityOptions"),
                "{message}"
            );
            assert!(
                message.contains("dockerd answers with SecurityOptions []"),
                "{message}"
            );
            assert!(message.contains("dockerd answers again"), "{message}");
        }

        #[test]
        fn a_daemon_json_that_did_not_exist_is_removed_again() {
            let (dir, host, original) = written(None);
            let fake = FakeDaemon::new(State::Down).then(Restart::To(State::Down));
            let message = activate(&host, &fake, original.as_ref());
            assert_eq!(config(&dir), None);
            assert!(
                message.contains("dockerd did not answer on /run/docker.sock"),
                "{message}"
            );
        }

        #[test]
        fn a_daemon_that_stays_down_after_the_roll_back_is_said_so() {
            let (dir, host, original) = written(Some(BEFORE));
            let fake = FakeDaemon::new(plain())
                .then(Restart::Fails("exit status: 1".into()))
                .then(Restart::To(State::Down));
            let message = activate(&host, &fake, original.as_ref());
            assert_eq!(config(&dir).as_deref(), Some(BEFORE));
            assert!(
                message.contains("byte for byte, but dockerd does not answer after the restart"),
                "{message}"
            );
        }

        #[test]
        fn a_daemon_json_that_cannot_be_restored_fails_the_roll_back_loudly() {
            let (dir, host, original) = written(Some(BEFORE));
            // The directory is gone: there is nowhere to put the file back.
            std::fs::remove_dir_all(dir.path().join("etc/docker")).unwrap();
            let fake = FakeDaemon::new(plain()).then(Restart::Fails("exit status: 1".into()));
            let message = activate(&host, &fake, original.as_ref());
            assert!(
                message.contains("roll-back FAILED: could not restore"),
                "{message}"
            );
            assert_eq!(fake.restarts(), 1, "no restart on a config not put back");
        }

        #[test]
        fn a_failed_stop_is_reported_with_the_command() {
            let fake = FakeDaemon::new(plain()).stop_fails("exit status: 5");
            let message = format!("{:#}", daemon(&fake).stop().unwrap_err());
            assert_eq!(
                message,
                "running /bin/systemctl stop docker: exit status: 5"
            );
        }

        #[test]
        fn running_containers_refuse_the_restart_unless_allowed() {
            let running = ContainerSummary {
                id: "0123456789abcdef".into(),
                names: vec!["/web".into()],
                state: "running".into(),
                ..ContainerSummary::default()
            };
            let unnamed = ContainerSummary {
                names: Vec::new(),
                ..running.clone()
            };
            let fake = FakeDaemon::new(State::Up(Box::default(), vec![running, unnamed]));
            let containers = daemon(&fake).running_containers().unwrap();
            let refusal = refuse_running(&containers, false).unwrap_err().to_string();
            assert_eq!(
                refusal,
                "2 running containers would stop and be hidden by the restart: web, 0123456789ab; \
                 stop them first or pass --yes (nothing was changed)"
            );
            assert!(refuse_running(&containers, true).is_ok());
        }
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
