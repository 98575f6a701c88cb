//! `enable --migrate` on a daemon using the containerd image store (Engine
//! 28, `"containerd-snapshotter": true`): images, containers and volumes
//! survive the switch to the remapped daemon, which runs on the graph
//! driver; `disable --migrate` puts the user's own store setting back and
//! carries what was made while remapped back into the containerd store.

use std::time::Duration;

use crate::support::engine::ENGINE_VAR;
use crate::support::harness::Harness;
use anyhow::{Context, Result, ensure};
use serde_json::Value;

const BASE: &str = "busybox:e2e";
/// Phases the containerd store's path adds to a migration's.
const CARRY_PHASES: &[&str] = &["save", "load", "recreate", "start", "verify"];

/// Runs `tool` timed; `phases` must hold every phase of carrying, each a
/// non-negative number of seconds, adding up to no more than the run.
fn tool_with_phases(h: &Harness, args: &[&str]) -> Result<(i32, Value)> {
    let started = std::time::Instant::now();
    let (code, out) = tool(h, args)?;
    let elapsed = started.elapsed().as_secs_f64();
    if code != 0 {
        return Ok((code, out));
    }
    let phases = out["phases"]
        .as_object()
        .with_context(|| format!("no phases: {out}"))?;
    for name in CARRY_PHASES {
        ensure!(phases.contains_key(*name), "no {name} in phases: {out}");
    }
    let seconds: Vec<f64> = phases.values().filter_map(Value::as_f64).collect();
    ensure!(
        seconds.len() == phases.len() && seconds.iter().all(|s| *s >= 0.0),
        "{out}"
    );
    let sum: f64 = seconds.iter().sum();
    ensure!(
        sum <= elapsed,
        "phases add up to {sum} s of {elapsed} s: {out}"
    );
    Ok((code, out))
}

/// The user's daemon.json, with the store chosen in a nested object.
const DAEMON_JSON: &str =
    "{\n  \"features\": {\"containerd-snapshotter\": true},\n  \"debug\": false\n}\n";

fn tool(h: &Harness, args: &[&str]) -> Result<(i32, Value)> {
    h.tool_json(args, Duration::from_secs(600))
}

/// The busybox image, a volume with files of uid 0 and 1000, a stopped
/// container using it and a running one.
fn populate(h: &Harness) -> Result<()> {
    h.import_busybox(BASE)?;
    h.volume_and_two_containers(BASE)?;
    h.docker_ok(&["network", "create", "mynet"])?;
    h.docker_ok(&[
        "create",
        "--name",
        "networked",
        "--network",
        "mynet",
        "--network-alias",
        "web",
        BASE,
        "true",
    ])?;
    h.docker_ok(&[
        "create",
        "--name",
        "privileged",
        "--privileged",
        "--network",
        "none",
        BASE,
        "true",
    ])?;
    Ok(())
}

fn tags(h: &Harness) -> Result<String> {
    let list = h.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])?;
    let mut lines: Vec<&str> = list.lines().collect();
    lines.sort();
    Ok(lines.join("\n"))
}

fn driver_type(h: &Harness) -> Result<String> {
    h.docker_ok(&["info", "--format", "{{json .DriverStatus}}"])
}

