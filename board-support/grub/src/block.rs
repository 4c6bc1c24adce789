//! GRUB environment block codec.
//!
//! A block is a fixed-size file (1024 bytes by default) that starts with
//! [`SIGNATURE`], followed by one `name=value\n` line per variable and `#`
//! padding up to the block size. In values, `\` and newline are escaped with
//! a preceding `\`. Every function here is pure and never panics, whatever
//! the input.
//!
//! [`parse`] reads a block exactly like GRUB's `load_env` and
//! `grub-editenv list` do (they share `grub_envblk_iterate`), including its
//! quirks: lines starting with `#` are skipped, a line without a terminating
//! newline ends the walk silently, and names and values end at a NUL byte.
//! [`parse_strict`] accepts only blocks in the canonical form that
//! `grub-editenv` writes and [`serialize`] produces; [`edit`] changes such a
//! block like `grub-editenv set` / `unset`, keeping everything else.

use core::fmt;

/// The first bytes of every GRUB environment block.
pub const SIGNATURE: &[u8] = b"# GRUB Environment Block\n";

/// Size of a block created by `grub-editenv FILE create`.
pub const DEFAULT_SIZE: usize = 1024;

/// Smallest block GRUB accepts: the signature plus one byte (GRUB compares
/// against `sizeof` of the signature string, which counts its NUL).
pub const MIN_SIZE: usize = SIGNATURE.len() + 1;

/// One variable of a block, as raw bytes (GRUB does not require UTF-8).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Variable {
    /// The name: never empty, no `=`, newline or NUL, does not start with `#`.
    pub name: Vec<u8>,
    /// The value, unescaped: no NUL.
    pub value: Vec<u8>,
}

impl Variable {
    /// A variable from text.
    pub fn new(name: &str, value: &str) -> Self {
        Self {
            name: name.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }
    }
}

/// Why a block could not be parsed or built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The block is shorter than [`MIN_SIZE`].
    TooShort {
        /// Length of the block.
        len: usize,
    },
    /// The block does not start with [`SIGNATURE`].
    BadSignature,
    /// [`parse_strict`]: the block is not in canonical form at this offset.
    Malformed {
        /// Byte offset of the first offending line.
        offset: usize,
    },
    /// A name is empty, starts with `#` or contains `=`, newline or NUL.
    InvalidName {
        /// The offending name (lossy UTF-8).
        name: String,
    },
    /// A value contains a NUL byte.
    InvalidValue {
        /// The variable's name (lossy UTF-8).
        name: String,
    },
    /// The variables do not fit into a block of the requested size.
    TooSmall {
        /// Bytes the signature and variables need.
        needed: usize,
        /// The block size.
        size: usize,
    },
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => write!(
                f,
                "environment block of {len} bytes is shorter than the minimum of {MIN_SIZE}"
            ),
            Self::BadSignature => f.write_str("invalid environment block signature"),
            Self::Malformed { offset } => {
                write!(f, "malformed environment block at byte {offset}")
            }
            Self::InvalidName { name } => write!(f, "invalid variable name {name:?}"),
            Self::InvalidValue { name } => {
                write!(f, "value of variable {name:?} contains a NUL byte")
            }
            Self::TooSmall { needed, size } => write!(
                f,
                "variables need {needed} bytes but the environment block holds {size}"
            ),
        }
    }
}

impl core::error::Error for BlockError {}

fn check_header(block: &[u8]) -> Result<&[u8], BlockError> {
    if block.len() < MIN_SIZE {
        return Err(BlockError::TooShort { len: block.len() });
    }
    match block.strip_prefix(SIGNATURE) {
        Some(body) => Ok(body),
        None => Err(BlockError::BadSignature),
    }
}

/// Index just past the end of the line starting at `from`, skipping escaped
/// bytes (GRUB's `find_next_line`). May exceed `body.len()`.
fn next_line(body: &[u8], from: usize) -> usize {
    let mut p = from;
    while let Some(&byte) = body.get(p) {
        match byte {
            b'\\' => p = p.saturating_add(2),
            b'\n' => break,
            _ => p = p.saturating_add(1),
        }
    }
    p.saturating_add(1)
}

