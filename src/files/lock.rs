//! shadow-utils' lock protocol, so docker-userns and useradd/usermod never
//! write the same file at once.
//!
//! On the live system: `lckpwdf()` (an fcntl write lock on
//! /etc/.pwd.lock), then per file `NAME.<pid>` holding our PID, hard-linked
//! to `NAME.lock`; success only if the link count is then 2. A lock whose
//! PID is gone is stale and removed. Under `--root`, like shadow's
//! `--prefix`, only the per-file locks are taken.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{self as rfs, AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::host::{Host, read_small_at, split};

/// shadow's lckpwdf waits 15 seconds.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path}: cannot lock")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: is {what}, not a lock file a process holds; it never goes away by itself: \
         remove it"
    )]
    NotALock { path: PathBuf, what: &'static str },
    #[error(
        "{path}: still locked by process {holder} after {waited:?}; try again when it has finished"
    )]
    Busy {
        path: PathBuf,
        holder: String,
        waited: Duration,
    },
}

/// Held locks; dropping releases them in reverse order.
pub struct Locks {
    files: Vec<FileLock>,
    _pwd_lock: Option<OwnedFd>,
}

struct FileLock {
    dir: OwnedFd,
    lock_name: OsString,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = rfs::unlinkat(&self.dir, &self.lock_name, AtFlags::empty());
    }
}

impl Drop for Locks {
    fn drop(&mut self) {
        while self.files.pop().is_some() {}
    }
}

/// Takes lckpwdf (live system only) and the per-file lock of each path,
/// in the given order (shadow's: passwd, group, shadow, gshadow, subuid, subgid).
pub fn lock(host: &Host, paths: &[&Path]) -> Result<Locks, LockError> {
    let deadline = Instant::now() + LOCK_TIMEOUT;
    let pwd_lock = if host.is_live() {
        Some(lckpwdf(host, deadline)?)
    } else {
        None
    };
    let mut files = Vec::new();
    for path in paths {
        files.push(lock_file(host, path, deadline)?);
    }
    Ok(Locks {
        files,
        _pwd_lock: pwd_lock,
    })
}

