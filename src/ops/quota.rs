//! The volume's usage and quota as this mount sees them: the counters and
//! limits read from Cassandra (read again when older than [`REFRESH`], on
//! the next statfs, create or growing write) plus what this mount changed
//! since. `statfs` answers from them, and what would grow the volume past
//! its quota is refused with EDQUOT before anything is written. Nothing
//! that shrinks it (unlink, rmdir, truncate) is ever refused.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{Fs, StatFs, NAME_MAX};
use crate::error::{FsError, FsResult};
use crate::store::{Limits, Store, Usage, Write};

/// How long the counters and quota read from Cassandra are used before
/// they are read again: with other mounts writing, the bound on how late
/// this mount learns of their growth.
pub const REFRESH: Duration = Duration::from_secs(2);
/// They are read again sooner, but not more often than this, once this
/// mount alone used an eighth of the room left under a limit at the last
/// read: other mounts may be writing as fast, so mounts writing at once
/// stop close to the quota.
pub const REFRESH_MIN: Duration = Duration::from_millis(25);
/// The block size statfs reports.
const BSIZE: u64 = 4096;
/// Free blocks (and free inodes) statfs reports without a quota.
const UNLIMITED: u64 = 1 << 40;

struct Seen {
    /// The counters as last read, plus this mount's changes since.
    used: Usage,
    limits: Limits,
    read_at: Instant,
    /// A read is under way (others use what is known meanwhile).
    reading: bool,
    /// This mount's changes since the last read started.
    since: Usage,
}

impl Seen {
    /// Whether the counters should be read again.
    fn stale(&self) -> bool {
        let age = self.read_at.elapsed();
        if self.reading || age < REFRESH_MIN {
            return false;
        }
        // Room left under each limit at the last read, less what this
        // mount used since.
        let used_up = |since: i64, used: i64, max: Option<u64>| {
            max.is_some_and(|m| {
                let room = (m as i64).saturating_sub(used - since).max(0);
                since > 0 && since >= room / 8
            })
        };
        age >= REFRESH
            || used_up(self.since.bytes, self.used.bytes, self.limits.max_bytes)
            || used_up(self.since.inodes, self.used.inodes, self.limits.max_inodes)
    }
}

/// What this mount knows of its volume's usage and quota.
pub(super) struct Quota {
    seen: Mutex<Seen>,
}

impl Quota {
    /// Reads the volume's counters and quota (when the mount starts).
    pub(super) fn load(store: &Store) -> crate::store::Result<Quota> {
        let (used, limits) = store.usage_and_limits()?;
        Ok(Quota {
            seen: Mutex::new(Seen {
                used,
                limits,
                read_at: Instant::now(),
                reading: false,
                since: Usage::default(),
            }),
        })
    }

    /// Usage and limits, read again first when stale ([`Seen::stale`]). A
    /// failed read keeps what is known (it is tried again later).
    fn current(&self, store: &Store) -> (Usage, Limits) {
        {
            let mut s = self.seen.lock();
            if !s.stale() {
                return (s.used, s.limits);
            }
            s.reading = true;
            s.since = Usage::default();
        }
        let got = store.usage_and_limits();
        let mut s = self.seen.lock();
        s.reading = false;
        s.read_at = Instant::now();
        match got {
            Ok((used, limits)) => {
                s.used = used.plus(s.since);
                s.limits = limits;
            }
            Err(e) => log::warn!("cannot read the volume's usage and quota: {e}"),
        }
        (s.used, s.limits)
    }

    /// Records a change this mount made (its counter update is on its way).
    fn note(&self, u: Usage) {
        let mut s = self.seen.lock();
        s.used = s.used.plus(u);
        s.since = s.since.plus(u);
    }
}

