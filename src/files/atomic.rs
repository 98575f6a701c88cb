//! The one atomic writer: a temp file created `O_EXCL|O_NOFOLLOW` in the
//! target's own directory, held by descriptor; written, given its owner,
//! mode and SELinux label on that descriptor, fsynced, renamed over the
//! target within the same held directory, and the directory fsynced. The
//! temp file is removed on every error path.
//!
//! [`replace`] serves files found through the [`Host`] (with a backup and a
//! check that the file did not change since it was read); callers that
//! already hold the directory (a migration, a shift's marker) use
//! [`replace_at`].

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::host::{FileMeta, Host, HostError, Snapshot, split};

/// Owner and mode for a file created from scratch.
pub const NEW_FILE: (u32, u32, u32) = (0, 0, 0o644);

/// What to write and what it replaces.
pub struct Replace<'a> {
    pub path: &'a Path,
    pub bytes: &'a [u8],
    /// The file as read before planning; `None` when it did not exist.
    pub previous: Option<&'a Snapshot>,
    /// Name of the backup to keep of the previous content, in the same dir.
    pub backup: Option<OsString>,
}

/// Replaces a file atomically. Readers see the old or the new content,
/// never a mix; on any error the original is left as it was. When the file
/// changed on disk since it was read, nothing is written.
///
/// The backup and the new content are both written to temp files before
/// either is renamed, so a full disk fails before anything is replaced and
/// leaves neither a temp file nor a new backup behind.
pub fn replace(host: &Host, job: &Replace<'_>) -> Result<(), HostError> {
    let (parent, name) = split(job.path);
    let dir = host.open_dir(parent)?;
    ensure_unchanged(host, &dir, job)?;
    let (uid, gid, mode) = job
        .previous
        .map_or(NEW_FILE, |p| (p.meta.uid, p.meta.gid, p.meta.mode));
    let perms = Perms {
        owner: Some((uid, gid)),
        mode,
        label: job.previous.and_then(|p| p.selinux_label.as_deref()),
    };
    let shown = |e: AtomicError| {
        let name = e.name().unwrap_or(name);
        HostError::io(&host.display(&job.path.with_file_name(name)), e.errno())
    };
    let backup = match (&job.backup, job.previous) {
        (Some(backup), Some(previous)) => Some(
            stage_replacing_stale(dir.as_fd(), backup, &previous.bytes, perms).map_err(shown)?,
        ),
        _ => None,
    };
    let new = stage_replacing_stale(dir.as_fd(), name, job.bytes, perms).map_err(shown)?;
    if let Some(backup) = backup {
        commit_at_failpoints(backup).map_err(shown)?;
        crate::failpoint::hit("write.after_backup");
    }
    commit_at_failpoints(new).map_err(shown)?;
    rfs::fsync(&dir).map_err(|e| HostError::io(&host.display(job.path), e))
}

/// A dead writer's temp files go first, so a rerun leaves the directory as
/// a clean run does; whatever else waits at our temp name is replaced.
fn stage_replacing_stale<'d>(
    dir: BorrowedFd<'d>,
    name: &OsStr,
    bytes: &[u8],
    perms: Perms<'_>,
) -> Result<Staged<'d>, AtomicError> {
    remove_stale_temps(dir, name);
    Staged::write(dir, name, temp_name(name), Leftover::Replace, bytes, perms)
}

fn commit_at_failpoints(staged: Staged<'_>) -> Result<(), AtomicError> {
    crate::failpoint::hit("write.before_rename");
    staged.commit()?;
    crate::failpoint::hit("write.after_rename");
    Ok(())
}

/// Owner, mode and SELinux label for a new file.
#[derive(Debug, Clone, Copy)]
pub struct Perms<'a> {
    /// `None` leaves the file to its creator, root.
    pub owner: Option<(u32, u32)>,
    pub mode: u32,
    pub label: Option<&'a [u8]>,
}

/// What becomes of anything already at the temp name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// It goes: it can only be a dead writer's or something planted, and
    /// the `O_EXCL|O_NOFOLLOW` create never follows one put back meanwhile.
    Replace,
    /// The write fails: the caller checked that nothing is there, and
    /// something appearing since is not to be touched.
    Refuse,
}

/// A step of an atomic write that failed, with the name it failed on.
#[derive(Debug, thiserror::Error)]
pub enum AtomicError {
    /// Creating, writing, setting up or syncing the temp file.
    #[error("{}: {source}", .temp.to_string_lossy())]
    Temp { temp: OsString, source: Errno },
    #[error("renaming over {}: {source}", .name.to_string_lossy())]
    Rename { name: OsString, source: Errno },
    #[error("syncing the directory: {source}")]
    SyncDir { source: Errno },
}

impl AtomicError {
    /// The file name in the directory that the failed step was acting on.
    pub fn name(&self) -> Option<&OsStr> {
        match self {
            AtomicError::Temp { temp, .. } => Some(temp),
            AtomicError::Rename { name, .. } => Some(name),
            AtomicError::SyncDir { .. } => None,
        }
    }

