//! The ID-shift engine: re-owns a tree (owners, ACL ids, capability root
//! ids) from one id range to another, the way a user-namespaced dockerd
//! needs its data to be owned.
//!
//! [`shift_tree`] walks by directory fd and never follows a symlink or
//! leaves the tree's mount (`walker`); per entry it reads what chown would
//! lose, chowns, and puts it back (`entry`, with the xattr codecs in
//! [`acl`] and [`caps`]). A marker in the tree's root (`marker`) records
//! a shift until it has finished, so an interrupted one can be resumed;
//! the container that may own that root can plant anything there, so
//! nothing found there is trusted unchecked (see `marker`).
//!
//! `open_tree` finds a tree below a root (`--root`) without leaving it:
//! no `..`, no symlink anywhere in the path.

pub mod acl;
pub mod caps;
mod dirstream;
mod entry;
mod idmap;
pub(crate) mod marker;
mod progress;
mod report;
mod walker;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

pub(crate) use entry::EntryErrorKind;
pub use idmap::IdMap;
use marker::Found;
pub use marker::{Marker, unfinished_shift};
pub use progress::{Estimate, Progress};
pub use report::{EntryError, ShiftReport};

use entry::{Meta, Scratch, Shifter, Target};
use idmap::Mapper;

/// What to shift and how.
#[derive(Debug, Clone, Default)]
pub struct ShiftOptions {
    pub uid_maps: Vec<IdMap>,
    pub gid_maps: Vec<IdMap>,
    /// Count what would change; write nothing, not even the marker.
    pub dry_run: bool,
    /// Show entries done, the rate and the time left on stderr while
    /// walking (for a terminal). A caller with its own display uses
    /// `shift_open_tree_watched` instead.
    pub progress: bool,
}

/// Why a shift did not start (or could not record its end). Failures of
/// single entries are in the [`ShiftReport`] instead.
#[derive(Debug, thiserror::Error)]
pub enum ShiftError {
    #[error("bad id map {text:?}: {reason} (expected FROM:TO:COUNT, e.g. 0:100000:65536)")]
    BadMap { text: String, reason: String },
    #[error(
        "{kind} maps {first} and {second} are refused: {reason}; choose ranges that do not overlap"
    )]
    Overlap {
        kind: &'static str,
        first: IdMap,
        second: IdMap,
        reason: &'static str,
    },
    #[error("nothing to shift: give at least one --uid-map or --gid-map")]
    NoMaps,
    #[error("{path}: {source}")]
    Open { path: PathBuf, source: Errno },
    #[error(
        "{path}: `..` is refused in the directory to shift; give its path inside the root without `..`"
    )]
    DotDot { path: PathBuf },
    #[error(
        "{path}: {component} is a symbolic link; shift does not follow links in the directory it is given (give the real path)"
    )]
    Symlink { path: PathBuf, component: PathBuf },
    #[error("{path}: {component} is not a directory")]
    NotDirectory { path: PathBuf, component: PathBuf },
    #[error("{path} is the root of the filesystem; refusing to shift it")]
    FilesystemRoot { path: PathBuf },
    #[error(
        "{path} has an unfinished shift with other maps ({found}); finish it with those maps, or remove {marker} if you know the tree is consistent"
    )]
    OtherShiftUnfinished {
        path: PathBuf,
        found: String,
        marker: PathBuf,
    },
    #[error("{path}: recording the shift in progress: {source}")]
    Marker { path: PathBuf, source: Errno },
    #[error("{path}: no worker thread could start: {source}")]
    Workers { path: PathBuf, source: Errno },
}

/// Shifts the owners and ids of every entry of the tree at `dir`, `dir`
/// included. An entry that fails is reported and the walk goes on; the
/// marker stays until a run finishes without failures. `dir` is trusted
/// (symlinks in it are followed): for a path given by a user below a
/// root, use `open_tree` and `shift_open_tree`.
pub fn shift_tree(dir: &Path, options: &ShiftOptions) -> Result<ShiftReport, ShiftError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let root = rfs::open(dir, flags, Mode::empty()).map_err(|source| ShiftError::Open {
        path: dir.to_path_buf(),
        source,
    })?;
    shift_open_tree(root, dir, options)
}

