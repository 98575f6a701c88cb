//! The progress line of a migration's shift on a terminal: entries done,
//! entries per second, and how long is left at most.
//!
//! The total is an upper bound read from the filesystem (its used inodes)
//! before the shift starts: counting the trees first would read every
//! inode twice on a cold cache, which is the very cost being shown.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How often the line is redrawn.
const EVERY: Duration = Duration::from_millis(250);

/// Entries shifted so far, shared with the thread that draws the line.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, entries: u64) {
        self.0.fetch_add(entries, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs `work` while a line on stderr shows `counter` against `at_most`
/// entries; without `show`, just runs it.
pub fn while_shifting<T, E>(
    show: bool,
    at_most: Option<u64>,
    counter: &Counter,
    work: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    if !show {
        return work();
    }
    let started = Instant::now();
    std::thread::scope(|scope| {
        let (finished, wait) = mpsc::channel::<&str>();
        scope.spawn(move || draw(counter, at_most, started, &wait));
        let result = work();
        let _ = finished.send(if result.is_ok() { "done" } else { "stopped" });
        result
    })
}

fn draw(counter: &Counter, at_most: Option<u64>, started: Instant, wait: &mpsc::Receiver<&str>) {
    let mut stderr = std::io::stderr();
    let end = loop {
        match wait.recv_timeout(EVERY) {
            Err(RecvTimeoutError::Timeout) => {
                let now = line(counter.get(), at_most, started.elapsed());
                let _ = write!(stderr, "\r{now}\x1b[K");
                let _ = stderr.flush();
            }
            Ok(end) => break end,
            // The shift panicked: there is no telling how far it got.
            Err(RecvTimeoutError::Disconnected) => break "stopped",
        }
    };
    let last = line(counter.get(), None, started.elapsed());
    let _ = writeln!(stderr, "\r{last}, {end}\x1b[K");
}

/// `shift: 1200 of at most 50000 entries, 400 entries/s, at most 2m02s left`
pub fn line(done: u64, at_most: Option<u64>, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64().max(1e-3);
    let rate = done as f64 / seconds;
    let of = match at_most {
        Some(total) if total >= done => format!(" of at most {total}"),
        _ => String::new(),
    };
    let left = match at_most {
        Some(total) if total >= done && rate >= 1.0 => format!(
            ", at most {} left",
            clock(Duration::from_secs_f64((total - done) as f64 / rate))
        ),
        _ => String::new(),
    };
    format!("shift: {done}{of} entries, {rate:.0} entries/s{left}")
}

fn clock(left: Duration) -> String {
    let secs = left.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_rate_and_time_left_against_the_bound() {
        let line = line(1000, Some(5000), Duration::from_secs(2));
        assert_eq!(
            line,
            "shift: 1000 of at most 5000 entries, 500 entries/s, at most 8s left"
        );
    }

    #[test]
    fn past_the_bound_or_without_one_there_is_no_time_left_shown() {
        assert_eq!(
            line(10, Some(5), Duration::from_secs(1)),
            "shift: 10 entries, 10 entries/s"
        );
        assert_eq!(
            line(10, None, Duration::from_secs(1)),
            "shift: 10 entries, 10 entries/s"
        );
    }

    #[test]
    fn long_waits_read_as_minutes_and_hours() {
        assert_eq!(clock(Duration::from_secs(125)), "2m05s");
        assert_eq!(clock(Duration::from_secs(7260)), "2h01m");
    }
}
