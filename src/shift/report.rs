//! What a shift did: counts, failures by path, and their human and JSON
//! renderings.

use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::IdMap;
use super::entry::EntryErrorKind;

/// One entry that could not be (fully) shifted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    pub(crate) path: PathBuf,
    pub(crate) kind: EntryErrorKind,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.kind)
    }
}

/// `shift --format json`, field for field.
#[derive(Debug, Serialize)]
pub(crate) struct ShiftView<'a> {
    command: &'static str,
    ok: bool,
    changed: bool,
    dry_run: bool,
    dir: &'a Path,
    uid_maps: Vec<MapView>,
    gid_maps: Vec<MapView>,
    resumed: bool,
    entries: u64,
    entries_changed: u64,
    left_alone: LeftAlone,
    hardlinks_skipped: u64,
    mount_points: MountPoints<'a>,
    errors: Listed<ErrorView<'a>>,
    warnings: Listed<WarningView<'a>>,
    #[serde(serialize_with = "crate::phases::serialize_seconds")]
    elapsed_seconds: Duration,
}

#[derive(Debug, Serialize)]
struct MapView {
    from: u32,
    to: u32,
    count: u32,
}

impl MapView {
    fn of(m: &IdMap) -> Self {
        MapView {
            from: m.from,
            to: m.to,
            count: m.count,
        }
    }
}

#[derive(Debug, Serialize)]
struct LeftAlone {
    uid: u64,
    gid: u64,
}

#[derive(Debug, Serialize)]
struct MountPoints<'a> {
    count: u64,
    paths: &'a [PathBuf],
}

/// A count, and the first entries it counts.
#[derive(Debug, Serialize)]
struct Listed<T> {
    count: u64,
    entries: Vec<T>,
}

#[derive(Debug, Serialize)]
struct ErrorView<'a> {
    path: &'a Path,
    error: String,
}

impl<'a> ErrorView<'a> {
    fn of(e: &'a EntryError) -> Self {
        ErrorView {
            path: &e.path,
            error: e.kind.to_string(),
        }
    }
}

#[derive(Debug, Serialize)]
struct WarningView<'a> {
    path: &'a Path,
    warning: String,
}

impl<'a> WarningView<'a> {
    fn of(e: &'a EntryError) -> Self {
        WarningView {
            path: &e.path,
            warning: e.kind.to_string(),
        }
    }
}

/// The outcome of [`super::shift_tree`].
#[derive(Debug, Clone)]
pub struct ShiftReport {
    pub(crate) dir: PathBuf,
    pub(crate) dry_run: bool,
    pub(crate) uid_maps: Vec<IdMap>,
    pub(crate) gid_maps: Vec<IdMap>,
    /// A marker of an interrupted shift with the same maps was found.
    pub(crate) resumed: bool,
    /// Entries visited, the tree's root included; each name of a
    /// hardlinked inode counts.
    pub entries: u64,
    /// Entries rewritten (in a dry run: that would be).
    pub changed: u64,
    /// Entries whose owner uid (gid) is outside every map, left alone.
    pub(crate) uids_left_alone: u64,
    pub(crate) gids_left_alone: u64,
    /// Further names of inodes with several links, shifted only once.
    pub(crate) hardlinks_skipped: u64,
    /// Mount points inside the tree, not entered (the first 1000).
    pub(crate) mount_points: Vec<PathBuf>,
    pub(crate) mount_point_count: u64,
    /// Entries that failed (the first 1000).
    pub(crate) errors: Vec<EntryError>,
    pub(crate) error_count: u64,
    /// Entries left unchanged on purpose, and resume state found and not
    /// trusted (the first 1000); they do not make the shift fail.
    pub(crate) warnings: Vec<EntryError>,
    pub(crate) warning_count: u64,
    pub(crate) elapsed: Duration,
}

impl ShiftReport {
    /// Every entry was handled.
    pub fn ok(&self) -> bool {
        self.error_count == 0
    }

    /// Exit status 2 when an entry failed: the shift is not finished.
    pub(crate) fn status(&self) -> crate::report::Status {
        if self.ok() {
            crate::report::Status::Ok
        } else {
            crate::report::Status::Error
        }
    }

