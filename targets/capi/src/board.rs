//! The C callbacks as the core's traits: `otalite_slot` as a
//! `Partition`, `otalite_install_hooks` as `InstallHooks`. Calling an
//! `extern "C" fn` pointer is safe Rust; what the callback does with the
//! pointers it gets is the C side's contract (documented on the types).

use crate::types::{otalite_install_hooks, otalite_slot, otalite_str};
use otalite::artifact::ArtifactHeader;
use otalite::install::InstallHooks;
use otalite::partition::Partition;

/// A callback returned this non-zero value (or was missing: -1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CallbackError(pub(crate) i32);

impl core::fmt::Display for CallbackError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 == MISSING {
            f.write_str("a slot callback is missing")
        } else if self.0 == NO_PROGRESS {
            f.write_str("the slot write callback wrote nothing")
        } else {
            write!(f, "slot callback failed with {}", self.0)
        }
    }
}

impl core::error::Error for CallbackError {}

impl embedded_io::Error for CallbackError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

const MISSING: i32 = -1;
const NO_PROGRESS: i32 = -2;

fn check(code: i32) -> Result<(), CallbackError> {
    match code {
        0 => Ok(()),
        code => Err(CallbackError(code)),
    }
}

/// `otalite_slot` as a `Partition`.
pub(crate) struct CSlot(pub(crate) otalite_slot);

impl embedded_io::ErrorType for CSlot {
    type Error = CallbackError;
}

impl embedded_io::Read for CSlot {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, CallbackError> {
        let read = self.0.read.ok_or(CallbackError(MISSING))?;
        let mut count = 0usize;
        check(read(self.0.ctx, buf.as_mut_ptr(), buf.len(), &mut count))?;
        // A callback claiming more than it was given is a broken callback.
        Ok(count.min(buf.len()))
    }
}

impl embedded_io::Write for CSlot {
    fn write(&mut self, buf: &[u8]) -> Result<usize, CallbackError> {
        let write = self.0.write.ok_or(CallbackError(MISSING))?;
        let mut count = 0usize;
        check(write(self.0.ctx, buf.as_ptr(), buf.len(), &mut count))?;
        if count == 0 && !buf.is_empty() {
            return Err(CallbackError(NO_PROGRESS));
        }
        Ok(count.min(buf.len()))
    }

    fn flush(&mut self) -> Result<(), CallbackError> {
        Ok(())
    }
}

impl embedded_io::Seek for CSlot {
    fn seek(&mut self, pos: embedded_io::SeekFrom) -> Result<u64, CallbackError> {
        let seek = self.0.seek.ok_or(CallbackError(MISSING))?;
        let (offset, whence) = match pos {
            embedded_io::SeekFrom::Start(at) => {
                (i64::try_from(at).map_err(|_| CallbackError(MISSING))?, 0)
            }
            embedded_io::SeekFrom::Current(at) => (at, 1),
            embedded_io::SeekFrom::End(at) => (at, 2),
        };
        let mut position = 0u64;
        check(seek(self.0.ctx, offset, whence, &mut position))?;
        Ok(position)
    }
}

impl Partition for CSlot {
    fn capacity(&mut self) -> Result<u64, CallbackError> {
        let capacity = self.0.capacity.ok_or(CallbackError(MISSING))?;
        let mut bytes = 0u64;
        check(capacity(self.0.ctx, &mut bytes))?;
        Ok(bytes)
    }

    fn sync(&mut self) -> Result<(), CallbackError> {
        let sync = self.0.sync.ok_or(CallbackError(MISSING))?;
        check(sync(self.0.ctx))
    }
}

/// Why an install hook refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HookError(i32);

impl core::fmt::Display for HookError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "an install callback refused with {}", self.0)
    }
}

/// `otalite_install_hooks` (or none) as `InstallHooks`.
pub(crate) struct CHooks(pub(crate) Option<otalite_install_hooks>);

fn hook(code: i32) -> Result<(), HookError> {
    match code {
        0 => Ok(()),
        code => Err(HookError(code)),
    }
}

impl InstallHooks for CHooks {
    type Error = HookError;

    fn header_accepted(&mut self, header: &ArtifactHeader) -> Result<(), HookError> {
        match self.0 {
            Some(hooks) => match hooks.header_accepted {
                Some(f) => hook(f(hooks.ctx, otalite_str::new(&header.artifact_name))),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    fn script_start(&mut self, name: &str, size: u64) -> Result<(), HookError> {
        match self.0.and_then(|h| h.script_start.map(|f| (h.ctx, f))) {
            Some((ctx, f)) => hook(f(ctx, otalite_str::new(name), size)),
            None => Ok(()),
        }
    }

    fn script_data(&mut self, data: &[u8]) -> Result<(), HookError> {
        match self.0.and_then(|h| h.script_data.map(|f| (h.ctx, f))) {
            Some((ctx, f)) => hook(f(ctx, data.as_ptr(), data.len())),
            None => Ok(()),
        }
    }

    fn script_end(&mut self) -> Result<(), HookError> {
        match self.0.and_then(|h| h.script_end.map(|f| (h.ctx, f))) {
            Some((ctx, f)) => hook(f(ctx)),
            None => Ok(()),
        }
    }

    fn progress(&mut self, written: u64, total: u64) {
        if let Some((ctx, f)) = self.0.and_then(|h| h.progress.map(|f| (h.ctx, f))) {
            f(ctx, written, total);
        }
    }
}
