//! The FUSE adapter: the only module that knows fuser.
//!
//! Each callback copies its arguments, packages them with the reply into a
//! job and hands it to the worker pool (routed by inode). The job calls the
//! core (`crate::ops`) and converts its result into the reply; errors become
//! errno in one place ([`answer`]). What memory can answer without waiting
//! (a warm open, a clean release, a cached lookup, getattr or read) is
//! answered in the callback itself ([`CassFuse::at_once`]), sparing the hop
//! to a worker.
//!
//! A read-only mount has nothing to commit at close, so it lets the kernel
//! keep no handles: OPEN, OPENDIR and FLUSH answer ENOSYS (the kernel then
//! stops sending them, and RELEASE, for the whole connection, and keeps
//! file pages and directory listings across opens); reads and listings
//! arrive with handle 0 and are served by inode. The change feed's
//! `inval_inode`/`inval_entry` keep those kernel caches coherent.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags as FuseOpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyLock, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use log::{debug, warn};

use crate::error::{FsError, FsResult};
use crate::metrics;
use crate::ops::{self, Caller, SetAttr, SetTime, XattrReply};
use crate::store::{Inode, Kind};
use crate::workers::Pool;

/// Where the session's notifier goes once the session exists (the adapter
/// is made before it).
pub type NotifierSlot = Arc<OnceLock<fuser::Notifier>>;

/// Kernel cache invalidations for the change feed, sent through fuser's
/// notifier (from the feed's thread, never from a callback).
pub struct KernelNotifier(pub fuser::Notifier);

impl crate::feed::Kernel for KernelNotifier {
    fn entry(&self, parent: u64, name: &[u8]) {
        if let Err(e) = self.0.inval_entry(INodeNo(parent), OsStr::from_bytes(name)) {
            debug!("inval_entry({parent}): {e}");
        }
    }

    fn inode(&self, ino: u64) {
        if let Err(e) = self.0.inval_inode(INodeNo(ino), 0, 0) {
            debug!("inval_inode({ino}): {e}");
        }
    }
}

/// What a lock grant does to open content (`crate::locks::Refresh`): the
/// open handles take the latest commit, and the kernel drops its pages.
pub struct LockRefresh {
    pub fs: std::sync::Weak<ops::Fs>,
    pub notifier: fuser::Notifier,
}

impl crate::locks::Refresh for LockRefresh {
    fn content(&self, ino: u64) -> bool {
        let Some(fs) = self.fs.upgrade() else {
            return false;
        };
        fs.refresh_open(ino).unwrap_or_else(|e| {
            warn!("cannot read inode {ino}'s latest content after a lock: {e}");
            false
        })
    }

    fn pages(&self, ino: u64) {
        if let Err(e) = self.notifier.inval_inode(INodeNo(ino), 0, 0) {
            debug!("inval_inode({ino}): {e}");
        }
    }
}

/// The filesystem as the kernel sees it.
pub struct CassFuse {
    pool: Option<Pool>,
    entry_ttl: Duration,
    negative_ttl: Duration,
    notifier: NotifierSlot,
    /// The mount may let the kernel keep no handles: read-only, followed
    /// by the change feed (set before the session starts).
    handle_less: bool,
    /// Handle-less, and the kernel can open without asking (set at init).
    no_open: bool,
}

impl CassFuse {
    pub fn new(pool: Pool, entry_ttl: Duration, negative_ttl: Duration) -> CassFuse {
        CassFuse {
            pool: Some(pool),
            entry_ttl,
            negative_ttl,
            notifier: NotifierSlot::default(),
            handle_less: false,
            no_open: false,
        }
    }

    /// Lets the kernel keep no handles, if it can: for a read-only mount
    /// whose kernel caches the change feed keeps coherent.
    pub fn handle_less(mut self, handle_less: bool) -> CassFuse {
        self.handle_less = handle_less;
        self
    }

