//! The exported functions. Each turns C pointers into Rust references
//! (the only unsafe code of the crate, with the C caller's contract stated
//! in its `# Safety` section) and calls the safe code.
//!
//! Pointer rules for every function: a pointer documented as an input must
//! be valid for reads of the stated length (NULL is allowed only where
//! said, or with a length of 0); an output pointer must be valid for
//! writes; nothing is kept past the call unless said (the agent keeps its
//! configuration strings and buffers until `otalite_agent_deinit`).
// A C API needs `#[no_mangle]` and raw pointers: unsafe code is allowed in
// this module only (the crate denies it elsewhere).
#![allow(unsafe_code)]

use crate::board::{CHooks, CSlot};
use crate::types::*;
use core::ffi::{c_char, CStr};
use core::mem::MaybeUninit;
use core::ptr::{addr_of, addr_of_mut};
use otalite::agent::{
    Action, ActionId, Agent, AgentBuffers, AgentConfig, Command, CommandError, Completion, Feed,
    FramingError, Instant, LogLevel, Method, Mode, Outcome, Request, ScriptGroup, ScriptPhase,
    ServerSettings, Slots, Timing,
};
use otalite::artifact::verify::VerifyKey;
use otalite::board::BootState;
use otalite::protocol::http::{HttpUrl, ResponseReader, ResponseStatus};
use otalite::store::{StateRecord, UpdateStep};

use otalite_status::*;

// -------------------------------------------------------------------
// Pointer helpers.

/// `len` bytes at `ptr`; NULL is allowed when `len` is 0.
///
/// # Safety
/// `ptr` is valid for reads of `len` bytes for `'a`, not written meanwhile.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-null, and valid for `len` bytes by the caller's contract.
    Some(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// `len` writable bytes at `ptr`; NULL is allowed when `len` is 0.
///
/// # Safety
/// `ptr` is valid for reads and writes of `len` bytes for `'a`, and nothing
/// else accesses them meanwhile.
unsafe fn bytes_mut<'a>(ptr: *mut u8, len: usize) -> Option<&'a mut [u8]> {
    if len == 0 {
        return Some(&mut []);
    }
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-null, valid and unaliased for `len` bytes by the caller's
    // contract.
    Some(unsafe { core::slice::from_raw_parts_mut(ptr, len) })
}

/// UTF-8 text of `len` bytes at `ptr`.
///
/// # Safety
/// As `bytes`.
unsafe fn text<'a>(ptr: *const c_char, len: usize) -> Option<&'a str> {
    // SAFETY: the caller's contract is that of `bytes`.
    let bytes = unsafe { bytes(ptr.cast(), len) }?;
    core::str::from_utf8(bytes).ok()
}

/// A NUL-terminated UTF-8 string (`None` for NULL or non-UTF-8).
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for `'a`.
unsafe fn c_string<'a>(ptr: *const c_char) -> Option<&'a str> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(ptr) }.to_str().ok()
}

/// `*ptr = value` when `ptr` is not NULL.
///
/// # Safety
/// `ptr` is NULL or valid for a write of `T`.
unsafe fn put<T>(ptr: *mut T, value: T) {
    if !ptr.is_null() {
        // SAFETY: non-null and writable by the caller's contract.
        unsafe { ptr.write(value) };
    }
}

/// `*ptr` when `ptr` is not NULL.
///
/// # Safety
/// `ptr` is NULL or valid for a read of `T`.
unsafe fn get<T: Copy>(ptr: *const T) -> Option<T> {
    if ptr.is_null() {
        None
    } else {
        // SAFETY: non-null and readable by the caller's contract.
        Some(unsafe { ptr.read() })
    }
}

// -------------------------------------------------------------------
// The agent in caller storage.

const MAGIC: u64 = 0x6f74_616c_6974_6501;

/// What lives in an `otalite_agent`. `servers` and `keys` are written
/// once by `otalite_agent_init` and only read afterwards (the agent's
/// configuration borrows them); `agent` is only reached through a raw
/// field projection, so the borrows of the other fields stay valid.
struct State {
    magic: u64,
    servers: [&'static str; OTALITE_MAX_SERVERS],
    keys: heapless::Vec<VerifyKey, OTALITE_MAX_VERIFY_KEYS>,
    agent: MaybeUninit<Agent<'static>>,
}

const _: () = assert!(core::mem::size_of::<State>() <= OTALITE_AGENT_SIZE);

const _: () = assert!(core::mem::align_of::<State>() <= core::mem::align_of::<otalite_agent>());
const _: () = assert!(core::mem::size_of::<ResponseReader>() <= OTALITE_RESPONSE_SIZE);
const _: () =
    assert!(core::mem::align_of::<ResponseReader>() <= core::mem::align_of::<otalite_response>());

/// The agent set up in `storage`.
///
/// # Safety
/// `storage` is NULL or points to an `otalite_agent` that nothing else
/// accesses during `'a`.
unsafe fn agent<'a>(storage: *mut otalite_agent) -> Option<&'a mut Agent<'static>> {
    if storage.is_null() {
        return None;
    }
    let state = storage.cast::<State>();
    // SAFETY: `storage` is valid (caller) and large and aligned enough for
    // a `State` (the asserts above); `magic` is plain bytes, whatever the
    // storage held before.
    let magic = unsafe { addr_of!((*state).magic).read() };
    if magic != MAGIC {
        return None;
    }
    // SAFETY: the magic says `otalite_agent_init` wrote the agent; the
    // projection borrows the `agent` field only.
    Some(unsafe { (*addr_of_mut!((*state).agent)).assume_init_mut() })
}

