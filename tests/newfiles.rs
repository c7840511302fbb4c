//! New files written whole (`open(O_CREAT|O_TRUNC)`, write, close), the
//! common case of a deploy or an upload: their name is made at the first
//! commit, together with the content, in one round trip. Every test here
//! runs at the default flags (the change feed followed), with both mounts
//! acting at the same moment where two take part.

mod common;
#[path = "common/invariants.rs"]
mod invariants;

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::io::IntoRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use invariants::*;

/// How long another mount following the feed may take to see a change
/// (generous: the CI machine is slow).
const SEE: Duration = Duration::from_secs(15);

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap_or_else(|e| panic!("entry of {}: {e}", dir.display()));
            e.file_name().to_string_lossy().into_owned()
        })
        .collect()
}

/// Opens `p` as `fs::write` does: O_WRONLY|O_CREAT|O_TRUNC.
fn create_trunc(p: &Path) -> io::Result<fs::File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(p)
}

/// Writes `data` to a new `p` and closes it, returning close's error too
/// (the commit happens at close: dropping a File would hide its error).
fn write_closed(p: &Path, data: &[u8], exclusive: bool) -> io::Result<()> {
    let mut o = OpenOptions::new();
    o.write(true).create(true);
    if exclusive {
        o.create_new(true);
    } else {
        o.truncate(true);
    }
    let mut f = o.open(p)?;
    f.write_all(data)?;
    // SAFETY: the descriptor is owned by `f`, given up by into_raw_fd.
    check(unsafe { libc::close(f.into_raw_fd()) })
}

/// Waits until `p` reads `want` (up to `SEE`); the last content read.
fn wait_for_content(p: &Path, want: &[u8]) -> Result<(), String> {
    let deadline = Instant::now() + SEE;
    loop {
        let got = fs::read(p);
        match &got {
            Ok(g) if g == want => return Ok(()),
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "{} after {SEE:?}: {:?}",
                    p.display(),
                    got.map(|g| String::from_utf8_lossy(&g).into_owned())
                ))
            }
            _ => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Content of file `i` written by `tag`: small files inline, every tenth
/// one larger than the inline limit (stored as blocks).
fn content(tag: &str, i: usize) -> Vec<u8> {
    let len = if i % 10 == 9 {
        200_000
    } else {
        100 + i * 37 % 3000
    };
    let mut v = format!("{tag}:{i}:").into_bytes();
    v.extend(pattern(i as u64 + tag.len() as u64 * 7919, len));
    v
}

#[test]
fn a_new_file_is_there_for_this_mount_before_its_first_close() {
    let vol = Volume::unique("nf-local");
    let a = vol.mount(&[]);
    let b = vol.mount(&[]);
    fs::create_dir(a.join("d")).expect("mkdir d");
    let mut f = create_trunc(&a.join("d/f")).expect("create d/f");
    f.write_all(b"first part, ").expect("write");

    let m = fs::metadata(a.join("d/f")).expect("stat d/f on A before close");
    assert!(m.is_file());
    assert_eq!(m.len(), 12, "A's stat shows what was written");
    assert!(names(&a.join("d")).contains("f"), "A lists d/f");
    assert_eq!(
        fs::read(a.join("d/f")).expect("read d/f through a second fd on A"),
        b"first part, "
    );
    assert_errno(fs::remove_dir(a.join("d")), libc::ENOTEMPTY, "rmdir d on A");
    assert_errno(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(a.join("d/f")),
        libc::EEXIST,
        "O_EXCL create of d/f on A",
    );

    f.write_all(b"second part").expect("write");
    drop(f);
    let want = b"first part, second part";
    wait_for_content(&b.join("d/f"), want).unwrap_or_else(|e| panic!("B reads d/f: {e}"));
    assert_eq!(fs::read(a.join("d/f")).expect("read on A"), want);
    assert_eq!(names(&b.join("d")), BTreeSet::from(["f".to_string()]));

    let c = vol.mount(&[]);
    assert_eq!(
        fs::read(c.join("d/f")).expect("read on a fresh mount"),
        want
    );
    check_tree(c.path(), "fresh mount");
    check_rows(&vol.keyspace, vol.owner, &vol.environment, "rows");
}

