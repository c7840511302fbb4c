//! POSIX lock arithmetic on one inode, in memory: an owner's ranges are
//! split and merged as fcntl(2) says, and conflicts are found between
//! holders (a mount and a lock owner). Also the encoding of one mount's
//! locks in its element of the `locks` table.

/// The last byte a lock can cover (the kernel's OFFSET_MAX).
pub const OFFSET_MAX: u64 = i64::MAX as u64;

/// One locked range of one owner (`end` inclusive, as FUSE sends it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lock {
    pub owner: u64,
    pub start: u64,
    pub end: u64,
    pub write: bool,
    pub pid: u32,
}

impl Lock {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }
}

/// Bytes of one encoded lock.
const ENCODED: usize = 29;

/// The element of one mount: its locks, 29 bytes each.
pub fn encode(locks: &[Lock]) -> Vec<u8> {
    let mut out = Vec::with_capacity(locks.len() * ENCODED);
    for l in locks {
        out.extend_from_slice(&l.owner.to_be_bytes());
        out.extend_from_slice(&l.start.to_be_bytes());
        out.extend_from_slice(&l.end.to_be_bytes());
        out.push(u8::from(l.write));
        out.extend_from_slice(&l.pid.to_be_bytes());
    }
    out
}

/// The locks of an element; a malformed tail is skipped.
pub fn decode(b: &[u8]) -> Vec<Lock> {
    let u64_at = |c: &[u8], i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&c[i..i + 8]);
        u64::from_be_bytes(a)
    };
    b.chunks_exact(ENCODED)
        .map(|c| Lock {
            owner: u64_at(c, 0),
            start: u64_at(c, 8),
            end: u64_at(c, 16),
            write: c[24] != 0,
            pid: u32::from_be_bytes([c[25], c[26], c[27], c[28]]),
        })
        .collect()
}

/// Removes `owner`'s locks on `start..=end`, splitting those that stick
/// out. True if anything changed.
pub fn unlock(locks: &mut Vec<Lock>, owner: u64, start: u64, end: u64) -> bool {
    let mut out = Vec::with_capacity(locks.len() + 1);
    let mut changed = false;
    for l in locks.drain(..) {
        if l.owner != owner || !l.overlaps(start, end) {
            out.push(l);
            continue;
        }
        changed = true;
        if l.start < start {
            out.push(Lock {
                end: start - 1,
                ..l
            });
        }
        if l.end > end {
            out.push(Lock {
                start: end + 1,
                ..l
            });
        }
    }
    *locks = out;
    changed
}

/// Sets `new` for its owner: what the owner held on its range is replaced
/// (an upgrade or a downgrade), and touching or overlapping ranges of the
/// same kind are merged.
pub fn lock(locks: &mut Vec<Lock>, new: Lock) {
    unlock(locks, new.owner, new.start, new.end);
    let mut merged = new;
    locks.retain(|l| {
        let touches = l.owner == merged.owner
            && l.write == merged.write
            && l.start <= merged.end.saturating_add(1)
            && merged.start <= l.end.saturating_add(1);
        if touches {
            merged.start = merged.start.min(l.start);
            merged.end = merged.end.max(l.end);
        }
        !touches
    });
    locks.push(merged);
    locks.sort_by_key(|l| (l.owner, l.start));
}

/// Removes every lock of `owner`; true if it held any.
pub fn drop_owner(locks: &mut Vec<Lock>, owner: u64) -> bool {
    let before = locks.len();
    locks.retain(|l| l.owner != owner);
    locks.len() != before
}

/// The first lock of `holders` (mount, locks) that conflicts with `want`,
/// asked by `owner` of mount `me`, and that lock's mount.
pub fn conflict<'a>(
    holders: impl IntoIterator<Item = (&'a str, Vec<Lock>)>,
    me: &str,
    want: &Lock,
) -> Option<(String, Lock)> {
    for (mount, locks) in holders {
        for l in locks {
            let mine = mount == me && l.owner == want.owner;
            if !mine && l.overlaps(want.start, want.end) && (want.write || l.write) {
                return Some((mount.to_string(), l));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(owner: u64, start: u64, end: u64, write: bool) -> Lock {
        Lock {
            owner,
            start,
            end,
            write,
            pid: 7,
        }
    }

    #[test]
    fn unlocking_the_middle_splits() {
        let mut v = vec![l(1, 0, 99, true)];
        assert!(unlock(&mut v, 1, 10, 19));
        assert_eq!(v, vec![l(1, 0, 9, true), l(1, 20, 99, true)]);
        assert!(!unlock(&mut v, 2, 0, OFFSET_MAX));
        assert!(unlock(&mut v, 1, 0, OFFSET_MAX));
        assert!(v.is_empty());
    }

    #[test]
    fn locks_merge_and_replace() {
        let mut v = Vec::new();
        lock(&mut v, l(1, 0, 9, false));
        lock(&mut v, l(1, 10, 19, false));
        assert_eq!(v, vec![l(1, 0, 19, false)]);
        // A write lock in the middle splits the read lock.
        lock(&mut v, l(1, 5, 14, true));
        assert_eq!(
            v,
            vec![l(1, 0, 4, false), l(1, 5, 14, true), l(1, 15, 19, false)]
        );
        // The whole range back to read: one range.
        lock(&mut v, l(1, 0, 19, false));
        assert_eq!(v, vec![l(1, 0, 19, false)]);
        lock(&mut v, l(2, 0, OFFSET_MAX, false));
        assert_eq!(v.len(), 2);
        assert!(drop_owner(&mut v, 1));
        assert_eq!(v, vec![l(2, 0, OFFSET_MAX, false)]);
    }

    #[test]
    fn conflicts_need_an_overlap_and_a_writer_of_another_holder() {
        let a = vec![l(1, 0, 9, true), l(2, 100, 199, false)];
        let holders = || vec![("a", a.clone())];
        assert!(conflict(holders(), "a", &l(1, 0, 9, true)).is_none());
        assert!(conflict(holders(), "a", &l(3, 10, 99, true)).is_none());
        assert!(conflict(holders(), "a", &l(3, 150, 150, false)).is_none());
        let (m, c) = conflict(holders(), "a", &l(3, 150, 150, true)).expect("conflict");
        assert_eq!((m.as_str(), c.owner), ("a", 2));
        // The same owner id on another mount is another holder.
        assert!(conflict(holders(), "b", &l(1, 5, 5, false)).is_some());
    }

    #[test]
    fn encoding_round_trips() {
        let v = vec![l(u64::MAX, 0, OFFSET_MAX, true), l(3, 5, 6, false)];
        assert_eq!(decode(&encode(&v)), v);
        assert!(decode(&[1, 2, 3]).is_empty());
    }
}
