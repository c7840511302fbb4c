//! The mount helper's command line: `cassfs SOURCE MOUNTPOINT [-o OPTS] [-f]`,
//! as mount(8) and mount.fuse3 run it for `mount -t fuse.cassfs` and fstab
//! lines. It owns the SOURCE syntax (`[KEYSPACE:]OWNER.ENVIRONMENT[@SERVERS]`),
//! the `-o` options (every flag, plus the options mount(8), mount.fuse3 and
//! systemd pass), and their translation into ordinary flags and kernel
//! mount flags.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::CommandFactory;

use crate::cli::Cli;
pub use crate::kernel_flags::KernelFlags;

/// The SOURCE syntax, for messages and the README.
pub const SOURCE_SYNTAX: &str = "[KEYSPACE:]OWNER.ENVIRONMENT[@SERVER[,SERVER...]]";

/// Options accepted and ignored: mount(8)'s, systemd's and libfuse's that
/// mean nothing here (the mount is always `noatime`, `default_permissions`,
/// asynchronous and read-write unless `ro`).
const IGNORED: &[&str] = &[
    "defaults",
    "auto",
    "noauto",
    "nofail",
    "_netdev",
    "user",
    "nouser",
    "users",
    "rw",
    "async",
    "default_permissions",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "nodiratime",
    "diratime",
    "lazytime",
    "nolazytime",
    "nonempty",
];

/// Prefixes of ignored options (systemd's, comments, helper markers).
const IGNORED_PREFIXES: &[&str] = &["x-", "X-", "comment=", "helper=", "subtype="];

/// Options known but not supported, with the reason.
const REFUSED: &[(&str, &str)] = &[
    (
        "sync",
        "not supported: writes are committed at close and fsync",
    ),
    (
        "dirsync",
        "not supported: directory changes are committed at once",
    ),
    (
        "password",
        "a password is never taken from the command line: use password_file or the config file",
    ),
];

/// The volume a SOURCE names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub keyspace: Option<String>,
    pub owner: i64,
    pub environment: String,
    pub servers: Option<String>,
}

/// Parses `[KEYSPACE:]OWNER.ENVIRONMENT[@SERVER[,SERVER...]]`.
pub fn parse_source(s: &str) -> Result<Source, String> {
    let bad = |why: &str| format!("SOURCE '{s}': {why} (expected {SOURCE_SYNTAX}, e.g. 7.prod)");
    let (volume, servers) = match s.split_once('@') {
        Some((_, servers)) if servers.is_empty() || servers.contains('@') => {
            return Err(bad("bad server list after '@'"));
        }
        Some((v, servers)) => (v, Some(servers.to_string())),
        None => (s, None),
    };
    let (keyspace, volume) = match volume.split_once(':') {
        Some((k, v)) => {
            let ok = k.len() <= 48
                && k.starts_with(|c: char| c.is_ascii_alphabetic())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(bad(&format!(
                    "keyspace '{k}' must be 1-48 letters, digits or '_', starting with a letter"
                )));
            }
            (Some(k.to_string()), v)
        }
        None => (None, volume),
    };
    let (owner, environment) = volume
        .split_once('.')
        .ok_or_else(|| bad("no '.' between owner and environment"))?;
    let owner: i64 = owner
        .parse()
        .map_err(|_| bad(&format!("owner '{owner}' is not an integer")))?;
    let environment = crate::cli::environment(environment).map_err(|e| bad(&e))?;
    Ok(Source {
        keyspace,
        owner,
        environment,
        servers,
    })
}

/// The helper form, translated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Helper {
    /// Ordinary flags (`--owner=7 --mount=/srv/x ...`), after argv[0].
    pub args: Vec<OsString>,
    /// `-f`: stay in the foreground instead of detaching once mounted.
    pub foreground: bool,
    pub flags: KernelFlags,
}

/// Whether `args` (argv, with argv[0]) are the helper form: two operands
/// first, the first not a subcommand.
pub fn is_helper_form(args: &[OsString]) -> bool {
    let operand = |i: usize| {
        args.get(i)
            .and_then(|a| a.to_str())
            .is_some_and(|a| !a.is_empty() && !a.starts_with('-'))
    };
    if !(operand(1) && operand(2)) {
        return false;
    }
    let first = args[1].to_string_lossy();
    let cmd = Cli::command();
    let is_sub = first == "help"
        || cmd
            .get_subcommands()
            .any(|s| s.get_name() == first || s.get_all_aliases().any(|a| a == first));
    !is_sub
}

