//! Just enough of ELF (32 and 64 bit, little endian) and DWARF line tables
//! to measure binaries: section sizes, symbols, and which source file each
//! byte of `.text` came from (ELF32 firmware only). No tool needed
//! (`llvm-size` / `cargo bloat` would be another install); big-endian files
//! and ELF64 files with addresses or sizes above 4 GiB are refused.

use anyhow::{bail, Context, Result};

/// One section header.
#[derive(Clone, Debug)]
pub struct Section {
    pub name: String,
    pub kind: u32,
    pub flags: u32,
    pub addr: u32,
    pub offset: u32,
    pub size: u32,
    /// `sh_link`: a symbol table's string table.
    pub link: u32,
}

impl Section {
    /// Occupies memory at run time (`SHF_ALLOC`).
    pub fn is_alloc(&self) -> bool {
        self.flags & 0x2 != 0
    }

    /// Has no bytes in the file (`SHT_NOBITS`: `.bss`).
    pub fn is_nobits(&self) -> bool {
        self.kind == 8
    }
}

/// One symbol table entry.
#[derive(Clone, Debug)]
pub struct Symbol {
    pub name: String,
    /// Address; the Thumb bit of functions is cleared.
    pub addr: u32,
    pub size: u32,
    pub is_func: bool,
    pub is_object: bool,
    pub section: u16,
}

/// A parsed ELF32 file.
pub struct Elf {
    data: Vec<u8>,
    pub sections: Vec<Section>,
    /// ELFCLASS64 (the Linux binaries) rather than ELFCLASS32 (firmware).
    pub is64: bool,
}

