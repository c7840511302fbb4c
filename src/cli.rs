//! The command line: flags (Go style `-mount /x` and GNU style `--mount /x`),
//! their validation, and the subcommands (`schema` and the operator
//! commands of `crate::admin`).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::store::Consistency;

pub use crate::version::VERSION;

#[derive(Parser, Debug)]
#[command(
    name = "cassfs",
    version = VERSION,
    about = "Mount a CassFS volume (owner, environment) stored in Apache Cassandra.",
    long_about = "Mount a CassFS volume (owner, environment) stored in Apache Cassandra.\n\n\
        cassfs [options] mounts one volume and stays in the foreground until it is \
        unmounted (fusermount3 -u MOUNTPOINT) or receives SIGTERM/SIGINT.\n\
        Flags may be written Go style (-mount /opt, -owner=7) or GNU style (--mount /opt).\n\
        cassfs SOURCE MOUNTPOINT [-o OPTIONS] [-f] is the form mount -t fuse.cassfs and fstab \
        run (SOURCE: [KEYSPACE:]OWNER.ENVIRONMENT[@SERVERS]); it detaches once mounted.\n\
        Unset flags come from CASSFS_<FLAG> variables, then from the config file \
        (--config, else ./cassfs.yaml, ~/.cassfs/cassfs.yaml, /etc/cassfs/cassfs.yaml).",
    args_conflicts_with_subcommands = true,
    allow_negative_numbers = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// YAML file of settings (default: the first of ./cassfs.yaml,
    /// $HOME/.cassfs/cassfs.yaml, /etc/cassfs/cassfs.yaml that exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub mount: MountArgs,
    /// Detach once mounted (the mount helper's form without -f).
    #[arg(skip)]
    pub daemonize: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the keyspace and tables CassFS needs (idempotent).
    Schema(SchemaArgs),
    /// Volumes and their live sessions (host, pid, mount point, version, heartbeat).
    Status(StatusArgs),
    /// Every volume with its files, directories, bytes, and bytes shared
    /// with the owner's other environments.
    #[command(alias = "du")]
    Volumes(VolumesArgs),
    /// Remove content blocks, block references and inodes nothing uses.
    Gc(GcArgs),
    /// Check that volumes' rows form a filesystem (exit 0 clean, 1 all
    /// problems repaired, 4 problems left).
    Fsck(FsckArgs),
    /// Copy a volume's tree into a new environment of the same owner,
    /// sharing its content blocks.
    Clone(CloneArgs),
    /// Delete a volume (its content blocks are left to gc).
    #[command(name = "rm-volume")]
    RmVolume(RmVolumeArgs),
    /// Serve the Docker volume plugin (volumes named OWNER.ENVIRONMENT).
    Docker(DockerArgs),
    /// Set, show or remove a volume's quota (bytes and inodes).
    Quota(QuotaArgs),
}

/// How to log in to Cassandra and reach it: shared by the mount, `schema`
/// and the operator commands.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnArgs {
    /// Cassandra role to log in as (PasswordAuthenticator); the password
    /// comes from -password_file or the CASSFS_PASSWORD environment variable.
    #[arg(long)]
    pub username: Option<String>,
    /// File whose first line is the password of -username.
    #[arg(long = "password_file", alias = "password-file")]
    pub password_file: Option<PathBuf>,
    /// Connect to Cassandra with TLS.
    #[arg(long, num_args = 0..=1, default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub tls: bool,
    /// PEM file of the CAs that verify the servers (default: the system's).
    #[arg(long = "tls_ca", alias = "tls-ca")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate, for servers that require one (mutual TLS).
    #[arg(long = "tls_cert", alias = "tls-cert")]
    pub tls_cert: Option<PathBuf>,
    /// PEM key of -tls_cert.
    #[arg(long = "tls_key", alias = "tls-key")]
    pub tls_key: Option<PathBuf>,
    /// Prefer this datacenter's nodes; LOCAL_QUORUM and LOCAL_SERIAL then
    /// mean this datacenter.
    #[arg(long)]
    pub datacenter: Option<String>,
}

/// The environment variable holding the password of -username.
pub const PASSWORD_ENV: &str = "CASSFS_PASSWORD";

