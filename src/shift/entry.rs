//! Shifting one entry: its owner, the ids in its ACLs and capability, and
//! what chown takes away (setuid/setgid bits, `security.capability`).

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::fs::{self as rfs, AtFlags, Gid, Mode, Statx, StatxFlags, Uid, XattrFlags};
use rustix::io::Errno;

use super::acl::{Acl, AclError};
use super::caps::{CapsError, FileCaps};
use super::idmap::Mapper;
use super::marker::{InodeKey, Special};

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
pub(crate) enum EntryErrorKind {
    #[error("{op}: {errno}")]
    Io { op: &'static str, errno: Errno },
    #[error("{xattr}: {source}; left alone")]
    Acl {
        xattr: &'static str,
        source: AclError,
    },
    #[error("security.capability: {0}; left alone")]
    Caps(#[from] CapsError),
    #[error(
        "chown removed security.capability and writing it back failed ({errno}); it was {hex} (restore with setfattr -n security.capability -v 0x{hex})"
    )]
    CapsLost { errno: Errno, hex: String },
    #[error("chown cleared the setuid/setgid bits and restoring mode {mode:04o} failed: {errno}")]
    ModeLost { mode: u32, errno: Errno },
    #[error("{0}")]
    Walk(&'static str),
    #[error("has {links} links, only {inside} inside the tree; left unchanged")]
    LinksOutside { links: u32, inside: u32 },
    #[error(
        "a record of set-id bits or capability to restore names it, but {0}; record ignored, nothing restored"
    )]
    RecordMismatch(&'static str),
    #[error("{what} is not one docker-userns wrote ({why}); ignored and replaced")]
    ForeignState { what: &'static str, why: String },
}

fn io(op: &'static str) -> impl Fn(Errno) -> EntryErrorKind {
    move |errno| EntryErrorKind::Io { op, errno }
}

/// The fields of `statx` the shift needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mode: u32,
    pub(crate) nlink: u32,
    pub(crate) dev: (u32, u32),
    pub(crate) ino: u64,
    /// `None` on kernels before 5.8.
    pub(crate) mnt_id: Option<u64>,
}

pub(crate) const STATX_MASK: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::MODE)
    .union(StatxFlags::NLINK)
    .union(StatxFlags::UID)
    .union(StatxFlags::GID)
    .union(StatxFlags::INO)
    .union(StatxFlags::MNT_ID);

impl Meta {
    pub(crate) fn from_statx(s: &Statx) -> Meta {
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

    pub(crate) fn of(fd: BorrowedFd<'_>) -> Result<Meta, Errno> {
        rfs::statx(fd, c"", AtFlags::EMPTY_PATH, STATX_MASK).map(|s| Meta::from_statx(&s))
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    pub(crate) fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }

    /// Whether `other` is the same inode on the same mount.
    pub(crate) fn same_file(&self, other: &Meta) -> bool {
        (self.dev, self.ino, self.mnt_id) == (other.dev, other.ino, other.mnt_id)
    }
}

/// How to reach the entry being shifted.
pub(crate) enum Target<'a> {
    /// An open directory: the tree's root or a subdirectory.
    Dir(BorrowedFd<'a>),
    /// Anything else: `fd` is an `O_PATH` fd on it, which every change and
    /// every value read goes through (the xattr calls through its
    /// /proc/self/fd link, as xattr syscalls refuse `O_PATH` fds), so that
    /// a name swapped meanwhile cannot redirect them. Only the list of
    /// xattr names is read by `name`, relative to the current directory
    /// (the walker makes the entry's directory its thread's cwd): it costs
    /// no /proc lookup for the many entries without xattrs, and is only a
    /// hint of which values to read through `fd`.
    Name { name: &'a CStr, fd: BorrowedFd<'a> },
}

/// The path that reaches the inode of an `O_PATH` fd.
fn proc_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
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
                Target::Name { fd, .. } => rfs::getxattr(proc_path(*fd), xattr, &mut buf[..]),
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
            Target::Name { fd, .. } => {
                rfs::setxattr(proc_path(*fd), xattr, value, XattrFlags::empty())
            }
        }
    }

    fn chown(&self, uid: Option<u32>, gid: Option<u32>) -> Result<(), Errno> {
        let (uid, gid) = (uid.map(Uid::from_raw), gid.map(Gid::from_raw));
        match self {
            Target::Dir(fd) => rfs::fchown(fd, uid, gid),
            Target::Name { fd, .. } => rfs::chownat(fd, c"", uid, gid, AtFlags::EMPTY_PATH),
        }
    }

    /// Sets the mode of the inode described by `meta`. A non-directory is
    /// never opened for that (it may be a FIFO or a device): it is changed
    /// through the /proc/self/fd link of its `O_PATH` fd, which fchmodat
    /// follows to the inode; a symlink is refused, as that would follow it.
    fn chmod(&self, mode: u32, meta: &Meta) -> Result<(), Errno> {
        let mode = Mode::from_raw_mode(mode);
        match self {
            Target::Dir(fd) => rfs::fchmod(fd, mode),
            Target::Name { fd, .. } => {
                if meta.is_symlink() {
                    return Err(Errno::LOOP);
                }
                rfs::chmodat(rfs::CWD, proc_path(*fd).as_str(), mode, AtFlags::empty())
            }
        }
    }
}

