//! A firmware-style supervisor that drives the otalite agent in managed
//! mode with everything of its own: the loop over [`Agent`], plain-HTTP
//! sockets (`std::net::TcpStream`, framed by the core), fixed buffers from
//! a [`StaticCell`], a file-backed A/B board (two slot images, a boot
//! environment, the state record, a deployment log) and an Ed25519 device
//! key that signs the authentication request.
//!
//! One run takes the device through one deployment from the server, across
//! the reboots it needs: the `Reboot` action ends the agent's "power-on",
//! the simulated bootloader picks the slot (a trial boot, or the fallback
//! when a trial boots twice), and a new agent starts from the persisted
//! record and the boot environment. With `--power-cut-after N` the power
//! goes out once the download has fed `N` artifact bytes, with
//! `--power-cut-after-write N` right after the `N`th durable write (state
//! record or boot environment): everything in memory is dropped and the
//! device starts again from what its files hold.
//!
//! ```sh
//! cargo run -p otalite-testserver -- --artifact tests/fixtures/artifacts/rootfs-gzip.mender \
//!     --name release-2 --device-type beaglebone &        # prints its URL
//! cargo run --example supervisor -- --server http://127.0.0.1:PORT --dir /tmp/device
//! ```
//!
//! The pretend board is a `beaglebone` running `release-1` from partition 2
//! (slot A); partition 3 is slot B. The run ends once the deployment was
//! reported and the record is idle again; it prints the last status.
#![allow(clippy::std_instead_of_core)]

use otalite::agent::{
    write_download_head, Action, ActionId, Agent, AgentBuffers, AgentConfig, Command, Feed,
    Instant, Mode, Outcome, Request, ServerSettings, Slots, Timing,
};
use otalite::board::{BootControl, BootEnv, BootState, MenderBootControl, PartNumber};
use otalite::device::Provides;
use otalite::partition::Partition;
use otalite::protocol::http::{HttpUrl, ResponseReader, ResponseStatus};
use otalite::store::{StateRecord, UpdateStep};
use otalite_host::keys::{DeviceKey, KeyType};
use static_cell::StaticCell;
use std::error::Error;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// This board's device type.
pub const DEVICE_TYPE: &str = "beaglebone";
/// What the factory installed.
pub const FACTORY_ARTIFACT: &str = "release-1";
/// Slot A and slot B (`mender_boot_part`).
pub const SLOTS: [PartNumber; 2] = [2, 3];
/// Size of each slot image.
pub const SLOT_BYTES: u64 = 1 << 20;
/// Power-ons one run may take before it gives up (a boot loop).
const MAX_BOOTS: u32 = 8;
/// The whole run's deadline.
const DEADLINE: Duration = Duration::from_secs(120);
/// Timeout of every connect, read and write.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

type Fallible<T> = Result<T, Box<dyn Error>>;

/// All the RAM the supervisor works with, allocated once.
pub struct Memory {
    record: [u8; otalite::store::MAX_RECORD_LEN],
    request: [u8; 16 * 1024],
    auth: [u8; 8 * 1024],
    output: [u8; 4 * 1024],
    window: [u8; otalite::artifact::WINDOW_LEN],
    block: [u8; 16 * 1024],
    compare: [u8; 4 * 1024],
    /// Request heads and bytes received.
    net: [u8; 16 * 1024],
    /// Response bodies and decoded download bytes.
    body: [u8; 16 * 1024],
    /// Bytes received on the open artifact stream: they wait here across
    /// the requests between [`Action::OpenArtifact`] and
    /// [`Action::ReadArtifact`] (the `downloading` report, a
    /// re-authentication).
    stream: [u8; 16 * 1024],
}

impl Memory {
    /// Zeroed memory.
    pub const fn new() -> Self {
        Self {
            record: [0; otalite::store::MAX_RECORD_LEN],
            request: [0; 16 * 1024],
            auth: [0; 8 * 1024],
            output: [0; 4 * 1024],
            window: [0; otalite::artifact::WINDOW_LEN],
            block: [0; 16 * 1024],
            compare: [0; 4 * 1024],
            net: [0; 16 * 1024],
            body: [0; 16 * 1024],
            stream: [0; 16 * 1024],
        }
    }
}

