//! The managed mode's decisions, as pure functions the host loop calls:
//! retry and backoff schedules, the deployment status vocabulary, and what
//! to do after a restart in each persisted step (the reference's recovery
//! table, `mender-protocol.md` 8.4, with the differences noted).
//!
//! | persisted step at start | boot env says | next |
//! |---|---|---|
//! | `Downloading` | - | report `failure` (a download is never resumed across restarts) |
//! | `Installed` (env switched, not yet rebooting) | anything | roll back, report `failure` |
//! | `Rebooting` | trial slot booted, `upgrade_available=1` | verify, then commit and report `success` |
//! | `Rebooting` | the bootloader fell back | report `failure` (nothing to undo) |
//! | `Committing` | trial slot | finish the commit, report `success` |
//! | `Committing` | fell back | report `failure` |
//! | `RollingBack` | - | finish the rollback, report `failure` |
//! | `RollbackRebooting` | the failed trial still runs (no reboot happened) | reboot again (`ArtifactRollbackReboot_Enter` first) |
//! | `RollbackRebooting` | anything else | `ArtifactRollbackReboot_Leave`, `ArtifactFailure_Enter`/`_Leave`, report `failure` |
//! | `Reporting` | - | send the stored final status again (the reference always sends `failure` here; otalite sends what was decided) |

use crate::board::BootState;
use crate::store::{PendingUpdate, UpdateStep};

/// The `status` values of the deployments API (defined with the wire
/// messages).
pub use crate::protocol::deployments::DeploymentStatus;

/// The reference's `GetExponentialBackoffTime`: the wait before retry
/// number `tried` (0-based), in units of `base` (one minute in production).
/// The interval starts at one `base` and doubles every 3 tries; once it
/// reaches `cap` it stays there (never below one `base`). With
/// `max_attempts > 0` the tries are limited to it; with 0 the schedule gives
/// up after 3 tries at the cap. `None` means: give up.
pub fn backoff(tried: u32, base: u64, cap: u64, max_attempts: u32) -> Option<u64> {
    const PER_INTERVAL: u32 = 3;
    if max_attempts > 0 && tried >= max_attempts {
        return None;
    }
    let mut interval = base;
    let mut next = base;
    let mut counted = 0u32;
    while counted <= tried {
        interval = next;
        next = next.saturating_mul(2);
        if interval >= cap {
            if max_attempts == 0 && tried - counted >= PER_INTERVAL {
                return None;
            }
            return Some(cap.max(base));
        }
        counted = counted.saturating_add(PER_INTERVAL);
    }
    Some(interval)
}

/// How many times the final status report is tried: `1 + N`, with N = 3
/// when `update_poll / retry_poll <= 3`, else `min(2 * update_poll / retry_poll, 10)`.
pub fn report_attempts(update_poll_seconds: u32, retry_poll_seconds: u32) -> u32 {
    let ratio = update_poll_seconds
        .checked_div(retry_poll_seconds)
        .unwrap_or(0);
    let extra = if ratio <= 3 {
        3
    } else {
        ratio.saturating_mul(2).min(10)
    };
    extra + 1
}

/// The loop breaker: a deployment whose state was written (or loaded at a
/// start) more often than this fails, so a device that keeps crashing or
/// rebooting in the middle of an update stops trying (the reference allows
/// 28 writes).
pub const MAX_STATE_WRITES: u32 = 28;

/// What a restarted daemon must do first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing was in progress.
    Nothing,
    /// Report `failure` for the deployment; nothing to undo on the device.
    ReportFailure,
    /// Roll the boot env back to `previous_part`, then report `failure`.
    RollBack(PendingUpdate),
    /// The trial slot booted: verify, commit, report `success`.
    Commit(PendingUpdate),
    /// Send the stored final report.
    Report,
    /// The rollback reboot was requested: run the scripts that follow it
    /// (`ArtifactRollbackReboot_Leave`, `ArtifactFailure_*`), then report.
    AfterRollbackReboot,
    /// A hand-off is under way: the update lock decides
    /// ([`crate::agent::handoff`]).
    HandOff,
}

/// Decides the first action after a restart from the persisted step and the
/// boot environment (see the module table).
pub fn recover(step: &UpdateStep, boot: &BootState) -> Recovery {
    let on_trial = |pending: &PendingUpdate| boot.boot_part == Some(pending.trial_part);
    match step {
        UpdateStep::Idle => Recovery::Nothing,
        UpdateStep::Downloading(_) => Recovery::ReportFailure,
        UpdateStep::Installed(pending) => Recovery::RollBack(pending.clone()),
        UpdateStep::Rebooting(pending) => {
            if boot.upgrade_available && on_trial(pending) {
                Recovery::Commit(pending.clone())
            } else {
                Recovery::ReportFailure
            }
        }
        UpdateStep::Committing(pending) => {
            if on_trial(pending) {
                Recovery::Commit(pending.clone())
            } else {
                Recovery::ReportFailure
            }
        }
        UpdateStep::RollingBack(pending) => Recovery::RollBack(pending.clone()),
        UpdateStep::Reporting(_) => Recovery::Report,
        UpdateStep::RollbackRebooting(_) => Recovery::AfterRollbackReboot,
        UpdateStep::HandingOff(_) | UpdateStep::HandedOff(_) => Recovery::HandOff,
        // Not a Mender deployment: the jobs flow reads it itself.
        UpdateStep::Job(_) => Recovery::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_matches_the_reference_schedule() {
        // RetryPollIntervalSeconds = 300, minutes as the unit: 1,1,1,2,2,2,4,4,4,5,5,5 then stop.
        let schedule: std::vec::Vec<_> = (0..13).map(|tried| backoff(tried, 60, 300, 0)).collect();
        let minutes: std::vec::Vec<_> = schedule.iter().map(|s| s.map(|s| s / 60)).collect();
        assert_eq!(
            minutes,
            [1, 1, 1, 2, 2, 2, 4, 4, 4, 5, 5, 5]
                .iter()
                .map(|m| Some(*m))
                .chain([None])
                .collect::<std::vec::Vec<_>>()
        );
        // A cap below the base still waits one base unit.
        assert_eq!(backoff(0, 60, 30, 0), Some(60));
        // An explicit attempt limit.
        assert_eq!(backoff(4, 60, 300, 5), Some(120));
        assert_eq!(backoff(5, 60, 300, 5), None);
    }

    #[test]
    fn report_attempts_formula() {
        assert_eq!(report_attempts(1800, 300), 11);
        assert_eq!(report_attempts(5, 30), 4);
        assert_eq!(report_attempts(900, 300), 4);
        assert_eq!(report_attempts(1800, 0), 4);
    }
}
