//! The hand-off flow: the Mender Python client's contract on the managed
//! agent.
//!
//! The agent authenticates, sends the inventory and polls as usual; a
//! deployment is downloaded whole into a file (the sub-updater needs it),
//! then handed to an installer program the agent does not watch. A lock
//! holding the deployment id says that the installer owns the device:
//! while it exists the agent does nothing else. The installer reports the
//! result itself (`report --success|--failure`, the [`HandOffRole::Report`]
//! agent) and removes the lock; the agent then polls again, with the name
//! the installer wrote to `artifact_info`.
//!
//! # Steps
//!
//! | step | action | next |
//! |---|---|---|
//! | a poll is due | [`HandOffOp::Check`] | lock held: wait ([`LOCK_POLL_MS`] or the update interval, whichever is shorter) and check again; free: take the installed name from `artifact_info`, poll |
//! | deployment | persist `Downloading`, report `downloading` | save |
//! | save | [`HandOffOp::Save`] (resumed after a break, with the download backoff) | persist `HandingOff`, start; failure: report `failure` |
//! | start | [`HandOffOp::Start`]: write the lock, start the installer detached | persist `HandedOff`, wait for the lock; failure (no installer): report `failure` |
//! | report (role) | [`HandOffOp::Check`] | locked: report the status for the lock's deployment (retried), upload the log on failure, [`HandOffOp::Release`]; free: "no update in progress" |
//!
//! # Persisted steps
//!
//! | persisted step | written before | next start |
//! |---|---|---|
//! | `Downloading` | the `downloading` report and the download | report `failure` (as a managed download) |
//! | `HandingOff` | writing the lock and starting the installer | no lock, or a lock no installer runs for (written before this boot: the power went between the lock and the start; or no process runs the installer with the file: the agent was killed there): write it and start the installer again; a lock an installer process runs for: wait |
//! | `HandedOff` | waiting for the lock | lock held: wait; no lock: the installer is done, idle, send the inventory |
//!
//! The `report` role persists nothing: the lock is its state. A power cut
//! between the report and the lock removal leaves the lock; reporting
//! again gets the server's "already finished" (`409`), taken as
//! delivered, and removes it.

use super::{Agent, Dispatch, LogLevel, Mark, Message, Op, Outcome, Step};
use crate::device::Provides;
use crate::store::UpdateStep;

/// How long the agent waits between two looks at a held lock (the Python
/// client's 60 s; the update poll interval when that is shorter).
pub const LOCK_POLL_MS: u64 = 60_000;

/// What the managed agent does with a deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HandOffRole {
    /// Installs it itself (streaming into the inactive slot).
    #[default]
    Off,
    /// Downloads it into a file and hands it to the installer program
    /// (the Python client's `daemon`).
    Daemon,
    /// One shot: reports the locked deployment's final status, then
    /// removes the lock (the Python client's `report --success|--failure`).
    Report {
        /// `--success` (else `--failure`: the deployment log goes too).
        success: bool,
    },
    /// Downloads it into a file and installs it with upparat's hooks,
    /// reporting the Mender statuses itself ([`super::mender_hooks`]).
    Hooks(super::HookPolicy),
}

/// What the host does for [`super::Action::HandOff`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandOffOp<'a> {
    /// Look at the lock: [`Agent::handle_hand_off`] with
    /// [`HandOffEvent::Locked`] or [`HandOffEvent::Free`].
    Check,
    /// Download `uri` into the hand-off file: from its current length when
    /// `resume` (HTTP `Range`), else from scratch. Then
    /// [`Agent::handle_hand_off`] with [`HandOffEvent::Saved`]: `Done` only
    /// when every byte the server announced is in the file and synced.
    Save {
        /// The artifact's location.
        uri: &'a str,
        /// Keep the bytes already in the file.
        resume: bool,
    },
    /// Write the lock holding `deployment_id` atomically, then start the
    /// installer with the file's path, detached (it outlives the agent).
    /// Then `handle_done`: `Failed` when there is no installer to run.
    Start {
        /// The deployment the installer owns.
        deployment_id: &'a str,
    },
    /// Remove the lock, then `handle_done`.
    Release,
}

