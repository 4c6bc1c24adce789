//! AWS IoT Jobs device protocol over MQTT, as upparat 1.12 speaks it:
//! topics, the replies it reads and the requests it writes.
//!
//! # Topics (thing `T`, job `J`)
//!
//! | topic | direction | payload | here |
//! |---|---|---|---|
//! | `$aws/things/T/jobs/notify` | in | [`Notify`] | [`notify_topic`] |
//! | `$aws/things/T/jobs/get` | out | empty (upparat) or [`write_get_request`] | [`get_pending_topic`] |
//! | `$aws/things/T/jobs/get/accepted` | in | [`PendingJobs`] | [`get_pending_reply_topic`] |
//! | `$aws/things/T/jobs/get/rejected` | in | [`Rejected`] | [`get_pending_reply_topic`] |
//! | `$aws/things/T/jobs/J/get` | out | empty (upparat) or [`write_get_request`] | [`describe_topic`] |
//! | `$aws/things/T/jobs/J/get/accepted` | in | [`DescribeAccepted`] | [`describe_reply_topic`] |
//! | `$aws/things/T/jobs/J/get/rejected` | in | [`Rejected`] | [`describe_reply_topic`] |
//! | `$aws/things/T/jobs/J/update` | out | [`write_update`] | [`update_topic`] |
//! | `$aws/things/T/jobs/J/update/accepted` | in | [`UpdateAccepted`] | [`update_reply_topic`] |
//! | `$aws/things/T/jobs/J/update/rejected` | in | [`Rejected`] | [`update_reply_topic`] |
//!
//! upparat subscribes with QoS 1 to `notify`, `get/+` and `J/get/+`
//! ([`Reply::Any`]) and publishes with QoS 1. [`classify`] maps an
//! incoming topic back to its kind.
//!
//! # Payloads
//!
//! | message | keys read (others ignored) |
//! |---|---|
//! | notify | `timestamp`, `jobs.QUEUED[]`, `jobs.IN_PROGRESS[]` ([`JobSummary`]) |
//! | get accepted | `inProgressJobs[]`, `queuedJobs[]` ([`JobSummary`]), `timestamp`, `clientToken` |
//! | J/get accepted | `execution` ([`JobExecution`]: `jobId`, `status`, `statusDetails`, `jobDocument`, numbers), `timestamp`, `clientToken` |
//! | job document | `file` (presigned URL), `version`, `meta` (optional), `force` (optional, false) |
//! | rejected | `code`, `message`, `clientToken`, `timestamp`, `executionState` |
//! | update accepted | `executionState`, `timestamp`, `clientToken` |
//! | update (written) | `{"status":S,"statusDetails":{"state":X,"message":M}}` (+ `expectedVersion`, `clientToken` if asked) |
//!
//! Parsed strings borrow from the payload. Free text ([`JsonStr`]) is
//! kept as the raw JSON text between the quotes, escapes and all; use
//! [`JsonStr::unescape`] or [`JsonStr::eq_str`]. Job ids and status codes
//! are plain `&str`: a job id with an escape is refused by the topic
//! builders ([`validate_job_id`]).

use super::write::{JsonWriter, WriteError};
use heapless::{LinearMap, String, Vec};
use serde::Deserialize;

/// Longest thing name AWS IoT accepts.
pub const MAX_THING_NAME_LEN: usize = 128;
/// Longest job id AWS IoT accepts.
pub const MAX_JOB_ID_LEN: usize = 64;
/// Longest topic built here: AWS IoT's topic limit (256 bytes) holds the
/// longest one, `$aws/things/<128>/jobs/<64>/update/accepted` (226).
pub const MAX_TOPIC_LEN: usize = 256;
/// Most job summaries kept per list (`QUEUED`, `inProgressJobs` ...);
/// a longer list is a parse error.
pub const MAX_JOB_SUMMARIES: usize = 16;
/// Most `statusDetails` entries kept; more is a parse error (AWS allows
/// 10 name/value pairs per update).
pub const MAX_STATUS_DETAILS: usize = 10;
/// upparat only handles jobs whose id starts with this (its workaround for
/// several services sharing a thing's jobs).
pub const UPPARAT_JOB_PREFIX: &str = "upparat_";
/// The payload upparat publishes to `jobs/get` and `jobs/J/get`: nothing
/// (paho's `publish(topic, qos=1)` without a payload).
pub const UPPARAT_GET_PAYLOAD: &[u8] = b"";

/// A topic built here.
pub type Topic = String<MAX_TOPIC_LEN>;

/// upparat's `statusDetails.state` vocabulary (`jobs.py`), sent with
/// every update. The status that goes with each is in its doc.
pub mod state {
    /// `IN_PROGRESS`: the download hook starts.
    pub const DOWNLOAD_START: &str = "download_start";
    /// `IN_PROGRESS`: download progress; upparat's message is
    /// `{"downloaded_bytes": N}` ([`super::download_progress_message`]).
    pub const DOWNLOAD_PROGRESS: &str = "download_progress";
    /// `IN_PROGRESS`: the download stopped (error or cancel); retried.
    pub const DOWNLOAD_INTERRUPT: &str = "download_interrupt";
    /// `IN_PROGRESS`: the install hook starts.
    pub const INSTALLATION_START: &str = "installation_start";
    /// `IN_PROGRESS`: a line of install hook output (the message).
    pub const INSTALLATION_PROGRESS: &str = "installation_progress";
    /// `IN_PROGRESS`: the installation stopped; retried.
    pub const INSTALLATION_INTERRUPT: &str = "installation_interrupt";
    /// `IN_PROGRESS`: the restart hook runs. Seen again after the
    /// reboot, it means "installation done, verify the version".
    pub const REBOOT_START: &str = "reboot_start";
    /// `IN_PROGRESS`: the restart was interrupted.
    pub const REBOOT_INTERRUPT: &str = "reboot_interrupt";
    /// `FAILED`: more than one upparat job was `IN_PROGRESS`; all are failed.
    pub const ERROR_MULTIPLE_IN_PROGRESS: &str = "error_multiple_in_progress";