fn now(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// The reference client's timing (`mender.conf` defaults): update check
/// every 30 min, inventory every 30 min, retries every 5 min.
#[no_mangle]
pub extern "C" fn otalite_timing_default() -> otalite_timing {
    let timing = Timing::from_config(&otalite::config::MenderConfig::default());
    otalite_timing {
        update_poll_ms: timing.update_poll,
        inventory_poll_ms: timing.inventory_poll,
        retry_poll_ms: timing.retry_poll,
        retry_poll_count: timing.retry_poll_count,
        backoff_unit_ms: timing.backoff_unit,
        reboot_wait_ms: timing.reboot_wait,
    }
}

/// A static, NUL-terminated description of a status value.
#[no_mangle]
pub extern "C" fn otalite_status_text(status: i32) -> *const c_char {
    let text: &CStr = match status {
        0 => c"ok",
        1 => c"invalid argument (NULL pointer, text not UTF-8, or out of range)",
        2 => c"output buffer too small",
        3 => c"the agent is not initialized",
        4 => c"this command does not exist in this mode",
        5 => c"another command is still running",
        6 => c"the artifact location is too long",
        7 => c"the state record is damaged or from another version",
        8 => c"unusable key",
        9 => c"the request must be signed (X-MEN-Signature)",
        10 => c"not an http(s)://host[:port]/path URL",
        11 => c"malformed or truncated HTTP response",
        12 => c"incomplete HTTP response",
        _ => c"unknown status",
    };
    text.as_ptr()
}

/// Encodes the state record of a fresh device into `out` (`cap` bytes;
/// `OTALITE_RECORD_BUFFER_MIN` always suffices) and stores its length in
/// `*len`. The host persists it as the device's first record.
/// `provides`: NULL, or `key=value` lines of the installed software's
/// provides (`rootfs-image.version=release-1`).
///
/// # Safety
/// `artifact_name` and `provides` (if not NULL) are NUL-terminated; `out`
/// is valid for `cap` bytes; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn otalite_record_new(
    artifact_name: *const c_char,
    provides: *const c_char,
    out: *mut u8,
    cap: usize,
    len: *mut usize,
) -> otalite_status {
    // SAFETY: per the function's contract.
    let (name, lines, out) = unsafe {
        (
            c_string(artifact_name),
            c_string(provides),
            bytes_mut(out, cap),
        )
    };
    let (Some(name), Some(out)) = (name, out) else {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    };
    if !provides.is_null() && lines.is_none() {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    }
    let mut installed = otalite::device::Provides::named(name);
    for line in lines.unwrap_or("").lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        let Some(provide) = line
            .split_once('=')
            .and_then(|(key, value)| otalite::device::provide(key, value))
        else {
            return OTALITE_ERROR_INVALID_ARGUMENT;
        };
        if installed.provides.push(provide).is_err() {
            return OTALITE_ERROR_INVALID_ARGUMENT;
        }
    }
    let record = StateRecord {
        installed,
        ..StateRecord::default()
    };
    match record.encode(out) {
        Ok(encoded) => {
            // SAFETY: per the function's contract.
            unsafe { put(len, encoded.len()) };
            OTALITE_OK
        }
        Err(_) => OTALITE_ERROR_BUFFER_TOO_SMALL,
    }
}

