//! Detaching the mount helper's form from mount(8): the process forks
//! before any thread starts; the child mounts and tells the parent over a
//! pipe whether the mount is live; the parent exits 0 only then, or
//! non-zero with the child's one-line reason. The child is a session leader
//! with stdin from /dev/null; once mounted it changes to `/` and keeps
//! stdout/stderr only if they are a file or a socket (the journal).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The write end of the pipe to the waiting parent, in the child (-1:
/// not detached, or already reported).
static PIPE: AtomicI32 = AtomicI32::new(-1);

/// What the child writes when the mount is live.
const READY: &[u8] = b"READY\n";

/// Forks. The parent waits until the child reports (at most `limit`) and
/// exits with 0 when the mount is live, else 1 after printing the reason;
/// it never returns. The child returns `Ok` and goes on to mount. Must be
/// called while the process has a single thread.
pub fn detach(limit: Duration) -> Result<(), String> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a writable array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!(
            "cannot create a pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: pipe2 returned two open descriptors that nothing else owns.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process has one thread (the caller's promise), so the
    // child may run arbitrary code.
    match unsafe { libc::fork() } {
        -1 => Err(format!("cannot fork: {}", std::io::Error::last_os_error())),
        0 => {
            drop(read_end);
            // SAFETY: setsid has no preconditions; failing (already a
            // leader) is harmless.
            unsafe { libc::setsid() };
            redirect(libc::STDIN_FILENO);
            PIPE.store(into_raw(write_end), Ordering::SeqCst);
            Ok(())
        }
        pid => {
            drop(write_end);
            std::process::exit(wait_for_child(read_end, pid, limit))
        }
    }
}

fn into_raw(fd: OwnedFd) -> RawFd {
    use std::os::fd::IntoRawFd;
    fd.into_raw_fd()
}

/// In the parent: reads the child's report; the exit status.
fn wait_for_child(fd: OwnedFd, pid: libc::pid_t, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    let mut text = Vec::new();
    let mut file = std::fs::File::from(fd);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            eprintln!(
                "cassfs: the volume was not mounted within {} s; stopped",
                limit.as_secs()
            );
            return 1;
        }
        let mut poll = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut poll, 1, ms) } <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
    }
    if text == READY {
        return 0;
    }
    let msg = String::from_utf8_lossy(&text).trim().to_string();
    if msg.is_empty() {
        eprintln!(
            "cassfs: the daemon exited before mounting ({})",
            child_status(pid)
        );
    } else {
        eprintln!("cassfs: {msg}");
    }
    1
}

/// How the child ended, for the message.
fn child_status(pid: libc::pid_t) -> String {
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid out pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r != pid {
        return "status unknown".into();
    }
    if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exit status {}", libc::WEXITSTATUS(status))
    }
}

/// Called once the mount is live: in a detached child, moves to `/`, lets
/// go of a terminal or pipe on stdout/stderr and tells the parent to exit
/// 0. Elsewhere it does nothing.
pub fn ready() {
    let fd = PIPE.swap(-1, Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    let _ = std::env::set_current_dir("/");
    for out in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        if !keeps_output(out) {
            redirect(out);
        }
    }
    send(fd, READY);
}

/// In a detached child that has not reported yet, sends `line` (why it
/// failed) to the parent, which prints it; whether it did. Elsewhere the
/// caller prints it.
pub fn report_failure(line: &str) -> bool {
    let fd = PIPE.swap(-1, Ordering::SeqCst);
    if fd < 0 {
        return false;
    }
    send(fd, format!("{line}\n").as_bytes());
    true
}

fn send(fd: RawFd, bytes: &[u8]) {
    // SAFETY: fd is the pipe's write end, owned by PIPE until swapped out.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let _ = file.write_all(bytes);
}

/// Whether `fd` is a regular file or a socket (the journal): kept as the
/// daemon's log. A terminal or a pipe would tie the daemon to whoever ran
/// mount(8).
fn keeps_output(fd: RawFd) -> bool {
    // SAFETY: fstat on a descriptor number with a valid out pointer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return false;
    }
    matches!(st.st_mode & libc::S_IFMT, libc::S_IFREG | libc::S_IFSOCK)
}

/// Points `fd` at /dev/null (best effort).
fn redirect(fd: RawFd) {
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return;
    };
    // SAFETY: dup2 of an open descriptor onto a standard one.
    unsafe { libc::dup2(null.as_raw_fd(), fd) };
}
