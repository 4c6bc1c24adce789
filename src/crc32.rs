//! CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as used by U-Boot
//! environments, gzip and the persisted state record.
//!
//! Backed by `crc32fast`: slicing-by-16 everywhere, and with the `std`
//! feature a run-time choice of the CPU's carry-less multiply (x86
//! PCLMULQDQ, ARMv8 CRC32). The gzip trailer check runs over every inflated
//! payload byte, so this matters for install speed.

/// Incremental CRC-32 state.
#[derive(Clone, Debug, Default)]
pub struct Crc32 {
    hasher: crc32fast::Hasher,
}

impl Crc32 {
    /// A fresh CRC-32 computation.
    pub fn new() -> Self {
        Self {
            hasher: crc32fast::Hasher::new(),
        }
    }

    /// Feeds `bytes` into the checksum.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// The checksum of everything fed so far.
    pub fn finish(&self) -> u32 {
        self.hasher.clone().finalize()
    }
}

/// CRC-32 of one buffer.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        let mut incremental = Crc32::new();
        incremental.update(b"1234");
        incremental.update(b"56789");
        assert_eq!(incremental.finish(), 0xCBF4_3926);
    }
}
