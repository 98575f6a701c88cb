//! Whether a container user can reach a bind-mount source on the host,
//! component by component, and the smallest fix for the first block.
//!
//! The kernel's rules, from the host's side: the container's process has
//! host ids `start + id`; container root keeps its capabilities (Docker's
//! defaults include CAP_DAC_OVERRIDE) but only over inodes whose owner and
//! group are both mapped into its namespace; everyone else goes through
//! owner, ACL user, group (ACL group) and other bits.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Component as Part, Path, PathBuf};

use rustix::fs::{self as rfs, FileType, Mode, OFlags, ResolveFlags};

use crate::accounts::Mapping;
use crate::host::Host;
use crate::ids::IdRange;
use crate::shift::acl::{Acl, GROUP, USER};

/// ACL entry tags besides the named ones (from `<linux/posix_acl.h>`).
pub const USER_OBJ: u16 = 0x01;
pub const GROUP_OBJ: u16 = 0x04;
pub const MASK: u16 = 0x10;
pub const OTHER: u16 = 0x20;
pub const NO_ID: u32 = u32::MAX;

/// The xattrs holding a POSIX ACL and a directory's default ACL.
pub const ACCESS_ACL: &str = "system.posix_acl_access";
pub const DEFAULT_ACL: &str = "system.posix_acl_default";

pub const READ: u16 = 4;
pub const WRITE: u16 = 2;
pub const EXEC: u16 = 1;

/// The container user, seen from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The id inside the container (`--as`), 0 for root.
    pub inside_uid: u32,
    pub inside_gid: u32,
    pub uid_ranges: Vec<IdRange>,
    pub gid_ranges: Vec<IdRange>,
}

impl Subject {
    /// Container user `uid:gid` under `mapping`; `None` until the mapping
    /// has both a uid and a gid range.
    pub fn under(mapping: &Mapping, uid: u32, gid: u32) -> Option<Subject> {
        if mapping.uid_ranges.is_empty() || mapping.gid_ranges.is_empty() {
            return None;
        }
        Some(Subject {
            inside_uid: uid,
            inside_gid: gid,
            uid_ranges: mapping.uid_ranges.clone(),
            gid_ranges: mapping.gid_ranges.clone(),
        })
    }

    /// The host uid the container user has (the stacked ranges in order).
    pub fn host_uid(&self) -> Option<u32> {
        map_id(&self.uid_ranges, self.inside_uid)
    }

    pub fn host_gid(&self) -> Option<u32> {
        map_id(&self.gid_ranges, self.inside_gid)
    }

    /// Root inside keeps DAC_OVERRIDE over inodes it can see the ids of.
    fn overrides(&self, owner: u32, group: u32) -> bool {
        self.inside_uid == 0 && covers(&self.uid_ranges, owner) && covers(&self.gid_ranges, group)
    }
}

fn map_id(ranges: &[IdRange], inside: u32) -> Option<u32> {
    let mut offset = u64::from(inside);
    for range in ranges {
        if offset < range.count {
            return u32::try_from(range.start + offset).ok();
        }
        offset -= range.count;
    }
    None
}

fn covers(ranges: &[IdRange], id: u32) -> bool {
    ranges.iter().any(|r| r.contains(id))
}

/// One path component and what the subject lacks on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub is_dir: bool,
    pub acl: Option<Acl>,
    /// Permission bits needed here (x on parents; r, w and x on a dir).
    pub needs: u16,
    /// What of `needs` is not granted.
    pub missing: u16,
    /// Which rule decided (owner, ACL user, group, other, capability).
    pub decided_by: &'static str,
}

impl Component {
    pub fn blocked(&self) -> bool {
        self.missing != 0
    }
}

pub fn perm_letters(perm: u16) -> String {
    [(READ, 'r'), (WRITE, 'w'), (EXEC, 'x')]
        .iter()
        .map(|&(bit, c)| if perm & bit != 0 { c } else { '-' })
        .collect()
}