    /// `SUCCEEDED`: the version hook reports the job's version already.
    pub const VERSION_ALREADY_INSTALLED: &str = "version_already_installed";
    /// `SUCCEEDED`: downloaded, but no install hook is configured.
    pub const NO_INSTALLATION_HOOK_PROVIDED: &str = "no_installation_hook_provided";
    /// `SUCCEEDED`: installed, but no restart hook is configured.
    pub const NO_RESTART_HOOK_PROVIDED: &str = "no_restart_hook_provided";
    /// `SUCCEEDED`: the restart hook exited without rebooting the device.
    pub const COMPLETE_SOFT_RESTART: &str = "complete_soft_restart";
    /// `SUCCEEDED`: after the reboot, no version hook to check with.
    pub const COMPLETE_NO_VERSION_CHECK: &str = "complete_no_version_check";
    /// `SUCCEEDED`: version matches, no ready hook configured.
    pub const COMPLETE_NO_READY_CHECK: &str = "complete_no_ready_check";
    /// `SUCCEEDED`: version matches and the ready hook succeeded.
    pub const COMPLETE_READY: &str = "complete_ready";

    /// `FAILED`: the install hook failed (message: its output).
    pub const INSTALLATION_HOOK_FAILED: &str = "installation_hook_failed";
    /// `FAILED`: the download hook failed.
    pub const DOWNLOAD_HOOK_FAILED: &str = "download_hook_failed";
    /// `FAILED`: the restart hook failed.
    pub const RESTART_HOOK_FAILED: &str = "restart_hook_failed";
    /// `FAILED`: the version hook failed.
    pub const VERSION_HOOK_FAILED: &str = "version_hook_failed";
    /// `FAILED`: the ready hook failed.
    pub const READY_HOOK_FAILED: &str = "ready_hook_failed";
    /// `FAILED`: after the reboot the version hook reports another version.
    pub const VERSION_MISMATCH: &str = "version_mismatch";
}

/// A job execution's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum JobStatus {
    Queued,
    InProgress,
    Failed,
    Succeeded,
    Canceled,
    TimedOut,
    Rejected,
    Removed,
}

impl JobStatus {
    /// The wire name (`IN_PROGRESS` ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::InProgress => "IN_PROGRESS",
            Self::Failed => "FAILED",
            Self::Succeeded => "SUCCEEDED",
            Self::Canceled => "CANCELED",
            Self::TimedOut => "TIMED_OUT",
            Self::Rejected => "REJECTED",
            Self::Removed => "REMOVED",
        }
    }
}

/// A thing name or job id AWS IoT would not accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// Thing name empty, longer than [`MAX_THING_NAME_LEN`] or with a
    /// character outside `a-zA-Z0-9:_-`.
    InvalidThingName,
    /// Job id empty, longer than [`MAX_JOB_ID_LEN`] or with a character
    /// outside `a-zA-Z0-9_-`.
    InvalidJobId,
}

impl core::fmt::Display for TopicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::InvalidThingName => f.write_str("invalid AWS IoT thing name"),
            Self::InvalidJobId => f.write_str("invalid AWS IoT job id"),
        }
    }
}

impl core::error::Error for TopicError {}

/// Checks a thing name as AWS IoT does: 1 to 128 of `a-zA-Z0-9:_-`.
///
/// # Errors
/// [`TopicError::InvalidThingName`].
pub fn validate_thing_name(thing_name: &str) -> Result<(), TopicError> {
    let valid = (1..=MAX_THING_NAME_LEN).contains(&thing_name.len())
        && thing_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'));
    valid.then_some(()).ok_or(TopicError::InvalidThingName)
}

/// Checks a job id as AWS IoT does: 1 to 64 of `a-zA-Z0-9_-`.
///
/// # Errors
/// [`TopicError::InvalidJobId`].
pub fn validate_job_id(job_id: &str) -> Result<(), TopicError> {
    let valid = (1..=MAX_JOB_ID_LEN).contains(&job_id.len())
        && job_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    valid.then_some(()).ok_or(TopicError::InvalidJobId)
}

/// True if `job_id` starts with `prefix` (upparat: [`UPPARAT_JOB_PREFIX`]).
pub fn has_job_prefix(job_id: &str, prefix: &str) -> bool {
    job_id.starts_with(prefix)
}

/// Which reply topic of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reply {
    /// `.../accepted`.
    Accepted,
    /// `.../rejected`.
    Rejected,
    /// `.../+`: the subscription filter for both (never from [`classify`]).
    Any,
}

impl Reply {
    const fn suffix(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Any => "+",
        }
    }
}

fn build(thing_name: &str, job_id: Option<&str>, tail: &[&str]) -> Result<Topic, TopicError> {
    validate_thing_name(thing_name)?;
    let mut topic = Topic::new();
    // Cannot overflow: the longest topic (226 bytes) fits MAX_TOPIC_LEN.
    let _ = topic.push_str("$aws/things/");
    let _ = topic.push_str(thing_name);
    let _ = topic.push_str("/jobs");
    if let Some(job_id) = job_id {
        validate_job_id(job_id)?;
        let _ = topic.push('/');
        let _ = topic.push_str(job_id);
    }
    for part in tail {
        let _ = topic.push('/');
        let _ = topic.push_str(part);
    }
    Ok(topic)
}

/// `$aws/things/T/jobs/notify`.
///
/// # Errors
/// [`TopicError`] for an invalid thing name.
pub fn notify_topic(thing_name: &str) -> Result<Topic, TopicError> {
    build(thing_name, None, &["notify"])
}

/// `$aws/things/T/jobs/notify-next`.
///
/// # Errors
/// [`TopicError`] for an invalid thing name.
pub fn notify_next_topic(thing_name: &str) -> Result<Topic, TopicError> {
    build(thing_name, None, &["notify-next"])
}

