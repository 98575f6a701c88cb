//! Roll-back after a real migration: the data has moved and the restarted
//! dockerd comes back wrong, or not at all. What users rely on must be as
//! before the run: daemon.json byte for byte, the old daemon answering,
//! every image, container and volume listed and usable, the data root's
//! owners and modes (and each root's engine-id), nothing of the tool left
//! behind, and the same command, rerun with a working restart, succeeding.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::support::fingerprint::fingerprint_tree;
use crate::support::harness::Harness;
use crate::support::shell_quote;

const IMAGE: &str = "busybox:rollback";
/// Indented as no tool writes it: a rewrite would show.
const PLAIN: &str = "{\n    \"debug\" : false\n}\n";
const JOURNAL: &str = ".docker-userns-migrate.json";
/// What a run may leave in the data root and must not after a roll-back.
const LEFTOVERS: &[&str] = &[JOURNAL, ".docker-userns-shift.json", ".docker-userns-spool"];

/// How the first restart after the migration goes wrong; every later
/// restart is the harness's own.
#[derive(Clone, Copy)]
enum Wrong<'a> {
    /// dockerd starts, but on this daemon.json instead of the one written.
    Config(&'a str),
    /// The restart command stops dockerd and fails without starting it.
    Fails,
}

/// A restart command that goes wrong once, as `wrong` says.
fn wrong_restart(h: &Harness, wrong: Wrong) -> Result<String> {
    let root = &h.paths().root;
    let q = |p: &Path| shell_quote(&p.display().to_string());
    let restart = q(&h.paths().restart_script);
    let body = match wrong {
        Wrong::Config(text) => {
            let file = root.join("wrong-daemon.json");
            fs::write(&file, text)?;
            format!("exec {restart} --config-file {}", q(&file))
        }
        Wrong::Fails => format!(
            "{}\n    echo 'dockerd: failed to start daemon' >&2\n    exit 1",
            shell_quote(&h.stop_command())
        ),
    };
    let script = format!(
        "#!/bin/sh\n# The first restart goes wrong; later ones are the harness's own.\n\
         if mkdir {} 2>/dev/null; then\n    {body}\nfi\nexec {restart} \"$@\"\n",
        q(&root.join("wrong-once"))
    );
    let path = root.join("wrong-restart.sh");
    fs::write(&path, script)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    Ok(path.display().to_string())
}

/// docker-userns with `restart` as its restart command and the harness's
/// stop command. The verify waits its whole timeout for a daemon that
/// came back wrong: 30 s, not the harness's 90.
fn tool(h: &Harness, restart: &str, args: &[&str]) -> Result<(i32, Value)> {
    let mut command = h.tool_command_waiting(restart, 30);
    command
        .arg("--stop-command")
        .arg(h.stop_command())
        .args(args);
    h.run_json(command, Duration::from_secs(400))
}

fn message(out: &Value) -> &str {
    out["error"]["message"].as_str().unwrap_or_default()
}

/// An image, a volume with a file of uid 0 and one of uid 1000, a stopped
/// container on the volume and a running one.
fn populate(h: &Harness) -> Result<()> {
    h.import_busybox(IMAGE)?;
    h.volume_and_two_containers(IMAGE)
}

