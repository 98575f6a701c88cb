//! Shifting one entry: its owner, the ids in its ACLs and capability, and
//! what chown takes away (setuid/setgid bits, `security.capability`).

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::fs::{self as rfs, AtFlags, Gid, Mode, OFlags, Statx, StatxFlags, Uid, XattrFlags};
use rustix::io::Errno;

use super::acl::{Acl, AclError};
use super::caps::{CapsError, FileCaps};
use super::idmap::Mapper;

const ACL_ACCESS: &CStr = c"system.posix_acl_access";
const ACL_DEFAULT: &CStr = c"system.posix_acl_default";
const CAPS: &CStr = c"security.capability";
/// The xattrs that hold ids or that chown removes, with their names.
const KNOWN: [(&CStr, &str); 3] = [
    (ACL_ACCESS, "system.posix_acl_access"),
    (ACL_DEFAULT, "system.posix_acl_default"),
    (CAPS, "security.capability"),
];

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
const SETID_BITS: u32 = 0o6000;

/// What went wrong with one entry; the walk goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryErrorKind {
    #[error("{op}: {errno}")]
    Io { op: &'static str, errno: Errno },
    #[error("{xattr}: {source}; left alone")]
    Acl {
        xattr: &'static str,
        source: AclError,
    },
    #[error("security.capability: {0}; left alone")]
    Caps(#[from] CapsError),
    #[error("replaced by another file during the walk; left alone")]
    Replaced,
    #[error(
        "chown removed security.capability and writing it back failed ({errno}); it was {hex} (restore with setfattr -n security.capability -v 0x{hex})"
    )]
    CapsLost { errno: Errno, hex: String },
    #[error("chown cleared the setuid/setgid bits and restoring mode {mode:04o} failed: {errno}")]
    ModeLost { mode: u32, errno: Errno },
    #[error("{0}")]
    Walk(&'static str),
}

fn io(op: &'static str) -> impl Fn(Errno) -> EntryErrorKind {
    move |errno| EntryErrorKind::Io { op, errno }
}

/// The fields of `statx` the shift needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub nlink: u32,
    pub dev: (u32, u32),
    pub ino: u64,
    /// `None` on kernels before 5.8.
    pub mnt_id: Option<u64>,
}

pub(crate) const STATX_MASK: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::MODE)
    .union(StatxFlags::NLINK)
    .union(StatxFlags::UID)
    .union(StatxFlags::GID)
    .union(StatxFlags::INO)
    .union(StatxFlags::MNT_ID);

impl Meta {
    pub fn from_statx(s: &Statx) -> Meta {
        Meta {
            uid: s.stx_uid,
            gid: s.stx_gid,
            mode: u32::from(s.stx_mode),
            nlink: s.stx_nlink,
            dev: (s.stx_dev_major, s.stx_dev_minor),
            ino: s.stx_ino,
            mnt_id: (s.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(s.stx_mnt_id),
        }
    }

    /// Of `name` in `dir`, never following a symlink.
    pub fn at(dir: BorrowedFd<'_>, name: &CStr) -> Result<Meta, Errno> {
        rfs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, STATX_MASK).map(|s| Meta::from_statx(&s))
    }

    pub fn of(fd: BorrowedFd<'_>) -> Result<Meta, Errno> {
        rfs::statx(fd, c"", AtFlags::EMPTY_PATH, STATX_MASK).map(|s| Meta::from_statx(&s))
    }

    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }

    /// Whether `other` is the same inode on the same mount.
    pub fn same_file(&self, other: &Meta) -> bool {
        (self.dev, self.ino, self.mnt_id) == (other.dev, other.ino, other.mnt_id)
    }
}

/// How to reach the entry being shifted.
pub(crate) enum Target<'a> {
    /// An open directory: the tree's root or a subdirectory.
    Dir(BorrowedFd<'a>),
    /// Anything else, by name in `dir`. The xattr calls have no `*at` form,
    /// so they take `name` relative to the current directory: the walker
    /// makes `dir` its thread's cwd before shifting anything but a symlink
    /// (which gets no xattr call).
    Name { dir: BorrowedFd<'a>, name: &'a CStr },
}

