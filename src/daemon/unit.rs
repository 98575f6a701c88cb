//! docker.service as systemd would run it: which unit file wins, its
//! drop-ins, the `[Service]` settings folded over them, and the dockerd
//! arguments of its `ExecStart=` with the variables it expands.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::envfile::{self, ReadError};
use super::words::{self, Arg, Traced};
use crate::host::Host;
use crate::paths::{SYSTEMD_RUNTIME, UNIT_DIRS};

pub const UNIT_NAME: &str = "docker.service";

/// True when systemd is the init of the machine under the root.
pub fn systemd_runs(host: &Host) -> bool {
    matches!(
        host.stat(Path::new(SYSTEMD_RUNTIME)),
        Ok(Some(st)) if rustix::fs::FileType::from_raw_mode(st.st_mode)
            == rustix::fs::FileType::Directory
    )
}

/// The docker.service that systemd would load, as a path inside the root:
/// the first one found in precedence order, so a unit in /etc hides the
/// packaged one (a link counts even before it is followed).
pub fn find_unit(host: &Host) -> Option<PathBuf> {
    UNIT_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(UNIT_NAME))
        .find(|path| host.has_entry(path))
}

/// The dockerd arguments of docker.service and its drop-ins, each located
/// where it was typed; `None` when there is no unit, none when it is
/// masked or runs something other than dockerd.
pub(super) fn dockerd_args(host: &Host) -> Result<Option<Vec<Arg>>, ReadError> {
    let Some(main) = find_unit(host) else {
        return Ok(None);
    };
    if is_masked(host, &main) {
        return Ok(Some(Vec::new()));
    }
    let mut service = Service::default();
    for file in std::iter::once(main).chain(drop_ins(host)?) {
        if let Some(text) = envfile::read_optional(host, &file)? {
            service.apply(&host.display(&file), &text);
        }
    }
    let env = service.environment(host)?;
    let mut args = Vec::new();
    for exec in &service.exec_start {
        args.extend(expand_exec(exec, &env));
    }
    Ok(Some(args))
}

/// A unit linked to /dev/null is masked: systemd never starts it.
fn is_masked(host: &Host, unit: &Path) -> bool {
    matches!(
        host.stat(unit),
        Ok(Some(st)) if rustix::fs::FileType::from_raw_mode(st.st_mode)
            == rustix::fs::FileType::CharacterDevice
    )
}

/// `docker.service.d/*.conf` from every unit directory, applied in lexical
/// order of file name; a higher-precedence directory's file hides a
/// same-named one below it.
fn drop_ins(host: &Host) -> Result<Vec<PathBuf>, ReadError> {
    let mut by_name = BTreeMap::new();
    for dir in UNIT_DIRS {
        let dir = Path::new(dir).join(format!("{UNIT_NAME}.d"));
        for name in host.list_dir(&dir)?.unwrap_or_default() {
            if Path::new(&name).extension().is_some_and(|e| e == "conf") {
                by_name
                    .entry(name.clone())
                    .or_insert_with(|| dir.join(name));
            }
        }
    }
    Ok(by_name.into_values().collect())
}

/// A `key=value` from a unit file, located where the assignment starts.
#[derive(Debug, Clone)]
struct Assignment {
    file: PathBuf,
    line: usize,
    value: String,
}

/// Variables for `ExecStart=`, with the file that set each.
type Environment = HashMap<String, (Traced, PathBuf)>;

/// The `[Service]` settings that decide dockerd's command line, folded over
/// the unit and its drop-ins the way systemd does: an empty assignment
/// resets a list, anything else appends.
#[derive(Debug, Default)]
struct Service {
    exec_start: Vec<Assignment>,
    environment: Vec<Assignment>,
    environment_files: Vec<Assignment>,
}

impl Service {
    fn apply(&mut self, file: &Path, text: &str) {
        let mut in_service = false;
        for (line, content) in unit_lines(text) {
            if content.starts_with('[') {
                in_service = content == "[Service]";
                continue;
            }
            let Some((key, value)) = content.split_once('=').filter(|_| in_service) else {
                continue;
            };
            let list = match key.trim() {
                "ExecStart" => &mut self.exec_start,
                "Environment" => &mut self.environment,
                "EnvironmentFile" => &mut self.environment_files,
                _ => continue,
            };
            let value = value.trim();
            if value.is_empty() {
                list.clear();
            } else {
                list.push(Assignment {
                    file: file.to_path_buf(),
                    line,
                    value: value.to_string(),
                });
            }
        }
    }

    /// `Environment=` first, then `EnvironmentFile=`, whose values win.
    fn environment(&self, host: &Host) -> Result<Environment, ReadError> {
        let mut env = HashMap::new();
        for a in &self.environment {
            for word in words::unit_words(&a.value) {
                if let Some((name, value)) = word.split_once('=') {
                    env.insert(
                        name.to_string(),
                        (Traced::uniform(value, a.line), a.file.clone()),
                    );
                }
            }
        }
        for a in &self.environment_files {
            let path = Path::new("/").join(a.value.trim_start_matches('-'));
            let Some(text) = envfile::read_optional(host, &path)? else {
                continue;
            };
            let shown = host.display(&path);
            for var in envfile::parse_env_file(&text) {
                env.insert(var.name, (var.value, shown.clone()));
            }
        }
        Ok(env)
    }
}

