//! Tar framing shared by the outer artifact archive and the inner
//! `header.tar` / `data/NNNN.tar` archives.
//!
//! [`Header`] is a checked view of one 512-byte header block; [`Framer`] is a
//! resumable push parser that turns a byte stream into entries (ustar names,
//! GNU `L` long names, PAX `x` records with `path` and `size`, global PAX `g`
//! skipped). The caller consumes entry bodies itself (see
//! [`Framer::body_remaining`] and [`Framer::consume_body`]), so payload bytes
//! never pass through an intermediate buffer.

/// Size of a tar block.
pub(crate) const BLOCK: usize = 512;
/// Longest entry path kept (GNU long names and PAX `path` included).
pub const MAX_PATH_LEN: usize = 256;
/// Largest PAX extended header record set accepted.
pub const MAX_PAX_LEN: usize = 1024;

/// Why a tar stream was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TarError {
    /// A header block's checksum does not match.
    HeaderChecksum,
    /// A numeric field is not octal or base-256, or overflows.
    BadNumber,
    /// An entry path (or GNU long name / PAX path) is longer than supported.
    NameTooLong,
    /// A PAX record is malformed or the record set is too large.
    BadPax,
    /// An entry type the artifact format does not use (links, devices...).
    UnsupportedEntry(u8),
    /// Input ended inside an entry.
    Truncated,
}

mod field {
    use core::ops::Range;
    pub(super) const NAME: Range<usize> = 0..100;
    pub(super) const SIZE: Range<usize> = 124..136;
    pub(super) const CHKSUM: Range<usize> = 148..156;
    pub(super) const TYPEFLAG: usize = 156;
    pub(super) const MAGIC: Range<usize> = 257..263;
    pub(super) const PREFIX: Range<usize> = 345..500;
}

/// Checked view of a 512-byte tar header block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps `buffer` after checking its length and header checksum.
    pub(crate) fn new_checked(buffer: T) -> Result<Self, TarError> {
        let header = Self { buffer };
        let bytes = header.buffer.as_ref();
        if bytes.len() < BLOCK {
            return Err(TarError::Truncated);
        }
        let stored = parse_number(header.field(field::CHKSUM))?;
        let mut sum: u64 = 0;
        for (index, &byte) in bytes.iter().take(BLOCK).enumerate() {
            let byte = if field::CHKSUM.contains(&index) {
                b' '
            } else {
                byte
            };
            sum += u64::from(byte);
        }
        if sum != stored {
            return Err(TarError::HeaderChecksum);
        }
        Ok(header)
    }

    fn field(&self, range: core::ops::Range<usize>) -> &[u8] {
        self.buffer.as_ref().get(range).unwrap_or(&[])
    }

    /// The entry type flag (`b'0'`, `b'5'`, `b'L'`, `b'x'`...; NUL is a file).
    pub(crate) fn typeflag(&self) -> u8 {
        self.buffer
            .as_ref()
            .get(field::TYPEFLAG)
            .copied()
            .unwrap_or(0)
    }

    /// The size field.
    pub(crate) fn size(&self) -> Result<u64, TarError> {
        parse_number(self.field(field::SIZE))
    }

    /// Writes `prefix/name` (ustar) or `name` into `out`.
    pub(crate) fn path(&self, out: &mut PathBuf) -> Result<(), TarError> {
        out.clear();
        let is_ustar = self.field(field::MAGIC).starts_with(b"ustar");
        if is_ustar {
            let prefix = until_nul(self.field(field::PREFIX));
            if !prefix.is_empty() {
                out.push(prefix)?;
                out.push(b"/")?;
            }
        }
        out.push(until_nul(self.field(field::NAME)))
    }
}

/// True when `block` is all zeros (end-of-archive marker).
pub(crate) fn is_zero_block(block: &[u8]) -> bool {
    block.iter().all(|&b| b == 0)
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes.get(..end).unwrap_or(&[])
}

