//! [`GrubEnv`]: the grub-mender-grubenv layout and plain grubenv files.

use core::time::Duration;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest as _, Sha256};

use crate::block::{self, Variable};
use crate::error::Error;

/// Lock file the reference tools `flock` around every access.
pub const DEFAULT_PROCESS_LOCK: &str = "/var/lock/grub-mender-grubenv-set.lock";

/// Configuration file that may name `ENV_DIR`.
pub const CONFIG_FILE: &str = "/etc/mender_grubenv.config";

/// How long to wait for the process lock (`flock -w 1` upstream).
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Finds the grub-mender-grubenv directory (`ENV_DIR`) like
/// `grub-mender-grubenv-print` does, with every absolute path taken under
/// `root` (`/` on a device, a temporary directory in tests):
///
/// 1. the last line matching `^ENV_DIR *= *` in `/etc/mender_grubenv.config`
///    (the rest of the line is the directory; empty means "not set");
/// 2. else `/boot/efi/grub-mender-grubenv` if it is a directory;
/// 3. else `/boot/grub/grub-mender-grubenv` if it is a directory;
/// 4. else `/boot/efi/EFI/BOOT` if `/boot/efi/EFI/BOOT/mender_grubenv1` is a
///    directory;
/// 5. else `/boot/grub` if `/boot/grub/mender_grubenv1` is a directory.
///
/// # Errors
/// [`Error::NoEnvDir`] when nothing matches.
pub fn find_env_dir(root: &Path) -> Result<PathBuf, Error> {
    if let Ok(config) = fs::read(under_root(root, Path::new(CONFIG_FILE))) {
        if let Some(dir) = config_env_dir(&config) {
            return Ok(under_root(root, &dir));
        }
    }
    let candidates = [
        ("/boot/efi/grub-mender-grubenv", ""),
        ("/boot/grub/grub-mender-grubenv", ""),
        ("/boot/efi/EFI/BOOT", "mender_grubenv1"),
        ("/boot/grub", "mender_grubenv1"),
    ];
    for (dir, probe) in candidates {
        let dir = under_root(root, Path::new(dir));
        if dir.join(probe).is_dir() {
            return Ok(dir);
        }
    }
    Err(Error::NoEnvDir {
        root: root.to_path_buf(),
    })
}

/// `ENV_DIR` from the config file text: the last `ENV_DIR *= *value` line.
fn config_env_dir(config: &[u8]) -> Option<PathBuf> {
    let mut found: Option<&[u8]> = None;
    for line in config.split(|&b| b == b'\n') {
        let Some(rest) = line.strip_prefix(b"ENV_DIR") else {
            continue;
        };
        let rest = trim_spaces(rest);
        let Some(value) = rest.strip_prefix(b"=") else {
            continue;
        };
        found = Some(trim_spaces(value));
    }
    found
        .filter(|value| !value.is_empty())
        .map(|value| PathBuf::from(OsStr::from_bytes(value)))
}

fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// `path` (absolute on the device) under the root prefix `root`.
fn under_root(root: &Path, path: &Path) -> PathBuf {
    let relative = path.strip_prefix("/").unwrap_or(path);
    root.join(relative)
}

/// A GRUB environment, either the redundant grub-mender-grubenv layout or a
/// single grubenv file. Implements [`otalite::board::BootEnv`].
#[derive(Debug, Clone)]
pub struct GrubEnv {
    layout: Layout,
    process_lock: Option<PathBuf>,
}

#[derive(Debug, Clone)]
enum Layout {
    Dual([Copy; 2]),
    Single(PathBuf),
}

/// File names of one redundant copy (`mender_grubenvN/`).
#[derive(Debug, Clone)]
struct Copy {
    dir: PathBuf,
    env: PathBuf,
    lock: PathBuf,
    locksum: PathBuf,
}

impl Copy {
    fn new(env_dir: &Path, number: u8) -> Self {
        let dir = env_dir.join(format!("mender_grubenv{number}"));
        Self {
            env: dir.join("env"),
            lock: dir.join("lock"),
            locksum: dir.join("lock.sha256sum"),
            dir,
        }
    }
}

/// What is on disk for one copy.
struct CopyState {
    env: Option<Vec<u8>>,
    lock: Option<Vec<u8>>,
    locksum: Option<Vec<u8>>,
}

