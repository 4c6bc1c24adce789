//! The agent's vocabulary: time, commands, actions, outcomes, settings.

use crate::artifact::verify::VerifyKey;
use crate::board::PartNumber;

/// A point on the host's monotonic clock, in milliseconds from any epoch.
/// The core never reads a clock: every input carries `now`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// Milliseconds after the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `ms` milliseconds later (saturating).
    pub const fn after(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Milliseconds from `self` until `later` (0 if `later` has passed).
    pub const fn until(self, later: Self) -> u64 {
        later.0.saturating_sub(self.0)
    }
}

/// Names one action the host runs; its completion carries the same id.
/// Completions with an id the agent no longer waits for are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ActionId(pub u32);

/// The state a state script belongs to (`<Group>_<Phase>_NN[_name]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ScriptGroup {
    Idle,
    Sync,
    Download,
    ArtifactInstall,
    ArtifactReboot,
    ArtifactCommit,
    ArtifactRollback,
    ArtifactRollbackReboot,
    ArtifactFailure,
}

impl ScriptGroup {
    /// The name used in script file names.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Sync => "Sync",
            Self::Download => "Download",
            Self::ArtifactInstall => "ArtifactInstall",
            Self::ArtifactReboot => "ArtifactReboot",
            Self::ArtifactCommit => "ArtifactCommit",
            Self::ArtifactRollback => "ArtifactRollback",
            Self::ArtifactRollbackReboot => "ArtifactRollbackReboot",
            Self::ArtifactFailure => "ArtifactFailure",
        }
    }

    /// `Idle`, `Sync` and `Download` scripts live on the root filesystem
    /// (`/etc/mender/scripts`); the others come with the artifact.
    pub const fn in_rootfs_dir(self) -> bool {
        matches!(self, Self::Idle | Self::Sync | Self::Download)
    }
}

/// Enter, Leave or Error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ScriptPhase {
    Enter,
    Leave,
    Error,
}

impl ScriptPhase {
    /// The name used in script file names.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Enter => "Enter",
            Self::Leave => "Leave",
            Self::Error => "Error",
        }
    }
}

/// What the host asks of the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Standalone: install the artifact at `uri` (whatever the host's
    /// [`Action::OpenArtifact`] understands: a path, `-`, an `http(s)://` URL).
    Install {
        /// Where the artifact is.
        uri: &'a str,
    },
    /// Standalone: commit the installed update.
    Commit,
    /// Standalone: roll the installed update back.
    Rollback,
    /// Managed: check for an update now (`check-update`, SIGUSR1).
    CheckUpdate,
    /// Managed: send the inventory now (`send-inventory`, SIGUSR2).
    SendInventory,
    /// Managed: authenticate again now (D-Bus `FetchJwtToken`): the token
    /// is dropped and the inventory goes out first thing, which
    /// authenticates. Taken only between deployments (during one, the
    /// token in use is renewed on its own at a 401).
    FetchJwt,
    /// Stop at the next safe point ([`Action::Exit`] follows). The
    /// persisted record says where to go on after the next start.
    Stop,
}

/// Why a command was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The command does not exist in this mode (install in managed mode...).
    WrongMode,
    /// Another command is still running.
    Busy,
    /// The URI is longer than [`super::MAX_URI_LEN`].
    UriTooLong,
}

impl core::fmt::Display for CommandError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::WrongMode => "this command does not exist in this mode",
            Self::Busy => "another command is still running",
            Self::UriTooLong => "the artifact location is too long",
        })
    }
}

impl core::error::Error for CommandError {}

/// How an action the host ran ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// It worked (a download: the stream ended).
    Done,
    /// It failed for good, with the host's description.
    Failed(&'a str),
    /// It failed but may work later (a dropped connection, a timeout).
    Transient(&'a str),
}

/// The slots as the host found them ([`Action::PrepareSlots`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slots {
    /// The running slot.
    pub active: PartNumber,
    /// The slot an update goes to.
    pub inactive: PartNumber,
    /// `active` was proven by the mounted root device (not only read from
    /// the boot environment).
    pub proven_by_root_device: bool,
}

