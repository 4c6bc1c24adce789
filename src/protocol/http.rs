//! HTTP/1.1 framing, sans-IO: a response head parser (on `httparse`), a
//! chunked transfer decoder, a whole-response reader on top of both
//! ([`ResponseReader`], [`parse_response`]), a request head writer and a
//! URL splitter ([`HttpUrl`]).
//!
//! Nothing here touches a socket or allocates. The host transport
//! (`crate::host::http`) feeds received bytes in and writes the produced
//! bytes out, so the same code runs on an MCU with its own TCP/TLS stack and
//! can be fuzzed on its own.
//!
//! ```text
//!   bytes from the socket ──► ResponseHeadParser::push ──► ResponseHead
//!                         (rest of the input) ──► body: Content-Length,
//!                                                 ChunkedDecoder::decode, or
//!                                                 until close
//! ```
//!
//! Limits are fixed and named:
//!
//! | const | value | what |
//! |---|---|---|
//! | [`MAX_HEAD_LEN`] | 8192 | whole response head, status line to blank line |
//! | [`MAX_LINE_LEN`] | 4352 | one head line (the longest is a presigned `Location`) |
//! | [`MAX_HEADERS`] | 100 | header lines in one head |
//! | [`MAX_REASON_LEN`] | 64 | reason phrase kept (longer ones are cut) |
//! | [`MAX_CONTENT_TYPE_LEN`] | 128 | `Content-Type` value |
//! | [`MAX_LOCATION_LEN`] | 4096 | `Location` value |
//! | [`MAX_REQUEST_ID_LEN`] | 64 | `X-MEN-RequestID` value (longer ones are dropped) |
//! | [`MAX_CHUNK_LINE_LEN`] | 1024 | chunk-size line with extensions |
//! | [`MAX_TRAILER_LEN`] | 8192 | all trailer lines after the last chunk |

use core::fmt;

use heapless::{String, Vec};

/// Largest response head accepted (status line, headers, blank line).
pub const MAX_HEAD_LEN: usize = 8192;
/// Largest single line of a response head, without its line ending.
pub const MAX_LINE_LEN: usize = MAX_LOCATION_LEN + 256;
/// Most header lines accepted in one head.
pub const MAX_HEADERS: usize = 100;
/// Longest reason phrase kept; longer ones are truncated (they are only text).
pub const MAX_REASON_LEN: usize = 64;
/// Longest `Content-Type` value accepted.
pub const MAX_CONTENT_TYPE_LEN: usize = 128;
/// Longest `Location` value accepted (presigned URLs are long).
pub const MAX_LOCATION_LEN: usize = 4096;
/// Longest `X-MEN-RequestID` value kept; longer ones are ignored.
pub const MAX_REQUEST_ID_LEN: usize = 64;
/// Longest chunk-size line (size, extensions) accepted by [`ChunkedDecoder`].
pub const MAX_CHUNK_LINE_LEN: usize = 1024;
/// Most trailer bytes skipped after the last chunk.
pub const MAX_TRAILER_LEN: usize = 8192;

// ---------------------------------------------------------------------------
// Response head

/// Why a response head was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeadError {
    /// The head is longer than [`MAX_HEAD_LEN`].
    HeadTooLong,
    /// One line is longer than [`MAX_LINE_LEN`].
    LineTooLong,
    /// More than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    /// The status line is not `HTTP/1.0` or `HTTP/1.1`, a three-digit status
    /// of at least 100 and an optional reason.
    InvalidStatusLine,
    /// A header line has no `:`, an empty or invalid name, or is an obsolete
    /// folded continuation line.
    InvalidHeader,
    /// `Content-Length` is not a number, or two differ.
    InvalidContentLength,
    /// `Content-Range` is not `bytes a-b/total`, `bytes a-b/*` or `bytes */total`.
    InvalidContentRange,
    /// A transfer coding other than `chunked` (we never ask for one).
    UnsupportedTransferEncoding,
    /// A kept header value is longer than its `MAX_*_LEN`.
    ValueTooLong,
    /// `push` was called after the head was complete or after an error.
    Finished,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::HeadTooLong => {
                return write!(
                    f,
                    "response head longer than {MAX_HEAD_LEN} bytes (the limit)"
                )
            }
            Self::LineTooLong => {
                return write!(
                    f,
                    "response head line longer than {MAX_LINE_LEN} bytes (the limit)"
                )
            }
            Self::TooManyHeaders => {
                return write!(f, "more than {MAX_HEADERS} response headers (the limit)")
            }
            Self::InvalidStatusLine => "invalid HTTP status line",
            Self::InvalidHeader => "invalid HTTP header line",
            Self::InvalidContentLength => "invalid Content-Length",
            Self::InvalidContentRange => "invalid Content-Range",
            Self::UnsupportedTransferEncoding => "unsupported Transfer-Encoding",
            Self::ValueTooLong => "HTTP header value too long",
            Self::Finished => "response head already complete",
        };
        f.write_str(text)
    }
}

impl core::error::Error for HeadError {}

/// A parsed `Content-Range` header (RFC 9110, 14.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes first-last/total` (`total` is `None` for `*`).
    Bytes {
        /// First byte position, inclusive.
        first: u64,
        /// Last byte position, inclusive.
        last: u64,
        /// Complete length, if the server knows it.
        total: Option<u64>,
    },
    /// `bytes */total`, sent with 416.
    Unsatisfied {
        /// Complete length.
        total: u64,
    },
}

/// How the body of a response is delimited (RFC 9112, 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`: use [`ChunkedDecoder`].
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// The parts of a response head the agent needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code, 100..=999.
    pub status: u16,
    /// Minor HTTP version (`HTTP/1.0` = 0, `HTTP/1.1` = 1).
    pub minor_version: u8,
    /// Reason phrase, truncated to [`MAX_REASON_LEN`].
    pub reason: String<MAX_REASON_LEN>,
    /// `Content-Length`.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding` ends with `chunked`.
    pub chunked: bool,
    /// `Content-Range`.
    pub content_range: Option<ContentRange>,
    /// `Content-Type`, as sent (empty if absent).
    pub content_type: String<MAX_CONTENT_TYPE_LEN>,
    /// `Location`, as sent (empty if absent).
    pub location: String<MAX_LOCATION_LEN>,
    /// `X-MEN-RequestID` (empty if absent or too long).
    pub request_id: String<MAX_REQUEST_ID_LEN>,
    /// The server will close the connection after this response
    /// (`Connection: close`, or HTTP/1.0 without `keep-alive`).
    pub connection_close: bool,
    connection_keep_alive: bool,
}

impl ResponseHead {
    /// How the body is delimited; `request_was_head` for answers to `HEAD`.
    pub fn body_framing(&self, request_was_head: bool) -> BodyFraming {
        if request_was_head || self.status < 200 || self.status == 204 || self.status == 304 {
            BodyFraming::Empty
        } else if self.chunked {
            BodyFraming::Chunked
        } else if let Some(length) = self.content_length {
            BodyFraming::Length(length)
        } else {
            BodyFraming::UntilClose
        }
    }

