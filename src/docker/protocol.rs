//! Docker's volume plugin protocol: each `POST /Method` body decoded, the
//! driver called, its answer encoded as Docker expects (`Err` non-empty and
//! status 500 on failure).

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};

use super::driver::{Driver, VolumeInfo};

#[derive(Deserialize)]
struct NameReq {
    #[serde(rename = "Name")]
    name: String,
}

#[derive(Deserialize)]
struct CreateReq {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Opts", default)]
    opts: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct MountReq {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "ID", default)]
    id: String,
}

fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, (u16, Value)> {
    serde_json::from_slice(body).map_err(|e| (400, json!({ "Err": format!("bad request: {e}") })))
}

fn volume(v: &VolumeInfo) -> Value {
    json!({
        "Name": v.name,
        "Mountpoint": v.mountpoint,
        "Status": {
            "options": v.options,
            "mounts": v.mounts,
            "created": v.created,
        },
    })
}

/// The answer for `fields` when `r` succeeded, else `{"Err": reason}` (with
/// the same fields empty, as Docker's own plugins answer).
fn answer(r: Result<Value, String>, empty: Value) -> (u16, Value) {
    match r {
        Ok(v) => (200, v),
        Err(e) => {
            let mut v = empty;
            v["Err"] = Value::String(e);
            (500, v)
        }
    }
}

/// Answers one request for `path` (e.g. `/VolumeDriver.Mount`): (HTTP
/// status, JSON body).
pub fn handle(driver: &Mutex<Driver>, path: &str, body: &[u8]) -> (u16, Value) {
    // Docker sends an empty body to Activate and `{}` to List/Capabilities.
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    match dispatch(driver, path, body) {
        Ok(v) | Err(v) => v,
    }
}

fn dispatch(driver: &Mutex<Driver>, path: &str, body: &[u8]) -> Result<(u16, Value), (u16, Value)> {
    Ok(match path {
        "/Plugin.Activate" => (200, json!({ "Implements": ["VolumeDriver"] })),
        "/VolumeDriver.Capabilities" => (200, json!({ "Capabilities": { "Scope": "local" } })),
        "/VolumeDriver.Create" => {
            let r: CreateReq = decode(body)?;
            let opts = r.opts.unwrap_or_default();
            let res = driver
                .lock()
                .create(&r.name, &opts)
                .map(|()| json!({ "Err": "" }));
            answer(res, json!({}))
        }
        "/VolumeDriver.Remove" => {
            let r: NameReq = decode(body)?;
            let res = driver.lock().remove(&r.name).map(|()| json!({ "Err": "" }));
            answer(res, json!({}))
        }
        "/VolumeDriver.Mount" => {
            let r: MountReq = decode(body)?;
            let res = driver
                .lock()
                .mount(&r.name, &r.id)
                .map(|p| json!({ "Mountpoint": p.display().to_string(), "Err": "" }));
            answer(res, json!({ "Mountpoint": "" }))
        }
        "/VolumeDriver.Unmount" => {
            let r: MountReq = decode(body)?;
            let res = driver
                .lock()
                .unmount(&r.name, &r.id)
                .map(|()| json!({ "Err": "" }));
            answer(res, json!({}))
        }
        "/VolumeDriver.Path" => {
            let r: NameReq = decode(body)?;
            let res = driver.lock().path(&r.name).map(|p| {
                let p = p.map(|p| p.display().to_string()).unwrap_or_default();
                json!({ "Mountpoint": p, "Err": "" })
            });
            answer(res, json!({ "Mountpoint": "" }))
        }
        "/VolumeDriver.Get" => {
            let r: NameReq = decode(body)?;
            let res = driver
                .lock()
                .get(&r.name)
                .map(|v| json!({ "Volume": volume(&v), "Err": "" }));
            answer(res, json!({ "Volume": null }))
        }
        "/VolumeDriver.List" => {
            let vols: Vec<Value> = driver.lock().list().iter().map(volume).collect();
            (200, json!({ "Volumes": vols, "Err": "" }))
        }
        other => (404, json!({ "Err": format!("unknown method {other}") })),
    })
}
