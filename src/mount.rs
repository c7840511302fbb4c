//! Mounting: checks the inputs, connects, starts the workers and the FUSE
//! session, and unmounts cleanly on SIGTERM/SIGINT or `fusermount -u`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{BackgroundSession, Config, MountOption, Session, SessionACL, SessionUnmounter};
use log::{error, info, LevelFilter};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::cli::MountArgs;
use crate::diskcache::DiskCache;
use crate::feed::Feed;
use crate::fuse::{CassFuse, KernelNotifier};
use crate::ops::{Caller, Fs, FsConfig};
use crate::sessions::Heartbeat;
use crate::store::{Store, StoreConfig};
use crate::workers::Pool;

/// How long a signalled daemon waits for a busy mount to go away.
const BUSY_GRACE: Duration = Duration::from_secs(3);
/// How long an exiting daemon waits for blocks queued for the disk cache.
const DISK_CACHE_DRAIN: Duration = Duration::from_secs(2);

/// Logs to stderr: info, or debug with `-debug`.
pub fn init_logging(debug: bool) {
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let config = simplelog::ConfigBuilder::new()
        .add_filter_allow_str("cassfs")
        .build();
    let _ = simplelog::SimpleLogger::init(level, config);
}

fn check_mountpoint(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Err(e) => Err(format!("mount point {}: {e}", path.display())),
        Ok(m) if !m.is_dir() => Err(format!("mount point {} is not a directory", path.display())),
        Ok(_) => Ok(()),
    }
}

/// The connection settings of a mount.
pub fn store_config(args: &MountArgs) -> Result<StoreConfig, String> {
    let mut cfg = StoreConfig::new(&args.server, &args.keyspace);
    cfg.consistency = args.consistency;
    cfg.request_timeout = Duration::from_secs_f64(args.timeout);
    cfg.connect_timeout = Duration::from_secs_f64(args.timeout.min(8.0));
    args.conn.apply(&mut cfg)?;
    Ok(cfg)
}

fn fuse_config(args: &MountArgs) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("cassfs:{}:{}", args.owner, args.environment)),
        MountOption::Subtype("cassfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
    ];
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        // Mounting directly (as root), fuser passes the subtype only to
        // fusermount3; name it for mount(2) so the type reads fuse.cassfs.
        config
            .mount_options
            .push(MountOption::CUSTOM("subtype=cassfs".into()));
    }
    if args.read_only {
        config.mount_options.push(MountOption::RO);
    }
    if args.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(args.fuse_threads as usize);
    config.clone_fd = args.fuse_threads > 1;
    config
        .mount_options
        .extend(args.kernel_flags.mount_options());
    config
}

/// A volume being served: its core, the kernel session, and the threads
/// beside it (heartbeat, change feed).
struct Serving {
    fs: Arc<Fs>,
    session: Session<CassFuse>,
    heartbeat: Heartbeat,
    feed: Option<Feed>,
}

/// The disk cache `-cache_dir` asks for, created if missing: a directory
/// that cannot be used fails the mount before anything is contacted.
fn disk_cache(args: &MountArgs) -> Result<Option<DiskCache>, String> {
    args.cache_dir
        .as_ref()
        .map(|dir| DiskCache::open(dir, args.owner, args.cache_dir_size))
        .transpose()
        .map_err(|e| e.to_string())
}

/// The core's configuration for `args`.
fn fs_config(args: &MountArgs) -> FsConfig {
    FsConfig {
        fcache_ttl: Duration::from_secs_f64(args.fcache_ttl),
        cache_size: args.cache_size,
        read_only: args.read_only,
        mountpoint: std::fs::canonicalize(&args.mount)
            .unwrap_or_else(|_| args.mount.clone())
            .to_string_lossy()
            .into_owned(),
        lock_lease: Duration::from_secs(args.lock_lease.into()),
    }
}

