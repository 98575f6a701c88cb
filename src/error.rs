//! The one error a command ends with: its message with every cause, the
//! place in an input file it points at, and the exit status it gives.

use std::path::PathBuf;

use serde::Serialize;

use crate::commands::disable::DisableError;
use crate::commands::enable::EnableError;
use crate::commands::grant::GrantRunError;
use crate::config::ParseError;
use crate::host::HostError;
use crate::report::Status;
use crate::shift::ShiftError;

/// A position in an input file: what the JSON error object carries as
/// `file`, `line` and `column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: Option<usize>,
}

impl From<&ParseError> for Location {
    fn from(e: &ParseError) -> Self {
        Location {
            file: e.path.clone(),
            line: e.line,
            column: e.column,
        }
    }
}

impl ParseError {
    pub fn location(&self) -> Option<Location> {
        Some(self.into())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("changing a host needs root; run it with sudo, or add --dry-run to only see the plan")]
    NeedsRoot,
    #[error("opening --root {}", root.display())]
    Root {
        root: PathBuf,
        #[source]
        source: HostError,
    },
    /// The root as `shift` opens it: a directory handle, nothing read.
    #[error("opening --root {}", root.display())]
    RootDir {
        root: PathBuf,
        #[source]
        source: rustix::io::Errno,
    },
    #[error(transparent)]
    Enable(#[from] EnableError),
    #[error(transparent)]
    Disable(#[from] DisableError),
    #[error(transparent)]
    Grant(#[from] GrantRunError),
    #[error(transparent)]
    Shift(#[from] ShiftError),
    #[error("writing the report to stdout")]
    Output(#[source] std::io::Error),
}

impl Error {
    /// Where in an input file the error is, whichever command met it.
    pub fn location(&self) -> Option<Location> {
        match self {
            Error::Enable(e) => e.location(),
            Error::Disable(e) => e.location(),
            Error::NeedsRoot
            | Error::Root { .. }
            | Error::RootDir { .. }
            | Error::Grant(_)
            | Error::Shift(_)
            | Error::Output(_) => None,
        }
    }

    /// Every error exits 2: nothing was left half-done.
    pub fn exit_status(&self) -> Status {
        Status::Error
    }

    /// The message and each cause after it, `: `-separated.
    pub fn message(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            text.push_str(": ");
            text.push_str(&e.to_string());
            cause = e.source();
        }
        text
    }

    /// The JSON object a failed command prints.
    pub fn view<'a>(&self, command: &'a str) -> ErrorView<'a> {
        let location = self.location();
        ErrorView {
            command,
            ok: false,
            changed: false,
            error: ErrorDetail {
                message: self.message(),
                file: location.as_ref().map(|l| l.file.clone()),
                line: location.as_ref().map(|l| l.line),
                column: location.and_then(|l| l.column),
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ErrorView<'a> {
    command: &'a str,
    ok: bool,
    changed: bool,
    error: ErrorDetail,
}

#[derive(Debug, Serialize)]
struct ErrorDetail {
    message: String,
    file: Option<PathBuf>,
    line: Option<usize>,
    column: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Invocation, parse_args};
    use crate::host::{Host, SystemRunner};
    use crate::request::{Command, Request};

    /// A root whose daemon.json (or other file) is broken, under `rel`.
    fn broken_root(rel: &str, text: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        dir
    }

    fn request(root: &std::path::Path, args: &[&str]) -> Request {
        let mut full = vec!["docker-userns".into(), "--root".into(), root.into()];
        full.extend(args.iter().map(std::ffi::OsString::from));
        match parse_args(full) {
            Invocation::Run(request) => *request,
            _ => panic!("{args:?} is a command"),
        }
    }

    /// The error `enable` or `disable` ends with, in a dry run.
    fn failure(root: &std::path::Path, command: &str) -> Error {
        let request = request(root, &[command, "--dry-run"]);
        let host = Host::open(root, Box::new(SystemRunner)).unwrap();
        let g = &request.global;
        let result = match &request.command {
            Command::Enable(r) => crate::commands::enable::run(&host, g, r)
                .map(drop)
                .map_err(Error::from),
            Command::Disable(r) => crate::commands::disable::run(&host, g, r)
                .map(drop)
                .map_err(Error::from),
            _ => unreachable!(),
        };
        result.expect_err("the broken file is refused")
    }

    #[test]
    fn the_message_names_each_cause_after_the_context() {
        let error = Error::Root {
            root: "/nope".into(),
            source: HostError::Io {
                path: "/nope".into(),
                source: std::io::Error::from_raw_os_error(2),
            },
        };
        assert_eq!(
            error.message(),
            "opening --root /nope: /nope: No such file or directory (os error 2)"
        );
        assert_eq!(error.exit_status(), Status::Error);
        assert_eq!(error.location(), None);
    }

    #[test]
    fn a_flag_that_conflicts_with_daemon_json_is_located_in_its_unit_file() {
        let conflict =
            crate::activate::ActivateError::FlagConflict(crate::daemon::flags::FlagSource {
                file: "/etc/systemd/system/docker.service.d/override.conf".into(),
                line: 3,
                flag: "--userns-remap".into(),
                value: Some("default".into()),
            });
        let wanted = Location {
            file: "/etc/systemd/system/docker.service.d/override.conf".into(),
            line: 3,
            column: None,
        };
        let error = Error::from(DisableError::from(conflict));
        assert_eq!(error.location(), Some(wanted));
    }

    #[test]
    fn disable_locates_a_broken_daemon_json_as_enable_does() {
        let root = broken_root("etc/docker/daemon.json", b"{\n  \"debug\": true,\n}\n");
        let file = root.path().join("etc/docker/daemon.json");
        let wanted = Location {
            file: file.clone(),
            line: 3,
            column: Some(1),
        };
        let enable = failure(root.path(), "enable");
        let disable = failure(root.path(), "disable");
        assert_eq!(enable.location().as_ref(), Some(&wanted));
        assert_eq!(disable.location().as_ref(), Some(&wanted));
        assert_eq!(enable.message(), disable.message());

        let request = request(root.path(), &["check"]);
        let Command::Check(check) = &request.command else {
            unreachable!()
        };
        let host = Host::open(root.path(), Box::new(SystemRunner)).unwrap();
        let checks = crate::commands::check::run(&host, &request.global, check);
        let found = checks
            .iter()
            .find(|c| c.file.as_ref() == Some(&file))
            .expect("check names the broken file");
        assert_eq!(found.line, Some(wanted.line));
    }

    #[test]
    fn a_value_of_the_wrong_type_is_located_by_both_commands() {
        let root = broken_root("etc/docker/daemon.json", b"{\"userns-remap\": 1000}");
        let wanted = Some((1, Some(18)));
        for command in ["enable", "disable"] {
            let located = failure(root.path(), command)
                .location()
                .map(|l| (l.line, l.column));
            assert_eq!(located, wanted, "{command}");
        }
    }

    #[test]
    fn the_json_error_keeps_its_fields_and_their_order() {
        let root = broken_root("etc/docker/daemon.json", b"{\"a\": 1");
        let view = failure(root.path(), "disable").view("disable");
        let text = serde_json::to_string(&view).unwrap();
        let file = root.path().join("etc/docker/daemon.json");
        let file = file.display();
        assert_eq!(
            text,
            format!(
                r#"{{"command":"disable","ok":false,"changed":false,"error":{{"message":"{file}:1:8: unexpected end of file, expected ',' or '}}'","file":"{file}","line":1,"column":8}}}}"#
            )
        );
        let unlocated = Error::NeedsRoot.view("enable");
        let value = serde_json::to_value(&unlocated).unwrap();
        assert_eq!(value["error"]["file"], serde_json::Value::Null);
        assert_eq!(value["error"]["line"], serde_json::Value::Null);
        assert_eq!(value["error"]["column"], serde_json::Value::Null);
    }
}
