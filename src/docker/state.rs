//! The Docker plugin's state on disk: the volumes Docker created through
//! this host's plugin, their options, and which containers (mount IDs) hold
//! each one mounted. One JSON file, replaced whole by write, fsync and
//! rename, so a crash leaves either the old state or the new one.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The state file's name in the state directory.
const FILE: &str = "state.json";

/// One volume known to the plugin.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct VolumeState {
    /// The `-o` options it was created with.
    pub options: BTreeMap<String, String>,
    /// When it was created, in seconds since the epoch.
    pub created: i64,
    /// Mount requests not yet matched by an Unmount, per caller ID.
    pub holders: BTreeMap<String, u32>,
}

impl VolumeState {
    /// Mount requests outstanding over all callers.
    pub fn held(&self) -> u32 {
        self.holders.values().sum()
    }
}

/// Everything the plugin keeps across restarts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub volumes: BTreeMap<String, VolumeState>,
}

/// Where the state lives.
pub struct StateFile {
    dir: PathBuf,
}

impl StateFile {
    /// The state file of `dir` (created if missing, mode 0700).
    pub fn new(dir: &Path) -> Result<StateFile, String> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("state directory {}: {e}", dir.display()))?;
        Ok(StateFile {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The saved state (empty when none was ever saved).
    pub fn load(&self) -> Result<State, String> {
        let path = self.path();
        match fs::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a CassFS plugin state: {e}", path.display())),
        }
    }

    /// Replaces the saved state with `state`, durably.
    pub fn save(&self, state: &State) -> Result<(), String> {
        let path = self.path();
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let fail = |e: io::Error| format!("cannot save {}: {e}", path.display());
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| fail(io::Error::other(e)))?;
        let mut f = File::create(&tmp).map_err(fail)?;
        f.write_all(&bytes).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        drop(f);
        fs::rename(&tmp, &path).map_err(fail)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_save_and_a_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::new(&dir.path().join("s")).expect("state dir");
        assert_eq!(file.load().expect("empty"), State::default());
        let mut s = State::default();
        let v = s.volumes.entry("7.prod".into()).or_default();
        v.options.insert("ro".into(), "true".into());
        v.holders.insert("abc".into(), 2);
        file.save(&s).expect("saved");
        assert_eq!(file.load().expect("loaded"), s);
        assert_eq!(s.volumes["7.prod"].held(), 2);
    }

    #[test]
    fn a_damaged_state_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::new(dir.path()).expect("state dir");
        fs::write(file.path(), b"{not json").expect("write");
        let err = file.load().expect_err("damaged");
        assert!(err.contains("state.json"), "{err}");
    }
}
