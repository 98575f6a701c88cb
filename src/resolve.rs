//! The real path of a name, following only the links root alone controls.
//!
//! dockerd resolves its data root and the kernel a bind source through any
//! link, so a check must too; but a path it then prints in a remedy
//! (`grant P`, `chmod o+x P`) must not be one a container or a local user
//! chose: a container root owning a bind source's parent could point the
//! source at /etc and have `grant /etc` suggested. So a link is followed
//! only when root owns it and its directory is one only root can change;
//! any other link is refused, naming it. Resolution stays inside the
//! host's root (`/` and `..` at the top stay there), one held directory
//! handle at a time.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use rustix::fs::FileType;

use crate::access::{self, ACCESS_ACL, Opened, WalkError};
use crate::host::Host;

/// The kernel's limit on links met in one resolution.
const MAX_LINKS: usize = 40;

/// The real path of `path` inside the host's root, every component a
/// directory (or the last any file) reached without a link. `None` when
/// some component does not exist.
pub fn real_path(host: &Host, path: &Path) -> Result<Option<PathBuf>, WalkError> {
    if !path.is_absolute() {
        return Err(WalkError::Relative(path.to_owned()));
    }
    let mut pending = names(path);
    let mut chain = vec![access::open_root(host)?];
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            if chain.len() > 1 {
                chain.pop();
            }
            continue;
        }
        let parent = chain.last().expect("the chain starts at the root");
        if !parent.is_dir() {
            return Err(WalkError::NotDirectory(host.display(&parent.path)));
        }
        let entry = match access::open_entry(host, parent, &name) {
            Ok(entry) => entry,
            Err(WalkError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if entry.file_type() != FileType::Symlink {
            chain.push(entry);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(WalkError::TooManyLinks(host.display(path)));
        }
        let target = access::link_target(&entry);
        if let Some(why) = untrusted(parent, &entry) {
            return Err(WalkError::UntrustedLink {
                path: host.display(&entry.path),
                target,
                why,
            });
        }
        let target = PathBuf::from(target);
        if target.is_absolute() {
            chain.truncate(1);
        }
        for name in names(&target).into_iter().rev() {
            pending.push_front(name);
        }
    }
    Ok(Some(
        chain.pop().expect("the chain starts at the root").path,
    ))
}

/// The names to look up, `..` kept (it is resolved against the real
/// directories reached, not the text).
fn names(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Why someone other than root could have made or placed `link` in
/// `dir`, if anyone could.
fn untrusted(dir: &Opened, link: &Opened) -> Option<String> {
    if link.stat.st_uid != 0 {
        return Some(format!("it is owned by uid {}", link.stat.st_uid));
    }
    let acl = access::read_acl(&dir.fd, ACCESS_ACL);
    let st = &dir.stat;
    access::swappable(st.st_uid, st.st_gid, st.st_mode & 0o7777, acl.as_ref())
        .map(|why| format!("its directory {why}"))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, lchown, symlink};

    use super::*;
    use crate::host::SystemRunner;

    fn image() -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all(dir.path().join("run")).unwrap();
        fs::create_dir_all(dir.path().join("var")).unwrap();
        fs::create_dir_all(dir.path().join("srv/data")).unwrap();
        let host = Host::open(dir.path(), Box::new(SystemRunner)).unwrap();
        (dir, host)
    }

    #[test]
    fn roots_links_are_followed_and_stay_in_the_root() {
        let (dir, host) = image();
        symlink("/run", dir.path().join("var/run")).unwrap();
        symlink("../../../../srv", dir.path().join("run/up")).unwrap();
        let real = |p: &str| real_path(&host, Path::new(p)).unwrap();
        assert_eq!(real("/var/run"), Some(PathBuf::from("/run")));
        assert_eq!(real("/var/run/up/data"), Some(PathBuf::from("/srv/data")));
        assert_eq!(real("/var/run/none"), None);
        assert_eq!(real("/srv/data/../data"), Some(PathBuf::from("/srv/data")));
    }

    #[test]
    fn a_link_someone_else_controls_is_refused_naming_it() {
        let (dir, host) = image();
        // Container root owns the parent and planted the link.
        fs::set_permissions(
            dir.path().join("srv/data"),
            fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        symlink("/etc", dir.path().join("srv/data/sub")).unwrap();
        let err = real_path(&host, Path::new("/srv/data/sub")).unwrap_err();
        assert!(
            matches!(&err, WalkError::UntrustedLink { path, .. } if path.ends_with("srv/data/sub")),
            "{err}"
        );
        symlink("/etc", dir.path().join("srv/mine")).unwrap();
        lchown(dir.path().join("srv/mine"), Some(100_000), None).unwrap();
        let err = real_path(&host, Path::new("/srv/mine")).unwrap_err();
        assert!(err.to_string().contains("owned by uid 100000"), "{err}");
    }
}
