//! The standalone verbs: `install`, `commit`, `rollback`, `show-artifact`,
//! `show-provides`, with the reference's state scripts and exit codes, and
//! the power-loss repair of [`otalite::store`] run before every verb.

use crate::progress::Progress;
use otalite::artifact::verify::VerifyKey;
use otalite::artifact::{ArtifactHeader, WINDOW_LEN};
use otalite::board::{BootControl, BootState};
use otalite::config::MenderConfig;
use otalite::device::{parse_artifact_info, parse_device_type, Provides};
use otalite::install::{stream_artifact, DeviceFacts, InstallBuffers, InstallHooks};
use otalite::store::{PendingUpdate, StateRecord, UpdateStep};
use otalite_host::fs::{read_limited, FilePartition, StdRead};
use otalite_host::paths::Paths;
use otalite_host::scripts::{Action, Group, ScriptRunner};
use otalite_host::slot::{Evidence, SlotLayout};
use otalite_host::{source, state};
use static_cell::StaticCell;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: any error.
pub const EXIT_ERROR: i32 = 1;
/// Exit code: nothing to commit or roll back.
pub const EXIT_NOTHING: i32 = 2;
/// Exit code: installed, a reboot is needed (`--reboot-exit-code`).
pub const EXIT_REBOOT: i32 = 4;

/// Test hook for power-cut tests: when `OTALITE_TEST_CRASH_AT` names this
/// point, the process aborts on the spot (no cleanup, no unwinding), as a
/// `kill -9` or a power cut between two steps would stop it.
pub fn crashpoint(name: &str) {
    if std::env::var_os("OTALITE_TEST_CRASH_AT").is_some_and(|point| point == name) {
        std::process::abort();
    }
}

/// Partition block: the reference syncs every 1 MiB.
pub const BLOCK_LEN: usize = 1 << 20;
/// Source read and reader output chunks.
pub const CHUNK_LEN: usize = 64 * 1024;

/// The install's static buffers (`.bss`, no heap, no stack copies).
pub struct Buffers {
    input: [u8; CHUNK_LEN],
    output: [u8; CHUNK_LEN],
    window: [u8; WINDOW_LEN],
    block: [u8; BLOCK_LEN],
    compare: [u8; CHUNK_LEN],
}

static BUFFERS: StaticCell<Buffers> = StaticCell::new();

/// A failed verb: the message for the user and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: i32,
}

impl Failure {
    pub fn error(message: impl std::fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            code: EXIT_ERROR,
        }
    }
}

type Outcome = Result<i32, Failure>;

/// What [`Device::repair`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repaired {
    /// Nothing was interrupted.
    Nothing,
    /// An installed update was no longer active in the boot env: dropped.
    Discarded,
    /// An interrupted commit was completed.
    FinishedCommit,
    /// An interrupted commit was undone by the bootloader's fallback.
    CommitLost,
    /// An interrupted rollback was completed.
    FinishedRollback,
}

/// Everything a verb needs.
pub struct Device<B> {
    pub paths: Paths,
    pub config: MenderConfig,
    pub boot: B,
    /// The install buffers, taken from their `StaticCell` on first use and
    /// kept for every later deployment of a long-running daemon.
    pub buffers: Option<&'static mut Buffers>,
}

/// What an install needs to know before the first byte.
pub struct Prepared {
    pub device_type: String,
    pub keys: Vec<VerifyKey>,
    pub active: otalite_host::slot::ActiveSlot,
}

impl<B: BootControl> Device<B> {
    /// The state script runner for this device's directories and timeouts.
    pub fn scripts_runner(&self) -> ScriptRunner {
        self.scripts()
    }

    fn scripts(&self) -> ScriptRunner {
        ScriptRunner {
            rootfs_dir: self.paths.rootfs_scripts(),
            artifact_dir: self.paths.artifact_scripts(),
            timeout: Duration::from_secs(self.config.state_script_timeout().into()),
            retry_interval: Duration::from_secs(self.config.state_script_retry_interval().into()),
            retry_timeout: Duration::from_secs(self.config.state_script_retry_timeout().into()),
        }
    }

    /// The boot environment's A/B state, with a clear error.
    pub fn boot_state(&mut self) -> Result<BootState, Failure> {
        self.boot
            .boot_state()
            .map_err(|e| Failure::error(format!("cannot read the bootloader environment: {e}")))
    }

