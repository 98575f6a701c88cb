//! Rendering results and errors: human text, JSON, unified diffs; and the
//! exit status scripts rely on.

use std::io::{IsTerminal, Write};
use std::path::Path;

use serde_json::{Value, json};

use crate::check::{self, Check, Status as CheckStatus};
use crate::disable::DisableOutcome;
use crate::enable::{DaemonState, Outcome};
use crate::grant::GrantOutcome;
use crate::ids::IdRange;
use crate::plan::{Action, FileChange, Warning};

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

    pub fn of(outcome: &Outcome, dry_run: bool) -> Status {
        if dry_run && !outcome.plan.actions.is_empty() {
            Status::Pending
        } else {
            Status::Ok
        }
    }
}

/// Whether to colour human output: only on a terminal, never with NO_COLOR.
pub fn use_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

struct Paint(bool);

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

pub fn enable_json(outcome: &Outcome, dry_run: bool, diff: bool) -> Value {
    let plan = &outcome.plan;
    let m = &plan.mapping;
    let mut value = json!({
        "command": "enable",
        "ok": true,
        "changed": outcome.changed(),
        "dry_run": dry_run,
        "remap": m.spec,
        "user": m.user,
        "group": m.group,
        "uid": m.uid,
        "gid": m.gid,
        "uid_start": m.uid_ranges.first().map(|r| r.start),
        "gid_start": m.gid_ranges.first().map(|r| r.start),
        "count": m.uid_count().min(m.gid_count()),
        "uid_ranges": ranges_json(&m.uid_ranges),
        "gid_ranges": ranges_json(&m.gid_ranges),
        "data_root": plan.data_root,
        "data_root_dir": m.data_root_dir(),
        "remapped_data_root": m.data_root_dir().map(|d| plan.data_root.join(d)),
        "config": plan.config_path,
        "actions": plan.actions.iter().map(action_json).collect::<Vec<_>>(),
        "warnings": plan.warnings.iter().map(warning_json).collect::<Vec<_>>(),
        "daemon": daemon_json(&outcome.daemon),
        "migration": outcome.migrated.as_ref().map(crate::migrate::MigrateReport::to_json),
        "carried": outcome.carried.as_ref().map(crate::migrate::containerd::CarryReport::to_json),
        "phases": outcome.phases.to_json(),
    });
    if diff {
        value["diff"] = Value::String(plan.changes.iter().map(unified_diff).collect());
    }
    value
}

fn ranges_json(ranges: &[IdRange]) -> Value {
    ranges
        .iter()
        .map(|r| json!({"start": r.start, "count": r.count}))
        .collect()
}

fn action_json(action: &Action) -> Value {
    let mut value = json!({
        "action": action.kind(),
        "file": action.file(),
        "description": action.describe(),
    });
    match action {
        Action::CreateGroup { command, .. } | Action::CreateUser { command, .. } => {
            value["command"] = json!(command);
        }
        Action::AddRange { owner, range, .. } => {
            value["owner"] = json!(owner);
            value["start"] = json!(range.start);
            value["count"] = json!(range.count);
        }
        Action::SetRemap { from, to, .. } => {
            value["from"] = json!(from);
            value["to"] = json!(to);
        }
        Action::RestartDaemon { command } => {
            value["command"] = json!(command);
        }
        Action::CompleteAccount { name, .. } => {
            value["user"] = json!(name);
        }
        Action::MigrateData { from, to, .. } => {
            value["from"] = json!(from);
            value["to"] = json!(to);
        }
        Action::PinImageStore { from, to, .. } => {
            value["from"] = json!(from);
            value["to"] = json!(to);
        }
        Action::CarryImages {
            spool,
            images,
            containers,
        } => {
            value["spool"] = json!(spool);
            value["images"] = json!(images);
            value["containers"] = json!(containers);
        }
    }
    value
}

fn daemon_json(state: &DaemonState) -> Value {
    match state {
        DaemonState::NotManaged { reason } => {
            json!({"managed": false, "restarted": false, "note": reason})
        }
        DaemonState::Planned { restart } => {
            json!({"managed": true, "restarted": false, "restart_needed": restart})
        }
        DaemonState::Verified { restarted, info } => json!({
            "managed": true,
            "restarted": restarted,
            "userns_active": info.userns_active(),
            "docker_root_dir": info.docker_root_dir,
            "security_options": info.security_options,
            "server_version": info.server_version,
        }),
    }
}

fn warning_json(w: &Warning) -> Value {
    json!({"file": w.file, "line": w.line, "message": w.message})
}