    /// `true` for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `true` for the redirects a GET follows: 301, 302, 303, 307, 308.
    pub fn is_redirect(&self) -> bool {
        matches!(self.status, 301 | 302 | 303 | 307 | 308)
    }
}

/// What [`ResponseHeadParser::push`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadStatus {
    /// All input was consumed; push more.
    NeedsMoreInput,
    /// The head is complete after `consumed` bytes of this input; the rest
    /// of the input is the start of the body. Read it with
    /// [`ResponseHeadParser::head`].
    Done {
        /// Bytes of the input that belonged to the head.
        consumed: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ParseState {
    /// Collecting head bytes up to the blank line.
    Head,
    Done,
    Failed,
}

/// Resumable response head parser: push bytes split anywhere, get a
/// [`ResponseHead`].
///
/// The head is collected (up to [`MAX_HEAD_LEN`] bytes, inline) until its
/// blank line, then parsed at once by `httparse`; line length and header
/// count are checked while collecting, so a limit fails as soon as it is
/// broken. Interim 1xx responses (except 101) are skipped. Line endings may
/// be `\r\n` or a bare `\n`.
///
/// Size: about 12.5 KB (the head buffer and a [`ResponseHead`], whose
/// `Location` alone holds 4 KiB), plus up to 3.2 KB of stack for the header
/// slices while a head is parsed.
#[derive(Clone, Debug)]
pub struct ResponseHeadParser {
    state: ParseState,
    /// The current head so far (an interim head is dropped once read).
    buffer: Vec<u8, MAX_HEAD_LEN>,
    /// Bytes of all heads so far, interim ones and leading blank lines
    /// included.
    head_len: usize,
    /// Bytes of the current line so far, without its `\n`.
    line_len: usize,
    /// The status line was seen (blank lines before it are skipped).
    status_seen: bool,
    header_count: usize,
    head: ResponseHead,
}

impl Default for ResponseHeadParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseHeadParser {
    /// A parser waiting for the status line.
    pub fn new() -> Self {
        Self {
            state: ParseState::Head,
            buffer: Vec::new(),
            head_len: 0,
            line_len: 0,
            status_seen: false,
            header_count: 0,
            head: ResponseHead::default(),
        }
    }

    /// The parsed head (complete once `push` returned [`HeadStatus::Done`]).
    pub fn head(&self) -> &ResponseHead {
        &self.head
    }

    /// Takes the parsed head out, leaving a fresh parser behind.
    pub fn take_head(&mut self) -> ResponseHead {
        let head = core::mem::take(&mut self.head);
        *self = Self::new();
        head
    }

    /// Feeds `input`. Bounded work: one pass over `input`, plus one
    /// `httparse` pass over each complete head.
    ///
    /// # Errors
    /// The head breaks a limit or is malformed; the parser then stays failed.
    pub fn push(&mut self, input: &[u8]) -> Result<HeadStatus, HeadError> {
        match self.state {
            ParseState::Done | ParseState::Failed => return Err(HeadError::Finished),
            ParseState::Head => {}
        }
        let result = self.push_inner(input);
        if result.is_err() {
            self.state = ParseState::Failed;
        }
        result
    }

    fn push_inner(&mut self, input: &[u8]) -> Result<HeadStatus, HeadError> {
        let mut position = 0;
        while position < input.len() {
            let rest = input.get(position..).unwrap_or_default();
            let (taken, line_complete) = match rest.iter().position(|&byte| byte == b'\n') {
                Some(newline) => (newline + 1, true),
                None => (rest.len(), false),
            };
            self.head_len += taken;
            if self.head_len > MAX_HEAD_LEN {
                return Err(HeadError::HeadTooLong);
            }
            let piece = rest.get(..taken).unwrap_or_default();
            // Cannot fail: the buffer holds at most `head_len` bytes.
            self.buffer
                .extend_from_slice(piece)
                .map_err(|_| HeadError::HeadTooLong)?;
            position += taken;
            self.line_len += taken - usize::from(line_complete);
            if self.line_len > MAX_LINE_LEN {
                return Err(HeadError::LineTooLong);
            }
            if !line_complete {
                break;
            }
            if self.end_line()? {
                self.state = ParseState::Done;
                return Ok(HeadStatus::Done { consumed: position });
            }
        }
        Ok(HeadStatus::NeedsMoreInput)
    }

    /// A line ended (the buffer ends with its `\n`); `Ok(true)` when it was
    /// the blank line that ends the final head.
    fn end_line(&mut self) -> Result<bool, HeadError> {
        let blank = match self.line_len {
            0 => true,
            1 => self.buffer.iter().rev().nth(1) == Some(&b'\r'),
            _ => false,
        };
        self.line_len = 0;
        if !blank {
            if self.status_seen {
                self.header_count += 1;
                if self.header_count > MAX_HEADERS {
                    return Err(HeadError::TooManyHeaders);
                }
            }
            self.status_seen = true;
            return Ok(false);
        }
        if !self.status_seen {
            // RFC 9112 2.2: a client may skip empty lines before the status line.
            return Ok(false);
        }
        parse_head(&self.buffer, &mut self.head)?;
        if (100..200).contains(&self.head.status) && self.head.status != 101 {
            // Interim response: the real one follows.
            self.buffer.clear();
            self.status_seen = false;
            self.header_count = 0;
            self.head = ResponseHead::default();
            return Ok(false);
        }
        if self.head.minor_version == 0 {
            self.head.connection_close |= !self.head.connection_keep_alive;
        }
        Ok(true)
    }
}

/// Parses one complete head (status line to blank line) into `head`.
fn parse_head(buffer: &[u8], head: &mut ResponseHead) -> Result<(), HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buffer) {
        Ok(httparse::Status::Complete(len)) if len == buffer.len() => {}
        // The buffer ends at the blank line, so this does not happen.
        Ok(_) => return Err(HeadError::InvalidHeader),
        Err(httparse::Error::Version | httparse::Error::Status | httparse::Error::Token) => {
            return Err(HeadError::InvalidStatusLine)
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(
            httparse::Error::HeaderName | httparse::Error::HeaderValue | httparse::Error::NewLine,
        ) => return Err(HeadError::InvalidHeader),
    }
    let status = response.code.unwrap_or_default();
    if status < 100 {
        return Err(HeadError::InvalidStatusLine);
    }
    head.status = status;
    head.minor_version = response.version.unwrap_or_default();
    head.reason.clear();
    // httparse leaves the reason empty if it has bytes outside US-ASCII.
    for character in response.reason.unwrap_or_default().chars() {
        let character = if character.is_ascii_control() {
            '?'
        } else {
            character
        };
        if head.reason.push(character).is_err() {
            break;
        }
    }
    for header in response.headers.iter() {
        apply_header(head, header.name.as_bytes(), header.value)?;
    }
    Ok(())
}

