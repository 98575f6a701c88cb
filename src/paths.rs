//! Well-known paths of the host, as seen from its root (`--root` is applied
//! by `Host`, never here). A leaf: it imports nothing from the crate.

/// dockerd's configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/docker/daemon.json";
/// dockerd's configuration file when docker is installed as a snap.
pub const SNAP_CONFIG: &str = "/var/snap/docker/current/config/daemon.json";
/// dockerd's data root unless `data-root` or `--data-root` says otherwise.
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/docker";

pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";
pub const SHADOW: &str = "/etc/shadow";
pub const GSHADOW: &str = "/etc/gshadow";
/// shadow's lock file for the account databases (`lckpwdf`).
pub const PWD_LOCK: &str = "/etc/.pwd.lock";

pub const SUBUID: &str = "/etc/subuid";
pub const SUBGID: &str = "/etc/subgid";
pub const LOGIN_DEFS: &str = "/etc/login.defs";
pub const NSSWITCH: &str = "/etc/nsswitch.conf";

/// dockerd's API socket unless `--host` or DOCKER_HOST say otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Where dockerd writes its PID unless `pidfile` says otherwise.
pub const DEFAULT_PIDFILES: &[&str] = &["/run/docker.pid", "/var/run/docker.pid"];

/// systemd unit directories, highest precedence first.
pub const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];
/// Present while systemd is the running init.
pub const SYSTEMD_RUNTIME: &str = "/run/systemd/system";
/// Files sourced by init scripts, with the variable they pass to dockerd.
pub const INIT_ENV_FILES: &[(&str, &str)] = &[
    ("/etc/default/docker", "DOCKER_OPTS"),
    ("/etc/sysconfig/docker", "OPTIONS"),
    ("/etc/conf.d/docker", "DOCKER_OPTS"),
];
/// Docker's SysV or OpenRC init script.
pub const INIT_SCRIPT: &str = "/etc/init.d/docker";
/// OpenRC's script interpreter.
pub const OPENRC_RUN: &str = "/sbin/openrc-run";
/// Docker's runit service directories.
pub const RUNIT_DIRS: &[&str] = &["/etc/sv/docker", "/var/service/docker"];
/// The snap's docker command and state directory.
pub const SNAP_DOCKER: &str = "/snap/bin/docker";
pub const SNAP_DIR: &str = "/var/snap/docker";
/// dockerd's log when no journal keeps it.
pub const LOG_FILES: &[&str] = &["/var/log/docker.log", "/var/log/docker/current"];
