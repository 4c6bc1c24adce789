//! The `manifest` member: `<64 hex sha256>  <path>\n` lines, parsed line by
//! line into a fixed table while the member streams.

use super::MAX_MANIFEST_ENTRIES;
use heapless::{String, Vec};

/// Longest manifest path: `data/NNNN/` plus a payload file name.
pub const MAX_MANIFEST_PATH_LEN: usize = 16 + super::MAX_FILE_NAME_LEN;
/// Longest manifest line kept while parsing (checksum, separator, path).
pub const MAX_MANIFEST_LINE_LEN: usize = 64 + 2 + MAX_MANIFEST_PATH_LEN;

/// Why the manifest was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestError {
    /// A line is malformed (not `hex  path`).
    Syntax,
    /// A line is longer than [`MAX_MANIFEST_LINE_LEN`].
    LineTooLong,
    /// More than [`MAX_MANIFEST_ENTRIES`] lines.
    TooManyEntries,
    /// The same path twice.
    Duplicate,
}

impl core::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Syntax => f.write_str("a line is not of the form '<sha256 hex>  <path>'"),
            Self::LineTooLong => write!(f, "a line is longer than {MAX_MANIFEST_LINE_LEN} bytes"),
            Self::TooManyEntries => write!(f, "more than {} entries", super::MAX_MANIFEST_ENTRIES),
            Self::Duplicate => f.write_str("a path is listed twice"),
        }
    }
}

/// One manifest line.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) path: String<MAX_MANIFEST_PATH_LEN>,
    pub(crate) sum: [u8; 32],
    pub(crate) used: bool,
}

/// The parsed manifest.
#[derive(Clone, Debug, Default)]
pub(crate) struct Manifest {
    entries: Vec<Entry, MAX_MANIFEST_ENTRIES>,
    line: Vec<u8, MAX_MANIFEST_LINE_LEN>,
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

impl Manifest {
    /// Feeds a chunk of the manifest member.
    pub(crate) fn feed(&mut self, mut chunk: &[u8]) -> Result<(), ManifestError> {
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    let part = chunk.get(..nl).unwrap_or(&[]);
                    self.line
                        .extend_from_slice(part)
                        .map_err(|_| ManifestError::LineTooLong)?;
                    self.finish_line()?;
                    chunk = chunk.get(nl + 1..).unwrap_or(&[]);
                }
                None => {
                    self.line
                        .extend_from_slice(chunk)
                        .map_err(|_| ManifestError::LineTooLong)?;
                    chunk = &[];
                }
            }
        }
        Ok(())
    }

    /// Ends the member. A final line without `\n` is refused (the Go parser
    /// would silently drop it, which would hide an entry).
    pub(crate) fn end(&mut self) -> Result<(), ManifestError> {
        if self.line.is_empty() {
            Ok(())
        } else {
            Err(ManifestError::Syntax)
        }
    }

    fn finish_line(&mut self) -> Result<(), ManifestError> {
        let line = core::mem::take(&mut self.line);
        if line.is_empty() {
            return Ok(());
        }
        let hex = line.get(..64).ok_or(ManifestError::Syntax)?;
        if line.get(64..66) != Some(b"  ".as_slice()) {
            return Err(ManifestError::Syntax);
        }
        let path = line.get(66..).ok_or(ManifestError::Syntax)?;
        let path = core::str::from_utf8(path).map_err(|_| ManifestError::Syntax)?;
        if path.is_empty() {
            return Err(ManifestError::Syntax);
        }
        let mut sum = [0u8; 32];
        for (out, pair) in sum.iter_mut().zip(hex.chunks_exact(2)) {
            let (hi, lo) = match pair {
                [hi, lo] => (hex_value(*hi), hex_value(*lo)),
                _ => (None, None),
            };
            *out = (hi.ok_or(ManifestError::Syntax)? << 4) | lo.ok_or(ManifestError::Syntax)?;
        }
        if self.entries.iter().any(|e| e.path.as_str() == path) {
            return Err(ManifestError::Duplicate);
        }
        let path = String::try_from(path).map_err(|_| ManifestError::LineTooLong)?;
        self.entries
            .push(Entry {
                path,
                sum,
                used: false,
            })
            .map_err(|_| ManifestError::TooManyEntries)
    }

    /// Looks `path` up (given in parts, concatenated), marks it used and
    /// returns its checksum. `None` if absent or already used.
    pub(crate) fn take(&mut self, parts: &[&[u8]]) -> Option<[u8; 32]> {
        let entry = self.entries.iter_mut().find(|e| {
            let mut rest = e.path.as_bytes();
            for part in parts {
                match rest.strip_prefix(*part) {
                    Some(r) => rest = r,
                    None => return false,
                }
            }
            rest.is_empty()
        })?;
        if entry.used {
            return None;
        }
        entry.used = true;
        Some(entry.sum)
    }

    /// Every entry was used.
    pub(crate) fn all_used(&self) -> bool {
        self.entries.iter().all(|e| e.used)
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_split_lines() {
        let text = b"0000000000000000000000000000000000000000000000000000000000000001  version\n\nabababababababababababababababababababababababababababababababab  data/0000/a.img\n";
        let mut m = Manifest::default();
        for byte in text.chunks(3) {
            m.feed(byte).unwrap();
        }
        m.end().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m.take(&[b"version"]).unwrap()[31], 1);
        assert_eq!(m.take(&[b"version"]), None);
        assert_eq!(m.take(&[b"data/0000/", b"a.img"]).unwrap()[0], 0xab);
        assert!(m.all_used());
    }

    #[test]
    fn refuses_bad_lines() {
        let mut m = Manifest::default();
        assert_eq!(m.feed(b"00  version\n"), Err(ManifestError::Syntax));
        let mut m = Manifest::default();
        assert_eq!(m.feed(&[b'a'; 400]), Err(ManifestError::LineTooLong));
    }
}
