//! The resume state of a shift in the tree's root: a marker that records
//! a shift in progress (so an interrupted one can be found and resumed with
//! the same maps) and the specials record (entries whose set-id bits or
//! capability chown is about to strip).
//!
//! Both live in the root of the tree because that is where `check`, the
//! migrations and people look for an unfinished shift, and because it moves
//! with the tree. That directory may belong to the container whose data it
//! is: it can delete, rename and plant names there at any time, so nothing
//! found under those names is trusted for what it is called:
//!
//! - they are opened `O_NOFOLLOW | O_NONBLOCK` (a symlink is never followed,
//!   a FIFO never blocks) and used only when the open file is a regular
//!   file owned by root with one link, not writable by anyone else, and
//!   small; the container cannot create such a file, and cannot hard-link
//!   one in (the link count would show it);
//! - the specials record also carries, in its first line, a random token
//!   kept in the marker, which is readable by root only: a root-owned file
//!   from elsewhere renamed into place does not carry it;
//! - each record is checked again against the inode it names when applied
//!   (see `entry`), and only the walk, which stays inside the tree, looks
//!   records up;
//! - anything that fails is ignored, reported, and replaced: the marker by
//!   an atomic rename over the name, the record by unlinking the name and
//!   creating a new file with `O_EXCL`.

use std::collections::HashMap;
use std::ffi::{CStr, OsStr};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde_json::{Value, json};

use super::IdMap;
use crate::files::atomic::{self, Leftover, Perms};

/// Its name in the root of the shifted tree; the walk never shifts it.
pub(crate) const NAME: &str = ".docker-userns-shift.json";
pub(crate) const NAME_C: &CStr = c".docker-userns-shift.json";
/// Written first, then renamed over [`NAME`].
pub(crate) const TEMP_C: &CStr = c".docker-userns-shift.json.tmp";
/// Entries whose set-id bits or capability chown is about to clear,
/// recorded before the chown so that a crash in between loses nothing.
pub(crate) const SPECIALS: &str = ".docker-userns-shift.specials";
pub(crate) const SPECIALS_C: &CStr = c".docker-userns-shift.specials";
/// The first line of the specials record, followed by the marker's token.
const SPECIALS_HEADER: &str = "docker-userns-specials 2";

/// A marker is a few hundred bytes; anything much bigger is not ours.
const MAX_MARKER: u64 = 1 << 16;
/// Records are one line per set-id or capability entry of the tree.
const MAX_SPECIALS: u64 = 16 << 20;

/// An entry's identity: device (major, minor) and inode.
pub(crate) type InodeKey = (u32, u32, u64);

/// What chown is about to strip from one entry, and the owner it gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Special {
    /// The full `st_mode` before the chown, file type included.
    pub(crate) mode: u32,
    /// The owner after the chown: a record applies only to an inode that
    /// has it.
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// The shifted capability to write back.
    pub(crate) caps: Option<Vec<u8>>,
}

/// A time as (seconds, nanoseconds) since the Unix epoch.
pub(crate) type Time = (i64, i64);

/// A shift that started and did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub uid_maps: Vec<IdMap>,
    pub gid_maps: Vec<IdMap>,
    /// Seconds since the Unix epoch when the shift first started.
    pub(crate) started: u64,
    /// The tree root's atime and mtime before the marker was first
    /// written, put back when it is removed.
    pub(crate) root_times: Option<(Time, Time)>,
    /// Why the marker could not be read, when it exists but is damaged;
    /// the maps are then empty.
    pub(crate) unreadable: Option<String>,
    /// Random, hex; the specials record must start with it.
    pub(crate) token: String,
}

impl Marker {
    pub(crate) fn new(uid_maps: &[IdMap], gid_maps: &[IdMap]) -> Marker {
        Marker {
            uid_maps: uid_maps.to_vec(),
            gid_maps: gid_maps.to_vec(),
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            root_times: None,
            unreadable: None,
            token: String::new(),
        }
    }

    pub fn same_maps(&self, uid_maps: &[IdMap], gid_maps: &[IdMap]) -> bool {
        self.unreadable.is_none() && self.uid_maps == uid_maps && self.gid_maps == gid_maps
    }

    pub(crate) fn to_json(&self) -> Value {
        let text = |maps: &[IdMap]| maps.iter().map(IdMap::to_string).collect::<Vec<_>>();
        let mut value = json!({
            "version": 1,
            "uid_maps": text(&self.uid_maps),
            "gid_maps": text(&self.gid_maps),
            "started": self.started,
            "token": self.token,
        });
        if let Some((atime, mtime)) = self.root_times {
            value["root_atime"] = json!([atime.0, atime.1]);
            value["root_mtime"] = json!([mtime.0, mtime.1]);
        }
        value
    }

