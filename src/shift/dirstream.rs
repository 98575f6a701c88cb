//! Reading a directory in large getdents batches that can be resumed at a
//! cookie after the directory was closed and opened again.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, RawDir, SeekFrom};
use rustix::io::Errno;

/// The getdents buffer each worker lends to the directory it reads. One
/// call fills it with a few hundred entries; small buffers cost a syscall
/// (and an htree lookup) per few dozen entries.
pub(crate) const BATCH_BYTES: usize = 32 * 1024;

/// One entry of the current batch: its name in `names` and the cookie that
/// resumes reading just after it.
struct Slot {
    start: usize,
    end: usize,
    cookie: u64,
}

/// An open directory and the entries of its last getdents batch.
pub(crate) struct DirStream {
    fd: OwnedFd,
    /// NUL-terminated names of the batch, back to back.
    names: Vec<u8>,
    slots: Vec<Slot>,
    next: usize,
    end: bool,
}

impl DirStream {
    pub fn new(fd: OwnedFd) -> DirStream {
        DirStream {
            fd,
            names: Vec::new(),
            slots: Vec::new(),
            next: 0,
            end: false,
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Continues reading at `cookie`, as returned with an entry.
    pub fn seek(&mut self, cookie: u64) -> Result<(), Errno> {
        rfs::seek(&self.fd, SeekFrom::Start(cookie))?;
        self.names.clear();
        self.slots.clear();
        self.next = 0;
        self.end = false;
        Ok(())
    }

    /// Moves to the next entry, reading a batch into `buf` when needed;
    /// `Ok(false)` at the end. The entry is then [`DirStream::name`] and
    /// [`DirStream::cookie`].
    pub fn advance(&mut self, buf: &mut Vec<u8>) -> Result<bool, Errno> {
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

    /// Decodes the entries of exactly one getdents call.
    fn fill(&mut self, buf: &mut Vec<u8>) -> Result<(), Errno> {
        self.names.clear();
        self.slots.clear();
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
            self.slots.push(Slot {
                start,
                end: self.names.len(),
                cookie: entry.next_entry_cookie(),
            });
        }
        Ok(())
    }

    /// The current entry's name.
    pub fn name(&self) -> &CStr {
        let slot = &self.slots[self.next];
        CStr::from_bytes_with_nul(&self.names[slot.start..slot.end]).expect("a NUL-terminated name")
    }

    /// Where reading resumes just after the current entry.
    pub fn cookie(&self) -> u64 {
        self.slots[self.next].cookie
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
        let cookie = first.cookie();
        drop(first);
        let mut second = open(dir.path());
        second.seek(cookie).unwrap();
        while second.advance(&mut buf).unwrap() {
            assert!(seen.insert(second.name().to_str().unwrap().to_owned()));
        }
        assert_eq!(seen, expected);
    }
}
