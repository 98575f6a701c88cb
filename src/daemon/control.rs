//! Control of the running dockerd: what it answers, stopping it and
//! restarting it. The real control speaks to the API socket and the
//! service manager; tests script a fake through the same trait, so the
//! refusal, verify and roll-back paths run without a daemon.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::daemon::api::{ApiError, ContainerSummary, DaemonInfo, DockerApi};
use crate::daemon::service::{self, Action, Invocation, ServiceError, ServiceManager};

/// Log lines quoted from dockerd when it fails.
const LOG_LINES: usize = 20;
/// How often a stopping daemon's socket is asked whether it still answers.
const STOP_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("running {command}: {message}")]
    Command { command: String, message: String },
    #[error("--migrate must stop dockerd: with --restart-command, also give --stop-command")]
    NoStopCommand,
    #[error("dockerd still answers on {} after `{command}`", .socket.display())]
    StillAnswers { socket: PathBuf, command: String },
}

/// The few things done to a running dockerd.
pub trait DaemonControl {
    /// The API socket, for messages.
    fn socket(&self) -> &Path;
    fn info(&self) -> Result<DaemonInfo, ApiError>;
    fn running_containers(&self) -> Result<Vec<ContainerSummary>, ApiError>;
    /// Returns once the API answers, or fails when `deadline` passes.
    fn wait_ready(&self, deadline: Instant) -> Result<(), ApiError>;
    /// The restart command, as the plan shows it.
    fn restart_command(&self) -> Result<String, ControlError>;
    /// Runs the restart command; the new daemon may not answer yet.
    fn restart(&self) -> Result<(), ControlError>;
    /// Stops dockerd and returns once its socket no longer answers.
    fn stop(&self, timeout: Duration) -> Result<(), ControlError>;
    /// dockerd's last log lines, quoted when it fails to come back.
    fn last_logs(&self) -> Option<String>;
    /// The API itself, for streaming images and reading containers in
    /// full (what `--migrate` carries); a fake has none.
    fn api(&self) -> Option<&DockerApi>;
}

/// The host's dockerd: its API socket and its service manager.
pub struct SystemDaemon {
    api: DockerApi,
    manager: ServiceManager,
    root: PathBuf,
    /// `--stop-command`, for a custom manager that can only restart.
    stop_command: Option<String>,
}

impl SystemDaemon {
    pub fn new(
        root: &Path,
        restart_command: Option<&str>,
        stop_command: Option<String>,
        socket: PathBuf,
        request_timeout: Duration,
    ) -> Result<Self, ServiceError> {
        Ok(SystemDaemon {
            api: DockerApi::new(socket, request_timeout),
            manager: service::detect(root, restart_command)?,
            root: root.to_owned(),
            stop_command,
        })
    }

    fn stop_invocation(&self) -> Result<Invocation, ControlError> {
        Ok(match (&self.manager, &self.stop_command) {
            (_, Some(command)) => ServiceManager::Custom {
                argv: service::split_words(command)?,
            }
            .command(&self.root, Action::Restart)?,
            (ServiceManager::Custom { .. }, None) => return Err(ControlError::NoStopCommand),
            (manager, None) => manager.command(&self.root, Action::Stop)?,
        })
    }
}

impl DaemonControl for SystemDaemon {
    fn socket(&self) -> &Path {
        self.api.socket()
    }

    fn info(&self) -> Result<DaemonInfo, ApiError> {
        self.api.info()
    }

    fn running_containers(&self) -> Result<Vec<ContainerSummary>, ApiError> {
        self.api.containers(false)
    }

    fn wait_ready(&self, deadline: Instant) -> Result<(), ApiError> {
        self.api.wait_ready(deadline)
    }

    fn restart_command(&self) -> Result<String, ControlError> {
        Ok(self
            .manager
            .command(&self.root, Action::Restart)?
            .to_string())
    }

    fn restart(&self) -> Result<(), ControlError> {
        run(&self.manager.command(&self.root, Action::Restart)?)
    }

    fn stop(&self, timeout: Duration) -> Result<(), ControlError> {
        let invocation = self.stop_invocation()?;
        run(&invocation)?;
        let deadline = Instant::now() + timeout;
        while self.api.ping().is_ok() {
            if Instant::now() >= deadline {
                return Err(ControlError::StillAnswers {
                    socket: self.api.socket().to_owned(),
                    command: invocation.to_string(),
                });
            }
            std::thread::sleep(STOP_POLL);
        }
        Ok(())
    }

    fn last_logs(&self) -> Option<String> {
        service::last_log_lines(&self.root, &self.manager, LOG_LINES)
    }

    fn api(&self) -> Option<&DockerApi> {
        Some(&self.api)
    }
}

