//! The update agent: one sans-IO state machine for every update flow and
//! its power-loss recovery, in the style of quinn-proto and smoltcp.
//!
//! The agent never opens a file or socket, never reads a clock and never
//! sleeps. A host (the Linux binary, a supervisor, the C API, the
//! simulation tests) runs a loop:
//!
//! ```text
//! loop {
//!     while let Some(action) = agent.poll() {      // one bounded step each
//!         run(action);                             // persist, request, download, env write...
//!         agent.handle_*(now(), id, result);       // its completion
//!     }
//!     match agent.poll_at() {                      // the next timer, if any
//!         Some(t) => { sleep_until(t) /* or a command */; agent.handle_timeout(now()) }
//!         None => break,                           // idle (standalone) or exited
//!     }
//! }
//! ```
//!
//! # Inputs
//!
//! | call | when |
//! |---|---|
//! | [`Agent::handle_command`] | a person, script or signal asks: install, commit, rollback, check-update, send-inventory, stop |
//! | [`Agent::handle_done`] | an action with an id ended: persisted, scripts ran, env written, reboot refused, download ended, transport error |
//! | [`Agent::handle_slots`] | [`Action::PrepareSlots`] found the slots |
//! | [`Agent::handle_data`] | identity or inventory script output, the stored deployment log |
//! | [`Agent::handle_response`] | a device-API answer: status and body |
//! | [`Agent::handle_artifact`] | the next bytes of the artifact; the payload goes straight into the slot (a bounded [`Partition`] call, no copy) |
//! | [`Agent::handle_timeout`] | the time from [`Agent::poll_at`] came |
//!
//! # Actions
//!
//! See [`Action`]: `Persist`, `RunScripts`, `PrepareSlots`,
//! `OpenArtifact`, `ReadArtifact`, `SetTrial`, `CommitBoot`, `RollBack`,
//! `Reboot`, `GatherIdentity`,
//! `GatherInventory`, `Request`, `DeploymentLog`, `ClearDeploymentLog`,
//! `ReadDeploymentLog`, `Completed`, `Exit`. At most one action with an id
//! is outstanding at any time; [`Agent::poll`] returns `None` while it is.
//!
//! # Persisted steps (both modes)
//!
//! Every step is persisted ([`Action::Persist`]) *before* the action it
//! announces:
//!
//! | persisted step | written before | standalone next start (`install`/`commit`/`rollback`) | managed next start |
//! |---|---|---|---|
//! | `Idle` | - | nothing to repair | poll |
//! | `Downloading` | the first status report and the download | (refused: the daemon's deployment) | report `failure` |
//! | `Installed` | the env switch (`SetTrial`) | trial active: wait for commit / rollback; else drop it | roll back (the trial runs: reboot into the old slot), report `failure` |
//! | `Rebooting` | the `rebooting` report and the reboot | (refused) | trial booted (proven by the root device, else U-Boot counted it: `bootcount` > 0): verify, confirm, commit, `success`; else roll back, `failure` |
//! | `Committing` | `CommitBoot` | trial booted: finish the commit; else keep the old | same, then report |
//! | `RollingBack` | `RollBack` | finish the rollback | finish it (the trial runs: reboot into the old slot), report `failure` |
//! | `Reporting` | the final status report | (refused) | send it again (`failure` while a counted trial still runs: reboot first, U-Boot falls back) |
//!
//! Managed mode counts every persisted step and every start inside a
//! deployment; past [`MAX_STATE_WRITES`] the deployment fails (the loop
//! breaker).
//!
//! # Agent steps
//!
//! | flow | steps (each emits one action; failures branch as noted) |
//! |---|---|
//! | standalone install | repair → `PrepareSlots` → scripts `Download_Enter` → `OpenArtifact` → `ReadArtifact` + artifact bytes → `Download_Leave` → `ArtifactInstall_Enter` → persist `Installed` → `SetTrial` → `ArtifactInstall_Leave` → `Completed(Installed)`; a `Download` failure runs `Download_Error` and leaves everything as it was; a later failure runs `ArtifactInstall_Error`, `ArtifactRollback_Enter`, (after `SetTrial`: persist `RollingBack`, `RollBack`), `ArtifactRollback_Leave`, `ArtifactFailure_Enter`/`_Leave`, then settles (below) |
//! | standalone commit | repair → `PrepareSlots` (refuse if the old slot runs) → `ArtifactCommit_Enter` → persist `Committing` → `CommitBoot` → persist `Idle` + provides → `ArtifactCommit_Leave`; an `Enter` failure runs `ArtifactCommit_Error` and rolls back as an install failure does; a `Leave` failure runs `ArtifactCommit_Error` and settles as inconsistent |
//! | standalone rollback | repair → `ArtifactRollback_Enter` → persist `RollingBack` → `RollBack` → `ArtifactRollback_Leave` → settle; when a rollback script failed, `ArtifactFailure_Enter`/`_Leave` first and the command fails |
//! | settle (standalone) | persist `Idle` (skipped when already idle); when an `ArtifactRollback` script or `ArtifactCommit_Leave` failed, the update's provides are recorded under `<name>_INCONSISTENT`, as the reference's `doStandaloneFailureStates` does |
//! | managed poll | inventory at its interval (`GatherInventory`, `PUT`/`PATCH`), update check at its interval (`next` v2, v1 after a 404); commands move either timer to now |
//! | managed deployment | persist `Downloading` → report `downloading` → `PrepareSlots` → `Download_Enter` → `OpenArtifact` → report `downloading` → `ReadArtifact` (reopened from the byte reached, reference backoff) → `Download_Leave` → report `downloading` → `ArtifactInstall_Enter` → report `installing` → persist `Installed` → `SetTrial` → `ArtifactInstall_Leave` → persist `Rebooting` → report `rebooting` → `ArtifactReboot_Enter` → `Reboot` → wait to be stopped |
//! | managed after the reboot | `PrepareSlots` (the old slot runs: fail) → `ArtifactReboot_Leave` → authenticate + report `installing` (retried; unreachable: roll back and reboot) → `ArtifactCommit_Enter` → persist `Committing` → `CommitBoot` → persist `Reporting(success)` → `ArtifactCommit_Leave` |
//! | managed module deployment | the payload goes to an update module instead of the slot: `SupportsRollback` before `Download_Leave`, `ArtifactInstall` and `NeedsArtifactReboot` instead of `SetTrial`, straight to the commit without a reboot, `ArtifactCommit` instead of `CommitBoot`, `Cleanup` before the final report; failures roll back through the module (see [`modules`]) |
//! | managed final report | report `success`/`failure` (retried [`Timing::report_attempts`] times, each attempt persisted), on failure upload the deployment log, persist `Idle`, send the inventory |
//! | managed failure | before `SetTrial`: error scripts, persist `Reporting(failure)`; after it: `ArtifactRollback_Enter`, persist `RollingBack`, `RollBack`, `ArtifactRollback_Leave`, `ArtifactFailure_*`, persist `Reporting(failure)`; on the new system (`ArtifactReboot_Leave`, `ArtifactCommit_Enter`, confirmation failed): the same without `RollBack`, then `ArtifactRollbackReboot_Enter` and `Reboot` (U-Boot falls back from the counted trial); the report goes out from the old system |
//!
//! A [`Command::Stop`] ends managed mode at the next safe point: while
//! waiting, downloading, before persisting `Installed`, or waiting for a
//! reboot. The persisted record says where the next start goes on.

pub mod control_map;
mod mender;
pub mod policy;
mod types;

pub use policy::{backoff, recover, report_attempts, DeploymentStatus, Recovery, MAX_STATE_WRITES};
pub use types::*;

use crate::board::{BootState, PartNumber};
use crate::install::{DeviceFacts, InstallHooks, Installer, InstallerBuffers, Progress};
use crate::partition::Partition;
use crate::protocol::deployments::{
    write_log, write_next_query, write_next_request, write_status, DeploymentInstructions,
    LogMessage,
};
use crate::protocol::keyvalue::{Attributes, KeyValueText};
use crate::store::{
    DeploymentId, Downloading, FinalReport, PendingUpdate, StateRecord, UpdateStep,
};
use heapless::{Deque, String};
use mender::{Call, Reply};

/// Longest artifact location kept ([`Command::Install`], the `next` URI).
pub const MAX_URI_LEN: usize = crate::protocol::deployments::MAX_URI_LEN;
/// Longest message kept for the user or the deployment log.
pub const MAX_MESSAGE_LEN: usize = 512;
/// Longest JWT kept.
pub const MAX_JWT_LEN: usize = 4096;
/// Longest request path (with the v1 `next` query).
pub const MAX_PATH_LEN: usize = 1024;
/// Deployment-log lines uploaded at most (the newest are kept).
pub const MAX_UPLOADED_LOG_LINES: usize = 64;

const MAX_OPS: usize = 16;
const MAX_PENDING_LOGS: usize = 4;
/// Transitions without an action that one `poll` may take (a guard: the
/// flows never need more than a few).
const MAX_TRANSITIONS: u32 = 64;

type Message = String<MAX_MESSAGE_LEN>;

/// Formats into a [`Message`] (cut at its capacity: the start says what
/// happened).
macro_rules! text {
    ($($arg:tt)*) => {{
        let mut message = Message::new();
        let _ = core::fmt::Write::write_fmt(&mut message, format_args!($($arg)*));
        message
    }};
}

// After `text!`: they use the macro.
mod control;
pub mod handoff;
pub mod jobs;
pub mod mender_hooks;
pub mod modules;

pub use handoff::{HandOffEvent, HandOffOp, HandOffRole};
pub use jobs::{Builtin, Hook, HookOutcome, HookPolicy, HookSet, JobDownloadEnd, JobsSettings};

/// Why an agent could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentError {
    /// A buffer of [`AgentBuffers`] is too small.
    BufferTooSmall {
        /// Which one.
        buffer: &'static str,
        /// Bytes needed at least.
        required: usize,
    },
}

impl core::fmt::Display for AgentError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BufferTooSmall { buffer, required } => {
                write!(f, "the agent's {buffer} buffer needs {required} bytes")
            }
        }
    }
}

impl core::error::Error for AgentError {}

/// A persisted-step change, applied to the record when its `Persist` is
/// issued (so queued steps are written in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    Idle,
    /// A start inside a deployment (loop breaker): count, keep the step.
    Count,
    Installed,
    Committing,
    RollingBack,
    Rebooting,
    Downloading,
    /// Final report; `true` = success.
    Reporting(bool),
    /// Another delivery attempt of the final report (not counted).
    ReportAttempt,
    /// The pending provides become the installed ones; then `Idle`, or
    /// `Reporting(success)` with a deployment.
    Committed,
    /// Managed: the deployment failed, the rollback reboot follows
    /// ([`UpdateStep::RollbackRebooting`]).
    RollbackRebooting,
    /// Standalone end of a failure, rollback or late commit failure:
    /// `Idle`, or, when an `ArtifactRollback` script failed (or the commit
    /// is inconsistent), the pending provides installed under
    /// `<name>_INCONSISTENT`, as the reference records them. Managed (a
    /// module deployment that could not roll back): only the installed
    /// name becomes `<name>_INCONSISTENT`, then the `failure` report.
    Settle,
    /// Hand-off: the file is complete; the lock and the installer follow
    /// ([`UpdateStep::HandingOff`]).
    HandingOff,
    /// Hand-off: the installer owns the device until it removes the lock
    /// ([`UpdateStep::HandedOff`]).
    HandedOff,
    /// Jobs: the current job reached this phase ([`UpdateStep::Job`]).
    Job(crate::store::JobPhase),
}

/// A queued step with no decision attached: it runs before the current
/// [`Step`] goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// Run scripts, ignoring failures.
    Script(ScriptGroup, ScriptPhase),
    Mark(Mark),
    /// Boot `previous_part` again (an error is fatal).
    EnvRollBack,
    /// `upgrade_available=0` (an error is fatal).
    EnvCommit,
    /// A deployment-log line (text queued in `logs`).
    DeploymentLog(LogLevel),
    ClearDeploymentLog,
    /// Store the Update Control Map pool (a failure is logged).
    PersistMaps,
    /// Jobs: remove the download files (but the current job's, `keep`).
    JobFiles {
        keep: bool,
    },
}

/// Why an API call is made: decides what its reply leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Inventory,
    Next,
    /// `downloading`, before the download.
    Downloading,
    /// `downloading` again, once the download is open (the reference's
    /// store state).
    Opened,
    /// `downloading` a third time, after the download was verified.
    Downloaded,
    Installing,
    Rebooting,
    /// `installing` from the new system, before the commit.
    Confirm,
    Final,
    Log,
    /// Refresh the deployment's server map before a control point.
    FetchMap(control_map::ControlState),
    /// `pause_before_*`.
    Paused(control_map::ControlState),
}

/// Where the authentication of a call stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ApiPhase {
    Identity,
    Auth(usize),
    Send,
}

/// What the standalone repair found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repaired {
    Nothing,
    Discarded,
    FinishedCommit,
    CommitLost,
    FinishedRollback,
    Refused,
}

