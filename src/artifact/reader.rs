//! The artifact push parser.
//!
//! Layers, outermost first:
//!
//! 1. the outer tar ([`Framer`]), whose members are checked against the
//!    fixed order `version, manifest, [manifest.sig], header.tar*, data/*`;
//! 2. small members (`version`, `manifest`, `manifest.sig`) parsed while they
//!    stream, into fixed buffers;
//! 3. `header.tar*` and `data/0000.tar*`: SHA-256 over the stored header
//!    bytes, then a [`Decoder`] writing into the caller's window, then an
//!    inner tar whose files are JSON metadata (accumulated in a fixed buffer
//!    of [`MAX_METADATA_LEN`] bytes), scripts or payload (both streamed to
//!    the caller's output buffer).
//!
//! Any split of the input yields the same events and bytes, up to how data
//! is divided between [`Event::PayloadData`] / [`Event::ScriptData`] events
//! and where [`Event::NeedsMoreInput`] appears.
//!
//! After [`Event::Done`] the reader consumes nothing more: bytes after the
//! end-of-archive marker (such as tar record padding) are left unread and
//! every later `feed` returns `(Done, 0)`.

use super::header::{check_files, check_meta_data, ArtifactHeader, MetaError};
use super::inflate::{Compression, DecodeError, Decoder};
use super::manifest::{Manifest, ManifestError};
use super::tar::{Framer, Step, TarError};
use super::verify::VerifyKey;
use super::{MAX_FILE_NAME_LEN, MAX_SIGNATURE_LEN, WINDOW_LEN};
use base64ct::{Base64, Base64Unpadded, Encoding as _};
use heapless::{String, Vec};
use sha2::{Digest, Sha256};

/// Capacity of the buffer holding one metadata file (`version`,
/// `header-info`, `type-info`, `meta-data`, base64 `manifest.sig`).
pub const MAX_METADATA_LEN: usize = 8 * 1024;

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

/// Which part of the artifact an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    /// The outer tar archive itself.
    Archive,
    /// `version`.
    Version,
    /// `manifest`.
    Manifest,
    /// `manifest.sig`.
    ManifestSig,
    /// The `header.tar*` member (its stored bytes or its inner tar).
    Header,
    /// `header-info` inside the header.
    HeaderInfo,
    /// `headers/0000/type-info`.
    TypeInfo,
    /// `headers/0000/meta-data`.
    MetaData,
    /// `headers/0000/files` (format 2).
    Files,
    /// A state script.
    Script,
    /// The `data/0000.tar*` member or the payload file in it.
    Payload,
}

impl Member {
    fn name(self) -> &'static str {
        match self {
            Self::Archive => "the artifact archive",
            Self::Version => "version",
            Self::Manifest => "manifest",
            Self::ManifestSig => "manifest.sig",
            Self::Header => "header.tar",
            Self::HeaderInfo => "header-info",
            Self::TypeInfo => "type-info",
            Self::MetaData => "meta-data",
            Self::Files => "files",
            Self::Script => "a state script",
            Self::Payload => "the payload",
        }
    }
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
    /// Malformed tar framing.
    Tar {
        /// Outer archive, header or payload tar.
        member: Member,
        /// What was wrong.
        error: TarError,
    },
    /// A member is not allowed here (wrong order or unknown name).
    UnexpectedMember,
    /// `manifest-augment`: delta artifacts are not supported.
    UnsupportedDelta,
    /// `version` names a format version other than 2 or 3.
    UnsupportedVersion(u64),
    /// `version` is not `{"format":"mender","version":N}`.
    InvalidVersion,
    /// A manifest line is malformed, too long, duplicated or the table full.
    InvalidManifest(ManifestError),
    /// A file has no (or no unused) manifest entry.
    MissingManifestEntry(Member),
    /// A manifest entry matched no file.
    UnusedManifestEntry,
    /// A SHA-256 does not match the manifest.
    ChecksumMismatch(Member),
    /// `manifest.sig` is not base64 or longer than [`MAX_SIGNATURE_LEN`].
    InvalidSignatureEncoding,
    /// Keys are configured but the artifact is unsigned.
    SignatureRequired,
    /// No configured key verifies `manifest.sig`.
    SignatureInvalid,
    /// `feed` was called at [`Event::SignatureCheck`] before
    /// [`ArtifactReader::verify_signature`] (not fatal).
    SignatureNotChecked,
    /// `feed` was called at [`Event::HeaderReady`] before
    /// [`ArtifactReader::accept_header`] (not fatal).
    HeaderNotAccepted,
    /// This build cannot decompress this member (xz/zstd need `alloc`),
    /// or the suffix is unknown.
    UnsupportedCompression(Compression),
    /// Corrupt or truncated compressed data.
    CorruptCompressedData(Member),
    /// The gzip CRC-32/ISIZE does not match the data.
    CompressedChecksumMismatch(Member),
    /// JSON syntax error or wrong value type.
    InvalidJson {
        /// Which file.
        member: Member,
        /// Byte offset in that file.
        offset: u32,
    },
    /// A JSON key the format does not define.
    UnknownKey(Member),
    /// A required JSON key is missing or empty.
    MissingKey(Member),
    /// A JSON key appears twice (also across header-info and type-info).
    DuplicateKey(Member),
    /// type-info's `type` differs from header-info's payload type.
    PayloadTypeMismatch,
    /// A file or value exceeds a fixed capacity (`MAX_*` constants).
    TooLarge(Member),
    /// A header value exceeds the named limit.
    LimitExceeded {
        /// Which file.
        member: Member,
        /// What was counted (e.g. "bytes in the artifact name").
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// header-info lists no payload (the reference refuses it too).
    NoPayload,
    /// A file inside `header.tar*` that the format does not define, or out
    /// of order.
    UnexpectedHeaderFile,
    /// A script or payload file name is not `^[\w\-.,]+$` or too long.
    InvalidFileName(Member),
    /// More than one payload (only one is supported).
    TooManyPayloads,
    /// The header announces a payload but no data member follows.
    MissingPayload,
    /// A data member for an empty (`null`) payload.
    UnexpectedPayload,
    /// A `rootfs-image` payload must hold exactly one file.
    PayloadFileCount,
}