impl Target<'_> {
    fn list_xattrs<'b>(&self, buf: &'b mut Vec<u8>) -> Result<&'b [u8], Errno> {
        loop {
            let got = match self {
                Target::Dir(fd) => rfs::flistxattr(fd, &mut buf[..]),
                Target::Name { name, .. } => rfs::llistxattr(*name, &mut buf[..]),
            };
            match got {
                Ok(len) => return Ok(&buf[..len]),
                // Filesystems without xattrs have nothing to shift or keep.
                Err(Errno::NOTSUP) => return Ok(&[]),
                Err(Errno::RANGE) => buf.resize(buf.len() * 2, 0),
                Err(e) => return Err(e),
            }
        }
    }

    fn get_xattr<'b>(&self, xattr: &CStr, buf: &'b mut Vec<u8>) -> Result<&'b [u8], Errno> {
        loop {
            let got = match self {
                Target::Dir(fd) => rfs::fgetxattr(fd, xattr, &mut buf[..]),
                Target::Name { name, .. } => rfs::lgetxattr(*name, xattr, &mut buf[..]),
            };
            match got {
                Ok(len) => return Ok(&buf[..len]),
                Err(Errno::RANGE) => buf.resize(buf.len() * 2, 0),
                Err(e) => return Err(e),
            }
        }
    }

    fn set_xattr(&self, xattr: &CStr, value: &[u8]) -> Result<(), Errno> {
        match self {
            Target::Dir(fd) => rfs::fsetxattr(fd, xattr, value, XattrFlags::empty()),
            Target::Name { name, .. } => rfs::lsetxattr(*name, xattr, value, XattrFlags::empty()),
        }
    }

    fn chown(&self, uid: Option<u32>, gid: Option<u32>) -> Result<(), Errno> {
        let (uid, gid) = (uid.map(Uid::from_raw), gid.map(Gid::from_raw));
        match self {
            Target::Dir(fd) => rfs::fchown(fd, uid, gid),
            Target::Name { dir, name } => {
                rfs::chownat(dir, *name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            }
        }
    }

    /// Sets the mode of the inode described by `meta`. fchmodat follows
    /// symlinks, so a non-directory is pinned with an `O_PATH` fd first
    /// (never opened for reading: it may be a FIFO or a device) and
    /// changed through its /proc/self/fd link.
    fn chmod(&self, mode: u32, meta: &Meta) -> Result<(), Errno> {
        let mode = Mode::from_raw_mode(mode);
        match self {
            Target::Dir(fd) => rfs::fchmod(fd, mode),
            Target::Name { dir, name } => {
                let fd = rfs::openat(
                    dir,
                    *name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let now = Meta::of(fd.as_fd())?;
                if !now.same_file(meta) || now.is_symlink() {
                    return Err(Errno::STALE);
                }
                let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
                rfs::chmodat(rfs::CWD, link.as_str(), mode, AtFlags::empty())
            }
        }
    }
}

/// What the shift found for one entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Something was (or, in a dry run, would be) rewritten.
    pub changed: bool,
    /// The owner uid (gid) is outside every map.
    pub uid_alone: bool,
    pub gid_alone: bool,
}

/// The maps and whether to write anything.
pub(crate) struct Shifter {
    pub uid: Mapper,
    pub gid: Mapper,
    pub dry_run: bool,
    /// Where entries chown would strip are recorded before the chown.
    pub specials_log: Option<std::sync::Mutex<std::fs::File>>,
    /// Entries an interrupted run recorded, to finish on this one.
    pub specials_pending:
        std::collections::HashMap<super::marker::InodeKey, super::marker::Special>,
}

/// Buffers reused from one entry to the next.
pub(crate) struct Scratch {
    names: Vec<u8>,
    value: Vec<u8>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            names: vec![0; 1024],
            value: vec![0; 256],
        }
    }
}

/// The capability as read, and as it must be written back.
struct CapsFix {
    original: Vec<u8>,
    shifted: Vec<u8>,
    changed: bool,
}

