//! Streaming reader of Mender Artifacts (format 3, and 2).
//!
//! The reader is a resumable push parser: the caller feeds any split of the
//! artifact bytes and pulls [`Event`]s. It never buffers a member whole; the
//! payload leaves through the caller's output buffer.
//!
//! ```text
//! artifact.mender (tar)
//! ├── version                 {"format":"mender","version":3}
//! ├── manifest                "<sha256>  <path>\n" per file
//! ├── manifest.sig            base64 signature over `manifest` (optional)
//! ├── header.tar[.gz|.xz|.zst]
//! │   ├── header-info         payload types, provides, depends
//! │   ├── scripts/<State>_<Action>_<NN>[_name]
//! │   └── headers/0000/{type-info,meta-data}
//! └── data/0000.tar[.gz|.xz|.zst]
//!     └── <image file>        written to the inactive slot
//! ```
//!
//! Checkpoints: after the manifest (and signature) the reader stops with
//! [`Event::SignatureCheck`] until the caller calls
//! [`ArtifactReader::verify_signature`]; after the header it stops with
//! [`Event::HeaderReady`] until the caller calls
//! [`ArtifactReader::accept_header`]. No payload byte is produced before both.

mod header;
mod inflate;
mod manifest;
mod reader;
mod tar;
pub mod verify;

pub use header::{
    ArtifactHeader, Depends, Provide, ProvideKey, ProvideValue, MAX_SCRIPTS, MAX_SCRIPT_NAME_LEN,
};
pub use inflate::Compression;
#[cfg(feature = "alloc")]
pub use inflate::{MAX_XZ_DICT, MAX_ZSTD_WINDOW};
pub use manifest::ManifestError;
pub use manifest::{MAX_MANIFEST_LINE_LEN, MAX_MANIFEST_PATH_LEN};
pub use reader::{ArtifactError, ArtifactReader, Event, Member, MAX_METADATA_LEN};
pub use tar::{TarError, MAX_PATH_LEN, MAX_PAX_LEN};

/// Longest artifact name, group or device type the reader keeps.
pub const MAX_NAME_LEN: usize = 128;
/// Longest provides/depends key.
pub const MAX_KEY_LEN: usize = 64;
/// Longest provides/depends value.
pub const MAX_VALUE_LEN: usize = 128;
/// Most device types in `artifact_depends.device_type`.
pub const MAX_DEVICE_TYPES: usize = 16;
/// Most values in one depends list.
pub const MAX_DEPENDS_VALUES: usize = 8;
/// Most provides in one header.
pub const MAX_PROVIDES: usize = 16;
/// Most depends keys in one header (header-info and type-info together).
pub const MAX_DEPENDS: usize = 8;
/// Most `clears_artifact_provides` patterns.
pub const MAX_CLEARS: usize = 16;
/// Longest payload file name or script name.
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Most manifest lines.
pub const MAX_MANIFEST_ENTRIES: usize = 32;
/// Longest decoded signature (RSA 4096 = 512 bytes; DER ECDSA <= 72).
pub const MAX_SIGNATURE_LEN: usize = 512;
/// Size of the caller-provided inflate window: gzip needs 32 KiB.
pub const WINDOW_LEN: usize = 32 * 1024;
