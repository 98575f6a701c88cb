//! Live-daemon checks: dockerd answers, remapping is really active, and
//! with the mapping the files configure. The files alone prove nothing:
//! a daemon that was never restarted still runs without remapping.

use std::time::Duration;

use super::{Check, Facts};
use crate::config::daemon_json::USERNS_REMAP;
use crate::daemon::api::{self, DaemonInfo, DockerApi};
use crate::daemon::flags;

const REACHABLE: &str = "daemon.reachable";
const ACTIVE: &str = "daemon.userns_active";
const MAPPING: &str = "daemon.mapping";
const FLAGS: &str = "config.flag_conflict";

/// The daemon as `check` saw it, for the container checks that follow.
pub struct Live {
    pub api: DockerApi,
    pub info: DaemonInfo,
}

pub fn checks(facts: &Facts<'_>, socket: Option<&str>) -> (Vec<Check>, Option<Live>) {
    let mut out = vec![flag_conflict(facts)];
    if !facts.host.is_live() {
        let why = "--root: an image root has no running daemon";
        out.extend([REACHABLE, ACTIVE, MAPPING].map(|id| Check::skip(id, "live daemon", why)));
        return (out, None);
    }
    let env = std::env::var("DOCKER_HOST").ok();
    let socket = match api::resolve_socket(socket, env.as_deref()) {
        Ok(socket) => socket,
        Err(e) => {
            out.push(Check::fail(REACHABLE, "dockerd answers", e.to_string()));
            return (out, None);
        }
    };
    let api = DockerApi::new(&socket, Duration::from_secs(5));
    let info = match api.info() {
        Ok(info) => info,
        Err(e) => {
            out.push(
                Check::fail(REACHABLE, "dockerd answers", format!("{e}")).remedy(
                    "start dockerd (e.g. `systemctl start docker`), or point --host at its socket",
                ),
            );
            out.extend(
                [ACTIVE, MAPPING]
                    .map(|id| Check::skip(id, "live daemon", "dockerd does not answer")),
            );
            return (out, None);
        }
    };
    out.push(Check::ok(
        REACHABLE,
        "dockerd answers",
        format!("dockerd {} on {}", info.server_version, socket.display()),
    ));
    out.push(active(facts, &info));
    out.push(mapping(facts, &info));
    (out, Some(Live { api, info }))
}

fn flag_conflict(facts: &Facts<'_>) -> Check {
    const TITLE: &str = "userns-remap not also a dockerd flag";
    let found = match flags::scan(facts.host) {
        Ok(found) => found,
        Err(e) => return Check::skip(FLAGS, TITLE, e.to_string()),
    };
    let conflicts = flags::conflicts(&found, &[USERNS_REMAP]);
    let Some(first) = conflicts.first() else {
        return Check::ok(FLAGS, TITLE, "no dockerd flag sets it");
    };
    let in_file = facts.remap_spec.is_some();
    let detail = format!(
        "{} passes {}{} to dockerd{}",
        first.file.display(),
        first.flag,
        first
            .value
            .as_deref()
            .map(|v| format!("={v}"))
            .unwrap_or_default(),
        if in_file {
            "; with daemon.json also setting it, dockerd refuses to start"
        } else {
            ""
        }
    );
    let check = if in_file {
        Check::fail(FLAGS, TITLE, detail)
    } else {
        Check::warn(FLAGS, TITLE, detail)
    };
    check
        .remedy(format!(
            "remove {} from {} and keep the setting in daemon.json only",
            first.flag,
            first.file.display()
        ))
        .at(&first.file, Some(first.line))
}

fn active(facts: &Facts<'_>, info: &DaemonInfo) -> Check {
    const TITLE: &str = "remapping active in the daemon";
    match (info.userns_active(), &facts.remap_spec) {
        (true, _) => Check::ok(ACTIVE, TITLE, "SecurityOptions lists name=userns"),
        (false, Some(spec)) => Check::fail(
            ACTIVE,
            TITLE,
            format!("configured but not yet active: daemon.json sets \"userns-remap\": {spec:?}, but the running dockerd has no name=userns"),
        )
        .remedy("docker-userns enable (restarts dockerd and verifies), or restart dockerd yourself"),
        (false, None) => Check::fail(ACTIVE, TITLE, "the running dockerd does not remap: container root is host root")
            .remedy("docker-userns enable"),
    }
}

fn mapping(facts: &Facts<'_>, info: &DaemonInfo) -> Check {
    const TITLE: &str = "daemon mapping matches the files";
    if !info.userns_active() {
        return Check::skip(MAPPING, TITLE, "remapping is not active");
    }
    let wanted = facts.remap.as_ref().and_then(|r| r.data_root_dir());
    let running = info.remapped_suffix().map(|(u, g)| format!("{u}.{g}"));
    // dockerd reports the real path of its data root, links resolved.
    let real_root = crate::resolve::real_path(facts.host, &facts.data_root)
        .ok()
        .flatten();
    let reported = std::path::Path::new(&info.docker_root_dir);
    let same_root = |w: &str| {
        [Some(&facts.data_root), real_root.as_ref()]
            .into_iter()
            .flatten()
            .any(|root| root.join(w) == reported)
    };
    match (wanted, running) {
        (Some(w), Some(r)) if w == r && same_root(&w) => {
            Check::ok(MAPPING, TITLE, format!("DockerRootDir {}", info.docker_root_dir))
        }
        (Some(w), _) => Check::fail(
            MAPPING,
            TITLE,
            format!(
                "dockerd runs with DockerRootDir {} but the files configure {}",
                info.docker_root_dir,
                facts.data_root.join(&w).display()
            ),
        )
        .remedy("restart dockerd so it picks up the configured mapping (docker-userns enable does and verifies)"),
        (None, _) => Check::warn(
            MAPPING,
            TITLE,
            format!("dockerd remaps (DockerRootDir {}) but the files do not resolve to a mapping", info.docker_root_dir),
        ),
    }
}