    /// This device's type, from the device type file.
    pub fn device_type(&self) -> Result<String, Failure> {
        let path = self.paths.device_type(&self.config);
        read_limited(&path, 4096)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                parse_device_type(&text)
                    .map(|t| t.to_string())
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| {
                Failure::error(format!(
                    "cannot read the device type from {}: {e}",
                    path.display()
                ))
            })
    }

    /// The stored record, or a fresh one named from `artifact_info`.
    pub fn load_record(&self) -> Result<(StateRecord, bool), Failure> {
        if let Some(record) = state::load(&self.paths.data_dir).map_err(Failure::error)? {
            return Ok((record, true));
        }
        let name = match read_limited(&self.paths.artifact_info(), 4096) {
            Ok(text) => parse_artifact_info(&text)
                .map(|name| name.to_string())
                .map_err(|e| {
                    Failure::error(format!("{}: {e}", self.paths.artifact_info().display()))
                })?,
            Err(_) => "unknown".to_string(),
        };
        Ok((
            StateRecord {
                installed: Provides::named(&name),
                ..StateRecord::default()
            },
            false,
        ))
    }

    fn save(&self, record: &StateRecord) -> Result<(), Failure> {
        state::save(&self.paths.data_dir, record).map_err(Failure::error)
    }

    /// Finishes a commit or rollback that a power cut interrupted, and
    /// clears an install the bootloader has already undone.
    fn repair(&mut self, record: &mut StateRecord) -> Result<Repaired, Failure> {
        let step = record.step.clone();
        let repaired = match step {
            UpdateStep::Idle => return Ok(Repaired::Nothing),
            UpdateStep::Downloading(_) | UpdateStep::Rebooting(_) | UpdateStep::Reporting(_) => {
                return Err(Failure::error(
                    "a deployment from the server is in progress; the daemon finishes it (run 'otalite daemon')",
                ))
            }
            UpdateStep::Installed(pending) => {
                let boot = self.boot_state()?;
                if boot.upgrade_available && boot.boot_part == Some(pending.trial_part) {
                    return Ok(Repaired::Nothing);
                }
                log::warn!(
                    "the installed update {} is not active in the boot environment (the bootloader rolled back, or the switch never happened); discarding it",
                    pending.provides.artifact_name
                );
                record.mark(UpdateStep::Idle);
                Repaired::Discarded
            }
            UpdateStep::Committing(pending) => {
                let boot = self.boot_state()?;
                if boot.boot_part == Some(pending.trial_part) {
                    log::info!(
                        "finishing the interrupted commit of {}",
                        pending.provides.artifact_name
                    );
                    if boot.upgrade_available {
                        self.boot
                            .commit()
                            .map_err(|e| Failure::error(format!("commit failed: {e}")))?;
                    }
                    record.installed = pending.provides;
                    record.mark(UpdateStep::Idle);
                    Repaired::FinishedCommit
                } else {
                    log::error!(
                        "the commit of {} was interrupted and the bootloader went back to partition {:?}; keeping {}",
                        pending.provides.artifact_name,
                        boot.boot_part,
                        record.installed.artifact_name
                    );
                    record.mark(UpdateStep::Idle);
                    Repaired::CommitLost
                }
            }
            UpdateStep::RollingBack(pending) => {
                log::info!(
                    "finishing the interrupted rollback of {}",
                    pending.provides.artifact_name
                );
                let boot = self.boot_state()?;
                if boot.upgrade_available || boot.boot_part != Some(pending.previous_part) {
                    self.boot
                        .roll_back(pending.previous_part)
                        .map_err(|e| Failure::error(format!("rollback failed: {e}")))?;
                }
                record.mark(UpdateStep::Idle);
                Repaired::FinishedRollback
            }
        };
        self.save(record)?;
        Ok(repaired)
    }

    pub fn layout(&self) -> Result<SlotLayout, Failure> {
        SlotLayout::new(
            self.config.rootfs_part_a.as_deref(),
            self.config.rootfs_part_b.as_deref(),
        )
        .map_err(Failure::error)
    }

    fn load_keys(&self) -> Result<Vec<VerifyKey>, Failure> {
        let mut keys = Vec::new();
        let mut configured = 0;
        for path in self.config.verify_key_paths() {
            configured += 1;
            let loaded = read_limited(path.as_ref(), 64 * 1024)
                .map_err(|e| e.to_string())
                .and_then(|pem| VerifyKey::from_pem(&pem).map_err(|e| format!("{e:?}")));
            match loaded {
                Ok(key) => keys.push(key),
                Err(error) => log::error!("skipping artifact verification key {path}: {error}"),
            }
        }
        if configured > 0 && keys.is_empty() {
            return Err(Failure::error(
                "artifact signatures are required (ArtifactVerifyKey(s) is set) but no configured key could be loaded",
            ));
        }
        Ok(keys)
    }

    /// Device type, verification keys and the slots, checked before an
    /// install starts.
    pub fn prepare(&mut self) -> Result<Prepared, Failure> {
        let device_type = self.device_type()?;
        let keys = self.load_keys()?;
        let layout = self.layout()?;
        let boot = self.boot_state()?;
        let active = layout.detect(boot.boot_part).map_err(Failure::error)?;
        log::info!(
            "active partition {} ({:?}); installing into {} (partition {})",
            active.active_part,
            active.evidence,
            active.inactive.display(),
            active.inactive_part
        );
        Ok(Prepared {
            device_type: device_type.to_string(),
            keys,
            active,
        })
    }

    /// Streams an artifact from `source` into the inactive slot and verifies
    /// it; on `Ok` every check passed and nothing was activated yet.
    pub fn stream(
        &mut self,
        prepared: &Prepared,
        installed: &Provides,
        source: &mut dyn std::io::Read,
    ) -> Result<otalite::install::Streamed, Failure> {
        let mut partition =
            FilePartition::open(&prepared.active.inactive).map_err(Failure::error)?;
        let scripts_dir = self.paths.artifact_scripts();
        let mut hooks = Hooks::new(scripts_dir.clone()).map_err(|e| {
            Failure::error(format!("cannot prepare {}: {e}", scripts_dir.display()))
        })?;
        if self.buffers.is_none() {
            self.buffers = BUFFERS.try_init_with(|| Buffers {
                input: [0; CHUNK_LEN],
                output: [0; CHUNK_LEN],
                window: [0; WINDOW_LEN],
                block: [0; BLOCK_LEN],
                compare: [0; CHUNK_LEN],
            });
        }
        let buffers = self
            .buffers
            .as_deref_mut()
            .ok_or_else(|| Failure::error("install buffers already in use"))?;
        let device = DeviceFacts {
            keys: &prepared.keys,
            device_type: &prepared.device_type,
            installed,
        };
        let result = stream_artifact(
            &mut StdRead(source),
            &mut partition,
            &mut hooks,
            InstallBuffers {
                input: &mut buffers.input,
                output: &mut buffers.output,
                window: &mut buffers.window,
                block: &mut buffers.block,
                compare: &mut buffers.compare,
            },
            &device,
        );
        result.map_err(|error| {
            hooks.progress.abandon();
            Failure::error(format!(
                "{error}; nothing was activated, the running system and boot configuration are unchanged"
            ))
        })
    }

    /// `install <location>`.
    pub fn install(&mut self, location: &str, reboot_exit_code: bool) -> Outcome {
        let (mut record, _) = self.load_record()?;
        self.repair(&mut record)?;
        if let UpdateStep::Installed(pending) = &record.step {
            return Err(Failure::error(format!(
                "update {} is already installed and waiting; run 'otalite commit' or 'otalite rollback' first",
                pending.provides.artifact_name
            )));
        }
        let prepared = self.prepare()?;
        let active = prepared.active.clone();
        let scripts = self.scripts();
        scripts.run(Group::Download, Action::Enter).map_err(|e| {
            scripts.run_ignoring_errors(Group::Download, Action::Error);
            Failure::error(e)
        })?;

        let remote = source::RemoteOptions::from_mender(&self.config);
        let mut source = source::open(location, &remote).map_err(Failure::error)?;
        log::info!(
            "installing artifact {location}{}",
            source
                .size
                .map(|s| format!(" of size {s}"))
                .unwrap_or_default()
        );
        let installed = record.installed.clone();
        let streamed = match self.stream(&prepared, &installed, &mut source) {
            Ok(streamed) => streamed,
            Err(failure) => {
                scripts.run_ignoring_errors(Group::Download, Action::Error);
                return Err(failure);
            }
        };
        let header = streamed.header;
        if let Some(stats) = streamed.stats {
            log::info!(
                "payload verified: {} bytes, {} blocks written, {} unchanged blocks skipped",
                stats.bytes,
                stats.blocks_written,
                stats.blocks_skipped
            );
        }
        scripts.run(Group::Download, Action::Leave).map_err(|e| {
            scripts.run_ignoring_errors(Group::Download, Action::Error);
            Failure::error(e)
        })?;
        let new_provides = record.installed.after_commit(&header);
        if streamed.stats.is_none() {
            // An empty payload only changes what the device provides.
            record.installed = new_provides;
            record.mark(UpdateStep::Idle);
            self.save(&record)?;
            log::info!(
                "artifact {} has an empty payload; provides updated",
                header.artifact_name
            );
            return Ok(EXIT_OK);
        }
        if let Err(error) = scripts.run(Group::ArtifactInstall, Action::Enter) {
            scripts.run_ignoring_errors(Group::ArtifactInstall, Action::Error);
            self.fail_scripts(&scripts);
            return Err(Failure::error(error));
        }
        let pending = PendingUpdate {
            provides: new_provides,
            trial_part: active.inactive_part,
            previous_part: active.active_part,
            deployment_id: None,
        };
        crashpoint("install-before-save-installed");
        record.mark(UpdateStep::Installed(pending.clone()));
        self.save(&record)?;
        crashpoint("install-before-set-trial");
        if let Err(error) = self.boot.set_trial(active.inactive_part) {
            record.mark(UpdateStep::Idle);
            self.save(&record)?;
            self.fail_scripts(&scripts);
            return Err(Failure::error(format!(
                "cannot switch the bootloader to the new partition: {error}"
            )));
        }
        crashpoint("install-after-set-trial");
        if let Err(error) = scripts.run(Group::ArtifactInstall, Action::Leave) {
            scripts.run_ignoring_errors(Group::ArtifactInstall, Action::Error);
            self.undo_install(&mut record, &pending)?;
            self.fail_scripts(&scripts);
            return Err(Failure::error(error));
        }
        log_header(&header);
        println!("Use 'commit' to update, or 'rollback' to roll back the update.");
        if reboot_exit_code {
            println!("At least one payload requested a reboot of the device it updated.");
            return Ok(EXIT_REBOOT);
        }
        Ok(EXIT_OK)
    }

    fn fail_scripts(&self, scripts: &ScriptRunner) {
        scripts.run_ignoring_errors(Group::ArtifactFailure, Action::Enter);
        scripts.run_ignoring_errors(Group::ArtifactFailure, Action::Leave);
    }

    fn undo_install(
        &mut self,
        record: &mut StateRecord,
        pending: &PendingUpdate,
    ) -> Result<(), Failure> {
        crashpoint("rollback-before-save-rolling-back");
        record.mark(UpdateStep::RollingBack(pending.clone()));
        self.save(record)?;
        crashpoint("rollback-before-env");
        self.boot
            .roll_back(pending.previous_part)
            .map_err(|e| Failure::error(format!("rollback failed: {e}")))?;
        crashpoint("rollback-after-env");
        record.mark(UpdateStep::Idle);
        self.save(record)
    }

    /// `commit`.
    pub fn commit(&mut self) -> Outcome {
        let (mut record, _) = self.load_record()?;
        match self.repair(&mut record)? {
            Repaired::FinishedCommit => return Ok(EXIT_OK),
            Repaired::CommitLost => {
                return Err(Failure::error(
                    "the interrupted commit could not be completed: the bootloader went back to the previous partition",
                ))
            }
            Repaired::Discarded => {
                return Err(Failure::error(
                    "the installed update is not active: the bootloader rolled back to the previous partition (or the update was never activated); nothing committed",
                ))
            }
            Repaired::Nothing | Repaired::FinishedRollback => {}
        }
        let UpdateStep::Installed(pending) = record.step.clone() else {
            return Err(Failure {
                message: "There is nothing to commit".into(),
                code: EXIT_NOTHING,
            });
        };
        let layout = self.layout()?;
        let boot = self.boot_state()?;
        let active = layout.detect(boot.boot_part).map_err(Failure::error)?;
        if active.evidence == Evidence::RootDevice && active.active_part != pending.trial_part {
            return Err(Failure::error(format!(
                "the device still runs partition {}; reboot into the new partition {} before committing",
                active.active_part, pending.trial_part
            )));
        }
        let scripts = self.scripts();
        if let Err(error) = scripts.run(Group::ArtifactCommit, Action::Enter) {
            scripts.run_ignoring_errors(Group::ArtifactCommit, Action::Error);
            scripts.run_ignoring_errors(Group::ArtifactRollback, Action::Enter);
            self.undo_install(&mut record, &pending)?;
            scripts.run_ignoring_errors(Group::ArtifactRollback, Action::Leave);
            self.fail_scripts(&scripts);
            return Err(Failure::error(format!(
                "{error}; the update was rolled back"
            )));
        }
        crashpoint("commit-before-save-committing");
        record.mark(UpdateStep::Committing(pending.clone()));
        self.save(&record)?;
        crashpoint("commit-before-env-commit");
        self.boot
            .commit()
            .map_err(|e| Failure::error(format!("commit failed: {e}")))?;
        crashpoint("commit-after-env-commit");
        record.installed = pending.provides.clone();
        record.mark(UpdateStep::Idle);
        self.save(&record)?;
        if let Err(error) = scripts.run(Group::ArtifactCommit, Action::Leave) {
            return Err(Failure::error(format!(
                "the update was committed, but {error}"
            )));
        }
        log::info!("committed {}", pending.provides.artifact_name);
        Ok(EXIT_OK)
    }

    /// `rollback`.
    pub fn rollback(&mut self) -> Outcome {
        let (mut record, _) = self.load_record()?;
        if self.repair(&mut record)? == Repaired::FinishedRollback {
            return Ok(EXIT_OK);
        }
        let UpdateStep::Installed(pending) = record.step.clone() else {
            return Err(Failure {
                message: "There is nothing to roll back".into(),
                code: EXIT_NOTHING,
            });
        };
        let scripts = self.scripts();
        scripts.run_ignoring_errors(Group::ArtifactRollback, Action::Enter);
        self.undo_install(&mut record, &pending)?;
        scripts.run_ignoring_errors(Group::ArtifactRollback, Action::Leave);
        log::info!(
            "rolled back {}; partition {} boots next",
            pending.provides.artifact_name,
            pending.previous_part
        );
        Ok(EXIT_OK)
    }
}

