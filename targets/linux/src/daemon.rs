//! `otalite daemon`: the managed mode's loop. The decisions (backoff,
//! recovery after a restart, status vocabulary) are the core's
//! (`otalite::agent`); this module runs them against a [`ServerApi`], the
//! board and the clock.
//!
//! One deployment, as persisted steps (each written before its action):
//!
//! ```text
//! Downloading --stream+verify--> Installed --set trial--> Rebooting --reboot-->
//!   (restart) Rebooting + trial booted --> Committing --> Reporting(success) --> Idle
//!   any failure before the env switch         --> Reporting(failure) --> Idle
//!   failure after the env switch --> RollingBack --> Reporting(failure) --> Idle
//! ```

use crate::standalone::{Device, Failure};
use otalite::agent::{backoff, recover, report_attempts, DeploymentStatus, Recovery};
use otalite::board::{BootControl, Reboot};
use otalite::store::{
    DeploymentId, Downloading, FinalReport, PendingUpdate, StateRecord, UpdateStep,
};
use otalite_host::scripts::{Action, Group};
use std::cell::Cell;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

/// A deployment the server offered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    pub id: String,
    pub artifact_name: String,
    pub uri: String,
    pub device_types: Vec<String>,
}

/// Why a server call failed.
#[derive(Debug)]
pub enum ApiError {
    /// 409 on a status report: the deployment was aborted on the server.
    Aborted,
    /// 401 after re-authentication, or the device is not (yet) accepted.
    Unauthorized,
    /// Anything transient: network, timeouts, 5xx.
    Transient(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Aborted => f.write_str("the deployment was aborted on the server"),
            Self::Unauthorized => f.write_str("the device is not authorized (pending or rejected)"),
            Self::Transient(why) => f.write_str(why),
        }
    }
}

/// The Mender server as the daemon uses it.
pub trait ServerApi {
    /// Authenticates (or re-authenticates) the device.
    fn authenticate(&mut self) -> Result<(), ApiError>;
    /// Sends the inventory (the implementation gathers it).
    fn send_inventory(&mut self, artifact_name: &str, device_type: &str) -> Result<(), ApiError>;
    /// Asks for the next deployment.
    fn check_update(
        &mut self,
        provides: &otalite::device::Provides,
        device_type: &str,
    ) -> Result<Option<Deployment>, ApiError>;
    /// Reports a deployment status.
    fn report(
        &mut self,
        id: &str,
        status: DeploymentStatus,
        substate: Option<&str>,
    ) -> Result<(), ApiError>;
    /// Uploads the deployment log (failures only).
    fn upload_log(&mut self, id: &str, lines: &[String]) -> Result<(), ApiError>;
    /// Opens the artifact download: a reader that resumes by itself and
    /// fails (never hangs) when it cannot.
    fn download(&mut self, uri: &str) -> Result<Box<dyn std::io::Read>, ApiError>;
}

/// Signals the loop reacts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// SIGTERM / SIGINT: stop, exit 0.
    Stop,
    /// SIGUSR1 (`otalite check-update`).
    CheckUpdate,
    /// SIGUSR2 (`otalite send-inventory`).
    SendInventory,
}

/// Timing knobs (seconds in production; tests shorten them).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub update_poll: Duration,
    pub inventory_poll: Duration,
    pub retry_poll: Duration,
    /// One backoff unit (one minute in production).
    pub backoff_unit: Duration,
    /// How long to wait to be killed after asking for a reboot.
    pub reboot_wait: Duration,
}

impl Timing {
    /// Tries for the final (and the pre-commit) status report, by the
    /// reference's formula.
    pub fn report_attempts(&self) -> u32 {
        report_attempts(
            u32::try_from(self.update_poll.as_secs()).unwrap_or(u32::MAX),
            u32::try_from(self.retry_poll.as_secs().max(1)).unwrap_or(u32::MAX),
        )
    }

