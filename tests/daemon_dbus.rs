//! The real `otalite daemon` on a private system bus (a real
//! `dbus-daemon` with the shipped policy, tests/common/bus.rs), called by
//! Debian's pydbus as add-ons written for the reference (mender-connect,
//! custom applications) call `io.mender.AuthenticationManager`:
//! `GetJwtToken` answers the token the test server issued and the server's
//! URL; `FetchJwtToken` makes the daemon authenticate again and emit
//! `JwtTokenStateChange` with the new token. `DBus.Enabled: false` keeps
//! the daemon off the bus.

#![allow(clippy::std_instead_of_core)]

mod common;

use common::bus::Bus;
use common::managed::*;
use otalite_testserver::ServerConfig;
use std::process::Output;

const PYTHON: &str = "/usr/bin/python3";

/// `GetJwtToken`, then `FetchJwtToken` with a subscription to
/// `JwtTokenStateChange`, then `GetJwtToken` again; one line each.
const SCRIPT: &str = r#"
import sys
from pydbus import SystemBus
from gi.repository import GLib

bus = SystemBus()
auth = bus.get("io.mender.AuthenticationManager", "/io/mender/AuthenticationManager")["io.mender.Authentication1"]
before = auth.GetJwtToken()
print("before", before[0], before[1])
loop = GLib.MainLoop()
def fired(sender, obj, iface, signal, params):
    print("signal", params[0], params[1])
    loop.quit()
bus.subscribe(iface="io.mender.Authentication1", signal="JwtTokenStateChange", signal_fired=fired)
print("fetch", auth.FetchJwtToken())
GLib.timeout_add_seconds(20, loop.quit)
loop.run()
after = auth.GetJwtToken()
print("after", after[0], after[1])
sys.stdout.flush()
"#;

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn field<'a>(out: &'a str, tag: &str) -> Vec<&'a str> {
    out.lines()
        .find_map(|l| {
            l.strip_prefix(tag)
                .map(|rest| rest.split_whitespace().collect())
        })
        .unwrap_or_default()
}

#[test]
fn get_and_fetch_jwt_token_through_the_daemon() {
    let bus = Bus::start();
    let managed = Managed::new(ServerConfig::default());
    let address = bus.address();
    let _daemon = managed.start_with(&[("DBUS_SYSTEM_BUS_ADDRESS", &address)]);
    managed.wait("the first authentication", |m| {
        !m.server.valid_tokens().is_empty()
    });
    // The loop publishes the token before its next request; wait for an
    // authenticated request so the D-Bus side has it.
    managed.wait("an authenticated request", |m| {
        m.server
            .requests()
            .iter()
            .any(|r| r.path.contains("/inventory/") || r.path.contains("/deployments/"))
    });
    let auths = managed.server.auth_requests().len();
    let output = bus
        .command(PYTHON)
        .args(["-c", SCRIPT])
        .output()
        .expect("run python3");
    let out = text(&output);
    assert!(
        output.status.success(),
        "pydbus failed:\n{out}\n{}",
        managed.log()
    );
    let url = managed.server.url();
    let before = field(&out, "before ");
    assert_eq!(before.len(), 2, "{out}");
    assert!(
        managed.server.valid_tokens().iter().any(|t| t == before[0]),
        "GetJwtToken answered a token the server did not issue:\n{out}"
    );
    assert_eq!(before[1], url, "{out}");
    assert_eq!(field(&out, "fetch "), ["True"], "{out}");
    assert!(
        managed.server.auth_requests().len() > auths,
        "FetchJwtToken did not authenticate again:\n{out}\n{}",
        managed.log()
    );
    let signal = field(&out, "signal ");
    assert_eq!(
        signal.len(),
        2,
        "no JwtTokenStateChange with a token:\n{out}\n{}",
        managed.log()
    );
    assert_ne!(
        signal[0], before[0],
        "the signal carries the new token:\n{out}"
    );
    assert_eq!(signal[1], url, "{out}");
    assert!(
        managed.server.valid_tokens().iter().any(|t| t == signal[0]),
        "the signalled token is not one the server issued:\n{out}"
    );
    assert_eq!(
        field(&out, "after "),
        signal,
        "GetJwtToken answers the new token:\n{out}"
    );
    managed.done("daemon dbus");
}

#[test]
fn dbus_disabled_in_the_configuration_keeps_the_daemon_off_the_bus() {
    let bus = Bus::start();
    let managed = Managed::with_config(ServerConfig::default(), |server, root| {
        format!(
            r#"{}, "DBus": {{"Enabled": false}}"#,
            fast_polling(server, root)
        )
    });
    let address = bus.address();
    let _daemon = managed.start_with(&[("DBUS_SYSTEM_BUS_ADDRESS", &address)]);
    managed.wait("the first authentication", |m| {
        !m.server.valid_tokens().is_empty()
    });
    let output = bus
        .command("dbus-send")
        .args([
            "--system",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            "string:io.mender.AuthenticationManager",
        ])
        .output()
        .expect("run dbus-send");
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("boolean false"), "the name is owned:\n{out}");
    assert!(
        managed.log().contains("DBus.Enabled is false"),
        "{}",
        managed.log()
    );
    managed.done("daemon dbus disabled");
}
