//! The AWS IoT Jobs flow: upparat's contract (hooks, job documents,
//! `statusDetails` vocabulary) on the one agent, over a sans-IO MQTT
//! session ([`crate::protocol::mqtt::Session`]).
//!
//! # What the host does
//!
//! The MQTT connection is driven beside the actions, as quinn-proto's
//! transmits are (it must stay alive while a hook or a download runs):
//!
//! | call | when |
//! |---|---|
//! | [`Agent::mqtt_wants_connection`] | true: open TCP (+ TLS with the client certificate) to the broker, then [`Agent::handle_mqtt_connected`], or [`Agent::handle_mqtt_lost`] when it fails |
//! | [`Agent::poll_transmit`] | bytes to write to the connection, until `None` |
//! | [`Agent::handle_mqtt_bytes`] | bytes read from it |
//! | [`Agent::handle_mqtt_lost`] | the connection broke (or the session said so: the host closes it) |
//! | [`Agent::job_cancelled`] | between the lines of a hook and the chunks of a download: true = stop it (kill the hook, stop the download) and answer with `Cancelled` |
//!
//! and runs the actions: [`Action::Hook`](super::Action::Hook) (then
//! [`Agent::handle_hook_output`] per line, [`Agent::handle_hook`] at the
//! end), [`Action::JobDownload`](super::Action::JobDownload) (then
//! [`Agent::handle_job_progress`], [`Agent::handle_job_download`]),
//! [`Action::JobBuiltin`](super::Action::JobBuiltin) (answered as a hook),
//! [`Action::JobFiles`](super::Action::JobFiles), `Persist`.
//!
//! # Steps (as upparat 1.12's state machine, `statemachine/*.py`)
//!
//! | step | does | next |
//! |---|---|---|
//! | fetch | subscribe `notify`, `get/+`; publish `get` | a prefixed job in progress or queued: select; several in progress: `FAILED`/`error_multiple_in_progress` for each, fetch; none: monitor |
//! | monitor | wait for `notify` with a prefixed job | select |
//! | select | subscribe `J/get/+`, `J/update/+`; publish `J/get` | accepted: verify; rejected: fetch |
//! | verify | `QUEUED`: version hook (not with `force` or without the hook), same version: `SUCCEEDED`/`version_already_installed`; `IN_PROGRESS` in `reboot_start` (or the restart was persisted here): verify installation; else: redo the job without the version check | download hook |
//! | download hook | the hook (not with `force`) | `download_start`, download (`download_progress` per 100 KiB; 403: `download_interrupt`, fetch) |
//! | install | `installation_start`, install hook with the file (each output line: `installation_progress`); no hook: `SUCCEEDED`/`no_installation_hook_provided` | restart |
//! | restart | `reboot_start` (confirmed by the service before the hook runs), restart hook; exit 0: `SUCCEEDED`/`complete_soft_restart`; no hook: `SUCCEEDED`/`no_restart_hook_provided` | fetch |
//! | verify installation | version hook (none: `complete_no_version_check`), same: ready hook (none: `complete_no_ready_check`) then `SUCCEEDED`/`complete_ready`; else `FAILED`/`version_mismatch` | fetch |
//!
//! # The built-in Mender install (no `install` hook, [`JobsSettings::mender_install`])
//!
//! The download looks at the file's first 512 bytes; a Mender Artifact
//! (a tar whose first entry is `version`) is not stored but streamed into
//! the inactive slot by otalite's own install ([`Builtin`]); any other file
//! goes on as upparat's (`no_installation_hook_provided`).
//!
//! | step | does | next |
//! |---|---|---|
//! | install | `installation_start`, persist `Installing`, [`Builtin::Install`] (an uncommitted earlier install is rolled back first); fails: `FAILED`/`installation_hook_failed` with the install's message | restart |
//! | restart | persist `Restarting` **before** `reboot_start` (from here any boot runs the trial), the restart hook, or [`Builtin::Reboot`] without one; a hook's exit 0 waits for the reboot (a soft restart cannot start a new slot) | verify installation |
//! | verify installation | version hook if set (mismatch: `version_mismatch`), ready hook if set, then [`Builtin::Commit`]: 0: `SUCCEEDED`/`complete_ready`; 2 (nothing waited: committed before a cut, or the bootloader fell back): [`Builtin::ShowArtifact`] against the job's version | fetch |
//! | any failure after the install | `FAILED`, then [`Builtin::Rollback`]: the previous slot boots next | fetch |
//!
//! Hooks run as upparat runs them: `hook <seconds since the first call>
//! <retry> <meta> [file | force]`; exit 3 = again after `retry_interval`,
//! up to `max_retries` calls, then `FAILED` with `Timeout after Ns`; other
//! non-zero: `FAILED` with `Exit code: N`; a failed hook's state is
//! `<hook>_hook_failed`. A `notify` that lists the job neither in progress
//! nor queued cancels it: the hook or download stops, its file goes,
//! nothing more is published for it.
//!
//! Where upparat is weak this flow does better without changing what the
//! service sees: updates go out with QoS 1 (redelivered after a broken
//! connection) and their `update/rejected` is watched; `reboot_start` is
//! confirmed by the service and persisted before the restart hook runs, so
//! a fast reboot never loses it; a short download is never complete.
//!
//! # Persisted steps (`UpdateStep::Job`)
//!
//! | persisted | written before | next start |
//! |---|---|---|
//! | `Downloading` | the download | as upparat: the service's `IN_PROGRESS` job is redone, the file resumed |
//! | `Installing` | the install hook | the same |
//! | `Restarting` | the restart hook | verify the installation, whatever state the service shows |
//! | `Idle` | a job's end | fetch |

use super::{Agent, Dispatch, Instant, Mark, Message, Op, Step};
use crate::protocol::jobs::{
    self, state, DescribeAccepted, JobStatus, JobsTopic, Notify, PendingJobs, Rejected, Reply,
    Selection,
};
use crate::protocol::mqtt::QoS;
use crate::protocol::mqtt::{Event, Session, SessionConfig, SessionState};
use crate::store::JobPhase;
use heapless::{Deque, String, Vec};

/// Longest job id kept.
pub const MAX_JOB_ID_LEN: usize = jobs::MAX_JOB_ID_LEN;
/// Longest `version` and `meta` of a job document kept.
pub const MAX_JOB_FIELD_LEN: usize = 256;
/// Longest `statusDetails.message` sent (a longer hook line is cut).
pub const MAX_STATUS_MESSAGE_LEN: usize = 256;
/// The download progress step upparat reports (its read size).
pub const PROGRESS_STEP: u64 = 100 * 1024;
/// How long `reboot_start` may wait for the service's answer before the
/// restart hook runs anyway (the restart is persisted here too).
pub const REBOOT_CONFIRM_MS: u64 = 30_000;
/// Reconnect backoff bounds (paho's `reconnect_delay_set` defaults).
const RECONNECT_MIN_MS: u64 = 1_000;
const RECONNECT_MAX_MS: u64 = 120_000;
/// Download retry backoff cap (upparat: exponential, 64 s).
const DOWNLOAD_BACKOFF_MAX_MS: u64 = 64_000;

type JobId = String<MAX_JOB_ID_LEN>;
type Field = String<MAX_JOB_FIELD_LEN>;
type StatusMessage = String<MAX_STATUS_MESSAGE_LEN>;

