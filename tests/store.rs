//! The blocking store API (`cassfs::store`) against the real Cassandra:
//! schema application (twice), and rows written and read back.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cassfs::store::{
    apply_schema, name_key, Change, Consistency, Content, Dentry, Hash, Inode, Kind, SetOp, Store,
    StoreConfig, StoreError, Write, BLOCK_SIZE, HOLE,
};
use sha2::{Digest, Sha256};

use common::*;

fn config(ks: &str) -> StoreConfig {
    let mut cfg = StoreConfig::new(&cassandra_addr(), ks);
    cfg.consistency = Consistency::One;
    cfg.request_timeout = Duration::from_secs(20);
    cfg
}

fn new_inode(ino: u64, kind: Kind) -> Inode {
    Inode {
        ino,
        kind,
        perm: 0o644,
        uid: 1000,
        gid: 100,
        nlink: 1,
        rdev: 0,
        size: 0,
        atime_ns: 1_700_000_000_123_456_789,
        mtime_ns: 1_700_000_001_000_000_001,
        ctime_ns: 1_700_000_002_000_000_002,
        parent: 1,
        version: 1,
        target: Vec::new(),
        content: Content::default(),
        xattrs: BTreeMap::new(),
    }
}

fn sha(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

#[test]
fn schema_twice_then_rows_round_trip() {
    // fresh_keyspace applied the schema once through the binary; apply it
    // twice more through the library: idempotent.
    let ks = fresh_keyspace("store");
    let cfg = config(&ks);
    apply_schema(&cfg, &cassfs::store::Replication::Simple(1))
        .expect("apply the schema a second time");
    apply_schema(&cfg, &cassfs::store::Replication::Simple(1))
        .expect("apply the schema a third time");

    let store = Store::open(&cfg, 7, "test").expect("open the store");
    store.ensure_volume(0, 0).expect("ensure_volume");
    store
        .ensure_volume(0, 0)
        .expect("ensure_volume again (idempotent)");
    let root = store
        .get_inode(1)
        .expect("get the root inode")
        .expect("the root exists");
    assert_eq!(root.kind, Kind::Dir, "the root is a directory");
    assert_eq!(root.ino, 1);

    // Inode numbers: unique ranges.
    let r1 = store.reserve_inodes(10).expect("reserve 10");
    let r2 = store.reserve_inodes(5).expect("reserve 5");
    assert_eq!(r1.end - r1.start, 10, "range length");
    assert_eq!(r2.end - r2.start, 5, "range length");
    assert!(r1.start > 1, "root's number is not handed out");
    assert!(
        r2.start >= r1.end || r2.end <= r1.start,
        "ranges are disjoint"
    );

    // A file with inline content and xattrs.
    let ino = r1.start;
    let mut f = new_inode(ino, Kind::File);
    let data = b"inline content".to_vec();
    f.size = data.len() as u64;
    f.content = Content::Inline(Arc::new(data.clone()));
    f.xattrs.insert(b"user.a".to_vec(), b"1".to_vec());
    f.xattrs
        .insert(vec![b'u', b's', b'e', b'r', b'.', 0xff], vec![0, 1, 2]);
    store
        .put_inode(&f, vec![name_key(1, b"f")])
        .expect("put_inode");
    let got = store
        .get_inode(ino)
        .expect("get_inode")
        .expect("inode exists");
    assert_eq!(got, f, "the inode reads back as written");

    // Attributes and content updates.
    let change = Change {
        mode: Some(0o600),
        uid: Some(42),
        ..Change::default()
    }
    .with_names(SetOp::Add(name_key(1, b"g")));
    store
        .apply(vec![Write::Update(ino, change)])
        .expect("update attributes");
    let back = store.get_inode(ino).expect("get").expect("exists");
    assert_eq!(
        (back.perm, back.uid, back.gid, back.nlink),
        (0o600, 42, f.gid, 2),
        "only the changed attributes change; a second name counts"
    );
    assert_eq!(back.content, f.content, "content untouched by an update");

    let blocks: Vec<Vec<u8>> = (0..2)
        .map(|i| pattern(unique_seed() + i, BLOCK_SIZE as usize))
        .collect();
    let hashes: Vec<Hash> = blocks.iter().map(|b| sha(b)).collect();
    store
        .put_blocks(
            hashes
                .iter()
                .zip(&blocks)
                .map(|(h, b)| (*h, Arc::new(b.clone())))
                .collect(),
        )
        .expect("put_blocks");
    store
        .put_blocks(vec![(hashes[0], Arc::new(blocks[0].clone()))])
        .expect("put_blocks again (idempotent)");
    let read = store.get_blocks(&hashes).expect("get_blocks");
    assert_eq!(read.len(), 2);
    assert!(
        *read[0] == blocks[0] && *read[1] == blocks[1],
        "blocks read back"
    );
    assert_eq!(block_rows(&ks, 7), 2, "two distinct blocks, two rows");
    assert!(
        store.get_blocks(&[sha(b"never stored")]).is_err(),
        "a missing block is an error"
    );
    store.change_refs(ino, &hashes, &[]).expect("add refs");

    let mut h = back.clone();
    h.size = 2 * BLOCK_SIZE + 10;
    h.version += 1;
    h.content = Content::Blocks(Arc::new(vec![hashes[0], HOLE, hashes[1]]));
    store.update_content(&h).expect("update_content");
    let back = store.get_inode(ino).expect("get").expect("exists");
    assert_eq!(back.content, h.content, "block list read back");
    assert_eq!(back.size, h.size);
    assert_eq!(back.version, h.version);

    // xattrs one by one.
    store
        .set_xattr(ino, b"user.new", b"value", 5)
        .expect("set_xattr");
    store.remove_xattr(ino, b"user.a", 5).expect("remove_xattr");
    let back = store.get_inode(ino).expect("get").expect("exists");
    assert_eq!(
        back.xattrs.get(&b"user.new"[..]).map(Vec::as_slice),
        Some(&b"value"[..])
    );
    assert!(
        !back.xattrs.contains_key(&b"user.a"[..]),
        "removed xattr gone"
    );

    // Directory entries, with a non-UTF-8 name.
    let name = vec![b'f', 0xff, 0xfe];
    let d = Dentry {
        name: name.clone(),
        ino,
        kind: Kind::File,
    };
    assert!(
        !store.dir_has_entries(1).expect("dir_has_entries"),
        "empty root"
    );
    store
        .apply(vec![Write::PutDentry(1, d.clone())])
        .expect("put entry");
    assert_eq!(
        store.get_dentry(1, &name).expect("get_dentry"),
        Some(d.clone())
    );
    assert!(store.dir_has_entries(1).expect("dir_has_entries"));
    let many: Vec<Dentry> = (0..120)
        .map(|i| Dentry {
            name: format!("e{i:03}").into_bytes(),
            ino: r2.start,
            kind: Kind::Symlink,
        })
        .collect();
    for e in &many {
        store
            .apply(vec![Write::PutDentry(1, e.clone())])
            .expect("put entry");
    }
    let listed = store.list_dir(1).expect("list_dir");
    assert_eq!(listed.len(), 121, "every entry listed");
    assert!(listed.contains(&d));

    // A rename as one batch.
    let renamed = Dentry {
        name: b"renamed".to_vec(),
        ..d.clone()
    };
    store
        .apply_atomic(
            vec![
                Write::DeleteDentry(1, name.clone(), ino),
                Write::PutDentry(1, renamed.clone()),
            ],
            false,
        )
        .expect("rename batch");
    assert!(
        !store
            .create_dentry(1, &renamed, Vec::new())
            .expect("create"),
        "a conditional create of an existing name is refused"
    );
    assert_eq!(store.get_dentry(1, &name).expect("get old"), None);
    assert_eq!(
        store.get_dentry(1, b"renamed").expect("get new"),
        Some(renamed)
    );
    // Rolled to a new generation, the directory holds the same entries,
    // also for a store that knew the old generation.
    let stale = Store::open(&cfg, 7, "test").expect("open again");
    assert!(stale.get_dentry(1, b"e001").expect("warm").is_some());
    store.roll(1, 0).expect("roll");
    let rolled = store.list_dir(1).expect("list after roll");
    assert_eq!(rolled.len(), 121, "every entry after the roll");
    assert_eq!(stale.list_dir(1).expect("stale list").len(), 121);
    assert!(stale.get_dentry(1, b"e002").expect("stale get").is_some());
    assert!(stale
        .create_dentry(
            1,
            &Dentry {
                name: b"new".to_vec(),
                ..d.clone()
            },
            Vec::new()
        )
        .expect("create in the new generation"));
    assert_eq!(store.list_dir(1).expect("list").len(), 122);

    assert!(store
        .remove_dentry(1, b"renamed", ino, Vec::new())
        .expect("remove"));
    assert_eq!(store.get_dentry(1, b"renamed").expect("get"), None);

    // Another volume of the same keyspace sees none of it.
    let other = Store::open(&cfg, 7, "other").expect("open another volume");
    assert_eq!(other.get_inode(ino).expect("get in other volume"), None);
    assert_eq!(
        other.get_dentry(1, b"e001").expect("get_dentry other"),
        None
    );
    // ... but blocks are shared by the owner's volumes.
    assert_eq!(
        other
            .get_blocks(&hashes[..1])
            .expect("owner's blocks")
            .len(),
        1
    );

    store.delete_inode(ino).expect("delete_inode");
    assert_eq!(store.get_inode(ino).expect("get deleted"), None);
    assert!(store.statement_count() > 20, "statements are counted");
}

#[test]
fn open_fails_clearly() {
    cassandra_shared();
    // No schema in this keyspace.
    let ks = unique_keyspace_name("nostore");
    match Store::open(&config(&ks), 1, "x") {
        Ok(_) => panic!("opened a store on keyspace {ks} that has no schema"),
        Err(e) => assert!(
            e.to_string().contains(&ks),
            "the error does not name the keyspace: {e}"
        ),
    }
    // Unreachable server: fails fast, naming the address.
    let mut cfg = StoreConfig::new("127.0.0.1:1", "whatever");
    cfg.connect_timeout = Duration::from_secs(5);
    let start = Instant::now();
    match Store::open(&cfg, 1, "x") {
        Ok(_) => panic!("connected to 127.0.0.1:1"),
        Err(e) => {
            assert!(
                matches!(e, StoreError::Unreachable { .. }),
                "not Unreachable: {e:?}"
            );
            assert!(e.to_string().contains("127.0.0.1:1"), "no address in: {e}");
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    // A bad keyspace name is refused before anything is sent.
    assert!(
        Store::open(&config("bad;name"), 1, "x").is_err(),
        "invalid keyspace name refused"
    );
}
