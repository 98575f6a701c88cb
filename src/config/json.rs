//! A strict JSON validator that records where each top-level member sits.
//!
//! serde_json silently keeps the last of duplicate keys and cannot say where a
//! member starts, and dockerd's own decoder is as lenient; a config editor
//! needs both, so this parser validates RFC 8259 exactly, rejects duplicate
//! keys at every depth, and returns byte spans so edits touch only the bytes
//! they must.

use std::collections::HashMap;
use std::ops::Range;

/// serde_json's own limit, which reads values back for us.
const MAX_DEPTH: usize = 127;

/// A syntax error at a 1-based line and column (columns count characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// One `"key": value` pair of the root object, as byte spans into the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: String,
    /// From the opening quote of the key to the end of the value.
    pub span: Range<usize>,
    pub value: Range<usize>,
}

/// The root object: where its braces are and its members in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootObject {
    pub open: usize,
    pub close: usize,
    pub members: Vec<Member>,
}

impl RootObject {
    pub(crate) fn get(&self, key: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.key == key)
    }
}

/// Parses a whole document whose root must be an object. A document of only
/// whitespace (after an optional BOM) is `None`, as dockerd treats it as `{}`.
pub fn parse_root(text: &str) -> Result<Option<RootObject>, JsonError> {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: text.strip_prefix('\u{feff}').map_or(0, |_| 3),
    };
    parser.skip_ws();
    if parser.pos == parser.bytes.len() {
        return Ok(None);
    }
    if parser.peek() != Some(b'{') {
        let found = parser.describe_value_start();
        return Err(parser.error(format!(
            "the top-level value must be an object, found {found}"
        )));
    }
    let root = parser.object(0, true)?.expect("root members are collected");
    parser.skip_ws();
    if parser.pos != parser.bytes.len() {
        return Err(parser.error("unexpected content after the top-level object".into()));
    }
    Ok(Some(root))
}

