//! The `cassfs` binary: parse the command line, then mount or run a subcommand.

use std::process::ExitCode;

use clap::Parser;

use cassfs::cli::{normalize_args, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_args(std::env::args_os()));
    let result = match cli.command {
        Some(Command::Schema(args)) => cassfs::run_schema(&args),
        None => cassfs::run_mount(&cli.mount),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("cassfs: {msg}");
            ExitCode::FAILURE
        }
    }
}
