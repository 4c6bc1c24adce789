//! Update Control Maps in the managed flow (the reference 3.x daemon's
//! `fetchControlMapState` / `controlMapState` / `controlMapPauseState`),
//! on the pure pool of [`super::control_map`].
//!
//! | control point | where | `continue` | `pause` | `fail` |
//! |---|---|---|---|---|
//! | `ArtifactInstall_Enter` | after `Download_Leave` and the `downloading` report | `ArtifactInstall_Enter` scripts | report `pause_before_installing` once, wait | `ArtifactInstall_Error`, rollback reboot, `failure` |
//! | `ArtifactReboot_Enter` | after `ArtifactInstall_Leave` | persist `Rebooting`, report `rebooting`, `ArtifactReboot_Enter`, reboot | first `ArtifactReboot_Enter` and persist `Rebooting` (a power cut boots the new system and goes on after the reboot, as the reference), then report `pause_before_rebooting` once, wait | rollback reboot, `failure` |
//! | `ArtifactCommit_Enter` | on the new system, after `ArtifactReboot_Leave` | report `installing`, `ArtifactCommit_Enter` scripts, commit | report `pause_before_committing` once, wait | rollback, rollback reboot, `failure` |
//!
//! Before each query, when the pool holds a map with the deployment's id,
//! it is fetched again (`GET /api/devices/v2/deployments/device/
//! deployments/{id}/update_control_map`; 404: the deployment was
//! aborted, fail; other errors: retried at `RetryPollIntervalSeconds`, the
//! deployment fails after the final-report attempt count). While paused,
//! the agent wakes at the pool's timer ([`Pool::pause_timer`]), at the
//! next expiry, and at once when a map is set ([`Agent::set_control_map`]).
//!
//! The pool is persisted by [`Action::PersistControlMaps`] after every
//! change, and restored at start with the boot expiration
//! ([`Agent::load_control_maps`]).

use super::control_map::{
    refresh_interval_secs, ControlMap, ControlState, Decision, Error as MapError, PauseTimer, Pool,
};
use super::*;

/// The shortest wait while paused (no busy loop on a passed half-life).
const MIN_PAUSE_WAIT_MS: u64 = 1_000;

impl<'b> Agent<'b> {
    /// Restores the persisted pool (the host read it from its file): maps
    /// are re-stamped with `UpdateControlMapBootExpirationTimeSeconds`.
    ///
    /// # Errors
    /// A damaged record; the pool then stays empty.
    pub fn load_control_maps(&mut self, now: Instant, bytes: &[u8]) -> Result<(), MapError> {
        self.now = now;
        let boot = secs(self.config.timing.control_map_boot_expiration);
        self.control_maps = Pool::load(bytes, now, boot)?;
        Ok(())
    }

    /// The maps the agent knows.
    pub fn control_maps(&self) -> &Pool {
        &self.control_maps
    }

    /// A map from a local application (D-Bus `SetUpdateControlMap`, the
    /// CLI): validated, inserted (or, without states, deleted), persisted;
    /// a paused deployment looks again at once. Returns the refresh
    /// interval the caller must re-send within, in seconds.
    ///
    /// # Errors
    /// An invalid map or a full pool; nothing changes.
    pub fn set_control_map(&mut self, now: Instant, json: &[u8]) -> Result<u32, MapError> {
        self.now = now;
        let expiration = secs(self.config.timing.control_map_expiration);
        self.control_maps.set_local_json(json, now, expiration)?;
        self.push_op(Op::PersistMaps);
        if matches!(self.step, Step::Control(_)) {
            self.sleep_until = None;
        }
        Ok(refresh_interval_secs(expiration))
    }

    /// Removes every map (the CLI's `control-map clear`), persisted.
    pub fn clear_control_maps(&mut self, now: Instant) {
        self.now = now;
        self.control_maps = Pool::new();
        self.push_op(Op::PersistMaps);
        if matches!(self.step, Step::Control(_)) {
            self.sleep_until = None;
        }
    }

    /// The deployment reached a control point.
    pub(super) fn control_point(&mut self, state: ControlState) {
        self.control_fetch = true;
        self.control_fetch_attempts = 0;
        self.step = Step::Control(state);
    }

    /// `Step::Control`: fetch the server map, query, act.
    pub(super) fn control_dispatch(&mut self, state: ControlState) {
        let id = self.deployment_id.clone().unwrap_or_default();
        if self.control_fetch && self.control_maps.has_map(&id) {
            self.control_fetch = false;
            self.start_call(Purpose::FetchMap(state));
            return;
        }
        if self.control_maps.expire(self.now) {
            self.push_op(Op::PersistMaps);
        }
        let decision = self.control_maps.query_and_update(state, self.now);
        if !self.control_maps.is_empty() {
            // `on_action_executed` may have changed a map.
            self.push_op(Op::PersistMaps);
        }
        match decision {
            Decision::Continue => self.control_continue(state),
            Decision::Fail => {
                info!(
                    "update control: forced update failure before {}",
                    state.name()
                );
                self.control_fail(state, text!("Forced a failed update (update control map)"));
            }
            Decision::Pause => self.control_pause(state, &id),
        }
    }