/// The record of what chown strips, shared by the workers. Each record
/// must be on disk before its chown; one fdatasync makes every record
/// written before it durable, so a worker whose record an fdatasync begun
/// after its write already covered does not sync again (group commit):
/// with many workers, one sync serves all that wait on it.
pub(crate) struct SpecialsLog {
    file: std::fs::File,
    /// Records written so far; the lock orders the appends.
    written: std::sync::Mutex<u64>,
    /// Records known durable; the lock lets one fdatasync run at a time.
    durable: std::sync::Mutex<u64>,
}

impl SpecialsLog {
    pub(crate) fn new(file: std::fs::File) -> SpecialsLog {
        SpecialsLog {
            file,
            written: std::sync::Mutex::new(0),
            durable: std::sync::Mutex::new(0),
        }
    }

    /// Appends `line` and returns once it is on disk.
    fn append_durably(&self, line: &[u8]) -> std::io::Result<()> {
        let mine = {
            let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            std::io::Write::write_all(&mut &self.file, line)?;
            *written += 1;
            *written
        };
        let mut durable = self.durable.lock().unwrap_or_else(|e| e.into_inner());
        if *durable >= mine {
            return Ok(());
        }
        // Every record counted now was written before this sync starts.
        let covered = *self.written.lock().unwrap_or_else(|e| e.into_inner());
        self.file.sync_data()?;
        *durable = covered;
        Ok(())
    }
}

/// What the shift found for one entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Something was (or, in a dry run, would be) rewritten.
    pub(crate) changed: bool,
    /// The owner uid (gid) is outside every map.
    pub(crate) uid_alone: bool,
    pub(crate) gid_alone: bool,
    /// A record of what to restore named this entry and did not match it.
    pub(crate) record_ignored: Option<&'static str>,
}

/// The maps and whether to write anything.
pub(crate) struct Shifter {
    pub(crate) uid: Mapper,
    pub(crate) gid: Mapper,
    pub(crate) dry_run: bool,
    /// Where entries chown would strip are recorded before the chown.
    pub(crate) specials_log: Option<SpecialsLog>,
    /// Entries an interrupted run recorded, to finish on this one.
    pub(crate) specials_pending: std::collections::HashMap<InodeKey, Special>,
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

/// What [`Shifter::prepare`] found to do for one entry.
pub(crate) enum Prepared {
    /// Nothing to write (or a dry run): the entry is done.
    Done(Seen),
    /// Writes to make, with [`Shifter::apply`] once their record, if
    /// any, is durable.
    Change(Change),
}

/// The writes one entry needs, decided from its status and xattrs.
pub(crate) struct Change {
    uid: Option<u32>,
    gid: Option<u32>,
    acls: Vec<(&'static CStr, Vec<u8>)>,
    caps: Option<CapsFix>,
    /// What chown will strip, to record before it.
    record: Option<(InodeKey, Special)>,
    seen: Seen,
}

impl Change {
    /// Whether chown will strip something that must be recorded first.
    pub(crate) fn needs_record(&self) -> bool {
        self.record.is_some()
    }

