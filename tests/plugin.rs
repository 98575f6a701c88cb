//! The Docker CLI plugin protocol, exercised with the real `docker` client,
//! and the completion scripts generated from the CLI definition.

use std::process::Command;

use crate::support::*;
use serde_json::Value;

const DOCKER: &str = "/usr/bin/docker";

#[test]
fn metadata_answers_the_plugin_protocol() {
    let out = Command::new(BIN)
        .arg("docker-cli-plugin-metadata")
        .output()
        .unwrap();
    assert!(out.status.success());
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(meta["SchemaVersion"], "0.1.0");
    assert_eq!(meta["Version"], env!("CARGO_PKG_VERSION"));
    assert!(!meta["ShortDescription"].as_str().unwrap().is_empty());
}

#[test]
fn docker_userns_runs_through_the_real_docker_client() {
    require_root();
    let config = tempfile::tempdir().unwrap();
    std::fs::create_dir(config.path().join("cli-plugins")).unwrap();
    std::os::unix::fs::symlink(BIN, config.path().join("cli-plugins/docker-userns")).unwrap();
    let docker = |args: &[&str]| {
        Command::new(DOCKER)
            .args(args)
            .env("DOCKER_CONFIG", config.path())
            .output()
            .unwrap()
    };

    let listed = String::from_utf8(docker(&["--help"]).stdout).unwrap();
    assert!(
        listed.contains("userns*"),
        "docker --help does not list the plugin:\n{listed}"
    );

    let root = TestRoot::debian();
    let root_arg = root.root().to_str().unwrap();
    let out = docker(&["userns", "--root", root_arg, "enable", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let enabled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(enabled["changed"], true);
    let out = docker(&["userns", "--root", root_arg, "check", "--format", "json"]);
    let checked: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(checked["ok"], true, "{checked}");
}

#[test]
fn completion_scripts_are_generated_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("docker-userns") && script.contains("enable"),
            "{shell}: {script}"
        );
    }
    let bash = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap()
        .stdout;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bash).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(file.path())
        .status()
        .unwrap();
    assert!(syntax.success(), "bash completion script does not parse");
}