/// Sets up an agent in `agent` (caller storage of `OTALITE_AGENT_SIZE`
/// bytes) from the persisted record (`record`, `record_len`) and the boot
/// environment as read now. Managed mode starts with the restart recovery.
/// An agent already set up there must be `otalite_agent_deinit`-ed first.
///
/// # Safety
/// `agent` is valid for writes of an `otalite_agent` and is not moved
/// until `otalite_agent_deinit`; `config`, `buffers` and `boot` are
/// readable; every string and buffer they point to stays valid (and the
/// buffers are used by nothing else) until `otalite_agent_deinit`; `record`
/// is valid for `record_len` bytes during the call.
#[no_mangle]
pub unsafe extern "C" fn otalite_agent_init(
    agent: *mut otalite_agent,
    config: *const otalite_config,
    buffers: *const otalite_buffers,
    record: *const u8,
    record_len: usize,
    boot: *const otalite_boot_state,
) -> otalite_status {
    if agent.is_null() {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: readable by the function's contract.
    let (Some(config), Some(buffers), Some(boot)) =
        (unsafe { (get(config), get(buffers), get(boot)) })
    else {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    };
    // SAFETY: valid for `record_len` bytes by the function's contract.
    let Some(record) = (unsafe { bytes(record, record_len) }) else {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    };
    let Ok(record) = StateRecord::decode(record) else {
        return OTALITE_ERROR_INVALID_RECORD;
    };
    // SAFETY: the strings are NUL-terminated and live until deinit (the
    // function's contract), hence `'static` for the agent's life.
    let Some(device_type) = (unsafe { c_string(config.device_type) }) else {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    };
    let mut servers = [""; OTALITE_MAX_SERVERS];
    let mut keys = heapless::Vec::new();
    let managed = match config.mode {
        m if m == otalite_mode::OTALITE_MODE_STANDALONE as u32 => false,
        m if m == otalite_mode::OTALITE_MODE_MANAGED as u32 => true,
        _ => return OTALITE_ERROR_INVALID_ARGUMENT,
    };
    if managed {
        if config.server_count == 0 || config.server_count > OTALITE_MAX_SERVERS {
            return OTALITE_ERROR_INVALID_ARGUMENT;
        }
        if config.servers.is_null() {
            return OTALITE_ERROR_INVALID_ARGUMENT;
        }
        for (index, slot) in servers.iter_mut().take(config.server_count).enumerate() {
            // SAFETY: index < server_count, within the array (checked
            // non-null above); each entry is a NUL-terminated string that
            // lives until deinit.
            let Some(url) = (unsafe { c_string(config.servers.add(index).read()) }) else {
                return OTALITE_ERROR_INVALID_ARGUMENT;
            };
            *slot = url;
        }
    }
    if config.verify_key_count > OTALITE_MAX_VERIFY_KEYS
        || (config.verify_key_count > 0 && config.verify_keys_pem.is_null())
    {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    }
    for index in 0..config.verify_key_count {
        // SAFETY: index < verify_key_count entries of a non-null array of
        // NUL-terminated strings (the function's contract).
        let Some(pem) = (unsafe { c_string(config.verify_keys_pem.add(index).read()) }) else {
            return OTALITE_ERROR_INVALID_ARGUMENT;
        };
        match VerifyKey::from_pem(pem.as_bytes()) {
            Ok(key) => {
                let _ = keys.push(key);
            }
            Err(_) => return OTALITE_ERROR_INVALID_KEY,
        }
    }
    // SAFETY: the strings are NUL-terminated and live until deinit.
    let (tenant_token, public_key_pem, client_version) = unsafe {
        (
            c_string(config.tenant_token).unwrap_or(""),
            c_string(config.public_key_pem),
            c_string(config.client_version)
                .unwrap_or(concat!("otalite-capi/", env!("CARGO_PKG_VERSION"))),
        )
    };
    if managed && public_key_pem.is_none() {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    }
    // SAFETY: each buffer is valid, unaliased memory of its length until
    // deinit (the function's contract).
    let agent_buffers = unsafe {
        (
            bytes_mut(buffers.record, buffers.record_len),
            bytes_mut(buffers.request, buffers.request_len),
            bytes_mut(buffers.auth, buffers.auth_len),
            bytes_mut(buffers.output, buffers.output_len),
            bytes_mut(buffers.window, buffers.window_len),
            bytes_mut(buffers.block, buffers.block_len),
            bytes_mut(buffers.compare, buffers.compare_len),
        )
    };
    let (
        Some(record_buf),
        Some(request),
        Some(auth),
        Some(output),
        Some(window),
        Some(block),
        Some(compare),
    ) = agent_buffers
    else {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    };
    let state = agent.cast::<State>();
    // SAFETY: `agent` is writable storage, large and aligned enough for a
    // `State` (asserted above). The fields are written through raw
    // projections; `servers` and `keys` are then only borrowed shared, for
    // as long as the storage is not moved or deinitialized (the contract).
    let (servers, keys) = unsafe {
        addr_of_mut!((*state).magic).write(0);
        addr_of_mut!((*state).servers).write(servers);
        addr_of_mut!((*state).keys).write(keys);
        (&*addr_of!((*state).servers), &*addr_of!((*state).keys))
    };
    let mode = match managed {
        true => Mode::Managed(ServerSettings {
            servers: servers.get(..config.server_count).unwrap_or_default(),
            tenant_token,
            public_key_pem: public_key_pem.unwrap_or_default(),
            client_version,
            // The hand-off flow needs files and a detached installer: the
            // Linux binary's (`otalite daemon` with `HandOff`), not a
            // supervisor's.
            hand_off: otalite::agent::HandOffRole::Off,
        }),
        false => Mode::Standalone,
    };
    let timing = config.timing;
    let new = Agent::new(
        AgentConfig {
            device_type,
            keys: keys.as_slice(),
            signatures_required: config.signatures_required,
            timing: Timing {
                update_poll: timing.update_poll_ms,
                inventory_poll: timing.inventory_poll_ms,
                retry_poll: timing.retry_poll_ms,
                retry_poll_count: timing.retry_poll_count,
                backoff_unit: timing.backoff_unit_ms,
                reboot_wait: timing.reboot_wait_ms,
                // The reference's defaults (the C struct keeps its layout).
                control_map_expiration: timing.update_poll_ms.saturating_mul(2),
                control_map_boot_expiration: 600_000,
            },
            mode,
        },
        record,
        BootState {
            boot_part: boot.has_boot_part.then_some(boot.boot_part),
            upgrade_available: boot.upgrade_available,
            bootcount: boot.has_bootcount.then_some(boot.bootcount),
        },
        AgentBuffers {
            record: record_buf,
            request,
            auth,
            output,
            window,
            block,
            compare,
        },
    );
    let Ok(new) = new else {
        return OTALITE_ERROR_BUFFER_TOO_SMALL;
    };
    // SAFETY: as above; the agent field is written once, then the magic
    // marks the storage as set up.
    unsafe {
        addr_of_mut!((*state).agent).write(MaybeUninit::new(new));
        addr_of_mut!((*state).magic).write(MAGIC);
    }
    OTALITE_OK
}

/// Ends the agent in `agent`; its configuration strings and buffers are
/// free again. Nothing happens to storage that holds no agent.
///
/// # Safety
/// `agent` is NULL or valid storage that nothing else accesses.
#[no_mangle]
pub unsafe extern "C" fn otalite_agent_deinit(agent: *mut otalite_agent) {
    // SAFETY: per the function's contract.
    if unsafe { self::agent(agent) }.is_none() {
        return;
    }
    let state = agent.cast::<State>();
    // SAFETY: the magic said the fields are set up; each is dropped once
    // and the magic cleared, so the storage holds no agent afterwards.
    unsafe {
        addr_of_mut!((*state).magic).write(0);
        (*addr_of_mut!((*state).agent)).assume_init_drop();
        core::ptr::drop_in_place(addr_of_mut!((*state).keys));
    }
}

const EMPTY_REQUEST: otalite_request = otalite_request {
    method: otalite_str::EMPTY,
    server: otalite_str::EMPTY,
    path: otalite_str::EMPTY,
    bearer: otalite_str::EMPTY,
    sign_body: false,
    body: otalite_bytes::new(&[]),
};

const EMPTY_ACTION: otalite_action = otalite_action {
    kind: otalite_action_kind::OTALITE_ACTION_NONE,
    id: 0,
    record: otalite_bytes::new(&[]),
    group: otalite_script_group::OTALITE_SCRIPTS_IDLE,
    phase: otalite_script_phase::OTALITE_PHASE_ENTER,
    ignore_errors: false,
    install: false,
    uri: otalite_str::EMPTY,
    from: 0,
    part: 0,
    request: EMPTY_REQUEST,
    level: otalite_log_level::OTALITE_LOG_INFO,
    message: otalite_str::EMPTY,
    completion: otalite_completion::OTALITE_COMPLETION_NOTHING,
    failed: false,
};

fn group(group: ScriptGroup) -> otalite_script_group {
    use otalite_script_group::*;
    match group {
        ScriptGroup::Idle => OTALITE_SCRIPTS_IDLE,
        ScriptGroup::Sync => OTALITE_SCRIPTS_SYNC,
        ScriptGroup::Download => OTALITE_SCRIPTS_DOWNLOAD,
        ScriptGroup::ArtifactInstall => OTALITE_SCRIPTS_ARTIFACT_INSTALL,
        ScriptGroup::ArtifactReboot => OTALITE_SCRIPTS_ARTIFACT_REBOOT,
        ScriptGroup::ArtifactCommit => OTALITE_SCRIPTS_ARTIFACT_COMMIT,
        ScriptGroup::ArtifactRollback => OTALITE_SCRIPTS_ARTIFACT_ROLLBACK,
        ScriptGroup::ArtifactRollbackReboot => OTALITE_SCRIPTS_ARTIFACT_ROLLBACK_REBOOT,
        ScriptGroup::ArtifactFailure => OTALITE_SCRIPTS_ARTIFACT_FAILURE,
    }
}

/// The C form of `action` (pointers into the agent).
fn action_to_c(action: Action<'_>) -> otalite_action {
    use otalite_action_kind::*;
    let base = EMPTY_ACTION;
    match action {
        Action::Persist { id, record } => otalite_action {
            kind: OTALITE_ACTION_PERSIST,
            id: id.0,
            record: otalite_bytes::new(record),
            ..base
        },
        Action::ModuleCall { id, state } => otalite_action {
            kind: OTALITE_ACTION_MODULE_CALL,
            id: id.0,
            message: otalite_str::new(state.as_str()),
            ..base
        },
        Action::PersistControlMaps { id, record } => otalite_action {
            kind: OTALITE_ACTION_PERSIST_CONTROL_MAPS,
            id: id.0,
            record: otalite_bytes::new(record),
            ..base
        },
        Action::RunScripts {
            id,
            group: g,
            phase,
            ignore_errors,
        } => otalite_action {
            kind: OTALITE_ACTION_RUN_SCRIPTS,
            id: id.0,
            group: group(g),
            phase: match phase {
                ScriptPhase::Enter => otalite_script_phase::OTALITE_PHASE_ENTER,
                ScriptPhase::Leave => otalite_script_phase::OTALITE_PHASE_LEAVE,
                ScriptPhase::Error => otalite_script_phase::OTALITE_PHASE_ERROR,
            },
            ignore_errors,
            ..base
        },
        Action::PrepareSlots { id, install } => otalite_action {
            kind: OTALITE_ACTION_PREPARE_SLOTS,
            id: id.0,
            install,
            ..base
        },
        Action::OpenArtifact { id, uri, from } => otalite_action {
            kind: OTALITE_ACTION_OPEN_ARTIFACT,
            id: id.0,
            uri: otalite_str::new(uri),
            from,
            ..base
        },
        Action::ReadArtifact { id } => otalite_action {
            kind: OTALITE_ACTION_READ_ARTIFACT,
            id: id.0,
            ..base
        },
        Action::SetTrial { id, part } => otalite_action {
            kind: OTALITE_ACTION_SET_TRIAL,
            id: id.0,
            part,
            ..base
        },
        Action::CommitBoot { id } => otalite_action {
            kind: OTALITE_ACTION_COMMIT_BOOT,
            id: id.0,
            ..base
        },
        Action::RollBack { id, part } => otalite_action {
            kind: OTALITE_ACTION_ROLL_BACK,
            id: id.0,
            part,
            ..base
        },
        Action::Reboot { id } => otalite_action {
            kind: OTALITE_ACTION_REBOOT,
            id: id.0,
            ..base
        },
        Action::GatherIdentity { id } => otalite_action {
            kind: OTALITE_ACTION_GATHER_IDENTITY,
            id: id.0,
            ..base
        },
        Action::GatherInventory { id } => otalite_action {
            kind: OTALITE_ACTION_GATHER_INVENTORY,
            id: id.0,
            ..base
        },
        Action::Request { id, request } => otalite_action {
            kind: OTALITE_ACTION_REQUEST,
            id: id.0,
            request: otalite_request {
                method: otalite_str::new(request.method.as_str()),
                server: otalite_str::new(request.server),
                path: otalite_str::new(request.path),
                bearer: otalite_str::new(request.bearer),
                sign_body: request.sign_body,
                body: otalite_bytes::new(request.body),
            },
            ..base
        },
        Action::DeploymentLog { level, message } => otalite_action {
            kind: OTALITE_ACTION_DEPLOYMENT_LOG,
            level: match level {
                LogLevel::Info => otalite_log_level::OTALITE_LOG_INFO,
                LogLevel::Warning => otalite_log_level::OTALITE_LOG_WARNING,
                LogLevel::Error => otalite_log_level::OTALITE_LOG_ERROR,
            },
            message: otalite_str::new(message),
            ..base
        },
        Action::ClearDeploymentLog => otalite_action {
            kind: OTALITE_ACTION_CLEAR_DEPLOYMENT_LOG,
            ..base
        },
        Action::ReadDeploymentLog { id } => otalite_action {
            kind: OTALITE_ACTION_READ_DEPLOYMENT_LOG,
            id: id.0,
            ..base
        },
        Action::Completed {
            completion,
            message,
        } => otalite_action {
            kind: OTALITE_ACTION_COMPLETED,
            completion: match completion {
                Completion::Installed => otalite_completion::OTALITE_COMPLETION_INSTALLED,
                Completion::Updated => otalite_completion::OTALITE_COMPLETION_UPDATED,
                Completion::Committed => otalite_completion::OTALITE_COMPLETION_COMMITTED,
                Completion::RolledBack => otalite_completion::OTALITE_COMPLETION_ROLLED_BACK,
                Completion::Nothing => otalite_completion::OTALITE_COMPLETION_NOTHING,
                Completion::Failed => otalite_completion::OTALITE_COMPLETION_FAILED,
            },
            message: otalite_str::new(message),
            ..base
        },
        Action::Exit { failed, message } => otalite_action {
            kind: OTALITE_ACTION_EXIT,
            failed,
            message: otalite_str::new(message),
            ..base
        },
        // Never emitted here: C agents are made with `HandOffRole::Off`
        // in standalone or managed mode (never `Mode::Jobs`).
        // Should that change without this mapping, the agent stops with
        // a message rather than waiting for an answer that cannot come.
        Action::HandOff { .. }
        | Action::Hook { .. }
        | Action::JobDownload { .. }
        | Action::JobBuiltin { .. }
        | Action::JobFiles { .. } => otalite_action {
            kind: OTALITE_ACTION_EXIT,
            failed: true,
            message: otalite_str::new(
                "hand-off and AWS IoT Jobs actions are not available through the C API",
            ),
            ..base
        },
    }
}

/// The next action into `*action`; `false` (and kind `NONE`) when the
/// agent waits for a completion, a timer or a command. The action's
/// pointers stay valid until the next call that takes the agent.
///
/// # Safety
/// `agent` is NULL or valid agent storage; `action` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn otalite_poll(
    agent: *mut otalite_agent,
    action: *mut otalite_action,
) -> bool {
    // SAFETY: per the function's contract.
    let next = unsafe { self::agent(agent) }
        .and_then(|agent| agent.poll())
        .map_or(EMPTY_ACTION, action_to_c);
    // SAFETY: per the function's contract.
    unsafe { put(action, next) };
    next.kind != otalite_action_kind::OTALITE_ACTION_NONE
}