/// Runs a service command and fails with its stderr when it fails.
fn run(invocation: &Invocation) -> Result<(), ControlError> {
    let output = invocation
        .command()
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ControlError::Command {
            command: invocation.to_string(),
            message: e.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(ControlError::Command {
        command: invocation.to_string(),
        message: format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    })
}

#[cfg(test)]
pub mod fake {
    //! A scripted daemon: each restart brings up the next scripted state,
    //! and every call is recorded for the test to assert on.

    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    pub const RESTART: &str = "/bin/systemctl restart docker";

    /// What the daemon answers in one of its lives.
    #[derive(Debug, Clone)]
    pub enum State {
        /// It answers with this `/info` and these running containers.
        Up(Box<DaemonInfo>, Vec<ContainerSummary>),
        /// Its socket does not answer.
        Down,
    }

    /// What happens on one restart.
    #[derive(Debug, Clone)]
    pub enum Restart {
        /// The command succeeds and the daemon comes up in this state.
        To(State),
        /// The command fails with this message; the state stays.
        Fails(String),
    }

    #[derive(Debug, Default)]
    struct Script {
        state: Option<State>,
        restarts: VecDeque<Restart>,
        stop_fails: Option<String>,
        /// Stops that succeed before `stop_fails` applies.
        stops_before_failing: usize,
        calls: Vec<&'static str>,
    }

    /// Clones share one script, so a test keeps a handle on what the
    /// code under test was given.
    #[derive(Debug, Clone, Default)]
    pub struct FakeDaemon(Rc<RefCell<Script>>);

    impl FakeDaemon {
        pub fn new(state: State) -> Self {
            let fake = FakeDaemon::default();
            fake.0.borrow_mut().state = Some(state);
            fake
        }

        /// Scripts the next restart.
        pub fn then(self, restart: Restart) -> Self {
            self.0.borrow_mut().restarts.push_back(restart);
            self
        }

        pub fn stop_fails(self, message: &str) -> Self {
            self.0.borrow_mut().stop_fails = Some(message.to_owned());
            self
        }

        /// The first stop succeeds, every later one fails.
        pub fn stops_once(self, message: &str) -> Self {
            self.0.borrow_mut().stops_before_failing = 1;
            self.stop_fails(message)
        }

        /// `info`, `containers`, `stop`, `restart`, in the order called.
        pub fn calls(&self) -> Vec<&'static str> {
            self.0.borrow().calls.clone()
        }

        pub fn restarts(&self) -> usize {
            self.calls().iter().filter(|c| **c == "restart").count()
        }

        fn record(&self, call: &'static str) {
            self.0.borrow_mut().calls.push(call);
        }

        fn down(&self) -> ApiError {
            ApiError::Connect {
                path: self.socket().to_owned(),
                source: std::io::ErrorKind::NotFound.into(),
            }
        }

        fn up(&self) -> Result<(DaemonInfo, Vec<ContainerSummary>), ApiError> {
            match &self.0.borrow().state {
                Some(State::Up(info, containers)) => {
                    Ok((DaemonInfo::clone(info), containers.clone()))
                }
                _ => Err(self.down()),
            }
        }
    }

    impl DaemonControl for FakeDaemon {
        fn socket(&self) -> &Path {
            Path::new("/run/docker.sock")
        }

        fn info(&self) -> Result<DaemonInfo, ApiError> {
            self.record("info");
            self.up().map(|(info, _)| info)
        }

        fn running_containers(&self) -> Result<Vec<ContainerSummary>, ApiError> {
            self.record("containers");
            self.up().map(|(_, containers)| containers)
        }

        fn wait_ready(&self, _: Instant) -> Result<(), ApiError> {
            self.up().map(drop).map_err(|last| ApiError::NotReady {
                path: self.socket().to_owned(),
                last: Box::new(last),
            })
        }

        fn restart_command(&self) -> Result<String, ControlError> {
            Ok(RESTART.into())
        }

        fn restart(&self) -> Result<(), ControlError> {
            self.record("restart");
            let next = self.0.borrow_mut().restarts.pop_front();
            match next {
                Some(Restart::Fails(message)) => Err(ControlError::Command {
                    command: RESTART.into(),
                    message,
                }),
                Some(Restart::To(state)) => {
                    self.0.borrow_mut().state = Some(state);
                    Ok(())
                }
                // Unscripted: the daemon comes back as it was.
                None => Ok(()),
            }
        }

        fn stop(&self, _: Duration) -> Result<(), ControlError> {
            let stopped = self.calls().iter().filter(|c| **c == "stop").count();
            self.record("stop");
            let script = self.0.borrow();
            let fails = (stopped >= script.stops_before_failing)
                .then(|| script.stop_fails.clone())
                .flatten();
            drop(script);
            if let Some(message) = fails {
                return Err(ControlError::Command {
                    command: "/bin/systemctl stop docker".into(),
                    message,
                });
            }
            self.0.borrow_mut().state = Some(State::Down);
            Ok(())
        }

        fn last_logs(&self) -> Option<String> {
            Some("level=error msg=\"scripted failure\"".into())
        }

        fn api(&self) -> Option<&DockerApi> {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_command_alone_cannot_stop_dockerd() {
        let root = tempfile::tempdir().unwrap();
        let daemon = SystemDaemon::new(
            root.path(),
            Some("/usr/local/bin/restart-docker"),
            None,
            root.path().join("docker.sock"),
            Duration::ZERO,
        )
        .unwrap();
        let error = daemon.stop(Duration::ZERO).unwrap_err();
        assert!(matches!(error, ControlError::NoStopCommand), "{error:?}");
        assert_eq!(
            error.to_string(),
            "--migrate must stop dockerd: with --restart-command, also give --stop-command"
        );
    }
}
