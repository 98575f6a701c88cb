//! How dockerd is supervised on a host, the commands that stop, start and
//! restart it, and where its recent log lines can be read.
//!
//! Detection only looks at files under a root directory. Programs are
//! resolved to absolute paths from a fixed list of directories, never
//! through `PATH`, and commands are argv vectors that never go through a
//! shell.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::fs as rfs;

use super::{unit, words};
use crate::host::{Host, HostError, SystemRunner};
use crate::paths::{INIT_SCRIPT, LOG_FILES, OPENRC_RUN, RUNIT_DIRS, SNAP_DIR, SNAP_DOCKER};

/// Where service tools are looked up, relative to the root.
pub const PROGRAM_DIRS: &[&str] = &["usr/sbin", "usr/bin", "sbin", "bin"];

const JOURNAL_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_TAIL_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "cannot tell how dockerd is run under {root}: no systemd unit, snap, init script or \
         runit service for docker; give the command with --restart-command"
    )]
    NotDetected { root: PathBuf },
    #[error("{name} is not an executable in {}", display_dirs(.searched))]
    ProgramNotFound {
        name: String,
        searched: Vec<PathBuf>,
    },
    #[error("--restart-command {command:?}: {reason}")]
    BadCommand { command: String, reason: String },
    #[error("a custom --restart-command can only restart dockerd, not {action} it")]
    Unsupported { action: Action },
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    #[cfg(test)]
    Start,
    Stop,
    Restart,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            #[cfg(test)]
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb())
    }
}

/// What runs dockerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceManager {
    Systemd,
    Snap,
    OpenRc,
    /// `dir` is the service directory found under the root.
    Runit {
        dir: PathBuf,
    },
    /// `script` is the init script found under the root.
    SysV {
        script: PathBuf,
    },
    /// The user's `--restart-command`, already split into words.
    Custom {
        argv: Vec<String>,
    },
}

impl fmt::Display for ServiceManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceManager::Systemd => "systemd",
            ServiceManager::Snap => "snap",
            ServiceManager::OpenRc => "OpenRC",
            ServiceManager::Runit { .. } => "runit",
            ServiceManager::SysV { .. } => "SysV init",
            ServiceManager::Custom { .. } => "--restart-command",
        })
    }
}

/// A program by absolute path and its arguments, run without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Invocation {
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        command
    }
}

impl fmt::Display for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program.display())?;
        self.args.iter().try_for_each(|a| write!(f, " {a}"))
    }
}

/// Works out what runs dockerd under `root`. A `--restart-command` wins
/// over detection: the user knows their host better than file probes.
pub fn detect(root: &Path, restart_command: Option<&str>) -> Result<ServiceManager, ServiceError> {
    if let Some(command) = restart_command {
        return custom(command);
    }
    let not_detected = || ServiceError::NotDetected {
        root: root.to_path_buf(),
    };
    let host = open_root(root).ok_or_else(not_detected)?;
    if unit::systemd_runs(&host) && unit::find_unit(&host).is_some() {
        return Ok(ServiceManager::Systemd);
    }
    if host.exists(Path::new(SNAP_DOCKER)) || is_dir(&host, SNAP_DIR) {
        return Ok(ServiceManager::Snap);
    }
    let script = Path::new(INIT_SCRIPT);
    let has_script = is_file(&host, INIT_SCRIPT);
    if has_script && (has_openrc_shebang(&host, script) || host.exists(Path::new(OPENRC_RUN))) {
        return Ok(ServiceManager::OpenRc);
    }
    if let Some(dir) = RUNIT_DIRS.iter().find(|d| is_dir(&host, d)) {
        return Ok(ServiceManager::Runit {
            dir: host.display(Path::new(dir)),
        });
    }
    if has_script {
        return Ok(ServiceManager::SysV {
            script: host.display(script),
        });
    }
    Err(not_detected())
}

/// The root as a [`Host`], so every probe and read below resolves links
/// inside it and never opens anything but a regular file for reading.
fn open_root(root: &Path) -> Option<Host> {
    Host::open(root, Box::new(SystemRunner)).ok()
}

fn kind_is(host: &Host, path: &str, kind: rfs::FileType) -> bool {
    matches!(host.stat(Path::new(path)), Ok(Some(st)) if rfs::FileType::from_raw_mode(st.st_mode) == kind)
}

