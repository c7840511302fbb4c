//! The volume driver behind Docker's `VolumeDriver.*` calls: volume names
//! (`OWNER.ENVIRONMENT`) and their options, creating (or cloning) and
//! forgetting volumes, and mounting each volume once for every container
//! of the host that uses it (counted per caller ID, kept on disk).
//!
//! Every mounted volume is served by this process; volumes with the same
//! consistency level and timeout share one Cassandra connection.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use log::{error, info, warn};

use super::state::{State, StateFile, VolumeState};
use crate::cli::{volume, Cli, ConnArgs, MountArgs};
use crate::mount::{self, Mounted};
use crate::store::{Conn, Keyspace, Store};

/// The options `docker volume create -o KEY=VALUE` takes besides `from`,
/// each the mount flag of the same name.
pub const MOUNT_OPTIONS: &[&str] = &[
    "consistency",
    "read_only",
    "entry_ttl",
    "negative_ttl",
    "fcache_ttl",
    "feed_interval",
    "cache_size",
    "cache_dir",
    "cache_dir_size",
    "workers",
    "timeout",
];

/// What every volume's mount starts from; volume options override it.
#[derive(Clone, Debug)]
pub struct Defaults {
    pub server: String,
    pub keyspace: String,
    pub timeout: f64,
    pub workers: u32,
    pub cache_size: u64,
    pub debug: bool,
    pub conn: ConnArgs,
}

/// A volume as Docker's Get and List show it.
pub struct VolumeInfo {
    pub name: String,
    /// Empty while it is not mounted.
    pub mountpoint: String,
    pub options: BTreeMap<String, String>,
    pub mounts: u32,
    pub created: i64,
}

/// The driver: the saved state and the live mounts.
pub struct Driver {
    defaults: Defaults,
    file: StateFile,
    state: State,
    volumes_dir: PathBuf,
    mounted: HashMap<String, Mounted>,
    conns: HashMap<String, Arc<Conn>>,
}

/// The one accepted spelling of each option (`ro` is `read_only`).
fn option_key(key: &str) -> Result<&'static str, String> {
    let key = key.trim().replace('-', "_");
    if key == "ro" || key == "readonly" {
        return Ok("read_only");
    }
    if key == "from" {
        return Ok("from");
    }
    MOUNT_OPTIONS
        .iter()
        .find(|k| **k == key)
        .copied()
        .ok_or_else(|| {
            format!(
                "unknown option '{key}' (allowed: from, ro, {})",
                MOUNT_OPTIONS.join(", ")
            )
        })
}

