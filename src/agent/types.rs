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
/// The core's `protocol::http` frames it for hosts with raw sockets.
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
    /// deployment-log ones.
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
    /// The artifact is complete and verified; close the stream.
    Complete,
    /// The agent does not want more (refused, or stopping); close the stream.
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
}

/// Standalone (commands from a person or script) or managed (a server).
#[derive(Clone, Copy, Debug)]
pub enum Mode<'b> {
    /// `install`, `commit`, `rollback` commands.
    Standalone,
    /// Deployments from a Mender server.
    Managed(ServerSettings<'b>),
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
