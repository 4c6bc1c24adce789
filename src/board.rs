//! Board traits: the bootloader environment, A/B boot control and reboot.
//!
//! A board crate implements [`BootEnv`] (a key/value store the bootloader
//! reads, such as the U-Boot environment or a GRUB env block) and [`Reboot`].
//! The core turns a `BootEnv` into [`BootControl`] with Mender's variables
//! through [`MenderBootControl`], so every board speaks the same protocol:
//!
//! | variable | written by | meaning |
//! |---|---|---|
//! | `mender_boot_part` | install, rollback | partition number to boot (decimal) |
//! | `mender_boot_part_hex` | install, rollback | the same number in upper-case hex |
//! | `upgrade_available` | install (`1`), commit / rollback (`0`) | a trial boot is pending; the bootloader resets it to `0` when it falls back |
//! | `bootcount` | install (`0`), bootloader (`+1` per trial boot) | trial boots so far |
//!
//! # Guarantees a board must give
//! - [`BootEnv::write`] is atomic: after a power cut either all or none of
//!   the variables of one call are visible (redundant copies, rename, ...).
//! - Once `write` returns, the values survive power loss.

use core::fmt;

/// A partition number as used by `mender_boot_part` (`/dev/mmcblk0p3` -> 3).
pub type PartNumber = u32;

/// Longest bootloader variable value the core reads.
pub const MAX_ENV_VALUE_LEN: usize = 64;

/// A bootloader environment: named string variables, written atomically.
pub trait BootEnv {
    /// The board's error type.
    type Error: fmt::Debug + fmt::Display;

    /// Reads variable `name` into `value` and returns its length, or `None`
    /// when the variable is not set.
    ///
    /// # Errors
    /// Storage or format errors; a value longer than `value` is an error.
    fn read(&mut self, name: &str, value: &mut [u8]) -> Result<Option<usize>, Self::Error>;

    /// Sets (`Some`) or deletes (`None`) every listed variable in one atomic
    /// step.
    ///
    /// # Errors
    /// Storage errors; on error no variable of this call may have changed.
    fn write(&mut self, vars: &[(&str, Option<&str>)]) -> Result<(), Self::Error>;
}

/// What the bootloader environment says about the A/B state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootState {
    /// `mender_boot_part`: the partition the bootloader boots next.
    pub boot_part: Option<PartNumber>,
    /// `upgrade_available == 1`: a trial boot is pending or running.
    pub upgrade_available: bool,
    /// `bootcount`, when set and numeric.
    pub bootcount: Option<u32>,
}

/// A/B boot control: which slot boots, trial boots, commit and fallback.
pub trait BootControl {
    /// The board's error type.
    type Error: fmt::Debug + fmt::Display;

    /// Reads the current boot state.
    ///
    /// # Errors
    /// Storage or format errors.
    fn boot_state(&mut self) -> Result<BootState, Self::Error>;

    /// Makes `part` the trial slot for the next boot (one try).
    ///
    /// # Errors
    /// Storage errors; nothing changed on error.
    fn set_trial(&mut self, part: PartNumber) -> Result<(), Self::Error>;

    /// Makes the current trial permanent.
    ///
    /// # Errors
    /// Storage errors; nothing changed on error.
    fn commit(&mut self) -> Result<(), Self::Error>;

    /// Boots `part` next, permanently, ending any trial.
    ///
    /// # Errors
    /// Storage errors; nothing changed on error.
    fn roll_back(&mut self, part: PartNumber) -> Result<(), Self::Error>;
}

/// Restarts the device.
pub trait Reboot {
    /// The board's error type.
    type Error: fmt::Debug + fmt::Display;

    /// Asks the system to reboot. Returning `Ok` means the request was
    /// accepted; the caller then waits to be stopped.
    ///
    /// # Errors
    /// The reboot could not be requested.
    fn reboot(&mut self) -> Result<(), Self::Error>;
}

/// Mender's variable protocol on top of any [`BootEnv`].
#[derive(Debug)]
pub struct MenderBootControl<E> {
    env: E,
}

impl<E: BootEnv> MenderBootControl<E> {
    /// Wraps a bootloader environment.
    pub const fn new(env: E) -> Self {
        Self { env }
    }

    /// The wrapped environment.
    pub fn env_mut(&mut self) -> &mut E {
        &mut self.env
    }

    /// Returns the wrapped environment.
    pub fn into_inner(self) -> E {
        self.env
    }

    fn read_u32(&mut self, name: &str) -> Result<Option<u32>, E::Error> {
        let mut buffer = [0u8; MAX_ENV_VALUE_LEN];
        let Some(len) = self.env.read(name, &mut buffer)? else {
            return Ok(None);
        };
        let text = buffer
            .get(..len)
            .and_then(|bytes| core::str::from_utf8(bytes).ok());
        Ok(text.and_then(|text| text.trim().parse().ok()))
    }
}

/// Formats `value` in decimal and upper-case hex into small stack buffers.
struct PartText {
    decimal: heapless::String<12>,
    hex: heapless::String<12>,
}

impl PartText {
    fn new(value: PartNumber) -> Self {
        use core::fmt::Write as _;
        let mut decimal = heapless::String::new();
        let mut hex = heapless::String::new();
        // A u32 needs at most 10 digits, so these writes cannot fail.
        let _ = write!(decimal, "{value}");
        let _ = write!(hex, "{value:X}");
        Self { decimal, hex }
    }
}

impl<E: BootEnv> BootControl for MenderBootControl<E> {
    type Error = E::Error;

    fn boot_state(&mut self) -> Result<BootState, E::Error> {
        Ok(BootState {
            boot_part: self.read_u32("mender_boot_part")?,
            upgrade_available: self.read_u32("upgrade_available")? == Some(1),
            bootcount: self.read_u32("bootcount")?,
        })
    }

    fn set_trial(&mut self, part: PartNumber) -> Result<(), E::Error> {
        let text = PartText::new(part);
        self.env.write(&[
            ("upgrade_available", Some("1")),
            ("mender_boot_part", Some(&text.decimal)),
            ("mender_boot_part_hex", Some(&text.hex)),
            ("bootcount", Some("0")),
        ])
    }

    fn commit(&mut self) -> Result<(), E::Error> {
        self.env.write(&[("upgrade_available", Some("0"))])
    }

    fn roll_back(&mut self, part: PartNumber) -> Result<(), E::Error> {
        let text = PartText::new(part);
        self.env.write(&[
            ("mender_boot_part", Some(&text.decimal)),
            ("mender_boot_part_hex", Some(&text.hex)),
            ("upgrade_available", Some("0")),
        ])
    }
}