    /// From `mender.conf`.
    pub fn from_config(config: &otalite::config::MenderConfig) -> Self {
        Self {
            update_poll: Duration::from_secs(config.update_poll_interval().into()),
            inventory_poll: Duration::from_secs(config.inventory_poll_interval().into()),
            retry_poll: Duration::from_secs(config.retry_poll_interval().into()),
            backoff_unit: Duration::from_secs(60),
            reboot_wait: Duration::from_secs(600),
        }
    }
}

/// The deployment log kept on disk while a deployment runs (JSON lines are
/// built at upload time); uploaded on failure.
fn log_path(device: &Device<impl BootControl>) -> std::path::PathBuf {
    device.paths.data_dir.join("deployment.log")
}

fn deployment_log(device: &Device<impl BootControl>, message: &str) {
    use std::io::Write as _;
    let line = format!("{} info {message}\n", crate::logger::rfc3339_now());
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(device))
    {
        let _ = file.write_all(line.as_bytes());
    }
}

fn id_of(text: &str) -> DeploymentId {
    let mut id = DeploymentId::new();
    for ch in text.chars() {
        if id.push(ch).is_err() {
            break;
        }
    }
    id
}

/// Takes the signals already queued without waiting; `true` once a stop
/// arrived (remembered in `stopping`). Update-check and inventory requests
/// taken here are dropped: a deployment is running.
fn stop_requested(wake: &Receiver<Wake>, stopping: &Cell<bool>) -> bool {
    loop {
        match wake.try_recv() {
            Ok(Wake::Stop) | Err(TryRecvError::Disconnected) => stopping.set(true),
            Ok(_) => continue,
            Err(TryRecvError::Empty) => {}
        }
        return stopping.get();
    }
}

/// The artifact stream, cut short by SIGTERM: a stop during a long download
/// ends it (and so the deployment) instead of installing and rebooting.
struct Stoppable<'a> {
    inner: Box<dyn std::io::Read>,
    wake: &'a Receiver<Wake>,
    stopping: &'a Cell<bool>,
}

impl std::io::Read for Stoppable<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if stop_requested(self.wake, self.stopping) {
            return Err(std::io::Error::other("stopped by a signal"));
        }
        self.inner.read(buffer)
    }
}

/// The daemon.
pub struct Daemon<'d, B, S, R> {
    pub device: &'d mut Device<B>,
    pub server: S,
    pub reboot: R,
    pub timing: Timing,
    pub wake: Receiver<Wake>,
    /// Set once SIGTERM arrived: a stop taken by an inner wait (download
    /// retry, pre-commit retry) must still end the daemon.
    pub stopping: Cell<bool>,
}

