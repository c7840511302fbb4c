//! `-cache_dir`: blocks kept on local disk survive a remount and are read
//! from there, bad files are never served, the directory stays near its
//! bound, the owner's volumes share it, and bad values are refused.

mod common;
#[path = "common/scrape.rs"]
mod scrape;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cassfs::store::hex;
use common::*;
use scrape::*;
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

/// The tests of this file run one at a time: each unmounts right after
/// closing files in its mount, and a process another test thread starts
/// holds copies of those descriptors between fork and exec, which makes the
/// unmount fail with EBUSY.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The block files (64-character names) under `dir/<owner>`: name → path.
fn block_files(dir: &Path, owner: i64) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(subs) = fs::read_dir(dir.join(owner.to_string())) else {
        return out;
    };
    for sub in subs.map(|e| e.expect("entry")) {
        for f in fs::read_dir(sub.path()).expect("read a cache subdirectory") {
            let f = f.expect("entry");
            let name = f.file_name().to_string_lossy().into_owned();
            if name.len() == 64 {
                out.push((name, f.path()));
            }
        }
    }
    out.sort();
    out
}

/// The names the blocks of `data` have on disk (1 MiB blocks, SHA-256).
fn block_names(data: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = data.chunks(MIB).map(|c| hex(&Sha256::digest(c))).collect();
    v.sort();
    v
}

fn names_of(files: &[(String, PathBuf)]) -> Vec<String> {
    files.iter().map(|(n, _)| n.clone()).collect()
}

fn cache_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cassfs-diskcache-")
        .tempdir()
        .expect("a cache directory")
}

/// Mounts `vol` with `-cache_dir dir` and metrics; returns the mount and port.
fn mount_cached(vol: &Volume, dir: &Path, extra: &[&str]) -> (Mount, u16) {
    let d = dir.to_string_lossy().into_owned();
    let mut flags = vec!["-cache_dir", d.as_str()];
    flags.extend_from_slice(extra);
    mount_metered(vol, &flags)
}

/// Writes `data` to `name` through a cached mount of `vol` and unmounts.
fn write_through(vol: &Volume, dir: &Path, name: &str, data: &[u8]) {
    let (mut m, _) = mount_cached(vol, dir, &[]);
    write_committed(&m.join(name), data).expect("write the big file");
    assert!(m.unmount().success(), "unmount: {}", m.output());
}

/// Reads `name` through a fresh cached mount of `vol`; returns the content
/// and the disk cache's (hits, misses, corrupt) counters after the read.
fn read_through(vol: &Volume, dir: &Path, name: &str) -> (Vec<u8>, [f64; 3]) {
    let (mut m, port) = mount_cached(vol, dir, &[]);
    let back = read(&m.join(name));
    let t = scrape(port);
    let counts = [
        value(&t, "cassfs_disk_cache_hits_total"),
        value(&t, "cassfs_disk_cache_misses_total"),
        value(&t, "cassfs_disk_cache_corrupt_total"),
    ];
    assert!(m.unmount().success(), "unmount: {}", m.output());
    (back, counts)
}

#[test]
fn a_remount_reads_big_files_from_disk() {
    let _one = one_at_a_time();
    let dir = cache_dir();
    let vol = Volume::unique("dc-remount");
    let data = pattern(unique_seed(), 3 * MIB);
    write_through(&vol, dir.path(), "big.bin", &data);

    let files = block_files(dir.path(), vol.owner);
    assert_eq!(names_of(&files), block_names(&data), "the file's blocks");
    for (_, p) in &files {
        let mode = fs::metadata(p).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", p.display());
        let parent = p.parent().expect("a parent");
        let dmode = fs::metadata(parent).expect("stat").permissions().mode();
        assert_eq!(dmode & 0o777, 0o700, "{}", parent.display());
    }
    let owner_dir = dir.path().join(vol.owner.to_string());
    let mode = fs::metadata(&owner_dir).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{}", owner_dir.display());

    let (back, [hits, misses, corrupt]) = read_through(&vol, dir.path(), "big.bin");
    assert!(back == data, "content read back differs");
    assert!(hits >= 3.0, "{hits} blocks read from disk");
    assert_eq!(misses, 0.0, "no block came from Cassandra");
    assert_eq!(corrupt, 0.0);
}

