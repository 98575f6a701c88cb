//! Which dockerd binary runs the live host, and its version: the running
//! daemon's own executable first (from its pidfile or the API socket's
//! peer), then `PATH` and the usual directories.
//!
//! Only ever on the live host: under `--root` no program of the image is
//! run, and a process of this machine says nothing about an image.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags};

use crate::daemon::api::DockerApi;
use crate::host::{Host, read_small_at};
use crate::paths::DEFAULT_PIDFILES;

/// Searched after `PATH`: packages install to /usr/bin or /usr/sbin,
/// Docker's static binaries to /usr/local/bin.
const BIN_DIRS: &[&str] = &["/usr/bin", "/usr/sbin", "/usr/local/bin"];
const PIDFILE_LIMIT: u64 = 64;
const PROC_READ_LIMIT: usize = 4096;

/// A dockerd binary of the live host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerd {
    pub path: PathBuf,
    /// The PID of the daemon running this very file, when one does.
    pub running: Option<u32>,
}

impl Dockerd {
    /// The major version: the API's `ServerVersion` when this binary is
    /// the daemon that answers (what runs is what counts), else
    /// `dockerd --version`.
    pub fn major(&self, host: &Host, api: Option<&DockerApi>) -> Option<u32> {
        let from_api = self
            .running
            .and(api)
            .and_then(|api| api.info().ok())
            .and_then(|info| major_version(&info.server_version));
        from_api.or_else(|| {
            let out = host.runner().run(&self.path, &["--version".into()]).ok()?;
            major_version(out.split("version ").nth(1)?)
        })
    }
}

/// `26` from `26.1.5+dfsg1` (API) or from `26.1.5+dfsg1, build 411e817`.
pub fn major_version(version: &str) -> Option<u32> {
    version.trim().split('.').next()?.parse().ok()
}

/// The dockerd of the live host: the running daemon's executable, else
/// the first one on `PATH` or in [`BIN_DIRS`]. `None` under `--root` and
/// when dockerd is not installed.
pub fn locate(host: &Host, api: Option<&DockerApi>, pidfile: Option<&Path>) -> Option<Dockerd> {
    if !host.is_live() {
        return None;
    }
    running_pids(host, api, pidfile)
        .into_iter()
        .find_map(|pid| {
            Some(Dockerd {
                path: running_exe(host, pid)?,
                running: Some(pid),
            })
        })
        .or_else(|| {
            search_dirs().into_iter().find_map(|dir| {
                let path = dir.join("dockerd");
                trusted_executable(host, &path).then_some(Dockerd {
                    path,
                    running: None,
                })
            })
        })
}

/// Whether dockerd is installed on the live host, or in the image under
/// `--root` (looked at, never run).
pub fn installed(host: &Host) -> bool {
    if host.is_live() {
        return locate(host, None, None).is_some();
    }
    BIN_DIRS
        .iter()
        .chain(&["/sbin", "/bin"])
        .any(|dir| host.is_executable(&Path::new(dir).join("dockerd")))
}

/// `PATH`'s absolute entries (a relative one depends on where we were
/// started), then the fixed directories.
fn search_dirs() -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .collect();
    for dir in BIN_DIRS {
        if !dirs.iter().any(|d| d == Path::new(dir)) {
            dirs.push(dir.into());
        }
    }
    dirs
}

/// PIDs that may be the daemon: the pidfile's, then the process that
/// listens on the API socket.
fn running_pids(host: &Host, api: Option<&DockerApi>, pidfile: Option<&Path>) -> Vec<u32> {
    let files: Vec<&Path> = match pidfile {
        Some(file) => vec![file],
        None => DEFAULT_PIDFILES.iter().map(Path::new).collect(),
    };
    let mut pids: Vec<u32> = files
        .into_iter()
        .filter_map(|file| {
            let bytes = host.read_resolved(file, PIDFILE_LIMIT).ok()??;
            String::from_utf8(bytes).ok()?.trim().parse().ok()
        })
        .collect();
    pids.extend(api.and_then(|api| socket_peer(api.socket())));
    pids.dedup();
    pids
}