/// Which hooks the INI names (upparat's `[hooks]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookSet {
    /// `version`: prints the installed version.
    pub version: bool,
    /// `download`: may postpone the download (exit 3).
    pub download: bool,
    /// `install`: installs the file.
    pub install: bool,
    /// `restart`: restarts the device or service.
    pub restart: bool,
    /// `ready`: says the restarted system is good.
    pub ready: bool,
}

/// The AWS IoT Jobs side of the agent ([`super::Mode::Jobs`]).
#[derive(Clone, Copy, Debug)]
pub struct JobsSettings<'b> {
    /// The thing name (upparat's default: the host name).
    pub thing_name: &'b str,
    /// The MQTT client id (upparat's default: `upparat`).
    pub client_id: &'b str,
    /// Only jobs whose id starts with this (upparat's `upparat_`).
    pub job_prefix: &'b str,
    /// The hooks configured.
    pub hooks: HookSet,
    /// Wait after a hook's exit 3, milliseconds (upparat: 60 s).
    pub retry_interval_ms: u64,
    /// Calls of a hook at most (upparat: 60).
    pub max_retries: u32,
    /// MQTT keep-alive, seconds (paho: 60).
    pub keep_alive_secs: u16,
    /// With no `install` hook, a job file that is a Mender Artifact is
    /// streamed into the inactive slot by otalite's own install (no file
    /// kept), restarted by a reboot when no `restart` hook is set, and
    /// committed after the restart's checks ([`Builtin`]). Any other file
    /// ends with the download, as upparat's.
    pub mender_install: bool,
}

impl JobsSettings<'_> {
    /// The built-in Mender install is in use (no `install` hook).
    const fn builtin(&self) -> bool {
        self.mender_install && !self.hooks.install
    }
}

/// A step otalite runs itself ([`JobsSettings::mender_install`]), through
/// [`Action::JobBuiltin`](super::Action::JobBuiltin). Answered as a hook
/// (exit code, last line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// Stream the artifact at the action's `uri` into the inactive slot
    /// and make it the trial (the standalone install: signatures, state
    /// scripts, device type, power-loss repair); an earlier install that
    /// waits uncommitted is rolled back first. Exit 0: installed.
    Install,
    /// Reboot the device. Exit 0: the reboot is under way (the agent
    /// waits to be stopped).
    Reboot,
    /// Make the running trial permanent. Exit 0: committed; 2: nothing
    /// was waiting (then [`Builtin::ShowArtifact`] tells).
    Commit,
    /// Give up an installed, uncommitted update: the previous slot boots
    /// again.
    Rollback,
    /// Print the running artifact's name (the last line).
    ShowArtifact,
}

impl Builtin {
    /// A name for logs and hosts (the standalone verb it runs).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Install => "install",
            Self::Reboot => "reboot",
            Self::Commit => "commit",
            Self::Rollback => "rollback",
            Self::ShowArtifact => "show-artifact",
        }
    }
}

/// A hook upparat knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `version`.
    Version,
    /// `download`.
    Download,
    /// `install`.
    Install,
    /// `restart`.
    Restart,
    /// `ready`.
    Ready,
}

impl Hook {
    /// Its INI key.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Version => "version",
            Self::Download => "download",
            Self::Install => "install",
            Self::Restart => "restart",
            Self::Ready => "ready",
        }
    }

    const fn failed_state(self) -> &'static str {
        match self {
            Self::Version => state::VERSION_HOOK_FAILED,
            Self::Download => state::DOWNLOAD_HOOK_FAILED,
            Self::Install => state::INSTALLATION_HOOK_FAILED,
            Self::Restart => state::RESTART_HOOK_FAILED,
            Self::Ready => state::READY_HOOK_FAILED,
        }
    }
}

/// How a hook run ended ([`Agent::handle_hook`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookOutcome<'a> {
    /// It exited with `code`; `last_line` is its last non-empty output
    /// line, trimmed (the version for the version hook).
    Exited {
        /// The exit code (a signal: 128 + its number).
        code: i32,
        /// The last non-empty line, if any.
        last_line: Option<&'a str>,
    },
    /// It could not run (missing, not executable): the reason.
    NotRun(&'a str),
    /// Stopped because [`Agent::job_cancelled`] said so.
    Cancelled,
}

/// How a job download ended ([`Agent::handle_job_download`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobDownloadEnd<'a> {
    /// Every byte is in the file (a `416` to a resume from the end too).
    Complete,
    /// `403`: the pre-signed URL expired.
    Expired,
    /// It broke or could not start; tried again with a backoff.
    Failed(&'a str),
    /// Stopped because [`Agent::job_cancelled`] said so.
    Cancelled,
    /// The file is a Mender Artifact (the action's `sniff`): nothing was
    /// kept; the built-in install streams it.
    MenderArtifact,
}

/// What is sent next, encoded when the host asks ([`Agent::poll_transmit`]).
// A fixed queue without a heap: every entry has the room of an update.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    SubscribeBase,
    SubscribeJob(JobId),
    UnsubscribeJob(JobId),
    Get,
    Describe(JobId),
    Update {
        job: JobId,
        status: JobStatus,
        state: &'static str,
        message: Option<StatusMessage>,
    },
}

/// Where the flow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JobStep {
    /// Waiting for `get/accepted`.
    Fetch,
    /// Waiting for `notify`.
    Monitor,
    /// Waiting for `J/get/accepted`.
    Select,
    /// A hook runs (or waits for its next call).
    Hook(Hook),
    /// The download runs (or waits for its next try).
    Download,
    /// A built-in step runs.
    Builtin(Builtin),
    /// Installed into the slot: `Restarting` is being written; then
    /// `reboot_start` goes out (after the write: a power cut boots the
    /// trial, and the next start must verify it, not install again).
    PersistRestart,
    /// `reboot_start` was sent; waiting for the service's answer.
    ConfirmReboot,
    /// A reboot is under way: waiting to be stopped.
    Rebooting,
    /// A job ended: persist, tidy, fetch.
    Finish,
}

/// Where the MQTT connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Wanted at this time.
    Down { at: Instant, backoff: u64 },
    /// The host is connecting.
    Opening { backoff: u64 },
    /// CONNECT written.
    Up,
}

/// The job being worked on.
#[derive(Clone, Debug, Default)]
struct Job {
    id: JobId,
    version: Field,
    meta: Field,
    force: bool,
    status: Option<JobStatus>,
    /// `statusDetails.state` when described.
    state: Field,
}

/// One hook's calls.
#[derive(Clone, Copy, Debug)]
pub(super) struct HookRun {
    /// When the first call started.
    pub(super) first_call: Instant,
    /// Calls that asked to retry (exit 3).
    pub(super) retry: u32,
}

impl HookRun {
    /// A call of the hook `run` tracks asked to retry (exit 3):
    /// `Ok(wait)` in milliseconds before the next call, or `Err(seconds)`
    /// when the calls are used up (upparat's `Timeout after Ns`); the
    /// run ends then.
    pub(super) fn retry_later(
        run: &mut Option<Self>,
        now: Instant,
        retry_interval_ms: u64,
        max_retries: u32,
    ) -> Result<u64, u64> {
        let this = run.get_or_insert(Self {
            first_call: now,
            retry: 0,
        });
        this.retry = this.retry.saturating_add(1);
        if this.retry >= max_retries {
            *run = None;
            Err(u64::from(max_retries).saturating_mul(retry_interval_ms) / 1000)
        } else {
            Ok(retry_interval_ms)
        }
    }
}

