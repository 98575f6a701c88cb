//! Creating the remap user and group with the tools the system has:
//! shadow's useradd/groupadd, BusyBox adduser/addgroup, or direct edits
//! of passwd/group/shadow/gshadow under shadow's locks (always so under
//! `--root`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::ParseError;
use crate::config::login_defs::{IdKind, LoginDefs};
use crate::config::passwd::{Groups, Passwd, is_valid_account_name};
use crate::files::{atomic, lock};
use crate::host::{Host, HostError};
use crate::ids::{IdRange, first_fit_descending};
use crate::paths::{GROUP, GSHADOW, LOGIN_DEFS, PASSWD, SHADOW};

const GECOS: &str = "docker-userns remap user";
const HOME: &str = "/nonexistent";
const BIN_DIRS: [&str; 4] = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{0:?} is not a name that can be created safely")]
    InvalidName(String),
    #[error("no free system id left in {min}..={max} (SYS_UID_*/SYS_GID_* in /etc/login.defs)")]
    NoFreeId { min: u64, max: u64 },
}

impl AccountError {
    /// The input file position behind this error, if any.
    pub fn location(&self) -> Option<crate::error::Location> {
        match self {
            AccountError::Parse(e) => e.location(),
            AccountError::Host(_)
            | AccountError::Lock(_)
            | AccountError::InvalidName(_)
            | AccountError::NoFreeId { .. } => None,
        }
    }
}

/// How accounts get created on this system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountTool {
    /// shadow's useradd/groupadd (live system only).
    Shadow { useradd: PathBuf, groupadd: PathBuf },
    /// BusyBox with the adduser/addgroup applets.
    BusyBox { busybox: PathBuf },
    /// Direct edits of the account files under shadow's locks.
    Files,
}

impl AccountTool {
    /// How a user (or group) gets created, for the plan.
    pub fn label(&self, user: bool) -> &'static str {
        match (self, user) {
            (AccountTool::Shadow { .. }, true) => "useradd",
            (AccountTool::Shadow { .. }, false) => "groupadd",
            (AccountTool::BusyBox { .. }, true) => "busybox adduser",
            (AccountTool::BusyBox { .. }, false) => "busybox addgroup",
            (AccountTool::Files, _) => "direct edit, locked",
        }
    }
}

/// Picks the tool. Under `--root` the files are always edited directly,
/// by descriptors resolved inside the image: no program from the image is
/// run, and neither is the machine's `useradd --prefix`, which resolves
/// the image's `etc` and every name shadow writes there (`NAME-` backups,
/// `NAME+` temp files, `NAME.lock`) by path, following links out of the
/// image, so a hostile image could have it rewrite the host's /etc.
pub fn detect_tool(host: &Host) -> AccountTool {
    if !host.is_live() {
        return AccountTool::Files;
    }
    let in_root = |name: &str| find_program(host, name);
    if let (Some(useradd), Some(groupadd)) = (in_root("useradd"), in_root("groupadd")) {
        return AccountTool::Shadow { useradd, groupadd };
    }
    if let Some(busybox) = in_root("busybox").filter(|b| busybox_has_adduser(host, b)) {
        return AccountTool::BusyBox { busybox };
    }
    AccountTool::Files
}

pub fn find_program(host: &Host, name: &str) -> Option<PathBuf> {
    BIN_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| host.is_executable(path))
}

fn busybox_has_adduser(host: &Host, busybox: &Path) -> bool {
    host.runner()
        .run(busybox, &["--list".into()])
        .is_ok_and(|list| {
            list.lines().any(|l| l == "adduser") && list.lines().any(|l| l == "addgroup")
        })
}

/// The login shell for the remap user: one that refuses logins.
pub fn nologin_shell(host: &Host) -> &'static str {
    ["/usr/sbin/nologin", "/sbin/nologin"]
        .into_iter()
        .find(|p| host.exists(Path::new(p)))
        .unwrap_or("/bin/false")
}

