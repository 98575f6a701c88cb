//! /etc/passwd and /etc/group (the same input to both parsers).
//!
//! Invariants beyond "no panic":
//! - every entry and malformed line number is a line of the file, each line
//!   is reported at most once, and an entry's line starts with `name:`;
//! - both parsers agree on whether the input is UTF-8.

#![no_main]

use std::collections::HashSet;
use std::path::Path;

use docker_userns::config::passwd::{Groups, Passwd};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("f");
    let passwd = Passwd::parse(path, data);
    let groups = Groups::parse(path, data);
    assert_eq!(
        passwd.is_ok(),
        groups.is_ok(),
        "parsers disagree on the input"
    );
    if let Err(e) = &passwd {
        assert_eq!(
            Some(e),
            groups.as_ref().err(),
            "parsers report different errors"
        );
        let lines = data.split(|&b| b == b'\n').count();
        assert!(
            e.line >= 1 && e.line <= lines,
            "error line {} of {lines}",
            e.line
        );
        return;
    }
    let (passwd, groups) = (passwd.unwrap(), groups.unwrap());
    let text = std::str::from_utf8(data).expect("parsed, so UTF-8");
    let lines: Vec<&str> = text
        .split_inclusive('\n')
        .map(|l| l.strip_suffix('\n').unwrap_or(l))
        .collect();

    let mut seen = HashSet::new();
    for e in &passwd.entries {
        assert!(
            e.line >= 1 && e.line <= lines.len(),
            "passwd line {} of {}",
            e.line,
            lines.len()
        );
        assert!(!e.name.is_empty());
        assert!(lines[e.line - 1].starts_with(&format!("{}:", e.name)));
        assert!(seen.insert(e.line), "line {} reported twice", e.line);
    }
    for m in &passwd.malformed {
        assert!(
            m.line >= 1 && m.line <= lines.len(),
            "passwd malformed line {} of {}",
            m.line,
            lines.len()
        );
        assert!(seen.insert(m.line), "line {} reported twice", m.line);
    }

    let mut seen = HashSet::new();
    for e in &groups.entries {
        assert!(
            e.line >= 1 && e.line <= lines.len(),
            "group line {} of {}",
            e.line,
            lines.len()
        );
        assert!(!e.name.is_empty());
        assert!(lines[e.line - 1].starts_with(&format!("{}:", e.name)));
        assert!(seen.insert(e.line), "line {} reported twice", e.line);
    }
    for m in &groups.malformed {
        assert!(
            m.line >= 1 && m.line <= lines.len(),
            "group malformed line {} of {}",
            m.line,
            lines.len()
        );
        assert!(seen.insert(m.line), "line {} reported twice", m.line);
    }
});
