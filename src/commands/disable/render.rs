//! What `disable` reports: the JSON view of its outcome and its human text.

use std::path::Path;

use serde::Serialize;

use super::DisableOutcome;
use crate::outcome::{Closing, ClosingView, Mark, action_lines};
use crate::plan::Action;
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
    #[serde(flatten)]
    closing: ClosingView<'a>,
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
            closing: self.closing().view(&self.changes, diff),
        }
    }

    fn closing(&self) -> Closing<'_> {
        Closing {
            warnings: &self.warnings,
            daemon: &self.daemon,
            migrated: self.migrated.as_ref(),
            carried: self.carried.as_ref(),
            phases: &self.phases,
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
        out.push_str(&action_lines(&paint, Mark::Remove, &self.actions, verbose));
        out.push_str(&self.closing().render_human(&paint, verbose));
        out
    }
}
