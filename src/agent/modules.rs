//! Update Modules v3: the calls the agent decides after an update module
//! took the payload, in standalone mode (the reference's
//! `app/standalone.go` with its `ModuleInstaller`) and in daemon mode (its
//! `app/state.go`).
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
//! # Daemon flows
//!
//! A deployment whose payload type is not `rootfs-image` goes through the
//! module of that type (`M-x` = module call `x`, `[x]` = state scripts);
//! the statuses are those of the reference's daemon:
//!
//! | part | calls, scripts and reports |
//! |---|---|
//! | download | report `downloading`, `[Download_Enter]`, report `downloading`, `M-Download` (the artifact streamed into it), `M-SupportsRollback`, `[Download_Leave]`, report `downloading` |
//! | install | control point, `[ArtifactInstall_Enter]`, report `installing`, persist `Installed` (the answers in `trial_part`, see [`MODULE_PART`]), `M-ArtifactInstall`, `M-NeedsArtifactReboot`, `[ArtifactInstall_Leave]` |
//! | reboot (`Yes`/`Automatic` only) | control point, persist `Rebooting`, report `rebooting`, `[ArtifactReboot_Enter]`; `Yes`: `M-ArtifactReboot`; `Automatic`: the device reboots and the next start goes on; then `M-ArtifactVerifyReboot`, `[ArtifactReboot_Leave]` |
//! | commit | control point, report `installing`, `[ArtifactCommit_Enter]`, `M-ArtifactCommit`, persist the provides (and the `success` report), `[ArtifactCommit_Leave]`, `M-Cleanup`, report `success` |
//! | failure after the download | the failing state's `[x_Error]`; rollback supported: `[ArtifactRollback_Enter]`, `M-ArtifactRollback`, `M-NeedsArtifactReboot` (when not asked yet), `[ArtifactRollback_Leave]`, and when a reboot is needed `[ArtifactRollbackReboot_Enter]` with `M-ArtifactRollbackReboot`, `M-ArtifactVerifyRollbackReboot`, `[ArtifactRollbackReboot_Leave]` (`Yes`) or the device's reboot (`Automatic`); not supported: recorded as `<name>_INCONSISTENT`; then `[ArtifactFailure_Enter]`, `M-ArtifactFailure`, `[ArtifactFailure_Leave]`, `M-Cleanup`, report `failure` |
//! | `Download` or `Download_Leave` failure | `[Download_Error]`, `M-Cleanup`, report `failure` |
//! | restart | `Installed`: the failure above (the deployment was interrupted); `Rebooting`: `M-ArtifactVerifyReboot` and on |
//!
//! A module update is persisted as `Installed` with the partition
//! numbers [`MODULE_PART`]: no slot is involved, the record format is
//! unchanged, and the next `commit`/`rollback` finds the module's tree
//! (with `header/payload_type`) where the host left it.

use super::{
    Action, Agent, Completion, Dispatch, LogLevel, Mark, Message, Op, ScriptGroup, ScriptPhase,
    Step, StepKind,
};
use crate::agent::{ActionId, Instant, ModuleState};
use crate::board::PartNumber;
use crate::store::{PendingUpdate, UpdateStep};

/// The partition number a module update's [`PendingUpdate`] carries as
/// `previous_part` (real slots are numbered from 1), and as `trial_part` in
/// standalone mode; a daemon deployment keeps what the module answered in
/// `trial_part` instead, so a restart goes on without asking again:
///
/// | `trial_part` bit | meaning |
/// |---|---|
/// | 0 (`1`) | the answers below are known |
/// | 1 (`2`) | `SupportsRollback`: `Yes` |
/// | 2 (`4`) | `NeedsArtifactReboot`: `Yes` or `Automatic` |
/// | 3 (`8`) | `NeedsArtifactReboot`: `Yes` (the module reboots) |
pub const MODULE_PART: PartNumber = 0;