/// Parses an octal (space/NUL padded) or GNU base-256 numeric field.
pub(crate) fn parse_number(bytes: &[u8]) -> Result<u64, TarError> {
    if let Some((&first, rest)) = bytes.split_first() {
        if first & 0x80 != 0 {
            if first & 0x40 != 0 {
                return Err(TarError::BadNumber); // negative
            }
            let mut value = u64::from(first & 0x3F);
            for &byte in rest {
                value = value
                    .checked_mul(256)
                    .and_then(|v| v.checked_add(u64::from(byte)))
                    .ok_or(TarError::BadNumber)?;
            }
            return Ok(value);
        }
    }
    let mut value: u64 = 0;
    let mut seen_digit = false;
    let mut ended = false;
    for &byte in bytes {
        match byte {
            b'0'..=b'7' if !ended => {
                value = value
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(u64::from(byte - b'0')))
                    .ok_or(TarError::BadNumber)?;
                seen_digit = true;
            }
            b' ' if !seen_digit => {}
            b' ' | 0 => ended = true,
            _ => return Err(TarError::BadNumber),
        }
    }
    Ok(value)
}

/// A fixed-capacity entry path.
#[derive(Clone, Debug)]
pub(crate) struct PathBuf {
    bytes: [u8; MAX_PATH_LEN],
    len: usize,
}

impl PathBuf {
    pub(crate) const fn new() -> Self {
        Self {
            bytes: [0; MAX_PATH_LEN],
            len: 0,
        }
    }
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
    pub(crate) fn push(&mut self, more: &[u8]) -> Result<(), TarError> {
        let end = self
            .len
            .checked_add(more.len())
            .ok_or(TarError::NameTooLong)?;
        let dest = self
            .bytes
            .get_mut(self.len..end)
            .ok_or(TarError::NameTooLong)?;
        dest.copy_from_slice(more);
        self.len = end;
        Ok(())
    }
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
    pub(crate) fn set(&mut self, bytes: &[u8]) -> Result<(), TarError> {
        self.clear();
        self.push(bytes)
    }
}

/// What [`Framer::step`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// All given bytes were consumed; nothing complete yet.
    NeedMore,
    /// A regular file (or directory, see [`Framer::is_dir`]) starts; its path
    /// is [`Framer::path`] and its body is [`Framer::body_remaining`] bytes.
    Entry,
    /// The first all-zero block.
    FirstZeroBlock,
    /// The second all-zero block: end of archive.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Collecting a header block.
    Header,
    /// Collecting a GNU long name (`remaining` bytes of body left).
    LongName { remaining: u64 },
    /// Collecting a PAX record set.
    Pax { remaining: u64, global: bool },
    /// Inside an entry body handed to the caller.
    Body,
    /// Skipping block padding.
    Padding { remaining: usize },
    /// One zero block seen.
    Zero,
    /// End of archive seen; everything after is ignored.
    End,
}

/// Resumable tar framing parser.
#[derive(Clone, Debug)]
pub(crate) struct Framer {
    state: State,
    block: [u8; BLOCK],
    fill: usize,
    path: PathBuf,
    long_name: Option<PathBuf>,
    pax: [u8; MAX_PAX_LEN],
    pax_len: usize,
    pax_path: bool,
    pax_size: Option<u64>,
    remaining: u64,
    size: u64,
    dir: bool,
}

impl Framer {
    pub(crate) const fn new() -> Self {
        Self {
            state: State::Header,
            block: [0; BLOCK],
            fill: 0,
            path: PathBuf::new(),
            long_name: None,
            pax: [0; MAX_PAX_LEN],
            pax_len: 0,
            pax_path: false,
            pax_size: None,
            remaining: 0,
            size: 0,
            dir: false,
        }
    }

    /// Path of the current entry.
    pub(crate) fn path(&self) -> &[u8] {
        self.path.as_bytes()
    }

    /// The current entry is a directory.
    pub(crate) fn is_dir(&self) -> bool {
        self.dir
    }

