//! A real PHP stack on two mounts of one volume: nginx in front of one
//! PHP-FPM pool per mount (opcache on, the files session handler saving
//! into the volume), as two web hosts behind a load balancer would run it.
//! Every mount runs at the default flags.
//!
//! Needs nginx and php-fpm (`scripts/install-deps` installs them); without
//! them each test prints `SKIPPED: <reason>` and passes.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// opcache's revalidation interval given to the pools, in seconds.
const REVALIDATE: u64 = 1;
/// Generous bound for a change on one host to be served by the other: the
/// revalidation interval, the feed's bound and a slow CI machine.
const SERVED_WITHIN: Duration = Duration::from_secs(20);

fn php_fpm() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/sbin")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("php-fpm"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// Why the stack cannot run here, if it cannot.
fn missing() -> Option<String> {
    if php_fpm().is_none() {
        return Some("php-fpm is not installed (scripts/install-deps)".into());
    }
    if !Path::new("/usr/sbin/nginx").exists() {
        return Some("nginx is not installed (scripts/install-deps)".into());
    }
    None
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// A server started in a process group of its own: on drop the group gets
/// SIGTERM (the master stops its workers), then SIGKILL if the master has
/// not exited within 5 s, so no worker outlives the test.
struct Proc(Child);

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()));
        Proc(child)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let group = self.0.id() as libc::pid_t;
        // SAFETY: kill(2) of the process group this test started.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; whatever is left of the group.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// One web host: a PHP-FPM pool serving `root` behind nginx on `port`.
struct WebHost {
    port: u16,
    _fpm: Proc,
    _nginx: Proc,
    dir: tempfile::TempDir,
}

impl WebHost {
    fn start(tag: &str, root: &Path, sessions: &Path) -> WebHost {
        let dir = tempfile::Builder::new()
            .prefix(&format!("cassfs-php-{tag}-"))
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let sock = d.join("fpm.sock");
        let fpm_conf = format!(
            "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\ndaemonize = no\n\
             [web]\nuser = root\ngroup = root\nlisten = {sock}\npm = static\n\
             pm.max_children = 4\ncatch_workers_output = yes\n\
             php_admin_value[session.save_handler] = files\n\
             php_admin_value[session.save_path] = {sessions}\n\
             php_admin_value[session.gc_probability] = 0\n\
             php_admin_value[opcache.enable] = 1\n\
             php_admin_value[opcache.validate_timestamps] = 1\n\
             php_admin_value[opcache.revalidate_freq] = {REVALIDATE}\n\
             php_admin_value[opcache.file_update_protection] = 0\n\
             php_admin_value[error_log] = {d}/php.log\n",
            d = d.display(),
            sock = sock.display(),
            sessions = sessions.display(),
        );
        fs::write(d.join("fpm.conf"), fpm_conf).expect("write fpm.conf");
        let fpm = Proc::spawn(
            Command::new(php_fpm().expect("php-fpm"))
                .args(["-F", "-R", "-y"])
                .arg(d.join("fpm.conf")),
        );
        let port = free_port();
        let nginx_conf = format!(
            "worker_processes 1;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/nginx.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n\
             fastcgi_temp_path {d}/fcgi;\n proxy_temp_path {d}/proxy;\n\
             uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             server {{\n  listen 127.0.0.1:{port};\n  root {root};\n\
             location ~ \\.php$ {{\n   include /etc/nginx/fastcgi_params;\n\
             fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n\
             fastcgi_read_timeout 120s;\n   fastcgi_pass unix:{sock};\n  }}\n }}\n}}\n",
            d = d.display(),
            root = root.display(),
            sock = sock.display(),
        );
        fs::write(d.join("nginx.conf"), nginx_conf).expect("write nginx.conf");
        let nginx = Proc::spawn(
            Command::new("/usr/sbin/nginx")
                .arg("-p")
                .arg(d)
                .arg("-e")
                .arg(d.join("nginx.log"))
                .arg("-c")
                .arg(d.join("nginx.conf"))
                .args(["-g", "daemon off;"]),
        );
        let host = WebHost {
            port,
            _fpm: fpm,
            _nginx: nginx,
            dir,
        };
        host.wait_ready();
        host
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.dir.path().join("fpm.sock").exists()
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("the web host did not start within 30 s:\n{}", self.logs());
    }

    fn logs(&self) -> String {
        ["fpm.log", "nginx.log", "php.log"]
            .iter()
            .map(|f| {
                let t = fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
                format!("--- {f} ---\n{t}")
            })
            .collect()
    }

