//! Settings from a YAML config file and from `CASSFS_<KEY>` environment
//! variables: which file is read, which keys the file and the environment
//! may set, and how they fill in the flags the command line left unset.
//! Precedence: command-line flags, then variables, then the file, then the
//! defaults. Every value is checked by the flag's own parser, so a file or a
//! variable obeys exactly the rules of the flag.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};

use crate::cli::Cli;

/// Prefix of the environment variables that set keys.
pub const ENV_PREFIX: &str = "CASSFS_";

/// The id of the `--config FILE` flag (also the key of `CASSFS_CONFIG`).
pub const CONFIG_ID: &str = "config";

/// The file key holding the password of `username` (never a flag).
pub const PASSWORD_KEY: &str = "password";

/// Keys a subcommand never takes from the file or the environment: they
/// name the volume or what an operator command acts on.
const SCOPE_KEYS: &[&str] = &["owner", "environment", "mount"];

/// Flags that are not settings (and so not keys).
const NOT_KEYS: &[&str] = &["help", "version", CONFIG_ID];

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}: {1}")]
    Read(String, String),
    #[error("{0}: {1} (the file must be a YAML mapping of keys to single values)")]
    Syntax(String, String),
    #[error("{origin}: unknown key '{key}' (allowed: {allowed})")]
    UnknownKey {
        origin: String,
        key: String,
        allowed: String,
    },
    #[error("{origin}: key '{key}' has no value")]
    NoValue { origin: String, key: String },
    #[error("{origin}: invalid value '{value}' for {key}: {reason}")]
    BadValue {
        origin: String,
        key: String,
        value: String,
        reason: String,
    },
    #[error(
        "{0}: a password is allowed only in a file that group and others cannot read \
         (mode {1:o}; chmod 600 {0})"
    )]
    Exposed(String, u32),
    #[error("{0}: password and password_file are both set (keep one)")]
    TwoPasswords(String),
}

/// The files searched, in order, when neither `--config` nor
/// `CASSFS_CONFIG` names one: the first that exists is read.
pub fn search_path() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("./cassfs.yaml")];
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        paths.push(Path::new(&home).join(".cassfs/cassfs.yaml"));
    }
    paths.push(PathBuf::from("/etc/cassfs/cassfs.yaml"));
    paths
}

/// Every key: the ids of the mount's flags that take a value, in the order
/// of `--help`.
pub fn keys() -> Vec<String> {
    Cli::command()
        .get_arguments()
        .filter(|a| a.get_long().is_some() && !NOT_KEYS.contains(&a.get_id().as_str()))
        .map(|a| a.get_id().to_string())
        .collect()
}

/// The environment variable of `key`: `CASSFS_ENTRY_TTL` for `entry_ttl`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// Fills the flags `args` (normalized, as clap parses them) left unset from
/// the environment and the config file, by appending `--key=value` flags.
/// Arguments clap cannot parse (usage errors, `--help`) are returned as
/// they are, for clap to report.
pub fn apply(args: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    let cmd = Cli::command();
    let args = config_after_subcommand(&cmd, args);
    let Ok(top) = cmd.clone().try_get_matches_from(&args) else {
        return Ok(args);
    };
    let (sub, matches) = match top.subcommand() {
        Some((name, m)) => (cmd.find_subcommand(name), m),
        None => (None, &top),
    };
    let keys = keys();
    let env = env_values(&keys)?;
    let file = match config_file(&top, matches)? {
        Some(path) => read_file(&path, &keys)?,
        None => FileSettings::default(),
    };
    if let Some(password) = file.password {
        crate::cli::set_file_password(password);
    }
    let taken: Vec<&String> = match sub {
        None => keys.iter().collect(),
        Some(sub) => keys
            .iter()
            .filter(|k| !SCOPE_KEYS.contains(&k.as_str()))
            .filter(|k| sub.get_arguments().any(|a| a.get_id() == k.as_str()))
            .collect(),
    };
    let mut out = args;
    for key in taken {
        if matches.value_source(key) == Some(ValueSource::CommandLine) {
            continue;
        }
        if let Some(value) = env.get(key).or_else(|| file.values.get(key)) {
            out.push(OsString::from(format!("--{}={value}", long_of(key))));
        }
    }
    Ok(out)
}

/// Moves a `--config FILE` written before a subcommand behind it (clap
/// takes no flag of the mount before a subcommand).
fn config_after_subcommand(cmd: &clap::Command, mut args: Vec<OsString>) -> Vec<OsString> {
    let is_sub = |a: Option<&OsString>| {
        a.and_then(|a| a.to_str())
            .is_some_and(|a| cmd.find_subcommand(a).is_some())
    };
    let flag = format!("--{CONFIG_ID}");
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    let len = if first == flag {
        2
    } else if first.starts_with(&format!("{flag}=")) {
        1
    } else {
        return args;
    };
    if is_sub(args.get(1 + len)) {
        let moved: Vec<OsString> = args.drain(1..1 + len).collect();
        args.splice(2..2, moved);
    }
    args
}

