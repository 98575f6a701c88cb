//! Existing containers that remapping refuses to run (privileged, or in a
//! host namespace without `--userns=host`), as `check` and `enable` name
//! them.

use super::api::{ContainerDetails, DockerApi};

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
pub fn refused_under_remapping(api: &DockerApi) -> Vec<String> {
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
