//! The managed mode under network faults: the real `otalite daemon` against
//! the project's Mender test server with errors, expired tokens, stalled and
//! trickled bodies, requests never answered, HTTPS trust settings and the
//! `check-update` / `send-inventory` signals.
//!
//! Every scenario must end in bounded time (the 60 s [`WAIT`]), with exactly
//! one final `success`/`failure` per deployment, the active slot intact when
//! the deployment fails, and every request conformant to the specs. Each
//! test prints `TIMING <name>: <seconds>` (run with `--nocapture`).

#![allow(clippy::std_instead_of_core)]

mod common;

use common::managed::*;
use otalite_testserver::{DeploymentState, Endpoint, Fault, ServerConfig, TestServer};
use std::path::Path;
use std::time::{Duration, Instant};

/// 1. 500, 502, 503 on `next`: the daemon keeps polling, then deploys.
#[test]
fn s01_next_5xx_keeps_polling_then_deploys() {
    let managed = Managed::new(ServerConfig::default());
    let (id, image) = managed.deployment(512 << 10);
    for code in [500, 502, 503] {
        managed
            .server
            .inject(Fault::status(Endpoint::NextV1, code).times(2));
    }
    managed.deploy_to_success(&id, &image);
    let next = managed.requests_to("/deployments/next");
    for code in [500, 502, 503] {
        assert_eq!(
            next.iter().filter(|(_, s)| *s == code).count(),
            2,
            "{next:?}"
        );
    }
    assert_eq!(managed.server.pending_faults(), 0);
    managed.done("s01_next_5xx");
}

/// 2. 503 on status reports: intermediate ones are logged and skipped, the
///    final one is retried until it gets through.
#[test]
fn s02_status_503_final_report_retried() {
    let managed = Managed::new(ServerConfig::default());
    let (id, image) = managed.deployment(512 << 10);
    managed
        .server
        .inject(Fault::status(Endpoint::Status(None), 503).times(2));
    managed
        .server
        .inject(Fault::status(Endpoint::Status(Some("success".into())), 503).times(3));
    managed.deploy_to_success(&id, &image);
    let reports = managed.requests_to("/status");
    assert_eq!(
        reports.iter().filter(|(_, s)| *s == 503).count(),
        5,
        "{reports:?}"
    );
    assert_eq!(managed.server.pending_faults(), 0);
    managed.done("s02_status_503");
}

/// 3. Tokens expired mid-deployment: 401, re-authentication, the request
///    is repeated, the deployment succeeds.
#[test]
fn s03_token_expiry_reauthenticates() {
    let managed = Managed::new(ServerConfig::default());
    let (id, image) = managed.deployment(1 << 20);
    managed.server.inject(Fault::trickle_download(2 << 20));
    managed
        .server
        .inject(Fault::expire_token(Endpoint::Status(Some(
            "installing".into(),
        ))));
    let mut daemon = managed.start();
    managed.wait("the download", |m| !m.requests_to("/download/").is_empty());
    // Every token dies while the artifact streams.
    managed.server.expire_tokens();
    let auths_before = managed.server.auth_requests().len();
    managed.wait("the reboot", |m| m.reboots() > 0);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(managed.server.auth_requests().len() > auths_before);
    let unauthorized = managed
        .requests_to("/status")
        .iter()
        .filter(|(_, s)| *s == 401)
        .count();
    assert!(unauthorized >= 1, "{:?}", managed.requests_to("/status"));
    managed.trial_boot();
    let daemon = managed.start();
    managed.wait("success", |m| m.finished(&id, "success"));
    assert_eq!(stop(daemon), Some(0));
    assert_eq!(&managed.device.slot(3)[..image.len()], &image[..]);
    managed.assert_one_final(&id, "success");
    let statuses = managed.statuses(&id);
    for expected in ["downloading", "installing", "rebooting"] {
        assert!(statuses.iter().any(|s| s == expected), "{statuses:?}");
    }
    managed.done("s03_token_expiry");
}

fn download_status_fails(code: u16, name: &str) {
    let managed = Managed::new(ServerConfig::default());
    let (id, _) = managed.deployment(256 << 10);
    managed
        .server
        .inject(Fault::status(Endpoint::Download, code).always());
    managed.deploy_to_failure(&id);
    let downloads = managed.requests_to("/download/");
    assert!(
        downloads.len() >= 2 && downloads.iter().all(|(_, s)| *s == code),
        "{downloads:?}"
    );
    // Bounded: the reference's fetch-install-retry-wait schedule.
    assert!(downloads.len() <= 20, "{downloads:?}");
    assert!(managed.log().contains(&code.to_string()));
    managed.done(name);
}