impl ConnArgs {
    /// Adds the login, TLS and datacenter to a store configuration: a
    /// one-line error for a missing or unreadable password or a TLS file
    /// given without -tls.
    pub fn apply(&self, cfg: &mut crate::store::StoreConfig) -> Result<(), String> {
        if let Some(username) = &self.username {
            let password = match &self.password_file {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| format!("password file {}: {e}", path.display()))?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
                None => std::env::var(PASSWORD_ENV)
                    .ok()
                    .or_else(file_password)
                    .ok_or_else(|| {
                        format!(
                            "-username {username} needs -password_file PATH, {PASSWORD_ENV} \
                             or a password in the config file"
                        )
                    })?,
            };
            cfg.credentials = Some(crate::store::Credentials {
                username: username.clone(),
                password,
            });
        } else if self.password_file.is_some() {
            return Err("-password_file needs -username".into());
        } else if file_password().is_some() {
            return Err("the config file's password needs username".into());
        }
        let files = self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_key.is_some();
        if self.tls {
            cfg.tls = Some(crate::store::TlsFiles {
                ca: self.tls_ca.clone(),
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
            });
        } else if files {
            return Err("-tls_ca, -tls_cert and -tls_key need -tls".into());
        }
        cfg.datacenter = self.datacenter.clone();
        Ok(())
    }
}

/// Where the keyspace is, for the operator commands.
#[derive(Args, Debug, Clone)]
pub struct KeyspaceArgs {
    /// Cassandra contact points: comma-separated host or host:port.
    #[arg(long, default_value = "localhost")]
    pub server: String,
    /// Keyspace holding the CassFS tables.
    #[arg(long, default_value = "cassfs")]
    pub keyspace: String,
    /// Seconds before a Cassandra request fails.
    #[arg(long, default_value = "10", value_parser = timeout_secs)]
    pub timeout: f64,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Which volumes an operator command looks at.
#[derive(Args, Debug, Clone)]
pub struct ScopeArgs {
    /// Only the volumes of this owner.
    #[arg(long)]
    pub owner: Option<i64>,
    /// Only the volumes of this environment.
    #[arg(long, value_parser = environment)]
    pub environment: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    pub ks: KeyspaceArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
}

#[derive(Args, Debug, Clone)]
pub struct VolumesArgs {
    #[command(flatten)]
    pub ks: KeyspaceArgs,
    /// Only the volumes of this owner.
    #[arg(long)]
    pub owner: Option<i64>,
}

#[derive(Args, Debug, Clone)]
pub struct GcArgs {
    #[command(flatten)]
    pub ks: KeyspaceArgs,
    /// Only this owner's volumes and blocks.
    #[arg(long)]
    pub owner: Option<i64>,
    /// Report what would be removed, remove nothing.
    #[arg(long = "dry-run", alias = "dry_run")]
    pub dry_run: bool,
    /// Seconds a row must be left unchanged before it is removed; must be
    /// longer than the longest commit (a large upload).
    #[arg(long, default_value = "3600", value_parser = secs)]
    pub grace: f64,
}

#[derive(Args, Debug, Clone)]
pub struct FsckArgs {
    #[command(flatten)]
    pub ks: KeyspaceArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Fix what can be fixed without guessing, and say what was fixed.
    #[arg(long)]
    pub repair: bool,
    /// Seconds an inode with no name is left alone before --repair deletes it.
    #[arg(long, default_value = "3600", value_parser = secs)]
    pub grace: f64,
}

#[derive(Args, Debug, Clone)]
pub struct CloneArgs {
    #[command(flatten)]
    pub ks: KeyspaceArgs,
    /// Owner of both environments (content blocks are shared per owner).
    #[arg(long)]
    pub owner: i64,
    /// Environment to copy.
    #[arg(long, value_parser = environment)]
    pub from: String,
    /// Environment to create (must not exist, or be empty).
    #[arg(long, value_parser = environment)]
    pub to: String,
    /// Replace a target that has files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RmVolumeArgs {
    #[command(flatten)]
    pub ks: KeyspaceArgs,
    #[arg(long)]
    pub owner: i64,
    #[arg(long, value_parser = environment)]
    pub environment: String,
    /// Remove it even while mounts of it are live.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SchemaArgs {
    /// Cassandra contact points: comma-separated host or host:port.
    #[arg(long, default_value = "localhost")]
    pub server: String,
    /// Keyspace to create.
    #[arg(long, default_value = "cassfs")]
    pub keyspace: String,
    /// Replication factor of the keyspace (SimpleStrategy).
    #[arg(
        long = "replication-factor",
        alias = "replication_factor",
        default_value_t = 1
    )]
    pub replication_factor: u32,
    /// NetworkTopologyStrategy instead: replicas per datacenter, e.g.
    /// `dc1:3,dc2:3` (the datacenter names of the nodes' snitch).
    #[arg(long, value_parser = datacenters, conflicts_with = "replication_factor")]
    pub datacenters: Option<Datacenters>,
    /// Seconds before a Cassandra request fails.
    #[arg(long, default_value = "10", value_parser = timeout_secs)]
    pub timeout: f64,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Args, Debug, Clone)]
