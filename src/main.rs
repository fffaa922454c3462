//! The `cairn` binary: parses configuration, wires the parts together, runs a subcommand.
//! Wiring only — behaviour lives in the crates.

mod cli;
mod config;
mod serve;
mod stores;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::config::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(&cli.stores, *args).await,
            Command::Migrate => cli::migrate(&cli.stores).await,
            Command::Tenants(cmd) => cli::tenants(&cli.stores, cmd).await,
            Command::Users(cmd) => cli::users(&cli.stores, cmd).await,
            Command::Keys(cmd) => cli::keys(&cli.stores, cmd).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(args: &config::LogArgs) {
    let filter = EnvFilter::try_new(&args.log).unwrap_or_else(|_| {
        eprintln!("warning: CAIRN_LOG {:?} is not a valid filter; using \"info\"", args.log);
        EnvFilter::new("info")
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if args.log_format == "json" {
        builder.json().flatten_event(true).with_current_span(false).init();
    } else {
        builder.init();
    }
}
