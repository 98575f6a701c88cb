//! Benchmark (run by scripts/bench-migrate, not part of the test suite):
//! `enable --migrate` against `docker save | docker load` into a remapped
//! daemon, for the same images, in one run, each timed from a cold page
//! cache: wall time and extra disk.
//!
//! The data root gets `BENCH_FILES` files (default 500,000) spread over
//! `BENCH_IMAGES` single-layer images (default 5). Their content is a tar
//! stream written here and piped into `docker import`: building the files on
//! disk first and copying them with a Dockerfile would take longer than the
//! benchmark itself.

use std::fs;
use std::io::{BufWriter, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::harness::Harness;
use anyhow::{Context, Result, ensure};

const BASE: &str = "busybox:e2e";
/// Generous: `save | load` of 500,000 files on a shared machine.
const LONG: Duration = Duration::from_secs(3600);

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

/// Writes back dirty pages and empties the page, dentry and inode caches,
/// so the next phase reads the data root from disk as after a reboot.
fn drop_caches() -> Result<()> {
    rustix::fs::sync();
    fs::write("/proc/sys/vm/drop_caches", "3\n").context("writing /proc/sys/vm/drop_caches")
}

/// A ustar header block for `name` (< 100 bytes); `link` for a symlink.
fn tar_header(name: &str, mode: u32, uid: u32, size: usize, kind: u8, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        let text = format!("{value:0width$o}", width = field.len() - 1);
        field[..text.len()].copy_from_slice(text.as_bytes());
    };
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], u64::from(uid));
    octal(&mut h[116..124], u64::from(uid));
    octal(&mut h[124..136], size as u64);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A layer-like tree of `files` small files (one in ten a symlink, one in
/// sixteen owned by uid 1000), 200 to a directory, as a tar stream.
fn write_tree(out: &mut impl Write, image: usize, files: usize) -> Result<()> {
    const PER_DIR: usize = 200;
    const DIRS: usize = 50;
    let top = format!("data/i{image}/");
    out.write_all(&tar_header(&top, 0o755, 0, 0, b'5', ""))?;
    let mut dir = String::new();
    for i in 0..files {
        if i % (PER_DIR * DIRS) == 0 {
            let upper = format!("{top}d{}/", i / (PER_DIR * DIRS));
            out.write_all(&tar_header(&upper, 0o755, 0, 0, b'5', ""))?;
        }
        if i % PER_DIR == 0 {
            dir = format!("{top}d{}/s{}/", i / (PER_DIR * DIRS), (i / PER_DIR) % DIRS);
            out.write_all(&tar_header(&dir, 0o755, 0, 0, b'5', ""))?;
        }
        let name = format!("{dir}f{i}");
        let uid = if i % 16 == 0 { 1000 } else { 0 };
        if i % 10 == 9 {
            out.write_all(&tar_header(&name, 0o777, uid, 0, b'2', "../s0/f0"))?;
            continue;
        }
        let body = format!("{image}:{i}\n").repeat(1 + i % 24);
        out.write_all(&tar_header(&name, 0o644, uid, body.len(), b'0', ""))?;
        out.write_all(body.as_bytes())?;
        out.write_all(&[0u8; 512][..(512 - body.len() % 512) % 512])?;
    }
    out.write_all(&[0u8; 1024])?;
    Ok(())
}

/// Imports `files` generated files as the single-layer image `tag`.
fn import_tree(h: &Harness, tag: &str, image: usize, files: usize) -> Result<()> {
    let mut command = h.ns_command(h.docker_client());
    command
        .arg("-H")
        .arg(h.docker_host())
        .args(["import", "-", tag])
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = command.spawn().context("spawning docker import")?;
    let stdin = child.stdin.take().context("docker import stdin")?;
    let mut out = BufWriter::with_capacity(1 << 20, stdin);
    write_tree(&mut out, image, files)?;
    drop(out.into_inner().map_err(|e| e.into_error())?);
    ensure!(child.wait()?.success(), "docker import {tag}");
    Ok(())
}

/// The base image, `images` imported images sharing `files` files, and a
/// few small images built on the base (so some images have two layers).
fn build_images(h: &Harness, files: usize, images: usize) -> Result<Vec<String>> {
    h.import_busybox(BASE)?;
    let mut tags = vec![BASE.to_owned()];
    for image in 0..images {
        let tag = format!("many{image}:bench");
        let count = files / images + usize::from(image < files % images);
        import_tree(h, &tag, image, count)?;
        tags.push(tag);
    }
    let ctx = h.paths().root.join("bench-ctx");
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

/// Entries under `path`, not following symlinks.
fn count_entries(path: &std::path::Path) -> usize {
    let mut count = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            count += 1;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    count
}

#[test]
#[ignore = "a benchmark: run it with scripts/bench-migrate"]
fn migrate_versus_save_and_load() -> Result<()> {
    let files = env_count("BENCH_FILES", 500_000);
    let images = env_count("BENCH_IMAGES", 5).max(1);
    let source = Harness::new()?;
    source.start()?;
    let started = Instant::now();
    let tags = build_images(&source, files, images)?;
    let entries = count_entries(&source.paths().data_root);
    println!(
        "built {} images, data root {} entries, in {:.0} s",
        tags.len(),
        entries,
        started.elapsed().as_secs_f64()
    );

    // save | load into a fresh remapped daemon.
    let target = Harness::new()?;
    target.start()?;
    let mut enable = target.tool_command(&target.restart_command());
    enable.args(["enable", "--yes"]);
    ensure!(
        target
            .run(enable, Duration::from_secs(300))?
            .status
            .success(),
        "enable on the load target"
    );
    let before_load = used(&target.paths().data_root);
    let script = format!(
        "{client} -H {} save {} | {client} -H {} load",
        source.docker_host(),
        tags.join(" "),
        target.docker_host(),
        client = source.docker_client().display()
    );
    let mut save_load = target.ns_command("/bin/sh");
    save_load.args(["-c", &script]);
    drop_caches()?;
    let started = Instant::now();
    let out = target.run(save_load, LONG)?;
    let save_load_time = started.elapsed();
    ensure!(
        out.status.success(),
        "save | load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let save_load_disk = used(&target.paths().data_root).saturating_sub(before_load);

    // enable --migrate on the source itself.
    let before_migrate = used(&source.paths().data_root);
    let mut migrate = source.tool_command(&source.restart_command());
    migrate
        .arg("--stop-command")
        .arg(source.stop_command())
        .args(["enable", "--migrate", "--yes"]);
    drop_caches()?;
    let started = Instant::now();
    let out = source.run(migrate, LONG)?;
    let whole = started.elapsed();
    ensure!(
        out.status.success(),
        "enable --migrate: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let migration = Duration::from_secs_f64(report["migration"]["seconds"].as_f64().unwrap_or(0.0));
    let migrate_disk = used(&source.paths().data_root).saturating_sub(before_migrate);
    let listed = source.docker_ok(&["images", "-q"])?;
    ensure!(
        listed.lines().count() >= tags.len(),
        "images after migrate: {listed}"
    );

    println!(
        "images: {} ({} files in {} imported images; data root {} entries), cold cache before each timed run",
        tags.len(),
        files,
        images,
        entries
    );
    println!(
        "docker save | docker load: {:.2} s, extra disk {} MiB",
        save_load_time.as_secs_f64(),
        save_load_disk >> 20
    );
    println!(
        "enable --migrate: {:.2} s for the whole command (stop, migrate, start, verify), {:.2} s migrating, extra disk {} KiB",
        whole.as_secs_f64(),
        migration.as_secs_f64(),
        migrate_disk >> 10
    );
    for key in ["phases", "timings"] {
        for value in [&report[key], &report["migration"][key]] {
            if !value.is_null() {
                println!("enable --migrate {key}: {value}");
            }
        }
    }
    println!(
        "ratio (save|load / whole enable --migrate): {:.1}x; (save|load / migration alone): {:.1}x",
        save_load_time.as_secs_f64() / whole.as_secs_f64(),
        save_load_time.as_secs_f64() / migration.as_secs_f64().max(0.001)
    );
    println!(
        "BENCH-MIGRATE files={files} images={} entries={entries} save_load={:.2} whole={:.2} migration={:.2} save_load_mib={} migrate_kib={}",
        tags.len(),
        save_load_time.as_secs_f64(),
        whole.as_secs_f64(),
        migration.as_secs_f64(),
        save_load_disk >> 20,
        migrate_disk >> 10
    );
    Ok(())
}