/// The command line that creates a system group, for display and running.
pub fn group_command(tool: &AccountTool, group: &str) -> Option<(PathBuf, Vec<OsString>)> {
    let mut args: Vec<OsString> = Vec::new();
    let program = match tool {
        AccountTool::Shadow { groupadd, .. } => {
            args.push("--system".into());
            groupadd.clone()
        }
        AccountTool::BusyBox { busybox } => {
            args.extend(["addgroup".into(), "-S".into()]);
            busybox.clone()
        }
        AccountTool::Files => return None,
    };
    args.push(group.into());
    Some((program, args))
}

/// The command line that creates a system user in `group`.
pub fn user_command(
    host: &Host,
    tool: &AccountTool,
    user: &str,
    group: &str,
) -> Option<(PathBuf, Vec<OsString>)> {
    let shell = nologin_shell(host);
    let mut args: Vec<OsString> = Vec::new();
    let program = match tool {
        AccountTool::Shadow { useradd, .. } => {
            for arg in [
                "--system",
                "--no-create-home",
                "--home-dir",
                HOME,
                "--shell",
                shell,
                "--gid",
                group,
                "--comment",
                GECOS,
            ] {
                args.push(arg.into());
            }
            useradd.clone()
        }
        AccountTool::BusyBox { busybox } => {
            for arg in [
                "adduser", "-S", "-D", "-H", "-h", HOME, "-s", shell, "-G", group, "-g", GECOS,
            ] {
                args.push(arg.into());
            }
            busybox.clone()
        }
        AccountTool::Files => return None,
    };
    args.push(user.into());
    Some((program, args))
}

/// Creates a system group unless it exists.
pub fn create_group(host: &Host, tool: &AccountTool, group: &str) -> Result<(), AccountError> {
    if !is_valid_account_name(group) {
        return Err(AccountError::InvalidName(group.into()));
    }
    match group_command(tool, group) {
        Some((program, args)) => Ok(host.runner().run(&program, &args).map(drop)?),
        None => files::add_group(host, group),
    }
}

/// Creates a system user whose primary group is `group` (which exists).
pub fn create_user(
    host: &Host,
    tool: &AccountTool,
    user: &str,
    group: &str,
) -> Result<(), AccountError> {
    if !is_valid_account_name(user) {
        return Err(AccountError::InvalidName(user.into()));
    }
    match user_command(host, tool, user, group) {
        Some((program, args)) => Ok(host.runner().run(&program, &args).map(drop)?),
        None => files::add_user(host, user, group),
    }
}

/// Direct edits, for image roots and systems with neither shadow nor
/// BusyBox's applets.
mod files {
    use super::*;

    pub fn add_group(host: &Host, group: &str) -> Result<(), AccountError> {
        let paths = [Path::new(GROUP), Path::new(GSHADOW)];
        let _locks = lock::lock(host, &paths)?;
        let groups = read(host, GROUP)?;
        let db = Groups::parse(&host.display(Path::new(GROUP)), bytes(&groups))?;
        if db.by_name(group).is_some() {
            return Ok(());
        }
        let (min, max) = system_ids(host, IdKind::Gid)?;
        let taken: Vec<IdRange> = db.entries.iter().map(|e| IdRange::single(e.gid)).collect();
        let gid =
            first_fit_descending(&taken, min, max).ok_or(AccountError::NoFreeId { min, max })?;
        append(host, GROUP, groups.as_ref(), &format!("{group}:x:{gid}:\n"))?;
        if let Some(gshadow) = read(host, GSHADOW)? {
            append(host, GSHADOW, Some(&gshadow), &format!("{group}:!::\n"))?;
        }
        Ok(())
    }