/// The PID that listens on a unix socket (SO_PEERCRED of a connection).
/// Non-blocking: a wedged daemon with a full backlog gives `EAGAIN`
/// instead of a hang.
fn socket_peer(socket: &Path) -> Option<u32> {
    use rustix::net::{self, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .ok()?;
    net::connect(&fd, &SocketAddrUnix::new(socket).ok()?).ok()?;
    let cred = net::sockopt::socket_peercred(&fd).ok()?;
    u32::try_from(cred.pid.as_raw_nonzero().get()).ok()
}

/// The file a root-owned process named `dockerd` runs, as a path that
/// leads to that very file (same device and inode) now.
fn running_exe(host: &Host, pid: u32) -> Option<PathBuf> {
    let proc_dir = rfs::open(
        format!("/proc/{pid}"),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    if read_proc(&proc_dir, "comm")?.trim_end() != "dockerd" || !runs_as_root(&proc_dir)? {
        return None;
    }
    // The magic link's text is the path as this mount namespace sees it;
    // the link itself, followed, is the file the process executes.
    let text = rfs::readlinkat(&proc_dir, "exe", Vec::new()).ok()?;
    let path = PathBuf::from(text.into_string().ok()?);
    if !path.is_absolute() || path.to_string_lossy().ends_with(" (deleted)") {
        return None;
    }
    let running = rfs::statat(&proc_dir, "exe", rfs::AtFlags::empty()).ok()?;
    let path = root_only(host, &path)?;
    let st = rfs::fstat(host.open_path(&path).ok()?).ok()?;
    let same = (st.st_dev, st.st_ino) == (running.st_dev, running.st_ino);
    same.then_some(path)
}

/// Reads a small /proc file of the process without following links.
fn read_proc(proc_dir: &OwnedFd, name: &str) -> Option<String> {
    String::from_utf8(read_small_at(proc_dir, name, PROC_READ_LIMIT)?).ok()
}

/// Whether the process's effective uid is 0 (`Uid:` real, effective, ...).
fn runs_as_root(proc_dir: &OwnedFd) -> Option<bool> {
    let status = read_proc(proc_dir, "status")?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    Some(uids.split_whitespace().nth(1)? == "0")
}

/// An executable regular file that only root can change.
fn trusted_executable(host: &Host, path: &Path) -> bool {
    root_only(host, path).is_some()
}

/// The link-free path of an executable that only root can change or
/// swap: the file and every directory above it are root's and writable
/// by no one else. The program is run by path, so no other user may be
/// able to put another file there between this check and the run.
fn root_only(host: &Host, path: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(path).ok()?;
    let st = rfs::fstat(host.open_path(&real).ok()?).ok()?;
    let executable = rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::RegularFile
        && st.st_mode & 0o111 != 0;
    // A sticky directory (/tmp) is fine: no one else can rename or remove
    // the root-owned entry below it.
    let dirs_root_only = real.ancestors().skip(1).all(|dir| {
        host.stat(dir).ok().flatten().is_some_and(|d| {
            rfs::FileType::from_raw_mode(d.st_mode) == rfs::FileType::Directory
                && (root_owned(&d) || (d.st_uid == 0 && d.st_mode & 0o1000 != 0))
        })
    });
    (executable && root_owned(&st) && dirs_root_only).then_some(real)
}

fn root_owned(st: &rfs::Stat) -> bool {
    st.st_uid == 0 && st.st_mode & 0o022 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_version_reads_api_and_cli_forms() {
        assert_eq!(major_version("26.1.5+dfsg1"), Some(26));
        assert_eq!(major_version("28.5.2+dfsg4, build 3ef3c07c"), Some(28));
        assert_eq!(major_version("20.10.24+dfsg1, build 5d6db84\n"), Some(20));
        assert_eq!(major_version(""), None);
    }

    #[test]
    fn a_process_that_is_not_dockerd_is_not_taken_for_it() {
        let host = Host::open(Path::new("/"), Box::new(crate::host::SystemRunner)).unwrap();
        assert_eq!(running_exe(&host, std::process::id()), None);
    }

    #[test]
    fn path_entries_come_first_and_relative_ones_are_ignored() {
        let dirs = search_dirs();
        assert!(dirs.iter().all(|d| d.is_absolute()));
        for dir in BIN_DIRS {
            assert!(dirs.contains(&PathBuf::from(dir)));
        }
    }

    #[test]
    fn a_program_in_a_directory_others_can_write_is_not_trusted() {
        let host = Host::open(Path::new("/"), Box::new(crate::host::SystemRunner)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("dockerd");
        std::fs::write(&program, "#!/bin/true\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let set_dir = |mode| {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set_dir(0o777);
        assert_eq!(root_only(&host, &program), None, "anyone could swap it");
        set_dir(0o755);
        let real = program.canonicalize().unwrap();
        assert_eq!(root_only(&host, &program), Some(real), "below sticky /tmp");
        assert!(root_only(&host, Path::new("/bin/sh")).is_some());
    }

    #[test]
    fn nothing_is_located_under_an_image_root() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::open(dir.path(), Box::new(crate::host::SystemRunner)).unwrap();
        assert_eq!(locate(&host, None, None), None);
        assert!(!installed(&host));
    }
}