/// What one run does.
pub struct Options {
    /// The server (`http://host:port`).
    pub server: String,
    /// Where the board's "flash" lives (created on the first run).
    pub dir: PathBuf,
    /// Cut the power once, at this point.
    pub power_cut: Option<PowerCut>,
    /// The identity script's output (`key=value` lines).
    pub identity: String,
}

/// Where the power goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerCut {
    /// Once the download fed this many artifact bytes.
    AfterBytes(u64),
    /// Right after the `n`th durable write of the run (the state record or
    /// the boot environment), before the agent hears it is done.
    AfterWrite(u32),
}

/// How a run ended.
#[derive(Debug)]
pub struct Summary {
    /// Power-ons (1 without a reboot).
    pub boots: u32,
    /// The power cut happened.
    pub power_cut: bool,
    /// The slot that runs at the end.
    pub active: PartNumber,
    /// What the device has installed at the end.
    pub installed: String,
    /// Durable writes (state record, boot environment) of the run.
    pub writes: u32,
}

impl Default for Memory {
    fn default() -> Self {
        Self::new()
    }
}

// -------------------------------------------------------------------
// The board: files in `dir`.

fn slot_path(dir: &Path, part: PartNumber) -> PathBuf {
    dir.join(format!("slot-{part}.img"))
}

/// Writes `bytes` to `path` atomically: a temp file, fsync, rename, fsync
/// of the directory. A power cut leaves the old or the new content.
fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// The boot environment: `name=value` lines in one file, replaced
/// atomically (the guarantee [`BootEnv::write`] asks for).
pub struct FileEnv(PathBuf);

impl FileEnv {
    fn vars(&self) -> std::io::Result<Vec<(String, String)>> {
        let text = std::fs::read_to_string(&self.0)?;
        Ok(text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect())
    }
}

impl BootEnv for FileEnv {
    type Error = std::io::Error;

    fn read(&mut self, name: &str, value: &mut [u8]) -> std::io::Result<Option<usize>> {
        let Some((_, found)) = self.vars()?.into_iter().find(|(n, _)| n == name) else {
            return Ok(None);
        };
        let target = value
            .get_mut(..found.len())
            .ok_or_else(|| std::io::Error::other(format!("{name} is too long")))?;
        target.copy_from_slice(found.as_bytes());
        Ok(Some(found.len()))
    }

    fn write(&mut self, vars: &[(&str, Option<&str>)]) -> std::io::Result<()> {
        let mut all = self.vars().unwrap_or_default();
        for (name, value) in vars {
            all.retain(|(n, _)| n != name);
            if let Some(value) = value {
                all.push((name.to_string(), value.to_string()));
            }
        }
        let text: String = all.iter().map(|(n, v)| format!("{n}={v}\n")).collect();
        atomic_write(&self.0, text.as_bytes())
    }
}

fn boot_control(dir: &Path) -> MenderBootControl<FileEnv> {
    MenderBootControl::new(FileEnv(dir.join("bootenv")))
}

/// A slot image file.
pub struct FileSlot(File);

impl embedded_io::ErrorType for FileSlot {
    type Error = std::io::Error;
}

impl embedded_io::Read for FileSlot {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl embedded_io::Write for FileSlot {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl embedded_io::Seek for FileSlot {
    fn seek(&mut self, pos: embedded_io::SeekFrom) -> std::io::Result<u64> {
        self.0.seek(match pos {
            embedded_io::SeekFrom::Start(at) => std::io::SeekFrom::Start(at),
            embedded_io::SeekFrom::End(at) => std::io::SeekFrom::End(at),
            embedded_io::SeekFrom::Current(at) => std::io::SeekFrom::Current(at),
        })
    }
}

impl Partition for FileSlot {
    fn capacity(&mut self) -> std::io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.0.sync_data()
    }
}

/// This board runs no state scripts: the artifact's are dropped.
struct NoScripts;

impl otalite::install::InstallHooks for NoScripts {
    type Error = core::convert::Infallible;