fn lckpwdf(host: &Host, deadline: Instant) -> Result<OwnedFd, LockError> {
    let path = Path::new(crate::paths::PWD_LOCK);
    let shown = host.display(path);
    let io = |e: Errno| LockError::Io {
        path: shown.clone(),
        source: e.into(),
    };
    let dir = host
        .open_dir(path.parent().expect("an absolute file path"))
        .map_err(|e| LockError::Io {
            path: shown.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let fd = rfs::openat(
        &dir,
        path.file_name().expect("a file name"),
        flags,
        Mode::from_raw_mode(0o600),
    )
    .map_err(io)?;
    loop {
        match rfs::fcntl_lock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(fd),
            Err(Errno::AGAIN | Errno::ACCESS) if Instant::now() < deadline => sleep_a_little(),
            Err(Errno::AGAIN | Errno::ACCESS) => {
                return Err(LockError::Busy {
                    path: shown,
                    holder: "another account tool".into(),
                    waited: LOCK_TIMEOUT,
                });
            }
            Err(e) => return Err(io(e)),
        }
    }
}

fn lock_file(host: &Host, path: &Path, deadline: Instant) -> Result<FileLock, LockError> {
    let (parent, name) = split(path);
    let lock_path = host.display(&path.with_file_name(with_suffix(name, ".lock")));
    let io = |e: Errno| LockError::Io {
        path: lock_path.clone(),
        source: e.into(),
    };
    let dir = host.open_dir(parent).map_err(|e| LockError::Io {
        path: lock_path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let pid = std::process::id();
    let pid_name = with_suffix(name, &format!(".{pid}"));
    let lock_name = with_suffix(name, ".lock");
    write_pid_file(&dir, &pid_name, pid).map_err(io)?;
    crate::failpoint::hit("lock.before_link");
    let result = acquire(&dir, &pid_name, &lock_name, deadline, &lock_path);
    let _ = rfs::unlinkat(&dir, &pid_name, AtFlags::empty());
    result?;
    crate::failpoint::hit("lock.held");
    Ok(FileLock { dir, lock_name })
}

fn acquire(
    dir: &OwnedFd,
    pid_name: &OsString,
    lock_name: &OsString,
    deadline: Instant,
    shown: &Path,
) -> Result<(), LockError> {
    let io = |e: Errno| LockError::Io {
        path: shown.to_owned(),
        source: e.into(),
    };
    loop {
        match rfs::linkat(dir, pid_name, dir, lock_name, AtFlags::empty()) {
            Ok(()) => {
                let st = rfs::statat(dir, pid_name, AtFlags::SYMLINK_NOFOLLOW).map_err(io)?;
                if st.st_nlink == 2 {
                    return Ok(());
                }
                let _ = rfs::unlinkat(dir, lock_name, AtFlags::empty());
            }
            Err(Errno::EXIST) => {
                if let Some(what) = not_a_lock(dir, lock_name) {
                    return Err(LockError::NotALock {
                        path: shown.to_owned(),
                        what,
                    });
                }
                let holder = read_holder(dir, lock_name);
                if holder.map(is_dead) == Some(true) {
                    let _ = rfs::unlinkat(dir, lock_name, AtFlags::empty());
                    continue;
                }
                if Instant::now() >= deadline {
                    return Err(LockError::Busy {
                        path: shown.to_owned(),
                        holder: holder.map_or("?".into(), |p| p.to_string()),
                        waited: LOCK_TIMEOUT,
                    });
                }
            }
            Err(e) => return Err(io(e)),
        }
        sleep_a_little();
    }
}

/// Creates `NAME.<pid>` holding our PID. A file of that name can only be
/// a leftover of a dead process that had our PID (or something planted),
/// so it is removed first, and the new one is never opened through a link.
/// On any failure, a full disk while writing the PID included, nothing of
/// ours is left behind.
fn write_pid_file(dir: &OwnedFd, name: &OsString, pid: u32) -> Result<(), Errno> {
    let _ = rfs::unlinkat(dir, name, AtFlags::empty());
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?;
    let text = pid.to_string();
    let error = match rustix::io::write(&fd, text.as_bytes()) {
        Ok(n) if n == text.len() => return Ok(()),
        Ok(_) => Errno::IO,
        Err(e) => e,
    };
    // A full disk must leave no `NAME.<pid>` behind.
    let _ = rfs::unlinkat(dir, name, AtFlags::empty());
    Err(error)
}

/// What a lock name holds when it is not a regular file (a link or a FIFO
/// planted in an image): shadow's tools never make one, and waiting for
/// it to go away would be waiting forever.
fn not_a_lock(dir: &OwnedFd, lock_name: &OsString) -> Option<&'static str> {
    let st = rfs::statat(dir, lock_name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    match rfs::FileType::from_raw_mode(st.st_mode) {
        rfs::FileType::RegularFile => None,
        rfs::FileType::Symlink => Some("a symbolic link"),
        rfs::FileType::Directory => Some("a directory"),
        _ => Some("a special file"),
    }
}

fn read_holder(dir: &OwnedFd, lock_name: &OsString) -> Option<i32> {
    // A FIFO planted as the lock (in an image) must not hold us.
    let bytes = read_small_at(dir, lock_name, 32)?;
    std::str::from_utf8(&bytes)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&p: &i32| p > 0)
}

/// True when no process has this PID (so a lock or temp file it left is stale).
pub(crate) fn is_dead(pid: i32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    rustix::process::test_kill_process(pid) == Err(Errno::SRCH)
}

fn with_suffix(name: &std::ffi::OsStr, suffix: &str) -> OsString {
    let mut out = name.to_owned();
    out.push(suffix);
    out
}

fn sleep_a_little() {
    std::thread::sleep(Duration::from_millis(20));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::SystemRunner;
    use std::fs;

    #[test]
    fn a_planted_pid_file_link_is_replaced_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        fs::create_dir(&etc).unwrap();
        let victim = root.path().join("victim");
        fs::write(&victim, "keep\n").unwrap();
        let pid_name = format!("subuid.{}", std::process::id());
        std::os::unix::fs::symlink(&victim, etc.join(&pid_name)).unwrap();
        let host = Host::open(root.path(), Box::new(SystemRunner)).unwrap();
        let locks = lock(&host, &[Path::new("/etc/subuid")]).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep\n");
        assert!(etc.join(&pid_name).symlink_metadata().is_err());
        let lock_file = etc.join("subuid.lock");
        assert_eq!(
            fs::read_to_string(&lock_file).unwrap(),
            std::process::id().to_string()
        );
        drop(locks);
        assert!(lock_file.symlink_metadata().is_err());
    }
}
