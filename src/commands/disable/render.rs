//! What `disable` reports: the JSON view of its outcome and its human text.

use std::path::Path;

use serde::Serialize;

use super::DisableOutcome;
use crate::migrate::MigrateReport;
use crate::migrate::containerd::CarryReport;
use crate::outcome::{DaemonView, moved_human};
use crate::phases::Phases;
use crate::plan::{Action, Warning};
use crate::report::{self, Paint, Status};

/// `disable --format json`, field for field.
#[derive(Debug, Serialize)]
pub struct DisableView<'a> {
    command: &'static str,
    ok: bool,
    changed: bool,
    dry_run: bool,
    config: &'a Path,
    actions: Vec<ActionView>,
    warnings: &'a [Warning],
    daemon: DaemonView<'a>,
    migration: Option<&'a MigrateReport>,
    carried: Option<&'a CarryReport>,
    phases: &'a Phases,
    /// Only with `--diff`.
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<String>,
}

#[derive(Debug, Serialize)]
struct ActionView {
    action: &'static str,
    description: String,
}

impl ActionView {
    fn of(action: &Action) -> Self {
        ActionView {
            action: action.kind(),
            description: action.describe(),
        }
    }
}

impl DisableOutcome {
    /// Pending (1) when a dry run found changes to make.
    pub fn status(&self, dry_run: bool) -> Status {
        Status::pending_if(dry_run && !self.actions.is_empty())
    }

    pub fn view(&self, dry_run: bool, diff: bool) -> DisableView<'_> {
        DisableView {
            command: "disable",
            ok: true,
            changed: self.changed(),
            dry_run,
            config: &self.config_path,
            actions: self.actions.iter().map(ActionView::of).collect(),
            warnings: &self.warnings,
            daemon: self.daemon.view(),
            migration: self.migrated.as_ref(),
            carried: self.carried.as_ref(),
            phases: &self.phases,
            diff: diff.then(|| report::diffs(&self.changes)),
        }
    }

    pub fn render_human(&self, dry_run: bool, diff: bool, verbose: bool) -> String {
        let paint = Paint::for_stdout();
        let mut out = report::changes_heading(
            "disable",
            &self.changes,
            self.actions.len(),
            (dry_run, diff),
            "remapping is already off",
        );
        for action in &self.actions {
            out.push_str(&format!(
                "  {} {}\n",
                paint.wrap("31", "-"),
                action.describe()
            ));
        }
        out.push_str(&report::warning_lines(&paint, &self.warnings));
        out.push_str(&moved_human(
            &paint,
            self.migrated.as_ref(),
            &self.daemon,
            self.carried.as_ref(),
            &self.phases,
            verbose,
        ));
        out
    }
}
