//! How far a running shift is: entries done, their rate, and the time
//! left, estimated from the inodes the tree's filesystem has in use.
//!
//! The total is not counted first: on a cold cache a counting walk reads
//! the same inodes and directories as the shift and would nearly double
//! it. One `statvfs` gives the filesystem's used inodes instead: about the
//! tree's entries when the tree is a whole filesystem (a data root on its
//! own volume), an upper bound otherwise, and then shown as one.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use rustix::fs::{self as rfs, Mode, OFlags};

use super::entry::Meta;

/// A snapshot of a running shift, handed to a progress watcher a few times
/// a second and once more when the walk ends (`finished`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Entries done so far (each name of a hard-linked inode counts).
    pub(crate) entries: u64,
    pub(crate) elapsed: Duration,
    pub(crate) estimate: Option<Estimate>,
    pub(crate) finished: bool,
}

/// The expected number of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub(crate) total: u64,
    /// The tree is part of a filesystem: `total` counts all of its inodes.
    pub(crate) upper_bound: bool,
}

impl Progress {
    /// Entries per second so far.
    pub(crate) fn rate(&self) -> f64 {
        self.entries as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }

    /// The time left at the rate so far; `None` without an estimate, before
    /// any entry, or once the estimate is passed.
    pub(crate) fn eta(&self) -> Option<Duration> {
        let total = self.estimate?.total;
        let rate = self.rate();
        if self.entries == 0 || self.entries > total || rate <= 0.0 {
            return None;
        }
        Some(Duration::from_secs_f64(
            (total - self.entries) as f64 / rate,
        ))
    }

    /// One line for a terminal, e.g. `12000 of ~150000 entries, 30000
    /// entries/s, 0:04 left`; `at most 0:04 left` for an upper bound.
    pub(crate) fn line(&self) -> String {
        let mut line = match self.estimate {
            Some(Estimate {
                total,
                upper_bound: false,
            }) => format!("{} of ~{total} entries", self.entries),
            Some(Estimate { total, .. }) => format!("{} of at most {total} entries", self.entries),
            None => format!("{} entries", self.entries),
        };
        line.push_str(&format!(", {:.0} entries/s", self.rate()));
        if let (Some(eta), false) = (self.eta(), self.finished) {
            let bound = if self.estimate.is_some_and(|e| e.upper_bound) {
                "at most "
            } else {
                ""
            };
            let secs = eta.as_secs();
            line.push_str(&format!(", {bound}{}:{:02} left", secs / 60, secs % 60));
        }
        line
    }
}

/// The entries to expect below `root` (whose status is `meta`): the used
/// inodes of its filesystem, exact-ish when `root` is that filesystem's
/// root (its `..` is on another device), else an upper bound. `None` when
/// the filesystem does not count inodes (btrfs, for one, reports none).
pub(crate) fn estimate(root: BorrowedFd<'_>, meta: &Meta) -> Option<Estimate> {
    let fs = rfs::fstatvfs(root).ok()?;
    let total = fs.f_files.checked_sub(fs.f_ffree).filter(|&n| n > 0)?;
    let parent = rfs::openat(
        root,
        c"..",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .and_then(|fd| Meta::of(fd.as_fd()));
    let whole = parent.is_ok_and(|p| p.dev != meta.dev);
    Some(Estimate {
        total,
        upper_bound: !whole,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(entries: u64, secs: u64, estimate: Option<Estimate>) -> Progress {
        Progress {
            entries,
            elapsed: Duration::from_secs(secs),
            estimate,
            finished: false,
        }
    }

    #[test]
    fn the_eta_follows_the_rate_so_far() {
        let exact = Estimate {
            total: 1000,
            upper_bound: false,
        };
        let p = at(250, 5, Some(exact));
        assert_eq!(p.eta(), Some(Duration::from_secs(15)));
        assert_eq!(p.line(), "250 of ~1000 entries, 50 entries/s, 0:15 left");
        let bound = Estimate {
            upper_bound: true,
            ..exact
        };
        assert_eq!(
            at(250, 5, Some(bound)).line(),
            "250 of at most 1000 entries, 50 entries/s, at most 0:15 left"
        );
    }

    #[test]
    fn no_eta_without_an_estimate_or_past_it() {
        assert_eq!(at(10, 1, None).line(), "10 entries, 10 entries/s");
        let small = Estimate {
            total: 5,
            upper_bound: false,
        };
        assert_eq!(at(10, 1, Some(small)).eta(), None);
        assert_eq!(at(0, 1, Some(small)).eta(), None);
    }

    #[test]
    fn a_filesystem_counts_its_inodes() {
        let dir = tempfile::tempdir().unwrap();
        let fd = rfs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let meta = Meta::of(fd.as_fd()).unwrap();
        // A temporary directory is part of a filesystem, never all of it.
        if let Some(e) = estimate(fd.as_fd(), &meta) {
            assert!(e.upper_bound && e.total > 0);
        }
    }
}
