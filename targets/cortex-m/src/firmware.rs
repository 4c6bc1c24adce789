//! The agent's memory, its start and the host loop that runs its actions.

use core::hint::black_box;

use cortex_m_rt::entry;
use otalite::agent::{
    Action, ActionId, Agent, AgentBuffers, AgentConfig, Command, Feed, HandOffRole, Mode, Outcome,
    ServerSettings, Slots, Timing,
};
use otalite::artifact::verify::VerifyKey;
use otalite::artifact::{ArtifactReader, WINDOW_LEN};
use otalite::store::{StateRecord, MAX_RECORD_LEN};
use static_cell::{ConstStaticCell, StaticCell};

use crate::board::{self, Hooks, Slot};
use crate::transport::{Stream, TransferError, RESPONSE_LEN, RX_LEN};

/// Request bodies (inventory, status, `next`, logs): the agent's minimum.
const REQUEST_LEN: usize = 16 * 1024;
/// The authentication request body: the agent's minimum.
const AUTH_LEN: usize = 8 * 1024;
/// Artifact reader output (inflated payload) per step.
const OUTPUT_LEN: usize = 4 * 1024;
/// One flash sector: the unit the slot is compared, erased and written in.
const BLOCK_LEN: usize = 4 * 1024;
/// Read-back compare chunk.
const COMPARE_LEN: usize = 1024;

/// This device's type (`device_type`).
const DEVICE_TYPE: &str = "cortex-m4f-demo";
/// The key artifacts are signed with (ECDSA P-256; the tests' fixture key).
const ARTIFACT_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEUpuM+0o7jB5gWFaa3kEcSkMs+EmE
IHKjaOXs+cskCqb17DHfVrXIjK8bNrwvTNDKvMWJN2BWErdc2/VfZlHdEA==
-----END PUBLIC KEY-----
";
/// The device key's public half, sent when authenticating.
const DEVICE_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEUpuM+0o7jB5gWFaa3kEcSkMs+EmE
IHKjaOXs+cskCqb17DHfVrXIjK8bNrwvTNDKvMWJN2BWErdc2/VfZlHdEA==
-----END PUBLIC KEY-----
";
/// The Mender server.
const SERVERS: &[&str] = &["https://hosted.mender.io"];
/// The reference's default intervals.
const TIMING: Timing = Timing {
    update_poll: 1_800_000,
    inventory_poll: 28_800_000,
    retry_poll: 300_000,
    retry_poll_count: 0,
    backoff_unit: 60_000,
    reboot_wait: 600_000,
    control_map_expiration: 3_600_000,
    control_map_boot_expiration: 600_000,
};

/// The agent's buffers ([`AgentBuffers`]), zeroed in `.bss`.
struct Buffers {
    record: [u8; MAX_RECORD_LEN],
    request: [u8; REQUEST_LEN],
    auth: [u8; AUTH_LEN],
    output: [u8; OUTPUT_LEN],
    window: [u8; WINDOW_LEN],
    block: [u8; BLOCK_LEN],
    compare: [u8; COMPARE_LEN],
}

static BUFFERS: ConstStaticCell<Buffers> = ConstStaticCell::new(Buffers {
    record: [0; MAX_RECORD_LEN],
    request: [0; REQUEST_LEN],
    auth: [0; AUTH_LEN],
    output: [0; OUTPUT_LEN],
    window: [0; WINDOW_LEN],
    block: [0; BLOCK_LEN],
    compare: [0; COMPARE_LEN],
});
/// The response body buffer (also the request head on the way out).
static RESPONSE: ConstStaticCell<[u8; RESPONSE_LEN]> = ConstStaticCell::new([0; RESPONSE_LEN]);
static KEYS: StaticCell<[VerifyKey; 1]> = StaticCell::new();
static AGENT: StaticCell<Agent<'static>> = StaticCell::new();
static STREAM: StaticCell<Stream> = StaticCell::new();

