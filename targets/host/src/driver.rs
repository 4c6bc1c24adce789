//! The std host loop over the core's [`Agent`]: it runs each action the
//! agent asks for against files, block devices, the boot environment,
//! scripts, the HTTP client and the device key, feeds the results back, and
//! sleeps until the agent's next timer or a signal. Every update decision is
//! the agent's; this file only does I/O.

use crate::fs::{atomic_write, read_limited, FilePartition};
use crate::http::{Download, HttpClient};
use crate::keys::DeviceKey;
use crate::paths::Paths;
use crate::progress::Progress;
use crate::scripts::ScriptRunner;
use crate::slot::{Evidence, SlotLayout};
use crate::time::rfc3339_now;
use otalite::agent::{
    Action, ActionId, Agent, Command, Completion, Feed, HandOffEvent, HandOffOp, Hook, HookOutcome,
    Instant, Outcome, Request, Slots,
};
use otalite::artifact::ArtifactHeader;
use otalite::board::{BootControl, Reboot};
use otalite::config::MenderConfig;
use otalite::install::InstallHooks;
use otalite::store::{StateRecord, UpdateStep};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

/// Source read chunk.
pub const CHUNK_LEN: usize = 64 * 1024;
/// Identity and inventory scripts may run this long.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// The deployment log, kept across reboots until the report is delivered.
const DEPLOYMENT_LOG: &str = "deployment.log";
/// Largest deployment log read back for the upload.
const MAX_LOG_READ: usize = 1 << 20;

