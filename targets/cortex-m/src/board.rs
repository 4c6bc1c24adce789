//! The board: clock, flash (state record, image slot, boot flags), device
//! identity, deployment log, device key, reset.
//!
//! Each function stands in for a driver. It passes what it is given to
//! `black_box` and returns values the optimizer cannot see through, so the
//! agent's code that depends on them stays linked. A port replaces the
//! bodies and keeps the signatures.

use core::hint::black_box;
use core::sync::atomic::{AtomicU32, Ordering};

use embedded_io::{ErrorKind, ErrorType, Read, Seek, SeekFrom, Write};
use otalite::agent::{Instant, LogLevel, Slots};
use otalite::artifact::ArtifactHeader;
use otalite::board::{BootState, PartNumber};
use otalite::install::InstallHooks;
use otalite::partition::Partition;

/// Bytes of one image slot in flash.
pub(crate) const SLOT_LEN: u64 = 448 * 1024;

/// Milliseconds since reset (a SysTick handler would count them).
static MILLIS: AtomicU32 = AtomicU32::new(0);

/// The monotonic clock.
pub(crate) fn now() -> Instant {
    Instant::from_millis(u64::from(black_box(MILLIS.load(Ordering::Relaxed))))
}

/// Sleeps until `at` or an interrupt (`wfi`).
pub(crate) fn sleep_until(at: Instant) {
    let ms = now().until(at);
    MILLIS.fetch_add(black_box(ms as u32), Ordering::Relaxed);
}

/// A "check for an update now" button was pressed.
pub(crate) fn button_pressed() -> bool {
    black_box(false)
}

/// Resets the MCU (`SCB::sys_reset`).
pub(crate) fn reset() -> ! {
    halt()
}

/// Stops for good.
pub(crate) fn halt() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

// ---------------------------------------------------------------------------
// The state record and the deployment log (a flash page each)

/// The persisted state record as stored (erased flash reads as `0xff`, which
/// fails the record's magic: a fresh device).
pub(crate) fn read_record() -> &'static [u8] {
    black_box(&[0xff; 16])
}

/// Writes the state record atomically (two pages, sequence number).
pub(crate) fn write_record(record: &[u8]) -> Result<(), &'static str> {
    black_box(record);
    if black_box(false) {
        Err("state record write failed")
    } else {
        Ok(())
    }
}

/// Appends a line to the deployment log.
pub(crate) fn log_append(level: LogLevel, message: &str) {
    black_box((level.as_str(), message));
}

/// Empties the deployment log.
pub(crate) fn log_clear() {
    black_box(());
}

/// Copies the deployment log (`<RFC 3339 time> <level> <message>` lines)
/// into `out`; returns its length.
pub(crate) fn log_read(out: &mut [u8]) -> usize {
    black_box(&mut *out);
    black_box(0usize).min(out.len())
}

// ---------------------------------------------------------------------------
// Identity, inventory, the device key

fn copy_text(text: &str, out: &mut [u8]) -> usize {
    let len = text.len().min(out.len());
    if let (Some(to), Some(from)) = (out.get_mut(..len), text.as_bytes().get(..len)) {
        to.copy_from_slice(from);
    }
    len
}

/// The identity attributes (`key=value` lines) into `out`; returns the
/// length.
pub(crate) fn identity(out: &mut [u8]) -> usize {
    copy_text(black_box("mac=02:00:00:00:00:01\n"), out)
}

/// The inventory attributes (`key=value` lines) into `out`; returns the
/// length.
pub(crate) fn inventory(out: &mut [u8]) -> usize {
    copy_text(black_box("hardware=cortex-m4f\nflash_kib=1024\n"), out)
}

/// Signs `body` with the device key (ECDSA P-256, SHA-256) into `out` as
/// base64; returns the signature's length. Key storage and signing are the
/// board's (a secure element, or the `p256` crate with a key in flash).
pub(crate) fn sign(body: &[u8], out: &mut [u8]) -> usize {
    black_box(body);
    black_box(&mut *out);
    black_box(88usize).min(out.len())
}

// ---------------------------------------------------------------------------
// Boot flags (the bootloader's trailer) and slots

/// The boot flags as the bootloader left them.
pub(crate) fn boot_state() -> BootState {
    black_box(BootState {
        boot_part: Some(1),
        upgrade_available: false,
        bootcount: None,
    })
}

/// The running slot (from the vector table address) and the other one.
pub(crate) fn slots() -> Slots {
    let active: PartNumber = black_box(1);
    Slots {
        active,
        inactive: 3 - active,
        proven_by_root_device: true,
    }
}

/// Writes a boot-flags action (trial, confirm, revert).
pub(crate) fn write_boot_flags(what: &str, part: PartNumber) -> Result<(), &'static str> {
    black_box((what, part));
    if black_box(false) {
        Err("boot flags write failed")
    } else {
        Ok(())
    }
}

/// The inactive image slot in internal flash.
pub(crate) struct Slot {
    position: u64,
}

impl Slot {
    /// The slot at offset 0.
    pub(crate) const fn new() -> Self {
        Self { position: 0 }
    }
}

impl ErrorType for Slot {
    type Error = ErrorKind;
}

impl Read for Slot {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let left = SLOT_LEN.saturating_sub(self.position);
        let len = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let buf = buf.get_mut(..len).unwrap_or_default();
        buf.fill(0xff);
        black_box(&mut *buf);
        self.position += len as u64;
        Ok(len)
    }
}

impl Write for Slot {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        black_box((self.position, buf));
        if black_box(false) {
            return Err(ErrorKind::Other);
        }
        self.position += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl Seek for Slot {
    fn seek(&mut self, pos: SeekFrom) -> Result<u64, ErrorKind> {
        let position = match pos {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => SLOT_LEN.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        self.position = position.ok_or(ErrorKind::InvalidInput)?;
        Ok(self.position)
    }
}

impl Partition for Slot {
    fn capacity(&mut self) -> Result<u64, ErrorKind> {
        Ok(SLOT_LEN)
    }

    fn sync(&mut self) -> Result<(), ErrorKind> {
        black_box(self.position);
        Ok(())
    }
}

/// The install hooks: no state scripts on this device.
pub(crate) struct Hooks;

impl InstallHooks for Hooks {
    type Error = &'static str;

    fn header_accepted(&mut self, header: &ArtifactHeader) -> Result<(), &'static str> {
        black_box(header);
        Ok(())
    }

    fn script_start(&mut self, name: &str, _size: u64) -> Result<(), &'static str> {
        black_box(name);
        Err("this device runs no state scripts")
    }

    fn script_data(&mut self, _data: &[u8]) -> Result<(), &'static str> {
        Ok(())
    }

    fn script_end(&mut self) -> Result<(), &'static str> {
        Ok(())
    }

    fn progress(&mut self, written: u64, total: u64) {
        black_box((written, total));
    }
}