/// `$aws/things/T/jobs/get` (GetPendingJobExecutions).
///
/// # Errors
/// [`TopicError`] for an invalid thing name.
pub fn get_pending_topic(thing_name: &str) -> Result<Topic, TopicError> {
    build(thing_name, None, &["get"])
}

/// `$aws/things/T/jobs/get/accepted|rejected|+`.
///
/// # Errors
/// [`TopicError`] for an invalid thing name.
pub fn get_pending_reply_topic(thing_name: &str, reply: Reply) -> Result<Topic, TopicError> {
    build(thing_name, None, &["get", reply.suffix()])
}

/// `$aws/things/T/jobs/J/get` (DescribeJobExecution).
///
/// # Errors
/// [`TopicError`] for an invalid thing name or job id.
pub fn describe_topic(thing_name: &str, job_id: &str) -> Result<Topic, TopicError> {
    build(thing_name, Some(job_id), &["get"])
}

/// `$aws/things/T/jobs/J/get/accepted|rejected|+`.
///
/// # Errors
/// [`TopicError`] for an invalid thing name or job id.
pub fn describe_reply_topic(
    thing_name: &str,
    job_id: &str,
    reply: Reply,
) -> Result<Topic, TopicError> {
    build(thing_name, Some(job_id), &["get", reply.suffix()])
}

/// `$aws/things/T/jobs/J/update` (UpdateJobExecution).
///
/// # Errors
/// [`TopicError`] for an invalid thing name or job id.
pub fn update_topic(thing_name: &str, job_id: &str) -> Result<Topic, TopicError> {
    build(thing_name, Some(job_id), &["update"])
}

/// `$aws/things/T/jobs/J/update/accepted|rejected|+`.
///
/// # Errors
/// [`TopicError`] for an invalid thing name or job id.
pub fn update_reply_topic(
    thing_name: &str,
    job_id: &str,
    reply: Reply,
) -> Result<Topic, TopicError> {
    build(thing_name, Some(job_id), &["update", reply.suffix()])
}

/// What an incoming jobs topic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobsTopic<'t> {
    /// `jobs/notify`: the pending job list changed ([`Notify`]).
    Notify,
    /// `jobs/notify-next`: the next job changed.
    NotifyNext,
    /// `jobs/get/<reply>`: pending jobs ([`PendingJobs`] or [`Rejected`]).
    GetPending(Reply),
    /// `jobs/J/get/<reply>`: one job ([`DescribeAccepted`] or [`Rejected`]).
    Describe {
        /// The job id in the topic.
        job_id: &'t str,
        /// Accepted or rejected.
        reply: Reply,
    },
    /// `jobs/J/update/<reply>`: an update's answer ([`UpdateAccepted`] or
    /// [`Rejected`]).
    Update {
        /// The job id in the topic.
        job_id: &'t str,
        /// Accepted or rejected.
        reply: Reply,
    },
}

/// Classifies `topic` for thing `thing_name`; `None` for any other topic
/// (another thing's, a request topic, a malformed one).
pub fn classify<'t>(thing_name: &str, topic: &'t str) -> Option<JobsTopic<'t>> {
    let rest = topic
        .strip_prefix("$aws/things/")?
        .strip_prefix(thing_name)?
        .strip_prefix("/jobs/")?;
    let reply = |text: &str| match text {
        "accepted" => Some(Reply::Accepted),
        "rejected" => Some(Reply::Rejected),
        _ => None,
    };
    let mut parts = rest.split('/');
    let first = parts.next()?;
    let second = parts.next();
    let third = parts.next();
    if parts.next().is_some() {
        return None;
    }
    match (first, second, third) {
        ("notify", None, None) => Some(JobsTopic::Notify),
        ("notify-next", None, None) => Some(JobsTopic::NotifyNext),
        ("get", Some(answer), None) => Some(JobsTopic::GetPending(reply(answer)?)),
        (job_id, Some("get"), Some(answer)) if validate_job_id(job_id).is_ok() => {
            Some(JobsTopic::Describe {
                job_id,
                reply: reply(answer)?,
            })
        }
        (job_id, Some("update"), Some(answer)) if validate_job_id(job_id).is_ok() => {
            Some(JobsTopic::Update {
                job_id,
                reply: reply(answer)?,
            })
        }
        _ => None,
    }
}

/// A JSON string's raw text between the quotes, escapes not yet decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(transparent)]
pub struct JsonStr<'a>(#[serde(borrow)] pub &'a str);

/// A JSON string escape that does not decode, or a short output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnescapeError {
    /// A bad `\` sequence or an unpaired surrogate.
    InvalidEscape,
    /// The output buffer is too small; `required` bytes are needed.
    BufferTooSmall {
        /// Bytes the decoded text needs.
        required: usize,
    },
}

impl core::fmt::Display for UnescapeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::InvalidEscape => f.write_str("invalid JSON string escape"),
            Self::BufferTooSmall { required } => {
                write!(f, "the decoded string needs {required} bytes")
            }
        }
    }
}

impl core::error::Error for UnescapeError {}

/// Decoded characters of a raw JSON string.
struct Unescaped<'a> {
    chars: core::str::Chars<'a>,
}

impl Unescaped<'_> {
    fn hex4(&mut self) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..4 {
            value = value * 16 + self.chars.next()?.to_digit(16)?;
        }
        Some(value)
    }
}

