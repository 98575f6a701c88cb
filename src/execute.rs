//! Runs a plan's actions for `enable` and `disable`: the host's files
//! ([`Writes`]: accounts, ranges, daemon.json, the purge), then the
//! daemon's steps ([`Steps`]): stop dockerd, migrate its data, restart it
//! and verify it from its own answer, and, when that proof does not come,
//! roll back in reverse (the data moved back, daemon.json put back byte
//! for byte, the old daemon restarted).

use std::path::Path;

use crate::accounts::allocate::{AllocateError, IdSources, SubIdKind, range_need, range_to_add};
use crate::accounts::create::{self as account, AccountError};
use crate::activate::{self, ActivateError, Daemon, Expect, MigrationUndo};
use crate::config::passwd::{Groups, Passwd};
use crate::config::subid::SubIdFile;
use crate::daemon::api::DaemonInfo;
use crate::files::{atomic, lock};
use crate::host::{Host, HostError, Snapshot};
use crate::image_store::{self, StoreError};
use crate::migrate::{MigrateError, MigrateReport, Migration};
use crate::observe::{LoadError, Observed, read_parsed};
use crate::paths::{GROUP, GSHADOW, PASSWD, SHADOW, SUBGID, SUBUID};
use crate::phases::Phases;
use crate::plan::Action;

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// dockerd did not stop for the migration: nothing has moved, and
    /// daemon.json was put back.
    #[error(transparent)]
    Stop(ActivateError),
    /// The migration stopped part way: daemon.json stays as planned, for
    /// the rerun that finishes the move.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// The restarted daemon did not prove the change: everything was put
    /// back, and the message says how that went.
    #[error(transparent)]
    RolledBack(ActivateError),
}

impl ExecuteError {
    /// The input file position behind this error, if any.
    pub fn location(&self) -> Option<crate::error::Location> {
        match self {
            ExecuteError::Stop(e) | ExecuteError::RolledBack(e) => e.location(),
            ExecuteError::Migrate(_) => None,
        }
    }
}

/// What to do once the plan's files are written.
pub struct Steps<'a> {
    pub host: &'a Host,
    /// `None` under `--no-restart` or `--root`: nothing runs to stop.
    pub daemon: Option<&'a Daemon>,
    pub config_path: &'a Path,
    /// daemon.json as read before planning; `None` when it did not exist.
    pub original: Option<&'a Snapshot>,
    pub migration: Option<&'a Migration>,
    /// What the restarted daemon must show; `None` when the plan does not
    /// restart it.
    pub expect: Option<Expect>,
    /// Whether the migration shows a progress line.
    pub progress: bool,
}

/// What the steps did.
#[derive(Debug, Default)]
pub struct Executed {
    pub migrated: Option<MigrateReport>,
    /// What the restarted daemon showed; `None` when it was not restarted.
    pub verified: Option<DaemonInfo>,
}