/// HTTP methods of the device API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
}

impl Method {
    /// The method token.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
        }
    }
}

/// One device-API request, ready to send.
///
/// The host adds `Authorization: Bearer <bearer>`, `Content-Type:
/// application/json` when `body` is not empty, and, when `sign_body` is
/// set, `X-MEN-Signature: <base64 signature of body by the device key>`.
/// [`Request::write_head`] frames it for hosts with raw sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The server's base URL (`https://host[:port]`).
    pub server: &'a str,
    /// Path and query (`/api/devices/...`).
    pub path: &'a str,
    /// The bearer token: the JWT, or the tenant token for authentication.
    pub bearer: &'a str,
    /// Sign the body with the device key (authentication requests).
    pub sign_body: bool,
    /// The body (JSON), may be empty.
    pub body: &'a [u8],
}

/// A deployment-log level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum LogLevel {
    Info,
    Warning,
    Error,
}

impl LogLevel {
    /// The name the server expects.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

/// How a standalone command ended (see [`Action::Completed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Installed; the new slot boots once on the next reboot.
    Installed,
    /// The artifact had an empty payload: only the provides changed.
    Updated,
    /// The update was committed (or an interrupted commit was finished).
    Committed,
    /// The update was rolled back (or an interrupted rollback finished).
    RolledBack,
    /// There was nothing to commit or roll back.
    Nothing,
    /// The command failed; the message says why.
    Failed,
}

