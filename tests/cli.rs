//! Terminal manners: help that fits 80 columns and shows examples.

use std::process::Command;

use crate::support::BIN;

#[test]
fn help_fits_80_columns_and_has_examples() {
    for command in [&[][..], &["enable"], &["disable"], &["check"], &["grant"]] {
        let out = Command::new(BIN)
            .args(command)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{command:?}: {line:?}");
        }
    }
    let top = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8(top.stdout).unwrap();
    assert!(
        text.contains("Examples:") && text.contains("docker-userns enable --dry-run --diff"),
        "{text}"
    );
}
