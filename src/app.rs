//! The command line program: parse the arguments, run the command, print
//! its outcome and map it to an exit status.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{self, Invocation};
use crate::commands::{check, disable, enable, grant, shift};
use crate::error::Error;
use crate::host::{Host, SystemRunner};
use crate::report::{self, Status};
use crate::request::{Command, Format, Global, Request};

pub fn main() -> ExitCode {
    let request = match cli::parse_args(std::env::args_os()) {
        Invocation::Run(request) => request,
        Invocation::PluginMetadata => {
            return exit(Status::Ok, report::print_json(&cli::plugin_metadata()));
        }
        Invocation::Completions(shell) => {
            // Generated in memory: the generator panics on a failed write.
            let mut script = Vec::new();
            cli::write_completions(shell, &mut script);
            return exit(Status::Ok, report::print(script));
        }
    };
    let json = request.global.format == Format::Json;
    let status = match run(&request) {
        Ok(status) => status,
        Err(error) => {
            // Nowhere left to report a failure to report the error.
            if json {
                let _ = report::print_json(&error.view(command_name(&request)));
            } else {
                let message = error.message();
                let _ = writeln!(std::io::stderr(), "docker-userns: error: {message}");
            }
            error.exit_status()
        }
    };
    ExitCode::from(status as u8)
}

/// The exit status once the output is written: `status`, unless stdout
/// failed for another reason than a reader that went away.
fn exit(status: Status, written: std::io::Result<()>) -> ExitCode {
    let status = match written {
        Ok(()) => status,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "docker-userns: error: writing to stdout: {e}"
            );
            Status::Error
        }
    };
    ExitCode::from(status as u8)
}

fn command_name(request: &Request) -> &'static str {
    match request.command {
        Command::Enable(_) => "enable",
        Command::Disable(_) => "disable",
        Command::Check(_) => "check",
        Command::Grant(_) => "grant",
        Command::Shift(_) => "shift",
    }
}

fn run(request: &Request) -> Result<Status, Error> {
    let g = &request.global;
    let read_only = g.dry_run || matches!(request.command, Command::Check(_));
    if !read_only && !rustix::process::geteuid().is_root() {
        return Err(Error::NeedsRoot);
    }
    let host = Host::open(&g.root, Box::new(SystemRunner)).map_err(|source| Error::Root {
        root: g.root.clone(),
        source,
    })?;
    match &request.command {
        Command::Enable(enable) => {
            let outcome = enable::run(&host, g, enable)?;
            emit(
                g,
                || outcome.view(g.dry_run, g.diff),
                || outcome.render_human(g.dry_run, g.diff, g.verbose),
            )?;
            Ok(outcome.status(g.dry_run))
        }
        Command::Disable(disable) => {
            let outcome = disable::run(&host, g, disable)?;
            emit(
                g,
                || outcome.view(g.dry_run, g.diff),
                || outcome.render_human(g.dry_run, g.diff, g.verbose),
            )?;
            Ok(outcome.status(g.dry_run))
        }
        Command::Grant(grant) => {
            let outcome = grant::run(&host, g, grant)?;
            emit(
                g,
                || outcome.view(g.dry_run, g.diff),
                || outcome.render_human(g.dry_run, g.diff),
            )?;
            Ok(outcome.status(g.dry_run))
        }
        Command::Shift(request) => {
            let report = shift::run(g, request)?;
            emit(g, || report.view(), || report.human())?;
            Ok(report.status())
        }
        Command::Check(check) => {
            let checks = check::run(&host, g, check);
            let view = check::CheckView::new(&checks);
            // -q keeps the findings: only what is not ok is listed.
            match g.format {
                Format::Json => report::print_json(&view),
                Format::Human => report::print(view.render_human(g.quiet)),
            }
            .map_err(Error::Output)?;
            Ok(view.status())
        }
    }
}

/// Prints a result in the requested format (nothing for human with -q).
fn emit<V: serde::Serialize>(
    g: &Global,
    json: impl FnOnce() -> V,
    human: impl FnOnce() -> String,
) -> Result<(), Error> {
    match g.format {
        Format::Json => report::print_json(&json()),
        Format::Human if g.quiet => Ok(()),
        Format::Human => report::print(human()),
    }
    .map_err(Error::Output)
}
