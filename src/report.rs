//! What every command's report shares: colour, `warning:` and located
//! lines, unified diffs, writing to stdout, and the exit status scripts
//! rely on. Each command renders its own outcome.

use std::io::{IsTerminal, Write};
use std::path::Path;

use crate::plan::{FileChange, Warning};

/// The process exit status, as documented for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Done, or nothing to do.
    Ok = 0,
    /// `--dry-run` found changes to make (or `check` found a failure).
    Pending = 1,
    /// Nothing was changed: bad input, a refusal, or a failure.
    Error = 2,
}

impl Status {
    /// Pending (1) when something is left to do or failed a check, else Ok.
    pub fn pending_if(pending: bool) -> Status {
        if pending { Status::Pending } else { Status::Ok }
    }
}

/// Whether to colour human output: only on a terminal, never with NO_COLOR.
pub fn use_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// ANSI colour for human output, or none.
pub struct Paint(pub bool);

impl Paint {
    /// Colour when stdout is a terminal that wants it.
    pub fn for_stdout() -> Paint {
        Paint(use_colour())
    }

    pub fn wrap(&self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// One `warning: FILE[:LINE]: MESSAGE` line per warning.
pub fn warning_lines(paint: &Paint, warnings: &[Warning]) -> String {
    warnings
        .iter()
        .map(|w| {
            format!(
                "{} {}\n",
                paint.wrap("33", "warning:"),
                located(&w.file, w.line, &w.message)
            )
        })
        .collect()
}

/// `FILE:LINE: MESSAGE`, or `FILE: MESSAGE` without a line.
pub fn located(file: &Path, line: Option<usize>, message: &str) -> String {
    match line {
        Some(line) => format!("{}:{line}: {message}", file.display()),
        None => format!("{}: {message}", file.display()),
    }
}

/// "s" unless there is exactly one.
/// The start of `enable`'s and `disable`'s human report: the diffs when
/// asked for, then how many changes were (or would be) made, or `nothing`
/// when there are none.
pub fn changes_heading(
    command: &str,
    changes: &[FileChange],
    actions: usize,
    (dry_run, diff): (bool, bool),
    nothing: &str,
) -> String {
    let mut out = if diff { diffs(changes) } else { String::new() };
    let s = plural(actions);
    out.push_str(&match (actions, dry_run) {
        (0, _) => format!("{command}: nothing to change, {nothing}\n"),
        (n, true) => format!("{command} (dry run): {n} change{s} to make\n"),
        (n, false) => format!("{command}: {n} change{s} made\n"),
    });
    out
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The unified diffs of every change, for `--diff`.
pub fn diffs(changes: &[FileChange]) -> String {
    changes.iter().map(unified_diff).collect()
}

/// A unified diff of one file, with `a/` and `b/` paths as git shows them.
pub fn unified_diff(change: &FileChange) -> String {
    let shown = change.path.display().to_string();
    let shown = shown.trim_start_matches('/');
    similar::TextDiff::from_lines(&change.old, &change.new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{shown}"), &format!("b/{shown}"))
        .to_string()
}

/// Writes a JSON document and a newline to stdout.
pub fn print_json(value: &impl serde::Serialize) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).expect("reports serialize");
    print(format!("{text}\n"))
}

/// Writes to stdout. A reader that went away (`docker-userns check | head`)
/// is no error: the output is simply not wanted any more, as for any filter.
pub fn print(bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(bytes.as_ref())
        .and_then(|()| stdout.flush());
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_the_documented_numbers() {
        assert_eq!(
            [Status::Ok, Status::Pending, Status::Error].map(|s| s as u8),
            [0, 1, 2]
        );
        assert_eq!(Status::pending_if(true), Status::Pending);
        assert_eq!(Status::pending_if(false), Status::Ok);
    }

    #[test]
    fn warnings_name_their_line_when_they_have_one() {
        let warnings = [
            Warning {
                file: "/etc/subuid".into(),
                line: Some(3),
                message: "overlaps".into(),
            },
            Warning {
                file: "/var/lib/docker".into(),
                line: None,
                message: "hidden".into(),
            },
        ];
        assert_eq!(
            warning_lines(&Paint(false), &warnings),
            "warning: /etc/subuid:3: overlaps\nwarning: /var/lib/docker: hidden\n"
        );
    }
}
