//! A small JSON pull tokenizer over a complete, fixed-size buffer, shared by
//! the artifact metadata files (`version`, `header-info`, `type-info`,
//! `meta-data`) and the server's deployment answers
//! ([`crate::protocol::deployments`]).
//!
//! Hand-written rather than `serde-json-core` because the artifact needs
//! objects with arbitrary keys (provides), values that are a string *or* an
//! array (depends), and strict rejection of unknown keys.

use heapless::String;

/// Deepest nesting [`Json::skip_value`] accepts.
const MAX_DEPTH: u32 = 16;

/// A JSON syntax or capacity error at a byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct JsonError {
    pub(crate) offset: usize,
    pub(crate) kind: JsonErrorKind,
}

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JsonErrorKind {
    /// Not valid JSON (or not the expected type).
    Syntax,
    /// A string is longer than its fixed capacity.
    Capacity,
}

/// Pull tokenizer.
pub(crate) struct Json<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Json<'a> {
    pub(crate) fn new(text: &'a [u8]) -> Self {
        Self { text, pos: 0 }
    }

    pub(crate) fn error(&self, kind: JsonErrorKind) -> JsonError {
        JsonError {
            offset: self.pos,
            kind,
        }
    }

    fn syntax(&self) -> JsonError {
        self.error(JsonErrorKind::Syntax)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Next non-blank byte, not consumed.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.text.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    /// Only blanks remain.
    pub(crate) fn end(&mut self) -> Result<(), JsonError> {
        if self.peek().is_none() {
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    /// Starts an object: consumes `{`.
    pub(crate) fn begin_object(&mut self) -> Result<(), JsonError> {
        self.expect(b'{')
    }

    /// Next key of an object (consumes `,`/`:`), or `None` at `}`.
    /// `first` is true for the first call after [`Self::begin_object`].
    pub(crate) fn next_key<const N: usize>(
        &mut self,
        first: &mut bool,
    ) -> Result<Option<String<N>>, JsonError> {
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(None);
        }
        if !*first {
            self.expect(b',')?;
        }
        *first = false;
        let key = self.string::<N>()?;
        self.expect(b':')?;
        Ok(Some(key))
    }

    /// Like [`Self::next_key`], but a key longer than `N` is consumed and
    /// given as `Some(None)`.
    pub(crate) fn next_key_capped<const N: usize>(
        &mut self,
        first: &mut bool,
    ) -> Result<Option<Option<String<N>>>, JsonError> {
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(None);
        }
        if !*first {
            self.expect(b',')?;
        }
        *first = false;
        let key = self.string_capped::<N>()?;
        self.expect(b':')?;
        Ok(Some(key))
    }

    /// A string, or `None` (consumed) when it is longer than `N`.
    pub(crate) fn string_capped<const N: usize>(&mut self) -> Result<Option<String<N>>, JsonError> {
        let mut out = String::new();
        let mut fits = true;
        self.string_with(|c| {
            if fits && out.push(c).is_err() {
                fits = false;
            }
            true
        })?;
        Ok(fits.then_some(out))
    }

    /// Starts an array: consumes `[`.
    pub(crate) fn begin_array(&mut self) -> Result<(), JsonError> {
        self.expect(b'[')
    }

    /// True if another array element follows (consumes `,`), false at `]`.
    pub(crate) fn next_element(&mut self, first: &mut bool) -> Result<bool, JsonError> {
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(false);
        }
        if !*first {
            self.expect(b',')?;
        }
        *first = false;
        Ok(true)
    }

    /// Consumes `null` if it is next.
    pub(crate) fn null(&mut self) -> bool {
        if self.peek() == Some(b'n')
            && self.text.get(self.pos..self.pos + 4) == Some(b"null".as_slice())
        {
            self.pos += 4;
            true
        } else {
            false
        }
    }

    /// A non-negative integer.
    pub(crate) fn unsigned(&mut self) -> Result<u64, JsonError> {
        self.ws();
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(&d @ b'0'..=b'9') = self.text.get(self.pos) {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .ok_or(self.syntax())?;
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.syntax());
        }
        if let Some(b'.' | b'e' | b'E') = self.text.get(self.pos) {
            return Err(self.syntax());
        }
        Ok(value)
    }

    /// A signed integer as Go decodes one into an `int`: `-?(0|[1-9][0-9]*)`
    /// within `i64`; a fraction or an exponent is an error.
    pub(crate) fn integer(&mut self) -> Result<i64, JsonError> {
        self.ws();
        let start = self.pos;
        let negative = self.text.get(self.pos) == Some(&b'-');
        if negative {
            self.pos += 1;
        }
        let digits = self.pos;
        let mut value: i64 = 0;
        while let Some(&d @ b'0'..=b'9') = self.text.get(self.pos) {
            let digit = i64::from(d - b'0');
            value = value
                .checked_mul(10)
                .and_then(|v| {
                    if negative {
                        v.checked_sub(digit)
                    } else {
                        v.checked_add(digit)
                    }
                })
                .ok_or(JsonError {
                    offset: start,
                    kind: JsonErrorKind::Syntax,
                })?;
            self.pos += 1;
        }
        let count = self.pos - digits;
        let leading_zero = count > 1 && self.text.get(digits) == Some(&b'0');
        if count == 0 || leading_zero {
            return Err(JsonError {
                offset: start,
                kind: JsonErrorKind::Syntax,
            });
        }
        if let Some(b'.' | b'e' | b'E') = self.text.get(self.pos) {
            return Err(JsonError {
                offset: start,
                kind: JsonErrorKind::Syntax,
            });
        }
        Ok(value)
    }

    /// A string, unescaped into a fixed-capacity `String`.
    pub(crate) fn string<const N: usize>(&mut self) -> Result<String<N>, JsonError> {
        let mut out = String::new();
        self.string_with(|c| out.push(c).is_ok())?;
        Ok(out)
    }

    /// A string whose characters go to `sink` (false = capacity error).
    fn string_with(&mut self, mut sink: impl FnMut(char) -> bool) -> Result<(), JsonError> {
        self.expect(b'"')?;
        let rest = self.text.get(self.pos..).unwrap_or(&[]);
        // Validate UTF-8 up to the closing quote first, then walk chars.
        let mut end = 0usize;
        let mut escaped = false;
        loop {
            let &byte = rest.get(end).ok_or(self.syntax())?;
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                break;
            } else if byte < 0x20 {
                return Err(JsonError {
                    offset: self.pos + end,
                    kind: JsonErrorKind::Syntax,
                });
            }
            end += 1;
        }
        let body =
            core::str::from_utf8(rest.get(..end).unwrap_or(&[])).map_err(|_| self.syntax())?;
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            let c = if c == '\\' {
                match chars.next() {
                    Some('"') => '"',
                    Some('\\') => '\\',
                    Some('/') => '/',
                    Some('b') => '\u{8}',
                    Some('f') => '\u{c}',
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('t') => '\t',
                    Some('u') => {
                        let hi = hex4(&mut chars).ok_or(self.syntax())?;
                        let code = if (0xD800..0xDC00).contains(&hi) {
                            if chars.next() != Some('\\') || chars.next() != Some('u') {
                                return Err(self.syntax());
                            }
                            let lo = hex4(&mut chars).ok_or(self.syntax())?;
                            if !(0xDC00..0xE000).contains(&lo) {
                                return Err(self.syntax());
                            }
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        } else {
                            hi
                        };
                        char::from_u32(code).ok_or(self.syntax())?
                    }
                    _ => return Err(self.syntax()),
                }
            } else {
                c
            };
            if !sink(c) {
                return Err(self.error(JsonErrorKind::Capacity));
            }
        }
        self.pos += end + 1;
        Ok(())
    }

    /// Skips any value, checking its syntax.
    pub(crate) fn skip_value(&mut self) -> Result<(), JsonError> {
        self.skip_depth(0)
    }

    fn skip_depth(&mut self, depth: u32) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.syntax());
        }
        match self.peek().ok_or(self.syntax())? {
            b'{' => {
                self.begin_object()?;
                let mut first = true;
                while self.next_key_skip(&mut first)? {
                    self.skip_depth(depth + 1)?;
                }
                Ok(())
            }
            b'[' => {
                self.begin_array()?;
                let mut first = true;
                while self.next_element(&mut first)? {
                    self.skip_depth(depth + 1)?;
                }
                Ok(())
            }
            b'"' => self.string_with(|_| true),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.syntax()),
        }
    }

    fn next_key_skip(&mut self, first: &mut bool) -> Result<bool, JsonError> {
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(false);
        }
        if !*first {
            self.expect(b',')?;
        }
        *first = false;
        self.string_with(|_| true)?;
        self.expect(b':')?;
        Ok(true)
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.text.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn number(&mut self) -> Result<(), JsonError> {
        let start = self.pos;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.text.get(self.pos) {
            self.pos += 1;
        }
        let text = self.text.get(start..self.pos).unwrap_or(&[]);
        if !is_number(text) {
            return Err(JsonError {
                offset: start,
                kind: JsonErrorKind::Syntax,
            });
        }
        Ok(())
    }
}

