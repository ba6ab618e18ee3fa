//! `atectl`: the command-line client of atelet. See `atectl --help`.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod cli;
mod commands;
mod exec;
mod failure;
mod output;
mod progress;
mod request;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::failure::{Failure, EXIT_OTHER, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print to stdout and succeed; usage errors
        // print to stderr and exit with EXIT_USAGE.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    if let Command::Completion { shell } = cli.command {
        // Into a buffer first: clap_complete panics on a failed write.
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "atectl", &mut script);
        return match std::io::stdout().write_all(&script) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("atectl: writing to stdout: {e}");
                ExitCode::from(EXIT_OTHER)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("atectl: starting the async runtime: {e}");
            return ExitCode::from(EXIT_OTHER);
        }
    };
    let client = atectl::Client::new(&cli.socket);
    match runtime.block_on(commands::run(&client, cli.command)) {
        Ok(()) | Err(Failure::OutputClosed) => ExitCode::SUCCESS,
        // The remote command's own code, with nothing more to say.
        Err(Failure::Exited(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("atectl: {e}");
            if let Some(hint) = commands::hint(&e) {
                eprintln!("{hint}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