/// What the host found or did for a [`HandOffOp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandOffEvent<'a> {
    /// [`HandOffOp::Check`]: the lock exists and holds this deployment id
    /// (empty when the file is empty), written during the running boot (or
    /// the host cannot tell).
    Locked(&'a str),
    /// [`HandOffOp::Check`]: the lock exists but no installer can be
    /// running for it: it was written before the running system booted,
    /// or no process runs the installer with the artifact file. Right
    /// after a hand-off began (`HandingOff` persisted, `HandedOff` not
    /// yet) this means the power went (or the agent was killed) between
    /// the lock and the installer's start: the installer is started again
    /// rather than waited for forever. Otherwise it is a held lock.
    LockedBeforeBoot(&'a str),
    /// [`HandOffOp::Check`]: no lock. `artifact_name` is what
    /// `artifact_info` names now (`None`: unreadable; the agent keeps its
    /// own).
    Free {
        /// The installed artifact's name.
        artifact_name: Option<&'a str>,
    },
    /// [`HandOffOp::Save`] ended with `reached` bytes in the file.
    Saved {
        /// Bytes in the file.
        reached: u64,
        /// How the download ended.
        outcome: Outcome<'a>,
    },
}

/// Where the hand-off flow stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HandStep {
    /// Look at the lock before polling (or after a restart).
    Check,
    /// The lock is held: look again when the timer runs out.
    Locked,
    Save,
    Start,
    /// The report role: look at the lock first.
    ReportCheck,
    Release,
}

/// The hand-off flow's memory.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct HandOffFlow {
    /// The lock was found free in this poll cycle.
    pub(super) free: bool,
    /// Bytes in the file when the last save ended.
    reached: u64,
    /// The held lock was already logged (log it once per hold).
    lock_logged: bool,
}

