//! The C-facing types and constants (`otalite.h` is generated from them).
//!
//! Names are the C names: `otalite_*` types, `OTALITE_*` constants and
//! enumerators.
#![allow(non_camel_case_types)]

use core::ffi::{c_char, c_void};

// -------------------------------------------------------------------
// Sizes.

/// Bytes of `otalite_agent` (the agent lives in caller memory).
pub const OTALITE_AGENT_SIZE: usize = 98304;
/// Bytes of `otalite_response`.
pub const OTALITE_RESPONSE_SIZE: usize = 16384;
/// Minimum size of `otalite_buffers.record`: the largest encoded state
/// record.
pub const OTALITE_RECORD_BUFFER_MIN: usize = 16384;
/// Minimum size of `otalite_buffers.request`: request bodies
/// (inventory, status, update check, deployment log).
pub const OTALITE_REQUEST_BUFFER_MIN: usize = 16384;
/// Minimum size of `otalite_buffers.auth`: the authentication request.
pub const OTALITE_AUTH_BUFFER_MIN: usize = 8192;
/// Minimum size of `otalite_buffers.window`: the decompression window.
pub const OTALITE_WINDOW_BUFFER_MIN: usize = 32768;
/// Suggested size of `otalite_buffers.block`: one slot write (any size
/// works; the flash erase block is a good choice on a microcontroller).
pub const OTALITE_BLOCK_BUFFER_SUGGESTED: usize = 65536;
/// Suggested size of `otalite_buffers.output` and
/// `otalite_buffers.compare` (any size works).
pub const OTALITE_SMALL_BUFFER_SUGGESTED: usize = 4096;
/// Servers (`Servers` / `ServerURL`) an agent takes at most.
pub const OTALITE_MAX_SERVERS: usize = 4;
/// Artifact verification keys an agent takes at most.
pub const OTALITE_MAX_VERIFY_KEYS: usize = 4;
/// A request head fits in this many bytes with the longest JWT (the head
/// needs the token twice: once as scratch).
pub const OTALITE_REQUEST_HEAD_MAX: usize = 12288;
/// Bytes of the public key PEM written by `otalite_p256_public_key_pem`,
/// NUL included.
pub const OTALITE_P256_PUBLIC_KEY_PEM_SIZE: usize = 179;
/// Bytes of the signature written by `otalite_p256_sign` at most,
/// NUL included (base64 of an ASN.1 DER signature).
pub const OTALITE_P256_SIGNATURE_SIZE: usize = 97;
/// Bytes of a P-256 secret key.
pub const OTALITE_P256_SECRET_SIZE: usize = 32;

/// 8-byte words of `otalite_agent`.
pub const OTALITE_AGENT_WORDS: usize = 12288;
/// 8-byte words of `otalite_response`.
pub const OTALITE_RESPONSE_WORDS: usize = 2048;

const _: () = assert!(OTALITE_AGENT_WORDS * 8 == OTALITE_AGENT_SIZE);
const _: () = assert!(OTALITE_RESPONSE_WORDS * 8 == OTALITE_RESPONSE_SIZE);
const _: () = assert!(OTALITE_P256_PUBLIC_KEY_PEM_SIZE == crate::sign::PUBLIC_KEY_PEM_LEN + 1);
const _: () = assert!(OTALITE_P256_SIGNATURE_SIZE == crate::sign::SIGNATURE_B64_MAX + 1);
const _: () = assert!(OTALITE_RECORD_BUFFER_MIN == otalite::store::MAX_RECORD_LEN);
const _: () = assert!(OTALITE_WINDOW_BUFFER_MIN == otalite::artifact::WINDOW_LEN);
const _: () = assert!(
    OTALITE_REQUEST_HEAD_MAX
        >= 1024 + otalite::agent::MAX_PATH_LEN + 2 * otalite::agent::MAX_JWT_LEN
);

// -------------------------------------------------------------------
// Storage the caller owns.

