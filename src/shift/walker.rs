//! The walk: depth-first over directory fds, never following a symlink
//! and never leaving the tree's mount, shared between worker threads.
//!
//! On a cold cache the walk waits on inode and directory reads, so it runs
//! more workers than cores (up to [`MAX_WORKERS`]) to keep several reads in
//! flight, and takes each directory batch in inode order (see
//! [`DirStream`]).
//!
//! Memory stays bounded by the tree's depth, not its size: each worker
//! holds one open directory per level (at most [`MAX_OPEN_DIRS`], and
//! [`OPEN_DIRS_BUDGET`] for all workers together, re-opening ancestors
//! through `..` when it climbs back), each with one getdents batch of
//! under 64 KiB decoded, and up to [`DEFERRED_MAX`] entries waiting for
//! their record to be synced; a worker hands a subdirectory to another only
//! while that one is idle; and the only set that grows with the tree
//! holds inodes with several links.
//!
//! Every entry is reached through an `O_PATH | O_NOFOLLOW` fd opened by
//! its name in its directory's fd; its status, and every change to it,
//! come from that fd, so a name swapped for another file (a symlink, a
//! hard link to a host file) between two steps redirects nothing.
//!
//! An inode with several links may have names outside the tree (a second
//! name of /etc/shadow); re-owning it would hand that file over. So it is
//! shifted only at the last of its names the walk meets, and only when
//! all its names, looked up again beneath the tree's root just then, are
//! the names the walk met, as many as its link count: a name moved to be
//! met twice does not count. Until then its names met so far are kept,
//! relative to the root: the only memory that grows with the tree, and
//! only with its hard links. Inodes never complete are left unchanged and
//! reported.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::thread::UnshareFlags;

use super::dirstream::{BATCH_BYTES, DirStream, Position};
use super::entry::{Change, EntryErrorKind, Meta, Prepared, Scratch, Seen, Shifter, Target};
use super::marker;
use super::progress::{Estimate, Progress};
use super::report::EntryError;

/// Open directories per worker before ancestors are closed: fewer when the
/// fd limit is low (see [`open_dirs_cap`]).
pub(crate) const MAX_OPEN_DIRS: usize = 64;
/// Fds left for everything else: stdio, the root, the marker, handed-off
/// directories, an `O_PATH` fd while a mode is restored.
const RESERVED_FDS: u64 = 64;
/// Errors and mount points listed in the report; the rest are counted.
pub(crate) const MAX_LISTED: usize = 1000;
/// Workers: the walk waits on inode and directory reads far more than it
/// computes, so several per core keep reads in flight on a cold cache.
/// More than 16 measured no faster: the device's queue then limits, and
/// once reads are quick the kernel's own work per entry (lookup, inode
/// read, the chown's journal update) keeps the CPUs busy.
const WORKERS_PER_CPU: usize = 8;
const MIN_WORKERS: usize = 8;
const MAX_WORKERS: usize = 16;
/// Entries a worker holds, open, until one sync makes all their records
/// of what chown strips durable (see [`Worker::defer`]).
const DEFERRED_MAX: usize = 16;
/// Open directories of all workers together, before the per-worker
/// [`MAX_OPEN_DIRS`]: each holds a decoded batch, so this bounds memory.
const OPEN_DIRS_BUDGET: usize = 512;
/// Entries a worker counts before publishing them for the progress line.
const PROGRESS_BATCH: u64 = 1024;
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// `O_NOATIME` keeps reading a directory from changing its atime.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOATIME);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) entries: u64,
    pub(crate) changed: u64,
    pub(crate) uids_left_alone: u64,
    pub(crate) gids_left_alone: u64,
    pub(crate) hardlinks_skipped: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.entries += other.entries;
        self.changed += other.changed;
        self.uids_left_alone += other.uids_left_alone;
        self.gids_left_alone += other.gids_left_alone;
        self.hardlinks_skipped += other.hardlinks_skipped;
    }
}

/// What the walk reports by path: failures, entries deliberately left
/// unchanged, and mount points.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub(crate) errors: Vec<EntryError>,
    pub(crate) error_count: u64,
    pub(crate) warnings: Vec<EntryError>,
    pub(crate) warning_count: u64,
    pub(crate) mount_points: Vec<PathBuf>,
    pub(crate) mount_point_count: u64,
}