    /// Body bytes of the current entry not yet consumed.
    pub(crate) fn body_remaining(&self) -> u64 {
        if self.state == State::Body {
            self.remaining
        } else {
            0
        }
    }

    /// Inside an entry body.
    pub(crate) fn in_body(&self) -> bool {
        self.state == State::Body
    }

    /// At a clean entry boundary (or past the end of archive): the archive
    /// may end here without being truncated.
    pub(crate) fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header | State::Zero | State::End) && self.fill == 0
    }

    /// Marks `n` body bytes as consumed by the caller.
    pub(crate) fn consume_body(&mut self, n: usize) {
        self.remaining = self.remaining.saturating_sub(n as u64);
    }

    /// Leaves the current body (which must be fully consumed) for its padding.
    pub(crate) fn end_body(&mut self) {
        self.state = self.padding_after(self.size);
    }

    fn padding_after(&self, size: u64) -> State {
        let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        if pad == 0 {
            State::Header
        } else {
            State::Padding {
                remaining: pad as usize,
            }
        }
    }

    /// Consumes framing bytes from `data` (not body bytes) and reports what
    /// was found, with the number of bytes consumed.
    pub(crate) fn step(&mut self, data: &[u8]) -> Result<(usize, Step), TarError> {
        let mut pos = 0usize;
        loop {
            let rest = data.get(pos..).unwrap_or(&[]);
            match self.state {
                State::Body => return Ok((pos, Step::Entry)),
                State::End => return Ok((data.len(), Step::NeedMore)),
                State::Padding { remaining } => {
                    let take = remaining.min(rest.len());
                    pos += take;
                    if take == remaining {
                        self.state = State::Header;
                    } else {
                        self.state = State::Padding {
                            remaining: remaining - take,
                        };
                        return Ok((pos, Step::NeedMore));
                    }
                }
                State::LongName { remaining } | State::Pax { remaining, .. } => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    let chunk = rest.get(..take).unwrap_or(&[]);
                    let end = self.pax_len.checked_add(take).ok_or(TarError::BadPax)?;
                    let is_pax = matches!(self.state, State::Pax { .. });
                    let dest = self.pax.get_mut(self.pax_len..end).ok_or(if is_pax {
                        TarError::BadPax
                    } else {
                        TarError::NameTooLong
                    })?;
                    dest.copy_from_slice(chunk);
                    self.pax_len = end;
                    pos += take;
                    let left = remaining - take as u64;
                    if left > 0 {
                        self.state = match self.state {
                            State::Pax { global, .. } => State::Pax {
                                remaining: left,
                                global,
                            },
                            _ => State::LongName { remaining: left },
                        };
                        return Ok((pos, Step::NeedMore));
                    }
                    match self.state {
                        State::Pax { global: false, .. } => self.parse_pax()?,
                        State::Pax { global: true, .. } => {}
                        _ => {
                            let name = until_nul(self.pax.get(..self.pax_len).unwrap_or(&[]));
                            let mut long = PathBuf::new();
                            long.set(name)?;
                            self.long_name = Some(long);
                        }
                    }
                    self.state = self.padding_after(self.size);
                }
                State::Header | State::Zero => {
                    let need = BLOCK - self.fill;
                    let take = need.min(rest.len());
                    if let (Some(dest), Some(src)) = (
                        self.block.get_mut(self.fill..self.fill + take),
                        rest.get(..take),
                    ) {
                        dest.copy_from_slice(src);
                    }
                    self.fill += take;
                    pos += take;
                    if self.fill < BLOCK {
                        return Ok((pos, Step::NeedMore));
                    }
                    self.fill = 0;
                    if is_zero_block(&self.block) {
                        if self.state == State::Zero {
                            self.state = State::End;
                            return Ok((pos, Step::End));
                        }
                        self.state = State::Zero;
                        return Ok((pos, Step::FirstZeroBlock));
                    }
                    if self.state == State::Zero {
                        // A lone zero block followed by more entries: GNU tar
                        // treats it as end of archive too; be strict.
                        return Err(TarError::UnsupportedEntry(0));
                    }
                    if let Some(step) = self.header_block()? {
                        return Ok((pos, step));
                    }
                }
            }
        }
    }

    fn header_block(&mut self) -> Result<Option<Step>, TarError> {
        let header = Header::new_checked(self.block.as_slice())?;
        let size = header.size()?;
        let flag = header.typeflag();
        self.size = size;
        self.pax_len = 0;
        match flag {
            b'L' => {
                if size > MAX_PATH_LEN as u64 + 1 {
                    return Err(TarError::NameTooLong);
                }
                self.state = State::LongName { remaining: size };
                Ok(None)
            }
            b'x' | b'g' => {
                if size > MAX_PAX_LEN as u64 {
                    return Err(TarError::BadPax);
                }
                self.state = State::Pax {
                    remaining: size,
                    global: flag == b'g',
                };
                Ok(None)
            }
            b'0' | 0 | b'7' | b'5' => {
                if let Some(long) = self.long_name.take() {
                    self.path = long;
                    self.pax_path = false;
                } else if self.pax_path {
                    self.pax_path = false;
                } else {
                    header.path(&mut self.path)?;
                }
                let size = match self.pax_size.take() {
                    Some(pax) => pax,
                    None => size,
                };
                self.dir = flag == b'5';
                self.size = if self.dir { 0 } else { size };
                self.remaining = self.size;
                self.state = State::Body;
                Ok(Some(Step::Entry))
            }
            other => Err(TarError::UnsupportedEntry(other)),
        }
    }

    /// Parses `len key=value\n` records; keeps `path` and `size`.
    fn parse_pax(&mut self) -> Result<(), TarError> {
        let mut rest = self.pax.get(..self.pax_len).unwrap_or(&[]);
        let mut path: Option<(usize, usize)> = None;
        let mut offset = 0usize;
        while !rest.is_empty() {
            let space = rest
                .iter()
                .position(|&b| b == b' ')
                .ok_or(TarError::BadPax)?;
            let len_text = core::str::from_utf8(rest.get(..space).ok_or(TarError::BadPax)?)
                .map_err(|_| TarError::BadPax)?;
            let len: usize = len_text.parse().map_err(|_| TarError::BadPax)?;
            let record = rest.get(..len).ok_or(TarError::BadPax)?;
            if record.last() != Some(&b'\n') || len <= space + 1 {
                return Err(TarError::BadPax);
            }
            let body = record.get(space + 1..len - 1).ok_or(TarError::BadPax)?;
            let eq = body
                .iter()
                .position(|&b| b == b'=')
                .ok_or(TarError::BadPax)?;
            let key = body.get(..eq).ok_or(TarError::BadPax)?;
            let value_start = offset + space + 1 + eq + 1;
            let value_end = offset + len - 1;
            match key {
                b"path" => path = Some((value_start, value_end)),
                b"size" => {
                    let text = core::str::from_utf8(body.get(eq + 1..).ok_or(TarError::BadPax)?)
                        .map_err(|_| TarError::BadPax)?;
                    self.pax_size = Some(text.parse().map_err(|_| TarError::BadPax)?);
                }
                _ => {}
            }
            offset += len;
            rest = rest.get(len..).ok_or(TarError::BadPax)?;
        }
        if let Some((start, end)) = path {
            let value = self.pax.get(start..end).ok_or(TarError::BadPax)?;
            let mut long = PathBuf::new();
            long.set(value)?;
            self.path = long;
            self.pax_path = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number(b"0000644\0"), Ok(0o644));
        assert_eq!(parse_number(b"  123 \0"), Ok(0o123));
        assert_eq!(
            parse_number(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Ok(256)
        );
        assert_eq!(parse_number(b"12a"), Err(TarError::BadNumber));
        assert_eq!(parse_number(&[0xFF; 12]), Err(TarError::BadNumber));
    }
}
