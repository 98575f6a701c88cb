//! Runs what `enable` and `disable` planned, in one order: the images to
//! carry saved, the accounts and ranges written, dockerd's check of the
//! whole new daemon.json, daemon.json written, then dockerd stopped, its
//! data migrated, dockerd restarted and verified from its own answer, the
//! images loaded, and `--purge` last. When the proof does not come, it
//! rolls back in reverse (the data moved back, daemon.json put back byte
//! for byte, the old daemon restarted) and abandons what the run made.

use std::path::Path;
use std::time::Duration;

use crate::accounts::allocate::{AllocateError, IdSources, SubIdKind, range_need, range_to_add};
use crate::accounts::create::{self as account, AccountError};
use crate::activate::{self, ActivateError, Daemon, Expect, MigrationUndo, Validator};
use crate::config::passwd::{Groups, Passwd};
use crate::config::subid::SubIdFile;
use crate::daemon::api::{DaemonInfo, DockerApi};
use crate::files::{atomic, lock};
use crate::host::{Host, HostError, Snapshot};
use crate::image_store::{self, StoreError};
use crate::migrate::containerd::{CarryError, CarryReport, Inventory, Spool};
use crate::migrate::{self, MigrateError, MigrateReport, Migration};
use crate::observe::{LoadError, Observed, read_parsed};
use crate::paths::{GROUP, GSHADOW, PASSWD, SHADOW, SUBGID, SUBUID};
use crate::phases::Phases;
use crate::plan::{Action, Plan, PlanError};
use crate::request::Global;

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// The images to carry could not be saved: nothing was changed.
    #[error(transparent)]
    Save(CarryError),
    /// The migration's journal could not be written before daemon.json.
    #[error("{0:#}")]
    Intent(MigrateError),
    /// A host file could not be written; daemon.json is as it was.
    #[error(transparent)]
    Write(WriteError),
    /// `dockerd --validate` refused the whole new daemon.json once the
    /// account and ranges it names were written; those stay.
    #[error(
        "{cause}\n{} was not changed; kept, unused until userns-remap names them: {kept}",
        config.display()
    )]
    RejectedWithAccounts {
        cause: Box<ActivateError>,
        config: std::path::PathBuf,
        kept: String,
    },
    /// Planning again after the writes still found something to do.
    #[error(transparent)]
    Converge(PlanError),
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
    /// The image-store record could not be removed once the daemon runs
    /// on the user's own setting again.
    #[error(transparent)]
    Record(StoreError),
    /// The saved images could not be loaded into the restarted daemon;
    /// the spool keeps them.
    #[error(transparent)]
    Load(CarryError),
    /// `--purge` failed once the daemon ran without the mapping.
    #[error(transparent)]
    Purge(WriteError),
}

impl ExecuteError {
    /// The input file position behind this error, if any.
    pub fn location(&self) -> Option<crate::error::Location> {
        match self {
            ExecuteError::Stop(e) | ExecuteError::RolledBack(e) => e.location(),
            ExecuteError::Write(e) | ExecuteError::Purge(e) => e.location(),
            ExecuteError::Converge(e) => e.location(),
            ExecuteError::Record(e) => e.location(),
            ExecuteError::Save(_)
            | ExecuteError::Intent(_)
            | ExecuteError::RejectedWithAccounts { .. }
            | ExecuteError::Migrate(_)
            | ExecuteError::Load(_) => None,
        }
    }
}

/// A plan to carry out, with what the engine side planned for it.
pub struct Job<'a> {
    pub host: &'a Host,
    pub observed: &'a Observed,
    /// The daemon's data root, where the images to carry are saved.
    pub data_root: &'a Path,
    /// The plan's actions, in the plan's order.
    pub actions: &'a [Action],
    /// daemon.json as the plan writes it, when it changes it.
    pub config: Option<&'a str>,
    /// `--count`: how many ids a range to add holds.
    pub count: u64,
    pub engine: Engine<'a>,
    /// Plans again once the files are written and says what is left; the
    /// run goes on only when nothing is.
    pub converge: Option<&'a dyn Fn() -> Result<Plan, PlanError>>,
    /// Whether the migration shows a progress line.
    pub progress: bool,
    /// How long a transfer of the images may stay idle.
    pub timeout: Duration,
    pub failpoints: Failpoints,
}

