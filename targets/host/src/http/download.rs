//! A resuming artifact download (digest section 6).
//!
//! ```text
//!  start: GET url (redirects followed) ── must be 200 + Content-Length
//!    │
//!  read ── body bytes ──► caller
//!    │ read error / timeout / EOF before Content-Length
//!    ▼
//!  sleep(backoff.delay(attempt)), attempt += 1 (never reset)
//!  GET url, Range: bytes=<received>-
//!    206 + Content-Range bytes a-b/total, a <= received, total == length
//!        ──► discard received - a bytes, go on reading
//!    200, no/bad Content-Range, a > received, transport error ──► retry
//!    total != length ──► LengthChanged (final)
//!    backoff.delay() is None ──► ResumeFailed (final)
//! ```

use std::fs;
use std::io::{self, Seek, Write};
use std::path::Path;
use std::time::Duration;

use otalite::protocol::http::ContentRange;

use super::{Body, HttpClient, HttpError, Url};

/// Backoff schedule between resume attempts: the reference's
/// `GetExponentialBackoffTime`, computed by the core's one implementation
/// ([`otalite::agent::backoff`]): the delay starts at `initial` and doubles
/// every 3 attempts; once it reaches `cap` it stays there (never below
/// `initial`). With `max_attempts == 0` it gives up after 3 attempts at the
/// cap, otherwise after `max_attempts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First delay (1 minute in the reference).
    pub initial: Duration,
    /// Largest delay (`RetryPollIntervalSeconds` for download resumes).
    pub cap: Duration,
    /// Attempt limit; 0 = automatic (3 attempts at the cap).
    pub max_attempts: u32,
}

impl Backoff {
    /// The reference schedule for download resumes: 1 min steps doubling
    /// every 3 tries, capped at `RetryPollIntervalSeconds`. With 300 s:
    /// 1,1,1,2,2,2,4,4,4,5,5,5 minutes, then give up.
    pub const fn mender(retry_poll_interval: Duration) -> Self {
        Self {
            initial: Duration::from_secs(60),
            cap: retry_poll_interval,
            max_attempts: 0,
        }
    }

    /// Delay before attempt number `tried` (0-based), or `None` to give up.
    pub fn delay(&self, tried: u32) -> Option<Duration> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        otalite::agent::backoff(tried, ms(self.initial), ms(self.cap), self.max_attempts)
            .map(Duration::from_millis)
    }
}

/// Why [`Download::save_to`] did not complete.
#[derive(Debug)]
pub enum SaveError {
    /// The file cannot be written or synced (the message names it).
    File(String),
    /// The stream broke (or was stopped).
    Broke(HttpError),
    /// The body ended before the announced size.
    Short {
        /// Bytes in the file.
        reached: u64,
        /// Bytes announced.
        total: u64,
    },
}

impl core::fmt::Display for SaveError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::File(message) => f.write_str(message),
            Self::Broke(error) => write!(f, "the download broke: {error}"),
            Self::Short { reached, total } => {
                write!(f, "short download: {reached} of {total} bytes")
            }
        }
    }
}

/// What [`Download::open_from`] found.
#[derive(Debug)]
pub enum Resumed {
    /// The rest of the body, from the byte asked for.
    Rest(Download),
    /// The whole body (the server ignored the `Range`, or none was sent):
    /// start the file over.
    Whole(Download),
    /// `416`: nothing after that byte; the file is complete.
    Complete,
}

/// A `GET` body that resumes with `Range` requests when the connection
/// breaks, stalls (read timeout) or ends early. Every read has a timeout,
/// the number of attempts is bounded, so a read never hangs for longer than
/// about `io_timeout` plus the backoff schedule.
pub struct Download {
    client: HttpClient,
    url: Url,
    /// `None`: no resume of its own (the agent resumes, [`Download::open_at`]).
    backoff: Option<Backoff>,
    attempts: u32,
    received: u64,
    total: u64,
    body: Option<Body>,
}