fn is_dir(host: &Host, path: &str) -> bool {
    kind_is(host, path, rfs::FileType::Directory)
}

fn is_file(host: &Host, path: &str) -> bool {
    kind_is(host, path, rfs::FileType::RegularFile)
}

fn custom(command: &str) -> Result<ServiceManager, ServiceError> {
    let argv = split_words(command)?;
    if argv.is_empty() {
        return Err(bad_command(command, "it is empty"));
    }
    let program = &argv[0];
    if !program.starts_with('/') && program.contains('/') {
        return Err(bad_command(
            command,
            "give the program as an absolute path or a bare name",
        ));
    }
    Ok(ServiceManager::Custom { argv })
}

fn has_openrc_shebang(host: &Host, script: &Path) -> bool {
    let Ok(Some(head)) = host.read_head(script, 128) else {
        return false;
    };
    let first_line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    first_line.starts_with(b"#!") && String::from_utf8_lossy(first_line).contains("openrc-run")
}

impl ServiceManager {
    /// The command that performs `action` on dockerd.
    pub fn command(&self, root: &Path, action: Action) -> Result<Invocation, ServiceError> {
        let verb = action.verb().to_string();
        let (name, args) = match self {
            ServiceManager::Systemd => ("systemctl", vec![verb, "docker".into()]),
            ServiceManager::Snap => ("snap", vec![verb, "docker".into()]),
            ServiceManager::OpenRc => ("rc-service", vec!["docker".into(), verb]),
            // sv takes a service directory path as well as a name; the path
            // does not depend on the SVDIR the user's shell may have.
            ServiceManager::Runit { dir } => ("sv", vec![verb, dir.display().to_string()]),
            ServiceManager::SysV { script } => {
                return Ok(match resolve(root, "service") {
                    Ok(program) => Invocation {
                        program,
                        args: vec!["docker".into(), verb],
                    },
                    Err(_) => Invocation {
                        program: script.clone(),
                        args: vec![verb],
                    },
                });
            }
            ServiceManager::Custom { argv } => return custom_command(root, argv, action),
        };
        Ok(Invocation {
            program: resolve(root, name)?,
            args,
        })
    }

    /// Where dockerd's recent output can be read, if anywhere.
    pub fn log_source(&self, root: &Path, lines: usize) -> Option<LogSource> {
        let unit = match self {
            ServiceManager::Systemd => Some("docker"),
            ServiceManager::Snap => Some("snap.docker.dockerd"),
            _ => None,
        };
        let journal = unit.and_then(|unit| {
            let program = resolve(root, "journalctl").ok()?;
            let args = ["-u", unit, "-n", &lines.to_string(), "--no-pager"].map(String::from);
            Some(LogSource::Journal(Invocation {
                program,
                args: args.to_vec(),
            }))
        });
        journal.or_else(|| {
            let host = open_root(root)?;
            let file = LOG_FILES.iter().find(|f| is_file(&host, f))?;
            Some(LogSource::File(host.display(Path::new(file))))
        })
    }
}

fn custom_command(
    root: &Path,
    argv: &[String],
    action: Action,
) -> Result<Invocation, ServiceError> {
    if action != Action::Restart {
        return Err(ServiceError::Unsupported { action });
    }
    let program = if argv[0].starts_with('/') {
        let path = PathBuf::from(&argv[0]);
        if !is_executable(&path) {
            return Err(ServiceError::ProgramNotFound {
                name: argv[0].clone(),
                searched: vec![path],
            });
        }
        path
    } else {
        resolve(root, &argv[0])?
    };
    Ok(Invocation {
        program,
        args: argv[1..].to_vec(),
    })
}

/// `name` as an absolute path from [`PROGRAM_DIRS`] under `root`.
pub fn resolve(root: &Path, name: &str) -> Result<PathBuf, ServiceError> {
    let searched: Vec<PathBuf> = PROGRAM_DIRS.iter().map(|d| root.join(d)).collect();
    searched
        .iter()
        .map(|dir| dir.join(name))
        .find(|path| is_executable(path))
        .ok_or_else(|| ServiceError::ProgramNotFound {
            name: name.to_string(),
            searched,
        })
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn bad_command(command: &str, reason: &str) -> ServiceError {
    ServiceError::BadCommand {
        command: command.to_string(),
        reason: reason.to_string(),
    }
}

/// Splits a command line into words as a POSIX shell would, without any
/// expansion. Unquoted operators are refused: nothing runs a shell, so
/// `a && b` would silently pass `&&` as an argument.
pub fn split_words(command: &str) -> Result<Vec<String>, ServiceError> {
    words::command_words(command).map_err(|e| bad_command(command, &e.to_string()))
}

/// Where to read dockerd's recent output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSource {
    Journal(Invocation),
    File(PathBuf),
}

