//! `cassfs quota set|get|rm VOLUME`: a volume's quota (`quotas` table) —
//! bytes of file content and inodes — and its usage counters beside it.
//! VOLUME is `OWNER.ENVIRONMENT` (e.g. `7.prod`). Mounts of the volume
//! learn a change within a few seconds (src/ops/quota.rs).

use serde_json::json;

use super::{CmdResult, VolumeKey};
use crate::cli::{QuotaAction, QuotaArgs};
use crate::store::usage::{self, Limits, Usage};
use crate::store::{val, Keyspace};

pub fn run(args: QuotaArgs) -> CmdResult<u8> {
    match args.action {
        QuotaAction::Set(a) => {
            if a.bytes.is_none() && a.inodes.is_none() {
                return Err("quota set: give --bytes and/or --inodes".into());
            }
            let ks = super::connect(&a.vol.ks)?;
            let key = existing(&ks, &a.vol.volume)?;
            let (b, i) = (a.bytes.map(|l| l.0), a.inodes.map(|l| l.0));
            usage::set_limits(&ks, &key, b, i).map_err(|e| e.to_string())?;
            show(&ks, &key, "set", a.vol.ks.json)
        }
        QuotaAction::Get(a) => {
            let ks = super::connect(&a.ks)?;
            let key = existing(&ks, &a.volume)?;
            show(&ks, &key, "", a.ks.json)
        }
        QuotaAction::Rm(a) => {
            let ks = super::connect(&a.ks)?;
            let key = &a.volume;
            let had = usage::read_limits(&ks, key).map_err(|e| e.to_string())?;
            usage::remove_limits(&ks, key).map_err(|e| e.to_string())?;
            let text = match had {
                Some(_) => format!("quota of volume ({}, {}) removed", key.0, key.1),
                None => format!("volume ({}, {}) had no quota", key.0, key.1),
            };
            let doc = json!({"owner": key.0, "environment": key.1, "removed": had.is_some()});
            super::print(a.ks.json, &doc, &text);
            Ok(0)
        }
    }
}

/// The volume, if it exists (a quota for a mistyped volume would hold
/// nothing).
fn existing(ks: &Keyspace, key: &VolumeKey) -> CmdResult<VolumeKey> {
    let cql = format!(
        "SELECT created_ns FROM {}.volumes WHERE owner = ? AND environment = ?",
        ks.name()
    );
    let rows = ks
        .run(&cql, vec![val::big(key.0), val::text(&key.1)])
        .map_err(|e| e.to_string())?;
    if rows.is_empty() {
        return Err(format!(
            "there is no volume ({}, {}) (see cassfs status)",
            key.0, key.1
        ));
    }
    Ok(key.clone())
}

/// Prints a volume's quota and usage; `verb` names what was just done.
fn show(ks: &Keyspace, key: &VolumeKey, verb: &str, json_out: bool) -> CmdResult<u8> {
    let limits = usage::read_limits(ks, key).map_err(|e| e.to_string())?;
    let used = usage::read_usage(ks, key).map_err(|e| e.to_string())?;
    let head = if verb.is_empty() {
        format!("volume ({}, {})", key.0, key.1)
    } else {
        format!("quota of volume ({}, {}) {verb}", key.0, key.1)
    };
    let text = format!("{head}: {}", describe(used, limits.unwrap_or_default()));
    let doc = json!({
        "owner": key.0, "environment": key.1,
        "usage": usage_doc(used), "quota": limits_doc(limits.unwrap_or_default()),
    });
    super::print(json_out, &doc, &text);
    Ok(0)
}

/// Usage as JSON numbers.
pub fn usage_doc(u: Usage) -> serde_json::Value {
    json!({"bytes": u.bytes, "inodes": u.inodes})
}

/// Limits as JSON numbers (null: no limit).
pub fn limits_doc(l: Limits) -> serde_json::Value {
    json!({"max_bytes": l.max_bytes, "max_inodes": l.max_inodes})
}

/// `1.5 GiB of 10.0 GiB (15%), 120 of 1000 inodes (12%)`, or without a
/// limit `1.5 GiB (no limit), 120 inodes (no limit)`.
pub fn describe(u: Usage, l: Limits) -> String {
    let pct = |used: u64, max: u64| used as f64 * 100.0 / max as f64;
    let (bytes, inodes) = (u.bytes.max(0) as u64, u.inodes.max(0) as u64);
    let b = match l.max_bytes {
        Some(m) => format!(
            "{} of {} ({:.0}%)",
            human_bytes(bytes),
            human_bytes(m),
            pct(bytes, m)
        ),
        None => format!("{} (no limit)", human_bytes(bytes)),
    };
    let i = match l.max_inodes {
        Some(m) => format!("{inodes} of {m} inodes ({:.0}%)", pct(inodes, m)),
        None => format!("{inodes} inodes (no limit)"),
    };
    format!("{b}, {i}")
}

/// Bytes as a person reads them: `512 B`, `1.5 KiB`, `10.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_a_person_reads_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 << 30), "10.0 GiB");
        let l = Limits {
            max_bytes: Some(1000),
            max_inodes: None,
        };
        let u = Usage {
            bytes: 250,
            inodes: 3,
        };
        assert_eq!(describe(u, l), "250 B of 1000 B (25%), 3 inodes (no limit)");
    }
}