/// Takes what the agent needs from one header line.
fn apply_header(head: &mut ResponseHead, name: &[u8], value: &[u8]) -> Result<(), HeadError> {
    let value = trim_ows(value);
    if name.eq_ignore_ascii_case(b"content-length") {
        let length = parse_decimal(value).ok_or(HeadError::InvalidContentLength)?;
        match head.content_length {
            Some(previous) if previous != length => return Err(HeadError::InvalidContentLength),
            _ => head.content_length = Some(length),
        }
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        for coding in value.split(|&byte| byte == b',') {
            let coding = trim_ows(coding);
            if coding.eq_ignore_ascii_case(b"chunked") {
                head.chunked = true;
            } else if !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity") {
                return Err(HeadError::UnsupportedTransferEncoding);
            }
        }
    } else if name.eq_ignore_ascii_case(b"content-range") {
        head.content_range = Some(parse_content_range(value)?);
    } else if name.eq_ignore_ascii_case(b"content-type") {
        copy_value(&mut head.content_type, value)?;
    } else if name.eq_ignore_ascii_case(b"location") {
        copy_value(&mut head.location, value)?;
    } else if name.eq_ignore_ascii_case(b"x-men-requestid") {
        if copy_value(&mut head.request_id, value).is_err() {
            head.request_id.clear();
        }
    } else if name.eq_ignore_ascii_case(b"connection") {
        for option in value.split(|&byte| byte == b',') {
            let option = trim_ows(option);
            if option.eq_ignore_ascii_case(b"close") {
                head.connection_close = true;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                head.connection_keep_alive = true;
            }
        }
    }
    Ok(())
}

fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut value: u64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    Some(value)
}

fn copy_value<const N: usize>(target: &mut String<N>, value: &[u8]) -> Result<(), HeadError> {
    let text = core::str::from_utf8(value).map_err(|_| HeadError::InvalidHeader)?;
    if text.chars().any(char::is_control) {
        return Err(HeadError::InvalidHeader);
    }
    target.clear();
    target.push_str(text).map_err(|_| HeadError::ValueTooLong)
}

/// Parses a `Content-Range` value: `bytes a-b/total`, `bytes a-b/*` or
/// `bytes */total`.
///
/// # Errors
/// [`HeadError::InvalidContentRange`] for anything else, or `a > b`, or
/// `b >= total`.
pub fn parse_content_range(value: &[u8]) -> Result<ContentRange, HeadError> {
    const INVALID: HeadError = HeadError::InvalidContentRange;
    let value = trim_ows(value);
    let unit = value.get(..6).ok_or(INVALID)?;
    if !unit.eq_ignore_ascii_case(b"bytes ") {
        return Err(INVALID);
    }
    let spec = trim_ows(value.get(6..).unwrap_or_default());
    let slash = spec.iter().position(|&byte| byte == b'/').ok_or(INVALID)?;
    let range = spec.get(..slash).unwrap_or_default();
    let total = spec.get(slash + 1..).unwrap_or_default();
    let total = if total == b"*" {
        None
    } else {
        Some(parse_decimal(total).ok_or(INVALID)?)
    };
    if range == b"*" {
        return total
            .map(|total| ContentRange::Unsatisfied { total })
            .ok_or(INVALID);
    }
    let dash = range.iter().position(|&byte| byte == b'-').ok_or(INVALID)?;
    let first = parse_decimal(range.get(..dash).unwrap_or_default()).ok_or(INVALID)?;
    let last = parse_decimal(range.get(dash + 1..).unwrap_or_default()).ok_or(INVALID)?;
    if first > last || total.is_some_and(|total| last >= total) {
        return Err(INVALID);
    }
    Ok(ContentRange::Bytes { first, last, total })
}

// ---------------------------------------------------------------------------
// Chunked transfer coding

/// Why a chunked body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkedError {
    /// The chunk size is not hex, is missing or does not fit in 64 bits.
    InvalidChunkSize,
    /// A chunk-size line is longer than [`MAX_CHUNK_LINE_LEN`].
    ChunkLineTooLong,
    /// Chunk data is not followed by a line ending.
    MissingChunkTerminator,
    /// The trailer section is longer than [`MAX_TRAILER_LEN`].
    TrailerTooLong,
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::InvalidChunkSize => "invalid chunk size (not hex or larger than 64 bits)",
            Self::ChunkLineTooLong => {
                return write!(
                    f,
                    "chunk-size line longer than {MAX_CHUNK_LINE_LEN} bytes (the limit)"
                )
            }
            Self::MissingChunkTerminator => "chunk data not followed by CRLF",
            Self::TrailerTooLong => {
                return write!(
                    f,
                    "chunked trailer longer than {MAX_TRAILER_LEN} bytes (the limit)"
                )
            }
        };
        f.write_str(text)
    }
}

impl core::error::Error for ChunkedError {}

/// Where [`ChunkedDecoder::decode`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkedStatus {
    /// All input was consumed; push more.
    NeedsMoreInput,
    /// The output buffer is full and chunk data is waiting in the input.
    HasMoreOutput,
    /// The last chunk and the trailers were read; the bytes after
    /// `consumed` are not part of this body.
    Done,
}

/// Result of one [`ChunkedDecoder::decode`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedProgress {
    /// Where decoding stopped.
    pub status: ChunkedStatus,
    /// Input bytes used.
    pub consumed: usize,
    /// Body bytes written to the output.
    pub produced: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size; `digits` so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// Skipping chunk extensions up to the line feed.
    Extension {
        value: u64,
    },
    /// Saw `\r` after the size line, expecting `\n`.
    SizeLineFeed {
        value: u64,
    },
    /// Chunk data still to copy.
    Data {
        remaining: u64,
    },
    /// After the data, expecting `\r` or `\n`.
    DataEnd,
    /// After the data and `\r`, expecting `\n`.
    DataLineFeed,
    /// At the start of a trailer line (or the final blank line).
    TrailerLineStart,
    /// Inside a trailer line, skipping to `\n`.
    TrailerLine,
    /// Saw `\r` of the final blank line, expecting `\n`.
    FinalLineFeed,
    Done,
}

