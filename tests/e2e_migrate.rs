//! `enable --migrate` and `disable --migrate` against a real dockerd:
//! images, containers and volumes survive the switch both ways, and the
//! migrated root looks like one a remapped daemon made itself.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::support::harness::Harness;
use crate::support::unclean_checks;
use anyhow::{Context, Result, ensure};
use serde_json::Value;

mod rollback;

const BASE: &str = "busybox:e2e";
const BUILT: &str = "multi:e2e";

fn tool(h: &Harness, args: &[&str]) -> Result<(i32, Value)> {
    h.tool_json(args, Duration::from_secs(300))
}

/// [`tool`], timing the whole process in seconds.
fn tool_timed(h: &Harness, args: &[&str]) -> Result<(i32, Value, f64)> {
    let started = std::time::Instant::now();
    let (code, out) = tool(h, args)?;
    Ok((code, out, started.elapsed().as_secs_f64()))
}

/// Phases a migration with a managed daemon goes through.
const MIGRATE_PHASES: &[&str] = &["stop", "move", "shift", "layout", "start", "verify"];
/// Further phases of the containerd image store's path.
const CARRY_PHASES: &[&str] = &["save", "load", "recreate"];

/// `phases` has every phase of a migration (and of carrying images, if
/// any), each a non-negative number of seconds, adding up to no more
/// than the whole command took.
fn ensure_phases(out: &Value, elapsed: f64) -> Result<()> {
    let phases = out["phases"]
        .as_object()
        .with_context(|| format!("no phases: {out}"))?;
    for name in MIGRATE_PHASES {
        ensure!(phases.contains_key(*name), "no {name} in phases: {out}");
    }
    let mut sum = 0.0;
    for (name, seconds) in phases {
        let known =
            MIGRATE_PHASES.contains(&name.as_str()) || CARRY_PHASES.contains(&name.as_str());
        ensure!(known, "unknown phase {name}: {out}");
        let seconds = seconds.as_f64().with_context(|| format!("{name}: {out}"))?;
        ensure!(seconds >= 0.0, "{name} took {seconds} s: {out}");
        sum += seconds;
    }
    ensure!(
        sum <= elapsed,
        "phases add up to {sum} s of {elapsed} s: {out}"
    );
    Ok(())
}

/// Images, a multi-layer build, a volume with files of two owners, a
/// stopped and a running container.
fn populate(h: &Harness) -> Result<()> {
    h.import_busybox(BASE)?;
    let ctx = h.paths().root.join("ctx");
    fs::create_dir_all(&ctx)?;
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {BASE}\nRUN mkdir /app && echo one > /app/a && chown 1000:1000 /app/a\n\
             RUN echo two > /app/b && chmod 4755 /app/b\nRUN mkdir -p /app/many && \
             for i in 1 2 3 4 5 6 7 8 9 10; do echo $i > /app/many/f$i; done\n"
        ),
    )?;
    let ctx_arg = ctx.display().to_string();
    h.docker_ok(&["build", "--network", "none", "-t", BUILT, &ctx_arg])?;
    h.volume_and_two_containers(BASE)?;
    Ok(())
}

fn images(h: &Harness) -> Result<String> {
    let list = h.docker_ok(&["images", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"])?;
    let mut lines: Vec<&str> = list.lines().collect();
    lines.sort();
    Ok(lines.join("\n"))
}

/// What users rely on after a switch, remapped or not.
fn assert_everything_there(h: &Harness, expected_images: &str) -> Result<()> {
    ensure!(
        images(h)? == expected_images,
        "images differ:\n{}\nvs\n{expected_images}",
        images(h)?
    );
    let names = h.docker_ok(&["ps", "-a", "--format", "{{.Names}}"])?;
    ensure!(
        names.contains("stopped") && names.contains("running"),
        "containers: {names}"
    );
    h.ensure_volume_and_stopped_container_kept(BASE, " && echo w > /data/new-file")?;
    let app = h.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        BUILT,
        "stat",
        "-c",
        "%u %a",
        "/app/a",
        "/app/b",
    ])?;
    ensure!(
        app == "1000 644\n0 4755",
        "layer owners and modes inside: {app:?}"
    );
    h.docker_ok(&["run", "--rm", "--network", "none", BASE, "true"])?;
    Ok(())
}