/// `show-artifact` and `show-provides` need no boot environment.
pub fn show(paths: &Paths, provides_only: bool) -> Outcome {
    let record = state::load(&paths.data_dir).map_err(Failure::error)?;
    let mut out = std::io::stdout().lock();
    match (record, provides_only) {
        (Some(record), false) => {
            let _ = writeln!(out, "{}", record.installed.artifact_name);
        }
        (Some(record), true) => {
            record.installed.for_each_sorted(|key, value| {
                let _ = writeln!(out, "{key}={value}");
            });
        }
        (None, false) => {
            let path = paths.artifact_info();
            let text = read_limited(&path, 4096)
                .map_err(|e| Failure::error(format!("{}: {e}", path.display())))?;
            let name = parse_artifact_info(&text)
                .map_err(|e| Failure::error(format!("{}: {e}", path.display())))?;
            let _ = writeln!(out, "{name}");
        }
        // Like the reference: nothing is stored yet, so nothing is printed.
        (None, true) => {}
    }
    Ok(EXIT_OK)
}

fn log_header(header: &ArtifactHeader) {
    log::info!(
        "installed {} (format {}, {}signed); the new partition boots once on the next reboot",
        header.artifact_name,
        header.format_version,
        if header.signed { "" } else { "un" }
    );
}