impl Findings {
    pub(crate) fn error(&mut self, path: PathBuf, kind: EntryErrorKind) {
        self.error_count += 1;
        if self.errors.len() < MAX_LISTED {
            self.errors.push(EntryError { path, kind });
        }
    }

    /// Something left unchanged on purpose; the shift still finishes.
    pub(crate) fn warning(&mut self, path: PathBuf, kind: EntryErrorKind) {
        self.warning_count += 1;
        if self.warnings.len() < MAX_LISTED {
            self.warnings.push(EntryError { path, kind });
        }
    }
}

/// The names met so far of an inode with several links.
#[derive(Debug, Default)]
struct Links {
    nlink: u32,
    /// Relative to the tree's root.
    names: Vec<Box<[u8]>>,
}

type InodeId = ((u32, u32), u64);

/// Walks the tree under `walk`, an fd of `root` (whose own entry the
/// caller has shifted) to read it.
pub(crate) fn run(
    walk: OwnedFd,
    root: BorrowedFd<'_>,
    root_meta: Meta,
    path: &Path,
    shifter: &Shifter,
    watch: Option<&Watch<'_>>,
) -> Result<(Tally, Findings), Errno> {
    let workers = workers();
    let shared = Shared {
        shifter,
        root: root_meta,
        root_fd: root,
        root_path: path,
        hardlinks: Mutex::new(HashMap::new()),
        findings: Mutex::new(Findings::default()),
        // The root's own entry is already done.
        done: AtomicU64::new(1),
        queue: Queue::new(workers),
        open_dirs_cap: open_dirs_cap(workers),
    };
    shared.queue.offer_first(Task {
        dir: DirStream::new(walk),
        meta: root_meta,
        path: path.to_path_buf(),
        tree_root: true,
    });
    let started = Instant::now();
    let results = std::thread::scope(|scope| {
        let (alive, all_done) = mpsc::channel::<()>();
        let mut handles = Vec::new();
        for i in 0..shared.queue.worker_count() {
            let alive = alive.clone();
            let shared = &shared;
            let spawned = std::thread::Builder::new()
                .name(format!("shift-{i}"))
                .spawn_scoped(scope, move || {
                    let _alive = alive;
                    work(shared)
                });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(_) => shared.queue.retire(),
            }
        }
        drop(alive);
        if let Some(watch) = watch {
            report_progress(&shared.done, started, &all_done, watch);
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("a shift worker panicked"))
            .collect::<Vec<_>>()
    });
    let mut tally = Tally::default();
    let mut failure = None;
    for result in results {
        match result {
            Ok(t) => tally.add(&t),
            Err(e) => failure = Some(e),
        }
    }
    if shared.queue.unfinished() {
        // No worker could start, so nothing below the root was visited.
        return Err(failure.unwrap_or(Errno::AGAIN));
    }
    let mut findings = shared
        .findings
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let incomplete = shared
        .hardlinks
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    for links in incomplete.into_values() {
        let first = links.names.first().expect("a name was met");
        findings.warning(
            path.join(OsStr::from_bytes(first)),
            EntryErrorKind::LinksOutside {
                links: links.nlink,
                inside: links.names.len() as u32,
            },
        );
    }
    Ok((tally, findings))
}

/// Open directories each worker may hold, so that all of them together
/// stay within the soft limit on open fds.
fn open_dirs_cap(workers: usize) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let per_worker = (limit.saturating_sub(RESERVED_FDS) / workers.max(1) as u64)
        .saturating_sub(DEFERRED_MAX as u64);
    let budget = (OPEN_DIRS_BUDGET / workers.max(1)) as u64;
    (per_worker.min(budget).min(MAX_OPEN_DIRS as u64) as usize).max(2)
}

fn workers() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus * WORKERS_PER_CPU).clamp(MIN_WORKERS, MAX_WORKERS)
}

/// Who is told how far the walk is, and the entries to expect.
pub(crate) struct Watch<'a> {
    pub(crate) estimate: Option<Estimate>,
    pub(crate) report: &'a (dyn Fn(&Progress) + Sync),
}

