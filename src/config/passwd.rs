//! passwd and group: the accounts and ids already in use.

use std::path::Path;

use super::{Malformed, ParseError, decode_utf8, split_lines_keep_ends};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub(crate) gid: u32,
    pub line: usize,
}

/// The parsed passwd file; lines that do not parse are reported.
#[derive(Debug, Clone, Default)]
pub struct Passwd {
    pub entries: Vec<PasswdEntry>,
    pub malformed: Vec<Malformed>,
}

#[derive(Debug, Clone, Default)]
pub struct Groups {
    pub entries: Vec<GroupEntry>,
    pub malformed: Vec<Malformed>,
}

impl Passwd {
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ParseError> {
        let mut db = Passwd::default();
        for (line, fields) in records(&decode_utf8(path, bytes)?, 7, &mut db.malformed) {
            match (id(fields[2]), id(fields[3])) {
                (Some(uid), Some(gid)) => db.entries.push(PasswdEntry {
                    name: fields[0].into(),
                    uid,
                    gid,
                    line,
                }),
                _ => db.malformed.push(Malformed {
                    line,
                    reason: "uid or gid is not a number below 2^32".into(),
                }),
            }
        }
        Ok(db)
    }

    pub(crate) fn by_name(&self, name: &str) -> Option<&PasswdEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    pub(crate) fn by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.entries.iter().find(|e| e.uid == uid)
    }
}

impl Groups {
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ParseError> {
        let mut db = Groups::default();
        for (line, fields) in records(&decode_utf8(path, bytes)?, 4, &mut db.malformed) {
            match id(fields[2]) {
                Some(gid) => db.entries.push(GroupEntry {
                    name: fields[0].into(),
                    gid,
                    line,
                }),
                None => db.malformed.push(Malformed {
                    line,
                    reason: "gid is not a number below 2^32".into(),
                }),
            }
        }
        Ok(db)
    }

    pub(crate) fn by_name(&self, name: &str) -> Option<&GroupEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    pub(crate) fn by_gid(&self, gid: u32) -> Option<&GroupEntry> {
        self.entries.iter().find(|e| e.gid == gid)
    }
}

/// The colon-separated records of a passwd-style file with exactly
/// `fields` fields; NIS `+`/`-` lines and blank lines are skipped.
fn records<'a>(
    text: &'a str,
    fields: usize,
    malformed: &mut Vec<Malformed>,
) -> Vec<(usize, Vec<&'a str>)> {
    let mut out = Vec::new();
    for (index, raw) in split_lines_keep_ends(text).enumerate() {
        let line = raw.strip_suffix('\n').unwrap_or(raw);
        if line.is_empty() || line.starts_with('+') || line.starts_with('-') {
            continue;
        }
        let parts: Vec<&str> = line.split(':').collect();
        if parts.len() != fields || parts[0].is_empty() {
            malformed.push(Malformed {
                line: index + 1,
                reason: format!(
                    "expected {fields} ':'-separated fields, found {}",
                    parts.len()
                ),
            });
            continue;
        }
        out.push((index + 1, parts));
    }
    out
}

fn id(field: &str) -> Option<u32> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

/// True for a name shadow's useradd would accept for a system account:
/// it reaches command lines, so nothing that could look like an option.
pub(crate) fn is_valid_account_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() <= 32
        && (first.is_ascii_lowercase() || first == '_')
        && name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '_'
                || c == '-'
                || (c == '$' && i == name.len() - 1)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_entries_and_malformed_lines() {
        let text = "root:x:0:0:root:/root:/bin/bash\n+nis\nbad:x:1\nweird:x:abc:1:::\n\nu:x:4294967295:5:::\n";
        let db = Passwd::parse(Path::new("passwd"), text.as_bytes()).unwrap();
        assert_eq!(db.entries.len(), 2);
        assert_eq!(db.by_uid(4294967295).unwrap().name, "u");
        let lines: Vec<_> = db.malformed.iter().map(|m| m.line).collect();
        assert_eq!(lines, [3, 4]);
    }

    #[test]
    fn ids_past_2_32_are_malformed() {
        let db = Passwd::parse(Path::new("passwd"), b"big:x:4294967296:0:::\n").unwrap();
        assert!(db.entries.is_empty());
        assert_eq!(db.malformed.len(), 1);
    }

    #[test]
    fn groups_parse() {
        let db = Groups::parse(Path::new("group"), b"root:x:0:\ndocker:x:998:alice,bob\n").unwrap();
        assert_eq!(db.by_name("docker").unwrap().gid, 998);
        assert_eq!(db.by_gid(0).unwrap().name, "root");
    }

    #[test]
    fn account_names_that_could_be_options_are_invalid() {
        assert!(is_valid_account_name("dockremap"));
        assert!(is_valid_account_name("_svc-1"));
        for bad in ["", "-r", "a:b", "Root", "a b", "a/b", &"x".repeat(33)] {
            assert!(!is_valid_account_name(bad), "{bad}");
        }
    }
}
