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

    /// The accepted header names a payload type other than `rootfs-image`:
    /// `Ok(true)` when an update module takes it (the host built the
    /// module's file tree and started its `Download` call); the payload
    /// files then go to [`InstallHooks::module_file_start`] and the next
    /// calls instead of the slot. The default (`Ok(false)`) refuses the
    /// artifact ([`CompatError::PayloadType`]).
    ///
    /// # Errors
    /// Aborts the install.
    fn module_download(&mut self, header: &ArtifactHeader) -> Result<bool, Self::Error> {
        let _ = header;
        Ok(false)
    }

    /// A payload file `name` of `size` bytes starts (module payloads).
    ///
    /// # Errors
    /// Aborts the install.
    fn module_file_start(&mut self, name: &str, size: u64) -> Result<(), Self::Error> {
        let _ = (name, size);
        Ok(())
    }

    /// The next bytes of the current payload file (module payloads);
    /// checksummed by the reader on the way.
    ///
    /// # Errors
    /// Aborts the install.
    fn module_file_data(&mut self, data: &[u8]) -> Result<(), Self::Error> {
        let _ = data;
        Ok(())
    }

    /// The current payload file ended and its checksum matched.
    ///
    /// # Errors
    /// Aborts the install.
    fn module_file_end(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The artifact is complete and verified: no more files for the
    /// module's `Download` call (it must end successfully).
    ///
    /// # Errors
    /// The `Download` call failed.
    fn module_download_end(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
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

/// Errors of [`Installer::feed`] (no source: the caller reads).
pub type FeedError<P, H> = InstallError<
    core::convert::Infallible,
    <P as embedded_io::ErrorType>::Error,
    <H as InstallHooks>::Error,
>;

/// What [`Installer::feed`] reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every input byte was used; feed more.
    NeedsMoreInput,
    /// The artifact is complete and verified: every signature, checksum and
    /// manifest entry matched. Bytes after the end were not consumed.
    Done,
}

/// The install pipeline as a resumable push object: artifact bytes in (any
/// split), verified image in the slot out. It owns the reader and the block
/// writer over caller buffers, so a host or the agent can feed it chunk by
/// chunk from its own loop and resume a download at [`Installer::consumed`].
pub struct Installer<'b> {
    reader: ArtifactReader<'b>,
    writer: BlockWriter<'b>,
    output: &'b mut [u8],
    stats: Option<WriteStats>,
    image_size: u64,
    last_progress: u64,
    consumed: u64,
    done: bool,
    /// The payload goes to an update module ([`InstallHooks::module_download`]).
    module: bool,
}

/// Caller-owned buffers of an [`Installer`] (the source buffer stays with
/// the caller).
pub struct InstallerBuffers<'b> {
    /// Reader output buffer (e.g. 64 KiB).
    pub output: &'b mut [u8],
    /// Decompression window, at least [`crate::artifact::WINDOW_LEN`].
    pub window: &'b mut [u8],
    /// Partition block (e.g. 1 MiB).
    pub block: &'b mut [u8],
    /// Read-back compare buffer (e.g. 64 KiB).
    pub compare: &'b mut [u8],
}

impl<'b> Installer<'b> {
    /// An installer over caller buffers.
    ///
    /// # Errors
    /// A buffer is too small (the error names the size needed).
    pub fn new(buffers: InstallerBuffers<'b>) -> Result<Self, ArtifactError> {
        let too_small = ArtifactError::BufferTooSmall { required: 1 };
        if buffers.output.is_empty() {
            return Err(too_small);
        }
        Ok(Self {
            reader: ArtifactReader::new(buffers.window)?,
            writer: BlockWriter::new::<()>(buffers.block, buffers.compare)
                .map_err(|_| too_small)?,
            output: buffers.output,
            stats: None,
            image_size: 0,
            last_progress: 0,
            consumed: 0,
            done: false,
            module: false,
        })
    }

    /// Starts a new artifact, keeping the buffers.
    pub fn reset(&mut self) {
        self.reader.reset();
        self.stats = None;
        self.image_size = 0;
        self.last_progress = 0;
        self.consumed = 0;
        self.done = false;
        self.module = false;
    }

    /// The payload went to an update module, not the slot.
    pub fn is_module(&self) -> bool {
        self.module
    }

    /// Artifact bytes consumed so far: where a resumed download starts.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The artifact is complete and verified.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The artifact's header (meaningful once accepted).
    pub fn header(&self) -> &ArtifactHeader {
        self.reader.header()
    }

    /// What the slot write did (`None` before the payload ended, or for an
    /// empty payload).
    pub fn stats(&self) -> Option<WriteStats> {
        self.stats
    }

    /// The source ended: `Ok` only if the artifact was complete (see
    /// [`ArtifactReader::end_of_input`]: the tar end-of-archive blocks may
    /// be missing, as the reference accepts).
    ///
    /// # Errors
    /// The artifact is truncated or fails a final check.
    pub fn finish(&mut self) -> Result<(), ArtifactError> {
        if !self.done {
            self.reader.end_of_input()?;
            self.done = true;
        }
        Ok(())
    }