/// When the agent wants `otalite_handle_timeout` (ms on the host's
/// monotonic clock) into `*at_ms`; `false` when only an input can wake it.
///
/// # Safety
/// `agent` is NULL or valid agent storage; `at_ms` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn otalite_poll_at(agent: *mut otalite_agent, at_ms: *mut u64) -> bool {
    // SAFETY: per the function's contract.
    let at = unsafe { self::agent(agent) }.and_then(|agent| agent.poll_at());
    if let Some(at) = at {
        // SAFETY: per the function's contract.
        unsafe { put(at_ms, at.as_millis()) };
    }
    at.is_some()
}

/// Time passed (call at or after `otalite_poll_at`).
///
/// # Safety
/// `agent` is NULL or valid agent storage.
#[no_mangle]
pub unsafe extern "C" fn otalite_handle_timeout(agent: *mut otalite_agent, now_ms: u64) {
    // SAFETY: per the function's contract.
    if let Some(agent) = unsafe { self::agent(agent) } {
        agent.handle_timeout(now(now_ms));
    }
}

/// A command (`otalite_command` values); `uri`/`uri_len` is the artifact
/// location for `INSTALL` (ignored otherwise).
///
/// # Safety
/// `agent` is NULL or valid agent storage; `uri` is valid for `uri_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn otalite_handle_command(
    agent: *mut otalite_agent,
    now_ms: u64,
    command: u32,
    uri: *const c_char,
    uri_len: usize,
) -> otalite_status {
    // SAFETY: per the function's contract.
    let Some(agent) = (unsafe { self::agent(agent) }) else {
        return OTALITE_ERROR_NOT_INITIALIZED;
    };
    let command = match command {
        0 => {
            // SAFETY: per the function's contract.
            let Some(uri) = (unsafe { text(uri, uri_len) }) else {
                return OTALITE_ERROR_INVALID_ARGUMENT;
            };
            Command::Install { uri }
        }
        1 => Command::Commit,
        2 => Command::Rollback,
        3 => Command::CheckUpdate,
        4 => Command::SendInventory,
        5 => Command::Stop,
        _ => return OTALITE_ERROR_INVALID_ARGUMENT,
    };
    match agent.handle_command(now(now_ms), command) {
        Ok(()) => OTALITE_OK,
        Err(CommandError::WrongMode) => OTALITE_ERROR_WRONG_MODE,
        Err(CommandError::Busy) => OTALITE_ERROR_BUSY,
        Err(CommandError::UriTooLong) => OTALITE_ERROR_URI_TOO_LONG,
        Err(_) => OTALITE_ERROR_INVALID_ARGUMENT,
    }
}

