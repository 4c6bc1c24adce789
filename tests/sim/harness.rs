//! The simulated device and world around one [`Agent`]: a clock that jumps
//! to [`Agent::poll_at`], two in-memory slots (A = 2, B = 3) behind a
//! simulated U-Boot (`bootlimit=1`), an atomically replaced "disk" for the
//! state record, in-memory state scripts, a scripted Mender server and an
//! artifact store with a flaky network. Nothing sleeps and nothing is
//! random unless a test seeds it, so every run is reproducible.
//!
//! The driver follows quinn-proto's `tests/util.rs`: [`World::step`] runs
//! one action, [`World::drive`] runs until something a test cares about
//! (a completion, an exit, a reboot, a power cut, idle), and
//! [`World::drive_bounded`] fails a test that does not get there.
//!
//! Power cuts: every `Persist` and every boot-env write is a numbered
//! "effect" with two cut points, before it takes effect and after; a
//! [`Cut`] names one, or a byte budget for the slot writes
//! (`MemPartition::bytes_until_shutoff`). When the power goes, the agent is
//! dropped mid-action; [`World::power_on`] runs the bootloader and the next
//! agent starts from what the disk and the env hold.

use otalite::agent::{
    Action, ActionId, Agent, AgentBuffers, AgentConfig, Command, Completion, Feed, HandOffEvent,
    HandOffOp, HandOffRole, Hook, HookOutcome, HookPolicy, Instant, LogLevel, Method, Mode,
    Outcome, ScriptGroup, ScriptPhase, ServerSettings, Slots, Timing,
};
use otalite::board::{BootControl, BootEnv, BootState, MenderBootControl, PartNumber};
use otalite::device::{provide, Provides};
use otalite::mock::{MemBootEnv, MemPartition};
use otalite::store::{StateRecord, UpdateStep};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;

pub const SLOT_LEN: usize = 8192;
pub const A: PartNumber = 2;
pub const B: PartNumber = 3;
pub const DEVICE_TYPE: &str = "beaglebone";
pub const SERVER: &str = "https://sim.invalid";
pub const BOOTLIMIT: u32 = 1;
/// The name the factory image carries.
pub const FACTORY: &str = "factory";
/// Block buffer of the agent: small, so an image is written in several
/// blocks (and a power cut can tear one).
pub const BLOCK_LEN: usize = 512;

static SERVERS: [&str; 1] = [SERVER];
const PUBLIC_KEY: &str =
    "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAsim\n-----END PUBLIC KEY-----\n";

pub const TIMING: Timing = Timing {
    update_poll: 1_800_000,
    inventory_poll: 28_800_000,
    retry_poll: 300_000,
    retry_poll_count: 0,
    backoff_unit: 60_000,
    reboot_wait: 600_000,
    control_map_expiration: 3_600_000,
    control_map_boot_expiration: 600_000,
};

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/artifacts/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The image inside `sim-<n>.mender` (see the fixtures' README).
pub fn sim_image(n: char) -> Vec<u8> {
    "sim image X "
        .replace('X', &n.to_string())
        .repeat(256)
        .into_bytes()
}

pub fn factory_image() -> Vec<u8> {
    b"factory image ".repeat(200).to_vec()
}

/// The memory an agent runs over (tests may use the heap).
pub struct Buffers {
    record: Vec<u8>,
    request: Vec<u8>,
    auth: Vec<u8>,
    output: Vec<u8>,
    window: Vec<u8>,
    block: Vec<u8>,
    compare: Vec<u8>,
}

impl Default for Buffers {
    fn default() -> Self {
        Self {
            record: vec![0; otalite::store::MAX_RECORD_LEN],
            request: vec![0; 16 * 1024],
            auth: vec![0; 8 * 1024],
            output: vec![0; 4096],
            window: vec![0; otalite::artifact::WINDOW_LEN],
            block: vec![0; BLOCK_LEN],
            compare: vec![0; 256],
        }
    }
}

impl Buffers {
    pub fn agent(&mut self) -> AgentBuffers<'_> {
        AgentBuffers {
            record: &mut self.record,
            request: &mut self.request,
            auth: &mut self.auth,
            output: &mut self.output,
            window: &mut self.window,
            block: &mut self.block,
            compare: &mut self.compare,
        }
    }
}

/// What a state script does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// Exits non-zero.
    Fail,
    /// Takes the device down while it runs (power cut / hard reboot), once.
    PowerCut,
    /// Kills the agent's process while it runs, every time.
    Crash,
    /// Kills the agent's process while it runs, once.
    CrashOnce,
}

/// Where the power goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Effect `n` (0-based, persists and env writes in order), before it
    /// took effect (`after == false`) or after.
    Effect { n: u32, after: bool },
    /// After `n` bytes were written into a slot.
    SlotBytes(usize),
    /// Before the `n`-th action the agent returns (any kind).
    Action(u32),
    /// The process is killed (no reboot) before the `n`-th action.
    Crash(u32),
}

/// Why [`World::drive`] stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// A standalone command ended.
    Completed(Completion, String),
    /// The agent exited (managed), `failed`, message.
    Exited(bool, String),
    /// The agent asked for a reboot (the agent must be dropped, then
    /// [`World::power_on`]).
    Reboot,
    /// The power went (drop the agent, then [`World::power_on`]).
    PowerCut,
    /// The process was killed (drop the agent; no reboot).
    Crash,
    /// The agent waits with nothing to do (the `idle` predicate held).
    Idle,
}

/// One thing that happened, for assertions and failure output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    Persist(String),
    Script(ScriptGroup, ScriptPhase, bool),
    SetTrial(PartNumber),
    CommitBoot,
    RollBack(PartNumber),
    Reboot,
    Boot {
        part: PartNumber,
        fallback: bool,
    },
    Request {
        method: Method,
        path: String,
        status: Option<u16>,
    },
    Download {
        from: u64,
        fed: u64,
        end: &'static str,
    },
    Completed(Completion, String),
    Exit(bool, String),
    Cut(String),
    Log(String),
    /// A hand-off action and what the host did (`check locked d1`,
    /// `check free <name>`, `save <from>+<fed> <end>`, `lock d1`,
    /// `start d1`, `no installer`, `release`, `report <stop>`).
    HandOff(String),
    /// A hook call and how it ended (`install exit 0`, `restart reboot`).
    Hook(String),
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub bearer: String,
    pub body: String,
    /// `None`: the connection failed.
    pub status: Option<u16>,
}

/// What a fault matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum On {
    Auth,
    Inventory,
    Next,
    /// A status report (with this status, or any).
    Status(Option<&'static str>),
    Log,
    Any,
}

/// What a matching request gets instead of the normal answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resp {
    Status(u16),
    /// Connection refused / reset: `handle_done(Transient)`.
    Transport,
    /// The server forgets the JWT first (so the request gets a real 401).
    ExpireJwt,
    /// The deployment is aborted on the server first (this and every later
    /// status report: 409).
    Abort,
}

#[derive(Clone, Debug)]
pub struct Fault {
    pub on: On,
    /// Skip this many matching requests first.
    pub skip: u32,
    pub resp: Resp,
}

#[derive(Clone, Debug)]
pub struct Deployment {
    pub id: String,
    pub artifact_name: String,
    pub uri: String,
    /// Status reports received, in order.
    pub statuses: Vec<String>,
    pub aborted: bool,
    /// Deployment logs uploaded.
    pub logs: Vec<String>,
}

impl Deployment {
    pub fn finals(&self) -> Vec<&str> {
        self.statuses
            .iter()
            .map(String::as_str)
            .filter(|s| matches!(*s, "success" | "failure"))
            .collect()
    }

    pub fn finished(&self) -> bool {
        !self.finals().is_empty() || self.aborted
    }
}

/// The scripted Mender server.
#[derive(Default)]
pub struct Server {
    pub jwt: Option<String>,
    issued: u32,
    /// Authentication answers 401 (device not accepted).
    pub reject_auth: bool,
    /// No v2 `next` (404).
    pub v1_only: bool,
    /// No inventory `PUT` (405).
    pub patch_only: bool,
    pub deployments: Vec<Deployment>,
    pub log: Vec<Req>,
    pub faults: Vec<Fault>,
    pub inventories: u32,
    /// A status report for a deployment that already has its final status
    /// gets 409, as the real server answers (hand-off worlds).
    pub finished_409: bool,
}

