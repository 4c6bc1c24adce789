//! Writing an image into the inactive slot, the way the reference client
//! does: aligned blocks (1 MiB on Linux), each block compared with what the
//! slot already holds and skipped when identical (flash wear: re-installing
//! the same image writes nothing), durable after every written block, and
//! never past the end of the slot.

use embedded_io::{ErrorType, Read, Seek, SeekFrom, Write};

/// A slot (block device, file, flash region) that can be read back,
/// written and made durable.
pub trait Partition: Read + Write + Seek {
    /// Size of the slot in bytes.
    ///
    /// # Errors
    /// Storage errors.
    fn capacity(&mut self) -> Result<u64, Self::Error>;

    /// Makes every written byte durable (fsync). Until it returns, a power
    /// cut may lose or tear the last writes.
    ///
    /// # Errors
    /// Storage errors.
    fn sync(&mut self) -> Result<(), Self::Error>;

    /// Starts making the bytes written so far durable and may return before
    /// they are. Called after every block to bound the amount of unsynced
    /// data; [`Partition::sync`] is still called once at the end, before
    /// anything is activated. The default waits ([`Partition::sync`]); a host
    /// may overlap the wait with the next block's decompression.
    ///
    /// # Errors
    /// Storage errors (possibly of an earlier background sync).
    fn sync_background(&mut self) -> Result<(), Self::Error> {
        self.sync()
    }
}

/// Why writing the slot failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum WriteError<E> {
    /// The image (bytes) is larger than the slot (bytes).
    ImageTooLarge {
        /// Image size.
        image: u64,
        /// Slot capacity.
        capacity: u64,
    },
    /// More data arrived than the image size announced.
    Overrun,
    /// Fewer bytes arrived than the image size announced.
    Underrun,
    /// The slot ended while reading it back.
    UnexpectedEof,
    /// Block and compare buffers are unusable (empty block buffer).
    BufferTooSmall {
        /// Bytes needed at least.
        required: usize,
    },
    /// The storage failed.
    Storage(E),
}

impl<E: core::fmt::Display> core::fmt::Display for WriteError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::ImageTooLarge { image, capacity } => write!(
                f,
                "the image ({image} bytes) is larger than the inactive partition ({capacity} bytes)"
            ),
            Self::Overrun => f.write_str("more payload data than the image size announced"),
            Self::Underrun => f.write_str("less payload data than the image size announced"),
            Self::UnexpectedEof => f.write_str("the partition ended while reading it back"),
            Self::BufferTooSmall { required } => write!(f, "block buffer needs {required} bytes"),
            Self::Storage(error) => write!(f, "partition I/O error: {error}"),
        }
    }
}

impl<E: core::fmt::Debug + core::fmt::Display> core::error::Error for WriteError<E> {}

/// What a finished image write did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Image bytes accepted.
    pub bytes: u64,
    /// Blocks written (different from the slot's content).
    pub blocks_written: u64,
    /// Blocks skipped because the slot already held the same bytes.
    pub blocks_skipped: u64,
}

/// Streams an image into a [`Partition`] in blocks of `block.len()` bytes.
///
/// The caller owns both buffers: `block` stages one block (1 MiB on Linux,
/// matching the reference client's sync interval), `compare` (any non-zero
/// size) reads the slot back to detect identical blocks.
pub struct BlockWriter<'b> {
    block: &'b mut [u8],
    compare: &'b mut [u8],
    filled: usize,
    block_offset: u64,
    image_size: u64,
    stats: WriteStats,
}

impl<'b> BlockWriter<'b> {
    /// A writer with caller-owned buffers.
    ///
    /// # Errors
    /// [`WriteError::BufferTooSmall`] when either buffer is empty.
    pub fn new<E>(block: &'b mut [u8], compare: &'b mut [u8]) -> Result<Self, WriteError<E>> {
        if block.is_empty() || compare.is_empty() {
            return Err(WriteError::BufferTooSmall { required: 1 });
        }
        Ok(Self {
            block,
            compare,
            filled: 0,
            block_offset: 0,
            image_size: 0,
            stats: WriteStats::default(),
        })
    }