/// Writes artifact state scripts to `<DATA>/scripts` and shows progress.
struct Hooks {
    dir: PathBuf,
    current: Option<File>,
    progress: Progress,
}

impl Hooks {
    /// Empties `<DATA>/scripts`: scripts of an earlier artifact must never
    /// run for this one. Scripts arrive inside the header, before it is
    /// accepted; they only ever run after the whole artifact verified.
    fn new(dir: PathBuf) -> std::io::Result<Self> {
        match fs::remove_dir_all(&dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            current: None,
            progress: Progress::new(),
        })
    }
}

impl InstallHooks for Hooks {
    type Error = std::io::Error;

    fn header_accepted(&mut self, header: &ArtifactHeader) -> std::io::Result<()> {
        fs::write(
            self.dir.join("version"),
            format!("{}\n", header.format_version),
        )?;
        log::info!(
            "artifact {} for {} accepted",
            header.artifact_name,
            header
                .device_types
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(())
    }

    fn script_start(&mut self, name: &str, _size: u64) -> std::io::Result<()> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(std::io::Error::other(format!(
                "refusing state script name '{name}'"
            )));
        }
        let path = self.dir.join(name);
        let file = File::create(&path)?;
        file.set_permissions(fs::Permissions::from_mode(0o755))?;
        self.current = Some(file);
        Ok(())
    }

    fn script_data(&mut self, data: &[u8]) -> std::io::Result<()> {
        match &mut self.current {
            Some(file) => file.write_all(data),
            None => Err(std::io::Error::other("script data outside a script")),
        }
    }

    fn script_end(&mut self) -> std::io::Result<()> {
        if let Some(file) = self.current.take() {
            file.sync_all()?;
        }
        Ok(())
    }

    fn progress(&mut self, written: u64, total: u64) {
        self.progress.update(written, total);
    }
}