impl core::fmt::Debug for Download {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Download")
            .field("url", &self.url)
            .field("received", &self.received)
            .field("total", &self.total)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl Download {
    /// Sends the first `GET` (following redirects) and checks for 200 and a
    /// `Content-Length`. No retry here: the caller's
    /// `fetch-install-retry-wait` handles a failed start.
    ///
    /// # Errors
    /// Transport errors, a status other than 200
    /// ([`HttpError::Status`]), no `Content-Length`
    /// ([`HttpError::UnknownLength`]).
    pub fn start(client: &HttpClient, url: &str, backoff: Backoff) -> Result<Self, HttpError> {
        let url = Url::parse(url)?;
        let (head, body) = client.get_following_redirects(&url, &[])?;
        if head.status != 200 {
            return Err(HttpError::Status {
                status: head.status,
                reason: head.reason.as_str().to_string(),
            });
        }
        if head.chunked {
            return Err(HttpError::UnknownLength);
        }
        let total = head.content_length.ok_or(HttpError::UnknownLength)?;
        Ok(Self {
            client: client.clone(),
            url,
            backoff: Some(backoff),
            attempts: 0,
            received: 0,
            total,
            body: Some(body),
        })
    }

    /// One attempt at the body from byte `from` on, without resuming by
    /// itself: `from == 0` is [`Download::start`]; otherwise a `Range`
    /// request checked against `expected_total` (the size the first
    /// response announced). A broken read is then an error for the caller
    /// (the agent) to resume from [`Download::received`].
    ///
    /// # Errors
    /// As [`Download::start`], plus the `Range` checks
    /// ([`HttpError::BadResume`], [`HttpError::LengthChanged`]).
    pub fn open_at(
        client: &HttpClient,
        url: &str,
        from: u64,
        expected_total: Option<u64>,
    ) -> Result<Self, HttpError> {
        if from == 0 {
            let mut download = Self::start(client, url, Backoff::mender(Duration::ZERO))?;
            download.backoff = None;
            if let Some(expected) = expected_total.filter(|&e| e != download.total) {
                return Err(HttpError::LengthChanged {
                    expected,
                    found: download.total,
                });
            }
            return Ok(download);
        }
        let total = expected_total.ok_or_else(|| {
            HttpError::BadResume("cannot resume: the artifact size is unknown".to_string())
        })?;
        let mut download = Self {
            client: client.clone(),
            url: Url::parse(url)?,
            backoff: None,
            attempts: 0,
            received: from,
            total,
            body: None,
        };
        download.body = Some(download.open_range()?);
        Ok(download)
    }

    /// The body from byte `from` on when the size is not known yet (a
    /// restart resuming a file, as upparat does): a `Range` request whose
    /// `Content-Range` gives the size. No resume of its own.
    ///
    /// # Errors
    /// As [`Download::start`] (a 403: [`HttpError::Status`]), a 206 without
    /// a size.
    pub fn open_from(client: &HttpClient, url: &str, from: u64) -> Result<Resumed, HttpError> {
        if from == 0 {
            let mut download = Self::start(client, url, Backoff::mender(Duration::ZERO))?;
            download.backoff = None;
            return Ok(Resumed::Whole(download));
        }
        let parsed = Url::parse(url)?;
        let range = format!("bytes={from}-");
        let (head, body) = client.get_following_redirects(&parsed, &[("Range", &range)])?;
        match head.status {
            416 => return Ok(Resumed::Complete),
            200 => {
                if head.chunked {
                    return Err(HttpError::UnknownLength);
                }
                let total = head.content_length.ok_or(HttpError::UnknownLength)?;
                return Ok(Resumed::Whole(Self {
                    client: client.clone(),
                    url: parsed,
                    backoff: None,
                    attempts: 0,
                    received: 0,
                    total,
                    body: Some(body),
                }));
            }
            206 => {}
            status => {
                return Err(HttpError::Status {
                    status,
                    reason: head.reason.as_str().to_string(),
                })
            }
        }
        let Some(ContentRange::Bytes {
            first,
            last,
            total: Some(total),
        }) = head.content_range
        else {
            return Err(HttpError::BadResume(
                "206 without a byte Content-Range and size".to_string(),
            ));
        };
        if first != from || last >= total {
            return Err(HttpError::BadResume(format!(
                "Content-Range {first}-{last}/{total} does not start at {from}"
            )));
        }
        Ok(Resumed::Rest(Self {
            client: client.clone(),
            url: parsed,
            backoff: None,
            attempts: 0,
            received: from,
            total,
            body: Some(body),
        }))
    }

    /// Writes the rest of the body into `path` from byte `from` on (the
    /// file is cut to `from` first, and created empty when `from` is 0),
    /// telling `progress` the bytes in the file after each chunk, then
    /// syncs it. Complete only when every byte the server announced is in
    /// the file. Returns the bytes in the file.
    ///
    /// # Errors
    /// [`SaveError`]: the file, the stream, or a short body.
    pub fn save_to(
        &mut self,
        path: &Path,
        from: u64,
        progress: &mut dyn FnMut(u64),
    ) -> (u64, Result<(), SaveError>) {
        let cannot =
            |e: io::Error| SaveError::File(format!("cannot write {}: {e}", path.display()));
        let opened = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(from == 0)
            .open(path)
            .and_then(|mut file| {
                file.set_len(from)?;
                file.seek(io::SeekFrom::Start(from))?;
                Ok(file)
            });
        let mut file = match opened {
            Ok(file) => file,
            Err(e) => return (from, Err(cannot(e))),
        };
        let mut reached = from;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match self.read_body(&mut chunk) {
                Ok(0) => break,
                Ok(count) => {
                    if let Err(e) = file.write_all(chunk.get(..count).unwrap_or_default()) {
                        return (reached, Err(cannot(e)));
                    }
                    reached = reached.saturating_add(count as u64);
                    progress(reached);
                }
                Err(error) => {
                    let _ = file.sync_all();
                    return (reached, Err(SaveError::Broke(error)));
                }
            }
        }
        if let Err(e) = file.sync_all() {
            return (reached, Err(cannot(e)));
        }
        if reached == self.total {
            (reached, Ok(()))
        } else {
            (
                reached,
                Err(SaveError::Short {
                    reached,
                    total: self.total,
                }),
            )
        }
    }

