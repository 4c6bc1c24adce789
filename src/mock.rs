//! Test doubles (private feature `_test`, semver-exempt): an in-memory
//! slot and boot environment that can simulate a power cut after a number
//! of written bytes, for host-side power-loss tests.

use crate::board::BootEnv;
use crate::partition::Partition;
use embedded_io::{ErrorKind, ErrorType, Read, Seek, SeekFrom, Write};

/// Errors of the mocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MockError {
    /// The simulated power cut happened.
    EarlyShutoff,
    /// Access past the end of the slot.
    OutOfBounds,
    /// A boot env value does not fit.
    TooLong,
}

impl core::fmt::Display for MockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::EarlyShutoff => f.write_str("simulated power cut"),
            Self::OutOfBounds => f.write_str("access past the end of the slot"),
            Self::TooLong => f.write_str("value too long"),
        }
    }
}

impl core::error::Error for MockError {}

impl embedded_io::Error for MockError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// An in-memory slot of `N` bytes.
pub struct MemPartition<const N: usize> {
    /// The slot's bytes.
    pub bytes: [u8; N],
    position: usize,
    /// Bytes that may still be written before the simulated power cut.
    pub bytes_until_shutoff: Option<usize>,
    /// Bytes written so far.
    pub bytes_written: usize,
    /// `sync` calls so far.
    pub syncs: usize,
}

impl<const N: usize> Default for MemPartition<N> {
    fn default() -> Self {
        Self {
            bytes: [0; N],
            position: 0,
            bytes_until_shutoff: None,
            bytes_written: 0,
            syncs: 0,
        }
    }
}

impl<const N: usize> ErrorType for MemPartition<N> {
    type Error = MockError;
}

impl<const N: usize> Read for MemPartition<N> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, MockError> {
        let available = self.bytes.get(self.position..).unwrap_or_default();
        let n = available.len().min(buf.len());
        buf.get_mut(..n)
            .ok_or(MockError::OutOfBounds)?
            .copy_from_slice(available.get(..n).unwrap_or_default());
        self.position += n;
        Ok(n)
    }
}

impl<const N: usize> Write for MemPartition<N> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, MockError> {
        let mut n = buf.len();
        if let Some(left) = self.bytes_until_shutoff {
            if left == 0 {
                return Err(MockError::EarlyShutoff);
            }
            n = n.min(left);
            self.bytes_until_shutoff = Some(left - n);
        }
        let target = self
            .bytes
            .get_mut(self.position..self.position + n)
            .ok_or(MockError::OutOfBounds)?;
        target.copy_from_slice(buf.get(..n).unwrap_or_default());
        self.position += n;
        self.bytes_written += n;
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), MockError> {
        Ok(())
    }
}

impl<const N: usize> Seek for MemPartition<N> {
    fn seek(&mut self, pos: SeekFrom) -> Result<u64, MockError> {
        let target = match pos {
            SeekFrom::Start(offset) => i128::from(offset),
            SeekFrom::End(delta) => N as i128 + i128::from(delta),
            SeekFrom::Current(delta) => self.position as i128 + i128::from(delta),
        };
        if !(0..=N as i128).contains(&target) {
            return Err(MockError::OutOfBounds);
        }
        self.position = target as usize;
        Ok(self.position as u64)
    }
}

impl<const N: usize> Partition for MemPartition<N> {
    fn capacity(&mut self) -> Result<u64, MockError> {
        Ok(N as u64)
    }

    fn sync(&mut self) -> Result<(), MockError> {
        self.syncs += 1;
        Ok(())
    }
}

/// Most variables the mock environment holds.
pub const MOCK_ENV_VARS: usize = 16;

/// An in-memory boot environment whose writes are atomic, with an optional
/// failure of the next write.
#[derive(Default)]
pub struct MemBootEnv {
    vars: heapless::Vec<(heapless::String<32>, heapless::String<32>), MOCK_ENV_VARS>,
    /// Fail the next write without changing anything.
    pub fail_next_write: bool,
    /// Completed writes.
    pub writes: usize,
}

impl MemBootEnv {
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl BootEnv for MemBootEnv {
    type Error = MockError;

    fn read(&mut self, name: &str, value: &mut [u8]) -> Result<Option<usize>, MockError> {
        let Some(found) = self.get(name) else {
            return Ok(None);
        };
        let target = value.get_mut(..found.len()).ok_or(MockError::TooLong)?;
        target.copy_from_slice(found.as_bytes());
        Ok(Some(found.len()))
    }

    fn write(&mut self, vars: &[(&str, Option<&str>)]) -> Result<(), MockError> {
        if core::mem::take(&mut self.fail_next_write) {
            return Err(MockError::EarlyShutoff);
        }
        let mut next = self.vars.clone();
        for (name, value) in vars {
            next.retain(|(key, _)| key != name);
            if let Some(value) = value {
                let key = heapless::String::try_from(*name).map_err(|_| MockError::TooLong)?;
                let value = heapless::String::try_from(*value).map_err(|_| MockError::TooLong)?;
                next.push((key, value)).map_err(|_| MockError::TooLong)?;
            }
        }
        self.vars = next;
        self.writes += 1;
        Ok(())
    }
}