    /// GET `path` with an optional session cookie: (status, set-cookie
    /// session id, body).
    fn get(&self, path: &str, session: Option<&str>) -> (u16, Option<String>, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to nginx");
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let cookie = session
            .map(|id| format!("Cookie: PHPSESSID={id}\r\n"))
            .unwrap_or_default();
        let req = format!("GET {path} HTTP/1.0\r\nHost: test\r\n{cookie}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).expect("send the request");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read the response");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}\n{}", self.logs()));
        let sid = head.lines().find_map(|l| {
            let v = l.strip_prefix("Set-Cookie: PHPSESSID=")?;
            Some(v.split(';').next()?.to_string())
        });
        (status, sid, body.to_string())
    }

    /// The body of a GET that must answer 200.
    fn page(&self, path: &str, session: Option<&str>) -> String {
        let (status, _, body) = self.get(path, session);
        assert_eq!(status, 200, "GET {path}: {body}\n{}", self.logs());
        body
    }
}

/// The application: a page that includes a version file, a session page
/// and a page that holds its session a while.
fn install_app(root: &Path) {
    fs::create_dir_all(root.join("sessions")).expect("mkdir sessions");
    let files = [
        (
            "index.php",
            "<?php require __DIR__ . '/version.php'; echo 'version ', VERSION, ' cached ', \
             var_export(opcache_is_script_cached(__DIR__ . '/version.php'), true);\n",
        ),
        ("version.php", "<?php const VERSION = 1;\n"),
        (
            "diag.php",
            "<?php $f = __DIR__ . '/version.php'; clearstatcache(); $s = opcache_get_status(true);\n\
             echo 'mtime ', filemtime($f), ' now ', time(), ' content ', trim(file_get_contents($f)),\n\
             ' opcache ', json_encode($s['scripts'][$f] ?? null);\n",
        ),
        (
            "session.php",
            "<?php session_start(); if (isset($_GET['set'])) { $_SESSION['v'] = $_GET['set']; }\n\
             echo 'value=', $_SESSION['v'] ?? '';\n",
        ),
        (
            "hold.php",
            "<?php session_start(); $_SESSION['v'] = $_GET['set']; touch($_GET['marker']); \
             usleep((int) $_GET['ms'] * 1000); echo 'held';\n",
        ),
    ];
    for (name, text) in files {
        write_committed(&root.join(name), text.as_bytes()).expect("write the app");
    }
}

/// Two web hosts, one per mount of one volume.
fn two_hosts(env: &str) -> Option<(Mount, Mount, WebHost, WebHost)> {
    if let Some(why) = missing() {
        println!("SKIPPED: {why}");
        return None;
    }
    let vol = Volume::unique(env);
    let a = vol.mount(&[]);
    install_app(a.path());
    let b = vol.mount(&[]);
    let wa = WebHost::start("a", a.path(), &a.join("sessions"));
    let wb = WebHost::start("b", b.path(), &b.join("sessions"));
    Some((a, b, wa, wb))
}

#[test]
fn a_session_written_on_one_host_is_read_on_the_other() {
    let Some((_a, _b, wa, wb)) = two_hosts("php-sess") else {
        return;
    };
    let (status, sid, body) = wa.get("/session.php?set=hello", None);
    assert_eq!(status, 200, "{body}\n{}", wa.logs());
    let sid = sid.expect("A sets a session cookie");
    assert_eq!(body, "value=hello");
    assert_eq!(wb.page("/session.php", Some(&sid)), "value=hello");
    assert_eq!(wb.page("/session.php?set=again", Some(&sid)), "value=again");
    assert_eq!(wa.page("/session.php", Some(&sid)), "value=again");
}

// Host A's request holds its session (PHP's flock(LOCK_EX) on the session
// file) for 3 s; host B's request of the same session, started once A's
// request holds it, waits for it and reads what A wrote.
#[test]
fn a_session_held_on_one_host_makes_the_other_wait() {
    let Some((_a, _b, wa, wb)) = two_hosts("php-lock") else {
        return;
    };
    let (_, sid, _) = wa.get("/session.php?set=start", None);
    let sid = sid.expect("A sets a session cookie");
    let (held, waited) = thread::scope(|s| {
        // B asks once A's request holds the session (it touches a marker
        // on local disk right after session_start).
        let marker = wa.dir.path().join("held");
        let url = format!("/hold.php?set=from-A&ms=3000&marker={}", marker.display());
        let (wa, sid_a) = (&wa, &sid);
        let holder = s.spawn(move || wa.page(&url, Some(sid_a)));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !marker.exists() {
            assert!(
                Instant::now() < deadline,
                "A's request never held the session"
            );
            thread::sleep(Duration::from_millis(10));
        }
        let t = Instant::now();
        let body = wb.page("/session.php", Some(&sid));
        let waited = t.elapsed();
        (holder.join().expect("A's request"), (body, waited))
    });
    assert_eq!(held, "held");
    let (body, waited) = waited;
    assert_eq!(body, "value=from-A", "B read the session after A's request");
    assert!(
        waited >= Duration::from_millis(1500),
        "B's request waited for A's lock (it took {waited:?})"
    );
}