/// Tells `watch` how far the walk is a few times a second until every
/// worker has dropped its end of `all_done`, then once more, finished.
fn report_progress(
    done: &AtomicU64,
    started: Instant,
    all_done: &mpsc::Receiver<()>,
    watch: &Watch<'_>,
) {
    let snapshot = |finished| Progress {
        entries: done.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        estimate: watch.estimate,
        finished,
    };
    while let Err(RecvTimeoutError::Timeout) = all_done.recv_timeout(PROGRESS_EVERY) {
        (watch.report)(&snapshot(false));
    }
    (watch.report)(&snapshot(true));
}

fn work(shared: &Shared<'_>) -> Result<Tally, Errno> {
    // The xattr calls reach entries by name relative to the cwd, so each
    // worker needs a cwd of its own.
    // SAFETY: CLONE_FS unshares only cwd, root and umask; the fd table,
    // which the safety contract is about, stays shared.
    if let Err(e) = unsafe { rustix::thread::unshare_unsafe(UnshareFlags::FS) } {
        shared.queue.retire();
        return Err(e);
    }
    let mut worker = Worker {
        shared,
        tally: Tally::default(),
        scratch: Scratch::default(),
        getdents: Vec::with_capacity(BATCH_BYTES),
        deferred: Vec::with_capacity(DEFERRED_MAX),
        unpublished: 0,
        cwd: 0,
        last_id: 0,
    };
    while let Some(task) = shared.queue.take() {
        worker.walk(task);
    }
    worker.flush_deferred();
    shared.done.fetch_add(worker.unpublished, Ordering::Relaxed);
    Ok(worker.tally)
}

struct Shared<'a> {
    shifter: &'a Shifter,
    /// The tree root: entries on another mount are not entered.
    root: Meta,
    /// Names of inodes with several links are looked up again beneath it.
    root_fd: BorrowedFd<'a>,
    /// How the root is shown; every path of the walk starts with it.
    root_path: &'a Path,
    /// Inodes with several links not all of whose names were met yet.
    hardlinks: Mutex<HashMap<InodeId, Links>>,
    findings: Mutex<Findings>,
    /// Entries done, for the progress line.
    done: AtomicU64,
    queue: Queue,
    /// Open directories per worker before ancestors are closed.
    open_dirs_cap: usize,
}

impl Shared<'_> {
    fn findings(&self) -> MutexGuard<'_, Findings> {
        self.findings.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A directory to walk whose own entry is already shifted.
struct Task {
    dir: DirStream,
    meta: Meta,
    path: PathBuf,
    /// The root of the whole tree, where the marker lives.
    tree_root: bool,
}

/// One directory on a worker's path from its task's root.
struct Level {
    /// `None` while closed to save fds; re-opened through the child's `..`.
    dir: Option<DirStream>,
    meta: Meta,
    /// Where to resume reading after a re-open: at the child being walked.
    resume: Position,
    /// Tells levels apart, to know whether the cwd is this directory.
    id: u64,
}

struct Worker<'a> {
    shared: &'a Shared<'a>,
    tally: Tally,
    scratch: Scratch,
    /// The getdents buffer, lent to whichever directory is being read.
    getdents: Vec<u8>,
    /// Entries whose chown strips set-id bits or a capability, waiting
    /// for their record to be durable.
    deferred: Vec<Deferred>,
    unpublished: u64,
    /// The [`Level::id`] of the directory that is this thread's cwd; the cwd
    /// follows the walk only when an entry needs it, and many directories
    /// hold nothing but subdirectories.
    cwd: u64,
    last_id: u64,
}

/// An entry held open until its record of what chown strips is durable.
struct Deferred {
    fd: OwnedFd,
    name: CString,
    meta: Meta,
    path: PathBuf,
    change: Change,
}

fn child_path(path: &Path, name: &CStr) -> PathBuf {
    path.join(OsStr::from_bytes(name.to_bytes()))
}

fn open_fd(level: &Level) -> BorrowedFd<'_> {
    level
        .dir
        .as_ref()
        .expect("the current directory is open")
        .fd()
}

/// A worker's way down from its task's directory: the directories on it,
/// their path, and the first of them still open.
struct Branch {
    levels: Vec<Level>,
    path: PathBuf,
    first_open: usize,
}