/// The action `id` ended with `outcome` (`otalite_outcome` values; an
/// unknown value counts as `FAILED`); `why`/`why_len` describes a failure
/// (may be NULL/0).
///
/// # Safety
/// `agent` is NULL or valid agent storage; `why` is valid for `why_len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn otalite_handle_done(
    agent: *mut otalite_agent,
    now_ms: u64,
    id: u32,
    outcome: u32,
    why: *const c_char,
    why_len: usize,
) {
    // SAFETY: per the function's contract.
    let (Some(agent), why) = (unsafe { (self::agent(agent), text(why, why_len)) }) else {
        return;
    };
    let why = why.unwrap_or("(not UTF-8)");
    let outcome = match outcome {
        0 => Outcome::Done,
        2 => Outcome::Transient(why),
        _ => Outcome::Failed(why),
    };
    agent.handle_done(now(now_ms), ActionId(id), outcome);
}

/// `PREPARE_SLOTS` `id` found `*slots`, or (`slots` NULL) failed because
/// of `why`.
///
/// # Safety
/// `agent` is NULL or valid agent storage; `slots` is NULL or readable;
/// `why` is valid for `why_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn otalite_handle_slots(
    agent: *mut otalite_agent,
    now_ms: u64,
    id: u32,
    slots: *const otalite_slots,
    why: *const c_char,
    why_len: usize,
) {
    // SAFETY: per the function's contract.
    let (Some(agent), slots, why) =
        (unsafe { (self::agent(agent), get(slots), text(why, why_len)) })
    else {
        return;
    };
    let slots = match slots {
        Some(slots) => Ok(Slots {
            active: slots.active,
            inactive: slots.inactive,
            proven_by_root_device: slots.proven_by_root_device,
        }),
        None => Err(why.unwrap_or("the slots could not be found")),
    };
    agent.handle_slots(now(now_ms), ActionId(id), slots);
}

/// Script output (`GATHER_IDENTITY`, `GATHER_INVENTORY`) or the stored
/// deployment log (`READ_DEPLOYMENT_LOG`) for action `id`.
///
/// # Safety
/// `agent` is NULL or valid agent storage; `data` is valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn otalite_handle_data(
    agent: *mut otalite_agent,
    now_ms: u64,
    id: u32,
    data: *const u8,
    len: usize,
) {
    // SAFETY: per the function's contract.
    if let (Some(agent), Some(data)) = unsafe { (self::agent(agent), bytes(data, len)) } {
        agent.handle_data(now(now_ms), ActionId(id), data);
    }
}

/// The answer to `REQUEST` `id`: HTTP status and body.
///
/// # Safety
/// `agent` is NULL or valid agent storage; `body` is valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn otalite_handle_response(
    agent: *mut otalite_agent,
    now_ms: u64,
    id: u32,
    status: u16,
    body: *const u8,
    len: usize,
) {
    // SAFETY: per the function's contract.
    if let (Some(agent), Some(body)) = unsafe { (self::agent(agent), bytes(body, len)) } {
        agent.handle_response(now(now_ms), ActionId(id), status, body);
    }
}

/// The next artifact bytes of the running `READ_ARTIFACT`: the payload
/// goes into `*slot` through its callbacks (in blocks of the `block`
/// buffer), scripts to `*hooks` (NULL: dropped). `COMPLETE` and `STOP` end
/// the `READ_ARTIFACT`: close the stream, no `otalite_handle_done`
/// follows.
///
/// # Safety
/// `agent` is NULL or valid agent storage; `bytes` is valid for `len`
/// bytes; `slot` is readable and its callbacks honour their contract;
/// `hooks` is NULL or readable, likewise.
#[no_mangle]
pub unsafe extern "C" fn otalite_handle_artifact(
    agent: *mut otalite_agent,
    now_ms: u64,
    bytes: *const u8,
    len: usize,
    slot: *const otalite_slot,
    hooks: *const otalite_install_hooks,
) -> otalite_feed {
    // SAFETY: per the function's contract.
    let (agent, data, slot, hooks) = unsafe {
        (
            self::agent(agent),
            self::bytes(bytes, len),
            get(slot),
            get(hooks),
        )
    };
    let (Some(agent), Some(data), Some(slot)) = (agent, data, slot) else {
        return otalite_feed::OTALITE_FEED_STOP;
    };
    match agent.handle_artifact(now(now_ms), data, &mut CSlot(slot), &mut CHooks(hooks)) {
        Feed::Continue => otalite_feed::OTALITE_FEED_CONTINUE,
        Feed::Complete => otalite_feed::OTALITE_FEED_COMPLETE,
        Feed::Stop => otalite_feed::OTALITE_FEED_STOP,
    }
}

/// The persisted update step (as last persisted, or about to be).
///
/// # Safety
/// `agent` is NULL or valid agent storage.
#[no_mangle]
pub unsafe extern "C" fn otalite_agent_step(agent: *mut otalite_agent) -> otalite_step {
    use otalite_step::*;
    // SAFETY: per the function's contract.
    match unsafe { self::agent(agent) }.map(|agent| &agent.record().step) {
        None | Some(UpdateStep::Idle) => OTALITE_STEP_IDLE,
        Some(UpdateStep::Downloading(_)) => OTALITE_STEP_DOWNLOADING,
        Some(UpdateStep::Installed(_)) => OTALITE_STEP_INSTALLED,
        Some(UpdateStep::Rebooting(_)) => OTALITE_STEP_REBOOTING,
        Some(UpdateStep::Committing(_)) => OTALITE_STEP_COMMITTING,
        Some(UpdateStep::RollingBack(_)) => OTALITE_STEP_ROLLING_BACK,
        Some(UpdateStep::Reporting(_)) => OTALITE_STEP_REPORTING,
        Some(UpdateStep::RollbackRebooting(_)) => OTALITE_STEP_ROLLBACK_REBOOTING,
        Some(UpdateStep::HandingOff(_)) => OTALITE_STEP_HANDING_OFF,
        Some(UpdateStep::HandedOff(_)) => OTALITE_STEP_HANDED_OFF,
        Some(UpdateStep::Job(_)) => OTALITE_STEP_JOB,
    }
}

