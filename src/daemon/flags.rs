//! dockerd flags set outside daemon.json: systemd units and drop-ins, and
//! the environment files that init scripts and units feed to dockerd.
//!
//! dockerd refuses to start when a setting is given both as a flag and in
//! daemon.json, so before writing a key we find every place that already
//! passes it on the command line, down to the file and line.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::host::{Host, HostError};

/// systemd unit directories under a root, highest precedence first.
pub const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

pub const UNIT_NAME: &str = "docker.service";

/// Units, drop-ins and environment files are a few lines; anything larger
/// is refused before it is read.
pub const MAX_UNIT_FILE_SIZE: u64 = 1 << 20;

/// Files sourced by init scripts, with the variable they pass to dockerd.
const INIT_ENV_FILES: &[(&str, &str)] = &[
    ("/etc/default/docker", "DOCKER_OPTS"),
    ("/etc/sysconfig/docker", "OPTIONS"),
    ("/etc/conf.d/docker", "DOCKER_OPTS"),
];

/// One dockerd flag and where it is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagSource {
    /// The file as seen from outside the root.
    pub file: PathBuf,
    pub line: usize,
    /// As written: `--userns-remap`, `-g`, ...
    pub flag: String,
    pub value: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FlagsError {
    #[error("reading {path}: {reason}")]
    Read { path: PathBuf, reason: String },
}

impl From<HostError> for FlagsError {
    fn from(e: HostError) -> Self {
        let (path, reason) = match e {
            HostError::Refused { path, what } => (path, what),
            HostError::Io { path, source } => (path, source.to_string()),
            HostError::Command { program, message } => (program, message),
        };
        FlagsError::Read { path, reason }
    }
}

/// Flags that the daemon under the host's root gets outside daemon.json.
///
/// When systemd runs the machine and has a docker.service, its effective
/// `ExecStart` is what counts (with the variables it expands). Otherwise an
/// init script starts dockerd with the options from its environment file.
/// Every file is read through `host`, so links resolve inside the root.
pub fn scan(host: &Host) -> Result<Vec<FlagSource>, FlagsError> {
    if systemd_runs(host) {
        if let Some(flags) = scan_systemd(host)? {
            return Ok(flags);
        }
    }
    scan_init_env(host)
}

/// True when systemd is the init of the machine under the root.
pub fn systemd_runs(host: &Host) -> bool {
    matches!(
        host.stat(Path::new("/run/systemd/system")),
        Ok(Some(st)) if rustix::fs::FileType::from_raw_mode(st.st_mode)
            == rustix::fs::FileType::Directory
    )
}

/// Flags from docker.service and its drop-ins; `None` when there is no unit.
pub fn scan_systemd(host: &Host) -> Result<Option<Vec<FlagSource>>, FlagsError> {
    let Some(main) = find_unit(host) else {
        return Ok(None);
    };
    if is_masked(host, &main) {
        return Ok(Some(Vec::new()));
    }
    let mut service = Service::default();
    for file in std::iter::once(main).chain(drop_ins(host)?) {
        if let Some(text) = read_optional(host, &file)? {
            service.apply(&host.display(&file), &text);
        }
    }
    let env = service.environment(host)?;
    let mut flags = Vec::new();
    for exec in &service.exec_start {
        flags.extend(parse_dockerd_args(&expand_exec(exec, &env)));
    }
    Ok(Some(flags))
}