impl core::fmt::Display for ArtifactError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BufferTooSmall { required } => {
                write!(f, "buffer too small: {required} bytes needed")
            }
            Self::Truncated => f.write_str("the artifact is truncated"),
            Self::Tar { member, error } => {
                write!(f, "malformed tar in {}: {error:?}", member.name())
            }
            Self::UnexpectedMember => f.write_str("unexpected or misplaced member in the artifact"),
            Self::UnsupportedDelta => f.write_str("augmented (delta) artifacts are not supported"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported artifact format version {v}"),
            Self::InvalidVersion => f.write_str("the version member is invalid"),
            Self::InvalidManifest(why) => write!(f, "the manifest is invalid: {why}"),
            Self::MissingManifestEntry(m) => write!(f, "no manifest entry for {}", m.name()),
            Self::UnusedManifestEntry => {
                f.write_str("a manifest entry matches no file in the artifact")
            }
            Self::ChecksumMismatch(m) => {
                write!(f, "checksum of {} does not match the manifest", m.name())
            }
            Self::InvalidSignatureEncoding => {
                f.write_str("manifest.sig is not valid base64 or too long")
            }
            Self::SignatureRequired => {
                f.write_str("the artifact is not signed but a verification key is configured")
            }
            Self::SignatureInvalid => {
                f.write_str("no configured key verifies the artifact signature")
            }
            Self::SignatureNotChecked => {
                f.write_str("verify_signature must be called before feeding on")
            }
            Self::HeaderNotAccepted => {
                f.write_str("accept_header must be called before feeding on")
            }
            Self::UnsupportedCompression(c) => write!(f, "unsupported compression {c:?}"),
            Self::CorruptCompressedData(m) => write!(f, "corrupt compressed data in {}", m.name()),
            Self::CompressedChecksumMismatch(m) => {
                write!(f, "gzip checksum mismatch in {}", m.name())
            }
            Self::InvalidJson { member, offset } => {
                write!(f, "invalid JSON in {} at offset {offset}", member.name())
            }
            Self::UnknownKey(m) => write!(f, "unknown key in {}", m.name()),
            Self::MissingKey(m) => write!(f, "missing required key in {}", m.name()),
            Self::DuplicateKey(m) => write!(f, "duplicate key in {}", m.name()),
            Self::PayloadTypeMismatch => {
                f.write_str("type-info and header-info disagree on the payload type")
            }
            Self::TooLarge(m) => write!(f, "{} exceeds a fixed capacity", m.name()),
            Self::LimitExceeded {
                member,
                what,
                limit,
            } => write!(f, "{}: more than {limit} {what} (the limit)", member.name()),
            Self::NoPayload => {
                f.write_str("the artifact has an empty payload list: nothing to install")
            }
            Self::UnexpectedHeaderFile => f.write_str("unexpected file in the artifact header"),
            Self::InvalidFileName(m) => write!(f, "invalid file name for {}", m.name()),
            Self::TooManyPayloads => f.write_str("only artifacts with one payload are supported"),
            Self::MissingPayload => {
                f.write_str("the header announces a payload but the artifact has none")
            }
            Self::UnexpectedPayload => {
                f.write_str("payload data in an artifact with an empty payload")
            }
            Self::PayloadFileCount => {
                f.write_str("a rootfs-image payload must contain exactly one file")
            }
        }
    }
}

impl core::error::Error for ArtifactError {}

fn meta_error(member: Member, e: MetaError) -> ArtifactError {
    match e {
        MetaError::Syntax(offset) => ArtifactError::InvalidJson {
            member,
            offset: u32::try_from(offset).unwrap_or(u32::MAX),
        },
        MetaError::UnknownKey => ArtifactError::UnknownKey(member),
        MetaError::MissingKey => ArtifactError::MissingKey(member),
        MetaError::Capacity => ArtifactError::TooLarge(member),
        MetaError::Limit { what, limit } => ArtifactError::LimitExceeded {
            member,
            what,
            limit,
        },
        MetaError::ControlCharacter => ArtifactError::InvalidJson { member, offset: 0 },
        MetaError::NoPayload => ArtifactError::NoPayload,
        MetaError::DuplicateKey => ArtifactError::DuplicateKey(member),
        MetaError::TypeMismatch => ArtifactError::PayloadTypeMismatch,
    }
}

fn decode_error(member: Member, e: DecodeError) -> ArtifactError {
    match e {
        DecodeError::Corrupt | DecodeError::Trailing => {
            ArtifactError::CorruptCompressedData(member)
        }
        DecodeError::Crc => ArtifactError::CompressedChecksumMismatch(member),
    }
}