    /// Answers a request a handle-less mount does not serve (ENOSYS: the
    /// kernel stops sending it); counted like the others.
    fn refuse<R: ErrorReply + Send + 'static>(&self, op: &'static str, key: u64, reply: R) {
        self.submit(op, key, move |_| {
            answer(op, reply, Err::<(), _>(FsError::NoHandles), |_, ()| {})
        });
    }

    /// The slot to put the session's notifier in.
    pub fn notifier_slot(&self) -> NotifierSlot {
        self.notifier.clone()
    }

    /// Answers request `op` in this thread when `f` can (from memory,
    /// without waiting: see `Fs::open_cached`); counted like the others.
    fn at_once<T>(&self, op: &'static str, f: impl FnOnce(&ops::Fs) -> Option<T>) -> Option<T> {
        let start = metrics::start();
        let got = f(self.pool.as_ref()?.fs())?;
        metrics::fuse_done(op, start);
        Some(got)
    }

    /// Queues request `op` (its name in metrics) on the worker of `key`.
    fn submit(&self, op: &'static str, key: u64, job: impl FnOnce(&ops::Fs) + Send + 'static) {
        if let Some(pool) = &self.pool {
            let start = metrics::start();
            pool.submit(
                key,
                Box::new(move |fs| {
                    job(fs);
                    metrics::fuse_done(op, start);
                }),
            );
        }
    }
}

impl Drop for CassFuse {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.shutdown();
        }
    }
}

/// Replies that can carry an errno.
trait ErrorReply {
    fn fail(self, e: Errno);
}

macro_rules! error_reply {
    ($($t:ty),*) => {$(
        impl ErrorReply for $t {
            fn fail(self, e: Errno) {
                self.error(e)
            }
        }
    )*};
}
error_reply!(
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyDirectory,
    ReplyDirectoryPlus,
    ReplyEmpty,
    ReplyEntry,
    ReplyLock,
    ReplyOpen,
    ReplyStatfs,
    ReplyWrite,
    ReplyXattr
);

/// Answers `reply` with `ok` on success, or with the error's errno.
fn answer<R: ErrorReply, T>(op: &'static str, reply: R, res: FsResult<T>, ok: impl FnOnce(R, T)) {
    match res {
        Ok(v) => ok(reply, v),
        Err(e) => {
            if e.is_expected() {
                debug!("{op}: {e}");
            } else {
                warn!("{op}: {e}");
            }
            metrics::fuse_error(op, e.errno());
            reply.fail(Errno::from_i32(e.errno()));
        }
    }
}

fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

fn file_attr(i: &Inode) -> FileAttr {
    FileAttr {
        ino: INodeNo(i.ino),
        size: i.size,
        blocks: i.size.div_ceil(512),
        atime: system_time(i.atime_ns),
        mtime: system_time(i.mtime_ns),
        ctime: system_time(i.ctime_ns),
        crtime: system_time(i.ctime_ns),
        kind: file_type(i.kind),
        perm: i.perm as u16,
        nlink: i.nlink,
        uid: i.uid,
        gid: i.gid,
        rdev: i.rdev,
        blksize: 128 << 10,
        flags: 0,
    }
}

fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(t),
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn bytes(name: &OsStr) -> Vec<u8> {
    name.as_bytes().to_vec()
}

fn xattr_reply(reply: ReplyXattr, r: XattrReply) {
    match r {
        XattrReply::Size(n) => reply.size(n),
        XattrReply::Data(d) => reply.data(&d),
    }
}

/// Answers an entry reply; a missing name becomes a cached negative entry
/// when the negative TTL allows it.
fn entry_reply(reply: ReplyEntry, res: FsResult<Inode>, ttl: Duration, neg_ttl: Duration) {
    match res {
        Err(FsError::NotFound) if !neg_ttl.is_zero() => {
            metrics::fuse_error("lookup", libc::ENOENT);
            let mut attr = file_attr(&Inode {
                ino: 0,
                ..placeholder()
            });
            attr.ino = INodeNo(0);
            reply.entry(&neg_ttl, &attr, Generation(0));
        }
        res => answer("lookup", reply, res, |r, i| {
            r.entry(&ttl, &file_attr(&i), Generation(0))
        }),
    }
}

/// Before answering an open whose kernel may hold an older version's
/// attributes (its size): makes the kernel ask again before reading
/// (attributes only: safe to send while the open waits for its reply).
fn forget_stale_attrs(notifier: &NotifierSlot, ino: INodeNo, o: &ops::Opened) {
    if let (true, Some(n)) = (o.attrs_stale, notifier.get()) {
        if let Err(e) = n.inval_inode(ino, -1, 0) {
            debug!("inval_inode({}): {e}", ino.0);
        }
    }
}

