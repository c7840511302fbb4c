//! `cassfs docker`: a Docker volume plugin serving every CassFS volume of
//! the host from one process. `http.rs` speaks HTTP on the plugin socket,
//! `protocol.rs` maps Docker's calls to the driver, `driver.rs` mounts and
//! counts, `state.rs` keeps what must survive a restart.

mod driver;
mod http;
mod protocol;
mod state;

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::{debug, error, info, warn};
use parking_lot::Mutex;

pub use driver::{Defaults, Driver};

use crate::cli::DockerArgs;

/// How long a connection may stay silent before it is closed.
const IDLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Binds the plugin socket, replacing a stale one; refuses to take over a
/// socket another process answers on.
fn bind(path: &Path) -> Result<UnixListener, String> {
    if UnixStream::connect(path).is_ok() {
        return Err(format!(
            "{}: another process serves this socket",
            path.display()
        ));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => warn!("removed the stale socket {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    UnixListener::bind(path).map_err(|e| format!("cannot listen on {}: {e}", path.display()))
}

/// Serves one connection's requests until the client closes it.
fn serve_connection(driver: &Mutex<Driver>, stream: UnixStream) {
    // Docker's client closes idle connections after 90 s: a connection
    // silent for longer is a client gone wrong, not worth a thread.
    if stream.set_read_timeout(Some(IDLE_LIMIT)).is_err() {
        return;
    }
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut input = http::reader(stream);
    loop {
        let req = match http::read_request(&mut input) {
            Ok(r) => r,
            Err(http::ReadError::Closed) => return,
            Err(http::ReadError::Io(e)) => {
                debug!("plugin connection: {e}");
                return;
            }
            Err(http::ReadError::Bad(why)) => {
                let body = serde_json::json!({ "Err": format!("bad request: {why}") });
                let _ = http::write_response(&mut out, 400, body.to_string().as_bytes());
                return;
            }
        };
        let (status, body) = if req.method == "POST" {
            protocol::handle(driver, &req.path, &req.body)
        } else {
            (404, serde_json::json!({ "Err": "only POST is served" }))
        };
        // Docker asks Get of names it has not created yet: not worth a line.
        if status != 200 && req.path != "/VolumeDriver.Get" {
            info!("{} {}: {}", req.method, req.path, body["Err"]);
        } else {
            debug!("{} {}: {status}", req.method, req.path);
        }
        let mut bytes = body.to_string().into_bytes();
        bytes.push(b'\n');
        if http::write_response(&mut out, status, &bytes).is_err() || req.close {
            return;
        }
        let _ = out.flush();
    }
}

/// Unmounts every volume and leaves on SIGTERM/SIGINT.
fn watch_signals(driver: Arc<Mutex<Driver>>, socket: PathBuf) -> Result<(), String> {
    crate::mount::on_termination(move |sig| {
        info!("signal {sig}: unmounting every volume");
        let _ = std::fs::remove_file(&socket);
        driver.lock().shutdown();
        std::process::exit(0);
    })
}

/// `cassfs docker`: serves the plugin socket until SIGTERM/SIGINT.
pub fn run(args: &DockerArgs) -> Result<(), String> {
    crate::mount::init_logging(args.debug);
    // Check the login and TLS flags before anything is mounted.
    args.conn.apply(&mut crate::store::StoreConfig::new(
        &args.server,
        &args.keyspace,
    ))?;
    let defaults = Defaults {
        server: args.server.clone(),
        keyspace: args.keyspace.clone(),
        timeout: args.timeout,
        workers: args.workers,
        cache_size: args.cache_size,
        debug: args.debug,
        conn: args.conn.clone(),
    };
    let listener = bind(&args.socket)?;
    let driver = Arc::new(Mutex::new(Driver::open(&args.statedir, defaults)?));
    watch_signals(driver.clone(), args.socket.clone())?;
    info!(
        "serving the Docker volume plugin on {} (state in {})",
        args.socket.display(),
        args.statedir.display()
    );
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                let d = driver.clone();
                let spawned = std::thread::Builder::new()
                    .name("cassfs-plugin".into())
                    .spawn(move || serve_connection(&d, s));
                if let Err(e) = spawned {
                    error!("cannot serve a plugin connection: {e}");
                }
            }
            Err(e) => error!("plugin socket: {e}"),
        }
    }
    Ok(())
}
