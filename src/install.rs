//! The install pipeline: artifact bytes in, verified image in the inactive
//! slot out.
//!
//! ```text
//! source --read--> input buffer --feed--> ArtifactReader --payload--> BlockWriter --> slot
//!                                        | SignatureCheck: keys checked before the header is trusted
//!                                        | HeaderReady: device type, depends, payload type checked
//!                                        |              before the first payload byte is written
//!                                        | PayloadEnd: SHA-256 of the image matched the manifest
//!                                        ` Done: every manifest entry was checked
//! ```
//!
//! [`stream_artifact`] returns `Ok` only after [`Event::Done`]: the caller
//! may switch the bootloader only then. Bytes of a refused artifact may
//! already sit in the inactive slot, which is harmless: nothing points at it.

use crate::artifact::verify::VerifyKey;
use crate::artifact::{ArtifactError, ArtifactHeader, ArtifactReader, Event};
use crate::device::{check_compatibility, CompatError, Provides};
use crate::partition::{BlockWriter, Partition, WriteError, WriteStats};
use embedded_io::Read;

/// The host's part of an install: state scripts from the artifact header
/// and progress.
pub trait InstallHooks {
    /// The host's error type.
    type Error: core::fmt::Debug + core::fmt::Display;

    /// The header passed every check; the payload comes next.
    ///
    /// # Errors
    /// Refusing here aborts the install before any payload byte is written.
    fn header_accepted(&mut self, header: &ArtifactHeader) -> Result<(), Self::Error>;

    /// An artifact state script named `name` of `size` bytes starts.
    ///
    /// # Errors
    /// Aborts the install.
    fn script_start(&mut self, name: &str, size: u64) -> Result<(), Self::Error>;

    /// The next bytes of the current script.
    ///
    /// # Errors
    /// Aborts the install.
    fn script_data(&mut self, data: &[u8]) -> Result<(), Self::Error>;

    /// The current script is complete.
    ///
    /// # Errors
    /// Aborts the install.
    fn script_end(&mut self) -> Result<(), Self::Error>;

    /// `written` of `total` image bytes are in the slot.
    fn progress(&mut self, written: u64, total: u64);
}

/// Caller-owned buffers for one install.
pub struct InstallBuffers<'b> {
    /// Source read buffer (e.g. 64 KiB).
    pub input: &'b mut [u8],
    /// Reader output buffer (e.g. 64 KiB).
    pub output: &'b mut [u8],
    /// Decompression window, at least [`crate::artifact::WINDOW_LEN`].
    pub window: &'b mut [u8],
    /// Partition block (e.g. 1 MiB).
    pub block: &'b mut [u8],
    /// Read-back compare buffer (e.g. 64 KiB).
    pub compare: &'b mut [u8],
}

/// What the device brings to the checks.
pub struct DeviceFacts<'a> {
    /// Keys that may sign artifacts; empty = signatures not required.
    pub keys: &'a [VerifyKey],
    /// This device's type.
    pub device_type: &'a str,
    /// What the running software provides.
    pub installed: &'a Provides,
}

/// Why an install failed. Nothing was activated in any case.
#[derive(Debug)]
#[non_exhaustive]
pub enum InstallError<SE, PE, HE> {
    /// Reading the artifact source failed.
    Source(SE),
    /// The artifact is malformed, truncated, corrupted or badly signed.
    Artifact(ArtifactError),
    /// The artifact does not fit this device.
    Incompatible(CompatError),
    /// Writing the inactive slot failed.
    Write(WriteError<PE>),
    /// The host refused (script extraction, ...).
    Hooks(HE),
}

impl<SE, PE, HE> core::fmt::Display for InstallError<SE, PE, HE>
where
    SE: core::fmt::Display,
    PE: core::fmt::Display,
    HE: core::fmt::Display,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Source(error) => write!(f, "reading the artifact failed: {error}"),
            Self::Artifact(error) => write!(f, "artifact refused: {error}"),
            Self::Incompatible(error) => write!(f, "artifact refused: {error}"),
            Self::Write(error) => write!(f, "writing the inactive partition failed: {error}"),
            Self::Hooks(error) => write!(f, "install step failed: {error}"),
        }
    }
}

