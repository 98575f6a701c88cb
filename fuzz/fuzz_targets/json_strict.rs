//! The strict JSON validator on arbitrary UTF-8.
//!
//! Invariants beyond "no panic":
//! - an error's line is within the text (1..=number of '\n' + 1) and its
//!   column is within that line (1..=characters in the line, BOM not
//!   counted, + 1);
//! - a parsed root object's spans are in bounds, on character boundaries,
//!   in order and non-overlapping, with the braces and key quotes where the
//!   spans say; keys are unique.

#![no_main]

use std::collections::HashSet;

use docker_userns::config::json::parse_root;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Arbitrary UTF-8: the longest valid prefix of the input.
    let text = match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&data[..e.valid_up_to()]).expect("valid prefix"),
    };
    match parse_root(text) {
        Err(e) => {
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(
                e.line >= 1 && e.line <= lines.len(),
                "error line {} outside 1..={} ({})",
                e.line,
                lines.len(),
                e.message
            );
            let width = lines[e.line - 1]
                .chars()
                .filter(|&c| c != '\u{feff}')
                .count();
            assert!(
                e.column >= 1 && e.column <= width + 1,
                "error column {} outside 1..={} on line {} ({})",
                e.column,
                width + 1,
                e.line,
                e.message
            );
            assert!(!e.message.is_empty());
        }
        Ok(None) => {
            let body = text.strip_prefix('\u{feff}').unwrap_or(text);
            assert!(
                body.bytes()
                    .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')),
                "no root object, but the text is not blank"
            );
        }
        Ok(Some(root)) => {
            let bytes = text.as_bytes();
            assert!(root.open < root.close && root.close < bytes.len());
            assert_eq!(bytes[root.open], b'{');
            assert_eq!(bytes[root.close], b'}');
            let mut after = root.open + 1;
            let mut seen = HashSet::new();
            for m in &root.members {
                assert!(after <= m.span.start, "members overlap or are out of order");
                assert!(m.span.start < m.value.start && m.value.start < m.value.end);
                assert_eq!(m.span.end, m.value.end);
                assert!(m.span.end <= root.close);
                assert!(text.is_char_boundary(m.span.start));
                assert!(text.is_char_boundary(m.value.start));
                assert!(text.is_char_boundary(m.value.end));
                assert_eq!(bytes[m.span.start], b'"');
                assert!(seen.insert(m.key.as_str()), "duplicate key {:?}", m.key);
                after = m.span.end;
            }
        }
    }
});