/// `^[\w\-.,]+$` with ASCII `\w`, as the Go reader checks.
fn valid_file_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b','))
}

fn digest(hasher: &mut Sha256) -> [u8; 32] {
    hasher.finalize_reset().into()
}

/// Progress through the outer member grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Start,
    Version,
    Manifest,
    Signature,
    Header,
    Data,
}

/// The outer member whose body is streaming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    /// Between members.
    None,
    Version,
    Manifest,
    Signature,
    Header,
    Data,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    Open,
    Signature,
    Header,
}

/// The current file inside `header.tar*` / `data/0000.tar*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InnerFile {
    /// Between files.
    None,
    /// Accumulated metadata.
    Meta(Member),
    /// Directory entry: skipped.
    Skip,
    Script,
    Payload,
}

/// Progress inside `header.tar*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HeaderSeen {
    Start,
    HeaderInfo,
    Scripts,
    Files,
    TypeInfo,
    MetaData,
}

/// Resumable Mender Artifact reader.
pub struct ArtifactReader<'w> {
    window: &'w mut [u8],
    header: ArtifactHeader,
    failed: Option<ArtifactError>,
    outer: Framer,
    inner: Framer,
    body: Body,
    seen: Seen,
    gate: Gate,
    /// An outer entry header was read but its processing waits for the
    /// signature checkpoint.
    deferred_entry: bool,
    /// One outer zero block seen and the final checks passed.
    complete: bool,
    done: bool,
    manifest: Manifest,
    manifest_digest: [u8; 32],
    version_digest: [u8; 32],
    metadata: Vec<u8, MAX_METADATA_LEN>,
    signature: Vec<u8, MAX_SIGNATURE_LEN>,
    /// Outer hasher: version, manifest, header member bytes.
    hasher: Sha256,
    /// Inner hasher: payload file contents.
    file_hasher: Sha256,
    decoder: Decoder,
    compression: Compression,
    /// Decoded bytes waiting in the window: `window[pending.0..pending.0 + pending.1]`.
    pending: (usize, usize),
    inner_file: InnerFile,
    file_size: u64,
    file_name: String<MAX_FILE_NAME_LEN>,
    header_seen: HeaderSeen,
    payload_files: u32,
    /// [`ArtifactReader::verify_signature`] accepted the artifact.
    sig_passed: bool,
}

/// Result of one inner step: input consumed and an event to return.
type StepResult = Result<(usize, Option<Event>), ArtifactError>;

impl<'w> ArtifactReader<'w> {
    /// A reader using `window` (at least [`super::WINDOW_LEN`] bytes) for
    /// decompression.
    ///
    /// # Errors
    /// [`ArtifactError::BufferTooSmall`] when `window` is too short.
    pub fn new(window: &'w mut [u8]) -> Result<Self, ArtifactError> {
        let window = window
            .get_mut(..WINDOW_LEN)
            .ok_or(ArtifactError::BufferTooSmall {
                required: WINDOW_LEN,
            })?;
        Ok(Self {
            window,
            header: ArtifactHeader::default(),
            failed: None,
            outer: Framer::new(),
            inner: Framer::new(),
            body: Body::None,
            seen: Seen::Start,
            gate: Gate::Open,
            deferred_entry: false,
            complete: false,
            done: false,
            manifest: Manifest::default(),
            manifest_digest: [0; 32],
            version_digest: [0; 32],
            metadata: Vec::new(),
            signature: Vec::new(),
            hasher: Sha256::new(),
            file_hasher: Sha256::new(),
            decoder: Decoder::None,
            compression: Compression::None,
            pending: (0, 0),
            inner_file: InnerFile::None,
            file_size: 0,
            file_name: String::new(),
            header_seen: HeaderSeen::Start,
            payload_files: 0,
            sig_passed: false,
        })
    }

    /// Starts over for a new artifact, keeping the window.
    pub fn reset(&mut self) {
        let window = core::mem::take(&mut self.window);
        if let Ok(fresh) = Self::new(window) {
            *self = fresh;
        }
    }

    /// Consumes a prefix of `input`, writes data to `output`, and returns the
    /// event reached with the number of input bytes consumed.
    ///
    /// `output` must not be empty. [`Event::PayloadData`] and
    /// [`Event::ScriptData`] fill it as far as the input allows.
    ///
    /// # Errors
    /// Any [`ArtifactError`]; the reader is then unusable, except for
    /// [`ArtifactError::SignatureNotChecked`],
    /// [`ArtifactError::HeaderNotAccepted`] and
    /// [`ArtifactError::BufferTooSmall`], which change nothing.
    pub fn feed(
        &mut self,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(Event, usize), ArtifactError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        if self.done {
            return Ok((Event::Done, 0));
        }
        match self.gate {
            Gate::Signature => return Err(ArtifactError::SignatureNotChecked),
            Gate::Header => return Err(ArtifactError::HeaderNotAccepted),
            Gate::Open => {}
        }
        if output.is_empty() {
            return Err(ArtifactError::BufferTooSmall { required: 1 });
        }
        let result = self.run(input, output);
        if let Err(error) = result {
            self.failed = Some(error);
        }
        result
    }

