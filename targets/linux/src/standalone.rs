//! The standalone verbs: `install`, `commit`, `rollback`, `show-artifact`,
//! `show-provides`, with the reference's exit codes. The flows, their
//! state scripts and the power-loss repair are the core agent's
//! (`otalite::agent`); this file builds the agent and maps its completion
//! to an exit code.

use otalite::agent::{Agent, AgentBuffers, AgentConfig, Command, Completion, Mode, Timing};
use otalite::artifact::verify::VerifyKey;
use otalite::artifact::WINDOW_LEN;
use otalite::board::{BootControl, BootState};
use otalite::config::MenderConfig;
use otalite::device::{parse_artifact_info, parse_device_type, Provides};
use otalite::store::{StateRecord, MAX_RECORD_LEN};
use otalite_host::driver::{Ended, LinuxHost, CHUNK_LEN};
use otalite_host::fs::read_limited;
use otalite_host::paths::Paths;
use otalite_host::state;
use std::io::Write;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: any error.
pub const EXIT_ERROR: i32 = 1;
/// Exit code: nothing to commit or roll back.
pub const EXIT_NOTHING: i32 = 2;
/// Exit code: installed, a reboot is needed (`--reboot-exit-code`).
pub const EXIT_REBOOT: i32 = 4;

/// Partition block: the reference syncs every 1 MiB.
pub const BLOCK_LEN: usize = 1 << 20;
/// Request bodies (inventory, status, next, deployment log).
const REQUEST_LEN: usize = 64 * 1024;
/// The authentication request body.
const AUTH_LEN: usize = 8 * 1024;

/// The agent's buffers, taken once per process and kept for its life.
///
/// They are zero pages from the kernel (one `calloc` each, which is an
/// anonymous mapping at these sizes), so an idle daemon's RSS holds only
/// the pages it touched: the 1 MiB block and the 64 KiB chunks cost memory
/// only while an artifact streams. A `StaticCell` of arrays would be
/// zero-filled on initialisation and count fully against RSS.
pub fn buffers() -> Result<AgentBuffers<'static>, Failure> {
    static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Err(Failure::error("the agent buffers are already in use"));
    }
    let buffer = |len: usize| -> &'static mut [u8] { Vec::leak(vec![0u8; len]) };
    Ok(AgentBuffers {
        record: buffer(MAX_RECORD_LEN),
        request: buffer(REQUEST_LEN),
        auth: buffer(AUTH_LEN),
        output: buffer(CHUNK_LEN),
        window: buffer(WINDOW_LEN),
        block: buffer(BLOCK_LEN),
        compare: buffer(CHUNK_LEN),
    })
}

/// The agent, on the heap, built in a frame of its own.
///
/// The agent is 87 KB. Built in its caller's frame it took two copies
/// there (the `Result` and the variable), and the daemon's frame grew to
/// 278 KB, all of it touched by the stack probes and resident for the
/// daemon's life. Here the copies live in a frame that is gone before the
/// host loop runs (README, Measured: idle RSS breakdown).
#[inline(never)]
pub fn boxed_agent<'b>(
    config: AgentConfig<'b>,
    record: StateRecord,
    boot: BootState,
) -> Result<Box<Agent<'b>>, Failure> {
    Agent::new(config, record, boot, buffers()?)
        .map(Box::new)
        .map_err(Failure::error)
}

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

/// A standalone verb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `install <location>`.
    Install {
        location: String,
        reboot_exit_code: bool,
    },
    /// `commit`.
    Commit,
    /// `rollback`.
    Rollback,
}

