//! The `cassfs` binary: parse the command line, then mount or run a subcommand.

use std::process::ExitCode;

use cassfs::cli::{self, Command};

fn main() -> ExitCode {
    let cli = cli::parse();
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