/// Encodes a string as a JSON string literal.
pub(crate) fn quote(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn error(&self, message: String) -> JsonError {
        self.error_at(self.pos, message)
    }

    fn error_at(&self, pos: usize, message: String) -> JsonError {
        let (line, column) = line_column(self.text, pos);
        JsonError {
            line,
            column,
            message,
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn describe_value_start(&self) -> &'static str {
        match self.peek() {
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            Some(b'-' | b'0'..=b'9') => "a number",
            Some(b'/' | b'#') => "a comment (comments are not allowed in JSON)",
            _ => "something that is not JSON",
        }
    }

    fn expect_value_start(&self) -> JsonError {
        match self.peek() {
            None => self.error("unexpected end of file, expected a value".into()),
            Some(b'/' | b'#') => self.error("comments are not allowed in JSON".into()),
            Some(b'\'') => self.error("strings must use double quotes".into()),
            Some(c) => self.error(format!(
                "expected a value, found {}",
                show_byte(self.text, self.pos, c)
            )),
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        match self.peek() {
            Some(b'{') => self.object(depth, false).map(|_| ()),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(|_| ()),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            _ => Err(self.expect_value_start()),
        }
    }

    fn object(&mut self, depth: usize, collect: bool) -> Result<Option<RootObject>, JsonError> {
        let open = self.pos;
        self.pos += 1;
        let mut members = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(collect.then_some(RootObject {
                open,
                close: self.pos - 1,
                members,
            }));
        }
        loop {
            self.skip_ws();
            let key_start = self.pos;
            if self.peek() == Some(b'}') {
                return Err(self.error("trailing comma before '}'".into()));
            }
            if self.peek() != Some(b'"') {
                return Err(match self.peek() {
                    None => self.error("unexpected end of file inside an object".into()),
                    Some(b'/' | b'#') => self.error("comments are not allowed in JSON".into()),
                    Some(c) => self.error(format!(
                        "expected a double-quoted key, found {}",
                        show_byte(self.text, self.pos, c)
                    )),
                });
            }
            let key = self.string()?;
            if let Some(first) = seen.get(&key) {
                let (line, _) = line_column(self.text, *first);
                return Err(self.error_at(
                    key_start,
                    format!("duplicate key {} (first set on line {line})", quote(&key)),
                ));
            }
            seen.insert(key.clone(), key_start);
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error(format!("expected ':' after key {}", quote(&key))));
            }
            self.pos += 1;
            self.skip_ws();
            let value_start = self.pos;
            self.value(depth + 1)?;
            if collect {
                members.push(Member {
                    key,
                    span: key_start..self.pos,
                    value: value_start..self.pos,
                });
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(collect.then_some(RootObject {
                        open,
                        close: self.pos - 1,
                        members,
                    }));
                }
                None => {
                    return Err(self.error("unexpected end of file, expected ',' or '}'".into()));
                }
                Some(b'/' | b'#') => {
                    return Err(self.error("comments are not allowed in JSON".into()));
                }
                Some(c) => {
                    return Err(self.error(format!(
                        "expected ',' or '}}' after a member, found {}",
                        show_byte(self.text, self.pos, c)
                    )));
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), JsonError> {
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek() == Some(b']') {
                return Err(self.error("trailing comma before ']'".into()));
            }
            self.value(depth + 1)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                None => {
                    return Err(self.error("unexpected end of file, expected ',' or ']'".into()));
                }
                Some(c) => {
                    return Err(self.error(format!(
                        "expected ',' or ']' in an array, found {}",
                        show_byte(self.text, self.pos, c)
                    )));
                }
            }
        }
    }

    fn string(&mut self) -> Result<String, JsonError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error_at(start, "unterminated string".into()));
            };
            match c {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => out.push(self.escape()?),
                0x00..=0x1f => {
                    return Err(self
                        .error("control character inside a string (escape it, e.g. \\n)".into()));
                }
                _ => {
                    let ch = self.text[self.pos..].chars().next().expect("in bounds");
                    out.push(ch);
                    self.pos += ch.len_utf8();
                }
            }
        }
    }

    fn escape(&mut self) -> Result<char, JsonError> {
        let at = self.pos;
        self.pos += 1;
        let c = self
            .peek()
            .ok_or_else(|| self.error_at(at, "unterminated escape".into()))?;
        self.pos += 1;
        Ok(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(at),
            _ => return Err(self.error_at(at, "invalid escape sequence".into())),
        })
    }

    /// A `\u` escape; surrogates must come in pairs, as every decoder
    /// that reads this file back (serde_json for our own reads) requires.
    fn unicode_escape(&mut self, at: usize) -> Result<char, JsonError> {
        let lone = |p: &Self| p.error_at(at, "invalid \\u escape: a lone UTF-16 surrogate".into());
        let high = self.hex4(at)?;
        if (0xDC00..0xE000).contains(&high) {
            return Err(lone(self));
        }
        if !(0xD800..0xDC00).contains(&high) {
            return Ok(char::from_u32(high).expect("not a surrogate"));
        }
        if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
            return Err(lone(self));
        }
        self.pos += 2;
        let low = self.hex4(at)?;
        if !(0xDC00..0xE000).contains(&low) {
            return Err(lone(self));
        }
        let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
        Ok(char::from_u32(code).expect("a valid pair"))
    }

    fn hex4(&mut self, at: usize) -> Result<u32, JsonError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .filter(|d| d.iter().all(u8::is_ascii_hexdigit))
            .ok_or_else(|| {
                self.error_at(at, "invalid \\u escape (needs four hex digits)".into())
            })?;
        let value =
            u32::from_str_radix(std::str::from_utf8(digits).expect("ascii"), 16).expect("hex");
        self.pos += 4;
        Ok(value)
    }

    fn number(&mut self) -> Result<(), JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(self.error_at(start, "numbers must not have leading zeros".into()));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error_at(start, "invalid number".into())),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error_at(start, "invalid number: digits must follow '.'".into()));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error_at(
                    start,
                    "invalid number: digits must follow the exponent".into(),
                ));
            }
            self.digits();
        }
        // dockerd decodes numbers as float64: one past its range is refused.
        let text = &self.text[start..self.pos];
        if text.parse::<f64>().is_ok_and(f64::is_infinite) {
            return Err(self.error_at(start, format!("number {text} is out of range")));
        }
        Ok(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), JsonError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error(format!("invalid literal, expected {word}")))
        }
    }
}

fn show_byte(text: &str, pos: usize, byte: u8) -> String {
    match text.get(pos..).and_then(|rest| rest.chars().next()) {
        Some(ch) if !ch.is_control() => format!("'{ch}'"),
        _ => format!("byte 0x{byte:02x}"),
    }
}

