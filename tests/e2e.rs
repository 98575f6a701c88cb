//! End to end against a real dockerd (Debian's docker.io), each scenario in
//! its own private mount namespace with a copy of /etc, a temp data root and
//! socket (see `support::harness`). The proof is the daemon's own answer and a
//! container process's real uid on the host.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::support::harness::Harness;
use crate::support::{BIN, action_kinds, check_entry, engine, unclean_checks};
use anyhow::{Context, Result, ensure};
use serde_json::Value;

const IMAGE: &str = "busybox:e2e";
const TOOL_TIMEOUT: Duration = Duration::from_secs(240);

/// Runs docker-userns inside the harness namespace, pointed at its daemon,
/// and parses the one JSON object it prints.
fn tool(h: &Harness, restart_command: &str, args: &[&str]) -> Result<(i32, Value)> {
    let mut command = h.tool_command(restart_command);
    command.args(args);
    h.run_json(command, TOOL_TIMEOUT)
}

/// Runs `check` inside the namespace; returns the JSON and how long it took.
fn check(h: &Harness, extra: &[&str]) -> Result<(Value, Duration)> {
    let mut command = h.ns_command(BIN);
    command
        .args(["check", "--format", "json", "--data-root"])
        .arg(&h.paths().data_root)
        .arg("--host")
        .arg(h.docker_host())
        .args(extra);
    let started = std::time::Instant::now();
    let out = h.run(command, TOOL_TIMEOUT)?;
    let took = started.elapsed();
    Ok((
        serde_json::from_slice(&out.stdout).context("check printed no JSON")?,
        took,
    ))
}

fn find<'a>(checked: &'a Value, id: &str) -> &'a Value {
    check_entry(checked, id).unwrap_or(&Value::Null)
}

fn start_with_image() -> Result<Harness> {
    let h = Harness::new()?;
    h.start()?;
    h.import_busybox(IMAGE)?;
    Ok(h)
}

fn etc_file(h: &Harness, name: &str) -> Vec<u8> {
    fs::read(h.paths().etc.join(name)).unwrap_or_default()
}