/// An agent, in memory the caller owns (a `static`, or any
/// 8-byte-aligned block of `OTALITE_AGENT_SIZE` bytes). Set up with
/// `otalite_agent_init`; it must not be moved or copied afterwards.
#[repr(C)]
pub struct otalite_agent {
    /// Opaque.
    pub _opaque: [u64; OTALITE_AGENT_WORDS],
}

/// A response reader (`otalite_response_*`), in memory the caller owns.
#[repr(C)]
pub struct otalite_response {
    /// Opaque.
    pub _opaque: [u64; OTALITE_RESPONSE_WORDS],
}

// -------------------------------------------------------------------
// Small values.

/// Borrowed text: `len` bytes at `ptr`, UTF-8, *not* NUL-terminated (print
/// it with `"%.*s", (int)s.len, s.ptr`). `ptr` may be NULL when `len` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct otalite_str {
    /// First byte.
    pub ptr: *const c_char,
    /// Length in bytes.
    pub len: usize,
}

impl otalite_str {
    /// Borrows `text` (valid while `text` is).
    pub(crate) const fn new(text: &str) -> Self {
        Self {
            ptr: text.as_ptr().cast(),
            len: text.len(),
        }
    }

    pub(crate) const EMPTY: Self = Self::new("");
}

/// Borrowed bytes: `len` bytes at `ptr` (NULL when `len` is 0 is allowed).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct otalite_bytes {
    /// First byte.
    pub ptr: *const u8,
    /// Length.
    pub len: usize,
}

impl otalite_bytes {
    pub(crate) const fn new(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }
}

/// Result of a call. `otalite_status_text` describes each.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum otalite_status {
    /// It worked.
    OTALITE_OK = 0,
    /// A pointer was NULL, a text was not UTF-8, or a value is out of range.
    OTALITE_ERROR_INVALID_ARGUMENT = 1,
    /// An output buffer is too small (the size needed is reported where
    /// the call has a length out-parameter).
    OTALITE_ERROR_BUFFER_TOO_SMALL = 2,
    /// The agent storage was not set up by `otalite_agent_init`.
    OTALITE_ERROR_NOT_INITIALIZED = 3,
    /// The command does not exist in this mode.
    OTALITE_ERROR_WRONG_MODE = 4,
    /// Another command is still running.
    OTALITE_ERROR_BUSY = 5,
    /// The artifact location is too long.
    OTALITE_ERROR_URI_TOO_LONG = 6,
    /// The stored state record is damaged or from another version.
    OTALITE_ERROR_INVALID_RECORD = 7,
    /// A key (verification PEM, or a P-256 secret) is unusable.
    OTALITE_ERROR_INVALID_KEY = 8,
    /// The request must be signed and no signature was given.
    OTALITE_ERROR_MISSING_SIGNATURE = 9,
    /// Not an `http(s)://host[:port]/path` URL.
    OTALITE_ERROR_INVALID_URL = 10,
    /// A malformed HTTP response, or one cut short by the close.
    OTALITE_ERROR_BAD_RESPONSE = 11,
    /// The response is not complete yet: read more.
    OTALITE_ERROR_INCOMPLETE = 12,
}

/// The agent's mode.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum otalite_mode {
    /// Commands (`install`, `commit`, `rollback`) from the host.
    OTALITE_MODE_STANDALONE = 0,
    /// Deployments from a Mender server.
    OTALITE_MODE_MANAGED = 1,
}

/// Timing knobs in milliseconds (`otalite_timing_default` gives the
/// reference client's defaults).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct otalite_timing {
    /// `UpdatePollIntervalSeconds` (ms).
    pub update_poll_ms: u64,
    /// `InventoryPollIntervalSeconds` (ms).
    pub inventory_poll_ms: u64,
    /// `RetryPollIntervalSeconds` (ms).
    pub retry_poll_ms: u64,
    /// `RetryPollCount` (0: the reference's schedule).
    pub retry_poll_count: u32,
    /// One backoff unit (one minute in production).
    pub backoff_unit_ms: u64,
    /// How long to wait to be stopped after asking for a reboot.
    pub reboot_wait_ms: u64,
}

