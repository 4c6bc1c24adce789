//! Hooks with a Mender server deployment: upparat's hooks
//! ([`super::jobs::Hook`]) install what the Mender server deploys, instead
//! of the built-in slot installer ([`super::HandOffRole::Hooks`]).
//!
//! The agent authenticates, sends the inventory and polls as usual. A
//! deployment is downloaded whole into the hand-off file (as the hand-off
//! flow's `Save`, resumed after a break), then the hooks run as upparat
//! runs them: `hook <seconds since the first call> <retry> <meta>
//! [file]`, where `meta` is the deployment's artifact name; exit 3 asks
//! again after the retry interval, up to the retry limit. The server sees
//! the Mender statuses.
//!
//! # Steps
//!
//! | step | does | next |
//! |---|---|---|
//! | deployment | persist `Downloading`, report `downloading`, the `download` hook if set | save |
//! | save | download into the hand-off file | persist `HandingOff`, report `installing`, the `install` hook with the file |
//! | install | exit 0 | with a `restart` hook: persist `HandedOff`, report `rebooting`, the restart hook (exit 0: a soft restart: success); without: success |
//! | after the restart | the `version` hook (it prints the running artifact name; another name: failure), the `ready` hook | success |
//! | success | the installed artifact is the deployment's; remove the file; report `success` | poll |
//! | a hook fails (not 0 or 3, 3 too often, cannot run) | remove the file; report `failure` with the deployment log (the hook's last line in it) | poll |
//!
//! # Persisted steps (the hand-off's, with this flow's meaning)
//!
//! | persisted | written before | next start |
//! |---|---|---|
//! | `Downloading` | the `downloading` report | report `failure` (as a managed download) |
//! | `HandingOff` | the `installing` report and the install hook | report `installing` and run the install hook again (upparat redoes a job it did not finish) |
//! | `HandedOff` | the `rebooting` report and the restart hook | the checks after the restart: version, ready, success |

use super::jobs::{Hook, HookOutcome, HookPolicy, HookRun};
use super::{Agent, Dispatch, LogLevel, Mark, Message, Op, Purpose, Step};
use crate::device::Provides;
use crate::store::UpdateStep;

/// The hooks flow's memory.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct MenderHooksFlow {
    /// The running hook's calls so far.
    run: Option<HookRun>,
}

