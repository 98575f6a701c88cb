//! `grant`: make a bind-mount source usable by a container user under
//! remapping, with the least change: `x` (or an ACL `x` entry) on each
//! parent that blocks, and the source itself owned by, or ACL-granted to,
//! the mapped id.

use std::path::{Path, PathBuf};

use rustix::fs as rfs;

use crate::access::{
    self, Component, EXEC, GROUP_OBJ, MASK, NO_ID, OTHER, READ, Subject, USER_OBJ, WRITE,
};
use crate::host::{Host, HostError};
use crate::shift::acl::{Acl, AclEntry, GROUP, USER};

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{path}: {what}")]
    Apply {
        path: PathBuf,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("container uid {0} is outside the remap ranges")]
    Unmapped(u32),
}

/// One change to one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// chmod o+x on a parent.
    OtherExec { path: PathBuf, mode: u32 },
    /// chown the source to the mapped ids.
    Chown {
        path: PathBuf,
        from: (u32, u32),
        to: (u32, u32),
    },
    /// Add (or widen) a named-user ACL entry; `default` also on the default
    /// ACL of a directory, so new files inherit it.
    AclUser {
        path: PathBuf,
        uid: u32,
        perm: u16,
        default: bool,
    },
}

impl Fix {
    pub fn describe(&self) -> String {
        match self {
            Fix::OtherExec { path, mode } => {
                format!(
                    "chmod o+x {} ({:04o} -> {:04o})",
                    path.display(),
                    mode,
                    mode | 0o001
                )
            }
            Fix::Chown { path, from, to } => {
                format!(
                    "chown {}:{} {} (was {}:{})",
                    to.0,
                    to.1,
                    path.display(),
                    from.0,
                    from.1
                )
            }
            Fix::AclUser {
                path,
                uid,
                perm,
                default,
            } => {
                let entry = format!("u:{uid}:{}", access::perm_letters(*perm));
                let spec = if *default {
                    format!("{entry},d:{entry}")
                } else {
                    entry
                };
                format!("setfacl -m {spec} {}", path.display())
            }
        }
    }
}

/// The fixes that let `subject` use `path`; empty when it already can.
pub fn plan(
    components: &[Component],
    subject: &Subject,
    use_acl: bool,
) -> Result<Vec<Fix>, GrantError> {
    let uid = subject
        .host_uid()
        .ok_or(GrantError::Unmapped(subject.inside_uid))?;
    let gid = subject
        .host_gid()
        .ok_or(GrantError::Unmapped(subject.inside_gid))?;
    let mut fixes = Vec::new();
    let Some((last, parents)) = components.split_last() else {
        return Ok(fixes);
    };
    for parent in parents.iter().filter(|c| c.blocked()) {
        fixes.push(if use_acl {
            Fix::AclUser {
                path: parent.path.clone(),
                uid,
                perm: EXEC,
                default: false,
            }
        } else {
            Fix::OtherExec {
                path: parent.path.clone(),
                mode: parent.mode,
            }
        });
    }
    if last.blocked() {
        fixes.push(if use_acl {
            let perm = if last.is_dir {
                READ | WRITE | EXEC
            } else {
                READ | WRITE
            };
            Fix::AclUser {
                path: last.path.clone(),
                uid,
                perm,
                default: last.is_dir,
            }
        } else {
            Fix::Chown {
                path: last.path.clone(),
                from: (last.uid, last.gid),
                to: (uid, gid),
            }
        });
    }
    Ok(fixes)
}

pub fn apply(host: &Host, fixes: &[Fix]) -> Result<(), GrantError> {
    for fix in fixes {
        match fix {
            Fix::OtherExec { path, .. } => other_exec(host, path)?,
            Fix::Chown { path, to, .. } => chown(host, path, *to)?,
            Fix::AclUser {
                path,
                uid,
                perm,
                default,
            } => {
                add_acl_user(host, path, "system.posix_acl_access", *uid, *perm)?;
                if *default {
                    add_acl_user(host, path, "system.posix_acl_default", *uid, *perm)?;
                }
            }
        }
    }
    Ok(())
}

fn other_exec(host: &Host, path: &Path) -> Result<(), GrantError> {
    let fd = host.open_path(path)?;
    let st = rfs::fstat(&fd).map_err(|e| HostError::io(&host.display(path), e))?;
    let mode = rfs::Mode::from_raw_mode((st.st_mode & 0o7777) | 0o001);
    // chmod through /proc/self/fd acts on the inode the O_PATH handle holds.
    rfs::chmod(access::proc_fd(&fd), mode).map_err(|e| apply_error(host, path, "chmod o+x", e))
}

fn chown(host: &Host, path: &Path, (uid, gid): (u32, u32)) -> Result<(), GrantError> {
    let fd = host.open_path(path)?;
    let st = rfs::fstat(&fd).map_err(|e| HostError::io(&host.display(path), e))?;
    rfs::chown(
        access::proc_fd(&fd),
        Some(rfs::Uid::from_raw(uid)),
        Some(rfs::Gid::from_raw(gid)),
    )
    .map_err(|e| apply_error(host, path, "chown", e))?;
    // chown drops set-id bits on files; the owner asked for ownership only.
    let mode = st.st_mode & 0o7777;
    if mode & 0o6000 != 0 {
        rfs::chmod(access::proc_fd(&fd), rfs::Mode::from_raw_mode(mode))
            .map_err(|e| apply_error(host, path, "chmod", e))?;
    }
    Ok(())
}