#[test]
fn migrate_into_remapping_and_back_keeps_images_containers_and_volumes() -> Result<()> {
    let h = Harness::new()?;
    h.start()?;
    populate(&h)?;
    let before = images(&h)?;

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
    let (code, plain) = tool(&h, &["enable", "--dry-run"])?;
    ensure!(code == 1, "{plain}");
    let warnings = plain["warnings"].to_string();
    ensure!(
        warnings.contains("will not start under remapping: privileged (privileged)"),
        "{warnings}"
    );
    ensure!(
        warnings.contains("are hidden under this mapping; add --migrate"),
        "{warnings}"
    );
    for name in [BASE, BUILT, "stopped", "running", "volumes data"] {
        ensure!(
            warnings.contains(name),
            "the plan does not name {name}: {warnings}"
        );
    }
    let (code, dry) = tool(&h, &["enable", "--migrate", "--dry-run"])?;
    ensure!(code == 1, "{dry}");
    let action = dry["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "migrate_data")
        .cloned();
    ensure!(action.is_some(), "no migrate_data action: {dry}");

    let (code, out, elapsed) = tool_timed(&h, &["enable", "--migrate", "--yes"])?;
    ensure!(code == 0, "enable --migrate: {out}");
    ensure!(out["daemon"]["userns_active"] == true, "{out}");
    ensure_phases(&out, elapsed)?;
    let (uid, gid) = (
        out["uid_start"].as_u64().unwrap() as u32,
        out["gid_start"].as_u64().unwrap() as u32,
    );
    let remapped = h.paths().data_root.join(format!("{uid}.{gid}"));
    assert_everything_there(&h, &before)?;
    let host_owner = fs::metadata(remapped.join("volumes/data/_data/user-file"))?.uid();
    ensure!(
        host_owner == uid + 1000,
        "volume file owned by {host_owner} on the host"
    );
    let again = tool(&h, &["enable", "--migrate"])?.1;
    ensure!(
        again["changed"] == false,
        "a second run changes nothing: {again}"
    );
    let (code, checked) = tool(&h, &["check"])?;
    let unclean = unclean_checks(&checked, &[]);
    // The one warning is the privileged container `populate` made on
    // purpose, which remapping refuses to start.
    let expected =
        r#""containers.bypass" "warn": "refused under remapping: privileged (privileged)""#;
    ensure!(
        code == 0 && checked["ok"] == true && unclean == [expected],
        "check after enable --migrate should be clean: {unclean:#?}"
    );
    let migrated_layout = layout(&remapped)?;

    // A remapped daemon that loads the same images itself.
    let archive = h.paths().root.join("images.tar");
    let archive_arg = archive.display().to_string();
    h.docker_ok(&["save", "-o", &archive_arg, BUILT, BASE])?;
    let native = Harness::new()?;
    native.start()?;
    let (code, out) = tool(&native, &["enable", "--yes"])?;
    ensure!(code == 0, "{out}");
    let native_archive = native.paths().root.join("images.tar");
    fs::copy(&archive, &native_archive)?;
    native.docker_ok(&["load", "-i", &native_archive.display().to_string()])?;
    let native_root = native
        .paths()
        .data_root
        .join(format!("{}.{}", out["uid_start"], out["gid_start"]));
    let native_layout = layout(&native_root)?;
    for (key, value) in &native_layout {
        let migrated = migrated_layout.get(key);
        ensure!(
            migrated == Some(value),
            "{key}: native {value:?}, migrated {migrated:?}"
        );
    }

    let (code, out, elapsed) = tool_timed(&h, &["disable", "--migrate", "--yes"])?;
    ensure!(code == 0, "disable --migrate: {out}");
    ensure!(out["daemon"]["userns_active"] == false, "{out}");
    ensure_phases(&out, elapsed)?;
    assert_everything_there(&h, &before)?;
    let owner = fs::metadata(h.paths().data_root.join("volumes/data/_data/user-file"))?.uid();
    ensure!(
        owner == 1000,
        "after disable --migrate the file is owned by {owner}"
    );
    ensure!(
        !remapped.exists(),
        "the emptied remapped root is removed; left: {:?}",
        walk(&remapped)
    );
    Ok(())
}

/// Owners and modes that do not depend on layer ids: the top-level
/// entries, the layer directories, and every path inside the image
/// layers' contents (as a multiset over all layers).
fn layout(root: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let stat = |p: &Path| -> Result<String> {
        let m = fs::symlink_metadata(p)?;
        Ok(format!("{}:{} {:o}", m.uid(), m.gid(), m.mode() & 0o7777))
    };
    for name in [
        "image",
        "overlay2",
        "containers",
        "volumes",
        "network",
        "buildkit",
        "plugins",
        "runtimes",
        "swarm",
        "tmp",
        "trust",
    ] {
        if root.join(name).exists() {
            out.insert(format!("top {name}"), stat(&root.join(name))?);
        }
    }
    let mut contents: BTreeMap<String, usize> = BTreeMap::new();
    for layer in fs::read_dir(root.join("overlay2"))? {
        let layer = layer?.path();
        let name = layer.file_name().unwrap().to_string_lossy().into_owned();
        if name == "l" || name.ends_with("-init") {
            continue;
        }
        out.insert("layer dir".into(), stat(&layer)?);
        let diff = layer.join("diff");
        for entry in walk(&diff)? {
            let rel = entry.strip_prefix(&diff)?.display().to_string();
            *contents
                .entry(format!("{rel} {}", stat(&entry)?))
                .or_default() += 1;
        }
    }
    for (entry, count) in contents {
        out.insert(format!("content {entry}"), count.to_string());
    }
    Ok(out)
}

fn walk(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let path = entry?.path();
            if fs::symlink_metadata(&path)?.is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    Ok(out)
}