/// Opens the directory `dir` below `root` (an fd of `--root`, `/` for the
/// running system) for [`shift_open_tree`], as `root.join(dir)` would name
/// it but never leaving `root`: `..` is refused, and so is a symlink in any
/// component, even one that would resolve inside. `shown` is how `root` is
/// shown in messages.
pub(crate) fn open_tree(
    root: BorrowedFd<'_>,
    dir: &Path,
    shown: &Path,
) -> Result<OwnedFd, ShiftError> {
    let path = shown.join(crate::host::relative(dir));
    if dir.components().any(|c| c == Component::ParentDir) {
        return Err(ShiftError::DotDot {
            path: dir.to_path_buf(),
        });
    }
    let relative = crate::host::relative(dir);
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rfs::openat2(root, &relative, flags, Mode::empty(), how) {
        Ok(fd) => Ok(fd),
        Err(Errno::LOOP | Errno::NOTDIR) => Err(offending_component(root, &relative, &path)),
        Err(source) => Err(ShiftError::Open { path, source }),
    }
}

/// Why `relative` below `root` did not open as a directory without
/// following links: the first component that is a symlink or no directory.
fn offending_component(root: BorrowedFd<'_>, relative: &Path, path: &Path) -> ShiftError {
    let mut prefix = PathBuf::new();
    for component in relative.components() {
        prefix.push(component);
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let kind = rfs::openat2(root, &prefix, flags, Mode::empty(), how)
            .and_then(|fd| rfs::fstat(&fd))
            .map(|st| rfs::FileType::from_raw_mode(st.st_mode));
        let component = Path::new("/").join(&prefix);
        match kind {
            Ok(rfs::FileType::Symlink) => {
                return ShiftError::Symlink {
                    path: path.to_path_buf(),
                    component,
                };
            }
            Ok(rfs::FileType::Directory) => {}
            Ok(_) => {
                return ShiftError::NotDirectory {
                    path: path.to_path_buf(),
                    component,
                };
            }
            Err(source) => {
                return ShiftError::Open {
                    path: path.to_path_buf(),
                    source,
                };
            }
        }
    }
    ShiftError::Open {
        path: path.to_path_buf(),
        source: Errno::LOOP,
    }
}

/// Shifts the tree whose root directory is open as `root` (readable), shown
/// as `dir`; as [`shift_tree`].
pub(crate) fn shift_open_tree(
    root: OwnedFd,
    dir: &Path,
    options: &ShiftOptions,
) -> Result<ShiftReport, ShiftError> {
    shift_watched(root, dir, options, None)
}

/// [`shift_open_tree`], calling `watch` with how far the walk is about
/// four times a second, from the calling thread, and once at its end
/// ([`Progress::finished`]); [`Progress::line`] renders it. The entry
/// count starts after the checks and the marker, which take no time worth
/// showing. `options.progress` still draws the terminal line as well.
pub(crate) fn shift_open_tree_watched(
    root: OwnedFd,
    dir: &Path,
    options: &ShiftOptions,
    watch: &(dyn Fn(&Progress) + Sync),
) -> Result<ShiftReport, ShiftError> {
    shift_watched(root, dir, options, Some(watch))
}