/// Translates the helper form into flags: `Ok(None)` when `args` are not in
/// it, an error line for a bad SOURCE or option.
pub fn translate(args: &[OsString]) -> Result<Option<Helper>, String> {
    if !is_helper_form(args) {
        return Ok(None);
    }
    let source = parse_source(&args[1].to_string_lossy())?;
    let mountpoint = absolute(PathBuf::from(&args[2]))?;
    let mut out: Vec<OsString> = vec![
        format!("--owner={}", source.owner).into(),
        format!("--environment={}", source.environment).into(),
    ];
    let mut mount = OsString::from("--mount=");
    mount.push(mountpoint.as_os_str());
    out.push(mount);
    let mut given = vec!["owner".to_string(), "environment".into(), "mount".into()];
    if let Some(k) = &source.keyspace {
        out.push(format!("--keyspace={k}").into());
        given.push("keyspace".into());
    }
    if let Some(s) = &source.servers {
        out.push(format!("--server={s}").into());
        given.push("server".into());
    }
    let mut helper = Helper {
        args: Vec::new(),
        foreground: false,
        flags: KernelFlags::default(),
    };
    let mut rest = args[3..].iter();
    while let Some(a) = rest.next() {
        let text = a.to_string_lossy();
        if text == "-f" {
            helper.foreground = true;
        } else if text == "-o" {
            let opts = rest.next().ok_or("-o needs a list of options")?;
            let opts = opts.to_str().ok_or("-o: the options are not UTF-8")?;
            options(opts, &mut given, &mut out, &mut helper.flags)?;
        } else if let Some(opts) = text.strip_prefix("-o") {
            options(opts, &mut given, &mut out, &mut helper.flags)?;
        } else {
            out.push(a.clone());
        }
    }
    helper.args = out;
    Ok(Some(helper))
}

/// A mount point made absolute (the daemon changes to `/` once mounted);
/// whether it exists is checked when mounting.
fn absolute(p: PathBuf) -> Result<PathBuf, String> {
    if p.is_absolute() {
        return Ok(p);
    }
    let cwd = std::env::current_dir()
        .map_err(|e| format!("cannot resolve the mount point {}: {e}", p.display()))?;
    Ok(cwd.join(p))
}

/// Splits an option list at commas outside double quotes; quotes around a
/// value are removed (`server="a,b"`).
fn split_options(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in list.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().filter(|o| !o.is_empty()).collect()
}

