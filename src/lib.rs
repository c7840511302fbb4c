//! CassFS: a FUSE filesystem whose storage engine is Apache Cassandra.
//!
//! The request path is `fuse` (the kernel adapter) → `workers` (a fixed
//! thread pool) → `ops` (the filesystem on inodes) → `cache` and `store`
//! (Cassandra). See ARCHITECTURE.md.

pub mod admin;
pub mod args;
pub mod cache;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod diskcache;
pub mod docker;
pub mod error;
pub mod feed;
pub mod fuse;
pub mod helper_args;
pub mod kernel_flags;
pub mod locks;
pub mod metrics;
pub mod mount;
pub mod ops;
pub mod sessions;
pub mod store;
pub mod version;
pub mod workers;

use std::time::Duration;

use cli::{MountArgs, SchemaArgs};
use store::StoreConfig;

/// `cassfs schema`: creates the keyspace and tables.
pub fn run_schema(args: &SchemaArgs) -> Result<(), String> {
    let mut cfg = StoreConfig::new(&args.server, &args.keyspace);
    cfg.request_timeout = Duration::from_secs_f64(args.timeout);
    args.conn.apply(&mut cfg)?;
    let replication = match &args.datacenters {
        Some(dcs) => store::Replication::Network(dcs.0.clone()),
        None => store::Replication::Simple(args.replication_factor),
    };
    store::apply_schema(&cfg, &replication).map_err(|e| e.to_string())?;
    println!(
        "cassfs: schema ready in keyspace '{}' at {}",
        cfg.keyspace,
        cfg.addresses()
    );
    Ok(())
}

/// `cassfs [options]`: mounts a volume until unmounted or signalled.
pub fn run_mount(args: &MountArgs) -> Result<(), String> {
    mount::run(args)
}