/// What `subject` may do on an inode: (granted bits, the deciding rule).
pub fn granted(
    subject: &Subject,
    uid: u32,
    gid: u32,
    mode: u32,
    acl: Option<&Acl>,
) -> (u16, &'static str) {
    if subject.overrides(uid, gid) {
        return (
            READ | WRITE | EXEC,
            "capability of root over a mapped inode",
        );
    }
    let (Some(me), Some(my_gid)) = (subject.host_uid(), subject.host_gid()) else {
        return (0, "id outside the mapping");
    };
    let bits = |shift: u32| ((mode >> shift) & 7) as u16;
    let Some(acl) = acl else {
        return if me == uid {
            (bits(6), "owner bits")
        } else if my_gid == gid {
            (bits(3), "group bits")
        } else {
            (bits(0), "other bits")
        };
    };
    let entry = |tag: u16, id: Option<u32>| {
        acl.entries
            .iter()
            .find(|e| e.tag == tag && id.is_none_or(|id| e.id == id))
    };
    let mask = entry(MASK, None).map_or(7, |e| e.perm);
    if me == uid {
        return (
            entry(USER_OBJ, None).map_or(bits(6), |e| e.perm),
            "owner bits",
        );
    }
    if let Some(e) = entry(USER, Some(me)) {
        return (e.perm & mask, "ACL user entry");
    }
    let group_perm = [
        entry(GROUP_OBJ, None).filter(|_| my_gid == gid),
        entry(GROUP, Some(my_gid)),
    ]
    .into_iter()
    .flatten()
    .fold(None, |acc: Option<u16>, e| Some(acc.unwrap_or(0) | e.perm));
    if let Some(perm) = group_perm {
        return (perm & mask, "group entry");
    }
    (entry(OTHER, None).map_or(bits(0), |e| e.perm), "other bits")
}

/// Why a path was not walked: it leads somewhere through what someone
/// else may control, or does not lead anywhere.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{0}: give an absolute path (as seen inside --root when one is given)")]
    Relative(PathBuf),
    #[error("{0}: has a `..` component; give the path without it")]
    DotDot(PathBuf),
    #[error(
        "{path}: is a symbolic link (to {target}); links are not followed, \
         whoever made them: give the real path"
    )]
    Symlink { path: PathBuf, target: String },
    #[error("{0}: is not a directory")]
    NotDirectory(PathBuf),
    #[error(
        "{path}: is a symbolic link (to {target}) that someone other than root \
         controls ({why}); it is not followed: give the real path"
    )]
    UntrustedLink {
        path: PathBuf,
        target: String,
        why: String,
    },
    #[error("{0}: more than 40 symbolic links on the way")]
    TooManyLinks(PathBuf),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One component as the walk opened it: an `O_PATH` handle on the inode
/// and its status, read from that handle.
#[derive(Debug)]
pub struct Opened {
    /// The path inside the root, down to this component.
    pub path: PathBuf,
    pub fd: OwnedFd,
    pub stat: rfs::Stat,
}

impl Opened {
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }

    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }
}

/// Opens every component of `path` from the root down, each by its one
/// name in the directory handle opened before it. No link is followed
/// (a link component is refused, naming it) and `..` is refused, so the
/// handles are the inodes the names led to, whatever is renamed later.
pub fn open_components(host: &Host, path: &Path) -> Result<Vec<Opened>, WalkError> {
    if !path.is_absolute() {
        return Err(WalkError::Relative(path.to_owned()));
    }
    let mut walk = vec![open_root(host)?];
    for part in path.components() {
        let name = match part {
            Part::Normal(name) => name,
            Part::ParentDir => return Err(WalkError::DotDot(host.display(path))),
            Part::RootDir | Part::CurDir | Part::Prefix(_) => continue,
        };
        let parent = walk.last().expect("the walk starts at the root");
        if !parent.is_dir() {
            return Err(WalkError::NotDirectory(host.display(&parent.path)));
        }
        let child = open_child(host, parent, name)?;
        walk.push(child);
    }
    Ok(walk)
}

/// The root directory, as the first component of every walk.
pub(crate) fn open_root(host: &Host) -> Result<Opened, WalkError> {
    let root = host
        .root_fd()
        .try_clone_to_owned()
        .map_err(|source| WalkError::Io {
            path: host.display(Path::new("/")),
            source,
        })?;
    let stat = rfs::fstat(&root).map_err(|e| walk_io(host, Path::new("/"), e))?;
    Ok(Opened {
        path: PathBuf::from("/"),
        fd: root,
        stat,
    })
}

