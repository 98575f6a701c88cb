//! Atomic replacement: temp file in the same directory with the original's
//! owner, mode and SELinux label, fsync, rename, fsync of the directory.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

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
    let (parent, _) = split(job.path);
    let dir = host.open_dir(parent)?;
    ensure_unchanged(host, &dir, job)?;
    let owner = job
        .previous
        .map_or(NEW_FILE, |p| (p.meta.uid, p.meta.gid, p.meta.mode));
    let label = job.previous.and_then(|p| p.selinux_label.as_deref());
    let backup = match (&job.backup, job.previous) {
        (Some(backup), Some(previous)) => Some(Staged::write(
            host,
            &dir,
            job.path.with_file_name(backup),
            &previous.bytes,
            owner,
            label,
        )?),
        _ => None,
    };
    let new = Staged::write(host, &dir, job.path.to_owned(), job.bytes, owner, label)?;
    if let Some(backup) = backup {
        backup.commit()?;
        crate::failpoint::hit("write.after_backup");
    }
    new.commit()?;
    rfs::fsync(&dir).map_err(|e| HostError::io(&host.display(job.path), e))
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
struct Staged<'a> {
    host: &'a Host,
    dir: &'a OwnedFd,
    target: PathBuf,
    temp: OsString,
    committed: bool,
}

impl<'a> Staged<'a> {
    fn write(
        host: &'a Host,
        dir: &'a OwnedFd,
        target: PathBuf,
        bytes: &[u8],
        owner: (u32, u32, u32),
        label: Option<&[u8]>,
    ) -> Result<Self, HostError> {
        let (_, name) = split(&target);
        remove_stale_temps(dir, name);
        let temp = temp_name(name);
        let shown = host.display(&target.with_file_name(&temp));
        // Our own temp name can only be a dead writer's that had our PID,
        // or something planted; it goes, and O_EXCL|O_NOFOLLOW never
        // follows one put back meanwhile.
        let _ = rfs::unlinkat(dir, &temp, AtFlags::empty());
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(dir, &temp, flags, Mode::from_raw_mode(0o600))
            .map_err(|e| HostError::io(&shown, e))?;
        let staged = Staged {
            host,
            dir,
            target,
            temp,
            committed: false,
        };
        fill(fd, bytes, owner, label).map_err(|e| HostError::io(&shown, e))?;
        Ok(staged)
    }

    fn commit(mut self) -> Result<(), HostError> {
        crate::failpoint::hit("write.before_rename");
        let (_, name) = split(&self.target);
        rfs::renameat(self.dir, &self.temp, self.dir, name)
            .map_err(|e| HostError::io(&self.host.display(&self.target), e))?;
        self.committed = true;
        crate::failpoint::hit("write.after_rename");
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
}
