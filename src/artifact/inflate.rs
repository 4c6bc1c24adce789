//! Decompression of `header.tar*` and `data/NNNN.tar*` members behind one
//! small enum, so both members share the code.
//!
//! * gzip: heap-free; our own member header/trailer parser (FEXTRA, FNAME,
//!   FCOMMENT, FHCRC, CRC-32, ISIZE) around `miniz_oxide`'s raw inflate,
//!   which uses the caller's 32 KiB window as its wrapping output buffer.
//!   Concatenated gzip members are accepted (as Go's reader does).
//! * xz and zstd: only with the `alloc` feature (`xz4rust`, `ruzstd`).
//!
//! Decoded bytes are always left in the window; the caller consumes them
//! before asking for more.

use crate::crc32::Crc32;
use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

#[cfg(feature = "alloc")]
use alloc::boxed::Box;
#[cfg(feature = "alloc")]
use alloc::vec::Vec;

/// Compression of a `header.tar*` or `data/NNNN.tar*` member, by suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// No suffix.
    None,
    /// `.gz`
    Gzip,
    /// `.xz` (needs the `alloc` feature).
    Xz,
    /// `.zst` (needs the `alloc` feature).
    Zstd,
}

impl Compression {
    /// The compression a member name's suffix after `.tar` names (`""`,
    /// `".gz"`, `".xz"`, `".zst"`), or `None` for any other suffix.
    pub(crate) fn from_suffix(rest: &[u8]) -> Option<Self> {
        match rest {
            b"" => Some(Self::None),
            b".gz" => Some(Self::Gzip),
            b".xz" => Some(Self::Xz),
            b".zst" => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// Why a compressed stream was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Corrupt or truncated compressed data.
    Corrupt,
    /// The gzip CRC-32 or ISIZE does not match the data.
    Crc,
    /// Bytes after the end of an xz/zstd stream.
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    Trailing,
}

/// Result of one [`Decoder::decode`] call.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Decoded {
    /// Input bytes consumed.
    pub(crate) consumed: usize,
    /// Decoded bytes are `window[start..start + len]`.
    pub(crate) start: usize,
    /// Number of decoded bytes.
    pub(crate) len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GzState {
    /// Fixed 10-byte header.
    Fixed,
    /// FEXTRA length (2 bytes), then `XLEN` bytes.
    ExtraLen,
    Extra(u16),
    Name,
    Comment,
    HeaderCrc,
    Deflate,
    Trailer,
    End,
}

/// Heap-free gzip decoder state.
pub(crate) struct Gzip {
    state: GzState,
    flags: u8,
    small: [u8; 10],
    small_fill: usize,
    header_crc: Crc32,
    crc: Crc32,
    isize: u32,
    out_pos: usize,
    more_output: bool,
    oxide: DecompressorOxide,
}

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

impl Gzip {
    fn new() -> Self {
        Self {
            state: GzState::Fixed,
            flags: 0,
            small: [0; 10],
            small_fill: 0,
            header_crc: Crc32::new(),
            crc: Crc32::new(),
            isize: 0,
            out_pos: 0,
            more_output: false,
            oxide: DecompressorOxide::new(),
        }
    }

    fn restart(&mut self) {
        self.state = GzState::Fixed;
        self.small_fill = 0;
        self.header_crc = Crc32::new();
        self.crc = Crc32::new();
        self.isize = 0;
        self.more_output = false;
        self.oxide.init();
    }

    /// Collects `want` bytes into `small`; true when complete.
    fn collect(&mut self, input: &[u8], pos: &mut usize, want: usize) -> bool {
        let need = want.saturating_sub(self.small_fill);
        let rest = input.get(*pos..).unwrap_or(&[]);
        let take = need.min(rest.len());
        if let (Some(dest), Some(src)) = (
            self.small.get_mut(self.small_fill..self.small_fill + take),
            rest.get(..take),
        ) {
            dest.copy_from_slice(src);
            if self.state != GzState::Trailer && self.state != GzState::HeaderCrc {
                self.header_crc.update(src);
            }
        }
        self.small_fill += take;
        *pos += take;
        if self.small_fill == want {
            self.small_fill = 0;
            true
        } else {
            false
        }
    }

    fn decode(&mut self, input: &[u8], window: &mut [u8]) -> Result<Decoded, DecodeError> {
        let mut pos = 0usize;
        loop {
            match self.state {
                GzState::Fixed => {
                    if !self.collect(input, &mut pos, 10) {
                        return Ok(Decoded {
                            consumed: pos,
                            ..Decoded::default()
                        });
                    }
                    let [id1, id2, cm, flags, ..] = self.small;
                    if id1 != 0x1f || id2 != 0x8b || cm != 8 || flags & 0xE0 != 0 {
                        return Err(DecodeError::Corrupt);
                    }
                    self.flags = flags;
                    self.state = GzState::ExtraLen;
                }
                GzState::ExtraLen => {
                    if self.flags & FEXTRA == 0 {
                        self.state = GzState::Name;
                        continue;
                    }
                    if !self.collect(input, &mut pos, 2) {
                        return Ok(Decoded {
                            consumed: pos,
                            ..Decoded::default()
                        });
                    }
                    let [lo, hi, ..] = self.small;
                    self.state = GzState::Extra(u16::from_le_bytes([lo, hi]));
                }
                GzState::Extra(left) => {
                    let rest = input.get(pos..).unwrap_or(&[]);
                    let take = usize::from(left).min(rest.len());
                    self.header_crc.update(rest.get(..take).unwrap_or(&[]));
                    pos += take;
                    let left = left - take as u16;
                    if left > 0 {
                        self.state = GzState::Extra(left);
                        return Ok(Decoded {
                            consumed: pos,
                            ..Decoded::default()
                        });
                    }
                    self.state = GzState::Name;
                }
                GzState::Name | GzState::Comment => {
                    let flag = if self.state == GzState::Name {
                        FNAME
                    } else {
                        FCOMMENT
                    };
                    if self.flags & flag != 0 {
                        let rest = input.get(pos..).unwrap_or(&[]);
                        match rest.iter().position(|&b| b == 0) {
                            Some(nul) => {
                                self.header_crc.update(rest.get(..=nul).unwrap_or(&[]));
                                pos += nul + 1;
                            }
                            None => {
                                self.header_crc.update(rest);
                                return Ok(Decoded {
                                    consumed: input.len(),
                                    ..Decoded::default()
                                });
                            }
                        }
                    }
                    self.state = if self.state == GzState::Name {
                        GzState::Comment
                    } else {
                        GzState::HeaderCrc
                    };
                }
                GzState::HeaderCrc => {
                    if self.flags & FHCRC != 0 {
                        if !self.collect(input, &mut pos, 2) {
                            return Ok(Decoded {
                                consumed: pos,
                                ..Decoded::default()
                            });
                        }
                        let [lo, hi, ..] = self.small;
                        if u16::from_le_bytes([lo, hi])
                            != (self.header_crc.finish() & 0xFFFF) as u16
                        {
                            return Err(DecodeError::Crc);
                        }
                    }
                    self.state = GzState::Deflate;
                }
                GzState::Deflate => {
                    let rest = input.get(pos..).unwrap_or(&[]);
                    if rest.is_empty() && !self.more_output {
                        return Ok(Decoded {
                            consumed: pos,
                            ..Decoded::default()
                        });
                    }
                    let start = self.out_pos;
                    let (status, read, written) = decompress(
                        &mut self.oxide,
                        rest,
                        window,
                        start,
                        inflate_flags::TINFL_FLAG_HAS_MORE_INPUT,
                    );
                    pos += read;
                    let produced = window
                        .get(start..start + written)
                        .ok_or(DecodeError::Corrupt)?;
                    self.crc.update(produced);
                    self.isize = self.isize.wrapping_add(written as u32);
                    self.out_pos = (start + written) % window.len().max(1);
                    self.more_output = status == TINFLStatus::HasMoreOutput;
                    match status {
                        TINFLStatus::Done => self.state = GzState::Trailer,
                        TINFLStatus::NeedsMoreInput | TINFLStatus::HasMoreOutput => {}
                        _ => return Err(DecodeError::Corrupt),
                    }
                    if written > 0 || self.state == GzState::Deflate {
                        return Ok(Decoded {
                            consumed: pos,
                            start,
                            len: written,
                        });
                    }
                }
                GzState::Trailer => {
                    if !self.collect(input, &mut pos, 8) {
                        return Ok(Decoded {
                            consumed: pos,
                            ..Decoded::default()
                        });
                    }
                    let [c0, c1, c2, c3, s0, s1, s2, s3, ..] = self.small;
                    if u32::from_le_bytes([c0, c1, c2, c3]) != self.crc.finish()
                        || u32::from_le_bytes([s0, s1, s2, s3]) != self.isize
                    {
                        return Err(DecodeError::Crc);
                    }
                    self.state = GzState::End;
                }
                GzState::End => {
                    if pos < input.len() {
                        // Another gzip member follows (multistream).
                        self.restart();
                        continue;
                    }
                    return Ok(Decoded {
                        consumed: pos,
                        ..Decoded::default()
                    });
                }
            }
        }
    }
}

/// zstd state: `ruzstd` needs whole blocks, so compressed bytes are staged
/// in a heap buffer of at most [`ZSTD_STAGE`] bytes.
#[cfg(feature = "alloc")]
pub(crate) struct Zstd {
    decoder: ruzstd::decoding::FrameDecoder,
    stage: Vec<u8>,
    started: bool,
}

/// Largest zstd block (128 KiB) + block header + frame header + checksum.
#[cfg(feature = "alloc")]
const ZSTD_STAGE: usize = 128 * 1024 + 3 + 18 + 4;
/// Largest zstd frame window accepted (bounds the heap use).
#[cfg(feature = "alloc")]
pub const MAX_ZSTD_WINDOW: u64 = 64 * 1024 * 1024;
/// Largest xz dictionary accepted (bounds the heap use).
#[cfg(feature = "alloc")]
pub const MAX_XZ_DICT: usize = 64 * 1024 * 1024;

#[cfg(feature = "alloc")]
impl Zstd {
    fn decode(
        &mut self,
        input: &[u8],
        last: bool,
        window: &mut [u8],
    ) -> Result<Decoded, DecodeError> {
        use ruzstd::decoding::BlockDecodingStrategy;
        use ruzstd::io::Read as _;
        // Drain what is already decoded.
        if self.started && self.decoder.can_collect() > 0 {
            let len = self
                .decoder
                .read(window)
                .map_err(|_| DecodeError::Corrupt)?;
            return Ok(Decoded {
                consumed: 0,
                start: 0,
                len,
            });
        }
        let room = ZSTD_STAGE.saturating_sub(self.stage.len());
        let take = room.min(input.len());
        self.stage
            .extend_from_slice(input.get(..take).unwrap_or(&[]));
        let all_in = last && take == input.len();
        if self.started && self.decoder.is_finished() {
            if !self.stage.is_empty() {
                return Err(DecodeError::Trailing);
            }
            return Ok(Decoded {
                consumed: take,
                ..Decoded::default()
            });
        }
        if !self.started {
            if self.stage.len() < 18 && !all_in {
                return Ok(Decoded {
                    consumed: take,
                    ..Decoded::default()
                });
            }
            let mut source = self.stage.as_slice();
            self.decoder
                .init(&mut source)
                .map_err(|_| DecodeError::Corrupt)?;
            self.started = true;
            let used = usize::try_from(self.decoder.bytes_read_from_source())
                .map_err(|_| DecodeError::Corrupt)?;
            self.stage.drain(..used.min(self.stage.len()));
            return Ok(Decoded {
                consumed: take,
                ..Decoded::default()
            });
        }
        if self.stage.len() < ZSTD_STAGE && !all_in {
            return Ok(Decoded {
                consumed: take,
                ..Decoded::default()
            });
        }
        if self.stage.is_empty() {
            return Err(DecodeError::Corrupt);
        }
        let before = self.decoder.bytes_read_from_source();
        self.decoder
            .decode_blocks(self.stage.as_slice(), BlockDecodingStrategy::UptoBlocks(1))
            .map_err(|_| DecodeError::Corrupt)?;
        let used = usize::try_from(self.decoder.bytes_read_from_source().saturating_sub(before))
            .map_err(|_| DecodeError::Corrupt)?;
        self.stage.drain(..used.min(self.stage.len()));
        let len = if self.decoder.can_collect() > 0 {
            self.decoder
                .read(window)
                .map_err(|_| DecodeError::Corrupt)?
        } else {
            0
        };
        Ok(Decoded {
            consumed: take,
            start: 0,
            len,
        })
    }

    fn finished(&self) -> bool {
        self.started
            && self.decoder.is_finished()
            && self.decoder.can_collect() == 0
            && self.stage.is_empty()
    }
}

#[cfg(feature = "alloc")]
pub(crate) struct Xz {
    decoder: Box<xz4rust::XzDecoder<'static>>,
    end: bool,
}

/// One member's decompressor.
// The gzip state is inline on purpose: the core has no heap, and a reader
// holds exactly one decoder.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Decoder {
    /// Stored: bytes pass through without the window.
    None,
    /// gzip (boxed only if `alloc`; the ~11 KB inflate state lives inline).
    Gzip(Gzip),
    /// xz.
    #[cfg(feature = "alloc")]
    Xz(Xz),
    /// zstd.
    #[cfg(feature = "alloc")]
    Zstd(Box<Zstd>),
}

impl Decoder {
    /// A decoder for `compression`, or `None` if this build cannot decode it.
    pub(crate) fn new(compression: Compression) -> Option<Self> {
        match compression {
            Compression::None => Some(Self::None),
            Compression::Gzip => Some(Self::Gzip(Gzip::new())),
            #[cfg(feature = "alloc")]
            Compression::Xz => Some(Self::Xz(Xz {
                decoder: xz4rust::XzDecoder::in_heap_with_alloc_dict_size(64 * 1024, MAX_XZ_DICT),
                end: false,
            })),
            #[cfg(feature = "alloc")]
            Compression::Zstd => {
                let mut decoder = ruzstd::decoding::FrameDecoder::new();
                decoder.set_max_window_size(MAX_ZSTD_WINDOW);
                Some(Self::Zstd(Box::new(Zstd {
                    decoder,
                    stage: Vec::new(),
                    started: false,
                })))
            }
            #[cfg(not(feature = "alloc"))]
            Compression::Xz | Compression::Zstd => None,
        }
    }