/// Translates one `-o` list.
fn options(
    list: &str,
    given: &mut Vec<String>,
    out: &mut Vec<OsString>,
    flags: &mut KernelFlags,
) -> Result<(), String> {
    let cmd = Cli::command();
    for opt in split_options(list) {
        if IGNORED.contains(&opt.as_str())
            || IGNORED_PREFIXES.iter().any(|p| opt.starts_with(p))
            || flags.set(&opt)
        {
            continue;
        }
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n.replace('-', "_"), Some(v.to_string())),
            None => (opt.replace('-', "_"), None),
        };
        if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
            return Err(format!("mount option '{name}': {why}"));
        }
        if name == "ro" && value.is_none() {
            if given.iter().any(|g| g == "read_only") {
                return Err("mount option 'ro': read_only is already given".into());
            }
            given.push("read_only".into());
            out.push("--read_only=true".into());
            continue;
        }
        let arg = cmd.get_arguments().find(|a| {
            a.get_id() == name.as_str()
                && a.get_long().is_some()
                && a.get_id() != "help"
                && a.get_id() != "version"
        });
        let Some(arg) = arg else {
            return Err(format!(
                "unknown mount option '{opt}' (allowed: the flags as options, e.g. \
                 entry_ttl=5,config=FILE; ro, allow_other, dev, nodev, suid, nosuid, exec, \
                 noexec; ignored: {}, {}*)",
                IGNORED.join(", "),
                IGNORED_PREFIXES.join("*, ")
            ));
        };
        if given.contains(&name) {
            return Err(format!("mount option '{opt}': {name} is already given (by SOURCE, MOUNTPOINT or another option)"));
        }
        given.push(name.clone());
        let takes_no_value = arg.get_num_args().is_some_and(|r| r.min_values() == 0);
        let long = arg.get_long().unwrap_or(&name);
        match value {
            Some(v) => out.push(format!("--{long}={v}").into()),
            None if takes_no_value => out.push(format!("--{long}=true").into()),
            None => return Err(format!("mount option '{name}' needs a value ({name}=...)")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuser::MountOption;

    fn argv(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    fn strs(h: &Helper) -> Vec<String> {
        h.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn sources_parse() {
        let s = parse_source("7.prod").expect("plain");
        assert_eq!((s.owner, s.environment.as_str()), (7, "prod"));
        assert_eq!((s.keyspace, s.servers), (None, None));
        let s = parse_source("ks_1:-3.pre.prod@10.0.0.5,[::1]:9043").expect("full");
        assert_eq!(s.keyspace.as_deref(), Some("ks_1"));
        assert_eq!((s.owner, s.environment.as_str()), (-3, "pre.prod"));
        assert_eq!(s.servers.as_deref(), Some("10.0.0.5,[::1]:9043"));
        for bad in [
            "7",
            "x.prod",
            "7.",
            "7.a/b",
            "1k:7.prod",
            "7.prod@",
            "k:7.p@a@b",
            ".prod",
        ] {
            let e = parse_source(bad).expect_err(bad);
            assert!(e.contains(SOURCE_SYNTAX) && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn helper_form_is_told_from_flags_and_subcommands() {
        assert!(is_helper_form(&argv(&["cassfs", "7.prod", "/m"])));
        assert!(!is_helper_form(&argv(&["cassfs", "-mount", "/m"])));
        assert!(!is_helper_form(&argv(&["cassfs", "status", "x"])));
        assert!(!is_helper_form(&argv(&["cassfs", "du", "x"])));
        assert!(!is_helper_form(&argv(&["cassfs", "7.prod"])));
    }

    #[test]
    fn options_become_flags() {
        let h = translate(&argv(&[
            "cassfs",
            "k:7.prod@127.0.0.1",
            "/m",
            "-o",
            "ro,_netdev,nofail,x-systemd.automount,comment=c,allow_other,entry-ttl=5,nodev,suid,config=/c.yaml,server-x",
        ]));
        let e = h.expect_err("server-x is unknown");
        assert!(
            e.contains("unknown mount option 'server-x'") && !e.contains('\n'),
            "{e}"
        );
        let h = translate(&argv(&[
            "cassfs",
            "k:7.prod@127.0.0.1",
            "/m",
            "-o",
            "ro,_netdev,nofail,x-systemd.automount,comment=c,allow_other,entry-ttl=5,nodev,suid,config=/c.yaml,rw,dev",
            "-f",
        ]))
        .expect("valid")
        .expect("helper form");
        assert!(h.foreground);
        assert_eq!(
            strs(&h),
            [
                "--owner=7",
                "--environment=prod",
                "--mount=/m",
                "--keyspace=k",
                "--server=127.0.0.1",
                "--read_only=true",
                "--allow_other=true",
                "--entry_ttl=5",
                "--config=/c.yaml",
            ]
        );
        assert_eq!(
            h.flags.mount_options(),
            [MountOption::Dev, MountOption::Suid]
        );
        let h = translate(&argv(&[
            "cassfs",
            "7.prod",
            "/m",
            "-oserver=\"a,b\",noexec",
        ]))
        .expect("valid")
        .expect("helper");
        assert!(
            strs(&h).contains(&"--server=a,b".to_string()),
            "{:?}",
            strs(&h)
        );
        assert_eq!(h.flags.mount_options(), [MountOption::NoExec]);
    }

    #[test]
    fn bad_options_are_one_line_errors() {
        for (opts, want) in [
            ("owner=8", "already given"),
            ("k=1", "unknown mount option 'k=1'"),
            ("sync", "not supported"),
            ("password=x", "never taken from the command line"),
            ("workers", "needs a value"),
            ("server=a,server=b", "already given"),
        ] {
            let e = translate(&argv(&["cassfs", "7.prod@h", "/m", "-o", opts])).expect_err(opts);
            assert!(e.contains(want) && !e.contains('\n'), "{opts}: {e}");
        }
        let e = translate(&argv(&["cassfs", "7.prod", "/m", "-o"])).expect_err("no list");
        assert!(e.contains("-o"), "{e}");
    }
}
