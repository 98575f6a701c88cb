//! One look at the host: every file a command reads, read once, each kept
//! with its load result, and what follows from them (where daemon.json is,
//! the data root, the remapping it configures). `check` reports each file
//! that did not load as its own failure; `enable` and `disable` need every
//! file and stop at the first that did not ([`Snapshot::complete`]).

use std::path::{Path, PathBuf};

use crate::accounts::Mapping;
use crate::accounts::create::{self, AccountTool};
use crate::accounts::resolve::resolve_accounts;
use crate::config::ParseError;
use crate::config::daemon_json::{DATA_ROOT, DaemonConfig, USERNS_REMAP};
use crate::config::login_defs::LoginDefs;
use crate::config::passwd::{Groups, Passwd};
use crate::config::subid::SubIdFile;
use crate::host::{self, Host, HostError};
use crate::ids::RemapSpec;
use crate::paths::{
    DEFAULT_CONFIG, DEFAULT_DATA_ROOT, GROUP, GSHADOW, LOGIN_DEFS, NSSWITCH, PASSWD, SHADOW,
    SNAP_CONFIG, SUBGID, SUBUID,
};
use crate::request::Global;

/// Why a file could not be read or parsed; a parse error keeps its line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Host(#[from] HostError),
}

impl LoadError {
    /// The line the error points at, when it is a parse error.
    pub fn line(&self) -> Option<usize> {
        match self {
            LoadError::Parse(e) => Some(e.line),
            LoadError::Host(_) => None,
        }
    }

    /// The error as one line, with the causes of a host error.
    pub fn message(&self) -> String {
        match self {
            LoadError::Parse(e) => e.to_string(),
            LoadError::Host(e) => format!("{e:#}"),
        }
    }

    /// The input file position behind this error, if any.
    pub fn location(&self) -> Option<crate::error::Location> {
        match self {
            LoadError::Parse(e) => e.location(),
            LoadError::Host(_) => None,
        }
    }
}

/// A file's parsed content, or why it could not be read.
pub type Loaded<T> = Result<T, LoadError>;

/// Every file of the host the commands read, each with its load result.
pub struct Snapshot {
    /// daemon.json's path as the host names it (not yet shown under `--root`).
    pub config_path: PathBuf,
    /// daemon.json as read; `None` when it is absent or could not be read.
    pub config_file: Option<host::Snapshot>,
    /// daemon.json parsed; an empty configuration when the file is absent.
    pub config: Loaded<DaemonConfig>,
    pub passwd: Loaded<Passwd>,
    pub groups: Loaded<Groups>,
    pub subuid_file: Option<host::Snapshot>,
    pub subuid: Loaded<SubIdFile>,
    pub subgid_file: Option<host::Snapshot>,
    pub subgid: Loaded<SubIdFile>,
    /// shadow's defaults when login.defs is absent.
    pub login_defs: Loaded<LoginDefs>,
    /// The line of nsswitch.conf's `subid:` source, if it has one.
    pub nsswitch_subid_line: Loaded<Option<usize>>,
    /// Names in /etc/shadow and /etc/gshadow (`None` when a file is absent).
    pub shadow_names: Loaded<Option<Vec<String>>>,
    pub gshadow_names: Loaded<Option<Vec<String>>>,
    /// dockerd's data root: `--data-root`, else daemon.json's, else the
    /// default; an error when daemon.json sets it to something not a string.
    pub data_root: Result<PathBuf, ParseError>,
}

/// A snapshot in which every file loaded: what `enable` and `disable` plan
/// from.
pub struct Observed {
    pub config_path: PathBuf,
    pub config_file: Option<host::Snapshot>,
    pub config: DaemonConfig,
    pub passwd: Passwd,
    pub groups: Groups,
    pub subuid_file: Option<host::Snapshot>,
    pub subuid: SubIdFile,
    pub subgid_file: Option<host::Snapshot>,
    pub subgid: SubIdFile,
    pub login_defs: LoginDefs,
    pub nsswitch_subid_line: Option<usize>,
    /// How accounts get created here.
    pub tool: AccountTool,
    pub shadow_names: Option<Vec<String>>,
    pub gshadow_names: Option<Vec<String>>,
    /// Kept as a result: planning reports a bad `data-root` only after
    /// what it checks first (the accounts, the ranges, `userns-remap`).
    pub data_root: Result<PathBuf, ParseError>,
}

