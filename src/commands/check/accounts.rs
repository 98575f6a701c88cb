//! Account and range checks: the remap user and group exist, their
//! subordinate ranges exist, are large enough, and collide with nobody.

use std::path::Path;

use super::{Check, Facts, Remap, Status};
use crate::accounts::allocate::{SubIdKind, overlapping_lines};
use crate::config::subid::SubIdFile;
use crate::ids::{IdRange, MIN_COUNT, RemapSpec};
use crate::observe::Loaded;
use crate::paths::{GROUP, NSSWITCH, PASSWD, SUBGID, SUBUID};

pub fn checks(facts: &Facts<'_>) -> Vec<Check> {
    let Some(spec) = &facts.remap_spec else {
        let why = "userns-remap is not configured";
        return [
            "accounts.remap_user",
            "ranges.subuid",
            "ranges.subgid",
            "ranges.overlap",
            "ranges.account_ids",
        ]
        .into_iter()
        .map(|id| Check::skip(id, "remap accounts and ranges", why))
        .chain(file_warnings(facts))
        .collect();
    };
    let Some(remap) = &facts.remap else {
        return vec![unresolved(facts, spec)];
    };
    let mut out = vec![user(facts, remap)];
    out.push(ranges(facts, remap, SubIdKind::Uid));
    out.push(ranges(facts, remap, SubIdKind::Gid));
    out.push(overlaps(facts, remap));
    out.push(account_ids(facts, remap));
    out.extend(file_warnings(facts));
    out
}

fn unresolved(facts: &Facts<'_>, spec: &str) -> Check {
    const ID: &str = "accounts.remap_user";
    const TITLE: &str = "remap user and group exist";
    let reason = match (
        RemapSpec::parse(spec),
        &facts.observed.passwd,
        &facts.observed.groups,
    ) {
        (Err(e), _, _) => format!("\"userns-remap\": {spec:?} is invalid: {e}"),
        (_, Err(e), _) | (_, _, Err(e)) => e.message(),
        (Ok(parsed), Ok(passwd), Ok(groups)) => {
            match crate::accounts::resolve::resolve_accounts(
                facts.host, passwd, groups, &parsed, spec,
            ) {
                Err(e) => format!("{e:#}"),
                Ok(_) => "cannot be resolved".into(),
            }
        }
    };
    let nss = nss_only(facts, spec);
    match nss {
        Some(source) => Check::warn(ID, TITLE, format!("{reason}; found only through NSS ({source})"))
            .remedy("dockerd finds it, but list it in /etc/passwd and /etc/group to make the mapping independent of the directory service"),
        None => Check::fail(ID, TITLE, reason).remedy(format!("docker-userns enable --user {spec}")),
    }
}

/// A user that NSS knows but /etc/passwd does not (live host only).
fn nss_only(facts: &Facts<'_>, spec: &str) -> Option<String> {
    if !facts.host.is_live() {
        return None;
    }
    let user = spec.split(':').next()?;
    let getent = crate::accounts::create::find_program(facts.host, "getent")?;
    let line = facts
        .host
        .runner()
        .run(&getent, &["passwd".into(), user.into()])
        .ok()?;
    (!line.trim().is_empty()).then(|| format!("getent passwd {user}"))
}

fn user(facts: &Facts<'_>, remap: &Remap) -> Check {
    const ID: &str = "accounts.remap_user";
    const TITLE: &str = "remap user and group exist";
    let passwd = facts.host.display(Path::new(PASSWD));
    let group = facts.host.display(Path::new(GROUP));
    match (remap.uid, remap.gid) {
        (Some(uid), Some(gid)) => Check::ok(
            ID,
            TITLE,
            format!("{} (uid {uid}) and group {} (gid {gid}) in {} and {}", remap.user, remap.group, passwd.display(), group.display()),
        ),
        _ => Check::fail(
            ID,
            TITLE,
            format!("{} does not exist yet; dockerd would try to create it and fails on systems without Debian's adduser", remap.user),
        )
        .remedy("docker-userns enable")
        .at(&passwd, None),
    }
}

fn ranges(facts: &Facts<'_>, remap: &Remap, kind: SubIdKind) -> Check {
    let (id, title, file, ranges) = match kind {
        SubIdKind::Uid => (
            "ranges.subuid",
            "subuid ranges",
            &facts.observed.subuid,
            &remap.uid_ranges,
        ),
        SubIdKind::Gid => (
            "ranges.subgid",
            "subgid ranges",
            &facts.observed.subgid,
            &remap.gid_ranges,
        ),
    };
    let path = kind.path_str();
    let shown = facts.host.display(Path::new(path));
    if let Err(e) = file {
        return Check::fail(id, title, e.message()).at(&shown, e.line());
    }
    let total: u64 = ranges.iter().map(|r| r.count).sum();
    if ranges.is_empty() {
        return Check::fail(
            id,
            title,
            format!(
                "{} has no entry for {}: dockerd fails with \"no {} ranges found\"",
                shown.display(),
                remap.user,
                &path[5..]
            ),
        )
        .remedy("docker-userns enable")
        .at(&shown, None);
    }
    let listed: Vec<String> = ranges.iter().map(IdRange::to_string).collect();
    let stacked = if ranges.len() > 1 {
        format!("; dockerd stacks {} ranges", ranges.len())
    } else {
        String::new()
    };
    if total < MIN_COUNT {
        return Check::fail(
            id,
            title,
            format!(
                "{} has only {total} ids for {} ({})",
                shown.display(),
                remap.user,
                listed.join(", ")
            ),
        )
        .remedy(format!(
            "docker-userns enable --user {} --count {MIN_COUNT}",
            remap.spec
        ))
        .at(&shown, None);
    }
    Check::ok(
        id,
        title,
        format!("{}: {}{stacked}", remap.user, listed.join(", ")),
    )
}

