//! AWS IoT Jobs mode (upparat 1.12's contract, `src/agent/jobs.rs`): one
//! jobs agent against a simulated MQTT broker and AWS IoT Jobs service
//! (the device API of `tests/jobs/jobs_service.py`: `get`, `J/get`,
//! `J/update`, `notify`, a job table with `status`, `statusDetails` and
//! `versionNumber`), simulated hooks (scripted exit codes and lines per
//! call; the restart hook soft-restarts or reboots the device), a
//! simulated S3 download (resumable, breakable, pre-signed URLs that can
//! expire) and a persisted state record.
//!
//! The broker is driven as `targets/host/src/jobs.rs` drives the real one:
//! between actions, between the lines of a hook and between the chunks of
//! a download. It takes the agent's packets one at a time and answers at
//! once (no latency), so a `notify` reaches the agent before its next
//! packet.
//!
//! Named scenarios first (the behaviours `tests/jobs/README.md` records
//! for upparat), then power cuts at every persisted write, every action
//! boundary and every packet of a success run whose restart hook reboots.

use crate::harness::Buffers;
use otalite::agent::{
    Action, ActionId, Agent, AgentConfig, Builtin, Hook, HookOutcome, HookSet, Instant,
    JobDownloadEnd, JobsSettings, Mode, Outcome, Timing,
};
use otalite::board::BootState;
use otalite::protocol::mqtt::{
    decode, encode_connack, encode_pingresp, encode_puback, encode_publish, encode_suback,
    encode_unsuback, ConnectReturnCode, Decoded, Packet, Publish, QoS,
};
use otalite::store::{StateRecord, UpdateStep};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::Instant as Clock;

pub const THING: &str = "sim-thing";
pub const PREFIX: &str = "upparat_";
pub const J1: &str = "upparat_job-1";
/// upparat's scenario artifact: 300 KiB, three progress updates.
pub const ARTIFACT_LEN: usize = 307_200;
/// The simulated HTTP client's read size.
const CHUNK: usize = 64 * 1024;
const RETRY_MS: u64 = 60_000;
const MAX_RETRIES: u32 = 3;
const ALL_HOOKS: HookSet = HookSet {
    version: true,
    download: true,
    install: true,
    restart: true,
    ready: true,
};

