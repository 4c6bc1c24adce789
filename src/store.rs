//! The persisted state record: what is installed and which update step the
//! device is in. One record, written atomically by the host (temp file,
//! fsync, rename, fsync directory) before the action it announces.
//!
//! On-disk format (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `OTAS` |
//! | 4 | 2 | format version ([`RECORD_VERSION`]) |
//! | 6 | 2 | reserved, 0 |
//! | 8 | 4 | body length `n` |
//! | 12 | n | body: [`StateRecord`], postcard-encoded |
//! | 12 + n | 4 | CRC-32 of bytes `0 .. 12 + n` |
//!
//! Update steps (standalone mode):
//!
//! | step | persisted when | after a power cut the next run does |
//! |---|---|---|
//! | `Idle` | nothing in progress | nothing |
//! | `Installed` | payload fully written and verified, *before* the boot env is switched | if the env shows the trial (`upgrade_available=1`, `mender_boot_part` = trial): wait for `commit` / `rollback`; else the switch never happened or the bootloader fell back: back to `Idle` |
//! | `Committing` | `commit` decided, before `upgrade_available=0` | finishes the commit (idempotent) and stores the new provides |
//! | `RollingBack` | `rollback` decided, before the env points back | finishes the rollback (idempotent) |
//! | `Downloading`, `Rebooting`, `Reporting`, `RollbackRebooting` | managed mode only | see [`crate::agent`] |

use crate::board::PartNumber;
use crate::crc32::crc32;
use crate::device::Provides;

/// The record's magic bytes.
pub const RECORD_MAGIC: [u8; 4] = *b"OTAS";
/// The record format version this build writes and reads.
pub const RECORD_VERSION: u16 = 1;
/// Largest encoded record (header, body and CRC).
pub const MAX_RECORD_LEN: usize = 16 * 1024;
const HEADER_LEN: usize = 12;
const CRC_LEN: usize = 4;

/// Longest deployment id kept (the server uses 36-character UUIDs).
pub const MAX_DEPLOYMENT_ID_LEN: usize = 64;

/// A deployment id from the server.
pub type DeploymentId = heapless::String<MAX_DEPLOYMENT_ID_LEN>;

/// A deployment being downloaded (managed mode).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Downloading {
    /// The server's deployment id.
    pub deployment_id: DeploymentId,
    /// The artifact the server announced.
    pub artifact_name: crate::device::Name,
}

/// A final deployment status still to be delivered (managed mode).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FinalReport {
    /// The server's deployment id.
    pub deployment_id: DeploymentId,
    /// `true` for `success`, `false` for `failure`.
    pub success: bool,
    /// Delivery attempts made so far.
    pub attempts: u32,
}

/// An update that was written to the inactive slot.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingUpdate {
    /// What the device will provide once the update is committed.
    pub provides: Provides,
    /// The slot the update was written to.
    pub trial_part: PartNumber,
    /// The slot that was running when the update was installed.
    pub previous_part: PartNumber,
    /// The server's deployment id (managed mode), `None` in standalone mode.
    pub deployment_id: Option<DeploymentId>,
}

/// Where the device is in an update.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UpdateStep {
    /// Nothing in progress.
    #[default]
    Idle,
    /// Written and verified; the boot env is (being) switched to the trial.
    Installed(PendingUpdate),
    /// The commit was decided.
    Committing(PendingUpdate),
    /// The rollback was decided.
    RollingBack(PendingUpdate),
    /// Managed mode: the payload is streaming into the inactive slot.
    Downloading(Downloading),
    /// Managed mode: the trial slot is set and the reboot was requested.
    Rebooting(PendingUpdate),
    /// Managed mode: the deployment ended; its final status is being sent.
    Reporting(FinalReport),
    /// Managed mode: the deployment failed and the rollback reboot was
    /// requested; the next start runs `ArtifactRollbackReboot_Leave` and the
    /// failure scripts, then reports the status (as the reference's daemon).
    /// Last, so records written before it existed decode unchanged.
    RollbackRebooting(FinalReport),
    /// Hand-off mode: the artifact file is complete; the update lock is
    /// written and the installer started next ([`crate::agent::handoff`]).
    HandingOff(Downloading),
    /// Hand-off mode: the installer owns the device until it removes the
    /// update lock.
    HandedOff(Downloading),
    /// AWS IoT Jobs mode: the job and the phase it reached
    /// ([`crate::agent::jobs`]).
    Job(JobRecord),
}

/// Longest AWS IoT job id ([`crate::protocol::jobs::MAX_JOB_ID_LEN`]).
pub const MAX_JOB_ID_LEN: usize = 64;

/// The phase of an AWS IoT job ([`UpdateStep::Job`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum JobPhase {
    /// The file is being downloaded.
    Downloading,
    /// The install hook runs.
    Installing,
    /// `reboot_start` was sent; the restart hook runs (the next start
    /// verifies the installation).
    Restarting,
}

/// An AWS IoT job under way.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobRecord {
    /// The job id.
    pub job_id: heapless::String<MAX_JOB_ID_LEN>,
    /// How far it got.
    pub phase: JobPhase,
}

/// The whole persisted state.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateRecord {
    /// What the running, committed software provides.
    pub installed: Provides,
    /// The update step.
    pub step: UpdateStep,
    /// State writes since the last idle step (loop breaker).
    pub store_count: u32,
}