/// What the agent needs to know. The strings are NUL-terminated UTF-8 and
/// are *borrowed*: they must stay valid and unchanged until
/// `otalite_agent_deinit`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct otalite_config {
    /// Standalone or managed: an `otalite_mode` value (a plain integer,
    /// so that no C value can be an invalid Rust enum).
    pub mode: u32,
    /// This device's type.
    pub device_type: *const c_char,
    /// Managed: the server URLs, tried in order for authentication.
    pub servers: *const *const c_char,
    /// Entries in `servers` (1..=`OTALITE_MAX_SERVERS` in managed mode).
    pub server_count: usize,
    /// Managed: `TenantToken` (NULL or empty for none).
    pub tenant_token: *const c_char,
    /// Managed: the device key's public half, SubjectPublicKeyInfo PEM
    /// (`otalite_p256_public_key_pem` makes one).
    pub public_key_pem: *const c_char,
    /// Managed: `mender_client_version` in the inventory (NULL: the
    /// library's version).
    pub client_version: *const c_char,
    /// PEM public keys (RSA, ECDSA P-256) that may sign artifacts; NULL
    /// when `verify_key_count` is 0.
    pub verify_keys_pem: *const *const c_char,
    /// Entries in `verify_keys_pem` (0..=`OTALITE_MAX_VERIFY_KEYS`).
    pub verify_key_count: usize,
    /// Refuse unsigned artifacts.
    pub signatures_required: bool,
    /// Timing.
    pub timing: otalite_timing,
}

/// Caller-owned memory of an agent, borrowed until `otalite_agent_deinit`.
/// Minimum sizes are the `OTALITE_*_BUFFER_MIN` constants; the others can
/// be any size of at least one byte.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct otalite_buffers {
    /// The encoded state record (`OTALITE_RECORD_BUFFER_MIN`).
    pub record: *mut u8,
    /// Its size.
    pub record_len: usize,
    /// Request bodies (`OTALITE_REQUEST_BUFFER_MIN`).
    pub request: *mut u8,
    /// Its size.
    pub request_len: usize,
    /// The authentication request (`OTALITE_AUTH_BUFFER_MIN`).
    pub auth: *mut u8,
    /// Its size.
    pub auth_len: usize,
    /// Artifact reader output (any size).
    pub output: *mut u8,
    /// Its size.
    pub output_len: usize,
    /// Decompression window (`OTALITE_WINDOW_BUFFER_MIN`).
    pub window: *mut u8,
    /// Its size.
    pub window_len: usize,
    /// One slot write block (any size).
    pub block: *mut u8,
    /// Its size.
    pub block_len: usize,
    /// Read-back compare buffer (any size).
    pub compare: *mut u8,
    /// Its size.
    pub compare_len: usize,
}

/// What the bootloader environment says.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct otalite_boot_state {
    /// `mender_boot_part` is set.
    pub has_boot_part: bool,
    /// `mender_boot_part`: the partition the bootloader boots.
    pub boot_part: u32,
    /// `upgrade_available == 1`.
    pub upgrade_available: bool,
    /// `bootcount` is set.
    pub has_bootcount: bool,
    /// `bootcount`.
    pub bootcount: u32,
}

/// The slots as the host found them (`otalite_handle_slots`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct otalite_slots {
    /// The running slot.
    pub active: u32,
    /// The slot an update goes to.
    pub inactive: u32,
    /// `active` was proven by the mounted root device, not only read from
    /// the boot environment.
    pub proven_by_root_device: bool,
}

/// How an action ended (`otalite_handle_done`; passed as `uint32_t`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum otalite_outcome {
    /// It worked (`OPEN_ARTIFACT`: the stream is open; `READ_ARTIFACT`:
    /// it ended while the agent still wanted bytes).
    OTALITE_OUTCOME_DONE = 0,
    /// It failed for good.
    OTALITE_OUTCOME_FAILED = 1,
    /// It failed but may work later (a dropped connection, a timeout).
    OTALITE_OUTCOME_TRANSIENT = 2,
}