    /// The line recording what chown will strip, when it strips anything.
    pub(crate) fn record_line(&self) -> Option<String> {
        let (key, special) = self.record.as_ref()?;
        Some(super::marker::special_line(*key, special))
    }
}

impl Shifter {
    /// Shifts one entry described by `meta`. Nothing is written when
    /// nothing changes, or in a dry run.
    pub(crate) fn shift(
        &self,
        target: &Target<'_>,
        meta: &Meta,
        scratch: &mut Scratch,
    ) -> Result<Seen, EntryErrorKind> {
        match self.prepare(target, meta, scratch)? {
            Prepared::Done(seen) => Ok(seen),
            Prepared::Change(change) => {
                if let Some(line) = change.record_line() {
                    self.record_specials(line.as_bytes())?;
                }
                self.apply(target, meta, change)
            }
        }
    }

    /// Reads what the shift of one entry depends on and decides what to
    /// write; finishes an interrupted run's restore on the way.
    pub(crate) fn prepare(
        &self,
        target: &Target<'_>,
        meta: &Meta,
        scratch: &mut Scratch,
    ) -> Result<Prepared, EntryErrorKind> {
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
        let mut record_ignored = None;
        if !owner_changes && !self.dry_run {
            if let Some(special) = self.specials_pending.get(&key) {
                record_ignored = self.finish_special(target, meta, caps.is_some(), special)?;
            }
        }
        let seen = Seen {
            changed: owner_changes || !acls.is_empty() || caps.as_ref().is_some_and(|c| c.changed),
            uid_alone: uid.is_none(),
            gid_alone: gid.is_none(),
            record_ignored,
        };
        if !seen.changed || self.dry_run {
            return Ok(Prepared::Done(seen));
        }
        let strips = !meta.is_symlink()
            && (meta.mode & SETID_BITS != 0 || (caps.is_some() && !meta.is_dir()));
        let record = (owner_changes && strips && self.specials_log.is_some()).then(|| {
            let special = Special {
                mode: meta.mode,
                uid: uid.unwrap_or(meta.uid),
                gid: gid.unwrap_or(meta.gid),
                caps: caps.as_ref().map(|c| c.shifted.clone()),
            };
            (key, special)
        });
        Ok(Prepared::Change(Change {
            uid,
            gid,
            acls,
            caps,
            record,
            seen,
        }))
    }

    /// Makes the writes of `change`, whose record (if it has one) must
    /// already be durable.
    pub(crate) fn apply(
        &self,
        target: &Target<'_>,
        meta: &Meta,
        change: Change,
    ) -> Result<Seen, EntryErrorKind> {
        let Change {
            uid,
            gid,
            acls,
            caps,
            seen,
            ..
        } = change;
        let owner_changes = uid.is_some() || gid.is_some();
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

    /// Records, durably, what chown is about to strip from one entry or
    /// more: `lines` are their [`Change::record_line`]s.
    pub(crate) fn record_specials(&self, lines: &[u8]) -> Result<(), EntryErrorKind> {
        let Some(log) = &self.specials_log else {
            return Ok(());
        };
        log.append_durably(lines).map_err(|e| EntryErrorKind::Io {
            op: "recording set-id bits and capability before chown",
            errno: Errno::from_io_error(&e).unwrap_or(Errno::IO),
        })
    }

    /// Puts back what a crash between chown and restore left stripped,
    /// once the inode is seen to be in the state that crash leaves: the
    /// owner the shift gives, the same kind and permissions, set-id bits
    /// at most those recorded. `Ok(Some(why))` when it is not: nothing is
    /// restored.
    fn finish_special(
        &self,
        target: &Target<'_>,
        meta: &Meta,
        has_caps: bool,
        special: &Special,
    ) -> Result<Option<&'static str>, EntryErrorKind> {
        if let Some(why) = self.mismatch(meta, special) {
            return Ok(Some(why));
        }
        let Special { mode, caps, .. } = special;
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
                .map_err(|errno| EntryErrorKind::ModeLost {
                    mode: *mode & 0o7777,
                    errno,
                })?;
        }
        Ok(None)
    }