impl Iterator for Unescaped<'_> {
    type Item = Result<char, UnescapeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let c = self.chars.next()?;
        if c != '\\' {
            return Some(Ok(c));
        }
        let decoded = match self.chars.next() {
            Some('"') => Some('"'),
            Some('\\') => Some('\\'),
            Some('/') => Some('/'),
            Some('b') => Some('\u{8}'),
            Some('f') => Some('\u{c}'),
            Some('n') => Some('\n'),
            Some('r') => Some('\r'),
            Some('t') => Some('\t'),
            Some('u') => match self.hex4() {
                Some(high @ 0xD800..=0xDBFF) => {
                    let low = match (self.chars.next(), self.chars.next()) {
                        (Some('\\'), Some('u')) => self.hex4(),
                        _ => None,
                    };
                    low.filter(|low| (0xDC00..=0xDFFF).contains(low))
                        .and_then(|low| {
                            char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
                        })
                }
                Some(code) => char::from_u32(code),
                None => None,
            },
            _ => None,
        };
        Some(decoded.ok_or(UnescapeError::InvalidEscape))
    }
}

impl<'a> JsonStr<'a> {
    /// The raw text (identical to the value when it has no `\`).
    pub fn raw(&self) -> &'a str {
        self.0
    }

    fn chars(&self) -> Unescaped<'a> {
        Unescaped {
            chars: self.0.chars(),
        }
    }

    /// Decodes the escapes into `out` and returns the text.
    ///
    /// # Errors
    /// [`UnescapeError::InvalidEscape`]; [`UnescapeError::BufferTooSmall`]
    /// with the size needed.
    pub fn unescape<'o>(&self, out: &'o mut [u8]) -> Result<&'o str, UnescapeError> {
        let mut len = 0usize;
        for c in self.chars() {
            let c = c?;
            let end = len + c.len_utf8();
            if let Some(slot) = out.get_mut(len..end) {
                c.encode_utf8(slot);
            }
            len = end;
        }
        let text = out
            .get(..len)
            .ok_or(UnescapeError::BufferTooSmall { required: len })?;
        core::str::from_utf8(text).map_err(|_| UnescapeError::InvalidEscape)
    }

    /// True if the decoded text equals `text` (false on a bad escape).
    pub fn eq_str(&self, text: &str) -> bool {
        let mut expected = text.chars();
        for c in self.chars() {
            match (c, expected.next()) {
                (Ok(c), Some(e)) if c == e => {}
                _ => return false,
            }
        }
        expected.next().is_none()
    }
}

/// One job in a notify or get-pending list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSummary<'a> {
    /// The job id.
    #[serde(borrow)]
    pub job_id: &'a str,
    /// When it was queued (seconds since the epoch); upparat starts the
    /// oldest queued job first.
    #[serde(default)]
    pub queued_at: Option<u64>,
    /// When it was started.
    #[serde(default)]
    pub started_at: Option<u64>,
    /// When it was last updated.
    #[serde(default)]
    pub last_updated_at: Option<u64>,
    /// Version of the execution (incremented on each update).
    #[serde(default)]
    pub version_number: Option<u64>,
    /// Execution number of the job on this thing.
    #[serde(default)]
    pub execution_number: Option<u64>,
}

/// A list of job summaries.
pub type JobSummaries<'a> = Vec<JobSummary<'a>, MAX_JOB_SUMMARIES>;

/// The `jobs` object of a notify message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct NotifyJobs<'a> {
    /// `QUEUED` jobs.
    #[serde(rename = "QUEUED", default, borrow)]
    pub queued: JobSummaries<'a>,
    /// `IN_PROGRESS` jobs.
    #[serde(rename = "IN_PROGRESS", default, borrow)]
    pub in_progress: JobSummaries<'a>,
}

/// `jobs/notify`: the thing's pending jobs changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Notify<'a> {
    /// When the message was sent.
    #[serde(default)]
    pub timestamp: Option<u64>,
    /// The pending jobs (empty object when there are none).
    #[serde(default, borrow)]
    pub jobs: NotifyJobs<'a>,
}

/// `jobs/get/accepted`: the pending jobs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingJobs<'a> {
    /// Jobs in progress.
    #[serde(default, borrow)]
    pub in_progress_jobs: JobSummaries<'a>,
    /// Queued jobs.
    #[serde(default, borrow)]
    pub queued_jobs: JobSummaries<'a>,
    /// When the message was sent.
    #[serde(default)]
    pub timestamp: Option<u64>,
    /// The request's client token, if it had one.
    #[serde(default, borrow)]
    pub client_token: Option<JsonStr<'a>>,
}

/// `statusDetails`: name/value strings.
pub type StatusDetails<'a> = LinearMap<JsonStr<'a>, JsonStr<'a>, MAX_STATUS_DETAILS>;

/// The value of `name` in `details`.
pub fn status_detail<'a>(details: &StatusDetails<'a>, name: &str) -> Option<JsonStr<'a>> {
    details
        .iter()
        .find(|(key, _)| key.eq_str(name))
        .map(|(_, value)| *value)
}

/// The job document upparat expects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct JobDocument<'a> {
    /// The update's URL (a presigned S3 link).
    #[serde(borrow)]
    pub file: JsonStr<'a>,
    /// The version it installs (compared with the version hook's output).
    #[serde(borrow)]
    pub version: JsonStr<'a>,
    /// Passed to the version hook as an argument.
    #[serde(default, borrow)]
    pub meta: Option<JsonStr<'a>>,
    /// Skip the version check.
    #[serde(default)]
    pub force: bool,
}

/// A job execution (`execution` of a describe reply).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecution<'a> {
    /// The job id.
    #[serde(borrow)]
    pub job_id: &'a str,
    /// Its status.
    pub status: JobStatus,
    /// The last `statusDetails` sent (upparat reads `state`).
    #[serde(default, borrow)]
    pub status_details: Option<StatusDetails<'a>>,
    /// The thing.
    #[serde(default, borrow)]
    pub thing_name: Option<&'a str>,
    /// When it was queued.
    #[serde(default)]
    pub queued_at: Option<u64>,
    /// When it was started.
    #[serde(default)]
    pub started_at: Option<u64>,
    /// When it was last updated.
    #[serde(default)]
    pub last_updated_at: Option<u64>,
    /// Version of the execution.
    #[serde(default)]
    pub version_number: Option<u64>,
    /// Execution number.
    #[serde(default)]
    pub execution_number: Option<u64>,
    /// Seconds left before the execution times out.
    #[serde(default)]
    pub approximate_seconds_before_timed_out: Option<u64>,
    /// The job document (requested by default).
    #[serde(default, borrow)]
    pub job_document: Option<JobDocument<'a>>,
}

