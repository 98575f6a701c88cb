//! `check`: read-only diagnostics. Each check has a stable id, a status, a
//! detail naming the file, line or object, and a remedy that is an exact
//! command or edit.

pub mod accounts;
pub mod config;
pub mod containers;
pub mod daemon;
pub mod data_root;
pub mod kernel;
mod outcome;
pub mod paths;

pub use outcome::CheckView;

use std::path::{Path, PathBuf};

use crate::config::daemon_json::{DATA_ROOT, DaemonConfig, USERNS_REMAP};
use crate::config::login_defs::LoginDefs;
use crate::config::passwd::{Groups, Passwd};
use crate::config::subid::SubIdFile;
use crate::host::{FileMeta, Host};
use crate::ids::RemapSpec;
use crate::paths::{DEFAULT_DATA_ROOT, GROUP, LOGIN_DEFS, PASSWD, SUBGID, SUBUID};
use crate::plan;
use crate::request::Global;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// One diagnostic result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub id: &'static str,
    pub title: &'static str,
    pub status: Status,
    pub detail: String,
    pub remedy: Option<String>,
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
}

impl Check {
    pub fn new(
        id: &'static str,
        title: &'static str,
        status: Status,
        detail: impl Into<String>,
    ) -> Self {
        Check {
            id,
            title,
            status,
            detail: detail.into(),
            remedy: None,
            file: None,
            line: None,
        }
    }

    pub fn ok(id: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Check::new(id, title, Status::Ok, detail)
    }

    pub fn warn(id: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Check::new(id, title, Status::Warn, detail)
    }

    pub fn fail(id: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Check::new(id, title, Status::Fail, detail)
    }

    pub fn skip(id: &'static str, title: &'static str, reason: impl Into<String>) -> Self {
        Check::new(id, title, Status::Skip, reason)
    }

    pub fn remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }

    pub fn at(mut self, file: &Path, line: Option<usize>) -> Self {
        self.file = Some(file.to_owned());
        self.line = line;
        self
    }
}

/// Why a file could not be read or parsed, and where.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub message: String,
    pub line: Option<usize>,
}

impl LoadError {
    fn parse(e: crate::config::ParseError) -> Self {
        LoadError {
            message: e.to_string(),
            line: Some(e.line),
        }
    }

    fn host(e: crate::host::HostError) -> Self {
        LoadError {
            message: format!("{e:#}"),
            line: None,
        }
    }
}

/// A file's parsed content, or why it could not be read.
pub type Loaded<T> = Result<T, LoadError>;

/// The remap user's resolved accounts and ranges, as `enable` computes them.
pub use crate::accounts::Mapping as Remap;
/// Everything the checks read, read once.
pub struct Facts<'a> {
    pub host: &'a Host,
    pub config_path: PathBuf,
    pub config_meta: Option<FileMeta>,
    pub config: Loaded<Option<DaemonConfig>>,
    pub passwd: Loaded<Passwd>,
    pub groups: Loaded<Groups>,
    pub subuid: Loaded<SubIdFile>,
    pub subgid: Loaded<SubIdFile>,
    pub login_defs: Loaded<LoginDefs>,
    pub nsswitch_subid_line: Option<usize>,
    pub data_root: PathBuf,
    /// The configured `userns-remap` value, when daemon.json sets one.
    pub remap_spec: Option<String>,
    /// Resolved when the spec and the account files allow.
    pub remap: Option<Remap>,
}

impl<'a> Facts<'a> {
    pub fn gather(host: &'a Host, global: &Global) -> Self {
        let config_path = plan::config_path(host, global);
        let shown = host.display(&config_path);
        let (config_meta, config) = match host.read(&config_path) {
            Ok(Some(s)) => (
                Some(s.meta),
                DaemonConfig::parse(&shown, &s.bytes)
                    .map(Some)
                    .map_err(LoadError::parse),
            ),
            Ok(None) => (None, Ok(None)),
            Err(e) => (None, Err(LoadError::host(e))),
        };
        let remap_spec = config
            .as_ref()
            .ok()
            .and_then(|c| c.as_ref()?.string(USERNS_REMAP).ok().flatten());
        let data_root = global.data_root.clone().unwrap_or_else(|| {
            let configured = config
                .as_ref()
                .ok()
                .and_then(|c| c.as_ref()?.string(DATA_ROOT).ok().flatten());
            configured.map_or_else(|| DEFAULT_DATA_ROOT.into(), PathBuf::from)
        });
        let mut facts = Facts {
            host,
            config_path: shown,
            config_meta,
            config,
            passwd: load(host, PASSWD, Passwd::parse, Passwd::default),
            groups: load(host, GROUP, Groups::parse, Groups::default),
            subuid: load(host, SUBUID, SubIdFile::parse, SubIdFile::default),
            subgid: load(host, SUBGID, SubIdFile::parse, SubIdFile::default),
            login_defs: load(host, LOGIN_DEFS, LoginDefs::parse, || {
                LoginDefs::absent(Path::new(LOGIN_DEFS))
            }),
            nsswitch_subid_line: plan::nsswitch_subid_line(host).ok().flatten(),
            data_root,
            remap_spec,
            remap: None,
        };
        facts.remap = facts.resolve_remap();
        facts
    }

    fn resolve_remap(&self) -> Option<Remap> {
        let text = self.remap_spec.as_deref()?;
        let spec = RemapSpec::parse(text).ok()?;
        let (passwd, groups) = (self.passwd.as_ref().ok()?, self.groups.as_ref().ok()?);
        let accounts =
            crate::accounts::resolve::resolve_accounts(self.host, passwd, groups, &spec, text)
                .ok()?;
        let ranges = |file: &Loaded<SubIdFile>| {
            file.as_ref()
                .map(|f| f.ranges_of(&accounts.user, accounts.uid.unwrap_or(u32::MAX)))
                .unwrap_or_default()
        };
        Some(Remap {
            spec: text.to_owned(),
            uid_ranges: ranges(&self.subuid),
            gid_ranges: ranges(&self.subgid),
            user: accounts.user,
            uid: accounts.uid,
            group: accounts.group,
            gid: accounts.gid,
        })
    }
}

fn load<T>(
    host: &Host,
    path: &str,
    parse: fn(&Path, &[u8]) -> Result<T, crate::config::ParseError>,
    missing: impl FnOnce() -> T,
) -> Loaded<T> {
    let path = Path::new(path);
    match host.read(path) {
        Ok(Some(s)) => parse(&host.display(path), &s.bytes).map_err(LoadError::parse),
        Ok(None) => Ok(missing()),
        Err(e) => Err(LoadError::host(e)),
    }
}

/// Runs every check group in order.
pub fn run(host: &Host, global: &Global, request: &crate::request::CheckRequest) -> Vec<Check> {
    let facts = Facts::gather(host, global);
    let mut checks = Vec::new();
    checks.extend(kernel::checks(&facts));
    checks.extend(config::checks(&facts));
    checks.extend(accounts::checks(&facts));
    checks.extend(data_root::checks(&facts));
    let (live, daemon) = daemon::checks(&facts, global.socket.as_deref());
    checks.extend(live);
    checks.extend(containers::checks(&facts, daemon.as_ref()));
    checks.extend(paths::checks(&facts, request));
    checks
}

/// True when no check failed.
pub fn healthy(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.status != Status::Fail)
}