pub struct MountArgs {
    /// Debug logging: also the errors that are part of normal operation
    /// (lookups of missing names, EEXIST, ENOTEMPTY...).
    #[arg(long, num_args = 0..=1, default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub debug: bool,
    /// Seconds the kernel caches names and attributes while the change feed
    /// is followed (other mounts' changes are pushed before that); at most 1
    /// while it is not.
    #[arg(long = "entry_ttl", alias = "entry-ttl", default_value = "60", value_parser = secs)]
    pub entry_ttl: f64,
    /// Seconds the kernel caches "no such file" answers, like entry_ttl.
    #[arg(long = "negative_ttl", alias = "negative-ttl", default_value = "60", value_parser = secs)]
    pub negative_ttl: f64,
    /// Seconds the local caches of metadata are trusted at most: the bound on
    /// staleness when the change feed cannot be followed (0: always check).
    #[arg(long = "fcache_ttl", alias = "fcache-ttl", default_value = "60", value_parser = secs)]
    pub fcache_ttl: f64,
    /// Seconds between two reads of the volume's change feed (0: do not
    /// follow it; other mounts' changes then show when caches expire).
    #[arg(long = "feed_interval", alias = "feed-interval", default_value = "0.25",
          value_parser = feed_secs)]
    pub feed_interval: f64,
    /// Environment of the volume (with owner, names the volume).
    #[arg(long, default_value = "prod", value_parser = environment)]
    pub environment: String,
    /// Cassandra keyspace holding the CassFS tables.
    #[arg(long, default_value = "cassfs")]
    pub keyspace: String,
    /// Directory to mount the volume on.
    #[arg(long, default_value = "./")]
    pub mount: PathBuf,
    /// Owner id of the volume (an integer).
    #[arg(long, default_value_t = 1)]
    pub owner: i64,
    /// Cassandra contact points: comma-separated host or host:port (port 9042 by default).
    #[arg(long, default_value = "localhost")]
    pub server: String,
    /// Worker threads serving filesystem requests.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: u32,
    /// Threads reading requests from the kernel (each with its own
    /// /dev/fuse descriptor past the first).
    #[arg(long = "fuse_threads", alias = "fuse-threads", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    pub fuse_threads: u32,
    /// CQL consistency level of reads and writes.
    #[arg(long, default_value = "LOCAL_QUORUM")]
    pub consistency: Consistency,
    /// Seconds before a Cassandra request fails; the call then returns EIO.
    #[arg(long, default_value = "10", value_parser = timeout_secs)]
    pub timeout: f64,
    /// Bytes of file content kept in memory (suffixes K, M, G allowed).
    #[arg(long = "cache_size", alias = "cache-size", default_value = "256M", value_parser = size)]
    pub cache_size: u64,
    /// Let users other than the one who mounted use the mount (containers).
    #[arg(long = "allow_other", alias = "allow-other", num_args = 0..=1,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_other: bool,
    /// Mount read-only.
    #[arg(long = "read_only", alias = "read-only", num_args = 0..=1,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub read_only: bool,
    /// Seconds a lock outlives a mount that died: each mount renews its
    /// locks' lease in Cassandra every quarter of it (3 to 3600).
    #[arg(long = "lock_lease", alias = "lock-lease", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(3..=3600))]
    pub lock_lease: u32,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Serve Prometheus metrics on GET http://ADDR/metrics (e.g.
    /// 127.0.0.1:9567; port 0 picks a free port). Off by default.
    #[arg(long, value_name = "ADDR", value_parser = socket_addr)]
    pub metrics: Option<SocketAddr>,
    /// Directory of the on-disk block cache, shared by every volume of the
    /// owner and kept across restarts (e.g. /var/cache/cassfs). Off by default.
    #[arg(long = "cache_dir", alias = "cache-dir", value_name = "DIR", value_parser = cache_dir)]
    pub cache_dir: Option<PathBuf>,
    /// Bytes of blocks the on-disk cache keeps (suffixes K, M, G, T; at least 1M).
    #[arg(long = "cache_dir_size", alias = "cache-dir-size", default_value = "10G",
          value_parser = cache_dir_size)]
    pub cache_dir_size: u64,
    /// dev/suid/exec and their negations, from the mount helper's options.
    #[arg(skip)]
    pub kernel_flags: crate::kernel_flags::KernelFlags,
}

