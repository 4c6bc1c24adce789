//! Where an artifact comes from: a local file, standard input (`-`) or an
//! `http://` / `https://` URL, streamed (never stored).
//!
//! URLs go through the same client as the managed mode ([`crate::http`]):
//! `ServerCertificate` and `SkipVerify` apply, proxies come from the
//! environment, redirects are followed, and a broken, stalled or short
//! download resumes with `Range` requests ([`Download`]). As in the
//! reference client, the server must announce the size (`Content-Length`).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use otalite::config::MenderConfig;

use crate::http::{Backoff, Download, HttpClient, HttpConfig};

/// How `http://` and `https://` locations are downloaded.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// The client's trust, proxies and timeouts.
    pub http: HttpConfig,
    /// When a broken download is resumed, and when it gives up.
    pub backoff: Backoff,
}

impl RemoteOptions {
    /// `ServerCertificate` and `SkipVerify` from `mender.conf`, proxies from
    /// the environment, and the reference resume schedule (1 minute steps
    /// doubling every 3 tries up to `RetryPollIntervalSeconds`).
    pub fn from_mender(config: &MenderConfig) -> Self {
        Self {
            http: HttpConfig::from_mender(config),
            backoff: Backoff::mender(Duration::from_secs(config.retry_poll_interval().into())),
        }
    }
}

/// An open artifact stream.
pub struct ArtifactSource {
    inner: Box<dyn Read>,
    /// Total size when known (file size or `Content-Length`).
    pub size: Option<u64>,
}

impl std::fmt::Debug for ArtifactSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactSource")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Read for ArtifactSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

/// Opens `location`: an `http://` or `https://` URL (downloaded as
/// `remote` says), `-` for standard input, or a file path.
///
/// # Errors
/// The file cannot be opened; the trust store cannot be built, the server
/// cannot be reached, its certificate is refused, or it does not answer
/// 200 with a `Content-Length`.
pub fn open(location: &str, remote: &RemoteOptions) -> io::Result<ArtifactSource> {
    if is_url(location) {
        return open_url(location, remote);
    }
    if location == "-" {
        return Ok(ArtifactSource {
            inner: Box::new(io::stdin().lock()),
            size: None,
        });
    }
    let file = File::open(Path::new(location)).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("cannot open artifact {location}: {error}"),
        )
    })?;
    let size = file.metadata().ok().map(|meta| meta.len());
    Ok(ArtifactSource {
        // The pipeline reads in 64 KiB chunks: no extra buffer needed.
        inner: Box::new(file),
        size,
    })
}

/// `http://...` or `https://...` (scheme case-insensitive).
fn is_url(location: &str) -> bool {
    location.split_once("://").is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
    })
}

fn open_url(url: &str, remote: &RemoteOptions) -> io::Result<ArtifactSource> {
    let failed = |error: crate::http::HttpError| {
        io::Error::new(error.io_kind(), format!("cannot download {url}: {error}"))
    };
    let client = HttpClient::new(remote.http.clone()).map_err(failed)?;
    let download = Download::start(&client, url, remote.backoff).map_err(failed)?;
    Ok(ArtifactSource {
        size: Some(download.total()),
        inner: Box::new(download),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised_by_scheme() {
        assert!(is_url("http://example.com/a.mender"));
        assert!(is_url("HTTPS://example.com/a.mender"));
        assert!(!is_url("ftp://example.com/a.mender"));
        assert!(!is_url("./http/a.mender"));
        assert!(!is_url("-"));
    }
}
