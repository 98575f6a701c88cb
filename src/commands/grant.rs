//! `grant`: make a bind-mount source usable by a container user under
//! remapping, with the least change: `x` (or an ACL `x` entry) on each
//! parent that blocks, and the source itself owned by, or ACL-granted to,
//! the mapped id.
//!
//! The path is walked without following links, under parents only root can
//! change, to a directory or a single-named regular file; every change is
//! made through the handles the walk opened, never by looking a path up
//! again, so a container or a user swapping names meanwhile changes nothing.

mod render;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, FileType, Mode, OFlags};

use crate::access::{
    self, ACCESS_ACL, Component, DEFAULT_ACL, EXEC, GROUP_OBJ, MASK, NO_ID, OTHER, Opened, READ,
    Subject, USER_OBJ, WRITE, WalkError, swappable,
};
use crate::host::{Host, HostError};
use crate::shift::acl::{Acl, AclEntry, GROUP, USER};

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error(
        "{path}: {why}: someone other than root could swap what grant opens below it \
         for a link, so grant works only below directories that only root can change \
         (make it root's and not writable by others, or grant a path not below it)"
    )]
    SwappableParent { path: PathBuf, why: String },
    #[error("{path}: {what}")]
    Target { path: PathBuf, what: String },
    #[error("{path}: was replaced while grant held it; nothing was changed")]
    Replaced { path: PathBuf },
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
    /// The path the fix changes.
    pub fn path(&self) -> &Path {
        match self {
            Fix::OtherExec { path, .. } | Fix::Chown { path, .. } | Fix::AclUser { path, .. } => {
                path
            }
        }
    }

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

/// Refuses a walk grant must not act on: a parent someone else could
/// rename entries of, or a target other than a directory or a regular file
/// with one name (another name of it may be /etc/shadow).
pub fn refuse_unsafe(host: &Host, walk: &[Opened]) -> Result<(), GrantError> {
    let Some((target, parents)) = walk.split_last() else {
        return Ok(());
    };
    for parent in parents {
        let acl = access::read_acl(&parent.fd, ACCESS_ACL);
        let st = &parent.stat;
        if let Some(why) = swappable(st.st_uid, st.st_gid, st.st_mode & 0o7777, acl.as_ref()) {
            return Err(GrantError::SwappableParent {
                path: host.display(&parent.path),
                why,
            });
        }
    }
    let what = match target.file_type() {
        FileType::Directory => return Ok(()),
        FileType::RegularFile if target.stat.st_nlink <= 1 => return Ok(()),
        FileType::RegularFile => format!(
            "is a regular file with {} hard links; another of its names may be a file \
             like /etc/shadow, so grant changes only files with one name",
            target.stat.st_nlink
        ),
        FileType::Fifo => kind_refusal("a FIFO"),
        FileType::CharacterDevice => kind_refusal("a character device"),
        FileType::BlockDevice => kind_refusal("a block device"),
        FileType::Socket => kind_refusal("a socket"),
        other => kind_refusal(&format!("of type {other:?}")),
    };
    Err(GrantError::Target {
        path: host.display(&target.path),
        what,
    })
}

fn kind_refusal(kind: &str) -> String {
    format!("is {kind}; grant changes only directories and regular files")
}