impl Steps<'_> {
    /// Runs the steps in order, timing each in `phases`. `abandon` drops
    /// what this run made that a roll-back leaves no use for (images
    /// saved for carrying, the record of a migration not begun); on every
    /// roll-back it is called once, after the data is moved back and
    /// daemon.json put back.
    pub fn run(
        &self,
        phases: &mut Phases,
        abandon: &mut dyn FnMut(),
    ) -> Result<Executed, ExecuteError> {
        let migrated = match self.migration {
            Some(migration) => Some(self.migrate(migration, phases, abandon)?),
            None => None,
        };
        let verified = match (self.daemon, &self.expect) {
            (Some(daemon), Some(expect)) => match daemon.restart_and_verify_timed(expect, phases) {
                Ok(info) => Some(info),
                Err(cause) => {
                    let cause = match self.migration {
                        Some(m) => undo_migration(self.host, daemon, m, cause),
                        None => cause,
                    };
                    return Err(ExecuteError::RolledBack(
                        self.roll_back(daemon, cause, abandon),
                    ));
                }
            },
            _ => None,
        };
        Ok(Executed { migrated, verified })
    }

    /// Stops dockerd (when it is managed), then migrates. A daemon that
    /// does not stop still runs on the old configuration with nothing
    /// moved: daemon.json is put back for it.
    fn migrate(
        &self,
        migration: &Migration,
        phases: &mut Phases,
        abandon: &mut dyn FnMut(),
    ) -> Result<MigrateReport, ExecuteError> {
        if let Some(daemon) = self.daemon {
            if let Err(cause) = phases.time("stop", || daemon.stop()) {
                return Err(ExecuteError::Stop(self.roll_back(daemon, cause, abandon)));
            }
        }
        let report = migration.run_stopped(self.host, self.progress)?;
        phases.extend(&report.phases);
        Ok(report)
    }

    /// Puts daemon.json back and restarts the old daemon, then abandons
    /// what the run made: the one order of every roll-back, so that what
    /// is abandoned can depend on whether daemon.json is back.
    fn roll_back(
        &self,
        daemon: &Daemon,
        cause: ActivateError,
        abandon: &mut dyn FnMut(),
    ) -> ActivateError {
        let error = activate::roll_back(self.host, daemon, self.config_path, self.original, cause);
        abandon();
        error
    }
}

/// Carries the data back before daemon.json is restored: the exact
/// inverse of the migration done, whichever way it went. The daemon that
/// failed the verify may be running on the moved data: it is stopped
/// first, and when it does not stop the data stays where it is.
fn undo_migration(
    host: &Host,
    daemon: &Daemon,
    migration: &Migration,
    cause: ActivateError,
) -> ActivateError {
    let back = migration.inverse();
    if let Err(e) = daemon.stop() {
        return undone(
            cause,
            MigrationUndo::NotStopped {
                error: Box::new(e),
                stays: back.source().to_owned(),
            },
        );
    }
    match back.run(host) {
        Ok(_) => undone(cause, MigrationUndo::MovedBack),
        Err(error) => undone(cause, MigrationUndo::MoveFailed { error }),
    }
}

fn undone(cause: ActivateError, undo: MigrationUndo) -> ActivateError {
    ActivateError::MigrationUndo {
        cause: Box::new(cause),
        undo,
    }
}

/// What a host-side write failed on.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Allocate(#[from] AllocateError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WriteError {
    /// The input file position behind this error, if any.
    pub fn location(&self) -> Option<crate::error::Location> {
        match self {
            WriteError::Load(e) => e.location(),
            WriteError::Account(e) => e.location(),
            WriteError::Allocate(e) => e.location(),
            WriteError::Store(e) => e.location(),
            WriteError::Host(_) | WriteError::Lock(_) => None,
        }
    }
}

/// The host-side actions of a plan: accounts, ranges and daemon.json.
/// Every step re-reads what it changes under the lock and re-decides, so
/// a concurrent useradd cannot make it write stale data.
pub struct Writes<'a> {
    pub host: &'a Host,
    pub observed: &'a Observed,
    /// daemon.json as the plan writes it, when it changes it.
    pub config: Option<&'a str>,
    /// `--count`: how many ids a range to add holds.
    pub count: u64,
    /// Whether the plan creates the remap account (its ranges then may
    /// not reuse ids another owner's lines name).
    pub creating: bool,
    /// The failpoint hit before each action.
    pub failpoint: Option<&'static str>,
}