/// The agent's current step (see the module tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Standalone: waiting for a command. Managed: the poll schedule.
    /// Managed: at an Update Control Map point ([`control`]).
    Control(control_map::ControlState),
    Ready,
    Complete(Completion),
    Exit {
        failed: bool,
    },
    Exited,
    // Standalone.
    InstPrepare,
    /// Standalone rollback: the scripts and env switch ran; the result
    /// depends on whether an `ArtifactRollback` script failed.
    RollbackSettle,
    InstDownloadEnter,
    InstOpen,
    InstRead,
    InstDownloadLeave,
    InstInstallEnter,
    InstSetTrial,
    InstInstallLeave,
    ComPrepare,
    ComEnter,
    ComLeave,
    // Managed.
    Recover,
    GatherInventory,
    Call(Purpose),
    /// Start the call for `Purpose` again (after a retry wait).
    Again(Purpose),
    DepPrepare,
    DepDownloadEnter,
    DepOpen,
    DepRead,
    DepDownloadLeave,
    DepInstallEnter,
    DepSetTrial,
    DepInstallLeave,
    DepRebootEnter,
    DepReboot,
    RebootWait,
    VerifySlots,
    RebootLeave,
    CommitEnter,
    CommitLeave,
    RollbackReboot,
    RollbackRebootWait,
    Report,
    ReadLog,
    /// An update module flow (standalone, [`modules`]).
    Module(modules::ModStep),
    /// The hand-off flow ([`handoff`]).
    HandOff(handoff::HandStep),
    /// A Mender deployment's hook runs ([`mender_hooks`]).
    Hooks(jobs::Hook),
    /// The AWS IoT Jobs flow ([`jobs`]).
    Jobs,
}

/// The update agent. See the module documentation.
pub struct Agent<'b> {
    config: AgentConfig<'b>,
    boot: BootState,
    record: StateRecord,
    record_buf: &'b mut [u8],
    request_buf: &'b mut [u8],
    request_len: usize,
    auth_buf: &'b mut [u8],
    auth_len: usize,
    installer: Installer<'b>,

    now: Instant,
    step: Step,
    ops: Deque<Op, MAX_OPS>,
    current_op: Option<Op>,
    outstanding: Option<(ActionId, bool)>,
    next_id: u32,
    sleep_until: Option<Instant>,
    stopping: bool,
    reason: Message,
    logs: Deque<(LogLevel, Message), MAX_PENDING_LOGS>,
    log_text: Message,

    // Standalone.
    uri: String<MAX_URI_LEN>,
    // Both.
    pending: PendingUpdate,
    slots: Option<Slots>,
    deployment_id: Option<DeploymentId>,
    download_tries: u32,
    download_progress_at: u64,
    /// The `downloading` report after the first open was sent.
    download_opened: bool,
    /// Standalone: an `ArtifactRollback` script failed in this command (or
    /// `ArtifactCommit_Leave` failed after the commit): the result is
    /// recorded as `<name>_INCONSISTENT` ([`Mark::Settle`]).
    inconsistent: bool,
    /// The update module flow ([`modules`]).
    module: modules::ModuleFlow,
    /// The hand-off flow ([`handoff`]).
    hand_off: handoff::HandOffFlow,
    /// The hooks flow of a Mender deployment ([`mender_hooks`]).
    mender_hooks: mender_hooks::MenderHooksFlow,
    /// The AWS IoT Jobs flow ([`jobs`]), in [`Mode::Jobs`].
    jobs: Option<jobs::JobsFlow<'b>>,

    // Managed.
    offer: DeploymentInstructions,
    jwt: String<MAX_JWT_LEN>,
    /// Update Control Maps ([`control`]).
    control_maps: control_map::Pool,
    /// Refresh the deployment's server map before the next query.
    control_fetch: bool,
    control_fetch_attempts: u32,
    /// `pause_before_*` already reported in this deployment, per state.
    pause_reported: [bool; 3],
    /// `ArtifactReboot_Enter` ran before a pause at the reboot point.
    reboot_pause_prepared: bool,
    /// The encoded pool for [`Action::PersistControlMaps`].
    maps_buf: [u8; control_map::MAX_ENCODED_LEN],
    api_phase: ApiPhase,
    call: Call,
    call_attempt: u8,
    auth_failed: bool,
    patch_inventory: bool,
    next_v2: bool,
    path: String<MAX_PATH_LEN>,
    next_inventory: Instant,
    next_update: Instant,
    confirm_attempts: u32,
    report: FinalReport,
    /// The server that issued the JWT (index into the settings' servers).
    auth_server: usize,
    /// How the last authentication attempt ended.
    auth_last: Reply,
}

/// What the reference appends to the artifact name when an update ended
/// in a state it cannot vouch for (a failed rollback script, a failed
/// `ArtifactCommit_Leave`).
const INCONSISTENT_SUFFIX: &str = "_INCONSISTENT";

/// `name` + [`INCONSISTENT_SUFFIX`], cutting the name's end when there is
/// no room, so the mark is never lost.
fn inconsistent_name<const N: usize>(name: &String<N>) -> String<N> {
    let room = N.saturating_sub(INCONSISTENT_SUFFIX.len());
    let mut out: String<N> = String::new();
    for ch in name.chars() {
        if out.len().saturating_add(ch.len_utf8()) > room || out.push(ch).is_err() {
            break;
        }
    }
    let _ = out.push_str(INCONSISTENT_SUFFIX);
    out
}

fn copy_str<const N: usize>(text: &str) -> String<N> {
    let mut out = String::new();
    for ch in text.chars() {
        if out.push(ch).is_err() {
            break;
        }
    }
    out
}

fn id_of(step: &UpdateStep) -> Option<DeploymentId> {
    match step {
        UpdateStep::Downloading(d) => Some(d.deployment_id.clone()),
        UpdateStep::Installed(p)
        | UpdateStep::Rebooting(p)
        | UpdateStep::Committing(p)
        | UpdateStep::RollingBack(p) => p.deployment_id.clone(),
        UpdateStep::Reporting(r) | UpdateStep::RollbackRebooting(r) => {
            Some(r.deployment_id.clone())
        }
        UpdateStep::HandingOff(d) | UpdateStep::HandedOff(d) => Some(d.deployment_id.clone()),
        UpdateStep::Idle | UpdateStep::Job(_) => None,
    }
}

fn pending_of(step: &UpdateStep) -> Option<&PendingUpdate> {
    match step {
        UpdateStep::Installed(p)
        | UpdateStep::Rebooting(p)
        | UpdateStep::Committing(p)
        | UpdateStep::RollingBack(p) => Some(p),
        _ => None,
    }
}