/// The flags of an open's answer.
fn fopen_flags(o: &ops::Opened, flags: ops::OpenFlags, locked: bool) -> FopenFlags {
    let mut f = FopenFlags::empty();
    if o.keep_cache {
        f |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if !flags.write && !flags.truncate && !locked {
        // Nothing to commit or unlock at close: spare the kernel a FLUSH.
        f |= FopenFlags::FOPEN_NOFLUSH;
    }
    f
}

fn placeholder() -> Inode {
    Inode {
        ino: 0,
        kind: Kind::File,
        perm: 0,
        uid: 0,
        gid: 0,
        nlink: 0,
        rdev: 0,
        size: 0,
        atime_ns: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        parent: 0,
        version: 0,
        target: Vec::new(),
        content: Default::default(),
        xattrs: Default::default(),
    }
}

impl Filesystem for CassFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_ATOMIC_O_TRUNC
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS;
        if let Err(missing) = config.add_capabilities(wanted) {
            debug!("kernel lacks capabilities {missing:?}");
        }
        let _ = config.set_max_readahead(128 << 10);
        // Locks held across hosts (crate::locks); a read-only mount keeps
        // no handles to release them by, so its locks stay the kernel's.
        let locks = InitFlags::FUSE_POSIX_LOCKS | InitFlags::FUSE_FLOCK_LOCKS;
        if !self.handle_less {
            if let Err(missing) = config.add_capabilities(locks) {
                warn!("kernel lacks {missing:?}: locks hold on this host only");
            }
        }
        if self.handle_less {
            let handle_less = InitFlags::FUSE_NO_OPEN_SUPPORT | InitFlags::FUSE_NO_OPENDIR_SUPPORT;
            match config.add_capabilities(handle_less) {
                Ok(()) => self.no_open = true,
                Err(missing) => debug!("read-only mount keeps handles: kernel lacks {missing:?}"),
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (name, ttl, neg) = (bytes(name), self.entry_ttl, self.negative_ttl);
        if let Some((res, ttl, neg)) = self.at_once("lookup", |fs| {
            let res = fs.lookup_cached(parent.0, &name)?;
            Some((res, fs.kernel_ttl(ttl), fs.kernel_ttl(neg)))
        }) {
            return entry_reply(reply, res, ttl, neg);
        }
        self.submit("lookup", parent.0, move |fs| {
            entry_reply(
                reply,
                fs.lookup(parent.0, &name),
                fs.kernel_ttl(ttl),
                fs.kernel_ttl(neg),
            )
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let ttl = self.entry_ttl;
        if let Some((i, ttl)) = self.at_once("getattr", |fs| {
            fs.getattr_cached(ino.0).map(|i| (i, fs.kernel_ttl(ttl)))
        }) {
            return reply.attr(&ttl, &file_attr(&i));
        }
        self.submit("getattr", ino.0, move |fs| {
            answer("getattr", reply, fs.getattr(ino.0), |r, i| {
                r.attr(&fs.kernel_ttl(ttl), &file_attr(&i))
            })
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
        };
        let ttl = self.entry_ttl;
        self.submit("setattr", ino.0, move |fs| {
            answer("setattr", reply, fs.setattr(ino.0, &set), |r, i| {
                r.attr(&fs.kernel_ttl(ttl), &file_attr(&i))
            })
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.submit("readlink", ino.0, move |fs| {
            answer("readlink", reply, fs.readlink(ino.0), |r, t| r.data(&t))
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (name, who, ttl) = (bytes(name), caller(req), self.entry_ttl);
        self.submit("mknod", parent.0, move |fs| {
            let res = fs.mknod(parent.0, &name, mode, rdev, who);
            answer("mknod", reply, res, |r, i| {
                r.entry(&fs.kernel_ttl(ttl), &file_attr(&i), Generation(0))
            })
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let (name, who, ttl) = (bytes(name), caller(req), self.entry_ttl);
        self.submit("mkdir", parent.0, move |fs| {
            answer(
                "mkdir",
                reply,
                fs.mkdir(parent.0, &name, mode, who),
                |r, i| r.entry(&fs.kernel_ttl(ttl), &file_attr(&i), Generation(0)),
            )
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = bytes(name);
        self.submit("unlink", parent.0, move |fs| {
            answer("unlink", reply, fs.unlink(parent.0, &name), |r, ()| r.ok())
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = bytes(name);
        self.submit("rmdir", parent.0, move |fs| {
            answer("rmdir", reply, fs.rmdir(parent.0, &name), |r, ()| r.ok())
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (name, who, ttl) = (bytes(link_name), caller(req), self.entry_ttl);
        let target = target.as_os_str().as_bytes().to_vec();
        self.submit("symlink", parent.0, move |fs| {
            let res = fs.symlink(parent.0, &name, &target, who);
            answer("symlink", reply, res, |r, i| {
                r.entry(&fs.kernel_ttl(ttl), &file_attr(&i), Generation(0))
            })
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname) = (bytes(name), bytes(newname));
        self.submit("rename", parent.0, move |fs| {
            let res = ops::RenameFlags::from_bits(flags.bits())
                .and_then(|f| fs.rename(parent.0, &name, newparent.0, &newname, f));
            answer("rename", reply, res, |r, ()| r.ok())
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (newname, ttl) = (bytes(newname), self.entry_ttl);
        self.submit("link", ino.0, move |fs| {
            answer(
                "link",
                reply,
                fs.link(ino.0, newparent.0, &newname),
                |r, i| r.entry(&fs.kernel_ttl(ttl), &file_attr(&i), Generation(0)),
            )
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: FuseOpenFlags, reply: ReplyOpen) {
        if self.no_open {
            return self.refuse("open", ino.0, reply);
        }
        let flags = ops::OpenFlags::from_bits(flags.0);
        let cached = |fs: &ops::Fs| {
            let o = fs.open_cached(ino.0, flags)?;
            Some((o, fs.locks().used(ino.0)))
        };
        if let Some((o, locked)) = self.at_once("open", cached) {
            forget_stale_attrs(&self.notifier, ino, &o);
            return reply.opened(FileHandle(o.fh), fopen_flags(&o, flags, locked));
        }
        let notifier = self.notifier.clone();
        self.submit("open", ino.0, move |fs| {
            let res = fs.open(ino.0, flags);
            if let Ok(o) = &res {
                forget_stale_attrs(&notifier, ino, o);
            }
            answer("open", reply, res, |r, o| {
                r.opened(
                    FileHandle(o.fh),
                    fopen_flags(&o, flags, fs.locks().used(ino.0)),
                )
            })
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let unopened = self.no_open;
        let cached = |fs: &ops::Fs| fs.read_cached(fh.0, offset, size);
        if let Some(d) = (!unopened).then(|| self.at_once("read", cached)).flatten() {
            metrics::read_bytes(d.len());
            return reply.data(&d);
        }
        self.submit("read", ino.0, move |fs| {
            let res = if unopened {
                fs.read_unopened(ino.0, offset, size)
            } else {
                fs.read(fh.0, offset, size)
            };
            answer("read", reply, res, |r, d| {
                metrics::read_bytes(d.len());
                r.data(&d)
            })
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        self.submit("write", ino.0, move |fs| {
            answer("write", reply, fs.write(fh.0, offset, &data), |r, n| {
                metrics::written_bytes(n as usize);
                r.written(n)
            })
        });
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        if self.no_open {
            return self.refuse("flush", ino.0, reply);
        }
        self.submit("flush", ino.0, move |fs| {
            // Committed before the close's POSIX unlock: the next holder
            // reads what this one wrote.
            let res = fs.flush(fh.0);
            let unlocked = fs.locks().flush(ino.0, lock_owner.0);
            answer("flush", reply, res.and(unlocked), |r, ()| r.ok())
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: FuseOpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Locks to drop go to a worker with the release.
        let clean = |fs: &ops::Fs| {
            let unlocked = lock_owner.is_none() && !fs.locks().used(ino.0);
            (unlocked && fs.release_clean(fh.0)).then_some(())
        };
        if self.at_once("release", clean).is_some() {
            return reply.ok();
        }
        self.submit("release", ino.0, move |fs| {
            let res = fs.release(fh.0);
            let unlocked = fs.locks().release(ino.0, fh.0, lock_owner.map(|o| o.0));
            answer("release", reply, res.and(unlocked), |r, ()| r.ok())
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        if self.no_open {
            // Nothing to commit on a read-only mount.
            return reply.ok();
        }
        self.submit("fsync", ino.0, move |fs| {
            answer("fsync", reply, fs.fsync(fh.0), |r, ()| r.ok())
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: FuseOpenFlags, reply: ReplyOpen) {
        if self.no_open {
            return self.refuse("opendir", ino.0, reply);
        }
        self.submit("opendir", ino.0, move |fs| {
            answer("opendir", reply, fs.opendir(ino.0), |r, (fh, cached)| {
                let mut f = FopenFlags::FOPEN_CACHE_DIR;
                if cached {
                    f |= FopenFlags::FOPEN_KEEP_CACHE;
                }
                r.opened(FileHandle(fh), f)
            })
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let unopened = self.no_open;
        self.submit("readdir", ino.0, move |fs| {
            let res = if unopened {
                fs.readdir_unopened(ino.0, offset, 1024)
            } else {
                fs.readdir(fh.0, offset, 1024)
            };
            match res {
                Ok(entries) => {
                    for (next, e) in entries {
                        let name = OsStr::from_bytes(&e.name);
                        if reply.add(INodeNo(e.ino), next, file_type(e.kind), name) {
                            break;
                        }
                    }
                    reply.ok()
                }
                Err(e) => answer("readdir", reply, Err::<(), _>(e), |_, ()| {}),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let ttl = self.entry_ttl;
        let unopened = self.no_open;
        self.submit("readdirplus", ino.0, move |fs| {
            let res = if unopened {
                fs.readdirplus_unopened(ino.0, offset, 256)
            } else {
                fs.readdirplus(fh.0, offset, 256)
            };
            match res {
                Ok(entries) => {
                    let ttl = fs.kernel_ttl(ttl);
                    for (next, e, i) in entries {
                        let name = OsStr::from_bytes(&e.name);
                        let attr = file_attr(&i);
                        if reply.add(INodeNo(e.ino), next, name, &ttl, &attr, Generation(0)) {
                            break;
                        }
                    }
                    reply.ok()
                }
                Err(e) => answer("readdirplus", reply, Err::<(), _>(e), |_, ()| {}),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: FuseOpenFlags,
        reply: ReplyEmpty,
    ) {
        self.submit("releasedir", ino.0, move |fs| {
            fs.releasedir(fh.0);
            reply.ok()
        });
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory changes are written to Cassandra before they are answered.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.submit("statfs", 1, move |fs| {
            let s = fs.statfs();
            reply.statfs(
                s.blocks, s.bfree, s.bfree, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
            )
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let (name, value) = (bytes(name), value.to_vec());
        self.submit("setxattr", ino.0, move |fs| {
            let res = fs.setxattr(ino.0, &name, &value, flags);
            answer("setxattr", reply, res, |r, ()| r.ok())
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = bytes(name);
        self.submit("getxattr", ino.0, move |fs| {
            answer(
                "getxattr",
                reply,
                fs.getxattr(ino.0, &name, size),
                xattr_reply,
            )
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.submit("listxattr", ino.0, move |fs| {
            answer("listxattr", reply, fs.listxattr(ino.0, size), xattr_reply)
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = bytes(name);
        self.submit("removexattr", ino.0, move |fs| {
            answer(
                "removexattr",
                reply,
                fs.removexattr(ino.0, &name),
                |r, ()| r.ok(),
            )
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let who = caller(req);
        self.submit("access", ino.0, move |fs| {
            answer(
                "access",
                reply,
                fs.access(ino.0, mask.bits(), who),
                |r, ()| r.ok(),
            )
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (name, who, ttl) = (bytes(name), caller(req), self.entry_ttl);
        let flags = ops::OpenFlags::from_bits(flags);
        self.submit("create", parent.0, move |fs| {
            let res = fs.create(parent.0, &name, mode, flags, who);
            answer("create", reply, res, |r, (i, fh)| {
                r.created(
                    &fs.kernel_ttl(ttl),
                    &file_attr(&i),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                )
            })
        });
    }

    fn getlk(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        let r = lock_request(req, ino, fh, lock_owner, (start, end, typ, pid));
        self.submit("getlk", ino.0, move |fs| {
            answer(
                "getlk",
                reply,
                fs.locks().getlk(&r),
                |reply, held| match held {
                    Some(l) => reply.locked(l.start, l.end, lock_type(l.write), l.pid),
                    None => reply.locked(start, end, libc::F_UNLCK, 0),
                },
            )
        });
    }

    fn setlk(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let r = lock_request(req, ino, fh, lock_owner, (start, end, typ, pid));
        self.submit("setlk", ino.0, move |fs| {
            // Answered now, or later by whichever thread frees the lock.
            let done = Box::new(move |res| answer("setlk", reply, res, |r, ()| r.ok()));
            fs.locks().setlk(r, sleep, done)
        });
    }
}

/// A lock request of the kernel, for `crate::locks`.
fn lock_request(
    req: &Request,
    ino: INodeNo,
    fh: FileHandle,
    owner: LockOwner,
    (start, end, typ, pid): (u64, u64, i32, u32),
) -> crate::locks::Request {
    crate::locks::Request {
        ino: ino.0,
        fh: fh.0,
        owner: owner.0,
        start,
        end,
        typ,
        pid,
        tid: req.pid(),
    }
}

fn lock_type(write: bool) -> i32 {
    if write {
        libc::F_WRLCK
    } else {
        libc::F_RDLCK
    }
}