impl<'a> JobExecution<'a> {
    /// `statusDetails.state`, upparat's internal step.
    pub fn state(&self) -> Option<JsonStr<'a>> {
        self.status_details
            .as_ref()
            .and_then(|details| status_detail(details, "state"))
    }
}

/// `jobs/J/get/accepted`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeAccepted<'a> {
    /// The execution.
    #[serde(default, borrow)]
    pub execution: Option<JobExecution<'a>>,
    /// When the message was sent.
    #[serde(default)]
    pub timestamp: Option<u64>,
    /// The request's client token, if it had one.
    #[serde(default, borrow)]
    pub client_token: Option<JsonStr<'a>>,
}

/// A job execution's state in update replies.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionState<'a> {
    /// Its status.
    pub status: JobStatus,
    /// Its status details.
    #[serde(default, borrow)]
    pub status_details: Option<StatusDetails<'a>>,
    /// Version of the execution.
    #[serde(default)]
    pub version_number: Option<u64>,
}

/// `jobs/J/update/accepted`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateAccepted<'a> {
    /// The new state, when `includeJobExecutionState` was asked.
    #[serde(default, borrow)]
    pub execution_state: Option<ExecutionState<'a>>,
    /// When the message was sent.
    #[serde(default)]
    pub timestamp: Option<u64>,
    /// The request's client token, if it had one.
    #[serde(default, borrow)]
    pub client_token: Option<JsonStr<'a>>,
}

/// Any `.../rejected` reply.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejected<'a> {
    /// `InvalidTopic`, `InvalidJson`, `InvalidRequest`, `InvalidStateTransition`,
    /// `ResourceNotFound`, `VersionMismatch`, `InternalError`,
    /// `RequestThrottled`, `TerminalStateReached`.
    #[serde(borrow)]
    pub code: &'a str,
    /// Human-readable reason (upparat logs it).
    #[serde(default, borrow)]
    pub message: Option<JsonStr<'a>>,
    /// The request's client token, if it had one.
    #[serde(default, borrow)]
    pub client_token: Option<JsonStr<'a>>,
    /// When the message was sent.
    #[serde(default)]
    pub timestamp: Option<u64>,
    /// The execution's state (`VersionMismatch`, `InvalidStateTransition`).
    #[serde(default, borrow)]
    pub execution_state: Option<ExecutionState<'a>>,
}

/// Why a jobs payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobsParseError {
    /// Not JSON of the expected shape, a required key missing, or more
    /// entries than a fixed capacity ([`MAX_JOB_SUMMARIES`] ...).
    Invalid,
    /// Something other than blanks after the JSON value.
    TrailingBytes,
}

impl core::fmt::Display for JobsParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Invalid => f.write_str("invalid AWS IoT Jobs message"),
            Self::TrailingBytes => f.write_str("bytes after the AWS IoT Jobs message"),
        }
    }
}

impl core::error::Error for JobsParseError {}

fn parse<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, JobsParseError> {
    // `from_slice` itself refuses anything but blanks after the value.
    match serde_json_core::from_slice::<T>(payload) {
        Ok((value, _)) => Ok(value),
        Err(serde_json_core::de::Error::TrailingCharacters) => Err(JobsParseError::TrailingBytes),
        Err(_) => Err(JobsParseError::Invalid),
    }
}

impl<'a> Notify<'a> {
    /// Parses a `jobs/notify` payload.
    ///
    /// # Errors
    /// [`JobsParseError`].
    pub fn parse(payload: &'a [u8]) -> Result<Self, JobsParseError> {
        parse(payload)
    }
}

impl<'a> PendingJobs<'a> {
    /// Parses a `jobs/get/accepted` payload.
    ///
    /// # Errors
    /// [`JobsParseError`].
    pub fn parse(payload: &'a [u8]) -> Result<Self, JobsParseError> {
        parse(payload)
    }
}

impl<'a> DescribeAccepted<'a> {
    /// Parses a `jobs/J/get/accepted` payload.
    ///
    /// # Errors
    /// [`JobsParseError`].
    pub fn parse(payload: &'a [u8]) -> Result<Self, JobsParseError> {
        parse(payload)
    }
}

impl<'a> UpdateAccepted<'a> {
    /// Parses a `jobs/J/update/accepted` payload.
    ///
    /// # Errors
    /// [`JobsParseError`].
    pub fn parse(payload: &'a [u8]) -> Result<Self, JobsParseError> {
        parse(payload)
    }
}

impl<'a> Rejected<'a> {
    /// Parses any `.../rejected` payload.
    ///
    /// # Errors
    /// [`JobsParseError`].
    pub fn parse(payload: &'a [u8]) -> Result<Self, JobsParseError> {
        parse(payload)
    }
}

/// Which job upparat works on, given the pending lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection<'a> {
    /// No job with the prefix.
    Nothing,
    /// Resume the one job in progress.
    InProgress(&'a str),
    /// Start the oldest queued job (smallest `queuedAt`, first on ties).
    Queued(&'a str),
    /// More than one job with the prefix is in progress: upparat fails
    /// them all (`FAILED`, [`state::ERROR_MULTIPLE_IN_PROGRESS`]).
    MultipleInProgress,
}

/// upparat's job choice (`select_job.py`) among jobs starting with
/// `prefix`.
pub fn select_job<'a>(
    in_progress: &[JobSummary<'a>],
    queued: &[JobSummary<'a>],
    prefix: &str,
) -> Selection<'a> {
    let mut running = in_progress
        .iter()
        .filter(|job| has_job_prefix(job.job_id, prefix));
    if let Some(first) = running.next() {
        return if running.next().is_some() {
            Selection::MultipleInProgress
        } else {
            Selection::InProgress(first.job_id)
        };
    }
    // Python's sorted() is stable: the first of equal `queuedAt` wins. A
    // missing `queuedAt` (never sent by AWS) sorts first, as upparat would
    // fail on it.
    let oldest = queued
        .iter()
        .filter(|job| has_job_prefix(job.job_id, prefix))
        .fold(None::<&JobSummary<'a>>, |best, job| match best {
            Some(best) if best.queued_at <= job.queued_at => Some(best),
            _ => Some(job),
        });
    oldest.map_or(Selection::Nothing, |job| Selection::Queued(job.job_id))
}