/// Bytes up to the first NUL, as C string handling sees them.
fn until_nul(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(end) => bytes.get(..end).unwrap_or(bytes),
        None => bytes,
    }
}

/// One step of the walk over a block body.
enum Line {
    /// A `#` line (comment or padding); the next line starts here.
    Skip { next: usize },
    /// A variable: raw name bytes, raw escaped value bytes (without the
    /// newline), and where the next line starts.
    Var {
        name: (usize, usize),
        value: (usize, usize),
        next: usize,
    },
    /// The rest of the block is not a complete line.
    Broken,
}

fn walk_line(body: &[u8], start: usize) -> Line {
    if body.get(start) == Some(&b'#') {
        return Line::Skip {
            next: next_line(body, start),
        };
    }
    let Some(eq) = body
        .get(start..)
        .and_then(|rest| rest.iter().position(|&b| b == b'='))
        .map(|pos| start.saturating_add(pos))
    else {
        return Line::Broken;
    };
    let value_start = eq.saturating_add(1);
    let mut p = value_start;
    loop {
        match body.get(p) {
            None => return Line::Broken,
            Some(b'\n') => break,
            Some(b'\\') => p = p.saturating_add(2),
            Some(_) => p = p.saturating_add(1),
        }
    }
    Line::Var {
        name: (start, eq),
        value: (value_start, p),
        next: p.saturating_add(1),
    }
}

fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&byte) = bytes.next() {
        if byte == b'\\' {
            if let Some(&escaped) = bytes.next() {
                out.push(escaped);
            }
        } else {
            out.push(byte);
        }
    }
    out
}

fn slice(body: &[u8], (start, end): (usize, usize)) -> &[u8] {
    body.get(start..end).unwrap_or_default()
}

/// Parses a block the way GRUB does (`grub_envblk_iterate`).
///
/// Returns the variables in block order, duplicates included (for GRUB the
/// last one wins, see [`get`]). Lines starting with `#` are skipped; a
/// trailing line without newline or `=` ends the walk without error; names
/// and values are cut at a NUL byte.
///
/// # Errors
/// [`BlockError::TooShort`] or [`BlockError::BadSignature`], the only cases
/// where GRUB rejects a block.
pub fn parse(block: &[u8]) -> Result<Vec<Variable>, BlockError> {
    let body = check_header(block)?;
    let mut vars = Vec::new();
    let mut p = 0;
    while p < body.len() {
        match walk_line(body, p) {
            Line::Skip { next } => p = next,
            Line::Broken => break,
            Line::Var { name, value, next } => {
                let value = unescape(slice(body, value));
                vars.push(Variable {
                    name: until_nul(slice(body, name)).to_vec(),
                    value: until_nul(&value).to_vec(),
                });
                p = next;
            }
        }
    }
    Ok(vars)
}

/// One line of a canonical block.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    /// A line starting with `#` (such as the warning newer `grub-editenv`
    /// writes after the signature), kept byte for byte with its newline.
    Comment(Vec<u8>),
    /// A variable line.
    Var(Variable),
}