    fn control_pause(&mut self, state: ControlState, id: &str) {
        let index = state as usize;
        if state == ControlState::ArtifactRebootEnter && !self.reboot_pause_prepared {
            // As the reference: the reboot state is entered (its scripts
            // run, `Rebooting` persisted) before pausing.
            self.reboot_pause_prepared = true;
            self.push_ops(&[
                Op::Script(ScriptGroup::ArtifactReboot, ScriptPhase::Enter),
                Op::Mark(Mark::Rebooting),
            ]);
        }
        if !self.pause_reported.get(index).copied().unwrap_or(true) {
            if let Some(flag) = self.pause_reported.get_mut(index) {
                *flag = true;
            }
            info!("update control: pausing before {}", state.name());
            self.start_call(Purpose::Paused(state));
            return;
        }
        let poll = secs(self.config.timing.update_poll);
        let wait = match self.control_maps.pause_timer(id, self.now, poll) {
            PauseTimer::RefreshServerMap { after_ms } => {
                self.control_fetch = true;
                after_ms
            }
            PauseTimer::Requery { after_ms } => after_ms,
            PauseTimer::NoActiveMaps => 0,
        };
        let mut until = self.now.after(wait.max(MIN_PAUSE_WAIT_MS));
        if let Some(expiry) = self.control_maps.next_expiry() {
            if expiry > self.now {
                until = until.min(expiry);
            }
        }
        self.sleep_until = Some(until);
        self.step = Step::Control(state);
    }

    fn control_continue(&mut self, state: ControlState) {
        match state {
            ControlState::ArtifactInstallEnter => self.step = Step::DepInstallEnter,
            ControlState::ArtifactRebootEnter => {
                self.push_op(Op::Mark(Mark::Rebooting));
                self.start_call(Purpose::Rebooting);
            }
            ControlState::ArtifactCommitEnter => self.start_call(Purpose::Confirm),
        }
    }

    /// The state's error path.
    pub(super) fn control_fail(&mut self, state: ControlState, message: Message) {
        match state {
            ControlState::ArtifactInstallEnter => self.install_failed_before_switch(message),
            ControlState::ArtifactRebootEnter => self.fail_with_rollback_reboot(message, true),
            ControlState::ArtifactCommitEnter => {
                error!("{}; rolling back", message.as_str());
                self.deployment_log(LogLevel::Error, text!("{}", message.as_str()));
                self.set_reason(message);
                self.roll_back_and_reboot();
            }
        }
    }

    /// The refreshed server map (`GET .../update_control_map` answered
    /// 200): replaces this deployment's maps.
    pub(super) fn control_map_fetched(&mut self, body: &[u8]) -> Result<(), MapError> {
        let id = self.deployment_id.clone().unwrap_or_default();
        let expiration = secs(self.config.timing.control_map_expiration);
        let map = ControlMap::from_response_body(body)?;
        self.control_maps
            .insert_server(&id, map, self.now, expiration)?;
        self.push_op(Op::PersistMaps);
        Ok(())
    }

    /// The `next` answer's map (or its absence) for the offered deployment.
    pub(super) fn control_map_offered(&mut self, body: &[u8]) {
        let expiration = secs(self.config.timing.control_map_expiration);
        let id = self.offer.id.clone();
        let result = ControlMap::from_response_body(body).and_then(|map| {
            self.control_maps
                .insert_server(&id, map, self.now, expiration)
        });
        match result {
            Ok(()) => self.push_op(Op::PersistMaps),
            Err(error) => warn!("the deployment's update control map is ignored: {error}"),
        }
        self.pause_reported = [false; 3];
        self.reboot_pause_prepared = false;
    }

    /// The deployment ended (cleanup; the reference's idle): its maps and
    /// the expired ones go.
    pub(super) fn control_cleanup(&mut self, id: &str) {
        let before = self.control_maps.len();
        self.control_maps.delete_all(id);
        self.control_maps.clear_expired();
        if self.control_maps.len() != before {
            self.push_op(Op::PersistMaps);
        }
    }

    /// The reply to a refresh of the server map.
    pub(super) fn control_fetch_reply(&mut self, state: ControlState, reply: Reply) {
        match reply {
            Reply::Ok => self.step = Step::Control(state),
            Reply::Aborted => {
                self.control_fail(state, text!("the deployment was aborted on the server"))
            }
            _ => {
                self.control_fetch_attempts = self.control_fetch_attempts.saturating_add(1);
                if self.control_fetch_attempts >= self.config.timing.report_attempts() {
                    let why = self.reason.clone();
                    self.control_fail(
                        state,
                        text!("cannot refresh the update control map: {}", why.as_str()),
                    );
                } else {
                    warn!(
                        "cannot refresh the update control map ({}); retrying",
                        self.reason.as_str()
                    );
                    self.control_fetch = true;
                    self.sleep_until = Some(self.now.after(self.config.timing.retry_poll));
                    self.step = Step::Control(state);
                }
            }
        }
    }
}

/// Milliseconds to whole seconds (saturating).
fn secs(ms: u64) -> u32 {
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
}