#[test]
fn changes_to_a_new_file_before_its_first_close_are_kept() {
    let vol = Volume::unique("nf-change");
    let a = vol.mount(&[]);
    fs::create_dir(a.join("d")).expect("mkdir d");

    // Renamed, chmodded and linked while open, then written on.
    let mut f = create_trunc(&a.join("d/tmp")).expect("create d/tmp");
    f.write_all(b"renamed ").expect("write");
    fs::rename(a.join("d/tmp"), a.join("d/final")).expect("rename while open");
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .expect("fchmod while open");
    fs::hard_link(a.join("d/final"), a.join("d/link")).expect("link while open");
    f.write_all(b"and written on").expect("write after rename");
    drop(f);

    // Unlinked while open: gone, and its content never shows.
    let mut g = create_trunc(&a.join("d/gone")).expect("create d/gone");
    g.write_all(b"never seen").expect("write");
    fs::remove_file(a.join("d/gone")).expect("unlink while open");
    let mut back = Vec::new();
    g.write_all(b"!").expect("write after unlink");
    drop(g);

    // Created and closed without a write: an empty file.
    drop(create_trunc(&a.join("d/empty")).expect("create d/empty"));

    let c = vol.mount(&[]);
    let want = b"renamed and written on";
    let d = c.join("d");
    assert_eq!(
        names(&d),
        BTreeSet::from(["empty".to_string(), "final".to_string(), "link".to_string()])
    );
    assert_eq!(fs::read(d.join("final")).expect("read final"), want);
    let m = fs::metadata(d.join("final")).expect("stat final");
    assert_eq!(m.mode() & 0o7777, 0o600, "the chmod made while open stays");
    assert_eq!(m.nlink(), 2, "final and link");
    assert_eq!(m.ino(), fs::metadata(d.join("link")).expect("stat").ino());
    fs::File::open(d.join("empty"))
        .and_then(|mut e| e.read_to_end(&mut back))
        .expect("read empty");
    assert!(back.is_empty(), "d/empty is empty");
    check_tree(c.path(), "fresh mount");
    check_rows(&vol.keyspace, vol.owner, &vol.environment, "rows");
}