/// Hooks, and how often they may ask to retry: a Mender server deployment
/// installed by upparat's hooks ([`super::HandOffRole::Hooks`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookPolicy {
    /// The hooks configured.
    pub hooks: HookSet,
    /// Wait after a hook's exit 3, milliseconds (upparat: 60 s).
    pub retry_interval_ms: u64,
    /// Calls of a hook at most (upparat: 60).
    pub max_retries: u32,
}

/// The AWS IoT Jobs flow's memory (in [`Agent`]).
pub(super) struct JobsFlow<'b> {
    settings: JobsSettings<'b>,
    session: Session<'b>,
    link: Link,
    outgoing: Deque<Out, 16>,
    pub(super) step: JobStep,
    job: Job,
    hook: Option<HookRun>,
    /// Waiting for a hook retry or a download retry.
    wait_until: Option<Instant>,
    download_tries: u32,
    /// The last progress published (bytes); `None` until the download
    /// says where it starts (a resume starts at the file's length).
    progress_sent: Option<u64>,
    /// The job was cancelled while a hook or download ran.
    cancelled: bool,
    /// `reboot_start` was accepted (or rejected).
    reboot_answered: bool,
    /// Updates of the current job sent and not yet answered (the service
    /// answers a job's updates in order: `reboot_start` is confirmed when
    /// this falls to zero after it).
    unanswered: u32,
    /// The restart was persisted by an earlier run: verify the installation.
    restarted: Option<JobId>,
    /// The job's artifact was installed into the slot by [`Builtin::Install`]
    /// in this run: a failure from here rolls it back.
    slot_installed: bool,
}

impl<'b> JobsFlow<'b> {
    /// A flow over the agent's request buffer (receive, at least 16 KiB)
    /// and auth buffer (QoS 1 in-flight store).
    pub(super) fn new(
        settings: JobsSettings<'b>,
        receive: &'b mut [u8],
        in_flight: &'b mut [u8],
        record: &crate::store::StateRecord,
    ) -> Self {
        let mut config = SessionConfig::new(settings.client_id);
        config.keep_alive_secs = settings.keep_alive_secs;
        let session = Session::new(
            config,
            crate::protocol::mqtt::SessionBuffers { receive, in_flight },
        );
        let restarted = match &record.step {
            crate::store::UpdateStep::Job(job) if job.phase == JobPhase::Restarting => {
                Some(job.job_id.clone())
            }
            _ => None,
        };
        Self {
            settings,
            session,
            link: Link::Down {
                at: Instant::default(),
                backoff: RECONNECT_MIN_MS,
            },
            outgoing: Deque::new(),
            step: JobStep::Fetch,
            job: Job::default(),
            hook: None,
            wait_until: None,
            download_tries: 0,
            progress_sent: None,
            cancelled: false,
            reboot_answered: false,
            unanswered: 0,
            restarted,
            slot_installed: false,
        }
    }

    /// Where a failed or dropped job goes: an update installed into the
    /// slot and not committed is rolled back first.
    const fn end_step(&self) -> JobStep {
        if self.slot_installed {
            JobStep::Builtin(Builtin::Rollback)
        } else {
            JobStep::Finish
        }
    }

    /// `reboot_start` goes out; the restart waits for its answer.
    fn reboot_start(&mut self, now: Instant) {
        self.update(JobStatus::InProgress, state::REBOOT_START, None);
        self.reboot_answered = false;
        self.step = JobStep::ConfirmReboot;
        self.wait_until = Some(now.after(REBOOT_CONFIRM_MS));
    }

    fn queue(&mut self, out: Out) {
        if self.outgoing.push_back(out).is_err() {
            // Sixteen messages wait already: the connection is down for
            // long. The oldest progress update is the least useful.
            warn!("MQTT send queue full; dropping the oldest message");
            let _ = self.outgoing.pop_front();
        }
    }

    fn update(&mut self, status: JobStatus, state: &'static str, message: Option<&str>) {
        let job = self.job.id.clone();
        self.unanswered = self.unanswered.saturating_add(1);
        self.queue(Out::Update {
            job,
            status,
            state,
            message: message.map(cut),
        });
    }
}

/// The two topic filters an (un)subscription covers: `notify` and
/// `get/+` for the base one, `J/get/+` and `J/update/+` for a job's.
fn filters(thing: &str, out: &Out) -> Option<[jobs::Topic; 2]> {
    match out {
        Out::SubscribeBase => Some([
            jobs::notify_topic(thing).ok()?,
            jobs::get_pending_reply_topic(thing, Reply::Any).ok()?,
        ]),
        Out::SubscribeJob(job) | Out::UnsubscribeJob(job) => Some([
            jobs::describe_reply_topic(thing, job, Reply::Any).ok()?,
            jobs::update_reply_topic(thing, job, Reply::Any).ok()?,
        ]),
        _ => None,
    }
}

/// `text` cut to a status message (on a character boundary).
fn cut(text: &str) -> StatusMessage {
    let mut out = StatusMessage::new();
    for ch in text.chars() {
        if out.push(ch).is_err() {
            break;
        }
    }
    out
}

fn field(text: &str) -> Field {
    let mut out = Field::new();
    for ch in text.chars() {
        if out.push(ch).is_err() {
            break;
        }
    }
    out
}

/// What an incoming message means, copied out of the receive buffer
/// (a short-lived value; no heap to box the job document in).
#[allow(clippy::large_enum_variant)]
enum Incoming {
    Connected,
    Refused,
    Pending(Picked),
    PendingRejected,
    Notify {
        /// A prefixed job is pending.
        any: bool,
        /// The current job is still listed (in progress or queued).
        current_listed: bool,
    },
    Described(Job, Option<String<{ super::MAX_URI_LEN }>>),
    DescribeRejected,
    UpdateAnswer {
        job: JobId,
        rejected: Option<String<64>>,
    },
    Nothing,
}

/// [`Selection`] with owned ids.
#[allow(clippy::large_enum_variant)]
enum Picked {
    Nothing,
    One(JobId),
    Multiple(Vec<JobId, { jobs::MAX_JOB_SUMMARIES }>),
}

