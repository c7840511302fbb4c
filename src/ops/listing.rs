//! Open directories: what `opendir`/`readdir` hand out, and their offsets.
//!
//! A small directory (at most `SMALL_DIR` entries) is read whole when it is
//! opened: a snapshot, its offsets positions in it, and its listing cached.
//! A large one is read a page at a time, from the name after the last entry
//! the kernel took (a name cursor): a handle holds one page, never the
//! whole listing, and an entry added or removed by another mount while the
//! listing runs neither repeats nor hides any other entry.
//!
//! A read-only mount's kernel opens no directory: its listings arrive
//! without a handle, numbered the same way, and resume after the name
//! last handed out at their offset ([`Cursors`], per directory).

use std::collections::HashMap;

use parking_lot::Mutex;

use super::{DirEntry, Fs};
use crate::error::{FsError, FsResult};
use crate::store::{Inode, Kind};

/// One open directory.
pub(super) enum DirHandle {
    Snapshot(Vec<DirEntry>),
    Cursor {
        dir: u64,
        parent: u64,
        /// (offset, name) of the entries handed out last (and the one the
        /// page started after): where the next readdir may resume.
        window: Window,
    },
}

/// Offsets of `.` and `..` in every listing.
const DOTS: u64 = 2;

/// (offset, name) of entries handed out: where a next call may resume.
type Window = Vec<(u64, Vec<u8>)>;

/// Where listings without a handle resume (a read-only mount's kernel
/// opens no directory): per directory, the (offset, name) of the entries
/// handed out lately. Kept small: at most [`CURSOR_DIRS`] directories and
/// [`CURSOR_NAMES`] names each; an offset not found is counted again from
/// the start of the directory.
#[derive(Default)]
pub(super) struct Cursors(Mutex<HashMap<u64, Window>>);

const CURSOR_DIRS: usize = 256;
const CURSOR_NAMES: usize = 4096;

impl Cursors {
    /// The name handed out last at `offset` in `dir`.
    fn find(&self, dir: u64, offset: u64) -> Option<Vec<u8>> {
        let map = self.0.lock();
        let window = map.get(&dir)?;
        let found = window.iter().rev().find(|(o, _)| *o == offset);
        found.map(|(_, n)| n.clone())
    }

    /// Adds a call's window to what `dir` keeps (the newest last).
    fn keep(&self, dir: u64, window: Window) {
        let mut map = self.0.lock();
        if map.len() >= CURSOR_DIRS && !map.contains_key(&dir) {
            map.clear();
        }
        let kept = map.entry(dir).or_default();
        kept.extend(window);
        if kept.len() > CURSOR_NAMES {
            kept.drain(..kept.len() - CURSOR_NAMES / 2);
        }
    }
}

/// `.` and `..` from `offset` on, numbered 1 and 2.
fn dots_from(ino: u64, parent: u64, offset: u64) -> Vec<(u64, DirEntry)> {
    dots(ino, parent)
        .into_iter()
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, e))
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .collect()
}

/// Numbers a page of entries from `start + 1`, with its window (which
/// also holds the name the page started after, at `start`).
fn numbered(
    start: u64,
    after: Option<Vec<u8>>,
    page: impl Iterator<Item = DirEntry>,
) -> (Window, Vec<(u64, DirEntry)>) {
    let mut window: Window = after.map(|a| (start, a)).into_iter().collect();
    let mut out = Vec::new();
    for (n, e) in (start + 1..).zip(page) {
        window.push((n, e.name.clone()));
        out.push((n, e));
    }
    (window, out)
}

fn dots(ino: u64, parent: u64) -> [DirEntry; 2] {
    [
        DirEntry {
            ino,
            kind: Kind::Dir,
            name: b".".to_vec(),
        },
        DirEntry {
            ino: parent,
            kind: Kind::Dir,
            name: b"..".to_vec(),
        },
    ]
}

impl Fs {
    /// Opens a directory. Also says whether the listing came from the local
    /// cache (unchanged as far as this mount knows: the kernel may keep its
    /// cached copy).
    pub fn opendir(&self, ino: u64) -> FsResult<(u64, bool)> {
        let dir = self.load_dir(ino)?;
        let (handle, cached) = match self.small_listing(ino)? {
            Some((entries, cached)) => {
                let mut list = dots(ino, dir.parent).to_vec();
                list.extend(entries);
                (DirHandle::Snapshot(list), cached)
            }
            None => {
                let window = Vec::new();
                let (dir, parent) = (ino, dir.parent);
                (
                    DirHandle::Cursor {
                        dir,
                        parent,
                        window,
                    },
                    false,
                )
            }
        };
        let fh = self.new_fh();
        self.dirs.lock().insert(fh, handle);
        Ok((fh, cached))
    }