#[test]
fn enable_remaps_real_containers_is_idempotent_and_disable_undoes_it() -> Result<()> {
    let h = start_with_image()?;
    let before = h.run_container_host_uid(IMAGE)?;
    ensure!(
        before.host_uid == 0,
        "container root must start as host root: {before:?}"
    );
    h.docker_ok(&["rm", "-f", &before.id])?;

    // Configured but not restarted: check says so, with the restart as fix.
    let (code, files_only) = tool(&h, &h.restart_command(), &["enable", "--no-restart"])?;
    ensure!(
        code == 0 && files_only["daemon"]["managed"] == false,
        "{files_only}"
    );
    let (pending, _) = check(&h, &[])?;
    let active = find(&pending, "daemon.userns_active");
    ensure!(active["status"] == "fail", "{active}");
    ensure!(
        active["detail"]
            .as_str()
            .unwrap_or("")
            .contains("configured but not yet active"),
        "{active}"
    );
    ensure!(
        active["remedy"].as_str().unwrap_or("").contains("restart"),
        "{active}"
    );

    // enable then only has the restart left to do.
    let (code, out) = tool(&h, &h.restart_command(), &["enable"])?;
    ensure!(code == 0, "enable failed: {out}");
    let kinds = action_kinds(&out);
    ensure!(kinds == ["restart_daemon"], "{kinds:?}");
    ensure!(
        out["changed"] == true && out["daemon"]["restarted"] == true,
        "{out}"
    );
    let uid = out["uid_start"].as_u64().context("uid_start")? as u32;
    let gid = out["gid_start"].as_u64().context("gid_start")? as u32;
    ensure!(out["user"] == "dockremap", "{out}");

    // The daemon's own answer, through the real docker client.
    let security = h.docker_ok(&["info", "--format", "{{json .SecurityOptions}}"])?;
    ensure!(security.contains("name=userns"), "docker info: {security}");
    let root_dir = h.docker_ok(&["info", "--format", "{{.DockerRootDir}}"])?;
    ensure!(
        Path::new(&root_dir) == h.paths().data_root.join(format!("{uid}.{gid}")),
        "DockerRootDir {root_dir}"
    );
    // Engine 26 moved a remapped daemon's containers into their own
    // containerd namespace; 27 and later report it.
    let namespace = h.info()?.containers_namespace().map(str::to_owned);
    let wanted = (engine::major() >= 27).then(|| format!("moby-{uid}.{gid}"));
    ensure!(
        namespace == wanted,
        "containerd namespace {namespace:?}, expected {wanted:?}"
    );
    // The image stayed in the non-remapped root; a container proves the rest.
    h.import_busybox(IMAGE)?;
    let probe = h.run_container_host_uid(IMAGE)?;
    ensure!(
        (probe.host_uid, probe.host_gid) == (uid, gid),
        "{probe:?} vs {uid}.{gid}"
    );
    probe.ensure_maps(uid, gid)?;
    h.docker_ok(&["rm", "-f", &probe.id])?;

    // A second run changes nothing and leaves the daemon alone.
    let pid = h.daemon_pid().context("dockerd pid")?;
    let (code, again) = tool(&h, &h.restart_command(), &["enable"])?;
    ensure!(
        code == 0 && again["changed"] == false,
        "second enable: {again}"
    );
    ensure!(again["daemon"]["restarted"] == false, "{again}");
    ensure!(
        h.daemon_pid() == Some(pid),
        "dockerd was restarted by an idempotent run"
    );

    // Containers that bypass the mapping or lean on the Docker socket.
    h.docker_ok(&[
        "create",
        "--name",
        "escape",
        "--userns=host",
        "--privileged",
        "--network",
        "none",
        IMAGE,
        "sleep",
        "600",
    ])?;
    let socket_mount = format!("{}:/var/run/docker.sock", h.paths().socket.display());
    h.docker_ok(&[
        "create",
        "--name",
        "ci-agent",
        "--user",
        "1000",
        "-v",
        &socket_mount,
        IMAGE,
        "true",
    ])?;

    // check agrees from the live daemon, and is fast.
    let (checked, took) = check(&h, &[])?;
    eprintln!("check on the remapped host took {took:?}");
    ensure!(took < Duration::from_secs(5), "check took {took:?}");
    let status = |id: &str| check_entry(&checked, id).map(|c| c["status"].clone());
    ensure!(
        status("daemon.userns_active") == Some("ok".into()),
        "{checked}"
    );
    ensure!(status("daemon.mapping") == Some("ok".into()), "{checked}");
    ensure!(
        status("kernel.userns_probe") == Some("ok".into()),
        "{checked}"
    );
    ensure!(
        status("config.flag_conflict") == Some("ok".into()),
        "{checked}"
    );
    let detail = |id: &str| {
        check_entry(&checked, id)
            .map(|c| c["detail"].to_string())
            .unwrap_or_default()
    };
    ensure!(
        status("containers.bypass") == Some("warn".into()),
        "{checked}"
    );
    ensure!(
        detail("containers.bypass").contains("escape (--userns=host, privileged)"),
        "{}",
        detail("containers.bypass")
    );
    ensure!(
        detail("containers.docker_socket").contains("ci-agent"),
        "{}",
        detail("containers.docker_socket")
    );
    ensure!(
        detail("containers.root_inside").contains("1 of 2 run as uid 0 inside: escape"),
        "{}",
        detail("containers.root_inside")
    );
    h.docker_ok(&["rm", "-f", "escape", "ci-agent"])?;

    // Without the containers that bypass the mapping, the host is healthy:
    // every check passes (or is skipped for a reason), and the one warning
    // is the image this run chose not to migrate.
    let (healthy, _) = check(&h, &[])?;
    ensure!(
        detail("data_root.inactive").is_empty()
            || find(&healthy, "data_root.inactive")["detail"]
                .to_string()
                .contains("(1 images, 0 containers, 0 volumes"),
        "{healthy}"
    );
    let unclean = unclean_checks(&healthy, &["data_root.inactive"]);
    ensure!(
        healthy["ok"] == true && unclean.is_empty(),
        "check on a healthy remapped host: {unclean:#?}"
    );

    let (code, off) = tool(&h, &h.restart_command(), &["disable"])?;
    ensure!(code == 0 && off["changed"] == true, "disable: {off}");
    ensure!(off["daemon"]["userns_active"] == false, "{off}");
    let plain = h.run_container_host_uid(IMAGE)?;
    ensure!(
        plain.host_uid == 0 && plain.uid_map == "0 0 4294967295",
        "after disable: {plain:?}"
    );
    Ok(())
}