fn digest(thing: &str, prefix: &str, current: &str, event: Event<'_>) -> Incoming {
    let (topic, payload) = match event {
        Event::Connected { .. } => return Incoming::Connected,
        Event::ConnectionRefused(_) => return Incoming::Refused,
        Event::Publish { topic, payload, .. } => (topic, payload),
        _ => return Incoming::Nothing,
    };
    let Some(kind) = jobs::classify(thing, topic) else {
        return Incoming::Nothing;
    };
    match kind {
        JobsTopic::GetPending(Reply::Accepted) => match PendingJobs::parse(payload) {
            Ok(pending) => {
                let picked =
                    match jobs::select_job(&pending.in_progress_jobs, &pending.queued_jobs, prefix)
                    {
                        Selection::Nothing => Picked::Nothing,
                        Selection::InProgress(id) | Selection::Queued(id) => {
                            Picked::One(JobId::try_from(id).unwrap_or_default())
                        }
                        Selection::MultipleInProgress => Picked::Multiple(
                            pending
                                .in_progress_jobs
                                .iter()
                                .filter(|job| jobs::has_job_prefix(job.job_id, prefix))
                                .filter_map(|job| JobId::try_from(job.job_id).ok())
                                .collect(),
                        ),
                    };
                Incoming::Pending(picked)
            }
            Err(error) => {
                warn!("unreadable get/accepted: {error}");
                Incoming::PendingRejected
            }
        },
        JobsTopic::GetPending(_) => {
            if let Ok(rejected) = Rejected::parse(payload) {
                warn!("the jobs service refused 'get': {}", rejected.code);
            }
            Incoming::PendingRejected
        }
        JobsTopic::Notify => match Notify::parse(payload) {
            Ok(notify) => {
                let in_progress = &notify.jobs.in_progress;
                let queued = &notify.jobs.queued;
                let any = in_progress
                    .iter()
                    .chain(queued.iter())
                    .any(|job| jobs::has_job_prefix(job.job_id, prefix));
                let current_listed = in_progress
                    .iter()
                    .chain(queued.iter())
                    .any(|job| job.job_id == current);
                Incoming::Notify {
                    any,
                    current_listed,
                }
            }
            Err(error) => {
                warn!("unreadable notify: {error}");
                Incoming::Nothing
            }
        },
        JobsTopic::Describe { job_id, reply } if job_id == current => match reply {
            Reply::Accepted => match DescribeAccepted::parse(payload) {
                Ok(DescribeAccepted {
                    execution: Some(execution),
                    ..
                }) => {
                    let Some(document) = execution.job_document else {
                        warn!("job {job_id} has no job document");
                        return Incoming::DescribeRejected;
                    };
                    let mut text = [0u8; MAX_JOB_FIELD_LEN];
                    let mut job = Job {
                        id: JobId::try_from(execution.job_id).unwrap_or_default(),
                        force: document.force,
                        status: Some(execution.status),
                        ..Job::default()
                    };
                    job.version = document
                        .version
                        .unescape(&mut text)
                        .map(field)
                        .unwrap_or_default();
                    job.meta = document
                        .meta
                        .and_then(|meta| meta.unescape(&mut text).ok().map(field))
                        .unwrap_or_default();
                    job.state = execution
                        .state()
                        .and_then(|state| state.unescape(&mut text).ok().map(field))
                        .unwrap_or_default();
                    let mut url = [0u8; super::MAX_URI_LEN];
                    let file = document
                        .file
                        .unescape(&mut url)
                        .ok()
                        .and_then(|file| String::try_from(file).ok());
                    Incoming::Described(job, file)
                }
                Ok(_) => Incoming::DescribeRejected,
                Err(error) => {
                    warn!("unreadable {job_id}/get/accepted: {error}");
                    Incoming::DescribeRejected
                }
            },
            _ => Incoming::DescribeRejected,
        },
        JobsTopic::Update { job_id, reply } => Incoming::UpdateAnswer {
            job: JobId::try_from(job_id).unwrap_or_default(),
            rejected: match reply {
                Reply::Accepted => None,
                _ => Some(
                    Rejected::parse(payload)
                        .ok()
                        .and_then(|r| String::try_from(r.code).ok())
                        .unwrap_or_default(),
                ),
            },
        },
        _ => Incoming::Nothing,
    }
}

