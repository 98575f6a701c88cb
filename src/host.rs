//! The one door to the machine: a root directory every path is resolved
//! under, and the runner for the few external programs docker-userns uses.
//!
//! Paths in the rest of the crate are absolute as seen from inside the root
//! (`/etc/subuid`); [`Host`] resolves them with `openat2(RESOLVE_IN_ROOT)`,
//! so a symlink inside an image root can never lead outside it.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Files larger than this are refused: every file read here is a small
/// config file, and a huge one is a mistake or an attack.
pub const MAX_FILE_SIZE: u64 = 16 << 20;

/// Directories listed here hold a handful of drop-ins or config files.
pub const MAX_DIR_ENTRIES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{path}: {what}")]
    Refused { path: PathBuf, what: String },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{program}: {message}")]
    Command { program: PathBuf, message: String },
}

impl HostError {
    pub fn io(path: &Path, errno: Errno) -> Self {
        HostError::Io {
            path: path.to_owned(),
            source: errno.into(),
        }
    }
}

/// Ownership, mode and identity of a file, to recreate or compare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
}

impl FileMeta {
    pub fn from_stat(st: &rfs::Stat) -> Self {
        FileMeta {
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec as i64),
        }
    }
}

/// A regular file as it was read.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub bytes: Vec<u8>,
    pub meta: FileMeta,
    pub selinux_label: Option<Vec<u8>>,
}

/// Runs an external program by absolute path with an argument vector.
pub trait Runner {
    fn run(&self, program: &Path, args: &[OsString]) -> Result<String, HostError>;

    /// Like [`Runner::run`], with `input` as the program's standard input:
    /// the way to hand it a file that has no name anyone else could swap
    /// (it opens `/proc/self/fd/0`).
    fn run_with_input(
        &self,
        program: &Path,
        args: &[OsString],
        input: OwnedFd,
    ) -> Result<String, HostError>;
}

/// Runs programs for real, with a fixed environment and no shell.
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&self, program: &Path, args: &[OsString]) -> Result<String, HostError> {
        execute(program, args, Stdio::null())
    }

    fn run_with_input(
        &self,
        program: &Path,
        args: &[OsString],
        input: OwnedFd,
    ) -> Result<String, HostError> {
        execute(program, args, Stdio::from(input))
    }
}

fn execute(program: &Path, args: &[OsString], stdin: Stdio) -> Result<String, HostError> {
    let output = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .stdin(stdin)
        .output()
        .map_err(|source| HostError::Io {
            path: program.to_owned(),
            source,
        })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let args: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
    Err(HostError::Command {
        program: program.to_owned(),
        message: format!(
            "`{} {}` failed ({}): {}",
            program.display(),
            args.join(" "),
            output.status,
            stderr.trim()
        ),
    })
}

/// The machine (or image root) docker-userns acts on.
pub struct Host {
    root: PathBuf,
    root_fd: OwnedFd,
    runner: Box<dyn Runner>,
}

