//! The change feed's rows (table `changes`): what one change touched, so
//! that the other mounts of the volume can drop exactly that from their
//! caches.
//!
//! The store writes an [`Event`] with every write call that changes what a
//! user can see, in the same round trip as the change itself
//! (`Store::publish_changes_as` turns it on for a mount). Which entries and
//! inodes a call touched is derived here from its [`Write`]s and from the
//! conditional statement it runs, so no change site can forget its event.
//! Reading the feed back is `Store::read_changes`; following it is
//! `crate::feed`.

use super::event::{event_from_row, Event};
use super::session::Store;
use super::writes::{name_key, Write};
use super::Result;

/// What one write call touched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub names: Vec<Vec<u8>>,
    pub inos: Vec<u64>,
    pub versions: Vec<(u64, i64)>,
}

impl Touched {
    /// One entry.
    pub fn name(parent: u64, name: &[u8]) -> Touched {
        Touched {
            names: vec![name_key(parent, name)],
            ..Touched::default()
        }
    }

    /// One inode.
    pub fn ino(ino: u64) -> Touched {
        Touched {
            inos: vec![ino],
            ..Touched::default()
        }
    }

    /// Nothing (a write no other mount can have cached).
    pub fn none() -> Touched {
        Touched::default()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.inos.is_empty()
    }

    /// Adds what `w` touches. A new inode touches nothing (no mount can
    /// have cached it; its name is a write of its own); bookkeeping writes
    /// (rename journal, a finished rename's mark) change nothing visible.
    pub fn add(&mut self, w: &Write) {
        match w {
            Write::DeleteInode(ino) | Write::Update(ino, _) => self.inos.push(*ino),
            Write::Commit(i) => {
                self.inos.push(i.ino);
                self.versions.push((i.ino, i.version));
            }
            Write::PutDentry(parent, d) => self.names.push(name_key(*parent, &d.name)),
            Write::DeleteDentry(parent, name, _) => self.names.push(name_key(*parent, name)),
            Write::PutInode(..)
            | Write::ClearMoving(..)
            | Write::Journal(..)
            | Write::Unjournal(_)
            | Write::Usage(_)
            | Write::Removing(..)
            | Write::Event(_) => {}
        }
    }

    /// The event of these touches, made now by `origin`.
    pub fn into_event(mut self, origin: &str, at: i64) -> Event {
        self.names.sort();
        self.names.dedup();
        self.inos.sort_unstable();
        self.inos.dedup();
        Event {
            origin: origin.to_string(),
            at,
            id: rand::random::<i64>(),
            names: self.names,
            inos: self.inos,
            versions: self.versions,
            unlocked: Vec::new(),
        }
    }
}

impl Store {
    /// The change feed's rows of one partition written after `after_ns`.
    pub fn read_changes(&self, bucket: i64, after_ns: i64) -> Result<Vec<Event>> {
        let v = (self.owner, &self.env, bucket, after_ns);
        let rows = self.exec(&self.st.read_changes, v)?;
        Ok(rows.into_iter().filter_map(event_from_row).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Change, Content, Dentry, Inode, Kind};

    #[test]
    fn writes_touch_their_entries_and_inodes() {
        let d = Dentry {
            name: b"a".to_vec(),
            ino: 9,
            kind: Kind::File,
        };
        let mut t = Touched::name(1, b"b");
        t.add(&Write::PutDentry(1, d));
        t.add(&Write::Update(1, Change::times(5)));
        t.add(&Write::Journal(3, 1, b"c".to_vec()));
        t.add(&Write::Update(1, Change::times(6)));
        let e = t.into_event("m", 7);
        let entries: Vec<(u64, &[u8])> = e.entries().collect();
        assert_eq!(entries, vec![(1, &b"a"[..]), (1, &b"b"[..])]);
        assert_eq!(e.inos, vec![1]);
    }

    #[test]
    fn commits_carry_their_version() {
        let inode = Inode {
            ino: 4,
            kind: Kind::File,
            perm: 0o644,
            uid: 0,
            gid: 0,
            nlink: 1,
            rdev: 0,
            size: 0,
            atime_ns: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            parent: 1,
            version: 77,
            target: Vec::new(),
            content: Content::Inline(Default::default()),
            xattrs: Default::default(),
        };
        let mut t = Touched::none();
        t.add(&Write::Commit(inode));
        t.add(&Write::Update(2, Change::times(1)));
        let e = t.into_event("m", 1);
        assert_eq!(e.inos, vec![2, 4]);
        assert_eq!(e.versions, vec![(4, 77)]);
    }

    #[test]
    fn buckets_cover_ten_seconds() {
        let s = 1_000_000_000;
        assert_eq!(Event::bucket(0), Event::bucket(10 * s - 1));
        assert_ne!(Event::bucket(10 * s - 1), Event::bucket(10 * s));
        assert_eq!(Event::bucket(-1), -1);
    }
}