// A deploy on host A (a PHP file replaced by rename, then one rewritten in
// place) is served by host B, whose opcache holds the old version, within
// the revalidation interval plus the feed's bound.
#[test]
fn a_php_file_changed_on_one_host_is_served_changed_by_the_other() {
    let Some((a, _b, wa, wb)) = two_hosts("php-deploy") else {
        return;
    };
    assert!(wb.page("/index.php", None).starts_with("version 1 "));
    let cached = wb.page("/index.php", None);
    assert_eq!(
        cached, "version 1 cached true",
        "B's opcache holds the page"
    );
    assert!(wa.page("/index.php", None).starts_with("version 1 "));

    for (v, by_rename) in [(2, true), (3, false)] {
        // opcache compares mtimes in whole seconds: a version written in
        // the same second as the one it replaces is not noticed, on any
        // filesystem.
        thread::sleep(Duration::from_millis(1100));
        let text = format!("<?php const VERSION = {v};\n");
        if by_rename {
            write_committed(&a.join("version.new"), text.as_bytes()).expect("write on A");
            fs::rename(a.join("version.new"), a.join("version.php")).expect("rename on A");
        } else {
            write_committed(&a.join("version.php"), text.as_bytes()).expect("rewrite on A");
        }
        let changed = Instant::now();
        let want = format!("version {v} ");
        loop {
            let body = wb.page("/index.php", None);
            if body.starts_with(&want) {
                println!(
                    "version {v} ({}) served by B after {:?}",
                    if by_rename { "rename" } else { "in place" },
                    changed.elapsed()
                );
                break;
            }
            assert!(
                changed.elapsed() < SERVED_WITHIN,
                "B still serves {body:?} {SERVED_WITHIN:?} after A's change; B: {}",
                wb.page("/diag.php", None)
            );
            thread::sleep(Duration::from_millis(50));
        }
        assert!(
            wa.page("/index.php", None).starts_with(&want),
            "A serves it too"
        );
    }
}

/// Mean time of `n` GETs of `path`.
fn mean_page_time(host: &WebHost, path: &str, n: u32) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        host.page(path, None);
    }
    t.elapsed() / n
}

// Page time of an application of 40 included files served from a mount
// and from a local directory by the same stack, side by side (printed for
// BENCHMARKS.md; asserted only to be served).
#[test]
fn page_time_against_a_local_directory() {
    if let Some(why) = missing() {
        println!("SKIPPED: {why}");
        return;
    }
    let vol = Volume::unique("php-time");
    let m = vol.mount(&[]);
    let local = tempfile::tempdir().expect("local dir");
    for root in [m.path(), local.path()] {
        install_app(root);
        let mut app = String::from("<?php\n");
        for i in 0..40 {
            let f = format!("inc{i}.php");
            let body = format!("<?php function f{i}() {{ return {i}; }}\n");
            write_committed(&root.join(&f), body.as_bytes()).expect("write an include");
            app.push_str(&format!("require __DIR__ . '/{f}';\n"));
        }
        app.push_str("$s = 0; for ($i = 0; $i < 40; $i++) { $s += ('f' . $i)(); } echo $s;\n");
        write_committed(&root.join("app.php"), app.as_bytes()).expect("write app.php");
    }
    let on_mount = WebHost::start("m", m.path(), &m.join("sessions"));
    let on_local = WebHost::start("l", local.path(), &local.path().join("sessions"));
    for h in [&on_mount, &on_local] {
        assert_eq!(h.page("/app.php", None), "780", "the app runs");
    }
    let (mut tm, mut tl) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        tm.push(mean_page_time(&on_mount, "/app.php", 100));
        tl.push(mean_page_time(&on_local, "/app.php", 100));
    }
    tm.sort();
    tl.sort();
    println!(
        "app.php (40 includes, opcache on): mount {:?}, local {:?}, ratio {:.2} (medians of 3 x 100)",
        tm[1],
        tl[1],
        tm[1].as_secs_f64() / tl[1].as_secs_f64()
    );
}
