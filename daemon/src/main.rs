//! `atelet`: the node daemon. See `atelet --help` and README.md.

use std::process::ExitCode;

use atelet::config::{Config, Flags};
use clap::Parser;

fn main() -> ExitCode {
    // SAFETY: first thing in main: no other thread exists yet.
    let activated = match unsafe { atelet::systemd::take_activated_socket() } {
        Ok(a) => a,
        Err(e) => {
            eprintln!("atelet: {e}");
            return ExitCode::FAILURE;
        }
    };
    let flags = Flags::parse();
    let config = match Config::resolve(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("atelet: {e}");
            return ExitCode::from(2);
        }
    };
    atelet::daemon::init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("atelet")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("atelet: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(atelet::daemon::run(config, activated)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "atelet failed");
            eprintln!("atelet: {e:#}");
            ExitCode::FAILURE
        }
    }
}