/// A command (`otalite_handle_command`; passed as `uint32_t`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum otalite_command {
    /// Standalone: install the artifact at the given location.
    OTALITE_COMMAND_INSTALL = 0,
    /// Standalone: commit the installed update.
    OTALITE_COMMAND_COMMIT = 1,
    /// Standalone: roll the installed update back.
    OTALITE_COMMAND_ROLLBACK = 2,
    /// Managed: check for an update now.
    OTALITE_COMMAND_CHECK_UPDATE = 3,
    /// Managed: send the inventory now.
    OTALITE_COMMAND_SEND_INVENTORY = 4,
    /// Stop at the next safe point (an `EXIT` action follows).
    OTALITE_COMMAND_STOP = 5,
}

/// What to do with the rest of the artifact stream after
/// `otalite_handle_artifact`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum otalite_feed {
    /// Everything was taken; feed more.
    OTALITE_FEED_CONTINUE = 0,
    /// The artifact is complete and verified; close the stream. The
    /// `READ_ARTIFACT` is over: no `otalite_handle_done` follows.
    OTALITE_FEED_COMPLETE = 1,
    /// The agent wants no more (refused, or stopping); close the stream.
    /// The `READ_ARTIFACT` is over: no `otalite_handle_done` follows.
    OTALITE_FEED_STOP = 2,
}

/// The persisted update step (`otalite_agent_step`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum otalite_step {
    /// Nothing in progress.
    OTALITE_STEP_IDLE = 0,
    /// Managed: the artifact is streaming into the inactive slot.
    OTALITE_STEP_DOWNLOADING = 1,
    /// Written and verified; the boot env is (being) switched.
    OTALITE_STEP_INSTALLED = 2,
    /// Managed: the trial slot is set and the reboot was requested.
    OTALITE_STEP_REBOOTING = 3,
    /// The commit was decided.
    OTALITE_STEP_COMMITTING = 4,
    /// The rollback was decided.
    OTALITE_STEP_ROLLING_BACK = 5,
    /// Managed: the final status is being sent.
    OTALITE_STEP_REPORTING = 6,
    /// Managed: the deployment failed and the rollback reboot was
    /// requested; the next start runs the scripts after it and reports.
    OTALITE_STEP_ROLLBACK_REBOOTING = 7,
    /// Hand-off mode (Linux binary only): the artifact file is complete,
    /// the installer is being started.
    OTALITE_STEP_HANDING_OFF = 8,
    /// Hand-off mode (Linux binary only): the installer owns the device.
    OTALITE_STEP_HANDED_OFF = 9,
    /// AWS IoT Jobs mode (Linux binary only): a job is under way.
    OTALITE_STEP_JOB = 10,
}

/// The state script group of a `RUN_SCRIPTS` action
/// (`otalite_script_group_name` gives its file-name part).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum otalite_script_group {
    /// `Idle`.
    OTALITE_SCRIPTS_IDLE = 0,
    /// `Sync`.
    OTALITE_SCRIPTS_SYNC = 1,
    /// `Download`.
    OTALITE_SCRIPTS_DOWNLOAD = 2,
    /// `ArtifactInstall`.
    OTALITE_SCRIPTS_ARTIFACT_INSTALL = 3,
    /// `ArtifactReboot`.
    OTALITE_SCRIPTS_ARTIFACT_REBOOT = 4,
    /// `ArtifactCommit`.
    OTALITE_SCRIPTS_ARTIFACT_COMMIT = 5,
    /// `ArtifactRollback`.
    OTALITE_SCRIPTS_ARTIFACT_ROLLBACK = 6,
    /// `ArtifactRollbackReboot`.
    OTALITE_SCRIPTS_ARTIFACT_ROLLBACK_REBOOT = 7,
    /// `ArtifactFailure`.
    OTALITE_SCRIPTS_ARTIFACT_FAILURE = 8,
}