/// Splits a canonical block into lines: signature, then comment and
/// variable lines each ending in a newline, then only `#` padding.
fn entries(block: &[u8]) -> Result<Vec<Entry>, BlockError> {
    let body = check_header(block)?;
    let padding = body.iter().rev().take_while(|&&b| b == b'#').count();
    let content = body
        .get(..body.len().saturating_sub(padding))
        .unwrap_or_default();
    let malformed = |at: usize| BlockError::Malformed {
        offset: at.saturating_add(SIGNATURE.len()),
    };
    let mut out = Vec::new();
    let mut p = 0;
    while p < content.len() {
        match walk_line(content, p) {
            Line::Skip { next } => {
                let line = content.get(p..next).ok_or_else(|| malformed(p))?;
                if line.last() != Some(&b'\n') || line.contains(&0) {
                    return Err(malformed(p));
                }
                out.push(Entry::Comment(line.to_vec()));
                p = next;
            }
            Line::Broken => return Err(malformed(p)),
            Line::Var { name, value, next } => {
                let name = slice(content, name);
                let raw_value = slice(content, value);
                if !valid_name(name) || raw_value.contains(&0) || !canonical_escapes(raw_value) {
                    return Err(malformed(p));
                }
                out.push(Entry::Var(Variable {
                    name: name.to_vec(),
                    value: unescape(raw_value),
                }));
                p = next;
            }
        }
    }
    Ok(out)
}

/// Parses a block that must be in canonical form: signature, then
/// `name=value\n` lines with valid names and escaped values (and `#`
/// comment lines, which are skipped), then only `#` bytes up to the end.
///
/// # Errors
/// [`BlockError::TooShort`], [`BlockError::BadSignature`], or
/// [`BlockError::Malformed`] with the offset of the first bad line.
pub fn parse_strict(block: &[u8]) -> Result<Vec<Variable>, BlockError> {
    Ok(entries(block)?
        .into_iter()
        .filter_map(|entry| match entry {
            Entry::Var(var) => Some(var),
            Entry::Comment(_) => None,
        })
        .collect())
}

/// Applies `edits` (set with `Some`, delete with `None`, in order) to a
/// canonical block and returns the new block of the same size, the way
/// `grub-editenv FILE set` / `unset` edit it: comment lines and the order of
/// the other variables are kept, a changed variable stays in place (later
/// duplicates are dropped), a new one is appended after the last line.
///
/// # Errors
/// As [`parse_strict`] for the input, as [`serialize`] for the result
/// ([`BlockError::TooSmall`] when it does not fit).
pub fn edit(block: &[u8], edits: &[(&[u8], Option<&[u8]>)]) -> Result<Vec<u8>, BlockError> {
    let mut lines = entries(block)?;
    for &(name, value) in edits {
        let first = lines
            .iter()
            .position(|line| matches!(line, Entry::Var(var) if var.name == name));
        let is_name = |line: &Entry| matches!(line, Entry::Var(var) if var.name == name);
        match (first, value) {
            (Some(index), Some(value)) => {
                let mut position = 0usize;
                lines.retain(|line| {
                    position = position.saturating_add(1);
                    position.saturating_sub(1) <= index || !is_name(line)
                });
                if let Some(Entry::Var(var)) = lines.get_mut(index) {
                    var.value = value.to_vec();
                }
            }
            (None, Some(value)) => lines.push(Entry::Var(Variable {
                name: name.to_vec(),
                value: value.to_vec(),
            })),
            (_, None) => lines.retain(|line| !is_name(line)),
        }
    }
    build(&lines, block.len())
}

/// True when every byte that needs escaping is escaped and every escape
/// escapes such a byte.
fn canonical_escapes(raw: &[u8]) -> bool {
    let mut bytes = raw.iter();
    while let Some(&byte) = bytes.next() {
        if byte == b'\\' {
            match bytes.next() {
                Some(b'\\' | b'\n') => {}
                _ => return false,
            }
        } else if byte == b'\n' {
            return false;
        }
    }
    true
}

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.first() != Some(&b'#')
        && !name.iter().any(|&b| matches!(b, b'=' | b'\n' | 0))
}

/// The value GRUB sees for `name`: the last occurrence wins.
pub fn get<'a>(vars: &'a [Variable], name: &[u8]) -> Option<&'a [u8]> {
    vars.iter()
        .rev()
        .find(|var| var.name == name)
        .map(|var| var.value.as_slice())
}

