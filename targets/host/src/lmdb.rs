//! A small, bounded, read-only reader of an LMDB data file: enough to read
//! the reference client's store (`<DATA>/mender-store`, one file, the main
//! database only) when otalite takes a device over.
//!
//! Own code rather than a crate: the LMDB crates (`lmdb-rkv`, `heed`) wrap
//! the C liblmdb, which means a C build for every musl/ARM target, a
//! memory map of the file and the environment's lock file (opened, and
//! with `MDB_RDONLY` still written: reader slots). Taking a device over
//! needs none of that: the reference is not running, the file is small
//! (the reference's map is 1 MiB), and it must never be written. This
//! reader reads the file once into memory and walks the B+tree with every
//! offset, length and page number bounds-checked: a damaged or foreign file
//! is an [`LmdbError`], never a panic or an endless walk.
//!
//! # What is read
//!
//! | part | layout (little-endian; `W` = 8 on 64-bit builds of liblmdb, 4 on 32-bit) |
//! |---|---|
//! | page header | `pgno` (W), pad (2), flags (2), `lower` (2), `upper` (2) (an overflow page has the page count in place of `lower`/`upper`); the node offsets follow |
//! | meta pages 0 and 1 | after the page header: magic `0xBEEFC0DE` (4), version 1 (4), address (W), map size (W), the free and main databases (each: pad (4, the page size in the free one), flags (2), depth (2), branch, leaf, overflow pages, entries, root (W each)), last page (W), txn id (W); the meta with the higher txn id is current |
//! | branch node | child page (lo 2 + hi 2 + flags 2 on 64-bit), key size (2), key |
//! | leaf node | data size (lo 2 + hi 2), flags (2), key size (2), key, data; flag `F_BIGDATA` (1): the data is on overflow pages starting at the page number stored as data |
//!
//! The word size is found from where the meta magic sits. Big-endian files
//! (the magic byte-swapped) and sub-databases are refused.

use std::path::Path;

/// The largest file read (the reference maps 1 MiB; a larger file is not
/// its store).
pub const MAX_FILE_LEN: usize = 16 << 20;
/// Entries read at most from the main database.
pub const MAX_ENTRIES: usize = 4096;
/// Deepest tree walked (LMDB trees of this size are 1 to 3 deep).
const MAX_DEPTH: usize = 32;

const MAGIC: u32 = 0xBEEF_C0DE;
const VERSION: u32 = 1;
const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const P_OVERFLOW: u16 = 0x04;
const P_META: u16 = 0x08;
const P_LEAF2: u16 = 0x20;
const F_BIGDATA: u16 = 0x01;
const F_SUBDATA: u16 = 0x02;
const F_DUPDATA: u16 = 0x04;
const NODE_HEADER: usize = 8;

/// Why a file could not be read as an LMDB database.
#[derive(Debug)]
#[non_exhaustive]
pub enum LmdbError {
    /// Reading the file failed.
    Io(std::io::Error),
    /// The file is larger than [`MAX_FILE_LEN`].
    TooLarge,
    /// No meta page with the LMDB magic and version 1 (not an LMDB file,
    /// or one written on a big-endian machine).
    NotLmdb,
    /// The tree points outside the file, loops, or has a malformed page
    /// (the page number, and what is wrong).
    Damaged(u64, &'static str),
    /// The database uses a feature this reader does not read (duplicate
    /// keys, sub-databases).
    Unsupported(&'static str),
}

impl std::fmt::Display for LmdbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(error) => write!(f, "cannot read the file: {error}"),
            Self::TooLarge => write!(f, "the file is larger than {MAX_FILE_LEN} bytes"),
            Self::NotLmdb => f.write_str("not an LMDB database (no valid meta page)"),
            Self::Damaged(page, what) => write!(f, "the database is damaged: page {page}: {what}"),
            Self::Unsupported(what) => write!(f, "the database uses {what}, which is not read"),
        }
    }
}

impl std::error::Error for LmdbError {}

/// One key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A read-only view of an LMDB data file's main database.
#[derive(Debug)]
pub struct Lmdb {
    bytes: Vec<u8>,
    word: usize,
    page_size: usize,
    root: Option<u64>,
    txn_id: u64,
}

/// Little-endian integer of `len` bytes (1..=8) at `at`, if in bounds.
fn uint(bytes: &[u8], at: usize, len: usize) -> Option<u64> {
    let slice = bytes.get(at..at.checked_add(len)?)?;
    let mut value = 0u64;
    for (shift, byte) in slice.iter().enumerate() {
        value |= u64::from(*byte) << (8 * shift);
    }
    Some(value)
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    uint(bytes, at, 2).and_then(|v| u16::try_from(v).ok())
}

