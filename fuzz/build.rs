//! Turns on the `caps` fuzz target's body (cfg `has_caps`) only when the
//! crate has `shift::caps::FileCaps` with `decode` and `encode`, so this
//! crate builds before and after that module exists.

use std::fs;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_caps)");
    println!("cargo::rerun-if-changed=../src/shift/mod.rs");
    println!("cargo::rerun-if-changed=../src/shift/caps.rs");
    let module = fs::read_to_string("../src/shift/mod.rs").unwrap_or_default();
    let caps = fs::read_to_string("../src/shift/caps.rs").unwrap_or_default();
    let declared = module.lines().any(|l| l.trim() == "pub mod caps;");
    let api = caps.contains("pub struct FileCaps")
        && caps.contains("pub fn decode(")
        && caps.contains("pub fn encode(");
    if declared && api {
        println!("cargo::rustc-cfg=has_caps");
    }
}