    pub fn errno(&self) -> Errno {
        match self {
            AtomicError::Temp { source, .. }
            | AtomicError::Rename { source, .. }
            | AtomicError::SyncDir { source } => *source,
        }
    }
}

/// The name of the temp file that replaces `name`: hidden (one leading
/// dot), and the pid keeps two runs apart.
pub fn temp_name(name: &OsStr) -> OsString {
    let mut temp = temp_prefix(name);
    temp.push(format!("{}.tmp", std::process::id()));
    temp
}

/// What every writer's temp name for `name` starts with, whatever its pid.
fn temp_prefix(name: &OsStr) -> OsString {
    let mut prefix = OsString::from(if name.as_bytes().starts_with(b".") {
        ""
    } else {
        "."
    });
    prefix.push(name);
    prefix.push(".");
    prefix
}

/// Replaces `name` in the held directory `dir` with `bytes` through the
/// temp file `temp`: readers see the old content or the new, and after a
/// crash the file is one or the other.
pub fn replace_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    temp: OsString,
    leftover: Leftover,
    bytes: &[u8],
    perms: Perms<'_>,
) -> Result<(), AtomicError> {
    Staged::write(dir, name, temp, leftover, bytes, perms)?.commit()?;
    rfs::fsync(dir).map_err(|source| AtomicError::SyncDir { source })
}

/// Creates a directory (mode 0755 root:root) if it is missing.
pub fn ensure_dir(host: &Host, path: &Path) -> Result<(), HostError> {
    if host.open_dir(path).is_ok() {
        return Ok(());
    }
    let (parent, name) = split(path);
    ensure_dir(host, parent)?;
    let dir = host.open_dir(parent)?;
    match rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(HostError::io(&host.display(path), e)),
    }
}

fn ensure_unchanged(host: &Host, dir: &OwnedFd, job: &Replace<'_>) -> Result<(), HostError> {
    let (_, name) = split(job.path);
    let now = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Some(FileMeta::from_stat(&st)),
        Err(Errno::NOENT) => None,
        Err(e) => return Err(HostError::io(&host.display(job.path), e)),
    };
    let before = job.previous.map(|p| p.meta);
    let same = match (before, now) {
        (None, None) => true,
        (Some(b), Some(n)) => (b.dev, b.ino, b.size, b.mtime) == (n.dev, n.ino, n.size, n.mtime),
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(HostError::Refused {
            path: host.display(job.path),
            what:
                "changed on disk while docker-userns was working; nothing was written, run it again"
                    .into(),
        })
    }
}

/// A complete temp file next to its target, renamed over it by
/// [`Staged::commit`]; removed when dropped uncommitted, so no error path
/// leaves it behind.
struct Staged<'d> {
    dir: BorrowedFd<'d>,
    name: OsString,
    temp: OsString,
    committed: bool,
}

impl<'d> Staged<'d> {
    fn write(
        dir: BorrowedFd<'d>,
        name: &OsStr,
        temp: OsString,
        leftover: Leftover,
        bytes: &[u8],
        perms: Perms<'_>,
    ) -> Result<Self, AtomicError> {
        if leftover == Leftover::Replace {
            match rfs::unlinkat(dir, &temp, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                // A directory there: say so rather than "exists".
                Err(source) => return Err(AtomicError::Temp { temp, source }),
            }
        }
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rfs::openat(dir, &temp, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => fd,
            Err(source) => return Err(AtomicError::Temp { temp, source }),
        };
        let staged = Staged {
            dir,
            name: name.to_owned(),
            temp,
            committed: false,
        };
        match fill(fd, bytes, perms) {
            Ok(()) => Ok(staged),
            Err(source) => Err(AtomicError::Temp {
                temp: staged.temp.clone(),
                source,
            }),
        }
    }

    fn commit(mut self) -> Result<(), AtomicError> {
        rfs::renameat(self.dir, &self.temp, self.dir, &self.name).map_err(|source| {
            AtomicError::Rename {
                name: self.name.clone(),
                source,
            }
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = rfs::unlinkat(self.dir, &self.temp, AtFlags::empty());
        }
    }
}

/// Temp files of ours whose writer died (a crash between write and
/// rename) are removed, so a rerun leaves the directory as a clean run does.
fn remove_stale_temps(dir: BorrowedFd<'_>, name: &OsStr) {
    let Ok(listing) = rfs::Dir::read_from(dir) else {
        return;
    };
    let prefix = temp_prefix(name).to_string_lossy().into_owned();
    for entry in listing.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let pid = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"));
        if pid
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(crate::files::lock::is_dead)
        {
            let _ = rfs::unlinkat(dir, entry.file_name(), AtFlags::empty());
        }
    }
}