impl Host {
    pub fn open(root: &Path, runner: Box<dyn Runner>) -> Result<Self, HostError> {
        let root_fd = rfs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| HostError::io(root, e))?;
        Ok(Host {
            root: root.to_owned(),
            root_fd,
            runner,
        })
    }

    /// True when acting on the running system rather than an image root.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root directory held open since [`Host::open`], for walks that
    /// resolve one component at a time from it.
    pub fn root_fd(&self) -> BorrowedFd<'_> {
        self.root_fd.as_fd()
    }

    /// The path as the user would find it from outside the root.
    pub fn display(&self, path: &Path) -> PathBuf {
        self.root.join(relative(path))
    }

    pub fn runner(&self) -> &dyn Runner {
        self.runner.as_ref()
    }

    /// Opens a directory inside the root.
    pub fn open_dir(&self, path: &Path) -> Result<OwnedFd, HostError> {
        self.resolve(path, OFlags::RDONLY | OFlags::DIRECTORY)
    }

    /// The status of a path inside the root (following links within it).
    pub fn stat(&self, path: &Path) -> Result<Option<rfs::Stat>, HostError> {
        match self.resolve(path, OFlags::PATH) {
            Ok(fd) => rfs::fstat(&fd)
                .map(Some)
                .map_err(|e| HostError::io(&self.display(path), e)),
            Err(HostError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The filesystem type (statfs f_type) holding a path inside the root.
    pub fn filesystem_type(&self, path: &Path) -> Result<i64, HostError> {
        let fd = self.resolve(path, OFlags::PATH)?;
        let st = rfs::fstatfs(&fd).map_err(|e| HostError::io(&self.display(path), e))?;
        Ok(st.f_type as i64)
    }

    /// An `O_PATH` handle on any kind of file inside the root, to stat it
    /// or reach it through /proc/self/fd without following a link again.
    pub fn open_path(&self, path: &Path) -> Result<OwnedFd, HostError> {
        self.resolve(path, OFlags::PATH)
    }

    pub fn exists(&self, path: &Path) -> bool {
        self.resolve(path, OFlags::PATH).is_ok()
    }

    /// An executable regular file at `path` inside the root.
    pub fn is_executable(&self, path: &Path) -> bool {
        self.resolve(path, OFlags::PATH)
            .and_then(|fd| rfs::fstat(&fd).map_err(|e| HostError::io(path, e)))
            .is_ok_and(|st| {
                rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::RegularFile
                    && st.st_mode & 0o111 != 0
            })
    }

    fn resolve(&self, path: &Path, flags: OFlags) -> Result<OwnedFd, HostError> {
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        rfs::openat2(
            &self.root_fd,
            relative(path),
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            how,
        )
        .map_err(|e| self.resolve_error(path, e))
    }

    /// In an image, a link loop is how links to the host's files show up
    /// (`etc -> /etc` resolves to itself inside the root): say so.
    fn resolve_error(&self, path: &Path, errno: Errno) -> HostError {
        if errno != Errno::LOOP || self.is_live() {
            return HostError::io(&self.display(path), errno);
        }
        HostError::Refused {
            path: self.display(path),
            what: "goes through a symbolic link that loops inside the root; under --root \
                   links resolve inside the image (a link to /etc or /etc/docker points \
                   back at itself), never out of it: replace the link with the directory"
                .into(),
        }
    }

    /// Reads a regular file; `None` when it does not exist. A symlink, a
    /// directory or any other kind of file is refused, never followed.
    pub fn read(&self, path: &Path) -> Result<Option<Snapshot>, HostError> {
        let (parent, name) = split(path);
        let dir = match self.open_dir(parent) {
            Ok(dir) => dir,
            Err(HostError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let handle = match rfs::openat(&dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(HostError::io(&self.display(path), e)),
        };
        let st = rfs::fstat(&handle).map_err(|e| HostError::io(&self.display(path), e))?;
        if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink {
            return Err(self.refuse_link(&dir, path, name));
        }
        let (fd, bytes) = self.read_handle(path, &handle, &st, MAX_FILE_SIZE)?;
        Ok(Some(Snapshot {
            bytes,
            meta: FileMeta::from_stat(&st),
            selinux_label: selinux_label(&fd),
        }))
    }

    /// Reads `rel`, a regular file of at most `limit` bytes below the held
    /// directory `dir` (shown as `dir_path`), without following any link on
    /// the way: for files below directories others may have filled.
    /// `None` when it does not exist.
    pub fn read_below(
        &self,
        dir: &impl AsFd,
        dir_path: &Path,
        rel: &Path,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, HostError> {
        let path = dir_path.join(rel);
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let handle = match rfs::openat2(dir, rel, flags, Mode::empty(), how) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(HostError::io(&self.display(&path), e)),
        };
        let st = rfs::fstat(&handle).map_err(|e| HostError::io(&self.display(&path), e))?;
        let (_, bytes) = self.read_handle(&path, &handle, &st, limit)?;
        Ok(Some(bytes))
    }

    /// Reads a regular file as a program inside the root finds it: links
    /// are followed, but resolved inside the root, so an absolute link in
    /// an image leads to the image's file, never the host's. `None` when
    /// it does not exist; refused when it is not a regular file of at most
    /// `limit` bytes.
    pub fn read_resolved(&self, path: &Path, limit: u64) -> Result<Option<Vec<u8>>, HostError> {
        let Some(handle) = self.resolve_existing(path, OFlags::PATH)? else {
            return Ok(None);
        };
        let st = rfs::fstat(&handle).map_err(|e| HostError::io(&self.display(path), e))?;
        let (_, bytes) = self.read_handle(path, &handle, &st, limit)?;
        Ok(Some(bytes))
    }

    /// The names in a directory inside the root (links resolved inside
    /// it), without `.` and `..`; `None` when it does not exist or is not
    /// a directory.
    pub fn list_dir(&self, path: &Path) -> Result<Option<Vec<OsString>>, HostError> {
        let Some(fd) =
            self.resolve_existing(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK)?
        else {
            return Ok(None);
        };
        let shown = || self.display(path);
        let dir = rfs::Dir::new(fd).map_err(|e| HostError::io(&shown(), e))?;
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| HostError::io(&shown(), e))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if names.len() == MAX_DIR_ENTRIES {
                return Err(HostError::Refused {
                    path: shown(),
                    what: format!("holds more than {MAX_DIR_ENTRIES} entries"),
                });
            }
            names.push(OsString::from_vec(name.to_vec()));
        }
        names.sort();
        Ok(Some(names))
    }

    /// True when a directory entry exists at `path`, whatever it is: a
    /// dangling link counts, as it does for systemd's unit search.
    pub fn has_entry(&self, path: &Path) -> bool {
        let (parent, name) = split(path);
        self.open_dir(parent)
            .is_ok_and(|dir| rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok())
    }

    /// The first `len` bytes of a regular file, links resolved inside the
    /// root; `None` when it does not exist.
    pub fn read_head(&self, path: &Path, len: u64) -> Result<Option<Vec<u8>>, HostError> {
        let Some(fd) = self.open_regular(path)? else {
            return Ok(None);
        };
        let bytes = read_at_most(&fd, len).map_err(|source| HostError::Io {
            path: self.display(path),
            source,
        })?;
        Ok(Some(bytes))
    }

    /// The last `len` bytes of a regular file of any size, links resolved
    /// inside the root, and whether it was cut; `None` when it does not exist.
    pub fn read_tail(&self, path: &Path, len: u64) -> Result<Option<(Vec<u8>, bool)>, HostError> {
        let Some(fd) = self.open_regular(path)? else {
            return Ok(None);
        };
        let io = |e: Errno| HostError::io(&self.display(path), e);
        let size = rfs::fstat(&fd).map_err(io)?.st_size as u64;
        let start = size.saturating_sub(len);
        rfs::seek(&fd, rfs::SeekFrom::Start(start)).map_err(io)?;
        let bytes = read_at_most(&fd, len).map_err(|source| HostError::Io {
            path: self.display(path),
            source,
        })?;
        Ok(Some((bytes, start > 0)))
    }

    /// [`Host::resolve`], with `None` for a path that does not exist.
    fn resolve_existing(&self, path: &Path, flags: OFlags) -> Result<Option<OwnedFd>, HostError> {
        match self.resolve(path, flags) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A regular file inside the root opened for reading, links resolved
    /// inside the root; `None` when it does not exist.
    fn open_regular(&self, path: &Path) -> Result<Option<OwnedFd>, HostError> {
        let Some(handle) = self.resolve_existing(path, OFlags::PATH)? else {
            return Ok(None);
        };
        let st = rfs::fstat(&handle).map_err(|e| HostError::io(&self.display(path), e))?;
        self.reopen_regular(path, &handle, &st, u64::MAX).map(Some)
    }

    /// The bytes of the file behind an `O_PATH` handle, at most `limit`.
    fn read_handle(
        &self,
        path: &Path,
        handle: &OwnedFd,
        st: &rfs::Stat,
        limit: u64,
    ) -> Result<(OwnedFd, Vec<u8>), HostError> {
        let fd = self.reopen_regular(path, handle, st, limit)?;
        // One byte more than allowed catches a file that grew after fstat.
        let bytes = read_at_most(&fd, limit.saturating_add(1)).map_err(|source| HostError::Io {
            path: self.display(path),
            source,
        })?;
        if bytes.len() as u64 > limit {
            return Err(self.too_large(path, bytes.len() as u64, limit));
        }
        Ok((fd, bytes))
    }

    /// Opens an `O_PATH` handle for reading once it is known to be a
    /// regular file of at most `limit` bytes: opening a FIFO, a device or
    /// a socket can block or act on hardware. The reopening goes through
    /// the handle itself, so it reaches the very file that was checked.
    fn reopen_regular(
        &self,
        path: &Path,
        handle: &OwnedFd,
        st: &rfs::Stat,
        limit: u64,
    ) -> Result<OwnedFd, HostError> {
        self.require_regular(path, st, limit)?;
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        rfs::open(proc_fd(handle), flags, Mode::empty()).map_err(|e| match e {
            Errno::NOENT => HostError::Refused {
                path: self.display(path),
                what: "cannot be reopened through /proc/self/fd; is /proc mounted?".into(),
            },
            e => HostError::io(&self.display(path), e),
        })
    }

    fn refuse_link(&self, dir: &OwnedFd, path: &Path, name: &std::ffi::OsStr) -> HostError {
        let target = rfs::readlinkat(dir, name, Vec::new())
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "?".into());
        HostError::Refused {
            path: self.display(path),
            what: format!(
                "is a symbolic link to {target}; docker-userns does not write through links \
                 ({})",
                link_remedy(path)
            ),
        }
    }

    pub(crate) fn require_regular(
        &self,
        path: &Path,
        st: &rfs::Stat,
        limit: u64,
    ) -> Result<(), HostError> {
        let kind = rfs::FileType::from_raw_mode(st.st_mode);
        let what = match kind {
            rfs::FileType::RegularFile if st.st_size as u64 > limit => {
                return Err(self.too_large(path, st.st_size as u64, limit));
            }
            rfs::FileType::RegularFile => return Ok(()),
            rfs::FileType::Directory => "is a directory, expected a regular file".to_owned(),
            other => format!("is not a regular file ({other:?})"),
        };
        Err(HostError::Refused {
            path: self.display(path),
            what,
        })
    }

    fn too_large(&self, path: &Path, size: u64, limit: u64) -> HostError {
        HostError::Refused {
            path: self.display(path),
            what: format!(
                "is {size} bytes, larger than the {} accepted for a config file",
                human_size(limit)
            ),
        }
    }
}

fn is_missing(e: &HostError) -> bool {
    matches!(e, HostError::Io { source, .. } if matches!(
        source.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    ))
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// The path that reopens a file descriptor, even an `O_PATH` one.
fn proc_fd(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Reads from the current offset to the end, but never more than `max` bytes.
fn read_at_most(fd: &OwnedFd, max: u64) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::from(fd.try_clone()?);
    let mut bytes = Vec::new();
    file.by_ref().take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// One read of at most `max` bytes from `name` in the held directory
/// `dir`. A link there is not followed and a FIFO does not block, so
/// whatever was planted under that name costs nothing. `None` when it
/// cannot be opened or read.
pub(crate) fn read_small_at(
    dir: &impl AsFd,
    name: impl rustix::path::Arg,
    max: usize,
) -> Option<Vec<u8>> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, name, flags, Mode::empty()).ok()?;
    let mut buf = vec![0u8; max];
    let n = loop {
        match rustix::io::read(&fd, &mut buf[..]) {
            Err(Errno::INTR) => continue,
            other => break other.ok()?,
        }
    };
    buf.truncate(n);
    Some(buf)
}

/// The SELinux label, kept so a replaced file keeps its context.
pub(crate) fn selinux_label(fd: &impl AsFd) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let len = rfs::fgetxattr(fd, "security.selinux", &mut buf[..]).ok()?;
    buf.truncate(len);
    Some(buf)
}

/// How to get past a refused link: `--config` only helps for daemon.json.
fn link_remedy(path: &Path) -> &'static str {
    if path.extension().is_some_and(|e| e == "json") {
        "point --config at the real file, or replace the link with the file"
    } else {
        "replace the link with the file"
    }
}

