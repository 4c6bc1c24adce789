//! Where an artifact comes from when it is not downloaded: a local file or
//! standard input (`-`), streamed (never stored). `http://` and `https://`
//! locations are opened by the host loop ([`crate::driver`]) with
//! [`crate::http::Download::open_at`], so the agent decides when a broken
//! download resumes; [`is_url`] tells the two apart.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

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

/// Opens `location`: `-` for standard input, or a file path.
///
/// # Errors
/// The file cannot be opened.
pub fn open(location: &str) -> io::Result<ArtifactSource> {
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
pub fn is_url(location: &str) -> bool {
    location.split_once("://").is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
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