    /// Re-arms a gzip decoder for a new member, reusing its state in place.
    pub(crate) fn reset_gzip(&mut self) -> bool {
        if let Self::Gzip(gzip) = self {
            gzip.restart();
            gzip.out_pos = 0;
            true
        } else {
            false
        }
    }

    /// Decodes from `input` (`last`: it reaches the end of the member) into
    /// `window` (exactly [`super::WINDOW_LEN`] bytes). Call only when the
    /// previous output was consumed.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        last: bool,
        window: &mut [u8],
    ) -> Result<Decoded, DecodeError> {
        let _ = last;
        match self {
            Self::None => Ok(Decoded::default()),
            Self::Gzip(gzip) => gzip.decode(input, window),
            #[cfg(feature = "alloc")]
            Self::Xz(xz) => {
                if xz.end {
                    return if input.is_empty() {
                        Ok(Decoded::default())
                    } else {
                        Err(DecodeError::Trailing)
                    };
                }
                if input.is_empty() {
                    return Ok(Decoded::default());
                }
                match xz.decoder.decode(input, window) {
                    Ok(xz4rust::XzNextBlockResult::NeedMoreData(consumed, len)) => Ok(Decoded {
                        consumed,
                        start: 0,
                        len,
                    }),
                    Ok(xz4rust::XzNextBlockResult::EndOfStream(consumed, len)) => {
                        xz.end = true;
                        Ok(Decoded {
                            consumed,
                            start: 0,
                            len,
                        })
                    }
                    Err(xz4rust::XzError::NeedsLargerInputBuffer) => Ok(Decoded::default()),
                    Err(_) => Err(DecodeError::Corrupt),
                }
            }
            #[cfg(feature = "alloc")]
            Self::Zstd(zstd) => zstd.decode(input, last, window),
        }
    }

