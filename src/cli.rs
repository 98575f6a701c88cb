//! Command-line parsing: clap's types end here and become a [`Request`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::ids::MIN_COUNT;
use crate::request::{
    CheckRequest, Command, DisableRequest, EnableRequest, Format, Global, GrantRequest, InsideIds,
    Request, ShiftRequest,
};

const AFTER_HELP: &str = "\
Examples:
  docker-userns enable                      remap to dockremap, creating it
  docker-userns enable --dry-run --diff     show what would change
  docker-userns enable --user app:app --count 131072
  docker-userns --root /srv/image enable    prepare an image root offline
  docker-userns enable --format json        one JSON object for scripts

Exit status: 0 done, 1 changes pending (--dry-run), 2 error (nothing changed).";

#[derive(Debug, Parser)]
#[command(name = "docker-userns", version, about = "Put a Docker host into user-namespace remapping", after_help = AFTER_HELP, max_term_width = 80)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: CommandArgs,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Act on the system rooted at DIR (an image or chroot); every path is
    /// taken under it and nothing outside it is touched.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// daemon.json to edit [default: /etc/docker/daemon.json, or the snap's].
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// dockerd's data root when daemon.json does not say [default: /var/lib/docker].
    #[arg(long, global = true, value_name = "DIR")]
    data_root: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = FormatArg::Human)]
    format: FormatArg,
    /// Compute and show the plan; change nothing.
    #[arg(long, global = true)]
    dry_run: bool,
    /// Show unified diffs of the files that change.
    #[arg(long, global = true)]
    diff: bool,
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print the commands run for each action.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Docker API socket [default: $DOCKER_HOST, else unix:///var/run/docker.sock].
    #[arg(long = "host", global = true, value_name = "unix:///PATH")]
    socket: Option<String>,
    /// Command that restarts dockerd where no service manager is recognised
    /// (split into words, run without a shell).
    #[arg(long, global = true, value_name = "CMD")]
    restart_command: Option<String>,
    /// Command that stops dockerd, with --restart-command, for --migrate.
    #[arg(long, global = true, value_name = "CMD")]
    stop_command: Option<String>,
    /// Seconds to wait for dockerd to come back and show the mapping.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60)]
    timeout: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum CommandArgs {
    /// Configure remapping: remap user, subuid/subgid ranges, daemon.json.
    Enable(EnableArgs),
    /// Turn remapping off (the account and ranges stay unless --purge).
    Disable(DisableArgs),
    /// Diagnose remapping: what is wrong and how to fix it (read-only).
    #[command(visible_alias = "--check")]
    Check(CheckArgs),
    /// Make a bind-mount source usable by a container user under remapping.
    Grant(GrantArgs),
    /// Re-own a tree from one id mapping to another (exactly, race-safe).
    Shift(ShiftArgs),
    /// Print a shell completion script (bash, zsh, fish).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
}

/// What the process was asked to do.
pub enum Invocation {
    Run(Box<Request>),
    /// `docker-cli-plugin-metadata`: docker asking what this plugin is.
    PluginMetadata,
    Completions(clap_complete::Shell),
}

/// The Docker CLI calls a plugin as `docker-userns userns ARGS...` and
/// asks `docker-userns docker-cli-plugin-metadata` what it is.
pub const PLUGIN_NAME: &str = "userns";
pub const PLUGIN_METADATA_COMMAND: &str = "docker-cli-plugin-metadata";

/// Parses the process arguments, accepting the Docker CLI plugin protocol.
pub fn parse_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Invocation {
    let mut args: Vec<std::ffi::OsString> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| a == PLUGIN_METADATA_COMMAND) {
        return Invocation::PluginMetadata;
    }
    if args.get(1).is_some_and(|a| a == PLUGIN_NAME) {
        args.remove(1);
    }
    let cli = Cli::parse_from(args);
    if let CommandArgs::Completions { shell } = cli.command {
        return Invocation::Completions(shell);
    }
    Invocation::Run(Box::new(cli.into_request()))
}

/// The JSON the Docker CLI expects from `docker-cli-plugin-metadata`.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginMetadata {
    schema_version: &'static str,
    vendor: &'static str,
    version: &'static str,
    short_description: &'static str,
}

pub fn plugin_metadata() -> PluginMetadata {
    PluginMetadata {
        schema_version: "0.1.0",
        vendor: "docker-userns",
        version: env!("CARGO_PKG_VERSION"),
        short_description: "User-namespace remapping: enable, check, disable",
    }
}

/// Writes a completion script generated from this very CLI definition.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "docker-userns", out);
}

#[derive(Debug, Args)]
struct EnableArgs {
    /// Remap user: default (= dockremap, created if missing), NAME,
    /// NAME:GROUP, UID or UID:GID.
    #[arg(long, value_name = "SPEC", default_value = "default")]
    user: String,
    /// Number of subordinate ids (at least 65536).
    #[arg(long, value_name = "N", default_value_t = MIN_COUNT, value_parser = clap::value_parser!(u64).range(1..=u32::MAX as u64))]
    count: u64,
    #[command(flatten)]
    restart: RestartArgs,
    /// Carry existing images, containers and volumes into the remapped
    /// root (by rename and id shift; dockerd is stopped meanwhile).
    #[arg(long, conflicts_with = "no_restart")]
    migrate: bool,
}