impl Writes<'_> {
    /// Runs the actions in order that change the host before dockerd is
    /// restarted; the daemon's steps are [`Steps::run`]'s, and the purge
    /// waits for [`Writes::purge`].
    pub fn run(&self, actions: &[Action]) -> Result<(), WriteError> {
        // The user's own store setting is on disk before daemon.json changes.
        if actions
            .iter()
            .any(|a| matches!(a, Action::PinImageStore { .. }))
        {
            let record = image_store::Record::of(&self.observed.config);
            image_store::write_record(self.host, &self.observed.config_path, &record)?;
        }
        let mut written = false;
        for action in actions {
            if let Some(name) = self.failpoint {
                crate::failpoint::hit(name);
            }
            match action {
                Action::CreateGroup { name, .. } => {
                    account::create_group(self.host, &self.observed.tool, name)?
                }
                Action::CreateUser { name, group, .. } => {
                    account::create_user(self.host, &self.observed.tool, name, group)?
                }
                Action::AddRange { kind, owner, .. } => self.add_range(*kind, owner)?,
                Action::CompleteAccount {
                    name,
                    shadow,
                    gshadow,
                } => account::complete(self.host, name, *shadow, *gshadow)?,
                // One write carries every daemon.json change.
                Action::SetRemap { .. }
                | Action::PinImageStore { .. }
                | Action::RemoveRemap { .. }
                | Action::RestoreImageStore { .. } => {
                    if !written {
                        self.write_config()?;
                        written = true;
                    }
                }
                // dockerd's, stopped or restarted: [`Steps::run`] does them.
                Action::RestartDaemon { .. }
                | Action::MigrateData { .. }
                | Action::CarryImages { .. } => {}
                // Only once the daemon runs without the mapping.
                Action::RemoveRanges { .. } | Action::RemoveAccount { .. } => {}
            }
        }
        Ok(())
    }

    /// `--purge`: runs only once the daemon runs without the mapping, so
    /// that a roll-back finds the account and ranges the restored
    /// daemon.json needs.
    pub fn purge(&self, actions: &[Action]) -> Result<(), WriteError> {
        for action in actions {
            match action {
                Action::RemoveRanges { owner } => {
                    let uid = account_uid(self.host, owner)?;
                    let doomed = |_: &str, line: &str| {
                        let first = line.split(':').next().unwrap_or("");
                        first == owner || Some(first) == uid.as_deref()
                    };
                    account::remove_lines(self.host, &[SUBUID, SUBGID], &doomed)?;
                }
                Action::RemoveAccount { name } => {
                    let prefix = format!("{name}:");
                    let doomed = |_: &str, line: &str| line.starts_with(&prefix);
                    account::remove_lines(self.host, &[PASSWD, GROUP, SHADOW, GSHADOW], &doomed)?;
                }
                // Done before the restart.
                _ => {}
            }
        }
        Ok(())
    }

    fn add_range(&self, kind: SubIdKind, owner: &str) -> Result<(), WriteError> {
        let host = self.host;
        let _locks = lock::lock(host, &[kind.path()])?;
        let (snapshot, file) = read_parsed(host, kind.path_str(), SubIdFile::parse)?;
        let passwd = read_parsed(host, PASSWD, Passwd::parse)?.1;
        let groups = read_parsed(host, GROUP, Groups::parse)?.1;
        let login_defs = account::read_login_defs(host)?;
        let sources = IdSources {
            passwd: &passwd,
            groups: &groups,
            login_defs: &login_defs,
        };
        let owner_uid = passwd.by_name(owner).map(|e| e.uid);
        let need = range_need(
            &sources,
            kind,
            &file,
            owner,
            owner_uid,
            self.count,
            self.creating,
        )?;
        let Some(range) = range_to_add(&need, &host.display(kind.path()))? else {
            return Ok(());
        };
        let text = file.with_appended(owner, range);
        let job = atomic::Replace {
            path: kind.path(),
            bytes: text.as_bytes(),
            previous: snapshot.as_ref(),
            backup: snapshot.as_ref().map(|_| account::backup_name(kind.path())),
        };
        Ok(atomic::replace(host, &job)?)
    }

    fn write_config(&self) -> Result<(), WriteError> {
        let text = self
            .config
            .expect("a daemon.json action has its file change");
        let original = self.observed.config_file.as_ref();
        Ok(write_config(
            self.host,
            &self.observed.config_path,
            original,
            text,
        )?)
    }
}

/// The owner's uid as passwd has it now, to match lines naming it by uid.
fn account_uid(host: &Host, user: &str) -> Result<Option<String>, AccountError> {
    let passwd = crate::accounts::resolve::read_passwd(host)?;
    Ok(passwd.by_name(user).map(|e| e.uid.to_string()))
}