impl Worker<'_> {
    fn walk(&mut self, task: Task) {
        let root = Level {
            dir: Some(task.dir),
            meta: task.meta,
            resume: Position::default(),
            id: self.new_id(),
        };
        let mut branch = Branch {
            levels: vec![root],
            path: task.path,
            first_open: 0,
        };
        loop {
            let at_task_root = branch.levels.len() == 1;
            let top = branch
                .levels
                .last_mut()
                .expect("a directory is being walked");
            let stream = top.dir.as_mut().expect("the current directory is open");
            match stream.advance(&mut self.getdents) {
                Ok(true) => {}
                end => {
                    if let Err(errno) = end {
                        let op = "reading the directory";
                        self.error(branch.path.clone(), EntryErrorKind::Io { op, errno });
                    }
                    if !self.climb(&mut branch) {
                        return;
                    }
                    continue;
                }
            }
            let name = stream.name();
            if name == c"."
                || name == c".."
                || (task.tree_root && at_task_root && marker::is_marker_name(name))
            {
                continue;
            }
            let Some((child, meta)) = self.visit(stream.fd(), top.id, name, &branch.path) else {
                continue;
            };
            let (name, resume) = (name.to_owned(), stream.position());
            let child = if self.shared.queue.wants_work() {
                let task = Task {
                    dir: child,
                    meta,
                    path: child_path(&branch.path, &name),
                    tree_root: false,
                };
                match self.shared.queue.offer(task) {
                    None => continue,
                    Some(task) => task.dir,
                }
            } else {
                child
            };
            self.descend(&mut branch, child, meta, &name, resume);
        }
    }

    /// Goes down into `child`, named `name`; reading its parent will go on
    /// at `resume`.
    fn descend(
        &mut self,
        branch: &mut Branch,
        child: DirStream,
        meta: Meta,
        name: &CStr,
        resume: Position,
    ) {
        branch.levels.last_mut().expect("a parent").resume = resume;
        branch.levels.push(Level {
            dir: Some(child),
            meta,
            resume: Position::default(),
            id: self.new_id(),
        });
        branch.path.push(OsStr::from_bytes(name.to_bytes()));
        if branch.levels.len() - branch.first_open > self.shared.open_dirs_cap {
            branch.levels[branch.first_open].dir = None;
            branch.first_open += 1;
        }
    }

    /// Leaves the finished top directory for its parent; `false` when the
    /// task is done or cannot go on.
    fn climb(&mut self, branch: &mut Branch) -> bool {
        let finished = branch.levels.pop().expect("a directory is being walked");
        let parent_index = branch.levels.len().wrapping_sub(1);
        let Some(parent) = branch.levels.last_mut() else {
            return false;
        };
        branch.path.pop();
        if parent.dir.is_none() {
            match reopen_parent(open_fd(&finished), parent, &mut self.getdents) {
                Ok(dir) => {
                    parent.dir = Some(dir);
                    parent.id = self.new_id();
                }
                Err(kind) => {
                    self.error(branch.path.clone(), kind);
                    return false;
                }
            }
            branch.first_open = parent_index;
        }
        true
    }

    fn new_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    /// Makes `dir`, the directory of level `id`, the cwd.
    fn enter(&mut self, dir: BorrowedFd<'_>, id: u64) -> Result<(), Errno> {
        if self.cwd != id {
            self.cwd = 0;
            rustix::process::fchdir(dir)?;
            self.cwd = id;
        }
        Ok(())
    }

    /// Shifts the entry `name` in `dir`; returns it open when it is a
    /// directory to walk.
    fn visit(
        &mut self,
        dir: BorrowedFd<'_>,
        dir_id: u64,
        name: &CStr,
        path: &Path,
    ) -> Option<(DirStream, Meta)> {
        let (fd, meta) = match open_entry(dir, name) {
            Ok(found) => found,
            // Removed since it was listed: nothing left to shift.
            Err((_, Errno::NOENT)) => return None,
            Err((op, errno)) => {
                self.count_entry();
                self.error(child_path(path, name), EntryErrorKind::Io { op, errno });
                return None;
            }
        };
        if !self.on_tree_mount(&meta) {
            self.mount_point(child_path(path, name));
            return None;
        }
        self.count_entry();
        if meta.is_dir() {
            return self.open_dir(fd.as_fd(), &meta, || child_path(path, name));
        }
        if meta.nlink > 1 && !self.last_link(fd.as_fd(), &meta, &child_path(path, name)) {
            self.tally.hardlinks_skipped += 1;
            return None;
        }
        // Symlinks get no xattr calls, the only ones that need the cwd.
        if !meta.is_symlink() {
            if let Err(errno) = self.enter(dir, dir_id) {
                let kind = EntryErrorKind::Io {
                    op: "entering its directory",
                    errno,
                };
                self.error(child_path(path, name), kind);
                return None;
            }
        }
        let shifter = self.shared.shifter;
        let target = Target::Name {
            name,
            fd: fd.as_fd(),
        };
        let change = match shifter.prepare(&target, &meta, &mut self.scratch) {
            Ok(Prepared::Change(change)) => change,
            Ok(Prepared::Done(seen)) => {
                self.count_shift(Ok(seen), || child_path(path, name));
                return None;
            }
            Err(kind) => {
                self.count_shift(Err(kind), || child_path(path, name));
                return None;
            }
        };
        if change.needs_record() {
            self.defer(Deferred {
                fd,
                name: name.to_owned(),
                meta,
                path: child_path(path, name),
                change,
            });
        } else {
            let applied = shifter.apply(&target, &meta, change);
            self.count_shift(applied, || child_path(path, name));
        }
        None
    }

    /// Holds `entry`, whose chown strips set-id bits or a capability, until
    /// [`DEFERRED_MAX`] such entries wait: then one sync makes all their
    /// records durable before their chowns. A sync costs a journal commit,
    /// and one per entry is what a cold walk waited on most.
    fn defer(&mut self, entry: Deferred) {
        self.deferred.push(entry);
        if self.deferred.len() >= DEFERRED_MAX {
            self.flush_deferred();
        }
    }

    /// Records what the chowns of the held entries strip, durably, then
    /// shifts them through their fds.
    fn flush_deferred(&mut self) {
        if self.deferred.is_empty() {
            return;
        }
        let mut deferred = std::mem::take(&mut self.deferred);
        let lines: Vec<u8> = deferred
            .iter()
            .filter_map(|entry| entry.change.record_line())
            .flat_map(String::into_bytes)
            .collect();
        let recorded = self.shared.shifter.record_specials(&lines);
        for entry in deferred.drain(..) {
            let Deferred {
                fd,
                name,
                meta,
                path,
                change,
            } = entry;
            let result = match &recorded {
                Ok(()) => {
                    let target = Target::Name {
                        name: &name,
                        fd: fd.as_fd(),
                    };
                    self.shared.shifter.apply(&target, &meta, change)
                }
                Err(kind) => Err(kind.clone()),
            };
            self.count_shift(result, || path);
        }
        self.deferred = deferred;
    }

    /// Opens the directory whose `O_PATH` fd is `fd` through that fd (as
    /// its `.`, no name looked up again: the inode is the one `meta`
    /// describes) and shifts it.
    fn open_dir(
        &mut self,
        fd: BorrowedFd<'_>,
        meta: &Meta,
        path: impl Fn() -> PathBuf,
    ) -> Option<(DirStream, Meta)> {
        let fd = match open_dir_at(fd, c".") {
            Ok(fd) => fd,
            Err(errno) => {
                let op = "opening the directory";
                self.error(path(), EntryErrorKind::Io { op, errno });
                return None;
            }
        };
        self.shift(&Target::Dir(fd.as_fd()), meta, &path);
        Some((DirStream::new(fd), *meta))
    }

    fn shift(&mut self, target: &Target<'_>, meta: &Meta, path: impl FnOnce() -> PathBuf) {
        let result = self.shared.shifter.shift(target, meta, &mut self.scratch);
        self.count_shift(result, path);
    }

    /// Counts the outcome of one entry's shift.
    fn count_shift(
        &mut self,
        result: Result<Seen, EntryErrorKind>,
        path: impl FnOnce() -> PathBuf,
    ) {
        match result {
            Ok(seen) => {
                self.tally.changed += u64::from(seen.changed);
                self.tally.uids_left_alone += u64::from(seen.uid_alone);
                self.tally.gids_left_alone += u64::from(seen.gid_alone);
                if let Some(why) = seen.record_ignored {
                    let kind = EntryErrorKind::RecordMismatch(why);
                    self.shared.findings().warning(path(), kind);
                }
            }
            Err(kind) => self.error(path(), kind),
        }
    }

    /// Notes this name of the inode `fd`, named `path`; `true` when it is
    /// the last of its names and all of them are inside the tree, so the
    /// inode is to be shifted now.
    fn last_link(&self, fd: BorrowedFd<'_>, meta: &Meta, path: &Path) -> bool {
        let relative = path
            .strip_prefix(self.shared.root_path)
            .expect("walk paths start at the root")
            .as_os_str()
            .as_bytes();
        let links = {
            let mut table = self
                .shared
                .hardlinks
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let key = (meta.dev, meta.ino);
            let links = table.entry(key).or_default();
            links.nlink = meta.nlink;
            links.names.push(relative.into());
            if links.names.len() < meta.nlink as usize {
                return false;
            }
            table.remove(&key).expect("just updated")
        };
        let (inside, nlink) = names_inside(self.shared.root_fd, fd, links.names);
        if inside == nlink {
            return true;
        }
        let kind = EntryErrorKind::LinksOutside {
            links: nlink,
            inside,
        };
        self.shared.findings().warning(path.to_path_buf(), kind);
        false
    }

    fn on_tree_mount(&self, meta: &Meta) -> bool {
        let root = &self.shared.root;
        // The mount id also catches bind mounts from the same filesystem.
        meta.dev == root.dev && (meta.mnt_id.is_none() || meta.mnt_id == root.mnt_id)
    }

    fn count_entry(&mut self) {
        self.tally.entries += 1;
        self.unpublished += 1;
        if self.unpublished == PROGRESS_BATCH {
            self.shared
                .done
                .fetch_add(PROGRESS_BATCH, Ordering::Relaxed);
            self.unpublished = 0;
        }
    }

    fn error(&self, path: PathBuf, kind: EntryErrorKind) {
        self.shared.findings().error(path, kind);
    }

    fn mount_point(&self, path: PathBuf) {
        let mut findings = self.shared.findings();
        findings.mount_point_count += 1;
        if findings.mount_points.len() < MAX_LISTED {
            findings.mount_points.push(path);
        }
    }
}