/// What the host must do next, from [`super::Agent::poll`].
///
/// Actions with an `id` wait for their completion (`handle_*` with the same
/// id); the others are done once returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Store `record` atomically (it replaces the previous one), then
    /// `handle_done`.
    Persist {
        /// Completion id.
        id: ActionId,
        /// The encoded [`crate::store::StateRecord`].
        record: &'a [u8],
    },
    /// Store the Update Control Map pool atomically (its own file, read
    /// back at start with [`super::Agent::load_control_maps`]), then
    /// `handle_done`; a failure is logged, the agent goes on.
    PersistControlMaps {
        /// Completion id.
        id: ActionId,
        /// The encoded [`super::control_map::Pool`].
        record: &'a [u8],
    },
    /// Run the state scripts of `group`/`phase`, then `handle_done`
    /// (`Failed` with the reason when one failed).
    RunScripts {
        /// Completion id.
        id: ActionId,
        /// The script state.
        group: ScriptGroup,
        /// Its phase.
        phase: ScriptPhase,
        /// The agent ignores a failure (error and failure states).
        ignore_errors: bool,
    },
    /// Find the running and the inactive slot, then `handle_slots`. With
    /// `install`, also open the inactive slot for writing and empty the
    /// artifact script directory: artifact bytes follow.
    PrepareSlots {
        /// Completion id.
        id: ActionId,
        /// An install follows.
        install: bool,
    },
    /// Open the artifact stream at byte `from` (a resumed download: HTTP
    /// `Range`), then `handle_done`: `Done` once open, `Transient` when it
    /// may work later (the agent retries with the reference's backoff),
    /// `Failed` when it cannot. The host keeps the stream for
    /// [`Action::ReadArtifact`] and drops it on any other action but
    /// `Request`, `GatherIdentity` (a re-authentication) and the
    /// deployment-log ones. `uri` is also [`super::Agent::artifact_uri`]
    /// until the download ended: the host need not copy it.
    OpenArtifact {
        /// Completion id.
        id: ActionId,
        /// The location.
        uri: &'a str,
        /// First byte wanted.
        from: u64,
    },
    /// Feed the open stream through `handle_artifact` until it returns
    /// something other than [`Feed::Continue`] (then stop reading), or the
    /// stream ends (`handle_done` with `Done`) or breaks (`Transient`: the
    /// agent reopens it where it stopped; `Failed`).
    ///
    /// [`Feed::Complete`] and [`Feed::Stop`] end the action: no
    /// `handle_done` follows them (the agent has moved on and ignores one
    /// with this id). `handle_done` completes it only when the agent still
    /// wanted bytes ([`super::Agent::wants_artifact`]) as the stream ended
    /// or broke.
    ReadArtifact {
        /// Completion id.
        id: ActionId,
    },
    /// Make `part` the trial slot (one boot), then `handle_done`.
    SetTrial {
        /// Completion id.
        id: ActionId,
        /// The trial slot.
        part: PartNumber,
    },
    /// Make the running trial permanent (`upgrade_available=0`), then
    /// `handle_done`.
    CommitBoot {
        /// Completion id.
        id: ActionId,
    },
    /// Boot `part` again, permanently, then `handle_done`.
    RollBack {
        /// Completion id.
        id: ActionId,
        /// The slot to boot.
        part: PartNumber,
    },
    /// Reboot the device; `handle_done` with `Failed` if it cannot.
    /// Otherwise the agent waits to be stopped.
    Reboot {
        /// Completion id.
        id: ActionId,
    },
    /// Run the identity script, then `handle_data` with its output
    /// (`key=value` lines).
    GatherIdentity {
        /// Completion id.
        id: ActionId,
    },
    /// Run the inventory scripts, then `handle_data` with their joined
    /// output (`key=value` lines).
    GatherInventory {
        /// Completion id.
        id: ActionId,
    },
    /// Send the request, then `handle_response` with the status and body,
    /// or `handle_done` with `Transient` for a transport error.
    Request {
        /// Completion id.
        id: ActionId,
        /// The request.
        request: Request<'a>,
    },
    /// Append a line to the deployment log (with the host's wall-clock
    /// time, kept across reboots).
    DeploymentLog {
        /// Level.
        level: LogLevel,
        /// Text.
        message: &'a str,
    },
    /// Start a new, empty deployment log.
    ClearDeploymentLog,
    /// Read the deployment log, then `handle_data` with its lines
    /// (`<RFC 3339 time> <level> <message>`).
    ReadDeploymentLog {
        /// Completion id.
        id: ActionId,
    },
    /// A standalone command ended.
    Completed {
        /// How.
        completion: Completion,
        /// For the user (empty when there is nothing to say).
        message: &'a str,
    },
    /// Run the update module of the installed payload as
    /// `<module> <state> <tree>` (both modes; see
    /// [`super::modules`]), then [`super::Agent::handle_module`] with its
    /// trimmed stdout (query states) or why it failed (non-zero exit, no
    /// module, timeout).
    ModuleCall {
        /// Completion id.
        id: ActionId,
        /// The call.
        state: ModuleState,
    },
    /// Hand-off mode ([`super::handoff`]): look at the update lock, download
    /// the artifact into its file, hand it to the installer, or remove the
    /// lock; see [`super::HandOffOp`] for what follows each.
    HandOff {
        /// Completion id.
        id: ActionId,
        /// What to do.
        op: super::HandOffOp<'a>,
    },
    /// Jobs mode: run `hook` of the current job as upparat does:
    /// `<hook> <elapsed_s> <retry> <meta>`, plus for `install` the job's
    /// file, for `restart` `True` when `force` (else an empty argument).
    /// Each non-empty output line goes to
    /// [`super::Agent::handle_hook_output`]; the end to
    /// [`super::Agent::handle_hook`]. Stop it when
    /// [`super::Agent::job_cancelled`] turns true.
    Hook {
        /// Completion id.
        id: ActionId,
        /// Which hook.
        hook: super::Hook,
        /// Seconds since the first call of this hook for this step.
        elapsed_s: u64,
        /// Calls before this one that asked to retry (exit 3).
        retry: u32,
        /// The job document's `meta` (empty if none).
        meta: &'a str,
        /// The job id (its file is `<download location>/<job id>`).
        job_id: &'a str,
        /// The job document's `force`.
        force: bool,
    },
    /// Jobs mode: download `uri` into the job's file, resuming from the
    /// file's length (HTTP `Range`; a `416` there means complete). Report
    /// the bytes in the file with [`super::Agent::handle_job_progress`]
    /// as they arrive and the end with
    /// [`super::Agent::handle_job_download`]; stop when
    /// [`super::Agent::job_cancelled`] turns true.
    JobDownload {
        /// Completion id.
        id: ActionId,
        /// The pre-signed URL.
        uri: &'a str,
        /// The job id.
        job_id: &'a str,
        /// Look at the file's first 512 bytes first (the partial file's,
        /// or the stream's): a Mender Artifact (a tar whose first entry is
        /// `version`) ends the download at once with
        /// [`super::JobDownloadEnd::MenderArtifact`], its file removed.
        sniff: bool,
    },
    /// Jobs mode: a step otalite runs itself where no hook replaces it
    /// ([`super::Builtin`]; [`super::JobsSettings::mender_install`]).
    /// Lines and the end are answered as a hook's
    /// ([`super::Agent::handle_hook_output`], [`super::Agent::handle_hook`]);
    /// stop it when [`super::Agent::job_cancelled`] turns true.
    JobBuiltin {
        /// Completion id.
        id: ActionId,
        /// Which step.
        builtin: super::Builtin,
        /// The artifact's URL ([`super::Builtin::Install`]; empty otherwise).
        uri: &'a str,
        /// The job id.
        job_id: &'a str,
    },
    /// Jobs mode: remove the download files, all but `keep`'s. No
    /// completion.
    JobFiles {
        /// The job whose file stays.
        keep: Option<&'a str>,
    },
    /// The agent stopped (managed mode: after [`Command::Stop`], or on an
    /// error it cannot go on from). The host exits.
    Exit {
        /// An unrecoverable error (the message says which).
        failed: bool,
        /// Why.
        message: &'a str,
    },
}