fn shift_watched(
    root: OwnedFd,
    dir: &Path,
    options: &ShiftOptions,
    watch: Option<&(dyn Fn(&Progress) + Sync)>,
) -> Result<ShiftReport, ShiftError> {
    let started = Instant::now();
    idmap::validate("uid", &options.uid_maps)?;
    idmap::validate("gid", &options.gid_maps)?;
    if options.uid_maps.is_empty() && options.gid_maps.is_empty() {
        return Err(ShiftError::NoMaps);
    }
    let root_meta = check_root(&root, dir)?;
    let mut warnings = walker::Findings::default();
    let previous = same_shift_unfinished(dir, root.as_fd(), options, &mut warnings)?;
    // Writing the marker changes the root's mtime: keep the first run's
    // times, to put back when the marker goes.
    let root_times = match &previous {
        Some(previous) => previous.root_times,
        None => times(root.as_fd()),
    };
    let specials = if options.dry_run {
        None
    } else {
        let start = Start {
            previous: previous.as_ref(),
            root_times,
        };
        Some(record_start(
            dir,
            root.as_fd(),
            options,
            &start,
            &mut warnings,
        )?)
    };
    let (specials_log, specials_pending) = match specials {
        Some(s) => (Some(entry::SpecialsLog::new(s.file)), s.pending),
        None => (None, Default::default()),
    };
    let shifter = Shifter {
        uid: Mapper::new(&options.uid_maps),
        gid: Mapper::new(&options.gid_maps),
        dry_run: options.dry_run,
        specials_log,
        specials_pending,
    };
    let show = |p: &Progress| {
        if options.progress {
            draw(p);
        }
        if let Some(watch) = watch {
            watch(p);
        }
    };
    let watching = (options.progress || watch.is_some()).then(|| walker::Watch {
        estimate: progress::estimate(root.as_fd(), &root_meta),
        report: &show,
    });
    let (tally, mut findings) = walk(dir, root.as_fd(), root_meta, &shifter, watching.as_ref())?;
    findings.warnings.splice(0..0, warnings.warnings);
    findings.warning_count += warnings.warning_count;
    if !options.dry_run && findings.error_count == 0 {
        finish(dir, root.as_fd(), root_times, &mut findings);
    }
    Ok(ShiftReport {
        dir: dir.to_path_buf(),
        dry_run: options.dry_run,
        uid_maps: options.uid_maps.clone(),
        gid_maps: options.gid_maps.clone(),
        resumed: previous.is_some(),
        entries: tally.entries,
        changed: tally.changed,
        uids_left_alone: tally.uids_left_alone,
        gids_left_alone: tally.gids_left_alone,
        hardlinks_skipped: tally.hardlinks_skipped,
        mount_points: findings.mount_points,
        mount_point_count: findings.mount_point_count,
        errors: findings.errors,
        error_count: findings.error_count,
        warnings: findings.warnings,
        warning_count: findings.warning_count,
        elapsed: started.elapsed(),
    })
}

/// What a run starts from: the marker of the interrupted shift it
/// resumes, and the root's times before the first run.
struct Start<'a> {
    previous: Option<&'a Marker>,
    root_times: Option<(marker::Time, marker::Time)>,
}

/// Records the shift as in progress: the marker (keeping an interrupted
/// run's token, start time and root times), then the specials record,
/// with what the interrupted run recorded in it when that is to be trusted.
fn record_start(
    dir: &Path,
    root: BorrowedFd<'_>,
    options: &ShiftOptions,
    start: &Start<'_>,
    warnings: &mut walker::Findings,
) -> Result<marker::Specials, ShiftError> {
    let marker_error = |source| ShiftError::Marker {
        path: dir.join(marker::NAME),
        source,
    };
    let mut marker = Marker::new(&options.uid_maps, &options.gid_maps);
    marker.root_times = start.root_times;
    marker.token = match start.previous {
        Some(previous) if !previous.token.is_empty() => previous.token.clone(),
        _ => marker::new_token().map_err(marker_error)?,
    };
    if let Some(previous) = start.previous {
        marker.started = previous.started;
    }
    marker::write(root, &marker).map_err(marker_error)?;
    let path = dir.join(marker::SPECIALS);
    let opened =
        marker::open_specials(root, &marker.token, start.previous.is_some()).map_err(|source| {
            ShiftError::Marker {
                path: path.clone(),
                source,
            }
        })?;
    if let Some(why) = opened.ignored.clone() {
        let what = "the specials record";
        warnings.warning(path, EntryErrorKind::ForeignState { what, why });
    }
    Ok(opened)
}