impl Agent<'_> {
    /// The hooks that install deployments ([`super::HandOffRole::Hooks`]).
    pub(super) fn hooks_policy(&self) -> Option<HookPolicy> {
        match self.hand_off_role() {
            super::HandOffRole::Hooks(policy) => Some(policy),
            _ => None,
        }
    }

    /// The deployment's artifact name (the offer's, or the persisted one
    /// after a restart).
    fn hooks_artifact_name(&self) -> &str {
        match &self.record.step {
            UpdateStep::Downloading(d) | UpdateStep::HandingOff(d) | UpdateStep::HandedOff(d) => {
                d.artifact_name.as_str()
            }
            _ => self.offer.artifact_name.as_str(),
        }
    }

    /// The `downloading` report went out: the download hook, then the file.
    pub(super) fn hooks_download(&mut self) {
        self.mender_hooks = MenderHooksFlow::default();
        if self.hooks_policy().is_some_and(|p| p.hooks.download) {
            self.step = Step::Hooks(Hook::Download);
        } else {
            self.hand_off_download();
        }
    }

    /// The file is complete: `installing`, then the install hook.
    pub(super) fn hooks_saved(&mut self, reached: u64) {
        info!("downloaded {reached} bytes for the install hook");
        if !self.hooks_policy().is_some_and(|p| p.hooks.install) {
            self.hooks_failed(text!("no install hook is configured"));
            return;
        }
        self.push_op(Op::Mark(Mark::HandingOff));
        self.start_call(Purpose::Installing);
    }

    /// After a restart inside a deployment (`HandingOff`, `HandedOff`).
    pub(super) fn hooks_recover(&mut self) {
        if let Some(id) = super::id_of(&self.record.step) {
            self.deployment_id = Some(id);
        }
        self.mender_hooks = MenderHooksFlow::default();
        match self.record.step {
            UpdateStep::HandedOff(_) => {
                info!("the restart hook ran: checking the new system");
                self.hooks_verify();
            }
            _ => {
                info!("the install hook did not finish: installing again");
                self.start_call(Purpose::Installing);
            }
        }
    }

    /// `installing` was reported (`aborted`: the deployment ends).
    pub(super) fn hooks_installing_reply(&mut self, aborted: bool) {
        if aborted {
            self.hooks_failed(text!("the deployment was aborted on the server"));
        } else {
            self.step = Step::Hooks(Hook::Install);
        }
    }

    /// `rebooting` was reported: the restart hook (it runs whatever the
    /// answer: the install is done and must be started).
    pub(super) fn hooks_rebooting_reply(&mut self) {
        self.step = Step::Hooks(Hook::Restart);
    }

    pub(super) fn hooks_dispatch(&mut self, hook: Hook) -> Dispatch {
        if self.stopping {
            self.step = Step::Exit { failed: false };
            return Dispatch::Again;
        }
        Dispatch::Action(super::StepKind::Hook(hook))
    }

    /// The action of a hook step.
    pub(super) fn mender_hook_action(&mut self, hook: Hook) -> super::Action<'_> {
        let now = self.now;
        let id = self.take_id(false);
        let run = *self.mender_hooks.run.get_or_insert(HookRun {
            first_call: now,
            retry: 0,
        });
        super::Action::Hook {
            id,
            hook,
            elapsed_s: run.first_call.until(now) / 1000,
            retry: run.retry,
            meta: self.hooks_artifact_name(),
            job_id: self.deployment_id.as_ref().map_or("", |id| id.as_str()),
            force: false,
        }
    }

    /// A hook ended ([`Agent::handle_hook`] in this mode).
    pub(super) fn mender_hook_done(&mut self, outcome: HookOutcome<'_>) {
        let Step::Hooks(hook) = self.step else {
            return;
        };
        let Some(policy) = self.hooks_policy() else {
            return;
        };
        match outcome {
            HookOutcome::Exited { code: 0, last_line } => {
                self.mender_hooks.run = None;
                self.hook_succeeded(hook, last_line.map(str::trim));
            }
            HookOutcome::Exited { code: 3, .. } => {
                let now = self.now;
                match HookRun::retry_later(
                    &mut self.mender_hooks.run,
                    now,
                    policy.retry_interval_ms,
                    policy.max_retries,
                ) {
                    Ok(wait) => {
                        info!(
                            "the {} hook asks to retry in {} s",
                            hook.as_str(),
                            wait / 1000
                        );
                        self.sleep_until = Some(now.after(wait));
                    }
                    Err(seconds) => self.hooks_failed(text!(
                        "the {} hook: Timeout after {seconds}s",
                        hook.as_str()
                    )),
                }
            }
            HookOutcome::Exited { code, last_line } => {
                let said = last_line.unwrap_or("");
                self.hooks_failed(text!(
                    "the {} hook failed: Exit code: {code}{}{said}",
                    hook.as_str(),
                    if said.is_empty() { "" } else { ": " }
                ));
            }
            HookOutcome::NotRun(why) => {
                self.hooks_failed(text!("the {} hook cannot run: {why}", hook.as_str()));
            }
            // Not asked for in this mode: a stop.
            HookOutcome::Cancelled => self.step = Step::Exit { failed: false },
        }
    }

    fn hook_succeeded(&mut self, hook: Hook, line: Option<&str>) {
        let hooks = self.hooks_policy().map(|p| p.hooks).unwrap_or_default();
        match hook {
            Hook::Download => self.hand_off_download(),
            Hook::Install if hooks.restart => {
                self.deployment_log(LogLevel::Info, text!("the install hook succeeded"));
                self.push_op(Op::Mark(Mark::HandedOff));
                self.start_call(Purpose::Rebooting);
            }
            Hook::Install => {
                self.deployment_log(
                    LogLevel::Info,
                    text!("the install hook succeeded; no restart hook"),
                );
                self.hooks_success();
            }
            // A soft restart: the new system runs.
            Hook::Restart => self.hooks_success(),
            Hook::Version => {
                let expected = self.hooks_artifact_name();
                if line == Some(expected) {
                    self.hooks_ready();
                } else {
                    let message = text!(
                        "Expected version '{expected}', got '{}'",
                        line.unwrap_or("None")
                    );
                    self.hooks_failed(message);
                }
            }
            Hook::Ready => self.hooks_success(),
        }
    }

    /// After the restart: the version check, then ready.
    fn hooks_verify(&mut self) {
        if self.hooks_policy().is_some_and(|p| p.hooks.version) {
            self.step = Step::Hooks(Hook::Version);
        } else {
            self.hooks_ready();
        }
    }

    fn hooks_ready(&mut self) {
        if self.hooks_policy().is_some_and(|p| p.hooks.ready) {
            self.step = Step::Hooks(Hook::Ready);
        } else {
            self.hooks_success();
        }
    }

    /// The deployment's artifact is installed: it is the device's now.
    fn hooks_success(&mut self) {
        let name = self.hooks_artifact_name();
        let provides = Provides::named(name);
        info!("deployment installed by the hooks: {name}");
        self.record.installed = provides;
        self.push_op(Op::JobFiles { keep: false });
        self.finish(true);
    }

    fn hooks_failed(&mut self, message: Message) {
        self.push_op(Op::JobFiles { keep: false });
        self.fail(message);
    }
}