/// Writes daemon.json for `enable` and `disable` alike: atomically, with
/// the previous content kept as `daemon.json.docker-userns.bak` when there
/// was one, and its directory made when Docker has not made it yet.
pub fn write_config(
    host: &Host,
    path: &Path,
    original: Option<&Snapshot>,
    text: &str,
) -> Result<(), HostError> {
    if let Some(parent) = path.parent() {
        atomic::ensure_dir(host, parent)?;
    }
    let job = atomic::Replace {
        path,
        bytes: text.as_bytes(),
        previous: original,
        backup: original.map(|_| config_backup_name(path)),
    };
    atomic::replace(host, &job)
}

fn config_backup_name(path: &Path) -> std::ffi::OsString {
    let mut name = path.file_name().expect("file path").to_owned();
    name.push(".docker-userns.bak");
    name
}

#[cfg(test)]
mod tests {
    //! `enable` and `disable` on an image root with a scripted daemon: the
    //! refusals, the verify and every roll-back, in milliseconds.

    use std::time::Duration;

    use crate::activate::Daemon;
    use crate::cli::{Invocation, parse_args};
    use crate::daemon::api::{ContainerSummary, DaemonInfo};
    use crate::daemon::control::fake::{FakeDaemon, Restart, State};
    use crate::error::Error;
    use crate::host::{Host, SystemRunner};
    use crate::report::Status;
    use crate::request::{Command, Request};

    const PLAIN_CONFIG: &str = "{\n  \"debug\": true\n}\n";
    const REMAPPED_CONFIG: &str = "{\n  \"debug\": true,\n  \"userns-remap\": \"default\"\n}\n";
    /// Every file a run may touch, relative to the root.
    const FILES: &[&str] = &[
        "etc/docker/daemon.json",
        "etc/passwd",
        "etc/group",
        "etc/shadow",
        "etc/gshadow",
        "etc/subuid",
        "etc/subgid",
    ];

