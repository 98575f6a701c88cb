//! What `enable` changes, decided from the observed host, and the action
//! model `enable` and `disable` share (each action carries its data).
//! Nothing here writes: the executor runs the actions.

use std::path::{Path, PathBuf};

use crate::accounts::Mapping;
use crate::accounts::allocate::{
    AllocateError, IdSources, SubIdKind, collisions, owned_ranges, range_need, range_to_add,
};
use crate::accounts::create::{self as account, AccountError};
use crate::accounts::resolve::{Accounts, ResolveError, resolve_accounts, same_accounts};
use crate::config::daemon_json::USERNS_REMAP;
use crate::config::{Malformed, ParseError};
use crate::host::{Host, Snapshot};
use crate::ids::{self, IdRange, RemapSpec, SpecError};
use crate::observe::{LoadError, Observed};
use crate::paths::{GROUP, GSHADOW, NSSWITCH, PASSWD, SHADOW, SUBGID, SUBUID};
use crate::request::EnableRequest;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("--user {value:?}")]
    Spec {
        value: String,
        #[source]
        source: SpecError,
    },
    #[error("--count {0}: at least {min} ids are needed (container images use ids up to 65534)", min = ids::MIN_COUNT)]
    CountTooSmall(u64),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Allocate(#[from] AllocateError),
    #[error(transparent)]
    Store(#[from] crate::image_store::StoreError),
    #[error("the host did not converge: after applying, the plan still wants: {0}")]
    NotConverged(String),
    /// `--migrate`'s check of the roots found what it cannot move.
    #[error("--migrate: {0:#} (nothing was changed)")]
    MigrateRefused(crate::migrate::MigrateError),
    /// `--migrate` on the containerd store needs dockerd's API.
    #[error(
        "--migrate on the containerd image store ({why}) carries images and containers through dockerd's API: start dockerd first, and let docker-userns restart it (no --no-restart) (nothing was changed)"
    )]
    CarryNeedsDaemon { why: String },
    /// Stopping dockerd would not stop the containers `--migrate` moves.
    #[error(
        "\"live-restore\": true keeps containers running while dockerd is stopped; stop them (or turn it off) before --migrate"
    )]
    LiveRestore,
}

impl PlanError {
    /// The input file position behind this error, if any.
    pub fn location(&self) -> Option<crate::error::Location> {
        match self {
            PlanError::Parse(e) => e.location(),
            PlanError::Load(e) => e.location(),
            PlanError::Account(e) => e.location(),
            PlanError::Allocate(e) => e.location(),
            PlanError::Store(e) => e.location(),
            PlanError::Spec { .. }
            | PlanError::CountTooSmall(_)
            | PlanError::Resolve(_)
            | PlanError::NotConverged(_)
            | PlanError::MigrateRefused(_)
            | PlanError::CarryNeedsDaemon { .. }
            | PlanError::LiveRestore => None,
        }
    }
}

/// One change `enable` or `disable` makes, with the data it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    CreateGroup {
        name: String,
        tool: &'static str,
        command: Option<String>,
    },
    CreateUser {
        name: String,
        group: String,
        tool: &'static str,
        command: Option<String>,
    },
    AddRange {
        kind: SubIdKind,
        owner: String,
        range: IdRange,
    },
    SetRemap {
        path: PathBuf,
        from: Option<String>,
        to: String,
    },
    /// Restart dockerd so the configuration takes effect, then verify it.
    RestartDaemon { command: String },
    /// Add the shadow/gshadow entries an interrupted creation left out.
    CompleteAccount {
        name: String,
        shadow: bool,
        gshadow: bool,
    },
    /// Move the daemon's state into (or out of) the remapped root and
    /// shift its ids, while dockerd is stopped.
    MigrateData {
        from: PathBuf,
        to: PathBuf,
        content: String,
        /// Out of the remapped root, back to the plain one (`disable`).
        back: bool,
    },
    /// Write `"containerd-snapshotter": false` in daemon.json's
    /// `features`, keeping the user's value for `disable`.
    PinImageStore {
        path: PathBuf,
        /// The `features` value as the file has it, if any.
        from: Option<String>,
        to: String,
        /// What shows the containerd store.
        why: String,
    },
    /// Carry the containerd store's images (saved to `spool` before the
    /// restart, loaded after) and re-create its containers.
    /// With `back` (`disable`), the other way: from the remapped daemon
    /// into the containerd store.
    CarryImages {
        spool: PathBuf,
        images: Vec<String>,
        containers: Vec<String>,
        back: bool,
    },
    /// Take `"userns-remap"` out of daemon.json.
    RemoveRemap { path: PathBuf, from: String },
    /// Put back the `features` value `enable` pinned (`None`: no key).
    RestoreImageStore { path: PathBuf, to: Option<String> },
    /// Remove the owner's lines from subuid and subgid (`--purge`).
    RemoveRanges { owner: String },
    /// Remove the user and group (`--purge`).
    RemoveAccount { name: String },
}

