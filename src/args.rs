//! Reading the process's arguments: the mount helper's form
//! (`crate::helper_args`), Go-style flags (`crate::cli::normalize_args`),
//! the config file and variables (`crate::config`), then clap.

use std::ffi::OsString;

use clap::Parser;

use crate::cli::Cli;

/// Parses the command line (also the mount helper's form, see
/// `crate::helper_args`), then fills unset flags from the environment and
/// the config file (`crate::config`). Help and version go to stdout (exit
/// 0); an unknown flag prints the usage (exit 2); a bad value, option or
/// config file is one line (exit 2).
pub fn parse() -> Cli {
    use clap::error::ErrorKind;
    let fail = |msg: &dyn std::fmt::Display| -> ! {
        eprintln!("cassfs: {msg}");
        std::process::exit(2)
    };
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    let helper = crate::helper_args::translate(&argv).unwrap_or_else(|e| fail(&e));
    if let Some(h) = &helper {
        argv.truncate(1);
        argv.extend(h.args.iter().cloned());
    }
    let args = crate::config::apply(crate::cli::normalize_args(argv)).unwrap_or_else(|e| fail(&e));
    match Cli::try_parse_from(args) {
        Ok(mut cli) => {
            if let Some(h) = helper {
                cli.mount.kernel_flags = h.flags;
                cli.daemonize = !h.foreground;
            }
            cli
        }
        Err(e) => match e.kind() {
            ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
                let text = e.to_string();
                let line = text.lines().next().unwrap_or("invalid value");
                eprintln!("cassfs: {}", line.trim_start_matches("error: "));
                std::process::exit(2);
            }
            _ => e.exit(),
        },
    }
}