/// `cassfs quota`: its action and the volume.
#[derive(Args, Debug, Clone)]
pub struct QuotaArgs {
    #[command(subcommand)]
    pub action: QuotaAction,
}

#[derive(Subcommand, Debug, Clone)]
pub enum QuotaAction {
    /// Set a volume's quota; a limit not given is left as it is, `none`
    /// removes it.
    Set(SetArgs),
    /// Show a volume's quota and usage.
    Get(VolumeArgs),
    /// Remove a volume's quota.
    Rm(VolumeArgs),
}

#[derive(Args, Debug, Clone)]
pub struct VolumeArgs {
    /// The volume: OWNER.ENVIRONMENT, e.g. 7.prod.
    #[arg(value_parser = volume)]
    pub volume: (i64, String),
    #[command(flatten)]
    pub ks: KeyspaceArgs,
}

#[derive(Args, Debug, Clone)]
pub struct SetArgs {
    #[command(flatten)]
    pub vol: VolumeArgs,
    /// Bytes of file content (suffixes K, M, G, T; `none`: no limit).
    #[arg(long, value_parser = bytes_limit)]
    pub bytes: Option<Limit>,
    /// Files, directories, symlinks and other inodes (`none`: no limit).
    #[arg(long, value_parser = inodes_limit)]
    pub inodes: Option<Limit>,
}

/// One limit from the command line (`None`: no limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(pub Option<u64>);

/// The largest limit accepted (what a bigint column holds).
const MAX_LIMIT: u64 = i64::MAX as u64;

fn limit(s: &str, parse: fn(&str) -> Result<u64, String>) -> Result<Limit, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(Limit(None));
    }
    match parse(s)? {
        0 => Err(format!(
            "'{s}': a limit is at least 1 (none, or cassfs quota rm, removes it)"
        )),
        n if n > MAX_LIMIT => Err(format!("'{s}' is too large")),
        n => Ok(Limit(Some(n))),
    }
}

fn bytes_limit(s: &str) -> Result<Limit, String> {
    limit(s, size)
}

fn inodes_limit(s: &str) -> Result<Limit, String> {
    limit(s, |s| {
        s.trim()
            .parse()
            .map_err(|_| format!("'{s}' is not a number of inodes"))
    })
}

/// `7.prod` → (7, "prod"); a one-line reason otherwise.
pub fn volume(name: &str) -> Result<(i64, String), String> {
    let bad = || {
        format!("invalid volume name '{name}': expected OWNER.ENVIRONMENT, e.g. 7.prod (owner a non-negative integer, environment 1-64 letters, digits, '-', '_' or '.')")
    };
    let (owner, env) = name.split_once('.').ok_or_else(bad)?;
    if owner.is_empty() || !owner.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let owner = owner.parse::<i64>().map_err(|_| bad())?;
    environment(env).map_err(|_| bad())?;
    Ok((owner, env.to_string()))
}

/// Where dockerd looks for the plugin named `cassfs`.
pub const DOCKER_SOCKET: &str = "/run/docker/plugins/cassfs.sock";
/// Where the plugin keeps its state and mount points.
pub const DOCKER_STATEDIR: &str = "/var/lib/cassfs/docker";

