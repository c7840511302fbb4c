//! `cassfs docker`, the Docker volume plugin: driven by a real dockerd (the
//! distribution's docker.io, offline, with private roots) running busybox
//! containers, and endpoint by endpoint with direct HTTP requests on its
//! socket (dockerd does not call every endpoint).
//!
//! A machine where dockerd or a static busybox is missing or dockerd cannot
//! start skips the dockerd test and says why on stderr.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);
const IMAGE: &str = "cassfs-test:1";
/// How long a change takes at most to reach another mount (feed at the
/// default flags, generous for a loaded machine).
const SEEN_WITHIN: Duration = Duration::from_secs(20);

/// The mounts (mount points) under `dir`, from /proc/self/mountinfo.
fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------
// The plugin process
// ---------------------------------------------------------------------------

/// A `cassfs docker` process on a private socket and state directory;
/// dropping it stops it (SIGTERM, then SIGKILL) and undoes its mounts.
struct Plugin {
    child: Option<Child>,
    socket: PathBuf,
    statedir: PathBuf,
    keyspace: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Plugin {
    /// Starts a plugin whose driver name is `name` (socket
    /// /run/docker/plugins/NAME.sock, where dockerd finds it).
    fn start(name: &str, keyspace: &str) -> Plugin {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Plugin {
            child: None,
            socket: PathBuf::from(format!("/run/docker/plugins/{name}.sock")),
            statedir: dir.path().join("state"),
            keyspace: keyspace.to_string(),
            log: dir.path().join("plugin.log"),
            _dir: dir,
        };
        p.restart();
        p
    }

    /// Starts the process (again), appending to its log, and waits for its
    /// socket to answer.
    fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("plugin log");
        let child = Command::new(BIN)
            .args([
                "docker",
                "--server",
                &cassandra_addr(),
                "--keyspace",
                &self.keyspace,
            ])
            .arg("--socket")
            .arg(&self.socket)
            .arg("--statedir")
            .arg(&self.statedir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn cassfs docker");
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(60), || {
            self.try_call("/Plugin.Activate", &json!({})).is_ok()
        });
        assert!(up, "the plugin does not answer: {}", self.output());
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig` and waits for the process to end.
    fn stop_with(&mut self, sig: libc::c_int) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of our own child.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
            let ended = wait_until(Duration::from_secs(60), || {
                matches!(c.try_wait(), Ok(Some(_)))
            });
            if !ended {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }

    /// One request on the socket: (HTTP status, JSON answer).
    fn try_call(&self, method: &str, body: &Value) -> std::io::Result<(u16, Value)> {
        let mut s = UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(DOCKER_TIMEOUT))?;
        let body = body.to_string();
        write!(
            s,
            "POST {method} HTTP/1.1\r\nHost: \r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        let (head, payload) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let v = serde_json::from_str(payload.trim()).unwrap_or(Value::Null);
        Ok((status, v))
    }

    fn call(&self, method: &str, body: Value) -> (u16, Value) {
        self.try_call(method, &body)
            .unwrap_or_else(|e| panic!("{method}: {e}; plugin log:\n{}", self.output()))
    }

    /// A call that must succeed: its answer.
    fn ok(&self, method: &str, body: Value) -> Value {
        let (status, v) = self.call(method, body.clone());
        assert_eq!(status, 200, "{method} {body} answered {v}");
        assert_eq!(v["Err"].as_str().unwrap_or(""), "", "{method} {body}: {v}");
        v
    }

    /// A call that must fail: its `Err`.
    fn err(&self, method: &str, body: Value) -> String {
        let (status, v) = self.call(method, body.clone());
        let e = v["Err"].as_str().unwrap_or("").to_string();
        assert!(
            status != 200 && !e.is_empty(),
            "{method} {body} should fail: {status} {v}"
        );
        e
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.stop_with(libc::SIGTERM);
        for m in mounts_under(&self.statedir) {
            force_unmount(Path::new(&m));
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// A volume name for the plugin: `OWNER.ENVIRONMENT` of a fresh volume.
fn volume_name(v: &Volume) -> String {
    format!("{}.{}", v.owner, v.environment)
}

// ---------------------------------------------------------------------------
// The endpoints, by direct requests
// ---------------------------------------------------------------------------

#[test]
fn every_endpoint_answers_as_docker_expects() {
    let vol = Volume::unique("web");
    let name = volume_name(&vol);
    let plugin = Plugin::start(&format!("cassfs-ep-{}", std::process::id()), &vol.keyspace);

    let v = plugin.ok("/Plugin.Activate", json!(null));
    assert_eq!(v["Implements"], json!(["VolumeDriver"]));
    let v = plugin.ok("/VolumeDriver.Capabilities", json!({}));
    assert_eq!(v["Capabilities"]["Scope"], "local");

    // Bad names, unknown options and bad values: one line each.
    let e = plugin.err("/VolumeDriver.Create", json!({"Name": "prod", "Opts": {}}));
    assert!(e.contains("OWNER.ENVIRONMENT"), "{e}");
    let e = plugin.err(
        "/VolumeDriver.Create",
        json!({"Name": name, "Opts": {"colour": "red"}}),
    );
    assert!(e.contains("unknown option 'colour'"), "{e}");
    let e = plugin.err(
        "/VolumeDriver.Create",
        json!({"Name": name, "Opts": {"consistency": "SOMETIMES"}}),
    );
    assert!(e.contains("SOMETIMES") && !e.contains('\n'), "{e}");
    let e = plugin.err("/VolumeDriver.Get", json!({"Name": name}));
    assert!(e.contains("no such volume"), "{e}");
    let (status, _) = plugin.call("/VolumeDriver.Nonsense", json!({}));
    assert_eq!(status, 404);
    let (status, v) = plugin.call("/VolumeDriver.Create", json!("not an object"));
    assert_eq!(status, 400, "{v}");

    // Create (Opts may be null), Get, List, Path while unmounted.
    plugin.ok("/VolumeDriver.Create", json!({"Name": name, "Opts": null}));
    let v = plugin.ok("/VolumeDriver.Get", json!({"Name": name}));
    assert_eq!(v["Volume"]["Name"], name.as_str());
    assert_eq!(v["Volume"]["Mountpoint"], "");
    let v = plugin.ok("/VolumeDriver.List", json!({}));
    let listed: Vec<&str> = v["Volumes"]
        .as_array()
        .expect("Volumes")
        .iter()
        .filter_map(|x| x["Name"].as_str())
        .collect();
    assert_eq!(listed, vec![name.as_str()]);
    let v = plugin.ok("/VolumeDriver.Path", json!({"Name": name}));
    assert_eq!(v["Mountpoint"], "");

    // Mount is counted per caller ID, a repeated ID included (docker cp).
    let mp = plugin.ok("/VolumeDriver.Mount", json!({"Name": name, "ID": "aaa"}))["Mountpoint"]
        .as_str()
        .expect("Mountpoint")
        .to_string();
    let mp = PathBuf::from(mp);
    assert!(is_cassfs_mounted(&mp), "{} is not mounted", mp.display());
    write(&mp.join("hello"), b"from the plugin's mount");
    let again = plugin.ok("/VolumeDriver.Mount", json!({"Name": name, "ID": "aaa"}));
    assert_eq!(again["Mountpoint"], mp.to_string_lossy().as_ref());
    plugin.ok("/VolumeDriver.Mount", json!({"Name": name, "ID": "bbb"}));
    let v = plugin.ok("/VolumeDriver.Path", json!({"Name": name}));
    assert_eq!(v["Mountpoint"], mp.to_string_lossy().as_ref());
    let e = plugin.err("/VolumeDriver.Remove", json!({"Name": name}));
    assert!(e.contains("in use by 3 mount"), "{e}");
    let e = plugin.err("/VolumeDriver.Mount", json!({"Name": name, "ID": ""}));
    assert!(e.contains("ID"), "{e}");

    // Other users may use it (containers run as www-data; the dockerd test
    // reads it as uid 33 in a container).
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mp.to_string_lossy().as_ref()))
        .expect("the mount in mountinfo");
    assert!(line.contains("allow_other"), "{line}");

    plugin.ok("/VolumeDriver.Unmount", json!({"Name": name, "ID": "aaa"}));
    plugin.ok("/VolumeDriver.Unmount", json!({"Name": name, "ID": "bbb"}));
    assert!(
        is_cassfs_mounted(&mp),
        "unmounted while ID aaa still holds it"
    );
    plugin.ok("/VolumeDriver.Unmount", json!({"Name": name, "ID": "aaa"}));
    assert!(
        wait_until(Duration::from_secs(30), || !is_mounted(&mp)),
        "still mounted after the last Unmount"
    );

    // A zero-copy clone, and a read-only volume.
    let staging = format!("{}.staging", vol.owner);
    plugin.ok(
        "/VolumeDriver.Create",
        json!({"Name": staging, "Opts": {"from": name, "ro": ""}}),
    );
    let mp2 = PathBuf::from(
        plugin.ok("/VolumeDriver.Mount", json!({"Name": staging, "ID": "ccc"}))["Mountpoint"]
            .as_str()
            .expect("Mountpoint"),
    );
    assert_eq!(read(&mp2.join("hello")), b"from the plugin's mount");
    assert_errno(
        std::fs::write(mp2.join("new"), b"x"),
        libc::EROFS,
        "write to a ro volume",
    );
    let e = plugin.err(
        "/VolumeDriver.Create",
        json!({"Name": "999999.other", "Opts": {"from": name}}),
    );
    assert!(e.contains("owner"), "{e}");
    plugin.ok(
        "/VolumeDriver.Unmount",
        json!({"Name": staging, "ID": "ccc"}),
    );

    // Remove forgets the volume (its files stay in Cassandra).
    plugin.ok("/VolumeDriver.Remove", json!({"Name": name}));
    plugin.err("/VolumeDriver.Get", json!({"Name": name}));
    let host = vol.mount(&[]);
    assert_eq!(read(&host.join("hello")), b"from the plugin's mount");
    assert!(mounts_under(&plugin.statedir).is_empty());
}

#[test]
fn a_volume_option_turns_the_disk_cache_on() {
    let vol = Volume::unique("cached");
    let name = volume_name(&vol);
    let plugin = Plugin::start(&format!("cassfs-dc-{}", std::process::id()), &vol.keyspace);
    let cache = tempfile::tempdir().expect("a cache directory");
    let dir = cache.path().to_string_lossy().into_owned();
    let e = plugin.err(
        "/VolumeDriver.Create",
        json!({"Name": name, "Opts": {"cache_dir": dir, "cache_dir_size": "1K"}}),
    );
    assert!(e.contains("cache_dir_size") && !e.contains('\n'), "{e}");
    let opts = json!({"cache_dir": dir, "cache_dir_size": "64M"});
    plugin.ok("/VolumeDriver.Create", json!({"Name": name, "Opts": opts}));
    let mp = plugin.ok("/VolumeDriver.Mount", json!({"Name": name, "ID": "a"}))["Mountpoint"]
        .as_str()
        .map(PathBuf::from)
        .expect("Mountpoint");
    write(&mp.join("big"), &pattern(unique_seed(), 2 << 20));
    plugin.ok("/VolumeDriver.Unmount", json!({"Name": name, "ID": "a"}));
    let blocks = || {
        let owner = cache.path().join(vol.owner.to_string());
        std::fs::read_dir(owner)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten())
            .filter_map(Result::ok)
            .filter(|f| f.file_name().len() == 64)
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(30), || blocks() == 2),
        "{} blocks in the cache directory; plugin log:\n{}",
        blocks(),
        plugin.output()
    );
}

// ---------------------------------------------------------------------------
// A real dockerd
// ---------------------------------------------------------------------------

/// A private dockerd; dropping it removes its containers and stops it.
struct Dockerd {
    child: Option<Child>,
    host: String,
    dir: tempfile::TempDir,
}

impl Dockerd {
    /// Starts dockerd offline, or says why it cannot run here.
    fn start() -> Result<Dockerd, String> {
        for tool in ["/usr/sbin/dockerd", "/usr/bin/docker", "/bin/busybox"] {
            if !Path::new(tool).exists() {
                return Err(format!(
                    "{tool} is missing (packages docker.io, busybox-static)"
                ));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("cassfs-dockerd-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let host = format!("unix://{}/docker.sock", dir.path().display());
        let log =
            std::fs::File::create(dir.path().join("dockerd.log")).map_err(|e| e.to_string())?;
        let root = |n: &str| dir.path().join(n).to_string_lossy().to_string();
        let child = Command::new("/usr/sbin/dockerd")
            .args([
                "-H",
                &host,
                "--data-root",
                &root("root"),
                "--exec-root",
                &root("exec"),
            ])
            .args(["--pidfile", &root("pid"), "--storage-driver", "vfs"])
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
            ])
            .args(["--ip-masq=false", "--bridge=none"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run dockerd: {e}"))?;
        let d = Dockerd {
            child: Some(child),
            host,
            dir,
        };
        let up = wait_until(Duration::from_secs(60), || d.docker(&["version"]).success());
        if !up {
            let log = std::fs::read_to_string(d.dir.path().join("dockerd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            return Err(format!("dockerd did not start: {}", tail.join(" | ")));
        }
        d.import_busybox()?;
        Ok(d)
    }

    fn docker(&self, args: &[&str]) -> RunResult {
        run_with_timeout(
            Command::new("/usr/bin/docker")
                .args(["-H", &self.host])
                .args(args),
            DOCKER_TIMEOUT,
        )
    }

    /// `docker ARGS`, asserting success: its stdout.
    fn must(&self, args: &[&str]) -> String {
        let r = self.docker(args);
        assert!(r.success(), "docker {args:?}: {}", r.describe());
        r.stdout
    }

    /// An image of a static busybox, made without a registry.
    fn import_busybox(&self) -> Result<(), String> {
        let root = self.dir.path().join("image");
        std::fs::create_dir_all(root.join("bin")).map_err(|e| e.to_string())?;
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).map_err(|e| e.to_string())?;
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).map_err(|e| e.to_string())?;
        let script = format!(
            "tar -C {} -c . | /usr/bin/docker -H {} import -c 'CMD [\"/bin/sh\"]' - {IMAGE}",
            root.display(),
            self.host
        );
        let r = run_with_timeout(Command::new("sh").args(["-c", &script]), DOCKER_TIMEOUT);
        r.success()
            .then_some(())
            .ok_or_else(|| format!("docker import failed: {}", r.describe()))
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]).stdout;
        for id in ids.split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of our own child.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            if !wait_until(Duration::from_secs(30), || {
                matches!(c.try_wait(), Ok(Some(_)))
            }) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        for m in mounts_under(self.dir.path()) {
            force_unmount(Path::new(&m));
        }
    }
}

#[test]
fn containers_share_a_volume_with_each_other_and_the_host_across_a_plugin_restart() {
    let docker = match Dockerd::start() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED: dockerd cannot run on this machine: {why}");
            return;
        }
    };
    let vol = Volume::unique("site");
    let name = volume_name(&vol);
    let driver = format!("cassfs-dk-{}", std::process::id());
    let mut plugin = Plugin::start(&driver, &vol.keyspace);

    docker.must(&["volume", "create", "-d", &driver, &name]);
    let r = docker.docker(&["volume", "create", "-d", &driver, "-o", "colour=red", "1.x"]);
    assert!(
        !r.success() && r.stderr.contains("unknown option 'colour'"),
        "{}",
        r.describe()
    );
    assert!(docker
        .must(&["volume", "ls", "-q"])
        .lines()
        .any(|l| l == name));

    // Container A keeps running; B (as www-data) comes and goes.
    let v = format!("{name}:/d");
    let run = ["run", "--network", "none", "--pull", "never"];
    let a = docker
        .must(
            &[
                &run[..],
                &[
                    "-d",
                    "-v",
                    &v,
                    IMAGE,
                    "sh",
                    "-c",
                    "echo a > /d/from-a; sleep 600",
                ],
            ]
            .concat(),
        )
        .trim()
        .to_string();
    let in_a = |cmd: &str| docker.docker(&["exec", &a, "sh", "-c", cmd]);
    assert!(wait_until(SEEN_WITHIN, || in_a("cat /d/from-a").stdout == "a\n"));
    let b = docker.must(
        &[
            &run[..],
            &[
                "--rm",
                "--user",
                "33:33",
                "-v",
                &v,
                IMAGE,
                "sh",
                "-c",
                "cat /d/from-a",
            ],
        ]
        .concat(),
    );
    assert_eq!(b, "a\n", "B (uid 33) reads A's file");
    docker.must(
        &[
            &run[..],
            &["--rm", "-v", &v, IMAGE, "sh", "-c", "echo b > /d/from-b"],
        ]
        .concat(),
    );
    assert!(
        wait_until(SEEN_WITHIN, || in_a("cat /d/from-b").stdout == "b\n"),
        "A sees B's write"
    );

    // A host mount of the same volume, at the default flags, both ways.
    let host = vol.mount(&[]);
    assert_eq!(read(&host.join("from-a")), b"a\n");
    assert_eq!(read(&host.join("from-b")), b"b\n");
    write_committed(&host.join("from-host"), b"h\n").expect("host write");
    assert!(
        wait_until(SEEN_WITHIN, || in_a("cat /d/from-host").stdout == "h\n"),
        "A sees the host's write"
    );

    // A volume in use cannot be removed.
    let r = docker.docker(&["volume", "rm", &name]);
    assert!(
        !r.success() && r.stderr.contains("in use"),
        "{}",
        r.describe()
    );

    // The plugin dies and comes back: the volume is still listed and
    // mounted again for A; A's old view fails with a clear error.
    plugin.stop_with(libc::SIGKILL);
    plugin.restart();
    assert!(docker
        .must(&["volume", "ls", "-q"])
        .lines()
        .any(|l| l == name));
    let stale = in_a("cat /d/from-a");
    assert!(
        stale.stdout == "a\n" || stale.stderr.contains("not connected"),
        "A after the restart: {}",
        stale.describe()
    );
    let c = docker.must(
        &[
            &run[..],
            &[
                "--rm",
                "-v",
                &v,
                IMAGE,
                "sh",
                "-c",
                "cat /d/from-host; echo c > /d/from-c",
            ],
        ]
        .concat(),
    );
    assert_eq!(c, "h\n", "a new container after the restart");
    // Until the feed brings it, the host may not know the name yet: retried.
    assert!(wait_until(SEEN_WITHIN, || {
        std::fs::read(host.join("from-c")).is_ok_and(|d| d == b"c\n")
    }));

    // When A stops, the last holder is gone: nothing stays mounted.
    docker.must(&["rm", "-f", &a]);
    assert!(
        wait_until(Duration::from_secs(30), || mounts_under(&plugin.statedir)
            .is_empty()),
        "mounts left: {:?}\n{}",
        mounts_under(&plugin.statedir),
        plugin.output()
    );
    docker.must(&["volume", "rm", &name]);
    assert!(!docker
        .must(&["volume", "ls", "-q"])
        .lines()
        .any(|l| l == name));
}
