//! Files: atomic replacement, bounded reads, and a file or block device as
//! a [`Partition`].

use otalite::partition::Partition;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` atomically: temp file in the same
/// directory, fsync, rename over `path`, fsync the directory. After a power
/// cut `path` holds either the old or the new content, never a mix.
///
/// # Errors
/// I/O errors; `path` is unchanged then.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_write_mode(path, bytes, None)
}

/// [`atomic_write`] with the file created in `mode` (e.g. 0600 for a
/// private key): the content is never readable with wider permissions,
/// not even in the temp file.
///
/// # Errors
/// I/O errors; `path` is unchanged then.
pub fn atomic_write_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(".tmp");
    let temp = dir.join(temp_name);
    // A stale temp file from a power cut may have another mode: start over.
    let _ = std::fs::remove_file(&temp);
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        if let Some(mode) = mode {
            options.mode(mode);
        }
        let mut file = options.open(&temp)?;
        if let Some(mode) = mode {
            // The umask can only narrow the mode; set it exactly anyway.
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Syncs a directory (a rename or removal in it survives a power cut).
///
/// # Errors
/// I/O errors.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a whole file of at most `limit` bytes.
///
/// # Errors
/// I/O errors, or `InvalidData` when the file is larger than `limit`.
pub fn read_limited(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {limit} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

/// How far ahead of a read [`FilePartition`] asks the kernel to fetch the
/// slot (`posix_fadvise(WILLNEED)`): two 1 MiB blocks.
const PREFETCH_LEN: u64 = 2 << 20;

/// A block device or regular file used as a rootfs slot.
///
/// Reads prefetch: the block writer reads each block of the slot before
/// writing it (to skip identical blocks), and on a device after boot that
/// read comes from the flash, synchronously. A read at `p` asks the kernel
/// to fetch `p..p + PREFETCH_LEN` in the background, so the next block's
/// old content arrives while the core decompresses and hashes the data
/// for it. Page cache only: no memory of the process.
#[derive(Debug)]
pub struct FilePartition {
    file: File,
    path: PathBuf,
    syncer: Option<Syncer>,
    /// End of the range already advised for prefetching.
    prefetched_to: u64,
}

/// A thread that runs `fdatasync` on request, so the wait overlaps the next
/// block's work. At most one request is outstanding: a new one first waits
/// for the previous result, which bounds the unsynced data to two blocks.
#[derive(Debug)]
struct Syncer {
    requests: std::sync::mpsc::SyncSender<()>,
    results: std::sync::mpsc::Receiver<io::Result<()>>,
    outstanding: bool,
}

impl Syncer {
    fn start(file: &File) -> io::Result<Self> {
        let file = file.try_clone()?;
        let (requests, incoming) = std::sync::mpsc::sync_channel::<()>(1);
        let (reply, results) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("otalite-sync".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                // Ends when the partition (the sender) is dropped.
                while incoming.recv().is_ok() {
                    if reply.send(file.sync_data()).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            requests,
            results,
            outstanding: false,
        })
    }

    /// Waits for the outstanding request, if any, and returns its result.
    fn wait(&mut self) -> io::Result<()> {
        if !std::mem::take(&mut self.outstanding) {
            return Ok(());
        }
        self.results
            .recv()
            .map_err(|_| io::Error::other("the sync thread stopped"))?
    }

    fn request(&mut self) -> io::Result<()> {
        self.wait()?;
        self.requests
            .send(())
            .map_err(|_| io::Error::other("the sync thread stopped"))?;
        self.outstanding = true;
        Ok(())
    }
}

impl FilePartition {
    /// Opens the slot for reading and writing (never creates or truncates).
    ///
    /// # Errors
    /// I/O errors, with the path in the message.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("cannot open partition {}: {error}", path.display()),
                )
            })?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            syncer: None,
            prefetched_to: 0,
        })
    }

    /// The slot's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl embedded_io::ErrorType for FilePartition {
    type Error = io::Error;
}

impl FilePartition {
    /// Advises the kernel to read `position..position + PREFETCH_LEN`
    /// ahead (the part not advised yet). Advice only: errors are ignored.
    fn prefetch(&mut self, position: u64) {
        let end = position.saturating_add(PREFETCH_LEN);
        let start = position.max(self.prefetched_to);
        if start >= end {
            return;
        }
        // Not yet advised this far: advise in block-sized steps, so the
        // syscall runs about once per block.
        if end - start < PREFETCH_LEN / 2 && self.prefetched_to > position {
            return;
        }
        if let Some(len) = core::num::NonZeroU64::new(end - start) {
            let _ = rustix::fs::fadvise(&self.file, start, Some(len), rustix::fs::Advice::WillNeed);
        }
        self.prefetched_to = end;
    }
}

impl embedded_io::Read for FilePartition {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Ok(position) = self.file.stream_position() {
            self.prefetch(position);
        }
        self.file.read(buf)
    }
}

impl embedded_io::Write for FilePartition {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl embedded_io::Seek for FilePartition {
    fn seek(&mut self, pos: embedded_io::SeekFrom) -> io::Result<u64> {
        self.file.seek(pos.into())
    }
}

impl Partition for FilePartition {
    fn capacity(&mut self) -> io::Result<u64> {
        // For block devices the metadata length is 0; seeking to the end
        // gives the device size for both kinds.
        self.file.seek(io::SeekFrom::End(0))
    }

    fn sync(&mut self) -> io::Result<()> {
        if let Some(syncer) = &mut self.syncer {
            syncer.wait()?;
        }
        self.file.sync_data()
    }

    fn sync_background(&mut self) -> io::Result<()> {
        if self.syncer.is_none() {
            match Syncer::start(&self.file) {
                Ok(syncer) => self.syncer = Some(syncer),
                // No thread available: sync in the foreground instead.
                Err(_) => return self.file.sync_data(),
            }
        }
        match &mut self.syncer {
            Some(syncer) => syncer.request(),
            None => self.file.sync_data(),
        }
    }
}

/// Adapts any `std::io::Read` to `embedded_io::Read`.
#[derive(Debug)]
pub struct StdRead<R>(pub R);

impl<R> embedded_io::ErrorType for StdRead<R> {
    type Error = io::Error;
}

impl<R: Read> embedded_io::Read for StdRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}