/// The bind mounts in `enable`'s warnings, as "file message" lines.
fn bind_warnings(out: &Value) -> Vec<String> {
    out["warnings"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|w| w["message"].as_str().unwrap_or("").contains("bind mount"))
        .map(|w| format!("{} {}", w["file"].as_str().unwrap_or(""), w["message"]))
        .collect()
}

#[test]
fn bind_mounts_that_break_are_listed_until_granted() -> Result<()> {
    let h = start_with_image()?;
    let binds = h.paths().root.join("binds");
    let (secret, shared) = (binds.join("secret"), binds.join("shared"));
    for (dir, mode) in [(&binds, 0o755), (&secret, 0o700), (&shared, 0o755)] {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    }
    let secret_mount = format!("{}:/secret", secret.display());
    let shared_mount = format!("{}:/shared", shared.display());
    let create = [
        "create",
        "--name",
        "binder",
        "--network",
        "none",
        "-v",
        &secret_mount,
        "-v",
        &shared_mount,
        IMAGE,
        "sh",
        "-c",
        "ls /secret && echo hi > /shared/x",
    ];
    h.docker_ok(&create)?;

    // The plan names both sources, each with its grant.
    let (_, planned) = tool(&h, &h.restart_command(), &["enable", "--dry-run"])?;
    let warned = bind_warnings(&planned);
    ensure!(warned.len() == 2, "{planned}");
    for (line, dir) in warned.iter().zip([&secret, &shared]) {
        ensure!(
            line.starts_with(&format!("{} ", dir.display())),
            "{line} names {dir:?}"
        );
        ensure!(
            line.contains(&format!("docker-userns grant {} --acl", dir.display())),
            "{line}"
        );
    }
    ensure!(warned[0].contains("binder at /secret (rw)"), "{warned:?}");

    let (code, out) = tool(&h, &h.restart_command(), &["enable"])?;
    ensure!(code == 0, "enable failed: {out}");
    h.docker_ok(&["rm", "-f", "binder"])?;
    h.import_busybox(IMAGE)?;
    h.docker_ok(&create)?;

    // check agrees from the remapped daemon; dockerd's own data root
    // (0710 root:<gid>) passes dockerd's rule.
    let (checked, _) = check(&h, &[])?;
    let traverse = find(&checked, "data_root.traversable");
    ensure!(traverse["status"] == "ok", "{traverse}");
    let listed = find(&checked, "containers.bind_mounts");
    ensure!(listed["status"] == "warn", "{listed}");
    let detail = listed["detail"].as_str().unwrap_or("");
    let remedy = listed["remedy"].as_str().unwrap_or("");
    for dir in [&secret, &shared] {
        ensure!(detail.contains(&dir.display().to_string()), "{listed}");
        ensure!(
            remedy.contains(&format!("docker-userns grant {}", dir.display())),
            "{listed}"
        );
    }
    let denied = h.docker(&["start", "-a", "binder"])?;
    ensure!(!denied.status.success(), "binder ran before grant");

    // Given through a link, the data root is judged where it really is,
    // and DockerRootDir (dockerd's real path) still matches.
    let link = h.paths().root.join("data-link");
    std::os::unix::fs::symlink(&h.paths().data_root, &link)?;
    let mut command = h.ns_command(BIN);
    command
        .args(["check", "--format", "json", "--data-root"])
        .arg(&link)
        .arg("--host")
        .arg(h.docker_host());
    let linked: Value = serde_json::from_slice(&h.run(command, TOOL_TIMEOUT)?.stdout)?;
    for id in ["data_root.traversable", "daemon.mapping"] {
        ensure!(find(&linked, id)["status"] == "ok", "{}", find(&linked, id));
    }

    for dir in [&secret, &shared] {
        let (code, granted) = tool(&h, &h.restart_command(), &["grant", dir.to_str().unwrap()])?;
        ensure!(code == 0, "{granted}");
    }
    let (checked, _) = check(&h, &[])?;
    let listed = find(&checked, "containers.bind_mounts");
    ensure!(listed["status"] == "ok", "{listed}");
    h.docker_ok(&["start", "-a", "binder"])?;
    ensure!(shared.join("x").exists(), "the container could not write");
    Ok(())
}