impl Server {
    pub fn deploy(&mut self, id: &str, artifact: &str) {
        self.deployments.push(Deployment {
            id: id.into(),
            artifact_name: artifact.into(),
            uri: format!("https://s3.sim.invalid/{artifact}.mender"),
            statuses: Vec::new(),
            aborted: false,
            logs: Vec::new(),
        });
    }

    pub fn fault(&mut self, on: On, resp: Resp) {
        self.fault_after(on, 0, resp);
    }

    pub fn fault_after(&mut self, on: On, skip: u32, resp: Resp) {
        self.faults.push(Fault { on, skip, resp });
    }

    pub fn auth_count(&self) -> usize {
        self.log.iter().filter(|r| r.path == AUTH).count()
    }

    /// The statuses of deployment `id`, consecutive repeats folded.
    pub fn statuses(&self, id: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.deployment(id).statuses {
            if out.last() != Some(s) {
                out.push(s.clone());
            }
        }
        out
    }

    pub fn deployment(&self, id: &str) -> &Deployment {
        self.deployments
            .iter()
            .find(|d| d.id == id)
            .unwrap_or_else(|| panic!("no deployment {id}"))
    }

    fn active(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| !d.finished())
    }
}

pub const AUTH: &str = "/api/devices/v1/authentication/auth_requests";
const INVENTORY: &str = "/api/devices/v1/inventory/device/attributes";
const NEXT_V2: &str = "/api/devices/v2/deployments/device/deployments/next";
const NEXT_V1: &str = "/api/devices/v1/deployments/device/deployments/next";
const DEPLOYMENTS: &str = "/api/devices/v1/deployments/device/deployments/";

fn classify(path: &str) -> (On, Option<String>) {
    if path == AUTH {
        (On::Auth, None)
    } else if path == INVENTORY {
        (On::Inventory, None)
    } else if path == NEXT_V2 || path.starts_with(NEXT_V1) {
        (On::Next, None)
    } else if let Some(rest) = path.strip_prefix(DEPLOYMENTS) {
        let (id, what) = rest.split_once('/').unwrap_or((rest, ""));
        match what {
            "status" => (On::Status(None), Some(id.to_string())),
            "log" => (On::Log, Some(id.to_string())),
            _ => (On::Any, None),
        }
    } else {
        (On::Any, None)
    }
}

fn status_of(body: &str) -> String {
    body.split("\"status\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("?")
        .to_string()
}

/// The whole simulated world except the agent.
pub struct World {
    pub now: Instant,
    pub mode: Mode<'static>,
    /// The persisted state record (replaced atomically).
    pub disk: Vec<u8>,
    /// The persisted Update Control Map pool (empty: none).
    pub maps_disk: Vec<u8>,
    pub env: MenderBootControl<MemBootEnv>,
    /// Slot A (2) and B (3).
    pub slots: [Box<MemPartition<SLOT_LEN>>; 2],
    /// The slot the running system was booted from.
    pub running: PartNumber,
    /// The running system can prove its root device (else PrepareSlots
    /// says `proven_by_root_device: false`).
    pub root_device_known: bool,
    /// Known images: name -> bytes.
    pub images: BTreeMap<String, Vec<u8>>,
    /// Artifacts by URI (standalone: a path; managed: the `next` URI).
    pub artifacts: HashMap<String, Vec<u8>>,
    pub scripts: HashMap<(ScriptGroup, ScriptPhase), Script>,
    pub server: Server,
    /// Download chunk size.
    pub chunk: usize,
    /// One entry per download connection: drop it after this many bytes.
    pub drops: VecDeque<u64>,
    /// The trial slot's system does not come up (a kernel panic, the
    /// watchdog resets): U-Boot falls back on the next boot.
    pub trial_boot_fails: bool,
    /// `Reboot` is refused.
    pub reboot_fails: bool,
    /// The deployment log on disk.
    pub dlog: Vec<String>,
    pub trace: Vec<Ev>,
    pub cut: Option<Cut>,
    /// Cuts armed one after the other once `cut` fired; `Effect` and
    /// `Action` numbers count from the moment the previous cut fired.
    pub more_cuts: VecDeque<Cut>,
    /// The cuts that fired.
    pub cuts_fired: u32,
    /// Effects so far (persists and env writes; the cut points count them).
    pub effects: u32,
    /// Actions so far.
    pub actions: u32,
    /// Kill the process (no reboot) before this action number.
    pub crash_at: Option<u32>,
    pub boots: u32,
    /// Broken invariants seen while running.
    pub violations: Vec<String>,
    /// Hand-off mode: the file, the lock and the installer (`None`: the
    /// device installs itself, and `Action::HandOff` is a violation).
    pub hand_off: Option<HandOffSim>,
    /// The agent being driven is the one-shot `report` role (the
    /// installer's): it must never persist.
    pub reporting: bool,
    /// Hooks mode: upparat's hooks install the deployments.
    pub hooks: Option<HooksSim>,
    /// The artifact stream opened by `OpenArtifact`: location and offset.
    open: Option<(String, u64)>,
    target: Option<PartNumber>,
}

fn index(part: PartNumber) -> usize {
    match part {
        A => 0,
        B => 1,
        other => panic!("no slot {other}"),
    }
}

pub fn other(part: PartNumber) -> PartNumber {
    if part == A {
        B
    } else {
        A
    }
}

pub fn managed_mode() -> Mode<'static> {
    Mode::Managed(ServerSettings {
        servers: &SERVERS,
        tenant_token: "",
        public_key_pem: PUBLIC_KEY,
        client_version: "otalite-sim",
        hand_off: otalite::agent::HandOffRole::Off,
    })
}

/// Managed mode with the hand-off `role`.
pub fn hand_off_mode(role: HandOffRole) -> Mode<'static> {
    match managed_mode() {
        Mode::Managed(settings) => Mode::Managed(ServerSettings {
            hand_off: role,
            ..settings
        }),
        Mode::Standalone | Mode::Jobs(_) => unreachable!(),
    }
}

/// The installer program of hand-off mode (`/usr/share/mender/install`).
#[derive(Clone, Debug)]
pub struct Installer {
    /// What it writes to `artifact_info` when it succeeds.
    pub new_name: String,
    /// It calls `report --success` (else it writes its log, then calls
    /// `report --failure`).
    pub success: bool,
    /// It reports this long after its start; `None`: when the test says
    /// so ([`World::run_installer`]).
    pub after: Option<u64>,
}

/// The host side of hand-off mode: the file the artifact is saved to, the
/// lock (written and removed atomically: present with its content or
/// absent), `artifact_info` and the installer. A started installer
/// survives power cuts (it owns the device until it reports: it calls
/// `report` again after the boot when the power went while it reported).
#[derive(Clone, Debug)]
pub struct HandOffSim {
    /// The saved artifact.
    pub file: Vec<u8>,
    /// The update lock: the deployment id it holds.
    pub lock: Option<String>,
    /// The boot (`World::boots`) the lock was written in.
    pub lock_boot: u32,
    /// Starts of an installer again after a power cut found the lock of
    /// an earlier boot with the hand-off unfinished (`LockedBeforeBoot`).
    pub restarts: u32,
    /// The name `artifact_info` holds.
    pub artifact_info: String,
    /// `None`: no installer program (`Start` fails).
    pub installer: Option<Installer>,
    /// The deployments the installer was started for, in order.
    pub starts: Vec<String>,
    /// The lock writes.
    pub lock_writes: u32,
    /// The lock removals.
    pub releases: u32,
    /// The started installer has not reported yet: its deployment and
    /// when it reports (`None`: on the test's command).
    pub pending: Option<(String, Option<Instant>)>,
    /// The power goes between the lock write and the installer's start
    /// (once): the host's `Start` is two steps.
    pub cut_before_spawn: bool,
    /// A `next` request was answered since the last lock removal.
    pub polled_since_release: bool,
    /// Every `Save`: when (ms) and its `resume` flag.
    pub saves: Vec<(u64, bool)>,
}

impl HandOffSim {
    pub fn new(installer: Option<Installer>) -> Self {
        Self {
            file: Vec::new(),
            lock: None,
            lock_boot: 0,
            restarts: 0,
            artifact_info: FACTORY.into(),
            installer,
            starts: Vec::new(),
            lock_writes: 0,
            releases: 0,
            pending: None,
            cut_before_spawn: false,
            polled_since_release: true,
            saves: Vec::new(),
        }
    }
}