    pub fn add_user(host: &Host, user: &str, group: &str) -> Result<(), AccountError> {
        let paths = [Path::new(PASSWD), Path::new(GROUP), Path::new(SHADOW)];
        let _locks = lock::lock(host, &paths)?;
        let passwd = read(host, PASSWD)?;
        let users = Passwd::parse(&host.display(Path::new(PASSWD)), bytes(&passwd))?;
        if users.by_name(user).is_some() {
            return Ok(());
        }
        let groups = read(host, GROUP)?;
        let groups = Groups::parse(&host.display(Path::new(GROUP)), bytes(&groups))?;
        let gid = groups.by_name(group).map(|g| g.gid).ok_or_else(|| {
            ParseError::new(
                host.display(Path::new(GROUP)),
                0,
                format!("group {group:?} does not exist"),
            )
        })?;
        let (min, max) = system_ids(host, IdKind::Uid)?;
        let taken: Vec<IdRange> = users
            .entries
            .iter()
            .map(|e| IdRange::single(e.uid))
            .collect();
        // Like useradd -U, use the group's id as the uid when it is free.
        let uid = if taken.iter().all(|t| t.start != u64::from(gid))
            && (min..=max).contains(&u64::from(gid))
        {
            u64::from(gid)
        } else {
            first_fit_descending(&taken, min, max).ok_or(AccountError::NoFreeId { min, max })?
        };
        let shell = nologin_shell(host);
        append(
            host,
            PASSWD,
            passwd.as_ref(),
            &format!("{user}:x:{uid}:{gid}:{GECOS}:{HOME}:{shell}\n"),
        )?;
        if let Some(shadow) = read(host, SHADOW)? {
            append(host, SHADOW, Some(&shadow), &shadow_line(user))?;
        }
        Ok(())
    }

    /// SYS_*_MIN..=SYS_*_MAX from login.defs, never 0 (a second root) nor
    /// past 2^32-2 (`(uid_t)-1` means "no change" to chown): an image's
    /// login.defs may say anything.
    fn system_ids(host: &Host, kind: IdKind) -> Result<(u64, u64), AccountError> {
        let (min, max) = read_login_defs(host)?.system_bounds(kind)?;
        Ok((min.max(1), max.min(u64::from(u32::MAX) - 1)))
    }

    /// A locked shadow entry, changed today, as useradd writes it.
    pub fn shadow_line(user: &str) -> String {
        let days = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86_400);
        format!("{user}:!:{days}::::::\n")
    }

    /// Appends `line` to an existing file unless `name` already has one.
    pub fn ensure_line(
        host: &Host,
        path: &str,
        name: &str,
        line: &str,
    ) -> Result<(), AccountError> {
        let _locks = lock::lock(host, &[Path::new(path)])?;
        let Some(current) = read(host, path)? else {
            return Ok(());
        };
        let prefix = format!("{name}:");
        if String::from_utf8_lossy(&current.bytes)
            .lines()
            .any(|l| l.starts_with(&prefix))
        {
            return Ok(());
        }
        append(host, path, Some(&current), line)
    }

    fn read(host: &Host, path: &str) -> Result<Option<crate::host::Snapshot>, AccountError> {
        Ok(host.read(Path::new(path))?)
    }

    fn bytes(snapshot: &Option<crate::host::Snapshot>) -> &[u8] {
        snapshot.as_ref().map_or(&[], |s| &s.bytes)
    }

    fn append(
        host: &Host,
        path: &str,
        previous: Option<&crate::host::Snapshot>,
        line: &str,
    ) -> Result<(), AccountError> {
        let mut text = previous.map_or_else(Vec::new, |p| p.bytes.clone());
        if text.last().is_some_and(|&b| b != b'\n') {
            text.push(b'\n');
        }
        text.extend_from_slice(line.as_bytes());
        let path = Path::new(path);
        let backup = previous.map(|_| backup_name(path));
        let job = atomic::Replace {
            path,
            bytes: &text,
            previous,
            backup,
        };
        Ok(atomic::replace(host, &job)?)
    }
}

/// The first field of every line of a shadow-style file, `None` when the
/// file does not exist. Only names are kept: no hash stays in memory.
pub fn names_in(host: &Host, path: &str) -> Result<Option<Vec<String>>, HostError> {
    let Some(snapshot) = host.read(Path::new(path))? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&snapshot.bytes);
    Ok(Some(
        text.lines()
            .filter_map(|l| l.split(':').next())
            .map(str::to_owned)
            .collect(),
    ))
}

