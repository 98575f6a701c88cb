//! The one lexer for the word grammars dockerd's settings pass through:
//! systemd's (unit files), the POSIX shell's for environment files, and the
//! shell's for a `--restart-command` that runs without a shell.
//!
//! Text is traced: every character remembers the line it was typed on, so
//! a flag that travelled through `$DOCKER_OPTS` is reported where it was
//! written.

use std::path::{Path, PathBuf};

/// Text whose every character remembers the file line it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traced(pub(super) Vec<(char, usize)>);

impl Traced {
    pub(super) fn uniform(text: &str, line: usize) -> Traced {
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

/// A word of a dockerd command line and the file line that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Arg {
    pub text: String,
    pub file: PathBuf,
    pub line: usize,
}

/// Field splitting of an unquoted expansion (`$DOCKER_OPTS` in an init
/// script, `$NAME` alone in `ExecStart=`): whitespace separates, nothing
/// else is special. Each word is located at its first character.
pub(super) fn fields(value: &Traced, file: &Path) -> Vec<Arg> {
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

/// A shell variable name: a letter or `_`, then letters, digits and `_`.
pub(super) fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Which rules split the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grammar {
    /// systemd's: any whitespace separates, `"` and `'` group, and a
    /// backslash escapes the next character everywhere, with C escapes for
    /// n, t and r. Nothing is refused: a quote left open runs to the end.
    Systemd,
    /// The shell's, for a file of assignments: statements end at a newline
    /// or `;`, `#` starts a comment, `$NAME` and `${NAME}` are expanded.
    Shell,
    /// The shell's, for a command run without one: no expansion, and
    /// anything that would need a shell (operators, `$`, backquotes, an
    /// open quote) is an error rather than a literal.
    Command,
}

/// Why a command cannot be split without a shell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error("unterminated single quote")]
    SingleQuote,
    #[error("unterminated double quote")]
    DoubleQuote,
    #[error("ends with a backslash")]
    TrailingBackslash,
    #[error(
        "{0:?} needs a shell, and the command runs without one; put the steps in a script and \
         give its path"
    )]
    NeedsShell(char),
    #[error("{0:?} inside double quotes would need a shell; escape it or use single quotes")]
    NeedsShellInQuotes(char),
}

/// One word as lexed.
#[derive(Debug, Default)]
pub(super) struct Word {
    pub text: Traced,
    /// Index in `text` of the first unquoted `=`.
    pub equals: Option<usize>,
    /// The line the word starts on.
    pub line: usize,
}

/// The value of an earlier assignment, for `$NAME` in [`Grammar::Shell`].
pub(super) type Lookup<'v> = &'v dyn Fn(&str) -> Option<&'v Traced>;

/// A lexer over one text in one [`Grammar`].
pub(super) struct Lexer {
    grammar: Grammar,
    chars: Vec<(char, usize)>,
    pos: usize,
}

/// systemd's words of `text` (unit file values).
pub(super) fn unit_words(text: &str) -> Vec<String> {
    let words = Lexer::new(text, Grammar::Systemd).statement(&|_| None);
    texts(words.unwrap_or(Ok(Vec::new())).unwrap_or_default())
}

/// The argv of a command that is run without a shell.
pub fn command_words(text: &str) -> Result<Vec<String>, LexError> {
    let words = Lexer::new(text, Grammar::Command).statement(&|_| None);
    Ok(texts(words.unwrap_or(Ok(Vec::new()))?))
}

fn texts(words: Vec<Word>) -> Vec<String> {
    words.iter().map(|w| w.text.text()).collect()
}

impl Lexer {
    pub fn new(text: &str, grammar: Grammar) -> Self {
        let mut chars = Vec::with_capacity(text.len());
        let mut line = 1;
        for c in text.chars() {
            chars.push((c, line));
            if c == '\n' {
                line += 1;
            }
        }
        Lexer {
            grammar,
            chars,
            pos: 0,
        }
    }

    fn peek(&self) -> Option<(char, usize)> {
        self.chars.get(self.pos).copied()
    }

    fn peek_is(&self, c: char) -> bool {
        self.peek().is_some_and(|(n, _)| n == c)
    }

    fn bump(&mut self) -> Option<(char, usize)> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// The words of the next statement, `None` at the end of the text.
    /// Only [`Grammar::Shell`] has more than one statement.
    pub fn statement(&mut self, vars: Lookup<'_>) -> Option<Result<Vec<Word>, LexError>> {
        self.peek()?;
        Some(self.words(vars))
    }