    fn run(&mut self, input: &[u8], output: &mut [u8]) -> Result<(Event, usize), ArtifactError> {
        let mut pos = 0usize;
        let mut produced = 0usize;
        loop {
            let rest = input.get(pos..).unwrap_or(&[]);
            match self.body {
                Body::None => {
                    if self.deferred_entry {
                        self.deferred_entry = false;
                        if let Some(event) = self.begin_member()? {
                            return Ok((event, pos));
                        }
                        continue;
                    }
                    if rest.is_empty() {
                        return Ok((Event::NeedsMoreInput, pos));
                    }
                    let (n, step) = self.outer.step(rest).map_err(|error| ArtifactError::Tar {
                        member: Member::Archive,
                        error,
                    })?;
                    pos += n;
                    match step {
                        Step::NeedMore => {}
                        Step::Entry => {
                            if let Some(event) = self.begin_member()? {
                                return Ok((event, pos));
                            }
                        }
                        Step::FirstZeroBlock => self.final_checks()?,
                        Step::End => {
                            self.done = true;
                            return Ok((Event::Done, pos));
                        }
                    }
                }
                Body::Version | Body::Manifest | Body::Signature => {
                    let take = usize::try_from(self.outer.body_remaining())
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    let chunk = rest.get(..take).unwrap_or(&[]);
                    self.small_body(chunk)?;
                    self.outer.consume_body(take);
                    pos += take;
                    if self.outer.body_remaining() == 0 {
                        if let Some(event) = self.end_small_member()? {
                            return Ok((event, pos));
                        }
                    } else {
                        return Ok((Event::NeedsMoreInput, pos));
                    }
                }
                Body::Header | Body::Data => {
                    if let Some(event) =
                        self.stream_member(input, &mut pos, output, &mut produced)?
                    {
                        return Ok((event, pos));
                    }
                }
            }
        }
    }

    /// An outer entry starts.
    fn begin_member(&mut self) -> Result<Option<Event>, ArtifactError> {
        if self.complete {
            return Err(ArtifactError::UnexpectedMember);
        }
        if self.outer.is_dir() {
            return Err(ArtifactError::UnexpectedMember);
        }
        let mut path_buf = [0u8; 32];
        let path_len = self.outer.path().len().min(path_buf.len());
        if let (Some(dest), Some(src)) = (
            path_buf.get_mut(..path_len),
            self.outer.path().get(..path_len),
        ) {
            dest.copy_from_slice(src);
        }
        let path: &[u8] = if self.outer.path().len() > path_buf.len() {
            b""
        } else {
            path_buf.get(..path_len).unwrap_or(&[])
        };
        // The signature checkpoint comes before whatever follows the
        // manifest (or its signature).
        if matches!(self.seen, Seen::Manifest | Seen::Signature)
            && path != b"manifest.sig"
            && self.gate == Gate::Open
            && !self.signature_checkpoint_passed()
        {
            self.deferred_entry = true;
            self.gate = Gate::Signature;
            return Ok(Some(Event::SignatureCheck));
        }
        match (self.seen, path) {
            (Seen::Start, b"version") => {
                self.seen = Seen::Version;
                self.body = Body::Version;
                self.metadata.clear();
            }
            (Seen::Version, b"manifest") => {
                self.seen = Seen::Manifest;
                self.body = Body::Manifest;
            }
            (Seen::Manifest, b"manifest.sig") => {
                self.seen = Seen::Signature;
                self.body = Body::Signature;
                self.metadata.clear();
            }
            (Seen::Manifest | Seen::Signature, b"manifest-augment") => {
                return Err(ArtifactError::UnsupportedDelta)
            }
            (Seen::Manifest | Seen::Signature, _) if path.starts_with(b"header.tar") => {
                let compression = path
                    .strip_prefix(b"header.tar")
                    .and_then(Compression::from_suffix)
                    .ok_or(ArtifactError::UnexpectedMember)?;
                self.seen = Seen::Header;
                self.start_stream(Body::Header, compression)?;
                self.header_seen = HeaderSeen::Start;
            }
            (Seen::Header, _) if path.starts_with(b"header-augment") => {
                return Err(ArtifactError::UnsupportedDelta)
            }
            (Seen::Header | Seen::Data, _) if path.starts_with(b"data/") => {
                let rest = path.get(5..).unwrap_or(&[]);
                let (index, suffix) = (rest.get(..4).unwrap_or(&[]), rest.get(4..).unwrap_or(&[]));
                if !index.iter().all(u8::is_ascii_digit) || index.len() != 4 {
                    return Err(ArtifactError::UnexpectedMember);
                }
                if self.seen == Seen::Data || index != b"0000" {
                    return Err(ArtifactError::TooManyPayloads);
                }
                let compression = suffix
                    .strip_prefix(b".tar")
                    .and_then(Compression::from_suffix)
                    .ok_or(ArtifactError::UnexpectedMember)?;
                self.seen = Seen::Data;
                self.start_stream(Body::Data, compression)?;
            }
            _ => return Err(ArtifactError::UnexpectedMember),
        }
        Ok(None)
    }

    fn signature_checkpoint_passed(&self) -> bool {
        self.sig_passed
    }

    fn start_stream(&mut self, body: Body, compression: Compression) -> Result<(), ArtifactError> {
        // Reuse the gzip state in place when possible (it is large).
        if !(compression == Compression::Gzip && self.decoder.reset_gzip()) {
            self.decoder = Decoder::new(compression)
                .ok_or(ArtifactError::UnsupportedCompression(compression))?;
        }
        self.compression = compression;
        self.body = body;
        self.pending = (0, 0);
        self.inner = Framer::new();
        self.inner_file = InnerFile::None;
        self.hasher = Sha256::new();
        Ok(())
    }