/// Applies the fixes through the walk's handles. Every handle is opened
/// before the first change, so one that cannot be leaves all as it was.
pub fn apply(host: &Host, walk: &[Opened], fixes: &[Fix]) -> Result<(), GrantError> {
    let handles = fixes
        .iter()
        .map(|fix| {
            let opened = walk
                .iter()
                .find(|o| o.path == fix.path())
                .expect("fixes are planned from the walk's components");
            reopen(host, opened)
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (fix, fd) in fixes.iter().zip(&handles) {
        let path = fix.path();
        match fix {
            Fix::OtherExec { .. } => other_exec(host, path, fd)?,
            Fix::Chown { to, .. } => chown(host, path, fd, *to)?,
            Fix::AclUser {
                uid, perm, default, ..
            } => {
                add_acl_user(host, path, fd, ACCESS_ACL, *uid, *perm)?;
                if *default {
                    add_acl_user(host, path, fd, DEFAULT_ACL, *uid, *perm)?;
                }
            }
        }
    }
    Ok(())
}

/// A handle to change the very inode the walk opened: `.` of a held
/// directory, or a held regular file reopened through its O_PATH handle in
/// /proc/self/fd, which names the open inode, not a path.
fn reopen(host: &Host, opened: &Opened) -> Result<OwnedFd, GrantError> {
    let fd = if opened.is_dir() {
        rfs::openat(
            &opened.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    } else {
        rfs::open(
            access::proc_fd(&opened.fd),
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }
    .map_err(|e| apply_error(host, &opened.path, "opening", e))?;
    let st = fstat(host, &opened.path, &fd)?;
    if (st.st_dev, st.st_ino) != (opened.stat.st_dev, opened.stat.st_ino) {
        return Err(GrantError::Replaced {
            path: host.display(&opened.path),
        });
    }
    Ok(fd)
}

fn fstat(host: &Host, path: &Path, fd: &OwnedFd) -> Result<rfs::Stat, GrantError> {
    rfs::fstat(fd).map_err(|e| HostError::io(&host.display(path), e).into())
}

fn other_exec(host: &Host, path: &Path, fd: &OwnedFd) -> Result<(), GrantError> {
    let st = fstat(host, path, fd)?;
    let mode = Mode::from_raw_mode((st.st_mode & 0o7777) | 0o001);
    rfs::fchmod(fd, mode).map_err(|e| apply_error(host, path, "chmod o+x", e))
}

fn chown(host: &Host, path: &Path, fd: &OwnedFd, (uid, gid): (u32, u32)) -> Result<(), GrantError> {
    let st = fstat(host, path, fd)?;
    rfs::fchown(
        fd,
        Some(rfs::Uid::from_raw(uid)),
        Some(rfs::Gid::from_raw(gid)),
    )
    .map_err(|e| apply_error(host, path, "chown", e))?;
    // chown drops set-id bits on files; the owner asked for ownership only.
    let mode = st.st_mode & 0o7777;
    if mode & 0o6000 != 0 {
        rfs::fchmod(fd, Mode::from_raw_mode(mode))
            .map_err(|e| apply_error(host, path, "chmod", e))?;
    }
    Ok(())
}

fn add_acl_user(
    host: &Host,
    path: &Path,
    fd: &OwnedFd,
    name: &str,
    uid: u32,
    perm: u16,
) -> Result<(), GrantError> {
    let st = fstat(host, path, fd)?;
    let acl = with_user(current_acl(fd, name), st.st_mode & 0o777, uid, perm);
    rfs::fsetxattr(fd, name, &acl.encode(), rfs::XattrFlags::empty())
        .map_err(|e| apply_error(host, path, &format!("setting {name}"), e))
}

fn current_acl(fd: &OwnedFd, name: &str) -> Option<Acl> {
    let mut buf = vec![0u8; 4096];
    let len = rfs::fgetxattr(fd, name, &mut buf[..]).ok()?;
    Acl::decode(&buf[..len]).ok()
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
    let observed = crate::observe::observe(host, global);
    let subject = observed
        .configured_mapping(host)
        .and_then(|m| Subject::under(&m, request.as_ids.uid, request.as_ids.gid))
        .ok_or_else(|| GrantRunError::NotConfigured(host.display(&observed.config_path)))?;
    let walk = access::open_components(host, &request.path).map_err(GrantError::from)?;
    refuse_unsafe(host, &walk)?;
    let components = access::assess(&walk, &subject);
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
    apply(host, &walk, &outcome.fixes)?;
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
    let path = fix.path();
    let c = components.iter().find(|c| c.path == path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(extra: AclEntry) -> Acl {
        with_user(None, 0o755, extra.id, extra.perm)
    }

    #[test]
    fn only_root_owned_directories_closed_to_others_or_sticky_are_safe() {
        assert_eq!(swappable(0, 0, 0o755, None), None);
        assert_eq!(swappable(0, 0, 0o1777, None), None, "sticky /tmp");
        assert_eq!(
            swappable(100_000, 100_000, 0o755, None).as_deref(),
            Some("is owned by uid 100000")
        );
        assert!(swappable(0, 0, 0o777, None).unwrap().contains("everyone"));
        assert!(swappable(0, 50, 0o775, None).unwrap().contains("group 50"));
    }

    #[test]
    fn acl_entries_that_let_others_write_count() {
        let writer = acl(AclEntry {
            tag: USER,
            perm: READ | WRITE | EXEC,
            id: 1000,
        });
        assert!(
            swappable(0, 0, 0o775, Some(&writer))
                .unwrap()
                .contains("uid 1000")
        );
        let traverse = acl(AclEntry {
            tag: USER,
            perm: EXEC,
            id: 100_000,
        });
        assert_eq!(
            swappable(0, 0, 0o755, Some(&traverse)),
            None,
            "the --x entries grant adds itself"
        );
    }
}
