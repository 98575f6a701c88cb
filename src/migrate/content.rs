//! What a data root holds: images, containers and volumes, and its size,
//! counted without following links or leaving its filesystem.

use std::ffi::CString;
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};

use crate::host::Host;

/// Counts of what a data root holds.
pub struct Content {
    pub images: usize,
    pub containers: usize,
    pub volumes: usize,
    pub size: Size,
}

/// Disk usage, cut short on huge trees so `check` stays fast.
pub struct Size {
    pub bytes: u64,
    pub complete: bool,
}

/// Entries looked at per data root before the size is reported as a minimum.
const SIZE_BUDGET: usize = 200_000;

impl Size {
    /// Allocated bytes under `dir` (inside the host's root), without
    /// following symlinks or crossing into other filesystems; the
    /// namespaced roots inside a data root are not part of it. The walk
    /// goes from directory descriptor to entry, so no link in the tree
    /// can lead it elsewhere.
    fn of(host: &Host, dir: &Path) -> Size {
        let empty = Size {
            bytes: 0,
            complete: true,
        };
        let Ok(top) = host.open_dir(dir) else {
            return empty;
        };
        let Ok(top_st) = rfs::fstat(&top) else {
            return empty;
        };
        let top = Rc::new(top);
        let mut stack = vec![(Rc::clone(&top), None::<CString>)];
        let (mut bytes, mut seen) = (0u64, 0usize);
        while let Some((parent, name)) = stack.pop() {
            let fd = match &name {
                None => parent,
                Some(name) => {
                    match rfs::openat(&*parent, name.as_c_str(), WALK_FLAGS, Mode::empty()) {
                        Ok(fd) => Rc::new(fd),
                        Err(_) => continue,
                    }
                }
            };
            let Ok(listing) = rfs::Dir::read_from(&*fd) else {
                continue;
            };
            for entry in listing.flatten() {
                let entry_name = entry.file_name();
                if matches!(entry_name.to_bytes(), b"." | b"..")
                    || (name.is_none() && is_remapped_name(&entry_name.to_string_lossy()))
                {
                    continue;
                }
                seen += 1;
                if seen > SIZE_BUDGET {
                    return Size {
                        bytes,
                        complete: false,
                    };
                }
                let Ok(st) = rfs::statat(&*fd, entry_name, AtFlags::SYMLINK_NOFOLLOW) else {
                    continue;
                };
                bytes += st.st_blocks as u64 * 512;
                let is_dir = rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory;
                if is_dir && st.st_dev == top_st.st_dev {
                    stack.push((Rc::clone(&fd), Some(entry_name.to_owned())));
                }
            }
        }
        Size {
            bytes,
            complete: true,
        }
    }
}

/// A directory below the data root, opened without following a link.
const WALK_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::CLOEXEC);

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (value, unit) = [("GiB", 30), ("MiB", 20), ("KiB", 10)]
            .iter()
            .find(|(_, shift)| self.bytes >= 1 << shift)
            .map_or((self.bytes as f64, "B"), |(unit, shift)| {
                (self.bytes as f64 / (1u64 << shift) as f64, unit)
            });
        write!(
            f,
            "{}{value:.1} {unit}",
            if self.complete { "" } else { "at least " }
        )
    }
}

impl Content {
    /// What a data root (without the namespaced roots in it) holds.
    pub fn count(host: &Host, root: &Path) -> Content {
        let names = |rel: &str| {
            host.open_dir(&root.join(rel))
                .map(list_dir)
                .unwrap_or_default()
        };
        let images = names("image")
            .iter()
            .map(|driver| names(&format!("image/{driver}/imagedb/content/sha256")).len())
            .sum();
        let volumes = names("volumes")
            .iter()
            .filter(|n| n.as_str() != "metadata.db" && n.as_str() != "backingFsBlockDev")
            .count();
        Content {
            images,
            containers: names("containers").len(),
            volumes,
            size: Size::of(host, root),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.images + self.containers + self.volumes == 0
    }
}

impl std::fmt::Display for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} images, {} containers, {} volumes, {}",
            self.images, self.containers, self.volumes, self.size
        )
    }
}

/// A namespaced root's name, as dockerd makes it: `<uid>.<gid>`.
pub fn is_remapped_name(name: &str) -> bool {
    name.split_once('.').is_some_and(|(u, g)| {
        !u.is_empty()
            && !g.is_empty()
            && u.bytes().all(|b| b.is_ascii_digit())
            && g.bytes().all(|b| b.is_ascii_digit())
    })
}

pub fn list_dir(fd: std::os::fd::OwnedFd) -> Vec<String> {
    let Ok(dir) = rustix::fs::Dir::read_from(&fd) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .collect()
}