impl Agent<'_> {
    pub(super) fn hand_off_role(&self) -> HandOffRole {
        self.managed().map(|s| s.hand_off).unwrap_or_default()
    }

    pub(super) fn is_hand_off(&self) -> bool {
        self.hand_off_role() == HandOffRole::Daemon
    }

    pub(super) fn is_report_role(&self) -> bool {
        matches!(self.hand_off_role(), HandOffRole::Report { .. })
    }

    /// The deployment's `downloading` report went out: download the file.
    pub(super) fn hand_off_download(&mut self) {
        self.download_tries = 0;
        self.download_progress_at = 0;
        self.hand_off.reached = 0;
        // The lock look of this poll cycle is spent: the one after the
        // deployment looks again.
        self.hand_off.free = false;
        self.step = Step::HandOff(HandStep::Save);
    }

    /// After a restart with a hand-off under way: look at the lock.
    pub(super) fn hand_off_recover(&mut self) {
        if let Some(step_id) = super::id_of(&self.record.step) {
            self.deployment_id = Some(step_id);
        }
        self.step = Step::HandOff(HandStep::Check);
    }

    pub(super) fn hand_off_dispatch(&mut self, step: HandStep) -> Dispatch {
        match step {
            HandStep::Locked | HandStep::Check | HandStep::Save if self.stopping => {
                self.step = Step::Exit { failed: false };
                Dispatch::Again
            }
            HandStep::Locked => {
                // The timer ran out (or a command woke the agent).
                self.step = Step::HandOff(HandStep::Check);
                Dispatch::Again
            }
            _ => Dispatch::Action(super::StepKind::HandOff(step)),
        }
    }

    pub(super) fn hand_off_action(&mut self, step: HandStep) -> super::Action<'_> {
        let id = self.take_id(false);
        let op = match step {
            HandStep::Save => HandOffOp::Save {
                uri: self.offer.uri.as_str(),
                resume: self.download_tries > 0 && self.hand_off.reached > 0,
            },
            HandStep::Start => HandOffOp::Start {
                deployment_id: self.deployment_id.as_ref().map_or("", |id| id.as_str()),
            },
            HandStep::Release => HandOffOp::Release,
            HandStep::Check | HandStep::Locked | HandStep::ReportCheck => HandOffOp::Check,
        };
        super::Action::HandOff { id, op }
    }

    /// The host's answer to a [`super::Action::HandOff`].
    pub fn handle_hand_off(
        &mut self,
        now: super::Instant,
        id: super::ActionId,
        event: HandOffEvent<'_>,
    ) {
        self.now = now;
        if self.outstanding != Some((id, false)) {
            return;
        }
        self.outstanding = None;
        let Step::HandOff(step) = self.step else {
            return;
        };
        match (step, event) {
            (
                HandStep::ReportCheck,
                HandOffEvent::Locked(deployment) | HandOffEvent::LockedBeforeBoot(deployment),
            ) => self.report_locked(deployment),
            (HandStep::ReportCheck, HandOffEvent::Free { .. }) => {
                self.fatal(text!("No update in progress: there is no update lock"))
            }
            (HandStep::Check, HandOffEvent::Locked(deployment)) => self.lock_held(deployment),
            (HandStep::Check, HandOffEvent::LockedBeforeBoot(deployment)) => {
                if let UpdateStep::HandingOff(_) = self.record.step {
                    // Nobody runs the installer since the power cut.
                    warn!(
                        "the installer for '{deployment}' was being started when the power went; starting it again"
                    );
                    self.step = Step::HandOff(HandStep::Start);
                } else {
                    self.lock_held(deployment);
                }
            }
            (HandStep::Check, HandOffEvent::Free { artifact_name }) => {
                self.lock_free(artifact_name)
            }
            (HandStep::Save, HandOffEvent::Saved { reached, outcome }) => {
                self.hand_off.reached = reached;
                self.saved(reached, outcome)
            }
            // A host answering the wrong op: treat it as the op failing.
            (HandStep::Save, _) => self.fail(text!("the download ended without an answer")),
            _ => self.step_done(Outcome::Failed("unexpected hand-off answer")),
        }
    }

    /// `handle_done` for `Start` and `Release`.
    pub(super) fn hand_off_done(&mut self, step: HandStep, outcome: Outcome<'_>) {
        let why = match outcome {
            Outcome::Done => None,
            Outcome::Failed(why) | Outcome::Transient(why) => Some(why),
        };
        match (step, why) {
            (HandStep::Start, None) => {
                let id = self.deployment_id.clone().unwrap_or_default();
                info!(
                    "deployment {}: the installer has the artifact; waiting for its report",
                    id.as_str()
                );
                self.deployment_log(
                    LogLevel::Info,
                    text!("handed the artifact to the installer"),
                );
                self.push_op(Op::Mark(Mark::HandedOff));
                self.hand_off.lock_logged = true;
                self.hand_off_wait();
            }
            (HandStep::Start, Some(why)) => {
                self.fail(text!("cannot start the installer: {why}"));
            }
            (HandStep::Release, None) => {
                let status = if self.report.success {
                    "success"
                } else {
                    "failure"
                };
                self.set_reason(text!(
                    "reported {status} for deployment {}",
                    self.report.deployment_id.as_str()
                ));
                info!("{}; the update lock is removed", self.reason.as_str());
                self.step = Step::Exit { failed: false };
            }
            (HandStep::Release, Some(why)) => {
                self.fatal(text!("the status is reported but the lock stays: {why}"))
            }
            (_, Some(why)) => self.fatal(text!("{why}")),
            (_, None) => {}
        }
    }

    /// Wait for the lock to go.
    fn hand_off_wait(&mut self) {
        let wait = LOCK_POLL_MS.min(self.config.timing.update_poll.max(1));
        self.sleep_until = Some(self.now.after(wait));
        self.step = Step::HandOff(HandStep::Locked);
    }

    fn lock_held(&mut self, deployment: &str) {
        if let UpdateStep::HandingOff(_) = self.record.step {
            // The lock was written before the power went: the installer
            // owns the device now.
            self.push_op(Op::Mark(Mark::HandedOff));
        }
        if !self.hand_off.lock_logged {
            info!(
                "a deployment is in progress (the update lock holds '{deployment}'); waiting for the installer's report"
            );
            self.hand_off.lock_logged = true;
        } else {
            debug!("the update lock is still held");
        }
        self.hand_off_wait();
    }

    fn lock_free(&mut self, artifact_name: Option<&str>) {
        self.hand_off.lock_logged = false;
        if let UpdateStep::HandingOff(_) = self.record.step {
            // The lock was never written: hand the file over again.
            warn!("the hand-off was interrupted; starting the installer again");
            self.step = Step::HandOff(HandStep::Start);
            return;
        }
        let renamed = artifact_name.filter(|name| {
            !name.is_empty() && *name != self.record.installed.artifact_name.as_str()
        });
        let finished = matches!(self.record.step, UpdateStep::HandedOff(_));
        if let Some(name) = renamed {
            info!("the installed artifact is now {name}");
            self.record.installed = Provides::named(name);
        }
        if finished {
            info!("the installer released the update lock; polling again");
            self.deployment_id = None;
            self.next_inventory = self.now;
        }
        if finished || (renamed.is_some() && self.record.step == UpdateStep::Idle) {
            self.push_op(Op::Mark(Mark::Idle));
        }
        if renamed.is_some() {
            self.next_inventory = self.now;
        }
        self.hand_off.free = true;
        self.step = Step::Ready;
    }

    fn saved(&mut self, reached: u64, outcome: Outcome<'_>) {
        let (why, transient) = match outcome {
            Outcome::Done if self.hooks_policy().is_some() => {
                self.hooks_saved(reached);
                return;
            }
            Outcome::Done => {
                info!("downloaded {reached} bytes for the installer");
                self.push_op(Op::Mark(Mark::HandingOff));
                self.step = Step::HandOff(HandStep::Start);
                return;
            }
            Outcome::Transient(why) => (why, true),
            Outcome::Failed(why) => (why, false),
        };
        if reached > self.download_progress_at {
            self.download_tries = 0;
            self.download_progress_at = reached;
        }
        let timing = self.config.timing;
        let unit = timing.backoff_unit.max(1);
        let wait = if !transient {
            None
        } else if reached == 0 {
            super::backoff(
                self.download_tries,
                unit,
                timing.update_poll.max(1),
                timing.retry_poll_count,
            )
        } else {
            super::backoff(self.download_tries, unit, timing.retry_poll.max(unit), 0)
        };
        match wait {
            Some(wait) if !self.stopping => {
                warn!("the download broke at byte {reached} ({why}); resuming in {wait} ms");
                // A resume only makes sense once the file holds something.
                self.download_tries = self.download_tries.saturating_add(1);
                self.sleep_until = Some(self.now.after(wait));
                self.step = Step::HandOff(HandStep::Save);
            }
            Some(_) => self.step = Step::Exit { failed: false },
            None => self.fail(text!("the download failed: {why}")),
        }
    }

    /// The report role found the lock: report its deployment's status.
    fn report_locked(&mut self, deployment: &str) {
        let id = deployment.trim();
        if id.is_empty() {
            self.fatal(text!("No deployment ID found in the update lock"));
            return;
        }
        let Ok(id) = crate::store::DeploymentId::try_from(id) else {
            self.fatal(text!("the update lock does not hold a deployment ID"));
            return;
        };
        let success = matches!(self.hand_off_role(), HandOffRole::Report { success: true });
        info!(
            "reporting {} for deployment {}",
            if success { "success" } else { "failure" },
            id.as_str()
        );
        self.deployment_id = Some(id.clone());
        self.report = crate::store::FinalReport {
            deployment_id: id,
            success,
            attempts: 0,
        };
        self.step = Step::Report;
    }

    /// The report role: the status is delivered (and the log, on failure).
    pub(super) fn report_role_done(&mut self) {
        self.step = Step::HandOff(HandStep::Release);
    }

    /// The report role could not deliver the status: the lock stays.
    pub(super) fn report_role_gave_up(&mut self) {
        let reason: Message = self.reason.clone();
        error!("could not report the update status: {}", reason.as_str());
        self.fatal(text!(
            "Failed to report the update status to the Mender server: {}",
            reason.as_str()
        ));
    }
}
