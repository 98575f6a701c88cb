//! /etc/subuid and /etc/subgid: owners' subordinate id ranges.
//!
//! Lines are validated as shadow and dockerd both require (three non-empty
//! fields, decimal numbers, the range within 2^32). A line that fails is kept
//! verbatim and reported; if its numbers can still be read, its range is
//! treated as taken, since some reader may honour it.

use std::path::Path;

use super::{Malformed, ParseError, decode_utf8, split_lines_keep_ends};
use crate::ids::IdRange;

/// shadow reads lines into a 1024-byte buffer.
const MAX_LINE: usize = 1023;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubIdEntry {
    /// A login name or a numeric uid.
    pub owner: String,
    pub range: IdRange,
    pub line: usize,
}

#[derive(Debug, Clone, Default)]
pub struct SubIdFile {
    text: String,
    pub entries: Vec<SubIdEntry>,
    pub malformed: Vec<Malformed>,
    /// Ranges read leniently from malformed lines.
    salvaged: Vec<IdRange>,
}

impl SubIdFile {
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ParseError> {
        let text = decode_utf8(path, bytes)?;
        let mut file = SubIdFile::default();
        for (index, raw) in split_lines_keep_ends(&text).enumerate() {
            let line = raw.strip_suffix('\n').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            match parse_line(line) {
                Ok((owner, range)) => file.entries.push(SubIdEntry {
                    owner: owner.into(),
                    range,
                    line: index + 1,
                }),
                Err(reason) => {
                    file.malformed.push(Malformed {
                        line: index + 1,
                        reason,
                    });
                    file.salvaged.extend(salvage(line));
                }
            }
        }
        file.text = text;
        Ok(file)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The ranges dockerd stacks for a user, in file order: lines whose
    /// owner is the name or the numeric uid.
    pub(crate) fn ranges_of(&self, name: &str, uid: u32) -> Vec<IdRange> {
        let uid = uid.to_string();
        self.entries
            .iter()
            .filter(|e| e.owner == name || e.owner == uid)
            .map(|e| e.range)
            .collect()
    }

    /// Every range any line claims, including readable malformed lines.
    pub fn taken(&self) -> impl Iterator<Item = IdRange> + '_ {
        self.entries
            .iter()
            .map(|e| e.range)
            .chain(self.salvaged.iter().copied())
    }

    /// The file's text with `owner:start:count` appended as a new line.
    pub fn with_appended(&self, owner: &str, range: IdRange) -> String {
        let mut out = self.text.clone();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("{owner}:{}:{}\n", range.start, range.count));
        out
    }
}

fn parse_line(line: &str) -> Result<(&str, IdRange), String> {
    if line.len() > MAX_LINE {
        return Err(format!("line is longer than {MAX_LINE} bytes"));
    }
    let fields: Vec<&str> = line.split(':').collect();
    let [owner, start, count] = fields[..] else {
        return Err(format!(
            "expected owner:start:count, found {} fields",
            fields.len()
        ));
    };
    if owner.is_empty() {
        return Err("the owner is empty".into());
    }
    let start = decimal(start).ok_or_else(|| format!("start {start:?} is not a decimal number"))?;
    let count = decimal(count).ok_or_else(|| format!("count {count:?} is not a decimal number"))?;
    if count == 0 {
        return Err("count is 0".into());
    }
    IdRange::new(start, count)
        .map(|range| (owner, range))
        .ok_or_else(|| format!("range {start}+{count} goes past 2^32"))
}

fn decimal(field: &str) -> Option<u64> {
    if field.is_empty() || field.len() > 20 || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

/// The range a lenient reader (dockerd trims whitespace) would take.
fn salvage(line: &str) -> Option<IdRange> {
    let fields: Vec<&str> = line.trim().split(':').map(str::trim).collect();
    let [_, start, count] = fields[..] else {
        return None;
    };
    let start = decimal(start)?;
    let count = decimal(count)?;
    IdRange::new(
        start,
        count.min(crate::ids::ID_LIMIT - start.min(crate::ids::ID_LIMIT - 1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> SubIdFile {
        SubIdFile::parse(Path::new("/etc/subuid"), text.as_bytes()).unwrap()
    }

    #[test]
    fn owners_by_name_and_number_stack_in_file_order() {
        let f = parse("alice:100000:65536\n1001:300000:10\nbob:200000:65536\nalice:400000:5\n");
        let r = f.ranges_of("alice", 1001);
        assert_eq!(
            r.iter().map(|r| r.start).collect::<Vec<_>>(),
            [100_000, 300_000, 400_000]
        );
    }

    #[test]
    fn malformed_lines_are_reported_and_salvaged() {
        let f = parse(
            "a:1:2:3\n# comment\nb:0x10:5\nc:100:0\nd:4294967295:2\ne:-5:10\nf:500000:65536\r\n:1:1\n",
        );
        let lines: Vec<_> = f.malformed.iter().map(|m| m.line).collect();
        assert_eq!(lines, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(f.entries.is_empty());
        let taken: Vec<_> = f.taken().collect();
        assert!(
            taken.contains(&IdRange::new(500_000, 65536).unwrap()),
            "CRLF line still claims its range"
        );
        assert!(taken.contains(&IdRange::new(4294967295, 1).unwrap()));
    }

    #[test]
    fn append_adds_a_missing_newline() {
        assert_eq!(
            parse("a:1:2").with_appended("x", IdRange::new(5, 6).unwrap()),
            "a:1:2\nx:5:6\n"
        );
        assert_eq!(
            parse("").with_appended("x", IdRange::new(5, 6).unwrap()),
            "x:5:6\n"
        );
    }

    #[test]
    fn overlong_lines_are_malformed() {
        let f = parse(&format!("{}:1:1\n", "u".repeat(1100)));
        assert_eq!(f.malformed.len(), 1);
    }

    proptest! {
        #[test]
        fn unchanged_text_round_trips_byte_for_byte(text in "[a-z0-9:\\n\\r #-]{0,200}") {
            let f = parse(&text);
            prop_assert_eq!(f.text(), text.as_str());
            let appended = f.with_appended("z", IdRange::new(1, 1).unwrap());
            prop_assert!(appended.starts_with(&text));
        }
    }
}