fn sorted_lines(text: String) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// What dockerd lists: images, containers and volumes.
fn listed(h: &Harness) -> Result<String> {
    let images = h.docker_ok(&["images", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"])?;
    let containers = h.docker_ok(&["ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Image}}"])?;
    let volumes = h.docker_ok(&["volume", "ls", "--format", "{{.Name}}"])?;
    Ok(format!(
        "images:\n{}\ncontainers:\n{}\nvolumes:\n{}",
        sorted_lines(images),
        sorted_lines(containers),
        sorted_lines(volumes)
    ))
}

/// Kind, owner and mode of every entry of the data root (and the bytes of
/// each engine-id), taken with dockerd stopped. Left out: what dockerd's
/// own containerd keeps below `containerd/`, which changes with each start.
/// The `/etc/mtab` link a remapped dockerd puts in each init layer keeps
/// only its kind: dockerd makes it owned by the host's root, an id outside
/// the mapping that the way out leaves alone and the way back, which
/// cannot tell it from a shifted one, maps (a link's owner grants nothing).
type Layout = BTreeMap<String, String>;

const INIT_MTAB: &str = "-init/diff/etc/mtab";

fn layout(h: &Harness) -> Result<Layout> {
    h.stop_daemon()?;
    let root = &h.paths().data_root;
    let mut out = Layout::new();
    for (path, print) in fingerprint_tree(root) {
        let rel = path.strip_prefix(root)?.display().to_string();
        if rel.contains("containerd/") {
            continue;
        }
        if rel.ends_with(INIT_MTAB) {
            out.insert(rel, print.kind.to_owned());
            continue;
        }
        let mut seen = format!(
            "{} {}:{} {:o}",
            print.kind, print.uid, print.gid, print.mode
        );
        if path.file_name().is_some_and(|n| n == "engine-id") {
            seen.push_str(&format!(" {:?}", String::from_utf8_lossy(&print.content)));
        }
        out.insert(rel, seen);
    }
    h.start()?;
    Ok(out)
}

fn ensure_same_layout(before: &Layout, after: &Layout) -> Result<()> {
    let mut diffs = Vec::new();
    for (path, old) in before {
        match after.get(path) {
            None => diffs.push(format!("{path} vanished ({old})")),
            Some(new) if new != old => diffs.push(format!("{path}: {old} -> {new}")),
            Some(_) => {}
        }
    }
    for (path, new) in after.iter().filter(|(p, _)| !before.contains_key(*p)) {
        diffs.push(format!("{path} appeared ({new})"));
    }
    ensure!(
        diffs.is_empty(),
        "the data root differs after the roll-back:\n  {}",
        diffs.join("\n  ")
    );
    Ok(())
}

/// What a host looked like before the run that is rolled back.
struct Before {
    daemon_json: Option<Vec<u8>>,
    listed: String,
    layout: Layout,
    remapped: bool,
}

impl Before {
    /// Takes it, and leaves the container `running` running.
    fn take(h: &Harness) -> Result<Before> {
        let before = Before {
            daemon_json: fs::read(&h.paths().daemon_json).ok(),
            listed: listed(h)?,
            layout: layout(h)?,
            remapped: h.info()?.userns_active(),
        };
        h.docker_ok(&["start", "running"])?;
        Ok(before)
    }

    /// Fails unless the host is back as it was.
    fn ensure_back(&self, h: &Harness) -> Result<()> {
        ensure!(
            fs::read(&h.paths().daemon_json).ok() == self.daemon_json,
            "daemon.json is not byte for byte what it was: {:?}",
            fs::read_to_string(&h.paths().daemon_json)
        );
        ensure!(
            h.daemon_pid().is_some(),
            "no dockerd runs after the roll-back"
        );
        let info = h.info().context("the old daemon answers")?;
        ensure!(
            info.userns_active() == self.remapped,
            "the daemon is back with userns {} (was {})",
            info.userns_active(),
            self.remapped
        );
        let listed = listed(h)?;
        ensure!(
            listed == self.listed,
            "dockerd lists\n{listed}\ninstead of\n{}",
            self.listed
        );
        for name in LEFTOVERS {
            let path = h.paths().data_root.join(name);
            ensure!(!path.exists(), "{} is left behind", path.display());
        }
        ensure_same_layout(&self.layout, &layout(h)?)?;
        ensure_usable(h)
    }
}

/// The pre-existing image runs, the stopped container starts on its
/// volume, the volume's files read back with their owners, and the
/// container that ran before runs again.
fn ensure_usable(h: &Harness) -> Result<()> {
    let out = h.docker_ok(&["start", "-a", "stopped"])?;
    ensure!(out == "r", "the stopped container printed {out:?}");
    let read = h.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "data:/data",
        IMAGE,
        "sh",
        "-c",
        "cat /data/root-file /data/user-file && stat -c '%u %n' /data/root-file /data/user-file",
    ])?;
    ensure!(
        read == "r\nu\n0 /data/root-file\n1000 /data/user-file",
        "the volume reads {read:?}"
    );
    h.docker_ok(&["start", "running"])?;
    let state = h.docker_ok(&["inspect", "--format", "{{.State.Running}}", "running"])?;
    ensure!(state == "true", "the container `running` does not run");
    Ok(())
}

/// A plain daemon on [`PLAIN`] with [`populate`]'s state.
fn plain_host() -> Result<Harness> {
    let h = Harness::new()?;
    h.write_daemon_json(PLAIN)?;
    h.start()?;
    populate(&h)?;
    Ok(h)
}

/// A daemon first started by `enable`, remapped, with [`populate`]'s
/// state made under the mapping (the plain root holds nothing); also
/// daemon.json as `enable` wrote it, and the remapped root.
fn remapped_host() -> Result<(Harness, String, PathBuf)> {
    let h = Harness::new()?;
    h.write_daemon_json(PLAIN)?;
    let (code, out) = tool(&h, &h.restart_command(), &["enable", "--yes"])?;
    ensure!(code == 0, "enable: {out}");
    populate(&h)?;
    let written = fs::read_to_string(&h.paths().daemon_json)?;
    let remapped = remapped_root(&h, &out)?;
    Ok((h, written, remapped))
}

