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
//!
//! Before a byte is written, [`SlotLayout::check_install_target`] compares
//! what the paths *resolve to*, not their spelling: a symlink, a hard link
//! or a second device node (same major/minor) naming the running slot, the
//! mounted root's device, or the whole disk holding it, is refused.

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
    /// The slot to install into is the running slot under another name
    /// (symlink, hard link, second device node).
    SameAsRunning {
        /// The path that would have been written.
        target: PathBuf,
        /// The running slot's configured path.
        running: PathBuf,
    },
    /// The slot to install into is (or contains) the device of the
    /// mounted root filesystem.
    RunningRoot {
        /// The path that would have been written.
        target: PathBuf,
        /// `major:minor` of the root device it matches.
        device: String,
        /// The whole disk holding the root partition rather than the
        /// partition itself.
        whole_disk: bool,
    },
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
            Self::SameAsRunning { target, running } => write!(
                f,
                "refusing to install: the inactive slot {} is the running slot {} under another name \
                 (symlink, hard link or second device node); fix RootfsPartA/RootfsPartB in mender.conf",
                target.display(),
                running.display()
            ),
            Self::RunningRoot {
                target,
                device,
                whole_disk: false,
            } => write!(
                f,
                "refusing to install: the inactive slot {} is device {device}, which holds the \
                 mounted root filesystem; fix RootfsPartA/RootfsPartB in mender.conf",
                target.display()
            ),
            Self::RunningRoot {
                target,
                device,
                whole_disk: true,
            } => write!(
                f,
                "refusing to install: the inactive slot {} is the whole disk {device} holding the \
                 mounted root filesystem; fix RootfsPartA/RootfsPartB in mender.conf",
                target.display()
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

    /// Refuses to install into `active.inactive` when it resolves to the
    /// running slot (device and inode for files, major/minor for device
    /// nodes, through symlinks), to the mounted root's device, or to the
    /// whole disk holding it. Call before opening the slot for writing.
    ///
    /// # Errors
    /// [`SlotError::SameAsRunning`], [`SlotError::RunningRoot`].
    pub fn check_install_target(&self, active: &ActiveSlot) -> Result<(), SlotError> {
        let target = &active.inactive;
        let Some(target_id) = identity(target) else {
            // Missing or unreadable: opening it reports the error.
            return Ok(());
        };
        if let Some(running) = self.path_of(active.active_part) {
            if identity(running) == Some(target_id) {
                return Err(SlotError::SameAsRunning {
                    target: target.clone(),
                    running: running.to_path_buf(),
                });
            }
        }
        refuse_root_device(target)
    }

    fn slot_of_device(&self, device: &Path) -> Option<PartNumber> {
        let device_id = identity(device);
        let device = canonical(device);
        let same = |slot: &Path| {
            device == canonical(slot) || (device_id.is_some() && identity(slot) == device_id)
        };
        if same(&self.a) {
            Some(self.a_part)
        } else if same(&self.b) {
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

/// What a path resolves to, following symlinks: a device node by its
/// device number, anything else by device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Identity {
    /// A block or character device node with this `st_rdev`.
    Device(u64),
    /// A file (or directory) with this `st_dev` and `st_ino`.
    File(u64, u64),
}

fn identity(path: &Path) -> Option<Identity> {
    let meta = std::fs::metadata(path).ok()?;
    let kind = meta.file_type();
    Some(if kind.is_block_device() || kind.is_char_device() {
        Identity::Device(meta.rdev())
    } else {
        Identity::File(meta.dev(), meta.ino())
    })
}

fn major_minor(device: u64) -> String {
    // glibc's gnu_dev_major / gnu_dev_minor.
    let major = ((device >> 32) & 0xffff_f000) | ((device >> 8) & 0xfff);
    let minor = ((device >> 12) & 0xffff_ff00) | (device & 0xff);
    format!("{major}:{minor}")
}

/// The whole disk holding partition `device` (from
/// `/sys/dev/block/M:m/../dev`), if `device` is a partition.
fn parent_disk(device: u64) -> Option<u64> {
    let sys = PathBuf::from(format!("/sys/dev/block/{}", major_minor(device)));
    std::fs::metadata(sys.join("partition")).ok()?;
    let parent = std::fs::read_to_string(sys.join("../dev")).ok()?;
    let (major, minor) = parent.trim().split_once(':')?;
    let (major, minor): (u64, u64) = (major.parse().ok()?, minor.parse().ok()?);
    Some(
        ((major & 0xffff_f000) << 32)
            | ((major & 0xfff) << 8)
            | ((minor & 0xffff_ff00) << 12)
            | (minor & 0xff),
    )
}

/// Refuses `target` when it is a device node of the mounted root
/// filesystem (`st_dev` of `/`, or the block device `/proc/self/mounts`
/// names for `/`) or of the whole disk holding it. Only reads metadata.
///
/// # Errors
/// [`SlotError::RunningRoot`].
pub fn refuse_root_device(target: &Path) -> Result<(), SlotError> {
    let Some(Identity::Device(target_dev)) = identity(target) else {
        return Ok(());
    };
    let mut roots: Vec<u64> = Vec::new();
    if let Ok(meta) = std::fs::metadata("/") {
        roots.push(meta.dev());
    }
    if let Some(Identity::Device(rdev)) = root_device().and_then(|d| identity(&d)) {
        roots.push(rdev);
    }
    if roots.contains(&target_dev) {
        return Err(SlotError::RunningRoot {
            target: target.to_path_buf(),
            device: major_minor(target_dev),
            whole_disk: false,
        });
    }
    if roots
        .iter()
        .filter_map(|&root| parent_disk(root))
        .any(|disk| disk == target_dev)
    {
        return Err(SlotError::RunningRoot {
            target: target.to_path_buf(),
            device: major_minor(target_dev),
            whole_disk: true,
        });
    }
    Ok(())
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
    fn device_numbers() {
        // 254:0 (virtio disk) and a large minor, as glibc's makedev packs them.
        assert_eq!(major_minor(0xfe00), "254:0");
        assert_eq!(major_minor(0x0010_0103), "1:259");
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