impl CopyState {
    fn load(copy: &Copy) -> Result<Self, Error> {
        Ok(Self {
            env: read_optional(&copy.env)?,
            lock: read_optional(&copy.lock)?,
            locksum: read_optional(&copy.locksum)?,
        })
    }

    /// The boot script's test: `load_env editing` from the lock gives `0`.
    fn lock_clean(&self) -> bool {
        self.lock
            .as_deref()
            .and_then(|lock| block::parse(lock).ok())
            .is_some_and(|vars| block::get(&vars, b"editing") == Some(b"0"))
    }

    /// The tools' test: `sha256sum -c lock.sha256sum` succeeds.
    fn locksum_valid(&self) -> bool {
        match (&self.lock, &self.locksum) {
            (Some(lock), Some(sum)) => locksum_matches(sum, lock),
            _ => false,
        }
    }
}

/// `sha256sum -c` for a checksum file that names the lock file: at least one
/// well-formed line, and every well-formed line names a file called `lock`
/// (relative, as the image build writes it, or absolute, as the tools'
/// restore path writes it) with the lock's hash.
fn locksum_matches(sum: &[u8], lock: &[u8]) -> bool {
    let actual = hex(&Sha256::digest(lock));
    let mut checked = false;
    for line in sum.split(|&b| b == b'\n') {
        let (Some(hash), Some(rest)) = (line.get(..64), line.get(64..)) else {
            continue;
        };
        let name = match rest {
            [b' ', b' ' | b'*', name @ ..] if !name.is_empty() => name,
            _ => continue,
        };
        if !hash.iter().all(u8::is_ascii_hexdigit) {
            continue;
        }
        let names_lock = Path::new(OsStr::from_bytes(name)).file_name() == Some(OsStr::new("lock"));
        if !names_lock || !hash.eq_ignore_ascii_case(actual.as_bytes()) {
            return false;
        }
        checked = true;
    }
    checked
}

fn hex(bytes: &[u8]) -> String {
    use core::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Content of `lock.sha256sum` for `lock` (`sha256sum lock` run in the
/// copy's directory, as `make-env-and-lock-files` does).
fn locksum_for(lock: &[u8]) -> Vec<u8> {
    format!("{}  lock\n", hex(&Sha256::digest(lock))).into_bytes()
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Error::io("read", path, err)),
    }
}

/// One file write of the dual-copy protocol: overwrite `path` in place with
/// `bytes`, then fsync it (and its directory when the file is new).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Step {
    fn new(path: &Path, bytes: Vec<u8>) -> Self {
        Self {
            path: path.to_path_buf(),
            bytes,
        }
    }

    fn run(&self) -> Result<(), Error> {
        let existed = self.path.exists();
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .map_err(|err| Error::io("open", &self.path, err))?;
        file.write_all(&self.bytes)
            .map_err(|err| Error::io("write", &self.path, err))?;
        let len = u64::try_from(self.bytes.len()).unwrap_or(u64::MAX);
        file.set_len(len)
            .map_err(|err| Error::io("truncate", &self.path, err))?;
        file.sync_all()
            .map_err(|err| Error::io("fsync", &self.path, err))?;
        if !existed {
            if let Some(dir) = self.path.parent() {
                sync_dir(dir)?;
            }
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|err| Error::io("fsync directory", dir, err))
}

/// A lock block saying `editing=<editing>`: the current lock edited like
/// `grub-editenv LOCK set editing=...`, or a fresh block when the current
/// one cannot be edited (`grub-editenv LOCK create` first).
fn lock_block(path: &Path, current: Option<&[u8]>, editing: &[u8]) -> Result<Vec<u8>, Error> {
    let edits: [(&[u8], Option<&[u8]>); 1] = [(b"editing", Some(editing))];
    if let Some(edited) = current.and_then(|lock| block::edit(lock, &edits).ok()) {
        return Ok(edited);
    }
    block::empty(block::DEFAULT_SIZE)
        .and_then(|fresh| block::edit(&fresh, &edits))
        .map_err(|source| Error::Block {
            path: path.to_path_buf(),
            source,
        })
}

