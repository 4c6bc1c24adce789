//! Update Modules v3, standalone mode: the calls the agent decides after
//! an update module took the payload (the reference's
//! `app/standalone.go` with its `ModuleInstaller`).
//!
//! The `Download` call runs inside the artifact stream: the host builds the
//! module's file tree and starts `Download` when the header is accepted
//! ([`crate::install::InstallHooks::module_download`]), and the payload
//! files go, checksummed on the way, into the module's `stream-next` FIFOs
//! (or into `files/` when the module exits without taking them). Every
//! later call is an [`Action::ModuleCall`], answered by
//! [`Agent::handle_module`].
//!
//! # Flows
//!
//! | verb | calls and scripts (`[x]` = state scripts, `Op` queue) |
//! |---|---|
//! | install | `Download_Enter`, artifact + `Download`, `Download_Leave`, `SupportsRollback`, `[ArtifactInstall_Enter]`, `ArtifactInstall`, `[ArtifactInstall_Leave]`, `NeedsArtifactReboot`, persist `Installed`; rollback supported: done (exit 0, or 4 with `--reboot-exit-code` when a reboot is wanted); else the commit below at once |
//! | commit | `[ArtifactCommit_Enter]`, `ArtifactCommit`, `[ArtifactCommit_Leave]`, `Cleanup`, provides recorded |
//! | rollback | `SupportsRollback` (`No`: refused, nothing changes), `[ArtifactRollback_Enter]`, `ArtifactRollback`, `[ArtifactRollback_Leave]`; any of them failed: `[ArtifactFailure_Enter]`, `ArtifactFailure`, `[ArtifactFailure_Leave]`, recorded as `<name>_INCONSISTENT`; then `Cleanup` |
//! | download failure | `[Download_Error]`, `Cleanup`; nothing recorded |
//! | install / commit failure | `[ArtifactInstall_Error]` / `[ArtifactCommit_Error]` (not after `NeedsArtifactReboot`), `SupportsRollback`; `Yes`: the rollback calls above; then `[ArtifactFailure_Enter]`, `ArtifactFailure`, `[ArtifactFailure_Leave]`, `Cleanup`; recorded as `<name>_INCONSISTENT` when anything failed or the module cannot roll back, else nothing recorded |
//! | `ArtifactCommit_Leave` failure | `[ArtifactCommit_Error]`, `Cleanup`, recorded as `<name>_INCONSISTENT` |
//!
//! A module update is persisted as `Installed` with both partition
//! numbers [`MODULE_PART`]: no slot is involved, the record format is
//! unchanged, and the next `commit`/`rollback` finds the module's tree
//! (with `header/payload_type`) where the host left it.

use super::{
    Action, Agent, Completion, Dispatch, Mark, Message, Op, ScriptGroup, ScriptPhase, Step,
    StepKind,
};
use crate::agent::{ActionId, Instant, ModuleState};
use crate::board::PartNumber;
use crate::store::{PendingUpdate, UpdateStep};

/// The partition number both `trial_part` and `previous_part` of a
/// module update's [`PendingUpdate`] carry (real slots are numbered from 1).
pub const MODULE_PART: PartNumber = 0;

/// Where a module flow stands (the agent's `Step::Module`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ModStep {
    /// Install: `SupportsRollback`.
    QueryRollback,
    /// `ArtifactInstall_Enter` scripts.
    InstallEnter,
    /// `ArtifactInstall`.
    Install,
    /// `ArtifactInstall_Leave` scripts.
    InstallLeave,
    /// `NeedsArtifactReboot`.
    QueryReboot,
    /// `ArtifactCommit_Enter` scripts.
    CommitEnter,
    /// `ArtifactCommit`.
    Commit,
    /// `ArtifactCommit_Leave` scripts.
    CommitLeave,
    /// Rollback verb: `SupportsRollback`.
    RollbackQuery,
    /// Rollback verb: `ArtifactRollback`.
    Rollback,
    /// Rollback verb: the rollback ran (its scripts too); decide.
    RollbackDone,
    /// Failure states: `SupportsRollback`.
    FailQuery,
    /// Failure states: `ArtifactRollback`.
    FailRollback,
    /// Failure states: `ArtifactFailure`.
    Failure,
    /// `Cleanup`, then the record and the completion.
    Cleanup,
}

/// What the flow found out and how it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ModuleFlow {
    /// A module flow ran in this agent.
    active: bool,
    /// `SupportsRollback` said `Yes`.
    rollback: bool,
    /// `NeedsArtifactReboot` said `Yes` or `Automatic`.
    reboot: bool,
    /// The install committed at once (no rollback support).
    committed: bool,
    /// The command fails (the reason is set).
    failed: bool,
    /// The failure states also run `ArtifactFailure`.
    failure: bool,
    /// After `Cleanup`: the record change and the completion on success.
    end: (Mark, Completion),
}