/// The content, then owner, mode and label on the descriptor (fchown
/// clears set-id bits, so the mode goes on after it), then fsync.
fn fill(fd: OwnedFd, bytes: &[u8], perms: Perms<'_>) -> Result<(), Errno> {
    write_all(&fd, bytes)?;
    if let Some((uid, gid)) = perms.owner {
        rfs::fchown(
            &fd,
            Some(rfs::Uid::from_raw(uid)),
            Some(rfs::Gid::from_raw(gid)),
        )?;
    }
    rfs::fchmod(&fd, Mode::from_raw_mode(perms.mode))?;
    if let Some(label) = perms.label {
        match rfs::fsetxattr(&fd, "security.selinux", label, rfs::XattrFlags::empty()) {
            Ok(()) | Err(Errno::NOTSUP) => {}
            Err(e) => return Err(e),
        }
    }
    rfs::fsync(&fd)
}

fn write_all(fd: &OwnedFd, mut rest: &[u8]) -> Result<(), Errno> {
    while !rest.is_empty() {
        match rustix::io::write(fd, rest) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => rest = &rest[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes a file and makes the removal durable.
pub fn remove(host: &Host, path: &Path) -> Result<(), HostError> {
    let (parent, name) = split(path);
    let dir = host.open_dir(parent)?;
    match rfs::unlinkat(&dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(HostError::io(&host.display(path), e)),
    }
    rfs::fsync(&dir).map_err(|e| HostError::io(&host.display(path), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::SystemRunner;
    use std::fs;

    #[test]
    fn a_planted_temp_link_is_replaced_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        fs::create_dir(&etc).unwrap();
        fs::write(etc.join("subuid"), "old\n").unwrap();
        let victim = root.path().join("victim");
        fs::write(&victim, "keep\n").unwrap();
        let temp = format!(".subuid.{}.tmp", std::process::id());
        std::os::unix::fs::symlink(&victim, etc.join(&temp)).unwrap();
        let host = Host::open(root.path(), Box::new(SystemRunner)).unwrap();
        let previous = host.read(Path::new("/etc/subuid")).unwrap().unwrap();
        let job = Replace {
            path: Path::new("/etc/subuid"),
            bytes: b"new\n",
            previous: Some(&previous),
            backup: Some("subuid-".into()),
        };
        replace(&host, &job).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep\n");
        assert_eq!(fs::read_to_string(etc.join("subuid")).unwrap(), "new\n");
        assert_eq!(fs::read_to_string(etc.join("subuid-")).unwrap(), "old\n");
        let mut names: Vec<_> = fs::read_dir(&etc)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["subuid", "subuid-"]);
    }

    fn open_dir(path: &Path) -> OwnedFd {
        rfs::open(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    fn names(dir: &Path) -> Vec<std::ffi::OsString> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    }

    const ROOT_ONLY: Perms<'static> = Perms {
        owner: Some((0, 0)),
        mode: 0o640,
        label: None,
    };

    #[test]
    fn replace_at_gives_owner_and_mode_and_leaves_only_the_file() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "old").unwrap();
        let fd = open_dir(dir.path());
        let temp = temp_name(OsStr::new("f"));
        replace_at(
            fd.as_fd(),
            OsStr::new("f"),
            temp,
            Leftover::Refuse,
            b"new",
            ROOT_ONLY,
        )
        .unwrap();
        let meta = fs::metadata(dir.path().join("f")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (0, 0, 0o640)
        );
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["f"]);
    }

    #[test]
    fn a_failed_rename_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("f/inside")).unwrap();
        let fd = open_dir(dir.path());
        let temp = temp_name(OsStr::new("f"));
        let err = replace_at(
            fd.as_fd(),
            OsStr::new("f"),
            temp,
            Leftover::Replace,
            b"x",
            ROOT_ONLY,
        )
        .unwrap_err();
        assert!(matches!(err, AtomicError::Rename { .. }), "{err:?}");
        assert_eq!(err.name(), Some(OsStr::new("f")));
        assert_eq!(names(dir.path()), ["f"]);
    }

    #[test]
    fn what_waits_at_the_temp_name_is_refused_or_replaced_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let temp = temp_name(OsStr::new("f"));
        std::os::unix::fs::symlink(&victim, dir.path().join(&temp)).unwrap();
        let fd = open_dir(dir.path());
        let refused = replace_at(
            fd.as_fd(),
            OsStr::new("f"),
            temp.clone(),
            Leftover::Refuse,
            b"new",
            ROOT_ONLY,
        )
        .unwrap_err();
        assert_eq!(refused.errno(), Errno::EXIST);
        assert!(fs::symlink_metadata(dir.path().join(&temp)).is_ok());
        replace_at(
            fd.as_fd(),
            OsStr::new("f"),
            temp,
            Leftover::Replace,
            b"new",
            ROOT_ONLY,
        )
        .unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(names(dir.path()), ["f", "victim"]);
    }

    #[test]
    fn temp_names_are_hidden_by_one_dot() {
        let pid = std::process::id();
        assert_eq!(
            temp_name(OsStr::new("subuid")),
            format!(".subuid.{pid}.tmp").as_str()
        );
        assert_eq!(
            temp_name(OsStr::new(".j")),
            format!(".j.{pid}.tmp").as_str()
        );
    }
}