/// The loose JSON number check: what `str::parse::<f64>` accepts among
/// `[-+.eE0-9]*` not starting with `+` or `.` (`-`? digits, `.` digits,
/// at least one digit before the exponent, `e`/`E` sign? digits). Written
/// out so the binary needs no float parser (about 20 KiB with its
/// power-of-five table); the test checks it against `parse::<f64>`.
fn is_number(text: &[u8]) -> bool {
    fn digits(text: &[u8]) -> (usize, &[u8]) {
        let count = text.iter().take_while(|b| b.is_ascii_digit()).count();
        (count, text.get(count..).unwrap_or(&[]))
    }
    let rest = text.strip_prefix(b"-").unwrap_or(text);
    let (integer, rest) = digits(rest);
    let (fraction, rest) = match rest.strip_prefix(b".") {
        Some(after) => digits(after),
        None => (0, rest),
    };
    if integer == 0 && fraction == 0 || text.first() == Some(&b'.') {
        return false;
    }
    match rest.split_first() {
        None => true,
        Some((b'e' | b'E', exponent)) => {
            let exponent = match exponent.split_first() {
                Some((b'-' | b'+', after)) => after,
                _ => exponent,
            };
            let (count, rest) = digits(exponent);
            count > 0 && rest.is_empty()
        }
        Some(_) => false,
    }
}