impl Agent<'_> {
    /// The current job's id, for the persisted record.
    pub(super) fn job_id_owned(&self) -> heapless::String<{ crate::store::MAX_JOB_ID_LEN }> {
        self.jobs
            .as_ref()
            .map(|flow| flow.job.id.clone())
            .unwrap_or_default()
    }

    fn jobs_settings(&self) -> Option<JobsSettings<'_>> {
        self.jobs.as_ref().map(|flow| flow.settings)
    }

    // ---------------------------------------------------------------
    // The connection (host calls).

    /// Jobs mode: the agent wants the MQTT connection opened now.
    pub fn mqtt_wants_connection(&self, now: Instant) -> bool {
        match self.jobs.as_ref().map(|flow| flow.link) {
            Some(Link::Down { at, .. }) => now >= at && !self.stopping,
            _ => false,
        }
    }

    /// Jobs mode: the connection the agent wanted is open; CONNECT goes
    /// out with the next [`Agent::poll_transmit`].
    pub fn handle_mqtt_connected(&mut self, now: Instant) {
        self.now = now;
        if let Some(flow) = self.jobs.as_mut() {
            if let Link::Opening { backoff } | Link::Down { backoff, .. } = flow.link {
                flow.link = Link::Opening { backoff };
            }
        }
    }

    /// Jobs mode: the connection broke or could not be opened (`why`).
    /// The agent asks again after a backoff (1 s doubling to 120 s).
    pub fn handle_mqtt_lost(&mut self, now: Instant, why: &str) {
        self.now = now;
        let Some(flow) = self.jobs.as_mut() else {
            return;
        };
        flow.session.handle_connection_lost();
        let backoff = match flow.link {
            Link::Down { backoff, .. } | Link::Opening { backoff } => backoff,
            Link::Up => RECONNECT_MIN_MS,
        };
        warn!(
            "MQTT connection lost ({why}); reconnecting in {} s",
            backoff / 1000
        );
        flow.link = Link::Down {
            at: now.after(backoff),
            backoff: backoff.saturating_mul(2).min(RECONNECT_MAX_MS),
        };
    }

    /// Jobs mode: the next bytes to write to the connection (`None`:
    /// nothing now). A session error closes the connection: the host
    /// closes it when [`Agent::mqtt_wants_connection`] turns true again or
    /// on [`Agent::handle_mqtt_lost`].
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        self.now = now;
        let flow = self.jobs.as_mut()?;
        if let Link::Opening { .. } = flow.link {
            return match flow.session.connect(now, out) {
                Ok(len) => {
                    flow.link = Link::Up;
                    Some(len)
                }
                Err(error) => {
                    error!("cannot write MQTT CONNECT: {error}");
                    None
                }
            };
        }
        if flow.session.state() != SessionState::Connected {
            return None;
        }
        match flow.session.poll_transmit(now, out) {
            Ok(Some(len)) => return Some(len),
            Ok(None) => {}
            Err(error) => {
                warn!("MQTT: {error}");
                return None;
            }
        }
        let next = flow.outgoing.front()?.clone();
        let settings = flow.settings;
        let thing = settings.thing_name;
        let written = match &next {
            Out::SubscribeBase | Out::SubscribeJob(_) | Out::UnsubscribeJob(_) => {
                let Some([first, second]) = filters(thing, &next) else {
                    let _ = flow.outgoing.pop_front();
                    return None;
                };
                if let Out::UnsubscribeJob(_) = next {
                    flow.session.unsubscribe(now, &[&first, &second], out)
                } else {
                    let qos = QoS::AtLeastOnce;
                    flow.session
                        .subscribe(now, &[(&first, qos), (&second, qos)], out)
                }
                .map(|(_, len)| len)
            }
            Out::Get => match jobs::get_pending_topic(thing) {
                Ok(topic) => flow
                    .session
                    .publish(
                        now,
                        &topic,
                        jobs::UPPARAT_GET_PAYLOAD,
                        QoS::AtLeastOnce,
                        out,
                    )
                    .map(|(_, len)| len),
                Err(_) => Ok(0),
            },
            Out::Describe(job) => match jobs::describe_topic(thing, job) {
                Ok(topic) => flow
                    .session
                    .publish(
                        now,
                        &topic,
                        jobs::UPPARAT_GET_PAYLOAD,
                        QoS::AtLeastOnce,
                        out,
                    )
                    .map(|(_, len)| len),
                Err(_) => Ok(0),
            },
            Out::Update {
                job,
                status,
                state,
                message,
            } => {
                let mut payload = [0u8; 1024];
                let request = jobs::UpdateRequest {
                    message: message.as_deref(),
                    ..jobs::UpdateRequest::new(*status, state)
                };
                match (
                    jobs::update_topic(thing, job),
                    jobs::write_update(&request, &mut payload),
                ) {
                    (Ok(topic), Ok(len)) => flow
                        .session
                        .publish(
                            now,
                            &topic,
                            payload.get(..len).unwrap_or_default(),
                            QoS::AtLeastOnce,
                            out,
                        )
                        .map(|(_, len)| len),
                    _ => Ok(0),
                }
            }
        };
        match written {
            Ok(len) => {
                let _ = flow.outgoing.pop_front();
                if len == 0 {
                    // Nothing to write now (kept for the next connection,
                    // or unwritable): go on with the next.
                    return self.poll_transmit(now, out);
                }
                Some(len)
            }
            Err(crate::protocol::mqtt::SessionError::InFlightFull) => None,
            Err(error) => {
                warn!("MQTT: cannot send {next:?}: {error}");
                let _ = flow.outgoing.pop_front();
                None
            }
        }
    }

    /// Jobs mode: bytes read from the connection. Returns how many were
    /// taken: call again with the rest (a packet that completes is acted
    /// on first). On a session error the connection is considered lost.
    pub fn handle_mqtt_bytes(&mut self, now: Instant, bytes: &[u8]) -> usize {
        self.now = now;
        let (incoming, consumed) = {
            let Some(flow) = self.jobs.as_mut() else {
                return bytes.len();
            };
            let thing = flow.settings.thing_name;
            let prefix = flow.settings.job_prefix;
            let current = flow.job.id.clone();
            match flow.session.handle_bytes(now, bytes) {
                Ok(received) => (
                    received
                        .event
                        .map(|event| digest(thing, prefix, &current, event)),
                    received.consumed,
                ),
                Err(crate::protocol::mqtt::SessionError::AckBacklog) => (None, 0),
                Err(error) => {
                    self.handle_mqtt_lost(now, &heapless_text(&error));
                    return bytes.len();
                }
            }
        };
        if let Some(incoming) = incoming {
            self.jobs_incoming(incoming);
        }
        consumed
    }

    /// Jobs mode: stop the running hook, download or built-in install (the
    /// job was cancelled, or the agent is stopping). A built-in commit,
    /// rollback or reboot always runs to its end.
    pub fn job_cancelled(&self) -> bool {
        self.jobs.as_ref().is_some_and(|flow| {
            (flow.cancelled || self.stopping)
                && !matches!(flow.step, JobStep::Builtin(b) if b != Builtin::Install)
        })
    }

    // ---------------------------------------------------------------
    // Action answers.

    /// A line the running hook `id` printed (non-empty, trimmed). The
    /// install hook's lines are published as `installation_progress`.
    pub fn handle_hook_output(&mut self, now: Instant, id: super::ActionId, line: &str) {
        self.now = now;
        if self.outstanding != Some((id, false)) {
            return;
        }
        if let Some(flow) = self.jobs.as_mut() {
            if flow.step == JobStep::Hook(Hook::Install) && !flow.cancelled {
                flow.update(
                    JobStatus::InProgress,
                    state::INSTALLATION_PROGRESS,
                    Some(line),
                );
            }
        }
    }

    /// The hook `id` ended.
    pub fn handle_hook(&mut self, now: Instant, id: super::ActionId, outcome: HookOutcome<'_>) {
        self.now = now;
        if self.outstanding != Some((id, false)) {
            return;
        }
        self.outstanding = None;
        let Some(flow) = self.jobs.as_mut() else {
            // Managed mode: the hooks install a deployment.
            self.mender_hook_done(outcome);
            return;
        };
        let hook = match flow.step {
            JobStep::Hook(hook) => hook,
            JobStep::Builtin(builtin) => {
                self.builtin_done(builtin, outcome);
                return;
            }
            _ => return,
        };
        if self.stopping {
            // Stopped, not failed: the next start goes on from the
            // service's state (and the persisted phase).
            self.step = Step::Exit { failed: false };
            return;
        }
        if flow.cancelled {
            self.job_dropped();
            return;
        }
        let settings = flow.settings;
        match outcome {
            HookOutcome::Exited { code: 0, last_line } => {
                flow.hook = None;
                let line = last_line.map(field);
                self.hook_completed(hook, line.as_deref());
            }
            HookOutcome::Exited { code: 3, .. } => match HookRun::retry_later(
                &mut flow.hook,
                now,
                settings.retry_interval_ms,
                settings.max_retries,
            ) {
                Ok(wait) => {
                    debug!("the {} hook asks to retry in {wait} ms", hook.as_str());
                    flow.wait_until = Some(now.after(wait));
                }
                Err(seconds) => {
                    let message = text!("Timeout after {seconds}s");
                    warn!("giving up on the {} hook: {}", hook.as_str(), message);
                    self.job_failed(hook.failed_state(), &message);
                }
            },
            HookOutcome::Exited { code, .. } => {
                flow.hook = None;
                let message = text!("Exit code: {code}");
                error!("the {} hook failed: {}", hook.as_str(), message);
                self.job_failed(hook.failed_state(), &message);
            }
            HookOutcome::NotRun(why) => {
                flow.hook = None;
                let message = text!("{why}");
                error!("the {} hook cannot run: {why}", hook.as_str());
                self.job_failed(hook.failed_state(), &message);
            }
            HookOutcome::Cancelled => self.job_dropped(),
        }
    }

    /// A built-in step ended (answered as a hook).
    fn builtin_done(&mut self, builtin: Builtin, outcome: HookOutcome<'_>) {
        let Some(flow) = self.jobs.as_mut() else {
            return;
        };
        if builtin == Builtin::Install {
            if self.stopping {
                self.step = Step::Exit { failed: false };
                return;
            }
            if flow.cancelled {
                self.job_dropped();
                return;
            }
        }
        let (code, line) = match outcome {
            HookOutcome::Exited { code, last_line } => (code, last_line.map(field)),
            HookOutcome::NotRun(why) => (-1, Some(field(why))),
            HookOutcome::Cancelled => {
                self.job_dropped();
                return;
            }
        };
        // The failure's message: what the step said last, else its code.
        let failure: StatusMessage = match &line {
            Some(text) if code != 0 => cut(text),
            _ => cut(&text!("Exit code: {code}")),
        };
        if code != 0 {
            warn!(
                "the built-in {} ended with {code}: {}",
                builtin.as_str(),
                failure.as_str()
            );
        }
        match (builtin, code) {
            (Builtin::Install, 0) => {
                info!("job {}: installed into the slot", flow.job.id.as_str());
                flow.slot_installed = true;
                self.job_restart();
            }
            (Builtin::Install, _) => {
                self.job_failed(state::INSTALLATION_HOOK_FAILED, &failure);
            }
            (Builtin::Reboot, 0) => {
                info!("rebooting into the new slot");
                flow.step = JobStep::Rebooting;
            }
            (Builtin::Reboot, _) => self.job_failed(state::RESTART_HOOK_FAILED, &failure),
            (Builtin::Commit, 0) => {
                info!("job {}: committed", flow.job.id.as_str());
                flow.slot_installed = false;
                flow.update(JobStatus::Succeeded, state::COMPLETE_READY, None);
                flow.step = JobStep::Finish;
            }
            // Nothing waited: committed before a cut, or given up. The
            // running artifact tells.
            (Builtin::Commit, 2) => flow.step = JobStep::Builtin(Builtin::ShowArtifact),
            (Builtin::Commit, _) => self.job_failed(state::VERSION_MISMATCH, &failure),
            (Builtin::ShowArtifact, 0) if line.as_deref() == Some(flow.job.version.as_str()) => {
                flow.slot_installed = false;
                flow.update(JobStatus::Succeeded, state::COMPLETE_READY, None);
                flow.step = JobStep::Finish;
            }
            (Builtin::ShowArtifact, _) => {
                let message = text!(
                    "Expected version '{}', got '{}'",
                    flow.job.version.as_str(),
                    line.as_deref().unwrap_or("None")
                );
                self.job_failed(state::VERSION_MISMATCH, &message);
            }
            (Builtin::Rollback, _) => {
                flow.slot_installed = false;
                flow.step = JobStep::Finish;
            }
        }
    }

    /// The download `id` now has `bytes` in its file.
    pub fn handle_job_progress(&mut self, now: Instant, id: super::ActionId, bytes: u64) {
        self.now = now;
        if self.outstanding != Some((id, false)) {
            return;
        }
        let Some(flow) = self.jobs.as_mut() else {
            return;
        };
        if flow.cancelled {
            return;
        }
        // The first report says where the download starts; upparat then
        // reports after each 100 KiB read from there.
        let Some(mut sent) = flow.progress_sent else {
            flow.progress_sent = Some(bytes);
            return;
        };
        let mut mark = sent.saturating_add(PROGRESS_STEP);
        while mark <= bytes {
            let message = jobs::download_progress_message(mark);
            flow.update(
                JobStatus::InProgress,
                state::DOWNLOAD_PROGRESS,
                Some(&message),
            );
            sent = mark;
            mark = mark.saturating_add(PROGRESS_STEP);
        }
        if flow.download_tries > 0 && bytes > sent {
            flow.download_tries = 0;
        }
        flow.progress_sent = Some(sent);
    }

    /// The download `id` ended with `bytes` in the file.
    pub fn handle_job_download(
        &mut self,
        now: Instant,
        id: super::ActionId,
        bytes: u64,
        end: JobDownloadEnd<'_>,
    ) {
        self.now = now;
        if self.outstanding != Some((id, false)) {
            return;
        }
        self.outstanding = None;
        let Some(flow) = self.jobs.as_mut() else {
            return;
        };
        if self.stopping {
            self.step = Step::Exit { failed: false };
            return;
        }
        if flow.cancelled {
            self.job_dropped();
            return;
        }
        match end {
            JobDownloadEnd::Complete => {
                // upparat's last progress is the file's size when the last
                // read was short (none when nothing was read: a 416).
                if flow.progress_sent.is_some_and(|sent| bytes > sent) {
                    let message = jobs::download_progress_message(bytes);
                    flow.update(
                        JobStatus::InProgress,
                        state::DOWNLOAD_PROGRESS,
                        Some(&message),
                    );
                    flow.progress_sent = Some(bytes);
                }
                info!("job {}: downloaded {bytes} bytes", flow.job.id.as_str());
                self.job_install();
            }
            JobDownloadEnd::Expired => {
                warn!("the download URL expired; fetching the job again");
                flow.update(JobStatus::InProgress, state::DOWNLOAD_INTERRUPT, None);
                self.jobs_fetch();
            }
            JobDownloadEnd::Failed(why) => {
                let wait =
                    crate::agent::backoff(flow.download_tries, 1_000, DOWNLOAD_BACKOFF_MAX_MS, 0)
                        .unwrap_or(DOWNLOAD_BACKOFF_MAX_MS);
                flow.download_tries = flow.download_tries.saturating_add(1);
                warn!(
                    "the download broke at byte {bytes} ({why}); again in {} s",
                    wait / 1000
                );
                flow.wait_until = Some(now.after(wait));
            }
            JobDownloadEnd::Cancelled => self.job_dropped(),
            JobDownloadEnd::MenderArtifact => {
                info!(
                    "job {}: a Mender Artifact; streaming it into the slot",
                    flow.job.id.as_str()
                );
                flow.update(JobStatus::InProgress, state::INSTALLATION_START, None);
                flow.step = JobStep::Builtin(Builtin::Install);
                self.push_op(Op::Mark(Mark::Job(JobPhase::Installing)));
            }
        }
    }

    // ---------------------------------------------------------------
    // The flow.

    pub(super) fn jobs_dispatch(&mut self) -> Dispatch {
        if self.stopping {
            self.step = Step::Exit { failed: false };
            return Dispatch::Again;
        }
        let now = self.now;
        let Some(flow) = self.jobs.as_mut() else {
            return Dispatch::Wait;
        };
        if let Some(until) = flow.wait_until {
            if now < until {
                return Dispatch::Wait;
            }
            flow.wait_until = None;
        }
        match flow.step {
            JobStep::Hook(hook) => Dispatch::Action(super::StepKind::Hook(hook)),
            JobStep::Builtin(builtin) => Dispatch::Action(super::StepKind::Builtin(builtin)),
            JobStep::Download => Dispatch::Action(super::StepKind::JobDownload),
            // The ops ran first: `Restarting` is written.
            JobStep::PersistRestart => {
                flow.reboot_start(now);
                Dispatch::Again
            }
            JobStep::ConfirmReboot if flow.reboot_answered => {
                self.job_restart_hook();
                Dispatch::Again
            }
            JobStep::ConfirmReboot => {
                // The timer ran out without an answer: the restart is
                // persisted, go on.
                warn!("no answer to reboot_start; restarting anyway");
                flow.reboot_answered = true;
                Dispatch::Again
            }
            JobStep::Finish => {
                let job = flow.job.id.clone();
                flow.queue(Out::UnsubscribeJob(job));
                flow.job = Job::default();
                flow.hook = None;
                flow.cancelled = false;
                flow.restarted = None;
                flow.slot_installed = false;
                // The files first: a cut before `Idle` is written leaves
                // a record the next fetch forgets, never a file for good.
                self.push_op(Op::JobFiles { keep: false });
                self.push_op(Op::Mark(Mark::Idle));
                self.jobs_fetch();
                Dispatch::Again
            }
            JobStep::Fetch | JobStep::Monitor | JobStep::Select | JobStep::Rebooting => {
                Dispatch::Wait
            }
        }
    }

    /// The action of a hook step.
    pub(super) fn hook_action(&mut self, hook: Hook) -> super::Action<'_> {
        let now = self.now;
        let id = self.take_id(false);
        let Some(flow) = self.jobs.as_mut() else {
            return super::Action::Exit {
                failed: true,
                message: "no jobs flow",
            };
        };
        let run = *flow.hook.get_or_insert(HookRun {
            first_call: now,
            retry: 0,
        });
        let elapsed_s = run.first_call.until(now) / 1000;
        let flow = &*flow;
        super::Action::Hook {
            id,
            hook,
            elapsed_s,
            retry: run.retry,
            meta: flow.job.meta.as_str(),
            job_id: flow.job.id.as_str(),
            force: flow.job.force,
        }
    }

    /// The action of the download step.
    pub(super) fn job_download_action(&mut self) -> super::Action<'_> {
        let id = self.take_id(false);
        let (job_id, sniff) = self.jobs.as_ref().map_or(("", false), |flow| {
            (flow.job.id.as_str(), flow.settings.builtin())
        });
        super::Action::JobDownload {
            id,
            uri: self.uri.as_str(),
            job_id,
            sniff,
        }
    }

    /// The action of a built-in step.
    pub(super) fn builtin_action(&mut self, builtin: Builtin) -> super::Action<'_> {
        let id = self.take_id(false);
        let job_id = self.jobs.as_ref().map_or("", |flow| flow.job.id.as_str());
        super::Action::JobBuiltin {
            id,
            builtin,
            uri: if builtin == Builtin::Install {
                self.uri.as_str()
            } else {
                ""
            },
            job_id,
        }
    }

    /// The job id of [`Op::JobFiles`].
    pub(super) fn job_files_action(&self, keep: bool) -> super::Action<'_> {
        super::Action::JobFiles {
            keep: if keep {
                self.jobs.as_ref().map(|flow| flow.job.id.as_str())
            } else {
                None
            },
        }
    }

    fn jobs_fetch(&mut self) {
        if let Some(flow) = self.jobs.as_mut() {
            flow.step = JobStep::Fetch;
            flow.queue(Out::Get);
        }
        self.step = Step::Jobs;
    }

    fn jobs_incoming(&mut self, incoming: Incoming) {
        if let Incoming::Pending(picked) = &incoming {
            self.jobs_forget_ended(picked);
        }
        let Some(flow) = self.jobs.as_mut() else {
            return;
        };
        match incoming {
            Incoming::Connected => {
                info!("connected to the MQTT broker");
                if let Link::Opening { .. } = flow.link {
                    flow.link = Link::Up;
                }
                // A clean session: subscribe again, and ask again what a
                // lost reply would have said.
                flow.queue(Out::SubscribeBase);
                if !flow.job.id.is_empty() {
                    let job = flow.job.id.clone();
                    flow.queue(Out::SubscribeJob(job.clone()));
                    if flow.step == JobStep::Select {
                        flow.queue(Out::Describe(job));
                    }
                }
                if matches!(flow.step, JobStep::Fetch | JobStep::Monitor) {
                    flow.step = JobStep::Fetch;
                    flow.queue(Out::Get);
                }
            }
            Incoming::Refused => {
                error!("the MQTT broker refused the connection");
                self.handle_mqtt_lost(self.now, "connection refused");
            }
            Incoming::Pending(picked) if flow.step == JobStep::Fetch => match picked {
                Picked::Nothing => {
                    debug!("no pending jobs; waiting for a notification");
                    flow.step = JobStep::Monitor;
                }
                Picked::One(job) => {
                    info!("job {}: describing", job.as_str());
                    flow.job = Job {
                        id: job.clone(),
                        ..Job::default()
                    };
                    flow.unanswered = 0;
                    flow.step = JobStep::Select;
                    flow.queue(Out::SubscribeJob(job.clone()));
                    flow.queue(Out::Describe(job));
                }
                Picked::Multiple(ids) => {
                    let mut list: String<{ MAX_STATUS_MESSAGE_LEN }> = String::new();
                    for (index, id) in ids.iter().enumerate() {
                        if index > 0 {
                            let _ = list.push_str(", ");
                        }
                        let _ = list.push_str(id);
                    }
                    let message = text!("Invalid: More than one job is IN PROGRESS: {list}");
                    error!("{}", message.as_str());
                    for id in ids {
                        flow.queue(Out::Update {
                            job: id,
                            status: JobStatus::Failed,
                            state: state::ERROR_MULTIPLE_IN_PROGRESS,
                            message: Some(cut(&message)),
                        });
                    }
                    flow.queue(Out::Get);
                }
            },
            Incoming::PendingRejected if flow.step == JobStep::Fetch => {
                flow.step = JobStep::Monitor;
            }
            Incoming::Notify {
                any,
                current_listed,
            } => match flow.step {
                JobStep::Monitor if any => {
                    flow.step = JobStep::Fetch;
                    flow.queue(Out::Get);
                }
                JobStep::Hook(_)
                | JobStep::Builtin(_)
                | JobStep::Download
                | JobStep::PersistRestart
                | JobStep::ConfirmReboot
                | JobStep::Rebooting
                    if !current_listed && !flow.job.id.is_empty() =>
                {
                    info!("job {} was cancelled or removed", flow.job.id.as_str());
                    flow.cancelled = true;
                    if self.outstanding.is_none() {
                        self.job_dropped();
                    }
                }
                _ => {}
            },
            Incoming::Described(job, file) if flow.step == JobStep::Select => {
                let Some(file) = file else {
                    warn!("job {}: no usable file URL", job.id.as_str());
                    flow.update(JobStatus::Failed, state::DOWNLOAD_HOOK_FAILED, None);
                    flow.step = JobStep::Finish;
                    return;
                };
                self.uri = file;
                self.job_verify(job);
            }
            Incoming::DescribeRejected if flow.step == JobStep::Select => {
                warn!(
                    "job {}: the service refused to describe it",
                    flow.job.id.as_str()
                );
                flow.job = Job::default();
                self.jobs_fetch();
            }
            Incoming::UpdateAnswer { job, rejected } => {
                if let Some(code) = &rejected {
                    warn!(
                        "the jobs service rejected an update of {}: {}",
                        job.as_str(),
                        code.as_str()
                    );
                }
                if job == flow.job.id {
                    flow.unanswered = flow.unanswered.saturating_sub(1);
                    // Every update up to `reboot_start` is answered.
                    if flow.step == JobStep::ConfirmReboot && flow.unanswered == 0 {
                        flow.reboot_answered = true;
                        flow.wait_until = None;
                    }
                }
            }
            _ => {}
        }
    }

    /// The pending jobs came: a job the record names that is not the one
    /// picked ended already (the power went after its last update, before
    /// `Idle` was written). Forget it: `Idle`, its file, the restart check
    /// (a retried execution of the same job is installed again, not only
    /// verified).
    fn jobs_forget_ended(&mut self, picked: &Picked) {
        let Some(flow) = self.jobs.as_mut() else {
            return;
        };
        if flow.step != JobStep::Fetch {
            return;
        }
        let crate::store::UpdateStep::Job(recorded) = &self.record.step else {
            return;
        };
        if matches!(picked, Picked::One(id) if *id == recorded.job_id)
            || self.ops.iter().any(|op| *op == Op::Mark(Mark::Idle))
        {
            return;
        }
        info!(
            "job {} is no longer pending; forgetting it",
            recorded.job_id.as_str()
        );
        flow.restarted = None;
        self.push_op(Op::JobFiles { keep: false });
        self.push_op(Op::Mark(Mark::Idle));
    }

    /// The job was described: decide (upparat's `verify_job`).
    fn job_verify(&mut self, job: Job) {
        let Some(flow) = self.jobs.as_mut() else {
            return;
        };
        let hooks = flow.settings.hooks;
        flow.hook = None;
        flow.cancelled = false;
        flow.download_tries = 0;
        flow.progress_sent = None;
        let restarted = flow.restarted.as_ref().is_some_and(|id| *id == job.id);
        let status = job.status;
        let in_reboot = job.state.as_str() == state::REBOOT_START;
        // `Restarting` is written before the restart hook runs: a record
        // still `Installing` this job says it never ran (the power went
        // after `reboot_start` left, before the record was written).
        let restart_unrun = in_reboot
            && matches!(&self.record.step, crate::store::UpdateStep::Job(r)
                if r.job_id == job.id && r.phase == JobPhase::Installing);
        flow.job = job;
        match status {
            Some(JobStatus::Queued) if restarted => self.job_verify_installation(),
            Some(JobStatus::Queued) if flow.job.force || !hooks.version => self.job_download_hook(),
            Some(JobStatus::Queued) => flow.step = JobStep::Hook(Hook::Version),
            Some(JobStatus::InProgress) if restart_unrun && !restarted => {
                info!("job {}: the restart hook never ran", flow.job.id.as_str());
                // Only after a finished install (built-in: into the slot).
                flow.slot_installed = flow.settings.builtin();
                self.job_restart();
            }
            Some(JobStatus::InProgress) if in_reboot || restarted => self.job_verify_installation(),
            Some(JobStatus::InProgress) => {
                info!("job {}: redoing it", flow.job.id.as_str());
                self.job_download_hook();
            }
            _ => {
                warn!(
                    "job {}: unexpected status {:?}",
                    flow.job.id.as_str(),
                    status
                );
                flow.step = JobStep::Finish;
            }
        }
        self.step = Step::Jobs;
    }

    fn job_download_hook(&mut self) {
        let Some(flow) = self.jobs.as_mut() else {
            return;
        };
        if flow.settings.hooks.download && !flow.job.force {
            flow.step = JobStep::Hook(Hook::Download);
        } else {
            self.job_download();
        }
    }

    fn job_download(&mut self) {
        let Some(flow) = self.jobs.as_mut() else {
            return;
        };
        flow.update(JobStatus::InProgress, state::DOWNLOAD_START, None);
        flow.step = JobStep::Download;
        flow.progress_sent = None;
        self.push_op(Op::JobFiles { keep: true });
        self.push_op(Op::Mark(Mark::Job(JobPhase::Downloading)));
    }

    fn job_install(&mut self) {
        let Some(flow) = self.jobs.as_mut() else {
            return;
        };
        if !flow.settings.hooks.install {
            info!("no install hook: the job ends with the download");
            flow.update(
                JobStatus::Succeeded,
                state::NO_INSTALLATION_HOOK_PROVIDED,
                None,
            );
            flow.step = JobStep::Finish;
            return;
        }
        flow.update(JobStatus::InProgress, state::INSTALLATION_START, None);
        flow.step = JobStep::Hook(Hook::Install);
        self.push_op(Op::Mark(Mark::Job(JobPhase::Installing)));
    }

    fn job_restart(&mut self) {
        let now = self.now;
        let Some(flow) = self.jobs.as_mut() else {
            return;
        };
        if !flow.settings.hooks.restart && !flow.slot_installed {
            flow.update(JobStatus::Succeeded, state::NO_RESTART_HOOK_PROVIDED, None);
            flow.step = JobStep::Finish;
            return;
        }
        if flow.slot_installed {
            // Any boot from here runs the trial: the record says so first.
            flow.step = JobStep::PersistRestart;
        } else {
            flow.reboot_start(now);
        }
        self.push_op(Op::Mark(Mark::Job(JobPhase::Restarting)));
    }

    fn job_restart_hook(&mut self) {
        if let Some(flow) = self.jobs.as_mut() {
            flow.wait_until = None;
            flow.step = if flow.settings.hooks.restart {
                JobStep::Hook(Hook::Restart)
            } else {
                // Installed into the slot: the new slot needs a reboot.
                JobStep::Builtin(Builtin::Reboot)
            };
        }
    }

    fn job_verify_installation(&mut self) {
        let Some(flow) = self.jobs.as_mut() else {
            return;
        };
        // Installed into the slot by the built-in install: the trial
        // waits for its commit (or is given up on a failure).
        flow.slot_installed = flow.settings.builtin();
        if flow.settings.hooks.version {
            flow.step = JobStep::Hook(Hook::Version);
            // Marks the version hook as the post-restart check.
            flow.restarted = Some(flow.job.id.clone());
        } else if flow.slot_installed {
            self.job_ready();
        } else {
            flow.update(JobStatus::Succeeded, state::COMPLETE_NO_VERSION_CHECK, None);
            flow.step = JobStep::Finish;
        }
    }

    /// The restarted version is the job's: the ready check, then (built-in
    /// install) the commit.
    fn job_ready(&mut self) {
        let Some(flow) = self.jobs.as_mut() else {
            return;
        };
        if flow.settings.hooks.ready {
            flow.step = JobStep::Hook(Hook::Ready);
        } else if flow.slot_installed {
            flow.step = JobStep::Builtin(Builtin::Commit);
        } else {
            flow.update(JobStatus::Succeeded, state::COMPLETE_NO_READY_CHECK, None);
            flow.step = JobStep::Finish;
        }
    }

    fn hook_completed(&mut self, hook: Hook, line: Option<&str>) {
        let Some(flow) = self.jobs.as_mut() else {
            return;
        };
        let after_restart = flow.restarted.as_ref().is_some_and(|id| *id == flow.job.id);
        match hook {
            Hook::Version if after_restart => {
                if line == Some(flow.job.version.as_str()) {
                    self.job_ready();
                } else {
                    let message = text!(
                        "Expected version '{}', got '{}'",
                        flow.job.version.as_str(),
                        line.unwrap_or("None")
                    );
                    warn!("{}", message.as_str());
                    self.job_failed(state::VERSION_MISMATCH, &message);
                }
            }
            Hook::Version => {
                if line == Some(flow.job.version.as_str()) {
                    info!("version {} is already running", flow.job.version.as_str());
                    flow.update(JobStatus::Succeeded, state::VERSION_ALREADY_INSTALLED, None);
                    flow.step = JobStep::Finish;
                } else {
                    self.job_download_hook();
                }
            }
            Hook::Download => self.job_download(),
            Hook::Install => self.job_restart(),
            // A new slot is not running after a soft restart: the hook's
            // reboot is under way.
            Hook::Restart if flow.slot_installed => flow.step = JobStep::Rebooting,
            Hook::Restart => {
                flow.update(JobStatus::Succeeded, state::COMPLETE_SOFT_RESTART, None);
                flow.step = JobStep::Finish;
            }
            Hook::Ready if flow.slot_installed => flow.step = JobStep::Builtin(Builtin::Commit),
            Hook::Ready => {
                flow.update(JobStatus::Succeeded, state::COMPLETE_READY, None);
                flow.step = JobStep::Finish;
            }
        }
    }

    fn job_failed(&mut self, state: &'static str, message: &str) {
        if let Some(flow) = self.jobs.as_mut() {
            flow.update(JobStatus::Failed, state, Some(message));
            flow.step = flow.end_step();
        }
    }

    /// The job was cancelled: nothing more is said about it.
    fn job_dropped(&mut self) {
        if let Some(flow) = self.jobs.as_mut() {
            flow.wait_until = None;
            flow.step = flow.end_step();
        }
    }
}