    fn small_body(&mut self, chunk: &[u8]) -> Result<(), ArtifactError> {
        match self.body {
            Body::Version => {
                self.hasher.update(chunk);
                self.metadata
                    .extend_from_slice(chunk)
                    .map_err(|_| ArtifactError::TooLarge(Member::Version))
            }
            Body::Manifest => {
                self.hasher.update(chunk);
                self.manifest
                    .feed(chunk)
                    .map_err(ArtifactError::InvalidManifest)
            }
            _ => self
                .metadata
                .extend_from_slice(chunk)
                .map_err(|_| ArtifactError::InvalidSignatureEncoding),
        }
    }

    fn end_small_member(&mut self) -> Result<Option<Event>, ArtifactError> {
        let body = self.body;
        self.body = Body::None;
        self.outer.end_body();
        match body {
            Body::Version => {
                self.version_digest = digest(&mut self.hasher);
                self.parse_version()?;
                Ok(None)
            }
            Body::Manifest => {
                self.manifest
                    .end()
                    .map_err(ArtifactError::InvalidManifest)?;
                self.manifest_digest = digest(&mut self.hasher);
                let sum = self
                    .manifest
                    .take(&[b"version"])
                    .ok_or(ArtifactError::MissingManifestEntry(Member::Version))?;
                if sum != self.version_digest {
                    return Err(ArtifactError::ChecksumMismatch(Member::Version));
                }
                Ok(None)
            }
            _ => {
                let mut signature = [0u8; MAX_SIGNATURE_LEN];
                let decoded = decode_signature(&mut self.metadata, &mut signature)
                    .map_err(|_| ArtifactError::InvalidSignatureEncoding)?;
                self.signature.clear();
                self.signature
                    .extend_from_slice(decoded)
                    .map_err(|_| ArtifactError::InvalidSignatureEncoding)?;
                self.header.signed = true;
                self.gate = Gate::Signature;
                Ok(Some(Event::SignatureCheck))
            }
        }
    }

    fn parse_version(&mut self) -> Result<(), ArtifactError> {
        use crate::json::Json;
        let mut json = Json::new(&self.metadata);
        let mut format_ok = false;
        let mut version = None;
        let bad = |_| ArtifactError::InvalidVersion;
        json.begin_object().map_err(bad)?;
        let mut first = true;
        while let Some(key) = json.next_key::<8>(&mut first).map_err(bad)? {
            match key.as_str() {
                "format" => format_ok = json.string::<8>().map_err(bad)?.as_str() == "mender",
                "version" => version = Some(json.unsigned().map_err(bad)?),
                _ => return Err(ArtifactError::InvalidVersion),
            }
        }
        json.end().map_err(bad)?;
        let version = version.ok_or(ArtifactError::InvalidVersion)?;
        if !format_ok {
            return Err(ArtifactError::InvalidVersion);
        }
        if version != 2 && version != 3 {
            return Err(ArtifactError::UnsupportedVersion(version));
        }
        self.header.format_version = version as u32;
        Ok(())
    }

    /// Streams a header or data member through its decoder and inner tar.
    fn stream_member(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        output: &mut [u8],
        produced: &mut usize,
    ) -> Result<Option<Event>, ArtifactError> {
        let member = if self.body == Body::Header {
            Member::Header
        } else {
            Member::Payload
        };
        loop {
            let remaining = self.outer.body_remaining();
            let rest = input.get(*pos..).unwrap_or(&[]);
            let avail = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            let chunk = rest.get(..avail).unwrap_or(&[]);
            if self.compression == Compression::None {
                // Zero-copy: the inner tar reads the input directly.
                if !chunk.is_empty() || self.inner_end_pending() {
                    let (n, event) = self.inner_step(chunk, output, produced, Source::Input)?;
                    if self.body == Body::Header {
                        self.hasher.update(chunk.get(..n).unwrap_or(&[]));
                    }
                    *pos += n;
                    self.outer.consume_body(n);
                    if event.is_some() {
                        return Ok(event);
                    }
                    continue;
                }
            } else if self.pending.1 > 0 || self.inner_end_pending() {
                let (n, event) = self.inner_step(&[], output, produced, Source::Window)?;
                self.pending.0 += n;
                self.pending.1 -= n;
                if event.is_some() {
                    return Ok(event);
                }
                continue;
            } else if !self.decoder.finished() || !chunk.is_empty() {
                if chunk.is_empty() && !self.decoder.has_pending_output() {
                    if remaining == 0 {
                        return Err(ArtifactError::CorruptCompressedData(member));
                    }
                    return Ok(self.out_of_input(*produced));
                }
                let last = avail as u64 == remaining;
                let decoded = self
                    .decoder
                    .decode(chunk, last, self.window)
                    .map_err(|e| decode_error(member, e))?;
                if self.body == Body::Header {
                    self.hasher
                        .update(chunk.get(..decoded.consumed).unwrap_or(&[]));
                }
                *pos += decoded.consumed;
                self.outer.consume_body(decoded.consumed);
                self.pending = (decoded.start, decoded.len);
                if decoded.consumed == 0 && decoded.len == 0 && !self.decoder.finished() {
                    if !chunk.is_empty() && !self.decoder.has_pending_output() {
                        // A decoder that refuses non-empty input makes no progress.
                        return Err(ArtifactError::CorruptCompressedData(member));
                    }
                    if chunk.is_empty() {
                        return Ok(self.out_of_input(*produced));
                    }
                }
                continue;
            }
            // Everything decoded and consumed by the inner tar.
            if remaining > 0 {
                return Ok(self.out_of_input(*produced));
            }
            return self.end_stream_member(member);
        }
    }

