//! Data-root checks: the namespaced root is owned as dockerd makes it,
//! every parent lets the remapped root through, inactive roots and what
//! they hide, and whether the filesystem can carry the mapping.

use std::path::{Path, PathBuf};

use rustix::fs as rfs;

use super::{Check, Facts, Remap};
use crate::access::{self, Opened};
use crate::migrate::content::{Content, is_remapped_name, list_dir};

const DIR: &str = "data_root.remapped_dir";
const TRAVERSE: &str = "data_root.traversable";
const INACTIVE: &str = "data_root.inactive";
const FILESYSTEM: &str = "data_root.filesystem";

const NFS_MAGIC: i64 = 0x6969;
const OVERLAY_MAGIC: i64 = 0x794c_7630;

pub fn checks(facts: &Facts<'_>) -> Vec<Check> {
    let mut out = Vec::new();
    match &facts.remap {
        Some(remap) if remap.data_root_dir().is_some() => {
            out.push(remapped_dir(facts, remap));
            out.push(traversable(facts, remap));
        }
        _ => {
            let why = "no resolvable userns-remap mapping";
            out.push(Check::skip(DIR, "namespaced data root", why));
            out.push(Check::skip(TRAVERSE, "data root parents traversable", why));
        }
    }
    out.push(inactive(facts));
    out.push(unfinished(facts));
    out.push(filesystem(facts));
    out
}

/// A migration or a shift that was interrupted and must be finished.
fn unfinished(facts: &Facts<'_>) -> Check {
    const ID: &str = "data_root.unfinished";
    const TITLE: &str = "no half-done migration or shift";
    let root = facts.host.display(&facts.data_root);
    if let Some(m) = crate::migrate::pending(facts.host, &facts.data_root) {
        let (command, way) = match m.direction {
            crate::migrate::Direction::IntoRemapped => ("enable --migrate", "into"),
            crate::migrate::Direction::OutOfRemapped => ("disable --migrate", "out of"),
            crate::migrate::Direction::Between { .. } => ("enable --migrate", "into"),
        };
        return Check::fail(
            ID,
            TITLE,
            format!("a migration {way} {} was interrupted: images, containers or volumes may be split between roots", m.remapped_root().display()),
        )
        .remedy(format!("docker-userns {command} (it resumes from the journal)"));
    }
    let dirs = list_dir_names(facts, &facts.data_root);
    for name in dirs.iter().filter(|n| is_remapped_name(n)) {
        let dir = root.join(name);
        if let Some(marker) = crate::shift::unfinished_shift(&dir) {
            return Check::fail(
                ID,
                TITLE,
                format!(
                    "{} has an unfinished shift ({})",
                    dir.display(),
                    marker.describe_maps()
                ),
            )
            .remedy(format!(
                "docker-userns shift {} {}",
                dir.display(),
                marker.describe_maps()
            ));
        }
    }
    Check::ok(ID, TITLE, "no interrupted migration or shift")
}

fn list_dir_names(facts: &Facts<'_>, dir: &Path) -> Vec<String> {
    facts.host.open_dir(dir).map(list_dir).unwrap_or_default()
}

fn remapped_dir(facts: &Facts<'_>, remap: &Remap) -> Check {
    const TITLE: &str = "namespaced data root";
    let name = remap.data_root_dir().expect("checked by the caller");
    let path = facts.data_root.join(&name);
    let shown = facts.host.display(&path);
    let gid = remap.gid_ranges[0].start;
    match facts.host.stat(&path) {
        Ok(None) => Check::warn(
            DIR,
            TITLE,
            format!(
                "{} does not exist yet: dockerd creates it when it first starts with this mapping",
                shown.display()
            ),
        )
        .remedy("restart dockerd (e.g. `systemctl restart docker`)"),
        Err(e) => Check::fail(DIR, TITLE, format!("{e:#}")),
        Ok(Some(st)) => {
            let mode = st.st_mode & 0o7777;
            if st.st_uid == 0 && u64::from(st.st_gid) == gid && mode == 0o710 {
                Check::ok(
                    DIR,
                    TITLE,
                    format!("{} is root:{gid} 0710", shown.display()),
                )
            } else {
                Check::warn(
                    DIR,
                    TITLE,
                    format!(
                        "{} is {}:{} {mode:04o}; dockerd makes it root:{gid} 0710",
                        shown.display(),
                        st.st_uid,
                        st.st_gid
                    ),
                )
                .remedy(format!(
                    "chown root:{gid} {0} && chmod 0710 {0}",
                    shown.display()
                ))
            }
        }
    }
}