#[test]
fn enable_with_a_named_user_uses_its_existing_ranges() -> Result<()> {
    let h = start_with_image()?;
    h.ns_sh(
        "useradd --system --user-group --no-create-home appuser && \
         touch /etc/subuid /etc/subgid && \
         usermod --add-subuids 300000-365535 --add-subgids 400000-465535 appuser",
    )?;
    let subuid = etc_file(&h, "subuid");
    // A running container makes enable refuse, naming it, unless --yes.
    h.docker_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "none",
        IMAGE,
        "sleep",
        "600",
    ])?;
    let pid = h.daemon_pid();
    let (code, refused) = tool(&h, &h.restart_command(), &["enable", "--user", "appuser"])?;
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        code == 2 && message.contains("1 running container") && message.contains("web"),
        "{refused}"
    );
    ensure!(
        h.daemon_pid() == pid,
        "dockerd was restarted although enable refused"
    );
    ensure!(
        !h.paths().daemon_json.exists(),
        "daemon.json was written although enable refused"
    );
    let (code, out) = tool(
        &h,
        &h.restart_command(),
        &["enable", "--user", "appuser", "--yes"],
    )?;
    ensure!(code == 0, "{out}");
    let kinds = action_kinds(&out);
    ensure!(
        kinds == ["set_userns_remap", "restart_daemon"],
        "only the config and the restart: {kinds:?}"
    );
    ensure!(out["data_root_dir"] == "300000.400000", "{out}");
    ensure!(etc_file(&h, "subuid") == subuid, "subuid was rewritten");
    h.import_busybox(IMAGE)?;
    let probe = h.run_container_host_uid(IMAGE)?;
    ensure!(
        (probe.host_uid, probe.host_gid) == (300000, 400000),
        "{probe:?}"
    );

    // A root-owned bind-mount source is "permission denied" for remapped
    // root until `grant` fixes it; then the container writes as 300000.
    let vol = h.paths().root.join("vol");
    fs::create_dir(&vol)?;
    fs::set_permissions(&vol, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let vol_arg = vol.display().to_string();
    let (checked, _) = check(&h, &["--path", &vol_arg])?;
    let access = find(&checked, "path.access");
    ensure!(access["status"] == "fail", "{access}");
    ensure!(
        access["remedy"]
            .as_str()
            .unwrap_or("")
            .starts_with("docker-userns grant"),
        "{access}"
    );
    let mount = format!("{}:/data", vol.display());
    let write = [
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &mount,
        IMAGE,
        "sh",
        "-c",
        "echo hi > /data/x",
    ];
    let denied = h.docker(&write)?;
    ensure!(
        !denied.status.success(),
        "the write should be denied before grant"
    );
    ensure!(
        String::from_utf8_lossy(&denied.stderr).contains("Permission denied"),
        "{denied:?}"
    );
    let (code, granted) = tool(&h, &h.restart_command(), &["grant", &vol_arg])?;
    ensure!(code == 0 && granted["changed"] == true, "{granted}");
    h.docker_ok(&write)?;
    let owner = std::os::unix::fs::MetadataExt::uid(&fs::metadata(vol.join("x"))?);
    ensure!(
        owner == 300000,
        "the container's file is owned by {owner} on the host"
    );
    Ok(())
}

#[test]
fn a_flag_conflict_in_the_unit_is_refused_before_anything_is_written() -> Result<()> {
    let h = start_with_image()?;
    h.ns_sh(
        "mkdir -p /run/systemd/system /etc/systemd/system && \
         printf '[Service]\\nExecStart=/usr/sbin/dockerd -H fd:// \\\\\\n  --userns-remap=default\\n' \
         > /etc/systemd/system/docker.service",
    )?;
    let files =
        ["passwd", "group", "subuid", "subgid", "docker/daemon.json"].map(|f| etc_file(&h, f));
    let pid = h.daemon_pid();
    let (code, out) = tool(&h, &h.restart_command(), &["enable"])?;
    ensure!(code == 2, "must refuse: {out}");
    let message = out["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        // The ExecStart directive starts on line 2 and continues on line 3.
        message.contains("/etc/systemd/system/docker.service")
            && message.contains("--userns-remap")
            && message.contains("line 2"),
        "{message}"
    );
    let after =
        ["passwd", "group", "subuid", "subgid", "docker/daemon.json"].map(|f| etc_file(&h, f));
    ensure!(files == after, "a file changed although enable refused");
    ensure!(h.daemon_pid() == pid, "dockerd was restarted");
    Ok(())
}

