//! daemon.json checks: present, strictly valid, safely owned, remapping
//! set, and nothing in it that conflicts with remapping.

use super::{Check, Facts};
use crate::config::daemon_json::USERNS_REMAP;

const PRESENT: &str = "config.present";
const VALID: &str = "config.valid";
const PERMISSIONS: &str = "config.permissions";
const REMAP: &str = "config.userns_remap";
const SNAPSHOTTER: &str = "config.containerd_snapshotter";

pub fn checks(facts: &Facts<'_>) -> Vec<Check> {
    let path = &facts.config_path;
    let shown = path.display();
    let config = match facts.observed.config_if_present() {
        Err(error) => {
            return vec![
                Check::ok(PRESENT, "daemon.json present", format!("{shown}")),
                Check::fail(VALID, "daemon.json valid", error.message())
                    .remedy(format!(
                        "fix {shown} at the position given; dockerd refuses to start with it"
                    ))
                    .at(path, error.line()),
            ];
        }
        Ok(None) => {
            return vec![
                Check::fail(
                    PRESENT,
                    "daemon.json present",
                    format!("{shown} does not exist"),
                )
                .remedy("docker-userns enable")
                .at(path, None),
            ];
        }
        Ok(Some(config)) => config,
    };
    let mut out = vec![
        Check::ok(PRESENT, "daemon.json present", format!("{shown}")),
        Check::ok(
            VALID,
            "daemon.json valid",
            "strict JSON object, no duplicate keys",
        ),
        permissions(facts),
    ];
    out.push(match &facts.remap_spec {
        Some(value) => Check::ok(
            REMAP,
            "userns-remap set",
            format!("\"userns-remap\": {value:?}"),
        )
        .at(path, config.line_of(USERNS_REMAP)),
        None if config.value(USERNS_REMAP).is_some() => Check::fail(
            REMAP,
            "userns-remap set",
            "\"userns-remap\" is not a string",
        )
        .remedy("docker-userns enable")
        .at(path, config.line_of(USERNS_REMAP)),
        None => Check::fail(
            REMAP,
            "userns-remap set",
            format!("{shown} does not set \"userns-remap\": container root is host root"),
        )
        .remedy("docker-userns enable")
        .at(path, None),
    });
    out.push(snapshotter(facts, config));
    out
}

fn permissions(facts: &Facts<'_>) -> Check {
    const TITLE: &str = "daemon.json owner and mode";
    let Some(meta) = facts.config_meta else {
        return Check::skip(PERMISSIONS, TITLE, "not readable");
    };
    let shown = facts.config_path.display();
    let loose = meta.mode & !0o644;
    if meta.uid != 0 || loose != 0 {
        return Check::fail(
            PERMISSIONS,
            TITLE,
            format!("{shown} is owned by uid {} with mode {:04o}; anyone who can write it controls dockerd", meta.uid, meta.mode),
        )
        .remedy(format!("chown root:root {shown} && chmod 0644 {shown}"))
        .at(&facts.config_path, None);
    }
    Check::ok(
        PERMISSIONS,
        TITLE,
        format!(
            "owner uid {}, gid {}, mode {:04o}",
            meta.uid, meta.gid, meta.mode
        ),
    )
}

fn snapshotter(facts: &Facts<'_>, config: &crate::config::daemon_json::DaemonConfig) -> Check {
    const TITLE: &str = "no option that conflicts with remapping";
    let enabled = config
        .value("features")
        .and_then(|f| f.get("containerd-snapshotter").cloned())
        .is_some_and(|v| v == serde_json::Value::Bool(true));
    if enabled {
        return Check::fail(
            SNAPSHOTTER,
            TITLE,
            "\"features\": {\"containerd-snapshotter\": true} cannot be combined with userns-remap",
        )
        .remedy("remove \"containerd-snapshotter\" from \"features\" (or set it to false)")
        .at(&facts.config_path, config.line_of("features"));
    }
    Check::ok(SNAPSHOTTER, TITLE, "no containerd image store")
}