/// dockerd's own test (`canAccess` in `setupDaemonRoot`, 20.10 to 29) on
/// the real path of the data root and each directory above it but `/`:
/// dockerd refuses to start when one fails it.
fn traversable(facts: &Facts<'_>, remap: &Remap) -> Check {
    const TITLE: &str = "data root parents traversable";
    let Some(ids) = remapped_ids(remap) else {
        return Check::skip(TRAVERSE, TITLE, "no resolvable userns-remap mapping");
    };
    let real = match existing_real_path(facts.host, &facts.data_root) {
        Ok(Some(real)) => real,
        Ok(None) => return Check::skip(TRAVERSE, TITLE, "no part of the data root path exists"),
        Err(e) => return Check::fail(TRAVERSE, TITLE, format!("{e:#}")),
    };
    let blocked = match blocking_dirs(facts.host, &real, ids) {
        Ok(blocked) => blocked,
        Err(e) => return Check::fail(TRAVERSE, TITLE, format!("{e:#}")),
    };
    let shown = |o: &Opened| facts.host.display(&o.path).display().to_string();
    let Some(first) = blocked.first() else {
        return Check::ok(
            TRAVERSE,
            TITLE,
            format!(
                "dockerd's rule lets uid {} gid {} through every directory from {} up",
                ids.0,
                ids.1,
                facts.host.display(&real).display()
            ),
        );
    };
    let st = &first.stat;
    Check::fail(
        TRAVERSE,
        TITLE,
        format!(
            "{} is {}:{} {:04o}: not world-x, not uid {} with owner x, not group {} with \
             group x; dockerd refuses to start (\"...restricts access to the remapped root \
             uid/gid; please fix by allowing 'o+x'...\")",
            shown(first),
            st.st_uid,
            st.st_gid,
            st.st_mode & 0o7777,
            ids.0,
            ids.1
        ),
    )
    .remedy(format!(
        "chmod o+x {}",
        blocked.iter().map(shown).collect::<Vec<_>>().join(" ")
    ))
}

/// The directories of `real` (a path without links) that dockerd's rule
/// does not let `ids` through; `/` is not one dockerd looks at.
fn blocking_dirs(
    host: &crate::host::Host,
    real: &Path,
    ids: (u32, u32),
) -> Result<Vec<Opened>, access::WalkError> {
    Ok(access::open_components(host, real)?
        .into_iter()
        .skip(1)
        .filter(|o| o.is_dir() && lets_through(&o.stat, ids).is_none())
        .collect())
}

/// The host ids of container root: what dockerd calls the remapped root.
fn remapped_ids(remap: &Remap) -> Option<(u32, u32)> {
    let uid = u32::try_from(remap.uid_ranges.first()?.start).ok()?;
    let gid = u32::try_from(remap.gid_ranges.first()?.start).ok()?;
    Some((uid, gid))
}

fn lets_through(st: &rfs::Stat, ids: (u32, u32)) -> Option<&'static str> {
    dockerd_lets_through(st.st_uid, st.st_gid, st.st_mode & 0o7777, ids)
}

/// Which clause of dockerd's `canAccess` lets the remapped root through a
/// directory, if one does. It reads only the mode bits (no ACL, no
/// capability) and any one clause is enough, unlike the kernel's order.
pub fn dockerd_lets_through(
    uid: u32,
    gid: u32,
    mode: u32,
    (remapped_uid, remapped_gid): (u32, u32),
) -> Option<&'static str> {
    if mode & 0o001 != 0 {
        Some("world x")
    } else if uid == remapped_uid && mode & 0o100 != 0 {
        Some("owner x")
    } else if gid == remapped_gid && mode & 0o010 != 0 {
        Some("group x")
    } else {
        None
    }
}

/// The real path of the deepest part of `path` that exists: dockerd
/// resolves an existing data root's links and creates a missing one (and
/// its missing parents) 0711, which its rule lets through.
fn existing_real_path(
    host: &crate::host::Host,
    path: &Path,
) -> Result<Option<PathBuf>, access::WalkError> {
    for dir in path.ancestors() {
        if let Some(real) = crate::resolve::real_path(host, dir)? {
            return Ok(Some(real));
        }
    }
    Ok(None)
}

fn ancestors(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = path.ancestors().map(Path::to_owned).collect();
    out.reverse();
    out
}

