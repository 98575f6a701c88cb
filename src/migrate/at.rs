//! A directory of the data root held open, and the only way a migration
//! reaches what is below it: one name at a time relative to that
//! descriptor, never following a link, refusing any kind of file other
//! than the one expected, staying on the data root's filesystem, and
//! acting on the descriptor it checked.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Stat, Uid};
use rustix::io::Errno;

use super::MigrateError;
use crate::files::atomic::{self, Leftover, Perms};
use crate::host::MAX_FILE_SIZE;

/// An open directory below (or at) the data root, with the path to show.
pub(super) struct At {
    fd: OwnedFd,
    path: PathBuf,
    /// The data root's filesystem: nothing on another one is touched.
    dev: u64,
}

/// A regular file below the data root with one link, held by an `O_PATH`
/// descriptor (opening it for real waits until its kind is known).
pub(super) struct Entry {
    fd: OwnedFd,
    pub path: PathBuf,
    pub stat: Stat,
}

pub(super) fn io_err(path: PathBuf, errno: Errno) -> MigrateError {
    MigrateError::Io {
        path,
        source: errno.into(),
    }
}

fn std_io(path: &Path) -> impl FnOnce(std::io::Error) -> MigrateError + '_ {
    move |source| MigrateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Owner and mode to give a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl Owner {
    pub fn of(st: &Stat) -> Owner {
        Owner {
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
        }
    }
}

/// The name of the temp file that replaces `name` (see
/// [`atomic::temp_name`]).
pub(super) fn temp_name(name: &str) -> String {
    atomic::temp_name(OsStr::new(name))
        .to_string_lossy()
        .into_owned()
}

impl At {
    /// The data root, from the descriptor its resolution gave.
    pub fn root(fd: OwnedFd, path: PathBuf) -> Result<At, MigrateError> {
        let st = rfs::fstat(&fd).map_err(|e| io_err(path.clone(), e))?;
        Ok(At {
            fd,
            path,
            dev: st.st_dev,
        })
    }