/// Push decoder for `Transfer-Encoding: chunked` (RFC 9112, 7.1). Chunk
/// extensions and trailers are skipped.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    line_len: usize,
    trailer_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub const fn new() -> Self {
        Self {
            state: ChunkState::Size {
                value: 0,
                digits: 0,
            },
            line_len: 0,
            trailer_len: 0,
        }
    }

    /// `true` once the last chunk and trailers were read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes `input` into `output`. Bounded work: one pass over `input`.
    ///
    /// # Errors
    /// The framing is malformed or breaks a limit.
    pub fn decode(
        &mut self,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<ChunkedProgress, ChunkedError> {
        let mut consumed = 0;
        let mut produced = 0;
        loop {
            if self.state == ChunkState::Done {
                return Ok(ChunkedProgress {
                    status: ChunkedStatus::Done,
                    consumed,
                    produced,
                });
            }
            let rest = input.get(consumed..).unwrap_or_default();
            if rest.is_empty() {
                break;
            }
            if let ChunkState::Data { remaining } = self.state {
                let space = output.get_mut(produced..).unwrap_or_default();
                if space.is_empty() {
                    return Ok(ChunkedProgress {
                        status: ChunkedStatus::HasMoreOutput,
                        consumed,
                        produced,
                    });
                }
                let count = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(rest.len())
                    .min(space.len());
                if let (Some(target), Some(source)) = (space.get_mut(..count), rest.get(..count)) {
                    target.copy_from_slice(source);
                }
                consumed += count;
                produced += count;
                let remaining = remaining - count as u64;
                self.state = if remaining == 0 {
                    ChunkState::DataEnd
                } else {
                    ChunkState::Data { remaining }
                };
                continue;
            }
            if let Some(&byte) = rest.first() {
                self.step(byte)?;
                consumed += 1;
            }
        }
        Ok(ChunkedProgress {
            status: ChunkedStatus::NeedsMoreInput,
            consumed,
            produced,
        })
    }

    fn count_line_byte(&mut self) -> Result<(), ChunkedError> {
        self.line_len += 1;
        if self.line_len > MAX_CHUNK_LINE_LEN {
            return Err(ChunkedError::ChunkLineTooLong);
        }
        Ok(())
    }

    fn size_line_done(&mut self, value: u64) {
        self.line_len = 0;
        self.state = if value == 0 {
            ChunkState::TrailerLineStart
        } else {
            ChunkState::Data { remaining: value }
        };
    }

    /// One framing byte (never called in the `Data` state).
    fn step(&mut self, byte: u8) -> Result<(), ChunkedError> {
        match self.state {
            ChunkState::Size { value, digits } => {
                self.count_line_byte()?;
                if let Some(digit) = char::from(byte).to_digit(16) {
                    if digits >= 16 {
                        return Err(ChunkedError::InvalidChunkSize);
                    }
                    self.state = ChunkState::Size {
                        value: (value << 4) | u64::from(digit),
                        digits: digits + 1,
                    };
                } else if digits == 0 {
                    return Err(ChunkedError::InvalidChunkSize);
                } else {
                    match byte {
                        b';' | b' ' | b'\t' => self.state = ChunkState::Extension { value },
                        b'\r' => self.state = ChunkState::SizeLineFeed { value },
                        b'\n' => self.size_line_done(value),
                        _ => return Err(ChunkedError::InvalidChunkSize),
                    }
                }
            }
            ChunkState::Extension { value } => {
                self.count_line_byte()?;
                if byte == b'\n' {
                    self.size_line_done(value);
                }
            }
            ChunkState::SizeLineFeed { value } => {
                if byte != b'\n' {
                    return Err(ChunkedError::InvalidChunkSize);
                }
                self.size_line_done(value);
            }
            ChunkState::DataEnd => match byte {
                b'\r' => self.state = ChunkState::DataLineFeed,
                b'\n' => self.state = Self::new().state,
                _ => return Err(ChunkedError::MissingChunkTerminator),
            },
            ChunkState::DataLineFeed => {
                if byte != b'\n' {
                    return Err(ChunkedError::MissingChunkTerminator);
                }
                self.state = Self::new().state;
            }
            ChunkState::TrailerLineStart | ChunkState::TrailerLine | ChunkState::FinalLineFeed => {
                self.trailer_len += 1;
                if self.trailer_len > MAX_TRAILER_LEN {
                    return Err(ChunkedError::TrailerTooLong);
                }
                self.state = match (self.state, byte) {
                    (ChunkState::TrailerLineStart, b'\r') => ChunkState::FinalLineFeed,
                    (ChunkState::TrailerLineStart | ChunkState::FinalLineFeed, b'\n') => {
                        ChunkState::Done
                    }
                    (ChunkState::FinalLineFeed, _) => {
                        return Err(ChunkedError::MissingChunkTerminator)
                    }
                    (_, b'\n') => ChunkState::TrailerLineStart,
                    _ => ChunkState::TrailerLine,
                };
            }
            ChunkState::Data { .. } | ChunkState::Done => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Request head

/// Why a request head could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestHeadError {
    /// The buffer is too small; `required` bytes are needed.
    BufferTooSmall {
        /// Size of the whole head.
        required: usize,
    },
    /// The method or a header name is not a token, or a value holds a
    /// control character (which would allow header injection).
    InvalidField,
}

impl fmt::Display for RequestHeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { required } => {
                write!(f, "request head needs a {required}-byte buffer")
            }
            Self::InvalidField => f.write_str("invalid character in a request head field"),
        }
    }
}

impl core::error::Error for RequestHeadError {}

/// An HTTP/1.1 request head to serialize.
///
/// ```text
/// METHOD target HTTP/1.1\r\n
/// Host: host\r\n
/// Name: value\r\n            (each of `headers`)
/// Content-Length: n\r\n      (if `content_length` is Some)
/// \r\n
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    /// `GET`, `PUT`, ...
    pub method: &'a str,
    /// Origin form (`/path?query`), absolute form (`http://h/p`, through a
    /// proxy) or authority form (`host:port`, for `CONNECT`).
    pub target: &'a str,
    /// The `Host` header value (`host[:port]`).
    pub host: &'a str,
    /// Other headers, written in order.
    pub headers: &'a [(&'a str, &'a str)],
    /// Body length, written as `Content-Length`.
    pub content_length: Option<u64>,
}

struct HeadWriter<'b> {
    buffer: &'b mut [u8],
    len: usize,
}

impl HeadWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(target) = self.buffer.get_mut(self.len..self.len + bytes.len()) {
            target.copy_from_slice(bytes);
        }
        // Past the end only the length is counted, to report `required`.
        self.len += bytes.len();
    }
}

impl RequestHead<'_> {
    /// Writes the head into `buffer` and returns its length.
    ///
    /// # Errors
    /// [`RequestHeadError::BufferTooSmall`] with the size needed, or
    /// [`RequestHeadError::InvalidField`].
    pub fn write(&self, buffer: &mut [u8]) -> Result<usize, RequestHeadError> {
        let is_token = |text: &str| !text.is_empty() && text.bytes().all(is_token_byte);
        let is_value = |text: &str| {
            text.bytes()
                .all(|byte| byte == b'\t' || !byte.is_ascii_control())
        };
        let is_target =
            |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_graphic());
        if !is_token(self.method)
            || !is_target(self.target)
            || !is_target(self.host)
            || !self
                .headers
                .iter()
                .all(|(name, value)| is_token(name) && is_value(value))
        {
            return Err(RequestHeadError::InvalidField);
        }
        let mut writer = HeadWriter { buffer, len: 0 };
        writer.put(self.method.as_bytes());
        writer.put(b" ");
        writer.put(self.target.as_bytes());
        writer.put(b" HTTP/1.1\r\nHost: ");
        writer.put(self.host.as_bytes());
        writer.put(b"\r\n");
        for (name, value) in self.headers {
            writer.put(name.as_bytes());
            writer.put(b": ");
            writer.put(value.as_bytes());
            writer.put(b"\r\n");
        }
        if let Some(length) = self.content_length {
            writer.put(b"Content-Length: ");
            let mut digits = [0u8; 20];
            writer.put(format_decimal(length, &mut digits));
            writer.put(b"\r\n");
        }
        writer.put(b"\r\n");
        if writer.len > writer.buffer.len() {
            return Err(RequestHeadError::BufferTooSmall {
                required: writer.len,
            });
        }
        Ok(writer.len)
    }
}

