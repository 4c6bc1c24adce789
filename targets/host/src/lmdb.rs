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
        // Both meta pages must be valid, as liblmdb itself requires.
        let meta1 = Meta::parse(&bytes, page_size, word)
            .filter(|meta1| meta1.page_size == page_size)
            .ok_or(LmdbError::Damaged(
                1,
                "the second meta page is missing or invalid",
            ))?;
        let meta = if meta1.txn_id > meta0.txn_id {
            meta1
        } else {
            meta0
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
        if lower < header
            || lower > upper
            || upper > page.len()
            || !(lower - header).is_multiple_of(2)
        {
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

    fn leaf_node(&self, number: u64, page: &[u8], offset: usize) -> Result<Entry, LmdbError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/lmdb")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn keys(db: &Lmdb) -> Vec<String> {
        db.entries()
            .unwrap()
            .into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect()
    }

    const FIXTURES: [&str; 5] = [
        "standalone-installed.mdb",
        "committed.mdb",
        "daemon-reboot.mdb",
        "daemon-rollback-reboot.mdb",
        "big.mdb",
    ];

    /// The real LMDB's `mdb_dump` (Debian's lmdb-utils, installed by
    /// `.ci/setup`) on a copy of each fixture: our reader sees exactly the
    /// keys and values the C library sees, in the same order.
    #[test]
    fn every_fixture_reads_as_mdb_dump_reads_it() {
        fn unhex(line: &str) -> Vec<u8> {
            (0..line.len() / 2)
                .map(|i| u8::from_str_radix(&line[2 * i..2 * i + 2], 16).unwrap())
                .collect()
        }
        for name in FIXTURES {
            // mdb_dump opens the environment and may create a lock file:
            // work on a copy in a directory of our own.
            let dir = tempfile::tempdir().unwrap();
            let copy = dir.path().join(name);
            std::fs::write(&copy, fixture(name)).unwrap();
            let out = std::process::Command::new("mdb_dump")
                .arg("-n")
                .arg(&copy)
                .output()
                .expect("mdb_dump (package lmdb-utils; run `bash .ci/setup`)");
            assert!(out.status.success(), "mdb_dump {name}: {out:?}");
            let text = String::from_utf8(out.stdout).unwrap();
            let data = text
                .split_once("HEADER=END\n")
                .and_then(|(_, rest)| rest.split_once("DATA=END"))
                .map(|(data, _)| data)
                .unwrap_or_else(|| panic!("mdb_dump {name}: unexpected output {text}"));
            let lines: Vec<Vec<u8>> = data.lines().map(|l| unhex(l.trim())).collect();
            let expected: Vec<Entry> = lines
                .chunks(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect();
            assert!(!expected.is_empty(), "mdb_dump {name}: no entries");
            let db = Lmdb::from_bytes(fixture(name)).unwrap();
            assert_eq!(db.entries().unwrap(), expected, "{name}");
        }
    }

    #[test]
    fn reads_the_stores_mender_wrote() {
        let db = Lmdb::from_bytes(fixture("standalone-installed.mdb")).unwrap();
        assert!(!db.is_32_bit());
        assert_eq!(keys(&db), ["standalone-state"]);
        let value = db.get(b"standalone-state").unwrap().unwrap();
        assert!(value.starts_with(br#"{"Version":1,"ArtifactName":"release-2""#));

        let db = Lmdb::from_bytes(fixture("committed.mdb")).unwrap();
        assert_eq!(keys(&db), ["artifact-name", "artifact-provides"]);
        assert_eq!(db.get(b"artifact-name").unwrap().unwrap(), b"release-2");
        assert_eq!(db.get(b"missing").unwrap(), None);

        let db = Lmdb::from_bytes(fixture("daemon-reboot.mdb")).unwrap();
        assert_eq!(keys(&db), ["state"]);
        let state = db.get(b"state").unwrap().unwrap();
        assert!(state.starts_with(br#"{"Version":2,"Name":"reboot","#));
    }

    /// `big.mdb` was made by `mdb_load` (liblmdb 0.9) from this content:
    /// a two-level tree (branch and leaves) and a value on overflow pages.
    #[test]
    fn reads_branches_and_overflow_pages() {
        let db = Lmdb::from_bytes(fixture("big.mdb")).unwrap();
        let mut expected: Vec<Entry> = (0..300)
            .map(|i| {
                (
                    format!("key-{i:03}").into_bytes(),
                    format!("value-{i}-").repeat(i % 7 + 1).into_bytes(),
                )
            })
            .collect();
        expected.push((
            b"big".to_vec(),
            (0..10_000u32).map(|i| ((i * 7) % 256) as u8).collect(),
        ));
        expected.sort();
        assert_eq!(db.entries().unwrap(), expected);
    }

    /// Truncated and bit-flipped files never panic or loop; a file cut
    /// before its tree is an error, never an empty store.
    #[test]
    fn damaged_files_are_errors_not_panics() {
        for name in FIXTURES {
            let bytes = fixture(name);
            for cut in (0..bytes.len())
                .step_by(97)
                .chain([4096, 8192, bytes.len() - 1])
            {
                if let Ok(db) = Lmdb::from_bytes(bytes[..cut].to_vec()) {
                    let _ = db.entries();
                }
            }
            let step = if bytes.len() > 20_000 { 7 } else { 1 };
            for at in (0..bytes.len()).step_by(step) {
                let mut damaged = bytes.clone();
                damaged[at] ^= 0x5A;
                if let Ok(db) = Lmdb::from_bytes(damaged) {
                    let _ = db.entries();
                }
            }
        }
        let standalone = fixture("standalone-installed.mdb");
        for cut in [
            100,
            4096,
            4096 + 100,
            8192,
            8192 + 100,
            standalone.len() - 1,
        ] {
            assert!(
                Lmdb::from_bytes(standalone[..cut].to_vec())
                    .and_then(|db| db.entries())
                    .is_err(),
                "cut at {cut}"
            );
        }
        assert!(matches!(
            Lmdb::from_bytes(Vec::new()),
            Err(LmdbError::NotLmdb)
        ));
        assert!(matches!(
            Lmdb::from_bytes(b"not a database".repeat(1000)),
            Err(LmdbError::NotLmdb)
        ));
    }

    /// A page header for the builder.
    fn header(word: usize, page: &mut [u8], number: u64, flags: u16, lower: u16, upper: u16) {
        page[..word].copy_from_slice(&number.to_le_bytes()[..word]);
        page[word + 2..word + 4].copy_from_slice(&flags.to_le_bytes());
        page[word + 4..word + 6].copy_from_slice(&lower.to_le_bytes());
        page[word + 6..word + 8].copy_from_slice(&upper.to_le_bytes());
    }

    /// A file in liblmdb's layout for a `word`-byte build: two metas (the
    /// second current) and `pages` from page 2 on, root at `root`.
    fn build(word: usize, pages: Vec<Vec<u8>>, root: u64) -> Vec<u8> {
        const PSIZE: usize = 4096;
        let mut file = Vec::new();
        for meta in 0..2u64 {
            let mut page = vec![0u8; PSIZE];
            header(word, &mut page, meta, P_META, 0, 0);
            let mut at = word + 8;
            let mut put = |page: &mut Vec<u8>, value: u64, len: usize| {
                page[at..at + len].copy_from_slice(&value.to_le_bytes()[..len]);
                at += len;
            };
            let invalid = if word == 8 {
                u64::MAX
            } else {
                u64::from(u32::MAX)
            };
            put(&mut page, u64::from(MAGIC), 4);
            put(&mut page, u64::from(VERSION), 4);
            put(&mut page, 0, word); // address
            put(&mut page, 1 << 20, word); // map size
            for db in 0..2 {
                put(&mut page, if db == 0 { PSIZE as u64 } else { 0 }, 4);
                put(&mut page, 0, 2); // flags
                put(&mut page, u64::from(db == 1), 2); // depth
                for _ in 0..4 {
                    put(&mut page, 0, word);
                }
                let db_root = if db == 1 && meta == 1 { root } else { invalid };
                put(&mut page, db_root, word);
            }
            put(&mut page, 1 + pages.len() as u64, word); // last page
            put(&mut page, meta, word); // txn id
            file.extend(page);
        }
        for page in pages {
            assert_eq!(page.len(), PSIZE);
            file.extend(page);
        }
        file
    }

    /// A leaf (or, with `branch`, a branch page whose values are child
    /// page numbers) holding `entries`.
    fn node_page(
        word: usize,
        number: u64,
        entries: &[(&[u8], &[u8])],
        branch: Option<&[u64]>,
    ) -> Vec<u8> {
        let mut page = vec![0u8; 4096];
        let mut upper = page.len();
        let mut offsets = Vec::new();
        for (index, (key, value)) in entries.iter().enumerate() {
            let data: &[u8] = if branch.is_some() { &[] } else { value };
            let len = (NODE_HEADER + key.len() + data.len() + 1) & !1;
            upper -= len;
            let node = &mut page[upper..upper + len];
            let (lo, flags) = match branch {
                Some(children) => (children[index], (children[index] >> 32) as u16),
                None => (value.len() as u64, 0),
            };
            node[..4].copy_from_slice(&(lo as u32).to_le_bytes());
            node[4..6].copy_from_slice(&flags.to_le_bytes());
            node[6..8].copy_from_slice(&(key.len() as u16).to_le_bytes());
            node[8..8 + key.len()].copy_from_slice(key);
            node[8 + key.len()..8 + key.len() + data.len()].copy_from_slice(data);
            offsets.push(upper as u16);
        }
        let lower = word + 8 + 2 * offsets.len();
        for (i, offset) in offsets.iter().enumerate() {
            page[word + 8 + 2 * i..word + 10 + 2 * i].copy_from_slice(&offset.to_le_bytes());
        }
        let flags = if branch.is_some() { P_BRANCH } else { P_LEAF };
        header(word, &mut page, number, flags, lower as u16, upper as u16);
        page
    }

    /// The same store in the 64-bit and the 32-bit layout (ARM boards run
    /// 32-bit builds of liblmdb) reads the same.
    #[test]
    fn reads_32_and_64_bit_layouts() {
        let entries: [(&[u8], &[u8]); 3] = [
            (b"artifact-name", b"release-7"),
            (
                b"artifact-provides",
                br#"{"rootfs-image.version":"release-7"}"#,
            ),
            (b"standalone-state", b"{}"),
        ];
        for word in [8, 4] {
            let file = build(word, vec![node_page(word, 2, &entries, None)], 2);
            let db = Lmdb::from_bytes(file).unwrap();
            assert_eq!(db.is_32_bit(), word == 4);
            assert_eq!(db.txn_id(), 1);
            let read = db.entries().unwrap();
            let expected: Vec<Entry> = entries
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            assert_eq!(read, expected);
        }
    }

    /// A branch that points at itself is an error, not an endless walk.
    #[test]
    fn a_looping_tree_is_an_error() {
        for word in [8, 4] {
            let branch = node_page(word, 2, &[(b"", b""), (b"m", b"")], Some(&[2, 2]));
            let file = build(word, vec![branch], 2);
            let db = Lmdb::from_bytes(file).unwrap();
            assert!(matches!(db.entries(), Err(LmdbError::Damaged(..))));
        }
    }
}
