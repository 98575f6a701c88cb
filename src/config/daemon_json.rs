//! daemon.json: strict parsing and minimal, order-keeping edits.
//!
//! Edits splice the original text: every other key, its formatting, nesting
//! and order stay byte for byte, so a diff shows only what changed.

use std::path::{Path, PathBuf};

use super::json::{self, RootObject};
use super::{ParseError, decode_utf8};

pub(crate) const USERNS_REMAP: &str = "userns-remap";
pub(crate) const DATA_ROOT: &str = "data-root";

/// A parsed daemon.json and its original text.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    path: PathBuf,
    text: String,
    root: Option<RootObject>,
}

impl DaemonConfig {
    /// A missing file behaves as an empty one, as it does for dockerd.
    pub(crate) fn empty(path: &Path) -> Self {
        DaemonConfig {
            path: path.to_owned(),
            text: String::new(),
            root: None,
        }
    }

    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ParseError> {
        let text = decode_utf8(path, bytes)?;
        let root = json::parse_root(&text)
            .map_err(|e| ParseError::new(path, e.line, e.message).at(e.column))?;
        Ok(DaemonConfig {
            path: path.to_owned(),
            text,
            root,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn keys(&self) -> Vec<&str> {
        self.root
            .iter()
            .flat_map(|r| r.members.iter().map(|m| m.key.as_str()))
            .collect()
    }

    /// The value of a top-level key, decoded.
    pub fn value(&self, key: &str) -> Option<serde_json::Value> {
        let member = self.root.as_ref()?.get(key)?;
        serde_json::from_str(&self.text[member.value.clone()]).ok()
    }

    /// The line a top-level key is set on.
    pub(crate) fn line_of(&self, key: &str) -> Option<usize> {
        let member = self.root.as_ref()?.get(key)?;
        Some(json::line_column(&self.text, member.span.start).0)
    }

    /// The value of a key that must be a string, if set.
    pub fn string(&self, key: &str) -> Result<Option<String>, ParseError> {
        let Some(member) = self.root.as_ref().and_then(|r| r.get(key)) else {
            return Ok(None);
        };
        let raw = &self.text[member.value.clone()];
        match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(serde_json::Value::String(s)) => Ok(Some(s)),
            _ => {
                let (line, column) = json::line_column(&self.text, member.value.start);
                Err(ParseError::new(
                    &self.path,
                    line,
                    format!("{key:?} must be a string, found {raw}"),
                )
                .at(column))
            }
        }
    }

    /// The exact text of a top-level key's value, as written in the file.
    pub(crate) fn raw(&self, key: &str) -> Option<&str> {
        let member = self.root.as_ref()?.get(key)?;
        Some(&self.text[member.value.clone()])
    }

    /// The text with `key` set to the string `value`, everything else kept.
    pub fn with_string(&self, key: &str, value: &str) -> String {
        self.with_raw(key, &json::quote(value))
    }

    /// The text with `key` set to `literal` (JSON text, written as given),
    /// everything else kept.
    pub(crate) fn with_raw(&self, key: &str, literal: &str) -> String {
        let Some(root) = &self.root else {
            let bom = if self.text.starts_with('\u{feff}') {
                "\u{feff}"
            } else {
                ""
            };
            return format!("{bom}{{\n  {}: {literal}\n}}\n", json::quote(key));
        };
        if let Some(member) = root.get(key) {
            return splice(&self.text, member.value.clone(), literal);
        }
        let Some(last) = root.members.last() else {
            let object = format!("{{\n  {}: {literal}\n}}", json::quote(key));
            return splice(&self.text, root.open..root.close + 1, &object);
        };
        let first = &root.members[0];
        let lead = &self.text[root.open + 1..first.span.start];
        // Same indentation and line ending as the first member.
        let newline = if lead.contains("\r\n") { "\r\n" } else { "\n" };
        let addition = match lead.rfind('\n') {
            Some(nl) => format!(
                ",{newline}{}{}: {literal}",
                &lead[nl + 1..],
                json::quote(key)
            ),
            None => format!(", {}: {literal}", json::quote(key)),
        };
        splice(&self.text, last.span.end..last.span.end, &addition)
    }

    /// The text without `key` (and the comma that separated it).
    pub fn without(&self, key: &str) -> String {
        let Some(root) = &self.root else {
            return self.text.clone();
        };
        let Some(index) = root.members.iter().position(|m| m.key == key) else {
            return self.text.clone();
        };
        let members = &root.members;
        let cut = if index + 1 < members.len() {
            // Drop this member up to the start of the next one, keeping the
            // next member where this one's indentation was.
            members[index].span.start..members[index + 1].span.start
        } else if index > 0 {
            members[index - 1].span.end..members[index].span.end
        } else {
            root.open + 1..root.close
        };
        splice(&self.text, cut, "")
    }
}

fn splice(text: &str, range: std::ops::Range<usize>, with: &str) -> String {
    let mut out = String::with_capacity(text.len() + with.len());
    out.push_str(&text[..range.start]);
    out.push_str(with);
    out.push_str(&text[range.end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> DaemonConfig {
        DaemonConfig::parse(Path::new("/etc/docker/daemon.json"), text.as_bytes()).unwrap()
    }

    fn reparse(text: &str) -> DaemonConfig {
        config(text)
    }

    #[test]
    fn adds_the_key_after_the_last_member_with_the_file_indentation() {
        let text =
            "{\n    \"log-driver\": \"journald\",\n    \"features\": {\"buildkit\": true}\n}\n";
        let out = config(text).with_string(USERNS_REMAP, "default");
        assert_eq!(
            out,
            "{\n    \"log-driver\": \"journald\",\n    \"features\": {\"buildkit\": true},\n    \"userns-remap\": \"default\"\n}\n"
        );
        assert_eq!(
            reparse(&out).keys(),
            ["log-driver", "features", "userns-remap"]
        );
    }

    #[test]
    fn crlf_files_get_crlf_lines() {
        let out = config("{\r\n  \"debug\": true\r\n}\r\n").with_string(USERNS_REMAP, "default");
        assert_eq!(
            out,
            "{\r\n  \"debug\": true,\r\n  \"userns-remap\": \"default\"\r\n}\r\n"
        );
    }

    #[test]
    fn adds_inline_on_a_one_line_object() {
        let out = config("{\"debug\": true}").with_string(USERNS_REMAP, "default");
        assert_eq!(out, "{\"debug\": true, \"userns-remap\": \"default\"}");
    }

    #[test]
    fn replaces_an_existing_value_in_place() {
        let text = "{\"userns-remap\": \"old\",  \"debug\": true}";
        let out = config(text).with_string(USERNS_REMAP, "dockremap");
        assert_eq!(out, "{\"userns-remap\": \"dockremap\",  \"debug\": true}");
    }

    #[test]
    fn empty_file_and_empty_object_get_a_fresh_object() {
        assert_eq!(config("").with_string("k", "v"), "{\n  \"k\": \"v\"\n}\n");
        assert_eq!(
            config("  {  }\n").with_string("k", "v"),
            "  {\n  \"k\": \"v\"\n}\n"
        );
    }

    #[test]
    fn bom_is_kept() {
        let out = config("\u{feff}{\"a\": 1}").with_string("k", "v");
        assert!(out.starts_with("\u{feff}{\"a\": 1, \"k\""));
        assert_eq!(
            config("\u{feff}").with_string("k", "v"),
            "\u{feff}{\n  \"k\": \"v\"\n}\n"
        );
    }

    #[test]
    fn string_reads_and_rejects_non_strings_with_position() {
        assert_eq!(
            config("{\"userns-remap\": \"a\\u0062\"}")
                .string(USERNS_REMAP)
                .unwrap()
                .as_deref(),
            Some("ab")
        );
        assert_eq!(config("{}").string(USERNS_REMAP).unwrap(), None);
        let e = config("{\n \"userns-remap\": 5\n}")
            .string(USERNS_REMAP)
            .unwrap_err();
        assert_eq!((e.line, e.column), (2, Some(18)));
    }

    #[test]
    fn removal_keeps_the_rest_valid_in_every_position() {
        let text = "{\n  \"a\": 1,\n  \"userns-remap\": \"x\",\n  \"b\": 2\n}\n";
        assert_eq!(
            config(text).without(USERNS_REMAP),
            "{\n  \"a\": 1,\n  \"b\": 2\n}\n"
        );
        let text = "{\n  \"a\": 1,\n  \"userns-remap\": \"x\"\n}\n";
        assert_eq!(config(text).without(USERNS_REMAP), "{\n  \"a\": 1\n}\n");
        let text = "{\"userns-remap\": \"x\"}";
        assert_eq!(config(text).without(USERNS_REMAP), "{}");
        assert_eq!(config("{\"a\": 1}").without(USERNS_REMAP), "{\"a\": 1}");
    }

    #[test]
    fn invalid_utf8_is_located() {
        let e = DaemonConfig::parse(Path::new("d.json"), b"{\n \"a\": \"\xff\"}").unwrap_err();
        assert_eq!((e.line, e.column), (2, Some(8)));
        assert!(e.to_string().starts_with("d.json:2:8: invalid UTF-8"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z\\u{e9}\"\\\\ ]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-z-]{1,6}", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn arb_document() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(("[a-z-]{1,8}", arb_value()), 1..6),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(members, pretty, bom)| {
                let object = Value::Object(
                    members
                        .into_iter()
                        .filter(|(k, _)| k != USERNS_REMAP)
                        .collect(),
                );
                let text = if pretty {
                    serde_json::to_string_pretty(&object).unwrap()
                } else {
                    serde_json::to_string(&object).unwrap()
                };
                format!("{}{text}\n", if bom { "\u{feff}" } else { "" })
            })
    }

    proptest! {
        #[test]
        fn setting_then_removing_a_new_key_restores_the_exact_bytes(text in arb_document()) {
            prop_assume!(text.trim_start_matches('\u{feff}').trim() != "{}");
            let original = DaemonConfig::parse(Path::new("d.json"), text.as_bytes()).unwrap();
            let edited_text = original.with_string(USERNS_REMAP, "default");
            let edited = DaemonConfig::parse(Path::new("d.json"), edited_text.as_bytes()).unwrap();
            let mut keys = original.keys();
            keys.push(USERNS_REMAP);
            prop_assert_eq!(edited.keys(), keys);
            let value = edited.string(USERNS_REMAP).unwrap();
            prop_assert_eq!(value.as_deref(), Some("default"));
            // Every other member's value is untouched, byte for byte.
            let strip = |t: &str| serde_json::from_str::<Value>(t.trim_start_matches('\u{feff}')).unwrap();
            let mut expected = strip(&text);
            expected.as_object_mut().unwrap().insert(USERNS_REMAP.into(), "default".into());
            prop_assert_eq!(strip(&edited_text), expected);
            prop_assert_eq!(edited.without(USERNS_REMAP), text);
        }
    }
}
