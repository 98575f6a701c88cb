//! End-to-end harness: a real dockerd on a throwaway /etc, data root and
//! socket, isolated from the machine it runs on.
//!
//! Design:
//! - `Harness::new` makes a temp dir (mode 0711, so a remapped root can
//!   traverse it) holding `etc/` (a `cp -a` of the machine's /etc, minus
//!   etc/docker/daemon.json), empty `run/`, `home/`, `log/`, `mail/`, the
//!   data root `data/`, the exec root `exec/`, and later `docker.sock`,
//!   `docker.pid`, `dockerd.log` and `restart.sh`.
//! - One helper process owns a private mount and network namespace:
//!   `unshare --mount --net --propagation private -- sh -c 'mount --bind ...;
//!   exec sleep infinity'`, with the copies bound over /etc, /run, /home,
//!   /var/log and /var/mail. Every later step (dockerd, the docker CLI,
//!   useradd, the tool under test) runs through
//!   `nsenter --target <helper> --mount --net`, so it sees and edits only the
//!   copies. Private propagation keeps every mount out of the host namespace,
//!   and the mounts disappear when the namespace's last process exits. The
//!   network namespace keeps dockerd's sysctl and netfilter changes off the
//!   host; the API socket is a file, so it is reachable from both sides.
//! - The bind over /run matters: dockerd 20.10 uses a system containerd when
//!   /run/containerd/containerd.sock exists, and containerd 1.6 puts shim
//!   sockets in /run/containerd/s. With the empty copy, dockerd starts its
//!   own containerd with root `data/containerd/daemon` and state
//!   `exec/containerd`.
//! - dockerd reads its default config file /etc/docker/daemon.json, which in
//!   the namespace is the copy (an explicit `--config-file` naming a missing
//!   file would be an error, and a host without daemon.json is a scenario).
//! - dockerd is only ever started by `restart.sh`: it stops the dockerd
//!   named in the pidfile (after checking that the PID is a dockerd in this
//!   namespace), starts a new one detached (`setsid`) with the harness flags
//!   plus the script's arguments, and exits 0 once the daemon answers, 1 if
//!   it dies or stays silent for 60 s, like `systemctl restart` does. The
//!   tool under test gets `--restart-command <dir>/restart.sh`.
//! - `DOCKER_USERNS_ENGINE` picks the engine: `20.10` (default) is the
//!   system's dockerd; `26` or `28` is Debian's, unpacked by
//!   `scripts/engines` (run when missing). Its dockerd is bound over
//!   /usr/sbin/dockerd in the namespace, and `restart.sh` puts its usr/bin
//!   and usr/sbin (containerd, shims, docker-proxy, docker-init) first on
//!   PATH. The chosen dockerd must report that version (`dockerd
//!   --version`), or every test of the run fails: `scripts/test` runs the
//!   real-dockerd suites once per engine, and a run must test the engine
//!   it names.
//! - Containers go in a cgroup parent unique to the harness, so teardown
//!   can find them. Teardown (`stop`, and `Drop` when a test fails) removes
//!   containers, stops dockerd (SIGTERM, then SIGKILL), kills by PID what is
//!   left in the namespace or the cgroup parent, kills the helper, removes
//!   the cgroup directories, and deletes the temp dir.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use docker_userns::daemon::api::{DaemonInfo, DockerApi};
use rustix::process::{Pid, Signal, kill_process};

use super::engine::{self, DOCKERD};
use super::{BIN, require_root, shell_quote};

/// Debian's docker.io client matches its daemon; any other client works.
const DOCKER_CLIENTS: &[&str] = &["/usr/bin/docker", "/usr/local/bin/docker"];
const BUSYBOX: &str = "/bin/busybox";
const BUSYBOX_APPLETS: &[&str] = &["sh", "sleep", "cat", "id", "ls", "echo", "true", "stat"];

