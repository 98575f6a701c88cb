//! The marker file that records a shift in progress in the tree's root, so
//! an interrupted shift can be found and resumed with the same maps.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use serde_json::{Value, json};

use super::IdMap;

/// Its name in the root of the shifted tree; the walk never shifts it.
pub const NAME: &str = ".docker-userns-shift.json";
pub(crate) const NAME_C: &CStr = c".docker-userns-shift.json";
/// Written first, then renamed over [`NAME`].
pub(crate) const TEMP_C: &CStr = c".docker-userns-shift.json.tmp";
/// Entries whose set-id bits or capability chown is about to clear,
/// recorded before the chown so that a crash in between loses nothing.
pub(crate) const SPECIALS_C: &CStr = c".docker-userns-shift.specials";

/// An entry's identity: device (major, minor) and inode.
pub(crate) type InodeKey = (u32, u32, u64);
/// What to put back on it: its full mode and its shifted capability.
pub(crate) type Special = (u32, Option<Vec<u8>>);

/// A time as (seconds, nanoseconds) since the Unix epoch.
pub type Time = (i64, i64);

/// A shift that started and did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub uid_maps: Vec<IdMap>,
    pub gid_maps: Vec<IdMap>,
    /// Seconds since the Unix epoch when the shift first started.
    pub started: u64,
    /// The tree root's atime and mtime before the marker was first
    /// written, put back when it is removed.
    pub root_times: Option<(Time, Time)>,
    /// Why the marker could not be read, when it exists but is damaged;
    /// the maps are then empty.
    pub unreadable: Option<String>,
}

impl Marker {
    pub fn new(uid_maps: &[IdMap], gid_maps: &[IdMap]) -> Marker {
        Marker {
            uid_maps: uid_maps.to_vec(),
            gid_maps: gid_maps.to_vec(),
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            root_times: None,
            unreadable: None,
        }
    }

    pub fn same_maps(&self, uid_maps: &[IdMap], gid_maps: &[IdMap]) -> bool {
        self.unreadable.is_none() && self.uid_maps == uid_maps && self.gid_maps == gid_maps
    }

    pub fn to_json(&self) -> Value {
        let text = |maps: &[IdMap]| maps.iter().map(IdMap::to_string).collect::<Vec<_>>();
        let mut value = json!({
            "version": 1,
            "uid_maps": text(&self.uid_maps),
            "gid_maps": text(&self.gid_maps),
            "started": self.started,
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
        })
    }

    /// How `check` and error messages show the maps.
    pub fn describe_maps(&self) -> String {
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

/// The marker of an unfinished shift of `dir`, if there is one.
pub fn unfinished_shift(dir: &Path) -> Option<Marker> {
    let root = rfs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    read(root.as_fd()).ok().flatten()
}

/// Reads the marker in the directory `root`; `Ok(None)` when there is none.
pub(crate) fn read(root: BorrowedFd<'_>) -> Result<Option<Marker>, Errno> {
    let fd = match rfs::openat(
        root,
        NAME_C,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    // A marker is a few hundred bytes; anything much bigger is not ours.
    while bytes.len() < 1 << 16 {
        match rustix::io::read(&fd, &mut chunk)? {
            0 => break,
            n => bytes.extend_from_slice(&chunk[..n]),
        }
    }
    let parsed = serde_json::from_slice::<Value>(&bytes)
        .map_err(|e| format!("not JSON: {e}"))
        .and_then(|v| Marker::from_json(&v));
    Ok(Some(parsed.unwrap_or_else(|reason| Marker {
        uid_maps: Vec::new(),
        gid_maps: Vec::new(),
        started: 0,
        root_times: None,
        unreadable: Some(reason),
    })))
}

/// Replaces the marker atomically: readers see the old one or the new one,
/// and after a crash it is either complete or absent.
pub(crate) fn write(root: BorrowedFd<'_>, marker: &Marker) -> Result<(), Errno> {
    let bytes = serde_json::to_vec_pretty(&marker.to_json()).expect("JSON of plain values");
    let _ = rfs::unlinkat(root, TEMP_C, AtFlags::empty());
    let fd = rfs::openat(
        root,
        TEMP_C,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let n = rustix::io::write(&fd, rest)?;
        rest = &rest[n..];
    }
    rfs::fsync(&fd)?;
    drop(fd);
    rfs::renameat(root, TEMP_C, root, NAME_C)?;
    rfs::fsync(root)
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

/// Opens the specials record for appending (a fresh shift starts it empty).
pub(crate) fn open_specials(root: BorrowedFd<'_>, fresh: bool) -> Result<std::fs::File, Errno> {
    if fresh {
        remove_specials(root)?;
    }
    let fd = rfs::openat(
        root,
        SPECIALS_C,
        OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(std::fs::File::from(fd))
}

/// One record: `MAJOR MINOR INODE MODE CAPS-HEX|-`.
pub(crate) fn special_line(key: InodeKey, special: &Special) -> String {
    let caps = special.1.as_ref().map_or_else(
        || "-".to_owned(),
        |c| c.iter().map(|b| format!("{b:02x}")).collect(),
    );
    format!("{} {} {} {:o} {caps}\n", key.0, key.1, key.2, special.0)
}

/// The entries an interrupted shift recorded; torn last lines are skipped.
pub(crate) fn read_specials(root: BorrowedFd<'_>) -> std::collections::HashMap<InodeKey, Special> {
    let mut out = std::collections::HashMap::new();
    let Ok(fd) = rfs::openat(
        root,
        SPECIALS_C,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return out;
    };
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text);
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let [maj, min, ino, mode, caps] = f[..] else {
            continue;
        };
        let (Ok(maj), Ok(min), Ok(ino), Ok(mode)) = (
            maj.parse(),
            min.parse(),
            ino.parse(),
            u32::from_str_radix(mode, 8),
        ) else {
            continue;
        };
        let caps = match caps {
            "-" => None,
            hex => match (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect()
            {
                Some(bytes) => Some(bytes),
                None => continue,
            },
        };
        out.insert((maj, min, ino), (mode, caps));
    }
    out
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

    fn maps(text: &str) -> Vec<IdMap> {
        text.split(',').map(|m| IdMap::parse(m).unwrap()).collect()
    }

    #[test]
    fn write_read_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let root = rfs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
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
}