/// How a simulated hook call ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookEnd {
    Exit(i32),
    /// The restart hook reboots the device (it never returns).
    Reboot,
}

/// The device side of hooks mode: what the hooks did.
#[derive(Clone, Debug)]
pub struct HooksSim {
    /// Per hook, the end of each call (the last repeats; none: exit 0).
    pub scripts: HashMap<Hook, Vec<HookEnd>>,
    /// What the version hook prints (the running system).
    pub running: String,
    /// Installed by the install hook, running after a restart.
    pub staged: Option<String>,
    /// A/B style: the staged system comes up on any boot, not only
    /// through the restart hook.
    pub activate_on_boot: bool,
    /// Every call: `hook elapsed retry meta`.
    pub calls: Vec<String>,
    /// Successful install hook runs.
    pub installs: u32,
    /// The install hook starts what it installs (no restart needed).
    pub install_activates: bool,
    made: HashMap<Hook, usize>,
}

impl HooksSim {
    pub fn new() -> Self {
        Self {
            scripts: HashMap::new(),
            running: FACTORY.into(),
            staged: None,
            activate_on_boot: false,
            calls: Vec::new(),
            installs: 0,
            install_activates: false,
            made: HashMap::new(),
        }
    }
}

impl Default for HooksSim {
    fn default() -> Self {
        Self::new()
    }
}

/// An owned copy of a [`HandOffOp`].
#[derive(Clone, Debug)]
enum HOp {
    Check,
    Save(String, bool),
    Start(String),
    Release,
}

/// The record of a fresh device running the factory image.
pub fn fresh_record() -> StateRecord {
    let mut installed = Provides::named(FACTORY);
    installed
        .provides
        .push(provide("rootfs-image.version", FACTORY).unwrap())
        .unwrap();
    StateRecord {
        installed,
        ..StateRecord::default()
    }
}

/// An owned copy of an [`Action`].
#[derive(Clone, Debug)]
enum Act {
    Persist(ActionId, Vec<u8>),
    PersistMaps(ActionId, Vec<u8>),
    Scripts(ActionId, ScriptGroup, ScriptPhase, bool),
    Prepare(ActionId, bool),
    Open(ActionId, String, u64),
    Read(ActionId),
    SetTrial(ActionId, PartNumber),
    CommitBoot(ActionId),
    RollBack(ActionId, PartNumber),
    Reboot(ActionId),
    Identity(ActionId),
    Inventory(ActionId),
    Request(ActionId, Method, String, String, String),
    Log(LogLevel, String),
    ClearLog,
    ReadLog(ActionId),
    Completed(Completion, String),
    Exit(bool, String),
    HandOff(ActionId, HOp),
    Hook(ActionId, Hook, u64, u32, String),
    Files,
}

impl From<Action<'_>> for Act {
    fn from(action: Action<'_>) -> Self {
        match action {
            Action::Persist { id, record } => Self::Persist(id, record.to_vec()),
            Action::PersistControlMaps { id, record } => Self::PersistMaps(id, record.to_vec()),
            Action::RunScripts {
                id,
                group,
                phase,
                ignore_errors,
            } => Self::Scripts(id, group, phase, ignore_errors),
            Action::PrepareSlots { id, install } => Self::Prepare(id, install),
            Action::OpenArtifact { id, uri, from } => Self::Open(id, uri.into(), from),
            Action::ReadArtifact { id } => Self::Read(id),
            Action::SetTrial { id, part } => Self::SetTrial(id, part),
            Action::CommitBoot { id } => Self::CommitBoot(id),
            Action::RollBack { id, part } => Self::RollBack(id, part),
            Action::Reboot { id } => Self::Reboot(id),
            Action::GatherIdentity { id } => Self::Identity(id),
            Action::GatherInventory { id } => Self::Inventory(id),
            Action::Request { id, request } => {
                assert_eq!(request.server, SERVER);
                Self::Request(
                    id,
                    request.method,
                    request.path.into(),
                    request.bearer.into(),
                    String::from_utf8_lossy(request.body).into(),
                )
            }
            Action::DeploymentLog { level, message } => Self::Log(level, message.into()),
            Action::ClearDeploymentLog => Self::ClearLog,
            Action::ReadDeploymentLog { id } => Self::ReadLog(id),
            Action::Completed {
                completion,
                message,
            } => Self::Completed(completion, message.into()),
            Action::Exit { failed, message } => Self::Exit(failed, message.into()),
            Action::ModuleCall { state, .. } => {
                panic!("the simulation installs no module payloads ({state:?})")
            }
            Action::HandOff { id, op } => Self::HandOff(
                id,
                match op {
                    HandOffOp::Check => HOp::Check,
                    HandOffOp::Save { uri, resume } => HOp::Save(uri.into(), resume),
                    HandOffOp::Start { deployment_id } => HOp::Start(deployment_id.into()),
                    HandOffOp::Release => HOp::Release,
                },
            ),
            Action::Hook {
                id,
                hook,
                elapsed_s,
                retry,
                meta,
                ..
            } => Self::Hook(id, hook, elapsed_s, retry, meta.into()),
            Action::JobFiles { keep: None } => Self::Files,
            Action::JobDownload { .. } | Action::JobBuiltin { .. } | Action::JobFiles { .. } => {
                panic!("the Mender simulation runs no AWS IoT jobs ({action:?})")
            }
        }
    }
}

struct Hooks;

impl otalite::install::InstallHooks for Hooks {
    type Error = std::convert::Infallible;
    fn header_accepted(
        &mut self,
        _: &otalite::artifact::ArtifactHeader,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
    fn script_start(&mut self, _: &str, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    fn script_data(&mut self, _: &[u8]) -> Result<(), Self::Error> {
        Ok(())
    }
    fn script_end(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn progress(&mut self, _: u64, _: u64) {}
}

/// What one [`World::step`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Stepped {
    /// Ran an action.
    Acted,
    /// Nothing to do before `poll_at`: the clock moved there.
    Waited,
    /// Nothing to do and no timer.
    Idle,
    Stop(Stop),
}

impl World {
    pub fn new(mode: Mode<'static>) -> Self {
        let mut env = MemBootEnv::default();
        env.write(&[
            ("mender_boot_part", Some("2")),
            ("mender_boot_part_hex", Some("2")),
            ("upgrade_available", Some("0")),
            ("bootcount", Some("0")),
            ("bootlimit", Some("1")),
        ])
        .unwrap();
        let mut slots: [Box<MemPartition<SLOT_LEN>>; 2] = Default::default();
        let factory = factory_image();
        slots[0].bytes[..factory.len()].copy_from_slice(&factory);
        let mut images = BTreeMap::new();
        images.insert(FACTORY.to_string(), factory);
        images.insert("sim-a".to_string(), sim_image('a'));
        images.insert("sim-b".to_string(), sim_image('b'));
        let mut artifacts = HashMap::new();
        for name in ["sim-a", "sim-b"] {
            let bytes = fixture(&format!("{name}.mender"));
            artifacts.insert(format!("/data/{name}.mender"), bytes.clone());
            artifacts.insert(format!("https://s3.sim.invalid/{name}.mender"), bytes);
        }
        let mut world = Self {
            now: Instant::from_millis(1_000_000),
            mode,
            disk: Vec::new(),
            maps_disk: Vec::new(),
            env: MenderBootControl::new(env),
            slots,
            running: A,
            root_device_known: true,
            images,
            artifacts,
            scripts: HashMap::new(),
            server: Server::default(),
            chunk: 700,
            drops: VecDeque::new(),
            trial_boot_fails: false,
            reboot_fails: false,
            dlog: Vec::new(),
            trace: Vec::new(),
            cut: None,
            more_cuts: VecDeque::new(),
            cuts_fired: 0,
            effects: 0,
            actions: 0,
            crash_at: None,
            boots: 0,
            violations: Vec::new(),
            hand_off: None,
            reporting: false,
            hooks: None,
            target: None,
            open: None,
        };
        let mut buffer = vec![0; otalite::store::MAX_RECORD_LEN];
        world.disk = fresh_record().encode(&mut buffer).unwrap().to_vec();
        world
    }

    pub fn standalone() -> Self {
        Self::new(Mode::Standalone)
    }

    pub fn managed() -> Self {
        Self::new(managed_mode())
    }

    pub fn record(&self) -> StateRecord {
        StateRecord::decode(&self.disk).expect("the persisted record decodes")
    }

    pub fn boot_state(&mut self) -> BootState {
        self.env.boot_state().unwrap()
    }

    pub fn env_var(&mut self, name: &str) -> Option<String> {
        self.env.env_mut().get(name).map(str::to_string)
    }

    /// A hand-off world (`HandOffRole::Daemon`) with this installer.
    pub fn hand_off(installer: Option<Installer>) -> Self {
        let mut world = Self::new(hand_off_mode(HandOffRole::Daemon));
        world.hand_off = Some(HandOffSim::new(installer));
        world.server.finished_409 = true;
        world
    }

    /// A hooks world (`HandOffRole::Hooks`) with these hooks.
    pub fn hooks(policy: HookPolicy) -> Self {
        let mut world = Self::new(hand_off_mode(HandOffRole::Hooks(policy)));
        world.hand_off = Some(HandOffSim::new(None));
        world.hooks = Some(HooksSim::new());
        // The real server's answer to a second final status.
        world.server.finished_409 = true;
        world
    }

    /// The hooks' device side.
    pub fn hs(&mut self) -> &mut HooksSim {
        self.hooks.as_mut().expect("a hooks world")
    }

    /// The hand-off host side.
    pub fn ho(&mut self) -> &mut HandOffSim {
        self.hand_off.as_mut().expect("a hand-off world")
    }

    /// A new agent from the persisted record and the boot env as it is.
    pub fn start<'b>(&mut self, buffers: &'b mut Buffers) -> Agent<'b> {
        self.start_as(buffers, self.mode)
    }