/// Host directories hidden behind temp copies: (mount point, dir in temp).
const BIND_MOUNTS: &[(&str, &str)] = &[
    ("/etc", "etc"),
    ("/run", "run"),
    ("/home", "home"),
    ("/var/log", "log"),
    ("/var/mail", "mail"),
];

const STEP_TIMEOUT: Duration = Duration::from_secs(60);
const RESTART_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_GRACE: Duration = Duration::from_secs(30);
const HELPER_READY: Duration = Duration::from_secs(10);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Paths of one harness, all under its temp dir.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    /// The copy of /etc, seen as /etc inside the namespace.
    pub etc: PathBuf,
    pub daemon_json: PathBuf,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub socket: PathBuf,
    pub pidfile: PathBuf,
    pub log: PathBuf,
    pub restart_script: PathBuf,
    pub docker_config: PathBuf,
}

impl Paths {
    fn new(root: &Path) -> Paths {
        Paths {
            root: root.to_path_buf(),
            etc: root.join("etc"),
            daemon_json: root.join("etc/docker/daemon.json"),
            data_root: root.join("data"),
            exec_root: root.join("exec"),
            socket: root.join("docker.sock"),
            pidfile: root.join("docker.pid"),
            log: root.join("dockerd.log"),
            restart_script: root.join("restart.sh"),
            docker_config: root.join("docker-config"),
        }
    }
}

/// What a running container looks like from the host.
#[derive(Debug, Clone)]
pub struct ContainerProbe {
    pub id: String,
    /// Real uid and gid of that process on the host.
    pub host_uid: u32,
    pub host_gid: u32,
    /// `/proc/self/uid_map` inside the container, whitespace-normalized.
    pub uid_map: String,
    pub gid_map: String,
}

impl ContainerProbe {
    /// Fails unless the container's id maps start at `uid` and `gid` and
    /// span 65536 ids each.
    pub fn ensure_maps(&self, uid: u32, gid: u32) -> Result<()> {
        ensure!(
            self.uid_map == format!("0 {uid} 65536"),
            "uid_map {}",
            self.uid_map
        );
        ensure!(
            self.gid_map == format!("0 {gid} 65536"),
            "gid_map {}",
            self.gid_map
        );
        Ok(())
    }
}

