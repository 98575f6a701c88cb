//! Fingerprints of files and trees, to prove what a command did or did not
//! change: kind, bytes (or link target), owner, mode, inode, link count,
//! mtime and every xattr (ACLs, capabilities).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub kind: &'static str,
    pub content: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub ino: u64,
    pub nlink: u64,
    /// Seconds and nanoseconds.
    pub mtime: (i64, i64),
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Fingerprint {
    /// The fingerprint without its mtime: a directory's changes when a
    /// command takes and drops a lock file inside it, which attacks allow.
    fn timeless(&self) -> Fingerprint {
        Fingerprint {
            mtime: (0, 0),
            ..self.clone()
        }
    }

    fn brief(&self) -> String {
        format!(
            "{} {}:{} {:o} ino {} nlink {} {} bytes xattrs {:?}",
            self.kind,
            self.uid,
            self.gid,
            self.mode,
            self.ino,
            self.nlink,
            self.content.len(),
            self.xattrs.keys().collect::<Vec<_>>()
        )
    }
}

pub type Fingerprints = BTreeMap<PathBuf, Fingerprint>;

/// One file, not following a final symlink.
pub fn fingerprint(path: &Path) -> Fingerprint {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ft = meta.file_type();
    let (kind, content) = if ft.is_symlink() {
        let target = fs::read_link(path).unwrap();
        ("symlink", target.into_os_string().into_encoded_bytes())
    } else if ft.is_file() {
        ("file", fs::read(path).unwrap())
    } else if ft.is_dir() {
        ("dir", Vec::new())
    } else {
        ("special", Vec::new())
    };
    Fingerprint {
        kind,
        content,
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode(),
        ino: meta.ino(),
        nlink: meta.nlink(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        xattrs: xattrs(path),
    }
}

fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 64 * 1024];
    let Ok(len) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return BTreeMap::new();
    };
    names.truncate(len);
    let mut out = BTreeMap::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 64 * 1024];
        if let Ok(len) = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..]) {
            value.truncate(len);
            out.insert(name, value);
        }
    }
    out
}

/// Every entry below `dir` (and `dir` itself), without following links.
pub fn fingerprint_tree(dir: &Path) -> Fingerprints {
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

fn walk(path: &Path, out: &mut Fingerprints) {
    let print = fingerprint(path);
    let is_dir = print.kind == "dir";
    out.insert(path.to_owned(), print);
    if is_dir {
        let mut entries: Vec<_> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for entry in entries {
            walk(&entry, out);
        }
    }
}

/// Fingerprints of a list of paths (each alone, not recursive).
pub fn fingerprint_all(paths: &[PathBuf]) -> Fingerprints {
    paths.iter().map(|p| (p.clone(), fingerprint(p))).collect()
}

/// Fails naming every entry that differs (mtimes aside), appeared or
/// vanished.
pub fn assert_unchanged(what: &str, before: &Fingerprints, after: &Fingerprints) {
    let mut diffs = Vec::new();
    for (path, old) in before {
        match after.get(path) {
            None => diffs.push(format!("{} vanished", path.display())),
            Some(new) if new.timeless() != old.timeless() => diffs.push(format!(
                "{} changed:\n    before {:?}\n    after  {:?}",
                path.display(),
                old.brief(),
                new.brief()
            )),
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("{} appeared", path.display()));
    }
    assert!(
        diffs.is_empty(),
        "the attack changed {what}:\n  {}",
        diffs.join("\n  ")
    );
}

/// Fails with the first difference between two snapshots, mtimes
/// included.
pub fn assert_same_tree(before: &Fingerprints, after: &Fingerprints) {
    let keys_before: Vec<_> = before.keys().collect();
    let keys_after: Vec<_> = after.keys().collect();
    assert_eq!(keys_before, keys_after, "the set of files changed");
    for (path, old) in before {
        assert!(
            *old == after[path],
            "{} changed (content, owner, inode, mode, mtime or xattrs)",
            path.display()
        );
    }
}
