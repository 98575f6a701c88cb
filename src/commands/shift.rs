//! `shift`: re-own a tree below `--root` from one id mapping to another
//! with the shift engine; the report and its rendering are the engine's.

use std::io::IsTerminal;

use crate::error::Error;
use crate::request::{Format, Global, ShiftRequest};
use crate::shift::{self, ShiftReport};

pub fn run(g: &Global, request: &ShiftRequest) -> Result<ShiftReport, Error> {
    let parse = |maps: &[String]| {
        maps.iter()
            .map(|m| shift::IdMap::parse(m))
            .collect::<Result<Vec<_>, _>>()
    };
    let options = shift::ShiftOptions {
        uid_maps: parse(&request.uid_maps)?,
        gid_maps: parse(&request.gid_maps)?,
        dry_run: g.dry_run,
        progress: g.format == Format::Human && !g.quiet && std::io::stderr().is_terminal(),
    };
    // DIR is resolved below --root without leaving it, never through a
    // symlink or `..`: the tree's owner may have planted either.
    let root = rustix::fs::open(
        &g.root,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|source| Error::RootDir {
        root: g.root.clone(),
        source,
    })?;
    let tree = shift::open_tree(std::os::fd::AsFd::as_fd(&root), &request.dir, &g.root)?;
    let shown = g.root.join(crate::host::relative(&request.dir));
    Ok(shift::shift_open_tree(tree, &shown, &options)?)
}