/// A short text of an error (for a log line).
fn heapless_text(error: &impl core::fmt::Display) -> String<96> {
    let mut out = String::new();
    let _ = core::fmt::Write::write_fmt(&mut out, format_args!("{error}"));
    out
}

impl Agent<'_> {
    /// Jobs mode: when the MQTT session needs the host (keep-alive, a
    /// retransmit, a reconnect).
    pub(super) fn jobs_poll_at(&self) -> Option<Instant> {
        let flow = self.jobs.as_ref()?;
        let session = flow.session.poll_at();
        let link = match flow.link {
            Link::Down { at, .. } => Some(at),
            _ => None,
        };
        let wait = flow.wait_until;
        [session, link, wait].into_iter().flatten().min()
    }

    /// Jobs mode: the timer came; the session's checks run.
    pub(super) fn jobs_timeout(&mut self, now: Instant) {
        let Some(flow) = self.jobs.as_mut() else {
            return;
        };
        if let Err(error) = flow.session.handle_timeout(now) {
            let why = heapless_text(&error);
            self.handle_mqtt_lost(now, &why);
        }
    }

    /// The settings, for hosts (thing name, hooks...).
    pub fn jobs_config(&self) -> Option<JobsSettings<'_>> {
        self.jobs_settings()
    }
}
