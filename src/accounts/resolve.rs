//! Which accounts a `userns-remap` value names, resolved against
//! /etc/passwd and /etc/group as dockerd resolves them.

use std::path::{Path, PathBuf};

use crate::config::passwd::{Groups, Passwd};
use crate::host::Host;
use crate::ids::{Principal, RemapSpec};
use crate::paths::{GROUP, PASSWD};

use super::create::AccountError;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "{file}: {what} does not exist; create it first (e.g. `useradd --system {hint}`) or use --user default"
    )]
    MissingUser {
        file: PathBuf,
        what: String,
        hint: String,
    },
    #[error(
        "{file}: {what} does not exist; dockerd needs it for {spec:?} (create it, or name a group with --user USER:GROUP)"
    )]
    MissingGroup {
        file: PathBuf,
        what: String,
        spec: String,
    },
}

/// The accounts a spec names, and which of them must be created.
pub struct Accounts {
    pub user: String,
    pub uid: Option<u32>,
    pub group: String,
    pub gid: Option<u32>,
}

/// Resolves a `userns-remap` value against the account files, as dockerd
/// does; with `default`, a missing dockremap is to be created.
pub fn resolve_accounts(
    host: &Host,
    passwd: &Passwd,
    groups: &Groups,
    spec: &RemapSpec,
    text: &str,
) -> Result<Accounts, ResolveError> {
    let passwd_file = host.display(Path::new(PASSWD));
    let group_file = host.display(Path::new(GROUP));
    let (user, uid) = match &spec.user {
        Principal::Name(name) => match passwd.by_name(name) {
            Some(entry) => (entry.name.clone(), Some(entry.uid)),
            None if spec.default => (name.clone(), None),
            None => {
                return Err(ResolveError::MissingUser {
                    file: passwd_file,
                    what: format!("user {name:?}"),
                    hint: name.clone(),
                });
            }
        },
        Principal::Id(uid) => match passwd.by_uid(*uid) {
            Some(entry) => (entry.name.clone(), Some(*uid)),
            None => {
                return Err(ResolveError::MissingUser {
                    file: passwd_file,
                    what: format!("uid {uid}"),
                    hint: format!("--uid {uid} NAME"),
                });
            }
        },
    };
    // dockerd's lookups: the group named like the user (or with the uid as
    // gid) unless a group is given.
    let group_spec = spec.group.clone().unwrap_or_else(|| spec.user.clone());
    let found = match &group_spec {
        Principal::Name(name) => groups.by_name(name),
        Principal::Id(gid) => groups.by_gid(*gid),
    };
    let (group, gid) = match (found, &group_spec) {
        (Some(entry), _) => (entry.name.clone(), Some(entry.gid)),
        (None, Principal::Name(name)) if spec.default && spec.group.is_none() => {
            (name.clone(), None)
        }
        (None, missing) => {
            let what = match missing {
                Principal::Name(name) => format!("group {name:?}"),
                Principal::Id(gid) => format!("gid {gid}"),
            };
            return Err(ResolveError::MissingGroup {
                file: group_file,
                what,
                spec: text.into(),
            });
        }
    };
    Ok(Accounts {
        user,
        uid,
        group,
        gid,
    })
}

/// True when `value` names the same existing accounts as `wanted`: the
/// configured value then needs no rewrite even if spelled differently.
pub fn same_accounts(
    host: &Host,
    passwd: &Passwd,
    groups: &Groups,
    value: &str,
    wanted: &Accounts,
) -> bool {
    let Ok(spec) = RemapSpec::parse(value) else {
        return false;
    };
    resolve_accounts(host, passwd, groups, &spec, value).is_ok_and(|got| {
        got.user == wanted.user
            && got.group == wanted.group
            && got.uid.is_some()
            && got.gid.is_some()
    })
}

/// /etc/passwd under the root (empty when missing), read afresh.
pub fn read_passwd(host: &Host) -> Result<Passwd, AccountError> {
    let path = Path::new(PASSWD);
    Ok(match host.read(path)? {
        Some(s) => Passwd::parse(&host.display(path), &s.bytes)?,
        None => Passwd::default(),
    })
}