    /// The JSON view as a value, for callers that pick fields from it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.view()).expect("reports serialize")
    }

    pub(crate) fn view(&self) -> ShiftView<'_> {
        ShiftView {
            command: "shift",
            ok: self.ok(),
            changed: self.changed > 0,
            dry_run: self.dry_run,
            dir: &self.dir,
            uid_maps: self.uid_maps.iter().map(MapView::of).collect(),
            gid_maps: self.gid_maps.iter().map(MapView::of).collect(),
            resumed: self.resumed,
            entries: self.entries,
            entries_changed: self.changed,
            left_alone: LeftAlone {
                uid: self.uids_left_alone,
                gid: self.gids_left_alone,
            },
            hardlinks_skipped: self.hardlinks_skipped,
            mount_points: MountPoints {
                count: self.mount_point_count,
                paths: &self.mount_points,
            },
            errors: Listed {
                count: self.error_count,
                entries: self.errors.iter().map(ErrorView::of).collect(),
            },
            warnings: Listed {
                count: self.warning_count,
                entries: self.warnings.iter().map(WarningView::of).collect(),
            },
            elapsed_seconds: self.elapsed,
        }
    }

    pub fn human(&self) -> String {
        let mut out = String::new();
        let (verb, change) = if self.dry_run {
            ("dry run, nothing written", "would change")
        } else {
            ("shifted", "changed")
        };
        let _ = writeln!(
            out,
            "{verb}: {}: {} entries, {} {change}, in {:.2} s{}",
            self.dir.display(),
            self.entries,
            self.changed,
            self.elapsed.as_secs_f64(),
            if self.resumed {
                " (resumed an interrupted shift)"
            } else {
                ""
            }
        );
        if self.uids_left_alone + self.gids_left_alone > 0 {
            let _ = writeln!(
                out,
                "  owners outside every map, left alone: {} uids, {} gids",
                self.uids_left_alone, self.gids_left_alone
            );
        }
        if self.hardlinks_skipped > 0 {
            let _ = writeln!(
                out,
                "  extra names of hardlinked files, shifted once: {}",
                self.hardlinks_skipped
            );
        }
        list(
            &mut out,
            "mount points not entered",
            self.mount_point_count,
            self.mount_points.iter().map(|p| p.display().to_string()),
        );
        list(
            &mut out,
            "left unchanged or ignored",
            self.warning_count,
            self.warnings.iter().map(ToString::to_string),
        );
        list(
            &mut out,
            "errors",
            self.error_count,
            self.errors.iter().map(ToString::to_string),
        );
        if !self.ok() && !self.dry_run {
            out.push_str(
                "the shift is unfinished: fix the errors above and run the same command again to finish it\n",
            );
        }
        out
    }
}

fn list(out: &mut String, title: &str, count: u64, items: impl Iterator<Item = String>) {
    if count == 0 {
        return;
    }
    let _ = writeln!(out, "  {title}: {count}");
    let mut listed = 0;
    for item in items {
        let _ = writeln!(out, "    {item}");
        listed += 1;
    }
    if count > listed {
        let _ = writeln!(out, "    ... and {} more", count - listed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::io::Errno;
    use serde_json::json;

    fn report() -> ShiftReport {
        ShiftReport {
            dir: PathBuf::from("/layers/a"),
            dry_run: false,
            uid_maps: vec![IdMap::parse("0:100000:65536").unwrap()],
            gid_maps: vec![IdMap::parse("0:100000:65536").unwrap()],
            resumed: false,
            entries: 10,
            changed: 8,
            uids_left_alone: 2,
            gids_left_alone: 1,
            hardlinks_skipped: 1,
            mount_points: vec![PathBuf::from("/layers/a/proc")],
            mount_point_count: 1,
            errors: Vec::new(),
            error_count: 0,
            warnings: Vec::new(),
            warning_count: 0,
            elapsed: Duration::from_millis(1500),
        }
    }

    #[test]
    fn json_has_the_documented_keys() {
        let value = serde_json::to_value(report().view()).unwrap();
        assert_eq!(value["command"], "shift");
        assert_eq!(value["ok"], true);
        assert_eq!(value["changed"], true);
        assert_eq!(value["entries"], 10);
        assert_eq!(value["entries_changed"], 8);
        assert_eq!(value["left_alone"], json!({"uid": 2, "gid": 1}));
        assert_eq!(
            value["uid_maps"][0],
            json!({"from": 0, "to": 100000, "count": 65536})
        );
        assert_eq!(value["mount_points"]["paths"][0], "/layers/a/proc");
        assert_eq!(value["errors"]["count"], 0);
        assert_eq!(value["elapsed_seconds"], 1.5);
    }

    #[test]
    fn errors_make_it_not_ok_and_are_listed_with_their_path() {
        let mut r = report();
        r.errors.push(EntryError {
            path: PathBuf::from("/layers/a/bin/ping"),
            kind: EntryErrorKind::Io {
                op: "chown",
                errno: Errno::PERM,
            },
        });
        r.error_count = 3;
        assert!(!r.ok());
        let human = r.human();
        assert!(
            human.contains("  errors: 3\n    /layers/a/bin/ping: chown: Operation not permitted")
        );
        assert!(human.contains("... and 2 more"));
        assert!(human.contains("run the same command again"));
        let json = serde_json::to_value(r.view()).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["errors"]["entries"][0]["path"], "/layers/a/bin/ping");
    }

    #[test]
    fn human_says_what_a_dry_run_would_do() {
        let mut r = report();
        r.dry_run = true;
        let human = r.human();
        assert!(
            human.starts_with("dry run, nothing written: /layers/a: 10 entries, 8 would change")
        );
        assert!(human.contains("mount points not entered: 1\n    /layers/a/proc\n"));
    }
}
