//! Removals interrupted between their two steps, settled when a mount
//! starts.
//!
//! unlink and rmdir remove a name with a conditional write, then make the
//! link counts follow (the file's record of its names, the parent's
//! subdirectories) in the next round trip. Beside the conditional write each
//! worker records the removal it is making (table `removals`, one row per
//! worker, replaced by its next removal). A process killed between the two
//! steps leaves that row; [`Store::finish_removals`] settles every row from
//! what Cassandra holds now, so settling a removal that completed, failed,
//! or is still under way on a live mount changes nothing that should stay.

use scylla::value::CqlValue;

use super::writes::{name_key, Change, SetOp, Write};
use super::{Result, Store};

/// One recorded removal: the name `parent`/`name` of inode `ino`.
pub(super) struct Removal {
    pub parent: u64,
    pub name: Vec<u8>,
    pub ino: u64,
    pub dir: bool,
}

impl Store {
    /// Settles the recorded removals whose name is gone: a file's name
    /// leaves its record, a directory leaves its parent's subdirectories
    /// (unless it lives in that parent under another name). Inodes left
    /// without a name stay for the cleaner. Returns how many were settled.
    pub fn finish_removals(&self) -> Result<usize> {
        let mut settled = 0;
        for r in self.removal_rows()? {
            let Removal {
                parent,
                name,
                ino,
                dir,
            } = r;
            let now = self.get_raw_dentry_serial(parent, &name)?;
            if now.is_some_and(|(d, _)| d.ino == ino) {
                continue; // the name is still there: nothing was removed
            }
            if dir {
                // Moved back into the same parent under another name?
                let under = self.get_inode(ino)?.is_some_and(|i| i.parent == parent);
                if under && self.list_dir(parent)?.iter().any(|d| d.ino == ino) {
                    continue;
                }
                let c = Change::default().with_subdirs(SetOp::Remove(ino));
                self.seal_removed(ino, vec![Write::Update(parent, c)])?;
            } else {
                let c = Change::default().with_names(SetOp::Remove(name_key(parent, &name)));
                self.apply(vec![Write::Update(ino, c)])?;
            }
            settled += 1;
        }
        Ok(settled)
    }

    /// The removals recorded by workers (`Write::Removing`): parent, name,
    /// inode, whether a directory.
    pub(super) fn removal_rows(&self) -> Result<Vec<Removal>> {
        let rows = self.exec(&self.st.removals, (self.owner, &self.env))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let mut c = r.columns.into_iter();
                match (c.next(), c.next(), c.next(), c.next()) {
                    (
                        Some(Some(CqlValue::BigInt(p))),
                        Some(Some(CqlValue::Blob(name))),
                        Some(Some(CqlValue::BigInt(ino))),
                        Some(Some(CqlValue::Boolean(dir))),
                    ) => Some(Removal {
                        parent: p as u64,
                        name,
                        ino: ino as u64,
                        dir,
                    }),
                    _ => None,
                }
            })
            .collect())
    }
}