/// Flags from the variables that init scripts pass to dockerd.
pub fn scan_init_env(host: &Host) -> Result<Vec<FlagSource>, FlagsError> {
    let mut flags = Vec::new();
    for (path, var) in INIT_ENV_FILES {
        let path = Path::new(path);
        let Some(text) = read_optional(host, path)? else {
            continue;
        };
        let vars = parse_env_file(&text);
        let Some(value) = final_value(&vars, var) else {
            continue;
        };
        flags.extend(parse_dockerd_args(&split_traced(
            value,
            &host.display(path),
        )));
    }
    Ok(flags)
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
fn drop_ins(host: &Host) -> Result<Vec<PathBuf>, FlagsError> {
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

fn read_optional(host: &Host, path: &Path) -> Result<Option<String>, FlagsError> {
    Ok(host
        .read_resolved(path, MAX_UNIT_FILE_SIZE)?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// daemon.json keys whose flag is not simply `--<key>`.
const FLAG_ALIASES: &[(&str, &[&str])] = &[
    ("data-root", &["--data-root", "-g", "--graph"]),
    ("graph", &["--data-root", "-g", "--graph"]),
    ("hosts", &["-H", "--host"]),
    ("debug", &["-D", "--debug"]),
    ("log-level", &["-l", "--log-level"]),
    ("group", &["-G", "--group"]),
    ("pidfile", &["-p", "--pidfile"]),
    ("storage-driver", &["-s", "--storage-driver"]),
    ("bridge", &["-b", "--bridge"]),
    ("labels", &["--label"]),
    ("log-opts", &["--log-opt"]),
    ("storage-opts", &["--storage-opt"]),
    ("exec-opts", &["--exec-opt"]),
    ("dns-opts", &["--dns-opt"]),
    ("registry-mirrors", &["--registry-mirror"]),
    ("insecure-registries", &["--insecure-registry"]),
    ("authorization-plugins", &["--authorization-plugin"]),
    ("runtimes", &["--add-runtime"]),
    ("default-ulimits", &["--default-ulimit"]),
    ("default-address-pools", &["--default-address-pool"]),
    ("node-generic-resources", &["--node-generic-resource"]),
    ("cluster-store-opts", &["--cluster-store-opt"]),
];

/// The command-line spellings of a daemon.json key.
pub fn flag_names(key: &str) -> Vec<String> {
    match FLAG_ALIASES.iter().find(|(k, _)| *k == key) {
        Some((_, names)) => names.iter().map(|n| n.to_string()).collect(),
        None => vec![format!("--{key}")],
    }
}

/// The flags that would clash with setting any of `keys` in daemon.json.
pub fn conflicts(flags: &[FlagSource], keys: &[&str]) -> Vec<FlagSource> {
    let names: Vec<String> = keys.iter().flat_map(|k| flag_names(k)).collect();
    flags
        .iter()
        .filter(|f| names.contains(&f.flag))
        .cloned()
        .collect()
}

/// Text whose every character remembers the file line it came from, so a
/// flag that travelled through `$DOCKER_OPTS` is reported where it was typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traced(Vec<(char, usize)>);

impl Traced {
    fn uniform(text: &str, line: usize) -> Traced {
        Traced(text.chars().map(|c| (c, line)).collect())
    }

    pub fn text(&self) -> String {
        self.0.iter().map(|(c, _)| c).collect()
    }

    /// The line of the first character, if any.
    pub fn line(&self) -> Option<usize> {
        self.0.first().map(|(_, l)| *l)
    }
}

/// `NAME=value` from a shell-style environment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: Traced,
    pub line: usize,
}

fn final_value<'a>(vars: &'a [EnvVar], name: &str) -> Option<&'a Traced> {
    vars.iter().rev().find(|v| v.name == name).map(|v| &v.value)
}

/// A word of a dockerd command line and the file line that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Arg {
    text: String,
    file: PathBuf,
    line: usize,
}

fn split_traced(value: &Traced, file: &Path) -> Vec<Arg> {
    let mut args = Vec::new();
    let mut word = Traced::default();
    for &(c, line) in value.0.iter().chain(std::iter::once(&(' ', 0))) {
        if !c.is_whitespace() {
            word.0.push((c, line));
            continue;
        }
        if let Some(first) = word.line() {
            args.push(Arg {
                text: word.text(),
                file: file.to_path_buf(),
                line: first,
            });
        }
        word = Traced::default();
    }
    args
}