/// What dockerd will not show while remapping is on (or off).
fn inactive(facts: &Facts<'_>) -> Check {
    const TITLE: &str = "inactive data roots";
    let active = facts.remap.as_ref().and_then(Remap::data_root_dir);
    let mut hidden = Vec::new();
    let entries = match facts.host.open_dir(&facts.data_root) {
        Ok(fd) => list_dir(fd),
        Err(_) => {
            return Check::ok(
                INACTIVE,
                TITLE,
                format!("{} does not exist yet", facts.data_root.display()),
            );
        }
    };
    for name in &entries {
        if is_remapped_name(name) && Some(name) != active.as_ref() {
            let content = Content::count(facts.host, &facts.data_root.join(name));
            hidden.push(format!(
                "{} ({content})",
                facts.data_root.join(name).display()
            ));
        }
    }
    if active.is_some() {
        let content = Content::count(facts.host, &facts.data_root);
        if !content.is_empty() {
            hidden.push(format!(
                "{} itself, the non-remapped root ({content})",
                facts.data_root.display()
            ));
        }
    }
    if hidden.is_empty() {
        return Check::ok(INACTIVE, TITLE, "nothing is hidden in another data root");
    }
    Check::warn(INACTIVE, TITLE, format!("hidden from the running mapping: {}", hidden.join("; ")))
        .remedy("docker-userns enable --migrate carries them into the remapped root; or remove them when no longer needed")
}

fn filesystem(facts: &Facts<'_>) -> Check {
    const TITLE: &str = "data root filesystem";
    let existing = ancestors(&facts.data_root)
        .into_iter()
        .rev()
        .find(|p| facts.host.exists(p));
    let Some(path) = existing else {
        return Check::skip(FILESYSTEM, TITLE, "no part of the data root path exists");
    };
    match facts.host.filesystem_type(&path) {
        Ok(NFS_MAGIC) => Check::warn(
            FILESYSTEM,
            TITLE,
            format!(
                "{} is on NFS: root squashing and id mapping break remapped layers",
                path.display()
            ),
        )
        .remedy("put the data root on a local filesystem (ext4, xfs, btrfs)"),
        Ok(OVERLAY_MAGIC) => Check::warn(
            FILESYSTEM,
            TITLE,
            format!(
                "{} is on overlayfs: the overlay2 driver cannot stack on it",
                path.display()
            ),
        )
        .remedy("put the data root on a local filesystem (ext4, xfs, btrfs)"),
        Ok(magic) => Check::ok(
            FILESYSTEM,
            TITLE,
            format!(
                "{} is on a local filesystem (type 0x{magic:x})",
                path.display()
            ),
        ),
        Err(e) => Check::skip(FILESYSTEM, TITLE, format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, chown};

    use super::*;
    use crate::host::{Host, SystemRunner};

    const IDS: (u32, u32) = (100_000, 100_000);

    #[test]
    fn dockerd_rule_takes_any_of_world_owner_or_group_x() {
        let table = [
            // (uid, gid, mode, expected)
            (0, 0, 0o711, Some("world x")),
            (0, 0, 0o701, Some("world x")),
            (100_000, 0, 0o700, Some("owner x")),
            (0, 100_000, 0o710, Some("group x")),
            // Owner x counts only for the remapped uid, group x for its gid.
            (0, 0, 0o710, None),
            (1000, 100_000, 0o700, None),
            (100_000, 0, 0o610, None),
            (0, 0, 0o700, None),
            // Unlike the kernel, a matching owner without x does not stop
            // the other clauses.
            (100_000, 0, 0o601, Some("world x")),
            (100_000, 100_000, 0o610, Some("group x")),
        ];
        for (uid, gid, mode, expected) in table {
            assert_eq!(
                dockerd_lets_through(uid, gid, mode, IDS),
                expected,
                "{uid}:{gid} {mode:04o}"
            );
        }
    }

    #[test]
    fn the_root_directory_is_not_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("srv/docker");
        std::fs::create_dir_all(&data).unwrap();
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        mode(dir.path(), 0o700);
        mode(&dir.path().join("srv"), 0o711);
        mode(&data, 0o710);
        chown(&data, Some(0), Some(IDS.1)).unwrap();
        let host = Host::open(dir.path(), Box::new(SystemRunner)).unwrap();
        let blocked = blocking_dirs(&host, Path::new("/srv/docker"), IDS).unwrap();
        assert!(blocked.is_empty(), "{blocked:?}");
        mode(&dir.path().join("srv"), 0o700);
        let blocked = blocking_dirs(&host, Path::new("/srv/docker"), IDS).unwrap();
        let paths: Vec<_> = blocked.iter().map(|o| o.path.clone()).collect();
        assert_eq!(paths, [PathBuf::from("/srv")]);
    }
}
