//! A corpus of hostile inputs across daemon.json, subuid/subgid,
//! passwd/group, login.defs and nsswitch.conf. Errors name the file and
//! line, exit 2 and leave every file byte-identical with the same inode;
//! lines shadow itself would skip are kept verbatim and reported instead.

use crate::support::*;
use serde_json::Value;

enum Expect {
    /// Exit 2; stderr names `file:line` (when given) and contains the text.
    Error(Option<usize>, &'static str),
    /// Exit 0; a warning names `file:line`; the file's bytes are kept.
    Warning(usize),
    /// Exit 0, no warning about the file.
    Accepted,
}

struct Case {
    name: &'static str,
    file: &'static str,
    content: Vec<u8>,
    user: &'static str,
    expect: Expect,
}

fn case(
    name: &'static str,
    file: &'static str,
    content: impl Into<Vec<u8>>,
    expect: Expect,
) -> Case {
    Case {
        name,
        file,
        content: content.into(),
        user: "default",
        expect,
    }
}

const DJ: &str = "etc/docker/daemon.json";
const SUBUID: &str = "etc/subuid";
const SUBGID: &str = "etc/subgid";
const PASSWD: &str = "etc/passwd";
const GROUP: &str = "etc/group";
const DEFS: &str = "etc/login.defs";
const NSS: &str = "etc/nsswitch.conf";

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let mut out = if big_endian {
        vec![0xfe, 0xff]
    } else {
        vec![0xff, 0xfe]
    };
    for unit in text.encode_utf16() {
        out.extend(if big_endian {
            unit.to_be_bytes()
        } else {
            unit.to_le_bytes()
        });
    }
    out
}

