//! The `cassfs` binary: parse the command line, then mount or run a subcommand.

use std::process::ExitCode;

use cassfs::cli::{self, Command};

fn main() -> ExitCode {
    let cli = cli::parse();
    let result = match cli.command {
        Some(Command::Schema(args)) => cassfs::run_schema(&args).map(|()| 0),
        Some(Command::Docker(args)) => cassfs::docker::run(&args).map(|()| 0),
        Some(cmd) => cassfs::admin::run(cmd),
        None => cassfs::run_mount(&cli.mount).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            // One line, whatever the message carries.
            let line = msg.split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("cassfs: {line}");
            ExitCode::FAILURE
        }
    }
}
