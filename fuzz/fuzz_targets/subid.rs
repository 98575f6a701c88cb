//! /etc/subuid and /etc/subgid.
//!
//! Invariants beyond "no panic":
//! - `text()` is the input, byte for byte;
//! - every entry's range is non-empty and ends at or below 2^32, and every
//!   entry and malformed line number is a line of the file;
//! - `with_appended` keeps the input as a prefix, and its result re-parses
//!   with the same entries and malformed lines plus one `fuzz:1:1` entry on
//!   the last line.

#![no_main]

use std::path::Path;

use docker_userns::config::subid::SubIdFile;
use docker_userns::ids::IdRange;
use libfuzzer_sys::fuzz_target;

const ID_LIMIT: u64 = 1 << 32;

fn line_count(text: &str) -> usize {
    text.split_inclusive('\n').count()
}

fn check_entries(file: &SubIdFile, text: &str) {
    let lines = line_count(text);
    for e in &file.entries {
        assert!(e.range.count > 0, "empty range on line {}", e.line);
        assert!(e.range.end() <= ID_LIMIT, "range {:?} past 2^32", e.range);
        assert!(
            e.line >= 1 && e.line <= lines,
            "entry line {} of {lines}",
            e.line
        );
        assert!(!e.owner.is_empty());
    }
    for m in &file.malformed {
        assert!(
            m.line >= 1 && m.line <= lines,
            "malformed line {} of {lines}",
            m.line
        );
    }
    for r in file.taken() {
        assert!(
            r.count > 0 && r.end() <= ID_LIMIT,
            "taken range {r:?} past 2^32"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("f");
    let Ok(file) = SubIdFile::parse(path, data) else {
        return;
    };
    assert_eq!(file.text().as_bytes(), data, "text() is not the input");
    check_entries(&file, file.text());

    let range = IdRange::new(1, 1).expect("valid range");
    let appended = file.with_appended("fuzz", range);
    assert!(
        appended.as_bytes().starts_with(data),
        "with_appended does not keep the input as a prefix"
    );
    let again = SubIdFile::parse(path, appended.as_bytes()).expect("appended text parses");
    assert_eq!(again.text(), appended);
    check_entries(&again, &appended);
    let last = line_count(&appended);
    assert_eq!(again.entries.len(), file.entries.len() + 1);
    assert_eq!(&again.entries[..file.entries.len()], &file.entries[..]);
    let new = again.entries.last().expect("an entry");
    assert_eq!(
        (new.owner.as_str(), new.range, new.line),
        ("fuzz", range, last),
        "the appended entry is not the last line"
    );
    assert_eq!(
        again.malformed, file.malformed,
        "appending changed malformed lines"
    );
});