/// 4. 403 on the artifact link (expired presigned URL): bounded retries,
///    then `failure`, nothing touched.
#[test]
fn s04_download_403_fails_after_bounded_retries() {
    download_status_fails(403, "s04_download_403");
}

/// 5. 404 on the artifact link: `failure`.
#[test]
fn s05_download_404_fails() {
    download_status_fails(404, "s05_download_404");
}

/// 6a. A 416 answer to a resume is one more failed resume attempt (the
///     reference's resumer retries any non-206): when it passes, the
///     download completes.
#[test]
fn s06a_416_on_resume_is_retried() {
    let managed = Managed::new(ServerConfig::default());
    let (id, image) = managed.deployment(1 << 20);
    managed.server.inject(Fault::drop_download_after(100_000));
    managed
        .server
        .inject(Fault::status(Endpoint::Download, 416).times(2));
    managed.deploy_to_success(&id, &image);
    let downloads = managed.requests_to("/download/");
    assert_eq!(
        downloads.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        [200, 416, 416, 206],
        "{downloads:?}"
    );
    managed.done("s06a_416_retried");
}

/// 6b. A 416 that never goes away: the resume schedule gives up, the
///     deployment fails, nothing touched.
#[test]
fn s06b_416_forever_fails_bounded() {
    let managed = Managed::new(ServerConfig::default());
    let (id, _) = managed.deployment(1 << 20);
    managed.server.inject(Fault::drop_download_after(100_000));
    managed
        .server
        .inject(Fault::status(Endpoint::Download, 416).always());
    managed.deploy_to_failure(&id);
    let downloads = managed.requests_to("/download/");
    assert!(
        downloads.len() > 3 && downloads.len() <= 30,
        "{downloads:?}"
    );
    managed.done("s06b_416_forever");
}

/// 7. A half-open socket mid-download: the read times out, the download
///    resumes with `Range`, success.
#[test]
fn s07_stalled_body_times_out_and_resumes() {
    let managed = Managed::new(ServerConfig::default()).io_timeout_ms(1500);
    let (id, image) = managed.deployment(1 << 20);
    managed.server.inject(Fault::stall_download_after(300_000));
    managed.deploy_to_success(&id, &image);
    let downloads: Vec<_> = managed
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/download/"))
        .collect();
    assert_eq!(
        downloads.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 206]
    );
    assert!(downloads[1]
        .header_names
        .iter()
        .any(|h| h.eq_ignore_ascii_case("range")));
    assert!(managed.log().contains("broken at"), "{}", managed.log());
    managed.done("s07_stalled_body");
}

/// 8. A slow link (200 KiB/s for a 1 MiB artifact): success.
#[test]
fn s08_trickle_download_succeeds() {
    let managed = Managed::new(ServerConfig::default());
    let (id, image) = managed.deployment(1 << 20);
    managed.server.inject(Fault::trickle_download(200 << 10));
    let started = Instant::now();
    managed.deploy_to_success(&id, &image);
    assert!(started.elapsed() >= Duration::from_secs(4));
    assert_eq!(
        managed
            .requests_to("/download/")
            .iter()
            .map(|(_, s)| *s)
            .collect::<Vec<_>>(),
        [200]
    );
    managed.done("s08_trickle");
}

/// 9a. `next` and a status report never answered: each request times out
///     and is repeated once after re-authentication; the deployment goes on.
#[test]
fn s09a_unanswered_requests_time_out() {
    let managed = Managed::new(ServerConfig::default()).io_timeout_ms(1000);
    let (id, image) = managed.deployment(256 << 10);
    managed.server.inject(Fault::never_answer(Endpoint::NextV1));
    managed
        .server
        .inject(Fault::never_answer(Endpoint::Status(Some(
            "rebooting".into(),
        ))));
    managed
        .server
        .inject(Fault::never_answer(Endpoint::Status(Some(
            "success".into(),
        ))));
    managed.deploy_to_success(&id, &image);
    let unanswered = managed
        .server
        .requests()
        .iter()
        .filter(|r| r.status == 0)
        .count();
    assert_eq!(unanswered, 3);
    assert_eq!(managed.server.pending_faults(), 0);
    managed.done("s09a_unanswered");
}

