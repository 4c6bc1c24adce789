//! The `key=value` output of the identity and inventory scripts, read
//! without a heap.
//!
//! | rule | reference (Go `utils/kvparser.go`) |
//! |---|---|
//! | line end | `\n`; one `\r` before it is dropped (Go's `bufio.ScanLines`) |
//! | empty line | skipped |
//! | split | at the **first** `=`; the value may contain `=` and be empty |
//! | line without `=` | error, with its 1-based line number |
//! | trimming, comments, unescaping | none |
//! | repeated key | kept: several values (an array in JSON) |
//!
//! [`KeyValueText`] is the checked view; [`Attributes`] groups one or more
//! checked texts by key, in sorted key order, the way Go serialises a map.

/// Why script output was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyValueError {
    /// This 1-based line is not empty and has no `=`.
    MissingEquals {
        /// Line number.
        line: usize,
    },
    /// The output is not UTF-8.
    NotUtf8,
}

impl core::fmt::Display for KeyValueError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::MissingEquals { line } => write!(f, "line {line} is not of the form key=value"),
            Self::NotUtf8 => f.write_str("the output is not valid UTF-8"),
        }
    }
}

impl core::error::Error for KeyValueError {}

/// Iterates the pairs of unchecked text; yields the error of the first bad
/// line, then stops.
#[derive(Clone, Debug)]
pub struct Pairs<'a> {
    rest: Option<&'a str>,
    line: usize,
}

/// Pairs of `text`, in order.
pub fn pairs(text: &str) -> Pairs<'_> {
    Pairs {
        rest: Some(text),
        line: 0,
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<(&'a str, &'a str), KeyValueError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest?;
            let (line, after) = match rest.split_once('\n') {
                Some((line, after)) => (line, Some(after)),
                None => (rest, None),
            };
            self.rest = after.filter(|_| !rest.is_empty());
            if rest.is_empty() {
                return None;
            }
            self.line = self.line.saturating_add(1);
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            return match line.split_once('=') {
                Some(pair) => Some(Ok(pair)),
                None => {
                    self.rest = None;
                    Some(Err(KeyValueError::MissingEquals { line: self.line }))
                }
            };
        }
    }
}

/// Script output whose every line was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyValueText<'a> {
    text: &'a str,
}

impl<'a> KeyValueText<'a> {
    /// Checks every line of `bytes`.
    ///
    /// # Errors
    /// Not UTF-8, or the first line without `=`.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, KeyValueError> {
        let text = core::str::from_utf8(bytes).map_err(|_| KeyValueError::NotUtf8)?;
        for pair in pairs(text) {
            pair?;
        }
        Ok(Self { text })
    }

    /// The pairs in output order.
    pub fn pairs(&self) -> impl Iterator<Item = (&'a str, &'a str)> + Clone + 'a {
        pairs(self.text).filter_map(Result::ok)
    }

    /// True when the text holds no pair.
    pub fn is_empty(&self) -> bool {
        self.pairs().next().is_none()
    }
}

/// The pairs of several checked texts (inventory scripts in run order),
/// grouped by key.
///
/// Grouping uses no memory: each step scans the texts again, so the cost
/// is O(keys × lines). Script output is small (the host caps it).
#[derive(Clone, Copy, Debug)]
pub struct Attributes<'a> {
    texts: &'a [KeyValueText<'a>],
}

impl<'a> Attributes<'a> {
    /// Groups the pairs of `texts`.
    pub fn new(texts: &'a [KeyValueText<'a>]) -> Self {
        Self { texts }
    }

    fn all(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.texts.iter().flat_map(KeyValueText::pairs)
    }

    /// The smallest key (byte order) greater than `after`.
    pub fn next_key(&self, after: Option<&str>) -> Option<&'a str> {
        self.all()
            .map(|(key, _)| key)
            .filter(|key| after.is_none_or(|after| *key > after))
            .min()
    }

    /// The keys in sorted order, each once.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + 'a {
        let this = *self;
        core::iter::successors(this.next_key(None), move |key| this.next_key(Some(key)))
    }

    /// The values of `key` in output order.
    pub fn values(&self, key: &'a str) -> impl Iterator<Item = &'a str> + Clone + 'a {
        let texts = self.texts;
        texts
            .iter()
            .flat_map(KeyValueText::pairs)
            .filter(move |(k, _)| *k == key)
            .map(|(_, value)| value)
    }

    /// True when there is no pair at all.
    pub fn is_empty(&self) -> bool {
        self.all().next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn splits_like_go() {
        let all: Vec<_> = pairs("a=1\n\nb==2\r\nc=\n=d\n a = b ").collect();
        assert_eq!(
            all,
            [
                Ok(("a", "1")),
                Ok(("b", "=2")),
                Ok(("c", "")),
                Ok(("", "d")),
                Ok((" a ", " b ")),
            ]
        );
        let bad: Vec<_> = pairs("a=1\n\nnope\nb=2").collect();
        assert_eq!(
            bad,
            [
                Ok(("a", "1")),
                Err(KeyValueError::MissingEquals { line: 3 })
            ]
        );
        assert_eq!(pairs("").count(), 0);
        assert_eq!(pairs("\n\n").count(), 0);
        assert_eq!(
            KeyValueText::new_checked(b"x=1\ny"),
            Err(KeyValueError::MissingEquals { line: 2 })
        );
        assert_eq!(
            KeyValueText::new_checked(b"\xff=1"),
            Err(KeyValueError::NotUtf8)
        );
    }

    #[test]
    fn groups_sorted() {
        let one = KeyValueText::new_checked(b"mac=1\nb=x\nmac=2\n").unwrap();
        let two = KeyValueText::new_checked(b"a=y\nmac=3\n").unwrap();
        let texts = [one, two];
        let attributes = Attributes::new(&texts);
        let keys: Vec<_> = attributes.keys().collect();
        assert_eq!(keys, ["a", "b", "mac"]);
        let macs: Vec<_> = attributes.values("mac").collect();
        assert_eq!(macs, ["1", "2", "3"]);
        assert!(Attributes::new(&[]).is_empty());
    }
}