pub fn enable_human(outcome: &Outcome, dry_run: bool, diff: bool, verbose: bool) -> String {
    let paint = Paint(use_colour());
    let plan = &outcome.plan;
    let m = &plan.mapping;
    let mut out = String::new();
    if diff {
        out.extend(plan.changes.iter().map(unified_diff));
    }
    let n = plan.actions.len();
    let headline = match (n, dry_run) {
        (0, _) => "enable: nothing to change, the files already say so".to_owned(),
        (_, true) => format!("enable (dry run): {n} change{} to make", plural(n)),
        (_, false) => format!("enable: {n} change{} made", plural(n)),
    };
    out.push_str(&headline);
    out.push('\n');
    for action in &plan.actions {
        out.push_str(&format!(
            "  {} {}\n",
            paint.wrap("32", "+"),
            action.describe()
        ));
        if let (
            true,
            Action::CreateGroup {
                command: Some(c), ..
            }
            | Action::CreateUser {
                command: Some(c), ..
            },
        ) = (verbose, action)
        {
            out.push_str(&format!("      $ {c}\n"));
        }
    }
    let id = |v: Option<u32>| v.map_or("to be created".to_owned(), |v| v.to_string());
    out.push_str(&format!(
        "remap user  {}:{} (uid {}, gid {})\n",
        m.user,
        m.group,
        id(m.uid),
        id(m.gid)
    ));
    out.push_str(&format!("subuid      {}\n", show_ranges(&m.uid_ranges)));
    out.push_str(&format!("subgid      {}\n", show_ranges(&m.gid_ranges)));
    if let Some(dir) = m.data_root_dir() {
        out.push_str(&format!(
            "data root   {}\n",
            plan.data_root.join(dir).display()
        ));
    }
    out.push_str(&format!("config      {}\n", plan.config_path.display()));
    out.push_str(&warnings_human(&paint, &plan.warnings));
    if let Some(migrated) = &outcome.migrated {
        for warning in &migrated.warnings {
            out.push_str(&format!("{} {warning}\n", paint.wrap("33", "warning:")));
        }
    }
    out.push_str(&daemon_human(&outcome.daemon));
    if let Some(carried) = &outcome.carried {
        out.push_str(&carried_human(carried));
    }
    let moved = outcome.migrated.is_some() || outcome.carried.is_some();
    out.push_str(&phases_human(&outcome.phases, verbose || moved));
    out
}

/// One line of where the time went: always after a migration (it is
/// what takes long), else only with `-v`.
fn phases_human(phases: &crate::phases::Phases, wanted: bool) -> String {
    if !wanted || phases.is_empty() {
        return String::new();
    }
    format!("took        {}\n", phases.human())
}

fn carried_human(carried: &crate::migrate::containerd::CarryReport) -> String {
    let list = |names: &[String]| match names {
        [] => "none".to_owned(),
        _ => names.join(", "),
    };
    let mut out = format!(
        "images      loaded {} ({} MiB saved and loaded)
containers  re-created {}
",
        list(&carried.loaded),
        carried.images_bytes >> 20,
        list(&carried.recreated)
    );
    if !carried.kept.is_empty() {
        out.push_str(&format!(
            "            kept, as one of the same name is there: {}\n",
            carried.kept.join(", ")
        ));
    }
    if !carried.not_recreated.is_empty() {
        out.push_str(&format!(
            "            NOT re-created: {}\n",
            carried.not_recreated.join("; ")
        ));
    }
    out
}