    pub fn dev(&self) -> u64 {
        self.dev
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    /// A second handle on the same directory.
    pub fn dup(&self) -> Result<At, MigrateError> {
        let fd = self.fd.try_clone().map_err(std_io(&self.path))?;
        Ok(At {
            fd,
            path: self.path.clone(),
            dev: self.dev,
        })
    }

    /// The subdirectory `name`, `None` when absent; a link or another kind
    /// of file there is refused.
    pub fn dir(&self, name: impl AsRef<OsStr>) -> Result<Option<At>, MigrateError> {
        let name = name.as_ref();
        let path = self.join(name);
        let flags = OFlags::RDONLY
            | OFlags::DIRECTORY
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::CLOEXEC;
        let fd = match rfs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP | Errno::NOTDIR) => return Err(self.unexpected(name, "a directory")),
            Err(e) => return Err(io_err(path, e)),
        };
        let st = rfs::fstat(&fd).map_err(|e| io_err(path.clone(), e))?;
        self.same_filesystem(&path, &st)?;
        Ok(Some(At {
            fd,
            path,
            dev: self.dev,
        }))
    }

    /// The regular file `name`, `None` when absent. A link, another kind
    /// of file, a file with other hard links or on another filesystem is
    /// refused.
    pub fn file(&self, name: impl AsRef<OsStr>) -> Result<Option<Entry>, MigrateError> {
        let name = name.as_ref();
        let path = self.join(name);
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rfs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(io_err(path, e)),
        };
        let stat = rfs::fstat(&fd).map_err(|e| io_err(path.clone(), e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(self.unexpected(name, "a regular file"));
        }
        self.same_filesystem(&path, &stat)?;
        if stat.st_nlink != 1 {
            return Err(MigrateError::Unexpected {
                path,
                what: format!(
                    "has {} hard links; a migration does not change a file that is also elsewhere",
                    stat.st_nlink
                ),
            });
        }
        Ok(Some(Entry { fd, path, stat }))
    }

    /// Refuses anything at `name`: where a temp file of ours goes, nothing
    /// may be waiting.
    pub fn require_absent(&self, name: &str) -> Result<(), MigrateError> {
        match self.lstat(name)? {
            None => Ok(()),
            Some(_) => Err(MigrateError::Unexpected {
                path: self.join(name),
                what: format!(
                    "{}, where docker-userns puts a temporary file; remove it",
                    describe(self.fd.as_fd(), OsStr::new(name))
                ),
            }),
        }
    }

    /// The status of `name` itself (a link is not followed).
    pub fn lstat(&self, name: impl AsRef<OsStr>) -> Result<Option<Stat>, MigrateError> {
        let name = name.as_ref();
        match rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(io_err(self.join(name), e)),
        }
    }

    /// The entries' names, sorted.
    pub fn names(&self) -> Result<Vec<OsString>, MigrateError> {
        let dir = rfs::Dir::read_from(&self.fd).map_err(|e| io_err(self.path.clone(), e))?;
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| io_err(self.path.clone(), e))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The names of the subdirectories but `skip`. A link among them is
    /// refused (a hostile image or a container's root may plant one where
    /// a layer, volume or container directory belongs); other kinds of
    /// files are left alone (`backingFsBlockDev`, `metadata.db`).
    pub fn subdirs(&self, skip: &[&str]) -> Result<Vec<OsString>, MigrateError> {
        let mut out = Vec::new();
        for name in self.names()? {
            if skip.iter().any(|s| OsStr::new(s) == name) {
                continue;
            }
            let Some(st) = self.lstat(&name)? else {
                continue;
            };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => out.push(name),
                FileType::Symlink => return Err(self.unexpected(&name, "a directory")),
                _ => {}
            }
        }
        Ok(out)
    }

    pub fn is_empty_dir(&self, name: &str) -> bool {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rfs::openat(&self.fd, name, flags, Mode::empty())
            .and_then(rfs::Dir::new)
            .is_ok_and(|dir| {
                dir.filter_map(Result::ok)
                    .all(|e| matches!(e.file_name().to_bytes(), b"." | b".."))
            })
    }

    /// Creates the directory `name`; false when it was there already.
    pub fn create_dir(&self, name: &str, mode: u32) -> Result<bool, MigrateError> {
        match rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode)) {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(io_err(self.join(name), e)),
        }
    }

    /// Creates `name` as a new directory only root can enter (an error
    /// when anything is there already) and opens it without following a
    /// link.
    pub fn create_private_dir(&self, name: &str) -> Result<At, MigrateError> {
        rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700))
            .map_err(|e| io_err(self.join(name), e))?;
        let dir = self
            .dir(name)?
            .ok_or_else(|| io_err(self.join(name), Errno::NOENT))?;
        dir.set_owner_mode(0, 0, 0o700)?;
        Ok(dir)
    }

    /// Creates the new regular file `name` (0600), never writing through
    /// anything already there.
    pub fn create_file(&self, name: &str) -> Result<std::fs::File, MigrateError> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rfs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o600))
            .map(std::fs::File::from)
            .map_err(|e| io_err(self.join(name), e))
    }

    /// Bytes available on this directory's filesystem.
    pub fn free_bytes(&self) -> Result<u64, MigrateError> {
        let st = rfs::fstatvfs(&self.fd).map_err(|e| io_err(self.path.clone(), e))?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Inodes in use on this directory's filesystem: an upper bound of
    /// the entries any tree in it has, read without walking one.
    pub fn used_inodes(&self) -> Option<u64> {
        let st = rfs::fstatvfs(&self.fd).ok()?;
        Some(st.f_files.saturating_sub(st.f_ffree)).filter(|&n| n > 0)
    }

    pub fn remove_dir(&self, name: &str) -> Result<(), MigrateError> {
        rfs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR).map_err(|e| io_err(self.join(name), e))
    }

    pub fn remove_file(&self, name: &str) -> Result<(), MigrateError> {
        rfs::unlinkat(&self.fd, name, AtFlags::empty()).map_err(|e| io_err(self.join(name), e))
    }

    /// Removes `name` and everything below it, never following a link and
    /// never entering another filesystem (a mount there is an error).
    pub fn remove_tree(&self, name: impl AsRef<OsStr>) -> Result<(), MigrateError> {
        let name = name.as_ref();
        let Some(st) = self.lstat(name)? else {
            return Ok(());
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return rfs::unlinkat(&self.fd, name, AtFlags::empty())
                .map_err(|e| io_err(self.join(name), e));
        }
        if let Some(dir) = self.dir(name)? {
            for child in dir.names()? {
                dir.remove_tree(&child)?;
            }
        }
        rfs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR).map_err(|e| io_err(self.join(name), e))
    }

    /// Moves `name` (whatever it is: rename never follows it) into `to`.
    pub fn rename_into(&self, name: &str, to: &At) -> Result<(), MigrateError> {
        rfs::renameat(&self.fd, name, &to.fd, name).map_err(|e| io_err(self.join(name), e))
    }

    pub fn set_owner_mode(&self, uid: u32, gid: u32, mode: u32) -> Result<(), MigrateError> {
        set_owner_mode(self.fd.as_fd(), &self.path, Some(uid), Some(gid), mode)
    }

    /// A second descriptor of this very directory, for code that takes
    /// ownership of one.
    pub fn duplicate_fd(&self) -> Result<OwnedFd, MigrateError> {
        self.fd.try_clone().map_err(std_io(&self.path))
    }

    /// A path that names this very directory, for code that takes a path:
    /// opening it reaches the inode held here, without a second lookup.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// Where the directory really is, as the mount table names it.
    pub fn real_path(&self) -> Result<PathBuf, MigrateError> {
        std::fs::read_link(self.proc_path()).map_err(std_io(&self.path))
    }

    /// Replaces `name` with `bytes` through a temp file and a rename,
    /// giving it `owner`; the temp file never outlives a failure, and
    /// anything already at its name is refused, never written through.
    pub fn replace(&self, name: &str, bytes: &[u8], owner: Owner) -> Result<(), MigrateError> {
        let perms = Perms {
            owner: Some((owner.uid, owner.gid)),
            mode: owner.mode,
            label: None,
        };
        let temp = OsString::from(temp_name(name));
        atomic::replace_at(
            self.fd.as_fd(),
            OsStr::new(name),
            temp,
            Leftover::Refuse,
            bytes,
            perms,
        )
        .map_err(|e| match e.name() {
            Some(at) => io_err(self.join(at), e.errno()),
            // The rename is durable once the directory is.
            None => io_err(self.path.clone(), e.errno()),
        })
    }

    fn same_filesystem(&self, path: &Path, st: &Stat) -> Result<(), MigrateError> {
        if st.st_dev == self.dev {
            return Ok(());
        }
        Err(MigrateError::Unexpected {
            path: path.to_owned(),
            what: "is on another filesystem than the data root (a mount); a migration does not cross into it".into(),
        })
    }

    fn unexpected(&self, name: &OsStr, wanted: &str) -> MigrateError {
        MigrateError::Unexpected {
            path: self.join(name),
            what: format!(
                "{}, expected {wanted}; a migration never follows links or acts on other kinds of files below the data root",
                describe(self.fd.as_fd(), name)
            ),
        }
    }
}

