//! Container checks: containers that bypass remapping or will not start
//! under it, those that lose the Docker socket, and, as information, those
//! whose process is root inside (the reason remapping matters), from the
//! live daemon; and bind mounts the remapped root cannot use, from the
//! daemon or, offline, the stored container configs.

use super::daemon::Live;
use super::{Check, Facts};
use crate::binds;
use crate::daemon::api::{ApiError, ContainerDetails, DockerApi};
use crate::daemon::containers::remap_blockers;

const BYPASS: &str = "containers.bypass";
const SOCKET: &str = "containers.docker_socket";
const ROOT: &str = "containers.root_inside";
const BINDS: &str = "containers.bind_mounts";

pub fn checks(facts: &Facts<'_>, live: Option<&Live>) -> Vec<Check> {
    let inspected = live.map(|l| inspect_all(&l.api));
    let mut out = match (live, &inspected) {
        (Some(live), Some(Ok(containers))) => {
            let active = live.info.userns_active();
            vec![
                bypass(containers, active),
                socket(containers),
                root_inside(containers),
            ]
        }
        (_, Some(Err(e))) => vec![Check::skip(BYPASS, "containers", e.to_string())],
        _ => {
            let why = "dockerd does not answer (or --root)";
            [BYPASS, SOCKET, ROOT]
                .map(|id| Check::skip(id, "containers", why))
                .to_vec()
        }
    };
    out.push(bind_mounts(
        facts,
        inspected.as_ref().and_then(|r| r.as_ref().ok()),
    ));
    out
}

fn inspect_all(api: &DockerApi) -> Result<Vec<ContainerDetails>, ApiError> {
    Ok(api
        .containers(true)?
        .iter()
        .filter_map(|c| api.inspect(&c.id).ok())
        .collect())
}

fn bypass(containers: &[ContainerDetails], active: bool) -> Check {
    const TITLE: &str = "containers keep to the mapping";
    let mut host_userns = Vec::new();
    let mut blocked = Vec::new();
    for c in containers {
        let reasons = remap_blockers(c);
        if c.host_config.userns_mode == "host" {
            host_userns.push(format!(
                "{} (--userns=host{})",
                c.display_name(),
                join_prefixed(&reasons)
            ));
        } else if !reasons.is_empty() {
            blocked.push(format!("{} ({})", c.display_name(), reasons.join(", ")));
        }
    }
    if host_userns.is_empty() && blocked.is_empty() {
        return Check::ok(
            BYPASS,
            TITLE,
            format!(
                "{} containers, none privileged, none in host namespaces",
                containers.len()
            ),
        );
    }
    let mut parts = Vec::new();
    if !host_userns.is_empty() {
        parts.push(format!("not remapped: {}", host_userns.join(", ")));
    }
    if !blocked.is_empty() {
        let verb = if active {
            "refused under remapping"
        } else {
            "will be refused once remapping is on"
        };
        parts.push(format!("{verb}: {}", blocked.join(", ")));
    }
    Check::warn(BYPASS, TITLE, parts.join("; ")).remedy(
        "drop --privileged and host namespaces where possible; a container that needs them must run with --userns=host, outside the mapping",
    )
}

fn join_prefixed(reasons: &[String]) -> String {
    reasons.iter().map(|r| format!(", {r}")).collect()
}

fn socket(containers: &[ContainerDetails]) -> Check {
    const TITLE: &str = "no container depends on docker.sock";
    let names: Vec<String> = containers
        .iter()
        .filter(|c| c.mounts_docker_socket())
        .map(|c| c.display_name())
        .collect();
    if names.is_empty() {
        return Check::ok(SOCKET, TITLE, "no container mounts the Docker socket");
    }
    Check::warn(
        SOCKET,
        TITLE,
        format!("{} mount the Docker socket; under remapping their root is not host root and loses access", names.join(", ")),
    )
    .remedy("docker-userns grant /var/run/docker.sock --acl (or run those containers with --userns=host)")
}

fn root_inside(containers: &[ContainerDetails]) -> Check {
    const TITLE: &str = "containers running as root inside";
    let names: Vec<String> = containers
        .iter()
        .filter(|c| c.runs_as_root())
        .map(|c| c.display_name())
        .collect();
    let detail = if names.is_empty() {
        "every container runs as a non-root user".to_owned()
    } else {
        format!(
            "{} of {} run as uid 0 inside: {}",
            names.len(),
            containers.len(),
            names.join(", ")
        )
    };
    Check::ok(ROOT, TITLE, detail)
}

/// Bind mounts whose source container root cannot read (or, mounted rw,
/// write) under the configured mapping, each with its `grant`.
fn bind_mounts(facts: &Facts<'_>, inspected: Option<&Vec<ContainerDetails>>) -> Check {
    const TITLE: &str = "bind-mount sources usable by container root";
    let Some(remap) = &facts.remap else {
        return Check::skip(BINDS, TITLE, "no resolvable userns-remap mapping");
    };
    let Some(subject) = binds::container_root(&remap.uid_ranges, &remap.gid_ranges) else {
        return Check::skip(BINDS, TITLE, "the remap user has no subordinate ranges");
    };
    // Offline, the containers are those the remapped daemon will run.
    let roots: Vec<_> = remap
        .data_root_dir()
        .map(|dir| facts.data_root.join(dir))
        .into_iter()
        .collect();
    let found = match inspected {
        Some(containers) => binds::from_details(containers),
        None => binds::stored_in(facts.host, &roots),
    };
    let broken = binds::breaking(facts.host, &found.binds, &subject);
    let from = if found.live {
        "the daemon's containers"
    } else {
        "the stored container configs"
    };
    let mut notes = found.unreadable.clone();
    if broken.is_empty() {
        let detail = format!(
            "{} bind mounts in {from}, every source usable by container root",
            found.binds.len()
        );
        return if notes.is_empty() {
            Check::ok(BINDS, TITLE, detail)
        } else {
            notes.insert(0, detail);
            Check::warn(BINDS, TITLE, notes.join("; "))
        };
    }
    notes.splice(0..0, broken.iter().map(binds::Broken::describe));
    Check::warn(BINDS, TITLE, notes.join("; ")).remedy(
        broken
            .iter()
            .map(|b| b.remedy.as_str())
            .collect::<Vec<_>>()
            .join("; "),
    )
}