impl Action {
    /// Whether it creates the remap account or its ranges: until they
    /// exist dockerd must not see userns-remap, as `--validate` (26+)
    /// would create them itself, with its own allocator.
    pub fn creates_account(&self) -> bool {
        matches!(
            self,
            Action::CreateGroup { .. } | Action::CreateUser { .. } | Action::AddRange { .. }
        )
    }

    /// Whether it is one of the daemon.json edits, which one write carries.
    pub fn edits_config(&self) -> bool {
        matches!(
            self,
            Action::SetRemap { .. }
                | Action::PinImageStore { .. }
                | Action::RemoveRemap { .. }
                | Action::RestoreImageStore { .. }
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Action::CreateGroup { .. } => "create_group",
            Action::CreateUser { .. } => "create_user",
            Action::AddRange {
                kind: SubIdKind::Uid,
                ..
            } => "add_subuid_range",
            Action::AddRange {
                kind: SubIdKind::Gid,
                ..
            } => "add_subgid_range",
            Action::SetRemap { .. } => "set_userns_remap",
            Action::RestartDaemon { .. } => "restart_daemon",
            Action::CompleteAccount { .. } => "complete_account",
            Action::MigrateData { .. } => "migrate_data",
            Action::PinImageStore { .. } => "pin_image_store",
            Action::CarryImages { .. } => "carry_images",
            Action::RemoveRemap { .. } => "remove_userns_remap",
            Action::RestoreImageStore { .. } => "restore_image_store",
            Action::RemoveRanges { .. } => "remove_ranges",
            Action::RemoveAccount { .. } => "remove_account",
        }
    }