/// 9b. Status reports never answered at all: the deployment fails (the
///     artifact link is gone), the final report is given up after the
///     reference's number of attempts, and SIGTERM during a hung request
///     still stops the daemon with exit 0.
#[test]
fn s09b_status_never_answered_sigterm_stops() {
    let managed = Managed::new(ServerConfig::default()).io_timeout_ms(1000);
    let (id, _) = managed.deployment(256 << 10);
    let active = managed.device.slot(2);
    managed
        .server
        .inject(Fault::never_answer(Endpoint::Status(None)).always());
    managed
        .server
        .inject(Fault::status(Endpoint::Download, 404).always());
    let daemon = managed.start();
    managed.wait("giving up the final report", |m| {
        m.log().contains("giving up reporting")
    });
    let hung = managed.requests_to("/status").len();
    // The daemon goes on: the next request it sends hangs again.
    managed.wait("another unanswered request", |m| {
        m.requests_to("/status").len() > hung
    });
    let stopping = Instant::now();
    assert_eq!(stop(daemon), Some(0));
    let latency = stopping.elapsed();
    eprintln!("SIGTERM during an unanswered request: stopped in {latency:?}");
    assert!(latency < Duration::from_secs(5), "{latency:?}");
    managed.assert_untouched(&active);
    assert!(managed.statuses(&id).is_empty());
    assert!(managed.requests_to("/status").iter().all(|(_, s)| *s == 0));
    managed.done("s09b_never_answered");
}

fn write_cert(server: &TestServer, root: &Path) -> String {
    let path = root.join("server.crt");
    std::fs::write(&path, server.cert_pem()).unwrap();
    path.display().to_string()
}

fn https_conf(server: &TestServer, extra: &str) -> String {
    format!(
        r#", "ServerURL": "{}", "UpdatePollIntervalSeconds": 1, "InventoryPollIntervalSeconds": 1, "RetryPollIntervalSeconds": 1{extra}"#,
        server.https_url()
    )
}

fn https_success(managed: &Managed, name: &str) {
    let (id, image) = managed.deployment(512 << 10);
    managed.deploy_to_success(&id, &image);
    let requests = managed.server.requests();
    assert!(!requests.is_empty());
    assert!(requests.iter().all(|r| r.tls), "plain HTTP was used");
    assert!(requests.iter().any(|r| r.path.starts_with("/download/")));
    managed.done(name);
}