/// 1-based line and character column of a byte offset; a BOM is not counted.
pub(crate) fn line_column(text: &str, pos: usize) -> (usize, usize) {
    let before = &text[..pos.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let column = before[line_start..]
        .chars()
        .filter(|&c| c != '\u{feff}')
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> JsonError {
        parse_root(text).expect_err("must be rejected")
    }

    #[test]
    fn empty_and_whitespace_documents_are_none() {
        assert_eq!(parse_root("").unwrap(), None);
        assert_eq!(parse_root(" \n\t").unwrap(), None);
        assert_eq!(parse_root("\u{feff}\n").unwrap(), None);
    }

    #[test]
    fn records_member_spans_in_order() {
        let text = "{\n  \"a\": 1,\n  \"b\": {\"c\": [1, 2]}\n}\n";
        let root = parse_root(text).unwrap().unwrap();
        let keys: Vec<_> = root.members.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(&text[root.members[1].value.clone()], "{\"c\": [1, 2]}");
        assert_eq!(&text[root.members[0].span.clone()], "\"a\": 1");
        assert_eq!(root.open, 0);
        assert_eq!(&text[root.close..], "}\n");
    }

    #[test]
    fn bom_is_accepted_and_not_counted_in_columns() {
        let root = parse_root("\u{feff}{\"a\": true}").unwrap().unwrap();
        assert_eq!(root.members[0].key, "a");
        let e = err("\u{feff}{\"a\" true}");
        assert_eq!((e.line, e.column), (1, 6));
    }

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        let e = err("{\n \"a\": 1,\n \"a\": 2\n}");
        assert_eq!((e.line, e.column), (3, 2));
        assert!(
            e.message
                .contains("duplicate key \"a\" (first set on line 2)"),
            "{e:?}"
        );
        let e = err("{\"x\": {\"k\": 1, \"k\": 2}}");
        assert!(e.message.contains("duplicate key \"k\""));
    }

    #[test]
    fn escaped_duplicate_keys_are_still_duplicates() {
        assert!(
            err(r#"{"a": 1, "\u0061": 2}"#)
                .message
                .contains("duplicate")
        );
    }

    #[test]
    fn non_object_roots_are_rejected() {
        assert!(
            err("[]")
                .message
                .contains("must be an object, found an array")
        );
        assert!(err("\"x\"").message.contains("found a string"));
        assert!(err("null").message.contains("found null"));
    }

    #[test]
    fn trailing_commas_and_comments_are_rejected_with_position() {
        let e = err("{\n  \"a\": 1,\n}");
        assert_eq!((e.line, e.column), (3, 1));
        assert!(e.message.contains("trailing comma"));
        assert!(err("{\"a\": [1,]}").message.contains("trailing comma"));
        assert!(err("{// c\n}").message.contains("comments"));
        assert!(err("{\"a\": 1 /* c */}").message.contains("comments"));
    }

    #[test]
    fn malformed_values_are_rejected() {
        for bad in [
            "{\"a\": 01}",
            "{\"a\": 1.}",
            "{\"a\": -}",
            "{\"a\": tru}",
            "{\"a\": 'x'}",
            "{\"a\": \"\\x\"}",
            "{\"a\": \"\\u12\"}",
            "{\"a\": \"tab\there\"}",
            "{\"a\": NaN}",
            "{\"a\" 1}",
            "{a: 1}",
            "{\"a\": 1} x",
            "{\"a\": 1",
            "{\"a\": \"open",
        ] {
            assert!(parse_root(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn valid_values_of_every_kind_are_accepted() {
        let text = r#"{"s": "é\u00e9\ud83d\ude00\n", "n": -1.5e+3, "z": 0, "t": true, "f": false, "u": null, "a": [[], {}], "o": {"x": {"y": []}}}"#;
        assert_eq!(parse_root(text).unwrap().unwrap().members.len(), 8);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let text = format!("{{\"a\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(err(&text).message.contains("nesting deeper"));
    }

    #[test]
    fn numbers_past_float64_and_lone_surrogates_are_rejected() {
        assert!(
            err("{\"a\":1e999}")
                .message
                .contains("number 1e999 is out of range")
        );
        assert!(err("{\"a\":-5e3111}").message.contains("out of range"));
        assert!(parse_root("{\"a\":1e308, \"b\": 1e-999}").is_ok());
        for bad in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":"\ud800\u0041"}"#,
        ] {
            assert!(err(bad).message.contains("lone UTF-16 surrogate"), "{bad}");
        }
    }

    #[test]
    fn quote_escapes() {
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
    }
}