/// Our ranges against every other owner's, in both files.
fn overlaps(facts: &Facts<'_>, remap: &Remap) -> Check {
    const ID: &str = "ranges.overlap";
    const TITLE: &str = "no range shared with another owner";
    let mut clashes = Vec::new();
    for (path, file) in [
        (SUBUID, &facts.observed.subuid),
        (SUBGID, &facts.observed.subgid),
    ] {
        let Ok(file) = file else { continue };
        for (entry, others) in overlapping_lines(file, remap) {
            clashes.extend(others.into_iter().map(|other| {
                let text = format!(
                    "{} overlaps {}'s {} (line {})",
                    entry.range, other.owner, other.range, other.line
                );
                (path, entry.line, text)
            }));
        }
    }
    match clashes.first() {
        None => Check::ok(
            ID,
            TITLE,
            format!("{}'s ranges overlap no other owner's", remap.user),
        ),
        Some((path, line, _)) => {
            let details: Vec<String> = clashes
                .iter()
                .map(|(p, l, t)| format!("{p}:{l}: {t}"))
                .collect();
            Check::fail(ID, TITLE, details.join("; "))
                .remedy(format!(
                    "remove {}'s overlapping line and run `docker-userns enable` to allocate a free range (existing remapped data must then be shifted)",
                    remap.user
                ))
                .at(&facts.host.display(Path::new(path)), Some(*line))
        }
    }
}

/// Our ranges against the ids of real accounts.
fn account_ids(facts: &Facts<'_>, remap: &Remap) -> Check {
    const ID: &str = "ranges.account_ids";
    const TITLE: &str = "no range covers an account's id";
    let mut hits = Vec::new();
    if let Ok(passwd) = &facts.observed.passwd {
        for e in &passwd.entries {
            if remap.uid_ranges.iter().any(|r| r.contains(e.uid)) {
                hits.push(format!("uid {} ({})", e.uid, e.name));
            }
        }
    }
    if let Ok(groups) = &facts.observed.groups {
        for e in &groups.entries {
            if remap.gid_ranges.iter().any(|r| r.contains(e.gid)) {
                hits.push(format!("gid {} ({})", e.gid, e.name));
            }
        }
    }
    if hits.is_empty() {
        return Check::ok(ID, TITLE, "container ids map to no existing account");
    }
    Check::fail(ID, TITLE, format!("container ids map onto real accounts: {}", hits.join(", ")))
        .remedy("give the remap user a range outside every account's id (docker-userns enable after removing its lines)")
}

/// Malformed lines and an NSS subid source: not fatal, worth knowing.
fn file_warnings(facts: &Facts<'_>) -> Vec<Check> {
    let mut out = Vec::new();
    for (id, path, file) in [
        ("ranges.subuid_syntax", SUBUID, &facts.observed.subuid),
        ("ranges.subgid_syntax", SUBGID, &facts.observed.subgid),
    ] {
        out.push(syntax(facts, id, path, file));
    }
    let nss = facts.host.display(Path::new(NSSWITCH));
    out.push(match facts.observed.nsswitch_subid_line.as_ref().ok().copied().flatten() {
        Some(line) => Check::warn(
            "ranges.nss_source",
            "subordinate ids come from the files",
            "a `subid:` source is configured; shadow's tools use it but dockerd reads only /etc/subuid and /etc/subgid",
        )
        .remedy("keep the remap user's ranges in /etc/subuid and /etc/subgid as well")
        .at(&nss, Some(line)),
        None => Check::ok("ranges.nss_source", "subordinate ids come from the files", "no `subid:` line in nsswitch.conf"),
    });
    out
}

fn syntax(facts: &Facts<'_>, id: &'static str, path: &str, file: &Loaded<SubIdFile>) -> Check {
    const TITLE: &str = "every line parses";
    let shown = facts.host.display(Path::new(path));
    match file {
        Err(e) => Check::fail(id, TITLE, e.message()).at(&shown, e.line()),
        Ok(f) if f.malformed.is_empty() => {
            Check::ok(id, TITLE, format!("{} entries", f.entries.len()))
        }
        Ok(f) => {
            let lines: Vec<String> = f
                .malformed
                .iter()
                .map(|m| format!("line {}: {}", m.line, m.reason))
                .collect();
            Check::new(
                id,
                TITLE,
                Status::Warn,
                format!("{} ignores {}", shown.display(), lines.join("; ")),
            )
            .remedy("fix or remove those lines (owner:start:count, decimal numbers)")
            .at(&shown, Some(f.malformed[0].line))
        }
    }
}