fn u16_at(data: &[u8], at: usize) -> Result<u16> {
    let bytes = data.get(at..at + 2).context("ELF truncated")?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn u32_at(data: &[u8], at: usize) -> Result<u32> {
    let bytes = data.get(at..at + 4).context("ELF truncated")?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn u64_as_u32(data: &[u8], at: usize) -> Result<u32> {
    let bytes = data.get(at..at + 8).context("ELF truncated")?;
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u32::try_from(u64::from_le_bytes(word)).context("ELF64 value above 4 GiB")
}

fn c_str(data: &[u8], at: usize) -> String {
    let tail = data.get(at..).unwrap_or_default();
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    String::from_utf8_lossy(&tail[..end]).into_owned()
}

impl Elf {
    /// Parses the section headers of `data`.
    pub fn parse(data: Vec<u8>) -> Result<Self> {
        if data.get(..4) != Some(b"\x7fELF".as_slice()) {
            bail!("not an ELF file");
        }
        let is64 = match (data.get(4), data.get(5)) {
            (Some(1), Some(1)) => false,
            (Some(2), Some(1)) => true,
            _ => bail!("not a little-endian ELF file"),
        };
        // Header fields: (e_shoff, e_shentsize, e_shnum, e_shstrndx) offsets.
        let (shoff, shentsize, shnum, shstrndx) = if is64 {
            (
                u64_as_u32(&data, 0x28)? as usize,
                u16_at(&data, 0x3a)? as usize,
                u16_at(&data, 0x3c)? as usize,
                u16_at(&data, 0x3e)? as usize,
            )
        } else {
            (
                u32_at(&data, 0x20)? as usize,
                u16_at(&data, 0x2e)? as usize,
                u16_at(&data, 0x30)? as usize,
                u16_at(&data, 0x32)? as usize,
            )
        };
        let mut raw = Vec::with_capacity(shnum);
        for index in 0..shnum {
            let at = shoff + index * shentsize;
            let section = if is64 {
                Section {
                    name: String::new(),
                    kind: u32_at(&data, at + 4)?,
                    flags: u64_as_u32(&data, at + 8)?,
                    addr: u64_as_u32(&data, at + 16)?,
                    offset: u64_as_u32(&data, at + 24)?,
                    size: u64_as_u32(&data, at + 32)?,
                    link: u32_at(&data, at + 40)?,
                }
            } else {
                Section {
                    name: String::new(),
                    kind: u32_at(&data, at + 4)?,
                    flags: u32_at(&data, at + 8)?,
                    addr: u32_at(&data, at + 12)?,
                    offset: u32_at(&data, at + 16)?,
                    size: u32_at(&data, at + 20)?,
                    link: u32_at(&data, at + 24)?,
                }
            };
            raw.push((u32_at(&data, at)?, section));
        }
        let names_at = raw.get(shstrndx).context("no section names")?.1.offset as usize;
        let sections = raw
            .into_iter()
            .map(|(name, mut section)| {
                section.name = c_str(&data, names_at + name as usize);
                section
            })
            .collect();
        Ok(Self {
            data,
            sections,
            is64,
        })
    }

    /// The section called `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The file bytes of `section` (empty for `.bss`).
    pub fn bytes(&self, section: &Section) -> &[u8] {
        if section.is_nobits() {
            return &[];
        }
        let start = section.offset as usize;
        self.data
            .get(start..start + section.size as usize)
            .unwrap_or_default()
    }

    /// The `.symtab` symbols (names as stored, mangled).
    pub fn symbols(&self) -> Result<Vec<Symbol>> {
        let Some(symtab) = self.sections.iter().find(|s| s.kind == 2) else {
            bail!("no symbol table (stripped?)");
        };
        let strtab = self
            .sections
            .get(symtab.link as usize)
            .context("no string table")?;
        let bytes = self.bytes(symtab);
        let mut symbols = Vec::new();
        let entry_len = if self.is64 { 24 } else { 16 };
        for entry in bytes.chunks_exact(entry_len) {
            let name = u32_at(entry, 0)? as usize;
            // ELF32: value, size, info, other, shndx; ELF64: info, other,
            // shndx, value, size.
            let (value, size, info, section) = if self.is64 {
                // Absolute symbols may hold any 64-bit value: skipped.
                let (Ok(value), Ok(size)) = (u64_as_u32(entry, 8), u64_as_u32(entry, 16)) else {
                    continue;
                };
                (value, size, entry[4], u16_at(entry, 6)?)
            } else {
                (
                    u32_at(entry, 4)?,
                    u32_at(entry, 8)?,
                    entry[12],
                    u16_at(entry, 14)?,
                )
            };
            let kind = info & 0xf;
            let is_func = kind == 2;
            symbols.push(Symbol {
                name: c_str(&self.data, strtab.offset as usize + name),
                // The Thumb bit of ARM32 function addresses.
                addr: if is_func && !self.is64 {
                    value & !1
                } else {
                    value
                },
                size,
                is_func,
                is_object: kind == 1,
                section,
            });
        }
        Ok(symbols)
    }

    /// Reads a little-endian `u32` at virtual address `addr` (in a section
    /// with file bytes).
    pub fn read_u32(&self, addr: u32) -> Option<u32> {
        let section = self.sections.iter().find(|s| {
            s.is_alloc() && !s.is_nobits() && addr >= s.addr && addr + 4 <= s.addr + s.size
        })?;
        let at = (section.offset + addr - section.addr) as usize;
        u32_at(&self.data, at).ok()
    }

    /// Source file of each address range, from `.debug_line`, one list per
    /// line-number sequence (a function, in address order):
    /// `(start, end, file path)`. Relative paths are completed with their
    /// compile unit's directory (with fat LTO every crate keeps its own).
    /// ELF32 only.
    pub fn line_sequences(&self) -> Result<Vec<Vec<(u32, u32, String)>>> {
        if self.is64 {
            bail!("line tables are read for ELF32 firmware only");
        }
        let Some(lines) = self.section(".debug_line") else {
            return Ok(Vec::new());
        };
        let line_str = self.section(".debug_line_str").map(|s| self.bytes(s));
        let str_sec = self.section(".debug_str").map(|s| self.bytes(s));
        let comp_dirs = self.comp_dirs().unwrap_or_default();
        let mut out = Vec::new();
        let data = self.bytes(lines);
        let mut at = 0;
        while at + 4 <= data.len() {
            let length = u32_at(data, at)? as usize;
            if length == 0xffff_ffff {
                bail!("64-bit DWARF is not supported");
            }
            let end = (at + 4 + length).min(data.len());
            let unit = &data[at + 4..end];
            let comp_dir = comp_dirs
                .iter()
                .find(|(offset, _)| *offset as usize == at)
                .map_or("", |(_, dir)| dir.as_str());
            decode_line_unit(unit, comp_dir, line_str, str_sec, &mut out)
                .with_context(|| format!(".debug_line unit at {at:#x}"))?;
            at = end;
        }
        Ok(out)
    }

    /// `(DW_AT_stmt_list, DW_AT_comp_dir)` of every compile unit in
    /// `.debug_info`.
    fn comp_dirs(&self) -> Result<Vec<(u32, String)>> {
        let (Some(info), Some(abbrev)) =
            (self.section(".debug_info"), self.section(".debug_abbrev"))
        else {
            return Ok(Vec::new());
        };
        let info = self.bytes(info);
        let abbrev = self.bytes(abbrev);
        let line_str = self.section(".debug_line_str").map(|s| self.bytes(s));
        let str_sec = self.section(".debug_str").map(|s| self.bytes(s));
        let mut out = Vec::new();
        let mut at = 0;
        while at + 4 <= info.len() {
            let length = u32_at(info, at)? as usize;
            let next = at + 4 + length;
            let mut c = Cursor {
                data: info,
                at: at + 4,
            };
            let version = c.u16()?;
            let (abbrev_offset, address_size) = if version >= 5 {
                let _unit_type = c.u8()?;
                let address_size = c.u8()?;
                (c.u32()?, address_size)
            } else {
                let offset = c.u32()?;
                (offset, c.u8()?)
            };
            // The unit's first DIE (the compile unit) and its abbreviation.
            let code = c.uleb()?;
            let mut a = Cursor {
                data: abbrev,
                at: abbrev_offset as usize,
            };
            let mut attributes = Vec::new();
            loop {
                let entry = a.uleb()?;
                if entry == 0 {
                    break;
                }
                let _tag = a.uleb()?;
                let _children = a.u8()?;
                let mut list = Vec::new();
                loop {
                    let (name, form) = (a.uleb()?, a.uleb()?);
                    if name == 0 && form == 0 {
                        break;
                    }
                    let implicit = if form == 0x21 { a.sleb()? } else { 0 };
                    list.push((name, form, implicit));
                }
                if entry == code {
                    attributes = list;
                    break;
                }
            }
            let mut stmt_list = None;
            let mut comp_dir = None;
            for (name, form, _) in attributes {
                let value = match form {
                    0x01 => Some(u64::from_le_bytes({
                        let mut v = [0u8; 8];
                        let b = c.take(usize::from(address_size))?;
                        v[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
                        v
                    })),
                    0x0c | 0x11 | 0x25 | 0x29 => Some(u64::from(c.u8()?)),
                    0x19 | 0x21 => Some(0),
                    0x12 | 0x26 | 0x2a => Some(u64::from(c.u16()?)),
                    0x27 | 0x2b => Some(u64::from(c.u16()?) | u64::from(c.u8()?) << 16),
                    0x10 | 0x13 | 0x17 | 0x28 | 0x2c => Some(u64::from(c.u32()?)),
                    0x1a | 0x1b | 0x15 => Some(c.uleb()?),
                    0x0d => Some(c.sleb()? as u64),
                    _ => None,
                };
                let (text, value) = match value {
                    Some(value) => (None, value),
                    None => read_form(&mut c, form, line_str, str_sec)?,
                };
                match name {
                    0x10 => stmt_list = Some(value as u32), // DW_AT_stmt_list
                    0x1b => comp_dir = text,                // DW_AT_comp_dir
                    _ => {}
                }
            }
            if let (Some(offset), Some(dir)) = (stmt_list, comp_dir) {
                out.push((offset, dir));
            }
            at = next;
        }
        Ok(out)
    }
}

/// A cursor over DWARF bytes.
struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Result<u8> {
        let byte = *self.data.get(self.at).context("DWARF truncated")?;
        self.at += 1;
        Ok(byte)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let bytes = self
            .data
            .get(self.at..self.at + len)
            .context("DWARF truncated")?;
        self.at += len;
        Ok(bytes)
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn uleb(&mut self) -> Result<u64> {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = self.u8()?;
            if shift < 64 {
                value |= u64::from(byte & 0x7f) << shift;
            }
            shift += 7;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
    }

    fn sleb(&mut self) -> Result<i64> {
        let mut value = 0i64;
        let mut shift = 0;
        loop {
            let byte = self.u8()?;
            if shift < 64 {
                value |= i64::from(byte & 0x7f) << shift;
            }
            shift += 7;
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Ok(value);
            }
        }
    }

    fn c_str(&mut self) -> Result<String> {
        let tail = self.data.get(self.at..).context("DWARF truncated")?;
        let end = tail
            .iter()
            .position(|&b| b == 0)
            .context("unterminated string")?;
        self.at += end + 1;
        Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
    }
}

/// One DWARF 5 entry-format value (only strings and indices matter).
fn read_form(
    cursor: &mut Cursor<'_>,
    form: u64,
    line_str: Option<&[u8]>,
    str_sec: Option<&[u8]>,
) -> Result<(Option<String>, u64)> {
    Ok(match form {
        0x08 => (Some(cursor.c_str()?), 0), // string
        0x1f => {
            // line_strp
            let offset = cursor.u32()? as usize;
            (line_str.map(|s| c_str(s, offset)), 0)
        }
        0x0e => {
            // strp
            let offset = cursor.u32()? as usize;
            (str_sec.map(|s| c_str(s, offset)), 0)
        }
        0x0b => (None, u64::from(cursor.u8()?)),  // data1
        0x05 => (None, u64::from(cursor.u16()?)), // data2
        0x06 => (None, u64::from(cursor.u32()?)), // data4
        0x07 => (None, u64::from_le_bytes(cursor.take(8)?.try_into()?)), // data8
        0x1e => (None, cursor.take(16).map(|_| 0)?), // data16 (MD5)
        0x0f => (None, cursor.uleb()?),           // udata
        0x09 => {
            let len = cursor.uleb()? as usize;
            (None, cursor.take(len).map(|_| 0)?)
        } // block
        other => bail!("unsupported DWARF form {other:#x} in a line table header"),
    })
}

fn join(dir: &str, name: &str) -> String {
    if name.starts_with('/') || dir.is_empty() {
        name.to_string()
    } else if name.is_empty() {
        dir.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Runs one line-number program; pushes each sequence's rows as
/// `(start, end, file)`.
fn decode_line_unit(
    unit: &[u8],
    comp_dir: &str,
    line_str: Option<&[u8]>,
    str_sec: Option<&[u8]>,
    out: &mut Vec<Vec<(u32, u32, String)>>,
) -> Result<()> {
    let mut c = Cursor { data: unit, at: 0 };
    let version = c.u16()?;
    if !(2..=5).contains(&version) {
        bail!("DWARF line table version {version}");
    }
    if version >= 5 {
        let _address_size = c.u8()?;
        let _segment_selector_size = c.u8()?;
    }
    let header_length = c.u32()? as usize;
    let program_start = c.at + header_length;
    let min_inst = u32::from(c.u8()?);
    if version >= 4 {
        let _max_ops = c.u8()?;
    }
    let _default_is_stmt = c.u8()?;
    let _line_base = c.u8()?;
    let line_range = c.u8()?;
    if line_range == 0 {
        bail!("line_range 0");
    }
    let opcode_base = c.u8()?;
    let lengths: Vec<u8> = c.take(usize::from(opcode_base.saturating_sub(1)))?.to_vec();

    // Files, each as a full path; DWARF 5 counts from 0, older from 1.
    let mut files: Vec<String> = Vec::new();
    if version >= 5 {
        let read_entries = |c: &mut Cursor<'_>| -> Result<Vec<(Option<String>, u64)>> {
            let format_count = c.u8()?;
            let mut format = Vec::new();
            for _ in 0..format_count {
                format.push((c.uleb()?, c.uleb()?));
            }
            let count = c.uleb()?;
            let mut entries = Vec::new();
            for _ in 0..count {
                let mut path = None;
                let mut dir = 0;
                for &(content, form) in &format {
                    let (text, value) = read_form(c, form, line_str, str_sec)?;
                    match content {
                        1 => path = text, // DW_LNCT_path
                        2 => dir = value, // DW_LNCT_directory_index
                        _ => {}
                    }
                }
                entries.push((path, dir));
            }
            Ok(entries)
        };
        // Directory 0 is the compilation directory; the others may be
        // relative to it.
        let raw: Vec<String> = read_entries(&mut c)?
            .into_iter()
            .map(|(path, _)| path.unwrap_or_default())
            .collect();
        let base = join(comp_dir, raw.first().map_or("", String::as_str));
        let dirs: Vec<String> = raw.iter().map(|dir| join(&base, dir)).collect();
        for (path, dir) in read_entries(&mut c)? {
            let dir = dirs.get(dir as usize).map(String::as_str).unwrap_or("");
            files.push(join(dir, &path.unwrap_or_default()));
        }
    } else {
        let mut dirs = vec![comp_dir.to_string()];
        loop {
            let dir = c.c_str()?;
            if dir.is_empty() {
                break;
            }
            dirs.push(dir);
        }
        files.push(String::new()); // index 0 is unused before DWARF 5
        loop {
            let name = c.c_str()?;
            if name.is_empty() {
                break;
            }
            let dir = c.uleb()? as usize;
            let _mtime = c.uleb()?;
            let _len = c.uleb()?;
            let dir = join(comp_dir, dirs.get(dir).map(String::as_str).unwrap_or(""));
            files.push(join(&dir, &name));
        }
    }

    c.at = program_start;
    let file_name = |index: u64| -> String {
        files
            .get(index as usize)
            .cloned()
            .unwrap_or_else(|| "(unknown file)".to_string())
    };
    let mut address: u32 = 0;
    let mut file: u64 = 1;
    // Rows of the current sequence: (address, file); each row ends where
    // the next one starts, the last at the end_sequence address.
    let mut rows: Vec<(u32, u64)> = Vec::new();
    while c.at < unit.len() {
        let opcode = c.u8()?;
        if opcode >= opcode_base {
            // Special opcode: advance the address (and line), add a row.
            let adjusted = opcode - opcode_base;
            address = address.wrapping_add(u32::from(adjusted / line_range) * min_inst);
            rows.push((address, file));
            continue;
        }
        match opcode {
            0 => {
                let len = c.uleb()? as usize;
                let start = c.at;
                match c.u8()? {
                    1 => {
                        // end_sequence. Sequences of functions the linker
                        // dropped start at its tombstone (0 or -1): skip.
                        let first = rows.first().map_or(0, |&(a, _)| a);
                        if first != 0 && first < 0xffff_fff0 {
                            let mut sequence = Vec::new();
                            for (i, &(start, row_file)) in rows.iter().enumerate() {
                                let end = rows.get(i + 1).map_or(address, |&(a, _)| a);
                                if end > start {
                                    sequence.push((start, end, file_name(row_file)));
                                }
                            }
                            out.push(sequence);
                        }
                        rows.clear();
                        address = 0;
                        file = 1;
                    }
                    2 => {
                        // set_address
                        let bytes = c.take(len.saturating_sub(1))?;
                        let mut value = [0u8; 8];
                        let n = bytes.len().min(8);
                        value[..n].copy_from_slice(&bytes[..n]);
                        address = u64::from_le_bytes(value) as u32;
                    }
                    _ => {}
                }
                c.at = start + len;
            }
            1 => rows.push((address, file)), // copy
            2 => address = address.wrapping_add(c.uleb()? as u32 * min_inst), // advance_pc
            3 => {
                c.sleb()?; // advance_line
            }
            4 => file = c.uleb()?, // set_file
            8 => {
                // const_add_pc: the address advance of special opcode 255.
                let adjusted = 255 - opcode_base;
                address = address.wrapping_add(u32::from(adjusted / line_range) * min_inst);
            }
            9 => address = address.wrapping_add(u32::from(c.u16()?)), // fixed_advance_pc
            _ => {
                // set_column, negate_stmt, set_basic_block, prologue_end,
                // epilogue_begin, set_isa, unknown: skip their operands.
                for _ in 0..lengths.get(usize::from(opcode) - 1).copied().unwrap_or(0) {
                    c.uleb()?;
                }
            }
        }
    }
    Ok(())
}

/// A readable name for a Rust symbol: legacy (`_ZN...E`) mangling is
/// demangled, v0 (`_R...`) names are reduced to their crate and last
/// identifiers; anything else is returned as is.
pub fn demangle(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("_ZN") {
        let mut parts = Vec::new();
        let bytes = rest.as_bytes();
        let mut at = 0;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            let digits_end = at
                + bytes[at..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
            let Ok(len) = rest[at..digits_end].parse::<usize>() else {
                break;
            };
            let Some(part) = rest.get(digits_end..digits_end + len) else {
                break;
            };
            parts.push(part);
            at = digits_end + len;
        }
        if let Some(last) = parts.last() {
            if last.len() == 17 && last.starts_with('h') {
                parts.pop();
            }
        }
        let joined = parts.join("::");
        let mut text = joined;
        for (from, to) in [
            ("$LT$", "<"),
            ("$GT$", ">"),
            ("$RF$", "&"),
            ("$BP$", "*"),
            ("$LP$", "("),
            ("$RP$", ")"),
            ("$C$", ","),
            ("$u20$", " "),
            ("$u27$", "'"),
            ("$u5b$", "["),
            ("$u5d$", "]"),
            ("$u7b$", "{"),
            ("$u7d$", "}"),
            ("$u7e$", "~"),
            ("..", "::"),
        ] {
            text = text.replace(from, to);
        }
        return text.strip_prefix('_').map(String::from).unwrap_or(text);
    }
    if name.starts_with("_R") {
        // v0: collect the identifiers (`<decimal length><ident>`, after an
        // optional `s<base62>_` disambiguator) in order.
        let bytes = name.as_bytes();
        let mut idents = Vec::new();
        let mut at = 2;
        while at < bytes.len() {
            if bytes[at] == b'B' || (bytes[at] == b's' && bytes[at - 1].is_ascii_uppercase()) {
                // A back reference `B<base62>_` or a disambiguator
                // `s<base62>_` (after `C`, `X`, `M`...): no identifier.
                at += bytes[at..].iter().position(|&b| b == b'_').unwrap_or(0) + 1;
                continue;
            }
            if bytes[at].is_ascii_digit() && !bytes[at - 1].is_ascii_digit() {
                let digits = bytes[at..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if let Ok(len) = name[at..at + digits].parse::<usize>() {
                    let start = at + digits + usize::from(bytes.get(at + digits) == Some(&b'_'));
                    if let Some(ident) = name.get(start..start + len) {
                        if ident.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                            idents.push(ident);
                            at = start + len;
                            continue;
                        }
                    }
                }
            }
            at += 1;
        }
        if !idents.is_empty() {
            return idents.join("::");
        }
    }
    name.to_string()
}

/// The crate a (demangled) symbol belongs to: its first path segment, the
/// `Self` type's for `<T as Trait>::f`.
pub fn symbol_crate(demangled: &str) -> &str {
    let text = demangled.trim_start_matches('<').trim_start_matches('&');
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}