    /// The whole listing of a small directory (and whether it was cached),
    /// or `None` for a large one.
    fn small_listing(&self, ino: u64) -> FsResult<Option<(Vec<DirEntry>, bool)>> {
        // New files of this mount not committed yet are listed too.
        let to_entries = |l: Vec<crate::store::Dentry>| {
            let mut out: Vec<DirEntry> = l
                .into_iter()
                .map(|d| DirEntry {
                    ino: d.ino,
                    kind: d.kind,
                    name: d.name,
                })
                .collect();
            for (name, ino) in self.files.pending_in(ino) {
                if !out.iter().any(|e| e.name == name) {
                    let kind = Kind::File;
                    out.push(DirEntry { ino, kind, name });
                }
            }
            out
        };
        if let Some(l) = self.cache.listing(ino) {
            return Ok(Some((to_entries(l), true)));
        }
        if self.cache.is_large_dir(ino) {
            return Ok(None);
        }
        let stale = || self.cache.stale_listing(ino).map(Some);
        let read = || self.store.list_small_dir(ino);
        let Some(l) = self.outage.read(read, stale)? else {
            self.cache.mark_large_dir(ino);
            return Ok(None);
        };
        let by_name = l.iter().map(|d| (d.name.clone(), d.clone())).collect();
        self.cache.put_listing(ino, by_name);
        Ok(Some((to_entries(l), false)))
    }

    /// Entries from `offset` on, each with the offset of the entry after it
    /// (offset i means "after the i-th entry").
    pub fn readdir(&self, fh: u64, offset: u64, max: usize) -> FsResult<Vec<(u64, DirEntry)>> {
        let (dir, parent, after) = {
            let dirs = self.dirs.lock();
            match dirs.get(&fh).ok_or(FsError::BadHandle)? {
                DirHandle::Snapshot(list) => {
                    let start = usize::try_from(offset)
                        .unwrap_or(usize::MAX)
                        .min(list.len());
                    return Ok(list[start..]
                        .iter()
                        .take(max)
                        .enumerate()
                        .map(|(i, e)| ((start + i + 1) as u64, e.clone()))
                        .collect());
                }
                DirHandle::Cursor {
                    dir,
                    parent,
                    window,
                } => {
                    let after = window.iter().find(|(o, _)| *o == offset);
                    (*dir, *parent, after.map(|(_, n)| n.clone()))
                }
            }
        };
        let mut out = dots_from(dir, parent, offset);
        let want = max.saturating_sub(out.len());
        let (window, page) = self.cursor_page(dir, offset, after, want)?;
        out.extend(page);
        if let Some(DirHandle::Cursor { window: w, .. }) = self.dirs.lock().get_mut(&fh) {
            *w = window;
        }
        Ok(out)
    }

    /// Up to `want` entries of a large directory after the one at `offset`
    /// (named `after` when known, else counted from the start), and the
    /// window of (offset, name) a next call may resume from.
    fn cursor_page(
        &self,
        dir: u64,
        offset: u64,
        after: Option<Vec<u8>>,
        want: usize,
    ) -> FsResult<(Window, Vec<(u64, DirEntry)>)> {
        let (mut next, mut after) = (offset.max(DOTS), after);
        if offset > DOTS && after.is_none() {
            // An offset not handed out lately (seekdir): counted again
            // from the start.
            (next, after) = self.skip_to(dir, offset - DOTS)?;
        }
        let page = self.store.list_page(dir, after.as_deref(), want)?;
        let page = page.into_iter().map(|d| DirEntry {
            ino: d.ino,
            kind: d.kind,
            name: d.name,
        });
        Ok(numbered(next, after, page))
    }

    /// Entries of directory `ino` from `offset` on without a handle (a
    /// read-only mount, whose kernel opens no directory). Offsets count
    /// entries as in an open directory; a call resumes after the name the
    /// last calls handed out at `offset` ([`Cursors`]), so an entry added
    /// or removed meanwhile neither repeats nor hides another.
    pub fn readdir_unopened(
        &self,
        ino: u64,
        offset: u64,
        max: usize,
    ) -> FsResult<Vec<(u64, DirEntry)>> {
        let dir = self.load_dir(ino)?;
        let mut out = dots_from(ino, dir.parent, offset);
        let want = max.saturating_sub(out.len());
        let after = (offset > DOTS)
            .then(|| self.cursors.find(ino, offset))
            .flatten();
        let (window, page) = match self.small_listing(ino)? {
            Some((entries, _)) => {
                let start = match &after {
                    Some(a) => entries.partition_point(|e| e.name <= *a),
                    None => usize::try_from(offset.saturating_sub(DOTS)).unwrap_or(usize::MAX),
                };
                let page = entries.into_iter().skip(start).take(want);
                numbered(offset.max(DOTS), after, page)
            }
            None => self.cursor_page(ino, offset, after, want)?,
        };
        self.cursors.keep(ino, window);
        out.extend(page);
        Ok(out)
    }

