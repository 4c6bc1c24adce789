//! The D-Bus service (targets/host/src/dbus.rs) on a private `dbus-daemon`
//! that enforces the policy the package ships (targets/linux/dist/dbus/,
//! the reference's content), called by Debian's pydbus exactly as the
//! reference's example application does, and introspected by `dbus-send`.
//! The introspection XML is compared with the reference's own answers
//! (tests/fixtures/dbus/, captured from mender 3.4.0 on such a bus).

use core::time::Duration;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use otalite_host::dbus::{Handler, Service};

#[path = "common/bus.rs"]
mod bus;
use bus::{require, root, Bus};

const PYTHON: &str = "/usr/bin/python3";

/// What a test handler saw and answers.
#[derive(Default)]
struct Seen {
    maps: Vec<String>,
    fetches: usize,
}

struct TestHandler {
    seen: Arc<Mutex<Seen>>,
    fetched: mpsc::Sender<()>,
}

impl Handler for TestHandler {
    fn set_update_control_map(&mut self, json: &str) -> Result<i32, String> {
        // Stands in for the Update Control Map validation: an object with
        // an "id".
        if !(json.trim_start().starts_with('{') && json.contains("\"id\"")) {
            return Err("not a JSON object with an \"id\"".into());
        }
        self.seen.lock().unwrap().maps.push(json.to_owned());
        Ok(1800)
    }

    fn jwt(&mut self) -> (String, String) {
        (
            "header.payload.signature".into(),
            "https://hosted.example".into(),
        )
    }

    fn fetch_jwt(&mut self) -> bool {
        self.seen.lock().unwrap().fetches += 1;
        let _ = self.fetched.send(());
        true
    }
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The calls of the reference's example application (pydbus), and a
/// subscription to `JwtTokenStateChange` that the test's "daemon" emits
/// after `FetchJwtToken`. Prints one line per call.
const PYDBUS_SCRIPT: &str = r#"
import sys
from pydbus import SystemBus
from gi.repository import GLib

bus = SystemBus()
update = bus.get("io.mender.UpdateManager", "/io/mender/UpdateManager")["io.mender.Update1"]
good = sys.argv[1]
print("SetUpdateControlMap(valid) ->", update.SetUpdateControlMap(good))
try:
    update.SetUpdateControlMap("not json")
    print("SetUpdateControlMap(invalid) -> no error")
except GLib.Error as e:
    print("SetUpdateControlMap(invalid) -> GLib.Error:", e.message)
print("SetUpdateControlMap(valid, again) ->", update.SetUpdateControlMap(good))

auth = bus.get("io.mender.AuthenticationManager", "/io/mender/AuthenticationManager")["io.mender.Authentication1"]
print("GetJwtToken ->", auth.GetJwtToken())

loop = GLib.MainLoop()
def fired(sender, obj, iface, signal, params):
    print("signal", iface + "." + signal, "from", obj, "->", params)
    loop.quit()
bus.subscribe(iface="io.mender.Authentication1", signal="JwtTokenStateChange", signal_fired=fired)
print("FetchJwtToken ->", auth.FetchJwtToken())
GLib.timeout_add_seconds(10, loop.quit)
loop.run()
sys.stdout.flush()
"#;

/// The Introspect answers, compared as canonical XML (no comments, no
/// whitespace-only text) with the reference's.
const COMPARE_XML: &str = r#"
import sys, xml.etree.ElementTree as ET
ours, theirs = open(sys.argv[1]).read(), open(sys.argv[2]).read()
c = lambda x: ET.canonicalize(xml_data=x, strip_text=True)
sys.exit(0 if c(ours) == c(theirs) else 1)
"#;

#[test]
fn pydbus_calls_like_the_reference_example() {
    require("dbus-send");
    let pydbus = Command::new(PYTHON)
        .args(["-c", "import pydbus"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        pydbus,
        "python3-pydbus is not installed (bash .ci/setup installs it)"
    );
    let bus = Bus::start();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (fetched_tx, fetched_rx) = mpsc::channel();
    let handler = TestHandler {
        seen: Arc::clone(&seen),
        fetched: fetched_tx,
    };
    let service = Service::start(&bus.address(), handler).expect("start the D-Bus service");

    // The daemon's side: a new token after each FetchJwtToken.
    let emitter = service.emitter();
    let announcer = std::thread::spawn(move || {
        while fetched_rx.recv().is_ok() {
            // After the reply to FetchJwtToken, as the reference's worker.
            std::thread::sleep(Duration::from_millis(200));
            emitter
                .jwt_token_state_change("new.jwt.token", "https://hosted.example")
                .unwrap();
        }
    });

    let map = r#"{"id":"01234567-89ab-cdef-0123-456789abcdef","priority":0,"states":{"ArtifactInstall_Enter":{"action":"pause"}}}"#;
    let output = bus
        .command(PYTHON)
        .args(["-c", PYDBUS_SCRIPT, map])
        .output()
        .unwrap();
    let transcript = output_text(&output);
    println!("{transcript}");
    assert!(output.status.success(), "pydbus: {transcript}");
    let expected = [
        "SetUpdateControlMap(valid) -> 1800",
        "SetUpdateControlMap(invalid) -> GLib.Error: GDBus.Error:io.mender.Failed: Invalid update control map: not a JSON object with an \"id\"",
        "SetUpdateControlMap(valid, again) -> 1800",
        "GetJwtToken -> ('header.payload.signature', 'https://hosted.example')",
        "FetchJwtToken -> True",
        "signal io.mender.Authentication1.JwtTokenStateChange from /io/mender/AuthenticationManager -> ('new.jwt.token', 'https://hosted.example')",
    ];
    let lines: Vec<&str> = transcript.lines().collect();
    assert_eq!(lines, expected, "pydbus transcript");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.maps, [map, map]);
        assert_eq!(seen.fetches, 1);
    }