/// Logical lines of a unit file with the number of the line each starts
/// on: trailing-backslash continuations joined, comments dropped.
fn unit_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let (start, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                joined.push(' ');
                pending = Some((start, joined));
            }
            None => {
                joined.push_str(trimmed);
                if !joined.is_empty() {
                    lines.push((start, joined));
                }
            }
        }
    }
    lines.extend(pending.filter(|(_, l)| !l.trim().is_empty()));
    lines
}

/// The dockerd arguments of one `ExecStart=`, variables expanded: a word
/// that is exactly `$NAME` becomes the value split at whitespace, `${NAME}`
/// is replaced inside a word (not with the `:` prefix). Not a dockerd
/// command line: no arguments.
fn expand_exec(exec: &Assignment, env: &Environment) -> Vec<Arg> {
    let command = exec.value.trim_start_matches(['-', '@', '+', '!', ':']);
    let prefixes = &exec.value[..exec.value.len() - command.len()];
    let mut words = words::unit_words(command);
    if prefixes.contains('@') && words.len() > 1 {
        // With `@` the second word is only argv[0].
        words.remove(1);
    }
    let no_env = HashMap::new();
    let env = if prefixes.contains(':') { &no_env } else { env };
    let Some(args) = program_args(&words) else {
        return Vec::new();
    };
    let literal = |text: String| Arg {
        text,
        file: exec.file.clone(),
        line: exec.line,
    };
    let mut out = Vec::new();
    for word in args {
        let name = word.strip_prefix('$').map(|n| {
            n.strip_prefix('{')
                .and_then(|n| n.strip_suffix('}'))
                .unwrap_or(n)
        });
        match name.filter(|n| words::is_name(n)).map(|n| env.get(n)) {
            Some(Some((value, file))) if word.starts_with("${") => out.push(Arg {
                text: value.text(),
                file: file.clone(),
                line: value.line().unwrap_or(exec.line),
            }),
            Some(Some((value, file))) => out.extend(words::fields(value, file)),
            Some(None) if !word.starts_with("${") => {}
            _ => out.push(literal(substitute(word, env))),
        }
    }
    out
}

/// The words after the program when the program is dockerd (or the old
/// `docker daemon`); `None` for a wrapper whose flags cannot be known.
fn program_args(words: &[String]) -> Option<&[String]> {
    let program = Path::new(words.first()?).file_name()?.to_str()?;
    if program.starts_with("dockerd") {
        return Some(&words[1..]);
    }
    if program == "docker" && words.get(1).is_some_and(|w| w == "daemon") {
        return Some(&words[2..]);
    }
    None
}

fn substitute(word: &str, env: &Environment) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some((name, after)) = rest.strip_prefix("${").and_then(|r| r.split_once('}'))
        {
            out.push_str(&env.get(name).map(|(v, _)| v.text()).unwrap_or_default());
            rest = after;
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::words::unit_words;

    #[test]
    fn unit_lines_join_continuations_and_skip_comments() {
        let lines = unit_lines(
            "[Service]\nExecStart=/a \\\n# comment inside\n  --b \\\n  --c\nType=notify\n",
        );
        assert_eq!(
            lines,
            [
                (1, "[Service]".to_string()),
                (2, "ExecStart=/a  --b  --c".to_string()),
                (6, "Type=notify".to_string()),
            ]
        );
    }

    #[test]
    fn unit_words_unquote() {
        assert_eq!(
            unit_words(r#"/usr/bin/dockerd "--label=a b" '--x=y z' \"q --t=\t"#),
            [
                "/usr/bin/dockerd",
                "--label=a b",
                "--x=y z",
                "\"q",
                "--t=\t"
            ]
        );
    }

    #[test]
    fn unit_words_quoted_escaped_and_variables() {
        let cases: &[(&str, &[&str])] = &[
            (r#""a b" 'c d' e"f g"h"#, &["a b", "c d", "ef gh"]),
            (
                r#"a\ b \n \x "\t" '\"' "it's""#,
                &["a b", "\n", "x", "\t", "\"", "it's"],
            ),
            (r#"$A ${B} "$C" $$"#, &["$A", "${B}", "$C", "$$"]),
            ("a\u{a0}b\u{2003}c\rd\x0be", &["a", "b", "c", "d", "e"]),
            ("#a ;b", &["#a", ";b"]),
        ];
        for (text, words) in cases {
            assert_eq!(unit_words(text), *words, "{text:?}");
        }
    }

    #[test]
    fn unit_words_empty_and_malformed() {
        let none: &[&str] = &[];
        assert_eq!(unit_words(""), none);
        assert_eq!(unit_words(" \t\n "), none);
        assert_eq!(unit_words(r#""""#), [""]);
        assert_eq!(unit_words(r#"a '' b"#), ["a", "", "b"]);
        assert_eq!(unit_words(r#""open quote"#), ["open quote"]);
        assert_eq!(unit_words(r#"'a"b"#), ["a\"b"]);
        assert_eq!(unit_words("x\\"), ["x\\"]);
        assert_eq!(unit_words("\\"), ["\\"]);
        assert_eq!(unit_words("\\ x"), [" x"]);
    }
}