impl Shifter {
    /// Shifts one entry described by `meta`. Nothing is written when
    /// nothing changes, or in a dry run.
    pub fn shift(
        &self,
        target: &Target<'_>,
        meta: &Meta,
        scratch: &mut Scratch,
    ) -> Result<Seen, EntryErrorKind> {
        let uid = self.uid.map(meta.uid);
        let gid = self.gid.map(meta.gid);
        let owner_changes = uid.is_some() || gid.is_some();
        // A symlink cannot carry an ACL, and a capability on one means
        // nothing: exec follows the link.
        let (acls, caps) = if meta.is_symlink() {
            (Vec::new(), None)
        } else {
            self.read_xattrs(target, scratch)?
        };
        let key = (meta.dev.0, meta.dev.1, meta.ino);
        if !owner_changes && !self.dry_run {
            if let Some(special) = self.specials_pending.get(&key) {
                self.finish_special(target, meta, caps.is_some(), special)?;
            }
        }
        let seen = Seen {
            changed: owner_changes || !acls.is_empty() || caps.as_ref().is_some_and(|c| c.changed),
            uid_alone: uid.is_none(),
            gid_alone: gid.is_none(),
        };
        if !seen.changed || self.dry_run {
            return Ok(seen);
        }
        let strips = !meta.is_symlink()
            && (meta.mode & SETID_BITS != 0 || (caps.is_some() && !meta.is_dir()));
        if owner_changes && strips {
            self.record_special(
                key,
                (meta.mode & 0o7777, caps.as_ref().map(|c| c.shifted.clone())),
            )?;
        }
        crate::failpoint::hit("shift.entry");
        if owner_changes {
            target.chown(uid, gid).map_err(io("chown"))?;
        }
        crate::failpoint::hit("shift.after_chown");
        // Once chown has run, every later step is attempted even when one
        // fails, so a failure loses as little as possible.
        let mut first_error = None;
        for (xattr, value) in &acls {
            if let Err(errno) = target.set_xattr(xattr, value) {
                first_error.get_or_insert(EntryErrorKind::Io {
                    op: "writing the shifted ACL",
                    errno,
                });
            }
        }
        // chown drops the capability of non-directories; write it back.
        if let Some(caps) = caps.filter(|c| c.changed || (owner_changes && !meta.is_dir())) {
            if let Err(errno) = target.set_xattr(CAPS, &caps.shifted) {
                first_error.get_or_insert(EntryErrorKind::CapsLost {
                    errno,
                    hex: caps.original.iter().map(|b| format!("{b:02x}")).collect(),
                });
            }
        }
        if owner_changes && meta.mode & SETID_BITS != 0 && !meta.is_symlink() {
            let mode = meta.mode & 0o7777;
            if let Err(errno) = target.chmod(mode, meta) {
                first_error.get_or_insert(EntryErrorKind::ModeLost { mode, errno });
            }
        }
        first_error.map_or(Ok(seen), Err)
    }

    /// Records, durably, what chown is about to strip from an entry.
    fn record_special(
        &self,
        key: super::marker::InodeKey,
        special: super::marker::Special,
    ) -> Result<(), EntryErrorKind> {
        let Some(log) = &self.specials_log else {
            return Ok(());
        };
        let mut file = log.lock().unwrap_or_else(|e| e.into_inner());
        let line = super::marker::special_line(key, &special);
        std::io::Write::write_all(&mut *file, line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| EntryErrorKind::Io {
                op: "recording set-id bits and capability before chown",
                errno: Errno::from_io_error(&e).unwrap_or(Errno::IO),
            })
    }

    /// Puts back what a crash between chown and restore left stripped.
    fn finish_special(
        &self,
        target: &Target<'_>,
        meta: &Meta,
        has_caps: bool,
        (mode, caps): &super::marker::Special,
    ) -> Result<(), EntryErrorKind> {
        if let (Some(caps), false) = (caps, has_caps) {
            target
                .set_xattr(CAPS, caps)
                .map_err(|errno| EntryErrorKind::CapsLost {
                    errno,
                    hex: caps.iter().map(|b| format!("{b:02x}")).collect(),
                })?;
        }
        if meta.mode & SETID_BITS != mode & SETID_BITS {
            target
                .chmod(*mode, meta)
                .map_err(|errno| EntryErrorKind::ModeLost { mode: *mode, errno })?;
        }
        Ok(())
    }

    /// The ACLs whose ids change, shifted, and the capability, if any.
    #[allow(clippy::type_complexity)]
    fn read_xattrs(
        &self,
        target: &Target<'_>,
        scratch: &mut Scratch,
    ) -> Result<(Vec<(&'static CStr, Vec<u8>)>, Option<CapsFix>), EntryErrorKind> {
        let mut acls = Vec::new();
        let mut caps = None;
        let names = target
            .list_xattrs(&mut scratch.names)
            .map_err(io("listing xattrs"))?;
        for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let Some(&(xattr, label)) = KNOWN.iter().find(|(k, _)| k.to_bytes() == name) else {
                continue;
            };
            let value = match target.get_xattr(xattr, &mut scratch.value) {
                Ok(value) => value,
                // Listed a moment ago and gone now: nothing to shift.
                Err(Errno::NODATA) => continue,
                Err(errno) => {
                    return Err(EntryErrorKind::Io {
                        op: "reading xattrs",
                        errno,
                    });
                }
            };
            if xattr == CAPS {
                let mut decoded = FileCaps::decode(value)?;
                let changed = decoded.shift(|id| self.uid.map(id));
                caps = Some(CapsFix {
                    original: value.to_vec(),
                    shifted: decoded.encode(),
                    changed,
                });
            } else {
                let bad = |source| EntryErrorKind::Acl {
                    xattr: label,
                    source,
                };
                let mut acl = Acl::decode(value).map_err(bad)?;
                if acl
                    .shift(|u| self.uid.map(u), |g| self.gid.map(g))
                    .map_err(bad)?
                {
                    acls.push((xattr, acl.encode()));
                }
            }
        }
        Ok((acls, caps))
    }
}