/// The update module call `id` ended: `ok` with its trimmed standard
/// output in `text` (the query states read it), or failed because of
/// `text`.
///
/// # Safety
/// `agent` is NULL or valid agent storage; `text` is valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn otalite_handle_module(
    agent: *mut otalite_agent,
    now_ms: u64,
    id: u32,
    ok: bool,
    text: *const c_char,
    len: usize,
) {
    // SAFETY: per the function's contract.
    let (Some(agent), text) = (unsafe { (self::agent(agent), self::text(text, len)) }) else {
        return;
    };
    let text = text.unwrap_or("(not UTF-8)");
    let result = if ok { Ok(text) } else { Err(text) };
    agent.handle_module(now(now_ms), ActionId(id), result);
}

/// Gives the agent the Update Control Map pool stored from an
/// `OTALITE_ACTION_PERSIST_CONTROL_MAPS` before this start (call it once,
/// after `otalite_agent_init`, before the first poll).
/// `OTALITE_ERROR_INVALID_RECORD` when the bytes are damaged (the pool
/// stays empty).
///
/// # Safety
/// `agent` is NULL or valid agent storage; `record` is valid for `len`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn otalite_agent_load_control_maps(
    agent: *mut otalite_agent,
    now_ms: u64,
    record: *const u8,
    len: usize,
) -> otalite_status {
    use otalite_status::*;
    // SAFETY: per the function's contract.
    let (Some(agent), Some(record)) = (unsafe { (self::agent(agent), bytes(record, len)) }) else {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    };
    match agent.load_control_maps(now(now_ms), record) {
        Ok(()) => OTALITE_OK,
        Err(_) => OTALITE_ERROR_INVALID_RECORD,
    }
}

/// An Update Control Map from a local application (the JSON of
/// `io.mender.Update1.SetUpdateControlMap`): on success `*refresh_s` is the
/// interval to send it again within. `OTALITE_ERROR_INVALID_ARGUMENT` for
/// an invalid map (nothing changes).
///
/// # Safety
/// `agent` is NULL or valid agent storage; `json` is valid for `len`
/// bytes; `refresh_s` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn otalite_set_control_map(
    agent: *mut otalite_agent,
    now_ms: u64,
    json: *const u8,
    len: usize,
    refresh_s: *mut u32,
) -> otalite_status {
    use otalite_status::*;
    // SAFETY: per the function's contract.
    let (Some(agent), Some(json)) = (unsafe { (self::agent(agent), bytes(json, len)) }) else {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    };
    match agent.set_control_map(now(now_ms), json) {
        Ok(secs) => {
            if !refresh_s.is_null() {
                // SAFETY: non-null and writable by the caller's contract.
                unsafe { refresh_s.write(secs) };
            }
            OTALITE_OK
        }
        Err(_) => OTALITE_ERROR_INVALID_ARGUMENT,
    }
}

/// The installed artifact's name (valid until the next call that takes
/// the agent).
///
/// # Safety
/// `agent` is NULL or valid agent storage.
#[no_mangle]
pub unsafe extern "C" fn otalite_agent_installed(agent: *mut otalite_agent) -> otalite_str {
    // SAFETY: per the function's contract.
    unsafe { self::agent(agent) }.map_or(otalite_str::EMPTY, |agent| {
        otalite_str::new(&agent.record().installed.artifact_name)
    })
}

/// The last failure or result message (valid until the next call that
/// takes the agent).
///
/// # Safety
/// `agent` is NULL or valid agent storage.
#[no_mangle]
pub unsafe extern "C" fn otalite_agent_message(agent: *mut otalite_agent) -> otalite_str {
    // SAFETY: per the function's contract.
    unsafe { self::agent(agent) }.map_or(otalite_str::EMPTY, |agent| {
        otalite_str::new(agent.message())
    })
}

/// The location of the artifact being downloaded (the `uri` of the last
/// `OPEN_ARTIFACT`), from that action until the download ended; empty
/// (`len` 0) otherwise. It points into the agent and stays valid until the
/// next call that changes the agent (`otalite_poll`, `otalite_handle_*`),
/// so a host that reopens or logs the stream need not copy the action's
/// `uri`.
///
/// # Safety
/// `agent` is NULL or valid agent storage.
#[no_mangle]
pub unsafe extern "C" fn otalite_agent_artifact_uri(agent: *mut otalite_agent) -> otalite_str {
    // SAFETY: per the function's contract.
    unsafe { self::agent(agent) }
        .and_then(|agent| agent.artifact_uri())
        .map_or(otalite_str::EMPTY, otalite_str::new)
}

/// The agent waits for artifact bytes.
///
/// # Safety
/// `agent` is NULL or valid agent storage.
#[no_mangle]
pub unsafe extern "C" fn otalite_wants_artifact(agent: *mut otalite_agent) -> bool {
    // SAFETY: per the function's contract.
    unsafe { self::agent(agent) }.is_some_and(|agent| agent.wants_artifact())
}

/// The agent has stopped (an `EXIT` action was returned).
///
/// # Safety
/// `agent` is NULL or valid agent storage.
#[no_mangle]
pub unsafe extern "C" fn otalite_has_exited(agent: *mut otalite_agent) -> bool {
    // SAFETY: per the function's contract.
    unsafe { self::agent(agent) }.is_none_or(|agent| agent.has_exited())
}

/// The file-name part of a script group (an `otalite_script_group`
/// value): `"ArtifactInstall"`..., a static NUL-terminated string (empty
/// for an unknown value).
#[no_mangle]
pub extern "C" fn otalite_script_group_name(group: u32) -> *const c_char {
    let name: &CStr = match group {
        0 => c"Idle",
        1 => c"Sync",
        2 => c"Download",
        3 => c"ArtifactInstall",
        4 => c"ArtifactReboot",
        5 => c"ArtifactCommit",
        6 => c"ArtifactRollback",
        7 => c"ArtifactRollbackReboot",
        8 => c"ArtifactFailure",
        _ => c"",
    };
    name.as_ptr()
}