/// `cassfs docker`: the plugin's socket and state, and what every volume's
/// mount starts from.
#[derive(Args, Debug, Clone)]
pub struct DockerArgs {
    /// Unix socket to serve (dockerd finds /run/docker/plugins/NAME.sock as
    /// driver NAME).
    #[arg(long, default_value = DOCKER_SOCKET)]
    pub socket: PathBuf,
    /// Directory of the plugin's state (state.json) and of the volumes'
    /// mount points (volumes/OWNER.ENVIRONMENT).
    #[arg(long, default_value = DOCKER_STATEDIR)]
    pub statedir: PathBuf,
    /// Cassandra contact points: comma-separated host or host:port.
    #[arg(long, default_value = "localhost")]
    pub server: String,
    /// Keyspace holding the CassFS tables.
    #[arg(long, default_value = "cassfs")]
    pub keyspace: String,
    /// Seconds before a Cassandra request fails (a volume's `timeout`
    /// option overrides it).
    #[arg(long, default_value = "10", value_parser = timeout_secs)]
    pub timeout: f64,
    /// Worker threads of each mounted volume (a volume's `workers` option
    /// overrides it).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: u32,
    /// Memory for file content of each mounted volume (a volume's
    /// `cache_size` option overrides it); suffixes K, M, G.
    #[arg(long = "cache_size", alias = "cache-size", default_value = "64M",
          value_parser = size)]
    pub cache_size: u64,
    /// Debug logging.
    #[arg(long, num_args = 0..=1, default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub debug: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// The password of the config file (its `password` key), set once while
/// the command line is read (`crate::config`).
static FILE_PASSWORD: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Records the config file's password, for [`ConnArgs::apply`].
pub fn set_file_password(password: String) {
    let _ = FILE_PASSWORD.set(password);
}

/// The config file's `password`, if it had one.
pub fn file_password() -> Option<String> {
    FILE_PASSWORD.get().cloned()
}

/// Long flag names that may be written with a single dash (Go style).
const LONG_FLAGS: &[&str] = &[
    "debug",
    "entry_ttl",
    "negative_ttl",
    "fcache_ttl",
    "environment",
    "keyspace",
    "mount",
    "owner",
    "server",
    "workers",
    "fuse_threads",
    "feed_interval",
    "consistency",
    "timeout",
    "cache_size",
    "cache_dir",
    "cache_dir_size",
    "allow_other",
    "read_only",
    "lock_lease",
    "metrics",
    "config",
    "replication_factor",
    "replication-factor",
    "datacenters",
    "json",
    "username",
    "password_file",
    "tls",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "datacenter",
    "dry-run",
    "dry_run",
    "grace",
    "repair",
    "from",
    "to",
    "force",
    "socket",
    "statedir",
    "bytes",
    "inodes",
    "help",
    "version",
];

/// Rewrites Go-style single-dash long flags (`-mount`, `-owner=7`) to
/// `--mount`, `--owner=7`. Anything else is left for clap to judge.
pub fn normalize_args<I: IntoIterator<Item = OsString>>(args: I) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rest = false;
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 || rest {
            out.push(a);
            continue;
        }
        if a == "--" {
            rest = true;
            out.push(a);
            continue;
        }
        let converted = a.to_str().and_then(|s| {
            let body = s.strip_prefix('-').filter(|b| !b.starts_with('-'))?;
            let name = body.split('=').next().unwrap_or(body);
            LONG_FLAGS
                .contains(&name)
                .then(|| OsString::from(format!("-{s}")))
        });
        out.push(converted.unwrap_or(a));
    }
    out
}

/// The longest TTL accepted: one year.
pub const MAX_TTL_SECS: f64 = 365.0 * 24.0 * 3600.0;
/// The longest interval between two reads of the change feed.
pub const MAX_FEED_INTERVAL_SECS: f64 = 60.0;
/// The longest request timeout accepted: one hour.
pub const MAX_TIMEOUT_SECS: f64 = 3600.0;

fn secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("'{s}': seconds must be a finite number >= 0"));
    }
    if v > MAX_TTL_SECS {
        return Err(format!("'{s}': at most {MAX_TTL_SECS} seconds (one year)"));
    }
    Ok(v)
}

