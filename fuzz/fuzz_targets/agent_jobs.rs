//! The AWS IoT Jobs agent against an arbitrary broker and arbitrary hooks
//! and downloads: every MQTT byte, hook exit code and download end comes
//! from the input. The agent must never panic, never ask for something it
//! cannot be answered, and only persist records that decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite::agent::{
    Action, Agent, AgentBuffers, AgentConfig, HookOutcome, HookSet, Instant, JobDownloadEnd,
    JobsSettings, Mode, Outcome, Timing,
};
use otalite::board::BootState;
use otalite::store::{StateRecord, MAX_RECORD_LEN};

#[path = "common/input.rs"]
mod input;
use input::Input;

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut record = vec![0u8; MAX_RECORD_LEN];
    let mut request = vec![0u8; 64 * 1024];
    let mut auth = vec![0u8; 8 * 1024];
    let mut output = vec![0u8; 1024];
    let mut window = vec![0u8; otalite::artifact::WINDOW_LEN];
    let mut block = vec![0u8; 4096];
    let mut compare = vec![0u8; 1024];
    let flags = input.byte();
    let settings = JobsSettings {
        thing_name: "thing",
        client_id: "upparat",
        job_prefix: "upparat_",
        hooks: HookSet {
            version: flags & 1 != 0,
            download: flags & 2 != 0,
            install: flags & 4 != 0,
            restart: flags & 8 != 0,
            ready: flags & 16 != 0,
        },
        retry_interval_ms: 1000,
        max_retries: u32::from(input.byte() % 4),
        keep_alive_secs: 60,
        mender_install: flags & 32 != 0,
    };
    let config = AgentConfig {
        device_type: "",
        keys: &[],
        signatures_required: false,
        timing: Timing::from_config(&otalite::config::MenderConfig::default()),
        mode: Mode::Jobs(settings),
    };
    let Ok(mut agent) = Agent::new(
        config,
        StateRecord::default(),
        BootState {
            boot_part: None,
            upgrade_available: false,
            bootcount: None,
        },
        AgentBuffers {
            record: &mut record,
            request: &mut request,
            auth: &mut auth,
            output: &mut output,
            window: &mut window,
            block: &mut block,
            compare: &mut compare,
        },
    ) else {
        return;
    };
    let mut now = 0u64;
    let mut out = vec![0u8; 8 * 1024];
    let mut pending: Option<(otalite::agent::ActionId, u8)> = None;
    for _ in 0..2000 {
        if input.0.is_empty() {
            break;
        }
        now += u64::from(input.byte()) * 100;
        let t = Instant::from_millis(now);
        if agent.mqtt_wants_connection(t) {
            agent.handle_mqtt_connected(t);
        }
        while agent.poll_transmit(t, &mut out).is_some() {}
        match input.byte() % 6 {
            0..=2 => {
                let len = usize::from(input.byte());
                let chunk = input.bytes(len).to_vec();
                let mut rest = &chunk[..];
                let mut guard = 0;
                while !rest.is_empty() && guard < 64 {
                    let taken = agent.handle_mqtt_bytes(t, rest);
                    rest = &rest[taken.min(rest.len())..];
                    while agent.poll_transmit(t, &mut out).is_some() {}
                    guard += 1;
                }
            }
            3 => agent.handle_mqtt_lost(t, "fuzz"),
            4 => agent.handle_timeout(t),
            _ => {
                if let Some((id, kind)) = pending.take() {
                    let code = input.byte();
                    match kind {
                        0 => {
                            agent.handle_hook_output(t, id, "line");
                            let outcome = match code % 5 {
                                0 => HookOutcome::Exited { code: 0, last_line: Some("2.0.0") },
                                1 => HookOutcome::Exited { code: 3, last_line: None },
                                2 => HookOutcome::Exited { code: i32::from(code % 4), last_line: Some("1.0.0") },
                                3 => HookOutcome::NotRun("missing"),
                                _ => HookOutcome::Cancelled,
                            };
                            agent.handle_hook(t, id, outcome);
                        }
                        _ => {
                            agent.handle_job_progress(t, id, u64::from(code) * 4096);
                            let end = match code % 5 {
                                0 => JobDownloadEnd::Complete,
                                1 => JobDownloadEnd::Expired,
                                2 => JobDownloadEnd::Failed("broken"),
                                3 => JobDownloadEnd::MenderArtifact,
                                _ => JobDownloadEnd::Cancelled,
                            };
                            agent.handle_job_download(t, id, u64::from(code) * 4096, end);
                        }
                    }
                }
            }
        }
        for _ in 0..16 {
            let Some(action) = agent.poll() else { break };
            match action {
                Action::Persist { id, record } => {
                    assert!(StateRecord::decode(record).is_ok(), "persisted a bad record");
                    agent.handle_done(t, id, Outcome::Done);
                }
                Action::Hook { id, .. } | Action::JobBuiltin { id, .. } => {
                    pending = Some((id, 0));
                    break;
                }
                Action::JobDownload { id, .. } => {
                    pending = Some((id, 1));
                    break;
                }
                Action::JobFiles { .. } => {}
                Action::Exit { .. } => return,
                other => panic!("unexpected action in jobs mode: {other:?}"),
            }
        }
        if agent.has_exited() {
            return;
        }
    }
});
