//! `cassfs volumes` (alias `du`): every volume with its file and directory
//! counts, logical bytes, and the bytes of content blocks it shares with
//! other volumes of its owner (blocks are stored once per owner).

use std::collections::{HashMap, HashSet};

use serde_json::json;

use super::snapshot::{self, VolumeRows};
use super::{CmdResult, Progress, Scope, VolumeKey};
use crate::store::{Hash, Keyspace};

#[derive(Default, Debug)]
pub struct Usage {
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    pub logical_bytes: u64,
    pub stored_block_bytes: u64,
    pub shared_bytes: u64,
}

/// The usage of each volume of `rows`.
pub fn usage(rows: &HashMap<VolumeKey, VolumeRows>) -> HashMap<VolumeKey, Usage> {
    // Which environments of an owner use each block, and its length.
    let mut users: HashMap<(i64, Hash), HashSet<&str>> = HashMap::new();
    let mut lens: HashMap<(i64, Hash), u64> = HashMap::new();
    for ((owner, env), v) in rows {
        for i in v.inodes.values().filter(|i| i.kind.is_some()) {
            for (n, h) in i.blocks.iter().enumerate() {
                if *h == crate::store::HOLE {
                    continue;
                }
                users.entry((*owner, *h)).or_default().insert(env.as_str());
                lens.entry((*owner, *h)).or_insert_with(|| i.block_len(n));
            }
        }
    }
    let mut out = HashMap::new();
    for ((owner, env), v) in rows {
        let named = v.named();
        let mut u = Usage::default();
        let mut mine: HashSet<Hash> = HashSet::new();
        for i in v
            .inodes
            .values()
            .filter(|i| i.kind.is_some() && named.contains(&i.ino))
        {
            match i.kind {
                Some(1) => {
                    u.files += 1;
                    u.logical_bytes += i.size;
                    mine.extend(i.distinct_blocks());
                }
                Some(2) => u.dirs += 1,
                _ => u.other += 1,
            }
        }
        for h in mine {
            let len = lens.get(&(*owner, h)).copied().unwrap_or(0);
            u.stored_block_bytes += len;
            if users.get(&(*owner, h)).is_some_and(|s| s.len() > 1) {
                u.shared_bytes += len;
            }
        }
        out.insert((*owner, env.clone()), u);
    }
    out
}

pub fn run(ks: &Keyspace, scope: &Scope, json_out: bool) -> CmdResult<()> {
    let progress = Progress::new("reading volumes");
    let volumes = snapshot::volumes(ks, scope)?;
    // Sharing is counted among all environments of each owner in scope.
    let owners = Scope {
        owner: scope.owner,
        environment: None,
    };
    let rows = snapshot::volume_rows(ks, &owners, &progress)?;
    progress.done();
    let usage = usage(&rows);
    let mut docs = Vec::new();
    let mut text = Vec::new();
    for ((owner, env), _) in &volumes {
        let key = (*owner, env.clone());
        let empty = Usage::default();
        let u = usage.get(&key).unwrap_or(&empty);
        text.push(format!(
            "({owner}, {env}): {} files, {} directories, {} other, {} bytes, \
             {} bytes in blocks, {} shared with other environments",
            u.files, u.dirs, u.other, u.logical_bytes, u.stored_block_bytes, u.shared_bytes
        ));
        docs.push(json!({
            "owner": owner, "environment": env, "files": u.files, "directories": u.dirs,
            "other": u.other, "logical_bytes": u.logical_bytes,
            "block_bytes": u.stored_block_bytes, "shared_bytes": u.shared_bytes,
        }));
    }
    text.push(format!(
        "volumes: {} in keyspace {}",
        volumes.len(),
        ks.name()
    ));
    super::print(json_out, &json!({ "volumes": docs }), &text.join("\n"));
    Ok(())
}