/// The long flag of a key (its id, for every key).
fn long_of(key: &str) -> String {
    Cli::command()
        .get_arguments()
        .find(|a| a.get_id() == key)
        .and_then(|a| a.get_long().map(str::to_string))
        .unwrap_or_else(|| key.to_string())
}

/// The known keys set by `CASSFS_<KEY>` variables, checked. Other
/// `CASSFS_*` variables are not settings and are left alone; an empty
/// variable counts as unset.
fn env_values(keys: &[String]) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for key in keys {
        let name = env_name(key);
        let Some(raw) = std::env::var_os(&name) else {
            continue;
        };
        let value = raw.into_string().map_err(|v| ConfigError::BadValue {
            origin: name.clone(),
            key: key.clone(),
            value: v.to_string_lossy().into_owned(),
            reason: "not UTF-8".into(),
        })?;
        if value.is_empty() {
            continue;
        }
        check_value(&name, key, &value)?;
        out.insert(key.clone(), value);
    }
    Ok(out)
}

/// The file to read: `--config FILE` (on the command or the subcommand),
/// else `CASSFS_CONFIG`, else the first of [`search_path`] that exists.
fn config_file(top: &ArgMatches, sub: &ArgMatches) -> Result<Option<PathBuf>, ConfigError> {
    let flag = [sub, top]
        .into_iter()
        .find_map(|m| m.try_get_one::<PathBuf>(CONFIG_ID).ok().flatten().cloned());
    if let Some(path) = flag {
        return Ok(Some(path));
    }
    let name = env_name(CONFIG_ID);
    match std::env::var_os(&name) {
        Some(p) if !p.is_empty() => Ok(Some(PathBuf::from(p))),
        _ => Ok(search_path().into_iter().find(|p| p.exists())),
    }
}