    /// A root where dockremap and its ranges exist, with `config` as
    /// daemon.json.
    fn root(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\ndockremap:x:999:999::/nonexistent:/usr/sbin/nologin\n",
        );
        write("etc/group", "root:x:0:\ndockremap:x:999:\n");
        write(
            "etc/shadow",
            "root:*:19000:0:99999:7:::\ndockremap:!:19000::::::\n",
        );
        write("etc/gshadow", "root:*::\ndockremap:!::\n");
        write("etc/subuid", "dockremap:100000:65536\n");
        write("etc/subgid", "dockremap:100000:65536\n");
        write("etc/docker/daemon.json", config);
        dir
    }

    fn contents(dir: &tempfile::TempDir) -> Vec<(&'static str, Option<Vec<u8>>)> {
        FILES
            .iter()
            .map(|rel| (*rel, std::fs::read(dir.path().join(rel)).ok()))
            .collect()
    }

    fn info(remapped: bool) -> DaemonInfo {
        match remapped {
            true => DaemonInfo {
                security_options: vec!["name=userns".into()],
                docker_root_dir: "/var/lib/docker/100000.100000".into(),
                ..DaemonInfo::default()
            },
            false => DaemonInfo {
                docker_root_dir: "/var/lib/docker".into(),
                ..DaemonInfo::default()
            },
        }
    }

    fn up(remapped: bool) -> State {
        State::Up(Box::new(info(remapped)), Vec::new())
    }

    fn running(name: &str) -> ContainerSummary {
        ContainerSummary {
            id: "0123456789abcdef".into(),
            names: vec![format!("/{name}")],
            state: "running".into(),
            ..ContainerSummary::default()
        }
    }

    /// Runs `args` on `dir` with `fake` as the daemon.
    fn run(dir: &tempfile::TempDir, fake: &FakeDaemon, args: &[&str]) -> Result<bool, Error> {
        let mut full = vec!["docker-userns", "--root", dir.path().to_str().unwrap()];
        full.extend_from_slice(args);
        let Invocation::Run(request) = parse_args(full.iter().map(std::ffi::OsString::from)) else {
            panic!("{args:?} is a command");
        };
        let Request { global, command } = *request;
        let host = Host::open(dir.path(), Box::new(SystemRunner)).unwrap();
        let connect = || Ok(Some(Daemon::new(Box::new(fake.clone()), Duration::ZERO)));
        match &command {
            Command::Enable(r) => crate::enable::run_with(&host, &global, r, connect)
                .map(|o| o.changed())
                .map_err(Error::from),
            Command::Disable(r) => crate::disable::run_with(&host, &global, r, connect)
                .map(|o| o.changed())
                .map_err(Error::from),
            _ => unreachable!(),
        }
    }

    fn failure(dir: &tempfile::TempDir, fake: &FakeDaemon, args: &[&str]) -> String {
        let error = run(dir, fake, args).expect_err("the run fails");
        assert_eq!(error.exit_status(), Status::Error);
        error.message()
    }

    #[test]
    fn enable_restarts_and_verifies_the_remapped_daemon() {
        let dir = root(PLAIN_CONFIG);
        let fake = FakeDaemon::new(up(false)).then(Restart::To(up(true)));
        assert!(run(&dir, &fake, &["enable"]).unwrap());
        let config = std::fs::read_to_string(dir.path().join("etc/docker/daemon.json")).unwrap();
        assert_eq!(config, REMAPPED_CONFIG);
        assert_eq!(fake.restarts(), 1);
    }

    #[test]
    fn enable_whose_restart_fails_puts_every_file_back_and_restarts_the_old_daemon() {
        let dir = root(PLAIN_CONFIG);
        let before = contents(&dir);
        let fake = FakeDaemon::new(up(false))
            .then(Restart::Fails(
                "exit status: 1: Job for docker.service failed".into(),
            ))
            .then(Restart::To(up(false)));
        let message = failure(&dir, &fake, &["enable"]);
        assert_eq!(contents(&dir), before);
        assert_eq!(fake.restarts(), 2, "the restart, then the old config's");
        assert!(
            message.starts_with("running /bin/systemctl restart docker: exit status: 1"),
            "{message}"
        );
        assert!(
            message.contains("restored byte for byte and dockerd answers again"),
            "{message}"
        );
    }

    #[test]
    fn enable_whose_daemon_comes_back_not_remapped_is_rolled_back() {
        let dir = root(PLAIN_CONFIG);
        let before = contents(&dir);
        let fake = FakeDaemon::new(up(false)).then(Restart::To(up(false)));
        let message = failure(&dir, &fake, &["enable"]);
        assert_eq!(contents(&dir), before);
        assert_eq!(fake.restarts(), 2);
        assert!(
            message.contains("expected name=userns in SecurityOptions"),
            "{message}"
        );
        assert!(message.contains("dockerd answers again"), "{message}");
    }

    #[test]
    fn enable_whose_roll_back_leaves_the_daemon_down_says_so() {
        let dir = root(PLAIN_CONFIG);
        let before = contents(&dir);
        let fake = FakeDaemon::new(up(false))
            .then(Restart::Fails("exit status: 1".into()))
            .then(Restart::To(State::Down));
        let message = failure(&dir, &fake, &["enable"]);
        assert_eq!(contents(&dir), before, "the files are back all the same");
        assert!(
            message.contains("byte for byte, but dockerd does not answer after the restart"),
            "{message}"
        );
    }

    #[test]
    fn enable_refuses_to_stop_running_containers_without_yes() {
        let dir = root(PLAIN_CONFIG);
        let before = contents(&dir);
        let fake = FakeDaemon::new(State::Up(Box::new(info(false)), vec![running("web")]));
        let message = failure(&dir, &fake, &["enable"]);
        assert_eq!(
            message,
            "1 running container would stop and be hidden by the restart: web; \
             stop them first or pass --yes (nothing was changed)"
        );
        assert_eq!(contents(&dir), before);
        assert_eq!(fake.restarts(), 0);
    }

    #[test]
    fn enable_with_yes_restarts_over_running_containers() {
        let dir = root(PLAIN_CONFIG);
        let fake = FakeDaemon::new(State::Up(Box::new(info(false)), vec![running("web")]))
            .then(Restart::To(up(true)));
        assert!(run(&dir, &fake, &["enable", "--yes"]).unwrap());
        assert_eq!(fake.restarts(), 1);
    }

    #[test]
    fn enable_starts_a_daemon_that_does_not_answer_and_verifies_it() {
        let dir = root(PLAIN_CONFIG);
        let fake = FakeDaemon::new(State::Down).then(Restart::To(up(true)));
        assert!(run(&dir, &fake, &["enable"]).unwrap());
        assert!(!fake.calls().contains(&"containers"), "nothing to ask");
    }

    #[test]
    fn enable_on_a_remapped_daemon_changes_nothing_and_restarts_nothing() {
        let dir = root(REMAPPED_CONFIG);
        let before = contents(&dir);
        let fake = FakeDaemon::new(up(true));
        assert!(!run(&dir, &fake, &["enable"]).unwrap());
        assert_eq!(contents(&dir), before);
        assert_eq!(fake.restarts(), 0);
    }

    #[test]
    fn disable_whose_daemon_stays_remapped_is_rolled_back_and_purges_nothing() {
        let dir = root(REMAPPED_CONFIG);
        let before = contents(&dir);
        let fake = FakeDaemon::new(up(true)).then(Restart::To(up(true)));
        let message = failure(&dir, &fake, &["disable", "--purge"]);
        assert_eq!(contents(&dir), before, "daemon.json back, dockremap kept");
        assert_eq!(fake.restarts(), 2);
        assert!(
            message.contains("expected no name=userns in SecurityOptions"),
            "{message}"
        );
    }

    #[test]
    fn disable_restarts_without_the_mapping_then_purges() {
        let dir = root(REMAPPED_CONFIG);
        let fake = FakeDaemon::new(up(true)).then(Restart::To(up(false)));
        assert!(run(&dir, &fake, &["disable", "--purge"]).unwrap());
        let read = |rel: &str| std::fs::read_to_string(dir.path().join(rel)).unwrap();
        assert_eq!(read("etc/docker/daemon.json"), PLAIN_CONFIG);
        assert!(!read("etc/passwd").contains("dockremap"));
        assert_eq!(read("etc/subuid"), "");
    }

    #[test]
    fn disable_refuses_to_stop_running_containers_without_yes() {
        let dir = root(REMAPPED_CONFIG);
        let before = contents(&dir);
        let fake = FakeDaemon::new(State::Up(Box::new(info(true)), vec![running("db")]));
        let message = failure(&dir, &fake, &["disable"]);
        assert!(
            message.starts_with("1 running container would stop"),
            "{message}"
        );
        assert_eq!(contents(&dir), before);
        assert_eq!(fake.restarts(), 0);
    }

    /// What a data root holds, file by file: path, owner, mode and the
    /// bytes of each regular file.
    type Tree = Vec<(String, u32, u32, u32, Option<Vec<u8>>)>;

    const DATA_ROOT: &str = "var/lib/docker";

    /// A small daemon state in `<data root>/<name>` (the data root itself
    /// when `name` is empty) whose container-owned files belong to ids
    /// from `base`, laid out as dockerd lays out a root.
    fn state(dir: &tempfile::TempDir, name: &str, base: u32) {
        use std::os::unix::fs::{PermissionsExt, chown};
        let top = dir.path().join(DATA_ROOT).join(name);
        let make = |rel: &str, bytes: Option<&[u8]>, owner: (u32, u32), mode: u32| {
            let path = top.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            match bytes {
                Some(bytes) => std::fs::write(&path, bytes).unwrap(),
                None => std::fs::create_dir_all(&path).unwrap(),
            }
            chown(&path, Some(owner.0), Some(owner.1)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        if !name.is_empty() {
            make("", None, (0, base), 0o710);
        }
        let layout_gid = if name.is_empty() { 0 } else { base };
        make("volumes", None, (0, 0), 0o701);
        make("volumes/web/_data", None, (base + 1000, base + 1000), 0o755);
        make(
            "volumes/web/_data/index.html",
            Some(b"<h1>hi</h1>\n"),
            (base + 1000, base + 1000),
            0o644,
        );
        make(
            "image/overlay2/repositories.json",
            Some(b"{}"),
            (0, 0),
            0o600,
        );
        make("overlay2/l", None, (0, 0), 0o700);
        make("overlay2/abc", None, (0, layout_gid), 0o710);
        make("overlay2/abc/link", Some(b"ABC"), (0, 0), 0o644);
        make("overlay2/abc/diff", None, (base, base), 0o755);
        make("overlay2/abc/diff/bin", None, (base, base), 0o755);
        make("overlay2/abc/diff/bin/sh", Some(b"#!"), (base, base), 0o755);
    }

    /// Every entry of the data root.
    fn tree(dir: &tempfile::TempDir) -> Tree {
        use std::os::unix::fs::MetadataExt;
        let top = dir.path().join(DATA_ROOT);
        let mut found = Vec::new();
        let mut todo = vec![top.clone()];
        while let Some(path) = todo.pop() {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let bytes = match meta.is_dir() {
                true => {
                    for entry in std::fs::read_dir(&path).unwrap() {
                        todo.push(entry.unwrap().path());
                    }
                    None
                }
                false => Some(std::fs::read(&path).unwrap()),
            };
            let rel = path.strip_prefix(&top).unwrap().display().to_string();
            found.push((rel, meta.uid(), meta.gid(), meta.mode() & 0o7777, bytes));
        }
        found.sort();
        found
    }

    #[test]
    fn disable_migrate_whose_daemon_stays_remapped_moves_the_data_back_into_the_remapped_root() {
        let dir = root(REMAPPED_CONFIG);
        state(&dir, "100000.100000", 100000);
        let (before, data) = (contents(&dir), tree(&dir));
        let fake = FakeDaemon::new(up(true))
            .then(Restart::To(up(true)))
            .then(Restart::To(up(true)));
        let message = failure(&dir, &fake, &["disable", "--migrate"]);
        assert_eq!(tree(&dir), data, "every file back where it was");
        assert_eq!(contents(&dir), before, "daemon.json byte for byte");
        let stops = fake.calls().iter().filter(|c| **c == "stop").count();
        assert_eq!(stops, 2, "before the migration, then before moving it back");
        assert_eq!(fake.restarts(), 2, "the restart, then the old config's");
        assert!(
            message.contains("expected no name=userns in SecurityOptions"),
            "{message}"
        );
        assert!(
            message.contains("the migrated data was moved back"),
            "{message}"
        );
        assert!(message.contains("dockerd answers again"), "{message}");
    }

    #[test]
    fn enable_migrate_whose_daemon_does_not_stop_for_the_undo_says_the_data_stayed() {
        let dir = root(PLAIN_CONFIG);
        state(&dir, "", 0);
        let before = contents(&dir);
        let fake = FakeDaemon::new(up(false))
            .stops_once("exit status: 5")
            .then(Restart::To(up(false)))
            .then(Restart::To(up(false)));
        let message = failure(&dir, &fake, &["enable", "--migrate"]);
        assert_eq!(contents(&dir), before, "daemon.json put back all the same");
        let moved = dir.path().join(DATA_ROOT).join("100000.100000/volumes");
        assert!(moved.is_dir(), "nothing moved under a running daemon");
        assert!(
            message.contains(
                "the migrated data was NOT moved back, dockerd did not stop: \
                 running /bin/systemctl stop docker: exit status: 5; it stays in "
            ),
            "{message}"
        );
    }

    #[test]
    fn enable_migrate_whose_restart_fails_moves_the_data_back_to_the_plain_root() {
        let dir = root(PLAIN_CONFIG);
        state(&dir, "", 0);
        let (before, data) = (contents(&dir), tree(&dir));
        let fake = FakeDaemon::new(up(false))
            .then(Restart::Fails("exit status: 1".into()))
            .then(Restart::To(up(false)));
        let message = failure(&dir, &fake, &["enable", "--migrate"]);
        assert_eq!(tree(&dir), data, "every file back where it was");
        assert_eq!(contents(&dir), before);
        assert_eq!(fake.restarts(), 2);
        assert!(
            message.contains("the migrated data was moved back"),
            "{message}"
        );
        assert!(message.contains("dockerd answers again"), "{message}");
    }

    #[test]
    fn enable_migrate_from_another_mapping_whose_restart_fails_moves_the_data_back_to_that_mapping()
    {
        let dir = root(PLAIN_CONFIG);
        state(&dir, "200000.200000", 200000);
        let (before, data) = (contents(&dir), tree(&dir));
        let fake = FakeDaemon::new(up(false))
            .then(Restart::Fails("exit status: 1".into()))
            .then(Restart::To(up(false)));
        let message = failure(&dir, &fake, &["enable", "--migrate"]);
        assert_eq!(tree(&dir), data, "every file back in 200000.200000");
        assert_eq!(contents(&dir), before);
        assert_eq!(fake.restarts(), 2);
        assert!(
            message.contains("the migrated data was moved back"),
            "{message}"
        );
    }

    #[test]
    fn disable_migrate_whose_stop_fails_restores_daemon_json_and_moves_nothing() {
        let dir = root(REMAPPED_CONFIG);
        state(&dir, "100000.100000", 100000);
        let (before, data) = (contents(&dir), tree(&dir));
        let fake = FakeDaemon::new(up(true)).stop_fails("exit status: 5");
        let message = failure(&dir, &fake, &["disable", "--migrate"]);
        assert_eq!(contents(&dir), before, "daemon.json byte for byte");
        assert_eq!(tree(&dir), data, "nothing moved, no journal left");
        assert_eq!(fake.restarts(), 1, "the old config's");
        assert!(
            message.starts_with("running /bin/systemctl stop docker: exit status: 5\n"),
            "{message}"
        );
        assert!(
            message.contains("restored byte for byte and dockerd answers again"),
            "{message}"
        );
    }

    #[test]
    fn enable_migrate_whose_stop_fails_restores_daemon_json_and_moves_nothing() {
        let dir = root(PLAIN_CONFIG);
        state(&dir, "", 0);
        let (before, data) = (contents(&dir), tree(&dir));
        let fake = FakeDaemon::new(up(false)).stop_fails("exit status: 5");
        let message = failure(&dir, &fake, &["enable", "--migrate"]);
        assert_eq!(contents(&dir), before);
        assert_eq!(tree(&dir), data);
        assert!(
            message.contains("restored byte for byte and dockerd answers again"),
            "{message}"
        );
    }

    #[test]
    fn enable_migrate_refuses_live_restore_before_any_write_or_stop() {
        let dir = root("{\n  \"live-restore\": true\n}\n");
        state(&dir, "", 0);
        let (before, data) = (contents(&dir), tree(&dir));
        let fake = FakeDaemon::new(up(false));
        let message = failure(&dir, &fake, &["enable", "--migrate"]);
        assert_eq!(
            message,
            "\"live-restore\": true keeps containers running while dockerd is stopped; \
             stop them (or turn it off) before --migrate"
        );
        assert_eq!(contents(&dir), before);
        assert_eq!(tree(&dir), data);
        assert!(!fake.calls().contains(&"stop"), "{:?}", fake.calls());
        assert_eq!(fake.restarts(), 0);
    }

    #[test]
    fn a_dry_run_touches_nothing_and_restarts_nothing() {
        let dir = root(PLAIN_CONFIG);
        let before = contents(&dir);
        let fake = FakeDaemon::new(State::Up(Box::new(info(false)), vec![running("web")]));
        run(&dir, &fake, &["enable", "--dry-run"]).unwrap();
        assert_eq!(contents(&dir), before);
        assert_eq!(fake.restarts(), 0);
    }
}
