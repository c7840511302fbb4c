//! `cassfs status`: the volumes of a keyspace and their live sessions.

use serde_json::json;

use super::{snapshot, CmdResult, Scope};
use crate::store::Keyspace;

pub fn run(ks: &Keyspace, scope: &Scope, json_out: bool) -> CmdResult<()> {
    let volumes = snapshot::volumes(ks, scope)?;
    let sessions = snapshot::sessions(ks, scope)?;
    let now = super::now_ns();
    let mut docs = Vec::new();
    let mut text = Vec::new();
    let mut live = 0;
    for ((owner, env), created) in &volumes {
        let list = sessions
            .get(&(*owner, env.clone()))
            .cloned()
            .unwrap_or_default();
        live += list.len();
        text.push(format!(
            "volume ({owner}, {env}): {} live session(s)",
            list.len()
        ));
        let mut sdocs = Vec::new();
        for s in &list {
            let age = (now - s.heartbeat_ns).max(0) as f64 / 1e9;
            text.push(format!(
                "  {} pid {} on {} (version {}), heartbeat {age:.1} s ago, up since {}",
                s.host,
                s.pid,
                s.mountpoint,
                s.version,
                s.started_ns / 1_000_000_000
            ));
            sdocs.push(json!({
                "id": s.id, "host": s.host, "pid": s.pid, "mountpoint": s.mountpoint,
                "version": s.version, "started_ns": s.started_ns,
                "heartbeat_ns": s.heartbeat_ns, "heartbeat_age_s": age,
            }));
        }
        docs.push(json!({
            "owner": owner, "environment": env, "created_ns": created, "sessions": sdocs,
        }));
    }
    text.push(format!(
        "status: {} volume(s), {live} live session(s) in keyspace {}",
        volumes.len(),
        ks.name()
    ));
    super::print(json_out, &json!({ "volumes": docs }), &text.join("\n"));
    Ok(())
}
