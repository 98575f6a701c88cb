//! daemon.json: the strict parser and the two edits `enable` and `disable`
//! make (`with_string("userns-remap", ..)` and `without("userns-remap")`).
//!
//! Invariants beyond "no panic":
//! - setting userns-remap gives a document that parses, keeps every other key
//!   in order with the same value, and reads back as "default";
//! - removing it again gives a document that parses, with the other keys;
//! - when the original had no userns-remap and a non-empty root object,
//!   set-then-remove gives back the original bytes exactly;
//! - the strict parser is never looser than serde_json (after stripping a
//!   BOM, and with lone UTF-16 surrogate escapes masked: the parser decodes
//!   those to U+FFFD as dockerd's Go decoder does, serde_json rejects them).

#![no_main]

use std::path::Path;

use docker_userns::config::daemon_json::DaemonConfig;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

const KEY: &str = "userns-remap";

fuzz_target!(|data: &[u8]| {
    let path = Path::new("f");
    let Ok(original) = DaemonConfig::parse(path, data) else {
        return;
    };
    let text = original.text();
    assert_eq!(text.as_bytes(), data, "text() is not the input");
    serde_json_agrees(text);

    let keys = original.keys();
    let had_key = keys.contains(&KEY);
    let others: Vec<&str> = keys.iter().copied().filter(|k| *k != KEY).collect();

    let set_text = original.with_string(KEY, "default");
    let set = DaemonConfig::parse(path, set_text.as_bytes()).unwrap_or_else(|e| {
        panic!("with_string output does not parse: {e}\n--- output:\n{set_text:?}")
    });
    let set_keys = set.keys();
    let set_others: Vec<&str> = set_keys.iter().copied().filter(|k| *k != KEY).collect();
    assert_eq!(set_others, others, "with_string changed the other keys");
    if had_key {
        assert_eq!(set_keys, keys, "with_string moved an existing key");
    } else {
        assert_eq!(
            set_keys.last(),
            Some(&KEY),
            "with_string did not append the key"
        );
    }
    for key in &others {
        assert_eq!(
            set.value(key),
            original.value(key),
            "with_string changed the value of {key:?}"
        );
    }
    match set.string(KEY) {
        Ok(Some(value)) => assert_eq!(value, "default"),
        other => panic!("userns-remap reads back as {other:?}"),
    }
    serde_json_agrees(&set_text);

    let removed_text = set.without(KEY);
    let removed = DaemonConfig::parse(path, removed_text.as_bytes()).unwrap_or_else(|e| {
        panic!("without output does not parse: {e}\n--- output:\n{removed_text:?}")
    });
    assert_eq!(removed.keys(), others, "without changed the other keys");
    assert_eq!(removed.string(KEY), Ok(None));

    if !had_key && !keys.is_empty() {
        assert_eq!(
            removed_text, text,
            "set then remove did not give back the original bytes"
        );
    }

    // Removing from the original directly also leaves a valid document.
    let direct = original.without(KEY);
    if !had_key {
        assert_eq!(direct, text, "without of an absent key changed the text");
    }
    let direct_parsed = DaemonConfig::parse(path, direct.as_bytes())
        .unwrap_or_else(|e| panic!("without output does not parse: {e}\n--- output:\n{direct:?}"));
    assert_eq!(direct_parsed.keys(), others);
});

/// A document the strict parser accepted must be accepted by serde_json.
fn serde_json_agrees(text: &str) {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    if body.trim_matches([' ', '\t', '\n', '\r']).is_empty() {
        // An empty daemon.json is `{}` to dockerd; serde_json rejects it.
        return;
    }
    let masked = mask_surrogate_escapes(body);
    let mut de = serde_json::Deserializer::from_str(&masked);
    de.disable_recursion_limit();
    let result = serde_json::Value::deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match result {
        Ok(value) => assert!(value.is_object(), "accepted a non-object root: {value:?}"),
        Err(e) => {
            panic!("strict parser accepted what serde_json rejects: {e}\n--- text:\n{body:?}")
        }
    }
}

/// Replaces each `\uD800`..`\uDFFF` escape with `\u0041` (same length, and
/// valid wherever the original was).
fn mask_surrogate_escapes(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let mut i = 0;
    while i + 6 <= bytes.len() {
        if bytes[i] == b'\\' && bytes[i + 1] == b'u' {
            let hex = &bytes[i + 2..i + 6];
            if hex.iter().all(u8::is_ascii_hexdigit) {
                let n = u32::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
                if (0xD800..=0xDFFF).contains(&n) {
                    bytes[i + 2..i + 6].copy_from_slice(b"0041");
                }
                i += 6;
                continue;
            }
        }
        i += 1;
    }
    String::from_utf8(bytes).expect("only ASCII was replaced")
}
