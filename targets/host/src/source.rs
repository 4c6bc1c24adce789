//! Where an artifact comes from: a local file, standard input (`-`) or an
//! `http://` URL, streamed (never stored).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Read timeout for HTTP downloads, in seconds.
pub const HTTP_TIMEOUT_SECONDS: u64 = 60;

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

/// Opens `location`: `http://...`, `https://...`, `-` for standard input,
/// or a file path.
///
/// # Errors
/// The file cannot be opened, the server cannot be reached or does not
/// answer 200, or the URL scheme is not supported by this build.
pub fn open(location: &str) -> io::Result<ArtifactSource> {
    if location.starts_with("https://") {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this build of otalite cannot download over HTTPS yet; download the artifact and install the file, or use http://",
        ));
    }
    if location.starts_with("http://") {
        return open_http(location);
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

fn open_http(url: &str) -> io::Result<ArtifactSource> {
    let response = minreq::get(url)
        .with_timeout(HTTP_TIMEOUT_SECONDS)
        .send_lazy()
        .map_err(|error| io::Error::other(format!("cannot download {url}: {error}")))?;
    if response.status_code != 200 {
        return Err(io::Error::other(format!(
            "cannot download {url}: the server answered {} {}",
            response.status_code, response.reason_phrase
        )));
    }
    let size = response
        .headers
        .get("content-length")
        .and_then(|len| len.trim().parse().ok());
    Ok(ArtifactSource {
        inner: Box::new(response),
        size,
    })
}
