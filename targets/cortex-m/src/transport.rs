//! Device-API requests and the artifact download over one TLS socket, with
//! the core's sans-IO HTTP/1.1 framing (`otalite::protocol::http`).
//!
//! The socket ([`Link`]) is a stand-in for the board's TCP/TLS stack; the
//! framing, the body decoding and the buffer handling are what a port keeps.

use core::hint::black_box;

use otalite::agent::{Method, Request, MAX_JWT_LEN};
use otalite::protocol::http::{
    BodyFraming, ChunkedDecoder, ChunkedStatus, HeadStatus, RequestHead, ResponseHeadParser,
};

/// Bytes read from the socket at a time (one TCP segment).
pub(crate) const RX_LEN: usize = 1536;
/// Room for `Bearer <JWT>` and the base64 request signature.
const HEADER_SCRATCH_LEN: usize = 7 + MAX_JWT_LEN + 128;
/// The response buffer: the request head on the way out, then the whole
/// response body (a `next` answer with its presigned URL, a JWT).
pub(crate) const RESPONSE_LEN: usize = 12 * 1024;

/// Why a transfer failed; every one of them may work later.
pub(crate) type TransferError = &'static str;

/// The TLS socket.
pub(crate) struct Link;

impl Link {
    /// Connects to `host` (`name[:port]`), closing any previous connection.
    fn connect(&mut self, host: &str) -> Result<(), TransferError> {
        black_box(host);
        if black_box(false) {
            Err("cannot connect")
        } else {
            Ok(())
        }
    }

    /// Sends all of `bytes`.
    fn send(&mut self, bytes: &[u8]) -> Result<(), TransferError> {
        black_box(bytes);
        if black_box(false) {
            Err("connection lost while sending")
        } else {
            Ok(())
        }
    }

    /// Receives into `buf`; 0 when the peer closed the connection.
    fn receive(&mut self, buf: &mut [u8]) -> Result<usize, TransferError> {
        black_box(&mut *buf);
        if black_box(false) {
            Err("connection lost while receiving")
        } else {
            Ok(black_box(0usize).min(buf.len()))
        }
    }
}

/// `https://host[:port]/target` split into `host[:port]` and `/target`.
fn split_url(url: &str) -> (&str, &str) {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    }
}

/// `parts` one after the other into `out`, as text.
fn join<'o>(out: &'o mut [u8], parts: &[&str]) -> Result<&'o str, TransferError> {
    let mut len = 0;
    for part in parts {
        let to = out
            .get_mut(len..len + part.len())
            .ok_or("header too long")?;
        to.copy_from_slice(part.as_bytes());
        len += part.len();
    }
    core::str::from_utf8(out.get(..len).unwrap_or_default()).map_err(|_| "header not text")
}

