//! What unit tests share: a snapshot of a temp root's data root to compare
//! before and after a step that must leave it as it was.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What a data root holds, entry by entry: path, owner, mode and the
/// bytes of each regular file.
pub(crate) type Tree = Vec<(String, u32, u32, u32, Option<Vec<u8>>)>;

/// Every entry below `root`'s var/lib/docker, sorted by path.
pub(crate) fn data_root_tree(root: &Path) -> Tree {
    let top = root.join("var/lib/docker");
    let mut found = Vec::new();
    let mut todo = vec![top.clone()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let bytes = match meta.is_dir() {
            true => {
                for entry in std::fs::read_dir(&path).unwrap() {
                    todo.push(entry.unwrap().path());
                }
                None
            }
            false => Some(std::fs::read(&path).unwrap()),
        };
        let rel = path.strip_prefix(&top).unwrap().display().to_string();
        found.push((rel, meta.uid(), meta.gid(), meta.mode() & 0o7777, bytes));
    }
    found.sort();
    found
}