/// The tree root's status, refusing the filesystem's root.
fn check_root(root: &OwnedFd, dir: &Path) -> Result<Meta, ShiftError> {
    let at = |source| ShiftError::Open {
        path: dir.to_path_buf(),
        source,
    };
    let meta = Meta::of(root.as_fd()).map_err(at)?;
    let fs_root = rfs::open("/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .and_then(|fd| Meta::of(fd.as_fd()));
    if fs_root.is_ok_and(|r| r.same_file(&meta)) {
        return Err(ShiftError::FilesystemRoot {
            path: dir.to_path_buf(),
        });
    }
    Ok(meta)
}

/// The marker of an unfinished shift with the same maps, to resume; an
/// unfinished shift with other maps is refused, as mixing two would leave
/// a tree no rerun can fix. What docker-userns did not write is reported
/// in `warnings` and otherwise ignored: the shift starts afresh.
fn same_shift_unfinished(
    dir: &Path,
    root: BorrowedFd<'_>,
    options: &ShiftOptions,
    warnings: &mut walker::Findings,
) -> Result<Option<Marker>, ShiftError> {
    let path = dir.join(marker::NAME);
    let found = marker::read(root).map_err(|source| ShiftError::Open {
        path: path.clone(),
        source,
    })?;
    let previous = match found {
        Found::Absent => None,
        Found::Ours(marker) => Some(marker),
        Found::Foreign(why) => {
            let what = "the marker of an unfinished shift";
            warnings.warning(path, EntryErrorKind::ForeignState { what, why });
            return Ok(None);
        }
    };
    match previous {
        Some(p) if !p.same_maps(&options.uid_maps, &options.gid_maps) => {
            Err(ShiftError::OtherShiftUnfinished {
                path: dir.to_path_buf(),
                found: p.unreadable.clone().map_or_else(
                    || p.describe_maps(),
                    |why| format!("its marker is damaged: {why}"),
                ),
                marker: path,
            })
        }
        previous => Ok(previous),
    }
}

/// Shifts the root's own entry, then walks what is under it.
fn walk(
    dir: &Path,
    root: BorrowedFd<'_>,
    root_meta: Meta,
    shifter: &Shifter,
    watch: Option<&walker::Watch<'_>>,
) -> Result<(walker::Tally, walker::Findings), ShiftError> {
    let root_seen = shifter.shift(&Target::Dir(root), &root_meta, &mut Scratch::default());
    let at = |source| ShiftError::Open {
        path: dir.to_path_buf(),
        source,
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOATIME;
    let walk_fd = rfs::openat(root, c".", flags, Mode::empty()).map_err(at)?;
    let (mut tally, mut findings) = walker::run(walk_fd, root, root_meta, dir, shifter, watch)
        .map_err(|source| ShiftError::Workers {
            path: dir.to_path_buf(),
            source,
        })?;
    tally.entries += 1;
    match root_seen {
        Ok(seen) => {
            tally.changed += u64::from(seen.changed);
            tally.uids_left_alone += u64::from(seen.uid_alone);
            tally.gids_left_alone += u64::from(seen.gid_alone);
            if let Some(why) = seen.record_ignored {
                findings.warning(dir.to_path_buf(), EntryErrorKind::RecordMismatch(why));
            }
        }
        Err(kind) => findings.error(dir.to_path_buf(), kind),
    }
    Ok((tally, findings))
}

/// Redraws the progress line on stderr; the last one ends it.
fn draw(progress: &Progress) {
    use std::io::Write;
    let end = if progress.finished { "\n" } else { "" };
    // Erase what a longer line before left.
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "\rshift: {}\x1b[K{end}", progress.line());
    let _ = stderr.flush();
}

/// Removes the marker of a shift that is complete, and puts back the
/// root's times that writing it changed.
fn finish(
    dir: &Path,
    root: BorrowedFd<'_>,
    root_times: Option<(marker::Time, marker::Time)>,
    findings: &mut walker::Findings,
) {
    if let Err(errno) = marker::remove_specials(root).and_then(|()| marker::remove(root)) {
        let op = "removing the marker of the finished shift";
        findings.error(dir.join(marker::NAME), EntryErrorKind::Io { op, errno });
        return;
    }
    let Some((atime, mtime)) = root_times else {
        return;
    };
    let times = rfs::Timestamps {
        last_access: timespec(atime),
        last_modification: timespec(mtime),
    };
    if let Err(errno) = rfs::futimens(root, &times) {
        let op = "restoring the times the marker changed";
        findings.error(dir.to_path_buf(), EntryErrorKind::Io { op, errno });
    }
}

fn times(fd: BorrowedFd<'_>) -> Option<(marker::Time, marker::Time)> {
    let st = rfs::fstat(fd).ok()?;
    Some((
        (st.st_atime, st.st_atime_nsec as i64),
        (st.st_mtime, st.st_mtime_nsec as i64),
    ))
}

fn timespec((tv_sec, tv_nsec): marker::Time) -> rustix::fs::Timespec {
    rustix::fs::Timespec { tv_sec, tv_nsec }
}