    /// Bytes delivered so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The size announced by the first response.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Resume attempts made so far (never reset).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Reads body bytes, resuming as needed; 0 once `total` bytes were read.
    ///
    /// # Errors
    /// [`HttpError::ResumeFailed`] when the backoff schedule gives up,
    /// [`HttpError::LengthChanged`] when the file changed on the server.
    pub fn read_body(&mut self, output: &mut [u8]) -> Result<usize, HttpError> {
        if output.is_empty() {
            return Ok(0);
        }
        loop {
            let remaining = self.total - self.received;
            if remaining == 0 {
                return Ok(0);
            }
            let limit = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(output.len());
            let error = match self.body.as_mut() {
                Some(body) => match body.read(output.get_mut(..limit).unwrap_or_default()) {
                    Ok(0) => HttpError::UnexpectedEof,
                    Ok(count) => {
                        self.received += count as u64;
                        return Ok(count);
                    }
                    Err(error) => error,
                },
                None => HttpError::UnexpectedEof,
            };
            self.body = None;
            if matches!(error, HttpError::Stopped) {
                return Err(error);
            }
            log::warn!(
                "download of {} broken at {}/{} bytes: {}",
                self.url,
                self.received,
                self.total,
                error
            );
            self.resume(error)?;
        }
    }

    /// Retries `Range` requests until one gives a usable body.
    fn resume(&mut self, mut last_error: HttpError) -> Result<(), HttpError> {
        loop {
            let Some(delay) = self.backoff.and_then(|b| b.delay(self.attempts)) else {
                return Err(HttpError::ResumeFailed {
                    attempts: self.attempts,
                    last: Box::new(last_error),
                });
            };
            self.attempts += 1;
            std::thread::sleep(delay);
            match self.open_range() {
                Ok(body) => {
                    log::info!(
                        "download of {} resumed at {} bytes (attempt {})",
                        self.url,
                        self.received,
                        self.attempts
                    );
                    self.body = Some(body);
                    return Ok(());
                }
                Err(error @ (HttpError::LengthChanged { .. } | HttpError::Stopped)) => {
                    return Err(error)
                }
                Err(error) => {
                    log::warn!("resume attempt {} failed: {}", self.attempts, error);
                    last_error = error;
                }
            }
        }
    }

    fn open_range(&self) -> Result<Body, HttpError> {
        let range = format!("bytes={}-", self.received);
        let (head, mut body) = self
            .client
            .get_following_redirects(&self.url, &[("Range", &range)])?;
        match head.status {
            206 => {}
            200 => {
                return Err(HttpError::BadResume(
                    "the server ignored the Range request (200)".to_string(),
                ))
            }
            status => {
                return Err(HttpError::Status {
                    status,
                    reason: head.reason.as_str().to_string(),
                })
            }
        }
        let Some(ContentRange::Bytes { first, last, total }) = head.content_range else {
            return Err(HttpError::BadResume(
                "206 without a byte Content-Range".to_string(),
            ));
        };
        if let Some(found) = total.filter(|&found| found != self.total) {
            return Err(HttpError::LengthChanged {
                expected: self.total,
                found,
            });
        }
        if first > self.received || last < self.received || last >= self.total {
            return Err(HttpError::BadResume(format!(
                "Content-Range {first}-{last} does not fit offset {} of {}",
                self.received, self.total
            )));
        }
        // The server may start earlier than asked: skip what we have.
        let mut surplus = self.received - first;
        let mut scratch = [0u8; 4096];
        while surplus > 0 {
            let limit = usize::try_from(surplus)
                .unwrap_or(usize::MAX)
                .min(scratch.len());
            let count = body.read(scratch.get_mut(..limit).unwrap_or_default())?;
            if count == 0 {
                return Err(HttpError::UnexpectedEof);
            }
            surplus -= count as u64;
        }
        Ok(body)
    }
}

impl io::Read for Download {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.read_body(buffer).map_err(HttpError::into_io)
    }
}

impl embedded_io::ErrorType for Download {
    type Error = io::Error;
}

impl embedded_io::Read for Download {
    fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Self::Error> {
        self.read_body(buffer).map_err(HttpError::into_io)
    }
}
