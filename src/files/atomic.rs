//! Atomic replacement: temp file in the same directory with the original's
//! owner, mode and SELinux label, fsync, rename, fsync of the directory.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
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
pub fn replace(host: &Host, job: &Replace<'_>) -> Result<(), HostError> {
    let (parent, name) = split(job.path);
    let dir = host.open_dir(parent)?;
    ensure_unchanged(host, &dir, job)?;
    let (uid, gid, mode) = job
        .previous
        .map_or(NEW_FILE, |p| (p.meta.uid, p.meta.gid, p.meta.mode));
    let label = job.previous.and_then(|p| p.selinux_label.as_deref());
    if let (Some(backup), Some(previous)) = (&job.backup, job.previous) {
        write_then_rename(
            host,
            &dir,
            job.path,
            backup,
            &previous.bytes,
            (uid, gid, mode),
            label,
        )?;
        crate::failpoint::hit("write.after_backup");
    }
    write_then_rename(
        host,
        &dir,
        job.path,
        name,
        job.bytes,
        (uid, gid, mode),
        label,
    )
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

fn write_then_rename(
    host: &Host,
    dir: &OwnedFd,
    target: &Path,
    name: &std::ffi::OsStr,
    bytes: &[u8],
    (uid, gid, mode): (u32, u32, u32),
    label: Option<&[u8]>,
) -> Result<(), HostError> {
    remove_stale_temps(dir, name);
    let temp = temp_name(name);
    let shown = host.display(&target.with_file_name(&temp));
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, &temp, flags, Mode::from_raw_mode(0o600))
        .map_err(|e| HostError::io(&shown, e))?;
    let filled = fill(fd, bytes, (uid, gid, mode), label).map_err(|e| HostError::io(&shown, e));
    crate::failpoint::hit("write.before_rename");
    let renamed = filled.and_then(|()| {
        rfs::renameat(dir, &temp, dir, name).map_err(|e| HostError::io(&host.display(target), e))
    });
    if renamed.is_err() {
        let _ = rfs::unlinkat(dir, &temp, AtFlags::empty());
    }
    renamed?;
    crate::failpoint::hit("write.after_rename");
    rfs::fsync(dir).map_err(|e| HostError::io(&host.display(target), e))
}

/// Temp files of ours whose writer died (a crash between write and
/// rename) are removed, so a rerun leaves the directory as a clean run does.
fn remove_stale_temps(dir: &OwnedFd, name: &std::ffi::OsStr) {
    let Ok(listing) = rfs::Dir::read_from(dir) else {
        return;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
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

fn fill(
    fd: OwnedFd,
    bytes: &[u8],
    (uid, gid, mode): (u32, u32, u32),
    label: Option<&[u8]>,
) -> Result<(), Errno> {
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
    rfs::fchown(
        &file,
        Some(rfs::Uid::from_raw(uid)),
        Some(rfs::Gid::from_raw(gid)),
    )?;
    // fchown clears set-id bits, so the mode goes on after it.
    rfs::fchmod(&file, Mode::from_raw_mode(mode))?;
    if let Some(label) = label {
        match rfs::fsetxattr(&file, "security.selinux", label, rfs::XattrFlags::empty()) {
            Ok(()) | Err(Errno::NOTSUP) => {}
            Err(e) => return Err(e),
        }
    }
    rfs::fsync(&file)
}

fn temp_name(name: &std::ffi::OsStr) -> OsString {
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!(".{}.tmp", std::process::id()));
    temp
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