    /// Feeds the next artifact bytes. Bounded work: at most `input.len()`
    /// bytes are consumed, and the payload they carry is written to
    /// `partition` (in blocks). Returns the bytes consumed and where the
    /// artifact stands.
    ///
    /// # Errors
    /// See [`InstallError`]; the installer is then unusable until
    /// [`Installer::reset`].
    pub fn feed<P, H>(
        &mut self,
        mut input: &[u8],
        partition: &mut P,
        hooks: &mut H,
        device: &DeviceFacts<'_>,
    ) -> Result<(usize, Progress), FeedError<P, H>>
    where
        P: Partition,
        H: InstallHooks,
    {
        let total = input.len();
        let used = |rest: &[u8]| total.saturating_sub(rest.len());
        loop {
            if self.done {
                self.consumed = self.consumed.saturating_add(used(input) as u64);
                return Ok((used(input), Progress::Done));
            }
            if input.is_empty() {
                self.consumed = self.consumed.saturating_add(total as u64);
                return Ok((total, Progress::NeedsMoreInput));
            }
            let (event, consumed) = self
                .reader
                .feed(input, self.output)
                .map_err(InstallError::Artifact)?;
            input = input.get(consumed..).unwrap_or_default();
            match event {
                Event::NeedsMoreInput => input = &[],
                Event::SignatureCheck => self
                    .reader
                    .verify_signature(device.keys)
                    .map_err(InstallError::Artifact)?,
                Event::HeaderReady => {
                    let header = self.reader.header();
                    let module =
                        match check_compatibility(header, device.device_type, device.installed) {
                            Ok(()) => false,
                            Err(CompatError::PayloadType) => true,
                            Err(error) => return Err(InstallError::Incompatible(error)),
                        };
                    hooks.header_accepted(header).map_err(InstallError::Hooks)?;
                    if module {
                        if !hooks.module_download(header).map_err(InstallError::Hooks)? {
                            return Err(InstallError::Incompatible(CompatError::PayloadType));
                        }
                        self.module = true;
                    }
                    self.reader.accept_header();
                }
                Event::ScriptStart { size } => {
                    hooks
                        .script_start(self.reader.file_name(), size)
                        .map_err(InstallError::Hooks)?;
                }
                Event::ScriptData(n) => {
                    hooks
                        .script_data(self.output.get(..n).unwrap_or_default())
                        .map_err(InstallError::Hooks)?;
                }
                Event::ScriptEnd => hooks.script_end().map_err(InstallError::Hooks)?,
                Event::PayloadStart { size } if self.module => {
                    hooks
                        .module_file_start(self.reader.file_name(), size)
                        .map_err(InstallError::Hooks)?;
                    self.image_size = size;
                }
                Event::PayloadData(n) if self.module => {
                    hooks
                        .module_file_data(self.output.get(..n).unwrap_or_default())
                        .map_err(InstallError::Hooks)?;
                }
                Event::PayloadEnd if self.module => {
                    hooks.module_file_end().map_err(InstallError::Hooks)?;
                }
                Event::Done if self.module => {
                    hooks.module_download_end().map_err(InstallError::Hooks)?;
                    self.done = true;
                }
                Event::PayloadStart { size } => {
                    self.writer
                        .begin(partition, size)
                        .map_err(InstallError::Write)?;
                    self.image_size = size;
                    hooks.progress(0, size);
                }
                Event::PayloadData(n) => {
                    self.writer
                        .write(partition, self.output.get(..n).unwrap_or_default())
                        .map_err(InstallError::Write)?;
                    let written = self.writer.written();
                    // Report about every MiB, not per chunk.
                    if written.saturating_sub(self.last_progress) >= 1 << 20 {
                        self.last_progress = written;
                        hooks.progress(written, self.image_size);
                    }
                }
                Event::PayloadEnd => {
                    self.stats = Some(self.writer.finish(partition).map_err(InstallError::Write)?);
                    hooks.progress(self.image_size, self.image_size);
                }
                Event::Done => self.done = true,
            }
        }
    }
}

/// Reads a whole artifact from `source`, verifies it and writes its image
/// into `partition`. Returns only after every signature and checksum
/// matched. A blocking loop over [`Installer`].
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
    let mut installer = Installer::new(InstallerBuffers {
        output,
        window,
        block,
        compare,
    })
    .map_err(InstallError::Artifact)?;
    loop {
        let read = source.read(input).map_err(InstallError::Source)?;
        if read == 0 {
            installer.finish().map_err(InstallError::Artifact)?;
        }
        let chunk = input.get(..read).unwrap_or_default();
        let (_, progress) = installer
            .feed(chunk, partition, hooks, device)
            .map_err(lift)?;
        if progress == Progress::Done {
            return Ok(Streamed {
                header: installer.header().clone(),
                stats: installer.stats(),
            });
        }
    }
}

/// Widens an installer error (no source error) to a stream error.
fn lift<SE, PE, HE>(
    error: InstallError<core::convert::Infallible, PE, HE>,
) -> InstallError<SE, PE, HE> {
    match error {
        InstallError::Source(never) => match never {},
        InstallError::Artifact(e) => InstallError::Artifact(e),
        InstallError::Incompatible(e) => InstallError::Incompatible(e),
        InstallError::Write(e) => InstallError::Write(e),
        InstallError::Hooks(e) => InstallError::Hooks(e),
    }
}
