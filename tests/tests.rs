//! The integration tests, one binary: a module per suite, all sharing
//! `support`. Run one suite with its module path as the filter, e.g.
//! `cargo test --test tests hostile::` (a filter matches anywhere in the
//! path: `enable::` runs `attacks::enable` too). The crash-point suite
//! exists only in a build with `--features failpoints`.

mod support;

mod attacks;
mod bad_input;
mod bench_migrate;
mod check;
mod cli;
mod concurrency;
#[cfg(feature = "failpoints")]
mod crash;
mod daemon_smoke;
mod disable;
mod e2e;
mod e2e_containerd;
mod e2e_migrate;
mod enable;
mod grant;
mod hostile;
mod image_store;
mod migrate;
mod plugin;
mod shadow_tools;
mod shift;