#[test]
fn enable_migrate_carries_the_containerd_store_and_disable_restores_it() -> Result<()> {
    // The containerd store needs Engine 24 or later: 26 when asked for,
    // else 28. This binary holds this one test, so nothing reads the
    // environment concurrently.
    if !matches!(std::env::var(ENGINE_VAR).as_deref(), Ok("26" | "28")) {
        unsafe { std::env::set_var(ENGINE_VAR, "28") };
    }
    let h = Harness::new()?;
    h.write_daemon_json(DAEMON_JSON)?;
    h.start()?;
    ensure!(
        driver_type(&h)?.contains("io.containerd.snapshotter.v1"),
        "the daemon does not use the containerd store: {}",
        driver_type(&h)?
    );
    populate(&h)?;
    let before = tags(&h)?;
    ensure!(before.contains(BASE), "{before}");

    // Without --migrate the plan names what would be hidden.
    let (code, dry) = tool(&h, &["enable", "--dry-run"])?;
    ensure!(code == 1, "{dry}");
    let warnings = dry["warnings"].to_string();
    for name in [BASE, "stopped", "running", "data"] {
        ensure!(
            warnings.contains(name),
            "the plan does not name {name}: {warnings}"
        );
    }
    ensure!(
        dry["actions"].to_string().contains("pin_image_store"),
        "{dry}"
    );

    let (code, out) = tool_with_phases(&h, &["enable", "--migrate", "--yes"])?;
    ensure!(code == 0, "enable --migrate: {out}\n{}", h.daemon_log(30));
    ensure!(out["daemon"]["userns_active"] == true, "{out}");
    let carried = &out["carried"];
    let mut recreated: Vec<&str> = carried["containers_recreated"]
        .as_array()
        .context("containers_recreated")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    recreated.sort_unstable();
    ensure!(
        carried["loaded"].to_string().contains(BASE)
            && recreated == ["networked", "running", "stopped"],
        "{out}"
    );
    ensure!(
        carried["containers_not_recreated"]
            .to_string()
            .contains("privileged (privileged: needs --userns=host"),
        "{out}"
    );
    let aliases = h.docker_ok(&[
        "inspect",
        "--format",
        "{{json .NetworkSettings.Networks.mynet.Aliases}}",
        "networked",
    ])?;
    ensure!(
        aliases.contains("\"web\""),
        "networked's aliases: {aliases}"
    );
    ensure!(
        !driver_type(&h)?.contains("io.containerd.snapshotter.v1"),
        "the remapped daemon still uses the containerd store"
    );
    let json = std::fs::read_to_string(&h.paths().daemon_json)?;
    ensure!(
        json.contains("\"features\": {\"containerd-snapshotter\": false}")
            && json.contains("\"debug\": false"),
        "{json}"
    );
    ensure!(tags(&h)? == before, "images: {} vs {before}", tags(&h)?);
    let names = h.docker_ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"])?;
    ensure!(
        names.contains("stopped") && names.contains("running running"),
        "containers: {names}"
    );
    h.ensure_volume_and_stopped_container_kept(BASE, "")?;
    ensure!(
        !h.paths().data_root.join(".docker-userns-spool").exists(),
        "the spool was not removed"
    );

    // A second run changes nothing.
    let (code, again) = tool(&h, &["enable", "--migrate", "--yes"])?;
    ensure!(code == 0 && again["changed"] == false, "{again}");
    // Made while remapped: goes back with disable --migrate.
    h.docker_ok(&[
        "create",
        "--name",
        "made-remapped",
        "--network",
        "none",
        "-v",
        "data:/data",
        BASE,
        "cat",
        "/data/user-file",
    ])?;

    let (code, out) = tool_with_phases(&h, &["disable", "--migrate", "--yes"])?;
    ensure!(code == 0, "disable --migrate: {out}\n{}", h.daemon_log(30));
    let json = std::fs::read_to_string(&h.paths().daemon_json)?;
    ensure!(json == DAEMON_JSON, "daemon.json not restored:\n{json}");
    ensure!(
        driver_type(&h)?.contains("io.containerd.snapshotter.v1"),
        "the containerd store is not back"
    );
    ensure!(
        tags(&h)?.contains(BASE),
        "images after disable: {}",
        tags(&h)?
    );
    let carried = &out["carried"];
    ensure!(
        carried["containers_recreated"] == serde_json::json!(["made-remapped"]),
        "{out}"
    );
    let printed = h.docker_ok(&["start", "-a", "made-remapped"])?;
    ensure!(printed == "u", "made-remapped printed {printed:?}");
    let printed = h.docker_ok(&["start", "-a", "stopped"])?;
    ensure!(
        printed == "r",
        "the stopped container printed {printed:?} after disable"
    );
    ensure!(
        !h.paths().data_root.join(".docker-userns-spool").exists(),
        "the spool was not removed after disable"
    );
    Ok(())
}
