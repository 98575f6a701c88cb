//! Pure parsers and editors for the files docker-userns reads and writes.
//!
//! Each parser takes bytes and a display path and returns a typed value that
//! remembers the original lines, so an edit writes back every byte it did not
//! mean to change.

pub mod daemon_json;
pub mod json;
pub mod login_defs;
pub mod passwd;
pub mod subid;

use std::fmt;
use std::path::PathBuf;

/// A problem in an input file, located by line (and column where it helps).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub(crate) path: PathBuf,
    pub line: usize,
    pub(crate) column: Option<usize>,
    pub(crate) message: String,
}

impl ParseError {
    pub(crate) fn new(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        ParseError {
            path: path.into(),
            line,
            column: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(mut self, column: usize) -> Self {
        self.column = Some(column);
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)?;
        if let Some(column) = self.column {
            write!(f, ":{column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A line kept verbatim because it does not parse; reported, never dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub line: usize,
    pub(crate) reason: String,
}

/// Splits text into lines that keep their terminators, so joining them
/// gives back the exact bytes.
pub(crate) fn split_lines_keep_ends(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
}

/// Decodes a text file strictly: invalid UTF-8 is an error with the line of
/// the first bad byte.
pub(crate) fn decode_utf8(path: &std::path::Path, bytes: &[u8]) -> Result<String, ParseError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        Err(err) => {
            let good = &bytes[..err.valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            let column =
                good.len() - good.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
            Err(ParseError::new(path, line, "invalid UTF-8").at(column))
        }
    }
}
