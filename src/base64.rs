//! Standard-alphabet base64 into and out of caller buffers: decoding (PEM
//! bodies, `manifest.sig`; ASCII whitespace is skipped, padding is
//! optional) and padded encoding (`X-MEN-Signature`, PEM bodies).

/// Why base64 input was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Base64Error {
    /// A byte outside the alphabet at this input offset.
    InvalidByte(usize),
    /// The output buffer is too small; `required` bytes at least.
    BufferTooSmall {
        /// Bytes needed.
        required: usize,
    },
    /// The input ends in the middle of a quantum, or padding is misplaced.
    InvalidLength,
}

impl core::fmt::Display for Base64Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::InvalidByte(at) => write!(f, "invalid base64 byte at offset {at}"),
            Self::BufferTooSmall { required } => {
                write!(f, "base64 output needs {required} bytes")
            }
            Self::InvalidLength => f.write_str("truncated or misplaced base64 padding"),
        }
    }
}

impl core::error::Error for Base64Error {}

fn sextet(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes `input` into `output` and returns the number of bytes written.
///
/// # Errors
/// See [`Base64Error`].
pub fn decode(input: &[u8], output: &mut [u8]) -> Result<usize, Base64Error> {
    let mut accumulator: u32 = 0;
    let mut bits: u32 = 0;
    let mut written = 0usize;
    let mut padding = 0usize;
    let mut symbols = 0usize;
    for (offset, &byte) in input.iter().enumerate() {
        if byte.is_ascii_whitespace() {
            continue;
        }
        if byte == b'=' {
            padding += 1;
            symbols += 1;
            continue;
        }
        if padding > 0 {
            return Err(Base64Error::InvalidLength);
        }
        let value = sextet(byte).ok_or(Base64Error::InvalidByte(offset))?;
        symbols += 1;
        accumulator = (accumulator << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            let out = output.get_mut(written).ok_or(Base64Error::BufferTooSmall {
                required: (input.len() / 4 + 1) * 3,
            })?;
            *out = (accumulator >> bits) as u8;
            accumulator &= (1u32 << bits) - 1;
            written += 1;
        }
    }
    if padding > 2 || (padding > 0 && !symbols.is_multiple_of(4)) || symbols % 4 == 1 {
        return Err(Base64Error::InvalidLength);
    }
    Ok(written)
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Length of the padded encoding of `len` bytes.
pub const fn encoded_len(len: usize) -> usize {
    len.div_ceil(3) * 4
}

/// Encodes `input` with padding (RFC 4648 section 4) into `output` and
/// returns the number of bytes written ([`encoded_len`]).
///
/// # Errors
/// [`Base64Error::BufferTooSmall`] when `output` is shorter than
/// [`encoded_len`]; nothing is written then.
pub fn encode(input: &[u8], output: &mut [u8]) -> Result<usize, Base64Error> {
    let required = encoded_len(input.len());
    let output = output
        .get_mut(..required)
        .ok_or(Base64Error::BufferTooSmall { required })?;
    for (chunk, out) in input.chunks(3).zip(output.chunks_mut(4)) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let triple = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = if i <= chunk.len() {
                let index = (triple >> (18 - 6 * i)) & 0x3f;
                ALPHABET.get(index as usize).copied().unwrap_or(b'=')
            } else {
                b'='
            };
        }
    }
    Ok(required)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_with_and_without_padding() {
        let mut out = [0u8; 16];
        assert_eq!(decode(b"aGVsbG8=", &mut out), Ok(5));
        assert_eq!(&out[..5], b"hello");
        assert_eq!(decode(b"aGVs\nbG8", &mut out), Ok(5));
        assert_eq!(&out[..5], b"hello");
        assert_eq!(decode(b"", &mut out), Ok(0));
    }

    #[test]
    fn encodes_with_padding() {
        let mut out = [0u8; 12];
        for (input, expected) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"hello", "aGVsbG8="),
        ] {
            let len = encode(input, &mut out).unwrap();
            assert_eq!(&out[..len], expected.as_bytes());
            let mut back = [0u8; 8];
            let n = decode(&out[..len], &mut back).unwrap();
            assert_eq!(&back[..n], input);
        }
        assert_eq!(
            encode(b"hello", &mut [0u8; 7]),
            Err(Base64Error::BufferTooSmall { required: 8 })
        );
    }

    #[test]
    fn refuses_bad_input() {
        let mut out = [0u8; 2];
        assert_eq!(decode(b"a*==", &mut out), Err(Base64Error::InvalidByte(1)));
        assert!(matches!(
            decode(b"aGVsbG8=", &mut out),
            Err(Base64Error::BufferTooSmall { .. })
        ));
        assert_eq!(decode(b"a", &mut [0u8; 4]), Err(Base64Error::InvalidLength));
    }
}