/// What the host does with the rest of the artifact stream after
/// [`super::Agent::handle_artifact`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Everything was taken; feed more.
    Continue,
    /// The artifact is complete and verified; close the stream. The
    /// [`Action::ReadArtifact`] is over: no `handle_done` follows.
    Complete,
    /// The agent does not want more (refused, or stopping); close the
    /// stream. The [`Action::ReadArtifact`] is over: no `handle_done`
    /// follows.
    Stop,
}

/// Timing knobs, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// `UpdatePollIntervalSeconds`.
    pub update_poll: u64,
    /// `InventoryPollIntervalSeconds`.
    pub inventory_poll: u64,
    /// `RetryPollIntervalSeconds`.
    pub retry_poll: u64,
    /// `RetryPollCount` (0: the reference's default schedule).
    pub retry_poll_count: u32,
    /// One backoff unit (one minute in production).
    pub backoff_unit: u64,
    /// How long to wait to be stopped after asking for a reboot.
    pub reboot_wait: u64,
    /// `UpdateControlMapExpirationTimeSeconds` (default: twice the update
    /// poll interval).
    pub control_map_expiration: u64,
    /// `UpdateControlMapBootExpirationTimeSeconds` (default 600 s): maps
    /// restored at start expire this long after it.
    pub control_map_boot_expiration: u64,
}

impl Timing {
    /// From `mender.conf` (seconds there).
    pub fn from_config(config: &crate::config::MenderConfig) -> Self {
        let ms = |s: u32| u64::from(s).saturating_mul(1000);
        Self {
            update_poll: ms(config.update_poll_interval()),
            inventory_poll: ms(config.inventory_poll_interval()),
            retry_poll: ms(config.retry_poll_interval()),
            retry_poll_count: config.retry_poll_count.unwrap_or(0),
            backoff_unit: 60_000,
            reboot_wait: 600_000,
            control_map_expiration: ms(config.update_control_map_expiration()),
            control_map_boot_expiration: ms(config.update_control_map_boot_expiration()),
        }
    }

    /// Tries for the final (and the pre-commit) status report, by the
    /// reference's formula.
    pub fn report_attempts(&self) -> u32 {
        let secs = |ms: u64| u32::try_from(ms / 1000).unwrap_or(u32::MAX);
        super::policy::report_attempts(secs(self.update_poll), secs(self.retry_poll).max(1))
    }
}