/// Type sizes on the target, read from the ELF by `cargo xtask size`:
/// `Agent`, `ArtifactReader`, `StateRecord`, the agent's buffers, the
/// host's socket stream (HTTP head parser and receive buffer).
static SIZES: [u32; 5] = [
    size_of::<Agent<'static>>() as u32,
    size_of::<ArtifactReader>() as u32,
    size_of::<StateRecord>() as u32,
    size_of::<Buffers>() as u32,
    size_of::<Stream>() as u32,
];

/// Stops the firmware on a panic (the core has no panicking paths by its
/// lints; this catches the rest).
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    board::halt()
}

#[entry]
fn main() -> ! {
    // Keeps the sizes in the image for the size report.
    black_box(&SIZES);
    let keys: &'static [VerifyKey] =
        match VerifyKey::from_pem(black_box(ARTIFACT_KEY_PEM.as_bytes())) {
            Ok(key) => KEYS.init([key]),
            Err(_) => &[],
        };
    let config = black_box(AgentConfig {
        device_type: DEVICE_TYPE,
        keys,
        // Signed artifacts only, even if the key did not load.
        signatures_required: true,
        timing: TIMING,
        mode: Mode::Managed(ServerSettings {
            servers: SERVERS,
            tenant_token: "",
            public_key_pem: DEVICE_KEY_PEM,
            client_version: env!("CARGO_PKG_VERSION"),
            hand_off: HandOffRole::Off,
        }),
    });
    let record = StateRecord::decode(board::read_record()).unwrap_or_default();
    let buffers = BUFFERS.take();
    let agent = Agent::new(
        config,
        record,
        board::boot_state(),
        AgentBuffers {
            record: &mut buffers.record,
            request: &mut buffers.request,
            auth: &mut buffers.auth,
            output: &mut buffers.output,
            window: &mut buffers.window,
            block: &mut buffers.block,
            compare: &mut buffers.compare,
        },
    );
    let Ok(agent) = agent else { board::halt() };
    let mut host = Host {
        stream: STREAM.init(Stream::new()),
        response: RESPONSE.take(),
        slot: Slot::new(),
        hooks: Hooks,
    };
    host.run(AGENT.init(agent))
}

/// How an action ended, to hand back to the agent once its borrow ends.
enum Done {
    Nothing,
    Outcome(ActionId, Result<(), TransferError>),
    Slots(ActionId, Slots),
    Data(ActionId, usize),
    Response(ActionId, u16, usize),
    Read(ActionId),
    /// An update module call's result.
    Module(ActionId, Result<&'static str, &'static str>),
}

/// The host side: socket, response buffer, slot, hooks.
struct Host {
    stream: &'static mut Stream,
    response: &'static mut [u8; RESPONSE_LEN],
    slot: Slot,
    hooks: Hooks,
}

impl Host {
    /// The agent's loop: run actions, sleep until the next timer, take
    /// button presses.
    fn run(&mut self, agent: &mut Agent<'_>) -> ! {
        loop {
            if board::button_pressed() {
                let _ = agent.handle_command(board::now(), Command::CheckUpdate);
            }
            let done = match agent.poll() {
                Some(action) => self.execute(action),
                None => {
                    if agent.has_exited() {
                        board::halt();
                    }
                    if let Some(at) = agent.poll_at() {
                        board::sleep_until(at);
                        agent.handle_timeout(board::now());
                    }
                    continue;
                }
            };
            let now = board::now();
            match done {
                Done::Nothing => {}
                Done::Outcome(id, Ok(())) => agent.handle_done(now, id, Outcome::Done),
                Done::Outcome(id, Err(why)) => agent.handle_done(now, id, Outcome::Transient(why)),
                Done::Slots(id, slots) => agent.handle_slots(now, id, Ok(slots)),
                Done::Data(id, len) => {
                    agent.handle_data(now, id, self.response.get(..len).unwrap_or_default());
                }
                Done::Response(id, status, len) => agent.handle_response(
                    now,
                    id,
                    status,
                    self.response.get(..len).unwrap_or_default(),
                ),
                Done::Read(id) => self.read_artifact(agent, id),
                Done::Module(id, result) => agent.handle_module(now, id, result),
            }
        }
    }