    // Introspection, as dbus-send asks it, equal to the reference's.
    for (path, name, fixture) in [
        ("/", "io.mender.UpdateManager", "root.xml"),
        ("/io", "io.mender.UpdateManager", "io.xml"),
        (
            "/io/mender",
            "io.mender.AuthenticationManager",
            "io_mender.xml",
        ),
        (
            "/io/mender/UpdateManager",
            "io.mender.UpdateManager",
            "io_mender_UpdateManager.xml",
        ),
        (
            "/io/mender/AuthenticationManager",
            "io.mender.AuthenticationManager",
            "io_mender_AuthenticationManager.xml",
        ),
    ] {
        let output = bus
            .command("dbus-send")
            .args([
                "--system",
                "--print-reply=literal",
                &format!("--dest={name}"),
                path,
                "org.freedesktop.DBus.Introspectable.Introspect",
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{path}: {}", output_text(&output));
        let ours = bus.dir.path().join("ours.xml");
        std::fs::write(&ours, &output.stdout).unwrap();
        let same = bus
            .command(PYTHON)
            .args(["-c", COMPARE_XML])
            .arg(&ours)
            .arg(root().join("tests/fixtures/dbus").join(fixture))
            .status()
            .unwrap();
        assert!(
            same.success(),
            "Introspect {path} differs from the reference's {fixture}:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }

    // Errors as the reference's, and Peer.Ping.
    for (args, want) in [
        (
            vec![
                "/io/mender/UpdateManager",
                "io.mender.Update1.SetUpdateControlMap",
            ],
            "org.freedesktop.DBus.Error.InvalidArgs: Type of message, “()”, does not match expected type “(s)”",
        ),
        (
            vec!["/io/mender/Nope", "io.mender.Update1.SetUpdateControlMap"],
            "org.freedesktop.DBus.Error.UnknownMethod: Object does not exist at path “/io/mender/Nope”",
        ),
        (
            vec!["/io/mender/UpdateManager", "io.mender.Update1.Nope"],
            "org.freedesktop.DBus.Error.UnknownMethod: No such method “Nope”",
        ),
        (
            vec!["/io/mender/UpdateManager", "org.freedesktop.DBus.Peer.Ping"],
            "method return",
        ),
    ] {
        let output = bus
            .command("dbus-send")
            .args(["--system", "--print-reply", "--dest=io.mender.UpdateManager"])
            .args(&args)
            .output()
            .unwrap();
        let text = output_text(&output);
        assert!(text.contains(want), "{args:?}: {text}");
    }

    // The shipped policy is enforced: only root may call.
    if Path::new("/usr/bin/setpriv").exists() {
        let output = bus
            .command("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "dbus-send",
                "--system",
                "--print-reply",
                "--dest=io.mender.AuthenticationManager",
                "/io/mender/AuthenticationManager",
                "io.mender.Authentication1.GetJwtToken",
            ])
            .output()
            .unwrap();
        let text = output_text(&output);
        assert!(
            !output.status.success() && text.contains("AccessDenied"),
            "a non-root caller was not refused: {text}"
        );
    }

    service.stop();
    announcer.join().unwrap();
}

#[test]
fn no_bus_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:path={}", dir.path().join("none").display());
    let (tx, _rx) = mpsc::channel();
    let handler = TestHandler {
        seen: Arc::default(),
        fetched: tx,
    };
    let err = Service::start(&address, handler)
        .err()
        .expect("no bus there");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
}