fn open_child(host: &Host, parent: &Opened, name: &OsStr) -> Result<Opened, WalkError> {
    let child = open_entry(host, parent, name)?;
    if child.file_type() == FileType::Symlink {
        return Err(WalkError::Symlink {
            path: host.display(&child.path),
            target: link_target(&child),
        });
    }
    Ok(child)
}

/// What a link opened by [`open_entry`] points to, as text.
pub(crate) fn link_target(link: &Opened) -> String {
    rfs::readlinkat(&link.fd, "", Vec::new())
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".into())
}

/// One entry of a held directory, a link itself rather than what it
/// points to.
pub(crate) fn open_entry(host: &Host, parent: &Opened, name: &OsStr) -> Result<Opened, WalkError> {
    let path = parent.path.join(name);
    // One plain name below a held directory: BENEATH keeps it there (under
    // --root the chain starts at the root's handle, so it never leaves the
    // image), and O_PATH|O_NOFOLLOW opens a link itself, refused below.
    let fd = rfs::openat2(
        &parent.fd,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| walk_io(host, &path, e))?;
    let stat = rfs::fstat(&fd).map_err(|e| walk_io(host, &path, e))?;
    Ok(Opened { path, fd, stat })
}

fn walk_io(host: &Host, path: &Path, errno: rustix::io::Errno) -> WalkError {
    WalkError::Io {
        path: host.display(path),
        source: errno.into(),
    }
}

/// What the container does with the path at the end of a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    ReadWrite,
    /// A read-only bind mount: writing is not needed.
    ReadOnly,
}

/// Every component of `path`, from `/` down, with what the subject lacks.
pub fn inspect(host: &Host, path: &Path, subject: &Subject) -> Result<Vec<Component>, WalkError> {
    Ok(assess(&open_components(host, path)?, subject))
}

/// What the subject lacks on each component of a walk: `x` on the
/// parents, `rw` on a file, `rwx` on a directory at the end.
pub fn assess(walk: &[Opened], subject: &Subject) -> Vec<Component> {
    assess_for(walk, subject, Use::ReadWrite)
}

/// Like [`assess`], with only `r` (and `x` on a directory) needed at the
/// end for a read-only use.
pub fn assess_for(walk: &[Opened], subject: &Subject, usage: Use) -> Vec<Component> {
    let last = walk.len().saturating_sub(1);
    walk.iter()
        .enumerate()
        .map(|(index, opened)| component(opened, subject, (index == last).then_some(usage)))
        .collect()
}

fn component(opened: &Opened, subject: &Subject, last: Option<Use>) -> Component {
    let st = &opened.stat;
    let is_dir = opened.is_dir();
    let acl = read_acl(&opened.fd, ACCESS_ACL);
    let write = if last == Some(Use::ReadWrite) {
        WRITE
    } else {
        0
    };
    let needs = match (last, is_dir) {
        (None, _) => EXEC,
        (Some(_), true) => READ | write | EXEC,
        (Some(_), false) => READ | write,
    };
    let mode = st.st_mode & 0o7777;
    let (have, decided_by) = granted(subject, st.st_uid, st.st_gid, mode, acl.as_ref());
    Component {
        path: opened.path.clone(),
        uid: st.st_uid,
        gid: st.st_gid,
        mode,
        is_dir,
        acl,
        needs,
        missing: needs & !have,
        decided_by,
    }
}

/// The ACL xattr of an O_PATH handle, read through /proc/self/fd.
pub fn read_acl(fd: &impl std::os::fd::AsRawFd, name: &str) -> Option<Acl> {
    let mut buf = vec![0u8; 4096];
    let len = rfs::getxattr(proc_fd(fd), name, &mut buf[..]).ok()?;
    Acl::decode(&buf[..len]).ok()
}