impl<SE, PE, HE> core::error::Error for InstallError<SE, PE, HE>
where
    SE: core::fmt::Debug + core::fmt::Display,
    PE: core::fmt::Debug + core::fmt::Display,
    HE: core::fmt::Debug + core::fmt::Display,
{
}

/// Errors of [`stream_artifact`] for concrete types.
pub type StreamError<S, P, H> = InstallError<
    <S as embedded_io::ErrorType>::Error,
    <P as embedded_io::ErrorType>::Error,
    <H as InstallHooks>::Error,
>;

/// The result of a verified stream.
#[derive(Clone, Debug)]
pub struct Streamed {
    /// The artifact's header.
    pub header: ArtifactHeader,
    /// What the slot write did (`None` for an empty payload).
    pub stats: Option<WriteStats>,
}

/// Reads a whole artifact from `source`, verifies it and writes its image
/// into `partition`. Returns only after every signature and checksum
/// matched.
///
/// # Errors
/// See [`InstallError`].
pub fn stream_artifact<S, P, H>(
    source: &mut S,
    partition: &mut P,
    hooks: &mut H,
    buffers: InstallBuffers<'_>,
    device: &DeviceFacts<'_>,
) -> Result<Streamed, StreamError<S, P, H>>
where
    S: Read,
    P: Partition,
    H: InstallHooks,
{
    let InstallBuffers {
        input,
        output,
        window,
        block,
        compare,
    } = buffers;
    let mut reader = ArtifactReader::new(window).map_err(InstallError::Artifact)?;
    let mut writer = BlockWriter::new(block, compare).map_err(InstallError::Write)?;
    let mut stats = None;
    let mut image_size = 0u64;
    let mut last_progress = 0u64;
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        if start == end {
            let read = source.read(input).map_err(InstallError::Source)?;
            if read == 0 {
                reader.finish().map_err(InstallError::Artifact)?;
                return Err(InstallError::Artifact(ArtifactError::Truncated));
            }
            (start, end) = (0, read);
        }
        let pending = input.get(start..end).unwrap_or_default();
        let (event, consumed) = reader
            .feed(pending, output)
            .map_err(InstallError::Artifact)?;
        start = start.saturating_add(consumed).min(end);
        match event {
            Event::NeedsMoreInput => start = end,
            Event::SignatureCheck => reader
                .verify_signature(device.keys)
                .map_err(InstallError::Artifact)?,
            Event::HeaderReady => {
                let header = reader.header();
                check_compatibility(header, device.device_type, device.installed)
                    .map_err(InstallError::Incompatible)?;
                hooks.header_accepted(header).map_err(InstallError::Hooks)?;
                reader.accept_header();
            }
            Event::ScriptStart { size } => {
                hooks
                    .script_start(reader.file_name(), size)
                    .map_err(InstallError::Hooks)?;
            }
            Event::ScriptData(n) => {
                hooks
                    .script_data(output.get(..n).unwrap_or_default())
                    .map_err(InstallError::Hooks)?;
            }
            Event::ScriptEnd => hooks.script_end().map_err(InstallError::Hooks)?,
            Event::PayloadStart { size } => {
                writer.begin(partition, size).map_err(InstallError::Write)?;
                image_size = size;
                hooks.progress(0, size);
            }
            Event::PayloadData(n) => {
                writer
                    .write(partition, output.get(..n).unwrap_or_default())
                    .map_err(InstallError::Write)?;
                let written = writer.written();
                // Report about every MiB, not per chunk.
                if written.saturating_sub(last_progress) >= 1 << 20 {
                    last_progress = written;
                    hooks.progress(written, image_size);
                }
            }
            Event::PayloadEnd => {
                stats = Some(writer.finish(partition).map_err(InstallError::Write)?);
                hooks.progress(image_size, image_size);
            }
            Event::Done => {
                return Ok(Streamed {
                    header: reader.header().clone(),
                    stats,
                });
            }
        }
    }
}
