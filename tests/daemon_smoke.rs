//! Smoke test of the e2e harness against the real dockerd: remapping off,
//! then on through daemon.json and a restart, checked from the API and from
//! a container process as the host sees it.

use std::fs;
use std::path::Path;

use crate::support::harness::{Harness, free_subid_start};
use anyhow::{Context, Result, ensure};

const USER: &str = "testremap";
const IMAGE: &str = "busybox:e2e";

#[test]
fn dockerd_remaps_after_daemon_json_and_restart() -> Result<()> {
    let mut h = Harness::new()?;
    let first = h.start()?;
    eprintln!("dockerd {first} up on {}", h.docker_host());

    let info = h.info()?;
    ensure!(
        !info.userns_active(),
        "remapping is on before it was asked for: {info:?}"
    );
    ensure!(
        info.remapped_suffix().is_none(),
        "unexpected root dir {}",
        info.docker_root_dir
    );
    ensure!(
        Path::new(&info.docker_root_dir) == h.paths().data_root,
        "root dir {}",
        info.docker_root_dir
    );

    h.import_busybox(IMAGE)?;
    let plain = h.run_container_host_uid(IMAGE)?;
    eprintln!("without remapping: {plain:?}");
    ensure!(
        plain.host_uid == 0 && plain.host_gid == 0,
        "container root is not host root: {plain:?}"
    );
    ensure!(
        plain.uid_map == "0 0 4294967295",
        "identity uid_map expected: {plain:?}"
    );

    let start = free_subid_start(&h.paths().etc);
    add_remap_user(&h, start)?;
    h.write_daemon_json(&format!("{{\"userns-remap\": \"{USER}\"}}\n"))?;
    let second = h.restart(&[])?;
    ensure!(
        second != first,
        "dockerd was not restarted (PID {first} still serves)"
    );
    ensure!(
        h.daemon_pid() == Some(second),
        "pidfile does not name the new dockerd"
    );

    let info = h.info()?;
    eprintln!("after restart: {info:?}");
    ensure!(
        info.userns_active(),
        "name=userns missing from SecurityOptions: {:?}",
        info.security_options
    );
    ensure!(
        info.remapped_suffix() == Some((start, start)),
        "DockerRootDir {} does not end in /{start}.{start}",
        info.docker_root_dir
    );
    ensure!(
        Path::new(&info.docker_root_dir) == h.paths().data_root.join(format!("{start}.{start}"))
    );

    let images = h.docker_ok(&["images", "-q", IMAGE])?;
    ensure!(
        images.is_empty(),
        "the image from before remapping is still listed: {images}"
    );
    h.import_busybox(IMAGE)?;
    let remapped = h.run_container_host_uid(IMAGE)?;
    eprintln!("with remapping: {remapped:?}");
    ensure!(
        remapped.host_uid == start,
        "container root runs as host uid {}",
        remapped.host_uid
    );
    ensure!(
        remapped.host_gid == start,
        "container root runs as host gid {}",
        remapped.host_gid
    );
    remapped.ensure_maps(start, start)?;

    h.stop()?;
    ensure!(h.daemon_pid().is_none(), "dockerd still runs after stop");
    let left = h.leftover_processes();
    ensure!(left.is_empty(), "processes left after stop: {left:?}");
    Ok(())
}

/// Creates the remap user and its ranges by hand, inside the namespace,
/// and checks that only the copy of /etc changed.
fn add_remap_user(h: &Harness, start: u32) -> Result<()> {
    h.ns_sh(&format!(
        "useradd --system --no-create-home --shell /usr/sbin/nologin {USER} && \
         echo {USER}:{start}:65536 >> /etc/subuid && echo {USER}:{start}:65536 >> /etc/subgid"
    ))?;
    let copy =
        fs::read_to_string(h.paths().etc.join("passwd")).context("reading the copy's passwd")?;
    ensure!(
        copy.lines().any(|l| l.starts_with(&format!("{USER}:"))),
        "{USER} missing from the copy"
    );
    let real = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    ensure!(
        !real.lines().any(|l| l.starts_with(&format!("{USER}:"))),
        "{USER} leaked into /etc/passwd"
    );
    let subuid = h.ns_sh(&format!("getsubids {USER}"))?;
    ensure!(
        subuid.contains(&format!("{USER} {start} 65536")),
        "getsubids says {subuid:?}"
    );
    Ok(())
}