/// An `O_PATH` fd on the entry `name` of `dir` (never following it), and
/// its status; on failure, what failed.
fn open_entry(dir: BorrowedFd<'_>, name: &CStr) -> Result<(OwnedFd, Meta), (&'static str, Errno)> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, name, flags, Mode::empty()).map_err(|e| ("opening", e))?;
    let meta = Meta::of(fd.as_fd()).map_err(|e| ("stat", e))?;
    Ok((fd, meta))
}

/// How many of `names` (relative to `root`, deduplicated) are, right now,
/// names of the inode `fd` beneath `root`, never through a symlink or a
/// mount, and the inode's link count now.
fn names_inside(root: BorrowedFd<'_>, fd: BorrowedFd<'_>, mut names: Vec<Box<[u8]>>) -> (u32, u32) {
    let Ok(now) = Meta::of(fd) else {
        return (0, 0);
    };
    names.sort_unstable();
    names.dedup();
    let how = ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_MAGICLINKS
        | ResolveFlags::NO_XDEV;
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let inside = names
        .iter()
        .filter(|name| {
            rfs::openat2(root, OsStr::from_bytes(name), flags, Mode::empty(), how)
                .and_then(|found| Meta::of(found.as_fd()))
                .is_ok_and(|found| found.same_file(&now))
        })
        .count();
    (inside as u32, now.nlink)
}

fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    match rfs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
        // O_NOATIME needs ownership or CAP_FOWNER.
        Err(Errno::PERM) => rfs::openat(dir, name, DIR_FLAGS - OFlags::NOATIME, Mode::empty()),
        other => other,
    }
}

/// Re-opens a closed ancestor through its child's `..`, checks it is still
/// the same directory, and goes back to where its reading stopped.
fn reopen_parent(
    child: BorrowedFd<'_>,
    parent: &Level,
    buf: &mut Vec<u8>,
) -> Result<DirStream, EntryErrorKind> {
    let moved = EntryErrorKind::Walk(
        "moved during the walk: the rest of this directory and of those above it in this walk was not shifted",
    );
    let io = |op| move |errno| EntryErrorKind::Io { op, errno };
    let fd = open_dir_at(child, c"..").map_err(io("re-opening the directory"))?;
    if !Meta::of(fd.as_fd())
        .map_err(io("stat"))?
        .same_file(&parent.meta)
    {
        return Err(moved);
    }
    let mut dir = DirStream::new(fd);
    let same = dir
        .restore(parent.resume, buf)
        .map_err(io("reading the directory again"))?;
    if !same {
        return Err(EntryErrorKind::Walk(
            "changed during the walk: the rest of this directory and of those above it in this walk was not shifted",
        ));
    }
    Ok(dir)
}