/// statfs of a volume using `used` under `limits`: the quota as the size,
/// or, without one, what is used plus a large free amount (never 0 blocks:
/// `df` hides such filesystems).
fn statfs_of(used: Usage, limits: Limits) -> StatFs {
    let bytes = used.bytes.max(0) as u64;
    let inodes = used.inodes.max(0) as u64;
    let (blocks, bfree) = match limits.max_bytes {
        Some(max) => (
            max.div_ceil(BSIZE).max(1),
            max.saturating_sub(bytes) / BSIZE,
        ),
        None => (bytes.div_ceil(BSIZE) + UNLIMITED, UNLIMITED),
    };
    let (files, ffree) = match limits.max_inodes {
        Some(max) => (max, max.saturating_sub(inodes)),
        None => (inodes + UNLIMITED, UNLIMITED),
    };
    StatFs {
        blocks,
        bfree,
        files,
        ffree,
        bsize: BSIZE as u32,
        namelen: NAME_MAX as u32,
    }
}

impl Fs {
    /// statfs: the volume's size and use from its counters and quota.
    pub fn statfs(&self) -> StatFs {
        let (used, limits) = self.quota.current(&self.store);
        statfs_of(used, limits)
    }

    /// EDQUOT when the volume growing by `grow` bytes would pass its quota.
    pub(super) fn quota_allows_bytes(&self, grow: u64) -> FsResult<()> {
        if grow == 0 {
            return Ok(());
        }
        let (used, limits) = self.quota.current(&self.store);
        match limits.max_bytes {
            Some(max) if (used.bytes.max(0) as u64).saturating_add(grow) > max => {
                Err(FsError::Quota)
            }
            _ => Ok(()),
        }
    }

    /// EDQUOT when one more inode would pass the volume's inode quota.
    pub(super) fn quota_allows_inode(&self) -> FsResult<()> {
        let (used, limits) = self.quota.current(&self.store);
        match limits.max_inodes {
            Some(max) if used.inodes.max(0) as u64 >= max => Err(FsError::Quota),
            _ => Ok(()),
        }
    }

    /// Records a change of the volume's usage this mount just made.
    pub(super) fn counted(&self, u: Usage) {
        self.quota.note(u);
    }

    /// Runs a conditional delete of an inode that counts for `freed`,
    /// taking it out of the counters. `likely`: whether the delete is
    /// expected to apply; then the counter update goes beside it (one round
    /// trip), else it is sent only once the delete applied. A wrong guess
    /// is corrected with one more update. True when deleted.
    pub(super) fn delete_counted(
        &self,
        freed: Usage,
        likely: bool,
        delete: impl FnOnce(Vec<Write>) -> crate::store::Result<bool>,
    ) -> FsResult<bool> {
        let beside = if likely {
            vec![Write::Usage(freed.negated())]
        } else {
            Vec::new()
        };
        let deleted = delete(beside)?;
        if deleted != likely {
            let fix = if deleted { freed.negated() } else { freed };
            if let Err(e) = self.store.add_usage(fix) {
                log::warn!("the volume's usage counters are off by {fix:?}: {e}");
            }
        }
        if deleted {
            self.counted(freed.negated());
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(bytes: i64, inodes: i64) -> Usage {
        Usage { bytes, inodes }
    }

    #[test]
    fn without_a_quota_the_size_grows_with_use() {
        let s = statfs_of(used(10 * 4096 + 1, 7), Limits::default());
        assert_eq!(s.blocks - s.bfree, 11);
        assert_eq!(s.files - s.ffree, 7);
        assert!(statfs_of(used(0, 0), Limits::default()).blocks > 0);
    }

    #[test]
    fn a_quota_is_the_size() {
        let l = Limits {
            max_bytes: Some(1 << 20),
            max_inodes: Some(100),
        };
        let s = statfs_of(used(4096 * 10, 40), l);
        assert_eq!((s.blocks, s.bfree), (256, 246));
        assert_eq!((s.files, s.ffree), (100, 60));
        let over = statfs_of(used(2 << 20, 200), l);
        assert_eq!((over.bfree, over.ffree), (0, 0));
        let tiny = Limits {
            max_bytes: Some(10),
            max_inodes: None,
        };
        assert_eq!(statfs_of(used(-5, -1), tiny).blocks, 1);
    }
}