/// Sets (`Some`) or deletes (`None`) `name` in a variable list.
///
/// Setting replaces the first occurrence in place (like `grub-editenv set`)
/// and drops later duplicates, or appends a new variable; deleting removes
/// every occurrence. Names and values are checked by [`serialize`].
pub fn set(vars: &mut Vec<Variable>, name: &[u8], value: Option<&[u8]>) {
    let first = vars.iter().position(|var| var.name == name);
    match (first, value) {
        (Some(index), Some(value)) => {
            let mut seen = 0usize;
            vars.retain(|var| {
                if var.name != name {
                    return true;
                }
                seen = seen.saturating_add(1);
                seen == 1
            });
            if let Some(var) = vars.get_mut(index) {
                var.value = value.to_vec();
            }
        }
        (None, Some(value)) => vars.push(Variable {
            name: name.to_vec(),
            value: value.to_vec(),
        }),
        (_, None) => vars.retain(|var| var.name != name),
    }
}

/// Bytes the signature and `vars` take in a block, without padding.
///
/// # Errors
/// [`BlockError::InvalidName`] or [`BlockError::InvalidValue`].
pub fn encoded_len(vars: &[Variable]) -> Result<usize, BlockError> {
    let mut len = SIGNATURE.len();
    for var in vars {
        check_variable(var)?;
        let escapes = var
            .value
            .iter()
            .filter(|&&b| matches!(b, b'\\' | b'\n'))
            .count();
        len = len
            .saturating_add(var.name.len())
            .saturating_add(var.value.len())
            .saturating_add(escapes)
            .saturating_add(2);
    }
    Ok(len)
}

fn check_variable(var: &Variable) -> Result<(), BlockError> {
    if !valid_name(&var.name) {
        return Err(BlockError::InvalidName {
            name: String::from_utf8_lossy(&var.name).into_owned(),
        });
    }
    if var.value.contains(&0) {
        return Err(BlockError::InvalidValue {
            name: String::from_utf8_lossy(&var.name).into_owned(),
        });
    }
    Ok(())
}

/// Builds a block of exactly `size` bytes holding `vars` in order, escaped
/// and padded with `#` exactly as `grub-editenv` writes it.
///
/// # Errors
/// [`BlockError::InvalidName`], [`BlockError::InvalidValue`],
/// [`BlockError::TooShort`] when `size` is below [`MIN_SIZE`], or
/// [`BlockError::TooSmall`] when the variables do not fit.
pub fn serialize(vars: &[Variable], size: usize) -> Result<Vec<u8>, BlockError> {
    let lines: Vec<Entry> = vars.iter().cloned().map(Entry::Var).collect();
    build(&lines, size)
}

fn build(lines: &[Entry], size: usize) -> Result<Vec<u8>, BlockError> {
    if size < MIN_SIZE {
        return Err(BlockError::TooShort { len: size });
    }
    let mut needed = SIGNATURE.len();
    for line in lines {
        needed = needed.saturating_add(match line {
            Entry::Comment(raw) => raw.len(),
            Entry::Var(var) => {
                encoded_len(core::slice::from_ref(var))?.saturating_sub(SIGNATURE.len())
            }
        });
    }
    if needed > size {
        return Err(BlockError::TooSmall { needed, size });
    }
    let mut block = Vec::with_capacity(size);
    block.extend_from_slice(SIGNATURE);
    for line in lines {
        match line {
            Entry::Comment(raw) => block.extend_from_slice(raw),
            Entry::Var(var) => {
                block.extend_from_slice(&var.name);
                block.push(b'=');
                for &byte in &var.value {
                    if matches!(byte, b'\\' | b'\n') {
                        block.push(b'\\');
                    }
                    block.push(byte);
                }
                block.push(b'\n');
            }
        }
    }
    block.resize(size, b'#');
    Ok(block)
}