/// Everything from a connected store to a live kernel mount: the core, the
/// workers, the session row, the FUSE session and the change feed.
fn serve(store: Store, args: &MountArgs) -> Result<Serving, String> {
    check_mountpoint(&args.mount)?;
    // SAFETY: getuid/getgid cannot fail and have no preconditions.
    let me = unsafe {
        Caller {
            uid: libc::getuid(),
            gid: libc::getgid(),
        }
    };
    let fs = Arc::new(Fs::new(store, fs_config(args), me).map_err(|e| e.to_string())?);
    let pool = Pool::new(fs.clone(), args.workers as usize)
        .map_err(|e| format!("cannot start workers: {e}"))?;
    let adapter = CassFuse::new(
        pool,
        Duration::from_secs_f64(args.entry_ttl),
        Duration::from_secs_f64(args.negative_ttl),
    )
    // Kept pages learn of other hosts' changes only from the change feed.
    .handle_less(args.read_only && args.feed_interval > 0.0);
    let notifier = adapter.notifier_slot();
    let heartbeat = fs.start_session()?;
    let session = match Session::new(adapter, &args.mount, &fuse_config(args)) {
        Ok(s) => s,
        Err(e) => {
            heartbeat.end();
            return Err(format!("cannot mount on {}: {e}", args.mount.display()));
        }
    };
    let _ = notifier.set(session.notifier());
    fs.locks().refresh_with(Box::new(crate::fuse::LockRefresh {
        fs: Arc::downgrade(&fs),
        notifier: session.notifier(),
    }));
    raise_readahead(&args.mount);
    let feed = if args.feed_interval > 0.0 {
        let kernel = Box::new(KernelNotifier(session.notifier()));
        let interval = Duration::from_secs_f64(args.feed_interval);
        match fs.follow_feed(kernel, interval) {
            Ok(f) => Some(f),
            Err(e) => {
                heartbeat.end();
                return Err(format!("cannot start the change feed's thread: {e}"));
            }
        }
    } else {
        None
    };
    Ok(Serving {
        fs,
        session,
        heartbeat,
        feed,
    })
}

/// After the kernel session ended: stop following the feed, commit what is
/// pending, end the session row.
fn wind_down(fs: &Fs, feed: Option<Feed>, heartbeat: Heartbeat) -> Result<(), String> {
    if let Some(f) = feed {
        f.stop();
    }
    let flushed = fs.flush_all();
    fs.locks().release_all();
    heartbeat.end();
    flushed.map_err(|e| format!("pending writes could not be committed: {e}"))
}

/// A volume mounted by this process and served by background threads, for
/// a process that serves several volumes (`cassfs docker`).
pub struct Mounted {
    fs: Arc<Fs>,
    session: BackgroundSession,
    heartbeat: Heartbeat,
    feed: Option<Feed>,
    mountpoint: PathBuf,
}

impl Mounted {
    /// Mounts `store`'s volume on `args.mount` and serves it in the
    /// background (the logging and metrics of `args` are the caller's).
    pub fn start(mut store: Store, args: &MountArgs) -> Result<Mounted, String> {
        if let Some(disk) = disk_cache(args)? {
            store.use_disk_cache(disk);
        }
        let s = serve(store, args)?;
        let session = match s.session.spawn() {
            Ok(b) => b,
            Err(e) => {
                // The session was dropped with the error: it is unmounted.
                let _ = wind_down(&s.fs, s.feed, s.heartbeat);
                return Err(format!("cannot start the FUSE session's thread: {e}"));
            }
        };
        Ok(Mounted {
            fs: s.fs,
            session,
            heartbeat: s.heartbeat,
            feed: s.feed,
            mountpoint: args.mount.clone(),
        })
    }

    /// Whether the kernel session still runs (it ends when someone else
    /// unmounts the mount point).
    pub fn is_served(&self) -> bool {
        !self.session.guard.is_finished()
    }

    /// Unmounts (lazily if files are open), commits what is pending and
    /// ends the session row.
    pub fn stop(self) -> Result<(), String> {
        let Mounted {
            fs,
            session,
            heartbeat,
            feed,
            mountpoint,
        } = self;
        if session.guard.is_finished() {
            let _ = session.join();
        } else if let Err(e) = session.umount_and_join() {
            info!(
                "unmount of {} failed ({e}); detaching it",
                mountpoint.display()
            );
            detach(&mountpoint);
        }
        wind_down(&fs, feed, heartbeat)
    }
}