/// Where daemon.json is: `--config`, else the snap's when docker is a snap
/// and /etc/docker/daemon.json does not exist, else /etc/docker/daemon.json.
pub fn config_path(host: &Host, global: &Global) -> PathBuf {
    if let Some(path) = &global.config {
        return path.clone();
    }
    let snap_dir = Path::new(SNAP_CONFIG).parent().expect("has a parent");
    if !host.exists(Path::new(DEFAULT_CONFIG)) && host.exists(snap_dir) {
        return SNAP_CONFIG.into();
    }
    DEFAULT_CONFIG.into()
}

/// Reads every file once; nothing here fails, each file keeps its result.
pub fn observe(host: &Host, global: &Global) -> Snapshot {
    let config_path = config_path(host, global);
    let shown = host.display(&config_path);
    let (config_file, config) = load(host, &config_path, DaemonConfig::parse, |_| {
        DaemonConfig::empty(&shown)
    });
    let (subuid_file, subuid) = load(host, Path::new(SUBUID), SubIdFile::parse, |_| {
        SubIdFile::default()
    });
    let (subgid_file, subgid) = load(host, Path::new(SUBGID), SubIdFile::parse, |_| {
        SubIdFile::default()
    });
    let data_root = data_root(global, &config);
    Snapshot {
        config_path,
        config_file,
        config,
        passwd: load(host, Path::new(PASSWD), Passwd::parse, |_| {
            Passwd::default()
        })
        .1,
        groups: load(host, Path::new(GROUP), Groups::parse, |_| Groups::default()).1,
        subuid_file,
        subuid,
        subgid_file,
        subgid,
        login_defs: load(
            host,
            Path::new(LOGIN_DEFS),
            LoginDefs::parse,
            LoginDefs::absent,
        )
        .1,
        nsswitch_subid_line: nsswitch_subid_line(host),
        shadow_names: create::names_in(host, SHADOW).map_err(LoadError::from),
        gshadow_names: create::names_in(host, GSHADOW).map_err(LoadError::from),
        data_root,
    }
}

impl Snapshot {
    /// Every file's content, or the first file (in reading order) that did
    /// not load; with the tool that would create accounts, which only the
    /// commands that change the host look for (on BusyBox that runs it).
    pub fn complete(self, host: &Host) -> Result<Observed, LoadError> {
        let config = self.config?;
        let passwd = self.passwd?;
        let groups = self.groups?;
        let subuid = self.subuid?;
        let subgid = self.subgid?;
        let login_defs = self.login_defs?;
        let nsswitch_subid_line = self.nsswitch_subid_line?;
        let shadow_names = self.shadow_names?;
        let gshadow_names = self.gshadow_names?;
        Ok(Observed {
            config_path: self.config_path,
            config_file: self.config_file,
            config,
            passwd,
            groups,
            subuid_file: self.subuid_file,
            subuid,
            subgid_file: self.subgid_file,
            subgid,
            login_defs,
            nsswitch_subid_line,
            tool: create::detect_tool(host),
            shadow_names,
            gshadow_names,
            data_root: self.data_root,
        })
    }

    /// daemon.json parsed, `None` when the file does not exist.
    pub fn config_if_present(&self) -> Result<Option<&DaemonConfig>, &LoadError> {
        match &self.config {
            Err(e) => Err(e),
            Ok(_) if self.config_file.is_none() => Ok(None),
            Ok(config) => Ok(Some(config)),
        }
    }

    /// The `userns-remap` value daemon.json sets, when it sets a string.
    pub fn remap_spec(&self) -> Option<String> {
        self.config
            .as_ref()
            .ok()?
            .string(USERNS_REMAP)
            .ok()
            .flatten()
    }

    /// The remapping daemon.json configures, resolved against the account
    /// and subid files, when they allow; ranges a file lacks are empty.
    pub fn configured_mapping(&self, host: &Host) -> Option<Mapping> {
        let text = self.remap_spec()?;
        let spec = RemapSpec::parse(&text).ok()?;
        let (passwd, groups) = (self.passwd.as_ref().ok()?, self.groups.as_ref().ok()?);
        let accounts = resolve_accounts(host, passwd, groups, &spec, &text).ok()?;
        let ranges = |file: &Loaded<SubIdFile>| {
            file.as_ref()
                .map(|f| f.ranges_of(&accounts.user, accounts.uid.unwrap_or(u32::MAX)))
                .unwrap_or_default()
        };
        Some(Mapping {
            uid_ranges: ranges(&self.subuid),
            gid_ranges: ranges(&self.subgid),
            spec: text,
            user: accounts.user,
            uid: accounts.uid,
            group: accounts.group,
            gid: accounts.gid,
        })
    }
}