fn hex4(chars: &mut core::str::Chars<'_>) -> Option<u32> {
    let mut value = 0u32;
    for _ in 0..4 {
        value = value * 16 + chars.next()?.to_digit(16)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `is_number` accepts exactly what the float parser it replaces
    /// accepted, on every string of up to 6 characters over `-+.e0`.
    #[test]
    fn number_check_matches_the_float_parser() {
        let alphabet = [b'-', b'+', b'.', b'e', b'0', b'E', b'7'];
        let mut text = [0u8; 6];
        for len in 0..=6usize {
            let base = if len >= 5 { 5 } else { alphabet.len() };
            let total = base.pow(len as u32);
            for mut index in 0..total {
                for slot in text.iter_mut().take(len) {
                    *slot = alphabet[index % base];
                    index /= base;
                }
                let candidate = core::str::from_utf8(&text[..len]).unwrap();
                let expected = candidate.parse::<f64>().is_ok()
                    && !candidate.starts_with('+')
                    && !candidate.starts_with('.');
                assert_eq!(is_number(&text[..len]), expected, "{candidate:?}");
            }
        }
        assert!(is_number(b"-12.5E+07"));
        assert!(!is_number(b"1e5e5"));
    }

    #[test]
    fn tokenizes() {
        let mut j =
            Json::new(br#" {"a\u00e9\n": ["x", null, 1.5e3, {"b": [true, false]}], "c": "d"} "#);
        j.begin_object().unwrap();
        let mut first = true;
        let key: String<8> = j.next_key(&mut first).unwrap().unwrap();
        assert_eq!(key.as_str(), "a\u{e9}\n");
        j.skip_value().unwrap();
        let key: String<8> = j.next_key(&mut first).unwrap().unwrap();
        assert_eq!(key.as_str(), "c");
        assert_eq!(j.string::<4>().unwrap().as_str(), "d");
        assert!(j.next_key::<8>(&mut first).unwrap().is_none());
        j.end().unwrap();
    }

    #[test]
    fn refuses() {
        assert!(Json::new(b"{").skip_value().is_err());
        assert!(Json::new(b"[1,]").skip_value().is_err());
        assert!(Json::new(br#""abc"#).skip_value().is_err());
        let mut deep = [b'['; 64];
        deep[63] = b']';
        assert!(Json::new(&deep).skip_value().is_err());
        assert_eq!(
            Json::new(br#""abcdef""#).string::<3>().unwrap_err().kind,
            JsonErrorKind::Capacity
        );
    }
}