impl<B: BootControl, S: ServerApi, R: Reboot> Daemon<'_, B, S, R> {
    fn save(&self, record: &StateRecord) -> Result<(), Failure> {
        otalite_host::state::save(&self.device.paths.data_dir, record).map_err(Failure::error)
    }

    /// Sleeps until `deadline` or a signal; `Some(wake)` when woken.
    /// A stop is remembered: every later call answers `Some(Wake::Stop)`
    /// at once, and the main loop ends at its next turn.
    fn sleep_until(&self, deadline: Instant) -> Option<Wake> {
        if self.stopping.get() {
            return Some(Wake::Stop);
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.wake.recv_timeout(timeout) {
            Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => {
                // (Disconnected: no signal source any more; only a stop
                // makes sense.)
                self.stopping.set(true);
                Some(Wake::Stop)
            }
            Ok(wake) => Some(wake),
            Err(RecvTimeoutError::Timeout) => None,
        }
    }

    /// Runs until SIGTERM. Returns the exit code.
    pub fn run(&mut self) -> Result<i32, Failure> {
        let (mut record, _) = self.device.load_record()?;
        self.recover(&mut record)?;
        let device_type = self.device.device_type()?;
        let mut authorized = false;
        let mut next_inventory = Instant::now();
        let mut next_update = Instant::now();
        loop {
            if self.stopping.get() {
                // The record says where to go on at the next start.
                return Ok(0);
            }
            if let UpdateStep::Reporting(report) = record.step.clone() {
                if self.deliver_report(&mut record, report)? {
                    return Ok(0);
                }
                // The reference sends inventory right after a deployment.
                next_inventory = Instant::now();
                continue;
            }
            let deadline = next_inventory.min(next_update);
            match self.sleep_until(deadline) {
                Some(Wake::Stop) => return Ok(0),
                Some(Wake::CheckUpdate) => next_update = Instant::now(),
                Some(Wake::SendInventory) => next_inventory = Instant::now(),
                None => {}
            }
            let now = Instant::now();
            if now < next_inventory && now < next_update {
                continue;
            }
            if !authorized {
                match self.server.authenticate() {
                    Ok(()) => authorized = true,
                    Err(error) => {
                        log::warn!(
                            "authentication failed: {error}; retrying in {:?}",
                            self.timing.retry_poll
                        );
                        let retry = Instant::now() + self.timing.retry_poll;
                        next_inventory = next_inventory.max(retry);
                        next_update = next_update.max(retry);
                        continue;
                    }
                }
            }
            if Instant::now() >= next_inventory {
                match self
                    .server
                    .send_inventory(&record.installed.artifact_name, &device_type)
                {
                    Ok(()) => next_inventory = Instant::now() + self.timing.inventory_poll,
                    Err(error) => {
                        log::warn!("sending the inventory failed: {error}");
                        authorized &= !matches!(error, ApiError::Unauthorized);
                        next_inventory = Instant::now() + self.timing.retry_poll;
                    }
                }
            }
            if Instant::now() >= next_update {
                next_update = Instant::now() + self.timing.update_poll;
                match self.server.check_update(&record.installed, &device_type) {
                    Ok(None) => log::debug!("no update available"),
                    Ok(Some(deployment)) => {
                        if self.deploy(&mut record, &deployment)? {
                            return Ok(0);
                        }
                    }
                    Err(error) => {
                        log::warn!("update check failed: {error}");
                        authorized &= !matches!(error, ApiError::Unauthorized);
                    }
                }
            }
        }
    }

    /// Applies the core's recovery decision after a restart.
    fn recover(&mut self, record: &mut StateRecord) -> Result<(), Failure> {
        let boot = self.device.boot_state()?;
        let id = match &record.step {
            UpdateStep::Downloading(d) => Some(d.deployment_id.clone()),
            UpdateStep::Installed(p)
            | UpdateStep::Rebooting(p)
            | UpdateStep::Committing(p)
            | UpdateStep::RollingBack(p) => p.deployment_id.clone(),
            _ => None,
        };
        if !matches!(record.step, UpdateStep::Idle | UpdateStep::Reporting(_)) {
            // Every start inside a deployment counts as a state write.
            record.store_count = record.store_count.saturating_add(1);
            self.save(record)?;
            if record.store_count > otalite::agent::MAX_STATE_WRITES {
                log::error!(
                    "loop breaker: {} state writes without finishing the deployment; failing it",
                    record.store_count
                );
                if let UpdateStep::Installed(p)
                | UpdateStep::Rebooting(p)
                | UpdateStep::Committing(p)
                | UpdateStep::RollingBack(p) = record.step.clone()
                {
                    self.roll_back(record, &p)?;
                }
                return self.finish(record, id, false);
            }
        }
        match recover(&record.step, &boot) {
            Recovery::Nothing | Recovery::Report => Ok(()),
            Recovery::ReportFailure => {
                log::warn!(
                    "the deployment was interrupted ({:?}); reporting failure",
                    step_name(&record.step)
                );
                self.finish(record, id, false)
            }
            Recovery::RollBack(pending) => {
                log::warn!("the deployment was interrupted before its reboot; rolling back");
                self.roll_back(record, &pending)?;
                self.finish(record, id, false)
            }
            Recovery::Commit(pending) => self.commit(record, &pending),
        }
    }

    /// Moves to `Reporting` (or straight to idle without a deployment id).
    fn finish(
        &mut self,
        record: &mut StateRecord,
        id: Option<DeploymentId>,
        success: bool,
    ) -> Result<(), Failure> {
        let step = match id {
            Some(deployment_id) => UpdateStep::Reporting(FinalReport {
                deployment_id,
                success,
                attempts: 0,
            }),
            None => UpdateStep::Idle,
        };
        record.mark(step);
        self.save(record)
    }

    fn roll_back(
        &mut self,
        record: &mut StateRecord,
        pending: &PendingUpdate,
    ) -> Result<(), Failure> {
        let scripts = self.device.scripts_runner();
        scripts.run_ignoring_errors(Group::ArtifactRollback, Action::Enter);
        record.mark(UpdateStep::RollingBack(pending.clone()));
        self.save(record)?;
        crate::standalone::crashpoint("daemon-rollback-after-save");
        let boot = self.device.boot_state()?;
        if boot.upgrade_available || boot.boot_part != Some(pending.previous_part) {
            self.device
                .boot
                .roll_back(pending.previous_part)
                .map_err(|e| Failure::error(format!("rollback failed: {e}")))?;
        }
        crate::standalone::crashpoint("daemon-rollback-after-env");
        scripts.run_ignoring_errors(Group::ArtifactRollback, Action::Leave);
        scripts.run_ignoring_errors(Group::ArtifactFailure, Action::Enter);
        scripts.run_ignoring_errors(Group::ArtifactFailure, Action::Leave);
        Ok(())
    }

    /// Rolls back while running the (uncommitted) trial slot: points the
    /// env back, persists the `failure` report, and reboots into the old
    /// slot (the reference's rollback-reboot); the report goes out after the
    /// reboot, from the old system, so it does not wait for a server the
    /// new system could not reach.
    fn roll_back_and_reboot(
        &mut self,
        record: &mut StateRecord,
        pending: &PendingUpdate,
    ) -> Result<(), Failure> {
        self.roll_back(record, pending)?;
        self.finish(record, pending.deployment_id.clone(), false)?;
        let scripts = self.device.scripts_runner();
        scripts.run_ignoring_errors(Group::ArtifactRollbackReboot, Action::Enter);
        log::info!("rebooting back into partition {}", pending.previous_part);
        match self.reboot.reboot() {
            Ok(()) => {
                // Like the planned reboot: wait to be stopped by it.
                if let Some(Wake::Stop) = self.sleep_until(Instant::now() + self.timing.reboot_wait)
                {
                    return Ok(());
                }
                log::error!(
                    "the rollback reboot did not happen within {:?}",
                    self.timing.reboot_wait
                );
            }
            Err(error) => log::error!("cannot reboot after the rollback: {error}"),
        }
        Ok(())
    }

    /// After the reboot into the trial slot: prove the new system can reach
    /// the server, then commit.
    fn commit(&mut self, record: &mut StateRecord, pending: &PendingUpdate) -> Result<(), Failure> {
        let id = pending.deployment_id.clone();
        let scripts = self.device.scripts_runner();
        // Verify the slot that booted (as the 4.x rootfs-image module does):
        // when the mounted root proves the old slot runs, the trial failed.
        if let Ok(layout) = self.device.layout() {
            let boot = self.device.boot_state()?;
            if let Ok(active) = layout.detect(boot.boot_part) {
                if active.evidence == otalite_host::slot::Evidence::RootDevice
                    && active.active_part != pending.trial_part
                {
                    log::error!(
                        "booted partition {} instead of the new partition {}; rolling back",
                        active.active_part,
                        pending.trial_part
                    );
                    self.roll_back(record, pending)?;
                    return self.finish(record, id, false);
                }
            }
        }
        scripts.run_ignoring_errors(Group::ArtifactReboot, Action::Leave);
        // The reference re-authenticates and reports `installing` before it
        // commits: a new system that cannot reach the server rolls back.
        let attempts = self.timing.report_attempts();
        crate::standalone::crashpoint("daemon-commit-before-confirm");
        let mut reached = false;
        for attempt in 0..attempts {
            let outcome = self.server.authenticate().and_then(|()| match &id {
                Some(id) => self.server.report(id, DeploymentStatus::Installing, None),
                None => Ok(()),
            });
            match outcome {
                Ok(()) => {
                    reached = true;
                    break;
                }
                Err(ApiError::Aborted) => break,
                Err(error) => {
                    log::warn!(
                        "the new system cannot reach the server yet ({error}); attempt {}",
                        attempt + 1
                    );
                    if attempt + 1 < attempts {
                        if let Some(Wake::Stop) =
                            self.sleep_until(Instant::now() + self.timing.retry_poll)
                        {
                            return Ok(());
                        }
                    }
                }
            }
        }
        if !reached {
            log::error!(
                "the new system could not confirm the deployment with the server; rolling back"
            );
            return self.roll_back_and_reboot(record, pending);
        }
        if let Err(error) = scripts.run(Group::ArtifactCommit, Action::Enter) {
            log::error!("{error}; rolling back");
            scripts.run_ignoring_errors(Group::ArtifactCommit, Action::Error);
            return self.roll_back_and_reboot(record, pending);
        }
        record.mark(UpdateStep::Committing(pending.clone()));
        self.save(record)?;
        crate::standalone::crashpoint("daemon-commit-after-save-committing");
        let boot = self.device.boot_state()?;
        if boot.upgrade_available {
            self.device
                .boot
                .commit()
                .map_err(|e| Failure::error(format!("commit failed: {e}")))?;
        }
        crate::standalone::crashpoint("daemon-commit-after-env-commit");
        record.installed = pending.provides.clone();
        log::info!("committed {}", pending.provides.artifact_name);
        self.finish(record, id, true)?;
        if let Err(error) = scripts.run(Group::ArtifactCommit, Action::Leave) {
            log::error!("{error} (after the commit)");
        }
        Ok(())
    }

    /// Delivers the final report with retries; `Ok(true)` to stop the daemon.
    fn deliver_report(
        &mut self,
        record: &mut StateRecord,
        mut report: FinalReport,
    ) -> Result<bool, Failure> {
        let status = if report.success {
            DeploymentStatus::Success
        } else {
            DeploymentStatus::Failure
        };
        let limit = self.timing.report_attempts();
        loop {
            crate::standalone::crashpoint("daemon-report-before-send");
            let sent = self
                .server
                .authenticate()
                .and_then(|()| self.server.report(&report.deployment_id, status, None));
            match sent {
                Ok(()) | Err(ApiError::Aborted) => {
                    if !report.success {
                        let lines =
                            std::fs::read_to_string(log_path(self.device)).unwrap_or_default();
                        let lines: Vec<String> = lines.lines().map(str::to_string).collect();
                        if !lines.is_empty() {
                            if let Err(error) =
                                self.server.upload_log(&report.deployment_id, &lines)
                            {
                                log::warn!("uploading the deployment log failed: {error}");
                            }
                        }
                    }
                    log::info!(
                        "reported {} for deployment {}",
                        status.as_str(),
                        report.deployment_id
                    );
                    break;
                }
                Err(error) => {
                    report.attempts += 1;
                    log::warn!(
                        "reporting {} failed ({error}), attempt {} of {limit}",
                        status.as_str(),
                        report.attempts
                    );
                    if report.attempts >= limit {
                        log::error!("giving up reporting deployment {}", report.deployment_id);
                        break;
                    }
                    record.step = UpdateStep::Reporting(report.clone());
                    self.save(record)?;
                    if let Some(Wake::Stop) =
                        self.sleep_until(Instant::now() + self.timing.retry_poll)
                    {
                        return Ok(true);
                    }
                }
            }
        }
        crate::standalone::crashpoint("daemon-report-after-send");
        let _ = std::fs::remove_file(log_path(self.device));
        record.mark(UpdateStep::Idle);
        self.save(record)?;
        Ok(false)
    }

    /// Runs one deployment up to the reboot; `Ok(true)` to stop the daemon.
    fn deploy(
        &mut self,
        record: &mut StateRecord,
        deployment: &Deployment,
    ) -> Result<bool, Failure> {
        log::info!(
            "deployment {}: artifact {}",
            deployment.id,
            deployment.artifact_name
        );
        let id = id_of(&deployment.id);
        let _ = std::fs::remove_file(log_path(self.device));
        deployment_log(
            self.device,
            &format!(
                "deployment {} of {} started",
                deployment.id, deployment.artifact_name
            ),
        );
        record.mark(UpdateStep::Downloading(Downloading {
            deployment_id: id.clone(),
            artifact_name: otalite::device::Provides::named(&deployment.artifact_name)
                .artifact_name,
        }));
        self.save(record)?;
        crate::standalone::crashpoint("daemon-after-save-downloading");
        let fail =
            |daemon: &mut Self, record: &mut StateRecord, why: String| -> Result<bool, Failure> {
                log::error!("deployment {} failed: {why}", deployment.id);
                deployment_log(daemon.device, &why);
                daemon.finish(record, Some(id.clone()), false)?;
                Ok(false)
            };
        if let Err(error) = self
            .server
            .report(&deployment.id, DeploymentStatus::Downloading, None)
        {
            if matches!(error, ApiError::Aborted) {
                return fail(self, record, error.to_string());
            }
            log::warn!("status report failed: {error}");
        }
        let prepared = match self.device.prepare() {
            Ok(prepared) => prepared,
            Err(failure) => return fail(self, record, failure.message),
        };
        if !deployment.device_types.contains(&prepared.device_type) {
            return fail(
                self,
                record,
                format!(
                    "the deployment is not for device type {}",
                    prepared.device_type
                ),
            );
        }
        let scripts = self.device.scripts_runner();
        if let Err(error) = scripts.run(Group::Download, Action::Enter) {
            scripts.run_ignoring_errors(Group::Download, Action::Error);
            return fail(self, record, error.to_string());
        }
        let mut source = match self.open_download(&deployment.uri) {
            Ok(inner) => Stoppable {
                inner,
                wake: &self.wake,
                stopping: &self.stopping,
            },
            Err(why) => {
                scripts.run_ignoring_errors(Group::Download, Action::Error);
                return fail(self, record, why);
            }
        };
        let installed = record.installed.clone();
        crate::standalone::crashpoint("daemon-before-stream");
        let streamed = match self.device.stream(&prepared, &installed, &mut source) {
            Ok(streamed) => streamed,
            Err(failure) => {
                scripts.run_ignoring_errors(Group::Download, Action::Error);
                return fail(self, record, failure.message);
            }
        };
        crate::standalone::crashpoint("daemon-after-stream");
        if streamed.header.artifact_name.as_str() != deployment.artifact_name {
            return fail(
                self,
                record,
                format!(
                    "the artifact is named {}, the server announced {}",
                    streamed.header.artifact_name, deployment.artifact_name
                ),
            );
        }
        if let Err(error) = scripts.run(Group::Download, Action::Leave) {
            scripts.run_ignoring_errors(Group::Download, Action::Error);
            return fail(self, record, error.to_string());
        }
        if let Err(ApiError::Aborted) =
            self.server
                .report(&deployment.id, DeploymentStatus::Downloading, None)
        {
            return fail(self, record, ApiError::Aborted.to_string());
        }
        let pending = PendingUpdate {
            provides: installed.after_commit(&streamed.header),
            trial_part: prepared.active.inactive_part,
            previous_part: prepared.active.active_part,
            deployment_id: Some(id.clone()),
        };
        if let Err(error) = scripts.run(Group::ArtifactInstall, Action::Enter) {
            scripts.run_ignoring_errors(Group::ArtifactInstall, Action::Error);
            scripts.run_ignoring_errors(Group::ArtifactFailure, Action::Enter);
            scripts.run_ignoring_errors(Group::ArtifactFailure, Action::Leave);
            return fail(self, record, error.to_string());
        }
        if let Err(ApiError::Aborted) =
            self.server
                .report(&deployment.id, DeploymentStatus::Installing, None)
        {
            return fail(self, record, ApiError::Aborted.to_string());
        }
        if stop_requested(&self.wake, &self.stopping) {
            scripts.run_ignoring_errors(Group::ArtifactInstall, Action::Error);
            scripts.run_ignoring_errors(Group::ArtifactFailure, Action::Enter);
            scripts.run_ignoring_errors(Group::ArtifactFailure, Action::Leave);
            return fail(
                self,
                record,
                "stopped by a signal before the install".into(),
            );
        }
        crate::standalone::crashpoint("daemon-before-save-installed");
        record.mark(UpdateStep::Installed(pending.clone()));
        self.save(record)?;
        crate::standalone::crashpoint("daemon-before-set-trial");
        if let Err(error) = self.device.boot.set_trial(pending.trial_part) {
            return fail(
                self,
                record,
                format!("cannot switch the bootloader: {error}"),
            );
        }
        crate::standalone::crashpoint("daemon-after-set-trial");
        if let Err(error) = scripts.run(Group::ArtifactInstall, Action::Leave) {
            scripts.run_ignoring_errors(Group::ArtifactInstall, Action::Error);
            self.roll_back(record, &pending)?;
            return fail(self, record, error.to_string());
        }
        record.mark(UpdateStep::Rebooting(pending.clone()));
        self.save(record)?;
        crate::standalone::crashpoint("daemon-after-save-rebooting");
        if let Err(ApiError::Aborted) =
            self.server
                .report(&deployment.id, DeploymentStatus::Rebooting, None)
        {
            self.roll_back(record, &pending)?;
            return fail(self, record, ApiError::Aborted.to_string());
        }
        if let Err(error) = scripts.run(Group::ArtifactReboot, Action::Enter) {
            scripts.run_ignoring_errors(Group::ArtifactReboot, Action::Error);
            self.roll_back(record, &pending)?;
            return fail(self, record, error.to_string());
        }
        crate::standalone::crashpoint("daemon-before-reboot");
        log::info!("rebooting into partition {}", pending.trial_part);
        if let Err(error) = self.reboot.reboot() {
            self.roll_back(record, &pending)?;
            return fail(self, record, format!("cannot reboot: {error}"));
        }
        // Like the reference: wait to be stopped by the reboot.
        if let Some(Wake::Stop) = self.sleep_until(Instant::now() + self.timing.reboot_wait) {
            return Ok(true);
        }
        log::error!(
            "the reboot did not happen within {:?}",
            self.timing.reboot_wait
        );
        self.roll_back(record, &pending)?;
        fail(self, record, "the reboot did not happen".into())
    }

    /// Opens the download, retrying the first request with the reference's
    /// backoff (capped at the update poll interval).
    fn open_download(&mut self, uri: &str) -> Result<Box<dyn std::io::Read>, String> {
        let unit = self.timing.backoff_unit.as_millis() as u64;
        let cap = self.timing.update_poll.as_millis() as u64;
        let limit = self.device.config.retry_poll_count.unwrap_or(0);
        let mut tried = 0;
        loop {
            match self.server.download(uri) {
                Ok(source) => return Ok(source),
                Err(error) => {
                    let Some(wait) = backoff(tried, unit.max(1), cap.max(1), limit) else {
                        return Err(format!("the download failed: {error}"));
                    };
                    log::warn!("the download failed ({error}); retrying in {wait} ms");
                    if let Some(Wake::Stop) =
                        self.sleep_until(Instant::now() + Duration::from_millis(wait))
                    {
                        return Err("stopped".into());
                    }
                    tried += 1;
                }
            }
        }
    }
}

