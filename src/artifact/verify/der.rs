//! A small, checked DER reader: single-byte tags, definite lengths up to
//! 64 KiB in minimal form. Never panics; every error is a [`DerError`].

/// `SEQUENCE` (constructed).
pub(super) const SEQUENCE: u8 = 0x30;
/// `INTEGER`.
pub(super) const INTEGER: u8 = 0x02;
/// `BIT STRING`.
pub(super) const BIT_STRING: u8 = 0x03;
/// `NULL`.
pub(super) const NULL: u8 = 0x05;
/// `OBJECT IDENTIFIER`.
pub(super) const OID: u8 = 0x06;

/// Why DER input was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DerError {
    /// The input ends inside a tag, length or value.
    Truncated,
    /// A different tag than the structure requires (or a multi-byte tag).
    UnexpectedTag {
        /// The tag that was required.
        expected: u8,
        /// The tag that was found.
        found: u8,
    },
    /// Indefinite, non-minimal or over-long (> 64 KiB) length.
    BadLength,
    /// An INTEGER that is empty, negative or not minimally encoded.
    BadInteger,
    /// A BIT STRING with unused bits.
    BadBitString,
    /// Bytes after the end of the structure.
    TrailingData,
}

impl core::fmt::Display for DerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated"),
            Self::UnexpectedTag { expected, found } => {
                write!(f, "tag {found:#04x} where {expected:#04x} was expected")
            }
            Self::BadLength => f.write_str("invalid length"),
            Self::BadInteger => f.write_str("invalid INTEGER"),
            Self::BadBitString => f.write_str("invalid BIT STRING"),
            Self::TrailingData => f.write_str("trailing data"),
        }
    }
}

impl core::error::Error for DerError {}

/// Reads consecutive TLVs out of a byte slice.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub(super) fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    /// Whether all input was consumed.
    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Reads one TLV and returns its tag and value.
    pub(super) fn read(&mut self) -> Result<(u8, &'a [u8]), DerError> {
        let (&tag, rest) = self.rest.split_first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            // High tag numbers never occur in the structures we read.
            return Err(DerError::UnexpectedTag {
                expected: 0,
                found: tag,
            });
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 2 {
                return Err(DerError::BadLength);
            }
            let (bytes, after) = rest.split_at_checked(count).ok_or(DerError::Truncated)?;
            rest = after;
            let len = bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            // Minimal form: long form only from 128, two bytes only from 256.
            let min = if count == 1 { 0x80 } else { 0x100 };
            if len < min {
                return Err(DerError::BadLength);
            }
            len
        };
        let (value, after) = rest.split_at_checked(len).ok_or(DerError::Truncated)?;
        self.rest = after;
        Ok((tag, value))
    }

    /// Reads one TLV that must have tag `expected`; returns its value.
    pub(super) fn expect(&mut self, expected: u8) -> Result<&'a [u8], DerError> {
        let (found, value) = self.read()?;
        if found == expected {
            Ok(value)
        } else {
            Err(DerError::UnexpectedTag { expected, found })
        }
    }

    /// Requires that all input was consumed.
    pub(super) fn finish(self) -> Result<(), DerError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingData)
        }
    }
}

/// Checks the value of a non-negative, minimally encoded INTEGER and returns
/// its big-endian magnitude without leading zero bytes (empty for 0).
pub(super) fn unsigned_integer(value: &[u8]) -> Result<&[u8], DerError> {
    match value {
        [] => Err(DerError::BadInteger),
        [first, ..] if first & 0x80 != 0 => Err(DerError::BadInteger),
        [0] => Ok(&[]),
        [0, tail @ ..] => match tail.first() {
            Some(b) if b & 0x80 != 0 => Ok(tail),
            _ => Err(DerError::BadInteger),
        },
        _ => Ok(value),
    }
}

/// Checks the value of a BIT STRING with no unused bits; returns its bytes.
pub(super) fn bit_string(value: &[u8]) -> Result<&[u8], DerError> {
    match value.split_first() {
        Some((0, bytes)) => Ok(bytes),
        Some(_) => Err(DerError::BadBitString),
        None => Err(DerError::Truncated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let mut r = Reader::new(&[0x02, 0x01, 0x05, 0x04, 0x81, 0x80]);
        assert_eq!(r.read(), Ok((0x02, &[0x05][..])));
        assert_eq!(r.read(), Err(DerError::Truncated));

        let mut long = [0u8; 3 + 200];
        long[0] = 0x04;
        long[1] = 0x81;
        long[2] = 200;
        let mut r = Reader::new(&long);
        assert_eq!(r.read().map(|(t, v)| (t, v.len())), Ok((0x04, 200)));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn refuses_non_minimal_and_indefinite_lengths() {
        assert_eq!(
            Reader::new(&[0x04, 0x81, 0x05]).read(),
            Err(DerError::BadLength)
        );
        assert_eq!(
            Reader::new(&[0x04, 0x82, 0x00, 0x80]).read(),
            Err(DerError::BadLength)
        );
        assert_eq!(Reader::new(&[0x30, 0x80]).read(), Err(DerError::BadLength));
        assert_eq!(
            Reader::new(&[0x04, 0x83, 1, 0, 0]).read(),
            Err(DerError::BadLength)
        );
        assert!(matches!(
            Reader::new(&[0x1f, 0x01]).read(),
            Err(DerError::UnexpectedTag { .. })
        ));
    }

    #[test]
    fn integers() {
        assert_eq!(unsigned_integer(&[0x00]), Ok(&[][..]));
        assert_eq!(unsigned_integer(&[0x00, 0x80]), Ok(&[0x80][..]));
        assert_eq!(unsigned_integer(&[0x7f, 0x00]), Ok(&[0x7f, 0x00][..]));
        assert_eq!(unsigned_integer(&[]), Err(DerError::BadInteger));
        assert_eq!(unsigned_integer(&[0x80]), Err(DerError::BadInteger));
        assert_eq!(unsigned_integer(&[0x00, 0x7f]), Err(DerError::BadInteger));
    }

    #[test]
    fn truncation_never_panics() {
        let input = [0x30, 0x82, 0x01, 0x00, 0x02, 0x81, 0x80, 0x00];
        for len in 0..=input.len() {
            let mut r = Reader::new(&input[..len]);
            while let Ok((_, v)) = r.read() {
                let _ = unsigned_integer(v);
                let _ = bit_string(v);
            }
        }
    }
}