    fn words(&mut self, vars: Lookup<'_>) -> Result<Vec<Word>, LexError> {
        let mut words = Vec::new();
        let mut word: Option<Word> = None;
        while let Some((c, line)) = self.bump() {
            if self.ends_statement(c) {
                break;
            }
            if self.separates(c) {
                words.extend(word.take());
            } else if c == '\\' && self.grammar != Grammar::Systemd && self.peek_is('\n') {
                // A line continuation, which is nothing at all.
                self.pos += 1;
            } else if c == '#' && word.is_none() && self.grammar == Grammar::Shell {
                self.skip_comment();
            } else {
                let w = word.get_or_insert_with(|| Word {
                    line,
                    ..Word::default()
                });
                self.word_char(c, line, w, vars)?;
            }
        }
        words.extend(word);
        Ok(words)
    }

    fn ends_statement(&self, c: char) -> bool {
        self.grammar == Grammar::Shell && matches!(c, '\n' | ';')
    }

    fn separates(&self, c: char) -> bool {
        match self.grammar {
            Grammar::Systemd => c.is_whitespace(),
            Grammar::Shell => matches!(c, ' ' | '\t' | '\r'),
            Grammar::Command => matches!(c, ' ' | '\t' | '\n'),
        }
    }

    fn skip_comment(&mut self) {
        while self.peek().is_some_and(|(c, _)| c != '\n') {
            self.pos += 1;
        }
    }

    fn word_char(
        &mut self,
        c: char,
        line: usize,
        word: &mut Word,
        vars: Lookup<'_>,
    ) -> Result<(), LexError> {
        match (self.grammar, c) {
            (_, '\\') => self.escaped(line, word)?,
            (Grammar::Systemd, '"' | '\'') => self.systemd_quoted(c, word),
            (_, '\'') => self.single_quoted(word)?,
            (_, '"') => self.double_quoted(word, vars)?,
            (Grammar::Shell, '$') => self.expand(line, word, vars),
            (Grammar::Command, ';' | '|' | '&' | '<' | '>' | '(' | ')' | '`' | '$') => {
                return Err(LexError::NeedsShell(c));
            }
            (_, '=') if word.equals.is_none() => {
                word.equals = Some(word.text.0.len());
                word.text.0.push((c, line));
            }
            _ => word.text.0.push((c, line)),
        }
        Ok(())
    }

    /// A backslash outside quotes (inside them, for systemd).
    fn escaped(&mut self, line: usize, word: &mut Word) -> Result<(), LexError> {
        match (self.grammar, self.bump()) {
            (Grammar::Systemd, None) => word.text.0.push(('\\', line)),
            (Grammar::Systemd, Some((e, l))) => word.text.0.push((unescape(e), l)),
            (Grammar::Command, None) => return Err(LexError::TrailingBackslash),
            (_, Some(('\n', _)) | None) => {}
            (_, Some(e)) => word.text.0.push(e),
        }
        Ok(())
    }

    fn systemd_quoted(&mut self, quote: char, word: &mut Word) {
        while let Some((c, line)) = self.bump() {
            match c {
                '\\' => {
                    // Never fails in this grammar.
                    let _ = self.escaped(line, word);
                }
                c if c == quote => return,
                _ => word.text.0.push((c, line)),
            }
        }
    }

    fn single_quoted(&mut self, word: &mut Word) -> Result<(), LexError> {
        while let Some((c, line)) = self.bump() {
            if c == '\'' {
                return Ok(());
            }
            word.text.0.push((c, line));
        }
        self.open_quote(LexError::SingleQuote)
    }

    fn double_quoted(&mut self, word: &mut Word, vars: Lookup<'_>) -> Result<(), LexError> {
        while let Some((c, line)) = self.bump() {
            match c {
                '"' => return Ok(()),
                '\\' => match self.peek() {
                    Some(('\n', _)) => self.pos += 1,
                    Some((e @ ('$' | '`' | '"' | '\\'), l)) => {
                        self.pos += 1;
                        word.text.0.push((e, l));
                    }
                    _ => word.text.0.push((c, line)),
                },
                '$' | '`' if self.grammar == Grammar::Command => {
                    return Err(LexError::NeedsShellInQuotes(c));
                }
                '$' => self.expand(line, word, vars),
                _ => word.text.0.push((c, line)),
            }
        }
        self.open_quote(LexError::DoubleQuote)
    }

    /// A quote still open at the end: the shell reading a file takes the
    /// rest as quoted, a command is refused.
    fn open_quote(&self, error: LexError) -> Result<(), LexError> {
        match self.grammar {
            Grammar::Command => Err(error),
            _ => Ok(()),
        }
    }

    /// `$NAME` or `${NAME}` from an earlier assignment; unset is empty, and
    /// any other `$` form is kept as written.
    fn expand(&mut self, line: usize, word: &mut Word, vars: Lookup<'_>) {
        let braced = self.peek_is('{');
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
        if let Some(value) = vars(&name) {
            word.text.0.extend(value.0.iter().copied());
        }
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
