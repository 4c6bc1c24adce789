//! JSON output into a caller buffer, escaped exactly as Go's
//! `encoding/json` does, with the size needed reported when the buffer is
//! short.

/// Why a message could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// The output buffer is too small; the message needs `required` bytes.
    BufferTooSmall {
        /// Bytes needed for the whole message.
        required: usize,
    },
    /// There is nothing to send (no identity attribute, no log message).
    Empty,
}

impl core::fmt::Display for WriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BufferTooSmall { required } => {
                write!(f, "the message needs a buffer of {required} bytes")
            }
            Self::Empty => f.write_str("the message would be empty"),
        }
    }
}

impl core::error::Error for WriteError {}

/// Appends to a caller buffer. Past the end it keeps counting without
/// writing, so a short buffer yields the exact size needed in one pass.
pub(crate) struct JsonWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    /// When true, everything emitted is itself escaped as the content of a
    /// JSON string (a JSON document embedded in a string, like `id_data`).
    embedded: bool,
}

/// Hex digit of the low four bits of `value`.
pub(crate) fn hex_digit(value: u32, upper: bool) -> u8 {
    let nibble = (value & 0xf) as u8;
    match (nibble, upper) {
        (0..=9, _) => b'0' + nibble,
        (_, false) => b'a' + nibble - 10,
        (_, true) => b'A' + nibble - 10,
    }
}

impl<'a> JsonWriter<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            len: 0,
            embedded: false,
        }
    }

    /// Bytes emitted so far (may exceed the buffer).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Starts or stops embedding: while on, emitted JSON is escaped as the
    /// content of a string (the caller writes the surrounding quotes).
    pub(crate) fn set_embedded(&mut self, embedded: bool) {
        self.embedded = embedded;
    }

    fn put(&mut self, bytes: &[u8]) {
        let end = self.len.saturating_add(bytes.len());
        if let Some(slot) = self.buf.get_mut(self.len..end) {
            slot.copy_from_slice(bytes);
        }
        self.len = end;
    }

    /// Emits JSON syntax (braces, commas, literals, already valid text).
    pub(crate) fn raw(&mut self, text: &str) {
        if self.embedded {
            self.escape_content(text);
        } else {
            self.put(text.as_bytes());
        }
    }

    /// Emits a quoted, escaped JSON string.
    pub(crate) fn string(&mut self, text: &str) {
        self.raw("\"");
        if self.embedded {
            // Escape once for the inner document, then once more for the
            // outer string, one escape sequence at a time (no buffer).
            let mut start = 0usize;
            for (index, ch) in text.char_indices() {
                let mut scratch = [0u8; 6];
                if let Some(escape) = escape_of(ch, &mut scratch) {
                    self.escape_content(text.get(start..index).unwrap_or(""));
                    self.escape_content(escape);
                    start = index + ch.len_utf8();
                }
            }
            self.escape_content(text.get(start..).unwrap_or(""));
        } else {
            self.escape_content(text);
        }
        self.raw("\"");
    }

    /// Emits `text` escaped as the content of a JSON string (Go rules:
    /// `\"`, `\\`, `\n`, `\r`, `\t`, other controls and `<`, `>`, `&`,
    /// U+2028, U+2029 as `\u00XX` / `\u20XX`).
    fn escape_content(&mut self, text: &str) {
        let mut start = 0usize;
        for (index, ch) in text.char_indices() {
            let mut scratch = [0u8; 6];
            if let Some(escape) = escape_of(ch, &mut scratch) {
                self.put(text.get(start..index).unwrap_or("").as_bytes());
                self.put(escape.as_bytes());
                start = index + ch.len_utf8();
            }
        }
        self.put(text.get(start..).unwrap_or("").as_bytes());
    }

    /// The body length, or `BufferTooSmall` with the exact size needed.
    pub(crate) fn finish(self) -> Result<usize, WriteError> {
        if self.len > self.buf.len() {
            Err(WriteError::BufferTooSmall { required: self.len })
        } else {
            Ok(self.len)
        }
    }
}

/// The escape sequence Go's `encoding/json` (with HTML escaping, its
/// default) writes for `ch`, or `None` when `ch` is written as is.
fn escape_of(ch: char, scratch: &mut [u8; 6]) -> Option<&str> {
    let code = ch as u32;
    match ch {
        '"' => Some("\\\""),
        '\\' => Some("\\\\"),
        '\n' => Some("\\n"),
        '\r' => Some("\\r"),
        '\t' => Some("\\t"),
        '\u{0}'..='\u{1f}' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
            *scratch = [
                b'\\',
                b'u',
                hex_digit(code >> 12, false),
                hex_digit(code >> 8, false),
                hex_digit(code >> 4, false),
                hex_digit(code, false),
            ];
            core::str::from_utf8(scratch).ok()
        }
        _ => None,
    }
}

/// Emits one attribute value as Go serialises a `key=value` key: a string
/// when the key appeared once, an array of strings otherwise.
pub(crate) fn values<'v>(
    writer: &mut JsonWriter<'_>,
    values: impl Iterator<Item = &'v str> + Clone,
) {
    let mut count = values.clone().take(2).count();
    if count == 1 {
        for value in values {
            writer.string(value);
        }
        return;
    }
    writer.raw("[");
    for value in values {
        if count == 0 {
            writer.raw(",");
        }
        count = 0;
        writer.string(value);
    }
    writer.raw("]");
}

/// Bytes `text` takes once escaped as string content.
pub(crate) fn escaped_len(text: &str) -> usize {
    let mut counter = JsonWriter::new(&mut []);
    counter.escape_content(text);
    counter.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl FnOnce(&mut JsonWriter<'_>)) -> std::string::String {
        let mut buf = [0u8; 256];
        let mut w = JsonWriter::new(&mut buf);
        f(&mut w);
        let len = w.finish().unwrap();
        std::string::String::from_utf8(buf[..len].to_vec()).unwrap()
    }

    #[test]
    fn escapes_like_go() {
        assert_eq!(
            written(|w| w.string("a\"b\\c\nd\re\tf\u{1}<>&\u{2028}é")),
            r#""a\"b\\c\nd\re\tf\u0001\u003c\u003e\u0026\u2028é""#
        );
        assert_eq!(escaped_len("a\"<"), 1 + 2 + 6);
    }

    #[test]
    fn embeds() {
        let text = written(|w| {
            w.raw("\"");
            w.set_embedded(true);
            w.raw("{");
            w.string("k\"<");
            w.raw(":");
            w.string("v\n");
            w.raw("}");
            w.set_embedded(false);
            w.raw("\"");
        });
        assert_eq!(text, r#""{\"k\\\"\\u003c\":\"v\\n\"}""#);
    }

    #[test]
    fn reports_required() {
        let mut buf = [0u8; 3];
        let mut w = JsonWriter::new(&mut buf);
        w.string("hello");
        assert_eq!(w.finish(), Err(WriteError::BufferTooSmall { required: 7 }));
    }
}
