//! What `grant` reports: the JSON view of its outcome and its human text.

use std::path::Path;

use serde::Serialize;

use super::{Fix, GrantOutcome};
use crate::report::{self, Status};

/// `grant --format json`, field for field.
#[derive(Debug, Serialize)]
pub struct GrantView<'a> {
    command: &'static str,
    ok: bool,
    changed: bool,
    dry_run: bool,
    path: &'a Path,
    host_uid: u32,
    host_gid: u32,
    actions: Vec<FixView>,
    /// Only with `--diff`.
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<String>,
}

#[derive(Debug, Serialize)]
struct FixView {
    description: String,
}

impl FixView {
    fn of(fix: &Fix) -> Self {
        FixView {
            description: fix.describe(),
        }
    }
}

impl GrantOutcome {
    /// Pending (1) when a dry run found changes to make.
    pub fn status(&self, dry_run: bool) -> Status {
        Status::pending_if(dry_run && !self.fixes.is_empty())
    }

    pub fn view(&self, dry_run: bool, diff: bool) -> GrantView<'_> {
        GrantView {
            command: "grant",
            ok: true,
            changed: self.applied && !self.fixes.is_empty(),
            dry_run,
            path: &self.path,
            host_uid: self.host_uid,
            host_gid: self.host_gid,
            actions: self.fixes.iter().map(FixView::of).collect(),
            diff: diff.then(|| report::diffs(&self.changes)),
        }
    }

    pub fn render_human(&self, dry_run: bool, diff: bool) -> String {
        let mut out = String::new();
        if diff {
            out.push_str(&report::diffs(&self.changes));
        }
        let n = self.fixes.len();
        let s = report::plural(n);
        let who = format!("host uid {} gid {}", self.host_uid, self.host_gid);
        out.push_str(&match (n, dry_run) {
            (0, _) => format!("grant: {who} can already use {}\n", self.path.display()),
            (_, true) => format!("grant (dry run): {n} change{s} for {who}\n"),
            (_, false) => format!("grant: {n} change{s} made for {who}\n"),
        });
        for fix in &self.fixes {
            out.push_str(&format!("  + {}\n", fix.describe()));
        }
        out
    }
}