    /// [`Self::start`] in another mode (the `report` role).
    pub fn start_as<'b>(&mut self, buffers: &'b mut Buffers, mode: Mode<'static>) -> Agent<'b> {
        let record = self.record();
        let boot = self.boot_state();
        let config = AgentConfig {
            device_type: DEVICE_TYPE,
            keys: &[],
            signatures_required: false,
            timing: TIMING,
            mode,
        };
        let mut agent = Agent::new(config, record, boot, buffers.agent()).expect("agent");
        if !self.maps_disk.is_empty() {
            agent
                .load_control_maps(self.now, &self.maps_disk)
                .expect("the persisted control maps load");
        }
        agent
    }

    /// The name of the image `part` holds completely, if any.
    pub fn image_in(&self, part: PartNumber) -> Option<String> {
        let bytes = &self.slots[index(part)].bytes;
        self.images
            .iter()
            .find(|(_, image)| bytes.starts_with(image))
            .map(|(name, _)| name.clone())
    }

    pub fn running_image(&self) -> Option<String> {
        self.image_in(self.running)
    }

    fn violation(&mut self, what: String) {
        self.trace.push(Ev::Cut(format!("VIOLATION: {what}")));
        self.violations.push(what);
    }

    /// Power on: the simulated U-Boot (bootcount, `bootlimit=1`,
    /// `altbootcmd`), then the system of the chosen slot comes up.
    pub fn power_on(&mut self) -> BootState {
        self.boots += 1;
        if let Some(h) = self.hooks.as_mut() {
            if h.activate_on_boot {
                if let Some(staged) = h.staged.take() {
                    h.running = staged;
                }
            }
        }
        for slot in &mut self.slots {
            slot.bytes_until_shutoff = None;
        }
        self.target = None;
        for _ in 0..3 {
            let var = |w: &mut Self, name: &str| w.env_var(name);
            let part: PartNumber = var(self, "mender_boot_part")
                .and_then(|v| v.parse().ok())
                .unwrap_or(A);
            let upgrade = var(self, "upgrade_available").as_deref() == Some("1");
            let count: u32 = var(self, "bootcount")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if upgrade && count >= BOOTLIMIT {
                // altbootcmd: the other slot, permanently.
                let back = other(part).to_string();
                self.env
                    .env_mut()
                    .write(&[
                        ("mender_boot_part", Some(&back)),
                        ("mender_boot_part_hex", Some(&back)),
                        ("upgrade_available", Some("0")),
                    ])
                    .unwrap();
                self.running = other(part);
                self.trace.push(Ev::Boot {
                    part: self.running,
                    fallback: true,
                });
            } else {
                if upgrade {
                    let next = (count + 1).to_string();
                    self.env
                        .env_mut()
                        .write(&[("bootcount", Some(&next))])
                        .unwrap();
                }
                self.running = part;
                self.trace.push(Ev::Boot {
                    part,
                    fallback: false,
                });
                if upgrade && (self.trial_boot_fails || self.image_in(part).is_none()) {
                    if self.image_in(part).is_none() {
                        self.violation(format!(
                            "trial boot of slot {part}, which holds no complete image"
                        ));
                    }
                    // The trial system does not come up: the watchdog resets.
                    continue;
                }
            }
            if self.image_in(self.running).is_none() {
                self.violation(format!(
                    "booted slot {} holds no complete image (bricked)",
                    self.running
                ));
            }
            return self.boot_state();
        }
        panic!("U-Boot looped");
    }

    fn effect(&mut self, after: bool) -> bool {
        let n = self.effects;
        if after {
            self.effects += 1;
        }
        match self.cut {
            Some(Cut::Effect { n: at, after: a }) if at == n && a == after => {
                self.cut_fired();
                self.trace.push(Ev::Cut(format!(
                    "power cut {} effect {n}",
                    if after { "after" } else { "before" }
                )));
                true
            }
            _ => false,
        }
    }

    fn cut_fired(&mut self) {
        self.cuts_fired += 1;
        self.cut = self.more_cuts.pop_front().map(|cut| match cut {
            Cut::Effect { n, after } => Cut::Effect {
                n: n + self.effects,
                after,
            },
            Cut::Action(n) => Cut::Action(n + self.actions),
            Cut::Crash(n) => Cut::Crash(n + self.actions),
            other => other,
        });
    }

    fn slot_cut(&mut self) -> bool {
        if let Some(Cut::SlotBytes(_)) = self.cut {
            if self.slots.iter().any(|s| s.bytes_until_shutoff == Some(0)) {
                self.cut_fired();
                self.trace
                    .push(Ev::Cut("power cut while writing the slot".into()));
                return true;
            }
        }
        false
    }

    fn arm_slot_cut(&mut self) {
        if let Some(Cut::SlotBytes(n)) = self.cut {
            for slot in &mut self.slots {
                if slot.bytes_until_shutoff.is_none() {
                    slot.bytes_until_shutoff = Some(n);
                }
            }
        }
    }