fn format_decimal(mut value: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(slot) = digits.get_mut(start) {
            *slot = b'0' + (value % 10) as u8;
        }
        value /= 10;
        if value == 0 {
            break;
        }
    }
    digits.get(start..).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// URLs

/// An `http://` or `https://` URL split for a host with raw sockets: what
/// to connect to and what to put in the request head.
///
/// User information (`user@`) and a query without a path (`http://h?q`)
/// are not supported; a fragment is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpUrl<'a> {
    /// `https://` (TLS) rather than `http://`.
    pub https: bool,
    /// The host to resolve and connect to (an IPv6 literal without its
    /// brackets).
    pub host: &'a str,
    /// The port (80 or 443 when the URL has none).
    pub port: u16,
    /// `host[:port]` as written in the URL: the `Host` header value.
    pub authority: &'a str,
    /// Path and query (`/` when the URL has no path): the request target.
    pub target: &'a str,
}

impl<'a> HttpUrl<'a> {
    /// Splits `url`; `None` when it is not a supported `http(s)://` URL.
    pub fn parse(url: &'a str) -> Option<Self> {
        let scheme_end = url.find("://")?;
        let scheme = url.get(..scheme_end)?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return None;
        };
        let rest = url.get(scheme_end + 3..)?;
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.is_empty() || authority.contains('@') || target.starts_with('?') {
            return None;
        }
        let target = if target.is_empty() { "/" } else { target };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']')?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':')?)),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || !authority.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let port = match port {
            Some(port) => port.parse().ok().filter(|&port| port != 0)?,
            None if https => 443,
            None => 80,
        };
        Some(Self {
            https,
            host,
            port,
            authority,
            target,
        })
    }
}

// ---------------------------------------------------------------------------
// Whole responses

/// Why a response could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseError {
    /// The head is malformed or breaks a limit.
    Head(HeadError),
    /// The chunked body is malformed.
    Chunked(ChunkedError),
    /// The connection closed before the head or the body ended.
    UnexpectedEof,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Head(error) => write!(f, "bad response head: {error}"),
            Self::Chunked(error) => write!(f, "bad response body: {error}"),
            Self::UnexpectedEof => f.write_str("the connection closed before the response ended"),
        }
    }
}

impl core::error::Error for ResponseError {}

/// Where [`ResponseReader::push`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseStatus {
    /// All input was used; push more (or [`ResponseReader::finish`] when the
    /// connection closed).
    NeedsMoreInput,
    /// The body buffer is full and body bytes wait in the input: push the
    /// rest of the input again with room in the body buffer.
    HasMoreOutput,
    /// The response is complete; input bytes after `consumed` are not
    /// part of it.
    Done,
}

/// Result of one [`ResponseReader::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseProgress {
    /// Where reading stopped.
    pub status: ResponseStatus,
    /// Input bytes used (head and body framing included).
    pub consumed: usize,
    /// Body bytes written to the body buffer.
    pub produced: usize,
}

#[derive(Clone, Debug)]
enum BodyState {
    Head,
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

/// A whole response, sans-IO: push the bytes read from the connection, get
/// the head ([`ResponseReader::head`]) and the body bytes (decoded from
/// `Content-Length`, chunked or until-close framing), in buffers of the
/// caller's size. For API answers (collect the body) and artifact
/// downloads (stream the body) alike.
#[derive(Clone, Debug)]
pub struct ResponseReader {
    parser: ResponseHeadParser,
    request_was_head: bool,
    head_len: usize,
    body: BodyState,
}

impl ResponseReader {
    /// A reader waiting for the status line; `request_was_head` for the
    /// answer to a `HEAD` request (no body).
    pub fn new(request_was_head: bool) -> Self {
        Self {
            parser: ResponseHeadParser::new(),
            request_was_head,
            head_len: 0,
            body: BodyState::Head,
        }
    }

    /// The head, once it is complete.
    pub fn head(&self) -> Option<&ResponseHead> {
        match self.body {
            BodyState::Head => None,
            _ => Some(self.parser.head()),
        }
    }

    /// Bytes of the input that belonged to the head (final once
    /// [`ResponseReader::head`] is `Some`).
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// `true` once the whole response was read.
    pub fn is_done(&self) -> bool {
        matches!(self.body, BodyState::Done)
    }

    /// Feeds `input`; body bytes go to `body`. Bounded work: one pass over
    /// `input`.
    ///
    /// # Errors
    /// A malformed head or chunked body; the reader is then unusable.
    pub fn push(
        &mut self,
        input: &[u8],
        body: &mut [u8],
    ) -> Result<ResponseProgress, ResponseError> {
        let mut consumed = 0;
        let mut produced = 0;
        loop {
            let rest = input.get(consumed..).unwrap_or_default();
            let space = body.get_mut(produced..).unwrap_or_default();
            let progress = move |status| ResponseProgress {
                status,
                consumed,
                produced,
            };
            match &mut self.body {
                BodyState::Done => return Ok(progress(ResponseStatus::Done)),
                _ if rest.is_empty() => return Ok(progress(ResponseStatus::NeedsMoreInput)),
                BodyState::Head => match self.parser.push(rest).map_err(ResponseError::Head)? {
                    HeadStatus::NeedsMoreInput => {
                        self.head_len += rest.len();
                        consumed += rest.len();
                    }
                    HeadStatus::Done { consumed: used } => {
                        self.head_len += used;
                        consumed += used;
                        self.body = match self.parser.head().body_framing(self.request_was_head) {
                            BodyFraming::Empty | BodyFraming::Length(0) => BodyState::Done,
                            BodyFraming::Length(length) => BodyState::Length(length),
                            BodyFraming::Chunked => BodyState::Chunked(ChunkedDecoder::new()),
                            BodyFraming::UntilClose => BodyState::UntilClose,
                        };
                    }
                },
                _ if space.is_empty() => return Ok(progress(ResponseStatus::HasMoreOutput)),
                BodyState::Length(remaining) => {
                    let count = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len())
                        .min(space.len());
                    if let (Some(target), Some(source)) =
                        (space.get_mut(..count), rest.get(..count))
                    {
                        target.copy_from_slice(source);
                    }
                    consumed += count;
                    produced += count;
                    *remaining -= count as u64;
                    if *remaining == 0 {
                        self.body = BodyState::Done;
                    }
                }
                BodyState::UntilClose => {
                    let count = rest.len().min(space.len());
                    if let (Some(target), Some(source)) =
                        (space.get_mut(..count), rest.get(..count))
                    {
                        target.copy_from_slice(source);
                    }
                    consumed += count;
                    produced += count;
                }
                BodyState::Chunked(decoder) => {
                    let step = decoder
                        .decode(rest, space)
                        .map_err(ResponseError::Chunked)?;
                    consumed += step.consumed;
                    produced += step.produced;
                    if step.status == ChunkedStatus::Done {
                        self.body = BodyState::Done;
                    } else if step.consumed == 0 && step.produced == 0 {
                        // No progress without more room: report it.
                        return Ok(ResponseProgress {
                            status: ResponseStatus::HasMoreOutput,
                            consumed,
                            produced,
                        });
                    }
                }
            }
        }
    }

