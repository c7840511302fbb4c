//! The `cassfs` binary: parse the command line, then mount or run a subcommand.

use std::process::ExitCode;
use std::time::Duration;

use cassfs::cli::Command;

/// How long the mount helper waits for the detached daemon to mount: a
/// minute, plus three request timeouts (connecting, the volume, the session).
fn mount_limit(timeout_secs: f64) -> Duration {
    Duration::from_secs_f64(60.0 + 3.0 * timeout_secs)
}

fn main() -> ExitCode {
    let cli = cassfs::args::parse();
    if cli.daemonize {
        // Before anything starts a thread: the parent exits in there.
        if let Err(e) = cassfs::daemon::detach(mount_limit(cli.mount.timeout)) {
            eprintln!("cassfs: {e}");
            return ExitCode::FAILURE;
        }
    }
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
            if !cassfs::daemon::report_failure(&line) {
                eprintln!("cassfs: {line}");
            }
            ExitCode::FAILURE
        }
    }
}
