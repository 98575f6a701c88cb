//! Benchmark (run by scripts/bench-migrate, not part of the test suite):
//! `enable --migrate` against `docker save | docker load` into a remapped
//! daemon, for the same images, in one run: wall time and extra disk.

mod e2e_support;

use std::fs;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e_support::Harness;

const BIN: &str = env!("CARGO_BIN_EXE_docker-userns");
const BASE: &str = "busybox:e2e";

fn files_env() -> usize {
    std::env::var("BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// Bytes allocated under `path` (du), hard links counted once.
fn used(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if seen.insert((meta.dev(), meta.ino())) {
                total += meta.blocks() * 512;
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// A base image, a built image whose files are spread over several COPY
/// layers, and a few more small images.
fn build_images(h: &Harness, files: usize) -> Result<Vec<String>> {
    h.import_busybox(BASE)?;
    let ctx = h.paths().root.join("bench-ctx");
    let layers = 4;
    let mut dockerfile = format!("FROM {BASE}\n");
    for layer in 0..layers {
        let dir = ctx.join(format!("part{layer}"));
        for i in 0..files / layers {
            let sub = dir.join(format!("d{}", i % 100));
            fs::create_dir_all(&sub)?;
            fs::write(
                sub.join(format!("f{i}")),
                format!("{layer}:{i}\n").repeat(1 + i % 64),
            )?;
        }
        dockerfile.push_str(&format!("COPY part{layer} /data/part{layer}\n"));
    }
    dockerfile.push_str("RUN chown -R 1000:1000 /data/part0\n");
    fs::write(ctx.join("Dockerfile"), dockerfile)?;
    let ctx_arg = ctx.display().to_string();
    h.docker_ok(&["build", "--network", "none", "-t", "many:bench", &ctx_arg])?;
    let mut tags = vec![BASE.to_owned(), "many:bench".to_owned()];
    for n in 0..3 {
        let small = ctx.join(format!("small{n}"));
        fs::create_dir_all(&small)?;
        fs::write(
            small.join("Dockerfile"),
            format!("FROM {BASE}\nRUN echo {n} > /n\n"),
        )?;
        let tag = format!("small{n}:bench");
        h.docker_ok(&[
            "build",
            "--network",
            "none",
            "-t",
            &tag,
            &small.display().to_string(),
        ])?;
        tags.push(tag);
    }
    Ok(tags)
}

#[test]
#[ignore = "a benchmark: run it with scripts/bench-migrate"]
fn migrate_versus_save_and_load() -> Result<()> {
    let files = files_env();
    let source = Harness::new()?;
    source.start()?;
    let tags = build_images(&source, files)?;

    // save | load into a fresh remapped daemon.
    let target = Harness::new()?;
    target.start()?;
    let mut enable = target.ns_command(BIN);
    enable
        .args(["enable", "--yes", "--format", "json", "--host"])
        .arg(target.docker_host())
        .arg("--data-root")
        .arg(&target.paths().data_root)
        .arg("--restart-command")
        .arg(target.restart_command());
    ensure!(
        target
            .run(enable, Duration::from_secs(300))?
            .status
            .success(),
        "enable on the load target"
    );
    let before_load = used(&target.paths().data_root);
    let started = Instant::now();
    let script = format!(
        "docker -H {} save {} | docker -H {} load",
        source.docker_host(),
        tags.join(" "),
        target.docker_host()
    );
    target.ns_sh(&script).context("save | load")?;
    let save_load = started.elapsed();
    let save_load_disk = used(&target.paths().data_root).saturating_sub(before_load);

    // enable --migrate on the source itself.
    let before_migrate = used(&source.paths().data_root);
    let mut migrate = source.ns_command(BIN);
    migrate
        .args(["enable", "--migrate", "--yes", "--format", "json", "--host"])
        .arg(source.docker_host())
        .arg("--data-root")
        .arg(&source.paths().data_root)
        .arg("--restart-command")
        .arg(source.restart_command())
        .arg("--stop-command")
        .arg(source.stop_command());
    let started = Instant::now();
    let out = source.run(migrate, Duration::from_secs(600))?;
    let whole = started.elapsed();
    ensure!(
        out.status.success(),
        "enable --migrate: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let migration = Duration::from_secs_f64(report["migration"]["seconds"].as_f64().unwrap_or(0.0));
    let migrate_disk = used(&source.paths().data_root).saturating_sub(before_migrate);
    let images = source.docker_ok(&["images", "-q"])?;
    ensure!(
        images.lines().count() >= tags.len(),
        "images after migrate: {images}"
    );

    println!("images: {} ({} files in the big one)", tags.len(), files);
    println!(
        "docker save | docker load: {:.2} s, extra disk {} MiB",
        save_load.as_secs_f64(),
        save_load_disk >> 20
    );
    println!(
        "enable --migrate: {:.2} s for the whole command (stop, migrate, start, verify), {:.2} s migrating, extra disk {} KiB",
        whole.as_secs_f64(),
        migration.as_secs_f64(),
        migrate_disk >> 10
    );
    println!(
        "ratio (save|load / whole enable --migrate): {:.1}x; (save|load / migration alone): {:.1}x",
        save_load.as_secs_f64() / whole.as_secs_f64(),
        save_load.as_secs_f64() / migration.as_secs_f64().max(0.001)
    );
    Ok(())
}