    /// The offset and name of the `n`-th entry of a large directory.
    fn skip_to(&self, dir: u64, n: u64) -> FsResult<(u64, Option<Vec<u8>>)> {
        let (mut at, mut after) = (0u64, None::<Vec<u8>>);
        while at < n {
            let want = usize::try_from(n - at).unwrap_or(usize::MAX).min(1024);
            let page = self.store.list_page(dir, after.as_deref(), want)?;
            let Some(last) = page.last() else { break };
            at += page.len() as u64;
            after = Some(last.name.clone());
        }
        Ok((at + DOTS, after))
    }

    /// Like readdir, with each entry's attributes (read in parallel).
    pub fn readdirplus(
        &self,
        fh: u64,
        offset: u64,
        max: usize,
    ) -> FsResult<Vec<(u64, DirEntry, Inode)>> {
        self.with_attrs(self.readdir(fh, offset, max)?)
    }

    /// Like readdir_unopened, with each entry's attributes.
    pub fn readdirplus_unopened(
        &self,
        ino: u64,
        offset: u64,
        max: usize,
    ) -> FsResult<Vec<(u64, DirEntry, Inode)>> {
        self.with_attrs(self.readdir_unopened(ino, offset, max)?)
    }

    /// Listed entries with their attributes (read in parallel); an entry
    /// whose inode vanished meanwhile is left out.
    fn with_attrs(&self, entries: Vec<(u64, DirEntry)>) -> FsResult<Vec<(u64, DirEntry, Inode)>> {
        let mut attrs: Vec<Option<Inode>> = entries
            .iter()
            .map(|(_, e)| self.cache.inode(e.ino))
            .collect();
        let missing: Vec<u64> = entries
            .iter()
            .zip(&attrs)
            .filter(|(_, a)| a.is_none())
            .map(|((_, e), _)| e.ino)
            .collect();
        let epoch = self.cache.inode_epoch();
        let mut fetched = self.store.get_inodes(&missing)?.into_iter();
        for a in attrs.iter_mut().filter(|a| a.is_none()) {
            if let Some(Some(i)) = fetched.next() {
                self.cache.put_inode_read(&i, epoch);
                *a = Some(i);
            }
        }
        let mut out = Vec::with_capacity(entries.len());
        for ((off, e), a) in entries.into_iter().zip(attrs) {
            if let Some(mut i) = a {
                self.files.overlay(&mut i);
                out.push((off, e, i));
            }
        }
        Ok(out)
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.lock().remove(&fh);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> DirEntry {
        DirEntry {
            ino: 10,
            kind: Kind::File,
            name: name.as_bytes().to_vec(),
        }
    }

    #[test]
    fn numbered_pages_continue_the_offsets() {
        let page = [entry("b"), entry("c")].into_iter();
        let (window, out) = numbered(5, Some(b"a".to_vec()), page);
        let offsets: Vec<u64> = out.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, [6, 7]);
        assert_eq!(
            window,
            [(5, b"a".to_vec()), (6, b"b".to_vec()), (7, b"c".to_vec())]
        );
    }

    #[test]
    fn cursors_find_the_newest_name_at_an_offset() {
        let c = Cursors::default();
        c.keep(7, vec![(3, b"x".to_vec()), (4, b"y".to_vec())]);
        c.keep(7, vec![(3, b"w".to_vec())]);
        assert_eq!(c.find(7, 3), Some(b"w".to_vec()));
        assert_eq!(c.find(7, 4), Some(b"y".to_vec()));
        assert_eq!(c.find(7, 9), None);
        assert_eq!(c.find(8, 3), None);
    }

    #[test]
    fn cursors_stay_small() {
        let c = Cursors::default();
        let many: Window = (0..CURSOR_NAMES as u64 + 10)
            .map(|o| (o, o.to_le_bytes().to_vec()))
            .collect();
        c.keep(1, many);
        let kept = c.0.lock().get(&1).map_or(0, Vec::len);
        assert!(kept <= CURSOR_NAMES, "{kept} names kept");
        let last = CURSOR_NAMES as u64 + 9;
        assert_eq!(c.find(1, last), Some(last.to_le_bytes().to_vec()));
        for dir in 0..CURSOR_DIRS as u64 + 1 {
            c.keep(dir + 100, vec![(3, b"n".to_vec())]);
        }
        assert!(c.0.lock().len() <= CURSOR_DIRS);
    }
}