/// dockerd's last `lines` log lines, when there is a way to read them.
/// Best effort: this only decorates an error report.
pub fn last_log_lines(root: &Path, manager: &ServiceManager, lines: usize) -> Option<String> {
    let text = match manager.log_source(root, lines)? {
        LogSource::Journal(invocation) => run_captured(&invocation, JOURNAL_TIMEOUT)?,
        LogSource::File(path) => {
            let inside = path.strip_prefix(root).ok()?;
            tail_file(&open_root(root)?, &Path::new("/").join(inside), lines).ok()?
        }
    };
    let text = text.trim_end();
    (!text.is_empty()).then(|| text.to_string())
}

fn run_captured(invocation: &Invocation, timeout: Duration) -> Option<String> {
    let mut child = invocation
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let out = reader.join().ok()?.ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The last `lines` lines of a possibly large file inside the host's
/// root, reading only its end.
pub fn tail_file(host: &Host, path: &Path, lines: usize) -> Result<String, HostError> {
    let Some((bytes, cut)) = host.read_tail(path, LOG_TAIL_BYTES)? else {
        return Ok(String::new());
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut all: Vec<&str> = text.lines().collect();
    if cut && !all.is_empty() {
        // The first line was cut by the seek.
        all.remove(0);
    }
    Ok(all[all.len().saturating_sub(lines)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(root: &Path, rel: &str, text: &str, mode: u32) -> PathBuf {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn mkdir(root: &Path, rel: &str) -> PathBuf {
        let path = root.join(rel);
        fs::create_dir_all(&path).unwrap();
        path
    }

    #[test]
    fn systemd_needs_a_running_systemd_and_a_unit() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        touch(r, "lib/systemd/system/docker.service", "[Service]\n", 0o644);
        touch(r, "etc/init.d/docker", "#!/bin/sh\n", 0o755);
        assert!(matches!(
            detect(r, None).unwrap(),
            ServiceManager::SysV { .. }
        ));
        mkdir(r, "run/systemd/system");
        assert_eq!(detect(r, None).unwrap(), ServiceManager::Systemd);
        let systemctl = touch(r, "usr/bin/systemctl", "", 0o755);
        let restart = ServiceManager::Systemd.command(r, Action::Restart).unwrap();
        assert_eq!(
            restart,
            Invocation {
                program: systemctl,
                args: vec!["restart".into(), "docker".into()]
            }
        );
    }

    #[test]
    fn openrc_by_shebang_or_by_openrc_run() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        touch(
            r,
            "etc/init.d/docker",
            "#!/sbin/openrc-run\ncommand=/usr/bin/dockerd\n",
            0o755,
        );
        assert_eq!(detect(r, None).unwrap(), ServiceManager::OpenRc);
        touch(r, "etc/init.d/docker", "#!/bin/sh\n", 0o755);
        assert!(matches!(
            detect(r, None).unwrap(),
            ServiceManager::SysV { .. }
        ));
        touch(r, "sbin/openrc-run", "", 0o755);
        assert_eq!(detect(r, None).unwrap(), ServiceManager::OpenRc);
        let rc = touch(r, "sbin/rc-service", "", 0o755);
        let stop = ServiceManager::OpenRc.command(r, Action::Stop).unwrap();
        assert_eq!(
            stop,
            Invocation {
                program: rc,
                args: vec!["docker".into(), "stop".into()]
            }
        );
    }

    #[test]
    fn sysv_prefers_service_and_falls_back_to_the_script() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let script = touch(r, "etc/init.d/docker", "#!/bin/sh\n", 0o755);
        let manager = detect(r, None).unwrap();
        let direct = manager.command(r, Action::Start).unwrap();
        assert_eq!(
            direct,
            Invocation {
                program: script,
                args: vec!["start".into()]
            }
        );
        let service = touch(r, "usr/sbin/service", "", 0o755);
        assert_eq!(
            manager.command(r, Action::Restart).unwrap().program,
            service
        );
    }

    #[test]
    fn runit_and_snap() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let dir = mkdir(r, "var/service/docker");
        let sv = touch(r, "usr/bin/sv", "", 0o755);
        let manager = detect(r, None).unwrap();
        let restart = manager.command(r, Action::Restart).unwrap();
        assert_eq!(
            restart,
            Invocation {
                program: sv,
                args: vec!["restart".into(), dir.display().to_string()]
            }
        );
        mkdir(r, "var/snap/docker");
        assert_eq!(detect(r, None).unwrap(), ServiceManager::Snap);
        assert!(matches!(
            ServiceManager::Snap.command(r, Action::Restart),
            Err(ServiceError::ProgramNotFound { name, searched }) if name == "snap" && searched.len() == 4
        ));
    }

    #[test]
    fn nothing_found_asks_for_a_restart_command() {
        let root = tempfile::tempdir().unwrap();
        let err = detect(root.path(), None).unwrap_err();
        assert!(err.to_string().contains("--restart-command"), "{err}");
    }

    #[test]
    fn custom_command_wins_and_only_restarts() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        mkdir(r, "run/systemd/system");
        touch(r, "etc/systemd/system/docker.service", "", 0o644);
        let script = touch(r, "opt/restart docker.sh", "#!/bin/sh\n", 0o755);
        let command = format!("'{}' --fast \"two words\"", script.display());
        let manager = detect(r, Some(&command)).unwrap();
        let restart = manager.command(r, Action::Restart).unwrap();
        assert_eq!(
            restart,
            Invocation {
                program: script,
                args: vec!["--fast".into(), "two words".into()]
            }
        );
        assert!(matches!(
            manager.command(r, Action::Stop),
            Err(ServiceError::Unsupported { .. })
        ));
        let bare = touch(r, "bin/docker-restart", "", 0o755);
        let manager = detect(r, Some("docker-restart now")).unwrap();
        assert_eq!(manager.command(r, Action::Restart).unwrap().program, bare);
        let missing = detect(r, Some("/nonexistent/restart")).unwrap();
        assert!(matches!(
            missing.command(r, Action::Restart),
            Err(ServiceError::ProgramNotFound { .. })
        ));
        for bad in [
            "",
            "  ",
            "./restart.sh",
            "a && b",
            "a | b",
            "echo $HOME",
            "'open",
            "\"open",
            "x\\",
        ] {
            assert!(
                matches!(detect(r, Some(bad)), Err(ServiceError::BadCommand { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn word_splitting() {
        let words = split_words(r#"  a 'b c'"d\"e"\ f  "g\h" '$x' "" "#).unwrap();
        assert_eq!(words, ["a", "b cd\"e f", "g\\h", "$x", ""]);
    }

    fn reason(command: &str) -> String {
        match split_words(command) {
            Err(ServiceError::BadCommand { reason, .. }) => reason,
            other => panic!("{command:?}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn restart_command_words_quoted_and_escaped() {
        let cases: &[(&str, &[&str])] = &[
            (r#"a "b c" 'd e' f"g h"i"#, &["a", "b c", "d e", "fg hi"]),
            (
                r#"a\ b \"q\" "x\$y" "\n" '\n'"#,
                &["a b", "\"q\"", "x$y", "\\n", "\\n"],
            ),
            ("\"a\\\nb\" c\\\nd", &["ab", "cd"]),
            (
                "'$HOME' \\$HOME \"\\$HOME\" '`x`'",
                &["$HOME", "$HOME", "$HOME", "`x`"],
            ),
            ("a\rb #c d=e\t", &["a\rb", "#c", "d=e"]),
            ("'a\nb' \"\\`\"", &["a\nb", "`"]),
        ];
        for (command, words) in cases {
            assert_eq!(split_words(command).unwrap(), *words, "{command:?}");
        }
    }

    #[test]
    fn restart_command_words_empty() {
        let none: &[&str] = &[];
        assert_eq!(split_words("").unwrap(), none);
        assert_eq!(split_words(" \t\n ").unwrap(), none);
        assert_eq!(split_words("\\\n").unwrap(), none);
        assert_eq!(split_words("\"\"").unwrap(), [""]);
        assert_eq!(split_words("''").unwrap(), [""]);
        assert_eq!(split_words("a \"\" '' b").unwrap(), ["a", "", "", "b"]);
    }

    #[test]
    fn restart_command_words_malformed() {
        assert_eq!(reason("'open"), "unterminated single quote");
        assert_eq!(reason("\"open"), "unterminated double quote");
        assert_eq!(reason("\"open\\"), "unterminated double quote");
        assert_eq!(reason("x\\"), "ends with a backslash");
        let needs_shell = "needs a shell, and the command runs without one; put the steps in a \
                           script and give its path";
        for (command, c) in [
            ("echo $HOME", '$'),
            ("a;b", ';'),
            ("a | b", '|'),
            ("a && b", '&'),
            ("a < b", '<'),
            ("a>b", '>'),
            ("(a)", '('),
            ("a)", ')'),
            ("`a`", '`'),
            ("'ok' $x 'open", '$'),
        ] {
            assert_eq!(
                reason(command),
                format!("{c:?} {needs_shell}"),
                "{command:?}"
            );
        }
        let in_quotes = "inside double quotes would need a shell; escape it or use single quotes";
        assert_eq!(reason("\"$HOME\""), format!("'$' {in_quotes}"));
        assert_eq!(reason("\"`a`\""), format!("'`' {in_quotes}"));
    }

    #[test]
    fn programs_must_be_executable_files() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        touch(r, "usr/sbin/systemctl", "", 0o644);
        mkdir(r, "usr/bin/systemctl");
        assert!(resolve(r, "systemctl").is_err());
        let ok = touch(r, "bin/systemctl", "", 0o700);
        assert_eq!(resolve(r, "systemctl").unwrap(), ok);
    }

    #[test]
    fn logs_come_from_the_journal_or_a_file() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let journalctl = touch(r, "usr/bin/journalctl", "", 0o755);
        match ServiceManager::Systemd.log_source(r, 30) {
            Some(LogSource::Journal(inv)) => {
                assert_eq!(inv.program, journalctl);
                assert_eq!(inv.args, ["-u", "docker", "-n", "30", "--no-pager"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let sysv = ServiceManager::SysV {
            script: r.join("etc/init.d/docker"),
        };
        assert_eq!(sysv.log_source(r, 30), None);
        assert_eq!(last_log_lines(r, &sysv, 30), None);
        let text: String = (1..=5000).map(|i| format!("line {i}\n")).collect();
        let log = touch(r, "var/log/docker.log", &text, 0o644);
        assert_eq!(sysv.log_source(r, 30), Some(LogSource::File(log)));
        assert_eq!(last_log_lines(r, &sysv, 2).unwrap(), "line 4999\nline 5000");
    }

    #[test]
    fn journal_is_run_with_a_timeout() {
        let echo = Invocation {
            program: "/bin/echo".into(),
            args: vec!["hello".into()],
        };
        assert_eq!(
            run_captured(&echo, Duration::from_secs(10)).unwrap(),
            "hello\n"
        );
        let slow = Invocation {
            program: "/bin/sleep".into(),
            args: vec!["30".into()],
        };
        let started = Instant::now();
        assert_eq!(run_captured(&slow, Duration::from_millis(300)), None);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn tail_of_a_short_file() {
        let root = tempfile::tempdir().unwrap();
        touch(root.path(), "log", "a\nb\nc", 0o644);
        let host = open_root(root.path()).unwrap();
        assert_eq!(tail_file(&host, Path::new("/log"), 30).unwrap(), "a\nb\nc");
        assert_eq!(tail_file(&host, Path::new("/none"), 30).unwrap(), "");
    }

    #[test]
    fn a_fifo_in_place_of_a_log_or_init_script_is_not_opened() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        mkdir(r, "etc/init.d");
        mkdir(r, "var/log");
        for fifo in ["etc/init.d/docker", "var/log/docker.log"] {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                r.join(fifo),
                rfs::FileType::Fifo,
                rfs::Mode::from_raw_mode(0o644),
                0,
            )
            .unwrap();
        }
        assert!(detect(r, None).is_err());
        let host = open_root(r).unwrap();
        assert!(!has_openrc_shebang(&host, Path::new("/etc/init.d/docker")));
        assert!(tail_file(&host, Path::new("/var/log/docker.log"), 3).is_err());
    }
}