pub struct Harness {
    paths: Paths,
    /// The unpacked engine in use, `None` for the system's.
    engine: Option<PathBuf>,
    docker_client: PathBuf,
    helper: Option<Child>,
    helper_pid: u32,
    namespace: PathBuf,
    cgroup_parent: String,
    stopped: bool,
    // Last, so it is removed after Drop::drop has ended every process.
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Prepares the copies and the namespace; dockerd is not started yet.
    pub fn new() -> Result<Harness> {
        require_root();
        let docker_client = find_tools()?;
        let engine = engine::chosen()?;
        let dir = tempfile::Builder::new()
            .prefix("docker-userns-e2e.")
            .tempdir()
            .context("creating the harness temp dir")?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711))?;
        let paths = Paths::new(dir.path());
        prepare_tree(&paths)?;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let cgroup_parent = format!("docker-userns-e2e-{}-{n}", std::process::id());
        let (helper, namespace) = spawn_helper(&paths, engine.as_deref())?;
        let helper_pid = helper.id();
        let harness = Harness {
            paths,
            engine,
            docker_client,
            helper: Some(helper),
            helper_pid,
            namespace,
            cgroup_parent,
            stopped: false,
            _dir: dir,
        };
        harness.check_namespace()?;
        harness.write_restart_script()?;
        Ok(harness)
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    pub fn docker_client(&self) -> &Path {
        &self.docker_client
    }

    /// The `--restart-command` to give the tool under test.
    pub fn restart_command(&self) -> String {
        self.paths.restart_script.display().to_string()
    }

    /// `unix://` address of the harness daemon.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.paths.socket.display())
    }

    pub fn api(&self) -> DockerApi {
        DockerApi::new(&self.paths.socket, Duration::from_secs(10))
    }

    pub fn info(&self) -> Result<DaemonInfo> {
        self.api().info().context("GET /info on the harness daemon")
    }

    /// A command that runs `program` inside the namespace, with
    /// `DOCKER_HOST` pointing at the harness daemon.
    pub fn ns_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--target={}", self.helper_pid))
            .args(["--mount", "--net", "--"])
            .arg(program)
            .env("DOCKER_HOST", self.docker_host())
            .env("DOCKER_CONFIG", &self.paths.docker_config)
            .stdin(Stdio::null());
        command
    }

    /// Runs a shell script inside the namespace; fails on a non-zero exit.
    pub fn ns_sh(&self, script: &str) -> Result<String> {
        let mut command = self.ns_command("/bin/sh");
        command.args(["-c", script]);
        let output = self.run(command, STEP_TIMEOUT)?;
        checked(&format!("sh -c {script:?}"), output)
    }

    /// The docker CLI on the harness socket, run inside the namespace.
    pub fn docker(&self, args: &[&str]) -> Result<Output> {
        let mut command = self.ns_command(&self.docker_client);
        command.arg("-H").arg(self.docker_host()).args(args);
        self.run(command, STEP_TIMEOUT)
    }

    /// Like [`Harness::docker`], but fails on a non-zero exit and returns
    /// trimmed stdout.
    pub fn docker_ok(&self, args: &[&str]) -> Result<String> {
        let output = self.docker(args)?;
        checked(&format!("docker {}", args.join(" ")), output).map(|s| s.trim().to_string())
    }

    /// Runs `command` with a deadline, capturing its output in files (a
    /// pipe could be held open by a daemon the command leaves behind).
    pub fn run(&self, mut command: Command, timeout: Duration) -> Result<Output> {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let out_path = self.paths.root.join(format!("cmd-{n}.out"));
        let err_path = self.paths.root.join(format!("cmd-{n}.err"));
        let mut child = command
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?)
            .spawn()
            .with_context(|| format!("spawning {command:?}"))?;
        let status = wait_deadline(&mut child, timeout)?;
        let output = Output {
            status: status.unwrap_or_default(),
            stdout: fs::read(&out_path)?,
            stderr: fs::read(&err_path)?,
        };
        let _ = fs::remove_file(&out_path);
        let _ = fs::remove_file(&err_path);
        if status.is_none() {
            bail!(
                "{command:?} did not finish within {timeout:?}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(output)
    }

    /// Starts dockerd (through `restart.sh`) and returns its PID.
    pub fn start(&self) -> Result<u32> {
        self.restart(&[])
    }

    /// Stops dockerd if it runs and starts it again with the harness flags
    /// plus `extra_flags`, exactly as the tool under test would through
    /// [`Harness::restart_command`]. Returns the new PID.
    pub fn restart(&self, extra_flags: &[&str]) -> Result<u32> {
        ensure!(!self.stopped, "the harness was stopped");
        let mut command = self.ns_command(&self.paths.restart_script);
        command.args(extra_flags);
        let output = self.run(command, RESTART_TIMEOUT)?;
        if !output.status.success() {
            bail!(
                "restart.sh failed ({}): {} (full log: {})",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                self.paths.log.display()
            );
        }
        self.api()
            .wait_ready(Instant::now() + Duration::from_secs(30))
            .with_context(|| format!("dockerd log:\n{}", self.daemon_log(40)))?;
        self.daemon_pid()
            .context("dockerd answers but wrote no pidfile")
    }

    /// PID of the harness dockerd, from its pidfile, if that PID runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        let pid: u32 = fs::read_to_string(&self.paths.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        self.is_our_dockerd(pid).then_some(pid)
    }

    /// Stops dockerd only (SIGTERM, then SIGKILL after a grace period).
    pub fn stop_daemon(&self) -> Result<()> {
        let Some(pid) = self.daemon_pid() else {
            return Ok(());
        };
        signal(pid, Signal::TERM);
        if wait_gone(pid, STOP_GRACE) {
            return Ok(());
        }
        eprintln!("harness: dockerd {pid} ignored SIGTERM for {STOP_GRACE:?}; sending SIGKILL");
        signal(pid, Signal::KILL);
        ensure!(
            wait_gone(pid, Duration::from_secs(10)),
            "dockerd {pid} survived SIGKILL"
        );
        Ok(())
    }

    /// Ends everything the harness started. Safe to call twice.
    pub fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        if self.daemon_pid().is_some() {
            let _ = self.remove_all_containers();
        }
        let daemon = self.stop_daemon();
        self.kill_leftovers();
        if let Some(mut helper) = self.helper.take() {
            let _ = helper.kill();
            let _ = helper.wait();
        }
        self.remove_cgroups();
        daemon
    }

    /// PIDs still in the namespace (besides the helper) or in the cgroup
    /// parent: after [`Harness::stop`] this must be empty.
    pub fn leftover_processes(&self) -> Vec<u32> {
        // A container's shim exits on its own shortly after dockerd: give
        // the stop a few seconds to finish before anything counts as left.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut pids = self.namespace_processes();
            pids.extend(self.cgroup_processes());
            pids.sort_unstable();
            pids.dedup();
            if pids.is_empty() || Instant::now() >= deadline {
                return pids;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last `lines` lines of dockerd's output, for failure messages.
    pub fn daemon_log(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.paths.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Writes the copy's /etc/docker/daemon.json.
    pub fn write_daemon_json(&self, text: &str) -> Result<()> {
        fs::write(&self.paths.daemon_json, text)
            .with_context(|| format!("writing {}", self.paths.daemon_json.display()))
    }

    /// docker-userns in the namespace against this daemon, with its data
    /// root, `restart_command` and `--format json`; the caller adds the
    /// command and its arguments.
    pub fn tool_command(&self, restart_command: &str) -> Command {
        self.tool_command_waiting(restart_command, 90)
    }

    /// [`Harness::tool_command`] with `--timeout` set to `timeout` seconds.
    pub fn tool_command_waiting(&self, restart_command: &str, timeout: u32) -> Command {
        let mut command = self.ns_command(BIN);
        command
            .args([
                "--format",
                "json",
                "--timeout",
                &timeout.to_string(),
                "--host",
            ])
            .arg(self.docker_host())
            .arg("--data-root")
            .arg(&self.paths().data_root)
            .arg("--restart-command")
            .arg(restart_command);
        command
    }

    /// Runs a [`Harness::tool_command`]; returns the exit code and the one
    /// JSON object it printed.
    pub fn run_json(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<(i32, serde_json::Value)> {
        let out = self.run(command, timeout)?;
        let value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "docker-userns printed no JSON: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        Ok((out.status.code().unwrap_or(-1), value))
    }

    /// Runs docker-userns with the harness's restart and stop commands.
    pub fn tool_json(&self, args: &[&str], timeout: Duration) -> Result<(i32, serde_json::Value)> {
        let mut command = self.tool_command(&self.restart_command());
        command
            .arg("--stop-command")
            .arg(self.stop_command())
            .args(args);
        self.run_json(command, timeout)
    }

    /// A volume `data` with a file of uid 0 and one of uid 1000, a stopped
    /// container `stopped` that mounts it and a running one `running`, all
    /// from `image`: what a migration must carry.
    pub fn volume_and_two_containers(&self, image: &str) -> Result<()> {
        self.docker_ok(&["volume", "create", "data"])?;
        self.in_volume(
            image,
            "echo r > /data/root-file && echo u > /data/user-file && chown 1000:1000 /data/user-file",
        )?;
        let stopped = ["--name", "stopped", "--network", "none", "-v", "data:/data"];
        self.docker_ok(
            &[
                &["create"][..],
                &stopped,
                &[image, "cat", "/data/root-file"],
            ]
            .concat(),
        )?;
        self.docker_ok(&[
            "run",
            "-d",
            "--name",
            "running",
            "--network",
            "none",
            image,
            "sleep",
            "600",
        ])?;
        Ok(())
    }

    /// Runs `script` (sh) in a throwaway container from `image` with the
    /// volume `data` at /data; its output.
    fn in_volume(&self, image: &str, script: &str) -> Result<String> {
        self.docker_ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "data:/data",
            image,
            "sh",
            "-c",
            script,
        ])
    }

    /// What [`Harness::volume_and_two_containers`] made, as a migration
    /// must leave it: `stopped` starts and prints the volume's root file,
    /// and inside a container from `image` the volume's files keep their
    /// owners 0 and 1000. `then` (shell) runs in that container after the
    /// listing.
    pub fn ensure_volume_and_stopped_container_kept(&self, image: &str, then: &str) -> Result<()> {
        let out = self.docker_ok(&["start", "-a", "stopped"])?;
        ensure!(out == "r", "the stopped container printed {out:?}");
        let script = format!("stat -c '%u %n' /data/root-file /data/user-file{then}");
        let listing = self.in_volume(image, &script)?;
        ensure!(
            listing == "0 /data/root-file\n1000 /data/user-file",
            "volume owners inside: {listing:?}"
        );
        Ok(())
    }

    /// Imports a one-binary busybox image as `tag`.
    pub fn import_busybox(&self, tag: &str) -> Result<()> {
        let rootfs = self.paths.root.join("busybox-rootfs");
        if !rootfs.exists() {
            let bin = rootfs.join("bin");
            fs::create_dir_all(&bin)?;
            fs::copy(BUSYBOX, bin.join("busybox")).context("copying /bin/busybox")?;
            for applet in BUSYBOX_APPLETS {
                std::os::unix::fs::symlink("busybox", bin.join(applet))?;
            }
        }
        let script = format!(
            "tar -C {} -c . | {} -H {} import - {}",
            shell_quote(&rootfs.display().to_string()),
            shell_quote(&self.docker_client.display().to_string()),
            shell_quote(&self.docker_host()),
            shell_quote(tag)
        );
        self.ns_sh(&script).map(drop)
    }

    /// Starts `docker run -d <image> sleep 60` and looks at the container's
    /// process from the host: its uid/gid there and its id maps inside.
    pub fn run_container_host_uid(&self, image: &str) -> Result<ContainerProbe> {
        let id = self.docker_ok(&["run", "-d", "--network", "none", image, "sleep", "60"])?;
        let pid: u32 = self
            .docker_ok(&["inspect", "--format", "{{.State.Pid}}", &id])?
            .parse()
            .context("container PID")?;
        ensure!(pid > 0, "container {id} is not running");
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let map = |file: &str| -> Result<String> {
            let text = self.docker_ok(&["exec", &id, "cat", file])?;
            Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
        };
        Ok(ContainerProbe {
            host_uid: status_id(&status, "Uid:")?,
            host_gid: status_id(&status, "Gid:")?,
            uid_map: map("/proc/self/uid_map")?,
            gid_map: map("/proc/self/gid_map")?,
            id,
        })
    }

    fn remove_all_containers(&self) -> Result<()> {
        let ids = self.docker_ok(&["ps", "-aq"])?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut args = vec!["rm", "-f"];
        args.extend(ids);
        self.docker_ok(&args).map(drop)
    }

    fn write_restart_script(&self) -> Result<()> {
        let p = &self.paths;
        let q = |path: &Path| shell_quote(&path.display().to_string());
        let flags = [
            format!("--data-root={}", q(&p.data_root)),
            format!("--exec-root={}", q(&p.exec_root)),
            format!("--pidfile={}", q(&p.pidfile)),
            format!("--host=unix://{}", q(&p.socket)),
            format!("--cgroup-parent=/{}", self.cgroup_parent),
            "--bridge=none".into(),
            "--iptables=false".into(),
            "--ip-forward=false".into(),
            "--ip-masq=false".into(),
            // Busybox `sleep` as PID 1 ignores SIGTERM; do not wait 10 s
            // for each container on every restart.
            "--shutdown-timeout=2".into(),
        ]
        .join(" ");
        let script = RESTART_SCRIPT
            .replace("@HELPER@", &self.helper_pid.to_string())
            .replace("@PIDFILE@", &q(&p.pidfile))
            .replace("@LOG@", &q(&p.log))
            .replace("@SOCK@", &q(&p.socket))
            .replace("@DOCKERD@", DOCKERD)
            .replace("@ENGINE_PATH@", &self.engine_path())
            .replace("@DOCKER@", &q(&self.docker_client))
            .replace("@DOCKER_CONFIG@", &q(&p.docker_config))
            .replace("@FLAGS@", &flags);
        let mut file = File::create(&p.restart_script)?;
        file.write_all(script.as_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::set_permissions(&p.restart_script, fs::Permissions::from_mode(0o755))?;
        // The stop script is the restart script's first half.
        let stop_end = script
            .find("rm -f \"$PIDFILE\"")
            .context("restart script layout")?;
        let stop = format!("{}rm -f \"$PIDFILE\"\nexit 0\n", &script[..stop_end]);
        fs::write(self.stop_script(), stop)?;
        fs::set_permissions(self.stop_script(), fs::Permissions::from_mode(0o755))?;
        Ok(())
    }

    /// Copies the engine's dockerd to `dir`/dockerd (root's, 0755) and
    /// makes `restart.sh` start that copy: a daemon installed where no
    /// fixed list of directories would look.
    pub fn install_dockerd_in(&self, dir: &Path) -> Result<PathBuf> {
        let source = self
            .engine
            .as_ref()
            .map_or_else(|| PathBuf::from(DOCKERD), |d| d.join("usr/sbin/dockerd"));
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        let copy = dir.join("dockerd");
        fs::copy(&source, &copy).with_context(|| format!("copying {}", source.display()))?;
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))?;
        let script = fs::read_to_string(&self.paths.restart_script)?;
        let from = format!("setsid --wait {DOCKERD} ");
        ensure!(script.contains(&from), "restart script layout");
        let to = format!(
            "setsid --wait {} ",
            shell_quote(&copy.display().to_string())
        );
        fs::write(&self.paths.restart_script, script.replace(&from, &to))?;
        Ok(copy)
    }

    /// `PATH` entries of the engine, to go before the system's.
    fn engine_path(&self) -> String {
        self.engine.as_ref().map_or_else(String::new, |dir| {
            let bin = |d: &str| shell_quote(&dir.join(d).display().to_string());
            format!("{}:{}:", bin("usr/bin"), bin("usr/sbin"))
        })
    }

    fn stop_script(&self) -> PathBuf {
        self.paths.root.join("stop.sh")
    }

    /// The `--stop-command` to give the tool under test.
    pub fn stop_command(&self) -> String {
        self.stop_script().display().to_string()
    }

    /// Proves the binds are in place before anything writes to "/etc".
    fn check_namespace(&self) -> Result<()> {
        let marker = self.paths.etc.join(".docker-userns-e2e");
        fs::write(&marker, "")?;
        let seen =
            self.ns_sh("test -e /etc/.docker-userns-e2e && test ! -e /run/systemd && echo ok");
        fs::remove_file(&marker)?;
        ensure!(
            seen?.trim() == "ok",
            "the namespace does not see the /etc copy"
        );
        ensure!(
            !Path::new("/etc/.docker-userns-e2e").exists(),
            "a harness bind mount leaked into the host namespace"
        );
        Ok(())
    }

    fn is_our_dockerd(&self, pid: u32) -> bool {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        comm.trim() == "dockerd" && alive(pid) && self.in_namespace(pid)
    }

    fn in_namespace(&self, pid: u32) -> bool {
        fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|ns| ns == self.namespace)
    }

    fn namespace_processes(&self) -> Vec<u32> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| pid != self.helper_pid && alive(pid) && self.in_namespace(pid))
            .collect()
    }

    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let base = Path::new("/sys/fs/cgroup");
        let mut tops = vec![base.join(&self.cgroup_parent)];
        if let Ok(entries) = fs::read_dir(base) {
            tops.extend(entries.filter_map(|e| Some(e.ok()?.path().join(&self.cgroup_parent))));
        }
        let mut all = Vec::new();
        for top in tops.into_iter().filter(|t| t.is_dir()) {
            collect_dirs(&top, &mut all);
        }
        all
    }

    fn cgroup_processes(&self) -> Vec<u32> {
        self.cgroup_dirs()
            .iter()
            .filter_map(|dir| fs::read_to_string(dir.join("cgroup.procs")).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<u32>>()
            })
            .filter(|&pid| alive(pid))
            .collect()
    }

    /// Kills, by PID, what is left of containers, shims and containerd.
    /// Everything in the namespace or the cgroup parent was started by
    /// this harness.
    fn kill_leftovers(&self) {
        for _ in 0..50 {
            let pids = self.leftover_processes();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                signal(pid, Signal::KILL);
            }
            thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "harness: processes survive SIGKILL: {:?}",
            self.leftover_processes()
        );
    }

    fn remove_cgroups(&self) {
        // Deepest first; a cgroup whose last task just died can be busy
        // for a moment.
        for _ in 0..20 {
            let mut dirs = self.cgroup_dirs();
            if dirs.is_empty() {
                return;
            }
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for dir in dirs {
                let _ = fs::remove_dir(dir);
            }
            thread::sleep(Duration::from_millis(100));
        }
        eprintln!("harness: cgroups left behind: {:?}", self.cgroup_dirs());
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("harness teardown: {e:#}");
        }
    }
}