// -------------------------------------------------------------------
// HTTP framing.

fn framing_status(error: FramingError) -> otalite_status {
    match error {
        FramingError::BufferTooSmall { .. } => OTALITE_ERROR_BUFFER_TOO_SMALL,
        FramingError::MissingSignature => OTALITE_ERROR_MISSING_SIGNATURE,
        FramingError::InvalidUrl => OTALITE_ERROR_INVALID_URL,
        _ => OTALITE_ERROR_INVALID_ARGUMENT,
    }
}

/// Splits the URL `url`/`len` into `*out` (texts point into `url`).
///
/// # Safety
/// `url` is valid for `len` bytes (and stays so while `*out` is used);
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn otalite_url_parse(
    url: *const c_char,
    len: usize,
    out: *mut otalite_url,
) -> otalite_status {
    // SAFETY: per the function's contract.
    let Some(url) = (unsafe { text(url, len) }) else {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    };
    let Some(parsed) = HttpUrl::parse(url) else {
        return OTALITE_ERROR_INVALID_URL;
    };
    let value = otalite_url {
        https: parsed.https,
        host: otalite_str::new(parsed.host),
        port: parsed.port,
        authority: otalite_str::new(parsed.authority),
        target: otalite_str::new(parsed.target),
    };
    // SAFETY: per the function's contract.
    unsafe { put(out, value) };
    OTALITE_OK
}

/// Writes the HTTP/1.1 head of `*request` into `out` (`cap` bytes;
/// `OTALITE_REQUEST_HEAD_MAX` always suffices) and stores its length in
/// `*len` (the size needed when the buffer is too small). The `Host` is
/// the authority of `request->server`; `signature`/`signature_len` is the
/// `X-MEN-Signature` value, required when `request->sign_body` (NULL/0
/// otherwise). The head ends with the blank line; send `request->body`
/// after it. See `Request::write_head` for the headers written.
///
/// # Safety
/// `request` is readable and its texts valid; `signature` is valid for
/// `signature_len` bytes; `out` for `cap` bytes; `len` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn otalite_request_head(
    request: *const otalite_request,
    signature: *const c_char,
    signature_len: usize,
    out: *mut u8,
    cap: usize,
    len: *mut usize,
) -> otalite_status {
    // SAFETY: per the function's contract.
    let Some(c) = (unsafe { get(request) }) else {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    };
    // SAFETY: per the function's contract (the texts of `*request`).
    let fields = unsafe {
        (
            text(c.method.ptr, c.method.len),
            text(c.server.ptr, c.server.len),
            text(c.path.ptr, c.path.len),
            text(c.bearer.ptr, c.bearer.len),
            bytes(c.body.ptr, c.body.len),
            text(signature, signature_len),
            bytes_mut(out, cap),
        )
    };
    let (Some(method), Some(server), Some(path), Some(bearer), Some(body), signature, Some(out)) =
        fields
    else {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    };
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        _ => return OTALITE_ERROR_INVALID_ARGUMENT,
    };
    let Some(url) = HttpUrl::parse(server) else {
        return OTALITE_ERROR_INVALID_URL;
    };
    let request = Request {
        method,
        server,
        path,
        bearer,
        sign_body: c.sign_body,
        body,
    };
    let signature = signature.filter(|s| !s.is_empty());
    let (status, written) = match request.write_head(url.authority, signature, out) {
        Ok(written) => (OTALITE_OK, written),
        Err(error @ FramingError::BufferTooSmall { required }) => (framing_status(error), required),
        Err(error) => (framing_status(error), 0),
    };
    // SAFETY: per the function's contract.
    unsafe { put(len, written) };
    status
}

/// Writes the `GET` head for an `OPEN_ARTIFACT` of `uri`/`uri_len` from
/// byte `from` (with `Range` when `from` > 0: expect `206`) into `out` and
/// its length into `*len` (the size needed when the buffer is too small).
///
/// # Safety
/// `uri` is valid for `uri_len` bytes; `out` for `cap` bytes; `len` is NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn otalite_download_head(
    uri: *const c_char,
    uri_len: usize,
    from: u64,
    out: *mut u8,
    cap: usize,
    len: *mut usize,
) -> otalite_status {
    // SAFETY: per the function's contract.
    let (Some(uri), Some(out)) = (unsafe { (text(uri, uri_len), bytes_mut(out, cap)) }) else {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    };
    let (status, written) = match otalite::agent::write_download_head(uri, from, out) {
        Ok(written) => (OTALITE_OK, written),
        Err(error @ FramingError::BufferTooSmall { required }) => (framing_status(error), required),
        Err(error) => (framing_status(error), 0),
    };
    // SAFETY: per the function's contract.
    unsafe { put(len, written) };
    status
}

/// The reader in `response`.
///
/// # Safety
/// `response` is NULL or storage set up by `otalite_response_init` that
/// nothing else accesses during `'a`.
unsafe fn reader<'a>(response: *mut otalite_response) -> Option<&'a mut ResponseReader> {
    if response.is_null() {
        return None;
    }
    // SAFETY: set up by `otalite_response_init` (the contract), large and
    // aligned enough (asserted above).
    Some(unsafe { &mut *response.cast::<ResponseReader>() })
}

/// Sets up a response reader in `response` (caller storage of
/// `OTALITE_RESPONSE_SIZE` bytes) for the answer to one request (not a
/// `HEAD`). Call again for the next response.
///
/// # Safety
/// `response` is NULL or writable storage.
#[no_mangle]
pub unsafe extern "C" fn otalite_response_init(response: *mut otalite_response) {
    // SAFETY: writable and large and aligned enough for a `ResponseReader`
    // (asserted above); it holds no value that needs dropping.
    unsafe {
        put(
            response.cast::<ResponseReader>(),
            ResponseReader::new(false),
        )
    };
}

/// Feeds the bytes read from the connection (`input`, `input_len`); body
/// bytes (decoded from `Content-Length`, chunked or until-close framing) go
/// to `body` (`body_cap` bytes). Stores the input bytes used in
/// `*consumed` and the body bytes written in `*produced`.
///
/// # Safety
/// `response` was set up by `otalite_response_init`; `input` is valid for
/// `input_len` bytes; `body` for `body_cap` bytes; `consumed` and
/// `produced` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn otalite_response_feed(
    response: *mut otalite_response,
    input: *const u8,
    input_len: usize,
    consumed: *mut usize,
    body: *mut u8,
    body_cap: usize,
    produced: *mut usize,
) -> otalite_response_state {
    use otalite_response_state::*;
    // SAFETY: per the function's contract.
    let (reader, input, body) = unsafe {
        (
            reader(response),
            bytes(input, input_len),
            bytes_mut(body, body_cap),
        )
    };
    let (Some(reader), Some(input), Some(body)) = (reader, input, body) else {
        return OTALITE_RESPONSE_ERROR;
    };
    let (state, used, made) = match reader.push(input, body) {
        Ok(step) => (
            match step.status {
                ResponseStatus::NeedsMoreInput => OTALITE_RESPONSE_NEED_INPUT,
                ResponseStatus::HasMoreOutput => OTALITE_RESPONSE_BODY_FULL,
                ResponseStatus::Done => OTALITE_RESPONSE_DONE,
            },
            step.consumed,
            step.produced,
        ),
        Err(_) => (OTALITE_RESPONSE_ERROR, 0, 0),
    };
    // SAFETY: per the function's contract.
    unsafe {
        put(consumed, used);
        put(produced, made);
    }
    state
}