/// The Mender server side of the managed mode.
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings<'b> {
    /// Base URLs, tried in order for authentication (`https://host`).
    pub servers: &'b [&'b str],
    /// `TenantToken` (may be empty).
    pub tenant_token: &'b str,
    /// The device key's public half, PEM.
    pub public_key_pem: &'b str,
    /// `mender_client_version` in the inventory.
    pub client_version: &'b str,
    /// Install deployments, or hand them to an installer program (the
    /// Mender Python client's flow, [`super::handoff`]).
    pub hand_off: super::HandOffRole,
}

/// Standalone (commands from a person or script) or managed (a server).
#[derive(Clone, Copy, Debug)]
pub enum Mode<'b> {
    /// `install`, `commit`, `rollback` commands.
    Standalone,
    /// Deployments from a Mender server.
    Managed(ServerSettings<'b>),
    /// Jobs from AWS IoT over MQTT, installed by hooks (upparat's
    /// contract, [`super::jobs`]).
    Jobs(super::JobsSettings<'b>),
}

/// What the agent needs to know about the device.
#[derive(Clone, Copy, Debug)]
pub struct AgentConfig<'b> {
    /// This device's type (`device_type` file).
    pub device_type: &'b str,
    /// Keys that may sign artifacts.
    pub keys: &'b [VerifyKey],
    /// Signatures are required (keys were configured, even if none loaded).
    pub signatures_required: bool,
    /// Timing.
    pub timing: Timing,
    /// The mode.
    pub mode: Mode<'b>,
}

/// Caller-owned memory of an agent; sizes are minimums.
pub struct AgentBuffers<'b> {
    /// Encoded state record: [`crate::store::MAX_RECORD_LEN`].
    pub record: &'b mut [u8],
    /// Request bodies (inventory, status, next, log): 16 KiB or more.
    pub request: &'b mut [u8],
    /// The authentication request body: 8 KiB.
    pub auth: &'b mut [u8],
    /// Artifact reader output: any size (64 KiB on Linux).
    pub output: &'b mut [u8],
    /// Decompression window: [`crate::artifact::WINDOW_LEN`].
    pub window: &'b mut [u8],
    /// Partition block: any size (1 MiB on Linux, the flash erase size on
    /// a microcontroller).
    pub block: &'b mut [u8],
    /// Read-back compare buffer: any size.
    pub compare: &'b mut [u8],
}

// -------------------------------------------------------------------
// Framing for hosts with raw sockets.

/// Why a request head could not be written ([`Request::write_head`],
/// [`write_download_head`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FramingError {
    /// The buffer is too small; `required` bytes are needed.
    BufferTooSmall {
        /// Bytes needed at least.
        required: usize,
    },
    /// A field holds a character a head cannot carry (a control
    /// character, a space in the path...).
    InvalidField,
    /// The request must be signed ([`Request::sign_body`]) and no
    /// signature was given.
    MissingSignature,
    /// The location is not an `http(s)://host[:port]/path` URL.
    InvalidUrl,
}

impl core::fmt::Display for FramingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BufferTooSmall { required } => {
                write!(f, "the request head needs a {required}-byte buffer")
            }
            Self::InvalidField => f.write_str("invalid character in a request head field"),
            Self::MissingSignature => f.write_str("the request must be signed (X-MEN-Signature)"),
            Self::InvalidUrl => f.write_str("not an http(s)://host[:port]/path URL"),
        }
    }
}

impl core::error::Error for FramingError {}

impl From<crate::protocol::http::RequestHeadError> for FramingError {
    fn from(error: crate::protocol::http::RequestHeadError) -> Self {
        use crate::protocol::http::RequestHeadError;
        match error {
            RequestHeadError::BufferTooSmall { required } => Self::BufferTooSmall { required },
            _ => Self::InvalidField,
        }
    }
}