/// The phase of a `RUN_SCRIPTS` action.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum otalite_script_phase {
    /// `Enter`.
    OTALITE_PHASE_ENTER = 0,
    /// `Leave`.
    OTALITE_PHASE_LEAVE = 1,
    /// `Error`.
    OTALITE_PHASE_ERROR = 2,
}

/// A deployment-log level.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum otalite_log_level {
    /// `info`.
    OTALITE_LOG_INFO = 0,
    /// `warning`.
    OTALITE_LOG_WARNING = 1,
    /// `error`.
    OTALITE_LOG_ERROR = 2,
}

/// How a standalone command ended (`COMPLETED` action).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum otalite_completion {
    /// Installed; the new slot boots once on the next reboot.
    OTALITE_COMPLETION_INSTALLED = 0,
    /// Empty payload: only the provides changed.
    OTALITE_COMPLETION_UPDATED = 1,
    /// Committed.
    OTALITE_COMPLETION_COMMITTED = 2,
    /// Rolled back.
    OTALITE_COMPLETION_ROLLED_BACK = 3,
    /// Nothing to commit or roll back.
    OTALITE_COMPLETION_NOTHING = 4,
    /// Failed; the message says why.
    OTALITE_COMPLETION_FAILED = 5,
}

/// The kind of an `otalite_action`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum otalite_action_kind {
    /// No action (`otalite_poll` returned false).
    OTALITE_ACTION_NONE = 0,
    /// Store `record` atomically (it replaces the previous one), then
    /// `otalite_handle_done`.
    OTALITE_ACTION_PERSIST = 1,
    /// Run the state scripts `group`/`phase`, then `otalite_handle_done`
    /// (`FAILED` when one failed; `ignore_errors`: the agent ignores it).
    OTALITE_ACTION_RUN_SCRIPTS = 2,
    /// Find the running and the inactive slot, then `otalite_handle_slots`.
    /// With `install`, also open the inactive slot for writing: artifact
    /// bytes follow.
    OTALITE_ACTION_PREPARE_SLOTS = 3,
    /// Open the artifact stream `uri` at byte `from` (HTTP `Range` when
    /// not 0: `otalite_download_head` frames the request), then
    /// `otalite_handle_done`: `DONE` once it is open (the answer's head
    /// was read: 200, or 206 when `from` > 0), `TRANSIENT` when it may work
    /// later (the agent retries with backoff), `FAILED` when it cannot.
    /// Keep the stream for `READ_ARTIFACT`; drop it on any action other
    /// than `READ_ARTIFACT`, `REQUEST`, `GATHER_IDENTITY` (a
    /// re-authentication), `DEPLOYMENT_LOG` and `CLEAR_DEPLOYMENT_LOG`.
    /// `uri` stays readable through `otalite_agent_artifact_uri` until the
    /// download ended: no need to copy it.
    OTALITE_ACTION_OPEN_ARTIFACT = 4,
    /// Feed the open stream to `otalite_handle_artifact` until it returns
    /// something other than `CONTINUE` (then close the stream: the action
    /// is over, no `otalite_handle_done` follows), or the stream ends
    /// (`otalite_handle_done` with `DONE`) or breaks (`TRANSIENT`: drop
    /// it, the agent opens it again where it stopped; `FAILED`).
    OTALITE_ACTION_READ_ARTIFACT = 17,
    /// Make `part` the trial slot (one boot), then `otalite_handle_done`.
    OTALITE_ACTION_SET_TRIAL = 5,
    /// Make the running trial permanent, then `otalite_handle_done`.
    OTALITE_ACTION_COMMIT_BOOT = 6,
    /// Boot `part` again, permanently, then `otalite_handle_done`.
    OTALITE_ACTION_ROLL_BACK = 7,
    /// Reboot; `otalite_handle_done` with `FAILED` if it cannot (otherwise
    /// the agent waits to be stopped).
    OTALITE_ACTION_REBOOT = 8,
    /// Run the identity script, then `otalite_handle_data` with its
    /// `key=value` lines.
    OTALITE_ACTION_GATHER_IDENTITY = 9,
    /// Run the inventory scripts, then `otalite_handle_data` with their
    /// joined `key=value` lines.
    OTALITE_ACTION_GATHER_INVENTORY = 10,
    /// Send `request` (`otalite_request_head` frames it), then
    /// `otalite_handle_response`, or `otalite_handle_done` with
    /// `TRANSIENT` for a transport error.
    OTALITE_ACTION_REQUEST = 11,
    /// Append `level`/`message` to the deployment log (with the wall-clock
    /// time, kept across reboots). No completion.
    OTALITE_ACTION_DEPLOYMENT_LOG = 12,
    /// Start a new, empty deployment log. No completion.
    OTALITE_ACTION_CLEAR_DEPLOYMENT_LOG = 13,
    /// Read the deployment log, then `otalite_handle_data` with its lines
    /// (`<RFC 3339 time> <level> <message>`).
    OTALITE_ACTION_READ_DEPLOYMENT_LOG = 14,
    /// A standalone command ended: `completion`, `message`. No completion.
    OTALITE_ACTION_COMPLETED = 15,
    /// The agent stopped (`failed`, `message`); the host exits. No
    /// completion.
    OTALITE_ACTION_EXIT = 16,
    /// Store `record` (the Update Control Map pool) atomically in its own
    /// file, then `otalite_handle_done` (a failure is only logged); give
    /// it back at the next start with `otalite_agent_load_control_maps`.
    OTALITE_ACTION_PERSIST_CONTROL_MAPS = 18,
    /// Call the update module of a standalone module install with the
    /// state named in `message` (`ArtifactInstall`, `SupportsRollback`,
    /// ...), then `otalite_handle_module`. Only a host that streams module
    /// payloads gets it; others answer it as failed.
    OTALITE_ACTION_MODULE_CALL = 19,
}