/// 10a. HTTPS with `ServerCertificate`: a full deployment.
#[test]
fn s10a_https_with_server_certificate() {
    let managed = Managed::with_config(ServerConfig::default(), |server, root| {
        let cert = write_cert(server, root);
        https_conf(server, &format!(r#", "ServerCertificate": "{cert}""#))
    });
    https_success(&managed, "s10a_https_certificate");
}

/// 10b. HTTPS without trusting the self-signed certificate: authentication
///      fails with a certificate error, the daemon keeps retrying.
#[test]
fn s10b_https_untrusted_certificate_keeps_retrying() {
    let managed = Managed::with_config(ServerConfig::default(), |server, _| https_conf(server, ""));
    let (id, _) = managed.deployment(256 << 10);
    let active = managed.device.slot(2);
    let daemon = managed.start();
    managed.wait("three failed authentications", |m| {
        m.log().matches("authentication failed").count() >= 3
    });
    assert_eq!(stop(daemon), Some(0));
    let log = managed.log();
    let line = log
        .lines()
        .find(|l| l.contains("authentication failed"))
        .unwrap();
    assert!(line.to_lowercase().contains("certificate"), "{line}");
    assert!(managed.server.auth_requests().is_empty());
    assert!(managed.statuses(&id).is_empty());
    assert_eq!(
        managed.server.deployment_state(&id),
        Some(DeploymentState::Pending)
    );
    managed.assert_untouched(&active);
    managed.done("s10b_https_untrusted");
}

/// 10c. HTTPS with `SkipVerify`: a full deployment.
#[test]
fn s10c_https_skip_verify() {
    let managed = Managed::with_config(ServerConfig::default(), |server, _| {
        https_conf(server, r#", "SkipVerify": true"#)
    });
    https_success(&managed, "s10c_https_skip_verify");
    assert!(managed.log().to_lowercase().contains("skip"));
}

/// 11. Hour-long poll intervals: `send-inventory` and `check-update`
///     (SIGUSR2/SIGUSR1 through the pid file) are what make the daemon act.
#[test]
fn s11_signals_trigger_inventory_and_update_check() {
    let managed = Managed::with_config(ServerConfig::default(), |server, _| {
        format!(
            r#", "ServerURL": "{}", "UpdatePollIntervalSeconds": 3600, "InventoryPollIntervalSeconds": 3600, "RetryPollIntervalSeconds": 1"#,
            server.url()
        )
    });
    let mut daemon = managed.start();
    let inventory = |m: &Managed| m.requests_to("/inventory/").len();
    let next = |m: &Managed| m.requests_to("/deployments/next").len();
    managed.wait("the first inventory and update check", |m| {
        inventory(m) >= 1
            && m.requests_to("/v1/deployments/device/deployments/next")
                .iter()
                .any(|(_, s)| *s == 204)
    });
    std::thread::sleep(Duration::from_secs(2));
    let (inventories, checks) = (inventory(&managed), next(&managed));

    let (id, image) = managed.deployment(256 << 10);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(next(&managed), checks, "polled without a signal");
    assert_eq!(
        inventory(&managed),
        inventories,
        "inventory without a signal"
    );
    assert!(managed.statuses(&id).is_empty());

    let signalled = Instant::now();
    managed.device.otalite_ok(&["send-inventory"]);
    managed.wait("the inventory", |m| inventory(m) > inventories);
    let inventory_latency = signalled.elapsed();
    assert_eq!(next(&managed), checks);

    let signalled = Instant::now();
    managed.device.otalite_ok(&["check-update"]);
    managed.wait("the deployment", |m| !m.statuses(&id).is_empty());
    let update_latency = signalled.elapsed();
    eprintln!("send-inventory acted in {inventory_latency:?}, check-update in {update_latency:?}");
    assert!(inventory_latency < Duration::from_secs(5));
    assert!(update_latency < Duration::from_secs(5));

    managed.wait("the reboot", |m| m.reboots() > 0);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert_eq!(&managed.device.slot(3)[..image.len()], &image[..]);
    managed.trial_boot();
    let daemon = managed.start();
    managed.wait("success", |m| m.finished(&id, "success"));
    assert_eq!(stop(daemon), Some(0));
    managed.assert_one_final(&id, "success");
    managed.done("s11_signals");
}

/// 12. SIGTERM while the artifact streams (`systemctl stop` during a slow
///     download): the daemon stops promptly with exit 0, never switches the
///     bootloader or reboots; the next start reports `failure` once.
#[test]
fn s12_sigterm_during_download_stops_without_reboot() {
    let managed = Managed::new(ServerConfig::default());
    let (id, _) = managed.deployment(1 << 20);
    let active = managed.device.slot(2);
    managed.server.inject(Fault::trickle_download(100 << 10));
    let daemon = managed.start();
    managed.wait("the download", |m| !m.requests_to("/download/").is_empty());
    std::thread::sleep(Duration::from_secs(1));
    let stopping = Instant::now();
    assert_eq!(stop(daemon), Some(0));
    let latency = stopping.elapsed();
    eprintln!("SIGTERM during the download: stopped in {latency:?}");
    assert!(latency < Duration::from_secs(3), "{latency:?}");
    // Whatever was already on its way: give a wrongly running reboot time.
    std::thread::sleep(Duration::from_millis(500));
    managed.assert_untouched(&active);
    assert!(!managed.finished(&id, "success"));

    let daemon = managed.start();
    managed.wait("failure", |m| m.finished(&id, "failure"));
    assert_eq!(stop(daemon), Some(0));
    managed.assert_untouched(&active);
    managed.assert_one_final(&id, "failure");
    managed.done("s12_sigterm_during_download");
}

fn trickle_next(bytes_per_sec: u64) -> [Fault; 2] {
    [Endpoint::NextV1, Endpoint::NextV2].map(|endpoint| {
        Fault::new(
            endpoint,
            otalite_testserver::FaultKind::Trickle(bytes_per_sec),
        )
    })
}

/// 13. `next` trickled one byte every half second (data keeps coming, so
///     no stall timeout fires): SIGTERM still stops the daemon within 2 s.
#[test]
fn s13_trickled_next_sigterm_stops_within_2s() {
    let managed = Managed::new(ServerConfig::default());
    let (id, _) = managed.deployment(256 << 10);
    let active = managed.device.slot(2);
    for fault in trickle_next(2) {
        managed.server.inject(fault.always());
    }
    let daemon = managed.start();
    managed.wait("the trickled next", |m| {
        !m.requests_to("/deployments/next").is_empty()
    });
    std::thread::sleep(Duration::from_millis(1500));
    let stopping = Instant::now();
    assert_eq!(stop(daemon), Some(0));
    let latency = stopping.elapsed();
    eprintln!("SIGTERM during a trickled next: stopped in {latency:?}");
    assert!(latency < Duration::from_secs(2), "{latency:?}");
    managed.assert_untouched(&active);
    assert!(managed.statuses(&id).is_empty());
    managed.done("s13_trickled_next_sigterm");
}

/// 14. A trickled `next` ends at the API exchange limit (shrunk to 1.5 s
///     through the debug-build knob; 300 s in production), the daemon
///     polls again and deploys once the server behaves.
#[test]
fn s14_trickled_next_ends_at_the_exchange_limit() {
    let managed = Managed::new(ServerConfig::default());
    let (id, image) = managed.deployment(256 << 10);
    for fault in trickle_next(2) {
        managed.server.inject(fault.times(2));
    }
    let knob = [("OTALITE_TEST_EXCHANGE_TIMEOUT_MS", "1500")];
    let mut daemon = managed.start_with(&knob);
    managed.wait("the reboot", |m| m.reboots() > 0);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let log = managed.log();
    assert!(
        log.contains("longer than 1.5 s to answer"),
        "the exchange limit was not reported:\n{log}"
    );
    assert_eq!(&managed.device.slot(3)[..image.len()], &image[..]);
    managed.trial_boot();
    let daemon = managed.start_with(&knob);
    managed.wait("success", |m| m.finished(&id, "success"));
    assert_eq!(stop(daemon), Some(0));
    managed.assert_one_final(&id, "success");
    managed.done("s14_exchange_limit");
}

/// 15. A slow but steady artifact download lasting several times both the
///     stall timeout and the API exchange limit (both shrunk to 1 s) is not
///     cut: downloads only have a stall timeout, as in the reference.
#[test]
fn s15_slow_steady_download_is_not_capped() {
    let managed = Managed::new(ServerConfig::default()).io_timeout_ms(1000);
    let (id, image) = managed.deployment(1 << 20);
    managed.server.inject(Fault::trickle_download(256 << 10));
    let knob = [("OTALITE_TEST_EXCHANGE_TIMEOUT_MS", "1000")];
    let started = Instant::now();
    let mut daemon = managed.start_with(&knob);
    managed.wait("the reboot", |m| m.reboots() > 0);
    let took = started.elapsed();
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    eprintln!("slow download installed in {took:?}");
    assert!(took > Duration::from_secs(3), "{took:?}");
    assert_eq!(&managed.device.slot(3)[..image.len()], &image[..]);
    assert_eq!(managed.requests_to("/download/").len(), 1);
    managed.trial_boot();
    let daemon = managed.start_with(&knob);
    managed.wait("success", |m| m.finished(&id, "success"));
    assert_eq!(stop(daemon), Some(0));
    managed.assert_one_final(&id, "success");
    managed.done("s15_slow_download");
}

/// 16. SIGTERM while the artifact download is stalled (no byte for far
///     less than the 60 s stall timeout): the blocked read is abandoned,
///     the daemon stops within 2 s with exit 0 and never switches the
///     bootloader; the next start reports `failure` once (as in 12).
#[test]
fn s16_sigterm_during_a_stalled_download_stops_within_2s() {
    let managed = Managed::new(ServerConfig::default());
    let (id, _) = managed.deployment(1 << 20);
    let active = managed.device.slot(2);
    managed.server.inject(Fault::stall_download_after(100_000));
    let daemon = managed.start();
    managed.wait("the download", |m| !m.requests_to("/download/").is_empty());
    std::thread::sleep(Duration::from_millis(1500));
    let stopping = Instant::now();
    assert_eq!(stop(daemon), Some(0));
    let latency = stopping.elapsed();
    eprintln!("SIGTERM during a stalled download: stopped in {latency:?}");
    assert!(latency < Duration::from_secs(2), "{latency:?}");
    std::thread::sleep(Duration::from_millis(500));
    managed.assert_untouched(&active);
    assert!(!managed.finished(&id, "success"));

    let daemon = managed.start();
    managed.wait("failure", |m| m.finished(&id, "failure"));
    assert_eq!(stop(daemon), Some(0));
    managed.assert_untouched(&active);
    managed.assert_one_final(&id, "failure");
    managed.done("s16_sigterm_stalled_download");
}