    fn out_of_input(&self, produced: usize) -> Option<Event> {
        if produced > 0 {
            Some(match self.inner_file {
                InnerFile::Script => Event::ScriptData(produced),
                _ => Event::PayloadData(produced),
            })
        } else {
            Some(Event::NeedsMoreInput)
        }
    }

    fn inner_end_pending(&self) -> bool {
        matches!(
            self.inner_file,
            InnerFile::Script | InnerFile::Payload | InnerFile::Meta(_) | InnerFile::Skip
        ) && self.inner.in_body()
            && self.inner.body_remaining() == 0
    }

    fn end_stream_member(&mut self, member: Member) -> Result<Option<Event>, ArtifactError> {
        if !self.inner.at_boundary() || self.inner_file != InnerFile::None {
            return Err(ArtifactError::Tar {
                member,
                error: TarError::Truncated,
            });
        }
        self.outer.end_body();
        self.body = Body::None;
        if member == Member::Header {
            let sum = digest(&mut self.hasher);
            let expected = match self.compression {
                Compression::None => self.manifest.take(&[b"header.tar"]),
                Compression::Gzip => self.manifest.take(&[b"header.tar.gz"]),
                Compression::Xz => self.manifest.take(&[b"header.tar.xz"]),
                Compression::Zstd => self.manifest.take(&[b"header.tar.zst"]),
            }
            .ok_or(ArtifactError::MissingManifestEntry(Member::Header))?;
            if sum != expected {
                return Err(ArtifactError::ChecksumMismatch(Member::Header));
            }
            if self.header_seen < HeaderSeen::HeaderInfo {
                return Err(ArtifactError::MissingKey(Member::HeaderInfo));
            }
            if self.header_seen < HeaderSeen::TypeInfo && self.header.payload_count > 0 {
                return Err(ArtifactError::MissingKey(Member::TypeInfo));
            }
            self.gate = Gate::Header;
            return Ok(Some(Event::HeaderReady));
        }
        if self.header.payload_type.as_deref() == Some("rootfs-image") && self.payload_files != 1 {
            return Err(ArtifactError::PayloadFileCount);
        }
        Ok(None)
    }

    /// One step of the inner tar over `data` (input) or the window's pending
    /// bytes. Without an event, all data was consumed.
    fn inner_step(
        &mut self,
        data: &[u8],
        output: &mut [u8],
        produced: &mut usize,
        source: Source,
    ) -> StepResult {
        let member = if self.body == Body::Header {
            Member::Header
        } else {
            Member::Payload
        };
        let mut used = 0usize;
        loop {
            let window_slice;
            let all: &[u8] = match source {
                Source::Input => data,
                Source::Window => {
                    window_slice = self
                        .window
                        .get(self.pending.0..self.pending.0 + self.pending.1)
                        .unwrap_or(&[]);
                    window_slice
                }
            };
            let rest = all.get(used..).unwrap_or(&[]);
            if self.inner.in_body() {
                let remaining = self.inner.body_remaining();
                let take_max = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                match self.inner_file {
                    InnerFile::Script | InnerFile::Payload => {
                        if remaining == 0 {
                            if *produced > 0 {
                                return Ok((used, self.out_of_input(*produced)));
                            }
                            return self.end_inner_file().map(|event| (used, Some(event)));
                        }
                        let room = output.len() - *produced;
                        if room == 0 {
                            return Ok((used, self.out_of_input(*produced)));
                        }
                        let take = take_max.min(room);
                        if take == 0 {
                            return Ok((used, None));
                        }
                        let src = rest.get(..take).unwrap_or(&[]);
                        if let Some(dest) = output.get_mut(*produced..*produced + take) {
                            dest.copy_from_slice(src);
                        }
                        if self.inner_file == InnerFile::Payload {
                            self.file_hasher.update(src);
                        }
                        *produced += take;
                        used += take;
                        self.inner.consume_body(take);
                    }
                    InnerFile::Meta(m) => {
                        let src = rest.get(..take_max).unwrap_or(&[]);
                        self.metadata
                            .extend_from_slice(src)
                            .map_err(|_| ArtifactError::TooLarge(m))?;
                        used += take_max;
                        self.inner.consume_body(take_max);
                        if self.inner.body_remaining() == 0 {
                            self.end_meta(m)?;
                        } else {
                            return Ok((used, None));
                        }
                    }
                    InnerFile::Skip | InnerFile::None => {
                        used += take_max;
                        self.inner.consume_body(take_max);
                        if self.inner.body_remaining() == 0 {
                            self.inner.end_body();
                            self.inner_file = InnerFile::None;
                        } else {
                            return Ok((used, None));
                        }
                    }
                }
                continue;
            }
            if rest.is_empty() {
                return Ok((used, None));
            }
            let (n, step) = self
                .inner
                .step(rest)
                .map_err(|error| ArtifactError::Tar { member, error })?;
            used += n;
            match step {
                Step::NeedMore | Step::FirstZeroBlock | Step::End => {}
                Step::Entry => {
                    if let Some(event) = self.begin_inner_file(member)? {
                        return Ok((used, Some(event)));
                    }
                }
            }
        }
    }