/// "is a symbolic link to X", "is a directory", ...
fn describe(dir: BorrowedFd<'_>, name: &OsStr) -> String {
    let Ok(st) = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
        return "cannot be examined".into();
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Symlink => {
            let target = rfs::readlinkat(dir, name, Vec::new())
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "?".into());
            format!("is a symbolic link to {target}")
        }
        FileType::Directory => "is a directory".into(),
        FileType::RegularFile => "is a regular file".into(),
        FileType::Fifo => "is a FIFO".into(),
        FileType::Socket => "is a socket".into(),
        FileType::CharacterDevice | FileType::BlockDevice => "is a device".into(),
        FileType::Unknown => "is of an unknown kind".into(),
    }
}

impl Entry {
    /// The file opened for reading: it is a regular file, so opening it
    /// has no side effect; the `O_PATH` handle makes it the same inode.
    pub fn open(&self) -> Result<OwnedFd, MigrateError> {
        let proc = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        rfs::open(proc.as_str(), flags, Mode::empty()).map_err(|e| io_err(self.path.clone(), e))
    }

    /// The bytes, refusing a file larger than a config file can be.
    pub fn read(&self) -> Result<Vec<u8>, MigrateError> {
        let too_big = || MigrateError::Unexpected {
            path: self.path.clone(),
            what: format!(
                "is larger than the {} MiB accepted for a record docker-userns reads",
                MAX_FILE_SIZE >> 20
            ),
        };
        if self.stat.st_size as u64 > MAX_FILE_SIZE {
            return Err(too_big());
        }
        let mut bytes = Vec::new();
        std::fs::File::from(self.open()?)
            .take(MAX_FILE_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(std_io(&self.path))?;
        if bytes.len() as u64 > MAX_FILE_SIZE {
            return Err(too_big());
        }
        Ok(bytes)
    }

    /// Gives the file other owners, keeping its mode exact (chown clears
    /// set-id bits).
    pub fn chown(&self, uid: Option<u32>, gid: Option<u32>) -> Result<(), MigrateError> {
        let fd = self.open()?;
        set_owner_mode(fd.as_fd(), &self.path, uid, gid, self.stat.st_mode & 0o7777)
    }
}

fn set_owner_mode(
    fd: BorrowedFd<'_>,
    path: &Path,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: u32,
) -> Result<(), MigrateError> {
    rfs::fchown(fd, uid.map(Uid::from_raw), gid.map(Gid::from_raw))
        .and_then(|()| rfs::fchmod(fd, Mode::from_raw_mode(mode)))
        .map_err(|e| io_err(path.to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (tempfile::TempDir, At) {
        let dir = tempfile::tempdir().unwrap();
        let fd = rfs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let at = At::root(fd, dir.path().to_owned()).unwrap();
        (dir, at)
    }

    #[test]
    fn links_and_wrong_kinds_are_refused_naming_the_entry() {
        let (dir, at) = scratch();
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        rfs::mknodat(
            &at.fd,
            "fifo",
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let refused = |r: Result<(), MigrateError>, name: &str, what: &str| {
            let message = r.unwrap_err().to_string();
            assert!(message.contains(&format!("/{name} {what}")), "{message}");
        };
        refused(
            at.dir("link").map(drop),
            "link",
            "is a symbolic link to /etc",
        );
        refused(
            at.file("link").map(drop),
            "link",
            "is a symbolic link to /etc",
        );
        refused(at.dir("file").map(drop), "file", "is a regular file");
        refused(at.file("fifo").map(drop), "fifo", "is a FIFO");
        refused(at.subdirs(&[]).map(drop), "link", "is a symbolic link");
        assert!(at.dir("absent").unwrap().is_none());
        assert!(at.file("file").unwrap().is_some());
    }

    #[test]
    fn remove_tree_removes_links_not_what_they_point_to() {
        let (dir, at) = scratch();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        std::fs::create_dir_all(dir.path().join("tree/a/b")).unwrap();
        std::fs::write(dir.path().join("tree/a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("tree/a/link")).unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        at.remove_tree("tree").unwrap();
        at.remove_tree("file").unwrap();
        at.remove_tree("absent").unwrap();
        assert_eq!(at.names().unwrap(), Vec::<OsString>::new());
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn a_file_with_another_link_is_refused() {
        let (dir, at) = scratch();
        std::fs::write(dir.path().join("a"), "x").unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        let message = at.file("a").map(drop).unwrap_err().to_string();
        assert!(message.contains("has 2 hard links"), "{message}");
    }

    #[test]
    fn replace_never_writes_through_what_waits_at_the_temp_name() {
        let (dir, at) = scratch();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(temp_name("f"))).unwrap();
        let owner = Owner {
            uid: 0,
            gid: 0,
            mode: 0o600,
        };
        assert!(at.replace("f", b"new", owner).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        std::fs::remove_file(dir.path().join(temp_name("f"))).unwrap();
        at.replace("f", b"new", owner).unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"new");
        assert!(!dir.path().join(temp_name("f")).exists());
    }
}