impl<'b> Agent<'b> {
    /// An agent over caller buffers, starting from the persisted `record`
    /// (a fresh device: [`StateRecord::default`] with the installed name)
    /// and the boot environment as read now.
    ///
    /// Managed mode starts with the restart recovery; standalone mode
    /// repairs when the first command arrives.
    ///
    /// # Errors
    /// A buffer is too small.
    pub fn new(
        config: AgentConfig<'b>,
        record: StateRecord,
        boot: BootState,
        buffers: AgentBuffers<'b>,
    ) -> Result<Self, AgentError> {
        let AgentBuffers {
            record: record_buf,
            request,
            auth,
            output,
            window,
            block,
            compare,
        } = buffers;
        let check = |buffer: &'static str, len: usize, required: usize| {
            if len < required {
                Err(AgentError::BufferTooSmall { buffer, required })
            } else {
                Ok(())
            }
        };
        check("record", record_buf.len(), crate::store::MAX_RECORD_LEN)?;
        check("request", request.len(), 16 * 1024)?;
        check("auth", auth.len(), 8 * 1024)?;
        check("window", window.len(), crate::artifact::WINDOW_LEN)?;
        check("output", output.len(), 1)?;
        check("block", block.len(), 1)?;
        check("compare", compare.len(), 1)?;
        let installer = Installer::new(InstallerBuffers {
            output,
            window,
            block,
            compare,
        })
        .map_err(|_| AgentError::BufferTooSmall {
            buffer: "window",
            required: crate::artifact::WINDOW_LEN,
        })?;
        let first_step = match config.mode {
            Mode::Managed(settings) if matches!(settings.hand_off, HandOffRole::Report { .. }) => {
                Step::HandOff(handoff::HandStep::ReportCheck)
            }
            Mode::Managed(_) => Step::Recover,
            Mode::Standalone => Step::Ready,
            Mode::Jobs(_) => Step::Jobs,
        };
        // Jobs mode: the MQTT session receives into the request buffer and
        // keeps its QoS 1 publishes in the auth buffer (the Mender
        // exchanges that use them do not exist in this mode).
        let (request, auth, jobs) = match config.mode {
            Mode::Jobs(settings) => (
                <&mut [u8]>::default(),
                <&mut [u8]>::default(),
                Some(jobs::JobsFlow::new(settings, request, auth, &record)),
            ),
            _ => (request, auth, None),
        };
        let deployment_id = id_of(&record.step);
        let pending = pending_of(&record.step).cloned().unwrap_or(PendingUpdate {
            provides: record.installed.clone(),
            trial_part: 0,
            previous_part: 0,
            deployment_id: None,
        });
        let report = match &record.step {
            UpdateStep::Reporting(report) | UpdateStep::RollbackRebooting(report) => report.clone(),
            _ => FinalReport {
                deployment_id: DeploymentId::new(),
                success: false,
                attempts: 0,
            },
        };
        Ok(Self {
            config,
            boot,
            record,
            record_buf,
            request_buf: request,
            request_len: 0,
            auth_buf: auth,
            auth_len: 0,
            installer,
            now: Instant::default(),
            step: first_step,
            ops: Deque::new(),
            current_op: None,
            outstanding: None,
            next_id: 0,
            sleep_until: None,
            stopping: false,
            reason: Message::new(),
            logs: Deque::new(),
            log_text: Message::new(),
            uri: String::new(),
            pending,
            slots: None,
            deployment_id,
            download_tries: 0,
            download_progress_at: 0,
            download_opened: false,
            inconsistent: false,
            module: modules::ModuleFlow::default(),
            hand_off: handoff::HandOffFlow::default(),
            mender_hooks: mender_hooks::MenderHooksFlow::default(),
            jobs,
            offer: DeploymentInstructions::default(),
            jwt: String::new(),
            control_maps: control_map::Pool::new(),
            control_fetch: false,
            control_fetch_attempts: 0,
            pause_reported: [false; 3],
            reboot_pause_prepared: false,
            maps_buf: [0; control_map::MAX_ENCODED_LEN],
            api_phase: ApiPhase::Identity,
            call: Call::Next,
            call_attempt: 0,
            auth_failed: false,
            patch_inventory: false,
            next_v2: true,
            path: String::new(),
            next_inventory: Instant::default(),
            next_update: Instant::default(),
            confirm_attempts: 0,
            report,
            auth_server: 0,
            auth_last: Reply::Unauthorized,
        })
    }

    /// The state as last persisted (or about to be).
    pub fn record(&self) -> &StateRecord {
        &self.record
    }

    /// The current device token and the server that issued it (both empty
    /// before the first authentication), as D-Bus `GetJwtToken` answers.
    pub fn jwt(&self) -> (&str, &str) {
        if self.jwt.is_empty() {
            return ("", "");
        }
        (&self.jwt, self.server_url().unwrap_or(""))
    }

    /// The last failure or result message.
    pub fn message(&self) -> &str {
        &self.reason
    }

    /// The agent waits for artifact bytes ([`Agent::handle_artifact`]).
    pub fn wants_artifact(&self) -> bool {
        matches!(self.step, Step::InstRead | Step::DepRead)
            && matches!(self.outstanding, Some((_, false)))
    }

    /// The location of the artifact being downloaded (the `uri` of
    /// [`Action::OpenArtifact`]), from that action until the download
    /// ended (complete, refused, failed or given up), reopenings and the
    /// `downloading` report between the open and the read included;
    /// `None` otherwise. The agent keeps it anyway, so a host that reopens
    /// or logs the stream during [`Action::ReadArtifact`] need not copy it
    /// out of the action.
    pub fn artifact_uri(&self) -> Option<&str> {
        match self.step {
            Step::InstOpen | Step::InstRead => Some(self.uri.as_str()),
            Step::DepOpen
            | Step::DepRead
            | Step::Call(Purpose::Opened)
            | Step::Again(Purpose::Opened) => Some(self.offer.uri.as_str()),
            _ => None,
        }
    }

    /// The agent has stopped ([`Action::Exit`] was returned).
    pub fn has_exited(&self) -> bool {
        self.step == Step::Exited
    }

    fn managed(&self) -> Option<ServerSettings<'b>> {
        match self.config.mode {
            Mode::Managed(settings) => Some(settings),
            Mode::Standalone | Mode::Jobs(_) => None,
        }
    }

    fn set_reason(&mut self, message: Message) {
        self.reason = message;
    }

    fn push_op(&mut self, op: Op) {
        if self.is_report_role()
            && matches!(
                op,
                Op::Mark(_) | Op::ClearDeploymentLog | Op::PersistMaps | Op::Script(..)
            )
        {
            // The report role only reports: the daemon owns the state.
            return;
        }
        if self.ops.push_back(op).is_err() {
            // The flows queue far fewer ops than MAX_OPS; a full queue is a
            // bug, and stopping is the safe answer.
            error!("agent op queue overflow; stopping");
            self.ops.clear();
            self.step = self.fatal_step();
        }
    }

    fn push_ops(&mut self, ops: &[Op]) {
        for op in ops {
            self.push_op(*op);
        }
    }

    fn deployment_log(&mut self, level: LogLevel, text: Message) {
        if self.logs.is_full() {
            let _ = self.logs.pop_front();
        }
        let _ = self.logs.push_back((level, text));
        self.push_op(Op::DeploymentLog(level));
    }

    fn fatal_step(&self) -> Step {
        if self.managed().is_some() || self.jobs.is_some() {
            Step::Exit { failed: true }
        } else {
            Step::Complete(Completion::Failed)
        }
    }

    fn fatal(&mut self, message: Message) {
        self.set_reason(message);
        error!("{}", self.reason.as_str());
        self.ops.clear();
        self.sleep_until = None;
        self.step = self.fatal_step();
    }

    // ---------------------------------------------------------------
    // Inputs.

    /// A command from a person, a script or a signal.
    ///
    /// # Errors
    /// The command does not fit the mode or another one is running; the
    /// agent is unchanged.
    pub fn handle_command(
        &mut self,
        now: Instant,
        command: Command<'_>,
    ) -> Result<(), CommandError> {
        self.now = now;
        let managed = self.managed().is_some();
        match command {
            Command::Stop => {
                self.stopping = true;
                if !managed && self.step == Step::Ready {
                    self.step = Step::Exit { failed: false };
                }
                Ok(())
            }
            Command::CheckUpdate | Command::SendInventory | Command::FetchJwt if !managed => {
                Err(CommandError::WrongMode)
            }
            Command::CheckUpdate => {
                self.next_update = now;
                if matches!(
                    self.step,
                    Step::Ready | Step::HandOff(handoff::HandStep::Locked)
                ) {
                    self.sleep_until = None;
                }
                Ok(())
            }
            Command::FetchJwt if self.step != Step::Ready || self.outstanding.is_some() => {
                Err(CommandError::Busy)
            }
            Command::FetchJwt => {
                self.jwt.clear();
                self.next_inventory = now;
                self.sleep_until = None;
                Ok(())
            }
            Command::SendInventory => {
                self.next_inventory = now;
                if self.step == Step::Ready {
                    self.sleep_until = None;
                }
                Ok(())
            }
            Command::Install { .. } | Command::Commit | Command::Rollback if managed => {
                Err(CommandError::WrongMode)
            }
            _ if self.step != Step::Ready || self.outstanding.is_some() => Err(CommandError::Busy),
            Command::Install { uri } => {
                if uri.len() > MAX_URI_LEN {
                    return Err(CommandError::UriTooLong);
                }
                self.uri = copy_str(uri);
                self.reason.clear();
                self.inconsistent = false;
                match self.repair() {
                    Repaired::Refused => {}
                    Repaired::Nothing if matches!(self.record.step, UpdateStep::Installed(_)) => {
                        self.set_reason(text!(
                            "update {} is already installed and waiting; run 'otalite commit' or 'otalite rollback' first",
                            self.pending.provides.artifact_name
                        ));
                        self.step = Step::Complete(Completion::Failed);
                    }
                    _ => self.step = Step::InstPrepare,
                }
                Ok(())
            }
            Command::Commit => {
                self.reason.clear();
                self.inconsistent = false;
                match self.repair() {
                    Repaired::Refused => {}
                    Repaired::FinishedCommit => self.step = Step::Complete(Completion::Committed),
                    Repaired::CommitLost => self.fail(text!(
                        "the interrupted commit could not be completed: the bootloader went back to the previous partition"
                    )),
                    Repaired::Discarded => self.fail(text!(
                        "the installed update is not active: the bootloader rolled back to the previous partition (or the update was never activated); nothing committed"
                    )),
                    Repaired::Nothing if self.is_module_update() => self.module_commit(),
                    Repaired::Nothing if matches!(self.record.step, UpdateStep::Installed(_)) => {
                        self.step = Step::ComPrepare;
                    }
                    Repaired::Nothing | Repaired::FinishedRollback => {
                        self.set_reason(text!("There is nothing to commit"));
                        self.step = Step::Complete(Completion::Nothing);
                    }
                }
                Ok(())
            }
            Command::Rollback => {
                self.reason.clear();
                self.inconsistent = false;
                match self.repair() {
                    Repaired::Refused => {}
                    Repaired::FinishedRollback => {
                        self.step = Step::Complete(Completion::RolledBack)
                    }
                    Repaired::Nothing if self.is_module_update() => self.module_rollback(),
                    Repaired::Nothing if matches!(self.record.step, UpdateStep::Installed(_)) => {
                        self.push_ops(&[
                            Op::Script(ScriptGroup::ArtifactRollback, ScriptPhase::Enter),
                            Op::Mark(Mark::RollingBack),
                            Op::EnvRollBack,
                            Op::Script(ScriptGroup::ArtifactRollback, ScriptPhase::Leave),
                        ]);
                        self.step = Step::RollbackSettle;
                    }
                    _ => {
                        self.set_reason(text!("There is nothing to roll back"));
                        self.step = Step::Complete(Completion::Nothing);
                    }
                }
                Ok(())
            }
        }
    }

    /// The action `id` ended.
    pub fn handle_done(&mut self, now: Instant, id: ActionId, outcome: Outcome<'_>) {
        self.now = now;
        let Some((expected, is_op)) = self.outstanding else {
            return;
        };
        if expected != id {
            return;
        }
        self.outstanding = None;
        if is_op {
            self.op_done(outcome);
        } else {
            self.step_done(outcome);
        }
    }

    /// [`Action::PrepareSlots`] `id` found `slots` (or failed, saying why).
    pub fn handle_slots(&mut self, now: Instant, id: ActionId, slots: Result<Slots, &str>) {
        self.now = now;
        if self.outstanding != Some((id, false)) {
            return;
        }
        self.outstanding = None;
        let slots = match slots {
            Ok(slots) => slots,
            Err(why) => {
                if self.step == Step::VerifySlots {
                    // The boot env said the trial booted; without a root
                    // device to prove otherwise, go on (unless U-Boot never
                    // counted a trial boot).
                    if self.trial_never_booted() {
                        self.reboot_missed(self.pending.previous_part);
                    } else {
                        self.step_after_verify();
                    }
                } else {
                    self.fail(text!("{why}"));
                }
                return;
            }
        };
        self.slots = Some(slots);
        match self.step {
            Step::InstPrepare | Step::DepPrepare => {
                if self.boot.boot_part == Some(slots.inactive) {
                    // After a rollback that waits for its reboot: the slot
                    // to write is the one the bootloader starts next.
                    self.fail(text!(
                        "partition {} boots next (a rollback waits for a reboot); reboot before installing",
                        slots.inactive
                    ));
                    return;
                }
                info!(
                    "active partition {} ({}); installing into partition {}",
                    slots.active,
                    if slots.proven_by_root_device {
                        "root device"
                    } else {
                        "boot environment"
                    },
                    slots.inactive
                );
                if self.step == Step::DepPrepare {
                    let device_type = self.config.device_type;
                    if !self.offer.device_types_compatible.contains(device_type) {
                        self.fail(text!("the deployment is not for device type {device_type}"));
                        return;
                    }
                    self.step = Step::DepDownloadEnter;
                } else {
                    self.step = Step::InstDownloadEnter;
                }
            }
            Step::ComPrepare => {
                // Only the root device can prove the old slot still runs.
                // Without it the reference commits (a person may commit
                // before rebooting on purpose), and so does otalite: the
                // standalone verbs stay a drop-in.
                let running = if slots.proven_by_root_device {
                    slots.active
                } else {
                    self.pending.trial_part
                };
                if running != self.pending.trial_part {
                    self.fail(text!(
                        "the device still runs partition {}; reboot into the new partition {} before committing",
                        running, self.pending.trial_part
                    ));
                } else {
                    self.step = Step::ComEnter;
                }
            }
            Step::VerifySlots => {
                if slots.proven_by_root_device && slots.active != self.pending.trial_part {
                    self.reboot_missed(slots.active);
                } else if !slots.proven_by_root_device && self.trial_never_booted() {
                    self.reboot_missed(self.pending.previous_part);
                } else {
                    self.step_after_verify();
                }
            }
            _ => {}
        }
    }

    /// Script output ([`Action::GatherIdentity`], [`Action::GatherInventory`])
    /// or the stored deployment log ([`Action::ReadDeploymentLog`]).
    pub fn handle_data(&mut self, now: Instant, id: ActionId, data: &[u8]) {
        self.now = now;
        if self.outstanding != Some((id, false)) {
            return;
        }
        self.outstanding = None;
        match self.step {
            Step::Call(_) if self.api_phase == ApiPhase::Identity => self.identity_ready(data),
            Step::GatherInventory => self.inventory_ready(data),
            Step::ReadLog => self.log_ready(data),
            _ => {}
        }
    }

    /// The answer to [`Action::Request`] `id`.
    pub fn handle_response(&mut self, now: Instant, id: ActionId, status: u16, body: &[u8]) {
        self.now = now;
        if self.outstanding != Some((id, false)) {
            return;
        }
        self.outstanding = None;
        match self.api_phase {
            ApiPhase::Auth(server) => self.auth_answer(server, status, body),
            ApiPhase::Send => self.call_answer(status, body),
            ApiPhase::Identity => {}
        }
    }

    /// Time passed (call at or after [`Agent::poll_at`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.jobs.is_some() {
            self.jobs_timeout(now);
        }
    }

    /// The next artifact bytes of the running [`Action::ReadArtifact`]. The
    /// payload is written into `slot` as it arrives (in blocks of the
    /// `block` buffer), scripts go to `hooks`. Bounded work: `bytes` once.
    ///
    /// [`Feed::Complete`] and [`Feed::Stop`] end the `ReadArtifact`: the
    /// host closes the stream and sends no `handle_done` for it.
    pub fn handle_artifact<P, H>(
        &mut self,
        now: Instant,
        bytes: &[u8],
        slot: &mut P,
        hooks: &mut H,
    ) -> Feed
    where
        P: Partition,
        P::Error: core::fmt::Display,
        H: InstallHooks,
    {
        self.now = now;
        if !self.wants_artifact() {
            return Feed::Stop;
        }
        if self.stopping && self.managed().is_some() {
            self.outstanding = None;
            info!("stopping during the download; the next start reports the deployment");
            self.step = Step::Exit { failed: false };
            return Feed::Stop;
        }
        let device = DeviceFacts {
            keys: self.config.keys,
            device_type: self.config.device_type,
            installed: &self.record.installed,
        };
        match self.installer.feed(bytes, slot, hooks, &device) {
            Ok((_, Progress::NeedsMoreInput)) => Feed::Continue,
            Ok((_, Progress::Done)) => {
                self.outstanding = None;
                self.download_complete();
                Feed::Complete
            }
            Err(error) => {
                self.outstanding = None;
                self.download_failed(text!(
                    "{error}; nothing was activated, the running system and boot configuration are unchanged"
                ));
                Feed::Stop
            }
        }
    }

    /// When the agent wants to be called again ([`Agent::handle_timeout`])
    /// if nothing else happens; `None`: only an input can wake it.
    pub fn poll_at(&self) -> Option<Instant> {
        if self.jobs.is_some() {
            // The MQTT session's timers run beside the actions.
            return self.jobs_poll_at();
        }
        if self.outstanding.is_some() {
            return None;
        }
        if let Some(until) = self.sleep_until {
            return Some(until);
        }
        if self.step == Step::Ready && self.ops.is_empty() && self.managed().is_some() {
            return Some(self.next_inventory.min(self.next_update));
        }
        None
    }

    // ---------------------------------------------------------------
    // Output.

    /// The next action, or `None` when the agent waits (for an outstanding
    /// completion, a timer or a command). Bounded work: at most one action
    /// and a few transitions.
    pub fn poll(&mut self) -> Option<Action<'_>> {
        let mut budget = MAX_TRANSITIONS;
        loop {
            if self.outstanding.is_some() || self.step == Step::Exited {
                return None;
            }
            if let Some(op) = self.ops.pop_front() {
                if let Some(kind) = self.prepare_op(op) {
                    return Some(self.op_action(kind));
                }
                continue;
            }
            if let Some(until) = self.sleep_until {
                if self.stopping && self.managed().is_some() {
                    self.sleep_until = None;
                    self.step = Step::Exit { failed: false };
                } else if self.now < until {
                    return None;
                } else {
                    self.sleep_until = None;
                }
            }
            budget = budget.saturating_sub(1);
            if budget == 0 {
                self.fatal(text!("agent made no progress (internal error)"));
                return None;
            }
            match self.dispatch() {
                Dispatch::Action(kind) => return Some(self.step_action(kind)),
                Dispatch::Wait => return None,
                Dispatch::Again => {}
            }
        }
    }

    fn take_id(&mut self, is_op: bool) -> ActionId {
        self.next_id = self.next_id.wrapping_add(1);
        let id = ActionId(self.next_id);
        self.outstanding = Some((id, is_op));
        id
    }

    /// Applies the op's state change; `Some` when it needs an action.
    fn prepare_op(&mut self, op: Op) -> Option<OpKind> {
        self.current_op = Some(op);
        match op {
            Op::Script(group, phase) => Some(OpKind::Script(group, phase)),
            // Nothing to record: the reference leaves its store as it was.
            Op::Mark(Mark::Settle)
                if !self.inconsistent && self.record.step == UpdateStep::Idle =>
            {
                None
            }
            Op::Mark(mark) => {
                self.apply_mark(mark);
                match self.record.encode(self.record_buf) {
                    Ok(encoded) => Some(OpKind::Persist(encoded.len())),
                    Err(error) => {
                        self.fatal(text!("cannot encode the state record: {error}"));
                        None
                    }
                }
            }
            Op::EnvRollBack => Some(OpKind::RollBack(self.pending.previous_part)),
            Op::EnvCommit => Some(OpKind::Commit),
            Op::DeploymentLog(level) => {
                let (_, text) = self.logs.pop_front().unwrap_or((level, Message::new()));
                self.log_text = text;
                Some(OpKind::Log(level))
            }
            Op::ClearDeploymentLog => Some(OpKind::ClearLog),
            Op::JobFiles { keep } => Some(OpKind::JobFiles(keep)),
            Op::PersistMaps => match self.control_maps.encode(&mut self.maps_buf) {
                Ok(len) => Some(OpKind::PersistMaps(len)),
                Err(error) => {
                    warn!("cannot encode the update control maps: {error}");
                    None
                }
            },
        }
    }

    fn op_action(&mut self, kind: OpKind) -> Action<'_> {
        match kind {
            OpKind::Script(group, phase) => Action::RunScripts {
                id: self.take_id(true),
                group,
                phase,
                // As the reference: a failing rollback script stops its
                // group and is noted ([`Mark::Settle`]); the error and
                // failure groups run every script and go on.
                ignore_errors: group != ScriptGroup::ArtifactRollback,
            },
            OpKind::Persist(len) => {
                let id = self.take_id(true);
                Action::Persist {
                    id,
                    record: self.record_buf.get(..len).unwrap_or_default(),
                }
            }
            OpKind::RollBack(part) => Action::RollBack {
                id: self.take_id(true),
                part,
            },
            OpKind::Commit => Action::CommitBoot {
                id: self.take_id(true),
            },
            OpKind::Log(level) => Action::DeploymentLog {
                level,
                message: &self.log_text,
            },
            OpKind::ClearLog => Action::ClearDeploymentLog,
            OpKind::JobFiles(keep) => self.job_files_action(keep),
            OpKind::PersistMaps(len) => Action::PersistControlMaps {
                id: self.take_id(true),
                record: self.maps_buf.get(..len).unwrap_or_default(),
            },
        }
    }

    fn op_done(&mut self, outcome: Outcome<'_>) {
        let op = self.current_op.take();
        let why = match outcome {
            Outcome::Done => {
                // The env as this agent left it (later decisions read it).
                match op {
                    Some(Op::EnvRollBack) => {
                        self.boot.boot_part = Some(self.pending.previous_part);
                        self.boot.upgrade_available = false;
                    }
                    Some(Op::EnvCommit) => self.boot.upgrade_available = false,
                    _ => {}
                }
                return;
            }
            Outcome::Failed(why) | Outcome::Transient(why) => why,
        };
        match op {
            Some(Op::Script(ScriptGroup::ArtifactRollback, _)) => self.inconsistent = true,
            Some(Op::Script(..)) | None => {}
            Some(Op::Mark(_)) => self.fatal(text!("cannot save the state: {why}")),
            Some(Op::EnvRollBack) => self.fatal(text!("rollback failed: {why}")),
            Some(Op::EnvCommit) => self.fatal(text!("commit failed: {why}")),
            Some(Op::DeploymentLog(_) | Op::ClearDeploymentLog | Op::JobFiles { .. }) => {}
            Some(Op::PersistMaps) => warn!("cannot save the update control maps: {why}"),
        }
    }

    fn apply_mark(&mut self, mark: Mark) {
        let pending = || self.pending.clone();
        let step = match mark {
            Mark::Idle => UpdateStep::Idle,
            Mark::Count => {
                self.record.store_count = self.record.store_count.saturating_add(1);
                return;
            }
            Mark::Installed => UpdateStep::Installed(pending()),
            Mark::Committing => UpdateStep::Committing(pending()),
            Mark::RollingBack => UpdateStep::RollingBack(pending()),
            Mark::Rebooting => UpdateStep::Rebooting(pending()),
            Mark::Downloading => UpdateStep::Downloading(Downloading {
                deployment_id: self.offer.id.clone(),
                artifact_name: self.offer.artifact_name.clone(),
            }),
            Mark::Reporting(success) => {
                self.report = FinalReport {
                    deployment_id: self.deployment_id.clone().unwrap_or_default(),
                    success,
                    attempts: 0,
                };
                UpdateStep::Reporting(self.report.clone())
            }
            Mark::RollbackRebooting => {
                self.report = FinalReport {
                    deployment_id: self.deployment_id.clone().unwrap_or_default(),
                    success: false,
                    attempts: 0,
                };
                UpdateStep::RollbackRebooting(self.report.clone())
            }
            Mark::ReportAttempt => {
                self.record.step = UpdateStep::Reporting(self.report.clone());
                return;
            }
            Mark::Settle => {
                if self.inconsistent && self.managed().is_some() {
                    // The reference's daemon (`setBrokenArtifactFlag`)
                    // renames the installed artifact, nothing else.
                    self.record.installed.artifact_name =
                        inconsistent_name(&self.pending.provides.artifact_name);
                } else if self.inconsistent {
                    let mut provides = self.pending.provides.clone();
                    provides.artifact_name = inconsistent_name(&provides.artifact_name);
                    self.record.installed = provides;
                }
                UpdateStep::Idle
            }
            Mark::Job(phase) => UpdateStep::Job(crate::store::JobRecord {
                job_id: self.job_id_owned(),
                phase,
            }),
            Mark::HandingOff | Mark::HandedOff => {
                let downloading = match &self.record.step {
                    UpdateStep::Downloading(d)
                    | UpdateStep::HandingOff(d)
                    | UpdateStep::HandedOff(d) => d.clone(),
                    _ => Downloading {
                        deployment_id: self.deployment_id.clone().unwrap_or_default(),
                        artifact_name: self.offer.artifact_name.clone(),
                    },
                };
                if mark == Mark::HandingOff {
                    UpdateStep::HandingOff(downloading)
                } else {
                    UpdateStep::HandedOff(downloading)
                }
            }
            Mark::Committed => {
                self.record.installed = self.pending.provides.clone();
                match &self.deployment_id {
                    Some(id) if self.managed().is_some() => {
                        self.report = FinalReport {
                            deployment_id: id.clone(),
                            success: true,
                            attempts: 0,
                        };
                        UpdateStep::Reporting(self.report.clone())
                    }
                    _ => UpdateStep::Idle,
                }
            }
        };
        self.record.mark(step);
    }

    // ---------------------------------------------------------------
    // Standalone repair.

    /// Finishes a commit or rollback that a power cut interrupted, and
    /// drops an install the bootloader has already undone (standalone).
    fn repair(&mut self) -> Repaired {
        let boot = self.boot;
        match self.record.step.clone() {
            UpdateStep::Idle => Repaired::Nothing,
            UpdateStep::Downloading(_)
            | UpdateStep::Rebooting(_)
            | UpdateStep::Reporting(_)
            | UpdateStep::RollbackRebooting(_) => {
                self.fail(text!(
                    "a deployment from the server is in progress; the daemon finishes it (run 'otalite daemon')"
                ));
                Repaired::Refused
            }
            UpdateStep::Job(_) => {
                self.fail(text!(
                    "an AWS IoT job is in progress; the jobs agent ('otalite jobs' / 'upparat') finishes it"
                ));
                Repaired::Refused
            }
            UpdateStep::HandingOff(_) | UpdateStep::HandedOff(_) => {
                self.fail(text!(
                    "a deployment was handed to the installer (/usr/share/mender/install); it reports with 'otalite report --success|--failure'"
                ));
                Repaired::Refused
            }
            UpdateStep::Installed(pending) => {
                self.pending = pending;
                if self.is_module_update() {
                    return Repaired::Nothing;
                }
                if boot.upgrade_available && boot.boot_part == Some(self.pending.trial_part) {
                    return Repaired::Nothing;
                }
                warn!(
                    "the installed update {} is not active in the boot environment (the bootloader rolled back, or the switch never happened); discarding it",
                    self.pending.provides.artifact_name
                );
                self.push_op(Op::Mark(Mark::Idle));
                Repaired::Discarded
            }
            UpdateStep::Committing(pending) => {
                self.pending = pending;
                if boot.boot_part == Some(self.pending.trial_part) {
                    info!(
                        "finishing the interrupted commit of {}",
                        self.pending.provides.artifact_name
                    );
                    if boot.upgrade_available {
                        self.push_op(Op::EnvCommit);
                    }
                    self.push_op(Op::Mark(Mark::Committed));
                    self.set_reason(text!("committed {}", self.pending.provides.artifact_name));
                    Repaired::FinishedCommit
                } else {
                    error!(
                        "the commit of {} was interrupted and the bootloader went back to partition {:?}; keeping {}",
                        self.pending.provides.artifact_name,
                        boot.boot_part,
                        self.record.installed.artifact_name
                    );
                    self.push_op(Op::Mark(Mark::Idle));
                    Repaired::CommitLost
                }
            }
            UpdateStep::RollingBack(pending) => {
                self.pending = pending;
                info!(
                    "finishing the interrupted rollback of {}",
                    self.pending.provides.artifact_name
                );
                if boot.upgrade_available || boot.boot_part != Some(self.pending.previous_part) {
                    self.push_op(Op::EnvRollBack);
                }
                self.push_op(Op::Mark(Mark::Idle));
                Repaired::FinishedRollback
            }
        }
    }

    // ---------------------------------------------------------------
    // Failures.

    /// The current flow failed: standalone completes with the message;
    /// managed fails the deployment and reports it.
    fn fail(&mut self, message: Message) {
        self.set_reason(message);
        if self.managed().is_none() {
            self.step = Step::Complete(Completion::Failed);
            return;
        }
        let id = self.deployment_id.clone().unwrap_or_default();
        error!(
            "deployment {} failed: {}",
            id.as_str(),
            self.reason.as_str()
        );
        let reason = self.reason.clone();
        self.deployment_log(LogLevel::Error, text!("{}", reason.as_str()));
        self.finish(false);
    }

    /// Managed: persist the final status to report (or idle without a
    /// deployment), then report it.
    fn finish(&mut self, success: bool) {
        if self.deployment_id.is_some() {
            self.push_op(Op::Mark(Mark::Reporting(success)));
            self.step = Step::Report;
        } else {
            self.push_op(Op::Mark(Mark::Idle));
            self.step = Step::Ready;
        }
    }

    /// Points the boot env back at the previous slot (managed), with the
    /// rollback and failure scripts.
    fn rollback_ops(&mut self) {
        self.push_ops(&[
            Op::Script(ScriptGroup::ArtifactRollback, ScriptPhase::Enter),
            Op::Mark(Mark::RollingBack),
            Op::EnvRollBack,
            Op::Script(ScriptGroup::ArtifactRollback, ScriptPhase::Leave),
            Op::Script(ScriptGroup::ArtifactFailure, ScriptPhase::Enter),
            Op::Script(ScriptGroup::ArtifactFailure, ScriptPhase::Leave),
        ]);
    }

    /// The new system could not confirm: roll back, persist the failure,
    /// and reboot into the old slot; the report goes out from there.
    ///
    /// An uncommitted trial that U-Boot already counted is rolled back by
    /// the reboot itself (the bootloader falls back), and the env keeps
    /// saying that the trial runs until then: a restart before the reboot
    /// still knows it must reboot (see the `Reporting` recovery). Rolling the env
    /// back first would leave the new system running, unnoticed, under the
    /// old name. A committed trial (a recovery) is rolled back in the env.
    fn roll_back_and_reboot(&mut self) {
        if self.managed_module() {
            let message = self.reason.clone();
            self.module_dep_fail(message);
            return;
        }
        // While the trial runs, the bootloader's own fallback (bootcount
        // past bootlimit) boots the old slot at the reboot and the env
        // keeps saying "trial" until then, so a restart in between still
        // knows the failed system runs. A bootloader that does not count
        // trial boots (no `bootcount`) gets the explicit switch.
        let switch_env = !self.boot.upgrade_available || self.boot.bootcount.is_none();
        self.rollback_reboot(true, switch_env);
    }

    /// Managed failure past `Download_Leave`, as the reference's daemon
    /// handles it: `ArtifactRollback_Enter`, (persist `RollingBack` and
    /// switch the env back when `switch_env`), `ArtifactRollback_Leave`,
    /// `ArtifactRollbackReboot_Enter`, persist `RollbackRebooting`, reboot.
    /// The next start runs `ArtifactRollbackReboot_Leave` and the failure
    /// scripts, then reports `failure` (see [`Recovery::AfterRollbackReboot`]).
    fn rollback_reboot(&mut self, rolling_back: bool, switch_env: bool) {
        self.push_op(Op::Script(
            ScriptGroup::ArtifactRollback,
            ScriptPhase::Enter,
        ));
        if rolling_back {
            self.push_op(Op::Mark(Mark::RollingBack));
        }
        if switch_env {
            self.push_op(Op::EnvRollBack);
        }
        self.push_ops(&[
            Op::Script(ScriptGroup::ArtifactRollback, ScriptPhase::Leave),
            Op::Script(ScriptGroup::ArtifactRollbackReboot, ScriptPhase::Enter),
            Op::Mark(Mark::RollbackRebooting),
        ]);
        info!(
            "rebooting back into partition {}",
            self.pending.previous_part
        );
        self.step = Step::RollbackReboot;
    }

    /// Managed: a failed deployment fails with `message` and goes through
    /// the rollback reboot ([`Self::rollback_reboot`]).
    fn fail_with_rollback_reboot(&mut self, message: Message, switch_env: bool) {
        if self.managed_module() {
            self.module_dep_fail(message);
            return;
        }
        self.set_reason(message);
        let id = self.deployment_id.clone().unwrap_or_default();
        error!(
            "deployment {} failed: {}",
            id.as_str(),
            self.reason.as_str()
        );
        let reason = self.reason.clone();
        self.deployment_log(LogLevel::Error, text!("{}", reason.as_str()));
        self.rollback_reboot(switch_env, switch_env);
    }

    /// After the rollback reboot (or when it did not happen): the scripts
    /// that follow it, then the `failure` report.
    fn after_rollback_reboot(&mut self, rebooted: bool) {
        if rebooted {
            self.push_op(Op::Script(
                ScriptGroup::ArtifactRollbackReboot,
                ScriptPhase::Leave,
            ));
        }
        self.push_ops(&[
            Op::Script(ScriptGroup::ArtifactFailure, ScriptPhase::Enter),
            Op::Script(ScriptGroup::ArtifactFailure, ScriptPhase::Leave),
            Op::Mark(Mark::Reporting(false)),
        ]);
        self.step = Step::Report;
    }

    /// The update the verified artifact makes: its provides after commit,
    /// the inactive slot as trial, the running one to return to.
    fn pending_from_artifact(&self) -> PendingUpdate {
        let slots = self.slots.unwrap_or(Slots {
            active: 0,
            inactive: 0,
            proven_by_root_device: false,
        });
        let (trial_part, previous_part) = if self.installer.is_module() {
            (self.module_flags(), modules::MODULE_PART)
        } else {
            (slots.inactive, slots.active)
        };
        PendingUpdate {
            provides: self.record.installed.after_commit(self.installer.header()),
            trial_part,
            previous_part,
            deployment_id: self.deployment_id.clone(),
        }
    }

    /// The install failed before the boot env was switched: the install
    /// error and failure scripts, then the failure (nothing to undo in the
    /// env). Standalone runs the rollback scripts in between, as the
    /// reference's standalone mode does.
    fn install_failed_before_switch(&mut self, message: Message) {
        self.push_op(Op::Script(ScriptGroup::ArtifactInstall, ScriptPhase::Error));
        if self.managed().is_none() {
            // What a failed rollback script records as inconsistent.
            self.pending = self.pending_from_artifact();
            self.standalone_rollback_ops(false);
            self.fail(message);
        } else if self.managed_module() {
            self.module_dep_fail(message);
        } else {
            // The env still names the running slot: nothing to switch back,
            // but the reference's daemon reboots all the same.
            self.fail_with_rollback_reboot(message, false);
        }
    }

    /// Standalone rollback whose `ArtifactRollback` scripts failed: the
    /// failure scripts, the name recorded as `<name>_INCONSISTENT`, exit 1
    /// (the env is back on the previous slot).
    fn standalone_rollback_failed(&mut self) {
        self.push_ops(&[
            Op::Script(ScriptGroup::ArtifactFailure, ScriptPhase::Enter),
            Op::Script(ScriptGroup::ArtifactFailure, ScriptPhase::Leave),
            Op::Mark(Mark::Settle),
        ]);
        self.fail(text!(
            "an ArtifactRollback script failed; partition {} boots next, recorded as {}",
            self.pending.previous_part,
            inconsistent_name(&self.pending.provides.artifact_name)
        ));
    }

    /// Standalone failure after `Download_Leave` (the reference's
    /// `doStandaloneFailureStates`): the rollback scripts around the env
    /// switch back (`switch_env`: the trial was set), the failure scripts,
    /// then [`Mark::Settle`] records the result once every script ran.
    fn standalone_rollback_ops(&mut self, switch_env: bool) {
        self.push_op(Op::Script(
            ScriptGroup::ArtifactRollback,
            ScriptPhase::Enter,
        ));
        if switch_env {
            self.push_ops(&[Op::Mark(Mark::RollingBack), Op::EnvRollBack]);
        }
        self.push_ops(&[
            Op::Script(ScriptGroup::ArtifactRollback, ScriptPhase::Leave),
            Op::Script(ScriptGroup::ArtifactFailure, ScriptPhase::Enter),
            Op::Script(ScriptGroup::ArtifactFailure, ScriptPhase::Leave),
            Op::Mark(Mark::Settle),
        ]);
    }

    fn download_failed(&mut self, message: Message) {
        if self.module_download_failed(message.clone()) {
            return;
        }
        self.push_op(Op::Script(ScriptGroup::Download, ScriptPhase::Error));
        self.fail(message);
    }

    fn download_complete(&mut self) {
        self.step = if self.managed().is_some() {
            Step::DepDownloadLeave
        } else {
            Step::InstDownloadLeave
        };
        if let Some(stats) = self.installer.stats() {
            info!(
                "payload verified: {} bytes, {} blocks written, {} unchanged blocks skipped",
                stats.bytes, stats.blocks_written, stats.blocks_skipped
            );
        }
        if self.managed().is_some() {
            let header = self.installer.header();
            if header.artifact_name.as_str() != self.offer.artifact_name.as_str() {
                let name = header.artifact_name.clone();
                self.fail(text!(
                    "the artifact is named {}, the server announced {}",
                    name.as_str(),
                    self.offer.artifact_name.as_str()
                ));
            } else if self.installer.is_module() {
                self.module_dep_downloaded();
            } else if self.installer.stats().is_none() {
                self.fail(text!("the artifact has no payload: nothing to install"));
            }
        }
    }

    // ---------------------------------------------------------------
    // Completions of step actions.

    fn step_done(&mut self, outcome: Outcome<'_>) {
        let failed = match outcome {
            Outcome::Done => None,
            Outcome::Failed(why) | Outcome::Transient(why) => Some(why),
        };
        match (self.step, failed) {
            // Downloads.
            (Step::InstOpen, None) => self.step = Step::InstRead,
            (Step::DepOpen, None) => {
                if self.download_opened {
                    self.step = Step::DepRead;
                } else {
                    self.download_opened = true;
                    self.start_call(Purpose::Opened);
                }
            }
            (Step::InstOpen | Step::DepOpen, Some(why)) => {
                let transient = matches!(outcome, Outcome::Transient(_));
                self.download_broke(why, transient);
            }
            (Step::InstRead | Step::DepRead, None) => match self.installer.finish() {
                Ok(()) => self.download_complete(),
                Err(error) => self.download_failed(text!(
                    "artifact refused: {error}; nothing was activated, the running system and boot configuration are unchanged"
                )),
            },
            (Step::InstRead | Step::DepRead, Some(why)) => {
                let transient = matches!(outcome, Outcome::Transient(_));
                self.download_broke(why, transient);
            }
            // Standalone scripts and env.
            (Step::InstDownloadEnter, None) => {
                self.installer.reset();
                self.download_tries = 0;
                self.download_progress_at = 0;
                self.step = Step::InstOpen;
            }
            (Step::InstDownloadEnter | Step::InstDownloadLeave, Some(why)) => {
                self.download_failed(text!("{why}"))
            }
            (Step::InstDownloadLeave, None) if self.installer.is_module() => {
                self.module_downloaded()
            }
            (Step::InstDownloadLeave, None) => {
                let header = self.installer.header().clone();
                let provides = self.record.installed.after_commit(&header);
                if self.installer.stats().is_none() {
                    self.pending.provides = provides;
                    self.push_op(Op::Mark(Mark::Committed));
                    self.set_reason(text!(
                        "artifact {} has an empty payload; provides updated",
                        header.artifact_name
                    ));
                    self.step = Step::Complete(Completion::Updated);
                } else {
                    self.step = Step::InstInstallEnter;
                }
            }
            (Step::InstInstallEnter, None) => {
                self.pending = self.pending_from_artifact();
                self.push_op(Op::Mark(Mark::Installed));
                self.step = Step::InstSetTrial;
            }
            (Step::InstInstallEnter, Some(why)) => {
                self.install_failed_before_switch(text!("{why}"));
            }
            (Step::InstSetTrial, None) => {
                self.trial_set();
                self.step = Step::InstInstallLeave;
            }
            (Step::InstSetTrial, Some(why)) => {
                // The env write is atomic: it still names the running slot.
                self.push_op(Op::Script(ScriptGroup::ArtifactInstall, ScriptPhase::Error));
                self.standalone_rollback_ops(false);
                self.fail(text!(
                    "cannot switch the bootloader to the new partition: {why}"
                ));
            }
            (Step::InstInstallLeave, None) => {
                let header = self.installer.header();
                self.set_reason(text!(
                    "installed {} (format {}, {}signed); the new partition boots once on the next reboot",
                    header.artifact_name,
                    header.format_version,
                    if header.signed { "" } else { "un" }
                ));
                self.step = Step::Complete(Completion::Installed);
            }
            (Step::InstInstallLeave, Some(why)) => {
                self.push_op(Op::Script(ScriptGroup::ArtifactInstall, ScriptPhase::Error));
                self.standalone_rollback_ops(true);
                self.fail(text!("{why}"));
            }
            (Step::ComEnter, None) => {
                self.push_ops(&[
                    Op::Mark(Mark::Committing),
                    Op::EnvCommit,
                    Op::Mark(Mark::Committed),
                ]);
                self.step = Step::ComLeave;
            }
            (Step::ComEnter, Some(why)) => {
                self.push_op(Op::Script(ScriptGroup::ArtifactCommit, ScriptPhase::Error));
                self.standalone_rollback_ops(true);
                self.fail(text!("{why}; the update was rolled back"));
            }
            (Step::ComLeave, None) => {
                self.set_reason(text!("committed {}", self.pending.provides.artifact_name));
                self.step = Step::Complete(Completion::Committed);
            }
            (Step::ComLeave, Some(why)) => {
                // Too late to roll back: the reference records the name
                // as `<name>_INCONSISTENT`.
                self.inconsistent = true;
                self.push_ops(&[
                    Op::Script(ScriptGroup::ArtifactCommit, ScriptPhase::Error),
                    Op::Mark(Mark::Settle),
                ]);
                self.fail(text!(
                    "the update was committed, but {why}; recorded as {}",
                    inconsistent_name(&self.pending.provides.artifact_name)
                ))
            }
            // Managed deployment.
            (Step::DepDownloadEnter, None) => {
                self.installer.reset();
                self.download_tries = 0;
                self.download_progress_at = 0;
                self.download_opened = false;
                self.step = Step::DepOpen;
            }
            (Step::DepDownloadEnter | Step::DepDownloadLeave, Some(why)) => {
                self.download_failed(text!("{why}"))
            }
            (Step::DepDownloadLeave, None) => self.start_call(Purpose::Downloaded),
            (Step::DepInstallEnter, None) => self.start_call(Purpose::Installing),
            (Step::DepInstallEnter, Some(why)) => {
                self.install_failed_before_switch(text!("{why}"));
            }
            (Step::DepSetTrial, None) => {
                self.trial_set();
                self.step = Step::DepInstallLeave;
            }
            (Step::DepSetTrial, Some(why)) => {
                self.push_op(Op::Script(ScriptGroup::ArtifactInstall, ScriptPhase::Error));
                // The env write is atomic: it still names the running slot.
                self.fail_with_rollback_reboot(text!("cannot switch the bootloader: {why}"), false);
            }
            (Step::DepInstallLeave, None) if self.managed_module() && !self.module_reboots() => {
                // No reboot: straight to the commit, as the reference.
                self.confirm_attempts = 0;
                self.control_point(control_map::ControlState::ArtifactCommitEnter);
            }
            (Step::DepInstallLeave, None) => {
                self.control_point(control_map::ControlState::ArtifactRebootEnter);
            }
            (Step::DepInstallLeave, Some(why)) => {
                self.push_op(Op::Script(ScriptGroup::ArtifactInstall, ScriptPhase::Error));
                self.fail_with_rollback_reboot(text!("{why}"), true);
            }
            (Step::DepRebootEnter, None) if self.managed_module() => {
                info!("Rebooting device(s)");
                self.step = if self.module_custom_reboot() {
                    Step::Module(modules::ModStep::DepReboot)
                } else {
                    Step::DepReboot
                };
            }
            (Step::DepRebootEnter, None) => {
                info!("rebooting into partition {}", self.pending.trial_part);
                self.step = Step::DepReboot;
            }
            (Step::DepRebootEnter, Some(why)) => {
                self.push_op(Op::Script(ScriptGroup::ArtifactReboot, ScriptPhase::Error));
                self.fail_with_rollback_reboot(text!("{why}"), true);
            }
            (Step::DepReboot, None) => {
                self.sleep_until = Some(self.now.after(self.config.timing.reboot_wait));
                self.step = Step::RebootWait;
            }
            (Step::DepReboot, Some(why)) => {
                self.fail_with_rollback_reboot(text!("cannot reboot: {why}"), true);
            }
            (Step::RebootLeave, None) => self.step_after_reboot_leave(),
            (Step::RebootLeave, Some(why)) => {
                error!("{why}; rolling back");
                self.deployment_log(LogLevel::Error, text!("ArtifactReboot_Leave: {why}"));
                self.push_op(Op::Script(ScriptGroup::ArtifactReboot, ScriptPhase::Error));
                self.roll_back_and_reboot();
            }
            (Step::CommitEnter, None) if self.managed_module() => {
                info!("Committing Artifact...");
                self.step = Step::Module(modules::ModStep::DepCommit);
            }
            (Step::CommitEnter, None) => {
                self.push_ops(&[
                    Op::Mark(Mark::Committing),
                    Op::EnvCommit,
                    Op::Mark(Mark::Committed),
                ]);
                info!("committed {}", self.pending.provides.artifact_name);
                self.step = Step::CommitLeave;
            }
            (Step::CommitEnter, Some(why)) => {
                error!("{why}; rolling back");
                self.push_op(Op::Script(ScriptGroup::ArtifactCommit, ScriptPhase::Error));
                self.roll_back_and_reboot();
            }
            (Step::CommitLeave, result) => {
                if let Some(why) = result {
                    error!("{why} (after the commit)");
                }
                self.step = if self.managed_module() {
                    Step::Module(modules::ModStep::Cleanup)
                } else {
                    Step::Report
                };
            }
            (Step::RollbackReboot, None) => {
                self.sleep_until = Some(self.now.after(self.config.timing.reboot_wait));
                self.step = Step::RollbackRebootWait;
            }
            (Step::RollbackReboot, Some(why)) => {
                error!("cannot reboot after the rollback: {why}");
                self.after_rollback_reboot(false);
            }
            // API transport errors.
            (Step::Call(_), Some(why)) => self.transport_error(why),
            (Step::Module(step), failed) => self.module_script_done(step, failed),
            (Step::HandOff(step), _) => self.hand_off_done(step, outcome),
            _ => {}
        }
    }

    /// `SetTrial` took effect: the env as this agent left it.
    fn trial_set(&mut self) {
        self.boot = BootState {
            boot_part: Some(self.pending.trial_part),
            upgrade_available: true,
            bootcount: Some(0),
        };
    }

    /// The download broke at `installer.consumed()`: resume after the
    /// reference's backoff, or give up.
    fn download_broke(&mut self, why: &str, transient: bool) {
        let reached = self.installer.consumed();
        if reached > self.download_progress_at {
            // Progress since the last try: the schedule starts over.
            self.download_tries = 0;
            self.download_progress_at = reached;
        }
        let timing = self.config.timing;
        let unit = timing.backoff_unit.max(1);
        let wait = if !transient || (reached == 0 && self.managed().is_none()) {
            // Standalone: a download that cannot even start fails at once,
            // as the reference's `install <URL>` does.
            None
        } else if reached == 0 {
            // Opening the download: capped by the update poll interval,
            // limited by RetryPollCount.
            backoff(
                self.download_tries,
                unit,
                timing.update_poll.max(1),
                timing.retry_poll_count,
            )
        } else {
            backoff(self.download_tries, unit, timing.retry_poll.max(unit), 0)
        };
        match wait {
            Some(wait) => {
                warn!("the download broke at byte {reached} ({why}); resuming in {wait} ms");
                self.download_tries = self.download_tries.saturating_add(1);
                self.sleep_until = Some(self.now.after(wait));
                self.step = if self.managed().is_some() {
                    Step::DepOpen
                } else {
                    Step::InstOpen
                };
            }
            None if reached == 0 => self.download_failed(text!("{why}")),
            None => self.download_failed(text!("the download failed: {why}")),
        }
    }

    /// The env still holds the trial as `SetTrial` left it: pending, and
    /// U-Boot never counted a boot of it (`bootcount=0`). The reboot did not
    /// happen; the old system runs.
    fn trial_never_booted(&self) -> bool {
        self.boot.upgrade_available
            && self.boot.boot_part == Some(self.pending.trial_part)
            && self.boot.bootcount == Some(0)
    }

    /// After the reboot, `active` runs instead of the trial: roll back in
    /// place, report failure.
    fn reboot_missed(&mut self, active: PartNumber) {
        error!(
            "booted partition {} instead of the new partition {}; rolling back",
            active, self.pending.trial_part
        );
        self.deployment_log(
            LogLevel::Error,
            text!(
                "booted partition {} instead of the new partition {}",
                active,
                self.pending.trial_part
            ),
        );
        self.rollback_ops();
        self.finish(false);
    }

    fn step_after_verify(&mut self) {
        self.step = Step::RebootLeave;
    }

    /// `ArtifactReboot_Leave` ran: confirm with the server, then commit.
    fn step_after_reboot_leave(&mut self) {
        self.confirm_attempts = 0;
        match self.deployment_id {
            // The reference's order: the control point, then `installing`.
            Some(_) => self.control_point(control_map::ControlState::ArtifactCommitEnter),
            None => self.step = Step::CommitEnter,
        }
    }

    // ---------------------------------------------------------------
    // Dispatch: what the current step does now.

    fn dispatch(&mut self) -> Dispatch {
        match self.step {
            Step::Exited => Dispatch::Wait,
            Step::Exit { .. } | Step::Complete(_) => Dispatch::Action(StepKind::Finish),
            Step::Ready => self.schedule(),
            Step::Control(state) => {
                self.control_dispatch(state);
                Dispatch::Again
            }
            Step::RollbackSettle => {
                if self.inconsistent {
                    self.standalone_rollback_failed();
                } else {
                    self.push_op(Op::Mark(Mark::Settle));
                    self.set_reason(text!(
                        "rolled back {}; partition {} boots next",
                        self.pending.provides.artifact_name,
                        self.pending.previous_part
                    ));
                    self.step = Step::Complete(Completion::RolledBack);
                }
                Dispatch::Again
            }
            Step::Recover => {
                self.recover();
                Dispatch::Again
            }
            Step::InstPrepare | Step::DepPrepare => {
                if self.config.signatures_required && self.config.keys.is_empty() {
                    self.fail(text!(
                        "artifact signatures are required (ArtifactVerifyKey(s) is set) but no configured key could be loaded"
                    ));
                    return Dispatch::Again;
                }
                Dispatch::Action(StepKind::PrepareSlots(true))
            }
            Step::ComPrepare | Step::VerifySlots => Dispatch::Action(StepKind::PrepareSlots(false)),
            Step::InstDownloadEnter | Step::DepDownloadEnter => {
                Dispatch::Action(StepKind::Script(ScriptGroup::Download, ScriptPhase::Enter))
            }
            Step::InstDownloadLeave | Step::DepDownloadLeave => {
                Dispatch::Action(StepKind::Script(ScriptGroup::Download, ScriptPhase::Leave))
            }
            Step::InstInstallEnter | Step::DepInstallEnter => Dispatch::Action(StepKind::Script(
                ScriptGroup::ArtifactInstall,
                ScriptPhase::Enter,
            )),
            Step::InstInstallLeave | Step::DepInstallLeave => Dispatch::Action(StepKind::Script(
                ScriptGroup::ArtifactInstall,
                ScriptPhase::Leave,
            )),
            Step::ComEnter | Step::CommitEnter => Dispatch::Action(StepKind::Script(
                ScriptGroup::ArtifactCommit,
                ScriptPhase::Enter,
            )),
            Step::ComLeave | Step::CommitLeave => Dispatch::Action(StepKind::Script(
                ScriptGroup::ArtifactCommit,
                ScriptPhase::Leave,
            )),
            Step::DepRebootEnter => Dispatch::Action(StepKind::Script(
                ScriptGroup::ArtifactReboot,
                ScriptPhase::Enter,
            )),
            Step::RebootLeave => Dispatch::Action(StepKind::Script(
                ScriptGroup::ArtifactReboot,
                ScriptPhase::Leave,
            )),
            Step::InstSetTrial | Step::DepSetTrial => {
                Dispatch::Action(StepKind::SetTrial(self.pending.trial_part))
            }
            Step::InstOpen | Step::DepOpen | Step::InstRead | Step::DepRead => {
                if self.stopping && self.managed().is_some() {
                    self.step = Step::Exit { failed: false };
                    return Dispatch::Again;
                }
                if matches!(self.step, Step::InstOpen | Step::DepOpen) {
                    Dispatch::Action(StepKind::Open)
                } else {
                    Dispatch::Action(StepKind::Read)
                }
            }
            Step::DepReboot | Step::RollbackReboot => Dispatch::Action(StepKind::Reboot),
            Step::RebootWait if self.managed_module() => {
                self.module_dep_fail(text!("the reboot did not happen"));
                Dispatch::Again
            }
            Step::RebootWait => {
                error!(
                    "the reboot did not happen within {} ms",
                    self.config.timing.reboot_wait
                );
                self.rollback_ops();
                self.fail(text!("the reboot did not happen"));
                Dispatch::Again
            }
            Step::RollbackRebootWait => {
                error!("the rollback reboot did not happen");
                self.after_rollback_reboot(false);
                Dispatch::Again
            }
            Step::GatherInventory => Dispatch::Action(StepKind::GatherInventory),
            Step::Module(step) => self.module_dispatch(step),
            Step::HandOff(step) => self.hand_off_dispatch(step),
            Step::Hooks(hook) => self.hooks_dispatch(hook),
            Step::Jobs => self.jobs_dispatch(),
            Step::ReadLog => Dispatch::Action(StepKind::ReadLog),
            Step::Report => {
                if self.stopping {
                    self.step = Step::Exit { failed: false };
                    return Dispatch::Again;
                }
                self.start_call(Purpose::Final);
                Dispatch::Again
            }
            Step::Again(purpose) => {
                self.start_call(purpose);
                Dispatch::Again
            }
            Step::Call(_) => match self.api_phase {
                ApiPhase::Identity => Dispatch::Action(StepKind::GatherIdentity),
                ApiPhase::Auth(server) => Dispatch::Action(StepKind::Auth(server)),
                ApiPhase::Send => {
                    if self.build_call() {
                        Dispatch::Action(StepKind::Send)
                    } else {
                        Dispatch::Again
                    }
                }
            },
        }
    }

    fn step_action(&mut self, kind: StepKind) -> Action<'_> {
        match kind {
            StepKind::Finish => match self.step {
                Step::Complete(completion) => {
                    self.step = Step::Ready;
                    Action::Completed {
                        completion,
                        message: &self.reason,
                    }
                }
                Step::Exit { failed } => {
                    self.step = Step::Exited;
                    Action::Exit {
                        failed,
                        message: &self.reason,
                    }
                }
                _ => Action::ClearDeploymentLog,
            },
            StepKind::PrepareSlots(install) => Action::PrepareSlots {
                id: self.take_id(false),
                install,
            },
            StepKind::Script(group, phase) => Action::RunScripts {
                id: self.take_id(false),
                group,
                phase,
                ignore_errors: false,
            },
            StepKind::SetTrial(part) => Action::SetTrial {
                id: self.take_id(false),
                part,
            },
            StepKind::Open => {
                let id = self.take_id(false);
                let uri = if self.managed().is_some() {
                    self.offer.uri.as_str()
                } else {
                    self.uri.as_str()
                };
                Action::OpenArtifact {
                    id,
                    uri,
                    from: self.installer.consumed(),
                }
            }
            StepKind::Module(state) => self.module_action(state),
            StepKind::HandOff(step) => self.hand_off_action(step),
            StepKind::Hook(hook) if self.jobs.is_none() => self.mender_hook_action(hook),
            StepKind::Hook(hook) => self.hook_action(hook),
            StepKind::JobDownload => self.job_download_action(),
            StepKind::Builtin(builtin) => self.builtin_action(builtin),
            StepKind::Read => Action::ReadArtifact {
                id: self.take_id(false),
            },
            StepKind::Reboot => Action::Reboot {
                id: self.take_id(false),
            },
            StepKind::GatherIdentity => Action::GatherIdentity {
                id: self.take_id(false),
            },
            StepKind::GatherInventory => Action::GatherInventory {
                id: self.take_id(false),
            },
            StepKind::ReadLog => Action::ReadDeploymentLog {
                id: self.take_id(false),
            },
            StepKind::Auth(server) => {
                let id = self.take_id(false);
                let settings = self.managed();
                let server = settings
                    .and_then(|s| s.servers.get(server).copied())
                    .unwrap_or_default();
                Action::Request {
                    id,
                    request: Request {
                        method: Method::Post,
                        server,
                        path: mender::AUTH_PATH,
                        bearer: settings.map(|s| s.tenant_token).unwrap_or_default(),
                        sign_body: true,
                        body: self.auth_buf.get(..self.auth_len).unwrap_or_default(),
                    },
                }
            }
            StepKind::Send => {
                let id = self.take_id(false);
                let server = self.server_url().unwrap_or_default();
                Action::Request {
                    id,
                    request: Request {
                        method: mender::method(self.call, self.patch_inventory, self.next_v2),
                        server,
                        path: &self.path,
                        bearer: &self.jwt,
                        sign_body: false,
                        body: self.request_buf.get(..self.request_len).unwrap_or_default(),
                    },
                }
            }
        }
    }

    /// The server that issued the JWT.
    fn server_url(&self) -> Option<&'b str> {
        let settings = self.managed()?;
        settings.servers.get(self.auth_server).copied()
    }
}