    /// Why `special` cannot be what chown stripped from this inode.
    fn mismatch(&self, meta: &Meta, special: &Special) -> Option<&'static str> {
        if (meta.uid, meta.gid) != (special.uid, special.gid) {
            return Some("its owner is not the one the shift gave it");
        }
        if !self.uid.is_target(special.uid) && !self.gid.is_target(special.gid) {
            return Some("its owner is not one the maps give");
        }
        if meta.mode & S_IFMT != special.mode & S_IFMT || meta.is_symlink() {
            return Some("it is another kind of file");
        }
        if meta.mode & 0o1777 != special.mode & 0o1777 {
            return Some("its permissions are not those recorded");
        }
        if meta.mode & SETID_BITS & !special.mode != 0 {
            return Some("it has set-id bits the record has not");
        }
        if special.caps.is_some() && meta.is_dir() {
            return Some("it is a directory, which chown leaves its capability");
        }
        None
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shift::IdMap;

    fn shifter(map: &str) -> Shifter {
        let maps = [IdMap::parse(map).unwrap()];
        Shifter {
            uid: Mapper::new(&maps),
            gid: Mapper::new(&maps),
            dry_run: false,
            specials_log: None,
            specials_pending: Default::default(),
        }
    }

    const BINARY: Meta = Meta {
        uid: 100000,
        gid: 100004,
        mode: 0o100755,
        nlink: 1,
        dev: (8, 1),
        ino: 42,
        mnt_id: None,
    };

    const RECORD: Special = Special {
        mode: 0o104755,
        uid: 100000,
        gid: 100004,
        caps: None,
    };

    #[test]
    fn a_chown_that_strips_set_id_bits_is_prepared_with_its_record_and_nothing_written() {
        use std::os::fd::AsFd;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("su");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o4755)).unwrap();
        let flags = rfs::OFlags::PATH | rfs::OFlags::NOFOLLOW | rfs::OFlags::CLOEXEC;
        let fd = rfs::open(&path, flags, Mode::empty()).unwrap();
        let meta = Meta::of(fd.as_fd()).unwrap();
        let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        let target = Target::Name {
            name: &name,
            fd: fd.as_fd(),
        };
        let mut shifter = shifter("0:100000:65536");
        let Ok(Prepared::Change(change)) = shifter.prepare(&target, &meta, &mut Scratch::default())
        else {
            panic!("an owner in the map changes");
        };
        // Without a record to keep, nothing waits for a sync.
        assert!(!change.needs_record());
        shifter.specials_log = Some(SpecialsLog::new(tempfile::tempfile().unwrap()));
        let Ok(Prepared::Change(change)) = shifter.prepare(&target, &meta, &mut Scratch::default())
        else {
            panic!("an owner in the map changes");
        };
        assert!(change.needs_record());
        let (dev, ino) = (meta.dev, meta.ino);
        let (uid, gid) = (meta.uid + 100000, meta.gid + 100000);
        assert_eq!(
            change.record_line().unwrap(),
            format!("{} {} {ino} 104755 {uid} {gid} -\n", dev.0, dev.1)
        );
        assert_eq!(Meta::of(fd.as_fd()).unwrap(), meta);
    }

    #[test]
    fn a_record_applies_to_the_state_a_crash_after_chown_leaves() {
        let shifter = shifter("0:100000:65536");
        assert_eq!(shifter.mismatch(&BINARY, &RECORD), None);
        let caps = Special {
            caps: Some(vec![1]),
            ..RECORD
        };
        assert_eq!(shifter.mismatch(&BINARY, &caps), None);
    }

    #[test]
    fn a_record_that_does_not_match_its_inode_is_refused() {
        let shifter = shifter("0:100000:65536");
        let root_owned = Meta {
            uid: 0,
            gid: 0,
            ..BINARY
        };
        let forged = Special {
            uid: 0,
            gid: 0,
            ..RECORD
        };
        // A root-owned binary: no owner the maps give.
        assert!(shifter.mismatch(&root_owned, &forged).is_some());
        // Another owner than the record says.
        assert!(shifter.mismatch(&root_owned, &RECORD).is_some());
        // Another kind of file, other permissions.
        let dir = Meta {
            mode: 0o040755,
            ..BINARY
        };
        assert!(shifter.mismatch(&dir, &RECORD).is_some());
        let writable = Meta {
            mode: 0o100777,
            ..BINARY
        };
        assert!(shifter.mismatch(&writable, &RECORD).is_some());
        // Set-id bits the record has not.
        let setgid = Meta {
            mode: 0o102755,
            ..BINARY
        };
        assert!(shifter.mismatch(&setgid, &RECORD).is_some());
    }
}