/// Adds the shadow and gshadow entries of an existing account when they
/// are missing, as useradd would have written them.
pub fn complete(host: &Host, name: &str, shadow: bool, gshadow: bool) -> Result<(), AccountError> {
    if !is_valid_account_name(name) {
        return Err(AccountError::InvalidName(name.into()));
    }
    if shadow {
        files::ensure_line(host, SHADOW, name, &files::shadow_line(name))?;
    }
    if gshadow {
        files::ensure_line(host, GSHADOW, name, &format!("{name}:!::\n"))?;
    }
    Ok(())
}

/// Removes the lines `doomed` picks from each file, under shadow's locks,
/// atomically and with `NAME-` backups; returns how many went. Files that
/// do not exist or lose nothing are not rewritten.
pub fn remove_lines(
    host: &Host,
    paths: &[&str],
    doomed: &dyn Fn(&str, &str) -> bool,
) -> Result<usize, AccountError> {
    let locked: Vec<&Path> = paths.iter().map(Path::new).collect();
    let _locks = lock::lock(host, &locked)?;
    let mut removed = 0;
    for path in &locked {
        crate::failpoint::hit("account.between_files");
        let Some(snapshot) = host.read(path)? else {
            continue;
        };
        let text = String::from_utf8_lossy(&snapshot.bytes);
        let file = path.to_str().expect("fixed paths are UTF-8");
        let kept: String = text
            .split_inclusive('\n')
            .filter(|line| !doomed(file, line.trim_end_matches('\n')))
            .collect();
        if kept.len() == text.len() {
            continue;
        }
        removed += text.split_inclusive('\n').count() - kept.split_inclusive('\n').count();
        let job = atomic::Replace {
            path,
            bytes: kept.as_bytes(),
            previous: Some(&snapshot),
            backup: Some(backup_name(path)),
        };
        atomic::replace(host, &job)?;
    }
    Ok(removed)
}

/// login.defs under the root; shadow's defaults when it is missing.
pub fn read_login_defs(host: &Host) -> Result<LoginDefs, AccountError> {
    let path = Path::new(LOGIN_DEFS);
    Ok(match host.read(path)? {
        Some(s) => LoginDefs::parse(&host.display(path), &s.bytes)?,
        None => LoginDefs::absent(&host.display(path)),
    })
}

/// shadow's backup name: `NAME-` beside the file.
pub fn backup_name(path: &Path) -> OsString {
    let mut name = path.file_name().expect("file path").to_owned();
    name.push("-");
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A runner that fails the test if anything is run.
    struct NoRunner;

    impl crate::host::Runner for NoRunner {
        fn run(&self, program: &Path, _: &[OsString]) -> Result<String, HostError> {
            panic!("{} was run on an image root", program.display())
        }

        fn run_with_input(
            &self,
            program: &Path,
            _: &[OsString],
            _: std::os::fd::OwnedFd,
        ) -> Result<String, HostError> {
            panic!("{} was run on an image root", program.display())
        }
    }

    #[test]
    fn image_root_with_shadow_and_busybox_is_edited_directly() {
        let dir = tempfile::tempdir().unwrap();
        let sbin = dir.path().join("usr/sbin");
        std::fs::create_dir_all(&sbin).unwrap();
        for tool in ["useradd", "groupadd", "busybox"] {
            std::fs::write(sbin.join(tool), "#!/bin/false\n").unwrap();
            std::fs::set_permissions(sbin.join(tool), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        let host = Host::open(dir.path(), Box::new(NoRunner)).unwrap();
        let tool = detect_tool(&host);
        assert_eq!(tool, AccountTool::Files);
        assert_eq!(group_command(&tool, "dockremap"), None);
        assert_eq!(user_command(&host, &tool, "dockremap", "dockremap"), None);
    }
}