/// `current` with `edits` applied, same size. A block GRUB reads but that is
/// not canonical (broken tail, odd escapes) is rebuilt from what GRUB sees.
fn edited_block(
    path: &Path,
    current: &[u8],
    edits: &[(&str, Option<&str>)],
) -> Result<Vec<u8>, Error> {
    let edits: Vec<(&[u8], Option<&[u8]>)> = edits
        .iter()
        .map(|(name, value)| (name.as_bytes(), value.map(str::as_bytes)))
        .collect();
    let result = match block::edit(current, &edits) {
        Err(block::BlockError::Malformed { offset }) => {
            log::warn!(
                "{}: malformed at byte {offset}, rebuilding from its readable variables",
                path.display()
            );
            block::parse(current).and_then(|mut vars| {
                for (name, value) in &edits {
                    block::set(&mut vars, name, *value);
                }
                block::serialize(&vars, current.len())
            })
        }
        other => other,
    };
    result.map_err(|source| Error::Block {
        path: path.to_path_buf(),
        source,
    })
}

impl GrubEnv {
    /// The grub-mender-grubenv layout in `env_dir` (which holds
    /// `mender_grubenv1/` and `mender_grubenv2/`), serialised against other
    /// processes with [`DEFAULT_PROCESS_LOCK`] like the reference tools.
    ///
    /// # Errors
    /// [`Error::Io`] when either copy's directory is missing.
    pub fn open(env_dir: impl AsRef<Path>) -> Result<Self, Error> {
        let env_dir = env_dir.as_ref();
        let copies = [Copy::new(env_dir, 1), Copy::new(env_dir, 2)];
        for copy in &copies {
            if !copy.dir.is_dir() {
                return Err(Error::io(
                    "open environment directory",
                    &copy.dir,
                    io::Error::from(io::ErrorKind::NotFound),
                ));
            }
        }
        Ok(Self {
            layout: Layout::Dual(copies),
            process_lock: Some(PathBuf::from(DEFAULT_PROCESS_LOCK)),
        })
    }

    /// [`find_env_dir`] then [`GrubEnv::open`], with the process lock also
    /// taken under `root`.
    ///
    /// # Errors
    /// As [`find_env_dir`] and [`GrubEnv::open`].
    pub fn find(root: &Path) -> Result<Self, Error> {
        let dir = find_env_dir(root)?;
        Ok(Self::open(dir)?
            .with_process_lock(Some(under_root(root, Path::new(DEFAULT_PROCESS_LOCK)))))
    }

    /// A single grubenv file (such as `/boot/grub/grubenv`), replaced
    /// atomically on every write (temporary file, fsync, rename, fsync of the
    /// directory). A missing file reads as empty and is created on write
    /// with [`block::DEFAULT_SIZE`] bytes, as `grub-editenv` does.
    pub fn single(path: impl Into<PathBuf>) -> Self {
        Self {
            layout: Layout::Single(path.into()),
            process_lock: None,
        }
    }

    /// Uses `path` (or nothing, with `None`) as the file to `flock` around
    /// each read and write.
    #[must_use]
    pub fn with_process_lock(mut self, path: Option<PathBuf>) -> Self {
        self.process_lock = path;
        self
    }

