//! `tsforge`: the thin binary. It parses the command line and dispatches to the runtime
//! (runner commands), the builder and the monitor; no logic of its own.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use tsforge_runtime::cli::{self as runner, Exit, EXIT_CODES_HELP};

/// Bare-metal OS deployment: run ConfigMgr/MDT task sequences, build boot media.
#[derive(Debug, Parser)]
#[command(name = "tsforge", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    #[command(flatten)]
    Runner(runner::RunnerCmd),
    /// Build boot media: usb, iso, pxe or dir, from the winpe or linux template
    #[command(subcommand)]
    Build(tsforge_builder::cli::BuildCmd),
    /// Try a medium in a virtual machine (QEMU) with blank disks before a real machine
    Try(tsforge_builder::try_cmd::TryCmd),
    /// Serve the fleet monitor: runners report their events, a live page, an API and /metrics
    Monitor(tsforge_monitor::cli::MonitorCmd),
    /// Carry one forwarded guest connection to ADDR (run by QEMU for `tsforge try --forward`)
    #[command(hide = true)]
    QemuRelay { addr: std::net::SocketAddr },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Error
            } else {
                Exit::Ok
            }
            .into();
        }
    };
    let result = match cli.cmd {
        Cmd::Runner(c) => runner::dispatch(c),
        Cmd::Build(c) => tsforge_builder::cli::dispatch(c),
        Cmd::Try(c) => tsforge_builder::try_cmd::dispatch(c),
        Cmd::Monitor(c) => tsforge_monitor::cli::run(c).map(|()| Exit::Ok),
        Cmd::QemuRelay { addr } => tsforge_builder::qemu::relay(addr),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("tsforge: error: {e:#}");
            Exit::Error.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }
}