/// `<data-root>/<uid>.<gid>` of the mapping a report names.
fn remapped_root(h: &Harness, out: &Value) -> Result<PathBuf> {
    let start = |key: &str| {
        out[key]
            .as_u64()
            .with_context(|| format!("no {key}: {out}"))
    };
    let (uid, gid) = (start("uid_start")?, start("gid_start")?);
    Ok(h.paths().data_root.join(format!("{uid}.{gid}")))
}

/// Gives the plain root and `remapped` each an engine-id of its own where
/// the engine has not written one (Engine 27+ writes one in the root it
/// runs on; older ones leave the file alone), `remapped` made as dockerd
/// makes it when missing.
fn plant_engine_ids(h: &Harness, remapped: &Path) -> Result<()> {
    let gid = remapped
        .file_name()
        .and_then(|n| n.to_str()?.split_once('.')?.1.parse::<u32>().ok())
        .context("a <uid>.<gid> root")?;
    if !remapped.exists() {
        fs::create_dir(remapped)?;
        std::os::unix::fs::chown(remapped, Some(0), Some(gid))?;
        fs::set_permissions(remapped, fs::Permissions::from_mode(0o710))?;
    }
    for (root, id) in [
        (h.paths().data_root.as_path(), "e2e-plain-root"),
        (remapped, "e2e-remapped-root"),
    ] {
        let file = root.join("engine-id");
        if !file.exists() {
            fs::write(&file, id)?;
            fs::set_permissions(&file, fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// `command --migrate --yes` whose first restart goes `wrong`: it fails
/// with a message holding each of `says`, the host is back as before, and
/// the same command with a working restart then succeeds.
fn rolled_back_then_rerun(h: &Harness, command: &str, wrong: Wrong, says: &[&str]) -> Result<()> {
    let before = Before::take(h)?;
    let restart = wrong_restart(h, wrong)?;
    let args = [command, "--migrate", "--yes"];
    let (code, out) = tool(h, &restart, &args)?;
    ensure!(code == 2, "{command} --migrate must fail: {out}");
    for part in says {
        ensure!(
            message(&out).contains(part),
            "the message does not say {part:?}:\n{}",
            message(&out)
        );
    }
    before.ensure_back(h).with_context(|| {
        format!(
            "after: {}\ndockerd's log:\n{}",
            message(&out),
            h.daemon_log(30)
        )
    })?;
    let (code, out) = tool(h, &h.restart_command(), &args)?;
    ensure!(code == 0, "the rerun of {command} --migrate: {out}");
    ensure!(
        out["daemon"]["userns_active"] == !before.remapped,
        "the rerun leaves userns_active {}: {out}",
        out["daemon"]["userns_active"]
    );
    ensure_usable(h)
}

const MOVED_BACK: &str = "the migrated data was moved back";
const RESTORED: &str = "restored byte for byte and dockerd answers again";

#[test]
fn enable_migrate_whose_daemon_comes_back_unremapped_is_rolled_back() -> Result<()> {
    let h = plain_host()?;
    let says = [
        "expected name=userns in SecurityOptions",
        "dockerd answers with SecurityOptions",
        MOVED_BACK,
        RESTORED,
    ];
    rolled_back_then_rerun(&h, "enable", Wrong::Config(PLAIN), &says)
}

/// The plain root keeps its engine-id when the remapped one has its own:
/// the roll-back must leave both where they were.
#[test]
fn enable_migrate_whose_restart_fails_is_rolled_back_with_each_roots_engine_id() -> Result<()> {
    let h = plain_host()?;
    let (code, plan) = tool(&h, &h.restart_command(), &["enable", "--dry-run"])?;
    ensure!(code == 1, "enable --dry-run: {plan}");
    plant_engine_ids(&h, &remapped_root(&h, &plan)?)?;
    let says = [
        "wrong-restart.sh",
        "dockerd: failed to start daemon",
        MOVED_BACK,
        RESTORED,
    ];
    rolled_back_then_rerun(&h, "enable", Wrong::Fails, &says)
}

#[test]
fn disable_migrate_whose_daemon_comes_back_remapped_is_rolled_back() -> Result<()> {
    let (h, written, _) = remapped_host()?;
    let says = [
        "expected no name=userns in SecurityOptions",
        MOVED_BACK,
        RESTORED,
    ];
    rolled_back_then_rerun(&h, "disable", Wrong::Config(&written), &says)
}

/// The remapped root's engine-id stays behind when the plain root has its
/// own, and goes with the emptied root: the roll-back must put it back,
/// not hand the remapped root the plain root's.
#[test]
fn disable_migrate_whose_restart_fails_is_rolled_back_with_each_roots_engine_id() -> Result<()> {
    let (h, _, remapped) = remapped_host()?;
    plant_engine_ids(&h, &remapped)?;
    let says = [
        "wrong-restart.sh",
        "dockerd: failed to start daemon",
        MOVED_BACK,
        RESTORED,
    ];
    rolled_back_then_rerun(&h, "disable", Wrong::Fails, &says)
}