/// Pairs flags with their values. dockerd takes no positional arguments,
/// so a word that does not start with `-` must be the previous flag's value;
/// that avoids needing a table of which flags are boolean.
fn parse_dockerd_args(args: &[Arg]) -> Vec<FlagSource> {
    let mut flags = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some((flag, inline)) = split_flag(&arg.text) else {
            continue;
        };
        let value = inline.or_else(|| {
            let next = args.get(i).filter(|n| !n.text.starts_with('-'))?;
            i += 1;
            Some(next.text.clone())
        });
        flags.push(FlagSource {
            file: arg.file.clone(),
            line: arg.line,
            flag,
            value,
        });
    }
    flags
}

/// `--name=value`, `--name`, `-H`, `-Hvalue`, `-H=value`; `None` for a
/// word that is not a flag.
fn split_flag(word: &str) -> Option<(String, Option<String>)> {
    if let Some(long) = word.strip_prefix("--") {
        if long.is_empty() {
            return None;
        }
        return Some(match long.split_once('=') {
            Some((name, value)) => (format!("--{name}"), Some(value.to_string())),
            None => (word.to_string(), None),
        });
    }
    let mut chars = word.strip_prefix('-')?.chars();
    let short = chars.next()?;
    let rest = chars.as_str();
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    Some((
        format!("-{short}"),
        (!rest.is_empty()).then(|| rest.to_string()),
    ))
}

/// A `key=value` from a unit file, located where the assignment starts.
#[derive(Debug, Clone)]
struct Assignment {
    file: PathBuf,
    line: usize,
    value: String,
}

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
    fn environment(&self, host: &Host) -> Result<HashMap<String, (Traced, PathBuf)>, FlagsError> {
        let mut env = HashMap::new();
        for a in &self.environment {
            for word in split_unit_words(&a.value) {
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
            let Some(text) = read_optional(host, &path)? else {
                continue;
            };
            let shown = host.display(&path);
            for var in parse_env_file(&text) {
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

/// systemd's word splitting: whitespace separates, quotes group, and a
/// backslash escapes the next character (C escapes for n, t and r).
fn split_unit_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return words;
        }
        let mut word = String::new();
        let mut quote = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', _) => word.push(unescape(chars.next().unwrap_or('\\'))),
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                (c, None) if c.is_whitespace() => break,
                (c, _) => word.push(c),
            }
        }
        words.push(word);
    }
}

fn unescape(c: char) -> char {
    match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        other => other,
    }
}

/// The dockerd arguments of one `ExecStart=`, variables expanded: a word
/// that is exactly `$NAME` becomes the value split at whitespace, `${NAME}`
/// is replaced inside a word (not with the `:` prefix). Not a dockerd
/// command line: no arguments.
fn expand_exec(exec: &Assignment, env: &HashMap<String, (Traced, PathBuf)>) -> Vec<Arg> {
    let command = exec.value.trim_start_matches(['-', '@', '+', '!', ':']);
    let prefixes = &exec.value[..exec.value.len() - command.len()];
    let mut words = split_unit_words(command);
    if prefixes.contains('@') && words.len() > 1 {
        // With `@` the second word is only argv[0].
        words.remove(1);
    }
    let no_env = HashMap::new();
    let env = if prefixes.contains(':') { &no_env } else { env };
    let Some(args) = dockerd_args(&words) else {
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
        match name.filter(|n| is_name(n)).map(|n| env.get(n)) {
            Some(Some((value, file))) if word.starts_with("${") => out.push(Arg {
                text: value.text(),
                file: file.clone(),
                line: value.line().unwrap_or(exec.line),
            }),
            Some(Some((value, file))) => out.extend(split_traced(value, file)),
            Some(None) if !word.starts_with("${") => {}
            _ => out.push(literal(substitute(word, env))),
        }
    }
    out
}