/// Test hook for power-cut tests: when `OTALITE_TEST_CRASH_AT` names this
/// point, the process aborts on the spot (no cleanup, no unwinding), as a
/// `kill -9` or a power cut between two steps would stop it. Compiled only
/// into debug builds (the tests'); the shipped release binary has no knob.
///
/// | point | where |
/// |---|---|
/// | `persist-<step>` / `after-persist-<step>` | around storing the record with step `idle`, `downloading`, `installed`, `rebooting`, `committing`, `rolling-back`, `reporting` |
/// | `set-trial`, `commit-boot`, `roll-back` (and `after-...`) | around each boot-env write |
/// | `download` / `after-download` | before the artifact download, after it verified |
/// | `reboot` | before asking for the reboot |
/// | `request-<status>` / `after-request-<status>` | around a deployment status report |
pub fn crashpoint(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("OTALITE_TEST_CRASH_AT").is_some_and(|point| point == name) {
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Signals the loop reacts to (managed mode).
#[derive(Debug)]
pub enum Wake {
    /// SIGTERM / SIGINT: stop, exit 0.
    Stop,
    /// SIGUSR1 (`otalite check-update`).
    CheckUpdate,
    /// SIGUSR2 (`otalite send-inventory`).
    SendInventory,
    /// D-Bus `FetchJwtToken`: authenticate again now.
    FetchJwt,
    /// SIGHUP from `otalite control-map`: a request in
    /// [`crate::state::CONTROL_MAP_REQUEST_FILE`].
    ControlMapRequest,
    /// D-Bus `SetUpdateControlMap`: the map's JSON, and where to send the
    /// refresh interval (seconds) or the error.
    SetControlMap(String, std::sync::mpsc::Sender<Result<i32, String>>),
}

/// Told the device token and its server each time the token changes (the
/// D-Bus `JwtTokenStateChange` signal); `("", "")` when it is dropped.
pub type JwtListener = Box<dyn FnMut(&str, &str) + Send>;

/// The Mender server side of the host (managed mode).
pub struct ServerIo {
    /// The HTTP(S) client.
    pub client: HttpClient,
    /// The device key (signs authentication requests).
    pub key: DeviceKey,
}

/// How a run of the agent ended.
#[derive(Debug)]
pub enum Ended {
    /// A standalone command completed.
    Completed(Completion, String),
    /// The agent exited (managed mode).
    Exited {
        /// On an unrecoverable error.
        failed: bool,
        /// Why.
        message: String,
    },
}

/// Everything the actions run against.
pub struct LinuxHost<B, R> {
    /// Paths (config, data, share dirs).
    pub paths: Paths,
    /// The configuration.
    pub config: MenderConfig,
    /// The boot control.
    pub boot: B,
    /// The reboot.
    pub reboot: R,
    /// The server (managed mode).
    pub server: Option<ServerIo>,
    /// Signals (managed mode).
    pub wake: Option<Receiver<Wake>>,
    /// Raised by SIGTERM/SIGINT (managed mode) alongside [`Wake::Stop`]:
    /// an exchange blocked on the network ends within
    /// [`crate::http::POLL_INTERVAL`] and the loop stops.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// The inactive slot, opened by `PrepareSlots { install: true }`.
    partition: Option<FilePartition>,
    /// Script extraction and progress of the running install.
    hooks: Option<Hooks>,
    /// Size of the artifact being downloaded (from its first response).
    download_total: Option<u64>,
    /// The open artifact stream (`OpenArtifact` .. `ReadArtifact`).
    source: Option<Source>,
    started: std::time::Instant,
    /// See [`JwtListener`] (managed mode, D-Bus).
    pub on_jwt: Option<JwtListener>,
    /// The token last told to `on_jwt`.
    last_jwt: String,
    /// `report --failure` (hand-off): the installer's own log
    /// ([`crate::handoff::SUB_UPDATER_LOG`]) goes first in the uploaded
    /// deployment log, as the Python client sends it.
    pub sub_updater_log: bool,
    /// upparat's hooks install deployments (`HandOffRole::Hooks`).
    pub update_hooks: Option<crate::jobs::HookPaths>,
}

/// A completion to feed back once the action's borrow of the agent ended.
enum Done {
    Nothing,
    Outcome(ActionId, Result<(), (bool, String)>),
    Slots(ActionId, Result<Slots, String>),
    Data(ActionId, Vec<u8>),
    Response(ActionId, u16, Vec<u8>),
    Read(ActionId),
    Module(ActionId, Result<String, String>),
    HandOff(ActionId, HandOffDone),
    /// A hook's end: its exit code and last line, or why it did not run.
    Hook(ActionId, Result<(i32, Option<String>), String>),
    Ended(Ended),
}

/// What a hand-off action found ([`crate::handoff`]).
enum HandOffDone {
    Lock(crate::handoff::Lock),
    Saved(u64, Result<(), (bool, String)>),
}

fn step_name(step: &UpdateStep) -> &'static str {
    match step {
        UpdateStep::Idle => "idle",
        UpdateStep::Installed(_) => "installed",
        UpdateStep::Committing(_) => "committing",
        UpdateStep::RollingBack(_) => "rolling-back",
        UpdateStep::Downloading(_) => "downloading",
        UpdateStep::Rebooting(_) => "rebooting",
        UpdateStep::Reporting(_) => "reporting",
        UpdateStep::RollbackRebooting(_) => "rollback-rebooting",
        UpdateStep::HandingOff(_) => "handing-off",
        UpdateStep::HandedOff(_) => "handed-off",
        UpdateStep::Job(_) => "job",
    }
}

/// D-Bus `SetUpdateControlMap` on the agent: the refresh interval, or the
/// reason the map was refused.
fn set_control_map(agent: &mut Agent<'_>, now: Instant, json: &str) -> Result<i32, String> {
    let answer = agent
        .set_control_map(now, json.as_bytes())
        .map(|secs| i32::try_from(secs).unwrap_or(i32::MAX))
        .map_err(|e| format!("Invalid update control map: {e}"));
    if let Err(error) = &answer {
        log::warn!("D-Bus SetUpdateControlMap: {error}");
    }
    answer
}

/// The `status` value of a status-report body (for crash points).
fn status_of(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let rest = text.strip_prefix("{\"status\":\"")?;
    rest.split('"').next()
}

impl<B: BootControl, R: Reboot> LinuxHost<B, R> {
    /// A host for `paths` and `config`.
    pub fn new(paths: Paths, config: MenderConfig, boot: B, reboot: R) -> Self {
        Self {
            paths,
            config,
            boot,
            reboot,
            server: None,
            wake: None,
            stop: None,
            partition: None,
            hooks: None,
            download_total: None,
            source: None,
            started: std::time::Instant::now(),
            on_jwt: None,
            last_jwt: String::new(),
            sub_updater_log: false,
            update_hooks: None,
        }
    }

    /// The agent's clock: milliseconds since the host started.
    pub fn now(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn scripts(&self) -> ScriptRunner {
        ScriptRunner {
            rootfs_dir: self.paths.rootfs_scripts(),
            artifact_dir: self.paths.artifact_scripts(),
            timeout: Duration::from_secs(self.config.state_script_timeout().into()),
            // The log exists from a deployment's first line to its report
            // (managed mode only).
            deployment_log: Some(self.log_path()).filter(|p| self.server.is_some() && p.exists()),
            retry_interval: Duration::from_secs(self.config.state_script_retry_interval().into()),
            retry_timeout: Duration::from_secs(self.config.state_script_retry_timeout().into()),
        }
    }

    fn state_path(&self) -> PathBuf {
        self.paths.data_dir.join(crate::state::STATE_FILE)
    }

    fn log_path(&self) -> PathBuf {
        self.paths.data_dir.join(DEPLOYMENT_LOG)
    }

    /// Runs `agent` until a standalone command completes or the agent exits.
    pub fn run(&mut self, agent: &mut Agent<'_>, command: Option<Command<'_>>) -> Ended {
        if let Some(command) = command {
            let now = self.now();
            log::debug!("agent command: {command:?}");
            if let Err(error) = agent.handle_command(now, command) {
                return Ended::Completed(Completion::Failed, error.to_string());
            }
        }
        loop {
            self.tell_jwt(agent);
            let done = match agent.poll() {
                Some(action) => self.execute(action),
                None => {
                    if let Some(ended) = self.wait(agent) {
                        return ended;
                    }
                    continue;
                }
            };
            let now = self.now();
            match done {
                Done::Nothing => {}
                Done::Outcome(id, Ok(())) => agent.handle_done(now, id, Outcome::Done),
                Done::Outcome(id, Err((transient, why))) => {
                    log::debug!("action {} failed (transient: {transient}): {why}", id.0);
                    agent.handle_done(
                        now,
                        id,
                        if transient {
                            Outcome::Transient(&why)
                        } else {
                            Outcome::Failed(&why)
                        },
                    );
                }
                Done::Slots(id, slots) => {
                    agent.handle_slots(now, id, slots.as_ref().map_err(String::as_str).copied())
                }
                Done::Data(id, data) => agent.handle_data(now, id, &data),
                Done::Response(id, status, body) => agent.handle_response(now, id, status, &body),
                Done::Read(id) => self.read_artifact(agent, id),
                Done::Module(id, result) => {
                    agent.handle_module(now, id, result.as_deref().map_err(String::as_str))
                }
                Done::HandOff(id, HandOffDone::Lock(lock)) => {
                    let event = match &lock {
                        crate::handoff::Lock::Held(text, false) => HandOffEvent::Locked(text),
                        crate::handoff::Lock::Held(text, true) => {
                            HandOffEvent::LockedBeforeBoot(text)
                        }
                        crate::handoff::Lock::Free(name) => HandOffEvent::Free {
                            artifact_name: name.as_deref(),
                        },
                    };
                    agent.handle_hand_off(now, id, event);
                }
                Done::HandOff(id, HandOffDone::Saved(reached, result)) => {
                    let outcome = match &result {
                        Ok(()) => Outcome::Done,
                        Err((true, why)) => Outcome::Transient(why),
                        Err((false, why)) => Outcome::Failed(why),
                    };
                    agent.handle_hand_off(now, id, HandOffEvent::Saved { reached, outcome });
                }
                Done::Hook(id, result) => {
                    let outcome = match &result {
                        Ok((code, line)) => HookOutcome::Exited {
                            code: *code,
                            last_line: line.as_deref(),
                        },
                        Err(why) => HookOutcome::NotRun(why),
                    };
                    agent.handle_hook(now, id, outcome);
                }
                Done::Ended(ended) => return ended,
            }
        }
    }

    /// Gives the agent the Update Control Maps persisted before this start
    /// (managed mode); a damaged file is named in a warning and ignored.
    pub fn load_control_maps(&self, agent: &mut Agent<'_>) {
        let path = self.paths.data_dir.join(crate::state::CONTROL_MAPS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                if let Err(error) = agent.load_control_maps(self.now(), &bytes) {
                    log::warn!(
                        "{}: {error}; starting without update control maps",
                        path.display()
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot read {}: {e}", path.display()),
        }
    }

    /// Answers an `otalite control-map` request (see
    /// [`crate::state::CONTROL_MAP_REQUEST_FILE`]).
    fn control_map_request(&mut self, agent: &mut Agent<'_>, now: Instant) {
        let dir = &self.paths.data_dir;
        let request = dir.join(crate::state::CONTROL_MAP_REQUEST_FILE);
        let Ok(text) = std::fs::read_to_string(&request) else {
            return;
        };
        let _ = std::fs::remove_file(&request);
        let answer = match text.split_once('\n') {
            Some(("set", json)) => {
                set_control_map(agent, now, json).map(|secs| format!("ok {secs}"))
            }
            _ if text.trim() == "clear" => {
                agent.clear_control_maps(now);
                Ok("ok 0".to_owned())
            }
            _ => Err("unknown control-map request".to_owned()),
        };
        let reply = answer.unwrap_or_else(|e| format!("error {e}"));
        if let Err(e) = atomic_write(
            &dir.join(crate::state::CONTROL_MAP_REPLY_FILE),
            reply.as_bytes(),
        ) {
            log::warn!("cannot answer the control-map request: {e}");
        }
    }

    /// Tells [`Self::on_jwt`] when the agent's token changed.
    fn tell_jwt(&mut self, agent: &Agent<'_>) {
        let Some(listener) = self.on_jwt.as_mut() else {
            return;
        };
        let (token, server) = agent.jwt();
        if token != self.last_jwt {
            self.last_jwt = token.to_owned();
            listener(token, server);
        }
    }

    /// Nothing to do now: sleep until the agent's timer or a signal.
    fn wait(&mut self, agent: &mut Agent<'_>) -> Option<Ended> {
        if agent.has_exited() {
            return Some(Ended::Exited {
                failed: false,
                message: String::new(),
            });
        }
        let deadline = agent.poll_at();
        let Some(wake) = &self.wake else {
            // Standalone: no signals; only a timer can be pending.
            match deadline {
                Some(at) => std::thread::sleep(Duration::from_millis(self.now().until(at))),
                None => {
                    return Some(Ended::Completed(
                        Completion::Failed,
                        "the agent stopped without finishing (internal error)".into(),
                    ))
                }
            }
            let now = self.now();
            agent.handle_timeout(now);
            return None;
        };
        let received = match deadline {
            Some(at) => {
                let wait = Duration::from_millis(self.now().until(at));
                match wake.recv_timeout(wait) {
                    Ok(wake) => Some(wake),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(Wake::Stop),
                }
            }
            None => Some(wake.recv().unwrap_or(Wake::Stop)),
        };
        let now = self.now();
        if let Some(wake) = received {
            log::debug!("woken by a signal: {wake:?}");
            let command = match wake {
                Wake::Stop => Command::Stop,
                Wake::CheckUpdate => Command::CheckUpdate,
                Wake::SendInventory => Command::SendInventory,
                Wake::FetchJwt => Command::FetchJwt,
                Wake::SetControlMap(json, reply) => {
                    let _ = reply.send(set_control_map(agent, now, &json));
                    agent.handle_timeout(now);
                    return None;
                }
                Wake::ControlMapRequest => {
                    self.control_map_request(agent, now);
                    agent.handle_timeout(now);
                    return None;
                }
            };
            let _ = agent.handle_command(now, command);
        }
        agent.handle_timeout(now);
        None
    }

    /// A stop was requested (SIGTERM while an exchange was blocked).
    fn stopping(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|stop| stop.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Ends the loop as a stop request does, without feeding the agent the
    /// abandoned exchange (its persisted state resumes at the next start,
    /// as after a power cut).
    fn stopped() -> Done {
        log::info!("stop requested: abandoning the exchange in progress");
        Done::Ended(Ended::Exited {
            failed: false,
            message: String::new(),
        })
    }

    fn execute(&mut self, action: Action<'_>) -> Done {
        if !matches!(
            action,
            Action::ReadArtifact { .. }
                | Action::Request { .. }
                | Action::GatherIdentity { .. }
                | Action::DeploymentLog { .. }
                | Action::ClearDeploymentLog
        ) {
            self.source = None;
        }
        match action {
            Action::Persist { id, record } => {
                let name = StateRecord::decode(record)
                    .map(|r| step_name(&r.step))
                    .unwrap_or("unknown");
                log::debug!(
                    "persisting the state (step {name}, {} bytes) to {}",
                    record.len(),
                    self.state_path().display()
                );
                crashpoint(&format!("persist-{name}"));
                let result = fs::create_dir_all(&self.paths.data_dir)
                    .and_then(|()| atomic_write(&self.state_path(), record))
                    .map_err(|e| {
                        (
                            false,
                            format!("cannot write {}: {e}", self.state_path().display()),
                        )
                    });
                crashpoint(&format!("after-persist-{name}"));
                Done::Outcome(id, result)
            }
            Action::PersistControlMaps { id, record } => {
                let path = self.paths.data_dir.join(crate::state::CONTROL_MAPS_FILE);
                let result = fs::create_dir_all(&self.paths.data_dir)
                    .and_then(|()| atomic_write(&path, record))
                    .map_err(|e| (false, format!("cannot write {}: {e}", path.display())));
                Done::Outcome(id, result)
            }
            Action::RunScripts {
                id,
                group,
                phase,
                ignore_errors,
            } => {
                log::debug!("state scripts {group:?}_{phase:?} (errors ignored: {ignore_errors})");
                let scripts = self.scripts();
                let result = if ignore_errors {
                    scripts.run_ignoring_errors(group, phase);
                    Ok(())
                } else {
                    scripts
                        .run(group, phase)
                        .map_err(|e| (false, e.to_string()))
                };
                Done::Outcome(id, result)
            }
            Action::PrepareSlots { id, install } => Done::Slots(id, self.prepare_slots(install)),
            Action::OpenArtifact { id, uri, from } => {
                log::debug!("opening the artifact {uri} at byte {from}");
                if from == 0 {
                    crashpoint("download");
                }
                match self.open(uri, from) {
                    Ok(source) => {
                        self.source = Some(source);
                        Done::Outcome(id, Ok(()))
                    }
                    Err(_) if self.stopping() => Self::stopped(),
                    Err(error) => Done::Outcome(id, Err(error)),
                }
            }
            Action::ReadArtifact { id } => Done::Read(id),
            Action::SetTrial { id, part } => {
                log::debug!("boot env: trial boot of partition {part} (upgrade_available=1)");
                crashpoint("set-trial");
                let result = self
                    .boot
                    .set_trial(part)
                    .map_err(|e| (false, e.to_string()));
                crashpoint("after-set-trial");
                Done::Outcome(id, result)
            }
            Action::CommitBoot { id } => {
                log::debug!("boot env: committing the running partition (upgrade_available=0)");
                crashpoint("commit-boot");
                let result = self.boot.commit().map_err(|e| (false, e.to_string()));
                crashpoint("after-commit-boot");
                Done::Outcome(id, result)
            }
            Action::RollBack { id, part } => {
                log::debug!("boot env: rolling back to partition {part}");
                crashpoint("roll-back");
                let result = self
                    .boot
                    .roll_back(part)
                    .map_err(|e| (false, e.to_string()));
                crashpoint("after-roll-back");
                Done::Outcome(id, result)
            }
            Action::Reboot { id } => {
                log::debug!("rebooting");
                crashpoint("reboot");
                Done::Outcome(id, self.reboot.reboot().map_err(|e| (false, e.to_string())))
            }
            Action::GatherIdentity { id } => {
                match crate::identity::run_identity(&self.paths.share_dir, SCRIPT_TIMEOUT) {
                    Ok(outputs) => Done::Data(id, joined(outputs.outputs())),
                    Err(error) => Done::Outcome(id, Err((false, error.to_string()))),
                }
            }
            Action::GatherInventory { id } => {
                let outputs = crate::identity::run_inventory(&self.paths.share_dir, SCRIPT_TIMEOUT);
                Done::Data(id, joined(outputs.outputs()))
            }
            Action::Request { id, request } => {
                log::debug!(
                    "request {:?} {}{} ({} body bytes)",
                    request.method,
                    request.server,
                    request.path,
                    request.body.len()
                );
                self.request(id, &request)
            }
            Action::DeploymentLog { level, message } => {
                let line = format!(
                    "{} {} {}\n",
                    rfc3339_now(),
                    level.as_str(),
                    message.replace(['\n', '\r'], " ")
                );
                if let Ok(mut file) = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.log_path())
                {
                    let _ = file.write_all(line.as_bytes());
                }
                Done::Nothing
            }
            Action::ClearDeploymentLog => {
                let _ = fs::remove_file(self.log_path());
                Done::Nothing
            }
            Action::ReadDeploymentLog { id } => {
                let own = read_limited(&self.log_path(), MAX_LOG_READ).unwrap_or_default();
                if !self.sub_updater_log {
                    return Done::Data(id, own);
                }
                // Its lines in the deployment log's form, before the
                // agent's own.
                let installer =
                    crate::handoff::sub_updater_log(&self.paths.data_dir, MAX_LOG_READ as u64);
                let now = rfc3339_now();
                let mut joined = Vec::new();
                for line in String::from_utf8_lossy(&installer).lines() {
                    let line = line.trim_end();
                    if !line.is_empty() {
                        joined.extend_from_slice(format!("{now} info {line}\n").as_bytes());
                    }
                }
                joined.extend_from_slice(&own);
                Done::Data(id, joined)
            }
            Action::Completed {
                completion,
                message,
            } => {
                log::debug!("completed: {completion:?}");
                if completion == Completion::Failed {
                    if let Some(hooks) = &mut self.hooks {
                        hooks.progress.abandon();
                    }
                }
                Done::Ended(Ended::Completed(completion, message.to_string()))
            }
            Action::ModuleCall { id, state } => {
                // A `Download` a failed stream left running ends first.
                if let Some(hooks) = &mut self.hooks {
                    hooks.download = None;
                }
                Done::Module(id, self.module_dirs().call(state))
            }
            Action::HandOff { id, op } => self.hand_off(id, op),
            // Jobs-mode actions come from agents in `Mode::Jobs`, which
            // run in their own loop (`crate::jobs`), never this one.
            // A Mender deployment installed by upparat's hooks.
            Action::Hook {
                id,
                hook,
                elapsed_s,
                retry,
                meta,
                force,
                ..
            } if self.update_hooks.is_some() => {
                let mut args = vec![elapsed_s.to_string(), retry.to_string(), meta.to_string()];
                match hook {
                    Hook::Install => args.push(
                        self.paths
                            .data_dir
                            .join(crate::handoff::ARTIFACT_FILE)
                            .display()
                            .to_string(),
                    ),
                    Hook::Restart => args.push(if force { "True".into() } else { String::new() }),
                    _ => {}
                }
                let path = self.update_hooks.as_ref().and_then(|hooks| hooks.get(hook));
                Done::Hook(
                    id,
                    match path {
                        Some(path) => crate::jobs::run_hook(hook, path, &args),
                        None => Err(format!("no {} hook", hook.as_str())),
                    },
                )
            }
            Action::JobFiles { .. } if self.update_hooks.is_some() => {
                let file = self.paths.data_dir.join(crate::handoff::ARTIFACT_FILE);
                match fs::remove_file(&file) {
                    Ok(()) => log::debug!("removed {}", file.display()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => log::warn!("cannot remove {}: {e}", file.display()),
                }
                Done::Nothing
            }
            Action::Hook { .. }
            | Action::JobDownload { .. }
            | Action::JobBuiltin { .. }
            | Action::JobFiles { .. } => Done::Ended(Ended::Exited {
                failed: true,
                message: "an AWS IoT Jobs action reached the Mender loop".into(),
            }),
            Action::Exit { failed, message } => Done::Ended(Ended::Exited {
                failed,
                message: message.to_string(),
            }),
        }
    }

    /// Runs a hand-off action ([`crate::handoff`]).
    fn hand_off(&mut self, id: ActionId, op: HandOffOp<'_>) -> Done {
        let data = self.paths.data_dir.clone();
        match op {
            HandOffOp::Check => match crate::handoff::check(
                &data,
                &self.paths.share_dir,
                &self.paths.artifact_info(),
            ) {
                Ok(lock) => Done::HandOff(id, HandOffDone::Lock(lock)),
                // Unreadable: as held (never start a second installer).
                Err(error) => {
                    log::warn!("{error}; treating the update lock as held");
                    Done::HandOff(
                        id,
                        HandOffDone::Lock(crate::handoff::Lock::Held(String::new(), false)),
                    )
                }
            },
            HandOffOp::Save { uri, resume } => {
                crashpoint("handoff-download");
                let client = match &self.server {
                    Some(server) => server.client.clone(),
                    None => {
                        match HttpClient::new(crate::http::HttpConfig::from_mender(&self.config)) {
                            Ok(client) => client,
                            Err(e) => {
                                return Done::HandOff(
                                    id,
                                    HandOffDone::Saved(
                                        0,
                                        Err((false, format!("cannot set up HTTPS: {e}"))),
                                    ),
                                )
                            }
                        }
                    }
                };
                if !resume {
                    self.download_total = None;
                }
                let _ = fs::create_dir_all(&data);
                let (reached, result) =
                    crate::handoff::save(&client, &data, uri, resume, &mut self.download_total);
                if result.is_err() && self.stopping() {
                    return Self::stopped();
                }
                Done::HandOff(id, HandOffDone::Saved(reached, result))
            }
            HandOffOp::Start { deployment_id } => {
                crashpoint("handoff-start");
                let result = crate::handoff::start(&data, &self.paths.share_dir, deployment_id)
                    .map_err(|why| (false, why));
                crashpoint("after-handoff-start");
                Done::Outcome(id, result)
            }
            HandOffOp::Release => {
                crashpoint("handoff-release");
                let result = crate::handoff::release(&data).map_err(|e| {
                    (
                        false,
                        format!(
                            "cannot remove {}: {e}",
                            data.join(crate::handoff::LOCK_FILE).display()
                        ),
                    )
                });
                Done::Outcome(id, result)
            }
        }
    }

    /// Where update modules live and work.
    fn module_dirs(&self) -> crate::modules::ModuleDirs {
        crate::modules::ModuleDirs {
            modules: self.paths.share_dir.join("modules").join("v3"),
            work: self.paths.data_dir.join("modules").join("v3"),
            timeout: Duration::from_secs(self.config.module_timeout().into()),
        }
    }

    fn prepare_slots(&mut self, install: bool) -> Result<Slots, String> {
        let layout = SlotLayout::new(
            self.config.rootfs_part_a.as_deref(),
            self.config.rootfs_part_b.as_deref(),
        )
        .map_err(|e| e.to_string())?;
        let boot = self
            .boot
            .boot_state()
            .map_err(|e| format!("cannot read the bootloader environment: {e}"))?;
        let active = layout.detect(boot.boot_part).map_err(|e| e.to_string())?;
        log::debug!(
            "slots: {boot:?}; active partition {}, inactive {} (partition {}), evidence {:?}",
            active.active_part,
            active.inactive.display(),
            active.inactive_part,
            active.evidence
        );
        let slots = Slots {
            active: active.active_part,
            inactive: active.inactive_part,
            proven_by_root_device: active.evidence == Evidence::RootDevice,
        };
        if install {
            self.partition = None;
            self.hooks = None;
            // Aliases of the running slot are refused before a byte is written.
            layout
                .check_install_target(&active)
                .map_err(|e| e.to_string())?;
            self.partition =
                Some(FilePartition::open(&active.inactive).map_err(|e| e.to_string())?);
            let dir = self.paths.artifact_scripts();
            let mut hooks = Hooks::new(dir.clone())
                .map_err(|e| format!("cannot prepare {}: {e}", dir.display()))?;
            // Update modules (both modes).
            hooks.modules = Some(self.module_dirs());
            self.hooks = Some(hooks);
            self.download_total = None;
            log::info!(
                "installing into {} (partition {})",
                active.inactive.display(),
                active.inactive_part
            );
        }
        Ok(slots)
    }

    /// Runs one `ReadArtifact` action: feeds the agent from the open stream
    /// until the artifact is complete, the stream ends or breaks, or the
    /// agent wants no more.
    fn read_artifact(&mut self, agent: &mut Agent<'_>, id: ActionId) {
        let started = self.started;
        let now = move || {
            Instant::from_millis(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX))
        };
        let (Some(source), Some(partition), Some(hooks)) = (
            self.source.as_mut(),
            self.partition.as_mut(),
            self.hooks.as_mut(),
        ) else {
            agent.handle_done(
                now(),
                id,
                Outcome::Failed("the artifact stream is not open"),
            );
            return;
        };
        if hooks.modules.is_some() {
            let installed = &agent.record().installed;
            hooks.current_device = crate::modules::Current {
                artifact_name: installed.artifact_name.to_string(),
                artifact_group: installed
                    .artifact_group
                    .as_deref()
                    .unwrap_or_default()
                    .into(),
                device_type: read_limited(&self.paths.device_type(&self.config), 4096)
                    .ok()
                    .and_then(|text| {
                        otalite::device::parse_device_type(&text)
                            .ok()
                            .map(|t| t.to_string())
                    })
                    .unwrap_or_default(),
            };
        }
        let mut chunk = vec![0u8; CHUNK_LEN];
        loop {
            let read = match source.read(&mut chunk) {
                Ok(0) => {
                    agent.handle_done(now(), id, Outcome::Done);
                    return;
                }
                Ok(read) => read,
                Err(_)
                    if self
                        .stop
                        .as_ref()
                        .is_some_and(|stop| stop.load(std::sync::atomic::Ordering::Relaxed)) =>
                {
                    // As a stop between two chunks (below).
                    let _ = agent.handle_command(now(), Command::Stop);
                    let _ = agent.handle_artifact(now(), &[], partition, hooks);
                    return;
                }
                Err(error) => {
                    let why = format!("reading the artifact failed: {error}");
                    let outcome = if source.resumable() {
                        Outcome::Transient(&why)
                    } else {
                        Outcome::Failed(&why)
                    };
                    agent.handle_done(now(), id, outcome);
                    return;
                }
            };
            let feed = agent.handle_artifact(
                now(),
                chunk.get(..read).unwrap_or_default(),
                partition,
                hooks,
            );
            match feed {
                Feed::Continue => {}
                Feed::Complete => {
                    crashpoint("after-download");
                    return;
                }
                Feed::Stop => return,
            }
            if let Some(wake) = &self.wake {
                // A stop during a long download ends it (the next start
                // reports the deployment); other signals wait.
                match wake.try_recv() {
                    Ok(Wake::Stop) | Err(TryRecvError::Disconnected) => {
                        let _ = agent.handle_command(now(), Command::Stop);
                        let _ = agent.handle_artifact(now(), &[], partition, hooks);
                        return;
                    }
                    // A map is answered at once (its caller waits).
                    Ok(Wake::SetControlMap(json, reply)) => {
                        let _ = reply.send(set_control_map(agent, now(), &json));
                    }
                    Ok(_) | Err(TryRecvError::Empty) => {}
                }
            }
        }
    }

    fn open(&mut self, uri: &str, from: u64) -> Result<Source, (bool, String)> {
        if !crate::source::is_url(uri) {
            if from > 0 {
                return Err((false, format!("cannot resume reading {uri}")));
            }
            let source = crate::source::open(uri).map_err(|e| (false, e.to_string()))?;
            log::info!(
                "installing artifact {uri}{}",
                source
                    .size
                    .map(|s| format!(" of size {s}"))
                    .unwrap_or_default()
            );
            return Ok(Source::Local(Box::new(source)));
        }
        let client = match &self.server {
            Some(server) => server.client.clone(),
            None => HttpClient::new(crate::http::HttpConfig::from_mender(&self.config))
                .map_err(|e| (false, format!("cannot set up HTTPS: {e}")))?,
        };
        match Download::open_at(&client, uri, from, self.download_total) {
            Ok(download) => {
                if from == 0 {
                    log::info!("downloading {} bytes", download.total());
                } else {
                    log::info!("download resumed at byte {from}");
                }
                self.download_total = Some(download.total());
                Ok(Source::Http(Box::new(download)))
            }
            Err(error) => {
                let permanent = matches!(error, crate::http::HttpError::LengthChanged { .. });
                Err((!permanent, format!("cannot download {uri}: {error}")))
            }
        }
    }

    fn request(&mut self, id: ActionId, request: &Request<'_>) -> Done {
        let Some(server) = &self.server else {
            return Done::Outcome(id, Err((false, "no server configured".into())));
        };
        let status = status_of(request.body).map(str::to_string);
        if let Some(status) = &status {
            crashpoint(&format!("request-{status}"));
        }
        let bearer = format!("Bearer {}", request.bearer);
        let mut headers = vec![("Authorization", bearer.as_str())];
        let signature;
        if request.sign_body {
            signature = match server.key.signature_header(request.body) {
                Ok(signature) => signature,
                Err(error) => {
                    return Done::Outcome(
                        id,
                        Err((false, format!("cannot sign the auth request: {error}"))),
                    )
                }
            };
            headers.push(("X-MEN-Signature", signature.as_str()));
        }
        if !request.body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        let url = format!("{}{}", request.server, request.path);
        let body = (!request.body.is_empty()).then_some(request.body);
        let result = server
            .client
            .request(request.method.as_str(), &url, &headers, body);
        if let Some(status) = &status {
            crashpoint(&format!("after-request-{status}"));
        }
        match result {
            Ok(response) => Done::Response(id, response.status, response.body),
            Err(_) if self.stopping() => Self::stopped(),
            Err(error) => Done::Outcome(id, Err((true, error.to_string()))),
        }
    }
}

fn joined(outputs: &[String]) -> Vec<u8> {
    let mut all = Vec::new();
    for output in outputs {
        all.extend_from_slice(output.as_bytes());
        if !output.ends_with('\n') {
            all.push(b'\n');
        }
    }
    all
}

/// An artifact stream: a local file or stdin, or an HTTP body.
enum Source {
    Local(Box<crate::source::ArtifactSource>),
    Http(Box<Download>),
}

impl Source {
    fn resumable(&self) -> bool {
        matches!(self, Self::Http(_))
    }

    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Local(source) => source.read(buffer),
            Self::Http(download) => download.read(buffer),
        }
    }
}

/// Writes artifact state scripts to `<DATA>/scripts` and shows progress.
pub struct Hooks {
    dir: PathBuf,
    current: Option<File>,
    progress: Progress,
    /// Update modules.
    modules: Option<crate::modules::ModuleDirs>,
    /// What the device runs, for a module's tree.
    current_device: crate::modules::Current,
    /// The running `Download` call.
    download: Option<crate::modules::ModuleDownload>,
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
            modules: None,
            current_device: crate::modules::Current::default(),
            download: None,
        })
    }
}