    pub fn file(&self) -> Option<PathBuf> {
        match self {
            Action::CreateGroup { .. } => Some(GROUP.into()),
            Action::CreateUser { .. } => Some(PASSWD.into()),
            Action::AddRange { kind, .. } => Some(kind.path().into()),
            Action::SetRemap { path, .. } => Some(path.clone()),
            Action::RestartDaemon { .. } => None,
            Action::CompleteAccount { .. } => Some(SHADOW.into()),
            Action::MigrateData { from, .. } => Some(from.clone()),
            Action::PinImageStore { path, .. } => Some(path.clone()),
            Action::CarryImages { spool, .. } => Some(spool.clone()),
            Action::RemoveRemap { path, .. } | Action::RestoreImageStore { path, .. } => {
                Some(path.clone())
            }
            Action::RemoveRanges { .. } => Some(SUBUID.into()),
            Action::RemoveAccount { .. } => Some(PASSWD.into()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Action::CreateGroup { name, tool, .. } => {
                format!("create system group {name} ({tool})")
            }
            Action::CreateUser {
                name, group, tool, ..
            } => {
                format!("create system user {name} in group {group} ({tool})")
            }
            Action::AddRange { kind, owner, range } => {
                format!(
                    "add {owner}:{}:{} to {}",
                    range.start,
                    range.count,
                    kind.path().display()
                )
            }
            Action::SetRemap {
                path,
                from: None,
                to,
            } => format!("set \"userns-remap\": {to:?} in {}", path.display()),
            Action::SetRemap {
                path,
                from: Some(from),
                to,
            } => {
                format!(
                    "change \"userns-remap\" from {from:?} to {to:?} in {}",
                    path.display()
                )
            }
            Action::RestartDaemon { command } => format!("restart dockerd ({command}) and verify"),
            Action::MigrateData {
                from,
                to,
                content,
                back,
            } => format!(
                "move {content} from {}{} {} and shift their ids",
                from.display(),
                if *back { " back to" } else { " to" },
                to.display()
            ),
            Action::PinImageStore { path, to, why, .. } => format!(
                "set \"features\": {to} in {} (the containerd image store is in use: {why}; with userns-remap dockerd needs the graph driver; disable puts the current value back)",
                path.display()
            ),
            Action::CarryImages {
                spool,
                images,
                containers,
                back: true,
            } => format!(
                "save images [{}] to {} before the restart, load them into the containerd store after it, and re-create containers [{}] unless one of the same name from before enable is back",
                images.join(", "),
                spool.display(),
                containers.join(", ")
            ),
            Action::CarryImages {
                spool,
                images,
                containers,
                back: false,
            } => format!(
                "save images [{}] to {} before the restart, load them into the remapped daemon after it, and re-create containers [{}]",
                images.join(", "),
                spool.display(),
                containers.join(", ")
            ),
            Action::CompleteAccount {
                name,
                shadow,
                gshadow,
            } => {
                let files: Vec<&str> = [(*shadow, SHADOW), (*gshadow, GSHADOW)]
                    .into_iter()
                    .filter_map(|(missing, file)| missing.then_some(file))
                    .collect();
                format!("add {name}'s missing entry to {}", files.join(" and "))
            }
            Action::RemoveRemap { path, from } => {
                format!("remove \"userns-remap\": {from:?} from {}", path.display())
            }
            Action::RestoreImageStore { path, to: Some(to) } => format!(
                "put \"features\": {to} back in {} (the image store chosen before enable)",
                path.display()
            ),
            Action::RestoreImageStore { path, to: None } => format!(
                "remove \"features\" from {} (it was not set before enable)",
                path.display()
            ),
            Action::RemoveRanges { owner } => {
                format!("remove {owner}'s lines from {SUBUID} and {SUBGID}")
            }
            Action::RemoveAccount { name } => format!("remove user and group {name}"),
        }
    }
}

/// A problem worth telling the user that does not stop `enable`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

/// A file's content before and after, for `--diff`.
#[derive(Debug, Clone)]
pub struct FileChange {
    pub path: PathBuf,
    pub old: String,
    pub new: String,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub mapping: Mapping,
    pub actions: Vec<Action>,
    pub changes: Vec<FileChange>,
    pub warnings: Vec<Warning>,
    pub config_path: PathBuf,
    pub data_root: PathBuf,
}

pub fn plan(
    host: &Host,
    observed: &Observed,
    spec: &RemapSpec,
    request: &EnableRequest,
) -> Result<Plan, PlanError> {
    let accounts = resolve_accounts(
        host,
        &observed.passwd,
        &observed.groups,
        spec,
        &request.user,
    )?;
    let mut actions = Vec::new();
    let mut changes = Vec::new();
    if accounts.gid.is_none() {
        actions.push(Action::CreateGroup {
            name: accounts.group.clone(),
            tool: observed.tool.label(false),
            command: account::group_command(&observed.tool, &accounts.group).map(show_command),
        });
    }
    if accounts.uid.is_none() {
        actions.push(Action::CreateUser {
            name: accounts.user.clone(),
            group: accounts.group.clone(),
            tool: observed.tool.label(true),
            command: account::user_command(host, &observed.tool, &accounts.user, &accounts.group)
                .map(show_command),
        });
    }
    if spec.default {
        actions.extend(completion(observed, &accounts));
    }
    let creating = accounts.uid.is_none() || accounts.gid.is_none();
    let mut mapping = Mapping {
        spec: request.user.clone(),
        user: accounts.user.clone(),
        group: accounts.group.clone(),
        uid: accounts.uid,
        gid: accounts.gid,
        uid_ranges: Vec::new(),
        gid_ranges: Vec::new(),
    };
    for kind in [SubIdKind::Uid, SubIdKind::Gid] {
        let (file, snapshot) = match kind {
            SubIdKind::Uid => (&observed.subuid, &observed.subuid_file),
            SubIdKind::Gid => (&observed.subgid, &observed.subgid_file),
        };
        let need = range_need(
            &id_sources(observed),
            kind,
            file,
            &accounts.user,
            accounts.uid,
            request.count,
            creating,
        )?;
        let mut ranges = owned_ranges(&need);
        if let Some(range) = range_to_add(&need, &host.display(kind.path()))? {
            actions.push(Action::AddRange {
                kind,
                owner: accounts.user.clone(),
                range,
            });
            changes.push(FileChange {
                path: host.display(kind.path()),
                old: snapshot_text(snapshot),
                new: file.with_appended(&accounts.user, range),
            });
            ranges.push(range);
        }
        match kind {
            SubIdKind::Uid => mapping.uid_ranges = ranges,
            SubIdKind::Gid => mapping.gid_ranges = ranges,
        }
    }
    let config_display = host.display(&observed.config_path);
    let current = observed.config.string(USERNS_REMAP)?;
    let equivalent = current.as_deref().is_some_and(|value| {
        same_accounts(host, &observed.passwd, &observed.groups, value, &accounts)
    });
    if !equivalent {
        let text = observed.config.with_string(USERNS_REMAP, &request.user);
        actions.push(Action::SetRemap {
            path: config_display.clone(),
            from: current,
            to: request.user.clone(),
        });
        changes.push(FileChange {
            path: config_display.clone(),
            old: observed.config.text().to_owned(),
            new: text,
        });
    }
    let data_root = observed.data_root.clone()?;
    Ok(Plan {
        warnings: warnings(host, observed, &mapping),
        mapping,
        actions,
        changes,
        config_path: config_display,
        data_root,
    })
}

/// The account databases that say which ids are in use, as observed.
fn id_sources(observed: &Observed) -> IdSources<'_> {
    IdSources {
        passwd: &observed.passwd,
        groups: &observed.groups,
        login_defs: &observed.login_defs,
    }
}

