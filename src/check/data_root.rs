//! Data-root checks: the namespaced root is owned as dockerd makes it,
//! every parent lets the remapped root through, inactive roots and what
//! they hide, and whether the filesystem can carry the mapping.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};

use super::{Check, Facts, Remap};

const DIR: &str = "data_root.remapped_dir";
const TRAVERSE: &str = "data_root.traversable";
const INACTIVE: &str = "data_root.inactive";
const FILESYSTEM: &str = "data_root.filesystem";

const NFS_MAGIC: i64 = 0x6969;
const OVERLAY_MAGIC: i64 = 0x794c_7630;

pub fn checks(facts: &Facts<'_>) -> Vec<Check> {
    let mut out = Vec::new();
    match &facts.remap {
        Some(remap) if remap.data_root_dir().is_some() => {
            out.push(remapped_dir(facts, remap));
            out.push(traversable(facts));
        }
        _ => {
            let why = "no resolvable userns-remap mapping";
            out.push(Check::skip(DIR, "namespaced data root", why));
            out.push(Check::skip(TRAVERSE, "data root parents traversable", why));
        }
    }
    out.push(inactive(facts));
    out.push(unfinished(facts));
    out.push(filesystem(facts));
    out
}

/// A migration or a shift that was interrupted and must be finished.
fn unfinished(facts: &Facts<'_>) -> Check {
    const ID: &str = "data_root.unfinished";
    const TITLE: &str = "no half-done migration or shift";
    let root = facts.host.display(&facts.data_root);
    if let Some(m) = crate::migrate::pending(facts.host, &facts.data_root) {
        let (command, way) = match m.direction {
            crate::migrate::Direction::IntoRemapped => ("enable --migrate", "into"),
            crate::migrate::Direction::OutOfRemapped => ("disable --migrate", "out of"),
            crate::migrate::Direction::Between { .. } => ("enable --migrate", "into"),
        };
        return Check::fail(
            ID,
            TITLE,
            format!("a migration {way} {} was interrupted: images, containers or volumes may be split between roots", m.remapped_root().display()),
        )
        .remedy(format!("docker-userns {command} (it resumes from the journal)"));
    }
    let dirs = list_dir_names(facts, &facts.data_root);
    for name in dirs.iter().filter(|n| is_remapped_name(n)) {
        let dir = root.join(name);
        if let Some(marker) = crate::shift::unfinished_shift(&dir) {
            return Check::fail(
                ID,
                TITLE,
                format!(
                    "{} has an unfinished shift ({})",
                    dir.display(),
                    marker.describe_maps()
                ),
            )
            .remedy(format!(
                "docker-userns shift {} {}",
                dir.display(),
                marker.describe_maps()
            ));
        }
    }
    Check::ok(ID, TITLE, "no interrupted migration or shift")
}

fn list_dir_names(facts: &Facts<'_>, dir: &Path) -> Vec<String> {
    facts.host.open_dir(dir).map(list_dir).unwrap_or_default()
}

fn remapped_dir(facts: &Facts<'_>, remap: &Remap) -> Check {
    const TITLE: &str = "namespaced data root";
    let name = remap.data_root_dir().expect("checked by the caller");
    let path = facts.data_root.join(&name);
    let shown = facts.host.display(&path);
    let gid = remap.gid_ranges[0].start;
    match facts.host.stat(&path) {
        Ok(None) => Check::warn(
            DIR,
            TITLE,
            format!(
                "{} does not exist yet: dockerd creates it when it first starts with this mapping",
                shown.display()
            ),
        )
        .remedy("restart dockerd (e.g. `systemctl restart docker`)"),
        Err(e) => Check::fail(DIR, TITLE, format!("{e:#}")),
        Ok(Some(st)) => {
            let mode = st.st_mode & 0o7777;
            if st.st_uid == 0 && u64::from(st.st_gid) == gid && mode == 0o710 {
                Check::ok(
                    DIR,
                    TITLE,
                    format!("{} is root:{gid} 0710", shown.display()),
                )
            } else {
                Check::warn(
                    DIR,
                    TITLE,
                    format!(
                        "{} is {}:{} {mode:04o}; dockerd makes it root:{gid} 0710",
                        shown.display(),
                        st.st_uid,
                        st.st_gid
                    ),
                )
                .remedy(format!(
                    "chown root:{gid} {0} && chmod 0710 {0}",
                    shown.display()
                ))
            }
        }
    }
}