    /// One action of the agent and its completion, or a wait.
    pub fn step(&mut self, agent: &mut Agent<'_>) -> Stepped {
        let Some(act) = agent.poll().map(Act::from) else {
            return match agent.poll_at() {
                Some(at) => {
                    // A hand-off installer reports at its own time.
                    let at = match self.installer_wake() {
                        Some(wake) if wake < at => wake,
                        _ => at,
                    };
                    self.now = self.now.max(at);
                    agent.handle_timeout(self.now);
                    Stepped::Waited
                }
                None => Stepped::Idle,
            };
        };
        match self.cut {
            Some(Cut::Action(n)) if n == self.actions => {
                self.cut_fired();
                self.trace.push(Ev::Cut(format!("power cut at action {n}")));
                return Stepped::Stop(Stop::PowerCut);
            }
            Some(Cut::Crash(n)) if n == self.actions => {
                self.cut_fired();
                self.trace.push(Ev::Cut(format!("crash at action {n}")));
                return Stepped::Stop(Stop::Crash);
            }
            _ => {}
        }
        if self.crash_at == Some(self.actions) {
            self.crash_at = None;
            self.trace
                .push(Ev::Cut(format!("crash at action {}", self.actions)));
            return Stepped::Stop(Stop::Crash);
        }
        self.actions += 1;
        let now = self.now;
        match act {
            Act::Persist(id, bytes) => {
                if self.reporting {
                    self.violation("the report agent persisted its record".into());
                }
                let record = match StateRecord::decode(&bytes) {
                    Ok(record) => record,
                    Err(e) => {
                        self.violation(format!("persisted record does not decode: {e}"));
                        return Stepped::Stop(Stop::Crash);
                    }
                };
                if self.effect(false) {
                    return Stepped::Stop(Stop::PowerCut);
                }
                self.disk = bytes;
                self.trace.push(Ev::Persist(step_name(&record)));
                if self.effect(true) {
                    return Stepped::Stop(Stop::PowerCut);
                }
                agent.handle_done(now, id, Outcome::Done);
            }
            Act::PersistMaps(id, bytes) => {
                if self.reporting {
                    self.violation("the report agent persisted control maps".into());
                }
                // Its own file, written atomically: the old or the new pool.
                if self.effect(false) {
                    return Stepped::Stop(Stop::PowerCut);
                }
                self.maps_disk = bytes;
                agent.handle_done(now, id, Outcome::Done);
            }
            Act::Scripts(id, group, phase, ignore) => {
                let script = self.scripts.get(&(group, phase)).copied();
                self.trace.push(Ev::Script(group, phase, script.is_none()));
                match script {
                    None => agent.handle_done(now, id, Outcome::Done),
                    Some(Script::Fail) => {
                        let _ = ignore;
                        agent.handle_done(now, id, Outcome::Failed("script exited 1"));
                    }
                    Some(Script::Crash | Script::CrashOnce) => {
                        if script == Some(Script::CrashOnce) {
                            self.scripts.remove(&(group, phase));
                        }
                        self.trace.push(Ev::Cut(format!(
                            "crash in script {}_{}",
                            group.name(),
                            phase.name()
                        )));
                        return Stepped::Stop(Stop::Crash);
                    }
                    Some(Script::PowerCut) => {
                        // Runs once: the device comes back without it.
                        self.scripts.remove(&(group, phase));
                        self.trace.push(Ev::Cut(format!(
                            "power cut in script {}_{}",
                            group.name(),
                            phase.name()
                        )));
                        return Stepped::Stop(Stop::PowerCut);
                    }
                }
            }
            Act::Prepare(id, install) => {
                let slots = Slots {
                    active: self.running,
                    inactive: other(self.running),
                    proven_by_root_device: self.root_device_known,
                };
                if install {
                    self.target = Some(slots.inactive);
                }
                agent.handle_slots(now, id, Ok(slots));
            }
            Act::Open(id, uri, from) => {
                if agent.artifact_uri() != Some(uri.as_str()) {
                    self.violation(format!(
                        "artifact_uri() is {:?} during OpenArtifact of {uri}",
                        agent.artifact_uri()
                    ));
                }
                if self.artifacts.contains_key(&uri) {
                    self.open = Some((uri, from));
                    agent.handle_done(now, id, Outcome::Done);
                } else {
                    self.trace.push(Ev::Download {
                        from,
                        fed: 0,
                        end: "404",
                    });
                    agent.handle_done(now, id, Outcome::Failed("404 Not Found"));
                }
            }
            Act::Read(id) => {
                let Some((uri, from)) = self.open.take() else {
                    self.violation("ReadArtifact without OpenArtifact".into());
                    return Stepped::Stop(Stop::Crash);
                };
                if agent.artifact_uri() != Some(uri.as_str()) {
                    self.violation(format!(
                        "artifact_uri() is {:?} during ReadArtifact of {uri}",
                        agent.artifact_uri()
                    ));
                }
                return self.download(agent, id, &uri, from);
            }
            Act::SetTrial(id, part) => {
                return self.env_write(agent, id, Ev::SetTrial(part), |env| env.set_trial(part))
            }
            Act::CommitBoot(id) => {
                return self.env_write(agent, id, Ev::CommitBoot, |env| env.commit());
            }
            Act::RollBack(id, part) => {
                return self.env_write(agent, id, Ev::RollBack(part), |env| env.roll_back(part))
            }
            Act::Reboot(id) => {
                self.trace.push(Ev::Reboot);
                if self.reboot_fails {
                    agent.handle_done(now, id, Outcome::Failed("reboot refused"));
                } else {
                    return Stepped::Stop(Stop::Reboot);
                }
            }
            Act::Identity(id) => agent.handle_data(now, id, b"mac=02:00:00:00:00:01\n"),
            Act::Inventory(id) => agent.handle_data(now, id, b"hostname=sim\nkernel=6.1\n"),
            Act::Request(id, method, path, bearer, body) => {
                let answer = self.answer(method, &path, &bearer, &body);
                if let (Some(h), On::Next, Some(_)) =
                    (self.hand_off.as_mut(), classify(&path).0, &answer)
                {
                    h.polled_since_release = true;
                }
                self.trace.push(Ev::Request {
                    method,
                    path: path.clone(),
                    status: answer.as_ref().map(|a| a.0),
                });
                self.server.log.push(Req {
                    method,
                    path,
                    bearer,
                    body,
                    status: answer.as_ref().map(|a| a.0),
                });
                match answer {
                    Some((status, body)) => agent.handle_response(now, id, status, &body),
                    None => agent.handle_done(now, id, Outcome::Transient("connection refused")),
                }
            }
            Act::Log(level, message) => {
                self.trace.push(Ev::Log(message.clone()));
                self.dlog
                    .push(format!("2026-01-01T00:00:00Z {} {message}", level.as_str()));
            }
            Act::ClearLog => {
                if self.reporting {
                    self.violation("the report agent cleared the deployment log".into());
                }
                self.dlog.clear();
            }
            Act::ReadLog(id) => {
                let text = self.dlog.join("\n");
                agent.handle_data(now, id, text.as_bytes());
            }
            Act::Completed(completion, message) => {
                self.trace.push(Ev::Completed(completion, message.clone()));
                return Stepped::Stop(Stop::Completed(completion, message));
            }
            Act::Exit(failed, message) => {
                self.trace.push(Ev::Exit(failed, message.clone()));
                return Stepped::Stop(Stop::Exited(failed, message));
            }
            Act::HandOff(id, op) => return self.hand_off_op(agent, id, op),
            Act::Hook(id, hook, elapsed, retry, meta) => {
                return self.run_hook(agent, id, hook, elapsed, retry, &meta)
            }
            Act::Files => {
                self.trace.push(Ev::HandOff("files removed".into()));
                if let Some(h) = self.hand_off.as_mut() {
                    h.file.clear();
                }
            }
        }
        Stepped::Acted
    }

    /// A hook of hooks mode, as a script does it: the install hook takes
    /// the saved file, the restart hook starts what it installed (or
    /// reboots into it), the version hook prints what runs.
    fn run_hook(
        &mut self,
        agent: &mut Agent<'_>,
        id: ActionId,
        hook: Hook,
        elapsed: u64,
        retry: u32,
        meta: &str,
    ) -> Stepped {
        let now = self.now;
        let file_complete = self.hand_off.as_ref().is_some_and(|h| {
            self.server
                .deployments
                .iter()
                .any(|d| d.artifact_name == meta && h.file == fixture(&format!("{meta}.mender")))
        });
        let Some(h) = self.hooks.as_mut() else {
            self.violation(format!(
                "the {} hook runs outside hooks mode",
                hook.as_str()
            ));
            return Stepped::Stop(Stop::Crash);
        };
        let n = *h.made.entry(hook).or_default();
        *h.made.entry(hook).or_default() += 1;
        let end = h
            .scripts
            .get(&hook)
            .and_then(|calls| calls.get(n).or(calls.last()))
            .copied()
            .unwrap_or(HookEnd::Exit(0));
        h.calls
            .push(format!("{} {elapsed} {retry} {meta}", hook.as_str()));
        let mut line = None;
        match (hook, end) {
            (Hook::Install, HookEnd::Exit(0)) => {
                h.installs += 1;
                if h.install_activates {
                    h.running = meta.to_string();
                } else {
                    h.staged = Some(meta.to_string());
                }
            }
            (Hook::Restart, HookEnd::Exit(0)) => {
                if let Some(staged) = h.staged.take() {
                    h.running = staged;
                }
            }
            (Hook::Restart, HookEnd::Reboot) => {
                if let Some(staged) = h.staged.take() {
                    h.running = staged;
                }
                self.trace.push(Ev::Hook("restart reboot".into()));
                return Stepped::Stop(Stop::Reboot);
            }
            (Hook::Version, _) => line = Some(h.running.clone()),
            _ => {}
        }
        if hook == Hook::Install && !file_complete {
            self.violation("the install hook runs without the whole artifact".into());
        }
        let code = match end {
            HookEnd::Exit(code) => code,
            HookEnd::Reboot => 0,
        };
        self.trace
            .push(Ev::Hook(format!("{} exit {code}", hook.as_str())));
        agent.handle_hook(
            now,
            id,
            HookOutcome::Exited {
                code,
                last_line: line.as_deref(),
            },
        );
        Stepped::Acted
    }