/// `n` in decimal into `out`.
fn decimal(mut n: u64, out: &mut [u8; 20]) -> &str {
    let mut at = out.len();
    loop {
        at -= 1;
        if let Some(digit) = out.get_mut(at) {
            *digit = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    core::str::from_utf8(out.get(at..).unwrap_or_default()).unwrap_or("0")
}

/// The body of the response being read and the received bytes not yet
/// decoded.
pub(crate) struct Stream {
    link: Link,
    parser: ResponseHeadParser,
    framing: BodyFraming,
    chunked: ChunkedDecoder,
    read: u64,
    done: bool,
    rx: [u8; RX_LEN],
    start: usize,
    end: usize,
}

impl Stream {
    /// No connection yet.
    pub(crate) fn new() -> Self {
        Self {
            link: Link,
            parser: ResponseHeadParser::new(),
            framing: BodyFraming::Empty,
            chunked: ChunkedDecoder::new(),
            read: 0,
            done: true,
            rx: [0; RX_LEN],
            start: 0,
            end: 0,
        }
    }

    /// Sends a request head (written into `scratch`) and its body, then
    /// reads the response head; returns the status. The body follows
    /// through [`Stream::body`].
    fn request(
        &mut self,
        host: &str,
        head: &RequestHead<'_>,
        body: &[u8],
        scratch: &mut [u8],
    ) -> Result<u16, TransferError> {
        self.link.connect(host)?;
        let len = head.write(scratch).map_err(|_| "request head too long")?;
        self.link.send(scratch.get(..len).unwrap_or_default())?;
        if !body.is_empty() {
            self.link.send(body)?;
        }
        self.parser = ResponseHeadParser::new();
        self.start = 0;
        self.end = 0;
        loop {
            self.fill()?;
            if self.start == self.end {
                return Err("connection closed before the response");
            }
            let input = self.rx.get(self.start..self.end).unwrap_or_default();
            match self.parser.push(input) {
                Ok(HeadStatus::NeedsMoreInput) => self.start = self.end,
                Ok(HeadStatus::Done { consumed }) => {
                    self.start += consumed;
                    break;
                }
                Err(_) => return Err("malformed response head"),
            }
        }
        let response = self.parser.head();
        self.framing = response.body_framing(head.method == "HEAD");
        self.chunked = ChunkedDecoder::new();
        self.read = 0;
        self.done = matches!(self.framing, BodyFraming::Empty | BodyFraming::Length(0));
        Ok(response.status)
    }

    /// Receives more bytes when all received ones were decoded.
    fn fill(&mut self) -> Result<(), TransferError> {
        if self.start == self.end {
            self.start = 0;
            self.end = self.link.receive(&mut self.rx)?;
        }
        Ok(())
    }

    /// The next body bytes into `out`; `Ok(0)` once the body ended.
    pub(crate) fn body(&mut self, out: &mut [u8]) -> Result<usize, TransferError> {
        while !self.done {
            self.fill()?;
            if self.start == self.end {
                // Closed by the peer: the end only of a body that runs
                // until the close.
                return if self.framing == BodyFraming::UntilClose {
                    self.done = true;
                    Ok(0)
                } else {
                    Err("connection closed in the body")
                };
            }
            let input = self.rx.get(self.start..self.end).unwrap_or_default();
            let (consumed, produced) = match self.framing {
                BodyFraming::Chunked => {
                    let progress = self
                        .chunked
                        .decode(input, out)
                        .map_err(|_| "malformed chunked body")?;
                    self.done = progress.status == ChunkedStatus::Done;
                    (progress.consumed, progress.produced)
                }
                BodyFraming::Length(total) => {
                    let left = usize::try_from(total - self.read).unwrap_or(usize::MAX);
                    let len = input.len().min(out.len()).min(left);
                    copy(input, out, len);
                    self.done = self.read + len as u64 == total;
                    (len, len)
                }
                BodyFraming::UntilClose | BodyFraming::Empty => {
                    let len = input.len().min(out.len());
                    copy(input, out, len);
                    (len, len)
                }
            };
            self.start += consumed;
            self.read += produced as u64;
            if produced > 0 {
                return Ok(produced);
            }
        }
        Ok(0)
    }

    /// Sends a device-API request and reads the whole answer into
    /// `response`; returns the status and the body length.
    pub(crate) fn exchange(
        &mut self,
        request: &Request<'_>,
        response: &mut [u8],
    ) -> Result<(u16, usize), TransferError> {
        let (host, _) = split_url(request.server);
        let split = response.len().saturating_sub(HEADER_SCRATCH_LEN);
        let (head_buf, scratch) = response.split_at_mut(split);
        let (auth_buf, sign_buf) = scratch.split_at_mut(7 + MAX_JWT_LEN);
        let authorization = join(auth_buf, &["Bearer ", request.bearer])?;
        let mut headers = [("", ""); 3];
        let mut count = 0;
        for header in [
            Some(("Authorization", authorization)),
            (!request.body.is_empty()).then_some(("Content-Type", "application/json")),
            if request.sign_body {
                let len = crate::board::sign(request.body, sign_buf);
                let signature = core::str::from_utf8(sign_buf.get(..len).unwrap_or_default())
                    .map_err(|_| "signature not text")?;
                Some(("X-MEN-Signature", signature))
            } else {
                None
            },
        ]
        .into_iter()
        .flatten()
        {
            if let Some(slot) = headers.get_mut(count) {
                *slot = header;
                count += 1;
            }
        }
        let head = RequestHead {
            method: request.method.as_str(),
            target: request.path,
            host,
            headers: headers.get(..count).unwrap_or_default(),
            content_length: (request.method != Method::Get).then_some(request.body.len() as u64),
        };
        let status = self.request(host, &head, request.body, head_buf)?;
        let mut len = 0;
        loop {
            let rest = response.get_mut(len..).unwrap_or_default();
            if rest.is_empty() {
                return Err("response body too long");
            }
            match self.body(rest)? {
                0 => return Ok((status, len)),
                n => len += n,
            }
        }
    }

    /// Opens the artifact at `uri` from byte `from` (`Range`); the bytes
    /// follow through [`Stream::body`]. `scratch` holds the request head.
    pub(crate) fn open(
        &mut self,
        uri: &str,
        from: u64,
        scratch: &mut [u8],
    ) -> Result<(), TransferError> {
        let (host, target) = split_url(uri);
        let mut digits = [0u8; 20];
        let mut range_buf = [0u8; 32];
        let range = join(&mut range_buf, &["bytes=", decimal(from, &mut digits), "-"])?;
        let range_header = [("Range", range)];
        let head = RequestHead {
            method: "GET",
            target,
            host,
            headers: if from > 0 { &range_header } else { &[] },
            content_length: None,
        };
        let status = self.request(host, &head, &[], scratch)?;
        let expected = if from > 0 { 206 } else { 200 };
        if status == expected {
            Ok(())
        } else {
            Err("the artifact server refused the download")
        }
    }
}

fn copy(from: &[u8], to: &mut [u8], len: usize) {
    if let (Some(to), Some(from)) = (to.get_mut(..len), from.get(..len)) {
        to.copy_from_slice(from);
    }
}