/// Subdirectories handed from busy workers to idle ones.
struct Queue {
    state: Mutex<QueueState>,
    wake: Condvar,
    /// Mirrors "some worker is idle and no task waits for it", so busy
    /// workers check it without the lock.
    hungry: AtomicBool,
}

struct QueueState {
    tasks: Vec<Task>,
    workers: usize,
    idle: usize,
    finished: bool,
}

impl Queue {
    fn new(workers: usize) -> Queue {
        Queue {
            state: Mutex::new(QueueState {
                tasks: Vec::new(),
                workers,
                idle: 0,
                finished: false,
            }),
            wake: Condvar::new(),
            hungry: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn worker_count(&self) -> usize {
        self.lock().workers
    }

    fn set_hungry(&self, state: &QueueState) {
        self.hungry
            .store(state.idle > state.tasks.len(), Ordering::Relaxed);
    }

    fn offer_first(&self, task: Task) {
        self.lock().tasks.push(task);
    }

    fn wants_work(&self) -> bool {
        self.hungry.load(Ordering::Relaxed)
    }

    /// Hands `task` to an idle worker, or gives it back when none waits.
    fn offer(&self, task: Task) -> Option<Task> {
        let mut state = self.lock();
        if state.finished || state.tasks.len() >= state.idle {
            self.set_hungry(&state);
            return Some(task);
        }
        state.tasks.push(task);
        self.set_hungry(&state);
        self.wake.notify_one();
        None
    }

    /// The next task; `None` once every worker is idle with nothing queued.
    fn take(&self) -> Option<Task> {
        let mut state = self.lock();
        loop {
            if let Some(task) = state.tasks.pop() {
                self.set_hungry(&state);
                return Some(task);
            }
            if state.finished {
                return None;
            }
            state.idle += 1;
            if state.idle == state.workers {
                state.finished = true;
                self.hungry.store(false, Ordering::Relaxed);
                self.wake.notify_all();
                return None;
            }
            self.set_hungry(&state);
            state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            state.idle -= 1;
        }
    }

    /// A worker that could not start leaves the count.
    fn retire(&self) {
        let mut state = self.lock();
        state.workers -= 1;
        if state.workers == state.idle {
            state.finished = true;
            self.wake.notify_all();
        }
    }

    /// Whether tasks were left with no worker to take them.
    fn unfinished(&self) -> bool {
        !self.lock().tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &Path, flags: OFlags) -> OwnedFd {
        rfs::open(path, flags | OFlags::CLOEXEC, Mode::empty()).unwrap()
    }

    fn names(list: &[&str]) -> Vec<Box<[u8]>> {
        list.iter().map(|n| n.as_bytes().into()).collect()
    }

    #[test]
    fn a_name_met_twice_or_outside_does_not_count_as_inside() {
        let base = tempfile::tempdir().unwrap();
        let tree = base.path().join("tree");
        std::fs::create_dir_all(tree.join("a")).unwrap();
        std::fs::create_dir_all(tree.join("b")).unwrap();
        std::fs::write(base.path().join("outside"), "host").unwrap();
        std::fs::hard_link(base.path().join("outside"), tree.join("b/link")).unwrap();
        std::os::unix::fs::symlink(base.path(), tree.join("up")).unwrap();
        let root = open(&tree, OFlags::RDONLY | OFlags::DIRECTORY);
        let inode = open(&tree.join("b/link"), OFlags::PATH);
        // The link, met in a/ and again in b/ after a rename, and reached
        // through a symlink out of the tree: one name inside, two links.
        let met = names(&["a/link", "b/link", "b/link", "up/outside", "../outside"]);
        assert_eq!(names_inside(root.as_fd(), inode.as_fd(), met), (1, 2));
        std::fs::hard_link(tree.join("b/link"), tree.join("a/link")).unwrap();
        std::fs::remove_file(base.path().join("outside")).unwrap();
        let met = names(&["a/link", "b/link"]);
        assert_eq!(names_inside(root.as_fd(), inode.as_fd(), met), (2, 2));
    }
}