    /// All variables of the copy GRUB boots with, in block order (duplicates
    /// included; the last one counts).
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Block`] when that copy is not a GRUB block,
    /// [`Error::LockTimeout`].
    pub fn variables(&mut self) -> Result<Vec<Variable>, Error> {
        let _guard = self.lock_process()?;
        match &self.layout {
            Layout::Single(path) => match read_optional(path)? {
                None => Ok(Vec::new()),
                Some(bytes) => parse_file(path, &bytes),
            },
            Layout::Dual(copies) => {
                let states = [CopyState::load(&copies[0])?, CopyState::load(&copies[1])?];
                let source = source_index(&states);
                let bytes = states[source].env.as_deref().ok_or_else(|| {
                    Error::io(
                        "read",
                        &copies[source].env,
                        io::Error::from(io::ErrorKind::NotFound),
                    )
                })?;
                parse_file(&copies[source].env, bytes)
            }
        }
    }

    /// Plans a dual-layout write: every file write, in order. Nothing is
    /// changed on disk.
    fn plan(copies: &[Copy; 2], edits: &[(&str, Option<&str>)]) -> Result<Vec<Step>, Error> {
        let states = [CopyState::load(&copies[0])?, CopyState::load(&copies[1])?];
        let source = source_index(&states);
        let other = 1 - source;
        let source_env = states[source].env.clone().ok_or_else(|| {
            Error::io(
                "read",
                &copies[source].env,
                io::Error::from(io::ErrorKind::NotFound),
            )
        })?;
        // Build the new env before the first write, so that a variable that
        // does not fit (or an invalid name) changes nothing.
        let new_env = edited_block(&copies[source].env, &source_env, edits)?;

        let mut steps = Vec::new();
        let mut locks = [states[0].lock.clone(), states[1].lock.clone()];
        let mut sums = [states[0].locksum.clone(), states[1].locksum.clone()];

        // check_and_restore_env: a copy the boot script would not use, or
        // whose lock checksum fails, is first restored from the good one.
        if !states[other].lock_clean() || !states[other].locksum_valid() {
            let copy = &copies[other];
            log::warn!("restoring {} from the other copy", copy.dir.display());
            let fresh = lock_block(&copy.lock, None, b"0")?;
            steps.push(Step::new(&copy.env, source_env.clone()));
            steps.push(Step::new(&copy.lock, fresh.clone()));
            steps.push(Step::new(&copy.locksum, locksum_for(&fresh)));
            sums[other] = Some(locksum_for(&fresh));
            locks[other] = Some(fresh);
        }

        // Copy 2 first, then copy 1, each bracketed by editing=1 / editing=0.
        for index in [1, 0] {
            let copy = &copies[index];
            let editing = lock_block(&copy.lock, locks[index].as_deref(), b"1")?;
            let done = lock_block(&copy.lock, locks[index].as_deref(), b"0")?;
            steps.push(Step::new(&copy.lock, editing));
            steps.push(Step::new(&copy.env, new_env.clone()));
            let sum_matches = sums[index]
                .as_deref()
                .is_some_and(|sum| locksum_matches(sum, &done));
            steps.push(Step::new(&copy.lock, done.clone()));
            // The reference re-checks the checksum here; a lock that no
            // longer matches it gets a fresh checksum (its restore path).
            if !sum_matches {
                log::warn!("rewriting {}", copy.locksum.display());
                steps.push(Step::new(&copy.locksum, locksum_for(&done)));
            }
        }
        Ok(steps)
    }

    fn lock_process(&self) -> Result<Option<File>, Error> {
        let Some(path) = &self.process_lock else {
            return Ok(None);
        };
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
        };
        let file = match open() {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                // `/var/lock` may not exist yet (early boot, a bare root).
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir).map_err(|err| Error::io("create", dir, err))?;
                }
                open()
            }
            other => other,
        }
        .map_err(|err| Error::io("open lock file", path, err))?;
        let start = Instant::now();
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Some(file)),
                Err(err)
                    if err == rustix::io::Errno::WOULDBLOCK || err == rustix::io::Errno::INTR =>
                {
                    if start.elapsed() >= LOCK_WAIT {
                        return Err(Error::LockTimeout { path: path.clone() });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(err) => return Err(Error::io("flock", path, err.into())),
            }
        }
    }

    fn write_single(path: &Path, edits: &[(&str, Option<&str>)]) -> Result<(), Error> {
        let (current, permissions) = match read_optional(path)? {
            Some(bytes) => (
                bytes,
                fs::metadata(path).ok().map(|meta| meta.permissions()),
            ),
            None => (
                block::empty(block::DEFAULT_SIZE).map_err(|source| Error::Block {
                    path: path.to_path_buf(),
                    source,
                })?,
                None,
            ),
        };
        let bytes = edited_block(path, &current, edits)?;
        replace_file(path, &bytes, permissions)
    }
}

/// The boot script's choice (`mender_check_and_restore_env`): if lock 2 is
/// not `editing=0`, env 1 is good; else if lock 1 is not, env 2 is good;
/// else env 1 (the one `mender_load_env` reads).
fn source_index(states: &[CopyState; 2]) -> usize {
    if !states[1].lock_clean() {
        0
    } else if !states[0].lock_clean() {
        1
    } else {
        0
    }
}

fn parse_file(path: &Path, bytes: &[u8]) -> Result<Vec<Variable>, Error> {
    block::parse(bytes).map_err(|source| Error::Block {
        path: path.to_path_buf(),
        source,
    })
}

/// Atomically replaces `path` with `bytes`: temporary file in the same
/// directory, fsync, rename, fsync of the directory.
fn replace_file(
    path: &Path,
    bytes: &[u8],
    permissions: Option<fs::Permissions>,
) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut name = path
        .file_name()
        .unwrap_or_else(|| OsStr::new("grubenv"))
        .to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|err| Error::io("create", &tmp, err))?;
        file.write_all(bytes)
            .map_err(|err| Error::io("write", &tmp, err))?;
        if let Some(permissions) = permissions {
            file.set_permissions(permissions)
                .map_err(|err| Error::io("set permissions of", &tmp, err))?;
        }
        file.sync_all()
            .map_err(|err| Error::io("fsync", &tmp, err))?;
        fs::rename(&tmp, path).map_err(|err| Error::io("rename onto", path, err))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(&dir)
}

impl otalite::board::BootEnv for GrubEnv {
    type Error = Error;

    fn read(&mut self, name: &str, value: &mut [u8]) -> Result<Option<usize>, Error> {
        let vars = self.variables()?;
        let Some(found) = block::get(&vars, name.as_bytes()) else {
            return Ok(None);
        };
        let Some(target) = value.get_mut(..found.len()) else {
            return Err(Error::ValueTooLong {
                name: name.to_owned(),
                len: found.len(),
                capacity: value.len(),
            });
        };
        target.copy_from_slice(found);
        Ok(Some(found.len()))
    }

    fn write(&mut self, vars: &[(&str, Option<&str>)]) -> Result<(), Error> {
        let _guard = self.lock_process()?;
        match &self.layout {
            Layout::Single(path) => Self::write_single(path, vars),
            Layout::Dual(copies) => {
                let steps = Self::plan(copies, vars)?;
                for step in &steps {
                    step.run()?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otalite::board::BootEnv as _;

    const OLD: [(&str, Option<&str>); 3] = [
        ("bootcount", Some("0")),
        ("mender_boot_part", Some("2")),
        ("upgrade_available", Some("0")),
    ];
    const NEW: [(&str, Option<&str>); 4] = [
        ("bootcount", Some("0")),
        ("mender_boot_part", Some("3")),
        ("upgrade_available", Some("1")),
        ("mender_boot_part_hex", Some("3")),
    ];

    fn make_layout(dir: &Path) {
        let lock = block::serialize(&[Variable::new("editing", "0")], 1024).unwrap();
        let vars: Vec<Variable> = OLD
            .iter()
            .map(|(name, value)| Variable::new(name, value.unwrap_or_default()))
            .collect();
        let env = block::serialize(&vars, 1024).unwrap();
        for n in 1..=2 {
            let copy = dir.join(format!("mender_grubenv{n}"));
            fs::create_dir_all(&copy).unwrap();
            fs::write(copy.join("env"), &env).unwrap();
            fs::write(copy.join("lock"), &lock).unwrap();
            fs::write(copy.join("lock.sha256sum"), locksum_for(&lock)).unwrap();
        }
    }

    fn snapshot(env: &mut GrubEnv) -> Vec<Option<String>> {
        [
            "bootcount",
            "mender_boot_part",
            "upgrade_available",
            "mender_boot_part_hex",
        ]
        .iter()
        .map(|name| {
            let mut buf = [0u8; 64];
            env.read(name, &mut buf)
                .unwrap()
                .map(|len| String::from_utf8(buf[..len].to_vec()).unwrap())
        })
        .collect()
    }

    fn expected(vars: &[(&str, Option<&str>)]) -> Vec<Option<String>> {
        [
            "bootcount",
            "mender_boot_part",
            "upgrade_available",
            "mender_boot_part_hex",
        ]
        .iter()
        .map(|name| {
            vars.iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.map(str::to_owned))
        })
        .collect()
    }

    /// Tears the write of `step`: half the new bytes, the rest garbage.
    fn tear(step: &Step) {
        let mut bytes = step.bytes.clone();
        let half = bytes.len() / 2;
        for (i, byte) in bytes.iter_mut().enumerate().skip(half) {
            *byte = (i as u8).wrapping_mul(37);
        }
        fs::write(&step.path, bytes).unwrap();
    }

    /// Power cut before, during and after every file write of a write: a
    /// fresh reader always sees all old or all new values, and a following
    /// write always succeeds and is read back.
    fn check_every_cut(prepare: impl Fn(&Path)) {
        let old = expected(&OLD);
        let new = expected(&NEW);
        let mut count = 0;
        for cut in 0.. {
            for torn in [false, true] {
                let tmp = tempfile::tempdir().unwrap();
                make_layout(tmp.path());
                prepare(tmp.path());
                let copies = [Copy::new(tmp.path(), 1), Copy::new(tmp.path(), 2)];
                let steps = GrubEnv::plan(&copies, &NEW).unwrap();
                count = steps.len();
                if cut > steps.len() {
                    return;
                }
                for step in steps.iter().take(cut) {
                    step.run().unwrap();
                }
                if torn {
                    if let Some(step) = steps.get(cut) {
                        tear(step);
                    }
                }
                let mut env = GrubEnv::open(tmp.path()).unwrap().with_process_lock(None);
                let seen = snapshot(&mut env);
                assert!(
                    seen == old || seen == new,
                    "cut {cut}/{count} torn {torn}: {seen:?}"
                );
                if cut == steps.len() {
                    assert_eq!(seen, new);
                }
                // Recovery: the next write succeeds and leaves both copies
                // clean and identical.
                env.write(&[("bootcount", Some("1"))]).unwrap();
                let again = snapshot(&mut env);
                assert_eq!(again[0].as_deref(), Some("1"));
                assert_eq!(
                    fs::read(&copies[0].env).unwrap(),
                    fs::read(&copies[1].env).unwrap()
                );
                for copy in &copies {
                    let state = CopyState::load(copy).unwrap();
                    assert!(state.lock_clean() && state.locksum_valid());
                }
            }
        }
        assert!(count >= 6);
    }

    #[test]
    fn every_power_cut_is_consistent_from_clean_state() {
        check_every_cut(|_| {});
    }

    #[test]
    fn every_power_cut_is_consistent_when_copy1_was_interrupted() {
        check_every_cut(|dir| {
            let copy = dir.join("mender_grubenv1");
            let lock = block::serialize(&[Variable::new("editing", "1")], 1024).unwrap();
            fs::write(copy.join("lock"), lock).unwrap();
            fs::write(copy.join("env"), b"garbage").unwrap();
        });
    }

    #[test]
    fn every_power_cut_is_consistent_when_copy2_was_interrupted() {
        check_every_cut(|dir| {
            let copy = dir.join("mender_grubenv2");
            fs::write(copy.join("lock"), b"\0\0garbage").unwrap();
            fs::remove_file(copy.join("env")).unwrap();
        });
    }

    #[test]
    fn plan_order_matches_reference() {
        let tmp = tempfile::tempdir().unwrap();
        make_layout(tmp.path());
        let copies = [Copy::new(tmp.path(), 1), Copy::new(tmp.path(), 2)];
        let steps = GrubEnv::plan(&copies, &NEW).unwrap();
        let order: Vec<_> = steps
            .iter()
            .map(|s| s.path.strip_prefix(tmp.path()).unwrap().to_path_buf())
            .collect();
        let expect: Vec<PathBuf> = [
            "mender_grubenv2/lock",
            "mender_grubenv2/env",
            "mender_grubenv2/lock",
            "mender_grubenv1/lock",
            "mender_grubenv1/env",
            "mender_grubenv1/lock",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(order, expect);
        // The clean lock is byte-identical to the original, so the existing
        // checksum stays valid and is not rewritten.
        assert_eq!(steps[2].bytes, fs::read(&copies[1].lock).unwrap());
        assert!(block::parse(&steps[0].bytes)
            .unwrap()
            .contains(&Variable::new("editing", "1")));
    }

    #[test]
    fn config_parsing() {
        assert_eq!(config_env_dir(b"ENV_DIR=/a\n"), Some(PathBuf::from("/a")));
        assert_eq!(
            config_env_dir(b"ENV_DIR  =  /a\nother=1\nENV_DIR = /b/c \n"),
            Some(PathBuf::from("/b/c "))
        );
        assert_eq!(config_env_dir(b"# ENV_DIR=/a\n ENV_DIR=/b\n"), None);
        assert_eq!(config_env_dir(b"ENV_DIR=\n"), None);
        assert_eq!(config_env_dir(b"ENV_DIRX=/a\n"), None);
    }

    #[test]
    fn locksum_formats() {
        let lock = b"lock bytes";
        let sum = hex(&Sha256::digest(lock));
        assert!(locksum_matches(format!("{sum}  lock\n").as_bytes(), lock));
        assert!(locksum_matches(
            format!("{sum}  /boot/grub/grub-mender-grubenv/mender_grubenv1/lock\n").as_bytes(),
            lock
        ));
        assert!(locksum_matches(format!("{sum} *lock").as_bytes(), lock));
        assert!(!locksum_matches(format!("{sum}  env\n").as_bytes(), lock));
        assert!(!locksum_matches(b"", lock));
        assert!(!locksum_matches(
            format!("{sum}  lock\n").as_bytes(),
            b"other"
        ));
    }
}
