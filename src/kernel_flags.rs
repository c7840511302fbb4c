//! The kernel's mount flags dev/suid/exec (and their negations) that the
//! mount helper's `-o` options chose, and the FUSE mount options for them.

use fuser::MountOption;

/// Kernel flags of the mount (`dev`, `suid`, `exec` and their negations),
/// as the mount options gave them; `None` leaves the default (fuser's:
/// nodev, nosuid, exec).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelFlags {
    pub dev: Option<bool>,
    pub suid: Option<bool>,
    pub exec: Option<bool>,
}

impl KernelFlags {
    /// The FUSE mount options for these flags.
    pub fn mount_options(&self) -> Vec<MountOption> {
        let pick = |v: Option<bool>, on: MountOption, off: MountOption| {
            v.map(|set| if set { on } else { off })
        };
        [
            pick(self.dev, MountOption::Dev, MountOption::NoDev),
            pick(self.suid, MountOption::Suid, MountOption::NoSuid),
            pick(self.exec, MountOption::Exec, MountOption::NoExec),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Records `opt` if it is a kernel flag; whether it was.
    pub fn set(&mut self, opt: &str) -> bool {
        let (slot, value) = match opt {
            "dev" => (&mut self.dev, true),
            "nodev" => (&mut self.dev, false),
            "suid" => (&mut self.suid, true),
            "nosuid" => (&mut self.suid, false),
            "exec" => (&mut self.exec, true),
            "noexec" => (&mut self.exec, false),
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}