/// The dockremap account exists but an interrupted creation left its
/// shadow or gshadow entry out (pwck would flag it): put it back.
fn completion(observed: &Observed, accounts: &Accounts) -> Option<Action> {
    let lacks = |names: &Option<Vec<String>>, name: &str| {
        names.as_ref().is_some_and(|n| !n.iter().any(|x| x == name))
    };
    let shadow = accounts.uid.is_some() && lacks(&observed.shadow_names, &accounts.user);
    let gshadow = accounts.gid.is_some() && lacks(&observed.gshadow_names, &accounts.group);
    (shadow || gshadow).then(|| Action::CompleteAccount {
        name: accounts.user.clone(),
        shadow,
        gshadow,
    })
}

fn snapshot_text(snapshot: &Option<Snapshot>) -> String {
    snapshot
        .as_ref()
        .map(|s| String::from_utf8_lossy(&s.bytes).into_owned())
        .unwrap_or_default()
}

fn show_command((program, args): (PathBuf, Vec<std::ffi::OsString>)) -> String {
    let mut words = vec![program.display().to_string()];
    words.extend(args.iter().map(|a| {
        let a = a.to_string_lossy();
        if a.contains(' ') {
            format!("'{a}'")
        } else {
            a.into_owned()
        }
    }));
    words.join(" ")
}

fn warnings(host: &Host, observed: &Observed, mapping: &Mapping) -> Vec<Warning> {
    let mut out = Vec::new();
    let mut malformed = |path: &str, list: &[Malformed]| {
        for m in list {
            out.push(Warning {
                file: host.display(Path::new(path)),
                line: Some(m.line),
                message: format!("line kept as is but ignored: {}", m.reason),
            });
        }
    };
    malformed(SUBUID, &observed.subuid.malformed);
    malformed(SUBGID, &observed.subgid.malformed);
    malformed(PASSWD, &observed.passwd.malformed);
    malformed(GROUP, &observed.groups.malformed);
    if let Some(line) = observed.nsswitch_subid_line {
        out.push(Warning {
            file: host.display(Path::new(NSSWITCH)),
            line: Some(line),
            message: "a `subid:` source is configured, but dockerd reads only /etc/subuid and /etc/subgid".into(),
        });
    }
    for kind in [SubIdKind::Uid, SubIdKind::Gid] {
        let file = match kind {
            SubIdKind::Uid => &observed.subuid,
            SubIdKind::Gid => &observed.subgid,
        };
        let found = collisions(file, &observed.passwd, &observed.groups, mapping, kind);
        out.extend(found.into_iter().map(|c| Warning {
            file: host.display(kind.path()),
            line: c.line,
            message: c.message,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disable_moves_and_carries_back_and_says_so() {
        let migrate = |back| Action::MigrateData {
            from: "/var/lib/docker/100000.100000".into(),
            to: "/var/lib/docker".into(),
            content: "2 images".into(),
            back,
        };
        assert_eq!(
            migrate(true).describe(),
            "move 2 images from /var/lib/docker/100000.100000 back to /var/lib/docker and shift their ids"
        );
        assert_eq!(
            migrate(false).describe(),
            "move 2 images from /var/lib/docker/100000.100000 to /var/lib/docker and shift their ids"
        );
        let carry = Action::CarryImages {
            spool: "/var/lib/docker/spool".into(),
            images: vec!["alpine:3".into()],
            containers: vec!["web".into()],
            back: true,
        };
        assert!(
            carry
                .describe()
                .contains("into the containerd store after it")
        );
        assert_eq!(carry.kind(), "carry_images");
    }

    #[test]
    fn disable_actions_keep_their_kinds() {
        let kinds: Vec<&str> = [
            Action::RemoveRemap {
                path: "/etc/docker/daemon.json".into(),
                from: "default".into(),
            },
            Action::RestoreImageStore {
                path: "/etc/docker/daemon.json".into(),
                to: None,
            },
            Action::RemoveRanges {
                owner: "dockremap".into(),
            },
            Action::RemoveAccount {
                name: "dockremap".into(),
            },
        ]
        .iter()
        .map(Action::kind)
        .collect();
        assert_eq!(
            kinds,
            [
                "remove_userns_remap",
                "restore_image_store",
                "remove_ranges",
                "remove_account"
            ]
        );
    }
}