#[test]
fn a_daemon_that_fails_with_the_new_file_is_rolled_back() -> Result<()> {
    let h = start_with_image()?;
    let original = "{\n  \"debug\": false\n}\n";
    h.write_daemon_json(original)?;
    // The restart command passes a flag the new file conflicts with, which
    // only dockerd itself finds out.
    let restart = format!("{} --userns-remap=default", h.restart_command());
    let (code, out) = tool(&h, &restart, &["enable"])?;
    ensure!(code == 2, "must fail: {out}");
    let message = out["error"]["message"].as_str().unwrap_or_default();
    ensure!(message.contains("rolled back"), "{message}");
    ensure!(
        fs::read_to_string(&h.paths().daemon_json)? == original,
        "daemon.json is not byte-identical after the roll-back"
    );
    h.api()
        .ping()
        .context("dockerd answers after the roll-back")?;
    Ok(())
}

/// A dockerd installed outside every usual directory (a static install
/// under /opt, with /usr/sbin/dockerd gone) is found from the running
/// daemon itself: on 23+ its `--validate` refuses a bad daemon.json before
/// anything is written. 20.10 has no `--validate`: the daemon refuses the
/// file at the restart and it is rolled back.
#[test]
fn the_running_dockerd_is_found_wherever_it_is_installed() -> Result<()> {
    let h = Harness::new()?;
    let dir = h.paths().root.join("opt-docker");
    h.install_dockerd_in(&dir)?;
    h.ns_sh("mount --bind /dev/null /usr/sbin/dockerd")?;
    h.start()?;
    let bad = "{\n  \"no-such-option\": true\n}\n";
    h.write_daemon_json(bad)?;
    let files = ["passwd", "group", "subuid", "subgid"].map(|f| etc_file(&h, f));
    let (code, out) = tool(&h, &h.restart_command(), &["enable"])?;
    ensure!(code == 2, "must refuse: {out}");
    let message = out["error"]["message"].as_str().unwrap_or_default();
    if engine::major() >= 23 {
        ensure!(
            message.contains("dockerd --validate rejects") && message.contains("no-such-option"),
            "{message}"
        );
        let after = ["passwd", "group", "subuid", "subgid"].map(|f| etc_file(&h, f));
        ensure!(files == after, "a file changed although --validate refused");
    } else {
        ensure!(message.contains("rolled back"), "{message}");
    }
    ensure!(
        fs::read_to_string(&h.paths().daemon_json)? == bad,
        "daemon.json changed"
    );
    Ok(())
}

/// What remapping leaves behind on this engine is in the plan: managed
/// plugins always, and on 26+ containers that live-restore keeps running
/// in the old containerd namespace.
#[test]
fn the_plan_warns_about_plugins_and_live_restore_by_engine() -> Result<()> {
    let h = Harness::new()?;
    h.write_daemon_json("{\n  \"live-restore\": true\n}\n")?;
    h.start()?;
    let id = "ab".repeat(32);
    let plugin = h.paths().data_root.join("plugins").join(&id);
    fs::create_dir_all(&plugin)?;
    fs::write(
        plugin.join("config.json"),
        r#"{"Id":"x","Name":"example/sshfs:latest"}"#,
    )?;
    let (code, out) = tool(&h, &h.restart_command(), &["enable", "--dry-run"])?;
    ensure!(code == 1, "a dry run with changes exits 1: {out}");
    let messages: Vec<&str> = out["warnings"]
        .as_array()
        .context("warnings")?
        .iter()
        .filter_map(|w| w["message"].as_str())
        .collect();
    ensure!(
        messages
            .iter()
            .any(|m| m.contains("managed plugins") && m.contains("example/sshfs:latest")),
        "{messages:?}"
    );
    let live_restore = messages.iter().any(|m| m.contains("live-restore"));
    ensure!(
        live_restore == (engine::major() >= 26),
        "live-restore warning on dockerd {}: {messages:?}",
        engine::major()
    );
    Ok(())
}
