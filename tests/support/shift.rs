//! Trees for `shift` built with the real tools, runs of `shift`, and
//! snapshots of every entry's owner, mode, times (atime and ctime too, read
//! without changing them), ACLs and capability to compare before and after
//! a shift.

use std::collections::BTreeMap;
use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use docker_userns::shift::acl::{self, Acl};
use docker_userns::shift::caps::FileCaps;
use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags};
use serde_json::Value;

use super::BIN;

/// The map every test shifts with, for uids and gids alike.
pub const MAP: &str = "0:100000:65536";
pub const MARKER: &str = ".docker-userns-shift.json";

/// What [`MAP`] does to one id.
pub fn mapped(id: u32) -> u32 {
    if id < 65536 { id + 100_000 } else { id }
}

/// A temp dir on the filesystem of the build (a real disk filesystem, with
/// xattrs, ACLs and `chattr`), not necessarily /tmp.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("shift-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

pub fn output(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

/// Runs a shell script with `set -e`; `$1`, `$2`... are `args`.
pub fn sh(script: &str, args: &[&Path]) {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .arg("sh")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "script failed ({}):\n{script}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stdout_of(program: &str, args: &[&str]) -> String {
    let out = output(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One run of `docker-userns shift`.
pub struct Run {
    pub code: i32,
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

/// `docker-userns shift DIR --uid-map MAP --gid-map MAP --format json EXTRA`.
pub fn shift(dir: &Path, extra: &[&str]) -> Run {
    run(&shift_args(dir, extra))
}

/// The arguments of [`shift`].
pub fn shift_args<'a>(dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let dir = dir.to_str().unwrap();
    let mut args = vec![
        "shift",
        dir,
        "--uid-map",
        MAP,
        "--gid-map",
        MAP,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    args
}

pub fn run(args: &[&str]) -> Run {
    let out = output(BIN, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Run {
        code: out.status.code().expect("exited"),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Run {
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(
            (self.code, &self.json["ok"]),
            (0, &Value::Bool(true)),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn count(&self, key: &str) -> u64 {
        self.json[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {}", self.stdout))
    }

    pub fn error_paths(&self) -> Vec<String> {
        self.json["errors"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Everything about one entry a shift may or must not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub kind: char,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub ino: u64,
    pub nlink: u64,
    pub atime: (i64, u64),
    pub mtime: (i64, u64),
    /// Left out of comparisons where a shift is expected to change it.
    pub ctime: Option<(i64, u64)>,
    pub acl_access: Option<Vec<u8>>,
    pub acl_default: Option<Vec<u8>>,
    pub caps: Option<Vec<u8>>,
}

impl State {
    /// What a shift with [`MAP`] must turn this entry into.
    pub fn shifted(&self) -> State {
        let shift_acl = |raw: &Vec<u8>| {
            let mut acl = Acl::decode(raw).unwrap();
            acl.shift(|u| Some(mapped(u)), |g| Some(mapped(g))).unwrap();
            acl.encode()
        };
        let shift_caps = |raw: &Vec<u8>| {
            let mut caps = FileCaps::decode(raw).unwrap();
            caps.shift(|u| Some(mapped(u)));
            caps.encode()
        };
        State {
            uid: mapped(self.uid),
            gid: mapped(self.gid),
            ctime: None,
            acl_access: self.acl_access.as_ref().map(shift_acl),
            acl_default: self.acl_default.as_ref().map(shift_acl),
            caps: self.caps.as_ref().map(shift_caps),
            ..self.clone()
        }
    }

    pub fn without_ctime(&self) -> State {
        State {
            ctime: None,
            ..self.clone()
        }
    }
}

pub type Snapshot = BTreeMap<PathBuf, State>;

fn xattr(dir: BorrowedFd<'_>, name: &CStr, xattr: &str) -> Option<Vec<u8>> {
    // O_PATH plus /proc/self/fd reaches the inode without following a
    // symlink or opening a FIFO or device.
    let fd = rfs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty()).unwrap();
    let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    let mut buf = vec![0u8; 4096];
    match rfs::getxattr(link.as_str(), xattr, &mut buf[..]) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => None,
        Err(e) => panic!("reading {xattr}: {e}"),
    }
}

fn state(dir: BorrowedFd<'_>, name: &CStr) -> State {
    let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => 'f',
        FileType::Directory => 'd',
        FileType::Symlink => 'l',
        FileType::Fifo => 'p',
        FileType::Socket => 's',
        FileType::CharacterDevice => 'c',
        FileType::BlockDevice => 'b',
        FileType::Unknown => '?',
    };
    let symlink = kind == 'l';
    let get = |name_: &str| {
        if symlink {
            None
        } else {
            xattr(dir, name, name_)
        }
    };
    State {
        kind,
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode & 0o7777,
        ino: st.st_ino,
        nlink: st.st_nlink,
        atime: (st.st_atime, st.st_atime_nsec as u64),
        mtime: (st.st_mtime, st.st_mtime_nsec as u64),
        ctime: Some((st.st_ctime, st.st_ctime_nsec as u64)),
        acl_access: get("system.posix_acl_access"),
        acl_default: get("system.posix_acl_default"),
        caps: get("security.capability"),
    }
}

fn open_dir(dir: BorrowedFd<'_>, name: &CStr) -> OwnedFd {
    // O_NOATIME: taking a snapshot must not change what it records.
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::NOATIME,
        Mode::empty(),
    )
    .unwrap()
}

/// Every entry under `root` (`root` itself as ""), by relative path, read
/// without changing any atime. The shift marker is left out.
pub fn snapshot(root: &Path) -> Snapshot {
    let parent = rfs::open(
        root.parent().unwrap(),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    let name = std::ffi::CString::new(root.file_name().unwrap().as_bytes()).unwrap();
    let mut out = Snapshot::new();
    out.insert(PathBuf::new(), state(parent.as_fd(), &name));
    walk(open_dir(parent.as_fd(), &name), PathBuf::new(), &mut out);
    out
}

fn walk(fd: OwnedFd, rel: PathBuf, out: &mut Snapshot) {
    let mut names = Vec::new();
    for entry in Dir::read_from(&fd).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_owned();
        if name.as_bytes() != b"." && name.as_bytes() != b".." {
            names.push(name);
        }
    }
    for name in names {
        let path = rel.join(OsStr::from_bytes(name.as_bytes()));
        if path == Path::new(MARKER) {
            continue;
        }
        let s = state(fd.as_fd(), &name);
        let is_dir = s.kind == 'd';
        out.insert(path.clone(), s);
        if is_dir {
            walk(open_dir(fd.as_fd(), &name), path, out);
        }
    }
}

/// Entries whose state differs between two snapshots, for messages.
pub fn differences(a: &Snapshot, b: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (path, x) in a {
        match b.get(path) {
            Some(y) if x == y => {}
            Some(y) => out.push(format!("{}:\n  {x:?}\n  {y:?}", path.display())),
            None => out.push(format!("{}: gone", path.display())),
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!("{}: new", path.display()));
    }
    out
}

/// Ids in named entries of a raw ACL, for readable assertions.
pub fn acl_ids(raw: &[u8]) -> Vec<(u16, u32)> {
    Acl::decode(raw)
        .unwrap()
        .entries
        .iter()
        .filter(|e| e.tag == acl::USER || e.tag == acl::GROUP)
        .map(|e| (e.tag, e.id))
        .collect()
}

/// `getfacl -n` output with every numeric id (owner, group, named entries)
/// mapped as [`MAP`] maps it.
pub fn map_getfacl(text: &str) -> String {
    text.split('\n')
        .map(|full| {
            // "user:1000:rwx\t#effective:rw-": the comment keeps its colons.
            let (line, comment) = full.split_at(full.find('\t').unwrap_or(full.len()));
            let parts: Vec<&str> = line.split(':').collect();
            if let Some(id) = line
                .strip_prefix("# owner: ")
                .or_else(|| line.strip_prefix("# group: "))
            {
                let head = &line[..line.len() - id.len()];
                return format!("{head}{}", mapped(id.parse().unwrap()));
            }
            let tagged = match parts.as_slice() {
                ["user" | "group", id, _] | ["default", "user" | "group", id, _] => Some(*id),
                _ => None,
            };
            match tagged.and_then(|id| id.parse::<u32>().ok()) {
                Some(id) => {
                    let mut parts = parts.clone();
                    let at = parts.len() - 2;
                    let new = mapped(id).to_string();
                    parts[at] = &new;
                    parts.join(":") + comment
                }
                None => full.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Removes the immutable flag when a test ends, even when it fails, so its
/// temp dir can be deleted.
pub struct Immutable(pub Vec<PathBuf>);

impl Immutable {
    pub fn set(paths: &[PathBuf]) -> Immutable {
        for p in paths {
            sh("chattr +i \"$1\"", &[p]);
        }
        Immutable(paths.to_vec())
    }

    pub fn clear(&self) {
        for p in &self.0 {
            let _ = output("chattr", &["-i", p.to_str().unwrap()]);
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Creates `dirs` directories of `files` empty files each under `root`,
/// owned by root.
pub fn bulk_tree(root: &Path, dirs: usize, files: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("bulk{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            std::fs::write(dir.join(format!("f{f}")), b"").unwrap();
        }
    }
}