const RESTART_SCRIPT: &str = r#"#!/bin/sh
# Restarts the docker-userns e2e dockerd: stops the one named in the pidfile,
# starts a new one with the harness flags plus this script's arguments, and
# exits 0 once it answers on its socket (1 if it dies or stays silent 60 s).
set -u
HELPER=@HELPER@
PIDFILE=@PIDFILE@
LOG=@LOG@
SOCK=@SOCK@
DOCKER=@DOCKER@
export DOCKER_CONFIG=@DOCKER_CONFIG@
unset DOCKER_HOST
PATH=@ENGINE_PATH@$PATH
export PATH

state() { sed -n 's/^.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null; }
alive() { s=$(state "$1"); [ -n "$s" ] && [ "$s" != Z ]; }
ours() {
    [ "$(cat "/proc/$1/comm" 2>/dev/null)" = dockerd ] &&
    [ "$(readlink "/proc/$1/ns/mnt")" = "$(readlink "/proc/$HELPER/ns/mnt")" ]
}

pid=$(cat "$PIDFILE" 2>/dev/null || true)
if [ -n "$pid" ] && ours "$pid"; then
    kill -TERM "$pid"
    i=0
    while alive "$pid"; do
        i=$((i + 1))
        [ "$i" -eq 300 ] && kill -KILL "$pid"
        if [ "$i" -ge 400 ]; then
            echo "restart.sh: dockerd $pid does not exit" >&2
            exit 1
        fi
        sleep 0.1
    done
fi
rm -f "$PIDFILE"

echo "=== restart.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) extra flags: $*" >>"$LOG"
nsenter --target="$HELPER" --mount --net -- \
    setsid --wait @DOCKERD@ @FLAGS@ "$@" </dev/null >>"$LOG" 2>&1 &
launcher=$!
i=0
while [ "$i" -lt 120 ]; do
    if timeout 5 "$DOCKER" -H "unix://$SOCK" version >/dev/null 2>&1; then
        exit 0
    fi
    if ! alive "$launcher"; then
        echo "restart.sh: dockerd exited during startup; end of $LOG:" >&2
        tail -n 15 "$LOG" >&2
        exit 1
    fi
    i=$((i + 1))
    sleep 0.5
done
echo "restart.sh: dockerd did not answer on $SOCK within 60 s" >&2
exit 1
"#;

fn find_tools() -> Result<PathBuf> {
    for tool in [
        DOCKERD,
        BUSYBOX,
        "/usr/bin/unshare",
        "/usr/bin/nsenter",
        "/usr/bin/setsid",
    ] {
        ensure!(
            Path::new(tool).exists(),
            "{tool} is missing: the e2e tests need docker.io, busybox-static and util-linux"
        );
    }
    DOCKER_CLIENTS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("no docker client in /usr/bin or /usr/local/bin")
}

/// The temp tree: a copy of /etc and empty stand-ins with the owner and
/// mode of the directories they hide.
fn prepare_tree(paths: &Paths) -> Result<()> {
    let status = Command::new("cp")
        .args(["-a", "/etc"])
        .arg(&paths.etc)
        .status()
        .context("running cp -a /etc")?;
    ensure!(
        status.success(),
        "cp -a /etc {} failed",
        paths.etc.display()
    );
    let _ = fs::remove_file(&paths.daemon_json);
    fs::create_dir_all(paths.daemon_json.parent().unwrap())?;
    for (target, name) in BIND_MOUNTS.iter().filter(|(t, _)| *t != "/etc") {
        let meta =
            fs::metadata(target).with_context(|| format!("{target} must exist to be hidden"))?;
        let dir = paths.root.join(name);
        fs::create_dir(&dir)?;
        std::os::unix::fs::chown(&dir, Some(meta.uid()), Some(meta.gid()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    fs::create_dir(&paths.docker_config)?;
    Ok(())
}

/// Starts the namespace owner and waits until its binds are in place.
fn spawn_helper(paths: &Paths, engine: Option<&Path>) -> Result<(Child, PathBuf)> {
    let ready = paths.root.join("helper.ready");
    let mut script = String::from("set -e\n");
    for (target, name) in BIND_MOUNTS {
        let source = paths.root.join(name).display().to_string();
        script.push_str(&format!(
            "mount --bind {} {}\n",
            shell_quote(&source),
            target
        ));
    }
    if let Some(dir) = engine {
        let dockerd = dir.join("usr/sbin/dockerd").display().to_string();
        script.push_str(&format!(
            "mount --bind {} {DOCKERD}\n",
            shell_quote(&dockerd)
        ));
    }
    script.push_str(&format!(
        "touch {}\nexec sleep infinity\n",
        shell_quote(&ready.display().to_string())
    ));
    let log = paths.root.join("helper.log");
    let out = File::create(&log)?;
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--net",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("spawning unshare")?;
    let deadline = Instant::now() + HELPER_READY;
    while !ready.exists() {
        let exited = child.try_wait()?;
        if exited.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "namespace helper failed ({exited:?}): {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    let namespace = fs::read_link(format!("/proc/{}/ns/mnt", child.id()))?;
    ensure!(
        namespace != fs::read_link("/proc/self/ns/mnt")?,
        "the helper shares our mount namespace"
    );
    Ok((child, namespace))
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
}

fn wait_deadline(child: &mut Child, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn checked(what: &str, output: Output) -> Result<String> {
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A process that exists and is not a zombie.
fn alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    state.is_some_and(|s| s != 'Z')
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
    true
}

fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, sig);
    }
}

/// First field of a `/proc/PID/status` line such as `Uid:\t0\t0\t0\t0`.
fn status_id(status: &str, key: &str) -> Result<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("no {key} line in /proc/PID/status"))
}

/// First subordinate id at or above 100000 past every range in the copy's
/// /etc/subuid and /etc/subgid.
pub fn free_subid_start(etc: &Path) -> u32 {
    let mut end: u64 = 100_000;
    for file in ["subuid", "subgid"] {
        let text = fs::read_to_string(etc.join(file)).unwrap_or_default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if let [_, start, count] = fields[..] {
                if let (Ok(s), Ok(c)) = (start.parse::<u64>(), count.parse::<u64>()) {
                    end = end.max(s + c);
                }
            }
        }
    }
    u32::try_from(end).expect("subordinate ids exhausted")
}