/// The `trial_part` bits of a daemon module deployment (see
/// [`MODULE_PART`]).
struct ModuleFlags;

impl ModuleFlags {
    const KNOWN: PartNumber = 1;
    const ROLLBACK: PartNumber = 2;
    const REBOOT: PartNumber = 4;
    const CUSTOM: PartNumber = 8;
}

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
    /// `Cleanup`, then the record and the completion (daemon: the report).
    Cleanup,
    /// Daemon: `SupportsRollback` after the download, before `Download_Leave`.
    DepQueryRollback,
    /// Daemon: `ArtifactInstall` after the `installing` report.
    DepInstall,
    /// Daemon: `NeedsArtifactReboot`, before `ArtifactInstall_Leave`.
    DepQueryReboot,
    /// Daemon: `ArtifactReboot` (the answer was `Yes`), after
    /// `ArtifactReboot_Enter`.
    DepReboot,
    /// Daemon: `ArtifactVerifyReboot`, before `ArtifactReboot_Leave`.
    DepVerifyReboot,
    /// Daemon: `ArtifactCommit`, after `ArtifactCommit_Enter`.
    DepCommit,
    /// Daemon failure: `ArtifactRollback`.
    DepFailRollback,
    /// Daemon failure: `NeedsArtifactReboot` after the rollback (when not
    /// asked yet).
    DepFailQueryReboot,
    /// Daemon failure: `ArtifactRollbackReboot`.
    DepRollbackReboot,
    /// Daemon failure: `ArtifactVerifyRollbackReboot`.
    DepVerifyRollbackReboot,
    /// Daemon restart inside a module deployment whose answers were not
    /// persisted: `SupportsRollback` again; `true` after the reboot.
    DepRecoverQuery(bool),
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
    /// Daemon: `NeedsArtifactReboot` said `Yes` (the module reboots).
    custom_reboot: bool,
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
            custom_reboot: false,
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

    /// `Download_Leave` ran after a module took the payload (standalone).
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
        if !self.installer.is_module() {
            return false;
        }
        if self.managed().is_some() {
            self.module_log_failure(&message);
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
            ModStep::DepQueryRollback | ModStep::DepRecoverQuery(_) => {
                call(ModuleState::SupportsRollback)
            }
            ModStep::DepInstall => call(ModuleState::ArtifactInstall),
            ModStep::DepQueryReboot | ModStep::DepFailQueryReboot => {
                call(ModuleState::NeedsArtifactReboot)
            }
            ModStep::DepReboot => call(ModuleState::ArtifactReboot),
            ModStep::DepVerifyReboot => call(ModuleState::ArtifactVerifyReboot),
            ModStep::DepCommit => call(ModuleState::ArtifactCommit),
            ModStep::DepFailRollback => call(ModuleState::ArtifactRollback),
            ModStep::DepRollbackReboot => call(ModuleState::ArtifactRollbackReboot),
            ModStep::DepVerifyRollbackReboot => call(ModuleState::ArtifactVerifyRollbackReboot),
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
                    // The reference's daemon only logs it.
                    if self.managed().is_none() {
                        self.inconsistent = true;
                    }
                }
                self.push_op(Op::Script(ScriptGroup::ArtifactFailure, ScriptPhase::Leave));
                self.step = Step::Module(ModStep::Cleanup);
            }
            ModStep::Cleanup if self.managed().is_some() => self.module_dep_cleaned(result),
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
            ModStep::DepQueryRollback
            | ModStep::DepInstall
            | ModStep::DepQueryReboot
            | ModStep::DepReboot
            | ModStep::DepVerifyReboot
            | ModStep::DepCommit
            | ModStep::DepFailRollback
            | ModStep::DepFailQueryReboot
            | ModStep::DepRollbackReboot
            | ModStep::DepVerifyRollbackReboot
            | ModStep::DepRecoverQuery(_) => self.module_dep_call_done(step, result),
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

