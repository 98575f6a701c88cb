//! What `enable` reports: the JSON view of its outcome and its human text.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Outcome;
use crate::ids::IdRange;
use crate::outcome::{Closing, ClosingView, Mark, action_lines};
use crate::plan::Action;
use crate::report::{self, Paint, Status};

/// `enable --format json`, field for field.
#[derive(Debug, Serialize)]
pub struct EnableView<'a> {
    command: &'static str,
    ok: bool,
    changed: bool,
    dry_run: bool,
    remap: &'a str,
    user: &'a str,
    group: &'a str,
    uid: Option<u32>,
    gid: Option<u32>,
    uid_start: Option<u64>,
    gid_start: Option<u64>,
    count: u64,
    uid_ranges: &'a [IdRange],
    gid_ranges: &'a [IdRange],
    data_root: &'a Path,
    data_root_dir: Option<String>,
    remapped_data_root: Option<PathBuf>,
    config: &'a Path,
    actions: Vec<ActionView<'a>>,
    #[serde(flatten)]
    closing: ClosingView<'a>,
}

/// One planned action: what, on which file, and the data it carries.
#[derive(Debug, Serialize)]
struct ActionView<'a> {
    action: &'static str,
    file: Option<PathBuf>,
    description: String,
    #[serde(flatten)]
    data: ActionData<'a>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ActionData<'a> {
    Command {
        command: Option<&'a str>,
    },
    Range {
        owner: &'a str,
        start: u64,
        count: u64,
    },
    Value {
        from: Option<&'a str>,
        to: &'a str,
    },
    Move {
        from: &'a Path,
        to: &'a Path,
    },
    Account {
        user: &'a str,
    },
    Carry {
        spool: &'a Path,
        images: &'a [String],
        containers: &'a [String],
    },
    None {},
}

impl<'a> ActionView<'a> {
    fn of(action: &'a Action) -> Self {
        let data = match action {
            Action::CreateGroup { command, .. } | Action::CreateUser { command, .. } => {
                ActionData::Command {
                    command: command.as_deref(),
                }
            }
            Action::RestartDaemon { command } => ActionData::Command {
                command: Some(command),
            },
            Action::AddRange { owner, range, .. } => ActionData::Range {
                owner,
                start: range.start,
                count: range.count,
            },
            Action::SetRemap { from, to, .. } | Action::PinImageStore { from, to, .. } => {
                ActionData::Value {
                    from: from.as_deref(),
                    to,
                }
            }
            Action::CompleteAccount { name, .. } => ActionData::Account { user: name },
            Action::MigrateData { from, to, .. } => ActionData::Move { from, to },
            Action::CarryImages {
                spool,
                images,
                containers,
                ..
            } => ActionData::Carry {
                spool,
                images,
                containers,
            },
            // `disable`'s, which `enable` never plans.
            Action::RemoveRemap { .. }
            | Action::RestoreImageStore { .. }
            | Action::RemoveRanges { .. }
            | Action::RemoveAccount { .. } => ActionData::None {},
        };
        ActionView {
            action: action.kind(),
            file: action.file(),
            description: action.describe(),
            data,
        }
    }
}

impl Outcome {
    /// Pending (1) when a dry run found changes to make.
    pub fn status(&self, dry_run: bool) -> Status {
        Status::pending_if(dry_run && !self.plan.actions.is_empty())
    }

    pub fn view(&self, dry_run: bool, diff: bool) -> EnableView<'_> {
        let plan = &self.plan;
        let m = &plan.mapping;
        EnableView {
            command: "enable",
            ok: true,
            changed: self.changed(),
            dry_run,
            remap: &m.spec,
            user: &m.user,
            group: &m.group,
            uid: m.uid,
            gid: m.gid,
            uid_start: m.uid_ranges.first().map(|r| r.start),
            gid_start: m.gid_ranges.first().map(|r| r.start),
            count: m.uid_count().min(m.gid_count()),
            uid_ranges: &m.uid_ranges,
            gid_ranges: &m.gid_ranges,
            data_root: &plan.data_root,
            data_root_dir: m.data_root_dir(),
            remapped_data_root: m.data_root_dir().map(|d| plan.data_root.join(d)),
            config: &plan.config_path,
            actions: plan.actions.iter().map(ActionView::of).collect(),
            closing: self.closing().view(&plan.changes, diff),
        }
    }

    fn closing(&self) -> Closing<'_> {
        Closing {
            warnings: &self.plan.warnings,
            daemon: &self.daemon,
            migrated: self.migrated.as_ref(),
            carried: self.carried.as_ref(),
            phases: &self.phases,
        }
    }

    pub fn render_human(&self, dry_run: bool, diff: bool, verbose: bool) -> String {
        let paint = Paint::for_stdout();
        let plan = &self.plan;
        let m = &plan.mapping;
        let mut out = report::changes_heading(
            "enable",
            &plan.changes,
            plan.actions.len(),
            (dry_run, diff),
            "the files already say so",
        );
        out.push_str(&action_lines(&paint, Mark::Add, &plan.actions, verbose));
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
        out.push_str(&self.closing().render_human(&paint, verbose));
        out
    }
}

