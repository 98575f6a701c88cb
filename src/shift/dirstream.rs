//! Reading a directory in large getdents batches, each handed out in
//! inode order, that can be resumed where it stopped after the directory
//! was closed and opened again.
//!
//! Inode order is for a cold cache: the inodes of a batch are then read
//! from the inode table front to back, so the filesystem's inode table
//! readahead serves most of them instead of one seek each.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, RawDir, SeekFrom};
use rustix::io::Errno;

/// The getdents buffer each worker lends to the directory it reads. One
/// call fills it with a few hundred entries; small buffers cost a syscall
/// (and an htree lookup) per few dozen entries.
pub(crate) const BATCH_BYTES: usize = 32 * 1024;

/// One entry of the current batch: its inode and its name in `names`.
struct Slot {
    ino: u64,
    start: u32,
    end: u32,
}

impl Slot {
    fn name<'a>(&self, names: &'a [u8]) -> &'a [u8] {
        &names[self.start as usize..self.end as usize]
    }
}

/// An open directory and the entries of its last getdents batch.
pub(crate) struct DirStream {
    fd: OwnedFd,
    /// NUL-terminated names of the batch, back to back.
    names: Vec<u8>,
    /// The batch, sorted by inode (then name, so a re-read sorts alike).
    slots: Vec<Slot>,
    next: usize,
    end: bool,
    /// The cookie the current batch was read from, and the one the next
    /// batch is read from.
    batch_start: u64,
    batch_end: u64,
}

/// Where a [`DirStream`] stands: enough to resume it on a re-opened fd
/// without keeping its batch. The batch is read again from `batch_start`
/// and must come back the same (`digest`) for `next` to mean the same
/// entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Position {
    batch_start: u64,
    next: usize,
    digest: u64,
}

impl DirStream {
    pub(crate) fn new(fd: OwnedFd) -> DirStream {
        DirStream {
            fd,
            names: Vec::new(),
            slots: Vec::new(),
            next: 0,
            end: false,
            batch_start: 0,
            batch_end: 0,
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Where the current entry is.
    pub(crate) fn position(&self) -> Position {
        Position {
            batch_start: self.batch_start,
            next: self.next,
            digest: self.digest(),
        }
    }

    /// Makes the entry at `at` (of a stream on the same directory) the
    /// current one again, reading its batch with `buf`. `Ok(false)` when
    /// the batch is no longer what it was: the directory changed.
    pub(crate) fn restore(&mut self, at: Position, buf: &mut Vec<u8>) -> Result<bool, Errno> {
        rfs::seek(&self.fd, SeekFrom::Start(at.batch_start))?;
        self.batch_end = at.batch_start;
        self.end = false;
        self.fill(buf)?;
        self.next = at.next;
        Ok(self.digest() == at.digest && at.next < self.slots.len())
    }

    /// A hash of the batch's inodes and names.
    fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.names.hash(&mut hasher);
        for slot in &self.slots {
            slot.ino.hash(&mut hasher);
        }
        hasher.finish()
    }

    /// Moves to the next entry, reading a batch into `buf` when needed;
    /// `Ok(false)` at the end. The entry is then [`DirStream::name`], at
    /// [`DirStream::position`].
    pub(crate) fn advance(&mut self, buf: &mut Vec<u8>) -> Result<bool, Errno> {
        self.next += 1;
        if self.next < self.slots.len() {
            return Ok(true);
        }
        if self.end {
            return Ok(false);
        }
        self.fill(buf)?;
        self.next = 0;
        Ok(!self.slots.is_empty())
    }

    /// Decodes the entries of exactly one getdents call, in inode order.
    fn fill(&mut self, buf: &mut Vec<u8>) -> Result<(), Errno> {
        self.names.clear();
        self.slots.clear();
        self.batch_start = self.batch_end;
        buf.clear();
        buf.reserve(BATCH_BYTES);
        let spare: &mut [MaybeUninit<u8>] = buf.spare_capacity_mut();
        let mut raw = RawDir::new(&self.fd, spare);
        let mut read_once = false;
        // RawDir calls getdents again whenever its buffer is used up;
        // stopping there keeps one batch at a time in memory.
        while !(read_once && raw.is_buffer_empty()) {
            let Some(entry) = raw.next() else {
                self.end = true;
                break;
            };
            let entry = entry?;
            read_once = true;
            let name = entry.file_name().to_bytes_with_nul();
            let start = self.names.len();
            self.names.extend_from_slice(name);
            // Names fit: the batch is far smaller than 4 GiB.
            self.slots.push(Slot {
                ino: entry.ino(),
                start: start as u32,
                end: self.names.len() as u32,
            });
            self.batch_end = entry.next_entry_cookie();
        }
        let names = &self.names;
        self.slots
            .sort_unstable_by(|a, b| (a.ino, a.name(names)).cmp(&(b.ino, b.name(names))));
        Ok(())
    }

    /// The current entry's name.
    pub(crate) fn name(&self) -> &CStr {
        let slot = &self.slots[self.next];
        CStr::from_bytes_with_nul(slot.name(&self.names)).expect("a NUL-terminated name")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{Mode, OFlags};
    use std::collections::BTreeSet;

    fn open(path: &std::path::Path) -> DirStream {
        DirStream::new(rfs::open(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap())
    }

    fn names(n: usize) -> (tempfile::TempDir, BTreeSet<String>) {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = BTreeSet::from([".".to_owned(), "..".to_owned()]);
        for i in 0..n {
            // Long names make several batches.
            let name = format!("{i:0>200}");
            std::fs::write(dir.path().join(&name), "").unwrap();
            expected.insert(name);
        }
        (dir, expected)
    }

    #[test]
    fn reads_every_entry_across_batches() {
        let (dir, expected) = names(1000);
        let mut stream = open(dir.path());
        let mut buf = Vec::new();
        let mut seen = BTreeSet::new();
        while stream.advance(&mut buf).unwrap() {
            seen.insert(stream.name().to_str().unwrap().to_owned());
        }
        assert_eq!(seen, expected);
        assert!(!stream.advance(&mut buf).unwrap());
    }

    #[test]
    fn a_reopened_stream_resumes_after_the_cookie() {
        let (dir, expected) = names(700);
        let mut buf = Vec::new();
        let mut first = open(dir.path());
        let mut seen = BTreeSet::new();
        for _ in 0..450 {
            assert!(first.advance(&mut buf).unwrap());
            seen.insert(first.name().to_str().unwrap().to_owned());
        }
        let at = first.position();
        drop(first);
        let mut second = open(dir.path());
        assert!(second.restore(at, &mut buf).unwrap());
        while second.advance(&mut buf).unwrap() {
            assert!(seen.insert(second.name().to_str().unwrap().to_owned()));
        }
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_batch_comes_in_inode_order() {
        let (dir, _) = names(50);
        let mut stream = open(dir.path());
        let mut buf = Vec::new();
        let mut inodes = Vec::new();
        while stream.advance(&mut buf).unwrap() {
            inodes.push(stream.slots[stream.next].ino);
        }
        assert!(inodes.is_sorted());
    }

    #[test]
    fn a_changed_batch_is_not_resumed() {
        let (dir, _) = names(10);
        let mut buf = Vec::new();
        let mut first = open(dir.path());
        assert!(first.advance(&mut buf).unwrap());
        let at = first.position();
        std::fs::write(dir.path().join("new"), "").unwrap();
        let mut second = open(dir.path());
        assert!(!second.restore(at, &mut buf).unwrap());
    }
}
