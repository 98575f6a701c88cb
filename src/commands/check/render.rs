//! What `check` reports: every result as JSON, or an aligned list with a
//! fix under each finding and a count of each status.

use serde::Serialize;

use super::{Check, Status as CheckStatus, healthy};
use crate::report::{Paint, Status};

/// `check --format json`: `{"command": "check", "ok": bool, "checks": [...]}`.
#[derive(Debug, Serialize)]
pub struct CheckView<'a> {
    command: &'static str,
    ok: bool,
    checks: &'a [Check],
}

impl<'a> CheckView<'a> {
    pub fn new(checks: &'a [Check]) -> Self {
        CheckView {
            command: "check",
            ok: healthy(checks),
            checks,
        }
    }

    /// Pending (1) when a check failed.
    pub fn status(&self) -> Status {
        Status::pending_if(!self.ok)
    }

    /// The results as an aligned list; with `quiet`, only what is not ok.
    pub fn render_human(&self, quiet: bool) -> String {
        let paint = Paint::for_stdout();
        let checks = self.checks;
        let width = checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in checks
            .iter()
            .filter(|c| !quiet || matches!(c.status, CheckStatus::Warn | CheckStatus::Fail))
        {
            out.push_str(&line(&paint, c, width));
        }
        let count = |s: CheckStatus| checks.iter().filter(|c| c.status == s).count();
        out.push_str(&format!(
            "{} ok, {} warnings, {} failed, {} skipped\n",
            count(CheckStatus::Ok),
            count(CheckStatus::Warn),
            count(CheckStatus::Fail),
            count(CheckStatus::Skip)
        ));
        out
    }
}

/// One result, its position when the detail does not already give it, and
/// under a warning or failure the fix.
fn line(paint: &Paint, c: &Check, width: usize) -> String {
    let label = format!("{:<4}", c.status.label());
    let label = match c.status {
        CheckStatus::Ok => paint.wrap("32", &label),
        CheckStatus::Warn => paint.wrap("33", &label),
        CheckStatus::Fail => paint.wrap("1;31", &label),
        CheckStatus::Skip => paint.wrap("2", &label),
    };
    let detail = match (&c.file, c.line) {
        (Some(file), Some(line)) if !c.detail.contains(&format!("{}:{line}", file.display())) => {
            format!("{} ({}:{line})", c.detail, file.display())
        }
        _ => c.detail.clone(),
    };
    let mut out = format!("{label}  {:<width$}  {detail}\n", c.id);
    if let (Some(remedy), CheckStatus::Warn | CheckStatus::Fail) = (&c.remedy, c.status) {
        out.push_str(&format!("      {:<width$}  fix: {remedy}\n", ""));
    }
    out
}