/// What a step's action is (computed before borrowing for the action).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StepKind {
    Finish,
    PrepareSlots(bool),
    Script(ScriptGroup, ScriptPhase),
    SetTrial(PartNumber),
    Open,
    Read,
    Reboot,
    GatherIdentity,
    GatherInventory,
    ReadLog,
    Auth(usize),
    Send,
    Module(ModuleState),
    HandOff(handoff::HandStep),
    Hook(jobs::Hook),
    JobDownload,
    Builtin(jobs::Builtin),
}

/// What an op's action is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Script(ScriptGroup, ScriptPhase),
    Persist(usize),
    PersistMaps(usize),
    RollBack(PartNumber),
    Commit,
    Log(LogLevel),
    ClearLog,
    JobFiles(bool),
}

enum Dispatch {
    Action(StepKind),
    Wait,
    Again,
}

// -------------------------------------------------------------------
// Managed mode: recovery, schedule, API calls.

impl Agent<'_> {
    /// The restart recovery (one table, [`recover`]), with the loop breaker.
    fn recover(&mut self) {
        self.step = Step::Ready;
        let step = self.record.step.clone();
        if let Some(pending) = pending_of(&step) {
            self.pending = pending.clone();
        }
        let module = pending_of(&step).is_some_and(|p| p.previous_part == modules::MODULE_PART);
        if module && self.pending.deployment_id.is_some() {
            self.module_recover(matches!(step, UpdateStep::Rebooting(_)));
            return;
        }
        if matches!(step, UpdateStep::HandingOff(_) | UpdateStep::HandedOff(_)) {
            if self.hooks_policy().is_some() {
                self.hooks_recover();
            } else {
                // The lock says who owns the device ([`handoff`]).
                self.hand_off_recover();
            }
            return;
        }
        if self.is_module_update() {
            // No slot to recover: it waits for 'otalite commit'/'rollback'.
            warn!("a standalone update module install waits for 'otalite commit' or 'otalite rollback'");
            return;
        }
        if !matches!(step, UpdateStep::Idle | UpdateStep::Reporting(_)) {
            // Every start inside a deployment counts as a state write.
            self.push_op(Op::Mark(Mark::Count));
            if self.record.store_count.saturating_add(1) > MAX_STATE_WRITES {
                error!(
                    "loop breaker: {} state writes without finishing the deployment; failing it",
                    self.record.store_count.saturating_add(1)
                );
                if pending_of(&step).is_some() {
                    self.recovery_rollback();
                } else {
                    self.finish(false);
                }
                return;
            }
        }
        match recover(&step, &self.boot) {
            Recovery::Nothing | Recovery::HandOff => {}
            Recovery::Report
                if !self.report.success
                    && self.boot.upgrade_available
                    && self.boot.bootcount.is_some_and(|count| count > 0) =>
            {
                // A failed trial still runs (the rollback reboot did not
                // happen): reboot first, U-Boot falls back.
                warn!("the failed update still runs; rebooting into the previous partition");
                self.push_op(Op::Script(
                    ScriptGroup::ArtifactRollbackReboot,
                    ScriptPhase::Enter,
                ));
                self.step = Step::RollbackReboot;
            }
            Recovery::Report => self.step = Step::Report,
            Recovery::AfterRollbackReboot
                if self.boot.upgrade_available
                    && self.boot.bootcount.is_some_and(|count| count > 0) =>
            {
                warn!("the failed update still runs; rebooting into the previous partition");
                self.push_op(Op::Script(
                    ScriptGroup::ArtifactRollbackReboot,
                    ScriptPhase::Enter,
                ));
                self.step = Step::RollbackReboot;
            }
            Recovery::AfterRollbackReboot => self.after_rollback_reboot(true),
            Recovery::ReportFailure => {
                warn!("the deployment was interrupted; reporting failure");
                self.deployment_log(
                    LogLevel::Error,
                    text!("the deployment was interrupted (restart)"),
                );
                self.finish(false);
            }
            Recovery::RollBack(_) => {
                warn!("the deployment was interrupted before its reboot; rolling back");
                self.recovery_rollback();
            }
            Recovery::Commit(_) => self.step = Step::VerifySlots,
        }
    }

    /// The bootloader started the trial slot and it runs now (U-Boot
    /// counted the boot, or the trial was already committed): a rollback
    /// only takes effect with a reboot.
    fn trial_running(&self) -> bool {
        self.boot.boot_part == Some(self.pending.trial_part)
            && (!self.boot.upgrade_available || self.boot.bootcount.is_some_and(|count| count > 0))
    }

    /// A rollback decided at a start: reboot into the old slot when the
    /// trial runs (the report goes out from there), else roll back in place.
    fn recovery_rollback(&mut self) {
        if self.trial_running() {
            self.roll_back_and_reboot();
        } else {
            self.rollback_ops();
            self.finish(false);
        }
    }

    /// The poll schedule: inventory, then the update check, when due.
    fn schedule(&mut self) -> Dispatch {
        if self.managed().is_none() {
            if self.stopping {
                self.step = Step::Exit { failed: false };
                return Dispatch::Again;
            }
            return Dispatch::Wait;
        }
        if self.stopping {
            self.step = Step::Exit { failed: false };
            return Dispatch::Again;
        }
        let due = self.now >= self.next_inventory || self.now >= self.next_update;
        if due && self.is_hand_off() && !self.hand_off.free {
            // Nothing but the lock check while an installer owns the device.
            self.step = Step::HandOff(handoff::HandStep::Check);
            return Dispatch::Again;
        }
        if self.now >= self.next_inventory {
            self.step = Step::GatherInventory;
            return Dispatch::Again;
        }
        if self.now >= self.next_update {
            self.next_update = self.now.after(self.config.timing.update_poll);
            self.start_call(Purpose::Next);
            return Dispatch::Again;
        }
        self.hand_off.free = false;
        Dispatch::Wait
    }

    fn call_of(&self, purpose: Purpose) -> Call {
        let status = match purpose {
            Purpose::Inventory => return Call::Inventory,
            Purpose::Next => return Call::Next,
            Purpose::Log => return Call::Log,
            Purpose::Downloading | Purpose::Opened | Purpose::Downloaded => {
                DeploymentStatus::Downloading
            }
            Purpose::Installing | Purpose::Confirm => DeploymentStatus::Installing,
            Purpose::Rebooting => DeploymentStatus::Rebooting,
            Purpose::FetchMap(_) => return Call::ControlMap,
            Purpose::Paused(state) => match state {
                control_map::ControlState::ArtifactInstallEnter => {
                    DeploymentStatus::PauseBeforeInstalling
                }
                control_map::ControlState::ArtifactRebootEnter => {
                    DeploymentStatus::PauseBeforeRebooting
                }
                control_map::ControlState::ArtifactCommitEnter => {
                    DeploymentStatus::PauseBeforeCommitting
                }
            },
            Purpose::Final if self.report.success => DeploymentStatus::Success,
            Purpose::Final => DeploymentStatus::Failure,
        };
        Call::Status(status)
    }

    fn start_call(&mut self, purpose: Purpose) {
        self.call = self.call_of(purpose);
        self.call_attempt = 0;
        self.auth_failed = false;
        self.api_phase = if self.jwt.is_empty() {
            ApiPhase::Identity
        } else {
            ApiPhase::Send
        };
        self.step = Step::Call(purpose);
    }

    /// Writes the path and body of the current call; `false` when it
    /// cannot be built (the call then failed).
    fn build_call(&mut self) -> bool {
        use crate::protocol::WriteError;
        self.path.clear();
        let id = self.deployment_id.clone().unwrap_or_default();
        let built: Result<(), WriteError> = match self.call {
            Call::Inventory => {
                let _ = self.path.push_str(mender::INVENTORY_PATH);
                Ok(())
            }
            Call::Next if self.next_v2 => {
                let _ = self.path.push_str(mender::NEXT_V2_PATH);
                write_next_request(
                    &self.record.installed,
                    self.config.device_type,
                    true,
                    self.request_buf,
                )
                .map(|len| self.request_len = len)
            }
            Call::Next => {
                self.request_len = 0;
                let mut query = [0u8; MAX_PATH_LEN];
                write_next_query(
                    &self.record.installed.artifact_name,
                    self.config.device_type,
                    &mut query,
                )
                .and_then(|len| {
                    let text = query
                        .get(..len)
                        .and_then(|q| core::str::from_utf8(q).ok())
                        .ok_or(WriteError::BufferTooSmall { required: len })?;
                    let _ = self.path.push_str(mender::NEXT_V1_PATH);
                    let _ = self.path.push('?');
                    self.path
                        .push_str(text)
                        .map_err(|_| WriteError::BufferTooSmall { required: len })
                })
            }
            Call::Status(status) => {
                let _ = self.path.push_str(mender::DEPLOYMENTS_PATH);
                let _ = self.path.push_str(&id);
                let _ = self.path.push_str("/status");
                write_status(status, "", self.request_buf).map(|len| self.request_len = len)
            }
            Call::Log => {
                let _ = self.path.push_str(mender::DEPLOYMENTS_PATH);
                let _ = self.path.push_str(&id);
                let _ = self.path.push_str("/log");
                Ok(())
            }
            Call::ControlMap => {
                self.request_len = 0;
                let _ = self.path.push_str(mender::DEPLOYMENTS_V2_PATH);
                let _ = self.path.push_str(&id);
                let _ = self.path.push_str("/update_control_map");
                Ok(())
            }
        };
        if matches!(self.call, Call::Status(_) | Call::Log | Call::ControlMap)
            && !mender::valid_deployment_id(&id)
        {
            self.set_reason(text!("invalid deployment id"));
            self.on_reply(Reply::Failed);
            return false;
        }
        if let Err(error) = built {
            self.set_reason(text!("cannot build the request: {error}"));
            self.on_reply(Reply::Failed);
            return false;
        }
        true
    }

    fn identity_ready(&mut self, data: &[u8]) {
        let Some(settings) = self.managed() else {
            return;
        };
        let text = match KeyValueText::new_checked(data) {
            Ok(text) => text,
            Err(error) => {
                self.set_reason(text!("device identity: {error}"));
                self.auth_failed = true;
                self.on_reply(Reply::Failed);
                return;
            }
        };
        let texts = [text];
        let attributes = Attributes::new(&texts);
        // The Python client's devices keep their identity in hand-off mode.
        let form = if matches!(settings.hand_off, HandOffRole::Off) {
            crate::protocol::auth::IdentityForm::Go
        } else {
            crate::protocol::auth::IdentityForm::Lists
        };
        match crate::protocol::auth::write_auth_request_as(
            &attributes,
            form,
            settings.public_key_pem,
            settings.tenant_token,
            self.auth_buf,
        ) {
            Ok(len) => {
                self.auth_len = len;
                self.auth_server = 0;
                self.auth_last = Reply::Unauthorized;
                self.api_phase = ApiPhase::Auth(0);
            }
            Err(error) => {
                self.set_reason(text!("device identity: {error}"));
                self.auth_failed = true;
                self.on_reply(Reply::Failed);
            }
        }
    }

    fn auth_answer(&mut self, server: usize, status: u16, body: &[u8]) {
        let url = self
            .managed()
            .and_then(|s| s.servers.get(server).copied())
            .unwrap_or_default();
        match status {
            200 => {
                let token = core::str::from_utf8(body).map(str::trim).unwrap_or("");
                if token.is_empty() || token.len() > MAX_JWT_LEN {
                    self.set_reason(text!("{url} returned an unusable token"));
                    self.auth_last = Reply::Failed;
                } else {
                    info!("authenticated with {url}");
                    self.jwt = copy_str(token);
                    self.auth_server = server;
                    self.api_phase = ApiPhase::Send;
                    return;
                }
            }
            401 => {
                info!("{url}: the device is not accepted yet (pending or rejected)");
                self.set_reason(text!("the device is not authorized (pending or rejected)"));
                self.auth_last = Reply::Unauthorized;
            }
            _ => {
                let text = core::str::from_utf8(body.get(..200).unwrap_or(body)).unwrap_or("");
                self.set_reason(text!(
                    "authentication: the server answered {status} {}",
                    text.trim()
                ));
                self.auth_last = Reply::Failed;
            }
        }
        self.next_server(server);
    }

    fn next_server(&mut self, server: usize) {
        let count = self.managed().map_or(0, |s| s.servers.len());
        let next = server.saturating_add(1);
        if next < count {
            self.api_phase = ApiPhase::Auth(next);
        } else {
            self.auth_failed = true;
            let last = self.auth_last;
            self.on_reply(last);
        }
    }

    fn transport_error(&mut self, why: &str) {
        match self.api_phase {
            ApiPhase::Auth(server) => {
                let url = self
                    .managed()
                    .and_then(|s| s.servers.get(server).copied())
                    .unwrap_or_default();
                self.set_reason(text!("{url}: {why}"));
                self.auth_last = Reply::Failed;
                self.next_server(server);
            }
            ApiPhase::Identity => {
                self.set_reason(text!("device identity: {why}"));
                self.auth_failed = true;
                self.on_reply(Reply::Failed);
            }
            ApiPhase::Send if self.call_attempt == 0 => {
                // The reference re-authenticates on transport errors too.
                debug!(
                    "{}: {why}; retrying after re-authentication",
                    self.path.as_str()
                );
                self.jwt.clear();
                self.call_attempt = 1;
                self.api_phase = ApiPhase::Identity;
            }
            ApiPhase::Send => {
                self.set_reason(text!("{why}"));
                self.on_reply(Reply::Failed);
            }
        }
    }

    fn call_answer(&mut self, status: u16, body: &[u8]) {
        if status == 401 && self.call_attempt == 0 {
            info!("the server answered 401: authenticating again");
            self.jwt.clear();
            self.call_attempt = 1;
            self.api_phase = ApiPhase::Identity;
            return;
        }
        match (self.call, status) {
            (Call::Inventory, 405) if !self.patch_inventory => {
                self.patch_inventory = true;
                return;
            }
            (Call::Next, 404) if self.next_v2 => {
                debug!("no v2 update check on this server; using v1");
                self.next_v2 = false;
                return;
            }
            _ => {}
        }
        let mut reply = mender::classify(self.call, status);
        match reply {
            Reply::Update => match DeploymentInstructions::parse(body) {
                Ok(offer) if mender::valid_deployment_id(&offer.id) => {
                    self.offer = offer;
                    self.control_map_offered(body);
                }
                Ok(_) => {
                    self.set_reason(text!("invalid deployment instructions: bad id"));
                    reply = Reply::Failed;
                }
                Err(error) => {
                    self.set_reason(text!("invalid deployment instructions: {error}"));
                    reply = Reply::Failed;
                }
            },
            Reply::Failed | Reply::Unauthorized => {
                let text = core::str::from_utf8(body.get(..200).unwrap_or(body)).unwrap_or("");
                self.set_reason(text!(
                    "{}: the server answered {status} {}",
                    match self.call {
                        Call::Inventory => "inventory",
                        Call::Next => "update check",
                        Call::Status(_) => "status report",
                        Call::Log => "log upload",
                        Call::ControlMap => "update control map",
                    },
                    text.trim()
                ));
            }
            Reply::Aborted => self.set_reason(text!("the deployment was aborted on the server")),
            Reply::Ok if self.call == Call::ControlMap => {
                if let Err(error) = self.control_map_fetched(body) {
                    self.set_reason(text!("the server's update control map: {error}"));
                    reply = Reply::Failed;
                }
            }
            Reply::Ok => {}
        }
        self.on_reply(reply);
    }

    fn inventory_ready(&mut self, data: &[u8]) {
        let Some(settings) = self.managed() else {
            return;
        };
        let parsed = KeyValueText::new_checked(data);
        let storage;
        let texts: &[KeyValueText<'_>] = match parsed {
            Ok(text) => {
                storage = [text];
                &storage
            }
            Err(error) => {
                warn!("inventory scripts: {error}; sending the base attributes only");
                &[]
            }
        };
        let attributes = Attributes::new(texts);
        let base = crate::protocol::inventory::InventoryBase {
            device_type: self.config.device_type,
            artifact_name: &self.record.installed.artifact_name,
            client_version: settings.client_version,
        };
        match crate::protocol::inventory::write_inventory(&base, &attributes, self.request_buf) {
            Ok(len) => {
                self.request_len = len;
                self.start_call(Purpose::Inventory);
            }
            Err(error) => {
                warn!("cannot build the inventory: {error}");
                self.next_inventory = self.now.after(self.config.timing.retry_poll);
                self.step = Step::Ready;
            }
        }
    }

    fn log_ready(&mut self, data: &[u8]) {
        let text = core::str::from_utf8(data).unwrap_or("");
        let mut messages: heapless::Vec<LogMessage<'_>, MAX_UPLOADED_LOG_LINES> =
            heapless::Vec::new();
        for line in text.lines() {
            let Some((timestamp, rest)) = line.split_once(' ') else {
                continue;
            };
            let Some((level, message)) = rest.split_once(' ') else {
                continue;
            };
            if message.is_empty() {
                continue;
            }
            if messages.is_full() {
                messages.remove(0);
            }
            let _ = messages.push(LogMessage {
                level,
                message,
                timestamp,
            });
        }
        if messages.is_empty() {
            self.report_done();
            return;
        }
        match write_log(&messages, self.request_buf) {
            Ok(body) => {
                self.request_len = body.len;
                self.start_call(Purpose::Log);
            }
            Err(error) => {
                warn!("cannot build the deployment log: {error}");
                self.report_done();
            }
        }
    }

    /// The final report is delivered (or given up): idle, inventory next.
    fn report_done(&mut self) {
        if self.is_report_role() {
            self.report_role_done();
            return;
        }
        if self.hooks_policy().is_some() {
            // Whatever ended the deployment (a cut in the download too),
            // its file goes before `Idle` is written.
            self.push_op(Op::JobFiles { keep: false });
        }
        self.push_ops(&[Op::ClearDeploymentLog, Op::Mark(Mark::Idle)]);
        if let Some(id) = self.deployment_id.take() {
            self.control_cleanup(&id);
        }
        // The reference sends the inventory right after a deployment.
        self.next_inventory = self.now;
        self.step = Step::Ready;
    }

    fn on_reply(&mut self, reply: Reply) {
        let Step::Call(purpose) = self.step else {
            return;
        };
        let retry = self.now.after(self.config.timing.retry_poll);
        match purpose {
            Purpose::Inventory => {
                if reply == Reply::Ok {
                    self.next_inventory = self.now.after(self.config.timing.inventory_poll);
                } else if self.auth_failed {
                    warn!(
                        "authentication failed: {}; retrying in {} s",
                        self.reason.as_str(),
                        self.config.timing.retry_poll / 1000
                    );
                    self.next_inventory = retry;
                    self.next_update = self.next_update.max(retry);
                } else {
                    warn!("sending the inventory failed: {}", self.reason.as_str());
                    self.next_inventory = retry;
                }
                self.step = Step::Ready;
            }
            Purpose::Next => {
                self.step = Step::Ready;
                match reply {
                    Reply::Ok => debug!("no update available"),
                    Reply::Update => self.begin_deployment(),
                    _ if self.auth_failed => {
                        warn!(
                            "authentication failed: {}; retrying in {} s",
                            self.reason.as_str(),
                            self.config.timing.retry_poll / 1000
                        );
                        self.next_inventory = self.next_inventory.max(retry);
                        self.next_update = self.next_update.max(retry);
                    }
                    _ => warn!("update check failed: {}", self.reason.as_str()),
                }
            }
            Purpose::Downloading => match reply {
                Reply::Aborted => self.fail(text!("the deployment was aborted on the server")),
                Reply::Ok if self.is_hand_off() => self.hand_off_download(),
                _ if self.hooks_policy().is_some() => self.hooks_download(),
                Reply::Ok => self.step = Step::DepPrepare,
                _ => {
                    warn!("status report failed: {}", self.reason.as_str());
                    if self.is_hand_off() {
                        self.hand_off_download();
                    } else {
                        self.step = Step::DepPrepare;
                    }
                }
            },
            Purpose::Opened => match reply {
                Reply::Aborted => self.fail(text!("the deployment was aborted on the server")),
                _ => self.step = Step::DepRead,
            },
            Purpose::Downloaded => match reply {
                Reply::Aborted => self.fail(text!("the deployment was aborted on the server")),
                _ => {
                    self.pending = self.pending_from_artifact();
                    self.control_point(control_map::ControlState::ArtifactInstallEnter);
                }
            },
            Purpose::FetchMap(state) => self.control_fetch_reply(state, reply),
            Purpose::Paused(state) => match reply {
                Reply::Aborted => {
                    self.control_fail(state, text!("the deployment was aborted on the server"))
                }
                _ => self.step = Step::Control(state),
            },
            Purpose::Installing if self.hooks_policy().is_some() => {
                self.hooks_installing_reply(reply == Reply::Aborted);
            }
            Purpose::Rebooting if self.hooks_policy().is_some() => self.hooks_rebooting_reply(),
            Purpose::Installing => match reply {
                Reply::Aborted => self.install_failed_before_switch(text!(
                    "the deployment was aborted on the server"
                )),
                _ if self.stopping => self
                    .install_failed_before_switch(text!("stopped by a signal before the install")),
                _ => {
                    self.push_op(Op::Mark(Mark::Installed));
                    self.step = if self.managed_module() {
                        Step::Module(modules::ModStep::DepInstall)
                    } else {
                        Step::DepSetTrial
                    };
                }
            },
            Purpose::Rebooting => match reply {
                Reply::Aborted => self.fail_with_rollback_reboot(
                    text!("the deployment was aborted on the server"),
                    true,
                ),
                _ => self.step = Step::DepRebootEnter,
            },
            Purpose::Confirm => match reply {
                Reply::Ok => self.step = Step::CommitEnter,
                Reply::Aborted => {
                    error!("the deployment was aborted on the server; rolling back");
                    self.roll_back_and_reboot();
                }
                _ => {
                    self.confirm_attempts = self.confirm_attempts.saturating_add(1);
                    warn!(
                        "the new system cannot reach the server yet ({}); attempt {}",
                        self.reason.as_str(),
                        self.confirm_attempts
                    );
                    if self.confirm_attempts < self.config.timing.report_attempts() {
                        self.sleep_until = Some(retry);
                        self.step = Step::Again(Purpose::Confirm);
                    } else {
                        error!("the new system could not confirm the deployment with the server; rolling back");
                        self.roll_back_and_reboot();
                    }
                }
            },
            Purpose::Final => match reply {
                Reply::Ok | Reply::Aborted | Reply::Update => {
                    info!(
                        "reported {} for deployment {}",
                        if self.report.success {
                            "success"
                        } else {
                            "failure"
                        },
                        self.report.deployment_id.as_str()
                    );
                    if self.report.success {
                        self.report_done();
                    } else {
                        self.step = Step::ReadLog;
                    }
                }
                Reply::Failed | Reply::Unauthorized => {
                    self.report.attempts = self.report.attempts.saturating_add(1);
                    let limit = self.config.timing.report_attempts();
                    warn!(
                        "reporting the final status failed ({}), attempt {} of {limit}",
                        self.reason.as_str(),
                        self.report.attempts
                    );
                    if self.report.attempts >= limit && self.is_report_role() {
                        self.report_role_gave_up();
                    } else if self.report.attempts >= limit {
                        error!(
                            "giving up reporting deployment {}",
                            self.report.deployment_id.as_str()
                        );
                        self.report_done();
                    } else {
                        self.push_op(Op::Mark(Mark::ReportAttempt));
                        self.sleep_until = Some(retry);
                        self.step = Step::Report;
                    }
                }
            },
            Purpose::Log => {
                if reply != Reply::Ok {
                    warn!(
                        "uploading the deployment log failed: {}",
                        self.reason.as_str()
                    );
                }
                self.report_done();
            }
        }
    }

    fn begin_deployment(&mut self) {
        let id = self.offer.id.clone();
        info!(
            "deployment {}: artifact {}",
            id.as_str(),
            self.offer.artifact_name.as_str()
        );
        self.deployment_id = Some(id.clone());
        self.module = modules::ModuleFlow::default();
        self.inconsistent = false;
        self.push_op(Op::ClearDeploymentLog);
        let name = self.offer.artifact_name.clone();
        self.deployment_log(
            LogLevel::Info,
            text!("deployment {} of {} started", id.as_str(), name.as_str()),
        );
        self.push_op(Op::Mark(Mark::Downloading));
        self.start_call(Purpose::Downloading);
    }
}
