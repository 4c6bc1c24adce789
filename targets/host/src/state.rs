//! The state record file `<DATA>/otalite.state` (format: [`otalite::store`]).

use super::fs::{atomic_write, read_limited};
use otalite::store::{StateRecord, StoreError, MAX_RECORD_LEN};
use std::io;
use std::path::{Path, PathBuf};

/// File name of the state record inside the data directory.
pub const STATE_FILE: &str = "otalite.state";
/// The Update Control Map pool (`otalite::agent::control_map`), in the
/// data dir; written atomically like the state record.
pub const CONTROL_MAPS_FILE: &str = "otalite.control-maps";
/// `otalite control-map set|clear` asks the running daemon through this
/// file (first line `set` and the map, or `clear`) and SIGHUP.
pub const CONTROL_MAP_REQUEST_FILE: &str = "otalite.control-map.request";
/// The daemon's answer: `ok <refresh interval in seconds>` or
/// `error <reason>`.
pub const CONTROL_MAP_REPLY_FILE: &str = "otalite.control-map.reply";

/// Why the state file could not be used.
#[derive(Debug)]
pub enum StateFileError {
    /// Reading or writing failed.
    Io(PathBuf, io::Error),
    /// The file exists but is damaged or foreign.
    Corrupt(PathBuf, StoreError),
}

impl std::fmt::Display for StateFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(path, error) => write!(f, "state file {}: {error}", path.display()),
            Self::Corrupt(path, error) => write!(f, "state file {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for StateFileError {}

/// Loads the record; `Ok(None)` when there is none yet (fresh device).
///
/// # Errors
/// See [`StateFileError`]. A damaged record is an error, never silently
/// replaced: the atomic write makes damage a sign of a storage problem.
pub fn load(data_dir: &Path) -> Result<Option<StateRecord>, StateFileError> {
    let path = data_dir.join(STATE_FILE);
    match read_limited(&path, MAX_RECORD_LEN) {
        Ok(bytes) => StateRecord::decode(&bytes)
            .map(Some)
            .map_err(|e| StateFileError::Corrupt(path, e)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(StateFileError::Io(path, error)),
    }
}

/// Stores the record atomically.
///
/// # Errors
/// See [`StateFileError`]; the previous record is intact on error.
pub fn save(data_dir: &Path, record: &StateRecord) -> Result<(), StateFileError> {
    let path = data_dir.join(STATE_FILE);
    let mut buffer = vec![0u8; MAX_RECORD_LEN];
    let bytes = record
        .encode(&mut buffer)
        .map_err(|e| StateFileError::Corrupt(path.clone(), e))?;
    std::fs::create_dir_all(data_dir).map_err(|e| StateFileError::Io(data_dir.to_path_buf(), e))?;
    atomic_write(&path, bytes).map_err(|e| StateFileError::Io(path.clone(), e))
}