    /// The connection closed: a body delimited by the close ends here.
    ///
    /// # Errors
    /// [`ResponseError::UnexpectedEof`] when the head or a framed body is
    /// incomplete.
    pub fn finish(&mut self) -> Result<(), ResponseError> {
        match self.body {
            BodyState::Done => Ok(()),
            BodyState::UntilClose => {
                self.body = BodyState::Done;
                Ok(())
            }
            _ => Err(ResponseError::UnexpectedEof),
        }
    }
}

/// A complete response found by [`parse_response`]: its body is
/// `raw[body_start..body_start + body_len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedResponse {
    /// Status code.
    pub status: u16,
    /// Where the (decoded) body starts in the buffer.
    pub body_start: usize,
    /// Body length.
    pub body_len: usize,
}

/// Turns the raw bytes of one response (head and body, `Content-Length`,
/// chunked or until-close framing) into status and body, decoding a chunked
/// body in place. `closed`: the connection has closed, nothing more will
/// come. `Ok(None)`: incomplete, read more and call again with all bytes.
///
/// # Errors
/// A malformed response, or one cut short by the close.
pub fn parse_response(
    raw: &mut [u8],
    closed: bool,
) -> Result<Option<ParsedResponse>, ResponseError> {
    let mut reader = ResponseReader::new(false);
    let mut read = 0;
    let mut body_len = 0;
    let mut staging = [0u8; 256];
    loop {
        let input = raw.get(read..).unwrap_or_default();
        let step = reader.push(input, &mut staging)?;
        // Decoded body bytes never outrun the input they came from, so the
        // body is written back over bytes already read.
        let start = reader.head_len() + body_len;
        if let (Some(target), Some(source)) = (
            raw.get_mut(start..start + step.produced),
            staging.get(..step.produced),
        ) {
            target.copy_from_slice(source);
        }
        read += step.consumed;
        body_len += step.produced;
        match step.status {
            ResponseStatus::HasMoreOutput => {}
            ResponseStatus::Done => break,
            ResponseStatus::NeedsMoreInput if closed => {
                reader.finish()?;
                break;
            }
            ResponseStatus::NeedsMoreInput => return Ok(None),
        }
    }
    let status = reader.head().map_or(0, |head| head.status);
    Ok(Some(ParsedResponse {
        status,
        body_start: reader.head_len(),
        body_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE_HEADS: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\nX-MEN-RequestID: abc-123\r\n\r\n",
        b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 100-199/1000\r\nContent-Length: 100\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 302 Found\r\nLocation: https://s3.example/bucket/a?X-Amz-Signature=00\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.0 204\nServer: x\n\n",
    ];

    fn parse_whole(input: &[u8]) -> Result<(ResponseHead, usize), HeadError> {
        let mut parser = ResponseHeadParser::new();
        match parser.push(input)? {
            HeadStatus::Done { consumed } => Ok((parser.take_head(), consumed)),
            HeadStatus::NeedsMoreInput => Err(HeadError::Finished),
        }
    }

    #[test]
    fn splits_urls() {
        let url = HttpUrl::parse("http://127.0.0.1:8080/api/x?y=1#frag").unwrap();
        assert_eq!(
            url,
            HttpUrl {
                https: false,
                host: "127.0.0.1",
                port: 8080,
                authority: "127.0.0.1:8080",
                target: "/api/x?y=1",
            }
        );
        let url = HttpUrl::parse("HTTPS://[::1]").unwrap();
        assert_eq!(
            (url.https, url.host, url.port, url.target),
            (true, "::1", 443, "/")
        );
        assert_eq!(HttpUrl::parse("http://h").unwrap().port, 80);
        for bad in [
            "ftp://h/",
            "http://",
            "http://u@h/",
            "http://h:x/",
            "http://h:0/",
            "http://h?q",
            "h/p",
            "http://[::1/",
        ] {
            assert_eq!(HttpUrl::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_whole_responses() {
        let cases: &[(&[u8], u16, &[u8])] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA", 200, b"hello"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\nT: v\r\n\r\nEXTRA",
                200,
                b"hello",
            ),
            (b"HTTP/1.1 204 No Content\r\n\r\n", 204, b""),
        ];
        for &(raw, status, body) in cases {
            // Whole, and with every split and a tiny body buffer (streaming).
            let mut copy = std::vec::Vec::from(raw);
            let parsed = parse_response(&mut copy, false).unwrap().unwrap();
            assert_eq!(parsed.status, status);
            assert_eq!(
                &copy[parsed.body_start..parsed.body_start + parsed.body_len],
                body
            );
            for split in 0..raw.len() {
                let mut reader = ResponseReader::new(false);
                let mut got = std::vec::Vec::new();
                for part in [&raw[..split], &raw[split..]] {
                    let mut input = part;
                    while !input.is_empty() && !reader.is_done() {
                        let mut out = [0u8; 2];
                        let step = reader.push(input, &mut out).unwrap();
                        got.extend_from_slice(&out[..step.produced]);
                        input = &input[step.consumed..];
                    }
                }
                assert!(reader.is_done(), "split {split}");
                assert_eq!(reader.head().unwrap().status, status);
                assert_eq!(got, body, "split {split}");
            }
        }
        // Incomplete, then closed.
        let mut raw = *b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel";
        assert_eq!(parse_response(&mut raw, false), Ok(None));
        assert_eq!(
            parse_response(&mut raw, true),
            Err(ResponseError::UnexpectedEof)
        );
        let mut raw = *b"HTTP/1.0 200 OK\r\n\r\nuntil close";
        assert_eq!(parse_response(&mut raw, false), Ok(None));
        let parsed = parse_response(&mut raw, true).unwrap().unwrap();
        assert_eq!(&raw[parsed.body_start..][..parsed.body_len], b"until close");
        let mut raw = *b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(
            parse_response(&mut raw, false),
            Err(ResponseError::Chunked(_))
        ));
    }

    #[test]
    fn parses_sample_heads() {
        let (head, consumed) = parse_whole(SAMPLE_HEADS[0]).unwrap();
        assert_eq!(consumed, SAMPLE_HEADS[0].len());
        assert_eq!(head.status, 200);
        assert_eq!(head.reason.as_str(), "OK");
        assert_eq!(head.content_type.as_str(), "application/json");
        assert_eq!(head.content_length, Some(12));
        assert_eq!(head.request_id.as_str(), "abc-123");
        assert!(!head.connection_close);
        assert_eq!(head.body_framing(false), BodyFraming::Length(12));

        let (head, _) = parse_whole(SAMPLE_HEADS[1]).unwrap();
        assert_eq!(head.status, 206);
        assert_eq!(
            head.content_range,
            Some(ContentRange::Bytes {
                first: 100,
                last: 199,
                total: Some(1000)
            })
        );
        assert!(head.connection_close);

        let (head, _) = parse_whole(SAMPLE_HEADS[2]).unwrap();
        assert!(head.is_redirect());
        assert!(head.location.starts_with("https://s3.example/"));

        let (head, _) = parse_whole(SAMPLE_HEADS[3]).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.body_framing(false), BodyFraming::Chunked);

        let (head, _) = parse_whole(SAMPLE_HEADS[4]).unwrap();
        assert_eq!(head.status, 204);
        assert_eq!(head.reason.as_str(), "");
        assert!(head.connection_close, "HTTP/1.0 closes by default");
        assert_eq!(head.body_framing(false), BodyFraming::Empty);
    }

    #[test]
    fn every_split_of_sample_heads_gives_the_same_result() {
        for &sample in SAMPLE_HEADS {
            let mut input = std::vec::Vec::from(sample);
            input.extend_from_slice(b"BODY");
            let (expected, expected_consumed) = parse_whole(&input).unwrap();
            for split in 0..=input.len() {
                let mut parser = ResponseHeadParser::new();
                let (first, second) = input.split_at(split);
                let consumed = match parser.push(first).unwrap() {
                    HeadStatus::Done { consumed } => consumed,
                    HeadStatus::NeedsMoreInput => match parser.push(second).unwrap() {
                        HeadStatus::Done { consumed } => split + consumed,
                        HeadStatus::NeedsMoreInput => panic!("not done at split {split}"),
                    },
                };
                assert_eq!(consumed, expected_consumed, "split {split}");
                assert_eq!(parser.head(), &expected, "split {split}");
            }
            // Byte by byte.
            let mut parser = ResponseHeadParser::new();
            let mut done_at = None;
            for (index, byte) in input.iter().enumerate() {
                if let HeadStatus::Done { consumed } = parser.push(&[*byte]).unwrap() {
                    assert_eq!(consumed, 1);
                    done_at = Some(index + 1);
                    break;
                }
            }
            assert_eq!(done_at, Some(expected_consumed));
            assert_eq!(parser.head(), &expected);
        }
    }

    #[test]
    fn refuses_malformed_heads() {
        let cases: &[(&[u8], HeadError)] = &[
            (b"HTTP/2 200 OK\r\n\r\n", HeadError::InvalidStatusLine),
            (b"HTTP/1.1 20 OK\r\n\r\n", HeadError::InvalidStatusLine),
            (b"HTTP/1.1 2000 OK\r\n\r\n", HeadError::InvalidStatusLine),
            (b"ICY 200 OK\r\n\r\n", HeadError::InvalidStatusLine),
            (
                b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
                HeadError::InvalidHeader,
            ),
            (
                b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
                HeadError::InvalidHeader,
            ),
            (
                b"HTTP/1.1 200 OK\r\nA : b\r\n\r\n",
                HeadError::InvalidHeader,
            ),
            (b"HTTP/1.1 200 OK\r\n: b\r\n\r\n", HeadError::InvalidHeader),
            (
                b"HTTP/1.1 200 OK\r\nA: b\x01c\r\n\r\n",
                HeadError::InvalidHeader,
            ),
            (b"HTTP/1.1 099 OK\r\n\r\n", HeadError::InvalidStatusLine),
            (b"HTTP/1.1 200 OK\x7f\r\n\r\n", HeadError::InvalidStatusLine),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
                HeadError::InvalidContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                HeadError::InvalidContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                HeadError::InvalidContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                HeadError::UnsupportedTransferEncoding,
            ),
            (
                b"HTTP/1.1 206 OK\r\nContent-Range: bytes 5-4/10\r\n\r\n",
                HeadError::InvalidContentRange,
            ),
            (
                b"HTTP/1.1 206 OK\r\nContent-Range: bytes 0-10/10\r\n\r\n",
                HeadError::InvalidContentRange,
            ),
        ];
        for (input, expected) in cases {
            let mut parser = ResponseHeadParser::new();
            assert_eq!(parser.push(input), Err(*expected), "{input:?}");
            assert_eq!(parser.push(b"\r\n"), Err(HeadError::Finished));
        }
    }

    #[test]
    fn lenient_where_rfc_9112_allows() {
        // Blank lines before the status line, no reason, bare LF endings.
        let (head, consumed) = parse_whole(b"\r\n\nHTTP/1.1 200\nA:b\n\nBODY").unwrap();
        assert_eq!((head.status, head.reason.as_str(), consumed), (200, "", 21));
        // A reason with bytes outside US-ASCII is not kept.
        let (head, _) = parse_whole(b"HTTP/1.1 404 Nicht gefunden \xe2\x9c\x97\r\n\r\n").unwrap();
        assert_eq!((head.status, head.reason.as_str()), (404, ""));
        // Optional whitespace around values.
        let (head, _) = parse_whole(b"HTTP/1.1 200 OK\r\nContent-Length: \t 5 \r\n\r\n").unwrap();
        assert_eq!(head.content_length, Some(5));
    }

    #[test]
    fn enforces_limits() {
        let mut parser = ResponseHeadParser::new();
        let mut result = Ok(HeadStatus::NeedsMoreInput);
        let line = b"HTTP/1.1 200 OK\r\n";
        result = result.and(parser.push(line));
        for _ in 0..1000 {
            result = parser.push(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(HeadError::TooManyHeaders));

        let mut parser = ResponseHeadParser::new();
        parser.push(line).unwrap();
        let long = [b'a'; MAX_LINE_LEN + 1];
        assert_eq!(parser.push(&long), Err(HeadError::LineTooLong));

        let mut parser = ResponseHeadParser::new();
        let mut result = parser.push(line);
        for _ in 0..10 {
            result = parser
                .push(&[b'a'; 1000])
                .and_then(|_| parser.push(b": b\r\n"));
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(HeadError::HeadTooLong));
    }

    #[test]
    fn content_range_forms() {
        assert_eq!(
            parse_content_range(b"bytes 0-9/*"),
            Ok(ContentRange::Bytes {
                first: 0,
                last: 9,
                total: None
            })
        );
        assert_eq!(
            parse_content_range(b"bytes */77"),
            Ok(ContentRange::Unsatisfied { total: 77 })
        );
        for bad in [
            &b"bytes */*"[..],
            b"items 0-1/2",
            b"bytes 0-/2",
            b"bytes -1/2",
            b"bytes",
        ] {
            assert_eq!(
                parse_content_range(bad),
                Err(HeadError::InvalidContentRange)
            );
        }
    }

    /// A tiny deterministic generator, so the "never panics" test needs no
    /// dependency.
    fn next_random(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn malformed_input_never_panics() {
        let alphabet = b"HTTP/1.1 200OK\r\n:;-*/ bytesContent-LengthRangeTransfer-Encodingchunked0123456789abcdef\t";
        let mut seed = 0x1234_5678_9abc_def0;
        let mut input = [0u8; 512];
        let mut output = [0u8; 64];
        for round in 0..20_000usize {
            let len = (next_random(&mut seed) % 512) as usize;
            for byte in input.iter_mut().take(len) {
                let pick = next_random(&mut seed);
                *byte = if pick.is_multiple_of(7) {
                    pick as u8
                } else {
                    alphabet[(pick >> 8) as usize % alphabet.len()]
                };
            }
            // Mutations of real heads too.
            if round.is_multiple_of(2) {
                let sample = SAMPLE_HEADS[round / 2 % SAMPLE_HEADS.len()];
                let count = sample.len().min(len);
                input[..count].copy_from_slice(&sample[..count]);
                let flip = (next_random(&mut seed) as usize) % len.max(1);
                input[flip] = next_random(&mut seed) as u8;
            }
            let data = &input[..len];
            let split = (next_random(&mut seed) as usize) % (len + 1);
            let mut parser = ResponseHeadParser::new();
            let _ = parser
                .push(&data[..split])
                .and_then(|_| parser.push(&data[split..]));
            let mut decoder = ChunkedDecoder::new();
            let mut offset = 0;
            while offset < len {
                match decoder.decode(&data[offset..], &mut output) {
                    Ok(progress) => {
                        assert!(progress.consumed <= len - offset);
                        assert!(progress.produced <= output.len());
                        if progress.consumed == 0 && progress.produced == 0 {
                            break;
                        }
                        offset += progress.consumed;
                    }
                    Err(_) => break,
                }
            }
        }
    }

    fn decode_all(
        decoder: &mut ChunkedDecoder,
        input: &[u8],
        output_size: usize,
    ) -> Result<(std::vec::Vec<u8>, usize, bool), ChunkedError> {
        let mut body = std::vec::Vec::new();
        let mut output = std::vec![0u8; output_size];
        let mut offset = 0;
        loop {
            let progress = decoder.decode(&input[offset..], &mut output)?;
            body.extend_from_slice(&output[..progress.produced]);
            offset += progress.consumed;
            match progress.status {
                ChunkedStatus::Done => return Ok((body, offset, true)),
                ChunkedStatus::NeedsMoreInput => return Ok((body, offset, false)),
                ChunkedStatus::HasMoreOutput => {}
            }
        }
    }

    #[test]
    fn chunked_every_split_and_output_size() {
        let encoded: &[u8] =
            b"5\r\nhello\r\n1;name=value\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let expected = b"hello 0123456789";
        let body_end = encoded.len() - 4;
        for output_size in [1, 3, 7, 64] {
            for split in 0..=encoded.len() {
                let mut decoder = ChunkedDecoder::new();
                let (mut body, used, done) =
                    decode_all(&mut decoder, &encoded[..split], output_size).unwrap();
                assert_eq!(used, split.min(body_end));
                let mut total_used = used;
                if !done {
                    let (rest, used, done) =
                        decode_all(&mut decoder, &encoded[split..], output_size).unwrap();
                    assert!(done, "split {split}");
                    body.extend_from_slice(&rest);
                    total_used += used;
                }
                assert_eq!(body, expected, "split {split} output {output_size}");
                assert_eq!(total_used, body_end);
                assert!(decoder.is_done());
            }
        }
    }

    #[test]
    fn chunked_refuses_malformed() {
        let cases: &[(&[u8], ChunkedError)] = &[
            (b"g\r\n", ChunkedError::InvalidChunkSize),
            (b"\r\n", ChunkedError::InvalidChunkSize),
            (b"11111111111111111\r\n", ChunkedError::InvalidChunkSize),
            (b"2\r\nabX", ChunkedError::MissingChunkTerminator),
            (b"0\r\n\rX", ChunkedError::MissingChunkTerminator),
        ];
        for (input, expected) in cases {
            let mut decoder = ChunkedDecoder::new();
            assert_eq!(
                decode_all(&mut decoder, input, 16).map(|_| ()),
                Err(*expected),
                "{input:?}"
            );
        }
        let mut decoder = ChunkedDecoder::new();
        let long = [b';'; MAX_CHUNK_LINE_LEN + 1];
        let mut input = std::vec::Vec::from(&b"1"[..]);
        input.extend_from_slice(&long);
        assert_eq!(
            decode_all(&mut decoder, &input, 16).map(|_| ()),
            Err(ChunkedError::ChunkLineTooLong)
        );
    }

    #[test]
    fn writes_request_heads() {
        let head = RequestHead {
            method: "PUT",
            target: "/api/devices/v1/deployments/device/deployments/1/status",
            host: "mender.example:8443",
            headers: &[
                ("Authorization", "Bearer x.y.z"),
                ("Content-Type", "application/json"),
            ],
            content_length: Some(20),
        };
        let mut buffer = [0u8; 512];
        let len = head.write(&mut buffer).unwrap();
        assert_eq!(
            core::str::from_utf8(&buffer[..len]).unwrap(),
            "PUT /api/devices/v1/deployments/device/deployments/1/status HTTP/1.1\r\n\
             Host: mender.example:8443\r\nAuthorization: Bearer x.y.z\r\n\
             Content-Type: application/json\r\nContent-Length: 20\r\n\r\n"
        );
        assert_eq!(
            head.write(&mut buffer[..10]),
            Err(RequestHeadError::BufferTooSmall { required: len })
        );
        let injected = RequestHead {
            headers: &[("X", "a\r\nEvil: 1")],
            ..head
        };
        assert_eq!(
            injected.write(&mut buffer),
            Err(RequestHeadError::InvalidField)
        );
        let bad_target = RequestHead {
            target: "/a b",
            ..head
        };
        assert_eq!(
            bad_target.write(&mut buffer),
            Err(RequestHeadError::InvalidField)
        );
        let mut digits = [0u8; 20];
        assert_eq!(format_decimal(0, &mut digits), b"0");
        assert_eq!(
            format_decimal(u64::MAX, &mut digits),
            b"18446744073709551615"
        );
    }
}