fn add_acl_user(
    host: &Host,
    path: &Path,
    name: &str,
    uid: u32,
    perm: u16,
) -> Result<(), GrantError> {
    let fd = host.open_path(path)?;
    let st = rfs::fstat(&fd).map_err(|e| HostError::io(&host.display(path), e))?;
    let current = access::read_acl(&fd, name);
    let acl = with_user(current, st.st_mode & 0o777, uid, perm);
    rfs::setxattr(
        access::proc_fd(&fd),
        name,
        &acl.encode(),
        rfs::XattrFlags::empty(),
    )
    .map_err(|e| apply_error(host, path, &format!("setting {name}"), e))
}

/// An ACL with `u:uid:perm` added (or widened) and the mask recomputed,
/// in the order the kernel requires; from the mode when there is none.
pub fn with_user(current: Option<Acl>, mode: u32, uid: u32, perm: u16) -> Acl {
    let bits = |shift: u32| ((mode >> shift) & 7) as u16;
    let mut entries = current.map(|a| a.entries).unwrap_or_else(|| {
        vec![
            AclEntry {
                tag: USER_OBJ,
                perm: bits(6),
                id: NO_ID,
            },
            AclEntry {
                tag: GROUP_OBJ,
                perm: bits(3),
                id: NO_ID,
            },
            AclEntry {
                tag: OTHER,
                perm: bits(0),
                id: NO_ID,
            },
        ]
    });
    match entries.iter_mut().find(|e| e.tag == USER && e.id == uid) {
        Some(e) => e.perm |= perm,
        None => entries.push(AclEntry {
            tag: USER,
            perm,
            id: uid,
        }),
    }
    let group_class = entries
        .iter()
        .filter(|e| matches!(e.tag, USER | GROUP | GROUP_OBJ))
        .fold(0, |acc, e| acc | e.perm);
    match entries.iter_mut().find(|e| e.tag == MASK) {
        // As setfacl does: the mask becomes the union of the group class.
        Some(mask) => mask.perm = group_class,
        None => entries.push(AclEntry {
            tag: MASK,
            perm: group_class,
            id: NO_ID,
        }),
    }
    entries.sort_by_key(|e| (e.tag, e.id));
    Acl { entries }
}

fn apply_error(host: &Host, path: &Path, what: &str, errno: rustix::io::Errno) -> GrantError {
    GrantError::Apply {
        path: host.display(path),
        what: what.to_owned(),
        source: errno.into(),
    }
}

/// The result of `grant`, for the report.
#[derive(Debug, Clone)]
pub struct GrantOutcome {
    pub path: PathBuf,
    pub host_uid: u32,
    pub host_gid: u32,
    pub fixes: Vec<Fix>,
    pub changes: Vec<crate::plan::FileChange>,
    pub applied: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GrantRunError {
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error("no remap mapping is configured in {0}; run `docker-userns enable` first")]
    NotConfigured(PathBuf),
}

pub fn run(
    host: &Host,
    global: &crate::request::Global,
    request: &crate::request::GrantRequest,
) -> Result<GrantOutcome, GrantRunError> {
    let facts = crate::check::Facts::gather(host, global);
    let subject = crate::check::paths::subject(&facts, request.as_ids.uid, request.as_ids.gid)
        .ok_or_else(|| GrantRunError::NotConfigured(facts.config_path.clone()))?;
    let components = access::inspect(host, &request.path, &subject).map_err(GrantError::from)?;
    let fixes = plan(&components, &subject, request.acl)?;
    let changes = fixes
        .iter()
        .filter_map(|f| state_change(host, &components, f))
        .collect();
    let outcome = GrantOutcome {
        path: host.display(&request.path),
        host_uid: subject
            .host_uid()
            .ok_or(GrantError::Unmapped(request.as_ids.uid))?,
        host_gid: subject
            .host_gid()
            .ok_or(GrantError::Unmapped(request.as_ids.gid))?,
        fixes,
        changes,
        applied: false,
    };
    if global.dry_run || outcome.fixes.is_empty() {
        return Ok(outcome);
    }
    apply(host, &outcome.fixes)?;
    Ok(GrantOutcome {
        applied: true,
        ..outcome
    })
}

/// Owner, mode and ACL of a path before and after a fix, as text for `--diff`.
fn state_change(
    host: &Host,
    components: &[Component],
    fix: &Fix,
) -> Option<crate::plan::FileChange> {
    let path = match fix {
        Fix::OtherExec { path, .. } | Fix::Chown { path, .. } | Fix::AclUser { path, .. } => path,
    };
    let c = components.iter().find(|c| &c.path == path)?;
    let before = describe_state(c.uid, c.gid, c.mode, c.acl.as_ref());
    let after = match fix {
        Fix::OtherExec { .. } => describe_state(c.uid, c.gid, c.mode | 0o001, c.acl.as_ref()),
        Fix::Chown { to, .. } => describe_state(to.0, to.1, c.mode, c.acl.as_ref()),
        Fix::AclUser { uid, perm, .. } => {
            let acl = with_user(c.acl.clone(), c.mode & 0o777, *uid, *perm);
            describe_state(c.uid, c.gid, c.mode, Some(&acl))
        }
    };
    Some(crate::plan::FileChange {
        path: host.display(path),
        old: before,
        new: after,
    })
}

fn describe_state(uid: u32, gid: u32, mode: u32, acl: Option<&Acl>) -> String {
    let mut text = format!("owner {uid}:{gid}\nmode {mode:04o}\n");
    for e in acl.map(|a| a.entries.as_slice()).unwrap_or_default() {
        let tag = match e.tag {
            USER_OBJ => "user::".to_owned(),
            USER => format!("user:{}:", e.id),
            GROUP_OBJ => "group::".to_owned(),
            GROUP => format!("group:{}:", e.id),
            MASK => "mask::".to_owned(),
            OTHER => "other::".to_owned(),
            _ => format!("tag {:#x}:", e.tag),
        };
        text.push_str(&format!("acl {tag}{}\n", access::perm_letters(e.perm)));
    }
    text
}
