//! Kernel checks: user namespaces are enabled and a mapping can really be
//! written for the configured range.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::{Check, Facts};
use crate::host::Host;
use crate::ids::IdRange;
use std::path::Path;

const ENABLED: &str = "kernel.userns_enabled";
const PROBE: &str = "kernel.userns_probe";
const MAX_USERNS: &str = "/proc/sys/user/max_user_namespaces";

pub fn checks(facts: &Facts<'_>) -> Vec<Check> {
    if !facts.host.is_live() {
        let why = "--root: the running kernel is not the image's";
        return vec![
            Check::skip(ENABLED, "user namespaces enabled", why),
            Check::skip(PROBE, "user namespace probe", why),
        ];
    }
    let enabled = enabled(facts.host);
    let probe = if enabled.status == super::Status::Fail {
        Check::skip(
            PROBE,
            "user namespace probe",
            "user namespaces are disabled",
        )
    } else {
        probe(facts)
    };
    vec![enabled, probe]
}

fn enabled(host: &Host) -> Check {
    const TITLE: &str = "user namespaces enabled";
    let value = host
        .read_resolved(Path::new(MAX_USERNS), 64)
        .ok()
        .flatten()
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().parse::<u64>());
    match value {
        Some(Ok(0)) => Check::fail(ENABLED, TITLE, format!("{MAX_USERNS} is 0"))
            .remedy("sysctl -w user.max_user_namespaces=15000 (and persist it in /etc/sysctl.d/)"),
        Some(Ok(n)) => Check::ok(ENABLED, TITLE, format!("max_user_namespaces = {n}")),
        Some(Err(_)) | None => Check::fail(
            ENABLED,
            TITLE,
            format!("{MAX_USERNS} is unreadable: no user namespace support"),
        )
        .remedy("use a kernel built with CONFIG_USER_NS=y"),
    }
}

/// Creates a user namespace in a child and writes the configured mapping
/// into it, as dockerd will for every container.
fn probe(facts: &Facts<'_>) -> Check {
    const TITLE: &str = "user namespace probe";
    let fallback = IdRange::new(100_000, 65_536).expect("valid");
    let (uids, gids) = facts
        .remap
        .as_ref()
        .map(|r| (r.uid_ranges.first().copied(), r.gid_ranges.first().copied()))
        .unwrap_or((None, None));
    let uids = uids.unwrap_or(fallback);
    let gids = gids.unwrap_or(fallback);
    match write_mapping(uids, gids) {
        Ok(()) => Check::ok(
            PROBE,
            TITLE,
            format!("created a user namespace mapping 0 -> {} ({} ids)", uids.start, uids.count.min(gids.count)),
        ),
        Err(e) => Check::fail(PROBE, TITLE, format!("could not map 0 -> {} in a new user namespace: {e}", uids.start))
            .remedy("check kernel.unprivileged_userns_clone, AppArmor/SELinux user namespace restrictions and seccomp on this host"),
    }
}

fn write_mapping(uids: IdRange, gids: IdRange) -> std::io::Result<()> {
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", "read _"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: unshare is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn()?;
    let pid = child.id();
    let result = (|| {
        std::fs::write(
            format!("/proc/{pid}/uid_map"),
            format!("0 {} {}\n", uids.start, uids.count),
        )?;
        std::fs::write(
            format!("/proc/{pid}/gid_map"),
            format!("0 {} {}\n", gids.start, gids.count),
        )
    })();
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"\n");
    }
    let _ = child.wait();
    result
}
