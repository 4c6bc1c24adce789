//! A supervisor that drives the otalite core from its own code, the way a
//! firmware supervisor would: its own source, its own slot and boot
//! environment (in memory here, flash and a bootloader flag area on a real
//! board), fixed buffers, no global state from the agent.
//!
//! The pretend board is a `beaglebone` running `release-1`; the reader's
//! fixture fits it (CI runs exactly this):
//!
//! ```sh
//! cargo run --example supervisor --features _test -- tests/fixtures/artifacts/rootfs-gzip.mender
//! ```

use otalite::board::{BootControl, MenderBootControl};
use otalite::device::Provides;
use otalite::install::{stream_artifact, DeviceFacts, InstallBuffers, InstallHooks};
use otalite::mock::{MemBootEnv, MemPartition};

/// The slot size of this pretend board.
const SLOT_BYTES: usize = 1 << 20;

struct Hooks;

impl InstallHooks for Hooks {
    type Error = core::convert::Infallible;

    fn header_accepted(
        &mut self,
        header: &otalite::artifact::ArtifactHeader,
    ) -> Result<(), Self::Error> {
        println!(
            "accepted {} for {:?}",
            header.artifact_name, header.device_types
        );
        Ok(())
    }
    fn script_start(&mut self, name: &str, _size: u64) -> Result<(), Self::Error> {
        println!("ignoring state script {name} (this board runs none)");
        Ok(())
    }
    fn script_data(&mut self, _data: &[u8]) -> Result<(), Self::Error> {
        Ok(())
    }
    fn script_end(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn progress(&mut self, written: u64, total: u64) {
        println!("{written} / {total} bytes");
    }
}

/// Reads a file in small pieces, as a radio or a UART would deliver it.
struct Source(std::fs::File);

impl embedded_io::ErrorType for Source {
    type Error = std::io::Error;
}

impl embedded_io::Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::Read as _;
        let len = buf.len().min(1024);
        self.0.read(&mut buf[..len])
    }
}

fn main() -> Result<(), Box<dyn core::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: supervisor <artifact.mender>")?;
    // Slot B of the pretend board, and its boot flag area starting on slot A (2).
    let mut slot = MemPartition::<SLOT_BYTES>::default();
    let mut env = MemBootEnv::default();
    otalite::board::BootEnv::write(
        &mut env,
        &[
            ("mender_boot_part", Some("2")),
            ("upgrade_available", Some("0")),
        ],
    )?;
    let mut boot = MenderBootControl::new(env);

    // All memory the install needs, owned by the supervisor.
    let (mut input, mut output, mut window) =
        (vec![0u8; 4096], vec![0u8; 4096], vec![0u8; 32 * 1024]);
    let (mut block, mut compare) = (vec![0u8; 64 * 1024], vec![0u8; 4096]);
    let mut installed = Provides::named("release-1");
    installed.provides.extend(otalite::device::provide(
        "rootfs-image.version",
        "release-1",
    ));
    let device = DeviceFacts {
        keys: &[],
        device_type: "beaglebone",
        installed: &installed,
    };
    let streamed = stream_artifact(
        &mut Source(std::fs::File::open(&path)?),
        &mut slot,
        &mut Hooks,
        InstallBuffers {
            input: &mut input,
            output: &mut output,
            window: &mut window,
            block: &mut block,
            compare: &mut compare,
        },
        &device,
    )
    .map_err(|e| e.to_string())?;
    // Only now, with every check passed, does the boot flag change.
    boot.set_trial(3).map_err(|e| e.to_string())?;
    println!(
        "installed {}: {:?}",
        streamed.header.artifact_name, streamed.stats
    );
    println!(
        "boot state: {:?}",
        boot.boot_state().map_err(|e| e.to_string())?
    );
    Ok(())
}