    /// Runs one action.
    fn execute(&mut self, action: Action<'_>) -> Done {
        match action {
            Action::Persist { id, record } => Done::Outcome(id, board::write_record(record)),
            // This board has one flash record (the state): the agent keeps
            // the Update Control Maps in RAM, and a reset forgets them
            // (maps from the server come back with the next deployment).
            Action::PersistControlMaps { id, .. } => Done::Outcome(id, Ok(())),
            // This firmware streams rootfs payloads only (its install hooks
            // refuse module payloads), so no module install can be pending.
            Action::ModuleCall { id, .. } => {
                Done::Module(id, Err("this device has no update modules"))
            }
            // No state scripts on this device.
            Action::RunScripts { id, .. } => Done::Outcome(id, Ok(())),
            Action::PrepareSlots { id, .. } => Done::Slots(id, board::slots()),
            Action::OpenArtifact { id, uri, from } => {
                Done::Outcome(id, self.stream.open(uri, from, &mut self.response[..]))
            }
            Action::ReadArtifact { id } => Done::Read(id),
            Action::SetTrial { id, part } => {
                Done::Outcome(id, board::write_boot_flags("trial", part))
            }
            Action::CommitBoot { id } => Done::Outcome(id, board::write_boot_flags("confirm", 0)),
            Action::RollBack { id, part } => {
                Done::Outcome(id, board::write_boot_flags("revert", part))
            }
            Action::Reboot { .. } => board::reset(),
            Action::GatherIdentity { id } => {
                Done::Data(id, board::identity(&mut self.response[..]))
            }
            Action::GatherInventory { id } => {
                Done::Data(id, board::inventory(&mut self.response[..]))
            }
            Action::Request { id, request } => {
                match self.stream.exchange(&request, &mut self.response[..]) {
                    Ok((status, len)) => Done::Response(id, status, len),
                    Err(why) => Done::Outcome(id, Err(why)),
                }
            }
            Action::DeploymentLog { level, message } => {
                board::log_append(level, message);
                Done::Nothing
            }
            Action::ClearDeploymentLog => {
                board::log_clear();
                Done::Nothing
            }
            Action::ReadDeploymentLog { id } => {
                Done::Data(id, board::log_read(&mut self.response[..]))
            }
            // Standalone mode only.
            Action::Completed { .. } => Done::Nothing,
            Action::Exit { .. } => board::halt(),
            // Never emitted: this firmware installs from a Mender server
            // itself (`HandOffRole::Off`, not `Mode::Jobs`); a stop is the
            // safe answer should that ever change without this loop.
            Action::HandOff { .. }
            | Action::Hook { .. }
            | Action::JobDownload { .. }
            | Action::JobBuiltin { .. }
            | Action::JobFiles { .. } => board::halt(),
        }
    }

    /// Feeds the open artifact stream to the agent until it has enough or
    /// the stream ends.
    fn read_artifact(&mut self, agent: &mut Agent<'_>, id: ActionId) {
        let mut chunk = [0u8; RX_LEN];
        loop {
            let len = match self.stream.body(&mut chunk) {
                Ok(0) => {
                    agent.handle_done(board::now(), id, Outcome::Done);
                    return;
                }
                Ok(len) => len,
                Err(why) => {
                    agent.handle_done(board::now(), id, Outcome::Transient(why));
                    return;
                }
            };
            let bytes = chunk.get(..len).unwrap_or_default();
            match agent.handle_artifact(board::now(), bytes, &mut self.slot, &mut self.hooks) {
                Feed::Continue => {}
                Feed::Complete | Feed::Stop => return,
            }
        }
    }
}