    fn begin_inner_file(&mut self, member: Member) -> Result<Option<Event>, ArtifactError> {
        let size = self.inner.body_remaining();
        self.file_size = size;
        if self.inner.is_dir() {
            self.inner_file = InnerFile::Skip;
            return Ok(None);
        }
        let path = self.inner.path();
        if member == Member::Payload {
            if self.header.payload_type.is_none() {
                // Bootstrap artifacts carry an empty data tar.
                return Err(ArtifactError::UnexpectedPayload);
            }
            let name = core::str::from_utf8(path)
                .map_err(|_| ArtifactError::InvalidFileName(Member::Payload))?;
            if !valid_file_name(path) {
                return Err(ArtifactError::InvalidFileName(Member::Payload));
            }
            self.file_name = String::try_from(name)
                .map_err(|_| ArtifactError::InvalidFileName(Member::Payload))?;
            self.payload_files = self.payload_files.saturating_add(1);
            self.inner_file = InnerFile::Payload;
            self.file_hasher = Sha256::new();
            return Ok(Some(Event::PayloadStart { size }));
        }
        let v2 = self.header.format_version == 2;
        let (next, file) = match path {
            b"header-info" if self.header_seen == HeaderSeen::Start => {
                (HeaderSeen::HeaderInfo, InnerFile::Meta(Member::HeaderInfo))
            }
            b"headers/0000/files"
                if v2
                    && self.header_seen >= HeaderSeen::HeaderInfo
                    && self.header_seen < HeaderSeen::Files =>
            {
                (HeaderSeen::Files, InnerFile::Meta(Member::Files))
            }
            b"headers/0000/type-info"
                if self.header_seen >= HeaderSeen::HeaderInfo
                    && self.header_seen < HeaderSeen::TypeInfo =>
            {
                (HeaderSeen::TypeInfo, InnerFile::Meta(Member::TypeInfo))
            }
            b"headers/0000/meta-data"
                if self.header_seen >= HeaderSeen::HeaderInfo
                    && self.header_seen < HeaderSeen::MetaData =>
            {
                (HeaderSeen::MetaData, InnerFile::Meta(Member::MetaData))
            }
            _ if path.starts_with(b"scripts/")
                && self.header_seen >= HeaderSeen::HeaderInfo
                && self.header_seen <= HeaderSeen::Scripts =>
            {
                let name = path.get(8..).unwrap_or(&[]);
                if !valid_file_name(name) {
                    return Err(ArtifactError::InvalidFileName(Member::Script));
                }
                let name = core::str::from_utf8(name)
                    .map_err(|_| ArtifactError::InvalidFileName(Member::Script))?;
                self.file_name = String::try_from(name)
                    .map_err(|_| ArtifactError::InvalidFileName(Member::Script))?;
                let kept = String::try_from(name)
                    .map_err(|_| ArtifactError::InvalidFileName(Member::Script))?;
                self.header
                    .scripts
                    .push(kept)
                    .map_err(|_| ArtifactError::TooLarge(Member::Script))?;
                self.header_seen = HeaderSeen::Scripts;
                self.inner_file = InnerFile::Script;
                return Ok(Some(Event::ScriptStart { size }));
            }
            _ => return Err(ArtifactError::UnexpectedHeaderFile),
        };
        self.header_seen = next;
        self.inner_file = file;
        self.metadata.clear();
        if size > MAX_METADATA_LEN as u64 {
            if let InnerFile::Meta(m) = file {
                return Err(ArtifactError::TooLarge(m));
            }
        }
        Ok(None)
    }

    fn end_meta(&mut self, m: Member) -> Result<(), ArtifactError> {
        self.inner.end_body();
        self.inner_file = InnerFile::None;
        let text = self.metadata.as_slice();
        match m {
            Member::HeaderInfo => {
                self.header
                    .parse_header_info(text)
                    .map_err(|e| meta_error(m, e))?;
                if self.header.payload_count > 1 {
                    return Err(ArtifactError::TooManyPayloads);
                }
            }
            Member::TypeInfo => self
                .header
                .parse_type_info(text)
                .map_err(|e| meta_error(m, e))?,
            Member::Files => check_files(text).map_err(|e| meta_error(m, e))?,
            _ => check_meta_data(text).map_err(|e| meta_error(m, e))?,
        }
        Ok(())
    }

    fn end_inner_file(&mut self) -> Result<Event, ArtifactError> {
        self.inner.end_body();
        let file = self.inner_file;
        self.inner_file = InnerFile::None;
        if file == InnerFile::Script {
            return Ok(Event::ScriptEnd);
        }
        let sum = digest(&mut self.file_hasher);
        let expected = self
            .manifest
            .take(&[b"data/0000/", self.file_name.as_bytes()])
            .ok_or(ArtifactError::MissingManifestEntry(Member::Payload))?;
        if sum != expected {
            return Err(ArtifactError::ChecksumMismatch(Member::Payload));
        }
        Ok(Event::PayloadEnd)
    }