impl Hooks {
    fn module_sink(&mut self) -> std::io::Result<&mut crate::modules::ModuleDownload> {
        self.download
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no update module Download is running"))
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
            header.device_types.iter().collect::<Vec<_>>().join(", ")
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

    fn module_download(&mut self, header: &ArtifactHeader) -> std::io::Result<bool> {
        let Some(dirs) = &self.modules else {
            return Ok(false);
        };
        let payload_type = header.payload_type.as_deref().unwrap_or_default();
        let Some(program) = dirs.program(payload_type) else {
            log::error!(
                "no update module for payload type {payload_type} in {}",
                dirs.modules.display()
            );
            return Ok(false);
        };
        self.download = Some(crate::modules::ModuleDownload::start(
            dirs,
            &program,
            header,
            &self.current_device,
        )?);
        Ok(true)
    }

    fn module_file_start(&mut self, name: &str, size: u64) -> std::io::Result<()> {
        self.progress.update(0, size);
        self.module_sink()?.file_start(name)
    }

    fn module_file_data(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.module_sink()?.file_data(data)
    }

    fn module_file_end(&mut self) -> std::io::Result<()> {
        self.module_sink()?.file_end()
    }

    fn module_download_end(&mut self) -> std::io::Result<()> {
        let result = self.module_sink()?.finish();
        self.download = None;
        result
    }
}
