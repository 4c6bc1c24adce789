//! The crate's error type.

use core::fmt;
use std::io;
use std::path::PathBuf;

use crate::block::BlockError;

/// Errors of [`GrubEnv`](crate::GrubEnv) and [`find_env_dir`](crate::find_env_dir).
#[derive(Debug)]
pub enum Error {
    /// A file system operation failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An environment block could not be parsed or built (this includes
    /// invalid variable names and values that do not fit).
    Block {
        /// The block's file.
        path: PathBuf,
        /// What is wrong.
        source: BlockError,
    },
    /// No grub-mender-grubenv directory was found under this root.
    NoEnvDir {
        /// The root prefix searched.
        root: PathBuf,
    },
    /// A value is longer than the caller's buffer.
    ValueTooLong {
        /// The variable's name.
        name: String,
        /// Length of the value.
        len: usize,
        /// Size of the caller's buffer.
        capacity: usize,
    },
    /// The inter-process lock file stayed locked for a second.
    LockTimeout {
        /// The lock file.
        path: PathBuf,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            Self::Block { path, source } => write!(f, "{}: {source}", path.display()),
            Self::NoEnvDir { root } => write!(
                f,
                "cannot determine the grub-mender-grubenv directory under {}",
                root.display()
            ),
            Self::ValueTooLong {
                name,
                len,
                capacity,
            } => write!(
                f,
                "value of {name:?} has {len} bytes, more than the buffer's {capacity}"
            ),
            Self::LockTimeout { path } => {
                write!(f, "cannot acquire flock() on {}", path.display())
            }
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Block { source, .. } => Some(source),
            _ => None,
        }
    }
}