/// This device's type, from the device type file.
pub fn device_type(paths: &Paths, config: &MenderConfig) -> Result<String, Failure> {
    let path = paths.device_type(config);
    read_limited(&path, 4096)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            parse_device_type(&text)
                .map(|t| {
                    log::debug!("device type {t:?} from {}", path.display());
                    t.to_string()
                })
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
pub fn load_record(paths: &Paths) -> Result<StateRecord, Failure> {
    if let Some(record) = state::load(&paths.data_dir).map_err(Failure::error)? {
        log::debug!(
            "state in {}: artifact {:?}, step {:?}",
            paths.data_dir.display(),
            record.installed.artifact_name.as_str(),
            record.step
        );
        return Ok(record);
    }
    log::debug!(
        "no state in {}: the artifact name comes from {}",
        paths.data_dir.display(),
        paths.artifact_info().display()
    );
    let name = match read_limited(&paths.artifact_info(), 4096) {
        Ok(text) => parse_artifact_info(&text)
            .map(|name| name.to_string())
            .map_err(|e| Failure::error(format!("{}: {e}", paths.artifact_info().display())))?,
        Err(_) => "unknown".to_string(),
    };
    Ok(StateRecord {
        installed: Provides::named(&name),
        ..StateRecord::default()
    })
}

/// The artifact verification keys; `(keys, required)`.
pub fn load_keys(config: &MenderConfig) -> Result<(Vec<VerifyKey>, bool), Failure> {
    let mut keys = Vec::new();
    let mut configured = 0;
    for path in config.verify_key_paths() {
        configured += 1;
        let loaded = read_limited(path.as_ref(), 64 * 1024)
            .map_err(|e| e.to_string())
            .and_then(|pem| VerifyKey::from_pem(&pem).map_err(|e| format!("{e:?}")));
        match loaded {
            Ok(key) => {
                log::debug!("artifact verification key {path} loaded");
                keys.push(key);
            }
            Err(error) => log::error!("skipping artifact verification key {path}: {error}"),
        }
    }
    Ok((keys, configured > 0))
}

/// Runs a standalone verb through the agent.
// Not inlined into `main`'s `run`: with the daemon and the three verbs
// inlined there, `run`'s frame was 281 KB (the 87 KB agent and copies of
// the configuration, once per verb), all of it touched by the stack probes
// and resident for the life of the daemon (README, Measured).
#[inline(never)]
pub fn run<B: BootControl>(paths: Paths, config: MenderConfig, mut boot: B, verb: Verb) -> Outcome {
    let record = load_record(&paths)?;
    let boot_state = boot
        .boot_state()
        .map_err(|e| Failure::error(format!("cannot read the bootloader environment: {e}")))?;
    log::debug!("boot env: {boot_state:?}");
    let installing = matches!(verb, Verb::Install { .. });
    let device_type = if installing {
        device_type(&paths, &config)?
    } else {
        device_type(&paths, &config).unwrap_or_default()
    };
    let (keys, signatures_required) = if installing {
        load_keys(&config)?
    } else {
        (Vec::new(), false)
    };
    let agent_config = AgentConfig {
        device_type: &device_type,
        keys: &keys,
        signatures_required,
        timing: Timing::from_config(&config),
        mode: Mode::Standalone,
    };
    let mut agent =
        crate::on_transient_stack(move || boxed_agent(agent_config, record, boot_state))?;
    let mut host = LinuxHost::new(paths, config.clone(), boot, crate::board::CommandReboot);
    let (command, reboot_exit_code) = match &verb {
        Verb::Install {
            location,
            reboot_exit_code,
        } => (Command::Install { uri: location }, *reboot_exit_code),
        Verb::Commit => (Command::Commit, false),
        Verb::Rollback => (Command::Rollback, false),
    };
    let (completion, message) = match host.run(&mut agent, Some(command)) {
        Ended::Completed(completion, message) => (completion, message),
        Ended::Exited { message, .. } => (Completion::Failed, message),
    };
    let installing_module = if installing {
        agent.module_report()
    } else {
        None
    };
    if let Some(report) = installing_module {
        // The reference's lines for an install through an update module.
        match completion {
            Completion::Installed => {
                log::info!("{message}");
                println!("Use 'commit' to update, or 'rollback' to roll back the update.");
            }
            Completion::Committed => {
                println!("Artifact doesn't support rollback. Committing immediately.");
                log::info!("{message}");
            }
            Completion::Failed => return Err(Failure::error(message)),
            _ => {}
        }
        if report.reboot {
            println!("At least one payload requested a reboot of the device it updated.");
            if reboot_exit_code {
                return Ok(EXIT_REBOOT);
            }
        }
        return Ok(EXIT_OK);
    }
    match completion {
        Completion::Installed => {
            log::info!("{message}");
            println!("Use 'commit' to update, or 'rollback' to roll back the update.");
            if reboot_exit_code {
                println!("At least one payload requested a reboot of the device it updated.");
                return Ok(EXIT_REBOOT);
            }
            Ok(EXIT_OK)
        }
        Completion::Updated | Completion::Committed | Completion::RolledBack => {
            if !message.is_empty() {
                log::info!("{message}");
            }
            Ok(EXIT_OK)
        }
        Completion::Nothing => Err(Failure {
            message,
            code: EXIT_NOTHING,
        }),
        Completion::Failed => Err(Failure::error(message)),
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
        // Never committed (the name is still artifact_info's, nothing
        // else is provided, e.g. after an install was rolled back): the
        // reference's store has no provides and it prints nothing.
        (Some(record), true) if never_committed(paths, &record) => {}
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

/// `record` provides only the fallback name from `artifact_info`.
fn never_committed(paths: &Paths, record: &StateRecord) -> bool {
    record.installed.provides.is_empty()
        && record.installed.artifact_group.is_none()
        && read_limited(&paths.artifact_info(), 4096)
            .ok()
            .and_then(|text| parse_artifact_info(&text).ok().map(|n| n.to_string()))
            .is_some_and(|name| name == record.installed.artifact_name.as_str())
}