/// Reads and parses one file; `missing` gives its value when it is absent.
fn load<T>(
    host: &Host,
    path: &Path,
    parse: fn(&Path, &[u8]) -> Result<T, ParseError>,
    missing: impl FnOnce(&Path) -> T,
) -> (Option<host::Snapshot>, Loaded<T>) {
    let shown = host.display(path);
    match host.read(path) {
        Ok(Some(file)) => {
            let value = parse(&shown, &file.bytes).map_err(LoadError::from);
            (Some(file), value)
        }
        Ok(None) => (None, Ok(missing(&shown))),
        Err(e) => (None, Err(e.into())),
    }
}

/// Reads and parses one file afresh, for a step that re-reads what it
/// changes; the default value when the file is absent.
pub fn read_parsed<T: Default>(
    host: &Host,
    path: &str,
    parse: fn(&Path, &[u8]) -> Result<T, ParseError>,
) -> Result<(Option<host::Snapshot>, T), LoadError> {
    let (file, value) = load(host, Path::new(path), parse, |_| T::default());
    Ok((file, value?))
}

fn nsswitch_subid_line(host: &Host) -> Loaded<Option<usize>> {
    let Some(file) = host.read(Path::new(NSSWITCH))? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&file.bytes);
    Ok(text
        .lines()
        .position(|l| l.trim_start().starts_with("subid:"))
        .map(|i| i + 1))
}

/// `--data-root`, else daemon.json's `data-root`, else the default. A
/// daemon.json that did not load counts as one without `data-root`: the
/// commands that need it stop on the file itself first.
fn data_root(global: &Global, config: &Loaded<DaemonConfig>) -> Result<PathBuf, ParseError> {
    if let Some(path) = &global.data_root {
        return Ok(path.clone());
    }
    let configured = match config {
        Ok(config) => config.string(DATA_ROOT)?,
        Err(_) => None,
    };
    Ok(configured.map_or_else(|| DEFAULT_DATA_ROOT.into(), PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::SystemRunner;
    use crate::request::Format;

    fn global(root: &Path, data_root: Option<&str>) -> Global {
        Global {
            root: root.to_owned(),
            config: None,
            data_root: data_root.map(PathBuf::from),
            format: Format::Human,
            dry_run: true,
            diff: false,
            quiet: true,
            verbose: false,
            socket: None,
            restart_command: None,
            stop_command: None,
            timeout: std::time::Duration::from_secs(1),
        }
    }

    fn image(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn every_broken_file_keeps_its_error_and_complete_stops_at_the_first() {
        let dir = image(&[
            ("etc/docker/daemon.json", "{\"userns-remap\": }"),
            ("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
            ("etc/group/not-a-file", ""),
        ]);
        let host = Host::open(dir.path(), Box::new(SystemRunner)).unwrap();
        let snapshot = observe(&host, &global(dir.path(), None));
        assert_eq!(snapshot.config.as_ref().unwrap_err().line(), Some(1));
        assert!(snapshot.config_file.is_some());
        assert!(snapshot.passwd.is_ok());
        assert!(matches!(snapshot.groups, Err(LoadError::Host(_))));
        assert_eq!(snapshot.remap_spec(), None);
        assert_eq!(snapshot.data_root, Ok(PathBuf::from(DEFAULT_DATA_ROOT)));
        let Err(LoadError::Parse(first)) = snapshot.complete(&host) else {
            panic!("a broken file must stop complete()");
        };
        assert_eq!(first.path, dir.path().join("etc/docker/daemon.json"));
    }

    #[test]
    fn data_root_is_resolved_once_from_the_flag_then_the_file() {
        let dir = image(&[("etc/docker/daemon.json", "{\"data-root\": 5}")]);
        let host = Host::open(dir.path(), Box::new(SystemRunner)).unwrap();
        let from_file = observe(&host, &global(dir.path(), None));
        assert_eq!(from_file.data_root.unwrap_err().line, 1);
        let flagged = observe(&host, &global(dir.path(), Some("/srv/docker")));
        assert_eq!(flagged.data_root, Ok(PathBuf::from("/srv/docker")));
        let complete = flagged.complete(&host).unwrap();
        assert!(complete.config_file.is_some());
        assert_eq!(complete.passwd.entries.len(), 0);
    }
}