fn artifact(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

// -------------------------------------------------------------------
// The jobs service.

#[derive(Clone, Debug)]
pub struct JobSpec {
    pub id: String,
    pub status: &'static str,
    pub state: Option<String>,
    pub version: String,
    pub meta: String,
    pub force: bool,
    /// The S3 object (`artifacts`).
    pub file: String,
    pub queued_at: u64,
}

impl JobSpec {
    pub fn queued(id: &str, version: &str) -> Self {
        Self {
            id: id.into(),
            status: "QUEUED",
            state: None,
            version: version.into(),
            meta: format!("meta-{id}"),
            force: false,
            file: "artifact.bin".into(),
            queued_at: 1_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Execution {
    pub spec: JobSpec,
    pub status: &'static str,
    pub details: Option<(String, String)>,
    pub version_number: u64,
    pub deleted: bool,
}

/// One update the service received.
#[derive(Clone, Debug)]
pub struct Update {
    pub job: String,
    pub status: String,
    pub state: String,
    pub message: String,
    pub dup: bool,
    /// `accepted` or `rejected:<code>`.
    pub reply: String,
    /// The execution was already terminal (or gone) when it came.
    pub late: bool,
}

#[derive(Default)]
pub struct Service {
    pub jobs: Vec<Execution>,
    /// The agent's publishes as `tests/jobs` transcripts name them:
    /// `get`, `J/get`, `J/update STATUS/state`.
    pub published: Vec<String>,
    pub updates: Vec<Update>,
    /// The first `n` signed URLs answer 403.
    pub expire_first_urls: u32,
    urls_issued: u32,
    expired: Vec<u32>,
    pub clock: u64,
}

const PENDING: [&str; 2] = ["QUEUED", "IN_PROGRESS"];

fn json_str(text: &str) -> String {
    let mut out = String::from("\"");
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The string value of `"key":"..."` in a flat JSON text (the agent's
/// update payload).
fn json_field(text: &str, key: &str) -> Option<String> {
    let start = text.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = text[start..].chars();
    while let Some(ch) = chars.next() {
        match ch {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

impl Service {
    pub fn add(&mut self, spec: JobSpec) {
        let details = spec.state.clone().map(|s| (s, "none".to_string()));
        self.jobs.push(Execution {
            status: spec.status,
            spec,
            details,
            version_number: 1,
            deleted: false,
        });
    }

    pub fn job(&self, id: &str) -> &Execution {
        self.jobs
            .iter()
            .find(|e| e.spec.id == id)
            .unwrap_or_else(|| panic!("no job {id}"))
    }

    fn find_mut(&mut self, id: &str) -> Option<&mut Execution> {
        self.jobs.iter_mut().find(|e| e.spec.id == id && !e.deleted)
    }

    /// `STATUS/state` of a job (`DELETED/...` when deleted).
    pub fn final_of(&self, id: &str) -> String {
        let e = self.job(id);
        let status = if e.deleted { "DELETED" } else { e.status };
        let state = e.details.as_ref().map_or("None", |d| d.0.as_str());
        format!("{status}/{state}")
    }

    fn pending(&self) -> Vec<&Execution> {
        let mut out: Vec<&Execution> = self
            .jobs
            .iter()
            .filter(|e| !e.deleted && PENDING.contains(&e.status))
            .collect();
        out.sort_by(|a, b| (a.spec.queued_at, &a.spec.id).cmp(&(b.spec.queued_at, &b.spec.id)));
        out
    }

    pub fn pending_prefixed(&self) -> usize {
        self.pending()
            .iter()
            .filter(|e| e.spec.id.starts_with(PREFIX))
            .count()
    }

    fn summary(&self, e: &Execution) -> String {
        format!(
            "{{\"jobId\":{},\"queuedAt\":{},\"lastUpdatedAt\":{},\"executionNumber\":1,\"versionNumber\":{}}}",
            json_str(&e.spec.id),
            e.spec.queued_at,
            self.clock,
            e.version_number
        )
    }

    fn summaries(&self, status: &str) -> String {
        let list: Vec<String> = self
            .pending()
            .iter()
            .filter(|e| e.status == status)
            .map(|e| self.summary(e))
            .collect();
        list.join(",")
    }

    fn notify(&self) -> (String, String) {
        let mut jobs = Vec::new();
        for status in PENDING {
            let list = self.summaries(status);
            if !list.is_empty() {
                jobs.push(format!("\"{status}\":[{list}]"));
            }
        }
        (
            "notify".into(),
            format!(
                "{{\"timestamp\":{},\"jobs\":{{{}}}}}",
                self.clock,
                jobs.join(",")
            ),
        )
    }

    /// A fresh pre-signed URL per delivery, as AWS signs.
    fn sign(&mut self, file: &str) -> String {
        self.urls_issued += 1;
        let sig = self.urls_issued;
        if sig <= self.expire_first_urls {
            self.expired.push(sig);
        }
        format!("https://s3.sim.invalid/{file}?X-Amz-Expires=3600&X-Amz-Signature={sig}")
    }

    /// The object and whether its signature expired.
    pub fn resolve(&self, url: &str) -> (String, bool) {
        let rest = url.strip_prefix("https://s3.sim.invalid/").unwrap_or(url);
        let (file, query) = rest.split_once('?').unwrap_or((rest, ""));
        let sig: u32 = query
            .rsplit("X-Amz-Signature=")
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (file.to_string(), self.expired.contains(&sig))
    }

    /// A device request on `rel` (the topic after `$aws/things/T/jobs/`):
    /// the replies and notifications, as (rel topic, payload).
    fn handle(&mut self, rel: &str, payload: &str, dup: bool) -> Vec<(String, String)> {
        let parts: Vec<&str> = rel.split('/').collect();
        let ts = self.clock;
        match parts.as_slice() {
            ["get"] => {
                self.published.push("get".into());
                vec![(
                    "get/accepted".into(),
                    format!(
                        "{{\"inProgressJobs\":[{}],\"queuedJobs\":[{}],\"timestamp\":{ts}}}",
                        self.summaries("IN_PROGRESS"),
                        self.summaries("QUEUED")
                    ),
                )]
            }
            [job, "get"] => {
                self.published.push(format!("{job}/get"));
                let Some(e) = self.jobs.iter().find(|e| e.spec.id == *job && !e.deleted) else {
                    return vec![(
                        format!("{job}/get/rejected"),
                        format!("{{\"code\":\"ResourceNotFound\",\"message\":\"no {job}\",\"timestamp\":{ts}}}"),
                    )];
                };
                let e = e.clone();
                let url = self.sign(&e.spec.file);
                let details = e.details.as_ref().map_or(String::new(), |(s, m)| {
                    format!(
                        ",\"statusDetails\":{{\"state\":{},\"message\":{}}}",
                        json_str(s),
                        json_str(m)
                    )
                });
                vec![(
                    format!("{job}/get/accepted"),
                    format!(
                        "{{\"execution\":{{\"jobId\":{},\"thingName\":\"{THING}\",\"status\":\"{}\",\"queuedAt\":{},\"lastUpdatedAt\":{ts},\"versionNumber\":{},\"executionNumber\":1{details},\"jobDocument\":{{\"file\":{},\"version\":{},\"meta\":{},\"force\":{}}}}},\"timestamp\":{ts}}}",
                        json_str(job),
                        e.status,
                        e.spec.queued_at,
                        e.version_number,
                        json_str(&url),
                        json_str(&e.spec.version),
                        json_str(&e.spec.meta),
                        e.spec.force
                    ),
                )]
            }
            [job, "update"] => {
                let status = json_field(payload, "status").unwrap_or_default();
                let st = json_field(payload, "state").unwrap_or_default();
                let message = json_field(payload, "message").unwrap_or_default();
                self.published.push(format!("{job}/update {status}/{st}"));
                let mut update = Update {
                    job: job.to_string(),
                    status: status.clone(),
                    state: st.clone(),
                    message: message.clone(),
                    dup,
                    reply: "accepted".into(),
                    late: false,
                };
                let reject = |code: &str| {
                    (
                        format!("{job}/update/rejected"),
                        format!(
                            "{{\"code\":\"{code}\",\"message\":\"refused\",\"timestamp\":{ts}}}"
                        ),
                    )
                };
                let Some(e) = self.find_mut(job) else {
                    update.reply = "rejected:ResourceNotFound".into();
                    update.late = true;
                    self.updates.push(update);
                    return vec![reject("ResourceNotFound")];
                };
                if !PENDING.contains(&e.status) {
                    update.reply = "rejected:InvalidStateTransition".into();
                    update.late = true;
                    self.updates.push(update);
                    return vec![reject("InvalidStateTransition")];
                }
                let status: &'static str = match status.as_str() {
                    "IN_PROGRESS" => "IN_PROGRESS",
                    "SUCCEEDED" => "SUCCEEDED",
                    "FAILED" => "FAILED",
                    _ => {
                        update.reply = "rejected:InvalidRequest".into();
                        self.updates.push(update);
                        return vec![reject("InvalidRequest")];
                    }
                };
                e.status = status;
                e.details = Some((st, message));
                e.version_number += 1;
                self.updates.push(update);
                let mut out = vec![(
                    format!("{job}/update/accepted"),
                    format!("{{\"timestamp\":{ts}}}"),
                )];
                if !PENDING.contains(&status) {
                    out.push(self.notify());
                }
                out
            }
            _ => Vec::new(),
        }
    }

    /// CancelJob with force: the execution becomes CANCELED.
    fn cancel(&mut self, id: &str) -> Vec<(String, String)> {
        if let Some(e) = self.find_mut(id) {
            e.status = "CANCELED";
            e.version_number += 1;
        }
        vec![self.notify()]
    }

    fn delete(&mut self, id: &str) -> Vec<(String, String)> {
        if let Some(e) = self.find_mut(id) {
            e.deleted = true;
        }
        vec![self.notify()]
    }
}

// -------------------------------------------------------------------
// The device: hooks, files, record.

/// How a hook call ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Exit(i32),
    /// The restart hook reboots the device (the staged version comes up).
    Reboot,
    /// The power goes while it runs.
    PowerCut,
}

/// One scripted hook call.
#[derive(Clone, Debug)]
pub struct Call {
    pub end: End,
    pub lines: Vec<&'static str>,
    /// How long it runs.
    pub ms: u64,
}

impl Call {
    pub fn exit(code: i32) -> Self {
        Self {
            end: End::Exit(code),
            lines: Vec::new(),
            ms: 100,
        }
    }
}

/// A hook call as the host made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookCall {
    pub hook: Hook,
    pub elapsed_s: u64,
    pub retry: u32,
    pub meta: String,
    pub job: String,
    pub force: bool,
    pub at_ms: u64,
    pub end: String,
}

/// Where the power goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Persist `n` (0-based, over the whole run), before or after it took
    /// effect.
    Effect { n: u32, after: bool },
    /// Before the `n`-th action.
    Action(u32),
    /// Before the `n`-th agent packet reaches the broker (it is lost).
    Packet(u32),
}

/// What the broker does when a trigger fires.
#[derive(Clone, Debug)]
pub enum Do {
    Cancel(String),
    Delete(String),
    Add(JobSpec),
    /// The connection breaks and the broker refuses connections for
    /// `down_ms`; `lose_reply`: the packet was taken (and acted on) but
    /// its PUBACK and replies are lost, else the packet itself is lost.
    Drop {
        down_ms: u64,
        lose_reply: bool,
    },
}

/// When a trigger fires.
#[derive(Clone, Debug)]
pub enum When {
    /// The `count`-th update of `job` with this `state` arrives.
    Update {
        job: String,
        state: &'static str,
        count: u32,
    },
    /// A hook starts (its `count`-th call).
    Hook(Hook, u32),
    /// A built-in step starts (its `count`-th run).
    Builtin(Builtin, u32),
}

#[derive(Clone, Debug)]
pub struct Trigger {
    pub when: When,
    pub what: Do,
    seen: u32,
    done: bool,
}

/// The broker side of one TCP connection.
struct Conn {
    /// Bytes from the agent not yet decoded.
    inbox: Vec<u8>,
    /// Packets to the agent.
    outbox: VecDeque<Vec<u8>>,
    connected: bool,
    subs: Vec<String>,
    next_id: u16,
}

fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    PowerCut,
    Reboot,
    Exited,
    Idle,
}

/// An owned copy of a jobs-mode [`Action`].
#[derive(Clone, Debug)]
enum Act {
    Persist(ActionId, Vec<u8>),
    Hook {
        id: ActionId,
        hook: Hook,
        elapsed_s: u64,
        retry: u32,
        meta: String,
        job: String,
        force: bool,
    },
    Download(ActionId, String, String, bool),
    Builtin(ActionId, Builtin, String),
    Files(Option<String>),
    Exit(String),
    Other(String),
}

impl From<Action<'_>> for Act {
    fn from(action: Action<'_>) -> Self {
        match action {
            Action::Persist { id, record } => Self::Persist(id, record.to_vec()),
            Action::Hook {
                id,
                hook,
                elapsed_s,
                retry,
                meta,
                job_id,
                force,
            } => Self::Hook {
                id,
                hook,
                elapsed_s,
                retry,
                meta: meta.into(),
                job: job_id.into(),
                force,
            },
            Action::JobDownload {
                id,
                uri,
                job_id,
                sniff,
            } => Self::Download(id, uri.into(), job_id.into(), sniff),
            Action::JobBuiltin {
                id, builtin, uri, ..
            } => Self::Builtin(id, builtin, uri.into()),
            Action::JobFiles { keep } => Self::Files(keep.map(str::to_string)),
            Action::Exit { message, .. } => Self::Exit(message.into()),
            other => Self::Other(format!("{other:?}")),
        }
    }
}

/// The simulated world around one jobs agent.
pub struct JobsWorld {
    pub now: Instant,
    pub hooks: HookSet,
    pub retry_interval_ms: u64,
    pub max_retries: u32,
    pub service: Service,
    pub triggers: Vec<Trigger>,
    /// Broker refuses connections until then.
    pub broker_down_until: Instant,
    conn: Option<Conn>,
    /// Connection attempts: (ms, accepted).
    pub connects: Vec<(u64, bool)>,
    /// S3 objects.
    pub artifacts: HashMap<String, Vec<u8>>,
    /// One entry per download request: it breaks after this many bytes.
    pub drops: VecDeque<u64>,
    /// Download requests: (object, from, status or end).
    pub http: Vec<(String, u64, String)>,
    /// Job files in the download directory.
    pub files: BTreeMap<String, Vec<u8>>,
    /// What the version hook prints.
    pub installed: String,
    /// Installed by the install hook, running after a restart.
    pub staged: Option<String>,
    /// A/B style: the staged version comes up on any boot (a power cut
    /// too), not only through the restart hook.
    pub activate_on_boot: bool,
    /// The staged version does not come up after a reboot (the old one
    /// runs on).
    pub reboot_keeps_old: bool,
    pub scripts: HashMap<Hook, Vec<Call>>,
    /// `mender_install`: no install hook, Mender Artifacts into the slot.
    pub mender_install: bool,
    /// Objects that are Mender Artifacts (their head says so).
    pub mender_objects: Vec<String>,
    /// The A/B slots as the standalone verbs leave them (what
    /// [`Builtin`] steps see and change).
    pub slots: SlotSim,
    /// The built-in steps run: `install exit 0`, `reboot`, ...
    pub builtins: Vec<String>,
    calls_made: HashMap<Hook, usize>,
    pub hook_calls: Vec<HookCall>,
    /// The persisted state record.
    pub disk: Vec<u8>,
    pub persisted: Vec<String>,
    pub cut: Option<Cut>,
    pub effects: u32,
    pub actions: u32,
    pub packets: u32,
    pub boots: u32,
    /// When the cut fired: the record's phase, the service's
    /// `STATUS/state` of job 1, and the install hook calls that ended.
    pub at_cut: Option<(String, String, usize)>,
    pub trace: Vec<String>,
    pub violations: Vec<String>,
}

fn phase_name(record: &StateRecord) -> String {
    match &record.step {
        UpdateStep::Idle => "Idle".into(),
        UpdateStep::Job(job) => format!("{:?} {}", job.phase, job.job_id),
        other => format!("unexpected {other:?}"),
    }
}

impl JobsWorld {
    pub fn new() -> Self {
        let mut artifacts = HashMap::new();
        artifacts.insert("artifact.bin".to_string(), artifact(ARTIFACT_LEN));
        let mut buffer = vec![0; otalite::store::MAX_RECORD_LEN];
        let disk = StateRecord::default().encode(&mut buffer).unwrap().to_vec();
        Self {
            now: Instant::from_millis(1_000_000),
            hooks: ALL_HOOKS,
            retry_interval_ms: RETRY_MS,
            max_retries: MAX_RETRIES,
            service: Service::default(),
            triggers: Vec::new(),
            broker_down_until: Instant::default(),
            conn: None,
            connects: Vec::new(),
            artifacts,
            drops: VecDeque::new(),
            http: Vec::new(),
            files: BTreeMap::new(),
            installed: "1.0.0".into(),
            staged: None,
            activate_on_boot: false,
            reboot_keeps_old: false,
            scripts: HashMap::new(),
            mender_install: false,
            mender_objects: Vec::new(),
            slots: SlotSim::default(),
            builtins: Vec::new(),
            calls_made: HashMap::new(),
            hook_calls: Vec::new(),
            disk,
            persisted: Vec::new(),
            cut: None,
            effects: 0,
            actions: 0,
            packets: 0,
            boots: 0,
            at_cut: None,
            trace: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// The usual world: job 1 queued for version 2.0.0.
    pub fn one_job() -> Self {
        let mut w = Self::new();
        w.service.add(JobSpec::queued(J1, "2.0.0"));
        w
    }

    pub fn on(&mut self, when: When, what: Do) {
        self.triggers.push(Trigger {
            when,
            what,
            seen: 0,
            done: false,
        });
    }

    pub fn on_update(&mut self, state: &'static str, count: u32, what: Do) {
        self.on(
            When::Update {
                job: J1.into(),
                state,
                count,
            },
            what,
        );
    }

    pub fn script(&mut self, hook: Hook, calls: Vec<Call>) {
        self.scripts.insert(hook, calls);
    }

    pub fn record(&self) -> StateRecord {
        StateRecord::decode(&self.disk).expect("the persisted record decodes")
    }

    pub fn start<'b>(&mut self, buffers: &'b mut Buffers) -> Agent<'b> {
        let settings = JobsSettings {
            thing_name: THING,
            client_id: "upparat",
            job_prefix: PREFIX,
            hooks: self.hooks,
            retry_interval_ms: self.retry_interval_ms,
            max_retries: self.max_retries,
            keep_alive_secs: 60,
            mender_install: self.mender_install,
        };
        let config = AgentConfig {
            device_type: "sim",
            keys: &[],
            signatures_required: false,
            timing: Timing::from_config(&otalite::config::MenderConfig::default()),
            mode: Mode::Jobs(settings),
        };
        let boot = BootState {
            boot_part: None,
            upgrade_available: false,
            bootcount: None,
        };
        Agent::new(config, self.record(), boot, buffers.agent()).expect("agent")
    }

    fn cut_fired(&mut self, what: String) {
        self.cut = None;
        let phase = phase_name(&self.record());
        let job = if self.service.jobs.iter().any(|e| e.spec.id == J1) {
            self.service.final_of(J1)
        } else {
            String::new()
        };
        let installs = self
            .hook_calls
            .iter()
            .filter(|c| c.hook == Hook::Install && c.end == "exit 0")
            .count();
        self.at_cut = Some((phase, job, installs));
        self.trace.push(what);
    }

    fn violation(&mut self, what: String) {
        self.trace.push(format!("VIOLATION: {what}"));
        self.violations.push(what);
    }

    pub fn tail(&self, n: usize) -> String {
        let mut out = String::new();
        for line in self.trace.iter().rev().take(n).rev() {
            let _ = writeln!(out, "  {line}");
        }
        out
    }

    /// The device comes up again: the broker sees the connection go, the
    /// staged version runs if the boot activates it.
    pub fn power_on(&mut self, rebooted: bool) {
        self.boots += 1;
        self.conn = None;
        if let Some(running) = self.slots.boot() {
            self.installed = running;
        }
        if (rebooted || self.activate_on_boot) && !self.reboot_keeps_old {
            if let Some(staged) = self.staged.take() {
                self.installed = staged;
            }
        }
        self.trace
            .push(format!("boot {} running {}", self.boots, self.installed));
    }

    // ---------------------------------------------------------------
    // The broker and the service.

    fn send_to_agent(conn: &mut Conn, rel: &str, payload: &str) {
        let topic = format!("$aws/things/{THING}/jobs/{rel}");
        if !conn.connected || !conn.subs.iter().any(|f| topic_matches(f, &topic)) {
            return;
        }
        conn.next_id = conn.next_id.wrapping_add(1).max(1);
        let mut out = vec![0; 64 * 1024];
        let len = encode_publish(
            &Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: &topic,
                packet_id: Some(conn.next_id),
                payload: payload.as_bytes(),
            },
            &mut out,
        )
        .unwrap();
        out.truncate(len);
        conn.outbox.push_back(out);
    }

    fn publish_all(&mut self, messages: Vec<(String, String)>) {
        for (rel, payload) in messages {
            self.trace.push(format!("service -> {rel}"));
            if let Some(conn) = self.conn.as_mut() {
                Self::send_to_agent(conn, &rel, &payload);
            }
        }
    }

    fn apply(&mut self, what: Do) {
        self.trace.push(format!("trigger: {what:?}"));
        let messages = match what {
            Do::Cancel(job) => self.service.cancel(&job),
            Do::Delete(job) => self.service.delete(&job),
            Do::Add(spec) => {
                self.service.add(spec);
                vec![self.service.notify()]
            }
            Do::Drop { .. } => unreachable!("applied by the broker"),
        };
        self.publish_all(messages);
    }

    /// The triggers matching an event, now due.
    fn fire(&mut self, matches: impl Fn(&When) -> bool) -> Vec<Do> {
        let mut due = Vec::new();
        for t in &mut self.triggers {
            if t.done || !matches(&t.when) {
                continue;
            }
            t.seen += 1;
            let count = match &t.when {
                When::Update { count, .. } | When::Hook(_, count) | When::Builtin(_, count) => {
                    *count
                }
            };
            if t.seen >= count {
                t.done = true;
                due.push(t.what.clone());
            }
        }
        due
    }

    fn break_connection(&mut self, agent: &mut Agent<'_>, down_ms: u64) {
        self.trace
            .push(format!("connection broken; broker down {down_ms} ms"));
        self.conn = None;
        self.broker_down_until = self.now.after(down_ms);
        agent.handle_mqtt_lost(self.now, "connection reset by peer");
    }

    /// The broker takes the bytes of one packet from the agent.
    fn broker_receive(&mut self, agent: &mut Agent<'_>, bytes: &[u8]) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        conn.inbox.extend_from_slice(bytes);
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            let inbox = std::mem::take(&mut conn.inbox);
            let (packet, len) = match decode(&inbox) {
                Ok(Decoded::Packet { packet, len }) => (packet, len),
                Ok(Decoded::Incomplete { .. }) => {
                    conn.inbox = inbox;
                    return;
                }
                Err(e) => {
                    self.violation(format!("the broker cannot decode the agent's bytes: {e}"));
                    self.conn = None;
                    return;
                }
            };
            let mut buf = [0u8; 64];
            let mut publish = None;
            let mut bad = None;
            match packet {
                Packet::Connect(c) => {
                    if !c.clean_session {
                        bad = Some("CONNECT without a clean session".to_string());
                    }
                    conn.connected = true;
                    conn.subs.clear();
                    let n = encode_connack(false, ConnectReturnCode::Accepted, &mut buf).unwrap();
                    conn.outbox.push_back(buf[..n].to_vec());
                }
                Packet::Subscribe { packet_id, filters } => {
                    let mut codes = Vec::new();
                    for (filter, _) in filters.iter() {
                        if !conn.subs.iter().any(|f| f == filter) {
                            conn.subs.push(filter.to_string());
                        }
                        codes.push(1u8);
                    }
                    let n = encode_suback(packet_id, &codes, &mut buf).unwrap();
                    conn.outbox.push_back(buf[..n].to_vec());
                }
                Packet::Unsubscribe { packet_id, filters } => {
                    for (filter, _) in filters.iter() {
                        conn.subs.retain(|f| f != filter);
                    }
                    let n = encode_unsuback(packet_id, &mut buf).unwrap();
                    conn.outbox.push_back(buf[..n].to_vec());
                }
                Packet::Publish(p) => {
                    publish = Some((
                        p.topic.to_string(),
                        String::from_utf8_lossy(p.payload).to_string(),
                        p.dup,
                        p.packet_id,
                    ));
                }
                Packet::PubAck(_) => {}
                Packet::PingReq => {
                    let n = encode_pingresp(&mut buf).unwrap();
                    conn.outbox.push_back(buf[..n].to_vec());
                }
                Packet::Disconnect => {
                    self.conn = None;
                    return;
                }
                other => bad = Some(format!("unexpected packet from the agent: {other:?}")),
            }
            if let Some(bad) = bad {
                self.violation(bad);
            }
            if let Some(conn) = self.conn.as_mut() {
                conn.inbox = inbox[len..].to_vec();
            }
            if let Some((topic, payload, dup, packet_id)) = publish {
                self.broker_publish(agent, &topic, &payload, dup, packet_id);
            }
        }
    }

    fn broker_publish(
        &mut self,
        agent: &mut Agent<'_>,
        topic: &str,
        payload: &str,
        dup: bool,
        packet_id: Option<u16>,
    ) {
        let base = format!("$aws/things/{THING}/jobs/");
        let Some(rel) = topic.strip_prefix(&base) else {
            self.violation(format!("publish to {topic}"));
            return;
        };
        // An update may fire triggers: a connection drop at once, the
        // service's actions after its replies (as jobs_service.py).
        let due = match rel.split_once("/update") {
            Some((job, "")) => {
                let st = json_field(payload, "state").unwrap_or_default();
                self.fire(
                    |w| matches!(w, When::Update { job: j, state: s, .. } if j == job && *s == st),
                )
            }
            _ => Vec::new(),
        };
        let mut drop = None;
        let mut actions = Vec::new();
        for what in due {
            match what {
                Do::Drop {
                    down_ms,
                    lose_reply,
                } => drop = Some((down_ms, lose_reply)),
                other => actions.push(other),
            }
        }
        if let Some((down_ms, false)) = drop {
            self.trace.push(format!("lost in transit: {rel}"));
            self.break_connection(agent, down_ms);
            return;
        }
        self.service.clock = self.now.as_millis() / 1000;
        let replies = self.service.handle(rel, payload, dup);
        self.trace.push(format!(
            "agent -> {}{}",
            self.service.published.last().cloned().unwrap_or_default(),
            if dup { " (dup)" } else { "" }
        ));
        if let Some((down_ms, true)) = drop {
            self.trace.push(format!("PUBACK and replies lost: {rel}"));
            self.break_connection(agent, down_ms);
            return;
        }
        if let (Some(id), Some(conn)) = (packet_id, self.conn.as_mut()) {
            let mut buf = [0u8; 8];
            let n = encode_puback(id, &mut buf).unwrap();
            conn.outbox.push_back(buf[..n].to_vec());
        }
        self.publish_all(replies);
        for what in actions {
            self.apply(what);
        }
    }

    /// Serves the connection as the host does: opens it when the agent
    /// wants it, takes the agent's packets one at a time and hands it the
    /// broker's. `Some(PowerCut)` when a packet cut fired.
    fn serve(&mut self, agent: &mut Agent<'_>) -> Option<Stop> {
        let mut out = vec![0u8; 16 * 1024];
        for _ in 0..10_000 {
            if agent.mqtt_wants_connection(self.now) {
                self.conn = None;
                let ok = self.now >= self.broker_down_until;
                self.connects.push((self.now.as_millis(), ok));
                if ok {
                    self.conn = Some(Conn {
                        inbox: Vec::new(),
                        outbox: VecDeque::new(),
                        connected: false,
                        subs: Vec::new(),
                        next_id: 0,
                    });
                    self.trace.push("connected".into());
                    agent.handle_mqtt_connected(self.now);
                } else {
                    self.trace.push("connection refused".into());
                    agent.handle_mqtt_lost(self.now, "connection refused");
                    return None;
                }
            }
            self.conn.as_ref()?;
            let mut busy = false;
            if let Some(len) = agent.poll_transmit(self.now, &mut out) {
                busy = true;
                if self.cut == Some(Cut::Packet(self.packets)) {
                    self.cut_fired(format!("power cut before packet {}", self.packets));
                    return Some(Stop::PowerCut);
                }
                self.packets += 1;
                let bytes = out[..len].to_vec();
                self.broker_receive(agent, &bytes);
            }
            let next = self.conn.as_mut().and_then(|c| c.outbox.pop_front());
            if let Some(packet) = next {
                busy = true;
                let mut rest = &packet[..];
                let mut stuck = 0;
                while !rest.is_empty() {
                    let taken = agent.handle_mqtt_bytes(self.now, rest);
                    if agent.mqtt_wants_connection(self.now) {
                        self.violation("the session failed on the broker's bytes".into());
                        self.conn = None;
                        break;
                    }
                    if taken == 0 {
                        stuck += 1;
                        assert!(stuck < 64, "the agent takes no bytes\n{}", self.tail(30));
                        // Acknowledgements wait: send them first.
                        if let Some(len) = agent.poll_transmit(self.now, &mut out) {
                            self.packets += 1;
                            let bytes = out[..len].to_vec();
                            self.broker_receive(agent, &bytes);
                        }
                        continue;
                    }
                    rest = &rest[taken..];
                }
            }
            if !busy {
                return None;
            }
        }
        panic!("the connection does not settle\n{}", self.tail(40));
    }

    /// Time passes (a hook runs): the agent's timers and the connection
    /// are served.
    fn pass_time(&mut self, agent: &mut Agent<'_>, ms: u64) -> Option<Stop> {
        let until = self.now.after(ms);
        for _ in 0..1000 {
            if let Some(stop) = self.serve(agent) {
                return Some(stop);
            }
            match agent.poll_at() {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    agent.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = until;
        self.serve(agent)
    }

    // ---------------------------------------------------------------
    // The host.

    fn step(&mut self, agent: &mut Agent<'_>) -> Option<Stop> {
        if let Some(stop) = self.serve(agent) {
            return Some(stop);
        }
        let Some(act) = agent.poll().map(Act::from) else {
            let at = agent.poll_at()?;
            self.now = self.now.max(at);
            agent.handle_timeout(self.now);
            return None;
        };
        if self.cut == Some(Cut::Action(self.actions)) {
            self.cut_fired(format!("power cut before action {}", self.actions));
            return Some(Stop::PowerCut);
        }
        self.actions += 1;
        let now = self.now;
        match act {
            Act::Persist(id, bytes) => {
                let record = match StateRecord::decode(&bytes) {
                    Ok(record) => record,
                    Err(e) => {
                        self.violation(format!("the persisted record does not decode: {e}"));
                        return Some(Stop::Exited);
                    }
                };
                let n = self.effects;
                if self.cut == Some(Cut::Effect { n, after: false }) {
                    self.cut_fired(format!("power cut before persist {n}"));
                    return Some(Stop::PowerCut);
                }
                self.effects += 1;
                self.disk = bytes;
                let name = phase_name(&record);
                self.trace.push(format!("persist {name}"));
                self.persisted.push(name);
                if self.cut == Some(Cut::Effect { n, after: true }) {
                    self.cut_fired(format!("power cut after persist {n}"));
                    return Some(Stop::PowerCut);
                }
                agent.handle_done(now, id, Outcome::Done);
            }
            Act::Files(keep) => {
                self.trace.push(format!("files keep {keep:?}"));
                self.files.retain(|name, _| Some(name) == keep.as_ref());
            }
            Act::Hook {
                id,
                hook,
                elapsed_s,
                retry,
                meta,
                job,
                force,
            } => {
                return self.run_hook(agent, id, hook, elapsed_s, retry, meta, job, force);
            }
            Act::Download(id, uri, job, sniff) => {
                return self.download(agent, id, &uri, &job, sniff)
            }
            Act::Builtin(id, builtin, uri) => return self.run_builtin(agent, id, builtin, &uri),
            Act::Exit(message) => {
                self.trace.push(format!("exit: {message}"));
                return Some(Stop::Exited);
            }
            Act::Other(what) => {
                self.violation(format!("unexpected action in jobs mode: {what}"));
                return Some(Stop::Exited);
            }
        }
        None
    }

    fn configured(&self, hook: Hook) -> bool {
        match hook {
            Hook::Version => self.hooks.version,
            Hook::Download => self.hooks.download,
            Hook::Install => self.hooks.install,
            Hook::Restart => self.hooks.restart,
            Hook::Ready => self.hooks.ready,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_hook(
        &mut self,
        agent: &mut Agent<'_>,
        id: ActionId,
        hook: Hook,
        elapsed_s: u64,
        retry: u32,
        meta: String,
        job: String,
        force: bool,
    ) -> Option<Stop> {
        if !self.configured(hook) {
            self.violation(format!("the {} hook runs but none is set", hook.as_str()));
        }
        let n = *self.calls_made.entry(hook).or_default();
        *self.calls_made.get_mut(&hook).unwrap() += 1;
        let call = self
            .scripts
            .get(&hook)
            .and_then(|calls| calls.get(n).or(calls.last()))
            .cloned()
            .unwrap_or_else(|| Call::exit(0));
        let mut record = HookCall {
            hook,
            elapsed_s,
            retry,
            meta,
            job: job.clone(),
            force,
            at_ms: self.now.as_millis(),
            end: String::new(),
        };
        self.trace.push(format!(
            "hook {} {elapsed_s} {retry} {}{}",
            hook.as_str(),
            record.meta,
            if force { " force" } else { "" }
        ));
        if hook == Hook::Install && !self.files.contains_key(&job) {
            self.violation(format!("the install hook runs without the file of {job}"));
        }
        for what in self.fire(|w| matches!(w, When::Hook(h, _) if *h == hook)) {
            match what {
                Do::Drop { down_ms, .. } => self.break_connection(agent, down_ms),
                other => self.apply(other),
            }
        }
        let mut lines: Vec<String> = call.lines.iter().map(|l| l.to_string()).collect();
        if hook == Hook::Version {
            lines.push(self.installed.clone());
        }
        let mut cancelled = false;
        let step_ms = call.ms / (lines.len() as u64 + 1);
        for line in &lines {
            if let Some(stop) = self.pass_time(agent, step_ms) {
                return Some(stop);
            }
            if agent.job_cancelled() {
                cancelled = true;
                break;
            }
            agent.handle_hook_output(self.now, id, line);
        }
        if !cancelled {
            if let Some(stop) = self.pass_time(agent, step_ms) {
                return Some(stop);
            }
            cancelled = agent.job_cancelled();
        }
        let last = lines.last().cloned();
        let outcome = if cancelled {
            record.end = "killed".into();
            HookOutcome::Cancelled
        } else {
            match call.end {
                End::Exit(code) => {
                    record.end = format!("exit {code}");
                    if code == 0 {
                        match hook {
                            Hook::Install => {
                                let version = self.service.job(&job).spec.version.clone();
                                self.staged = Some(version);
                            }
                            Hook::Restart => {
                                if let Some(staged) = self.staged.take() {
                                    self.installed = staged;
                                }
                            }
                            _ => {}
                        }
                    }
                    HookOutcome::Exited {
                        code,
                        last_line: last.as_deref(),
                    }
                }
                End::Reboot => {
                    record.end = "reboot".into();
                    self.hook_calls.push(record);
                    self.trace.push("the restart hook reboots".into());
                    return Some(Stop::Reboot);
                }
                End::PowerCut => {
                    record.end = "power cut".into();
                    self.hook_calls.push(record);
                    self.trace
                        .push(format!("power cut in the {} hook", hook.as_str()));
                    return Some(Stop::PowerCut);
                }
            }
        };
        self.trace
            .push(format!("hook {}: {}", hook.as_str(), record.end));
        self.hook_calls.push(record);
        agent.handle_hook(self.now, id, outcome);
        None
    }

    /// A built-in step as the standalone verbs do it on the slots.
    fn run_builtin(
        &mut self,
        agent: &mut Agent<'_>,
        id: ActionId,
        builtin: Builtin,
        uri: &str,
    ) -> Option<Stop> {
        if !self.mender_install || self.hooks.install {
            self.violation(format!(
                "built-in {} without mender_install",
                builtin.as_str()
            ));
        }
        self.trace.push(format!("built-in {}", builtin.as_str()));
        for what in self.fire(|w| matches!(w, When::Builtin(b, _) if *b == builtin)) {
            match what {
                Do::Drop { down_ms, .. } => self.break_connection(agent, down_ms),
                other => self.apply(other),
            }
        }
        // The install streams for a while; the rest is quick.
        let ms = if builtin == Builtin::Install {
            2_000
        } else {
            100
        };
        if let Some(stop) = self.pass_time(agent, ms) {
            return Some(stop);
        }
        if builtin == Builtin::Install && agent.job_cancelled() {
            self.builtins.push("install killed".into());
            agent.handle_hook(self.now, id, HookOutcome::Cancelled);
            return None;
        }
        let (code, line) = match builtin {
            Builtin::Install => {
                let (object, _) = self.service.resolve(uri);
                if !self.mender_objects.contains(&object) {
                    self.violation(format!("built-in install of {object}, no artifact"));
                }
                let version = self
                    .service
                    .jobs
                    .iter()
                    .find(|e| e.spec.file == object)
                    .map(|e| e.spec.version.clone())
                    .unwrap_or_default();
                // The host gives up an uncommitted install first.
                self.slots.rollback();
                let code = self.slots.install(version, &self.installed);
                (code, None)
            }
            Builtin::Reboot => {
                self.builtins.push("reboot".into());
                self.trace.push("the built-in reboot".into());
                return Some(Stop::Reboot);
            }
            Builtin::Commit => (self.slots.commit(), None),
            Builtin::Rollback => (self.slots.rollback(), None),
            Builtin::ShowArtifact => (0, Some(self.installed.clone())),
        };
        self.builtins
            .push(format!("{} exit {code}", builtin.as_str()));
        let outcome = HookOutcome::Exited {
            code,
            last_line: line.as_deref(),
        };
        agent.handle_hook(self.now, id, outcome);
        None
    }

    fn download(
        &mut self,
        agent: &mut Agent<'_>,
        id: ActionId,
        uri: &str,
        job: &str,
        sniff: bool,
    ) -> Option<Stop> {
        let (object, expired) = self.service.resolve(uri);
        let have = self.files.get(job).map_or(0, Vec::len) as u64;
        if sniff && !expired && self.mender_objects.contains(&object) {
            // The head is a Mender Artifact: nothing is kept.
            self.files.remove(job);
            self.http.push((object, have, "sniffed".into()));
            agent.handle_job_download(self.now, id, 0, JobDownloadEnd::MenderArtifact);
            return None;
        }
        let Some(bytes) = self.artifacts.get(&object).cloned() else {
            self.http.push((object, have, "404".into()));
            agent.handle_job_download(self.now, id, have, JobDownloadEnd::Failed("404 Not Found"));
            return None;
        };
        if expired {
            self.http.push((object, have, "403".into()));
            agent.handle_job_download(self.now, id, have, JobDownloadEnd::Expired);
            return None;
        }
        let total = bytes.len() as u64;
        if have == total {
            self.http.push((object, have, "416".into()));
            agent.handle_job_download(self.now, id, have, JobDownloadEnd::Complete);
            return None;
        }
        let from = if have > total { 0 } else { have };
        let file = self.files.entry(job.to_string()).or_default();
        file.truncate(from as usize);
        let limit = self.drops.pop_front();
        agent.handle_job_progress(self.now, id, from);
        let mut reached = from;
        let mut end = "complete";
        while reached < total {
            if let Some(stop) = self.pass_time(agent, 200) {
                self.http.push((object, from, "power cut".into()));
                return Some(stop);
            }
            if agent.job_cancelled() {
                // The host stops the download and removes the file.
                self.files.remove(job);
                self.http.push((object, from, "stopped".into()));
                agent.handle_job_download(self.now, id, 0, JobDownloadEnd::Cancelled);
                return None;
            }
            let mut next = (reached + CHUNK as u64).min(total);
            if let Some(limit) = limit {
                if next >= from + limit {
                    next = from + limit;
                    end = "broken";
                }
            }
            self.files
                .get_mut(job)
                .unwrap()
                .extend_from_slice(&bytes[reached as usize..next as usize]);
            reached = next;
            agent.handle_job_progress(self.now, id, reached);
            if end == "broken" {
                break;
            }
        }
        if let Some(stop) = self.serve(agent) {
            return Some(stop);
        }
        self.http.push((object, from, end.into()));
        let result = if end == "broken" {
            JobDownloadEnd::Failed("connection reset by peer")
        } else {
            if self.files[job] != bytes {
                self.violation(format!("the file of {job} differs from the object"));
            }
            JobDownloadEnd::Complete
        };
        agent.handle_job_download(self.now, id, reached, result);
        None
    }

    /// At rest: no prefixed job pending, the record `Idle`, the last thing
    /// the agent published a `get`, nothing waiting in the connection.
    pub fn settled(&self) -> bool {
        self.service.pending_prefixed() == 0
            && self.record().step == UpdateStep::Idle
            && self.service.published.last().map(String::as_str) == Some("get")
            && self.conn.as_ref().is_some_and(|c| c.outbox.is_empty())
    }

    /// Drives one agent until it settles or stops.
    pub fn drive(&mut self, agent: &mut Agent<'_>) -> Stop {
        for _ in 0..20_000 {
            if let Some(stop) = self.step(agent) {
                return stop;
            }
            if self.settled() && agent.poll().is_none() {
                return Stop::Idle;
            }
        }
        panic!("the jobs agent did not settle:\n{}", self.tail(60));
    }

    /// Agent lives until at rest (reboots and power cuts included).
    pub fn run(&mut self, buffers: &mut Buffers) -> u32 {
        let mut lives = 0;
        loop {
            lives += 1;
            assert!(lives < 20, "too many restarts:\n{}", self.tail(60));
            let mut agent = self.start(buffers);
            let stop = self.drive(&mut agent);
            drop(agent);
            match stop {
                Stop::Idle => return lives,
                Stop::Reboot => self.power_on(true),
                Stop::PowerCut => self.power_on(false),
                // systemd starts it again.
                Stop::Exited => {
                    self.conn = None;
                }
            }
        }
    }

    pub fn calls(&self, hook: Hook) -> Vec<&HookCall> {
        self.hook_calls.iter().filter(|c| c.hook == hook).collect()
    }

    pub fn hook_names(&self) -> Vec<String> {
        self.hook_calls
            .iter()
            .map(|c| format!("{} {}", c.hook.as_str(), c.end))
            .collect()
    }

    /// Invariants at rest: every prefixed job has exactly one accepted
    /// terminal status (or was cancelled/deleted), and nothing was
    /// published for it afterwards but redeliveries; the record is `Idle`;
    /// no job file is left.
    pub fn check_at_rest(&self) {
        let tail = || self.tail(80);
        assert_eq!(self.record().step, UpdateStep::Idle, "at rest\n{}", tail());
        assert!(
            self.slots.at_rest(),
            "an install waits at rest: {:?}\n{}",
            self.slots,
            tail()
        );
        assert!(
            self.files.is_empty(),
            "files left: {:?}\n{}",
            self.files.keys(),
            tail()
        );
        for e in &self.service.jobs {
            if !e.spec.id.starts_with(PREFIX) {
                assert!(
                    self.service.updates.iter().all(|u| u.job != e.spec.id),
                    "{} is not prefixed but was updated",
                    e.spec.id
                );
                continue;
            }
            let terminal: Vec<&Update> = self
                .service
                .updates
                .iter()
                .filter(|u| u.job == e.spec.id && u.reply == "accepted")
                .filter(|u| matches!(u.status.as_str(), "SUCCEEDED" | "FAILED"))
                .collect();
            let stopped = e.deleted || e.status == "CANCELED";
            assert_eq!(
                terminal.len(),
                usize::from(!stopped),
                "{}: terminal updates {terminal:?}\n{}",
                e.spec.id,
                tail()
            );
            let late: Vec<&Update> = self
                .service
                .updates
                .iter()
                .filter(|u| u.job == e.spec.id && u.late && !u.dup)
                .collect();
            assert!(
                late.is_empty(),
                "{}: published after its end: {late:?}\n{}",
                e.spec.id,
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
}

/// The A/B slots as the standalone verbs (`install`, `commit`,
/// `rollback`) and U-Boot (`bootlimit=1`) leave them.
#[derive(Clone, Debug, Default)]
pub struct SlotSim {
    /// Installed into the inactive slot, made the trial: the next boot
    /// (any boot) runs it.
    pub pending: Option<(String, String)>,
    /// Running uncommitted: (new, previous). A boot before the commit
    /// falls back to the previous one.
    pub trial: Option<(String, String)>,
    /// The trial was given up (`rollback`): the next boot runs the
    /// previous one.
    pub given_up: Option<String>,
    pub commits: u32,
    /// The new slot does not come up: U-Boot boots the previous one.
    pub fail_boot: bool,
    /// The install refuses the artifact (signature, device type).
    pub fail_install: bool,
}

impl SlotSim {
    /// `install` (after the host's `rollback`): the new one waits for a
    /// boot; refused (1) while a given-up trial still runs (the slot it
    /// would write boots next: "reboot before installing").
    fn install(&mut self, version: String, running: &str) -> i32 {
        if self.given_up.is_some() {
            return 1;
        }
        if self.fail_install {
            return 1;
        }
        self.pending = Some((version, running.to_string()));
        0
    }

    /// `commit`: 0 committed, 2 nothing waits.
    fn commit(&mut self) -> i32 {
        if self.trial.take().is_some() {
            self.commits += 1;
            0
        } else {
            2
        }
    }

    /// `rollback`: 0 given up, 2 nothing waits.
    fn rollback(&mut self) -> i32 {
        if self.pending.take().is_some() {
            0
        } else if let Some((_, previous)) = self.trial.take() {
            self.given_up = Some(previous);
            0
        } else {
            2
        }
    }

    /// A boot: what runs now, if it changed.
    fn boot(&mut self) -> Option<String> {
        if let Some(previous) = self.given_up.take() {
            return Some(previous);
        }
        if let Some((_, previous)) = self.trial.take() {
            // U-Boot: a second boot of an uncommitted trial falls back.
            return Some(previous);
        }
        let (new, previous) = self.pending.take()?;
        if self.fail_boot {
            return Some(previous);
        }
        self.trial = Some((new.clone(), previous));
        Some(new)
    }

    /// Nothing waits: no pending install, no uncommitted trial.
    pub fn at_rest(&self) -> bool {
        self.pending.is_none() && self.trial.is_none()
    }
}

impl Default for JobsWorld {
    fn default() -> Self {
        Self::new()
    }
}

/// `["get", "J/get", "J IN_PROGRESS/download_progress x3"]` expanded with
/// `J` = job 1.
fn transcript(lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for line in lines {
        let line =
            line.replace("J/get", &format!("{J1}/get"))
                .replacen("J ", &format!("{J1}/update "), 1);
        match line.rsplit_once(" x") {
            Some((what, n)) if n.parse::<usize>().is_ok() => {
                for _ in 0..n.parse::<usize>().unwrap() {
                    out.push(what.to_string());
                }
            }
            _ => out.push(line),
        }
    }
    out
}

fn run(w: &mut JobsWorld) -> u32 {
    let mut buffers = Buffers::default();
    let lives = w.run(&mut buffers);
    w.check_at_rest();
    lives
}

const SUCCESS: &[&str] = &[
    "get",
    "J/get",
    "J IN_PROGRESS/download_start",
    "J IN_PROGRESS/download_progress x3",
    "J IN_PROGRESS/installation_start",
    "J IN_PROGRESS/reboot_start",
    "J SUCCEEDED/complete_soft_restart",
    "get",
];

#[test]
fn jobs_success() {
    let mut w = JobsWorld::one_job();
    w.script(
        Hook::Install,
        vec![Call {
            end: End::Exit(0),
            lines: vec!["installing", "installed"],
            ms: 5_000,
        }],
    );
    assert_eq!(run(&mut w), 1);
    assert_eq!(
        w.service.published,
        transcript(&[
            "get",
            "J/get",
            "J IN_PROGRESS/download_start",
            "J IN_PROGRESS/download_progress x3",
            "J IN_PROGRESS/installation_start",
            "J IN_PROGRESS/installation_progress x2",
            "J IN_PROGRESS/reboot_start",
            "J SUCCEEDED/complete_soft_restart",
            "get",
        ])
    );
    assert_eq!(w.service.final_of(J1), "SUCCEEDED/complete_soft_restart");
    assert_eq!(
        w.hook_names(),
        [
            "version exit 0",
            "download exit 0",
            "install exit 0",
            "restart exit 0"
        ]
    );
    let progress: Vec<&str> = w
        .service
        .updates
        .iter()
        .filter(|u| u.state == "download_progress" || u.state == "installation_progress")
        .map(|u| u.message.as_str())
        .collect();
    assert_eq!(
        progress,
        [
            "{\"downloaded_bytes\": 102400}",
            "{\"downloaded_bytes\": 204800}",
            "{\"downloaded_bytes\": 307200}",
            "installing",
            "installed"
        ]
    );
    for c in &w.hook_calls {
        assert_eq!((c.elapsed_s, c.retry), (0, 0));
        assert_eq!(c.meta, format!("meta-{J1}"));
        assert!(!c.force);
    }
    assert_eq!(
        w.persisted,
        [
            format!("Downloading {J1}"),
            format!("Installing {J1}"),
            format!("Restarting {J1}"),
            "Idle".into()
        ]
    );
    assert_eq!(w.installed, "2.0.0");
    assert_eq!(w.http, [("artifact.bin".to_string(), 0, "complete".into())]);
}

/// Exit 3 = again after `retry_interval`: the hook gets the seconds since
/// its first call and the retry count.
#[test]
fn jobs_retry_later() {
    let mut w = JobsWorld::one_job();
    w.script(
        Hook::Install,
        vec![Call::exit(3), Call::exit(3), Call::exit(0)],
    );
    run(&mut w);
    assert_eq!(w.service.published, transcript(SUCCESS));
    let installs = w.calls(Hook::Install);
    let args: Vec<(u64, u32)> = installs.iter().map(|c| (c.elapsed_s, c.retry)).collect();
    assert_eq!(args, [(0, 0), (60, 1), (120, 2)]);
    // The hook ran 100 ms; the next call comes retry_interval after its end.
    let gaps: Vec<u64> = installs
        .windows(2)
        .map(|p| p[1].at_ms - p[0].at_ms)
        .collect();
    assert_eq!(gaps, [RETRY_MS + 100, RETRY_MS + 100]);
    assert_eq!(w.service.final_of(J1), "SUCCEEDED/complete_soft_restart");
}

/// `max_retries` calls asking to retry: FAILED, `Timeout after Ns`.
#[test]
fn jobs_max_retries() {
    let mut w = JobsWorld::one_job();
    w.script(Hook::Install, vec![Call::exit(3)]);
    run(&mut w);
    assert_eq!(
        w.service.published,
        transcript(&[
            "get",
            "J/get",
            "J IN_PROGRESS/download_start",
            "J IN_PROGRESS/download_progress x3",
            "J IN_PROGRESS/installation_start",
            "J FAILED/installation_hook_failed",
            "get",
        ])
    );
    assert_eq!(w.calls(Hook::Install).len(), MAX_RETRIES as usize);
    let last = w.service.updates.last().unwrap();
    assert_eq!(last.message, "Timeout after 180s");
    assert_eq!(w.calls(Hook::Restart).len(), 0);
    assert_eq!(w.installed, "1.0.0");
}

/// Another exit code: FAILED with `Exit code: N`; the install hook's
/// lines are `installation_progress`.
#[test]
fn jobs_install_fails() {
    let mut w = JobsWorld::one_job();
    w.script(
        Hook::Install,
        vec![Call {
            end: End::Exit(1),
            lines: vec!["broken"],
            ms: 100,
        }],
    );
    run(&mut w);
    assert_eq!(
        w.service.published,
        transcript(&[
            "get",
            "J/get",
            "J IN_PROGRESS/download_start",
            "J IN_PROGRESS/download_progress x3",
            "J IN_PROGRESS/installation_start",
            "J IN_PROGRESS/installation_progress",
            "J FAILED/installation_hook_failed",
            "get",
        ])
    );
    assert_eq!(w.service.updates.last().unwrap().message, "Exit code: 1");
}

#[test]
fn jobs_version_already_installed() {
    let mut w = JobsWorld::one_job();
    w.installed = "2.0.0".into();
    run(&mut w);
    assert_eq!(
        w.service.published,
        transcript(&[
            "get",
            "J/get",
            "J SUCCEEDED/version_already_installed",
            "get"
        ])
    );
    assert_eq!(w.hook_names(), ["version exit 0"]);
    assert!(w.http.is_empty());
    // Nothing was under way: the record stays as it was.
    assert!(w.persisted.iter().all(|p| p == "Idle"), "{:?}", w.persisted);
}

/// `force`: no version check, no download hook; the restart hook gets
/// `True`.
#[test]
fn jobs_force() {
    let mut w = JobsWorld::new();
    w.installed = "2.0.0".into();
    w.service.add(JobSpec {
        force: true,
        ..JobSpec::queued(J1, "2.0.0")
    });
    run(&mut w);
    assert_eq!(w.service.published, transcript(SUCCESS));
    assert_eq!(w.hook_names(), ["install exit 0", "restart exit 0"]);
    assert!(w.hook_calls.iter().all(|c| c.force));
}

#[test]
fn jobs_no_install_hook() {
    let mut w = JobsWorld::one_job();
    w.hooks.install = false;
    run(&mut w);
    assert_eq!(
        w.service.published,
        transcript(&[
            "get",
            "J/get",
            "J IN_PROGRESS/download_start",
            "J IN_PROGRESS/download_progress x3",
            "J SUCCEEDED/no_installation_hook_provided",
            "get",
        ])
    );
    assert_eq!(w.hook_names(), ["version exit 0", "download exit 0"]);
}

#[test]
fn jobs_no_restart_hook() {
    let mut w = JobsWorld::one_job();
    w.hooks.restart = false;
    run(&mut w);
    assert_eq!(w.service.final_of(J1), "SUCCEEDED/no_restart_hook_provided");
}

/// A notify without the job mid-download: the download stops, the file
/// goes, nothing more is published for the job; jobs are fetched again.
#[test]
fn jobs_cancel_mid_download() {
    let mut w = JobsWorld::one_job();
    w.on_update("download_progress", 2, Do::Cancel(J1.into()));
    run(&mut w);
    assert_eq!(
        w.service.published,
        transcript(&[
            "get",
            "J/get",
            "J IN_PROGRESS/download_start",
            "J IN_PROGRESS/download_progress x2",
            "get",
        ])
    );
    assert_eq!(w.service.final_of(J1), "CANCELED/download_progress");
    assert_eq!(w.http, [("artifact.bin".to_string(), 0, "stopped".into())]);
    assert_eq!(w.hook_names(), ["version exit 0", "download exit 0"]);
}

/// Deleted while the install hook runs: the hook is killed.
#[test]
fn jobs_delete_mid_install() {
    let mut w = JobsWorld::one_job();
    w.on(When::Hook(Hook::Install, 1), Do::Delete(J1.into()));
    run(&mut w);
    assert_eq!(
        w.service.published,
        transcript(&[
            "get",
            "J/get",
            "J IN_PROGRESS/download_start",
            "J IN_PROGRESS/download_progress x3",
            "J IN_PROGRESS/installation_start",
            "get",
        ])
    );
    assert_eq!(w.service.final_of(J1), "DELETED/installation_start");
    assert_eq!(
        w.hook_names(),
        ["version exit 0", "download exit 0", "install killed"]
    );
    assert_eq!(w.installed, "1.0.0");
}

/// Cancelled while the install hook prints: its later lines are not
/// published.
#[test]
fn jobs_cancel_mid_install() {
    let mut w = JobsWorld::one_job();
    w.script(
        Hook::Install,
        vec![Call {
            end: End::Exit(0),
            lines: vec!["one", "two", "three"],
            ms: 4_000,
        }],
    );
    w.on_update("installation_progress", 1, Do::Cancel(J1.into()));
    run(&mut w);
    assert_eq!(
        w.service.published,
        transcript(&[
            "get",
            "J/get",
            "J IN_PROGRESS/download_start",
            "J IN_PROGRESS/download_progress x3",
            "J IN_PROGRESS/installation_start",
            "J IN_PROGRESS/installation_progress",
            "get",
        ])
    );
    assert_eq!(w.service.final_of(J1), "CANCELED/installation_progress");
    assert_eq!(w.calls(Hook::Install)[0].end, "killed");
    assert!(w.calls(Hook::Restart).is_empty());
}

/// 403: `download_interrupt`, the job fetched again (a new URL), the
/// download resumed.
#[test]
fn jobs_expired_url() {
    let mut w = JobsWorld::one_job();
    w.service.expire_first_urls = 1;
    run(&mut w);
    assert_eq!(
        w.service.published,
        transcript(&[
            "get",
            "J/get",
            "J IN_PROGRESS/download_start",
            "J IN_PROGRESS/download_interrupt",
            "get",
            "J/get",
            "J IN_PROGRESS/download_start",
            "J IN_PROGRESS/download_progress x3",
            "J IN_PROGRESS/installation_start",
            "J IN_PROGRESS/reboot_start",
            "J SUCCEEDED/complete_soft_restart",
            "get",
        ])
    );
    assert_eq!(
        w.http,
        [
            ("artifact.bin".to_string(), 0, "403".into()),
            ("artifact.bin".to_string(), 0, "complete".into())
        ]
    );
    // The redo of an IN_PROGRESS job: no version check.
    assert_eq!(w.calls(Hook::Version).len(), 1);
    assert_eq!(w.calls(Hook::Download).len(), 2);
}

/// A broken download is retried with a backoff from where it broke.
#[test]
fn jobs_download_resumes() {
    let mut w = JobsWorld::one_job();
    w.drops.push_back(150_000);
    run(&mut w);
    assert_eq!(w.service.published, transcript(SUCCESS));
    let http: Vec<(u64, &str)> = w.http.iter().map(|h| (h.1, h.2.as_str())).collect();
    assert_eq!(http, [(0, "broken"), (150_000, "complete")]);
}

#[test]
fn jobs_multiple_in_progress() {
    let mut w = JobsWorld::new();
    for id in [J1, "upparat_job-2"] {
        w.service.add(JobSpec {
            status: "IN_PROGRESS",
            state: Some("download_start".into()),
            ..JobSpec::queued(id, "2.0.0")
        });
    }
    run(&mut w);
    assert_eq!(
        w.service.published,
        [
            "get",
            "upparat_job-1/update FAILED/error_multiple_in_progress",
            "upparat_job-2/update FAILED/error_multiple_in_progress",
            "get"
        ]
    );
    assert_eq!(
        w.service.updates[0].message,
        "Invalid: More than one job is IN PROGRESS: upparat_job-1, upparat_job-2"
    );
    assert!(w.hook_calls.is_empty());
}

/// Only prefixed jobs, the oldest queued first; the next one after the
/// first ends.
#[test]
fn jobs_prefix_and_queue() {
    let mut w = JobsWorld::new();
    w.service.add(JobSpec {
        queued_at: 10,
        ..JobSpec::queued("other_job", "9.9.9")
    });
    w.service.add(JobSpec {
        queued_at: 20,
        ..JobSpec::queued("upparat_job-a", "2.0.0")
    });
    w.service.add(JobSpec {
        queued_at: 30,
        ..JobSpec::queued("upparat_job-b", "3.0.0")
    });
    run(&mut w);
    let mut expected = vec!["get".to_string()];
    for job in ["upparat_job-a", "upparat_job-b"] {
        let one: Vec<String> = transcript(SUCCESS)
            .into_iter()
            .filter(|l| l != "get")
            .map(|l| l.replace(J1, job))
            .collect();
        expected.extend(one);
        expected.push("get".to_string());
    }
    assert_eq!(w.service.published, expected);
    assert_eq!(w.service.final_of("other_job"), "QUEUED/None");
    assert_eq!(w.installed, "3.0.0");
}

/// A job queued later comes with a notify while the agent waits.
#[test]
fn jobs_notify_while_waiting() {
    let mut w = JobsWorld::new();
    w.on(
        When::Hook(Hook::Version, 1),
        Do::Add(JobSpec::queued("upparat_job-2", "3.0.0")),
    );
    w.service.add(JobSpec::queued(J1, "2.0.0"));
    // Job 2 arrives while job 1 runs: picked after job 1 ends.
    run(&mut w);
    assert_eq!(w.service.final_of(J1), "SUCCEEDED/complete_soft_restart");
    assert_eq!(
        w.service.final_of("upparat_job-2"),
        "SUCCEEDED/complete_soft_restart"
    );
    assert_eq!(w.installed, "3.0.0");
}

/// The restart hook reboots: after the restart, the version hook then the
/// ready hook, SUCCEEDED `complete_ready`.
#[test]
fn jobs_reboot() {
    let mut w = JobsWorld::one_job();
    w.script(
        Hook::Restart,
        vec![Call {
            end: End::Reboot,
            lines: vec![],
            ms: 100,
        }],
    );
    assert_eq!(run(&mut w), 2);
    assert_eq!(
        w.service.published,
        transcript(&[
            "get",
            "J/get",
            "J IN_PROGRESS/download_start",
            "J IN_PROGRESS/download_progress x3",
            "J IN_PROGRESS/installation_start",
            "J IN_PROGRESS/reboot_start",
            "get",
            "J/get",
            "J SUCCEEDED/complete_ready",
            "get",
        ])
    );
    assert_eq!(
        w.hook_names(),
        [
            "version exit 0",
            "download exit 0",
            "install exit 0",
            "restart reboot",
            "version exit 0",
            "ready exit 0"
        ]
    );
    assert_eq!(w.installed, "2.0.0");
}

#[test]
fn jobs_reboot_version_mismatch() {
    let mut w = JobsWorld::one_job();
    w.reboot_keeps_old = true;
    w.script(
        Hook::Restart,
        vec![Call {
            end: End::Reboot,
            lines: vec![],
            ms: 100,
        }],
    );
    run(&mut w);
    assert_eq!(w.service.final_of(J1), "FAILED/version_mismatch");
    assert_eq!(
        w.service.updates.last().unwrap().message,
        "Expected version '2.0.0', got '1.0.0'"
    );
    assert!(w.calls(Hook::Ready).is_empty());
}

/// The broker goes away mid-download after taking an update (its PUBACK
/// and reply lost): the agent reconnects with a backoff (1 s, doubling),
/// subscribes again, redelivers the unacknowledged update, and the job
/// completes.
#[test]
fn jobs_broker_lost_mid_job() {
    for lose_reply in [true, false] {
        let mut w = JobsWorld::one_job();
        w.on_update(
            "download_progress",
            2,
            Do::Drop {
                down_ms: 10_000,
                lose_reply,
            },
        );
        run(&mut w);
        let fresh: Vec<String> = w
            .service
            .updates
            .iter()
            .filter(|u| !u.dup)
            .map(|u| format!("{J1}/update {}/{}", u.status, u.state))
            .collect();
        let expected: Vec<String> = transcript(SUCCESS)
            .into_iter()
            .filter(|l| l.contains("/update"))
            .collect();
        if lose_reply {
            assert_eq!(fresh, expected, "{}", w.tail(60));
            let dups: Vec<&Update> = w.service.updates.iter().filter(|u| u.dup).collect();
            assert!(!dups.is_empty(), "no redelivery\n{}", w.tail(60));
            assert!(dups.iter().all(|u| u.reply == "accepted"), "{dups:?}");
        } else {
            // The lost one is sent again, once.
            let all: Vec<String> = w
                .service
                .updates
                .iter()
                .map(|u| format!("{J1}/update {}/{}", u.status, u.state))
                .collect();
            assert_eq!(all, expected, "{}", w.tail(60));
        }
        let t0 = w.connects[1].0 - 1_000;
        let attempts: Vec<(u64, bool)> = w.connects[1..].iter().map(|c| (c.0 - t0, c.1)).collect();
        assert_eq!(
            attempts,
            [
                (1_000, false),
                (3_000, false),
                (7_000, false),
                (15_000, true)
            ]
        );
        assert_eq!(w.service.final_of(J1), "SUCCEEDED/complete_soft_restart");
    }
}

// -------------------------------------------------------------------
// Power cuts.

/// Success with a rebooting restart hook; `activate_on_boot`: an A/B
/// install (the new version comes up on any boot once installed).
fn reboot_world(activate_on_boot: bool) -> JobsWorld {
    let mut w = JobsWorld::one_job();
    w.activate_on_boot = activate_on_boot;
    w.script(
        Hook::Install,
        vec![Call {
            end: End::Exit(0),
            lines: vec!["installing"],
            ms: 2_000,
        }],
    );
    w.script(
        Hook::Restart,
        vec![Call {
            end: End::Reboot,
            lines: vec![],
            ms: 100,
        }],
    );
    w
}

/// How a cut run ended.
struct CutRun {
    cut: Cut,
    at_cut: (String, String, usize),
    final_state: String,
    installs_after: usize,
    downloads_after: usize,
}

fn cut_run(activate_on_boot: bool, cut: Cut, buffers: &mut Buffers) -> Option<CutRun> {
    let mut w = reboot_world(activate_on_boot);
    w.cut = Some(cut);
    w.run(buffers);
    let at_cut = w.at_cut.clone()?;
    w.check_at_rest();
    let tail = || w.tail(80);
    let installs = w
        .calls(Hook::Install)
        .iter()
        .filter(|c| c.end == "exit 0")
        .count();
    let installs_after = installs - at_cut.2;
    let final_state = w.service.final_of(J1);
    let (phase, service, _) = &at_cut;
    // The restart was under way: verified, never redone.
    let restarting = phase.starts_with("Restarting") || service == "IN_PROGRESS/reboot_start";
    let downloads_after = w
        .http
        .iter()
        .filter(|h| h.2 != "416")
        .count()
        .saturating_sub(1);
    if restarting {
        assert_eq!(installs_after, 0, "{cut:?}: reinstalled\n{}", tail());
        assert!(
            final_state.ends_with("complete_ready") || final_state == "FAILED/version_mismatch",
            "{cut:?}: {final_state}\n{}",
            tail()
        );
    }
    // The install hook ran to its end once before the cut: again only
    // when the restart was not under way (upparat redoes the job).
    assert!(
        installs_after <= 1,
        "{cut:?}: {installs_after} installs after the cut\n{}",
        tail()
    );
    if at_cut.2 == 0 && final_state.starts_with("SUCCEEDED") {
        assert_eq!(installs, 1, "{cut:?}\n{}", tail());
    }
    if final_state.starts_with("SUCCEEDED") {
        assert_eq!(w.installed, "2.0.0", "{cut:?}\n{}", tail());
    } else {
        assert_eq!(
            final_state,
            "FAILED/version_mismatch",
            "{cut:?}\n{}",
            tail()
        );
        assert_eq!(w.installed, "1.0.0", "{cut:?}\n{}", tail());
    }
    // Without an A/B install only a cut between the `Restarting` write
    // and the restart hook's reboot can leave the old version running.
    if final_state.starts_with("FAILED") {
        assert!(
            phase.starts_with("Restarting"),
            "{cut:?}: {at_cut:?}\n{}",
            tail()
        );
    }
    if activate_on_boot {
        assert!(
            final_state.starts_with("SUCCEEDED"),
            "{cut:?}: {final_state}\n{}",
            tail()
        );
    }
    Some(CutRun {
        cut,
        at_cut,
        final_state,
        installs_after,
        downloads_after,
    })
}

/// A cut before and after every persisted write, before every action and
/// before every packet of a run with these counts.
fn every_cut(effects: u32, actions: u32, packets: u32) -> Vec<Cut> {
    let mut cuts = Vec::new();
    for n in 0..effects {
        cuts.push(Cut::Effect { n, after: false });
        cuts.push(Cut::Effect { n, after: true });
    }
    cuts.extend((0..actions).map(Cut::Action));
    cuts.extend((0..packets).map(Cut::Packet));
    cuts
}

/// Cuts at every persisted write (before and after), before every action
/// and before every packet of the success run whose restart hook reboots;
/// a fresh agent starts from the last persisted record and the service's
/// job table.
#[test]
fn jobs_power_cuts() {
    let started = Clock::now();
    let mut buffers = Buffers::default();
    let mut base = reboot_world(true);
    base.run(&mut buffers);
    base.check_at_rest();
    assert_eq!(base.service.final_of(J1), "SUCCEEDED/complete_ready");
    let (effects, actions, packets) = (base.effects, base.actions, base.packets);
    let cuts = every_cut(effects, actions, packets);
    let mut summary: BTreeMap<String, u32> = BTreeMap::new();
    let mut runs = 0;
    for activate_on_boot in [true, false] {
        for &cut in &cuts {
            let Some(run) = cut_run(activate_on_boot, cut, &mut buffers) else {
                continue;
            };
            runs += 1;
            let key = format!(
                "{} {} -> {}{}",
                if activate_on_boot { "A/B" } else { "soft" },
                run.at_cut.0.split(' ').next().unwrap_or(""),
                run.final_state,
                if run.installs_after > 0 {
                    " (reinstalled)"
                } else {
                    ""
                }
            );
            *summary.entry(key).or_default() += 1;
            let _ = (run.cut, run.downloads_after);
        }
    }
    println!(
        "jobs power cuts: {runs} runs ({effects} persists, {actions} actions, {packets} packets) in {:?}",
        started.elapsed()
    );
    for (key, n) in &summary {
        println!("  {n:4} {key}");
    }
    assert!(runs > 100, "{runs}");
}

/// The power goes while the install hook runs: the job is redone from the
/// service's IN_PROGRESS state, the file resumed (complete: 416).
#[test]
fn jobs_power_cut_in_install_hook() {
    let mut w = JobsWorld::one_job();
    w.script(
        Hook::Install,
        vec![
            Call {
                end: End::PowerCut,
                lines: vec!["half"],
                ms: 1_000,
            },
            Call::exit(0),
        ],
    );
    assert_eq!(run(&mut w), 2);
    assert_eq!(
        w.service.published,
        transcript(&[
            "get",
            "J/get",
            "J IN_PROGRESS/download_start",
            "J IN_PROGRESS/download_progress x3",
            "J IN_PROGRESS/installation_start",
            "J IN_PROGRESS/installation_progress",
            "get",
            "J/get",
            "J IN_PROGRESS/download_start",
            "J IN_PROGRESS/installation_start",
            "J IN_PROGRESS/reboot_start",
            "J SUCCEEDED/complete_soft_restart",
            "get",
        ])
    );
    let http: Vec<(u64, &str)> = w.http.iter().map(|h| (h.1, h.2.as_str())).collect();
    assert_eq!(http, [(0, "complete"), (ARTIFACT_LEN as u64, "416")]);
    assert_eq!(w.calls(Hook::Version).len(), 1, "a redo checks no version");
}

/// Regression: the power went after the job's last update reached the
/// service, before `Idle` was written. The next start found no pending
/// job and kept the `Restarting` record (and its restart check) for good.
#[test]
fn jobs_cut_before_idle_forgets_the_job() {
    let mut w = reboot_world(true);
    w.cut = Some(Cut::Effect { n: 3, after: false });
    assert_eq!(run(&mut w), 3);
    assert_eq!(w.service.final_of(J1), "SUCCEEDED/complete_ready");
    assert_eq!(
        w.persisted,
        [
            format!("Downloading {J1}"),
            format!("Installing {J1}"),
            format!("Restarting {J1}"),
            "Idle".into()
        ]
    );
    assert_eq!(w.service.published.last().map(String::as_str), Some("get"));
}

/// Regression: `reboot_start` reached the service, the power went before
/// `Restarting` was written (so the restart hook never ran). The next
/// start verified the installation and failed it (`version_mismatch`)
/// where the new version comes up only through the restart hook; now it
/// runs the restart.
#[test]
fn jobs_cut_before_restarting_runs_the_restart() {
    let mut w = reboot_world(false);
    w.cut = Some(Cut::Effect { n: 2, after: false });
    run(&mut w);
    assert_eq!(w.at_cut.as_ref().unwrap().1, "IN_PROGRESS/reboot_start");
    assert_eq!(w.service.final_of(J1), "SUCCEEDED/complete_ready");
    assert_eq!(
        w.hook_names(),
        [
            "version exit 0",
            "download exit 0",
            "install exit 0",
            "restart reboot",
            "version exit 0",
            "ready exit 0"
        ]
    );
    assert_eq!(w.installed, "2.0.0");
}

// -------------------------------------------------------------------
// No install hook, `mender_install`: a Mender Artifact goes into the slot
// through the built-in steps (the standalone verbs), the reboot is the
// built-in one (no restart hook), the commit follows the ready hook.

fn builtin_world() -> JobsWorld {
    let mut w = JobsWorld::new();
    let mut spec = JobSpec::queued(J1, "2.0.0");
    spec.file = "release.mender".into();
    w.service.add(spec);
    w.artifacts
        .insert("release.mender".into(), artifact(ARTIFACT_LEN));
    w.mender_objects.push("release.mender".into());
    w.mender_install = true;
    w.hooks = HookSet {
        version: false,
        download: false,
        install: false,
        restart: false,
        ready: true,
    };
    w
}

const BUILTIN_SUCCESS: &[&str] = &[
    "get",
    "J/get",
    "J IN_PROGRESS/download_start",
    "J IN_PROGRESS/installation_start",
    "J IN_PROGRESS/reboot_start",
    "get",
    "J/get",
    "J SUCCEEDED/complete_ready",
    "get",
];

#[test]
fn jobs_builtin_mender_install() {
    let mut w = builtin_world();
    assert_eq!(run(&mut w), 2);
    assert_eq!(w.service.published, transcript(BUILTIN_SUCCESS));
    assert_eq!(w.builtins, ["install exit 0", "reboot", "commit exit 0"]);
    assert_eq!(w.hook_names(), ["ready exit 0"]);
    assert_eq!(w.installed, "2.0.0");
    assert_eq!(w.slots.commits, 1);
    // The head was looked at; nothing was stored.
    let http: Vec<&str> = w.http.iter().map(|h| h.2.as_str()).collect();
    assert_eq!(http, ["sniffed"]);
}

#[test]
fn jobs_builtin_with_version_and_restart_hooks() {
    let mut w = builtin_world();
    w.hooks.version = true;
    w.hooks.restart = true;
    w.script(
        Hook::Restart,
        vec![Call {
            end: End::Reboot,
            lines: vec![],
            ms: 100,
        }],
    );
    assert_eq!(run(&mut w), 2);
    assert_eq!(w.service.published, transcript(BUILTIN_SUCCESS));
    assert_eq!(
        w.hook_names(),
        [
            "version exit 0",
            "restart reboot",
            "version exit 0",
            "ready exit 0"
        ]
    );
    assert_eq!(w.builtins, ["install exit 0", "commit exit 0"]);
    assert_eq!(w.installed, "2.0.0");
}

#[test]
fn jobs_builtin_ready_fails_rolls_back() {
    let mut w = builtin_world();
    w.script(Hook::Ready, vec![Call::exit(1)]);
    run(&mut w);
    assert_eq!(w.service.final_of(J1), "FAILED/ready_hook_failed");
    assert_eq!(w.builtins, ["install exit 0", "reboot", "rollback exit 0"]);
    assert_eq!(w.slots.commits, 0);
    // The next boot runs the previous version.
    w.power_on(true);
    assert_eq!(w.installed, "1.0.0");
}

#[test]
fn jobs_builtin_new_slot_does_not_boot() {
    let mut w = builtin_world();
    w.slots.fail_boot = true;
    run(&mut w);
    assert_eq!(w.service.final_of(J1), "FAILED/version_mismatch");
    assert_eq!(
        w.builtins,
        [
            "install exit 0",
            "reboot",
            "commit exit 2",
            "show-artifact exit 0",
            "rollback exit 2"
        ]
    );
    assert_eq!(w.installed, "1.0.0");
}

#[test]
fn jobs_builtin_install_refused() {
    let mut w = builtin_world();
    w.slots.fail_install = true;
    run(&mut w);
    assert_eq!(w.service.final_of(J1), "FAILED/installation_hook_failed");
    assert_eq!(w.builtins, ["install exit 1"]);
    assert!(w.hook_calls.is_empty());
    assert_eq!(w.installed, "1.0.0");
}

#[test]
fn jobs_builtin_not_an_artifact_is_downloaded() {
    // Not a Mender Artifact: upparat's behaviour, the file is the job's end.
    let mut w = builtin_world();
    w.mender_objects.clear();
    run(&mut w);
    assert_eq!(
        w.service.published,
        transcript(&[
            "get",
            "J/get",
            "J IN_PROGRESS/download_start",
            "J IN_PROGRESS/download_progress x3",
            "J SUCCEEDED/no_installation_hook_provided",
            "get",
        ])
    );
    assert!(w.builtins.is_empty());
}

#[test]
fn jobs_builtin_cancel_mid_install() {
    let mut w = builtin_world();
    w.on(When::Builtin(Builtin::Install, 1), Do::Cancel(J1.into()));
    run(&mut w);
    assert_eq!(w.builtins, ["install killed"]);
    assert_eq!(w.installed, "1.0.0");
    assert_eq!(w.service.final_of(J1), "CANCELED/installation_start");
}

/// Power cuts at every persisted write, before every action and before
/// every packet of the built-in run: the job ends SUCCEEDED only with the
/// new version committed and running, FAILED only with nothing left to
/// commit (the previous version boots next); an install never waits at
/// rest.
#[test]
fn jobs_builtin_power_cuts() {
    let started = Clock::now();
    let mut buffers = Buffers::default();
    let mut base = builtin_world();
    base.run(&mut buffers);
    base.check_at_rest();
    let (effects, actions, packets) = (base.effects, base.actions, base.packets);
    let cuts = every_cut(effects, actions, packets);
    let mut summary: BTreeMap<String, u32> = BTreeMap::new();
    let mut runs = 0;
    for &cut in &cuts {
        let mut w = builtin_world();
        w.cut = Some(cut);
        w.run(&mut buffers);
        let Some(at_cut) = w.at_cut.clone() else {
            continue;
        };
        runs += 1;
        w.check_at_rest();
        let final_state = w.service.final_of(J1);
        let tail = || w.tail(80);
        if final_state.starts_with("SUCCEEDED") {
            assert_eq!(
                final_state,
                "SUCCEEDED/complete_ready",
                "{cut:?}\n{}",
                tail()
            );
            assert_eq!(w.installed, "2.0.0", "{cut:?}\n{}", tail());
            assert!(w.slots.given_up.is_none(), "{cut:?}\n{}", tail());
            assert_eq!(w.slots.commits, 1, "{cut:?}\n{}", tail());
        } else {
            // Failed: nothing committed, the previous version boots next.
            assert_eq!(w.slots.commits, 0, "{cut:?}: {final_state}\n{}", tail());
            let trace = tail();
            w.power_on(true);
            assert_eq!(w.installed, "1.0.0", "{cut:?}: {final_state}\n{trace}");
        }
        if std::env::var_os("SIM_TRACE").is_some() && final_state.starts_with("FAILED") {
            println!("{cut:?}\n{}", w.tail(60));
        }
        *summary
            .entry(format!(
                "{} -> {final_state}",
                at_cut.0.split(' ').next().unwrap_or("")
            ))
            .or_default() += 1;
    }
    println!(
        "built-in install power cuts: {runs} runs ({effects} persists, {actions} actions, {packets} packets) in {:?}",
        started.elapsed()
    );
    for (key, n) in &summary {
        println!("  {n:4} {key}");
    }
    assert!(runs > 40, "{runs}");
}
