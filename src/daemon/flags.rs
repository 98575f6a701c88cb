//! dockerd flags set outside daemon.json, from docker.service or from an
//! init script's environment file, and the daemon.json keys they clash with.
//!
//! dockerd refuses to start when a setting is given both as a flag and in
//! daemon.json, so before writing a key we find every place that already
//! passes it on the command line, down to the file and line.

use std::path::PathBuf;

use super::envfile::{self, ReadError};
use super::unit;
use super::words::Arg;
use crate::host::Host;

/// One dockerd flag and where it is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagSource {
    /// The file as seen from outside the root.
    pub file: PathBuf,
    pub line: usize,
    /// As written: `--userns-remap`, `-g`, ...
    pub flag: String,
    pub value: Option<String>,
}

/// Flags that the daemon under the host's root gets outside daemon.json.
///
/// When systemd runs the machine and has a docker.service, its effective
/// `ExecStart` is what counts (with the variables it expands). Otherwise an
/// init script starts dockerd with the options from its environment file.
/// Every file is read through `host`, so links resolve inside the root.
pub fn scan(host: &Host) -> Result<Vec<FlagSource>, ReadError> {
    if unit::systemd_runs(host) {
        if let Some(flags) = scan_systemd(host)? {
            return Ok(flags);
        }
    }
    scan_init_env(host)
}

/// Flags from docker.service and its drop-ins; `None` when there is no unit.
pub fn scan_systemd(host: &Host) -> Result<Option<Vec<FlagSource>>, ReadError> {
    Ok(unit::dockerd_args(host)?.map(|args| parse_dockerd_args(&args)))
}

/// Flags from the variables that init scripts pass to dockerd.
pub fn scan_init_env(host: &Host) -> Result<Vec<FlagSource>, ReadError> {
    Ok(parse_dockerd_args(&envfile::init_script_args(host)?))
}

/// daemon.json keys whose flag is not simply `--<key>`.
const FLAG_ALIASES: &[(&str, &[&str])] = &[
    ("data-root", &["--data-root", "-g", "--graph"]),
    ("graph", &["--data-root", "-g", "--graph"]),
    ("hosts", &["-H", "--host"]),
    ("debug", &["-D", "--debug"]),
    ("log-level", &["-l", "--log-level"]),
    ("group", &["-G", "--group"]),
    ("pidfile", &["-p", "--pidfile"]),
    ("storage-driver", &["-s", "--storage-driver"]),
    ("bridge", &["-b", "--bridge"]),
    ("labels", &["--label"]),
    ("log-opts", &["--log-opt"]),
    ("storage-opts", &["--storage-opt"]),
    ("exec-opts", &["--exec-opt"]),
    ("dns-opts", &["--dns-opt"]),
    ("registry-mirrors", &["--registry-mirror"]),
    ("insecure-registries", &["--insecure-registry"]),
    ("authorization-plugins", &["--authorization-plugin"]),
    ("runtimes", &["--add-runtime"]),
    ("default-ulimits", &["--default-ulimit"]),
    ("default-address-pools", &["--default-address-pool"]),
    ("node-generic-resources", &["--node-generic-resource"]),
    ("cluster-store-opts", &["--cluster-store-opt"]),
];

/// The command-line spellings of a daemon.json key.
pub fn flag_names(key: &str) -> Vec<String> {
    match FLAG_ALIASES.iter().find(|(k, _)| *k == key) {
        Some((_, names)) => names.iter().map(|n| n.to_string()).collect(),
        None => vec![format!("--{key}")],
    }
}

/// The flags that would clash with setting any of `keys` in daemon.json.
pub fn conflicts(flags: &[FlagSource], keys: &[&str]) -> Vec<FlagSource> {
    let names: Vec<String> = keys.iter().flat_map(|k| flag_names(k)).collect();
    flags
        .iter()
        .filter(|f| names.contains(&f.flag))
        .cloned()
        .collect()
}

/// Pairs flags with their values. dockerd takes no positional arguments,
/// so a word that does not start with `-` must be the previous flag's value;
/// that avoids needing a table of which flags are boolean.
fn parse_dockerd_args(args: &[Arg]) -> Vec<FlagSource> {
    let mut flags = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some((flag, inline)) = split_flag(&arg.text) else {
            continue;
        };
        let value = inline.or_else(|| {
            let next = args.get(i).filter(|n| !n.text.starts_with('-'))?;
            i += 1;
            Some(next.text.clone())
        });
        flags.push(FlagSource {
            file: arg.file.clone(),
            line: arg.line,
            flag,
            value,
        });
    }
    flags
}