/// A root-relative form of an absolute in-root path (`/etc/x` -> `etc/x`).
pub fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// The parent directory and file name of an in-root file path.
pub fn split(path: &Path) -> (&Path, &std::ffi::OsStr) {
    let name = path.file_name().expect("file paths have a name");
    (path.parent().unwrap_or(Path::new("/")), name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn image() -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc/d")).unwrap();
        fs::write(dir.path().join("etc/real"), "inside\n").unwrap();
        let host = Host::open(dir.path(), Box::new(SystemRunner)).unwrap();
        (dir, host)
    }

    #[test]
    fn absolute_links_resolve_inside_the_root() {
        let (dir, host) = image();
        symlink("/etc/real", dir.path().join("etc/link")).unwrap();
        symlink("../../../../../../etc/real", dir.path().join("etc/d/up")).unwrap();
        for path in ["/etc/link", "/etc/d/up"] {
            let bytes = host.read_resolved(Path::new(path), 64).unwrap();
            assert_eq!(bytes.as_deref(), Some(&b"inside\n"[..]), "{path}");
        }
        symlink("/etc/none", dir.path().join("etc/dangling")).unwrap();
        assert!(
            host.read_resolved(Path::new("/etc/dangling"), 64)
                .unwrap()
                .is_none()
        );
        assert!(host.has_entry(Path::new("/etc/dangling")));
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let (dir, host) = image();
        let fifo = dir.path().join("etc/fifo");
        rfs::mknodat(rfs::CWD, &fifo, rfs::FileType::Fifo, Mode::RUSR, 0).unwrap();
        let err = host.read_resolved(Path::new("/etc/fifo"), 64).unwrap_err();
        assert!(
            err.to_string().contains("not a regular file (Fifo)"),
            "{err}"
        );
        let err = host.read_resolved(Path::new("/etc/real"), 3).unwrap_err();
        assert!(err.to_string().contains("larger than the 3 bytes"), "{err}");
        let err = host.read_resolved(Path::new("/etc/d"), 64).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        assert_eq!(
            host.read_head(Path::new("/etc/real"), 2).unwrap().unwrap(),
            b"in"
        );
        assert_eq!(
            host.read_tail(Path::new("/etc/real"), 3).unwrap().unwrap(),
            (b"de\n".to_vec(), true)
        );
    }

    #[test]
    fn listings_go_through_the_root() {
        let (dir, host) = image();
        fs::write(dir.path().join("etc/d/b.conf"), "").unwrap();
        fs::write(dir.path().join("etc/d/a.conf"), "").unwrap();
        symlink("/etc/d", dir.path().join("etc/linked")).unwrap();
        let names = host.list_dir(Path::new("/etc/linked")).unwrap().unwrap();
        assert_eq!(names, ["a.conf", "b.conf"]);
        assert!(host.list_dir(Path::new("/etc/real")).unwrap().is_none());
        assert!(host.list_dir(Path::new("/nope")).unwrap().is_none());
    }
}