/// A device-API request (`OTALITE_ACTION_REQUEST`).
/// `otalite_request_head` writes its head; `body` follows on the
/// connection.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct otalite_request {
    /// `GET`, `POST`, `PUT` or `PATCH`.
    pub method: otalite_str,
    /// The server's base URL (`http(s)://host[:port]`): where to connect
    /// (`otalite_url_parse`).
    pub server: otalite_str,
    /// Path and query.
    pub path: otalite_str,
    /// The bearer token (JWT, or the tenant token for authentication).
    pub bearer: otalite_str,
    /// Sign `body` with the device key (`otalite_p256_sign`) and pass the
    /// signature to `otalite_request_head`.
    pub sign_body: bool,
    /// The JSON body (may be empty).
    pub body: otalite_bytes,
}

/// One action from `otalite_poll`. `kind` says which fields are set; the
/// others are zero / empty. Pointers point into the agent and its buffers
/// and stay valid until the next call that takes the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct otalite_action {
    /// Which action.
    pub kind: otalite_action_kind,
    /// The completion id to pass to `otalite_handle_*` (kinds that take a
    /// completion; 0 for the others).
    pub id: u32,
    /// `PERSIST`: the encoded state record.
    pub record: otalite_bytes,
    /// `RUN_SCRIPTS`: the group.
    pub group: otalite_script_group,
    /// `RUN_SCRIPTS`: the phase.
    pub phase: otalite_script_phase,
    /// `RUN_SCRIPTS`: a failure is ignored by the agent.
    pub ignore_errors: bool,
    /// `PREPARE_SLOTS`: an install follows.
    pub install: bool,
    /// `OPEN_ARTIFACT`: the artifact location.
    pub uri: otalite_str,
    /// `OPEN_ARTIFACT`: the first byte wanted (HTTP `Range` when not 0).
    pub from: u64,
    /// `SET_TRIAL`, `ROLL_BACK`: the partition.
    pub part: u32,
    /// `REQUEST`: the request.
    pub request: otalite_request,
    /// `DEPLOYMENT_LOG`: the level.
    pub level: otalite_log_level,
    /// `DEPLOYMENT_LOG`, `COMPLETED`, `EXIT`: the text.
    pub message: otalite_str,
    /// `COMPLETED`: how the command ended.
    pub completion: otalite_completion,
    /// `EXIT`: an unrecoverable error (the message says which).
    pub failed: bool,
}