/// `--name=value`, `--name`, `-H`, `-Hvalue`, `-H=value`; `None` for a
/// word that is not a flag.
fn split_flag(word: &str) -> Option<(String, Option<String>)> {
    if let Some(long) = word.strip_prefix("--") {
        if long.is_empty() {
            return None;
        }
        return Some(match long.split_once('=') {
            Some((name, value)) => (format!("--{name}"), Some(value.to_string())),
            None => (word.to_string(), None),
        });
    }
    let mut chars = word.strip_prefix('-')?.chars();
    let short = chars.next()?;
    let rest = chars.as_str();
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    Some((
        format!("-{short}"),
        (!rest.is_empty()).then(|| rest.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::unit::find_unit;
    use crate::host::SystemRunner;
    use std::fs;
    use std::path::Path;

    fn host(root: &Path) -> Host {
        Host::open(root, Box::new(SystemRunner)).unwrap()
    }

    const DEBIAN_UNIT: &str = "\
[Unit]
Description=Docker Application Container Engine
Documentation=https://docs.docker.com
After=network-online.target docker.socket firewalld.service containerd.service
Wants=network-online.target containerd.service
Requires=docker.socket

[Service]
Type=notify
# the default is not to use systemd for cgroups because the delegate issues still
# exists and systemd currently does not support the cgroup feature set required
# for containers run by docker
EnvironmentFile=-/etc/default/docker
ExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock $DOCKER_OPTS
ExecReload=/bin/kill -s HUP $MAINPID
LimitNOFILE=1048576
TimeoutStartSec=0
Delegate=yes
KillMode=process
Restart=on-failure

[Install]
WantedBy=multi-user.target
";

    const DEBIAN_DEFAULT: &str = "\
# Here in Debian, this file is sourced by:
#   - /etc/init.d/docker (sysvinit)
#   - systemd's docker.service

# Use of this file for configuring your Docker daemon is discouraged.

#DOCKER_OPTS=\"--dns 8.8.8.8 --dns 8.8.4.4\"
";

    fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    fn flag(file: &Path, line: usize, flag: &str, value: Option<&str>) -> FlagSource {
        FlagSource {
            file: file.to_path_buf(),
            line,
            flag: flag.to_string(),
            value: value.map(str::to_string),
        }
    }

    /// Debian's packaged unit, at its packaged path.
    fn debian_unit(root: &Path) -> PathBuf {
        write(root, "lib/systemd/system/docker.service", DEBIAN_UNIT)
    }

    /// The flags of the Debian unit's `ExecStart` line.
    fn debian_unit_flags(unit: &Path) -> [FlagSource; 2] {
        [
            flag(unit, 14, "-H", Some("fd://")),
            flag(
                unit,
                14,
                "--containerd",
                Some("/run/containerd/containerd.sock"),
            ),
        ]
    }

    fn systemd_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("run/systemd/system")).unwrap();
        root
    }

    #[test]
    fn debian_unit_with_commented_default_file() {
        let root = systemd_root();
        let unit = debian_unit(root.path());
        write(root.path(), "etc/default/docker", DEBIAN_DEFAULT);
        assert_eq!(scan(&host(root.path())).unwrap(), debian_unit_flags(&unit));
    }

    #[test]
    fn docker_opts_flags_are_traced_to_their_lines() {
        let root = systemd_root();
        let unit = debian_unit(root.path());
        let default = write(
            root.path(),
            "etc/default/docker",
            "DOCKER_OPTS=\"--dns 8.8.8.8\"\nexport DOCKER_OPTS=\"$DOCKER_OPTS \\\n  --userns-remap=default -g /srv/docker\"\n",
        );
        let flags = scan(&host(root.path())).unwrap();
        let mut expected = debian_unit_flags(&unit).to_vec();
        expected.extend([
            flag(&default, 1, "--dns", Some("8.8.8.8")),
            flag(&default, 3, "--userns-remap", Some("default")),
            flag(&default, 3, "-g", Some("/srv/docker")),
        ]);
        assert_eq!(flags, expected);
        let clashes = conflicts(&flags, &["userns-remap", "data-root"]);
        assert_eq!(
            clashes.iter().map(|f| f.flag.as_str()).collect::<Vec<_>>(),
            ["--userns-remap", "-g"]
        );
        assert!(conflicts(&flags, &["live-restore"]).is_empty());
        assert_eq!(conflicts(&flags, &["hosts"]).len(), 1);
    }

    #[test]
    fn drop_ins_reset_and_override_in_lexical_order() {
        let root = systemd_root();
        debian_unit(root.path());
        write(
            root.path(),
            "lib/systemd/system/docker.service.d/20-packaged.conf",
            "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd --from-lib\n",
        );
        let etc = write(
            root.path(),
            "etc/systemd/system/docker.service.d/10-override.conf",
            "[Service]\nEnvironment=\"EXTRA=--userns-remap=dockremap\"\n",
        );
        let last = write(
            root.path(),
            "etc/systemd/system/docker.service.d/30-mine.conf",
            "# set by hand\n[Service]\nExecStart=\nExecStart=-/usr/bin/dockerd \\\n    --data-root=/srv \\\n    ${EXTRA} --debug\n",
        );
        let flags = scan(&host(root.path())).unwrap();
        assert_eq!(
            flags,
            [
                flag(&last, 4, "--data-root", Some("/srv")),
                flag(&etc, 2, "--userns-remap", Some("dockremap")),
                flag(&last, 4, "--debug", None),
            ]
        );
    }

    #[test]
    fn etc_unit_hides_the_packaged_one_and_same_named_drop_ins() {
        let root = systemd_root();
        debian_unit(root.path());
        write(
            root.path(),
            "lib/systemd/system/docker.service.d/x.conf",
            "[Service]\nExecStart=/usr/bin/dockerd --lib\n",
        );
        write(
            root.path(),
            "etc/systemd/system/docker.service.d/x.conf",
            "[Service]\n",
        );
        let unit = write(
            root.path(),
            "etc/systemd/system/docker.service",
            "[Service]\nExecStart=@/usr/bin/dockerd dockerd-argv0 --userns-remap default\n",
        );
        assert_eq!(
            find_unit(&host(root.path())),
            Some(PathBuf::from("/etc/systemd/system/docker.service"))
        );
        assert_eq!(
            scan(&host(root.path())).unwrap(),
            [flag(&unit, 2, "--userns-remap", Some("default"))]
        );
    }

    #[test]
    fn exec_start_outside_service_section_and_wrappers_are_ignored() {
        let root = systemd_root();
        write(
            root.path(),
            "etc/systemd/system/docker.service",
            "[Unit]\nExecStart=/usr/bin/dockerd --nope\n[Service]\nExecStart=/usr/local/bin/start-docker.sh --userns-remap=x\n",
        );
        assert_eq!(scan(&host(root.path())).unwrap(), []);
    }

    #[test]
    fn sysconfig_options_when_systemd_is_not_running() {
        let root = tempfile::tempdir().unwrap();
        debian_unit(root.path());
        let sysconfig = write(
            root.path(),
            "etc/sysconfig/docker",
            "# /etc/sysconfig/docker\nOPTIONS='--selinux-enabled --log-driver=journald'\nDOCKER_CERT_PATH=/etc/docker\n",
        );
        assert_eq!(scan_systemd(&host(root.path())).unwrap().unwrap().len(), 2);
        assert_eq!(
            scan(&host(root.path())).unwrap(),
            [
                flag(&sysconfig, 2, "--selinux-enabled", None),
                flag(&sysconfig, 2, "--log-driver", Some("journald")),
            ]
        );
    }

    #[test]
    fn unit_without_env_file_reference_ignores_docker_opts() {
        let root = systemd_root();
        write(
            root.path(),
            "usr/lib/systemd/system/docker.service",
            "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
        );
        write(
            root.path(),
            "etc/default/docker",
            "DOCKER_OPTS=--userns-remap=default\n",
        );
        let flags = scan(&host(root.path())).unwrap();
        assert_eq!(flags.len(), 1);
        assert!(conflicts(&flags, &["userns-remap"]).is_empty());
    }

    #[test]
    fn no_unit_falls_back_to_init_env_files() {
        let root = systemd_root();
        let conf = write(
            root.path(),
            "etc/conf.d/docker",
            "DOCKER_OPTS=\"-Gdocker -H=unix:///run/d.sock\"\n",
        );
        assert_eq!(scan_systemd(&host(root.path())).unwrap(), None);
        assert_eq!(
            scan(&host(root.path())).unwrap(),
            [
                flag(&conf, 1, "-G", Some("docker")),
                flag(&conf, 1, "-H", Some("unix:///run/d.sock")),
            ]
        );
    }

    #[test]
    fn flag_spellings() {
        assert_eq!(flag_names("userns-remap"), ["--userns-remap"]);
        assert_eq!(flag_names("data-root"), ["--data-root", "-g", "--graph"]);
        assert_eq!(split_flag("--"), None);
        assert_eq!(split_flag("value"), None);
        assert_eq!(split_flag("-D"), Some(("-D".into(), None)));
        assert_eq!(
            split_flag("--a=b=c"),
            Some(("--a".into(), Some("b=c".into())))
        );
    }

    #[test]
    fn missing_files_are_no_flags() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(scan(&host(root.path())).unwrap(), []);
    }
}