#[derive(Debug, Args)]
struct DisableArgs {
    /// Also remove the dockremap account and its subuid/subgid ranges.
    #[arg(long)]
    purge: bool,
    #[command(flatten)]
    restart: RestartArgs,
    /// Carry images, containers and volumes back to the non-remapped root.
    #[arg(long, conflicts_with = "no_restart")]
    migrate: bool,
}

/// What `enable` and `disable` share: whether and how to restart dockerd.
#[derive(Debug, Args)]
struct RestartArgs {
    /// Change the files only; do not restart dockerd.
    #[arg(long)]
    no_restart: bool,
    /// Restart even though running containers will stop.
    #[arg(long)]
    yes: bool,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Also check that a container user can traverse, read and write PATH
    /// (a bind-mount source); repeatable.
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<PathBuf>,
    // The help is an attribute, not a doc comment: rustdoc would read
    // `[:GID]` as a link.
    #[arg(long = "as", value_name = "UID[:GID]", value_parser = parse_inside_ids, default_value = "0",
          help = "The container user for --path: UID[:GID] inside the container")]
    as_ids: InsideIds,
}

#[derive(Debug, Args)]
struct GrantArgs {
    /// The bind-mount source to open up.
    path: PathBuf,
    // A help attribute for the reason given at CheckArgs::as_ids.
    #[arg(long = "as", value_name = "UID[:GID]", value_parser = parse_inside_ids, default_value = "0",
          help = "The container user: UID[:GID] inside the container")]
    as_ids: InsideIds,
    /// Grant with ACL entries instead of chown and chmod o+x.
    #[arg(long)]
    acl: bool,
}

#[derive(Debug, Args)]
struct ShiftArgs {
    /// The tree to shift (the walk stays on its filesystem).
    dir: PathBuf,
    /// uids FROM..FROM+COUNT become TO..TO+COUNT; repeatable.
    #[arg(long = "uid-map", value_name = "FROM:TO:COUNT")]
    uid_maps: Vec<String>,
    /// gids FROM..FROM+COUNT become TO..TO+COUNT; repeatable.
    #[arg(long = "gid-map", value_name = "FROM:TO:COUNT")]
    gid_maps: Vec<String>,
}

fn parse_inside_ids(text: &str) -> Result<InsideIds, String> {
    let number = |part: &str| {
        part.parse::<u32>()
            .map_err(|_| format!("{part:?} is not a numeric id"))
    };
    match text.split_once(':') {
        Some((uid, gid)) => Ok(InsideIds {
            uid: number(uid)?,
            gid: number(gid)?,
        }),
        None => {
            let uid = number(text)?;
            Ok(InsideIds { uid, gid: uid })
        }
    }
}

impl Cli {
    pub fn into_request(self) -> Request {
        let g = self.global;
        Request {
            global: Global {
                root: g.root,
                config: g.config,
                data_root: g.data_root,
                format: match g.format {
                    FormatArg::Human => Format::Human,
                    FormatArg::Json => Format::Json,
                },
                dry_run: g.dry_run,
                diff: g.diff,
                quiet: g.quiet,
                verbose: g.verbose,
                socket: g.socket,
                restart_command: g.restart_command,
                stop_command: g.stop_command,
                timeout: std::time::Duration::from_secs(g.timeout),
            },
            command: match self.command {
                CommandArgs::Enable(e) => Command::Enable(EnableRequest {
                    user: e.user,
                    count: e.count,
                    restart: !e.restart.no_restart,
                    yes: e.restart.yes,
                    migrate: e.migrate,
                }),
                CommandArgs::Disable(d) => Command::Disable(DisableRequest {
                    purge: d.purge,
                    restart: !d.restart.no_restart,
                    yes: d.restart.yes,
                    migrate: d.migrate,
                }),
                CommandArgs::Check(c) => Command::Check(CheckRequest {
                    paths: c.paths,
                    as_ids: c.as_ids,
                }),
                CommandArgs::Grant(g) => Command::Grant(GrantRequest {
                    path: g.path,
                    as_ids: g.as_ids,
                    acl: g.acl,
                }),
                CommandArgs::Shift(s) => Command::Shift(ShiftRequest {
                    dir: s.dir,
                    uid_maps: s.uid_maps,
                    gid_maps: s.gid_maps,
                }),
                CommandArgs::Completions { .. } => unreachable!("handled by parse_args"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_are_accepted_after_the_command() {
        let cli = Cli::try_parse_from([
            "docker-userns",
            "enable",
            "--root",
            "/img",
            "--dry-run",
            "--user",
            "a:b",
        ])
        .unwrap();
        let request = cli.into_request();
        assert_eq!(request.global.root, PathBuf::from("/img"));
        assert!(request.global.dry_run);
        let Command::Enable(e) = request.command else {
            panic!("enable expected");
        };
        assert_eq!((e.user.as_str(), e.count), ("a:b", 65536));
    }
}