pub fn proc_fd(fd: &impl std::os::fd::AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Why a non-root id could rename entries of a directory, if one can.
/// Sticky directories are fine: others may add names there, but not
/// rename or remove root's.
pub fn swappable(uid: u32, gid: u32, mode: u32, acl: Option<&Acl>) -> Option<String> {
    if uid != 0 {
        return Some(format!("is owned by uid {uid}"));
    }
    if mode & 0o1000 != 0 {
        return None;
    }
    if let Some(acl) = acl {
        return acl_writer(acl, gid);
    }
    if mode & 0o002 != 0 {
        return Some(format!(
            "is writable by everyone (mode {mode:04o}) without the sticky bit"
        ));
    }
    (mode & 0o020 != 0)
        .then(|| format!("is writable by group {gid} (mode {mode:04o}) without the sticky bit"))
}

/// The first ACL entry that lets someone other than root write.
fn acl_writer(acl: &Acl, gid: u32) -> Option<String> {
    let mask = acl
        .entries
        .iter()
        .find(|e| e.tag == MASK)
        .map_or(READ | WRITE | EXEC, |e| e.perm);
    acl.entries.iter().find_map(|e| {
        let writes = |limit: u16| e.perm & limit & WRITE != 0;
        match e.tag {
            OTHER if writes(7) => {
                Some("is writable by everyone (ACL other) without the sticky bit".to_owned())
            }
            USER if e.id != 0 && writes(mask) => {
                Some(format!("has an ACL entry letting uid {} write", e.id))
            }
            GROUP_OBJ if writes(mask) => Some(format!(
                "is writable by group {gid} (ACL) without the sticky bit"
            )),
            GROUP if writes(mask) => Some(format!("has an ACL entry letting group {} write", e.id)),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shift::acl::AclEntry;

    fn root_subject() -> Subject {
        Subject {
            inside_uid: 0,
            inside_gid: 0,
            uid_ranges: vec![IdRange::new(100_000, 65536).unwrap()],
            gid_ranges: vec![IdRange::new(100_000, 65536).unwrap()],
        }
    }

    #[test]
    fn container_root_is_other_on_host_root_files() {
        let s = root_subject();
        assert_eq!(granted(&s, 0, 0, 0o755, None), (READ | EXEC, "other bits"));
        assert_eq!(granted(&s, 0, 0, 0o750, None).0, 0);
    }

    #[test]
    fn container_root_overrides_on_mapped_inodes_only() {
        let s = root_subject();
        assert_eq!(granted(&s, 100_000, 100_005, 0o000, None).0, 7);
        assert_eq!(
            granted(&s, 100_000, 0, 0o000, None).0,
            0,
            "group not mapped: no override, owner bits 0"
        );
    }

    #[test]
    fn non_root_container_users_map_through_stacked_ranges() {
        let s = Subject {
            inside_uid: 70_000,
            inside_gid: 70_000,
            uid_ranges: vec![
                IdRange::new(100_000, 65536).unwrap(),
                IdRange::new(500_000, 65536).unwrap(),
            ],
            gid_ranges: vec![IdRange::new(100_000, 131072).unwrap()],
        };
        assert_eq!(s.host_uid(), Some(500_000 + 70_000 - 65536));
        assert_eq!(s.host_gid(), Some(170_000));
        assert_eq!(
            granted(&s, 504_464, 0, 0o600, None),
            (READ | WRITE, "owner bits")
        );
    }

    #[test]
    fn acl_user_entries_are_limited_by_the_mask() {
        let s = root_subject();
        let acl = Acl {
            entries: vec![
                AclEntry {
                    tag: USER_OBJ,
                    perm: 7,
                    id: NO_ID,
                },
                AclEntry {
                    tag: USER,
                    perm: 7,
                    id: 100_000,
                },
                AclEntry {
                    tag: GROUP_OBJ,
                    perm: 5,
                    id: NO_ID,
                },
                AclEntry {
                    tag: MASK,
                    perm: 5,
                    id: NO_ID,
                },
                AclEntry {
                    tag: OTHER,
                    perm: 0,
                    id: NO_ID,
                },
            ],
        };
        assert_eq!(
            granted(&s, 0, 0, 0o750, Some(&acl)),
            (READ | EXEC, "ACL user entry")
        );
    }
}