#[test]
fn bad_files_are_refetched_and_replaced() {
    let _one = one_at_a_time();
    let dir = cache_dir();
    let vol = Volume::unique("dc-corrupt");
    let data = pattern(unique_seed(), 3 * MIB);
    write_through(&vol, dir.path(), "big.bin", &data);
    let files = block_files(dir.path(), vol.owner);
    assert_eq!(files.len(), 3, "{files:?}");

    let mut flipped = fs::read(&files[0].1).expect("read a block file");
    flipped[12345] ^= 0x40;
    fs::write(&files[0].1, &flipped).expect("flip a byte");
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&files[1].1)
        .expect("open a block file");
    f.set_len(1000).expect("truncate a block file");
    drop(f);

    let (back, [hits, misses, corrupt]) = read_through(&vol, dir.path(), "big.bin");
    assert!(back == data, "bad blocks were served");
    assert_eq!(corrupt, 2.0, "both bad files found");
    assert!(misses >= 2.0, "{misses}: both refetched from Cassandra");
    assert!(hits >= 1.0, "the good one read from disk");

    let again = block_files(dir.path(), vol.owner);
    assert_eq!(names_of(&again), block_names(&data), "all three back");
    for (name, p) in &again {
        let content = fs::read(p).expect("read a block file");
        assert_eq!(&hex(&Sha256::digest(&content)), name, "{}", p.display());
    }
}

