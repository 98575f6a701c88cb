//! login.defs: the SUB_* and SYS_* bounds that shadow allocates ids within.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{ParseError, decode_utf8};

/// Which id space a bound is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Uid,
    Gid,
}

impl IdKind {
    fn tag(self) -> &'static str {
        match self {
            IdKind::Uid => "UID",
            IdKind::Gid => "GID",
        }
    }
}

/// The values set in login.defs, with the line each came from.
#[derive(Debug, Clone, Default)]
pub struct LoginDefs {
    path: PathBuf,
    values: HashMap<String, (String, usize)>,
}

impl LoginDefs {
    /// Blank and `#` lines are skipped; a later setting wins, as in shadow.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ParseError> {
        let text = decode_utf8(path, bytes)?;
        let mut values = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let key = words.next().expect("non-empty line has a word");
            let value = words.next().unwrap_or("").trim_matches('"');
            values.insert(key.to_owned(), (value.to_owned(), index + 1));
        }
        Ok(LoginDefs {
            path: path.to_owned(),
            values,
        })
    }

    /// A missing login.defs means shadow's compiled-in defaults.
    pub(crate) fn absent(path: &Path) -> Self {
        LoginDefs {
            path: path.to_owned(),
            values: HashMap::new(),
        }
    }

    fn number(&self, key: &str, default: u64) -> Result<u64, ParseError> {
        let Some((raw, line)) = self.values.get(key) else {
            return Ok(default);
        };
        parse_c_ulong(raw)
            .filter(|&v| v < crate::ids::ID_LIMIT)
            .ok_or_else(|| {
                ParseError::new(
                    &self.path,
                    *line,
                    format!("{key} is {raw:?}, not a number below 2^32"),
                )
            })
    }

    /// SUB_UID_MIN..=SUB_UID_MAX (or SUB_GID_*), shadow's defaults when unset.
    pub fn subordinate_bounds(&self, kind: IdKind) -> Result<(u64, u64), ParseError> {
        let min_key = format!("SUB_{}_MIN", kind.tag());
        let max_key = format!("SUB_{}_MAX", kind.tag());
        let min = self.number(&min_key, 100_000)?;
        let max = self.number(&max_key, 600_100_000)?;
        self.ordered(&min_key, min, &max_key, max)
    }

    /// SYS_UID_MIN..=SYS_UID_MAX (or SYS_GID_*): where system accounts go.
    pub fn system_bounds(&self, kind: IdKind) -> Result<(u64, u64), ParseError> {
        let first_regular = self.number(&format!("{}_MIN", kind.tag()), 1000)?;
        let min_key = format!("SYS_{}_MIN", kind.tag());
        let max_key = format!("SYS_{}_MAX", kind.tag());
        let min = self.number(&min_key, 101)?;
        let max = self.number(&max_key, first_regular.saturating_sub(1))?;
        self.ordered(&min_key, min, &max_key, max)
    }

    fn ordered(
        &self,
        min_key: &str,
        min: u64,
        max_key: &str,
        max: u64,
    ) -> Result<(u64, u64), ParseError> {
        if min > max {
            let line = self
                .values
                .get(max_key)
                .or(self.values.get(min_key))
                .map_or(0, |v| v.1);
            return Err(ParseError::new(
                &self.path,
                line,
                format!("{min_key} ({min}) is greater than {max_key} ({max})"),
            ));
        }
        Ok((min, max))
    }
}

/// Parses as C's strtoul with base 0 does for shadow: decimal, 0x hex or
/// leading-0 octal, with nothing after the digits.
fn parse_c_ulong(raw: &str) -> Option<u64> {
    let (digits, radix) = if let Some(hex) = raw.strip_prefix("0x").or(raw.strip_prefix("0X")) {
        (hex, 16)
    } else if raw.len() > 1 && raw.starts_with('0') {
        (&raw[1..], 8)
    } else {
        (raw, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs(text: &str) -> LoginDefs {
        LoginDefs::parse(Path::new("/etc/login.defs"), text.as_bytes()).unwrap()
    }

    #[test]
    fn defaults_when_unset() {
        let d = LoginDefs::absent(Path::new("x"));
        assert_eq!(
            d.subordinate_bounds(IdKind::Uid).unwrap(),
            (100_000, 600_100_000)
        );
        assert_eq!(d.system_bounds(IdKind::Gid).unwrap(), (101, 999));
    }

    #[test]
    fn custom_values_tabs_and_comments() {
        let d = defs(
            "# c\nSUB_UID_MIN\t\t 200000\nSUB_UID_MAX 0x10000000\nSUB_GID_MIN 0400000\nUID_MIN 500\n",
        );
        assert_eq!(
            d.subordinate_bounds(IdKind::Uid).unwrap(),
            (200_000, 0x1000_0000)
        );
        assert_eq!(d.subordinate_bounds(IdKind::Gid).unwrap().0, 0o400000);
        assert_eq!(d.system_bounds(IdKind::Uid).unwrap(), (101, 499));
    }

    #[test]
    fn bad_values_name_the_line() {
        let e = defs("UMASK 022\nSUB_UID_MIN 10k\n")
            .subordinate_bounds(IdKind::Uid)
            .unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("SUB_UID_MIN"));
        let e = defs("SUB_GID_MIN 5\nSUB_GID_MAX 4\n")
            .subordinate_bounds(IdKind::Gid)
            .unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            defs("SUB_UID_MAX 4294967296")
                .subordinate_bounds(IdKind::Uid)
                .is_err()
        );
        assert!(
            defs("SUB_UID_MIN -1")
                .subordinate_bounds(IdKind::Uid)
                .is_err()
        );
    }
}