/// The remapped root is "other" to every parent directory: each needs o+x.
fn traversable(facts: &Facts<'_>) -> Check {
    const TITLE: &str = "data root parents traversable";
    let mut blocked = Vec::new();
    for dir in ancestors(&facts.data_root) {
        if let Ok(Some(st)) = facts.host.stat(&dir) {
            if st.st_mode & 0o001 == 0 {
                blocked.push(facts.host.display(&dir));
            }
        }
    }
    match blocked.first() {
        None => Check::ok(
            TRAVERSE,
            TITLE,
            format!(
                "every directory down to {} has o+x",
                facts.data_root.display()
            ),
        ),
        Some(first) => Check::fail(
            TRAVERSE,
            TITLE,
            format!(
                "{} lacks o+x: dockerd fails with \"please fix by allowing 'o+x'\"",
                first.display()
            ),
        )
        .remedy(format!(
            "chmod o+x {}",
            blocked
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        )),
    }
}

fn ancestors(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = path.ancestors().map(Path::to_owned).collect();
    out.reverse();
    out
}

/// What dockerd will not show while remapping is on (or off).
fn inactive(facts: &Facts<'_>) -> Check {
    const TITLE: &str = "inactive data roots";
    let active = facts.remap.as_ref().and_then(Remap::data_root_dir);
    let mut hidden = Vec::new();
    let entries = match facts.host.open_dir(&facts.data_root) {
        Ok(fd) => list_dir(fd),
        Err(_) => {
            return Check::ok(
                INACTIVE,
                TITLE,
                format!("{} does not exist yet", facts.data_root.display()),
            );
        }
    };
    for name in &entries {
        if is_remapped_name(name) && Some(name) != active.as_ref() {
            let content = Content::count(facts.host, &facts.data_root.join(name));
            hidden.push(format!(
                "{} ({content})",
                facts.data_root.join(name).display()
            ));
        }
    }
    if active.is_some() {
        let content = Content::count(facts.host, &facts.data_root);
        if !content.is_empty() {
            hidden.push(format!(
                "{} itself, the non-remapped root ({content})",
                facts.data_root.display()
            ));
        }
    }
    if hidden.is_empty() {
        return Check::ok(INACTIVE, TITLE, "nothing is hidden in another data root");
    }
    Check::warn(INACTIVE, TITLE, format!("hidden from the running mapping: {}", hidden.join("; ")))
        .remedy("docker-userns enable --migrate carries them into the remapped root; or remove them when no longer needed")
}

fn is_remapped_name(name: &str) -> bool {
    name.split_once('.').is_some_and(|(u, g)| {
        !u.is_empty()
            && !g.is_empty()
            && u.bytes().all(|b| b.is_ascii_digit())
            && g.bytes().all(|b| b.is_ascii_digit())
    })
}

fn list_dir(fd: std::os::fd::OwnedFd) -> Vec<String> {
    let Ok(dir) = rustix::fs::Dir::read_from(&fd) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .collect()
}

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
    fn of(host: &crate::host::Host, dir: &Path) -> Size {
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
    pub fn count(host: &crate::host::Host, root: &Path) -> Content {
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

fn filesystem(facts: &Facts<'_>) -> Check {
    const TITLE: &str = "data root filesystem";
    let existing = ancestors(&facts.data_root)
        .into_iter()
        .rev()
        .find(|p| facts.host.exists(p));
    let Some(path) = existing else {
        return Check::skip(FILESYSTEM, TITLE, "no part of the data root path exists");
    };
    match facts.host.filesystem_type(&path) {
        Ok(NFS_MAGIC) => Check::warn(
            FILESYSTEM,
            TITLE,
            format!(
                "{} is on NFS: root squashing and id mapping break remapped layers",
                path.display()
            ),
        )
        .remedy("put the data root on a local filesystem (ext4, xfs, btrfs)"),
        Ok(OVERLAY_MAGIC) => Check::warn(
            FILESYSTEM,
            TITLE,
            format!(
                "{} is on overlayfs: the overlay2 driver cannot stack on it",
                path.display()
            ),
        )
        .remedy("put the data root on a local filesystem (ext4, xfs, btrfs)"),
        Ok(magic) => Check::ok(
            FILESYSTEM,
            TITLE,
            format!(
                "{} is on a local filesystem (type 0x{magic:x})",
                path.display()
            ),
        ),
        Err(e) => Check::skip(FILESYSTEM, TITLE, format!("{e:#}")),
    }
}
