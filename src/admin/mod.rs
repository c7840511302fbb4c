//! The operator commands: `status`, `volumes` (`du`), `gc`, `fsck`,
//! `clone`, `rm-volume` and `quota`. Each works on a whole keyspace through a
//! [`Keyspace`], beside live mounts, and prints a one-line summary (or JSON
//! with `--json`); commands that walk volumes show a progress line on a
//! terminal. Nothing here runs inside a mount.

pub mod clone;
pub mod fsck;
pub mod gc;
pub mod quota;
pub mod rmvol;
pub mod snapshot;
pub mod status;
pub mod usage;

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{Command, KeyspaceArgs, ScopeArgs};
use crate::store::{Keyspace, StoreConfig};

/// A failed command: the one line it prints.
pub type CmdResult<T> = Result<T, String>;

/// Runs an operator command; its exit status.
pub fn run(cmd: Command) -> CmdResult<u8> {
    let secs = Duration::from_secs_f64;
    match cmd {
        Command::Schema(_) | Command::Docker(_) => {
            Err("schema and docker are not operator commands".into())
        }
        Command::Status(a) => status::run(&connect(&a.ks)?, &a.scope.into(), a.ks.json).map(|()| 0),
        Command::Volumes(a) => {
            let scope = Scope {
                owner: a.owner,
                environment: None,
            };
            usage::run(&connect(&a.ks)?, &scope, a.ks.json).map(|()| 0)
        }
        Command::Gc(a) => {
            let opts = gc::GcOptions {
                scope: Scope {
                    owner: a.owner,
                    environment: None,
                },
                dry_run: a.dry_run,
                grace: secs(a.grace),
            };
            gc::run(&connect(&a.ks)?, &opts, a.ks.json).map(|()| 0)
        }
        Command::Fsck(a) => {
            let opts = fsck::FsckOptions {
                scope: a.scope.into(),
                repair: a.repair,
                grace: secs(a.grace),
            };
            fsck::run(&connect(&a.ks)?, &opts, a.ks.json)
        }
        Command::Clone(a) => {
            let opts = clone::CloneOptions {
                owner: a.owner,
                from: a.from,
                to: a.to,
                force: a.force,
            };
            clone::run(&connect(&a.ks)?, &opts, a.ks.json).map(|()| 0)
        }
        Command::RmVolume(a) => {
            let key = (a.owner, a.environment);
            rmvol::run(&connect(&a.ks)?, &key, a.force, a.ks.json).map(|()| 0)
        }
        Command::Quota(a) => quota::run(a),
    }
}

/// Connects to the keyspace named on the command line.
pub fn connect(args: &KeyspaceArgs) -> CmdResult<Keyspace> {
    let mut cfg = StoreConfig::new(&args.server, &args.keyspace);
    cfg.request_timeout = Duration::from_secs_f64(args.timeout);
    cfg.connect_timeout = Duration::from_secs_f64(args.timeout.min(8.0));
    args.conn.apply(&mut cfg)?;
    Keyspace::open(&cfg).map_err(|e| e.to_string())
}

/// A volume: (owner, environment).
pub type VolumeKey = (i64, String);

/// Which volumes a command looks at.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub owner: Option<i64>,
    pub environment: Option<String>,
}

impl From<ScopeArgs> for Scope {
    fn from(a: ScopeArgs) -> Scope {
        Scope {
            owner: a.owner,
            environment: a.environment,
        }
    }
}

impl Scope {
    pub fn contains(&self, owner: i64, environment: &str) -> bool {
        self.owner.is_none_or(|o| o == owner)
            && self.environment.as_deref().is_none_or(|e| e == environment)
    }

    /// Whether blocks of `owner` (shared by its environments) are in scope.
    pub fn has_owner(&self, owner: i64) -> bool {
        self.owner.is_none_or(|o| o == owner)
    }
}

/// Rows walked so far, shown on stderr when it is a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(what: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new_spinner();
            let style = ProgressStyle::with_template("{spinner} {msg}: {pos} rows ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            b.set_style(style);
            b.set_message(what.to_string());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress { bar }
    }

    pub fn stage(&self, what: &str) {
        if let Some(b) = &self.bar {
            b.set_message(what.to_string());
        }
    }

    pub fn tick(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    pub fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done();
    }
}

/// Prints a command's result: its JSON document, or its text.
pub fn print(json: bool, doc: &serde_json::Value, text: &str) {
    if json {
        println!("{doc}");
    } else {
        println!("{text}");
    }
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    crate::store::now_ns()
}

/// A rate, per second, for summaries.
pub fn per_sec(n: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}