/// Mounts the volume and serves it until it is unmounted.
pub fn run(args: &MountArgs) -> Result<(), String> {
    init_logging(args.debug);
    check_mountpoint(&args.mount)?;
    let metrics = args.metrics.map(crate::metrics::bind).transpose()?;
    let cfg = store_config(args)?;
    let disk = disk_cache(args)?;
    let mut store = Store::open(&cfg, args.owner, &args.environment).map_err(|e| e.to_string())?;
    if let Some(disk) = disk {
        store.use_disk_cache(disk);
    }
    let Serving {
        fs,
        mut session,
        heartbeat,
        feed,
    } = serve(store, args)?;
    if let Some(server) = metrics {
        let fs = Arc::downgrade(&fs);
        server
            .serve(move || {
                fs.upgrade()
                    .map(|fs| fs.open_files_sample())
                    .unwrap_or_default()
            })
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    }
    let unmounter = session.unmount_callable();
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    watch_signals(unmounter, args.mount.clone(), done_rx, fs.clone())?;
    info!(
        "mounted volume ({}, {}) of keyspace {} on {}",
        args.owner,
        args.environment,
        args.keyspace,
        args.mount.display()
    );
    crate::daemon::ready();
    // run() consumes the session; when it returns, the adapter has been
    // dropped and the workers drained.
    let served = session.run();
    let wound = wind_down(&fs, feed, heartbeat);
    crate::diskcache::drain(DISK_CACHE_DRAIN);
    let _ = done_tx.send(());
    info!("unmounted {}", args.mount.display());
    served.map_err(|e| format!("FUSE session failed: {e}"))?;
    wound
}

/// Runs `then` with the signal's number on a thread of its own when the
/// process first gets SIGTERM or SIGINT.
pub fn on_termination(then: impl FnOnce(i32) + Send + 'static) -> Result<(), String> {
    let mut signals =
        Signals::new([SIGTERM, SIGINT]).map_err(|e| format!("cannot handle signals: {e}"))?;
    std::thread::Builder::new()
        .name("cassfs-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                then(sig);
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start signal thread: {e}"))
}

/// On SIGTERM/SIGINT: unmounts, and leaves after [`BUSY_GRACE`] if files
/// keep the detached mount alive.
fn watch_signals(
    mut unmounter: SessionUnmounter,
    mountpoint: PathBuf,
    done_rx: crossbeam_channel::Receiver<()>,
    fs: Arc<Fs>,
) -> Result<(), String> {
    on_termination(move |sig| {
        info!("signal {sig}: unmounting {}", mountpoint.display());
        if let Err(e) = unmounter.unmount() {
            error!("unmount failed ({e}); detaching {}", mountpoint.display());
            detach(&mountpoint);
        }
        // A detached mount lives on while files are open in it: give the
        // session a moment, then commit what is pending and leave.
        if done_rx.recv_timeout(BUSY_GRACE).is_err() {
            let code = match fs.flush_all() {
                Ok(()) => 0,
                Err(e) => {
                    error!("pending writes could not be committed: {e}");
                    1
                }
            };
            fs.locks().release_all();
            info!("files still open; exiting without waiting for them");
            std::process::exit(code);
        }
    })
}

/// Kernel read-ahead for the mount, in KiB: requests of up to 1 MiB (one
/// block) instead of the default 128 KiB.
const READ_AHEAD_KB: u32 = 1024;

/// Raises the kernel's read-ahead of the new mount (best effort: it needs
/// root and sysfs). The mount's device is found in /proc/self/mountinfo, so
/// the mount itself is not touched before it is served.
fn raise_readahead(mountpoint: &Path) {
    let Ok(path) = std::fs::canonicalize(mountpoint) else {
        return;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let want = path.to_string_lossy();
    let dev = info.lines().rev().find_map(|line| {
        let mut f = line.split(' ');
        let dev = f.nth(2)?;
        let point = f.nth(1)?;
        (unescape_mountinfo(point) == want).then(|| dev.to_string())
    });
    let Some(dev) = dev else {
        return;
    };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    if let Err(e) = std::fs::write(&knob, READ_AHEAD_KB.to_string()) {
        log::debug!("cannot raise read-ahead ({knob}): {e}");
    }
}

/// Undoes the octal escapes of /proc/self/mountinfo (space, tab, newline, \\).
pub fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Lazy unmount, for a mount that is busy.
pub fn detach(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        error!("lazy unmount of {} failed", path.display());
    }
}
