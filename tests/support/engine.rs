//! The Docker engines the suites run: the system's dockerd 20.10, or one
//! unpacked by `scripts/engines` and chosen with `DOCKER_USERNS_ENGINE`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

pub const DOCKERD: &str = "/usr/sbin/dockerd";

/// Environment variable naming the engine: 20.10 (default), 26 or 28.
pub const ENGINE_VAR: &str = "DOCKER_USERNS_ENGINE";
const ENGINES_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/engines");

/// The unpacked engine `version` (`20.10`, `26`, `28`), fetched with
/// scripts/engines when missing.
pub fn unpacked(version: &str) -> Result<PathBuf> {
    let cache = std::env::var_os("DOCKER_USERNS_ENGINES")
        .map_or_else(|| "/var/cache/docker-userns/engines".into(), PathBuf::from);
    let dir = cache.join(version);
    if !dir.join("usr/sbin/dockerd").is_file() {
        let status = Command::new(ENGINES_SCRIPT)
            .arg(version)
            .status()
            .context("running scripts/engines")?;
        ensure!(status.success(), "scripts/engines {version} failed");
    }
    Ok(dir)
}

/// The unpacked engine chosen by `DOCKER_USERNS_ENGINE`, or `None` for the
/// system's dockerd. The dockerd chosen must report that version: a run
/// must never count for an engine it did not test.
pub fn chosen() -> Result<Option<PathBuf>> {
    let version = version()?;
    let dir = match version {
        "20.10" => None,
        _ => Some(unpacked(version)?),
    };
    let dockerd = dir
        .as_ref()
        .map_or_else(|| PathBuf::from(DOCKERD), |d| d.join("usr/sbin/dockerd"));
    let output = Command::new(&dockerd)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", dockerd.display()))?;
    let reported = String::from_utf8_lossy(&output.stdout);
    ensure!(
        reported.contains(&format!("version {version}.")),
        "{ENGINE_VAR}={version} but {} reports {:?}",
        dockerd.display(),
        reported.trim()
    );
    Ok(dir)
}

/// The engine's major version as given (`20.10` when unset).
pub fn version() -> Result<&'static str> {
    match std::env::var(ENGINE_VAR).unwrap_or_default().as_str() {
        "" | "20.10" => Ok("20.10"),
        "26" => Ok("26"),
        "28" => Ok("28"),
        other => bail!("{ENGINE_VAR}={other}: expected 20.10, 26 or 28"),
    }
}

/// The engine's major version as a number, for version-dependent checks.
pub fn major() -> u32 {
    version()
        .ok()
        .and_then(|v| v.split('.').next()?.parse().ok())
        .unwrap_or(20)
}