impl Default for ModuleFlow {
    fn default() -> Self {
        Self {
            active: false,
            rollback: false,
            reboot: false,
            committed: false,
            failed: false,
            failure: false,
            end: (Mark::Settle, Completion::Failed),
        }
    }
}

/// What a standalone module install found (see [`Agent::module_report`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleReport {
    /// The module supports rollback: the update waits for `commit` or
    /// `rollback`; otherwise it was committed at once.
    pub supports_rollback: bool,
    /// `NeedsArtifactReboot` asked for a reboot (`Yes` or `Automatic`).
    pub reboot: bool,
}

/// A `Yes`/`No` query answer (`""` = `No`), as the reference reads it.
fn yes_no(answer: &str) -> Option<bool> {
    match answer {
        "" | "No" => Some(false),
        "Yes" => Some(true),
        _ => None,
    }
}

impl Agent<'_> {
    /// The result of [`Action::ModuleCall`] `id`: the module's stdout
    /// without its last newline, or why the call failed.
    pub fn handle_module(&mut self, now: Instant, id: ActionId, result: Result<&str, &str>) {
        self.now = now;
        if self.outstanding != Some((id, false)) {
            return;
        }
        self.outstanding = None;
        if let Step::Module(step) = self.step {
            self.module_call_done(step, result);
        }
    }

    /// After a standalone install through an update module: whether it
    /// waits for commit/rollback and whether a reboot was asked for.
    pub fn module_report(&self) -> Option<ModuleReport> {
        self.module.active.then_some(ModuleReport {
            supports_rollback: self.module.rollback,
            reboot: self.module.reboot,
        })
    }

    /// The pending update is a module update ([`MODULE_PART`]).
    pub(super) fn is_module_update(&self) -> bool {
        matches!(self.record.step, UpdateStep::Installed(_))
            && self.pending.trial_part == MODULE_PART
            && self.pending.previous_part == MODULE_PART
    }

    /// `commit` of a waiting module update.
    pub(super) fn module_commit(&mut self) {
        self.module = ModuleFlow {
            active: true,
            ..ModuleFlow::default()
        };
        info!("Committing Artifact...");
        self.step = Step::Module(ModStep::CommitEnter);
    }

    /// `rollback` of a waiting module update.
    pub(super) fn module_rollback(&mut self) {
        self.module = ModuleFlow {
            active: true,
            ..ModuleFlow::default()
        };
        self.step = Step::Module(ModStep::RollbackQuery);
    }

    /// `Download_Leave` ran after a module took the payload.
    pub(super) fn module_downloaded(&mut self) {
        self.pending = PendingUpdate {
            provides: self.record.installed.after_commit(self.installer.header()),
            trial_part: MODULE_PART,
            previous_part: MODULE_PART,
            deployment_id: None,
        };
        self.module = ModuleFlow {
            active: true,
            ..ModuleFlow::default()
        };
        self.step = Step::Module(ModStep::QueryRollback);
    }

    /// The download (or a `Download` script) failed after a module took
    /// the payload: `Download_Error`, `Cleanup`, nothing recorded.
    /// `false` when no module is involved.
    pub(super) fn module_download_failed(&mut self, message: Message) -> bool {
        if !self.installer.is_module() || self.managed().is_some() {
            return false;
        }
        self.push_op(Op::Script(ScriptGroup::Download, ScriptPhase::Error));
        self.module.active = false;
        self.module.failed = true;
        self.module.end = (Mark::Settle, Completion::Failed);
        self.set_reason(message);
        self.step = Step::Module(ModStep::Cleanup);
        true
    }

    /// The reference's `doStandaloneFailureStates(rollback, failure,
    /// cleanup = true)`.
    fn module_fail(&mut self, message: Message, rollback: bool, failure: bool) {
        error!("{}", message.as_str());
        if !self.module.failed {
            self.set_reason(message);
        }
        self.module.failed = true;
        self.module.failure = failure;
        self.module.end = (Mark::Settle, Completion::Failed);
        if rollback {
            self.step = Step::Module(ModStep::FailQuery);
        } else {
            self.module_failure_or_cleanup(false);
        }
    }

    /// After the failure states' rollback part (`rolled_back`: the module
    /// supports rollback and it ran).
    fn module_failure_or_cleanup(&mut self, rolled_back: bool) {
        if self.module.failure {
            if !rolled_back {
                // The reference records a failed update it could not roll
                // back as `<name>_INCONSISTENT`.
                self.inconsistent = true;
            }
            self.push_op(Op::Script(ScriptGroup::ArtifactFailure, ScriptPhase::Enter));
            self.step = Step::Module(ModStep::Failure);
        } else {
            self.step = Step::Module(ModStep::Cleanup);
        }
    }

    /// The commit flow once `Installed` is (being) persisted.
    fn module_commit_now(&mut self) {
        println_info("Artifact doesn't support rollback. Committing immediately.");
        self.module.committed = true;
        info!("Committing Artifact...");
        self.step = Step::Module(ModStep::CommitEnter);
    }

    pub(super) fn module_dispatch(&mut self, step: ModStep) -> Dispatch {
        let call = |state| Dispatch::Action(StepKind::Module(state));
        let script = |group, phase| Dispatch::Action(StepKind::Script(group, phase));
        match step {
            ModStep::QueryRollback | ModStep::RollbackQuery | ModStep::FailQuery => {
                call(ModuleState::SupportsRollback)
            }
            ModStep::InstallEnter => script(ScriptGroup::ArtifactInstall, ScriptPhase::Enter),
            ModStep::Install => call(ModuleState::ArtifactInstall),
            ModStep::InstallLeave => script(ScriptGroup::ArtifactInstall, ScriptPhase::Leave),
            ModStep::QueryReboot => call(ModuleState::NeedsArtifactReboot),
            ModStep::CommitEnter => script(ScriptGroup::ArtifactCommit, ScriptPhase::Enter),
            ModStep::Commit => call(ModuleState::ArtifactCommit),
            ModStep::CommitLeave => script(ScriptGroup::ArtifactCommit, ScriptPhase::Leave),
            ModStep::Rollback | ModStep::FailRollback => call(ModuleState::ArtifactRollback),
            ModStep::RollbackDone => {
                if self.inconsistent {
                    self.set_reason(text!(
                        "rolling back {} failed; recorded as {}",
                        self.pending.provides.artifact_name,
                        super::inconsistent_name(&self.pending.provides.artifact_name)
                    ));
                    self.module.failed = true;
                    self.module.failure = true;
                    self.module_failure_or_cleanup(true);
                } else {
                    self.set_reason(text!("rolled back {}", self.pending.provides.artifact_name));
                    self.step = Step::Module(ModStep::Cleanup);
                }
                Dispatch::Again
            }
            ModStep::Failure => call(ModuleState::ArtifactFailure),
            ModStep::Cleanup => call(ModuleState::Cleanup),
        }
    }

    /// A state-script step of the flow ended.
    pub(super) fn module_script_done(&mut self, step: ModStep, failed: Option<&str>) {
        match (step, failed) {
            (ModStep::InstallEnter, None) => self.step = Step::Module(ModStep::Install),
            (ModStep::InstallLeave, None) => self.step = Step::Module(ModStep::QueryReboot),
            (ModStep::InstallEnter | ModStep::InstallLeave, Some(why)) => {
                self.push_op(Op::Script(ScriptGroup::ArtifactInstall, ScriptPhase::Error));
                self.module_fail(text!("{why}"), true, true);
            }
            (ModStep::CommitEnter, None) => self.step = Step::Module(ModStep::Commit),
            (ModStep::CommitEnter, Some(why)) => {
                self.push_op(Op::Script(ScriptGroup::ArtifactCommit, ScriptPhase::Error));
                self.module_fail(text!("{why}"), true, true);
            }
            (ModStep::CommitLeave, None) => {
                self.module.end = (Mark::Committed, Completion::Committed);
                self.set_reason(text!("committed {}", self.pending.provides.artifact_name));
                self.step = Step::Module(ModStep::Cleanup);
            }
            (ModStep::CommitLeave, Some(why)) => {
                // Too late to roll back, as for rootfs.
                self.push_op(Op::Script(ScriptGroup::ArtifactCommit, ScriptPhase::Error));
                self.inconsistent = true;
                self.module.failed = true;
                self.module.end = (Mark::Settle, Completion::Failed);
                self.set_reason(text!(
                    "the update was committed, but {why}; recorded as {}",
                    super::inconsistent_name(&self.pending.provides.artifact_name)
                ));
                self.step = Step::Module(ModStep::Cleanup);
            }
            _ => {}
        }
    }

    fn module_call_done(&mut self, step: ModStep, result: Result<&str, &str>) {
        match step {
            ModStep::QueryRollback => match result.map(yes_no) {
                Ok(Some(rollback)) => {
                    self.module.rollback = rollback;
                    self.step = Step::Module(ModStep::InstallEnter);
                }
                Ok(None) => self.module_fail(
                    text!(
                        "Unexpected reply from update module SupportsRollback query: {}",
                        result.unwrap_or_default()
                    ),
                    false,
                    false,
                ),
                Err(why) => self.module_fail(text!("{why}"), false, false),
            },
            ModStep::Install => match result {
                Ok(_) => self.step = Step::Module(ModStep::InstallLeave),
                Err(why) => {
                    self.push_op(Op::Script(ScriptGroup::ArtifactInstall, ScriptPhase::Error));
                    self.module_fail(text!("Installation failed: {why}"), true, true);
                }
            },
            ModStep::QueryReboot => {
                let reboot = match result {
                    Ok("" | "No") => Ok(false),
                    Ok("Yes" | "Automatic") => Ok(true),
                    Ok(other) => Err(text!(
                        "Unexpected reply from update module NeedsArtifactReboot query: {other}"
                    )),
                    Err(why) => Err(text!("{why}")),
                };
                match reboot {
                    Ok(reboot) => {
                        self.module.reboot = reboot;
                        self.push_op(Op::Mark(Mark::Installed));
                        if self.module.rollback {
                            self.set_reason(text!(
                                "installed {} through its update module",
                                self.pending.provides.artifact_name
                            ));
                            self.step = Step::Complete(Completion::Installed);
                        } else {
                            self.module_commit_now();
                        }
                    }
                    Err(message) => self.module_fail(message, true, true),
                }
            }
            ModStep::Commit => match result {
                Ok(_) => self.step = Step::Module(ModStep::CommitLeave),
                Err(why) => {
                    self.push_op(Op::Script(ScriptGroup::ArtifactCommit, ScriptPhase::Error));
                    self.module_fail(text!("Commit failed: {why}"), true, true);
                }
            },
            ModStep::RollbackQuery => match result.map(yes_no) {
                Ok(Some(true)) => {
                    info!("Rolling back Artifact...");
                    self.push_op(Op::Script(
                        ScriptGroup::ArtifactRollback,
                        ScriptPhase::Enter,
                    ));
                    self.module.end = (Mark::Settle, Completion::RolledBack);
                    self.step = Step::Module(ModStep::Rollback);
                }
                Ok(Some(false)) => {
                    self.set_reason(text!("No rollback support"));
                    self.step = Step::Complete(Completion::Failed);
                }
                Ok(None) => {
                    self.set_reason(text!(
                        "Unexpected reply from update module SupportsRollback query: {}",
                        result.unwrap_or_default()
                    ));
                    self.step = Step::Complete(Completion::Failed);
                }
                Err(why) => {
                    self.set_reason(text!("{why}"));
                    self.step = Step::Complete(Completion::Failed);
                }
            },
            ModStep::Rollback | ModStep::FailRollback => {
                if let Err(why) = result {
                    error!("Error when executing ArtifactRollback state: {why}");
                    self.inconsistent = true;
                }
                self.push_op(Op::Script(
                    ScriptGroup::ArtifactRollback,
                    ScriptPhase::Leave,
                ));
                if step == ModStep::Rollback {
                    self.step = Step::Module(ModStep::RollbackDone);
                } else {
                    self.module_failure_or_cleanup(true);
                }
            }
            ModStep::FailQuery => match result.map(yes_no) {
                Ok(Some(true)) => {
                    info!("Rolling back Artifact...");
                    self.push_op(Op::Script(
                        ScriptGroup::ArtifactRollback,
                        ScriptPhase::Enter,
                    ));
                    self.step = Step::Module(ModStep::FailRollback);
                }
                Ok(_) | Err(_) => {
                    if result.is_err() {
                        // The reference counts a failed query as an error.
                        self.inconsistent = true;
                    }
                    self.module_failure_or_cleanup(false);
                }
            },
            ModStep::Failure => {
                if let Err(why) = result {
                    error!("Error when executing ArtifactFailure state: {why}");
                    self.inconsistent = true;
                }
                self.push_op(Op::Script(ScriptGroup::ArtifactFailure, ScriptPhase::Leave));
                self.step = Step::Module(ModStep::Cleanup);
            }
            ModStep::Cleanup => {
                let (mark, completion) = self.module.end;
                let mark = if mark == Mark::Committed && self.inconsistent {
                    Mark::Settle
                } else {
                    mark
                };
                self.push_op(Op::Mark(mark));
                let failed = self.module.failed || result.is_err();
                if let Err(why) = result {
                    error!("Error when executing Cleanup state: {why}");
                    if !self.module.failed {
                        self.set_reason(text!("{why}"));
                    }
                }
                self.step = Step::Complete(if failed {
                    Completion::Failed
                } else {
                    completion
                });
            }
            ModStep::InstallEnter
            | ModStep::InstallLeave
            | ModStep::CommitEnter
            | ModStep::CommitLeave
            | ModStep::RollbackDone => {}
        }
    }

    /// [`Action::ModuleCall`] for `state`.
    pub(super) fn module_action(&mut self, state: ModuleState) -> Action<'_> {
        Action::ModuleCall {
            id: self.take_id(false),
            state,
        }
    }
}

/// A line the reference prints for the user; logged here (the host prints
/// the verb's result from [`Agent::module_report`]).
fn println_info(line: &str) {
    info!("{line}");
}