    fn header_accepted(
        &mut self,
        header: &otalite::artifact::ArtifactHeader,
    ) -> Result<(), Self::Error> {
        println!("supervisor: artifact {} accepted", header.artifact_name);
        Ok(())
    }
    fn script_start(&mut self, _name: &str, _size: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    fn script_data(&mut self, _data: &[u8]) -> Result<(), Self::Error> {
        Ok(())
    }
    fn script_end(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn progress(&mut self, _written: u64, _total: u64) {}
}

/// First power-on ever: blank slots, slot A active, no record yet.
fn factory(dir: &Path) -> Fallible<()> {
    if dir.join("bootenv").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    for part in SLOTS {
        File::create(slot_path(dir, part))?.set_len(SLOT_BYTES)?;
    }
    boot_control(dir).roll_back(SLOTS[0])?;
    Ok(())
}

/// What U-Boot does at power-on (`bootlimit=1`): a pending trial boots
/// once; a trial that boots again falls back to the other slot.
fn bootloader(dir: &Path) -> Fallible<PartNumber> {
    let mut boot = boot_control(dir);
    let state = boot.boot_state()?;
    let part = state.boot_part.ok_or("mender_boot_part is not set")?;
    if !state.upgrade_available {
        return Ok(part);
    }
    let count = state.bootcount.unwrap_or(0) + 1;
    if count > 1 {
        let other = if part == SLOTS[0] { SLOTS[1] } else { SLOTS[0] };
        println!("bootloader: the trial of partition {part} failed; falling back to {other}");
        boot.roll_back(other)?;
        return Ok(other);
    }
    boot.env_mut()
        .write(&[("bootcount", Some(&count.to_string()))])?;
    println!("bootloader: trial boot of partition {part}");
    Ok(part)
}

fn read_record(dir: &Path) -> Fallible<StateRecord> {
    match std::fs::read(dir.join("state.rec")) {
        Ok(bytes) => Ok(StateRecord::decode(&bytes)?),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut installed = Provides::named(FACTORY_ARTIFACT);
            // A short constant: always fits.
            let _ = installed
                .provides
                .append("rootfs-image.version", FACTORY_ARTIFACT);
            Ok(StateRecord {
                installed,
                ..StateRecord::default()
            })
        }
        Err(error) => Err(error.into()),
    }
}

fn device_key(dir: &Path) -> Fallible<DeviceKey> {
    let path = dir.join("device-key.pem");
    if let Some(key) = DeviceKey::load(&path)? {
        return Ok(key);
    }
    let key = DeviceKey::generate(KeyType::Ed25519)?;
    key.store(&path)?;
    Ok(key)
}

/// RFC 3339 UTC time for the deployment log.
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

// -------------------------------------------------------------------
// Network: one request per connection, framed by the core.

fn connect(url: &HttpUrl<'_>) -> std::io::Result<TcpStream> {
    if url.https {
        return Err(std::io::Error::other(
            "this supervisor speaks plain HTTP only",
        ));
    }
    let stream = TcpStream::connect((url.host, url.port))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Sends `request` and reads the whole answer: status and body length in
/// `body`.
fn exchange(
    request: &Request<'_>,
    key: &DeviceKey,
    net: &mut [u8],
    body: &mut [u8],
) -> Fallible<(u16, usize)> {
    let url = HttpUrl::parse(request.server).ok_or("the server URL is not http(s)://")?;
    let signature = match request.sign_body {
        true => Some(key.signature_header(request.body)?),
        false => None,
    };
    let head = request.write_head(url.authority, signature.as_deref(), net)?;
    let mut stream = connect(&url)?;
    stream.write_all(&net[..head])?;
    stream.write_all(request.body)?;
    let mut reader = ResponseReader::new(false);
    let mut body_len = 0;
    'read: loop {
        let received = stream.read(net)?;
        if received == 0 {
            reader.finish()?;
            break;
        }
        let mut input = &net[..received];
        while !input.is_empty() {
            let step = reader.push(input, &mut body[body_len..])?;
            body_len += step.produced;
            input = &input[step.consumed..];
            match step.status {
                ResponseStatus::Done => break 'read,
                ResponseStatus::HasMoreOutput => return Err("response body too large".into()),
                ResponseStatus::NeedsMoreInput => {}
            }
        }
    }
    let status = reader.head().map_or(0, |head| head.status);
    Ok((status, body_len))
}

/// The open artifact stream: from [`Action::OpenArtifact`] to the end of
/// the [`Action::ReadArtifact`]s that read it.
struct Stream {
    socket: TcpStream,
    reader: ResponseReader,
    /// Bytes received into [`Memory::stream`] and not pushed to the reader
    /// yet (the body bytes that came with the head, until the read).
    pending: core::ops::Range<usize>,
    /// Artifact bytes fed so far (counted from byte 0 of the artifact).
    fed: u64,
}

/// Opens the artifact stream at `uri` from byte `from`: sends the `GET`
/// and reads the answer's head (200, or 206 for a resumed download). Body
/// bytes that arrive with the head wait in `buffer`.
fn open_stream(uri: &str, from: u64, net: &mut [u8], buffer: &mut [u8]) -> Fallible<Stream> {
    let url = HttpUrl::parse(uri).ok_or("the artifact location is not http(s)://")?;
    let head = write_download_head(uri, from, net)?;
    let mut socket = connect(&url)?;
    socket.write_all(&net[..head])?;
    let mut reader = ResponseReader::new(false);
    loop {
        let received = socket.read(buffer)?;
        if received == 0 {
            reader.finish()?;
            return Err("the server closed the download before its head".into());
        }
        // No room for body bytes: the push stops after the head.
        let step = reader.push(&buffer[..received], &mut [])?;
        if let Some(head) = reader.head() {
            let expected = if from > 0 { 206 } else { 200 };
            if head.status != expected {
                return Err(format!("the server answered {} to the download", head.status).into());
            }
            return Ok(Stream {
                socket,
                reader,
                pending: step.consumed..received,
                fed: from,
            });
        }
    }
}

/// How a [`Action::ReadArtifact`] ended.
enum Fetched {
    /// The agent has what it wanted (or stopped it): the read is over,
    /// nothing to complete.
    Taken,
    /// Complete the read with this outcome (`Ok`: the stream ended).
    Ended(Result<(), String>),
    /// The power went out.
    PowerCut,
}

/// Feeds the open stream to the agent until it has enough, the stream
/// ends or breaks, or the power goes out after `cut_after` artifact bytes.
fn read_stream(
    agent: &mut Agent<'_>,
    clock: &Clock,
    stream: &mut Stream,
    buffer: &mut [u8],
    body: &mut [u8],
    slot: &mut FileSlot,
    cut_after: Option<u64>,
) -> Fetched {
    loop {
        if stream.reader.is_done() {
            // The whole body was fed and the agent still wants more.
            return Fetched::Ended(Ok(()));
        }
        if stream.pending.is_empty() {
            match stream.socket.read(buffer) {
                Ok(0) => return Fetched::Ended(stream.reader.finish().map_err(|e| e.to_string())),
                Ok(received) => stream.pending = 0..received,
                Err(error) => return Fetched::Ended(Err(error.to_string())),
            }
        }
        let step = match stream.reader.push(&buffer[stream.pending.clone()], body) {
            Ok(step) => step,
            Err(error) => return Fetched::Ended(Err(error.to_string())),
        };
        stream.pending.start += step.consumed;
        let mut bytes = &body[..step.produced];
        while !bytes.is_empty() {
            // Cut exactly at the planned byte.
            let take = match cut_after {
                Some(at) if stream.fed >= at => {
                    println!("supervisor: POWER CUT after {} artifact bytes", stream.fed);
                    return Fetched::PowerCut;
                }
                Some(at) => bytes.len().min((at - stream.fed) as usize),
                None => bytes.len(),
            };
            match agent.handle_artifact(clock.now(), &bytes[..take], slot, &mut NoScripts) {
                Feed::Continue => {}
                // The read is over: no `handle_done` follows.
                Feed::Complete | Feed::Stop => return Fetched::Taken,
            }
            stream.fed += take as u64;
            bytes = &bytes[take..];
        }
    }
}

// -------------------------------------------------------------------
// The supervisor loop.

/// The host's monotonic clock.
pub struct Clock(std::time::Instant);

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self(std::time::Instant::now())
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.0.elapsed().as_millis() as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// How one power-on ended.
enum Life {
    /// The agent asked for a reboot.
    Reboot,
    /// The power went out.
    PowerCut,
    /// The deployment is over and the agent stopped.
    Finished,
}

/// A completion to hand to the agent once the action's borrow ends.
enum Completion {
    None,
    Done(ActionId, Result<(), String>),
    Slots(ActionId, Result<Slots, String>),
    Data(ActionId, Vec<u8>),
    Response(ActionId, u16, usize),
    Read(ActionId),
    Reboot,
    Exit(bool, String),
}

/// One power-on: a new agent from the persisted record and the boot env,
/// driven until it reboots, loses power, or finished the deployment.
fn power_on(
    options: &Options,
    memory: &mut Memory,
    clock: &Clock,
    booted: PartNumber,
    cut: Option<PowerCut>,
    writes: &mut u32,
    in_deployment: &mut bool,
) -> Fallible<Life> {
    let cut_after = match cut {
        Some(PowerCut::AfterBytes(bytes)) => Some(bytes),
        _ => None,
    };
    let dir = &options.dir;
    let record = read_record(dir)?;
    let mut boot = boot_control(dir);
    let boot_state: BootState = boot.boot_state()?;
    let key = device_key(dir)?;
    let servers = [options.server.as_str()];
    let config = AgentConfig {
        device_type: DEVICE_TYPE,
        keys: &[],
        signatures_required: false,
        timing: Timing {
            update_poll: 1_000,
            inventory_poll: 60_000,
            retry_poll: 500,
            retry_poll_count: 0,
            backoff_unit: 100,
            reboot_wait: 30_000,
            control_map_expiration: 3_600_000,
            control_map_boot_expiration: 600_000,
        },
        mode: Mode::Managed(ServerSettings {
            servers: &servers,
            tenant_token: "",
            public_key_pem: key.public_key_pem(),
            client_version: concat!("supervisor-example/", env!("CARGO_PKG_VERSION")),
            hand_off: otalite::agent::HandOffRole::Off,
        }),
    };
    let Memory {
        record: record_buf,
        request,
        auth,
        output,
        window,
        block,
        compare,
        net,
        body,
        stream: stream_buf,
    } = memory;
    if record.step != UpdateStep::Idle {
        *in_deployment = true;
    } else if *in_deployment {
        // The power went out after the deployment's last write.
        return Ok(Life::Finished);
    }
    let mut agent = Agent::new(
        config,
        record,
        boot_state,
        AgentBuffers {
            record: record_buf,
            request,
            auth,
            output,
            window,
            block,
            compare,
        },
    )?;
    let mut slot: Option<FileSlot> = None;
    // The artifact stream between `OpenArtifact` and the `ReadArtifact`s.
    let mut stream: Option<Stream> = None;
    loop {
        while let Some(action) = agent.poll() {
            // The stream lives across the `downloading` report (with a
            // re-authentication: identity, auth request) and deployment-log
            // lines only.
            if !matches!(
                action,
                Action::ReadArtifact { .. }
                    | Action::Request { .. }
                    | Action::GatherIdentity { .. }
                    | Action::DeploymentLog { .. }
                    | Action::ClearDeploymentLog
            ) {
                stream = None;
            }
            let durable = matches!(
                action,
                Action::Persist { .. }
                    | Action::SetTrial { .. }
                    | Action::CommitBoot { .. }
                    | Action::RollBack { .. }
            );
            let completion = match action {
                Action::Persist { id, record } => {
                    let result = atomic_write(&dir.join("state.rec"), record);
                    Completion::Done(id, result.map_err(|e| e.to_string()))
                }
                Action::PersistControlMaps { id, record } => {
                    let result = atomic_write(&dir.join("control-maps.rec"), record);
                    Completion::Done(id, result.map_err(|e| e.to_string()))
                }
                Action::RunScripts { id, .. } => Completion::Done(id, Ok(())),
                Action::PrepareSlots { id, install } => {
                    let inactive = if booted == SLOTS[0] {
                        SLOTS[1]
                    } else {
                        SLOTS[0]
                    };
                    let opened = match install {
                        true => OpenOptions::new()
                            .read(true)
                            .write(true)
                            .open(slot_path(dir, inactive))
                            .map(|file| slot = Some(FileSlot(file))),
                        false => Ok(()),
                    };
                    Completion::Slots(
                        id,
                        opened
                            .map(|()| Slots {
                                active: booted,
                                inactive,
                                // The bootloader told us what it booted.
                                proven_by_root_device: true,
                            })
                            .map_err(|e| e.to_string()),
                    )
                }
                Action::OpenArtifact { id, uri, from } => {
                    println!("supervisor: opening {uri} at byte {from}");
                    match open_stream(uri, from, &mut net[..], &mut stream_buf[..]) {
                        Ok(opened) => {
                            stream = Some(opened);
                            Completion::Done(id, Ok(()))
                        }
                        Err(error) => Completion::Done(id, Err(error.to_string())),
                    }
                }
                Action::ReadArtifact { id } => Completion::Read(id),
                Action::SetTrial { id, part } => {
                    Completion::Done(id, boot.set_trial(part).map_err(|e| e.to_string()))
                }
                Action::CommitBoot { id } => {
                    Completion::Done(id, boot.commit().map_err(|e| e.to_string()))
                }
                Action::RollBack { id, part } => {
                    Completion::Done(id, boot.roll_back(part).map_err(|e| e.to_string()))
                }
                Action::Reboot { .. } => Completion::Reboot,
                Action::GatherIdentity { id } => {
                    Completion::Data(id, options.identity.clone().into_bytes())
                }
                Action::GatherInventory { id } => Completion::Data(
                    id,
                    format!("board=file-backed\nslot={booted}\n").into_bytes(),
                ),
                Action::Request { id, request } => {
                    match exchange(&request, &key, &mut net[..], &mut body[..]) {
                        Ok((status, len)) => Completion::Response(id, status, len),
                        Err(error) => Completion::Done(id, Err(error.to_string())),
                    }
                }
                Action::DeploymentLog { level, message } => {
                    let line = format!("{} {} {message}\n", rfc3339_now(), level.as_str());
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(dir.join("deployment.log"))
                        .and_then(|mut file| file.write_all(line.as_bytes()))?;
                    Completion::None
                }
                Action::ClearDeploymentLog => {
                    File::create(dir.join("deployment.log"))?;
                    Completion::None
                }
                Action::ReadDeploymentLog { id } => Completion::Data(
                    id,
                    std::fs::read(dir.join("deployment.log")).unwrap_or_default(),
                ),
                Action::Completed { message, .. } => {
                    return Err(format!("standalone completion in managed mode: {message}").into())
                }
                Action::Exit { failed, message } => Completion::Exit(failed, message.to_string()),
                Action::ModuleCall { .. } => {
                    return Err("update module call in managed mode".into())
                }
                Action::HandOff { .. }
                | Action::Hook { .. }
                | Action::JobDownload { .. }
                | Action::JobBuiltin { .. }
                | Action::JobFiles { .. } => {
                    return Err("hand-off or jobs action, but this supervisor installs itself from a Mender server".into())
                }
            };
            if let Completion::Done(_, Ok(())) = completion {
                if durable {
                    *writes += 1;
                    if cut == Some(PowerCut::AfterWrite(*writes)) {
                        println!("supervisor: POWER CUT after durable write {writes}");
                        return Ok(Life::PowerCut);
                    }
                }
            }
            let now = clock.now();
            match completion {
                Completion::None => {}
                Completion::Done(id, Ok(())) => agent.handle_done(now, id, Outcome::Done),
                Completion::Done(id, Err(why)) => {
                    agent.handle_done(now, id, Outcome::Transient(&why))
                }
                Completion::Slots(id, slots) => {
                    agent.handle_slots(now, id, slots.as_ref().copied().map_err(String::as_str))
                }
                Completion::Data(id, data) => agent.handle_data(now, id, &data),
                Completion::Response(id, status, len) => {
                    agent.handle_response(now, id, status, &body[..len])
                }
                Completion::Read(id) => {
                    let (Some(slot), Some(open)) = (slot.as_mut(), stream.as_mut()) else {
                        agent.handle_done(now, id, Outcome::Failed("no open stream or slot"));
                        continue;
                    };
                    // The agent keeps the location: no copy of the action's.
                    println!(
                        "supervisor: streaming {} from byte {} into the slot",
                        agent.artifact_uri().unwrap_or("?"),
                        open.fed
                    );
                    let fetched =
                        read_stream(&mut agent, clock, open, stream_buf, body, slot, cut_after);
                    match fetched {
                        // No completion after `Complete` / `Stop`.
                        Fetched::Taken => {}
                        Fetched::Ended(Ok(())) => agent.handle_done(clock.now(), id, Outcome::Done),
                        Fetched::Ended(Err(why)) => {
                            agent.handle_done(clock.now(), id, Outcome::Transient(&why))
                        }
                        Fetched::PowerCut => return Ok(Life::PowerCut),
                    }
                    // Read to its end either way (after a break the agent
                    // opens it again where it stopped).
                    stream = None;
                }
                Completion::Reboot => {
                    println!("supervisor: rebooting");
                    return Ok(Life::Reboot);
                }
                Completion::Exit(failed, message) => {
                    if failed {
                        return Err(format!("the agent failed: {message}").into());
                    }
                    return Ok(Life::Finished);
                }
            }
            match &agent.record().step {
                UpdateStep::Idle if *in_deployment => {
                    println!("supervisor: the deployment is over; stopping");
                    agent.handle_command(clock.now(), Command::Stop)?;
                }
                UpdateStep::Idle => {}
                _ => *in_deployment = true,
            }
        }
        let Some(at) = agent.poll_at() else {
            return Err("the agent waits for nothing (internal error)".into());
        };
        if clock.0.elapsed() > DEADLINE {
            return Err("no deployment finished in time".into());
        }
        let wait = clock.now().until(at).min(1_000);
        std::thread::sleep(Duration::from_millis(wait));
        agent.handle_timeout(clock.now());
    }
}

/// Runs the device through one deployment (see the module docs).
///
/// # Errors
/// The board's files, the agent or the deadline.
pub fn run(options: &Options, memory: &mut Memory) -> Fallible<Summary> {
    factory(&options.dir)?;
    let clock = Clock::new();
    let mut cut = options.power_cut;
    let mut power_cut = false;
    let mut writes = 0;
    let mut in_deployment = false;
    for boots in 1..=MAX_BOOTS {
        let booted = bootloader(&options.dir)?;
        println!("supervisor: power-on {boots}, running partition {booted}");
        match power_on(
            options,
            memory,
            &clock,
            booted,
            cut,
            &mut writes,
            &mut in_deployment,
        )? {
            Life::Reboot => {}
            Life::PowerCut => {
                power_cut = true;
                cut = None;
            }
            Life::Finished => {
                return Ok(Summary {
                    boots,
                    power_cut,
                    active: booted,
                    installed: read_record(&options.dir)?
                        .installed
                        .artifact_name
                        .to_string(),
                    writes,
                })
            }
        }
    }
    Err(format!("still not done after {MAX_BOOTS} power-ons").into())
}

static MEMORY: StaticCell<Memory> = StaticCell::new();

fn main() -> Fallible<()> {
    const USAGE: &str = "usage: supervisor --server http://HOST:PORT [--dir DIR] \
         [--power-cut-after BYTES | --power-cut-after-write N]";
    let mut server = None;
    let mut dir = std::env::temp_dir().join("otalite-supervisor");
    let mut power_cut = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(USAGE);
        match arg.as_str() {
            "--server" => server = Some(value()?),
            "--dir" => dir = PathBuf::from(value()?),
            "--power-cut-after" => power_cut = Some(PowerCut::AfterBytes(value()?.parse()?)),
            "--power-cut-after-write" => power_cut = Some(PowerCut::AfterWrite(value()?.parse()?)),
            _ => return Err(USAGE.into()),
        }
    }
    let options = Options {
        server: server.ok_or(USAGE)?,
        dir,
        power_cut,
        identity: "mac=02:00:00:00:5e:01\n".to_string(),
    };
    let memory = MEMORY.init(Memory::new());
    let summary = run(&options, memory)?;
    println!(
        "supervisor: done after {} power-on(s){}: partition {} runs {}",
        summary.boots,
        if summary.power_cut {
            " and a power cut"
        } else {
            ""
        },
        summary.active,
        summary.installed
    );
    Ok(())
}