    /// The hook calls, in order (`install exit 0`).
    pub fn hook_events(&self) -> Vec<String> {
        self.trace
            .iter()
            .filter_map(|e| match e {
                Ev::Hook(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    /// The host side of [`Action::HandOff`].
    fn hand_off_op(&mut self, agent: &mut Agent<'_>, id: ActionId, op: HOp) -> Stepped {
        let now = self.now;
        if self.hand_off.is_none() {
            self.violation(format!("{op:?} on a device that installs itself"));
            return Stepped::Stop(Stop::Crash);
        }
        match op {
            HOp::Check => match self.ho().lock.clone() {
                Some(held) if self.ho().lock_boot < self.boots => {
                    self.trace
                        .push(Ev::HandOff(format!("check locked {held} (earlier boot)")));
                    agent.handle_hand_off(now, id, HandOffEvent::LockedBeforeBoot(&held));
                }
                Some(held) => {
                    self.trace.push(Ev::HandOff(format!("check locked {held}")));
                    agent.handle_hand_off(now, id, HandOffEvent::Locked(&held));
                }
                None => {
                    let name = self.ho().artifact_info.clone();
                    self.trace.push(Ev::HandOff(format!("check free {name}")));
                    let artifact_name = Some(name.as_str());
                    agent.handle_hand_off(now, id, HandOffEvent::Free { artifact_name });
                }
            },
            HOp::Save(uri, resume) => {
                if self.reporting {
                    self.violation("the report agent downloads".into());
                }
                let bytes = self.artifacts.get(&uri).cloned();
                let limit = self.drops.pop_front();
                let h = self.ho();
                h.saves.push((now.as_millis(), resume));
                if !resume {
                    h.file.clear();
                }
                let from = h.file.len();
                let resumed = if resume { " resume" } else { "" };
                let Some(bytes) = bytes else {
                    let reached = from as u64;
                    self.trace
                        .push(Ev::HandOff(format!("save{resumed} {from}+0 404")));
                    let outcome = Outcome::Failed("404 Not Found");
                    agent.handle_hand_off(now, id, HandOffEvent::Saved { reached, outcome });
                    return Stepped::Acted;
                };
                let rest = bytes.get(from..).unwrap_or_default();
                let fed = limit.map_or(rest.len(), |l| rest.len().min(l as usize));
                h.file.extend_from_slice(&rest[..fed]);
                let reached = h.file.len() as u64;
                let (end, outcome) = if fed < rest.len() {
                    ("dropped", Outcome::Transient("connection reset by peer"))
                } else if h.file == bytes {
                    ("complete", Outcome::Done)
                } else {
                    ("corrupt", Outcome::Failed("the file does not match"))
                };
                if end == "corrupt" {
                    self.violation(format!("the saved file differs from {uri}"));
                }
                self.trace
                    .push(Ev::HandOff(format!("save{resumed} {from}+{fed} {end}")));
                agent.handle_hand_off(now, id, HandOffEvent::Saved { reached, outcome });
            }
            HOp::Start(deployment) => {
                if self.reporting {
                    self.violation("the report agent starts the installer".into());
                }
                let Some(installer) = self.ho().installer.clone() else {
                    self.trace.push(Ev::HandOff("no installer".into()));
                    let why = "No install script found at '/usr/share/mender/install'";
                    agent.handle_done(now, id, Outcome::Failed(why));
                    return Stepped::Acted;
                };
                // Again only after a power cut found this deployment's lock
                // from an earlier boot (the installer may have died with
                // the power an instant after its start).
                let earlier_boot = self.ho().lock_boot < self.boots;
                let restart = self.ho().starts.contains(&deployment);
                match self.ho().lock.clone() {
                    Some(held) if held == deployment && earlier_boot => {}
                    Some(held) => self.violation(format!(
                        "Start for {deployment} while the lock holds {held}"
                    )),
                    None if self.ho().starts.contains(&deployment) => {
                        self.violation(format!("the installer started again for {deployment}"));
                    }
                    None => {}
                }
                // Writing the lock (atomically) and starting the
                // installer: one effect, unless `cut_before_spawn`.
                if self.effect(false) {
                    return Stepped::Stop(Stop::PowerCut);
                }
                let boots = self.boots;
                let h = self.ho();
                h.lock = Some(deployment.clone());
                h.lock_boot = boots;
                h.lock_writes += 1;
                self.trace.push(Ev::HandOff(format!("lock {deployment}")));
                if std::mem::take(&mut self.ho().cut_before_spawn) {
                    self.trace.push(Ev::Cut(
                        "power cut between the lock and the installer's start".into(),
                    ));
                    return Stepped::Stop(Stop::PowerCut);
                }
                let h = self.ho();
                if restart {
                    h.restarts += 1;
                }
                h.starts.push(deployment.clone());
                h.pending = Some((deployment.clone(), installer.after.map(|ms| now.after(ms))));
                self.trace.push(Ev::HandOff(format!("start {deployment}")));
                if self.effect(true) {
                    return Stepped::Stop(Stop::PowerCut);
                }
                agent.handle_done(now, id, Outcome::Done);
            }
            HOp::Release => {
                if !self.reporting {
                    self.violation("the daemon removed the lock".into());
                }
                if self.effect(false) {
                    return Stepped::Stop(Stop::PowerCut);
                }
                let h = self.ho();
                h.lock = None;
                h.releases += 1;
                h.polled_since_release = false;
                self.trace.push(Ev::HandOff("release".into()));
                if self.effect(true) {
                    return Stepped::Stop(Stop::PowerCut);
                }
                agent.handle_done(now, id, Outcome::Done);
            }
        }
        Stepped::Acted
    }

    /// When the started installer reports, if that is still to come.
    fn installer_wake(&self) -> Option<Instant> {
        let (_, due) = self.hand_off.as_ref()?.pending.as_ref()?;
        due.filter(|due| *due > self.now)
    }

    /// The started installer is due to report.
    pub fn installer_due(&self) -> bool {
        self.hand_off
            .as_ref()
            .and_then(|h| h.pending.as_ref())
            .is_some_and(|(_, due)| due.is_some_and(|due| due <= self.now))
    }

    /// The started installer finishes: names the new artifact (success) or
    /// writes its log (failure), then runs `report --success|--failure`, a
    /// second agent against the same server, lock and deployment log.
    /// Returns how that agent ended. A power cut or a crash leaves the
    /// installer pending: it reports again at once (after the boot).
    pub fn run_installer(&mut self) -> Stop {
        let installer = self.ho().installer.clone().expect("an installer");
        let success = installer.success;
        if success {
            self.ho().artifact_info = installer.new_name.clone();
        } else {
            self.dlog.push(format!(
                "2026-01-01T00:00:00Z error installer: {} failed at its step 2",
                installer.new_name
            ));
        }
        let mut buffers = Buffers::default();
        self.reporting = true;
        let mut agent = self.start_as(&mut buffers, hand_off_mode(HandOffRole::Report { success }));
        let stop = self.drive(&mut agent, |_, _| false);
        drop(agent);
        self.reporting = false;
        self.trace.push(Ev::HandOff(format!("report {stop:?}")));
        let now = self.now;
        let h = self.ho();
        match stop {
            Stop::PowerCut | Stop::Crash => {
                if let Some((_, due)) = &mut h.pending {
                    *due = Some(now);
                }
            }
            _ => h.pending = None,
        }
        stop
    }

    /// Hand-off mode: the daemon lives until idle with the lock gone and a
    /// poll after it, the installer run when it is due (power cuts and
    /// restarts included). Returns the number of daemon lives.
    pub fn run_hand_off(&mut self, buffers: &mut Buffers) -> u32 {
        let mut lives = 0;
        loop {
            lives += 1;
            assert!(lives < 60, "too many restarts:\n{}", self.tail(60));
            let mut agent = self.start(buffers);
            let stop = loop {
                let stop = self.drive(&mut agent, |w, a| w.installer_due() || w.hand_off_idle(a));
                if stop == Stop::Idle && self.installer_due() {
                    match self.run_installer() {
                        // The daemon goes down with the device.
                        Stop::PowerCut => break Stop::PowerCut,
                        _ => continue,
                    }
                }
                break stop;
            };
            drop(agent);
            match stop {
                Stop::Idle => return lives,
                Stop::Reboot | Stop::PowerCut => {
                    self.power_on();
                }
                Stop::Crash | Stop::Exited(..) => {}
                Stop::Completed(..) => panic!("a completion in managed mode"),
            }
        }
    }

    /// Hand-off idle: [`Self::managed_idle`], no lock, no installer to
    /// wait for, and a poll since the lock went.
    pub fn hand_off_idle(&self, agent: &Agent<'_>) -> bool {
        let Some(h) = &self.hand_off else {
            return self.managed_idle(agent);
        };
        self.managed_idle(agent)
            && h.lock.is_none()
            && h.pending.is_none()
            && h.polled_since_release
    }

    /// The invariants of a hand-off device at rest.
    pub fn check_hand_off_at_rest(&self) {
        let h = self.hand_off.as_ref().expect("a hand-off world");
        let tail = || self.tail(60);
        assert_eq!(self.record().step, UpdateStep::Idle, "at rest\n{}", tail());
        assert_eq!(h.lock, None, "the lock is removed\n{}", tail());
        assert_eq!(h.pending, None, "the installer reported\n{}", tail());
        assert!(
            h.polled_since_release,
            "no poll after the lock went\n{}",
            tail()
        );
        assert!(self.env_writes().is_empty(), "boot-env writes\n{}", tail());
        let written: usize = self.slots.iter().map(|s| s.bytes_written).sum();
        assert_eq!(written, 0, "slot writes");
        assert_eq!(self.running, A, "the slots are the installer's business");
        for d in &self.server.deployments {
            assert_eq!(
                d.finals().len(),
                1,
                "deployment {}: one final status: {:?}\n{}",
                d.id,
                d.statuses,
                tail()
            );
            let starts = h.starts.iter().filter(|s| **s == d.id).count();
            assert!(
                starts <= 1 + h.restarts as usize,
                "{}: {starts} installer starts\n{}",
                d.id,
                tail()
            );
        }
        assert!(
            self.violations.is_empty(),
            "violations: {:?}\n{}",
            self.violations,
            tail()
        );
    }

    /// The hand-off events, in order.
    pub fn hand_offs(&self) -> Vec<String> {
        self.trace
            .iter()
            .filter_map(|e| match e {
                Ev::HandOff(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    fn env_write(
        &mut self,
        agent: &mut Agent<'_>,
        id: ActionId,
        event: Ev,
        write: impl FnOnce(&mut MenderBootControl<MemBootEnv>) -> Result<(), otalite::mock::MockError>,
    ) -> Stepped {
        if self.effect(false) {
            return Stepped::Stop(Stop::PowerCut);
        }
        let result = write(&mut self.env);
        self.trace.push(event);
        if self.effect(true) {
            return Stepped::Stop(Stop::PowerCut);
        }
        match result {
            Ok(()) => agent.handle_done(self.now, id, Outcome::Done),
            Err(_) => agent.handle_done(self.now, id, Outcome::Failed("env write failed")),
        }
        Stepped::Acted
    }

    fn download(&mut self, agent: &mut Agent<'_>, id: ActionId, uri: &str, from: u64) -> Stepped {
        let now = self.now;
        let Some(bytes) = self.artifacts.get(uri).cloned() else {
            self.trace.push(Ev::Download {
                from,
                fed: 0,
                end: "404",
            });
            agent.handle_done(now, id, Outcome::Failed("404 Not Found"));
            return Stepped::Acted;
        };
        let Some(part) = self.target else {
            self.violation("a download without PrepareSlots(install)".into());
            return Stepped::Stop(Stop::Crash);
        };
        self.arm_slot_cut();
        let limit = self.drops.pop_front();
        let rest = bytes.get(from as usize..).unwrap_or_default();
        let mut fed = 0u64;
        for chunk in rest.chunks(self.chunk.max(1)) {
            let chunk = match limit {
                Some(limit) if fed + chunk.len() as u64 > limit => &chunk[..(limit - fed) as usize],
                _ => chunk,
            };
            if !chunk.is_empty() {
                let slot = &mut *self.slots[index(part)];
                let feed = agent.handle_artifact(now, chunk, slot, &mut Hooks);
                fed += chunk.len() as u64;
                if self.slot_cut() {
                    return Stepped::Stop(Stop::PowerCut);
                }
                match feed {
                    Feed::Continue => {}
                    Feed::Complete | Feed::Stop => {
                        self.trace.push(Ev::Download {
                            from,
                            fed,
                            end: if feed == Feed::Complete {
                                "complete"
                            } else {
                                "stopped"
                            },
                        });
                        return Stepped::Acted;
                    }
                }
            }
            if limit.is_some_and(|limit| fed >= limit) {
                self.trace.push(Ev::Download {
                    from,
                    fed,
                    end: "dropped",
                });
                agent.handle_done(now, id, Outcome::Transient("connection reset by peer"));
                return Stepped::Acted;
            }
        }
        self.trace.push(Ev::Download {
            from,
            fed,
            end: "eof",
        });
        agent.handle_done(now, id, Outcome::Done);
        Stepped::Acted
    }

    /// The fake server's answer; `None` = transport error.
    fn answer(
        &mut self,
        method: Method,
        path: &str,
        bearer: &str,
        body: &str,
    ) -> Option<(u16, Vec<u8>)> {
        let (on, id) = classify(path);
        let status = (on == On::Status(None)).then(|| status_of(body));
        // Injected faults first.
        let matches = |fault: &Fault| match (fault.on, on) {
            (On::Any, _) => true,
            (On::Status(Some(want)), On::Status(None)) => status.as_deref() == Some(want),
            (a, b) => a == b,
        };
        let fire = self
            .server
            .faults
            .iter()
            .position(|f| f.skip == 0 && matches(f));
        for fault in self.server.faults.iter_mut() {
            if fault.skip > 0 && matches(fault) {
                fault.skip -= 1;
            }
        }
        if let Some(index) = fire {
            {
                let resp = self.server.faults.remove(index).resp;
                match resp {
                    Resp::Status(code) => {
                        return Some((code, b"{\"error\":\"injected\"}".to_vec()))
                    }
                    Resp::Transport => return None,
                    Resp::ExpireJwt => self.server.jwt = None,
                    Resp::Abort => {
                        if let Some(d) = id
                            .as_deref()
                            .and_then(|id| self.server.deployments.iter_mut().find(|d| d.id == id))
                        {
                            d.aborted = true;
                        }
                    }
                }
            }
        }
        if on == On::Auth {
            assert_eq!(method, Method::Post);
            if self.server.reject_auth {
                return Some((401, b"{\"error\":\"unauthorized\"}".to_vec()));
            }
            self.server.issued += 1;
            let jwt = format!("jwt-{}", self.server.issued);
            self.server.jwt = Some(jwt.clone());
            return Some((200, jwt.into_bytes()));
        }
        if self.server.jwt.as_deref() != Some(bearer) {
            return Some((401, b"{\"error\":\"unauthorized\"}".to_vec()));
        }
        match on {
            On::Inventory => {
                if method == Method::Put && self.server.patch_only {
                    return Some((405, Vec::new()));
                }
                assert!(matches!(method, Method::Put | Method::Patch));
                self.server.inventories += 1;
                Some((200, Vec::new()))
            }
            On::Next => {
                if path == NEXT_V2 {
                    if self.server.v1_only {
                        return Some((404, Vec::new()));
                    }
                    assert_eq!(method, Method::Post);
                } else {
                    assert_eq!(method, Method::Get);
                }
                match self.server.active() {
                    Some(d) => {
                        let body = format!(
                            "{{\"id\":\"{}\",\"artifact\":{{\"artifact_name\":\"{}\",\"source\":{{\"uri\":\"{}\",\"expire\":\"2026-01-02T00:00:00Z\"}},\"device_types_compatible\":[\"{DEVICE_TYPE}\"]}}}}",
                            d.id, d.artifact_name, d.uri
                        );
                        Some((200, body.into_bytes()))
                    }
                    None => Some((204, Vec::new())),
                }
            }
            On::Status(_) | On::Log => {
                let running = self.running_image();
                let id = id.unwrap_or_default();
                let Some(d) = self.server.deployments.iter_mut().find(|d| d.id == id) else {
                    return Some((404, Vec::new()));
                };
                if on == On::Log {
                    d.logs.push(body.to_string());
                    return Some((if d.aborted { 409 } else { 204 }, Vec::new()));
                }
                let status = status.unwrap_or_default();
                if d.aborted || (self.server.finished_409 && !d.finals().is_empty()) {
                    d.statuses.push(format!("{status} (409)"));
                    return Some((409, Vec::new()));
                }
                let artifact = d.artifact_name.clone();
                let previous = d.finals().first().map(|s| s.to_string());
                d.statuses.push(status.clone());
                let installed = match (&self.hooks, &self.hand_off) {
                    // The hooks say what runs.
                    (Some(h), _) => Some(h.running.clone()),
                    // The installer, not the slots, says what runs.
                    (None, Some(h)) => Some(h.artifact_info.clone()),
                    (None, None) => running,
                };
                if status == "success" && installed.as_deref() != Some(artifact.as_str()) {
                    self.violation(format!(
                        "success reported for {artifact} while slot {} runs {installed:?}",
                        self.running
                    ));
                }
                if matches!(status.as_str(), "success" | "failure") {
                    if let Some(previous) = previous.filter(|p| *p != status) {
                        self.violation(format!(
                            "deployment {id}: {status} reported after {previous}"
                        ));
                    }
                }
                Some((204, Vec::new()))
            }
            On::Auth | On::Any => Some((404, Vec::new())),
        }
    }

    /// Steps until `stop` says so (checked whenever the agent waits), or
    /// a stop.
    pub fn drive(
        &mut self,
        agent: &mut Agent<'_>,
        mut idle: impl FnMut(&Self, &Agent<'_>) -> bool,
    ) -> Stop {
        self.drive_bounded(agent, 20_000, &mut idle)
    }

    pub fn drive_bounded(
        &mut self,
        agent: &mut Agent<'_>,
        max_steps: u32,
        mut idle: impl FnMut(&Self, &Agent<'_>) -> bool,
    ) -> Stop {
        for _ in 0..max_steps {
            match self.step(agent) {
                Stepped::Acted => {}
                Stepped::Waited | Stepped::Idle => {
                    if idle(self, agent) {
                        return Stop::Idle;
                    }
                    if agent.poll_at().is_none() {
                        return Stop::Idle;
                    }
                }
                Stepped::Stop(stop) => return stop,
            }
        }
        panic!(
            "the agent did not settle in {max_steps} steps; last events:\n{}",
            self.tail(40)
        );
    }

    /// Managed idle: nothing in progress and the server has nothing more.
    pub fn managed_idle(&self, agent: &Agent<'_>) -> bool {
        agent.record().step == UpdateStep::Idle
            && self.record().step == UpdateStep::Idle
            && self.server.active().is_none()
    }

    pub fn tail(&self, n: usize) -> String {
        let mut out = String::new();
        for ev in self.trace.iter().rev().take(n).rev() {
            let _ = writeln!(out, "  {ev:?}");
        }
        out
    }

    // ---------------------------------------------------------------
    // Runners: whole lives of the device.

    /// Managed mode: daemon lives until idle (reboots, power cuts and
    /// restarts included). Returns the number of lives.
    pub fn run_managed(&mut self, buffers: &mut Buffers) -> u32 {
        let mut lives = 0;
        loop {
            lives += 1;
            assert!(lives < 60, "too many restarts:\n{}", self.tail(60));
            let mut agent = self.start(buffers);
            let stop = self.drive(&mut agent, |w, a| w.managed_idle(a));
            drop(agent);
            match stop {
                Stop::Idle => return lives,
                Stop::Reboot | Stop::PowerCut => {
                    self.power_on();
                }
                // systemd restarts the daemon.
                Stop::Crash | Stop::Exited(..) => {}
                Stop::Completed(..) => panic!("a completion in managed mode"),
            }
        }
    }

    /// Standalone: one command in a fresh process (the CLI), driven to its
    /// completion. A power cut returns `None` (the device is powered on
    /// again).
    pub fn run_command(
        &mut self,
        buffers: &mut Buffers,
        command: Command<'_>,
    ) -> Option<(Completion, String)> {
        let mut agent = self.start(buffers);
        agent
            .handle_command(self.now, command)
            .expect("command accepted");
        let stop = self.drive(&mut agent, |_, _| false);
        drop(agent);
        match stop {
            Stop::Completed(completion, message) => Some((completion, message)),
            Stop::PowerCut | Stop::Reboot => {
                self.power_on();
                None
            }
            Stop::Crash => None,
            other => panic!(
                "standalone command ended with {other:?}:\n{}",
                self.tail(30)
            ),
        }
    }

    /// Checks the invariants of a device at rest.
    pub fn check_at_rest(&mut self) {
        let record = self.record();
        let env = |w: &mut Self, name: &str| w.env_var(name).unwrap_or_default();
        let part = env(self, "mender_boot_part");
        assert_eq!(
            env(self, "upgrade_available"),
            "0",
            "upgrade_available at rest\n{}",
            self.tail(40)
        );
        assert_eq!(part, env(self, "mender_boot_part_hex"), "hex var");
        assert_eq!(part, self.running.to_string(), "env boots the running slot");
        let image = self.running_image();
        assert!(image.is_some(), "the running slot holds a complete image");
        // A failed rollback script leaves the reference's mark instead:
        // `<the update's name>_INCONSISTENT` while the old image runs.
        let name = record.installed.artifact_name.as_str();
        if let Some(update) = name.strip_suffix("_INCONSISTENT") {
            assert!(
                self.scripts_run()
                    .iter()
                    .any(|s| s.starts_with("ArtifactRollback_") || s == "ArtifactCommit_Leave"),
                "{name} without a rollback or late commit script run\n{}",
                self.tail(60)
            );
            assert!(!update.is_empty(), "inconsistent mark on an empty name");
        } else {
            assert_eq!(
                Some(name),
                image.as_deref(),
                "installed name vs the booted image\n{}",
                self.tail(60)
            );
        }
        assert_eq!(record.step, UpdateStep::Idle, "at rest");
        for d in &self.server.deployments {
            let finals = d.finals();
            if !d.aborted {
                assert!(
                    !finals.is_empty(),
                    "deployment {} has no final report: {:?}\n{}",
                    d.id,
                    d.statuses,
                    self.tail(60)
                );
            }
            assert!(
                finals.windows(2).all(|w| w[0] == w[1]),
                "deployment {}: conflicting finals {:?}",
                d.id,
                d.statuses
            );
        }
        // The last finished deployment decides what runs.
        if let Some(d) = self
            .server
            .deployments
            .iter()
            .rev()
            .find(|d| !d.finals().is_empty())
        {
            if d.finals()[0] == "success" {
                assert_eq!(
                    image.as_deref(),
                    Some(d.artifact_name.as_str()),
                    "success reported for {} but another image runs\n{}",
                    d.id,
                    self.tail(60)
                );
            }
        }
        assert!(
            self.violations.is_empty(),
            "violations: {:?}\n{}",
            self.violations,
            self.tail(60)
        );
    }

    pub fn scripts_run(&self) -> Vec<String> {
        self.trace
            .iter()
            .filter_map(|e| match e {
                Ev::Script(g, p, _) => Some(format!("{}_{}", g.name(), p.name())),
                _ => None,
            })
            .collect()
    }

    pub fn persisted(&self) -> Vec<String> {
        self.trace
            .iter()
            .filter_map(|e| match e {
                Ev::Persist(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn env_writes(&self) -> Vec<Ev> {
        self.trace
            .iter()
            .filter(|e| matches!(e, Ev::SetTrial(_) | Ev::CommitBoot | Ev::RollBack(_)))
            .cloned()
            .collect()
    }
}

pub fn step_name(record: &StateRecord) -> String {
    match &record.step {
        UpdateStep::Idle => "Idle".into(),
        UpdateStep::Installed(_) => "Installed".into(),
        UpdateStep::Committing(_) => "Committing".into(),
        UpdateStep::RollingBack(_) => "RollingBack".into(),
        UpdateStep::Downloading(_) => "Downloading".into(),
        UpdateStep::Rebooting(_) => "Rebooting".into(),
        UpdateStep::RollbackRebooting(_) => "RollbackRebooting".into(),
        UpdateStep::HandingOff(_) => "HandingOff".into(),
        UpdateStep::HandedOff(_) => "HandedOff".into(),
        UpdateStep::Job(_) => "Job".into(),
        UpdateStep::Reporting(r) => {
            format!(
                "Reporting({})",
                if r.success { "success" } else { "failure" }
            )
        }
    }
}