    fn from_json(value: &Value) -> Result<Marker, String> {
        let maps = |key: &str| -> Result<Vec<IdMap>, String> {
            value[key]
                .as_array()
                .ok_or_else(|| format!("no {key} list"))?
                .iter()
                .map(|m| {
                    let text = m
                        .as_str()
                        .ok_or_else(|| format!("{key}: {m} is not a string"))?;
                    IdMap::parse(text).map_err(|e| e.to_string())
                })
                .collect()
        };
        let time = |key: &str| Some((value[key][0].as_i64()?, value[key][1].as_i64()?));
        Ok(Marker {
            uid_maps: maps("uid_maps")?,
            gid_maps: maps("gid_maps")?,
            started: value["started"].as_u64().ok_or("no start time")?,
            root_times: time("root_atime").zip(time("root_mtime")),
            unreadable: None,
            token: value["token"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// How `check` and error messages show the maps.
    pub(crate) fn describe_maps(&self) -> String {
        let join = |maps: &[IdMap]| {
            maps.iter()
                .map(IdMap::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "--uid-map {} --gid-map {}",
            join(&self.uid_maps),
            join(&self.gid_maps)
        )
    }
}

/// What is found under the marker's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    Absent,
    Ours(Marker),
    /// Something docker-userns did not write, and why it is not trusted.
    Foreign(String),
}

/// A fresh random token, hex.
pub(crate) fn new_token() -> Result<String, Errno> {
    let fd = rfs::open(
        "/dev/urandom",
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    let mut bytes = [0u8; 16];
    let mut got = 0;
    while got < bytes.len() {
        match rustix::io::read(&fd, &mut bytes[got..])? {
            0 => return Err(Errno::IO),
            n => got += n,
        }
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Opens resume state under `name` in `root` without following a symlink
/// or blocking on a FIFO; `Ok(Err(why))` when what is there is not a file
/// only root can have written.
fn open_trusted(
    root: BorrowedFd<'_>,
    name: &CStr,
    flags: OFlags,
    max: u64,
) -> Result<Option<Result<OwnedFd, String>>, Errno> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rfs::openat(root, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => return Ok(Some(Err("a symbolic link".to_owned()))),
        // A socket, or a FIFO opened for writing with no reader.
        Err(Errno::NXIO) => return Ok(Some(Err("not a regular file".to_owned()))),
        Err(Errno::ISDIR) => return Ok(Some(Err("a directory".to_owned()))),
        Err(e) => return Err(e),
    };
    let st = rfs::fstat(&fd)?;
    let why = if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        Some(format!(
            "not a regular file ({:?})",
            FileType::from_raw_mode(st.st_mode)
        ))
    } else if st.st_uid != 0 {
        Some(format!("owned by uid {}, not root", st.st_uid))
    } else if st.st_nlink != 1 {
        Some(format!("has {} links", st.st_nlink))
    } else if st.st_mode & 0o7022 != 0 {
        Some(format!("has mode {:04o}", st.st_mode & 0o7777))
    } else if st.st_size as u64 > max {
        Some(format!("is {} bytes", st.st_size))
    } else {
        None
    };
    Ok(Some(why.map_or(Ok(fd), Err)))
}

fn read_bounded(fd: &OwnedFd, max: u64) -> Result<Vec<u8>, Errno> {
    let mut bytes = Vec::new();
    std::fs::File::from(
        fd.try_clone()
            .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?,
    )
    .take(max)
    .read_to_end(&mut bytes)
    .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
    Ok(bytes)
}

/// The marker of an unfinished shift of `dir`, if there is one that
/// docker-userns wrote.
pub fn unfinished_shift(dir: &Path) -> Option<Marker> {
    let root = rfs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    match read(root.as_fd()).ok()? {
        Found::Ours(marker) => Some(marker),
        Found::Absent | Found::Foreign(_) => None,
    }
}

/// Reads the marker in the directory `root`.
pub(crate) fn read(root: BorrowedFd<'_>) -> Result<Found, Errno> {
    let fd = match open_trusted(root, NAME_C, OFlags::RDONLY, MAX_MARKER)? {
        None => return Ok(Found::Absent),
        Some(Err(why)) => return Ok(Found::Foreign(why)),
        Some(Ok(fd)) => fd,
    };
    let bytes = read_bounded(&fd, MAX_MARKER)?;
    let parsed = serde_json::from_slice::<Value>(&bytes)
        .map_err(|e| format!("not JSON: {e}"))
        .and_then(|v| Marker::from_json(&v));
    Ok(Found::Ours(parsed.unwrap_or_else(|reason| Marker {
        uid_maps: Vec::new(),
        gid_maps: Vec::new(),
        started: 0,
        root_times: None,
        unreadable: Some(reason),
        token: String::new(),
    })))
}

/// Replaces the marker atomically: readers see the old one or the new one,
/// and after a crash it is either complete or absent. Whatever was under
/// either name is replaced, never followed or written through.
pub(crate) fn write(root: BorrowedFd<'_>, marker: &Marker) -> Result<(), Errno> {
    let bytes = serde_json::to_vec_pretty(&marker.to_json()).expect("JSON of plain values");
    let perms = Perms {
        owner: None,
        mode: 0o600,
        label: None,
    };
    let temp = OsStr::from_bytes(TEMP_C.to_bytes()).to_owned();
    atomic::replace_at(
        root,
        OsStr::new(NAME),
        temp,
        Leftover::Replace,
        &bytes,
        perms,
    )
    .map_err(|e| e.errno())
}

/// Creates `name` afresh, 0600, after unlinking whatever was there.
fn create_exclusive(root: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    match rfs::unlinkat(root, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(e),
    }
    let fd = rfs::openat(
        root,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    // The umask may have taken bits away, never added them; make it exact.
    rfs::fchmod(&fd, Mode::from_raw_mode(0o600))?;
    Ok(fd)
}

fn write_all(fd: &OwnedFd, mut rest: &[u8]) -> Result<(), Errno> {
    while !rest.is_empty() {
        let n = rustix::io::write(fd, rest)?;
        rest = &rest[n..];
    }
    Ok(())
}

/// Removes the marker once every entry is shifted.
pub(crate) fn remove(root: BorrowedFd<'_>) -> Result<(), Errno> {
    match rfs::unlinkat(root, NAME_C, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => rfs::fsync(root),
        Err(e) => Err(e),
    }
}

/// Whether a root-level name belongs to the marker rather than the content.
pub(crate) fn is_marker_name(name: &CStr) -> bool {
    name == NAME_C || name == TEMP_C || name == SPECIALS_C
}

/// The specials record, open for appending, with what an interrupted
/// shift recorded in it.
pub(crate) struct Specials {
    pub(crate) file: std::fs::File,
    pub(crate) pending: HashMap<InodeKey, Special>,
    /// Why a record found under the name was not used.
    pub(crate) ignored: Option<String>,
}

/// Opens the specials record of the shift whose marker holds `token`. On
/// `resume`, the records of the previous run are kept when the file is
/// one only root can have written and carries the token; otherwise (and
/// on a fresh shift) it starts empty.
pub(crate) fn open_specials(
    root: BorrowedFd<'_>,
    token: &str,
    resume: bool,
) -> Result<Specials, Errno> {
    let mut ignored = None;
    if resume {
        match open_trusted(
            root,
            SPECIALS_C,
            OFlags::RDWR | OFlags::APPEND,
            MAX_SPECIALS,
        )? {
            None => {}
            Some(Err(why)) => ignored = Some(why),
            Some(Ok(fd)) => {
                let text = read_bounded(&fd, MAX_SPECIALS)?;
                match parse_specials(&text, token) {
                    Ok(pending) => {
                        return Ok(Specials {
                            file: std::fs::File::from(fd),
                            pending,
                            ignored: None,
                        });
                    }
                    Err(why) => ignored = Some(why.to_owned()),
                }
            }
        }
    }
    let fd = create_exclusive(root, SPECIALS_C)?;
    write_all(&fd, format!("{SPECIALS_HEADER} {token}\n").as_bytes())?;
    rfs::fsync(&fd)?;
    let file = std::fs::File::from(fd);
    Ok(Specials {
        file,
        pending: HashMap::new(),
        ignored,
    })
}

/// One record: `MAJOR MINOR INODE MODE UID GID CAPS-HEX|-`, the mode in
/// octal with its file type.
pub(crate) fn special_line(key: InodeKey, special: &Special) -> String {
    let caps = special.caps.as_ref().map_or_else(
        || "-".to_owned(),
        |c| c.iter().map(|b| format!("{b:02x}")).collect(),
    );
    format!(
        "{} {} {} {:o} {} {} {caps}\n",
        key.0, key.1, key.2, special.mode, special.uid, special.gid
    )
}

/// The records after a header with `token`; torn last lines are skipped.
fn parse_specials(bytes: &[u8], token: &str) -> Result<HashMap<InodeKey, Special>, &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text")?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    if token.is_empty() || header != format!("{SPECIALS_HEADER} {token}") {
        return Err("it does not belong to this shift's marker");
    }
    Ok(lines.filter_map(parse_special).collect())
}

fn parse_special(line: &str) -> Option<(InodeKey, Special)> {
    let f: Vec<&str> = line.split(' ').collect();
    let [maj, min, ino, mode, uid, gid, caps] = f[..] else {
        return None;
    };
    let caps = match caps {
        "-" => None,
        hex if hex.len() % 2 == 0 => Some(
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?,
        ),
        _ => return None,
    };
    let special = Special {
        mode: u32::from_str_radix(mode, 8).ok()?,
        uid: uid.parse().ok()?,
        gid: gid.parse().ok()?,
        caps,
    };
    Some((
        (maj.parse().ok()?, min.parse().ok()?, ino.parse().ok()?),
        special,
    ))
}

pub(crate) fn remove_specials(root: BorrowedFd<'_>) -> Result<(), Errno> {
    match rfs::unlinkat(root, SPECIALS_C, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;

    fn open(path: &Path) -> OwnedFd {
        rfs::open(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    fn maps(text: &str) -> Vec<IdMap> {
        text.split(',').map(|m| IdMap::parse(m).unwrap()).collect()
    }

    #[test]
    fn write_read_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let root = open(dir.path());
        assert_eq!(unfinished_shift(dir.path()), None);
        let marker = Marker {
            root_times: Some(((1, 2), (3, 999_999_999))),
            ..Marker::new(&maps("0:100000:65536"), &maps("0:100000:10,10:200000:5"))
        };
        write(root.as_fd(), &marker).unwrap();
        let found = unfinished_shift(dir.path()).unwrap();
        assert_eq!(found, marker);
        assert!(found.same_maps(&marker.uid_maps, &marker.gid_maps));
        assert_eq!(
            found.describe_maps(),
            "--uid-map 0:100000:65536 --gid-map 0:100000:10,10:200000:5"
        );
        assert!(!dir.path().join(".docker-userns-shift.json.tmp").exists());
        remove(root.as_fd()).unwrap();
        assert_eq!(unfinished_shift(dir.path()), None);
        remove(root.as_fd()).unwrap();
    }

    #[test]
    fn a_damaged_marker_still_counts_as_unfinished() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NAME), "{\"uid_maps\": [\"0:1\"]").unwrap();
        std::fs::set_permissions(
            dir.path().join(NAME),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let found = unfinished_shift(dir.path()).unwrap();
        assert!(found.unreadable.unwrap().starts_with("not JSON"));
        assert!(
            !Marker {
                unreadable: Some(String::new()),
                ..Marker::new(&[], &[])
            }
            .same_maps(&[], &[])
        );
    }

    #[test]
    fn what_root_did_not_write_is_foreign_and_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let root = open(dir.path());
        let path = dir.path().join(NAME);
        std::os::unix::fs::symlink("/etc/shadow", &path).unwrap();
        assert_eq!(
            read(root.as_fd()).unwrap(),
            Found::Foreign("a symbolic link".into())
        );
        std::fs::remove_file(&path).unwrap();
        rustix::fs::mknodat(
            rfs::CWD,
            &path,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(matches!(read(root.as_fd()).unwrap(), Found::Foreign(_)));
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "{}").unwrap();
        std::os::unix::fs::chown(&path, Some(100000), None).unwrap();
        assert_eq!(
            read(root.as_fd()).unwrap(),
            Found::Foreign("owned by uid 100000, not root".into())
        );
        // A planted FIFO at the record's name is replaced, never opened.
        let specials = dir.path().join(SPECIALS);
        rustix::fs::mknodat(
            rfs::CWD,
            &specials,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let opened = open_specials(root.as_fd(), "ab", true).unwrap();
        assert!(opened.pending.is_empty());
        assert_eq!(opened.ignored.as_deref(), Some("not a regular file (Fifo)"));
        assert!(std::fs::symlink_metadata(&specials).unwrap().is_file());
    }

    #[test]
    fn records_are_kept_only_under_the_markers_token() {
        let dir = tempfile::tempdir().unwrap();
        let root = open(dir.path());
        let special = Special {
            mode: 0o104755,
            uid: 100000,
            gid: 100004,
            caps: Some(vec![1, 2, 0xff]),
        };
        {
            let mut opened = open_specials(root.as_fd(), "t0k3n", false).unwrap();
            let line = special_line((8, 1, 42), &special);
            std::io::Write::write_all(&mut opened.file, line.as_bytes()).unwrap();
            std::io::Write::write_all(&mut opened.file, b"8 1 43 torn").unwrap();
        }
        let resumed = open_specials(root.as_fd(), "t0k3n", true).unwrap();
        assert_eq!(resumed.pending.len(), 1);
        assert_eq!(resumed.pending[&(8, 1, 42)], special);
        drop(resumed);
        let other = open_specials(root.as_fd(), "other", true).unwrap();
        assert!(other.pending.is_empty());
        assert!(other.ignored.is_some());
    }
}