/// Why a stored record was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// Shorter than a header, or the length field points past the end.
    Truncated,
    /// Wrong magic: not an otalite state record.
    BadMagic,
    /// A format version this build does not know.
    UnsupportedVersion(u16),
    /// The CRC does not match: the record is damaged.
    BadCrc,
    /// The body does not decode.
    Decode,
    /// The output buffer is too small.
    BufferTooSmall {
        /// Bytes needed at least.
        required: usize,
    },
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => f.write_str("the state record is truncated"),
            Self::BadMagic => f.write_str("not an otalite state record (bad magic)"),
            Self::UnsupportedVersion(v) => write!(f, "state record version {v} is not supported"),
            Self::BadCrc => f.write_str("the state record is damaged (CRC mismatch)"),
            Self::Decode => f.write_str("the state record body does not decode"),
            Self::BufferTooSmall { required } => write!(f, "state buffer needs {required} bytes"),
        }
    }
}

impl core::error::Error for StoreError {}

impl StateRecord {
    /// Encodes the record into `buffer` and returns the used prefix.
    ///
    /// # Errors
    /// [`StoreError::BufferTooSmall`].
    pub fn encode<'b>(&self, buffer: &'b mut [u8]) -> Result<&'b [u8], StoreError> {
        let too_small = StoreError::BufferTooSmall {
            required: MAX_RECORD_LEN,
        };
        let body_space = buffer
            .len()
            .checked_sub(HEADER_LEN + CRC_LEN)
            .ok_or(too_small)?;
        let body_len = {
            let body = buffer
                .get_mut(HEADER_LEN..HEADER_LEN + body_space)
                .ok_or(too_small)?;
            postcard::to_slice(self, body).map_err(|_| too_small)?.len()
        };
        let len_field = u32::try_from(body_len).map_err(|_| too_small)?;
        let header_bytes = RECORD_MAGIC
            .into_iter()
            .chain(RECORD_VERSION.to_le_bytes())
            .chain([0, 0])
            .chain(len_field.to_le_bytes());
        let header = buffer.get_mut(..HEADER_LEN).ok_or(too_small)?;
        for (target, byte) in header.iter_mut().zip(header_bytes) {
            *target = byte;
        }
        let end = HEADER_LEN + body_len;
        let crc = crc32(buffer.get(..end).ok_or(too_small)?);
        buffer
            .get_mut(end..end + CRC_LEN)
            .ok_or(too_small)?
            .copy_from_slice(&crc.to_le_bytes());
        buffer.get(..end + CRC_LEN).ok_or(too_small)
    }

    /// Decodes and checks a stored record.
    ///
    /// # Errors
    /// See [`StoreError`].
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let header = bytes.get(..HEADER_LEN).ok_or(StoreError::Truncated)?;
        if header.get(..4) != Some(&RECORD_MAGIC[..]) {
            return Err(StoreError::BadMagic);
        }
        let version = u16::from_le_bytes([
            header.get(4).copied().unwrap_or(0),
            header.get(5).copied().unwrap_or(0),
        ]);
        if version != RECORD_VERSION {
            return Err(StoreError::UnsupportedVersion(version));
        }
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(header.get(8..12).ok_or(StoreError::Truncated)?);
        let body_len =
            usize::try_from(u32::from_le_bytes(len_bytes)).map_err(|_| StoreError::Truncated)?;
        let end = HEADER_LEN
            .checked_add(body_len)
            .ok_or(StoreError::Truncated)?;
        let covered = bytes.get(..end).ok_or(StoreError::Truncated)?;
        let mut crc_bytes = [0u8; 4];
        crc_bytes.copy_from_slice(
            bytes
                .get(end..end.saturating_add(CRC_LEN))
                .ok_or(StoreError::Truncated)?,
        );
        if crc32(covered) != u32::from_le_bytes(crc_bytes) {
            return Err(StoreError::BadCrc);
        }
        let body = covered.get(HEADER_LEN..).ok_or(StoreError::Truncated)?;
        postcard::from_bytes(body).map_err(|_| StoreError::Decode)
    }

    /// Moves to `step` and counts the write (loop breaker).
    pub fn mark(&mut self, step: UpdateStep) {
        self.store_count = if step == UpdateStep::Idle {
            0
        } else {
            self.store_count.saturating_add(1)
        };
        self.step = step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::provide;

    fn sample() -> StateRecord {
        let mut installed = Provides::named("release-1");
        installed
            .provides
            .push(provide("rootfs-image.version", "release-1").unwrap())
            .unwrap();
        let pending = PendingUpdate {
            provides: Provides::named("release-2"),
            trial_part: 3,
            previous_part: 2,
            deployment_id: None,
        };
        StateRecord {
            installed,
            step: UpdateStep::Installed(pending),
            store_count: 1,
        }
    }

    #[test]
    fn round_trip() {
        let mut buffer = [0u8; MAX_RECORD_LEN];
        let record = sample();
        let bytes = record.encode(&mut buffer).unwrap().to_vec();
        assert_eq!(StateRecord::decode(&bytes).unwrap(), record);
    }

    #[test]
    fn every_damage_is_detected() {
        let mut buffer = [0u8; MAX_RECORD_LEN];
        let bytes = sample().encode(&mut buffer).unwrap().to_vec();
        for cut in 0..bytes.len() {
            assert!(StateRecord::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for index in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x40;
            assert!(StateRecord::decode(&damaged).is_err(), "flip at {index}");
        }
    }
}