fn warnings_human(paint: &Paint, warnings: &[Warning]) -> String {
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

fn daemon_human(state: &DaemonState) -> String {
    match state {
        DaemonState::NotManaged { reason } => format!("daemon      not restarted: {reason}\n"),
        DaemonState::Planned { restart: true } => {
            "daemon      would be restarted and verified\n".into()
        }
        DaemonState::Planned { restart: false } => {
            "daemon      already runs with this mapping\n".into()
        }
        DaemonState::Verified { restarted, info } => format!(
            "daemon      {}; remapping {}, DockerRootDir {}\n",
            if *restarted { "restarted" } else { "unchanged" },
            if info.userns_active() {
                "active"
            } else {
                "off"
            },
            info.docker_root_dir
        ),
    }
}

fn show_ranges(ranges: &[IdRange]) -> String {
    let shown: Vec<String> = ranges.iter().map(IdRange::to_string).collect();
    shown.join(", then ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn located(file: &Path, line: Option<usize>, message: &str) -> String {
    match line {
        Some(line) => format!("{}:{line}: {message}", file.display()),
        None => format!("{}: {message}", file.display()),
    }
}

pub fn disable_json(outcome: &DisableOutcome, dry_run: bool, diff: bool) -> Value {
    let actions: Vec<Value> = outcome
        .actions
        .iter()
        .map(|a| json!({"action": a.kind(), "description": a.describe()}))
        .collect();
    let mut value = json!({
        "command": "disable",
        "ok": true,
        "changed": outcome.changed(),
        "dry_run": dry_run,
        "config": outcome.config_path,
        "actions": actions,
        "warnings": outcome.warnings.iter().map(warning_json).collect::<Vec<_>>(),
        "daemon": daemon_json(&outcome.daemon),
        "migration": outcome.migrated.as_ref().map(crate::migrate::MigrateReport::to_json),
        "carried": outcome.carried.as_ref().map(crate::migrate::containerd::CarryReport::to_json),
        "phases": outcome.phases.to_json(),
    });
    if diff {
        value["diff"] = Value::String(outcome.changes.iter().map(unified_diff).collect());
    }
    value
}

pub fn disable_human(outcome: &DisableOutcome, dry_run: bool, diff: bool, verbose: bool) -> String {
    let paint = Paint(use_colour());
    let mut out = String::new();
    if diff {
        out.extend(outcome.changes.iter().map(unified_diff));
    }
    let n = outcome.actions.len();
    out.push_str(&match (n, dry_run) {
        (0, _) => "disable: nothing to change, remapping is already off\n".to_owned(),
        (_, true) => format!("disable (dry run): {n} change{} to make\n", plural(n)),
        (_, false) => format!("disable: {n} change{} made\n", plural(n)),
    });
    for action in &outcome.actions {
        out.push_str(&format!(
            "  {} {}\n",
            paint.wrap("31", "-"),
            action.describe()
        ));
    }
    out.push_str(&warnings_human(&paint, &outcome.warnings));
    if let Some(migrated) = &outcome.migrated {
        for warning in &migrated.warnings {
            out.push_str(&format!("{} {warning}\n", paint.wrap("33", "warning:")));
        }
    }
    out.push_str(&daemon_human(&outcome.daemon));
    if let Some(carried) = &outcome.carried {
        out.push_str(&carried_human(carried));
    }
    let moved = outcome.migrated.is_some() || outcome.carried.is_some();
    out.push_str(&phases_human(&outcome.phases, verbose || moved));
    out
}

pub fn grant_json(outcome: &GrantOutcome, dry_run: bool, diff: bool) -> Value {
    let mut value = json!({
        "command": "grant",
        "ok": true,
        "changed": outcome.applied && !outcome.fixes.is_empty(),
        "dry_run": dry_run,
        "path": outcome.path,
        "host_uid": outcome.host_uid,
        "host_gid": outcome.host_gid,
        "actions": outcome.fixes.iter().map(|f| json!({"description": f.describe()})).collect::<Vec<_>>(),
    });
    if diff {
        value["diff"] = Value::String(outcome.changes.iter().map(unified_diff).collect());
    }
    value
}

pub fn grant_human(outcome: &GrantOutcome, dry_run: bool, diff: bool) -> String {
    let mut out = String::new();
    if diff {
        out.extend(outcome.changes.iter().map(unified_diff));
    }
    let n = outcome.fixes.len();
    let who = format!("host uid {} gid {}", outcome.host_uid, outcome.host_gid);
    out.push_str(&match (n, dry_run) {
        (0, _) => format!("grant: {who} can already use {}\n", outcome.path.display()),
        (_, true) => format!("grant (dry run): {n} change{} for {who}\n", plural(n)),
        (_, false) => format!("grant: {n} change{} made for {who}\n", plural(n)),
    });
    for fix in &outcome.fixes {
        out.push_str(&format!("  + {}\n", fix.describe()));
    }
    out
}

/// `check` results as `{"ok": bool, "checks": [...]}`.
pub fn check_json(checks: &[Check]) -> Value {
    json!({
        "command": "check",
        "ok": check::healthy(checks),
        "checks": checks,
    })
}

/// `check` results as an aligned list; with `quiet`, only what is not ok.
pub fn check_human(checks: &[Check], quiet: bool) -> String {
    let paint = Paint(use_colour());
    let width = checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks
        .iter()
        .filter(|c| !quiet || matches!(c.status, CheckStatus::Warn | CheckStatus::Fail))
    {
        let label = format!("{:<4}", c.status.label());
        let label = match c.status {
            CheckStatus::Ok => paint.wrap("32", &label),
            CheckStatus::Warn => paint.wrap("33", &label),
            CheckStatus::Fail => paint.wrap("1;31", &label),
            CheckStatus::Skip => paint.wrap("2", &label),
        };
        let detail = match (&c.file, c.line) {
            (Some(file), Some(line))
                if !c.detail.contains(&format!("{}:{line}", file.display())) =>
            {
                format!("{} ({}:{line})", c.detail, file.display())
            }
            _ => c.detail.clone(),
        };
        out.push_str(&format!("{label}  {:<width$}  {detail}\n", c.id));
        if let (Some(remedy), CheckStatus::Warn | CheckStatus::Fail) = (&c.remedy, c.status) {
            out.push_str(&format!("      {:<width$}  fix: {remedy}\n", ""));
        }
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
