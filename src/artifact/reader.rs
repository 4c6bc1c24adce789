//! The artifact push parser. (Being written: see the reader issue notes.)

use super::header::ArtifactHeader;
use super::verify::VerifyKey;

/// Compression of a `header.tar*` or `data/NNNN.tar*` member, by suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// No suffix.
    None,
    /// `.gz`
    Gzip,
    /// `.xz` (needs the `alloc` feature).
    Xz,
    /// `.zst` (needs the `alloc` feature).
    Zstd,
}

/// What [`ArtifactReader::feed`] stopped at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// All input was consumed; feed more.
    NeedsMoreInput,
    /// Manifest (and `manifest.sig`, if any) read: call
    /// [`ArtifactReader::verify_signature`] before feeding on.
    SignatureCheck,
    /// Header read and its checksum matched: inspect
    /// [`ArtifactReader::header`], then call [`ArtifactReader::accept_header`].
    HeaderReady,
    /// A state script starts; its name is [`ArtifactReader::file_name`].
    ScriptStart {
        /// Script size in bytes.
        size: u64,
    },
    /// `n` bytes of the current script are at the start of the output buffer.
    ScriptData(usize),
    /// The current script is complete.
    ScriptEnd,
    /// The payload file starts; its name is [`ArtifactReader::file_name`].
    PayloadStart {
        /// Uncompressed size of the image file.
        size: u64,
    },
    /// `n` payload bytes are at the start of the output buffer.
    PayloadData(usize),
    /// The payload file is complete and its SHA-256 matched the manifest.
    PayloadEnd,
    /// The whole artifact was read and every manifest entry was checked.
    Done,
}

/// Why an artifact was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArtifactError {
    /// A caller buffer is too small.
    BufferTooSmall {
        /// Bytes needed.
        required: usize,
    },
    /// The input ended before the artifact did.
    Truncated,
}

impl core::fmt::Display for ArtifactError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BufferTooSmall { required } => {
                write!(f, "buffer too small: {required} bytes needed")
            }
            Self::Truncated => f.write_str("the artifact is truncated"),
        }
    }
}

impl core::error::Error for ArtifactError {}

/// Resumable Mender Artifact reader.
pub struct ArtifactReader<'w> {
    window: &'w mut [u8],
    header: ArtifactHeader,
}

impl<'w> ArtifactReader<'w> {
    /// A reader using `window` (at least [`super::WINDOW_LEN`] bytes) for
    /// decompression.
    ///
    /// # Errors
    /// [`ArtifactError::BufferTooSmall`] when `window` is too short.
    pub fn new(window: &'w mut [u8]) -> Result<Self, ArtifactError> {
        if window.len() < super::WINDOW_LEN {
            return Err(ArtifactError::BufferTooSmall {
                required: super::WINDOW_LEN,
            });
        }
        Ok(Self {
            window,
            header: ArtifactHeader::default(),
        })
    }

    /// Consumes a prefix of `input`, writes data to `output`, and returns the
    /// event reached with the number of input bytes consumed.
    ///
    /// # Errors
    /// Any [`ArtifactError`]; the reader is then unusable.
    pub fn feed(
        &mut self,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(Event, usize), ArtifactError> {
        let _ = (input, output, &mut self.window);
        Err(ArtifactError::Truncated)
    }

    /// Checks `manifest.sig` against `keys`. With no keys any artifact passes
    /// (and the signature is not checked); with keys an unsigned artifact or
    /// one no key verifies is refused.
    ///
    /// # Errors
    /// Signature missing or invalid.
    pub fn verify_signature(&mut self, keys: &[VerifyKey]) -> Result<(), ArtifactError> {
        let _ = keys;
        Ok(())
    }

    /// Lets the reader go on into the payload after [`Event::HeaderReady`].
    pub fn accept_header(&mut self) {}

    /// The parsed header (complete after [`Event::HeaderReady`]).
    pub fn header(&self) -> &ArtifactHeader {
        &self.header
    }

    /// Name of the current script or payload file.
    pub fn file_name(&self) -> &str {
        ""
    }

    /// `Ok` once [`Event::Done`] was reached; call at end of input.
    ///
    /// # Errors
    /// [`ArtifactError::Truncated`] otherwise.
    pub fn finish(&self) -> Result<(), ArtifactError> {
        Err(ArtifactError::Truncated)
    }
}