    /// The decoder holds output it could not yet deliver (call again even
    /// without input).
    pub(crate) fn has_pending_output(&self) -> bool {
        match self {
            Self::None => false,
            Self::Gzip(gzip) => gzip.more_output,
            #[cfg(feature = "alloc")]
            Self::Xz(_) => false,
            #[cfg(feature = "alloc")]
            Self::Zstd(zstd) => {
                zstd.started && (zstd.decoder.can_collect() > 0 || !zstd.stage.is_empty())
            }
        }
    }

    /// The compressed stream ended cleanly (checksums verified).
    pub(crate) fn finished(&self) -> bool {
        match self {
            Self::None => true,
            Self::Gzip(gzip) => gzip.state == GzState::End,
            #[cfg(feature = "alloc")]
            Self::Xz(xz) => xz.end,
            #[cfg(feature = "alloc")]
            Self::Zstd(zstd) => zstd.finished(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_with_all_header_fields() {
        // printf 'hello\n' | gzip -c --name with FEXTRA/FCOMMENT/FHCRC built by hand.
        let deflated = {
            // Raw deflate of "hello\n" (stored block).
            let mut v = [0u8; 11];
            v[0] = 0x01; // BFINAL=1, BTYPE=00
            v[1] = 6;
            v[2] = 0;
            v[3] = !6u8;
            v[4] = 0xFF;
            v[5..11].copy_from_slice(b"hello\n");
            v
        };
        let mut member = [0u8; 128];
        let mut n = 0;
        let header = [
            0x1f,
            0x8b,
            8,
            FEXTRA | FNAME | FCOMMENT | FHCRC,
            0,
            0,
            0,
            0,
            0,
            3,
        ];
        member[..10].copy_from_slice(&header);
        n += 10;
        member[n..n + 2].copy_from_slice(&3u16.to_le_bytes());
        n += 2;
        member[n..n + 3].copy_from_slice(b"abc");
        n += 3;
        member[n..n + 2].copy_from_slice(b"f\0");
        n += 2;
        member[n..n + 2].copy_from_slice(b"c\0");
        n += 2;
        let hcrc = crate::crc32::crc32(&member[..n]) as u16;
        member[n..n + 2].copy_from_slice(&hcrc.to_le_bytes());
        n += 2;
        member[n..n + deflated.len()].copy_from_slice(&deflated);
        n += deflated.len();
        member[n..n + 4].copy_from_slice(&crate::crc32::crc32(b"hello\n").to_le_bytes());
        n += 4;
        member[n..n + 4].copy_from_slice(&6u32.to_le_bytes());
        n += 4;
        let member = &member[..n];
        let mut window = [0u8; crate::artifact::WINDOW_LEN];
        // Byte at a time.
        let mut decoder = Decoder::new(Compression::Gzip).unwrap();
        let mut out = [0u8; 16];
        let mut produced = 0;
        for byte in member {
            let mut input: &[u8] = core::slice::from_ref(byte);
            loop {
                let d = decoder.decode(input, false, &mut window).unwrap();
                out[produced..produced + d.len].copy_from_slice(&window[d.start..d.start + d.len]);
                produced += d.len;
                input = &input[d.consumed..];
                if input.is_empty() && !decoder.has_pending_output() {
                    break;
                }
            }
        }
        assert!(decoder.finished());
        assert_eq!(&out[..produced], b"hello\n");
    }
}