impl Lmdb {
    /// Reads the file at `path` (opened read-only, never written, no lock
    /// file touched) and finds the current meta page.
    ///
    /// # Errors
    /// See [`LmdbError`].
    pub fn open(path: &Path) -> Result<Self, LmdbError> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(LmdbError::Io)?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(LmdbError::Io)?;
        if bytes.len() > MAX_FILE_LEN {
            return Err(LmdbError::TooLarge);
        }
        Self::from_bytes(bytes)
    }

    /// Parses a whole data file held in memory.
    ///
    /// # Errors
    /// See [`LmdbError`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, LmdbError> {
        if bytes.len() > MAX_FILE_LEN {
            return Err(LmdbError::TooLarge);
        }
        // The magic follows the page header: at 16 on 64-bit, 12 on 32-bit.
        let word = [8usize, 4]
            .into_iter()
            .find(|word| uint(&bytes, word + 8, 4) == Some(u64::from(MAGIC)))
            .ok_or(LmdbError::NotLmdb)?;
        let meta0 = Meta::parse(&bytes, 0, word).ok_or(LmdbError::NotLmdb)?;
        let page_size = meta0.page_size;
        let meta1 = Meta::parse(&bytes, page_size, word);
        let meta = match meta1 {
            Some(meta1) if meta1.txn_id > meta0.txn_id && meta1.page_size == page_size => meta1,
            _ => meta0,
        };
        if meta.main_flags & 0x04 != 0 {
            return Err(LmdbError::Unsupported("duplicate keys (MDB_DUPSORT)"));
        }
        Ok(Self {
            bytes,
            word,
            page_size,
            root: meta.main_root,
            txn_id: meta.txn_id,
        })
    }

    /// The current meta page's transaction id.
    pub fn txn_id(&self) -> u64 {
        self.txn_id
    }

    /// Whether the file was written by a 32-bit build of liblmdb.
    pub fn is_32_bit(&self) -> bool {
        self.word == 4
    }

    fn page(&self, number: u64) -> Result<&[u8], LmdbError> {
        let start = usize::try_from(number)
            .ok()
            .and_then(|n| n.checked_mul(self.page_size))
            .ok_or(LmdbError::Damaged(number, "page number out of range"))?;
        let end = start
            .checked_add(self.page_size)
            .ok_or(LmdbError::Damaged(number, "page number out of range"))?;
        self.bytes
            .get(start..end)
            .ok_or(LmdbError::Damaged(number, "page past the end of the file"))
    }

    fn header_len(&self) -> usize {
        self.word + 8
    }

    /// The node offsets of a branch or leaf page.
    fn nodes<'p>(
        &self,
        number: u64,
        page: &'p [u8],
    ) -> Result<impl Iterator<Item = Option<usize>> + 'p, LmdbError> {
        let header = self.header_len();
        let lower = u16_at(page, self.word + 4).map_or(0, usize::from);
        let upper = u16_at(page, self.word + 6).map_or(0, usize::from);
        if lower < header || lower > upper || upper > page.len() || !(lower - header).is_multiple_of(2) {
            return Err(LmdbError::Damaged(number, "bad free-space bounds"));
        }
        let count = (lower - header) / 2;
        Ok((0..count).map(move |i| u16_at(page, header + 2 * i).map(usize::from)))
    }

    /// Every key and value of the main database, in key order.
    ///
    /// # Errors
    /// See [`LmdbError`].
    pub fn entries(&self) -> Result<Vec<Entry>, LmdbError> {
        let mut out = Vec::new();
        let Some(root) = self.root else {
            return Ok(out);
        };
        // Depth-first, bounded by depth (so loops end) and by entries.
        let mut stack: Vec<(u64, usize)> = vec![(root, 0)];
        let mut visited = 0usize;
        let max_pages = self.bytes.len() / self.page_size.max(1);
        while let Some((number, depth)) = stack.pop() {
            visited = visited.saturating_add(1);
            if depth > MAX_DEPTH || visited > max_pages.saturating_add(1) {
                return Err(LmdbError::Damaged(number, "the tree loops or is too deep"));
            }
            if number < 2 {
                return Err(LmdbError::Damaged(
                    number,
                    "a tree page points at a meta page",
                ));
            }
            let page = self.page(number)?;
            let flags = u16_at(page, self.word + 2).unwrap_or(0);
            if flags & (P_META | P_OVERFLOW) != 0 {
                return Err(LmdbError::Damaged(number, "not a branch or leaf page"));
            }
            if flags & P_LEAF2 != 0 {
                return Err(LmdbError::Unsupported("fixed-size keys (MDB_DUPFIXED)"));
            }
            if flags & P_BRANCH != 0 {
                let mut children = Vec::new();
                for offset in self.nodes(number, page)? {
                    let offset = offset.ok_or(LmdbError::Damaged(number, "bad node offset"))?;
                    let low = uint(page, offset, 4)
                        .ok_or(LmdbError::Damaged(number, "node past the page"))?;
                    let high = if self.word == 8 {
                        uint(page, offset + 4, 2).unwrap_or(0)
                    } else {
                        0
                    };
                    children.push((low | (high << 32), depth.saturating_add(1)));
                }
                // Pushed in reverse, so the leftmost child is walked first.
                stack.extend(children.into_iter().rev());
            } else if flags & P_LEAF != 0 {
                for offset in self.nodes(number, page)? {
                    let offset = offset.ok_or(LmdbError::Damaged(number, "bad node offset"))?;
                    out.push(self.leaf_node(number, page, offset)?);
                    if out.len() > MAX_ENTRIES {
                        return Err(LmdbError::Unsupported(
                            "more entries than a client store has",
                        ));
                    }
                }
            } else {
                return Err(LmdbError::Damaged(number, "unknown page type"));
            }
        }
        // A B+tree walked left to right yields sorted keys; anything else
        // is damage.
        if out.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
            return Err(LmdbError::Damaged(root, "keys out of order"));
        }
        Ok(out)
    }

    fn leaf_node(
        &self,
        number: u64,
        page: &[u8],
        offset: usize,
    ) -> Result<Entry, LmdbError> {
        let bad = |what| LmdbError::Damaged(number, what);
        let size = uint(page, offset, 4).ok_or(bad("node past the page"))?;
        let flags = u16_at(page, offset + 4).ok_or(bad("node past the page"))?;
        let key_len = u16_at(page, offset + 6).map_or(0, usize::from);
        let key_at = offset + NODE_HEADER;
        let key = page
            .get(key_at..key_at + key_len)
            .ok_or(bad("key past the page"))?;
        if flags & (F_SUBDATA | F_DUPDATA) != 0 {
            return Err(LmdbError::Unsupported("sub-databases or duplicate keys"));
        }
        let size = usize::try_from(size).map_err(|_| bad("value too large"))?;
        let data_at = key_at + key_len;
        let value = if flags & F_BIGDATA != 0 {
            let first =
                uint(page, data_at, self.word).ok_or(bad("overflow page number past the page"))?;
            self.overflow(first, size)?
        } else {
            page.get(data_at..data_at.checked_add(size).ok_or(bad("value too large"))?)
                .ok_or(bad("value past the page"))?
                .to_vec()
        };
        Ok((key.to_vec(), value))
    }

    /// A value of `size` bytes on the overflow pages starting at `first`.
    fn overflow(&self, first: u64, size: usize) -> Result<Vec<u8>, LmdbError> {
        let bad = |what| LmdbError::Damaged(first, what);
        let page = self.page(first)?;
        let flags = u16_at(page, self.word + 2).unwrap_or(0);
        if flags & P_OVERFLOW == 0 || first < 2 {
            return Err(bad("a big value does not point at an overflow page"));
        }
        let pages = uint(page, self.word + 4, 4).ok_or(bad("truncated overflow page"))?;
        let start = usize::try_from(first)
            .ok()
            .and_then(|n| n.checked_mul(self.page_size))
            .and_then(|n| n.checked_add(self.header_len()))
            .ok_or(bad("page number out of range"))?;
        let span = usize::try_from(pages)
            .ok()
            .and_then(|p| p.checked_mul(self.page_size))
            .ok_or(bad("overflow page count out of range"))?;
        if size.saturating_add(self.header_len()) > span {
            return Err(bad("the value is larger than its overflow pages"));
        }
        let end = start.checked_add(size).ok_or(bad("value too large"))?;
        self.bytes
            .get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or(bad("overflow pages past the end of the file"))
    }

    /// The value stored under `key` in the main database.
    ///
    /// # Errors
    /// See [`LmdbError`].
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LmdbError> {
        Ok(self
            .entries()?
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v))
    }
}

/// One meta page.
struct Meta {
    page_size: usize,
    main_flags: u16,
    main_root: Option<u64>,
    txn_id: u64,
}

impl Meta {
    fn parse(bytes: &[u8], at: usize, word: usize) -> Option<Self> {
        let flags = u16_at(bytes, at.checked_add(word + 2)?)?;
        let base = at.checked_add(word + 8)?;
        if flags & P_META == 0
            || uint(bytes, base, 4)? != u64::from(MAGIC)
            || uint(bytes, base + 4, 4)? != u64::from(VERSION)
        {
            return None;
        }
        // magic, version, address, map size, then two databases.
        let dbs = base + 8 + 2 * word;
        let db_len = 8 + 5 * word;
        let page_size = usize::try_from(uint(bytes, dbs, 4)?).ok()?;
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return None;
        }
        let main = dbs + db_len;
        let main_flags = u16_at(bytes, main + 4)?;
        let root = uint(bytes, main + 8 + 4 * word, word)?;
        let invalid = if word == 8 {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        let txn_id = uint(bytes, main + db_len + word, word)?;
        Some(Self {
            page_size,
            main_flags,
            main_root: (root != invalid).then_some(root),
            txn_id,
        })
    }
}