impl<'a> Job<'a> {
    /// A job that carries out `actions` with the engine side `engine`,
    /// drawing progress and waiting as `global` says; it writes no
    /// daemon.json, adds no range, plans nothing again and hits no
    /// failpoint unless told so with the methods below.
    pub fn new(
        host: &'a Host,
        observed: &'a Observed,
        data_root: &'a Path,
        actions: &'a [Action],
        engine: Engine<'a>,
        global: &Global,
    ) -> Self {
        Job {
            host,
            observed,
            data_root,
            actions,
            config: None,
            count: 0,
            engine,
            converge: None,
            progress: global.progress(),
            timeout: global.timeout,
            failpoints: Failpoints::default(),
        }
    }

    /// daemon.json as the plan writes it, when it changes it.
    pub fn config(self, config: Option<&'a str>) -> Self {
        Job { config, ..self }
    }

    /// How many ids a range to add holds.
    pub fn count(self, count: u64) -> Self {
        Job { count, ..self }
    }

    /// Plans again once the files are written; the run goes on only when
    /// nothing is left.
    pub fn converge(self, converge: &'a dyn Fn() -> Result<Plan, PlanError>) -> Self {
        Job {
            converge: Some(converge),
            ..self
        }
    }

    pub fn failpoints(self, failpoints: Failpoints) -> Self {
        Job { failpoints, ..self }
    }
}

/// What the engine side planned: the daemon and what is done to it.
pub struct Engine<'a> {
    /// `None` under `--no-restart` or `--root`: nothing runs to stop.
    pub daemon: Option<&'a Daemon>,
    /// The dockerd that checks the whole new daemon.json once the remap
    /// account and ranges it names exist.
    pub validator: Option<&'a Validator>,
    pub migration: Option<&'a Migration>,
    /// Whether the migration is journaled before daemon.json is written:
    /// once daemon.json no longer names the mapping, the journal is what
    /// lets a rerun find the data.
    pub journal_first: bool,
    /// Images and containers carried across through the API.
    pub carry: Option<Carry<'a>>,
    /// What the restarted daemon must show; `None` when the plan does not
    /// restart it.
    pub expect: Option<Expect>,
    pub record: StoreRecord,
}

/// The containerd store's content to carry, as planned.
#[derive(Clone, Copy)]
pub struct Carry<'a> {
    pub api: &'a DockerApi,
    pub inventory: &'a Inventory,
}

/// What becomes of the image-store record (the user's own store setting,
/// kept while the graph driver is pinned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreRecord {
    /// Kept as it is.
    Kept,
    /// There was none before this run: it goes when the run is abandoned.
    Fresh,
    /// daemon.json gets the user's setting back: the record goes once the
    /// daemon runs on it.
    Restored,
}

/// The failpoints hit on the way, by the command that runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Failpoints {
    /// Before each host-side action.
    pub before_action: Option<&'static str>,
    /// Once the files are written, before dockerd is touched.
    pub before_restart: Option<&'static str>,
    /// Before `--purge`.
    pub before_purge: Option<&'static str>,
}

/// What the run did.
#[derive(Debug, Default)]
pub struct Executed {
    /// The plan made again after the writes, when the job asked for it.
    pub converged: Option<Plan>,
    pub migrated: Option<MigrateReport>,
    /// What the restarted daemon showed; `None` when it was not restarted.
    pub verified: Option<DaemonInfo>,
    pub carried: Option<CarryReport>,
    /// Time spent in each phase that ran (save, stop, move, shift, ...).
    pub phases: Phases,
}

/// What this run made for itself, for a roll-back to abandon.
#[derive(Default)]
struct Made {
    /// The images saved for carrying, and their size.
    spool: Option<(Spool, u64)>,
    /// A migration journal written by this run (not an earlier one's).
    journal: bool,
}

