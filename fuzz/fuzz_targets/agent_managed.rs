//! The managed-mode agent against an arbitrary server: every answer, fault
//! and artifact byte comes from the input. The agent must never panic, never
//! leave an action without a way on, only persist records that decode, and
//! never switch the bootloader (random bytes never verify as an artifact).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite::agent::{
    Action, Agent, AgentBuffers, AgentConfig, Feed, Instant, Mode, Outcome, ServerSettings,
    Slots, Timing,
};
use otalite::board::BootState;
use otalite::install::InstallHooks;
use otalite::mock::MemPartition;
use otalite::store::{StateRecord, MAX_RECORD_LEN};

struct Hooks;

impl InstallHooks for Hooks {
    type Error = core::convert::Infallible;
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

#[path = "common/input.rs"]
mod input;
use input::Input;

const STATUSES: [u16; 8] = [200, 204, 401, 404, 405, 409, 500, 200];

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut record = vec![0u8; MAX_RECORD_LEN];
    let mut request = vec![0u8; 16 * 1024];
    let mut auth = vec![0u8; 8 * 1024];
    let mut output = vec![0u8; 4096];
    let mut window = vec![0u8; otalite::artifact::WINDOW_LEN];
    let mut block = vec![0u8; 4096];
    let mut compare = vec![0u8; 512];
    let servers = ["http://a.invalid", "http://b.invalid"];
    let config = AgentConfig {
        device_type: "fuzz-board",
        keys: &[],
        signatures_required: false,
        timing: Timing {
            update_poll: 1_000,
            inventory_poll: 5_000,
            retry_poll: 500,
            retry_poll_count: 0,
            backoff_unit: 100,
            reboot_wait: 10_000,
            control_map_expiration: 3_600_000,
            control_map_boot_expiration: 600_000,
        },
        mode: Mode::Managed(ServerSettings {
            servers: &servers,
            tenant_token: "",
            public_key_pem: "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n",
            client_version: "fuzz",
            hand_off: otalite::agent::HandOffRole::Off,
        }),
    };
    let boot = BootState {
        boot_part: Some(2),
        upgrade_available: false,
        bootcount: Some(0),
    };
    let buffers = AgentBuffers {
        record: &mut record,
        request: &mut request,
        auth: &mut auth,
        output: &mut output,
        window: &mut window,
        block: &mut block,
        compare: &mut compare,
    };
    let Ok(mut agent) = Agent::new(config, StateRecord::default(), boot, buffers) else {
        return;
    };
    let mut slot = Box::new(MemPartition::<{ 64 * 1024 }>::default());
    let mut now = Instant::from_millis(0);
    for _ in 0..2_000 {
        if input.0.is_empty() {
            return;
        }
        let Some(action) = agent.poll() else {
            match agent.poll_at() {
                Some(at) => {
                    now = now.max(at);
                    agent.handle_timeout(now);
                    continue;
                }
                None => return,
            }
        };
        match action {
            Action::Persist { id, record } => {
                assert!(StateRecord::decode(record).is_ok());
                agent.handle_done(now, id, Outcome::Done);
            }
            Action::PersistControlMaps { id, record } => {
                // What was written loads back.
                let record = record.to_vec();
                agent.handle_done(now, id, Outcome::Done);
                assert!(agent.load_control_maps(now, &record).is_ok());
                // A map from a local application, from the input.
                let take = usize::from(input.byte()) % 64;
                let json = input.bytes(take).to_vec();
                let _ = agent.set_control_map(now, &json);
            }
            Action::SetTrial { .. } => panic!("the bootloader was switched to unverified bytes"),
            Action::HandOff { .. }
            | Action::Hook { .. }
            | Action::JobDownload { .. }
            | Action::JobBuiltin { .. }
            | Action::JobFiles { .. } => {
                panic!("a hand-off or jobs action from an agent that installs from a Mender server")
            }
            Action::RunScripts { id, .. }
            | Action::CommitBoot { id }
            | Action::RollBack { id, .. }
            | Action::Reboot { id }
            | Action::OpenArtifact { id, .. } => {
                let outcome = match input.byte() % 4 {
                    0 => Outcome::Failed("fuzz"),
                    1 => Outcome::Transient("fuzz"),
                    _ => Outcome::Done,
                };
                agent.handle_done(now, id, outcome);
            }
            Action::PrepareSlots { id, .. } => agent.handle_slots(
                now,
                id,
                Ok(Slots {
                    active: 2,
                    inactive: 3,
                    proven_by_root_device: input.byte() & 1 == 0,
                }),
            ),
            Action::ReadArtifact { id } => {
                let len = usize::from(input.byte()) * 4;
                let chunk = input.bytes(len).to_vec();
                match agent.handle_artifact(now, &chunk, &mut *slot, &mut Hooks) {
                    Feed::Continue => {
                        let outcome = match input.byte() % 3 {
                            0 => Outcome::Transient("dropped"),
                            _ => Outcome::Done,
                        };
                        agent.handle_done(now, id, outcome);
                    }
                    Feed::Complete | Feed::Stop => {}
                }
            }
            Action::GatherIdentity { id } | Action::GatherInventory { id } | Action::ReadDeploymentLog { id } => {
                let len = usize::from(input.byte());
                let text = input.bytes(len).to_vec();
                agent.handle_data(now, id, &text);
            }
            Action::Request { id, request } => {
                assert!(request.path.starts_with("/api/devices/"));
                let choice = input.byte();
                if choice == 0xff {
                    agent.handle_done(now, id, Outcome::Transient("reset"));
                    continue;
                }
                if choice == 0xfe {
                    // A map from a local application arrives meanwhile.
                    let len = usize::from(input.byte());
                    let json = input.bytes(len).to_vec();
                    let _ = agent.set_control_map(now, &json);
                }
                let status = STATUSES[usize::from(choice % 8)];
                let len = usize::from(input.byte()) * 2;
                let body = input.bytes(len).to_vec();
                agent.handle_response(now, id, status, &body);
            }
            Action::DeploymentLog { .. } | Action::ClearDeploymentLog => {}
            Action::Completed { .. } => panic!("managed mode completed a command"),
            Action::Exit { .. } => return,
            // A stored module deployment resumes through its module.
            Action::ModuleCall { id, .. } => {
                let answer = match input.byte() % 5 {
                    0 => Err("fuzz"),
                    1 => Ok("Yes"),
                    2 => Ok("Automatic"),
                    3 => Ok("garbage"),
                    _ => Ok(""),
                };
                agent.handle_module(now, id, answer);
            }
        }
        now = now.after(u64::from(input.byte()));
    }
});