/// The words after the program when the program is dockerd (or the old
/// `docker daemon`); `None` for a wrapper whose flags cannot be known.
fn dockerd_args(words: &[String]) -> Option<&[String]> {
    let program = Path::new(words.first()?).file_name()?.to_str()?;
    if program.starts_with("dockerd") {
        return Some(&words[1..]);
    }
    if program == "docker" && words.get(1).is_some_and(|w| w == "daemon") {
        return Some(&words[2..]);
    }
    None
}

fn substitute(word: &str, env: &HashMap<String, (Traced, PathBuf)>) -> String {
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

fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Assignments from a shell-style environment file (/etc/default/docker,
/// /etc/sysconfig/docker, a unit's `EnvironmentFile=`): `export` allowed,
/// `'...'`, `"..."` and backslash quoting, `$NAME`/`${NAME}` expanded from
/// earlier assignments. A line that runs a command is skipped.
pub fn parse_env_file(text: &str) -> Vec<EnvVar> {
    let mut lexer = ShellLexer::new(text);
    let mut vars: Vec<EnvVar> = Vec::new();
    while let Some(words) = lexer.statement(&vars) {
        let words = match words.first() {
            Some(first) if first.text.text() == "export" => &words[1..],
            _ => &words[..],
        };
        let assignments: Option<Vec<EnvVar>> = words.iter().map(ShellWord::assignment).collect();
        vars.extend(assignments.unwrap_or_default());
    }
    vars
}

#[derive(Debug, Default)]
struct ShellWord {
    text: Traced,
    /// Index in `text` of the first unquoted `=`.
    equals: Option<usize>,
    line: usize,
}

impl ShellWord {
    fn assignment(&self) -> Option<EnvVar> {
        let at = self.equals?;
        let name: String = self.text.0[..at].iter().map(|(c, _)| c).collect();
        is_name(&name).then(|| EnvVar {
            name,
            value: Traced(self.text.0[at + 1..].to_vec()),
            line: self.line,
        })
    }
}

/// Just enough of the POSIX shell lexer for variable assignments.
struct ShellLexer {
    chars: Vec<(char, usize)>,
    pos: usize,
}

impl ShellLexer {
    fn new(text: &str) -> Self {
        let mut chars = Vec::with_capacity(text.len());
        let mut line = 1;
        for c in text.chars() {
            chars.push((c, line));
            if c == '\n' {
                line += 1;
            }
        }
        ShellLexer { chars, pos: 0 }
    }

    fn peek(&self) -> Option<(char, usize)> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<(char, usize)> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// The words of the next statement, `None` at the end of the text.
    fn statement(&mut self, vars: &[EnvVar]) -> Option<Vec<ShellWord>> {
        self.peek()?;
        let mut words = Vec::new();
        let mut word: Option<ShellWord> = None;
        while let Some((c, line)) = self.bump() {
            match c {
                '\n' | ';' => break,
                '#' if word.is_none() => self.skip_comment(),
                '\\' if self.peek().is_some_and(|(n, _)| n == '\n') => self.pos += 1,
                ' ' | '\t' | '\r' => words.extend(word.take()),
                _ => {
                    let w = word.get_or_insert_with(|| ShellWord {
                        line,
                        ..ShellWord::default()
                    });
                    self.word_char(c, line, w, vars);
                }
            }
        }
        words.extend(word);
        Some(words)
    }

    fn skip_comment(&mut self) {
        while self.peek().is_some_and(|(c, _)| c != '\n') {
            self.pos += 1;
        }
    }

    fn word_char(&mut self, c: char, line: usize, word: &mut ShellWord, vars: &[EnvVar]) {
        match c {
            '\\' => match self.bump() {
                Some(('\n', _)) | None => {}
                Some(escaped) => word.text.0.push(escaped),
            },
            '\'' => {
                while let Some((q, l)) = self.bump().filter(|(q, _)| *q != '\'') {
                    word.text.0.push((q, l));
                }
            }
            '"' => self.double_quoted(word, vars),
            '$' => self.expand(line, word, vars),
            '=' if word.equals.is_none() => {
                word.equals = Some(word.text.0.len());
                word.text.0.push((c, line));
            }
            _ => word.text.0.push((c, line)),
        }
    }

    fn double_quoted(&mut self, word: &mut ShellWord, vars: &[EnvVar]) {
        while let Some((c, line)) = self.bump() {
            match c {
                '"' => return,
                '\\' => match self.peek() {
                    Some(('\n', _)) => self.pos += 1,
                    Some((e @ ('$' | '`' | '"' | '\\'), l)) => {
                        self.pos += 1;
                        word.text.0.push((e, l));
                    }
                    _ => word.text.0.push((c, line)),
                },
                '$' => self.expand(line, word, vars),
                _ => word.text.0.push((c, line)),
            }
        }
    }

    /// `$NAME` or `${NAME}` from an earlier assignment; unset is empty, and
    /// any other `$` form is kept as written.
    fn expand(&mut self, line: usize, word: &mut ShellWord, vars: &[EnvVar]) {
        let braced = self.peek().is_some_and(|(c, _)| c == '{');
        let start = self.pos + usize::from(braced);
        let mut end = start;
        while self
            .chars
            .get(end)
            .is_some_and(|(c, _)| c.is_ascii_alphanumeric() || *c == '_')
        {
            end += 1;
        }
        let name: String = self.chars[start..end].iter().map(|(c, _)| c).collect();
        let closed = !braced || self.chars.get(end).is_some_and(|(c, _)| *c == '}');
        if !is_name(&name) || !closed {
            word.text.0.push(('$', line));
            return;
        }
        self.pos = end + usize::from(braced);
        if let Some(value) = final_value(vars, &name) {
            word.text.0.extend(value.0.iter().copied());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::SystemRunner;
    use std::fs;

    fn host(root: &Path) -> Host {
        Host::open(root, Box::new(SystemRunner)).unwrap()
    }

    const DEBIAN_UNIT: &str = "\
[Unit]
Description=Docker Application Container Engine
Documentation=https://docs.docker.com
After=network-online.target docker.socket firewalld.service containerd.service
Wants=network-online.target containerd.service
Requires=docker.socket

[Service]
Type=notify
# the default is not to use systemd for cgroups because the delegate issues still
# exists and systemd currently does not support the cgroup feature set required
# for containers run by docker
EnvironmentFile=-/etc/default/docker
ExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock $DOCKER_OPTS
ExecReload=/bin/kill -s HUP $MAINPID
LimitNOFILE=1048576
TimeoutStartSec=0
Delegate=yes
KillMode=process
Restart=on-failure

[Install]
WantedBy=multi-user.target
";

    const DEBIAN_DEFAULT: &str = "\
# Here in Debian, this file is sourced by:
#   - /etc/init.d/docker (sysvinit)
#   - systemd's docker.service

# Use of this file for configuring your Docker daemon is discouraged.

#DOCKER_OPTS=\"--dns 8.8.8.8 --dns 8.8.4.4\"
";

    fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    fn flag(file: &Path, line: usize, flag: &str, value: Option<&str>) -> FlagSource {
        FlagSource {
            file: file.to_path_buf(),
            line,
            flag: flag.to_string(),
            value: value.map(str::to_string),
        }
    }

    fn systemd_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("run/systemd/system")).unwrap();
        root
    }

    #[test]
    fn debian_unit_with_commented_default_file() {
        let root = systemd_root();
        let unit = write(
            root.path(),
            "lib/systemd/system/docker.service",
            DEBIAN_UNIT,
        );
        write(root.path(), "etc/default/docker", DEBIAN_DEFAULT);
        let flags = scan(&host(root.path())).unwrap();
        assert_eq!(
            flags,
            [
                flag(&unit, 14, "-H", Some("fd://")),
                flag(
                    &unit,
                    14,
                    "--containerd",
                    Some("/run/containerd/containerd.sock")
                ),
            ]
        );
    }

    #[test]
    fn docker_opts_flags_are_traced_to_their_lines() {
        let root = systemd_root();
        let unit = write(
            root.path(),
            "lib/systemd/system/docker.service",
            DEBIAN_UNIT,
        );
        let default = write(
            root.path(),
            "etc/default/docker",
            "DOCKER_OPTS=\"--dns 8.8.8.8\"\nexport DOCKER_OPTS=\"$DOCKER_OPTS \\\n  --userns-remap=default -g /srv/docker\"\n",
        );
        let flags = scan(&host(root.path())).unwrap();
        assert_eq!(
            flags,
            [
                flag(&unit, 14, "-H", Some("fd://")),
                flag(
                    &unit,
                    14,
                    "--containerd",
                    Some("/run/containerd/containerd.sock")
                ),
                flag(&default, 1, "--dns", Some("8.8.8.8")),
                flag(&default, 3, "--userns-remap", Some("default")),
                flag(&default, 3, "-g", Some("/srv/docker")),
            ]
        );
        let clashes = conflicts(&flags, &["userns-remap", "data-root"]);
        assert_eq!(
            clashes.iter().map(|f| f.flag.as_str()).collect::<Vec<_>>(),
            ["--userns-remap", "-g"]
        );
        assert!(conflicts(&flags, &["live-restore"]).is_empty());
        assert_eq!(conflicts(&flags, &["hosts"]).len(), 1);
    }

    #[test]
    fn drop_ins_reset_and_override_in_lexical_order() {
        let root = systemd_root();
        write(
            root.path(),
            "lib/systemd/system/docker.service",
            DEBIAN_UNIT,
        );
        write(
            root.path(),
            "lib/systemd/system/docker.service.d/20-packaged.conf",
            "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd --from-lib\n",
        );
        let etc = write(
            root.path(),
            "etc/systemd/system/docker.service.d/10-override.conf",
            "[Service]\nEnvironment=\"EXTRA=--userns-remap=dockremap\"\n",
        );
        let last = write(
            root.path(),
            "etc/systemd/system/docker.service.d/30-mine.conf",
            "# set by hand\n[Service]\nExecStart=\nExecStart=-/usr/bin/dockerd \\\n    --data-root=/srv \\\n    ${EXTRA} --debug\n",
        );
        let flags = scan(&host(root.path())).unwrap();
        assert_eq!(
            flags,
            [
                flag(&last, 4, "--data-root", Some("/srv")),
                flag(&etc, 2, "--userns-remap", Some("dockremap")),
                flag(&last, 4, "--debug", None),
            ]
        );
    }

    #[test]
    fn etc_unit_hides_the_packaged_one_and_same_named_drop_ins() {
        let root = systemd_root();
        write(
            root.path(),
            "lib/systemd/system/docker.service",
            DEBIAN_UNIT,
        );
        write(
            root.path(),
            "lib/systemd/system/docker.service.d/x.conf",
            "[Service]\nExecStart=/usr/bin/dockerd --lib\n",
        );
        write(
            root.path(),
            "etc/systemd/system/docker.service.d/x.conf",
            "[Service]\n",
        );
        let unit = write(
            root.path(),
            "etc/systemd/system/docker.service",
            "[Service]\nExecStart=@/usr/bin/dockerd dockerd-argv0 --userns-remap default\n",
        );
        assert_eq!(
            find_unit(&host(root.path())),
            Some(PathBuf::from("/etc/systemd/system/docker.service"))
        );
        assert_eq!(
            scan(&host(root.path())).unwrap(),
            [flag(&unit, 2, "--userns-remap", Some("default"))]
        );
    }

    #[test]
    fn exec_start_outside_service_section_and_wrappers_are_ignored() {
        let root = systemd_root();
        write(
            root.path(),
            "etc/systemd/system/docker.service",
            "[Unit]\nExecStart=/usr/bin/dockerd --nope\n[Service]\nExecStart=/usr/local/bin/start-docker.sh --userns-remap=x\n",
        );
        assert_eq!(scan(&host(root.path())).unwrap(), []);
    }

    #[test]
    fn sysconfig_options_when_systemd_is_not_running() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "lib/systemd/system/docker.service",
            DEBIAN_UNIT,
        );
        let sysconfig = write(
            root.path(),
            "etc/sysconfig/docker",
            "# /etc/sysconfig/docker\nOPTIONS='--selinux-enabled --log-driver=journald'\nDOCKER_CERT_PATH=/etc/docker\n",
        );
        assert_eq!(scan_systemd(&host(root.path())).unwrap().unwrap().len(), 2);
        assert_eq!(
            scan(&host(root.path())).unwrap(),
            [
                flag(&sysconfig, 2, "--selinux-enabled", None),
                flag(&sysconfig, 2, "--log-driver", Some("journald")),
            ]
        );
    }

    #[test]
    fn unit_without_env_file_reference_ignores_docker_opts() {
        let root = systemd_root();
        write(
            root.path(),
            "usr/lib/systemd/system/docker.service",
            "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
        );
        write(
            root.path(),
            "etc/default/docker",
            "DOCKER_OPTS=--userns-remap=default\n",
        );
        let flags = scan(&host(root.path())).unwrap();
        assert_eq!(flags.len(), 1);
        assert!(conflicts(&flags, &["userns-remap"]).is_empty());
    }

    #[test]
    fn no_unit_falls_back_to_init_env_files() {
        let root = systemd_root();
        let conf = write(
            root.path(),
            "etc/conf.d/docker",
            "DOCKER_OPTS=\"-Gdocker -H=unix:///run/d.sock\"\n",
        );
        assert_eq!(scan_systemd(&host(root.path())).unwrap(), None);
        assert_eq!(
            scan(&host(root.path())).unwrap(),
            [
                flag(&conf, 1, "-G", Some("docker")),
                flag(&conf, 1, "-H", Some("unix:///run/d.sock")),
            ]
        );
    }

    #[test]
    fn env_file_quoting() {
        let vars = parse_env_file(
            "A=plain\n  export B='single $A \"q\"'\nC=\"dq $A ${B} \\$x \\\"\"\nD=a\\ b # comment\necho hi\nE=1 F=2; G=multi\"\nline\"\n# X=no\nls -l H=3\n",
        );
        let got: Vec<(String, String)> = vars
            .iter()
            .map(|v| (v.name.clone(), v.value.text()))
            .collect();
        let want = [
            ("A", "plain"),
            ("B", "single $A \"q\""),
            ("C", "dq plain single $A \"q\" $x \""),
            ("D", "a b"),
            ("E", "1"),
            ("F", "2"),
            ("G", "multi\nline"),
        ];
        assert_eq!(got, want.map(|(n, v)| (n.to_string(), v.to_string())));
        assert_eq!(vars[6].line, 6);
    }

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
            split_unit_words(r#"/usr/bin/dockerd "--label=a b" '--x=y z' \"q --t=\t"#),
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
            assert_eq!(split_unit_words(text), *words, "{text:?}");
        }
    }

    #[test]
    fn unit_words_empty_and_malformed() {
        let none: &[&str] = &[];
        assert_eq!(split_unit_words(""), none);
        assert_eq!(split_unit_words(" \t\n "), none);
        assert_eq!(split_unit_words(r#""""#), [""]);
        assert_eq!(split_unit_words(r#"a '' b"#), ["a", "", "b"]);
        assert_eq!(split_unit_words(r#""open quote"#), ["open quote"]);
        assert_eq!(split_unit_words(r#"'a"b"#), ["a\"b"]);
        assert_eq!(split_unit_words("x\\"), ["x\\"]);
        assert_eq!(split_unit_words("\\"), ["\\"]);
        assert_eq!(split_unit_words("\\ x"), [" x"]);
    }

    fn env(text: &str) -> Vec<(String, String, usize)> {
        parse_env_file(text)
            .into_iter()
            .map(|v| (v.name, v.value.text(), v.line))
            .collect()
    }

    fn vars(want: &[(&str, &str, usize)]) -> Vec<(String, String, usize)> {
        want.iter()
            .map(|(n, v, l)| (n.to_string(), v.to_string(), *l))
            .collect()
    }

    #[test]
    fn env_file_words_quoted_and_escaped() {
        assert_eq!(
            env(
                "A='x y'\nB=\"x y\"\nC=a\"b c\"d'e'\nD=a\\ b\nE=\"\\$x \\q \\\\ \\` \\\"\"\nF=\\'\\\"\n"
            ),
            vars(&[
                ("A", "x y", 1),
                ("B", "x y", 2),
                ("C", "ab cde", 3),
                ("D", "a b", 4),
                ("E", "$x \\q \\ ` \"", 5),
                ("F", "'\"", 6),
            ])
        );
        assert_eq!(
            env("U=a\\\nb V=\"c\\\nd\" W='e\\\nf'\r\nX=1\r\n"),
            vars(&[
                ("U", "ab", 1),
                ("V", "cd", 2),
                ("W", "e\\\nf", 3),
                ("X", "1", 5)
            ])
        );
        assert_eq!(
            env("N=1 # c\n#O=1\nP=a#b Q=1;R=2 ; S==;T=`x`\n"),
            vars(&[
                ("N", "1", 1),
                ("P", "a#b", 3),
                ("Q", "1", 3),
                ("R", "2", 3),
                ("S", "=", 3),
                ("T", "`x`", 3),
            ])
        );
    }

    #[test]
    fn env_file_words_expand_earlier_assignments() {
        assert_eq!(
            env(
                "A='x y'\nG=$A${A}$-$1${A:-x}$UNSET.\nH='$A' I=\"$A\" J=\"${A}\"$\nA=z K=$A L=${A\n"
            ),
            vars(&[
                ("A", "x y", 1),
                ("G", "x yx y$-$1${A:-x}.", 2),
                ("H", "$A", 3),
                ("I", "x y", 3),
                ("J", "x y$", 3),
                ("A", "z", 4),
                // Expanded from the statements before, not the words before.
                ("K", "x y", 4),
                ("L", "${A", 4),
            ])
        );
        let lines: Vec<Option<usize>> = parse_env_file("A=\"x\ny\"\nB=$A\n")
            .iter()
            .map(|v| v.value.0.get(2).map(|(_, l)| *l))
            .collect();
        assert_eq!(lines, [Some(2), Some(2)]);
    }

    #[test]
    fn env_file_words_empty_and_malformed() {
        assert_eq!(env(""), vars(&[]));
        assert_eq!(env("\n\n;\n"), vars(&[]));
        assert_eq!(
            env("I=\nJ=\"\"\nK=''\n"),
            vars(&[("I", "", 1), ("J", "", 2), ("K", "", 3)])
        );
        assert_eq!(
            env("\"V=1\"\nW=1 cmd\n1X=2\n=3\nY=\\"),
            vars(&[("Y", "", 5)])
        );
        assert_eq!(env("K=\"open\nL=1"), vars(&[("K", "open\nL=1", 1)]));
        assert_eq!(env("L='open\nM=1\n"), vars(&[("L", "open\nM=1\n", 1)]));
    }

    #[test]
    fn flag_spellings() {
        assert_eq!(flag_names("userns-remap"), ["--userns-remap"]);
        assert_eq!(flag_names("data-root"), ["--data-root", "-g", "--graph"]);
        assert_eq!(split_flag("--"), None);
        assert_eq!(split_flag("value"), None);
        assert_eq!(split_flag("-D"), Some(("-D".into(), None)));
        assert_eq!(
            split_flag("--a=b=c"),
            Some(("--a".into(), Some("b=c".into())))
        );
    }

    #[test]
    fn missing_files_are_no_flags() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(scan(&host(root.path())).unwrap(), []);
    }
}