    fn final_checks(&mut self) -> Result<(), ArtifactError> {
        if self.seen < Seen::Header {
            return Err(if self.seen >= Seen::Manifest {
                ArtifactError::MissingKey(Member::Header)
            } else {
                ArtifactError::Truncated
            });
        }
        if self.seen == Seen::Header && self.header.payload_type.is_some() {
            return Err(ArtifactError::MissingPayload);
        }
        if !self.manifest.all_used() {
            return Err(ArtifactError::UnusedManifestEntry);
        }
        self.complete = true;
        Ok(())
    }

    /// Checks `manifest.sig` against `keys`. With no keys any artifact passes
    /// (and the signature is not checked); with keys an unsigned artifact or
    /// one no key verifies is refused. Keys are tried in order; the first
    /// that verifies wins.
    ///
    /// Only valid at [`Event::SignatureCheck`]; calling it at any other
    /// time does nothing.
    ///
    /// # Errors
    /// Signature missing or invalid; the reader is then unusable.
    pub fn verify_signature(&mut self, keys: &[VerifyKey]) -> Result<(), ArtifactError> {
        if self.gate != Gate::Signature {
            return self.failed.map_or(Ok(()), Err);
        }
        let result = if keys.is_empty() {
            if self.header.signed {
                warn!("artifact signature not checked: no verification key configured");
            }
            Ok(())
        } else if !self.header.signed {
            Err(ArtifactError::SignatureRequired)
        } else if keys.iter().any(|key| {
            key.verify_sha256(&self.manifest_digest, &self.signature)
                .is_ok()
        }) {
            self.header.signature_verified = true;
            Ok(())
        } else {
            Err(ArtifactError::SignatureInvalid)
        };
        match result {
            Ok(()) => {
                self.gate = Gate::Open;
                self.sig_passed = true;
            }
            Err(error) => self.failed = Some(error),
        }
        result
    }

    /// Lets the reader go on into the payload after [`Event::HeaderReady`].
    pub fn accept_header(&mut self) {
        if self.gate == Gate::Header {
            self.gate = Gate::Open;
        }
    }

    /// The parsed header (complete after [`Event::HeaderReady`]).
    pub fn header(&self) -> &ArtifactHeader {
        &self.header
    }

    /// Name of the current script or payload file.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// SHA-256 of the `manifest` bytes (the signed message), valid from
    /// [`Event::SignatureCheck`] on.
    pub fn manifest_digest(&self) -> &[u8; 32] {
        &self.manifest_digest
    }

    /// The decoded `manifest.sig` (empty if unsigned).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The input ended: `Ok` when the artifact is complete. Like Go's
    /// `archive/tar` (the reference), an archive that stops at a clean
    /// member boundary after its last member is complete without the two
    /// end-of-archive blocks (or with only one): the final checks (payload
    /// present, every manifest entry used) run here then. Stopping inside
    /// a member, its padding or a header block is [`ArtifactError::Truncated`].
    ///
    /// # Errors
    /// The error that stopped the reader, a final check, or
    /// [`ArtifactError::Truncated`].
    pub fn end_of_input(&mut self) -> Result<(), ArtifactError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        if self.done {
            return Ok(());
        }
        if self.body != Body::None
            || self.deferred_entry
            || self.gate != Gate::Open
            || !self.outer.at_boundary()
        {
            return Err(ArtifactError::Truncated);
        }
        if !self.complete {
            if let Err(error) = self.final_checks() {
                self.failed = Some(error);
                return Err(error);
            }
        }
        self.done = true;
        Ok(())
    }

    /// `Ok` once [`Event::Done`] was reached (or the end-of-archive marker
    /// started and every check passed); call at end of input.
    ///
    /// # Errors
    /// The error that stopped the reader, or [`ArtifactError::Truncated`].
    pub fn finish(&self) -> Result<(), ArtifactError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        if self.done || (self.complete && self.outer.at_boundary()) {
            Ok(())
        } else {
            Err(ArtifactError::Truncated)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Input,
    Window,
}

/// Decodes the base64 text of `manifest.sig` into `out`: standard alphabet,
/// padding optional. Line breaks (which Go's decoder skips) and other ASCII
/// whitespace are removed from `text` first.
fn decode_signature<'o, const N: usize>(
    text: &mut Vec<u8, N>,
    out: &'o mut [u8],
) -> Result<&'o [u8], base64ct::Error> {
    text.retain(|byte| !byte.is_ascii_whitespace());
    if text.ends_with(b"=") {
        Base64::decode(text, out)
    } else {
        Base64Unpadded::decode(text, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &[u8], out: &mut [u8]) -> Result<usize, base64ct::Error> {
        let mut text = Vec::<u8, 64>::from_slice(text).unwrap();
        decode_signature(&mut text, out).map(<[u8]>::len)
    }

    #[test]
    fn signature_base64() {
        let mut out = [0u8; 16];
        assert_eq!(decode(b"aGVsbG8=", &mut out), Ok(5));
        assert_eq!(&out[..5], b"hello");
        assert_eq!(decode(b"aGVs\r\nbG8=\n", &mut out), Ok(5));
        assert_eq!(decode(b"aGVs bG8", &mut out), Ok(5));
        assert_eq!(&out[..5], b"hello");
        assert_eq!(decode(b"", &mut out), Ok(0));
        assert!(decode(b"a*==", &mut out).is_err());
        assert!(decode(b"a", &mut out).is_err());
        assert!(decode(b"aGVsbG8=aGVs", &mut out).is_err());
        assert!(decode(b"aGVsbG8=", &mut [0u8; 2]).is_err());
    }
}