/// An empty block of `size` bytes: the signature and `#` padding, like
/// grub-mender-grubenv's `blank_grubenv` (newer `grub-editenv create` also
/// adds a `# WARNING` comment line, which [`edit`] keeps).
///
/// # Errors
/// [`BlockError::TooShort`] when `size` is below [`MIN_SIZE`].
pub fn empty(size: usize) -> Result<Vec<u8>, BlockError> {
    serialize(&[], size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(body: &[u8], size: usize) -> Vec<u8> {
        let mut b = SIGNATURE.to_vec();
        b.extend_from_slice(body);
        b.resize(size, b'#');
        b
    }

    #[test]
    fn round_trip_with_escapes() {
        let vars = vec![
            Variable::new("a", "b c"),
            Variable::new("eq", "x=y=z"),
            Variable::new("bs", "back\\slash\\"),
            Variable::new("nl", "two\nlines\n"),
            Variable::new("empty", ""),
        ];
        let out = serialize(&vars, 1024).unwrap();
        assert_eq!(out.len(), 1024);
        assert!(out.starts_with(
            b"# GRUB Environment Block\na=b c\neq=x=y=z\nbs=back\\\\slash\\\\\nnl=two\\\nlines\\\n\nempty=\n#"
        ));
        assert_eq!(parse(&out).unwrap(), vars);
        assert_eq!(parse_strict(&out).unwrap(), vars);
    }

    #[test]
    fn grub_quirks() {
        // Comment line skipped, broken tail ignored, last duplicate wins.
        let b = block(b"a=1\n#comment=x\na=2\nbroken", 64);
        let vars = parse(&b).unwrap();
        assert_eq!(vars.len(), 2);
        assert_eq!(get(&vars, b"a"), Some(&b"2"[..]));
        assert!(matches!(
            parse_strict(&b),
            Err(BlockError::Malformed { offset: 44 })
        ));
        assert_eq!(
            parse(b"# GRUB Environment Block\n"),
            Err(BlockError::TooShort { len: 25 })
        );
        assert_eq!(parse(&[b'#'; 64]), Err(BlockError::BadSignature));
    }

    #[test]
    fn exact_fit_and_too_small() {
        let vars = vec![Variable::new("k", "v")];
        let exact = SIGNATURE.len() + 4;
        assert_eq!(serialize(&vars, exact).unwrap().last(), Some(&b'\n'));
        assert_eq!(
            serialize(&vars, exact - 1),
            Err(BlockError::TooSmall {
                needed: exact,
                size: exact - 1
            })
        );
    }

    #[test]
    fn invalid_names_and_values() {
        for name in ["", "#x", "a=b", "a\nb", "a\0"] {
            let err = serialize(&[Variable::new(name, "v")], 1024).unwrap_err();
            assert!(matches!(err, BlockError::InvalidName { .. }), "{name:?}");
        }
        let err = serialize(&[Variable::new("a", "x\0")], 1024).unwrap_err();
        assert!(matches!(err, BlockError::InvalidValue { .. }));
    }

    #[test]
    fn edit_keeps_comments_and_order() {
        let b = block(b"# WARNING: keep me\na=1\nb=2\na=3\n", 128);
        let out = edit(
            &b,
            &[(b"a", Some(b"x\\y")), (b"c", Some(b"4")), (b"b", None)],
        )
        .unwrap();
        assert_eq!(out, block(b"# WARNING: keep me\na=x\\\\y\nc=4\n", 128));
        assert_eq!(edit(&out, &[]).unwrap(), out);
        let long = [b'v'; 128];
        assert!(matches!(
            edit(&b, &[(b"a", Some(&long[..]))]),
            Err(BlockError::TooSmall { size: 128, .. })
        ));
    }

    #[test]
    fn set_semantics() {
        let mut vars = vec![
            Variable::new("a", "1"),
            Variable::new("b", "2"),
            Variable::new("a", "3"),
        ];
        set(&mut vars, b"a", Some(b"9"));
        assert_eq!(vars, vec![Variable::new("a", "9"), Variable::new("b", "2")]);
        set(&mut vars, b"c", Some(b"4"));
        set(&mut vars, b"b", None);
        assert_eq!(vars, vec![Variable::new("a", "9"), Variable::new("c", "4")]);
    }
}