/// `User-Agent` of the heads written here.
const USER_AGENT: &str = concat!("otalite/", env!("CARGO_PKG_VERSION"));

impl Request<'_> {
    /// Writes the whole HTTP/1.1 request head into `out` and returns its
    /// length; the body ([`Request::body`]) follows it on the connection.
    ///
    /// `host` is the `Host` value (`host[:port]` of [`Request::server`]:
    /// [`crate::protocol::http::HttpUrl::authority`]); `signature` the
    /// `X-MEN-Signature` value (base64 signature of the body by the device
    /// key), required when [`Request::sign_body`] is set and ignored
    /// otherwise. The head carries, in this order: `User-Agent`,
    /// `Connection: close` (one request per connection), `Authorization:
    /// Bearer <bearer>` (when the bearer is not empty), `Content-Type:
    /// application/json` (when there is a body), `X-MEN-Signature`, and
    /// `Content-Length` (when there is a body, and always for `POST`,
    /// `PUT` and `PATCH`).
    ///
    /// `out` also serves as scratch for the `Authorization` value: it
    /// needs the head's length plus `7 + bearer.len()` bytes (about 5 KiB
    /// with the longest JWT, [`super::MAX_JWT_LEN`]).
    ///
    /// # Errors
    /// [`FramingError::BufferTooSmall`] with the size `out` needs,
    /// [`FramingError::MissingSignature`], or
    /// [`FramingError::InvalidField`] (a control character in a field).
    pub fn write_head(
        &self,
        host: &str,
        signature: Option<&str>,
        out: &mut [u8],
    ) -> Result<usize, FramingError> {
        use crate::protocol::http::RequestHead;
        const BEARER: &[u8] = b"Bearer ";
        let signature = match (self.sign_body, signature) {
            (true, None) => return Err(FramingError::MissingSignature),
            (true, Some(signature)) => Some(signature),
            (false, _) => None,
        };
        let has_body = !self.body.is_empty();
        let content_length = if has_body || !matches!(self.method, Method::Get) {
            Some(self.body.len() as u64)
        } else {
            None
        };
        let scratch_len = if self.bearer.is_empty() {
            0
        } else {
            BEARER.len() + self.bearer.len()
        };
        let head = |headers: &[(&str, &str)], out: &mut [u8]| {
            let mut all: heapless::Vec<(&str, &str), 6> = heapless::Vec::new();
            let _ = all.push(("User-Agent", USER_AGENT));
            let _ = all.push(("Connection", "close"));
            for header in headers {
                let _ = all.push(*header);
            }
            if has_body {
                let _ = all.push(("Content-Type", "application/json"));
            }
            if let Some(signature) = signature {
                let _ = all.push(("X-MEN-Signature", signature));
            }
            RequestHead {
                method: self.method.as_str(),
                target: self.path,
                host,
                headers: &all,
                content_length,
            }
            .write(out)
        };
        // The size needed: the head with an empty `Authorization` value,
        // plus the value twice (in the head and as scratch).
        let too_small = |head_len: usize| FramingError::BufferTooSmall {
            required: head_len + 2 * scratch_len,
        };
        let Some(split) = out.len().checked_sub(scratch_len) else {
            return match head(&[("Authorization", "")], &mut []) {
                Err(crate::protocol::http::RequestHeadError::BufferTooSmall { required }) => {
                    Err(too_small(required))
                }
                Err(error) => Err(error.into()),
                Ok(len) => Err(too_small(len)),
            };
        };
        let (head_out, scratch) = out.split_at_mut(split);
        if scratch_len == 0 {
            return Ok(head(&[], head_out)?);
        }
        let (prefix, token) = scratch.split_at_mut(BEARER.len());
        prefix.copy_from_slice(BEARER);
        token.copy_from_slice(self.bearer.as_bytes());
        let authorization =
            core::str::from_utf8(scratch).map_err(|_| FramingError::InvalidField)?;
        match head(&[("Authorization", authorization)], head_out) {
            Ok(len) => Ok(len),
            Err(crate::protocol::http::RequestHeadError::BufferTooSmall { required }) => {
                Err(FramingError::BufferTooSmall {
                    required: required + scratch_len,
                })
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Writes the `GET` head of [`Action::OpenArtifact`] for `uri` from byte
/// `from` on (`Range: bytes=<from>-` when `from > 0`: the answer must then
/// be `206 Partial Content`), with `Connection: close`. Returns its length.
///
/// # Errors
/// [`FramingError::InvalidUrl`], [`FramingError::BufferTooSmall`] with the
/// size needed, or [`FramingError::InvalidField`].
pub fn write_download_head(uri: &str, from: u64, out: &mut [u8]) -> Result<usize, FramingError> {
    use core::fmt::Write as _;
    let url = crate::protocol::http::HttpUrl::parse(uri).ok_or(FramingError::InvalidUrl)?;
    let mut range: heapless::String<32> = heapless::String::new();
    let _ = write!(range, "bytes={from}-");
    let with_range = [
        ("User-Agent", USER_AGENT),
        ("Connection", "close"),
        ("Range", range.as_str()),
    ];
    let headers = if from > 0 {
        &with_range[..]
    } else {
        &with_range[..2]
    };
    Ok(crate::protocol::http::RequestHead {
        method: "GET",
        target: url.target,
        host: url.authority,
        headers,
        content_length: None,
    }
    .write(out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(bearer: &'a str, sign_body: bool, body: &'a [u8]) -> Request<'a> {
        Request {
            method: Method::Post,
            server: "http://127.0.0.1:8080",
            path: "/api/devices/v1/authentication/auth_requests",
            bearer,
            sign_body,
            body,
        }
    }

    #[test]
    fn request_heads() {
        let mut out = [0u8; 1024];
        let len = request("tok", true, b"{}")
            .write_head("127.0.0.1:8080", Some("c2ln"), &mut out)
            .unwrap();
        let text = core::str::from_utf8(&out[..len]).unwrap();
        assert_eq!(
            text,
            concat!(
                "POST /api/devices/v1/authentication/auth_requests HTTP/1.1\r\n",
                "Host: 127.0.0.1:8080\r\n",
                "User-Agent: otalite/",
                env!("CARGO_PKG_VERSION"),
                "\r\nConnection: close\r\n",
                "Authorization: Bearer tok\r\n",
                "Content-Type: application/json\r\n",
                "X-MEN-Signature: c2ln\r\n",
                "Content-Length: 2\r\n\r\n"
            )
        );
        // No bearer, no body, GET: neither Authorization nor Content-*.
        let get = Request {
            method: Method::Get,
            ..request("", false, b"")
        };
        let len = get.write_head("h", Some("ignored"), &mut out).unwrap();
        let text = core::str::from_utf8(&out[..len]).unwrap();
        assert!(!text.contains("Authorization") && !text.contains("Content-"));
        assert!(!text.contains("X-MEN-Signature"));
        assert_eq!(
            request("t", true, b"{}").write_head("h", None, &mut out),
            Err(FramingError::MissingSignature)
        );
        assert_eq!(
            request("t\r\nX: y", false, b"").write_head("h", None, &mut out),
            Err(FramingError::InvalidField)
        );
    }

    #[test]
    fn request_head_sizes() {
        let bearer = "x".repeat(100);
        let request = request(&bearer, false, b"{}");
        let mut big = [0u8; 2048];
        let len = request.write_head("h", None, &mut big).unwrap();
        let expected = big[..len].to_vec();
        let Err(FramingError::BufferTooSmall { required }) =
            request.write_head("h", None, &mut [0u8; 10])
        else {
            panic!("too small")
        };
        assert_eq!(required, len + 107);
        let Err(FramingError::BufferTooSmall { required: again }) =
            request.write_head("h", None, &mut big[..required - 1])
        else {
            panic!("too small")
        };
        assert_eq!(again, required);
        let mut exact = std::vec![0u8; required];
        assert_eq!(request.write_head("h", None, &mut exact), Ok(len));
        assert_eq!(exact[..len], expected[..]);
    }

    #[test]
    fn download_heads() {
        let mut out = [0u8; 512];
        let len = write_download_head("http://127.0.0.1:9/download/a?x=1", 0, &mut out).unwrap();
        let text = core::str::from_utf8(&out[..len]).unwrap();
        assert!(text.starts_with("GET /download/a?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"));
        assert!(!text.contains("Range"));
        let len = write_download_head("https://[::1]/a", 1234, &mut out).unwrap();
        let text = core::str::from_utf8(&out[..len]).unwrap();
        assert!(text.starts_with("GET /a HTTP/1.1\r\nHost: [::1]\r\n"));
        assert!(text.contains("Range: bytes=1234-\r\n"));
        assert_eq!(
            write_download_head("ftp://h/a", 0, &mut out),
            Err(FramingError::InvalidUrl)
        );
    }
}

/// An update module call after the download (the reference's Update
/// Modules v3 protocol; `Download` itself runs inside the artifact stream,
/// see [`crate::install::InstallHooks::module_download`]).
///
/// | state | stdout | an error (non-zero exit) |
/// |---|---|---|
/// | `SupportsRollback` | `Yes`, `No` or empty (= `No`) | fails the flow |
/// | `ArtifactInstall` | - | install failure: rollback (if supported), failure, cleanup |
/// | `NeedsArtifactReboot` | `No` or empty, `Yes`, `Automatic` | as an install failure |
/// | `ArtifactReboot` | - | (daemon, `NeedsArtifactReboot` said `Yes`) as an install failure |
/// | `ArtifactVerifyReboot` | - | (daemon, after a reboot) as an install failure |
/// | `ArtifactCommit` | - | as an install failure |
/// | `ArtifactRollback` | - | recorded as `<name>_INCONSISTENT` |
/// | `ArtifactRollbackReboot` | - | (daemon, a rollback that needs the module's reboot) logged |
/// | `ArtifactVerifyRollbackReboot` | - | (daemon, after it) logged |
/// | `ArtifactFailure` | - | recorded as `<name>_INCONSISTENT` |
/// | `Cleanup` | - | the command (the deployment) fails; the tree is removed anyway |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleState {
    /// Query: does the module roll back?
    SupportsRollback,
    /// Install the downloaded payload.
    ArtifactInstall,
    /// Query: does the update need a reboot?
    NeedsArtifactReboot,
    /// Reboot what the module updated (its answer was `Yes`).
    ArtifactReboot,
    /// After the reboot: did it come up with the update?
    ArtifactVerifyReboot,
    /// Make the update permanent.
    ArtifactCommit,
    /// Undo the update.
    ArtifactRollback,
    /// Reboot what the module rolled back.
    ArtifactRollbackReboot,
    /// After the rollback reboot: did it come up with the old version?
    ArtifactVerifyRollbackReboot,
    /// The update failed (after a rollback, or without one).
    ArtifactFailure,
    /// The last call: remove what the module kept.
    Cleanup,
}

impl ModuleState {
    /// The state name the module gets as its first argument.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SupportsRollback => "SupportsRollback",
            Self::ArtifactInstall => "ArtifactInstall",
            Self::NeedsArtifactReboot => "NeedsArtifactReboot",
            Self::ArtifactReboot => "ArtifactReboot",
            Self::ArtifactVerifyReboot => "ArtifactVerifyReboot",
            Self::ArtifactCommit => "ArtifactCommit",
            Self::ArtifactRollback => "ArtifactRollback",
            Self::ArtifactRollbackReboot => "ArtifactRollbackReboot",
            Self::ArtifactVerifyRollbackReboot => "ArtifactVerifyRollbackReboot",
            Self::ArtifactFailure => "ArtifactFailure",
            Self::Cleanup => "Cleanup",
        }
    }

    /// The call's stdout is its answer (a query).
    pub fn is_query(self) -> bool {
        matches!(self, Self::SupportsRollback | Self::NeedsArtifactReboot)
    }
}