/// An `http(s)://` URL split for a socket (`otalite_url_parse`). The texts
/// point into the parsed URL.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct otalite_url {
    /// `https://` (the host must speak TLS).
    pub https: bool,
    /// Host to resolve (an IPv6 literal without brackets).
    pub host: otalite_str,
    /// Port (80 / 443 when the URL has none).
    pub port: u16,
    /// `host[:port]` as written: the `Host` header.
    pub authority: otalite_str,
    /// Path and query: the request target.
    pub target: otalite_str,
}

/// Where a response stands (`otalite_response_feed`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum otalite_response_state {
    /// All input was used: read more (or `otalite_response_close` at EOF).
    OTALITE_RESPONSE_NEED_INPUT = 0,
    /// The body buffer is full: feed the rest of the input again.
    OTALITE_RESPONSE_BODY_FULL = 1,
    /// The response is complete.
    OTALITE_RESPONSE_DONE = 2,
    /// The response is malformed or was cut short; the reader is unusable.
    OTALITE_RESPONSE_ERROR = 3,
}

// -------------------------------------------------------------------
// Board callbacks.

/// The slot being written during `otalite_handle_artifact`: a flash
/// region, a block device, a file. Every callback returns 0 on success and
/// any other value on failure (reported as "slot callback failed with
/// N"); `ctx` is passed back as is. All five are required.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct otalite_slot {
    /// The caller's context.
    pub ctx: *mut c_void,
    /// Reads up to `len` bytes at the current position into `buf`; stores
    /// the count in `*read` (0 at the end of the slot).
    pub read:
        Option<extern "C" fn(ctx: *mut c_void, buf: *mut u8, len: usize, read: *mut usize) -> i32>,
    /// Writes up to `len` bytes from `buf` at the current position; stores
    /// the count in `*written` (at least 1 when `len` > 0).
    pub write: Option<
        extern "C" fn(ctx: *mut c_void, buf: *const u8, len: usize, written: *mut usize) -> i32,
    >,
    /// Moves the position: `whence` 0 = from the start, 1 = from the
    /// current position, 2 = from the end (as `SEEK_SET`, `SEEK_CUR`,
    /// `SEEK_END`); stores the new position in `*position`.
    pub seek: Option<
        extern "C" fn(ctx: *mut c_void, offset: i64, whence: i32, position: *mut u64) -> i32,
    >,
    /// Stores the slot's size in bytes in `*capacity`.
    pub capacity: Option<extern "C" fn(ctx: *mut c_void, capacity: *mut u64) -> i32>,
    /// Makes every written byte durable (fsync, flash write-back).
    pub sync: Option<extern "C" fn(ctx: *mut c_void) -> i32>,
}

/// Optional install callbacks for `otalite_handle_artifact` (pass NULL for
/// none: artifact state scripts are then dropped). A NULL callback accepts;
/// a non-zero return aborts the install.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct otalite_install_hooks {
    /// The caller's context.
    pub ctx: *mut c_void,
    /// The header passed every check (`artifact_name`); the payload comes
    /// next.
    pub header_accepted: Option<extern "C" fn(ctx: *mut c_void, artifact_name: otalite_str) -> i32>,
    /// An artifact state script `name` of `size` bytes starts.
    pub script_start: Option<extern "C" fn(ctx: *mut c_void, name: otalite_str, size: u64) -> i32>,
    /// The next bytes of the current script.
    pub script_data: Option<extern "C" fn(ctx: *mut c_void, data: *const u8, len: usize) -> i32>,
    /// The current script is complete.
    pub script_end: Option<extern "C" fn(ctx: *mut c_void) -> i32>,
    /// `written` of `total` image bytes are in the slot.
    pub progress: Option<extern "C" fn(ctx: *mut c_void, written: u64, total: u64)>,
}