fn step_name(step: &UpdateStep) -> &'static str {
    match step {
        UpdateStep::Idle => "idle",
        UpdateStep::Installed(_) => "installed",
        UpdateStep::Committing(_) => "committing",
        UpdateStep::RollingBack(_) => "rolling back",
        UpdateStep::Downloading(_) => "downloading",
        UpdateStep::Rebooting(_) => "rebooting",
        UpdateStep::Reporting(_) => "reporting",
    }
}

/// Test knob: `OTALITE_TEST_BACKOFF_MS` replaces the one-minute backoff
/// unit (download retries and resumes), so fault tests finish in seconds.
pub fn backoff_unit() -> Duration {
    std::env::var("OTALITE_TEST_BACKOFF_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_secs(60), Duration::from_millis)
}

/// `otalite daemon`: sets everything up and runs until SIGTERM.
pub fn run_daemon<B: BootControl>(device: &mut Device<B>) -> Result<i32, Failure> {
    use otalite_host::keys::{KeySource, KeyType};
    let wake = crate::signals::wake_channel()
        .map_err(|e| Failure::error(format!("cannot set up signals: {e}")))?;
    std::fs::create_dir_all(&device.paths.data_dir).map_err(|e| {
        Failure::error(format!(
            "cannot create {}: {e}",
            device.paths.data_dir.display()
        ))
    })?;
    let config = &device.config;
    let static_key = config
        .security
        .as_ref()
        .and_then(|s| s.auth_private_key.as_deref())
        .or(config.https_client.as_ref().and_then(|h| h.key.as_deref()));
    let source = match static_key {
        Some(path) => KeySource::Static(path.into()),
        None => {
            let key_type = match config
                .device_key_type
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("ed25519") => KeyType::Ed25519,
                Some("ecdsa-p256" | "ecdsa" | "p256") => KeyType::EcdsaP256,
                Some("rsa3072" | "rsa") => KeyType::Rsa3072,
                Some(other) => {
                    return Err(Failure::error(format!(
                        "DeviceKeyType {other:?} is not one of ed25519, ecdsa-p256, rsa3072"
                    )))
                }
            };
            KeySource::generated_in(&device.paths.data_dir, key_type)
        }
    };
    let key = source
        .load_or_generate()
        .map_err(|e| Failure::error(format!("device key: {e}")))?;
    let mut timing = Timing::from_config(&device.config);
    timing.backoff_unit = backoff_unit();
    let download_backoff = otalite_host::http::Backoff {
        initial: timing.backoff_unit,
        cap: timing.retry_poll.max(timing.backoff_unit),
        tries_per_step: 3,
        max_attempts: 0,
    };
    let server = crate::mender::MenderServer::new(
        &device.config,
        key,
        device.paths.share_dir.clone(),
        download_backoff,
    )
    .map_err(Failure::error)?;
    let pid_file = crate::signals::pid_file(&device.paths.data_dir);
    otalite_host::fs::atomic_write(&pid_file, format!("{}\n", std::process::id()).as_bytes())
        .map_err(|e| Failure::error(format!("cannot write {}: {e}", pid_file.display())))?;
    log::info!("otalite {} daemon started", env!("CARGO_PKG_VERSION"));
    let mut daemon = Daemon {
        device,
        server,
        reboot: crate::board::CommandReboot,
        timing,
        wake,
        stopping: Cell::new(false),
    };
    let result = daemon.run();
    let _ = std::fs::remove_file(&pid_file);
    log::info!("otalite daemon stopped");
    result
}