fn corpus() -> Vec<Case> {
    use Expect::*;
    let mut ten_mb = b"{\"log-opts\": {\"x\": \"".to_vec();
    ten_mb.extend(std::iter::repeat_n(b'a', 10 << 20));
    let mut cases = vec![
        case(
            "json-trailing-comma-object",
            DJ,
            "{\n  \"debug\": true,\n}\n",
            Error(Some(3), "trailing comma"),
        ),
        case(
            "json-trailing-comma-array",
            DJ,
            "{\"dns\": [\"1.1.1.1\",]}",
            Error(Some(1), "trailing comma before ']'"),
        ),
        case(
            "json-line-comment",
            DJ,
            "{\n// managed by puppet\n}",
            Error(Some(2), "comments are not allowed"),
        ),
        case(
            "json-block-comment",
            DJ,
            "{\"debug\": true /* yes */}",
            Error(Some(1), "comments are not allowed"),
        ),
        case(
            "json-hash-comment",
            DJ,
            "# docker\n{}",
            Error(Some(1), "found a comment"),
        ),
        case(
            "json-utf16-le",
            DJ,
            utf16("{\"debug\": true}", false),
            Error(Some(1), "invalid UTF-8"),
        ),
        case(
            "json-utf16-be",
            DJ,
            utf16("{\"debug\": true}", true),
            Error(Some(1), "invalid UTF-8"),
        ),
        case(
            "json-duplicate-key",
            DJ,
            "{\"debug\": true,\n\"debug\": false}",
            Error(Some(2), "duplicate key \"debug\""),
        ),
        case(
            "json-duplicate-nested",
            DJ,
            "{\"log-opts\": {\n\"max-size\": \"1m\",\n\"max-size\": \"2m\"}}",
            Error(Some(3), "duplicate key \"max-size\""),
        ),
        case(
            "json-duplicate-userns-remap",
            DJ,
            "{\"userns-remap\": \"a\",\n\"userns-remap\": \"default\"}",
            Error(Some(2), "duplicate key \"userns-remap\""),
        ),
        case(
            "json-root-array",
            DJ,
            "[{\"debug\": true}]",
            Error(Some(1), "must be an object, found an array"),
        ),
        case(
            "json-root-string",
            DJ,
            "\"debug\"",
            Error(Some(1), "found a string"),
        ),
        case(
            "json-root-number",
            DJ,
            "42",
            Error(Some(1), "found a number"),
        ),
        case("json-root-null", DJ, "null", Error(Some(1), "found null")),
        case(
            "json-invalid-utf8",
            DJ,
            b"{\"data-root\": \"/srv/\xc3\x28\"}".to_vec(),
            Error(Some(1), "invalid UTF-8"),
        ),
        case(
            "json-10mb-unterminated",
            DJ,
            ten_mb,
            Error(Some(1), "unterminated string"),
        ),
        case(
            "json-crlf-error-line",
            DJ,
            "{\r\n  \"a\": 1\r\n  \"b\": 2\r\n}\r\n",
            Error(Some(3), "expected ',' or '}'"),
        ),
        case(
            "json-single-quotes",
            DJ,
            "{'debug': true}",
            Error(Some(1), "double-quoted key"),
        ),
        case(
            "json-nan",
            DJ,
            "{\"x\": NaN}",
            Error(Some(1), "expected a value"),
        ),
        case(
            "json-leading-zero",
            DJ,
            "{\"mtu\": 01500}",
            Error(Some(1), "leading zeros"),
        ),
        case(
            "json-raw-newline-in-string",
            DJ,
            "{\"a\": \"x\ny\"}",
            Error(Some(1), "control character"),
        ),
        case(
            "json-deep-nesting",
            DJ,
            format!("{{\"a\": {}{}}}", "[".repeat(5000), "]".repeat(5000)),
            Error(Some(1), "nesting deeper"),
        ),
        case(
            "json-remap-not-string",
            DJ,
            "{\n\"userns-remap\": [\"default\"]\n}",
            Error(Some(2), "must be a string"),
        ),
        case(
            "json-two-documents",
            DJ,
            "{}\n{}",
            Error(Some(2), "unexpected content"),
        ),
        case(
            "json-crlf-valid",
            DJ,
            "{\r\n  \"debug\": true\r\n}\r\n",
            Accepted,
        ),
        case("json-bom-valid", DJ, "\u{feff}{\"debug\": true}", Accepted),
        case("json-empty", DJ, "", Accepted),
        case("subid-zero-count", SUBUID, "alice:100000:0\n", Warning(1)),
        case(
            "subid-negative-count",
            SUBUID,
            "alice:100000:-65536\n",
            Warning(1),
        ),
        case(
            "subid-past-2-32",
            SUBUID,
            "alice:4294967295:65536\n",
            Warning(1),
        ),
        case(
            "subid-start-past-2-32",
            SUBGID,
            "alice:4294967296:1\n",
            Warning(1),
        ),
        case("subid-missing-field", SUBUID, "alice:100000\n", Warning(1)),
        case(
            "subid-extra-field",
            SUBUID,
            "alice:100000:65536:x\n",
            Warning(1),
        ),
        case("subid-empty-owner", SUBUID, ":100000:65536\n", Warning(1)),
        case("subid-hex", SUBGID, "alice:0x186a0:65536\n", Warning(1)),
        case("subid-crlf", SUBUID, "alice:200000:65536\r\n", Warning(1)),
        case("subid-spaces", SUBUID, "alice: 200000 :65536\n", Warning(1)),
        case(
            "subid-comment",
            SUBUID,
            "# ranges\nalice:200000:65536\n",
            Warning(1),
        ),
        case(
            "subid-owner-with-dash",
            SUBUID,
            "-rf:200000:65536\n",
            Accepted,
        ),
        case(
            "subid-invalid-utf8",
            SUBUID,
            b"al\xffce:200000:65536\n".to_vec(),
            Error(Some(1), "invalid UTF-8"),
        ),
        case(
            "passwd-invalid-utf8",
            PASSWD,
            [DEBIAN_PASSWD.as_bytes(), b"b\xffd:x:5000:5000::/:/bin/sh\n"].concat(),
            Error(Some(9), "invalid UTF-8"),
        ),
        case(
            "passwd-uid-past-2-32",
            PASSWD,
            format!("{DEBIAN_PASSWD}big:x:4294967296:0::/:/bin/sh\n"),
            Warning(9),
        ),
        case(
            "passwd-missing-fields",
            PASSWD,
            format!("{DEBIAN_PASSWD}short:x:5000\n"),
            Warning(9),
        ),
        case(
            "passwd-name-with-colon",
            PASSWD,
            format!("{DEBIAN_PASSWD}a:b:x:5000:5000::/:/bin/sh\n"),
            Warning(9),
        ),
        case(
            "group-negative-gid",
            GROUP,
            format!("{DEBIAN_GROUP}neg:x:-1:\n"),
            Warning(9),
        ),
        case(
            "login-defs-not-a-number",
            DEFS,
            "SUB_UID_MIN lots\n",
            Error(Some(1), "SUB_UID_MIN is \"lots\""),
        ),
        case(
            "login-defs-negative",
            DEFS,
            "\nSUB_GID_MIN -5\n",
            Error(Some(2), "SUB_GID_MIN"),
        ),
        case(
            "login-defs-past-2-32",
            DEFS,
            "SUB_UID_MAX 4294967296\n",
            Error(Some(1), "not a number below 2^32"),
        ),
        case(
            "login-defs-min-above-max",
            DEFS,
            "SUB_UID_MIN 500000\nSUB_UID_MAX 400000\n",
            Error(Some(2), "greater than SUB_UID_MAX"),
        ),
        case(
            "login-defs-utf16",
            DEFS,
            utf16("SUB_UID_MIN 100000\n", false),
            Error(Some(1), "invalid UTF-8"),
        ),
        case(
            "nsswitch-subid-source",
            NSS,
            "passwd: files\nsubid: sss\n",
            Warning(2),
        ),
        case(
            "nsswitch-binary-garbage",
            NSS,
            vec![0u8, 159, 146, 150, 10, 255],
            Accepted,
        ),
    ];
    cases.push(Case {
        user: "-rf",
        ..case(
            "user-name-like-an-option",
            DJ,
            "{}",
            Error(None, "user \"-rf\" does not exist"),
        )
    });
    cases.push(Case {
        user: "a:b:c",
        ..case("user-three-parts", DJ, "{}", Error(None, "more than two"))
    });
    cases.push(Case {
        user: "4294967296",
        ..case(
            "user-uid-past-2-32",
            DJ,
            "{}",
            Error(None, "user \"4294967296\" does not exist"),
        )
    });
    cases
}

