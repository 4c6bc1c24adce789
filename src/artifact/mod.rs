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
    ArtifactHeader, Depends, DependsList, ListFull, Provide, ProvideKey, ProvideList, ProvideRef,
    ProvideValue, StrList, MAX_SCRIPTS, MAX_SCRIPT_NAME_LEN,
};
pub use inflate::Compression;
#[cfg(feature = "alloc")]
pub use inflate::{MAX_XZ_DICT, MAX_ZSTD_WINDOW};
pub use manifest::ManifestError;
pub use manifest::{MAX_MANIFEST_LINE_LEN, MAX_MANIFEST_PATH_LEN};
pub use reader::{ArtifactError, ArtifactReader, Event, Member, MAX_METADATA_LEN};
pub use tar::{TarError, MAX_PATH_LEN, MAX_PAX_LEN};

/// Longest artifact name, group or device type the reader keeps
/// (`mender-artifact` sets no limit; names of 200 bytes are seen).
pub const MAX_NAME_LEN: usize = 256;
/// Longest provides/depends key.
pub const MAX_KEY_LEN: usize = 64;
/// Longest provides/depends value (`rootfs-image.version` is the artifact
/// name, so at least [`MAX_NAME_LEN`]).
pub const MAX_VALUE_LEN: usize = 256;
/// Bytes of all compatible device types together (each plus one), in the
/// artifact header and in a deployment: no cap on their number (64 types
/// of 60 bytes fit). header-info itself is at most [`MAX_METADATA_LEN`].
pub const MAX_DEVICE_TYPES_LEN: usize = 4096;
/// Bytes of all provides together (each key and value plus two), in one
/// header and kept for the device: no cap on their number (40 pairs of 100
/// bytes fit).
pub const MAX_PROVIDES_LEN: usize = 4096;
/// Bytes of all depends together (each value with its key, plus two), in
/// header-info and type-info: no cap on the number of keys or values.
pub const MAX_DEPENDS_LEN: usize = 4096;
/// Bytes of all `clears_artifact_provides` patterns together (each plus one).
pub const MAX_CLEARS_LEN: usize = 1024;
/// Longest payload file name or script name.
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Most manifest lines.
pub const MAX_MANIFEST_ENTRIES: usize = 32;
/// Longest decoded signature (RSA 4096 = 512 bytes; DER ECDSA <= 72).
pub const MAX_SIGNATURE_LEN: usize = 512;
/// Size of the caller-provided inflate window: gzip needs 32 KiB.
pub const WINDOW_LEN: usize = 32 * 1024;