#[test]
fn the_directory_stays_near_its_bound() {
    let _one = one_at_a_time();
    let dir = cache_dir();
    let vol = Volume::unique("dc-bound");
    let (mut m, _) = mount_cached(&vol, dir.path(), &["-cache_dir_size", "3M"]);
    let mut peak = 0;
    for i in 0..4 {
        let data = pattern(unique_seed(), 2 * MIB);
        write_committed(&m.join(format!("f{i}")), &data).expect("write");
        let used: u64 = block_files(dir.path(), vol.owner)
            .iter()
            .filter_map(|(_, p)| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        peak = peak.max(used);
    }
    assert!(m.unmount().success(), "unmount: {}", m.output());
    let files = block_files(dir.path(), vol.owner);
    let used: u64 = files
        .iter()
        .filter_map(|(_, p)| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    assert!(used <= 3 * MIB as u64, "{used} bytes left for a 3M bound");
    assert!(
        used >= MIB as u64,
        "the most recent blocks stay: {used} bytes"
    );
    assert!(peak <= 4 * MIB as u64, "{peak} bytes at the peak");
}

#[test]
fn a_start_scans_the_directory_and_evicts_the_least_recently_used() {
    let _one = one_at_a_time();
    let dir = cache_dir();
    let vol = Volume::unique("dc-scan");
    let data = pattern(unique_seed(), 3 * MIB);
    write_through(&vol, dir.path(), "big.bin", &data);
    let files = block_files(dir.path(), vol.owner);
    assert_eq!(files.len(), 3, "{files:?}");
    // Last used 3, 2 and 1 hours ago: the first goes first.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    for (i, (_, p)) in files.iter().enumerate() {
        let t = now - 3600 * (3 - i as i64);
        set_times(p, (t, 0), (t, 0)).expect("set a block file's times");
    }
    let sub = files[0].1.parent().expect("a parent").to_path_buf();
    let (stale, fresh, stray) = (
        sub.join(".tmp.1.1"),
        sub.join(".tmp.1.2"),
        sub.join("notes"),
    );
    for p in [&stale, &fresh, &stray] {
        write(p, b"x");
    }
    set_times(&stale, (now - 3600, 0), (now - 3600, 0)).expect("age a temporary file");

    let d = dir.path().to_string_lossy().into_owned();
    let m = vol.mount(&["-cache_dir", &d, "-cache_dir_size", "2M"]);
    let trimmed = wait_until(Duration::from_secs(30), || {
        block_files(dir.path(), vol.owner).len() == 2 && !stale.exists()
    });
    let left = block_files(dir.path(), vol.owner);
    assert!(trimmed, "not trimmed by the start's scan: {left:?}");
    assert_eq!(names_of(&left), names_of(&files[1..]), "the oldest went");
    assert!(
        fresh.exists(),
        "a recent temporary file may be another daemon's"
    );
    assert!(stray.exists(), "files not named as blocks are left alone");
    drop(m);
}

#[test]
fn volumes_of_one_owner_share_blocks() {
    let _one = one_at_a_time();
    let dir = cache_dir();
    let a = Volume::unique("dc-share-a");
    let b = Volume::new(&a.keyspace, a.owner, "dc-share-b");
    let data = pattern(unique_seed(), 2 * MIB + 777);
    write_through(&a, dir.path(), "a.bin", &data);
    // The same content in volume B, written by a mount without the cache.
    {
        let mut m = b.mount(&[]);
        write_committed(&m.join("b.bin"), &data).expect("write in B");
        assert!(m.unmount().success(), "unmount: {}", m.output());
    }
    let (back, [hits, misses, _]) = read_through(&b, dir.path(), "b.bin");
    assert!(back == data, "content read back differs");
    assert!(
        hits >= 3.0,
        "{hits}: B's blocks come from A's writes on disk"
    );
    assert_eq!(misses, 0.0);
}

#[test]
fn bad_values_are_refused_with_one_line() {
    let _one = one_at_a_time();
    let plain = tempfile::NamedTempFile::new().expect("a plain file");
    let under_file = plain.path().join("cache");
    let under = under_file.to_string_lossy().into_owned();
    let ks = shared_keyspace();
    for bad in [
        &["-cache_dir", ""][..],
        &["-cache_dir_size", "1K"][..],
        &["-cache_dir_size", "lots"][..],
        &["-cache_dir_size", "99999999999T"][..],
        &["-cache_dir", under.as_str()][..],
    ] {
        let dir = Mount::fresh_dir();
        let d = dir.to_string_lossy().into_owned();
        let mut args = vec![
            "-server".to_string(),
            cassandra_addr(),
            "-keyspace".into(),
            ks.clone(),
            "-mount".into(),
            d,
        ];
        args.extend(bad.iter().map(|s| s.to_string()));
        let refs: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let r = run_cassfs(&refs, Duration::from_secs(60), Some(&dir));
        let _ = fs::remove_dir(&dir);
        let what = bad.join(" ");
        assert!(r.status.is_some(), "{what}: did not exit: {}", r.describe());
        assert!(!r.success(), "{what}: exit 0: {}", r.describe());
        let msg = r.stderr.trim();
        assert_eq!(
            msg.lines().filter(|l| !l.trim().is_empty()).count(),
            1,
            "{what}: not one line: {}",
            r.describe()
        );
        assert!(!msg.contains("panicked"), "{what}: {msg}");
        if bad[0] == "-cache_dir" && !bad[1].is_empty() {
            assert!(msg.contains(&under), "{what}: names the directory: {msg}");
        }
    }
    // The mount helper's form takes both as -o options, checked alike.
    let source = format!("{ks}:1.dc@{}", cassandra_addr());
    for (opt, want) in [
        ("cache_dir_size=1K".to_string(), "at least 1M"),
        (format!("cache_dir={under}"), under.as_str()),
    ] {
        let dir = Mount::fresh_dir();
        let d = dir.to_string_lossy().into_owned();
        let args = [source.as_str(), d.as_str(), "-o", opt.as_str()];
        let refs: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let r = run_cassfs(&refs, Duration::from_secs(60), Some(&dir));
        let _ = fs::remove_dir(&dir);
        assert!(
            r.status.is_some() && !r.success(),
            "-o {opt}: {}",
            r.describe()
        );
        let msg = r.stderr.trim();
        assert_eq!(msg.lines().count(), 1, "-o {opt}: {}", r.describe());
        assert!(msg.contains(want), "-o {opt}: {want:?} not in {msg}");
    }
}