/// What a config file sets.
#[derive(Default)]
pub struct FileSettings {
    /// Key → value, checked.
    pub values: BTreeMap<String, String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for FileSettings {
    /// Never shows the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSettings")
            .field("values", &self.values)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// Reads and checks a config file: a YAML mapping of keys to scalars.
/// Every key must be known and every value valid, whatever the command.
pub fn read_file(path: &Path, keys: &[String]) -> Result<FileSettings, ConfigError> {
    let origin = path.display().to_string();
    let text = read_text(path).map_err(|e| ConfigError::Read(origin.clone(), e))?;
    let raw = parse_yaml(&origin, &text)?;
    let mut out = BTreeMap::new();
    let mut password = None;
    for (written, value) in raw {
        let key = written.replace('-', "_");
        if key != PASSWORD_KEY && !keys.contains(&key) {
            let mut allowed = keys.to_vec();
            allowed.push(PASSWORD_KEY.into());
            return Err(ConfigError::UnknownKey {
                origin,
                key: written,
                allowed: allowed.join(", "),
            });
        }
        let value = match value {
            Some(v) if !v.is_empty() => v,
            _ => return Err(ConfigError::NoValue { origin, key }),
        };
        if key == PASSWORD_KEY {
            password = Some(value);
            continue;
        }
        check_value(&origin, &key, &value)?;
        out.insert(key, value);
    }
    if password.is_some() {
        if out.contains_key("password_file") {
            return Err(ConfigError::TwoPasswords(origin));
        }
        let mode = std::fs::metadata(path)
            .map_err(|e| ConfigError::Read(origin.clone(), e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o044 != 0 {
            return Err(ConfigError::Exposed(origin, mode & 0o7777));
        }
    }
    Ok(FileSettings {
        values: out,
        password,
    })
}

/// The most a config file may hold.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// A config file's text: a regular file (or a character device such as
/// /dev/null) of at most [`MAX_FILE_BYTES`], in UTF-8.
fn read_text(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    if path.as_os_str().is_empty() {
        return Err("an empty path names no config file".into());
    }
    let kind = std::fs::metadata(path)
        .map_err(|e| e.to_string())?
        .file_type();
    if !kind.is_file() && !kind.is_char_device() {
        return Err("not a regular file".into());
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

/// The file's mapping; an empty file (or one of comments only) has no keys.
fn parse_yaml(origin: &str, text: &str) -> Result<Vec<(String, Option<String>)>, ConfigError> {
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---");
    if blank {
        return Ok(Vec::new());
    }
    let map: BTreeMap<String, Option<String>> = serde_saphyr::from_str(text).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("not YAML");
        ConfigError::Syntax(origin.into(), one_line(first.trim_start_matches("error: ")))
    })?;
    Ok(map.into_iter().collect())
}

/// Collapses a multi-line message into one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks one value with the mount flag's own parser.
fn check_value(origin: &str, key: &str, value: &str) -> Result<(), ConfigError> {
    let flag = format!("--{}={value}", long_of(key));
    let parsed = Cli::command().try_get_matches_from([OsStr::new("cassfs"), OsStr::new(&flag)]);
    match parsed {
        Ok(_) => Ok(()),
        Err(e) => Err(ConfigError::BadValue {
            origin: origin.into(),
            key: key.into(),
            value: value.into(),
            reason: reason(&e),
        }),
    }
}

/// What a clap error says is wrong with a value, in one line.
fn reason(e: &clap::Error) -> String {
    use std::error::Error;
    if let Some(source) = e.source() {
        let text = one_line(&source.to_string());
        if text == "value was not a boolean" {
            return format!("{text} (true, false, yes, no, on, off, 1, 0)");
        }
        return text;
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid value");
    // "error: invalid value 'x' for '--tls [<TLS>]'" → keep what follows.
    let first = first.trim_start_matches("error: ");
    let mut line = one_line(first);
    if let Some(valid) = text.lines().find(|l| l.contains("possible values")) {
        line = format!(
            "{line} ({})",
            one_line(valid.trim().trim_matches(['[', ']']))
        );
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_mount_flags() {
        let k = keys();
        for want in [
            "server",
            "keyspace",
            "owner",
            "entry_ttl",
            "tls_ca",
            "metrics",
        ] {
            assert!(k.iter().any(|x| x == want), "{want} missing from {k:?}");
        }
        assert!(!k.iter().any(|x| x == "help" || x == "config"), "{k:?}");
        assert_eq!(env_name("entry_ttl"), "CASSFS_ENTRY_TTL");
    }

    #[test]
    fn values_are_checked_by_the_flags_parsers() {
        assert!(check_value("f", "owner", "7").is_ok());
        let e = check_value("f", "owner", "x").expect_err("not a number");
        let msg = e.to_string();
        assert!(msg.starts_with("f: invalid value 'x' for owner: "), "{msg}");
        assert!(check_value("f", "workers", "0").is_err());
        assert!(check_value("f", "entry_ttl", "-1").is_err());
        assert!(check_value("f", "allow_other", "yes").is_ok());
        let e = check_value("f", "allow_other", "maybe").expect_err("not a bool");
        assert!(!e.to_string().contains('\n'), "{e}");
    }

    #[test]
    fn files_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = keys();
        let p = dir.path().join("c.yaml");
        std::fs::write(
            &p,
            "keyspace: k1\nowner: 7\nentry-ttl: 1.50\nallow_other: true\n",
        )
        .expect("write");
        let m = read_file(&p, &keys).expect("valid").values;
        assert_eq!(m.get("keyspace").map(String::as_str), Some("k1"));
        assert_eq!(m.get("owner").map(String::as_str), Some("7"));
        assert_eq!(m.get("entry_ttl").map(String::as_str), Some("1.50"));
        std::fs::write(&p, "environment: 1.10\n").expect("write");
        let m = read_file(&p, &keys).expect("valid").values;
        assert_eq!(m.get("environment").map(String::as_str), Some("1.10"));
        std::fs::write(&p, "keyspcae: k\n").expect("write");
        let e = read_file(&p, &keys).expect_err("unknown key").to_string();
        assert!(
            e.contains("unknown key 'keyspcae'") && e.contains("keyspace"),
            "{e}"
        );
        std::fs::write(&p, "owner: [1, 2]\n").expect("write");
        let e = read_file(&p, &keys).expect_err("a list").to_string();
        assert!(!e.contains('\n') && e.contains("c.yaml"), "{e}");
        std::fs::write(&p, "owner:\n").expect("write");
        assert!(read_file(&p, &keys).is_err(), "no value");
        std::fs::write(&p, "# nothing\n").expect("write");
        assert!(read_file(&p, &keys).expect("empty").values.is_empty());
        std::fs::write(&p, "- a\n- b\n").expect("write");
        assert!(read_file(&p, &keys).is_err(), "a list is not a mapping");
        std::fs::write(&p, "owner: 1\nowner: 2\n").expect("write");
        assert!(read_file(&p, &keys).is_err(), "a key twice");
        let e = read_file(Path::new("/dev/zero"), &keys).expect_err("endless");
        assert!(e.to_string().contains("larger than"), "{e}");
        assert!(read_file(dir.path(), &keys).is_err(), "a directory");
        assert!(read_file(Path::new(""), &keys).is_err(), "no path");
        std::fs::write(&p, b"owner: \xff\n").expect("write");
        assert!(read_file(&p, &keys).is_err(), "not UTF-8");
    }

    #[test]
    fn a_password_needs_a_private_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "username: fs\npassword: s3cret\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = read_file(&p, &keys())
            .expect_err("group-readable")
            .to_string();
        assert!(e.contains("chmod 600") && !e.contains("s3cret"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let f = read_file(&p, &keys()).expect("private");
        assert_eq!(f.password.as_deref(), Some("s3cret"));
        std::fs::write(&p, "password: a\npassword_file: /x\n").expect("write");
        assert!(read_file(&p, &keys()).is_err(), "both");
    }
}
