//! Bind-mount path checks (`check --path P [--as UID]`): can the container
//! user traverse, read and write P, and if not, which component blocks and
//! the exact fix.

use std::path::Path;

use super::{Check, Facts};
use crate::access::{self, Subject};
use crate::request::CheckRequest;

const ID: &str = "path.access";
const TITLE: &str = "bind-mount source usable by the container";

pub fn checks(facts: &Facts<'_>, request: &CheckRequest) -> Vec<Check> {
    request
        .paths
        .iter()
        .map(|path| check_path(facts, request, path))
        .collect()
}

fn check_path(facts: &Facts<'_>, request: &CheckRequest, path: &Path) -> Check {
    let shown = facts.host.display(path);
    let subject = facts
        .remap
        .as_ref()
        .and_then(|m| Subject::under(m, request.as_ids.uid, request.as_ids.gid));
    let Some(subject) = subject else {
        return Check::skip(
            ID,
            TITLE,
            format!("{}: no remap mapping is configured", shown.display()),
        );
    };
    let who = format!(
        "container uid {} (host {})",
        subject.inside_uid,
        subject
            .host_uid()
            .map_or("unmapped".into(), |u| u.to_string())
    );
    let components = match access::inspect(facts.host, path, &subject) {
        Ok(c) => c,
        Err(e) => return Check::fail(ID, TITLE, format!("{e:#}")).at(&shown, None),
    };
    let Some(block) = components.iter().find(|c| c.blocked()) else {
        return Check::ok(
            ID,
            TITLE,
            format!("{who} can traverse, read and write {}", shown.display()),
        )
        .at(&shown, None);
    };
    let verb = if block.path == path {
        "use"
    } else {
        "traverse"
    };
    let detail = format!(
        "{who} cannot {verb} {}: it is {}:{} {:04o}{}, {} give {} of the {} it needs",
        facts.host.display(&block.path).display(),
        block.uid,
        block.gid,
        block.mode,
        if block.acl.is_some() {
            " with an ACL"
        } else {
            ""
        },
        block.decided_by,
        access::perm_letters(block.needs & !block.missing),
        access::perm_letters(block.needs),
    );
    let as_arg = if request.as_ids.uid == 0 && request.as_ids.gid == 0 {
        String::new()
    } else {
        format!(" --as {}:{}", request.as_ids.uid, request.as_ids.gid)
    };
    Check::fail(ID, TITLE, detail)
        .remedy(format!(
            "docker-userns grant {}{as_arg} (add --acl to grant by ACL instead of chown/chmod)",
            path.display()
        ))
        .at(&shown, None)
}