/// Carries out `job` in order; see the module's description.
pub fn execute(job: &Job<'_>) -> Result<Executed, ExecuteError> {
    let mut done = Executed::default();
    let mut made = Made {
        spool: job.save(&mut done.phases)?,
        journal: false,
    };
    if let Err(e) = job.journal(&mut made).and_then(|()| job.write()) {
        job.abandon(&mut made);
        return Err(e);
    }
    if let Some(converge) = job.converge {
        match converge() {
            Ok(plan) => done.converged = Some(plan),
            // daemon.json is written: the record and a journal stay with it.
            Err(e) => {
                if let Some((spool, _)) = made.spool.take() {
                    spool.discard();
                }
                return Err(ExecuteError::Converge(e));
            }
        }
    }
    if let Some(name) = job.failpoints.before_restart {
        crate::failpoint::hit(name);
    }
    // Interrupted (a migration stopped part way): daemon.json stays as
    // planned for the rerun that finishes the move, and the saved images
    // stay for loading; a roll-back has abandoned them.
    let steps = job.daemon_steps(&mut done.phases, &mut || job.abandon(&mut made))?;
    (done.migrated, done.verified) = steps;
    if job.engine.record == StoreRecord::Restored {
        image_store::remove_record(job.host, &job.observed.config_path)
            .map_err(ExecuteError::Record)?;
    }
    done.carried = job.load(made.spool, &mut done.phases)?;
    if let Some(name) = job.failpoints.before_purge {
        crate::failpoint::hit(name);
    }
    // Only once the daemon runs without the mapping: a roll-back must find
    // the account and ranges the restored daemon.json needs.
    job.writes()
        .purge(job.actions)
        .map_err(ExecuteError::Purge)?;
    Ok(done)
}

impl Job<'_> {
    /// Images leave the containerd store while it still serves them.
    fn save(&self, phases: &mut Phases) -> Result<Option<(Spool, u64)>, ExecuteError> {
        let Some(carry) = self.engine.carry else {
            return Ok(None);
        };
        let saved = phases.time("save", || {
            Spool::save(
                self.host,
                self.data_root,
                carry.api,
                carry.inventory,
                self.timeout,
            )
        });
        saved.map(Some).map_err(ExecuteError::Save)
    }

    /// Journals the migration before daemon.json when the job asks for it.
    /// A journal already there records a migration begun: it stays.
    fn journal(&self, made: &mut Made) -> Result<(), ExecuteError> {
        let Some(migration) = self.engine.migration.filter(|_| self.engine.journal_first) else {
            return Ok(());
        };
        let fresh = migrate::pending(self.host, self.data_root).is_none();
        migration
            .record_intent(self.host)
            .map_err(ExecuteError::Intent)?;
        made.journal = fresh;
        Ok(())
    }

    /// The accounts and ranges, dockerd's check of the whole new
    /// daemon.json, then daemon.json.
    fn write(&self) -> Result<(), ExecuteError> {
        let (config, accounts): (Vec<Action>, Vec<Action>) =
            self.actions.iter().cloned().partition(Action::edits_config);
        let writes = self.writes();
        writes.run(&accounts).map_err(ExecuteError::Write)?;
        if let Some(validator) = self.engine.validator {
            let shown = self.host.display(&self.observed.config_path);
            validate_after_accounts(self.host, validator, self.actions, self.config, &shown)?;
        }
        writes.run(&config).map_err(ExecuteError::Write)
    }

    fn writes(&self) -> Writes<'_> {
        Writes {
            host: self.host,
            observed: self.observed,
            config: self.config,
            count: self.count,
            creating: self
                .actions
                .iter()
                .any(|a| matches!(a, Action::CreateGroup { .. } | Action::CreateUser { .. })),
            failpoint: self.failpoints.before_action,
        }
    }

    /// Stops dockerd and migrates (when the plan migrates), then restarts
    /// and verifies it (when the plan restarts it), rolling back when it
    /// does not prove the change. `abandon` drops what this run made that
    /// a roll-back leaves no use for; on every roll-back it is called
    /// once, after the data is moved back and daemon.json put back.
    fn daemon_steps(
        &self,
        phases: &mut Phases,
        abandon: &mut dyn FnMut(),
    ) -> Result<(Option<MigrateReport>, Option<DaemonInfo>), ExecuteError> {
        let migration = self.engine.migration;
        let migrated = match migration {
            Some(migration) => Some(self.migrate(migration, phases, abandon)?),
            None => None,
        };
        let (Some(daemon), Some(expect)) = (self.engine.daemon, &self.engine.expect) else {
            return Ok((migrated, None));
        };
        match daemon.restart_and_verify_timed(expect, phases) {
            Ok(info) => Ok((migrated, Some(info))),
            Err(cause) => {
                let cause = match (migration, &migrated) {
                    (Some(m), Some(done)) => undo_migration(self.host, daemon, m, done, cause),
                    _ => cause,
                };
                Err(ExecuteError::RolledBack(
                    self.roll_back(daemon, cause, abandon),
                ))
            }
        }
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
        if let Some(daemon) = self.engine.daemon {
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
        let original = self.observed.config_file.as_ref();
        let config_path = &self.observed.config_path;
        let error = activate::roll_back(self.host, daemon, config_path, original, cause);
        abandon();
        error
    }

    /// On the way out after a failure the originals are untouched in the
    /// containerd store: the saved images are not needed, nor a record
    /// made now. A journal of a migration not begun goes only once
    /// daemon.json is back: a rerun would otherwise finish it the wrong
    /// way, while until then the journal is what lets a rerun find the data.
    fn abandon(&self, made: &mut Made) {
        if let Some((spool, _)) = made.spool.take() {
            spool.discard();
        }
        if self.engine.record == StoreRecord::Fresh {
            let _ = image_store::remove_record(self.host, &self.observed.config_path);
        }
        let migration = self.engine.migration.filter(|_| made.journal);
        if let Some(m) = migration.filter(|_| self.config_is_back()) {
            let _ = m.withdraw_intent(self.host);
        }
    }

    /// Whether daemon.json holds again the bytes read before planning.
    fn config_is_back(&self) -> bool {
        let now = self.host.read(&self.observed.config_path).ok().flatten();
        now.map(|s| s.bytes) == self.observed.config_file.as_ref().map(|s| s.bytes.clone())
    }

    /// Loads the saved images into the restarted daemon and re-creates
    /// the containers.
    fn load(
        &self,
        spool: Option<(Spool, u64)>,
        phases: &mut Phases,
    ) -> Result<Option<CarryReport>, ExecuteError> {
        let (Some((spool, bytes)), Some(carry)) = (spool, self.engine.carry) else {
            return Ok(None);
        };
        let mut report = spool
            .load(carry.api, carry.inventory, self.timeout)
            .map_err(ExecuteError::Load)?;
        report.images_bytes = bytes;
        phases.extend(&report.phases);
        Ok(Some(report))
    }
}

