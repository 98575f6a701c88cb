//! Container checks (live): containers that bypass remapping or will not
//! start under it, those that lose the Docker socket, and, as information,
//! those whose process is root inside (the reason remapping matters).

use super::Check;
use super::daemon::Live;
use crate::daemon::api::ContainerDetails;

const BYPASS: &str = "containers.bypass";
const SOCKET: &str = "containers.docker_socket";
const ROOT: &str = "containers.root_inside";

pub fn checks(live: Option<&Live>) -> Vec<Check> {
    let Some(live) = live else {
        let why = "dockerd does not answer (or --root)";
        return [BYPASS, SOCKET, ROOT]
            .map(|id| Check::skip(id, "containers", why))
            .to_vec();
    };
    let containers: Vec<ContainerDetails> = match live.api.containers(true) {
        Ok(list) => list
            .iter()
            .filter_map(|c| live.api.inspect(&c.id).ok())
            .collect(),
        Err(e) => return vec![Check::skip(BYPASS, "containers", e.to_string())],
    };
    let active = live.info.userns_active();
    vec![
        bypass(&containers, active),
        socket(&containers),
        root_inside(&containers),
    ]
}

/// What keeps a container from running remapped (privileged, host
/// namespaces), unless it opts out with `--userns=host`.
pub fn remap_blockers(c: &ContainerDetails) -> Vec<String> {
    let mut reasons: Vec<String> = c
        .host_namespaces()
        .iter()
        .map(|n| format!("host {n}"))
        .collect();
    if c.host_config.privileged {
        reasons.insert(0, "privileged".into());
    }
    reasons
}

/// Containers that will be refused once remapping is on, as "name (why)".
pub fn refused_under_remapping(api: &crate::daemon::api::DockerApi) -> Vec<String> {
    let Ok(list) = api.containers(true) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|c| api.inspect(&c.id).ok())
        .filter(|c| c.host_config.userns_mode != "host")
        .filter_map(|c| {
            let reasons = remap_blockers(&c);
            (!reasons.is_empty()).then(|| format!("{} ({})", c.display_name(), reasons.join(", ")))
        })
        .collect()
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
