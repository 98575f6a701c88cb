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