// -------------------------------------------------------------------
// Daemon (managed) mode: the reference's `app/state.go` with a
// `ModuleInstaller`.

/// A `NeedsArtifactReboot` answer: `Some((reboot, the module reboots))`.
fn reboot_answer(answer: &str) -> Option<(bool, bool)> {
    match answer {
        "" | "No" => Some((false, false)),
        "Yes" => Some((true, true)),
        "Automatic" => Some((true, false)),
        _ => None,
    }
}

impl Agent<'_> {
    /// Managed: the running deployment's payload went to an update module.
    pub(super) fn managed_module(&self) -> bool {
        self.module.active && self.managed().is_some()
    }

    /// Managed module deployment: `NeedsArtifactReboot` asked for a reboot.
    pub(super) fn module_reboots(&self) -> bool {
        self.module.reboot
    }

    /// Managed module deployment: the module reboots (`Yes`).
    pub(super) fn module_custom_reboot(&self) -> bool {
        self.module.custom_reboot
    }

    /// What the module answered, as persisted in `trial_part`.
    pub(super) fn module_flags(&self) -> PartNumber {
        let mut flags = ModuleFlags::KNOWN;
        if self.module.rollback {
            flags |= ModuleFlags::ROLLBACK;
        }
        if self.module.reboot {
            flags |= ModuleFlags::REBOOT;
        }
        if self.module.custom_reboot {
            flags |= ModuleFlags::CUSTOM;
        }
        flags
    }

    /// Managed: the module took the whole payload (its `Download` ended):
    /// `SupportsRollback`, then `Download_Leave`.
    pub(super) fn module_dep_downloaded(&mut self) {
        self.module = ModuleFlow {
            active: true,
            ..ModuleFlow::default()
        };
        self.step = Step::Module(ModStep::DepQueryRollback);
    }

    /// Managed start inside a module deployment (`Installed` or
    /// `Rebooting` with [`MODULE_PART`]): after the reboot, verify it and go
    /// on to the commit; before it, the deployment failed (rollback when
    /// supported), as the reference's restart in its install state.
    pub(super) fn module_recover(&mut self, after_reboot: bool) {
        self.push_op(Op::Mark(Mark::Count));
        let flags = self.pending.trial_part;
        let has = |flag: PartNumber| flags & flag != 0;
        self.module = ModuleFlow {
            active: true,
            rollback: has(ModuleFlags::ROLLBACK),
            reboot: has(ModuleFlags::REBOOT),
            custom_reboot: has(ModuleFlags::CUSTOM),
            ..ModuleFlow::default()
        };
        if !has(ModuleFlags::KNOWN) {
            self.step = Step::Module(ModStep::DepRecoverQuery(after_reboot));
        } else {
            self.module_resume(after_reboot);
        }
    }

    fn module_resume(&mut self, after_reboot: bool) {
        if self.record.store_count.saturating_add(1) > super::MAX_STATE_WRITES {
            self.module_dep_fail(text!(
                "loop breaker: {} state writes without finishing the deployment",
                self.record.store_count.saturating_add(1)
            ));
        } else if after_reboot {
            info!("after the update module's reboot: verifying it");
            self.module.reboot = true;
            self.step = Step::Module(ModStep::DepVerifyReboot);
        } else {
            warn!("the deployment was interrupted before its reboot");
            self.module_dep_fail(text!("the deployment was interrupted (restart)"));
        }
    }

    /// Managed: the failure message goes to the log, the deployment log
    /// and (the first one) the report.
    pub(super) fn module_log_failure(&mut self, message: &Message) {
        if !self.module.failed {
            self.set_reason(message.clone());
        }
        let id = self.deployment_id.clone().unwrap_or_default();
        error!("deployment {} failed: {}", id.as_str(), message.as_str());
        self.deployment_log(LogLevel::Error, message.clone());
    }

    /// Managed failure after the download (the reference's
    /// `updateState.HandleError`): the module rolls back when it can
    /// (`ArtifactRollback_Enter`, `ArtifactRollback`, `NeedsArtifactReboot`
    /// when not asked yet, `ArtifactRollback_Leave`, the rollback reboot
    /// when one is needed); a module that cannot is recorded as
    /// `<name>_INCONSISTENT`; then `ArtifactFailure` and `Cleanup`, and the
    /// `failure` report. The caller queued the error scripts.
    pub(super) fn module_dep_fail(&mut self, message: Message) {
        self.module_log_failure(&message);
        self.module.failed = true;
        if self.module.rollback {
            info!("Rolling back Artifact...");
            self.push_op(Op::Script(
                ScriptGroup::ArtifactRollback,
                ScriptPhase::Enter,
            ));
            self.step = Step::Module(ModStep::DepFailRollback);
        } else {
            self.inconsistent = true;
            self.module_dep_failure();
        }
    }

    /// `ArtifactFailure_Enter`, `ArtifactFailure`, `ArtifactFailure_Leave`,
    /// `Cleanup`.
    fn module_dep_failure(&mut self) {
        self.module.failed = true;
        self.push_op(Op::Script(ScriptGroup::ArtifactFailure, ScriptPhase::Enter));
        self.step = Step::Module(ModStep::Failure);
    }

    /// After `ArtifactRollback` (and the reboot query): its `Leave`
    /// scripts, then the rollback reboot or the failure states.
    fn module_dep_rolled_back(&mut self) {
        self.push_op(Op::Script(
            ScriptGroup::ArtifactRollback,
            ScriptPhase::Leave,
        ));
        if !self.module.reboot {
            self.module_dep_failure();
            return;
        }
        self.push_op(Op::Script(
            ScriptGroup::ArtifactRollbackReboot,
            ScriptPhase::Enter,
        ));
        if self.module.custom_reboot {
            self.step = Step::Module(ModStep::DepRollbackReboot);
        } else {
            // The device reboots; the next start runs
            // `ArtifactRollbackReboot_Leave`, the failure scripts and the
            // report (see `Recovery::AfterRollbackReboot`).
            self.push_op(Op::Mark(Mark::RollbackRebooting));
            self.step = Step::RollbackReboot;
        }
    }

    /// `Cleanup` ended: the final report (`failure` when anything failed).
    fn module_dep_cleaned(&mut self, result: Result<&str, &str>) {
        if let Err(why) = result {
            error!("Cleanup failed: {why}");
            if !self.module.failed {
                let message = text!("Cleanup failed: {why}");
                self.module_log_failure(&message);
            }
        }
        if self.module.failed || result.is_err() {
            if self.inconsistent {
                self.push_op(Op::Mark(Mark::Settle));
            }
            self.push_op(Op::Mark(Mark::Reporting(false)));
        }
        self.step = Step::Report;
    }

    fn module_dep_call_done(&mut self, step: ModStep, result: Result<&str, &str>) {
        match step {
            ModStep::DepQueryRollback => match result.map(yes_no) {
                Ok(Some(rollback)) => {
                    self.module.rollback = rollback;
                    self.step = Step::DepDownloadLeave;
                }
                Ok(None) | Err(_) => {
                    let message = match result {
                        Err(why) => text!("{why}"),
                        Ok(answer) => text!(
                            "Unexpected reply from update module SupportsRollback query: {answer}"
                        ),
                    };
                    // The reference's error state straight from the download.
                    self.module_log_failure(&message);
                    self.push_op(Op::Script(ScriptGroup::Download, ScriptPhase::Error));
                    self.module_dep_failure();
                }
            },
            ModStep::DepRecoverQuery(after_reboot) => {
                self.module.rollback = matches!(result.map(yes_no), Ok(Some(true)));
                self.module_resume(after_reboot);
            }
            ModStep::DepInstall => match result {
                Ok(_) => self.step = Step::Module(ModStep::DepQueryReboot),
                Err(why) => {
                    self.push_op(Op::Script(ScriptGroup::ArtifactInstall, ScriptPhase::Error));
                    self.module_dep_fail(text!("Installation failed: {why}"));
                }
            },
            ModStep::DepQueryReboot => match result.map(reboot_answer) {
                Ok(Some((reboot, custom))) => {
                    self.module.reboot = reboot;
                    self.module.custom_reboot = custom;
                    self.pending.trial_part = self.module_flags();
                    self.step = Step::DepInstallLeave;
                }
                Ok(None) | Err(_) => {
                    let message = match result {
                        Err(why) => text!("{why}"),
                        Ok(answer) => text!(
                            "Unexpected reply from update module NeedsArtifactReboot query: {answer}"
                        ),
                    };
                    self.push_op(Op::Script(ScriptGroup::ArtifactInstall, ScriptPhase::Error));
                    self.module_dep_fail(message);
                }
            },
            ModStep::DepReboot => match result {
                Ok(_) => self.step = Step::Module(ModStep::DepVerifyReboot),
                Err(why) => {
                    self.push_op(Op::Script(ScriptGroup::ArtifactReboot, ScriptPhase::Error));
                    self.module_dep_fail(text!("Error rebooting device: {why}"));
                }
            },
            ModStep::DepVerifyReboot => match result {
                Ok(_) => self.step = Step::RebootLeave,
                Err(why) => {
                    self.push_op(Op::Script(ScriptGroup::ArtifactReboot, ScriptPhase::Error));
                    self.module_dep_fail(text!("{why}"));
                }
            },
            ModStep::DepCommit => match result {
                Ok(_) => {
                    self.push_op(Op::Mark(Mark::Committed));
                    info!("committed {}", self.pending.provides.artifact_name);
                    self.step = Step::CommitLeave;
                }
                Err(why) => {
                    self.push_op(Op::Script(ScriptGroup::ArtifactCommit, ScriptPhase::Error));
                    self.module_dep_fail(text!("update commit failed: {why}"));
                }
            },
            ModStep::DepFailRollback => match result {
                Ok(_) if self.module.reboot => self.module_dep_rolled_back(),
                Ok(_) => self.step = Step::Module(ModStep::DepFailQueryReboot),
                Err(why) => {
                    // The reference's rollback error: broken, failure states.
                    error!("Rollback failed: {why}");
                    self.inconsistent = true;
                    self.push_op(Op::Script(
                        ScriptGroup::ArtifactRollback,
                        ScriptPhase::Leave,
                    ));
                    self.module_dep_failure();
                }
            },
            ModStep::DepFailQueryReboot => {
                match result.map(reboot_answer) {
                    Ok(Some((reboot, custom))) => {
                        self.module.reboot = reboot;
                        self.module.custom_reboot = custom;
                    }
                    Ok(None) => error!("Unknown reboot value returned from Update Module"),
                    Err(why) => error!("{why}"),
                }
                self.module_dep_rolled_back();
            }
            ModStep::DepRollbackReboot => {
                if let Err(why) = result {
                    error!("Error rebooting device: {why}");
                }
                self.step = Step::Module(ModStep::DepVerifyRollbackReboot);
            }
            ModStep::DepVerifyRollbackReboot => {
                if let Err(why) = result {
                    // The reference retries the rollback reboot for ever;
                    // otalite goes on to the failure states.
                    error!("Rollback reboot failed: {why}");
                }
                self.push_op(Op::Script(
                    ScriptGroup::ArtifactRollbackReboot,
                    ScriptPhase::Leave,
                ));
                self.module_dep_failure();
            }
            _ => {}
        }
    }
}

/// A line the reference prints for the user; logged here (the host prints
/// the verb's result from [`Agent::module_report`]).
fn println_info(line: &str) {
    info!("{line}");
}