/// The connection closed: `DONE` when the response is complete (a body
/// delimited by the close ends here), `ERROR` when it was cut short.
///
/// # Safety
/// `response` was set up by `otalite_response_init`.
#[no_mangle]
pub unsafe extern "C" fn otalite_response_close(
    response: *mut otalite_response,
) -> otalite_response_state {
    // SAFETY: per the function's contract.
    match unsafe { reader(response) }.map(ResponseReader::finish) {
        Some(Ok(())) => otalite_response_state::OTALITE_RESPONSE_DONE,
        _ => otalite_response_state::OTALITE_RESPONSE_ERROR,
    }
}

/// The status code once the head is complete, 0 before.
///
/// # Safety
/// `response` was set up by `otalite_response_init`.
#[no_mangle]
pub unsafe extern "C" fn otalite_response_status(response: *mut otalite_response) -> u16 {
    // SAFETY: per the function's contract.
    unsafe { reader(response) }
        .and_then(|reader| reader.head())
        .map_or(0, |head| head.status)
}

/// One whole response in `raw` (`len` bytes: head and body): stores the
/// status and where the body is (`raw + *body_start`, `*body_len` bytes;
/// a chunked body is decoded in place). `closed`: the connection closed.
/// Returns `OTALITE_ERROR_INCOMPLETE` when more bytes are needed.
///
/// # Safety
/// `raw` is valid for reads and writes of `len` bytes; the out pointers
/// are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn otalite_parse_response(
    raw: *mut u8,
    len: usize,
    closed: bool,
    status: *mut u16,
    body_start: *mut usize,
    body_len: *mut usize,
) -> otalite_status {
    // SAFETY: per the function's contract.
    let Some(raw) = (unsafe { bytes_mut(raw, len) }) else {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    };
    match otalite::protocol::http::parse_response(raw, closed) {
        Ok(Some(parsed)) => {
            // SAFETY: per the function's contract.
            unsafe {
                put(status, parsed.status);
                put(body_start, parsed.body_start);
                put(body_len, parsed.body_len);
            }
            OTALITE_OK
        }
        Ok(None) => OTALITE_ERROR_INCOMPLETE,
        Err(_) => OTALITE_ERROR_BAD_RESPONSE,
    }
}

// -------------------------------------------------------------------
// The device key.

/// The key of a 32-byte secret.
///
/// # Safety
/// `secret` is NULL or valid for 32 bytes.
unsafe fn p256_key(secret: *const u8) -> Option<p256::ecdsa::SigningKey> {
    // SAFETY: per the function's contract.
    let secret = unsafe { bytes(secret, OTALITE_P256_SECRET_SIZE) }?;
    crate::sign::secret_key(secret.try_into().ok()?)
}

/// `true` when the 32 bytes at `secret` are a usable P-256 secret key (a
/// big-endian scalar in `1..n`; 32 random bytes almost always are).
///
/// # Safety
/// `secret` is NULL or valid for 32 bytes.
#[no_mangle]
pub unsafe extern "C" fn otalite_p256_check_secret(secret: *const u8) -> bool {
    // SAFETY: per the function's contract.
    unsafe { p256_key(secret) }.is_some()
}

/// Writes the public key of `secret` (32 bytes) as SubjectPublicKeyInfo
/// PEM, NUL-terminated, into `out` (`cap` >=
/// `OTALITE_P256_PUBLIC_KEY_PEM_SIZE`); `*len` gets its length without
/// the NUL.
///
/// # Safety
/// `secret` is valid for 32 bytes; `out` for `cap` bytes; `len` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn otalite_p256_public_key_pem(
    secret: *const u8,
    out: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> otalite_status {
    // SAFETY: per the function's contract.
    let (key, out) = unsafe { (p256_key(secret), bytes_mut(out.cast(), cap)) };
    let (Some(out), false) = (out, secret.is_null()) else {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    };
    let Some(key) = key else {
        return OTALITE_ERROR_INVALID_KEY;
    };
    if cap < OTALITE_P256_PUBLIC_KEY_PEM_SIZE {
        return OTALITE_ERROR_BUFFER_TOO_SMALL;
    }
    let Some(written) = crate::sign::public_key_pem(&key, out) else {
        return OTALITE_ERROR_BUFFER_TOO_SMALL;
    };
    if let Some(nul) = out.get_mut(written) {
        *nul = 0;
    }
    // SAFETY: per the function's contract.
    unsafe { put(len, written) };
    OTALITE_OK
}

/// Signs `body` with `secret` (ECDSA P-256, SHA-256, RFC 6979) and writes
/// the `X-MEN-Signature` value (base64 of the DER signature),
/// NUL-terminated, into `out` (`cap` >= `OTALITE_P256_SIGNATURE_SIZE`);
/// `*len` gets its length without the NUL.
///
/// # Safety
/// `secret` is valid for 32 bytes; `body` for `body_len`; `out` for `cap`;
/// `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn otalite_p256_sign(
    secret: *const u8,
    body: *const u8,
    body_len: usize,
    out: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> otalite_status {
    // SAFETY: per the function's contract.
    let (key, body, out) = unsafe {
        (
            p256_key(secret),
            bytes(body, body_len),
            bytes_mut(out.cast(), cap),
        )
    };
    let (Some(body), Some(out)) = (body, out) else {
        return OTALITE_ERROR_INVALID_ARGUMENT;
    };
    let Some(key) = key else {
        return OTALITE_ERROR_INVALID_KEY;
    };
    if cap < OTALITE_P256_SIGNATURE_SIZE {
        return OTALITE_ERROR_BUFFER_TOO_SMALL;
    }
    let Some(written) = crate::sign::sign(&key, body, out) else {
        return OTALITE_ERROR_BUFFER_TOO_SMALL;
    };
    if let Some(nul) = out.get_mut(written) {
        *nul = 0;
    }
    // SAFETY: per the function's contract.
    unsafe { put(len, written) };
    OTALITE_OK
}