/// An UpdateJobExecution request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateRequest<'a> {
    /// The new status (upparat: `IN_PROGRESS`, `SUCCEEDED`, `FAILED`).
    pub status: JobStatus,
    /// `statusDetails.state`, one of [`state`].
    pub state: &'a str,
    /// `statusDetails.message`; upparat sends `none` when it has none.
    pub message: Option<&'a str>,
    /// `expectedVersion` (upparat does not send it).
    pub expected_version: Option<u64>,
    /// `clientToken` (upparat does not send it).
    pub client_token: Option<&'a str>,
}

impl<'a> UpdateRequest<'a> {
    /// The request upparat sends: status and state, message `none`.
    pub const fn new(status: JobStatus, state: &'a str) -> Self {
        Self {
            status,
            state,
            message: None,
            expected_version: None,
            client_token: None,
        }
    }
}

/// Writes an update payload:
/// `{"status":S,"statusDetails":{"state":X,"message":M}}`, then
/// `"expectedVersion"` and `"clientToken"` when set. upparat's Python
/// `json.dumps` adds blanks after `:` and `,` and escapes non-ASCII; the
/// JSON values are the same.
///
/// # Errors
/// [`WriteError::BufferTooSmall`] with the size needed.
pub fn write_update(request: &UpdateRequest<'_>, out: &mut [u8]) -> Result<usize, WriteError> {
    let mut writer = JsonWriter::new(out);
    writer.raw("{\"status\":");
    writer.string(request.status.as_str());
    writer.raw(",\"statusDetails\":{\"state\":");
    writer.string(request.state);
    writer.raw(",\"message\":");
    writer.string(request.message.unwrap_or("none"));
    writer.raw("}");
    if let Some(version) = request.expected_version {
        writer.raw(",\"expectedVersion\":");
        let mut digits = String::<20>::new();
        let _ = core::fmt::Write::write_fmt(&mut digits, format_args!("{version}"));
        writer.raw(&digits);
    }
    if let Some(token) = request.client_token {
        writer.raw(",\"clientToken\":");
        writer.string(token);
    }
    writer.raw("}");
    writer.finish()
}

/// Writes a get / describe request payload: `{}` or
/// `{"clientToken":"..."}`. upparat sends [`UPPARAT_GET_PAYLOAD`] instead.
///
/// # Errors
/// [`WriteError::BufferTooSmall`] with the size needed.
pub fn write_get_request(client_token: Option<&str>, out: &mut [u8]) -> Result<usize, WriteError> {
    let mut writer = JsonWriter::new(out);
    writer.raw("{");
    if let Some(token) = client_token {
        writer.raw("\"clientToken\":");
        writer.string(token);
    }
    writer.raw("}");
    writer.finish()
}