/// The options of a Create, keys made canonical (`ro` → `read_only`, an
/// empty value of `ro` → `true`).
pub fn canonical_options(
    opts: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in opts {
        let key = option_key(k)?;
        let v = if key == "read_only" && v.is_empty() {
            "true".to_string()
        } else {
            v.trim().to_string()
        };
        if out.insert(key.to_string(), v).is_some() {
            return Err(format!("option '{key}' is given twice"));
        }
    }
    Ok(out)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Driver {
    /// Loads the state under `statedir`, clears mounts a dead plugin left
    /// behind, and mounts again the volumes containers still hold.
    pub fn open(statedir: &Path, defaults: Defaults) -> Result<Driver, String> {
        let file = StateFile::new(statedir)?;
        let state = file.load()?;
        let statedir = std::fs::canonicalize(statedir)
            .map_err(|e| format!("state directory {}: {e}", statedir.display()))?;
        let volumes_dir = statedir.join("volumes");
        std::fs::create_dir_all(&volumes_dir)
            .map_err(|e| format!("{}: {e}", volumes_dir.display()))?;
        let mut d = Driver {
            defaults,
            file,
            state,
            volumes_dir,
            mounted: HashMap::new(),
            conns: HashMap::new(),
        };
        d.clear_stale_mounts();
        let held: Vec<String> = d
            .state
            .volumes
            .iter()
            .filter(|(_, v)| v.held() > 0)
            .map(|(n, _)| n.clone())
            .collect();
        for name in held {
            match d.start(&name) {
                Ok(()) => info!("volume {name}: mounted again for the containers that hold it"),
                Err(e) => error!("volume {name}: cannot mount it again: {e}"),
            }
        }
        Ok(d)
    }

    /// Where a volume is mounted.
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.volumes_dir.join(name)
    }

    /// Detaches every mount under the volumes directory: they belong to a
    /// plugin process that is gone (a live mount there is always ours).
    fn clear_stale_mounts(&self) {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let prefix = format!("{}/", self.volumes_dir.display());
        for point in info.lines().filter_map(|l| l.split(' ').nth(4)) {
            let point = mount::unescape_mountinfo(point);
            if point.starts_with(&prefix) {
                warn!("detaching {point}, left by an earlier plugin process");
                mount::detach(Path::new(&point));
            }
        }
    }

    /// The mount flags of volume `name` with its options, validated by
    /// the same parser as the command line.
    fn mount_args(&self, name: &str, opts: &BTreeMap<String, String>) -> Result<MountArgs, String> {
        let (owner, env) = volume(name)?;
        let d = &self.defaults;
        let mut flags: BTreeMap<&str, String> = BTreeMap::new();
        flags.insert("server", d.server.clone());
        flags.insert("keyspace", d.keyspace.clone());
        flags.insert("timeout", d.timeout.to_string());
        flags.insert("workers", d.workers.to_string());
        flags.insert("cache_size", d.cache_size.to_string());
        for (k, v) in opts.iter().filter(|(k, _)| k.as_str() != "from") {
            flags.insert(option_key(k)?, v.clone());
        }
        let mut argv = vec![
            "cassfs".to_string(),
            format!("--owner={owner}"),
            format!("--environment={env}"),
            format!("--mount={}", self.mountpoint(name).display()),
        ];
        argv.extend(flags.iter().map(|(k, v)| format!("--{k}={v}")));
        let cli = Cli::try_parse_from(&argv).map_err(|e| {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("invalid option").to_string();
            first.trim_start_matches("error: ").to_string()
        })?;
        let mut args = cli.mount;
        args.conn = d.conn.clone();
        args.debug = d.debug;
        // Containers run as other users than the plugin's.
        args.allow_other = true;
        Ok(args)
    }

    /// The connection for `args`, shared by volumes that ask the same of it.
    fn conn(&mut self, args: &MountArgs) -> Result<(Arc<Conn>, crate::store::StoreConfig), String> {
        let cfg = mount::store_config(args)?;
        let key = format!("{:?}/{}", args.consistency, args.timeout);
        if let Some(c) = self.conns.get(&key) {
            return Ok((c.clone(), cfg));
        }
        let c = Arc::new(Conn::connect(&cfg).map_err(|e| e.to_string())?);
        self.conns.insert(key, c.clone());
        Ok((c, cfg))
    }

    /// Mounts volume `name` (known, not mounted yet).
    fn start(&mut self, name: &str) -> Result<(), String> {
        let opts = self
            .state
            .volumes
            .get(name)
            .map(|v| v.options.clone())
            .ok_or_else(|| format!("no such volume '{name}'"))?;
        let args = self.mount_args(name, &opts)?;
        std::fs::create_dir_all(&args.mount)
            .map_err(|e| format!("{}: {e}", args.mount.display()))?;
        let (conn, cfg) = self.conn(&args)?;
        let store =
            Store::open_on(conn, &cfg, args.owner, &args.environment).map_err(|e| e.to_string())?;
        let m = Mounted::start(store, &args)?;
        info!("volume {name} mounted on {}", args.mount.display());
        self.mounted.insert(name.to_string(), m);
        Ok(())
    }

    /// Unmounts volume `name` if it is mounted.
    fn stop(&mut self, name: &str) -> Result<(), String> {
        match self.mounted.remove(name) {
            None => Ok(()),
            Some(m) => {
                let r = m.stop();
                info!("volume {name} unmounted");
                r
            }
        }
    }

    /// `VolumeDriver.Create`: a new volume, or a clone of another
    /// environment of the same owner with `from`.
    pub fn create(&mut self, name: &str, opts: &BTreeMap<String, String>) -> Result<(), String> {
        let opts = canonical_options(opts)?;
        let args = self.mount_args(name, &opts)?;
        if let Some(v) = self.state.volumes.get(name) {
            return if v.options == opts || opts.is_empty() {
                Ok(())
            } else {
                Err(format!("volume '{name}' already exists with other options"))
            };
        }
        if let Some(from) = opts.get("from") {
            self.clone_from(from, &args)?;
        }
        let vol = VolumeState {
            options: opts,
            created: now_secs(),
            holders: BTreeMap::new(),
        };
        let mut next = self.state.clone();
        next.volumes.insert(name.to_string(), vol);
        self.file.save(&next)?;
        self.state = next;
        info!("volume {name} created");
        Ok(())
    }

    /// Makes `args`' volume a zero-copy clone of volume `from`.
    fn clone_from(&mut self, from: &str, args: &MountArgs) -> Result<(), String> {
        let (owner, env) = volume(from).map_err(|e| format!("option from: {e}"))?;
        if owner != args.owner {
            return Err(format!(
                "option from: {from} belongs to owner {owner}, not {}: only environments of one owner share their content",
                args.owner
            ));
        }
        let cfg = mount::store_config(args)?;
        let ks = Keyspace::open(&cfg).map_err(|e| e.to_string())?;
        let opts = crate::admin::clone::CloneOptions {
            owner,
            from: env,
            to: args.environment.clone(),
            force: false,
        };
        crate::admin::clone::run(&ks, &opts, false)
    }

    /// `VolumeDriver.Remove`: forgets a volume that no container holds (its
    /// files stay in Cassandra; `cassfs rm-volume` deletes them).
    pub fn remove(&mut self, name: &str) -> Result<(), String> {
        let v = self.known(name)?;
        if v.held() > 0 {
            return Err(format!(
                "volume '{name}' is in use by {} mount(s)",
                v.held()
            ));
        }
        self.stop(name)?;
        let mut next = self.state.clone();
        next.volumes.remove(name);
        self.file.save(&next)?;
        self.state = next;
        let _ = std::fs::remove_dir(self.mountpoint(name));
        info!("volume {name} removed from this host (its files stay in Cassandra)");
        Ok(())
    }

    fn known(&self, name: &str) -> Result<&VolumeState, String> {
        self.state
            .volumes
            .get(name)
            .ok_or_else(|| format!("no such volume '{name}'"))
    }

    /// `VolumeDriver.Mount`: mounts on the first holder, counts the others.
    pub fn mount(&mut self, name: &str, id: &str) -> Result<PathBuf, String> {
        self.known(name)?;
        if id.is_empty() {
            return Err("a Mount needs the caller's ID".into());
        }
        if self.mounted.get(name).is_some_and(|m| !m.is_served()) {
            warn!("volume {name}: its mount was gone (unmounted from outside); mounting again");
            let _ = self.stop(name);
        }
        let fresh = !self.mounted.contains_key(name);
        if fresh {
            self.start(name)?;
        }
        let mut next = self.state.clone();
        if let Some(v) = next.volumes.get_mut(name) {
            *v.holders.entry(id.to_string()).or_insert(0) += 1;
        }
        if let Err(e) = self.file.save(&next) {
            if fresh {
                let _ = self.stop(name);
            }
            return Err(e);
        }
        self.state = next;
        Ok(self.mountpoint(name))
    }

    /// `VolumeDriver.Unmount`: unmounts after the last holder.
    pub fn unmount(&mut self, name: &str, id: &str) -> Result<(), String> {
        self.known(name)?;
        let mut next = self.state.clone();
        let Some(v) = next.volumes.get_mut(name) else {
            return Err(format!("no such volume '{name}'"));
        };
        match v.holders.get_mut(id) {
            None => {
                warn!("volume {name}: Unmount by {id}, which holds no mount of it");
                return Ok(());
            }
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                v.holders.remove(id);
            }
        }
        let last = v.held() == 0;
        self.file.save(&next)?;
        self.state = next;
        if last {
            self.stop(name)?;
        }
        Ok(())
    }

    /// `VolumeDriver.Path`: where the volume is mounted (`None`: it is not).
    pub fn path(&self, name: &str) -> Result<Option<PathBuf>, String> {
        self.known(name)?;
        Ok(self
            .mounted
            .contains_key(name)
            .then(|| self.mountpoint(name)))
    }

    fn info(&self, name: &str, v: &VolumeState) -> VolumeInfo {
        VolumeInfo {
            name: name.to_string(),
            mountpoint: if self.mounted.contains_key(name) {
                self.mountpoint(name).display().to_string()
            } else {
                String::new()
            },
            options: v.options.clone(),
            mounts: v.held(),
            created: v.created,
        }
    }

    /// `VolumeDriver.Get`.
    pub fn get(&self, name: &str) -> Result<VolumeInfo, String> {
        let v = self.known(name)?;
        Ok(self.info(name, v))
    }

    /// `VolumeDriver.List`.
    pub fn list(&self) -> Vec<VolumeInfo> {
        self.state
            .volumes
            .iter()
            .map(|(n, v)| self.info(n, v))
            .collect()
    }

    /// Unmounts every volume (the holders stay saved: a restarted plugin
    /// mounts them again).
    pub fn shutdown(&mut self) {
        let names: Vec<String> = self.mounted.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.stop(&name) {
                error!("volume {name}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_owner_dot_environment() {
        assert_eq!(volume("7.prod"), Ok((7, "prod".to_string())));
        assert_eq!(volume("7.prod.v2"), Ok((7, "prod.v2".to_string())));
        for bad in [
            "prod",
            "7",
            "7.",
            ".prod",
            "-7.prod",
            "x.prod",
            "7.pr od",
            "99999999999999999999.p",
        ] {
            assert!(volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_are_checked_and_made_canonical() {
        let o = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let c = canonical_options(&o(&[("ro", ""), ("consistency", "ONE")])).expect("valid");
        assert_eq!(c.get("read_only").map(String::as_str), Some("true"));
        assert_eq!(c.get("consistency").map(String::as_str), Some("ONE"));
        let e = canonical_options(&o(&[("colour", "red")])).expect_err("unknown");
        assert!(e.contains("unknown option 'colour'"), "{e}");
        assert!(canonical_options(&o(&[("ro", "1"), ("read_only", "1")])).is_err());
    }
}