fn feed_secs(s: &str) -> Result<f64, String> {
    let v = secs(s)?;
    if v > MAX_FEED_INTERVAL_SECS {
        return Err(format!(
            "'{s}': at most {MAX_FEED_INTERVAL_SECS} seconds (0 turns the feed off)"
        ));
    }
    Ok(v)
}

pub fn timeout_secs(s: &str) -> Result<f64, String> {
    let v = secs(s)?;
    if v <= 0.0 {
        return Err(format!("'{s}': must be more than 0 seconds"));
    }
    if v > MAX_TIMEOUT_SECS {
        return Err(format!(
            "'{s}': at most {MAX_TIMEOUT_SECS} seconds (one hour)"
        ));
    }
    Ok(v)
}

pub fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (bytes, or a number with K, M, G or T)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// `-cache_dir`: a path, not empty.
fn cache_dir(s: &str) -> Result<PathBuf, String> {
    if s.trim().is_empty() {
        return Err("an empty path (give a directory, e.g. /var/cache/cassfs)".into());
    }
    Ok(PathBuf::from(s))
}

/// `-cache_dir_size`: a size of at least one block.
fn cache_dir_size(s: &str) -> Result<u64, String> {
    match size(s)? {
        n if n < crate::store::BLOCK_SIZE => Err(format!("'{s}': at least 1M (one block)")),
        n => Ok(n),
    }
}

fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not an address and port (e.g. 127.0.0.1:9567)"))
}

/// Replicas per datacenter, as `--datacenters dc1:3,dc2:3` gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datacenters(pub Vec<(String, u32)>);