fn show_ranges(ranges: &[IdRange]) -> String {
    let shown: Vec<String> = ranges.iter().map(IdRange::to_string).collect();
    shown.join(", then ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Mapping;
    use crate::accounts::allocate::SubIdKind;
    use crate::daemon::api::DaemonInfo;
    use crate::outcome::DaemonState;
    use crate::phases::Phases;
    use crate::plan::Plan;
    use serde_json::json;

    fn outcome(actions: Vec<Action>, daemon: DaemonState) -> Outcome {
        let range = IdRange {
            start: 100_000,
            count: 65_536,
        };
        Outcome {
            plan: Plan {
                mapping: Mapping {
                    spec: "default".into(),
                    user: "dockremap".into(),
                    group: "dockremap".into(),
                    uid: Some(999),
                    gid: None,
                    uid_ranges: vec![range],
                    gid_ranges: vec![range],
                },
                actions,
                changes: Vec::new(),
                warnings: Vec::new(),
                config_path: "/etc/docker/daemon.json".into(),
                data_root: "/var/lib/docker".into(),
            },
            applied: true,
            daemon,
            migrated: None,
            carried: None,
            phases: Phases::default(),
        }
    }

    #[test]
    fn each_action_carries_its_data_after_kind_file_and_description() {
        let actions = vec![
            Action::AddRange {
                kind: SubIdKind::Uid,
                owner: "dockremap".into(),
                range: IdRange {
                    start: 100_000,
                    count: 65_536,
                },
            },
            Action::SetRemap {
                path: "/etc/docker/daemon.json".into(),
                from: None,
                to: "default".into(),
            },
            Action::RestartDaemon {
                command: "systemctl restart docker".into(),
            },
        ];
        let daemon = DaemonState::Planned { restart: true };
        let value = serde_json::to_value(outcome(actions, daemon).view(true, false)).unwrap();
        let keys =
            |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            keys(&value["actions"][0]),
            ["action", "file", "description", "owner", "start", "count"]
        );
        assert_eq!(value["actions"][1]["from"], json!(null));
        assert_eq!(value["actions"][1]["to"], "default");
        assert_eq!(value["actions"][2]["file"], json!(null));
        assert_eq!(value["actions"][2]["command"], "systemctl restart docker");
        assert_eq!(
            value["daemon"],
            json!({"managed": true, "restarted": false, "restart_needed": true})
        );
        assert_eq!(
            value["uid_ranges"],
            json!([{"start": 100000, "count": 65536}])
        );
        assert_eq!(value["remapped_data_root"], "/var/lib/docker/100000.100000");
        assert_eq!(value["migration"], json!(null));
        assert_eq!(value["phases"], json!(null));
        assert!(value.get("diff").is_none(), "diff only with --diff");
    }

    #[test]
    fn a_verified_daemon_shows_what_it_reported() {
        let info = DaemonInfo {
            server_version: "28.1.0".into(),
            security_options: vec!["name=userns".into()],
            docker_root_dir: "/var/lib/docker/100000.100000".into(),
            ..Default::default()
        };
        let daemon = DaemonState::Verified {
            restarted: true,
            info,
        };
        let outcome = outcome(Vec::new(), daemon);
        let value = serde_json::to_value(outcome.view(false, true)).unwrap();
        assert_eq!(
            value["daemon"],
            json!({
                "managed": true,
                "restarted": true,
                "userns_active": true,
                "docker_root_dir": "/var/lib/docker/100000.100000",
                "security_options": ["name=userns"],
                "server_version": "28.1.0",
            })
        );
        assert_eq!(value["diff"], "");
        assert!(outcome.render_human(false, false, false).contains(
            "daemon      restarted; remapping active, DockerRootDir /var/lib/docker/100000.100000\n"
        ));
    }
}
