//! Attacks on docker-userns by the parties it must not trust: a local
//! unprivileged user, root inside a remapped container (host uid 100000+),
//! and a hostile image given to `--root`. Each test performs one attack in
//! a private mount namespace over a copy of /etc (`support::scene`) and
//! asserts that nothing outside what the command is for changed: bytes,
//! owner, mode, xattrs (ACLs and capabilities included) and inode.

mod check;
mod enable;
mod grant;
mod image;
mod migrate;
mod shift;