/// The whole new daemon.json, userns-remap included, once the account and
/// ranges it names exist (so dockerd finds and creates nothing), when the
/// check before the writes could only see it without that key.
///
/// On refusal the account and ranges just written stay: putting the
/// account files back could undo what another tool wrote meanwhile, they
/// are inert while daemon.json does not name them, and a later run reuses
/// them instead of allocating again.
pub(crate) fn validate_after_accounts(
    host: &Host,
    validator: &Validator,
    actions: &[Action],
    config: Option<&str>,
    config_path: &Path,
) -> Result<(), ExecuteError> {
    if !actions.iter().any(Action::creates_account) || !validator.checks_userns() {
        return Ok(());
    }
    let Some(text) = config else {
        return Ok(());
    };
    activate::validate_with_dockerd(host, validator, config_path, text).map_err(|e| {
        let kept: Vec<String> = actions
            .iter()
            .filter(|a| a.creates_account() || matches!(a, Action::CompleteAccount { .. }))
            .map(Action::describe)
            .collect();
        ExecuteError::RejectedWithAccounts {
            cause: Box::new(e),
            config: config_path.to_owned(),
            kept: kept.join("; "),
        }
    })
}

/// Carries the data back before daemon.json is restored: the exact
/// inverse of the migration done, whichever way it went. The daemon that
/// failed the verify may be running on the moved data: it is stopped
/// first, and when it does not stop the data stays where it is.
fn undo_migration(
    host: &Host,
    daemon: &Daemon,
    migration: &Migration,
    done: &MigrateReport,
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
    match migration.undo(host, done) {
        Ok(report) => undone(
            cause,
            MigrationUndo::MovedBack {
                cleared: report.cleared,
            },
        ),
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
struct Writes<'a> {
    host: &'a Host,
    observed: &'a Observed,
    /// daemon.json as the plan writes it, when it changes it.
    config: Option<&'a str>,
    /// `--count`: how many ids a range to add holds.
    count: u64,
    /// Whether the plan creates the remap account (its ranges then may
    /// not reuse ids another owner's lines name).
    creating: bool,
    /// The failpoint hit before each action.
    failpoint: Option<&'static str>,
}

impl Writes<'_> {
    /// Runs the actions in order that change the host before dockerd is
    /// restarted; the daemon's steps are [`Job::daemon_steps`]'s, and the
    /// purge waits for [`Writes::purge`].
    fn run(&self, actions: &[Action]) -> Result<(), WriteError> {
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
                // dockerd's, stopped or restarted: [`Job::daemon_steps`] does them.
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
    fn purge(&self, actions: &[Action]) -> Result<(), WriteError> {
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
            Command::Enable(r) => crate::commands::enable::run_with(&host, &global, r, connect)
                .map(|o| o.changed())
                .map_err(Error::from),
            Command::Disable(r) => crate::commands::disable::run_with(&host, &global, r, connect)
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

    fn tree(dir: &tempfile::TempDir) -> crate::testing::Tree {
        crate::testing::data_root_tree(dir.path())
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

    /// A global `--root` request for `dir`, and the host it opens with
    /// `runner`.
    fn opened(
        dir: &tempfile::TempDir,
        runner: Box<dyn crate::host::Runner>,
    ) -> (crate::request::Global, Host) {
        let root = dir.path().to_str().unwrap();
        let args = ["docker-userns", "--root", root, "enable"];
        let Invocation::Run(request) = parse_args(args.iter().map(std::ffi::OsString::from)) else {
            panic!("enable is a command");
        };
        let host = Host::open(dir.path(), runner).unwrap();
        (request.global, host)
    }

    /// A job on `observed` with nothing but `actions` and `engine` to do.
    fn job<'a>(
        host: &'a Host,
        observed: &'a crate::observe::Observed,
        actions: &'a [super::Action],
        config: &'a str,
        engine: super::Engine<'a>,
    ) -> super::Job<'a> {
        super::Job {
            host,
            observed,
            data_root: std::path::Path::new("/var/lib/docker"),
            actions,
            config: Some(config),
            count: 65536,
            engine,
            converge: None,
            progress: false,
            timeout: Duration::from_secs(5),
            failpoints: super::Failpoints::default(),
        }
    }

    /// The fake daemon, and at each restart whether the spool and the
    /// image-store record are on disk.
    struct Watched {
        fake: FakeDaemon,
        paths: [std::path::PathBuf; 2],
        seen: std::rc::Rc<std::cell::RefCell<Vec<[bool; 2]>>>,
    }

    impl crate::daemon::control::DaemonControl for Watched {
        fn socket(&self) -> &std::path::Path {
            self.fake.socket()
        }
        fn info(&self) -> Result<DaemonInfo, crate::daemon::api::ApiError> {
            self.fake.info()
        }
        fn running_containers(
            &self,
        ) -> Result<Vec<ContainerSummary>, crate::daemon::api::ApiError> {
            self.fake.running_containers()
        }
        fn wait_ready(
            &self,
            deadline: std::time::Instant,
        ) -> Result<(), crate::daemon::api::ApiError> {
            self.fake.wait_ready(deadline)
        }
        fn restart_command(&self) -> Result<String, crate::daemon::control::ControlError> {
            self.fake.restart_command()
        }
        fn restart(&self) -> Result<(), crate::daemon::control::ControlError> {
            self.seen
                .borrow_mut()
                .push(self.paths.clone().map(|p| p.exists()));
            self.fake.restart()
        }
        fn stop(&self, timeout: Duration) -> Result<(), crate::daemon::control::ControlError> {
            self.fake.stop(timeout)
        }
        fn last_logs(&self) -> Option<String> {
            self.fake.last_logs()
        }
        fn api(&self) -> Option<&crate::daemon::api::DockerApi> {
            None
        }
    }

    #[test]
    fn a_restart_that_fails_after_the_save_discards_the_spool_and_the_record_made() {
        let config = "{\n  \"features\": {\"containerd-snapshotter\": true}\n}\n";
        let dir = root(config);
        std::fs::create_dir_all(dir.path().join(DATA_ROOT)).unwrap();
        let before = contents(&dir);
        let (global, host) = opened(&dir, Box::new(SystemRunner));
        let observed = crate::observe::observe(&host, &global)
            .complete(&host)
            .unwrap();
        let record = crate::image_store::record_path(&observed.config_path);
        let spool = std::path::Path::new(DATA_ROOT).join(crate::migrate::containerd::SPOOL);
        let seen = std::rc::Rc::default();
        let fake = FakeDaemon::new(up(false))
            .then(Restart::Fails("exit status: 1".into()))
            .then(Restart::To(up(false)));
        let watched = Watched {
            fake: fake.clone(),
            paths: [
                dir.path().join(spool),
                dir.path().join(record.strip_prefix("/").unwrap()),
            ],
            seen: std::rc::Rc::clone(&seen),
        };
        let daemon = Daemon::new(Box::new(watched), Duration::ZERO);
        let shown = host.display(&observed.config_path);
        let actions = [
            super::Action::SetRemap {
                path: shown.clone(),
                from: None,
                to: "default".into(),
            },
            super::Action::PinImageStore {
                path: shown,
                from: Some("{\"containerd-snapshotter\": true}".into()),
                to: "{\"containerd-snapshotter\": false}".into(),
                why: "daemon.json sets it".into(),
            },
            super::Action::RestartDaemon {
                command: "/bin/systemctl restart docker".into(),
            },
        ];
        let api = crate::daemon::api::DockerApi::new("/nonexistent/docker.sock", Duration::ZERO);
        let inventory = crate::migrate::containerd::Inventory::default();
        let engine = super::Engine {
            daemon: Some(&daemon),
            validator: None,
            migration: None,
            journal_first: false,
            carry: Some(super::Carry {
                api: &api,
                inventory: &inventory,
            }),
            expect: Some(crate::activate::Expect::NotRemapped),
            record: super::StoreRecord::Fresh,
        };
        let new = "{\n  \"features\": {\"containerd-snapshotter\": false},\n  \"userns-remap\": \"default\"\n}\n";
        let job = job(&host, &observed, &actions, new, engine);
        let error = super::execute(&job).expect_err("the restart fails");
        assert!(
            matches!(error, super::ExecuteError::RolledBack(_)),
            "{error:?}"
        );
        assert_eq!(
            seen.borrow()[0],
            [true, true],
            "saved and recorded before the restart"
        );
        let [spool, record] = [
            &job.data_root.join(crate::migrate::containerd::SPOOL),
            &record,
        ]
        .map(|p| dir.path().join(p.strip_prefix("/").unwrap()));
        assert!(!spool.exists(), "the spool is discarded");
        assert!(!record.exists(), "the record made by this run is removed");
        assert_eq!(contents(&dir), before);
        assert_eq!(fake.restarts(), 2);
    }

    #[test]
    fn disable_migrate_whose_file_writes_fail_withdraws_its_journal() {
        let dir = root(REMAPPED_CONFIG);
        state(&dir, "100000.100000", 100000);
        // The backup of daemon.json cannot be renamed over a directory.
        let blocker = dir.path().join("etc/docker/daemon.json.docker-userns.bak");
        std::fs::create_dir_all(blocker.join("in-the-way")).unwrap();
        let (before, data) = (contents(&dir), tree(&dir));
        let fake = FakeDaemon::new(up(true));
        let message = failure(&dir, &fake, &["disable", "--migrate"]);
        assert!(
            message.ends_with("daemon.json.docker-userns.bak: Is a directory (os error 21)"),
            "{message}"
        );
        assert_eq!(contents(&dir), before, "daemon.json as it was");
        assert_eq!(tree(&dir), data, "nothing moved, no journal left");
        assert!(!fake.calls().contains(&"stop"), "{:?}", fake.calls());
        assert_eq!(fake.restarts(), 0);
    }

    /// Records, at each `dockerd --validate`, the text it reads and the
    /// root's subuid and daemon.json at that moment.
    struct Effects {
        root: std::path::PathBuf,
        seen: std::rc::Rc<std::cell::RefCell<Vec<[String; 3]>>>,
        /// What dockerd says when it refuses the file.
        refuses: Option<&'static str>,
    }

    impl crate::host::Runner for Effects {
        fn run(
            &self,
            program: &std::path::Path,
            _: &[std::ffi::OsString],
        ) -> Result<String, crate::host::HostError> {
            Err(crate::host::HostError::Command {
                program: program.to_owned(),
                message: "not expected".into(),
            })
        }

        fn run_with_input(
            &self,
            _: &std::path::Path,
            _: &[std::ffi::OsString],
            input: std::os::fd::OwnedFd,
        ) -> Result<String, crate::host::HostError> {
            use std::io::Read;
            let mut text = String::new();
            std::fs::File::from(input)
                .read_to_string(&mut text)
                .unwrap();
            let read = |rel: &str| std::fs::read_to_string(self.root.join(rel)).unwrap();
            let now = [text, read("etc/subuid"), read("etc/docker/daemon.json")];
            self.seen.borrow_mut().push(now);
            match self.refuses {
                Some(message) => Err(crate::host::HostError::Command {
                    program: "/usr/sbin/dockerd".into(),
                    message: message.into(),
                }),
                None => Ok(String::new()),
            }
        }
    }

    /// A root where dockremap exists without ranges, and the actions that
    /// add its ranges and set userns-remap, run with `refuses` as
    /// dockerd's answer to `--validate`; what it saw, and the result.
    fn validated(
        dir: &tempfile::TempDir,
        refuses: Option<&'static str>,
    ) -> (
        Vec<[String; 3]>,
        Result<super::Executed, super::ExecuteError>,
    ) {
        std::fs::write(dir.path().join("etc/subuid"), "").unwrap();
        std::fs::write(dir.path().join("etc/subgid"), "").unwrap();
        let seen = std::rc::Rc::default();
        let effects = Effects {
            root: dir.path().to_owned(),
            seen: std::rc::Rc::clone(&seen),
            refuses,
        };
        let (global, host) = opened(dir, Box::new(effects));
        let observed = crate::observe::observe(&host, &global)
            .complete(&host)
            .unwrap();
        let range = crate::ids::IdRange {
            start: 100000,
            count: 65536,
        };
        let add = |kind| super::Action::AddRange {
            kind,
            owner: "dockremap".into(),
            range,
        };
        use crate::accounts::allocate::SubIdKind;
        let actions = [
            add(SubIdKind::Uid),
            add(SubIdKind::Gid),
            super::Action::SetRemap {
                path: host.display(&observed.config_path),
                from: None,
                to: "default".into(),
            },
        ];
        let validator = crate::activate::Validator {
            dockerd: "/usr/sbin/dockerd".into(),
            major: 28,
        };
        let engine = super::Engine {
            daemon: None,
            validator: Some(&validator),
            migration: None,
            journal_first: false,
            carry: None,
            expect: None,
            record: super::StoreRecord::Kept,
        };
        let result = super::execute(&job(&host, &observed, &actions, REMAPPED_CONFIG, engine));
        (seen.take(), result)
    }

    #[test]
    fn dockerd_validates_the_whole_file_after_the_ranges_are_written_and_before_daemon_json() {
        let dir = root(PLAIN_CONFIG);
        let (seen, result) = validated(&dir, None);
        result.unwrap();
        let ranges = "dockremap:100000:65536\n";
        assert_eq!(
            seen,
            [[
                REMAPPED_CONFIG.to_owned(),
                ranges.to_owned(),
                PLAIN_CONFIG.to_owned()
            ]],
            "the whole new file, with the ranges written and daemon.json not yet"
        );
        let config = std::fs::read_to_string(dir.path().join("etc/docker/daemon.json")).unwrap();
        assert_eq!(config, REMAPPED_CONFIG);
    }

    #[test]
    fn dockerd_refusing_the_whole_file_leaves_daemon_json_and_keeps_the_ranges() {
        let dir = root(PLAIN_CONFIG);
        let (seen, result) = validated(&dir, Some("invalid userns-remap"));
        assert_eq!(seen.len(), 1);
        let error = result.expect_err("dockerd refuses the file");
        assert!(
            matches!(error, super::ExecuteError::RejectedWithAccounts { .. }),
            "{error:?}"
        );
        let read = |rel: &str| std::fs::read_to_string(dir.path().join(rel)).unwrap();
        assert_eq!(read("etc/docker/daemon.json"), PLAIN_CONFIG);
        assert_eq!(read("etc/subuid"), "dockremap:100000:65536\n");
        assert_eq!(read("etc/subgid"), "dockremap:100000:65536\n");
    }
}