// Both mounts write the same 120 new names at the same moment, half of
// them with O_CREAT|O_TRUNC on both sides, half with O_TRUNC on A and
// O_EXCL on B: every write succeeds except B's O_EXCL on names A made
// first, and every name ends as one file holding one side's whole content.
#[test]
fn two_mounts_write_the_same_new_names_at_once() {
    let vol = Volume::unique("nf-race");
    let a = vol.mount(&[]);
    fs::create_dir(a.join("d")).expect("mkdir d");
    let b = vol.mount(&[]);
    assert!(names(&b.join("d")).is_empty(), "B lists an empty d");
    let n = 120;
    let barrier = Barrier::new(2);
    let results: Vec<Vec<io::Result<()>>> = thread::scope(|s| {
        let hs: Vec<_> = [("A", &a), ("B", &b)]
            .into_iter()
            .map(|(tag, m)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    (0..n)
                        .map(|i| {
                            let p = m.join(format!("d/f{i:03}"));
                            let excl = tag == "B" && i % 2 == 1;
                            write_closed(&p, &content(tag, i), excl)
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("a writing thread panicked"))
            .collect()
    });
    for (side, rs) in ["A", "B"].iter().zip(&results) {
        for (i, r) in rs.iter().enumerate() {
            match r {
                Err(e) if *side == "B" && i % 2 == 1 => {
                    assert_eq!(errno(e), libc::EEXIST, "B's O_EXCL create {i}: {e}")
                }
                Err(e) => panic!("{side}: O_TRUNC write of f{i:03}: {e}"),
                Ok(()) => {}
            }
        }
    }

    let c = vol.mount(&[]);
    let d = c.join("d");
    let listed = names(&d);
    assert_eq!(listed.len(), n, "one entry per name: {listed:?}");
    let tree = check_tree(c.path(), "fresh mount");
    for (i, b_result) in results[1].iter().enumerate() {
        let got = fs::read(d.join(format!("f{i:03}"))).expect("read on the fresh mount");
        let (from_a, from_b) = (content("A", i), content("B", i));
        assert!(
            got == from_a || got == from_b,
            "f{i:03}: one side's whole content, got {} bytes starting {:?}",
            got.len(),
            String::from_utf8_lossy(&got[..got.len().min(12)])
        );
        if got == from_b && i % 2 == 1 {
            assert!(b_result.is_ok(), "f{i:03} holds B's content: B wrote it");
        }
        // Both mounts come to agree with the fresh one.
        for (side, m) in [("A", &a), ("B", &b)] {
            wait_for_content(&m.join(format!("d/f{i:03}")), &got)
                .unwrap_or_else(|e| panic!("{side} does not see the final f{i:03}: {e}"));
        }
    }
    assert_eq!(tree.files.len(), n, "every name is a regular file");
    check_rows(&vol.keyspace, vol.owner, &vol.environment, "rows");
}

// The daemon of mount A is killed in the middle of a burst of new files
// (and rewrites of ten shared files) while mount B writes new files into
// the same directory and rewrites the same shared files: after a fresh
// mount, every file whose close returned on either side is there, whole,
// every other name is absent or whole, never empty or torn, and each
// shared file holds one whole version written to it (old or new).
#[test]
fn a_kill_in_a_burst_of_new_files_leaves_each_whole_or_absent() {
    let vol = Volume::unique("nf-crash");
    let mut a = vol.mount(&[]);
    fs::create_dir(a.join("d")).expect("mkdir d");
    let shared = |j: usize| format!("d/s{j}");
    for j in 0..10 {
        write_closed(&a.join(shared(j)), &content("S", j), false).expect("write a shared file");
    }
    let b = vol.mount(&[]);
    let done: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());
    // Every version any side tried to write to each shared file.
    let tried: Mutex<Vec<Vec<Vec<u8>>>> =
        Mutex::new((0..10).map(|j| vec![content("S", j)]).collect());
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(3);
    thread::scope(|s| {
        for (tag, root) in [("A", a.path().to_path_buf()), ("B", b.path().to_path_buf())] {
            let (done, stop, barrier, tried) = (&done, &stop, &barrier, &tried);
            s.spawn(move || {
                barrier.wait();
                for i in 0..100_000 {
                    if stop.load(Ordering::SeqCst) && tag == "B" {
                        break;
                    }
                    if i % 4 == 3 {
                        let j = i / 4 % 10;
                        let data = content(tag, i);
                        let mut t = tried.lock().unwrap_or_else(|e| e.into_inner());
                        t[j].push(data.clone());
                        drop(t);
                        match write_closed(&root.join(shared(j)), &data, false) {
                            Ok(()) => continue,
                            Err(_) if tag == "A" => break,
                            Err(e) => panic!("B's rewrite of s{j} failed: {e}"),
                        }
                    }
                    let p = root.join(format!("d/{tag}{i:05}"));
                    let r = write_closed(&p, &content(tag, i), false);
                    match r {
                        Ok(()) => done
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((tag.to_string(), i)),
                        // A's daemon is gone: A's writer stops; B's must not fail.
                        Err(e) if tag == "A" => {
                            let _ = e;
                            break;
                        }
                        Err(e) => panic!("B's write of {tag}{i:05} failed: {e}"),
                    }
                }
            });
        }
        barrier.wait();
        thread::sleep(Duration::from_millis(1500));
        let st = a.stop_with_signal(libc::SIGKILL);
        assert!(!st.success(), "A's daemon was killed");
        assert!(force_unmount(a.path()), "unmount A's dead mount");
        thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
    });
    drop(a);
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    let from_a = done.iter().filter(|(t, _)| t == "A").count();
    let from_b = done.len() - from_a;
    assert!(
        from_a > 0 && from_b > 0,
        "both wrote ({from_a} on A, {from_b} on B)"
    );

    let c = vol.mount(&[]);
    let d = c.join("d");
    let listed = names(&d);
    for (tag, i) in &done {
        let name = format!("{tag}{i:05}");
        assert!(listed.contains(&name), "{name} was closed: it is there");
    }
    let tried = tried.into_inner().unwrap_or_else(|e| e.into_inner());
    for (j, versions) in tried.iter().enumerate() {
        let got = fs::read(c.join(shared(j))).expect("read a shared file");
        assert!(
            versions.contains(&got),
            "s{j}: one whole version written to it, got {} bytes",
            got.len()
        );
    }
    for name in listed.iter().filter(|n| !n.starts_with('s')) {
        let (tag, i) = name.split_at(1);
        let i: usize = i
            .parse()
            .unwrap_or_else(|_| panic!("unexpected name {name}"));
        let got = fs::read(d.join(name)).expect("read on the fresh mount");
        assert_eq!(got, content(tag, i), "{name}: whole, never empty or torn");
    }
    check_tree(c.path(), "fresh mount after the kill");
    check_rows(
        &vol.keyspace,
        vol.owner,
        &vol.environment,
        "rows after the kill",
    );
}
