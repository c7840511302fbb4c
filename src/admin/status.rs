//! `cassfs status`: the volumes of a keyspace with their usage, quota and
//! live sessions; times read as a person reads them (an age and an
//! ISO-8601 UTC time), numbers kept in `--json`.

use serde_json::json;

use super::quota::{describe, limits_doc, usage_doc};
use super::{snapshot, CmdResult, Scope};
use crate::store::{usage, Keyspace};

pub fn run(ks: &Keyspace, scope: &Scope, json_out: bool) -> CmdResult<()> {
    let volumes = snapshot::volumes(ks, scope)?;
    let sessions = snapshot::sessions(ks, scope)?;
    let used = usage::all_usage(ks).map_err(|e| e.to_string())?;
    let limits = usage::all_limits(ks).map_err(|e| e.to_string())?;
    let now = super::now_ns();
    let mut docs = Vec::new();
    let mut text = Vec::new();
    let mut live = 0;
    for (key, created) in &volumes {
        let (owner, env) = key;
        let list = sessions.get(key).cloned().unwrap_or_default();
        let u = used.get(key).copied().unwrap_or_default();
        let l = limits.get(key).copied().unwrap_or_default();
        live += list.len();
        text.push(format!(
            "volume ({owner}, {env}): {}; {} live session(s); created {}",
            describe(u, l),
            list.len(),
            when(*created, now)
        ));
        let mut sdocs = Vec::new();
        for s in &list {
            let age = (now - s.heartbeat_ns).max(0) as f64 / 1e9;
            text.push(format!(
                "  {} pid {} on {} (version {}), heartbeat {}, started {}",
                s.host,
                s.pid,
                s.mountpoint,
                s.version,
                when(s.heartbeat_ns, now),
                when(s.started_ns, now)
            ));
            sdocs.push(json!({
                "id": s.id, "host": s.host, "pid": s.pid, "mountpoint": s.mountpoint,
                "version": s.version, "started_ns": s.started_ns,
                "heartbeat_ns": s.heartbeat_ns, "heartbeat_age_s": age,
            }));
        }
        docs.push(json!({
            "owner": owner, "environment": env, "created_ns": created, "sessions": sdocs,
            "usage": usage_doc(u), "quota": limits_doc(l),
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

/// `3s ago (2026-12-06T20:15:03Z)`: the age of a time in nanoseconds since
/// the epoch, and the time itself in UTC.
pub fn when(ns: i64, now_ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let age = (now_ns - ns).div_euclid(1_000_000_000);
    let ago = if age < 0 {
        format!("in {}", span(-age))
    } else {
        format!("{} ago", span(age))
    };
    format!("{ago} ({})", iso_utc(secs))
}

/// A number of seconds as its two largest units: `42s`, `5m 3s`, `2h 7m`,
/// `3d 4h`.
pub fn span(secs: i64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// Seconds since the epoch as ISO-8601 UTC, `2026-12-06T20:15:03Z`.
pub fn iso_utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_a_person_reads_them() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso_utc(1_796_588_103), "2026-12-06T20:15:03Z");
        assert_eq!(span(42), "42s");
        assert_eq!(span(303), "5m 3s");
        assert_eq!(span(7_620), "2h 7m");
        assert_eq!(span(3 * 86_400 + 4 * 3600 + 5), "3d 4h");
        let t = 1_796_588_103_000_000_000;
        assert_eq!(when(t, t + 3_400_000_000), "3s ago (2026-12-06T20:15:03Z)");
        assert!(when(t, t - 2_000_000_000).starts_with("in 2s"));
    }
}