    /// Starts an image of `image_size` bytes at offset 0 of `partition`.
    ///
    /// # Errors
    /// [`WriteError::ImageTooLarge`] before anything is written, or storage
    /// errors.
    pub fn begin<P: Partition>(
        &mut self,
        partition: &mut P,
        image_size: u64,
    ) -> Result<(), WriteError<P::Error>> {
        let capacity = partition.capacity().map_err(WriteError::Storage)?;
        if image_size > capacity {
            return Err(WriteError::ImageTooLarge {
                image: image_size,
                capacity,
            });
        }
        self.filled = 0;
        self.block_offset = 0;
        self.image_size = image_size;
        self.stats = WriteStats::default();
        Ok(())
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.stats.bytes
    }

    /// Accepts the next image bytes; full blocks go to the slot.
    ///
    /// # Errors
    /// [`WriteError::Overrun`] past the announced size, or storage errors.
    pub fn write<P: Partition>(
        &mut self,
        partition: &mut P,
        mut data: &[u8],
    ) -> Result<(), WriteError<P::Error>> {
        let len = u64::try_from(data.len()).map_err(|_| WriteError::Overrun)?;
        let new_total = self
            .stats
            .bytes
            .checked_add(len)
            .ok_or(WriteError::Overrun)?;
        if new_total > self.image_size {
            return Err(WriteError::Overrun);
        }
        while !data.is_empty() {
            let space = self.block.len().saturating_sub(self.filled);
            let take = space.min(data.len());
            let (head, tail) = data.split_at(take);
            if let Some(target) = self.block.get_mut(self.filled..self.filled + take) {
                target.copy_from_slice(head);
            }
            self.filled += take;
            data = tail;
            if self.filled == self.block.len() {
                self.flush_block(partition)?;
            }
        }
        self.stats.bytes = new_total;
        Ok(())
    }

    /// Writes the last partial block and syncs.
    ///
    /// # Errors
    /// [`WriteError::Underrun`] if fewer bytes than announced arrived, or
    /// storage errors.
    pub fn finish<P: Partition>(
        &mut self,
        partition: &mut P,
    ) -> Result<WriteStats, WriteError<P::Error>> {
        if self.stats.bytes != self.image_size {
            return Err(WriteError::Underrun);
        }
        if self.filled > 0 {
            self.flush_block(partition)?;
        }
        partition.sync().map_err(WriteError::Storage)?;
        Ok(self.stats)
    }

    fn flush_block<P: Partition>(&mut self, partition: &mut P) -> Result<(), WriteError<P::Error>> {
        let filled = self.filled;
        let block = self.block.get(..filled).unwrap_or_default();
        if slot_holds(partition, self.block_offset, block, self.compare)? {
            self.stats.blocks_skipped += 1;
        } else {
            partition
                .seek(SeekFrom::Start(self.block_offset))
                .map_err(WriteError::Storage)?;
            partition.write_all(block).map_err(WriteError::Storage)?;
            partition.sync_background().map_err(WriteError::Storage)?;
            self.stats.blocks_written += 1;
        }
        self.block_offset += filled as u64;
        self.filled = 0;
        Ok(())
    }
}

/// Reads the slot at `offset` and compares it with `block`.
fn slot_holds<P: Partition>(
    partition: &mut P,
    offset: u64,
    block: &[u8],
    compare: &mut [u8],
) -> Result<bool, WriteError<P::Error>> {
    {
        partition
            .seek(SeekFrom::Start(offset))
            .map_err(WriteError::Storage)?;
        for expected in block.chunks(compare.len()) {
            let buffer = compare.get_mut(..expected.len()).unwrap_or_default();
            let mut got = 0;
            while got < buffer.len() {
                let n = partition
                    .read(buffer.get_mut(got..).unwrap_or_default())
                    .map_err(WriteError::Storage)?;
                if n == 0 {
                    return Err(WriteError::UnexpectedEof);
                }
                got += n;
            }
            if buffer != expected {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl<P: Partition + ?Sized> Partition for &mut P {
    fn capacity(&mut self) -> Result<u64, Self::Error> {
        (**self).capacity()
    }
    fn sync(&mut self) -> Result<(), Self::Error> {
        (**self).sync()
    }
    fn sync_background(&mut self) -> Result<(), Self::Error> {
        (**self).sync_background()
    }
}

/// Error type alias helper for partitions.
pub type PartitionError<P> = <P as ErrorType>::Error;