fn datacenters(s: &str) -> Result<Datacenters, String> {
    s.split(',')
        .map(|part| {
            let (dc, n) = part
                .split_once(':')
                .ok_or_else(|| format!("'{part}': a datacenter is NAME:REPLICAS"))?;
            let n: u32 = n
                .parse()
                .map_err(|_| format!("'{part}': replicas must be a number"))?;
            Ok((dc.trim().to_string(), n))
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Datacenters)
}

/// Checks an environment name (the `-environment` flag's parser).
pub fn environment(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "'{s}': an environment is 1-64 letters, digits, '-', '_' or '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_and_limits_parse() {
        assert_eq!(volume("7.prod"), Ok((7, "prod".to_string())));
        assert_eq!(volume("7.prod.eu"), Ok((7, "prod.eu".to_string())));
        for bad in ["7", "x.prod", "7.", "7.a/b", ".prod"] {
            assert!(volume(bad).is_err(), "{bad}");
        }
        assert_eq!(bytes_limit("10G"), Ok(Limit(Some(10 << 30))));
        assert_eq!(bytes_limit("2t"), Ok(Limit(Some(2 << 40))));
        assert_eq!(bytes_limit("none"), Ok(Limit(None)));
        assert!(bytes_limit("0").is_err());
        assert!(bytes_limit("-5").is_err());
        assert!(bytes_limit("8388608T").is_err());
        assert_eq!(inodes_limit("1000"), Ok(Limit(Some(1000))));
        assert!(inodes_limit("1K").is_err());
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(normalize_args(args.iter().map(OsString::from)))
    }

    #[test]
    fn go_style_flags_work() {
        let cli = parse(&[
            "cassfs",
            "-mount",
            "/opt",
            "-keyspace",
            "ks",
            "-owner=7",
            "-debug",
        ])
        .expect("parses");
        assert_eq!(cli.mount.mount, PathBuf::from("/opt"));
        assert_eq!(cli.mount.keyspace, "ks");
        assert_eq!(cli.mount.owner, 7);
        assert!(cli.mount.debug);
        assert!(cli.command.is_none());
    }

    #[test]
    fn defaults_match_the_original_tool_but_kernel_ttls() {
        let m = parse(&["cassfs"]).expect("parses").mount;
        // Long kernel TTLs: the change feed pushes other hosts' changes
        // (the original tool's 1 s applies while the feed is not followed).
        assert_eq!(m.entry_ttl, 60.0);
        assert_eq!(m.negative_ttl, 60.0);
        assert_eq!(m.feed_interval, 0.25);
        assert_eq!(m.fcache_ttl, 60.0);
        assert_eq!(m.environment, "prod");
        assert_eq!(m.keyspace, "cassfs");
        assert_eq!(m.owner, 1);
        assert_eq!(m.server, "localhost");
        assert_eq!(m.consistency, Consistency::LocalQuorum);
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(parse(&["cassfs", "-entry_ttl", "-1"]).is_err());
        let e = parse(&["cassfs", "-entry_ttl", "-1"]).expect_err("negative");
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(parse(&["cassfs", "--negative_ttl=-0.5"]).is_err());
        assert!(parse(&["cassfs", "-owner", "abc"]).is_err());
        assert!(parse(&["cassfs", "-consistency", "MOST"]).is_err());
        assert!(parse(&["cassfs", "-environment", "a/b"]).is_err());
        assert!(parse(&["cassfs", "-bogus"]).is_err());
    }

    #[test]
    fn feed_interval_is_bounded() {
        let m = parse(&["cassfs", "-feed_interval", "0"]).expect("0 turns it off");
        assert_eq!(m.mount.feed_interval, 0.0);
        let m = parse(&["cassfs", "-feed_interval=1.5"]).expect("parses");
        assert_eq!(m.mount.feed_interval, 1.5);
        for bad in ["61", "-1", "1e30", "NaN", "x"] {
            assert!(
                parse(&["cassfs", "-feed_interval", bad]).is_err(),
                "-feed_interval {bad} must be refused"
            );
        }
    }

    #[test]
    fn fuse_threads_is_bounded() {
        assert_eq!(parse(&["cassfs"]).expect("default").mount.fuse_threads, 1);
        let m = parse(&["cassfs", "-fuse_threads", "4"]).expect("parses");
        assert_eq!(m.mount.fuse_threads, 4);
        for bad in ["0", "17", "-1", "x"] {
            let e = parse(&["cassfs", "-fuse_threads", bad]).expect_err(bad);
            assert!(e.to_string().contains("fuse_threads"), "{e}");
        }
    }

    #[test]
    fn metrics_takes_an_address_and_port() {
        assert_eq!(parse(&["cassfs"]).expect("parses").mount.metrics, None);
        let m = parse(&["cassfs", "-metrics", "127.0.0.1:9567"]).expect("go style");
        assert_eq!(
            m.mount.metrics,
            Some("127.0.0.1:9567".parse().expect("addr"))
        );
        let m = parse(&["cassfs", "--metrics=[::1]:0"]).expect("gnu style");
        assert_eq!(m.mount.metrics, Some("[::1]:0".parse().expect("addr")));
        for bad in [
            "not-an-addr",
            "127.0.0.1",
            "localhost:9567",
            "1.2.3.4:99999",
            "",
        ] {
            let e = parse(&["cassfs", "-metrics", bad]).expect_err(bad);
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
    }

    #[test]
    fn sizes_take_suffixes() {
        assert_eq!(size("512"), Ok(512));
        assert_eq!(size("64M"), Ok(64 << 20));
        assert_eq!(size("1g"), Ok(1 << 30));
        assert_eq!(size("2T"), Ok(2 << 40));
        assert!(size("99999999T").is_err());
        assert!(size("x").is_err());
    }

    #[test]
    fn cache_dir_flags_parse_and_are_checked() {
        let m = parse(&["cassfs"]).expect("parses").mount;
        assert_eq!((m.cache_dir, m.cache_dir_size), (None, 10 << 30));
        let m = parse(&["cassfs", "-cache_dir", "/c", "-cache_dir_size=3M"])
            .expect("parses")
            .mount;
        assert_eq!(m.cache_dir, Some(PathBuf::from("/c")));
        assert_eq!(m.cache_dir_size, 3 << 20);
        for bad in [
            &["-cache_dir", ""][..],
            &["-cache_dir_size", "1K"],
            &["-cache_dir_size", "x"],
        ] {
            let mut argv = vec!["cassfs"];
            argv.extend_from_slice(bad);
            assert!(parse(&argv).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn schema_subcommand_parses() {
        let cli = parse(&[
            "cassfs",
            "schema",
            "-server",
            "127.0.0.1:1",
            "--keyspace",
            "k",
        ])
        .expect("parses");
        match cli.command {
            Some(Command::Schema(s)) => {
                assert_eq!(s.server, "127.0.0.1:1");
                assert_eq!(s.keyspace, "k");
                assert_eq!(s.replication_factor, 1);
            }
            other => panic!("not schema: {other:?}"),
        }
    }

    #[test]
    fn logins_and_tls_are_checked() {
        use crate::store::StoreConfig;
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\nignored\n").expect("write password file");
        let m = parse(&[
            "cassfs",
            "-username",
            "fs",
            "-password_file",
            pw.to_str().unwrap_or(""),
        ])
        .expect("parses")
        .mount;
        let mut cfg = StoreConfig::new("localhost", "ks");
        m.conn.apply(&mut cfg).expect("password from the file");
        let c = cfg.credentials.expect("credentials");
        assert_eq!((c.username.as_str(), c.password.as_str()), ("fs", "s3cret"));
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "Debug shows the password"
        );
        let m = parse(&["cassfs", "-password_file", "/nonexistent"])
            .expect("parses")
            .mount;
        assert!(m.conn.apply(&mut StoreConfig::new("h", "k")).is_err());
        let m = parse(&[
            "cassfs",
            "-username",
            "fs",
            "-password_file",
            "/nonexistent",
        ])
        .expect("parses")
        .mount;
        let e = m
            .conn
            .apply(&mut StoreConfig::new("h", "k"))
            .expect_err("missing file");
        assert!(e.contains("/nonexistent") && !e.contains('\n'), "{e}");
        let m = parse(&["cassfs", "-tls_ca", "/ca.pem"])
            .expect("parses")
            .mount;
        assert!(
            m.conn.apply(&mut StoreConfig::new("h", "k")).is_err(),
            "-tls_ca without -tls"
        );
        let m = parse(&["cassfs", "-tls", "-tls_ca", "/ca.pem", "-datacenter", "dc2"])
            .expect("parses")
            .mount;
        let mut cfg = StoreConfig::new("h", "k");
        m.conn.apply(&mut cfg).expect("tls");
        assert_eq!(cfg.tls.and_then(|t| t.ca), Some(PathBuf::from("/ca.pem")));
        assert_eq!(cfg.datacenter.as_deref(), Some("dc2"));
        let s = parse(&["cassfs", "schema", "--datacenters", "dc1:3,dc2:1"]).expect("parses");
        assert!(matches!(s.command, Some(Command::Schema(a))
            if a.datacenters == Some(Datacenters(vec![("dc1".into(), 3), ("dc2".into(), 1)]))));
        assert!(parse(&["cassfs", "schema", "--datacenters", "dc1"]).is_err());
    }

    #[test]
    fn operator_commands_parse() {
        let cli = parse(&["cassfs", "gc", "-dry-run", "--grace", "5", "--json"]).expect("gc");
        match cli.command {
            Some(Command::Gc(g)) => {
                assert!(g.dry_run && g.ks.json);
                assert_eq!(g.grace, 5.0);
                assert_eq!(g.ks.keyspace, "cassfs");
            }
            other => panic!("not gc: {other:?}"),
        }
        let cli = parse(&["cassfs", "du", "--owner", "7"]).expect("du is volumes");
        assert!(matches!(cli.command, Some(Command::Volumes(v)) if v.owner == Some(7)));
        let cli = parse(&[
            "cassfs", "clone", "--owner", "7", "--from", "dev", "--to", "prod",
        ])
        .expect("clone");
        assert!(matches!(cli.command, Some(Command::Clone(c)) if c.from == "dev" && !c.force));
        assert!(parse(&["cassfs", "clone", "--owner", "7", "--from", "dev"]).is_err());
        assert!(parse(&[
            "cassfs",
            "rm-volume",
            "--owner",
            "7",
            "--environment",
            "a/b"
        ])
        .is_err());
        assert!(parse(&["cassfs", "gc", "--grace", "-1"]).is_err());
        let cli = parse(&["cassfs", "fsck", "--repair"]).expect("fsck");
        assert!(matches!(cli.command, Some(Command::Fsck(f)) if f.repair && f.grace == 3600.0));
    }
}
