//! Shell-style environment files: the ones init scripts source to build
//! dockerd's command line (/etc/default/docker, /etc/sysconfig/docker, ...)
//! and a unit's `EnvironmentFile=`; and the bounded read of these small
//! files, units included.

use std::path::{Path, PathBuf};

use super::words::{self, Arg, Grammar, Lexer, Traced, Word};
use crate::host::{Host, HostError};
use crate::paths::INIT_ENV_FILES;

/// Units, drop-ins and environment files are a few lines; anything larger
/// is refused before it is read.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading {path}: {reason}")]
    Read { path: PathBuf, reason: String },
}

impl From<HostError> for ReadError {
    fn from(e: HostError) -> Self {
        let (path, reason) = match e {
            HostError::Refused { path, what } => (path, what),
            HostError::Io { path, source } => (path, source.to_string()),
            HostError::Command { program, message } => (program, message),
        };
        ReadError::Read { path, reason }
    }
}

/// A file under the host's root as text, `None` when it does not exist.
pub(super) fn read_optional(host: &Host, path: &Path) -> Result<Option<String>, ReadError> {
    Ok(host
        .read_resolved(path, MAX_FILE_SIZE)?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// `NAME=value` from a shell-style environment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: Traced,
    pub line: usize,
}

/// The value of the last assignment to `name`.
pub(super) fn final_value<'a>(vars: &'a [EnvVar], name: &str) -> Option<&'a Traced> {
    vars.iter().rev().find(|v| v.name == name).map(|v| &v.value)
}

/// The words of dockerd's command line that init scripts take from their
/// environment file, each located where it was typed.
pub(super) fn init_script_args(host: &Host) -> Result<Vec<Arg>, ReadError> {
    let mut args = Vec::new();
    for (path, var) in INIT_ENV_FILES {
        let path = Path::new(path);
        let Some(text) = read_optional(host, path)? else {
            continue;
        };
        let vars = parse_env_file(&text);
        if let Some(value) = final_value(&vars, var) {
            args.extend(words::fields(value, &host.display(path)));
        }
    }
    Ok(args)
}

/// Assignments from a shell-style environment file (/etc/default/docker,
/// /etc/sysconfig/docker, a unit's `EnvironmentFile=`): `export` allowed,
/// `'...'`, `"..."` and backslash quoting, `$NAME`/`${NAME}` expanded from
/// earlier assignments. A line that runs a command is skipped.
pub fn parse_env_file(text: &str) -> Vec<EnvVar> {
    let mut lexer = Lexer::new(text, Grammar::Shell);
    let mut vars: Vec<EnvVar> = Vec::new();
    // The shell grammar reports no errors: what it cannot read is text.
    while let Some(Ok(words)) = lexer.statement(&|name| final_value(&vars, name)) {
        let words = match words.first() {
            Some(first) if first.text.text() == "export" => &words[1..],
            _ => &words[..],
        };
        let assignments: Option<Vec<EnvVar>> = words.iter().map(assignment).collect();
        vars.extend(assignments.unwrap_or_default());
    }
    vars
}

fn assignment(word: &Word) -> Option<EnvVar> {
    let at = word.equals?;
    let name: String = word.text.0[..at].iter().map(|(c, _)| c).collect();
    words::is_name(&name).then(|| EnvVar {
        name,
        value: Traced(word.text.0[at + 1..].to_vec()),
        line: word.line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