#[test]
fn hostile_corpus() {
    require_root();
    let cases = corpus();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for case in &cases {
        let root = TestRoot::debian();
        root.write(case.file, &case.content, 0o644);
        let before = root.snapshot();
        let shown = root.path(case.file).display().to_string();
        let user = format!("--user={}", case.user);
        let out = root.run(&["enable", &user, "--format", "json"]);
        let code = out.status.code();
        let value: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}: no JSON ({e}): {}", case.name, stderr(&out)));
        match case.expect {
            Expect::Error(line, text) => {
                assert_eq!(code, Some(2), "{}: {value}", case.name);
                let message = value["error"]["message"].as_str().unwrap();
                assert!(message.contains(text), "{}: {message}", case.name);
                if let Some(line) = line {
                    assert!(
                        message.contains(&format!("{shown}:{line}")),
                        "{}: {message}",
                        case.name
                    );
                    assert_eq!(value["error"]["line"], line, "{}", case.name);
                }
                assert_same_tree(&before, &root.snapshot());
            }
            Expect::Warning(line) => {
                assert_eq!(code, Some(0), "{}: {value}", case.name);
                let warned = value["warnings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|w| w["file"] == shown && w["line"] == line);
                assert!(
                    warned,
                    "{}: no warning for {shown}:{line} in {value}",
                    case.name
                );
                let now = std::fs::read(root.path(case.file)).unwrap();
                assert!(
                    now.starts_with(&case.content),
                    "{}: the line was not kept verbatim",
                    case.name
                );
            }
            Expect::Accepted => {
                assert_eq!(code, Some(0), "{}: {value}", case.name);
                let warned = value["warnings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|w| w["file"] == shown);
                assert!(!warned, "{}: {value}", case.name);
            }
        }
    }
}

/// Runs `enable --root` inside a private mount namespace after `setup`
/// (shell, with $R the root) and prints the root's files before and after.
fn in_namespace(root: &TestRoot, setup: &str) -> String {
    let script = format!(
        r#"set -e
{setup}
snap() {{ find "$R/etc" -type f -exec stat -c '%n %i %s %Y' {{}} + | sort; md5sum "$R"/etc/passwd "$R"/etc/group; }}
snap > "$R.before"
set +e
"$BIN" --root "$R" enable --format json; echo "exit=$?"
set -e
snap > "$R.after"
cmp "$R.before" "$R.after" && echo "files identical"
"#
    );
    let out = in_private_mounts(root.root(), "", &script)
        .env("R", root.root())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out)
}

#[test]
fn read_only_etc_is_an_error_that_changes_nothing() {
    require_root();
    let root = TestRoot::debian();
    let out = in_namespace(
        &root,
        r#"mount --bind "$R/etc" "$R/etc"; mount -o remount,ro,bind "$R/etc""#,
    );
    assert!(out.contains("exit=2"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("files identical"), "{out}");
}

#[test]
fn full_disk_is_an_error_that_changes_nothing() {
    require_root();
    let root = TestRoot::debian();
    let setup = r#"cp -a "$R/etc" "$R/etc.copy"
mount -t tmpfs -o size=256k tmpfs "$R/etc"
cp -a "$R/etc.copy/." "$R/etc/"
dd if=/dev/zero of="$R/etc/filler" bs=4k 2>/dev/null || true"#;
    let out = in_namespace(&root, setup);
    assert!(out.contains("exit=2"), "{out}");
    assert!(out.contains("No space left on device"), "{out}");
    assert!(out.contains("files identical"), "{out}");
}
