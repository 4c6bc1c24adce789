//! Which rootfs slot is running, as the reference client decides it
//! (`installer/partitions.go`), with one deliberate difference noted below.
//!
//! 1. The device mounted on `/` (from `/proc/self/mounts`, with `/dev/root`
//!    and `/dev/disk/by-*` links resolved) is the active slot if it is a
//!    block device whose `st_rdev` equals `st_dev` of `/`.
//! 2. Otherwise a node under `/dev` with that `st_rdev`.
//! 3. Otherwise the bootloader's `mender_boot_part` picks the slot.
//!
//! Difference: when step 1 or 2 finds a root device that is *neither*
//! `RootfsPartA` nor `RootfsPartB` (a recovery or network root, or a
//! development machine with file-backed slots), the reference stops with
//! an error; otalite logs a warning and uses `mender_boot_part`. Writing the
//! slot the bootloader does not boot next is safe in either case.

use otalite::board::PartNumber;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The two rootfs slots from `RootfsPartA` / `RootfsPartB`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotLayout {
    /// Slot A's device or file.
    pub a: PathBuf,
    /// Slot B's device or file.
    pub b: PathBuf,
    /// Slot A's partition number (trailing digits of its path).
    pub a_part: PartNumber,
    /// Slot B's partition number.
    pub b_part: PartNumber,
}

/// How the active slot was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// The running root device is this slot's device.
    RootDevice,
    /// From `mender_boot_part` (no root device matched a slot).
    BootEnv,
}

/// The running slot and the one to install into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveSlot {
    /// Partition number of the running slot.
    pub active_part: PartNumber,
    /// Path of the inactive slot.
    pub inactive: PathBuf,
    /// Partition number of the inactive slot.
    pub inactive_part: PartNumber,
    /// How `active_part` was found.
    pub evidence: Evidence,
}

/// Why the slots could not be determined.
#[derive(Debug, PartialEq, Eq)]
pub enum SlotError {
    /// `RootfsPartA` or `RootfsPartB` is not configured.
    NotConfigured,
    /// A slot path does not end in a partition number.
    NoPartitionNumber(PathBuf),
    /// Both slots have the same partition number.
    SameNumber,
    /// `mender_boot_part` is unset or matches neither slot.
    BootPartUnknown(Option<PartNumber>),
}

impl std::fmt::Display for SlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotConfigured => f.write_str(
                "RootfsPartA and RootfsPartB must be set in mender.conf to install a rootfs-image",
            ),
            Self::NoPartitionNumber(path) => {
                write!(f, "partition {} does not end in a partition number", path.display())
            }
            Self::SameNumber => f.write_str("RootfsPartA and RootfsPartB have the same partition number"),
            Self::BootPartUnknown(Some(part)) => write!(
                f,
                "mender_boot_part={part} in the boot environment matches neither RootfsPartA nor RootfsPartB"
            ),
            Self::BootPartUnknown(None) => f.write_str(
                "cannot tell the active partition: the root device is neither slot and mender_boot_part is not set",
            ),
        }
    }
}

impl std::error::Error for SlotError {}

/// Trailing decimal digits of a device path: `/dev/mmcblk0p3` -> 3.
pub fn partition_number(path: &Path) -> Option<PartNumber> {
    let text = path.to_str()?;
    let digits = text.len() - text.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    text.get(text.len() - digits..)?.parse().ok()
}

impl SlotLayout {
    /// Builds the layout from the configured paths.
    ///
    /// # Errors
    /// See [`SlotError`].
    pub fn new(a: Option<&str>, b: Option<&str>) -> Result<Self, SlotError> {
        let (Some(a), Some(b)) = (a, b) else {
            return Err(SlotError::NotConfigured);
        };
        let (a, b) = (PathBuf::from(a), PathBuf::from(b));
        let a_part = partition_number(&a).ok_or_else(|| SlotError::NoPartitionNumber(a.clone()))?;
        let b_part = partition_number(&b).ok_or_else(|| SlotError::NoPartitionNumber(b.clone()))?;
        if a_part == b_part {
            return Err(SlotError::SameNumber);
        }
        Ok(Self {
            a,
            b,
            a_part,
            b_part,
        })
    }

    /// The path of the slot with partition number `part`.
    pub fn path_of(&self, part: PartNumber) -> Option<&Path> {
        if part == self.a_part {
            Some(&self.a)
        } else if part == self.b_part {
            Some(&self.b)
        } else {
            None
        }
    }

    /// The other slot's number.
    pub fn other(&self, part: PartNumber) -> PartNumber {
        if part == self.a_part {
            self.b_part
        } else {
            self.a_part
        }
    }

    /// Finds the running slot; `boot_part` is `mender_boot_part`.
    ///
    /// # Errors
    /// See [`SlotError`].
    pub fn detect(&self, boot_part: Option<PartNumber>) -> Result<ActiveSlot, SlotError> {
        let from_root = root_device().and_then(|device| self.slot_of_device(&device));
        let (active_part, evidence) = match from_root {
            Some(part) => (part, Evidence::RootDevice),
            None => match boot_part.filter(|part| self.path_of(*part).is_some()) {
                Some(part) => (part, Evidence::BootEnv),
                None => return Err(SlotError::BootPartUnknown(boot_part)),
            },
        };
        let inactive_part = self.other(active_part);
        let inactive = self
            .path_of(inactive_part)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Ok(ActiveSlot {
            active_part,
            inactive,
            inactive_part,
            evidence,
        })
    }

    fn slot_of_device(&self, device: &Path) -> Option<PartNumber> {
        let device = canonical(device);
        if device == canonical(&self.a) {
            Some(self.a_part)
        } else if device == canonical(&self.b) {
            Some(self.b_part)
        } else {
            log::warn!(
                "the root filesystem is on {}, which is neither RootfsPartA nor RootfsPartB; using mender_boot_part",
                device.display()
            );
            None
        }
    }
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The block device holding `/`, if one can be identified.
fn root_device() -> Option<PathBuf> {
    let root_dev = std::fs::metadata("/").ok()?.dev();
    let matches = |path: &Path| {
        std::fs::metadata(path)
            .is_ok_and(|meta| meta.file_type().is_block_device() && meta.rdev() == root_dev)
    };
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut mounted = mounts.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let device = fields.next()?;
        (fields.next()? == "/").then(|| PathBuf::from(device))
    });
    if let Some(device) = mounted.next_back() {
        let resolved = canonical(&device);
        if matches(&resolved) {
            return Some(resolved);
        }
    }
    std::fs::read_dir("/dev")
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| matches(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(partition_number(Path::new("/dev/mmcblk0p3")), Some(3));
        assert_eq!(partition_number(Path::new("/dev/sda10")), Some(10));
        assert_eq!(partition_number(Path::new("/dev/root")), None);
    }

    #[test]
    fn layout_and_fallback() {
        let layout = SlotLayout::new(Some("/nonexistent/p2"), Some("/nonexistent/p3")).unwrap();
        assert_eq!(layout.other(2), 3);
        let active = layout.detect(Some(3)).unwrap();
        assert_eq!((active.active_part, active.inactive_part), (3, 2));
        assert_eq!(active.evidence, Evidence::BootEnv);
        assert_eq!(
            layout.detect(Some(7)),
            Err(SlotError::BootPartUnknown(Some(7)))
        );
        assert_eq!(
            SlotLayout::new(None, Some("/a3")),
            Err(SlotError::NotConfigured)
        );
    }
}