/// upparat's `download_progress` message: `{"downloaded_bytes": N}`
/// (Python `json.dumps`, with its blank).
pub fn download_progress_message(downloaded_bytes: u64) -> String<48> {
    let mut message = String::new();
    let _ = core::fmt::Write::write_fmt(
        &mut message,
        format_args!("{{\"downloaded_bytes\": {downloaded_bytes}}}"),
    );
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const THING: &str = "MyThing";

    #[test]
    fn builds_topics() {
        assert_eq!(
            notify_topic(THING).unwrap(),
            "$aws/things/MyThing/jobs/notify"
        );
        assert_eq!(
            get_pending_topic(THING).unwrap(),
            "$aws/things/MyThing/jobs/get"
        );
        assert_eq!(
            get_pending_reply_topic(THING, Reply::Any).unwrap(),
            "$aws/things/MyThing/jobs/get/+"
        );
        assert_eq!(
            describe_reply_topic(THING, "upparat_1", Reply::Accepted).unwrap(),
            "$aws/things/MyThing/jobs/upparat_1/get/accepted"
        );
        assert_eq!(
            update_topic(THING, "upparat_1").unwrap(),
            "$aws/things/MyThing/jobs/upparat_1/update"
        );
        assert_eq!(
            update_reply_topic(THING, "j", Reply::Rejected).unwrap(),
            "$aws/things/MyThing/jobs/j/update/rejected"
        );
        let longest_thing = "t".repeat(MAX_THING_NAME_LEN);
        let longest_job = "j".repeat(MAX_JOB_ID_LEN);
        let topic = update_reply_topic(&longest_thing, &longest_job, Reply::Accepted).unwrap();
        assert_eq!(topic.len(), 226);
    }

    #[test]
    fn refuses_bad_names() {
        for thing in ["", "a/b", "a+", "a#", "é", &"t".repeat(129)] {
            assert_eq!(
                notify_topic(thing),
                Err(TopicError::InvalidThingName),
                "{thing}"
            );
        }
        assert!(notify_topic("a:b_c-D9").is_ok());
        for job in ["", "a:b", "a/b", "+", &"j".repeat(65)] {
            assert_eq!(
                describe_topic(THING, job),
                Err(TopicError::InvalidJobId),
                "{job}"
            );
        }
    }

    #[test]
    fn classifies_topics() {
        let cases = [
            ("$aws/things/MyThing/jobs/notify", Some(JobsTopic::Notify)),
            (
                "$aws/things/MyThing/jobs/notify-next",
                Some(JobsTopic::NotifyNext),
            ),
            (
                "$aws/things/MyThing/jobs/get/accepted",
                Some(JobsTopic::GetPending(Reply::Accepted)),
            ),
            (
                "$aws/things/MyThing/jobs/get/rejected",
                Some(JobsTopic::GetPending(Reply::Rejected)),
            ),
            (
                "$aws/things/MyThing/jobs/upparat_1/get/accepted",
                Some(JobsTopic::Describe {
                    job_id: "upparat_1",
                    reply: Reply::Accepted,
                }),
            ),
            (
                "$aws/things/MyThing/jobs/upparat_1/update/rejected",
                Some(JobsTopic::Update {
                    job_id: "upparat_1",
                    reply: Reply::Rejected,
                }),
            ),
            // A job called `get` is still a describe reply.
            (
                "$aws/things/MyThing/jobs/get/get/accepted",
                Some(JobsTopic::Describe {
                    job_id: "get",
                    reply: Reply::Accepted,
                }),
            ),
            ("$aws/things/MyThing/jobs/get", None),
            ("$aws/things/MyThing/jobs/get/+", None),
            ("$aws/things/MyThing/jobs/j/update", None),
            ("$aws/things/MyThing/jobs/j/update/accepted/x", None),
            ("$aws/things/MyThingX/jobs/notify", None),
            ("$aws/things/Other/jobs/notify", None),
            ("$aws/things/MyThing/jobs/", None),
            ("other/topic", None),
        ];
        for (topic, expected) in cases {
            assert_eq!(classify(THING, topic), expected, "{topic}");
        }
    }

    /// The notify example of the AWS IoT developer guide ("Jobs device
    /// MQTT API", `NotifyJobs`).
    #[test]
    fn parses_notify() {
        let payload = br#"{
            "timestamp": 1517016948,
            "jobs": {
                "QUEUED": [{
                    "jobId": "job1",
                    "queuedAt": 1517016947,
                    "lastUpdatedAt": 1517016947,
                    "executionNumber": 1,
                    "versionNumber": 1
                }]
            }
        }"#;
        let notify = Notify::parse(payload).unwrap();
        assert_eq!(notify.timestamp, Some(1517016948));
        assert_eq!(notify.jobs.queued.len(), 1);
        assert_eq!(notify.jobs.queued[0].job_id, "job1");
        assert_eq!(notify.jobs.queued[0].queued_at, Some(1517016947));
        assert!(notify.jobs.in_progress.is_empty());
        // No pending job: AWS sends an empty `jobs` object.
        let empty = Notify::parse(br#"{"timestamp":1,"jobs":{}}"#).unwrap();
        assert!(empty.jobs.queued.is_empty());
    }

    /// `GetPendingJobExecutions` accepted, from the AWS developer guide.
    #[test]
    fn parses_pending_jobs_and_selects_like_upparat() {
        let payload = br#"{
            "timestamp" : 1489096425069,
            "inProgressJobs" : [ ],
            "queuedJobs" : [ {
                "jobId" : "upparat_2",
                "queuedAt" : 1489096123309,
                "lastUpdatedAt" : 1489096123309,
                "versionNumber" : 1,
                "executionNumber" : 1
            }, {
                "jobId" : "other_1",
                "queuedAt" : 1,
                "versionNumber" : 1,
                "executionNumber" : 1
            }, {
                "jobId" : "upparat_1",
                "queuedAt" : 1489096123308,
                "versionNumber" : 1,
                "executionNumber" : 1
            } ],
            "clientToken" : "client-001"
        }"#;
        let pending = PendingJobs::parse(payload).unwrap();
        assert_eq!(pending.queued_jobs.len(), 3);
        assert!(pending.client_token.unwrap().eq_str("client-001"));
        assert_eq!(
            select_job(
                &pending.in_progress_jobs,
                &pending.queued_jobs,
                UPPARAT_JOB_PREFIX
            ),
            Selection::Queued("upparat_1")
        );
        assert_eq!(
            select_job(&pending.in_progress_jobs, &pending.queued_jobs, "none_"),
            Selection::Nothing
        );
        let running = [
            JobSummary {
                job_id: "upparat_a",
                ..JobSummary::default()
            },
            JobSummary {
                job_id: "other",
                ..JobSummary::default()
            },
        ];
        assert_eq!(
            select_job(&running, &pending.queued_jobs, UPPARAT_JOB_PREFIX),
            Selection::InProgress("upparat_a")
        );
        let two = [running[0], running[0]];
        assert_eq!(
            select_job(&two, &[], UPPARAT_JOB_PREFIX),
            Selection::MultipleInProgress
        );
    }

    /// `DescribeJobExecution` accepted with upparat's job document (as
    /// `misc/scripts/upparat_create_job.py` creates it, URL presigned).
    #[test]
    fn parses_describe_accepted() {
        let payload = br#"{
            "clientToken": "client-001",
            "timestamp": 1489097434407,
            "execution": {
                "approximateSecondsBeforeTimedOut": 88,
                "jobId": "upparat_022",
                "status": "IN_PROGRESS",
                "statusDetails": {"state": "reboot_start", "message": "none"},
                "thingName": "MyThing",
                "queuedAt": 1489097374841,
                "lastUpdatedAt": 1489097374841,
                "versionNumber": 3,
                "executionNumber": 1,
                "jobDocument": {
                    "action": "upparat-update",
                    "file": "https:\/\/bucket.s3.amazonaws.com\/fw.bin?X-Amz-Signature=ab\u0026c=1",
                    "version": "1.2.3",
                    "force": false,
                    "nested": {"a": [1, 2.5, null, true]}
                }
            }
        }"#;
        let reply = DescribeAccepted::parse(payload).unwrap();
        let execution = reply.execution.unwrap();
        assert_eq!(execution.job_id, "upparat_022");
        assert_eq!(execution.status, JobStatus::InProgress);
        assert!(execution.state().unwrap().eq_str(state::REBOOT_START));
        assert_eq!(execution.version_number, Some(3));
        let document = execution.job_document.unwrap();
        let mut url = [0u8; 128];
        assert_eq!(
            document.file.unescape(&mut url).unwrap(),
            "https://bucket.s3.amazonaws.com/fw.bin?X-Amz-Signature=ab&c=1"
        );
        assert_eq!(document.version.raw(), "1.2.3");
        assert_eq!(document.meta, None);
        assert!(!document.force);
        assert!(matches!(
            document.file.unescape(&mut [0u8; 8]),
            Err(UnescapeError::BufferTooSmall { required: 61 })
        ));
    }

    #[test]
    fn refuses_documents_upparat_cannot_use() {
        let no_version =
            br#"{"execution":{"jobId":"j","status":"QUEUED","jobDocument":{"file":"u"}}}"#;
        assert_eq!(
            DescribeAccepted::parse(no_version),
            Err(JobsParseError::Invalid)
        );
        let unknown_status = br#"{"execution":{"jobId":"j","status":"PAUSED"}}"#;
        assert_eq!(
            DescribeAccepted::parse(unknown_status),
            Err(JobsParseError::Invalid)
        );
        assert_eq!(Notify::parse(b"{} x"), Err(JobsParseError::TrailingBytes));
        assert_eq!(Notify::parse(b"{\"jobs\":"), Err(JobsParseError::Invalid));
        assert_eq!(Notify::parse(b""), Err(JobsParseError::Invalid));
        let mut many = std::string::String::from(r#"{"jobs":{"QUEUED":["#);
        for index in 0..=MAX_JOB_SUMMARIES {
            if index > 0 {
                many.push(',');
            }
            many.push_str(r#"{"jobId":"j"}"#);
        }
        many.push_str("]}}");
        assert_eq!(Notify::parse(many.as_bytes()), Err(JobsParseError::Invalid));
    }

    #[test]
    fn parses_rejected_and_update_accepted() {
        let rejected = Rejected::parse(
            br#"{"clientToken":"c","timestamp":1,"code":"VersionMismatch","message":"The \"expectedVersion\" is 2","executionState":{"status":"IN_PROGRESS","statusDetails":{"state":"download_start"},"versionNumber":2}}"#,
        )
        .unwrap();
        assert_eq!(rejected.code, "VersionMismatch");
        assert!(rejected
            .message
            .unwrap()
            .eq_str("The \"expectedVersion\" is 2"));
        assert_eq!(rejected.execution_state.unwrap().version_number, Some(2));
        let not_found = Rejected::parse(
            br#"{"code":"ResourceNotFound","message":"Job execution not found","timestamp":2}"#,
        )
        .unwrap();
        assert_eq!(not_found.code, "ResourceNotFound");
        let accepted = UpdateAccepted::parse(
            br#"{"executionState":{"status":"SUCCEEDED","statusDetails":{"state":"complete_ready","message":"none"},"versionNumber":5},"timestamp":3}"#,
        )
        .unwrap();
        assert_eq!(
            accepted.execution_state.unwrap().status,
            JobStatus::Succeeded
        );
        assert_eq!(UpdateAccepted::parse(b"{}").unwrap().execution_state, None);
    }

    #[test]
    fn writes_upparat_updates() {
        let mut out = [0u8; 256];
        let request = UpdateRequest::new(JobStatus::InProgress, state::DOWNLOAD_START);
        let len = write_update(&request, &mut out).unwrap();
        assert_eq!(
            core::str::from_utf8(&out[..len]).unwrap(),
            r#"{"status":"IN_PROGRESS","statusDetails":{"state":"download_start","message":"none"}}"#
        );
        let progress = download_progress_message(1024);
        assert_eq!(progress, r#"{"downloaded_bytes": 1024}"#);
        let request = UpdateRequest {
            message: Some(&progress),
            expected_version: Some(7),
            client_token: Some("tok"),
            ..UpdateRequest::new(JobStatus::InProgress, state::DOWNLOAD_PROGRESS)
        };
        let len = write_update(&request, &mut out).unwrap();
        assert_eq!(
            core::str::from_utf8(&out[..len]).unwrap(),
            r#"{"status":"IN_PROGRESS","statusDetails":{"state":"download_progress","message":"{\"downloaded_bytes\": 1024}"},"expectedVersion":7,"clientToken":"tok"}"#
        );
        // The written update reads back as the same status details.
        let written: ExecutionState<'_> = parse(&out[..len]).unwrap();
        let details = written.status_details.unwrap();
        assert!(status_detail(&details, "message")
            .unwrap()
            .eq_str(&progress));
        assert!(matches!(
            write_update(&request, &mut [0u8; 10]),
            Err(WriteError::BufferTooSmall { required }) if required == len
        ));
        let mut small = [0u8; 32];
        let len = write_get_request(None, &mut small).unwrap();
        assert_eq!(&small[..len], b"{}");
        let len = write_get_request(Some("c-1"), &mut small).unwrap();
        assert_eq!(&small[..len], br#"{"clientToken":"c-1"}"#);
    }

    #[test]
    fn unescapes_and_compares() {
        let text = JsonStr(r"a\u00e9\ud83d\ude00\n\/");
        let mut out = [0u8; 16];
        assert_eq!(text.unescape(&mut out).unwrap(), "a\u{e9}\u{1f600}\n/");
        assert!(text.eq_str("a\u{e9}\u{1f600}\n/"));
        assert!(!text.eq_str("a"));
        for bad in [r"\x", r"\u12", r"\ud83d", r"\ud83d\u0041", "\\"] {
            assert_eq!(
                JsonStr(bad).unescape(&mut out),
                Err(UnescapeError::InvalidEscape),
                "{bad}"
            );
            assert!(!JsonStr(bad).eq_str("x"));
        }
    }
}
