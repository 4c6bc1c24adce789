//! The reference client's D-Bus API (mender 3.4) on the system bus, for
//! the applications written against it: Update Control Maps set from the
//! device, and the device's JWT for talking to the server directly.
//!
//! One connection owns both well-known names and serves both objects, as
//! the reference's GDBus connection does (each object answers under either
//! name):
//!
//! | bus name | object | interface | member | signature | |
//! |---|---|---|---|---|---|
//! | `io.mender.UpdateManager` | `/io/mender/UpdateManager` | `io.mender.Update1` | `SetUpdateControlMap` | `s` → `i` | the map as JSON → the refresh interval in seconds; `io.mender.Failed` for a map the [`Handler`] refuses |
//! | `io.mender.AuthenticationManager` | `/io/mender/AuthenticationManager` | `io.mender.Authentication1` | `GetJwtToken` | → `ss` | token (empty: none yet), server URL |
//! | | | | `FetchJwtToken` | → `b` | `true`: a new token was requested; [`Emitter::jwt_token_state_change`] announces it |
//! | | | | `JwtTokenStateChange` (signal) | `ss` | token, server URL; broadcast |
//! | either | the two objects, `/`, `/io`, `/io/mender` | `org.freedesktop.DBus.Introspectable` | `Introspect` | → `s` | the reference's XML (children listed on the inner nodes) |
//! | | the two objects | `org.freedesktop.DBus.Peer` | `Ping`, `GetMachineId` | →, → `s` | |
//! | | the two objects | `org.freedesktop.DBus.Properties` | `GetAll` | `s` → `a{sv}` | empty: no properties, as the reference |
//!
//! Errors are the reference's (GDBus's) names: `io.mender.Failed` for a
//! refused call (with the reason as the message, where the reference only
//! says "see Mender logs"), `org.freedesktop.DBus.Error.UnknownMethod` for
//! an unknown object or member, `org.freedesktop.DBus.Error.InvalidArgs` for
//! a wrong signature. The names are requested with the reference's flags
//! (allow replacement, replace existing); the policy that lets only root own
//! them and call them is the package's `io.mender.*.conf` (the reference's
//! content, targets/linux/dist/dbus/).
//!
//! The bus is `DBUS_SYSTEM_BUS_ADDRESS` (`unix:path=` or `unix:abstract=`)
//! or else `unix:path=/run/dbus/system_bus_socket`.
//!
//! The crate is `rustbus`: pure Rust (no libdbus, which the `dbus` crate
//! binds) and blocking (`zbus` runs even its blocking API on an async
//! executor thread). The service is one thread blocked on the socket;
//! replies and signals share the connection's sending half behind a mutex,
//! so the daemon emits signals from its own thread without waiting on the
//! service.

use std::collections::HashMap;
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rustbus::connection::Timeout;
use rustbus::message_builder::{MarshalledMessage, MessageBuilder, MessageType};
use rustbus::{DuplexConn, RecvConn, SendConn};

/// Bus name of the update control API.
pub const UPDATE_MANAGER_NAME: &str = "io.mender.UpdateManager";
/// Object path of the update control API.
pub const UPDATE_MANAGER_PATH: &str = "/io/mender/UpdateManager";
/// Interface of the update control API.
pub const UPDATE_INTERFACE: &str = "io.mender.Update1";
/// Bus name of the authentication API.
pub const AUTH_MANAGER_NAME: &str = "io.mender.AuthenticationManager";
/// Object path of the authentication API.
pub const AUTH_MANAGER_PATH: &str = "/io/mender/AuthenticationManager";
/// Interface of the authentication API.
pub const AUTH_INTERFACE: &str = "io.mender.Authentication1";
/// The system bus when `DBUS_SYSTEM_BUS_ADDRESS` is not set.
pub const DEFAULT_SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

const INTROSPECTABLE: &str = "org.freedesktop.DBus.Introspectable";
const PEER: &str = "org.freedesktop.DBus.Peer";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const ERROR_FAILED: &str = "io.mender.Failed";
const ERROR_UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";
const ERROR_INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";
/// DBUS_NAME_FLAG_ALLOW_REPLACEMENT | DBUS_NAME_FLAG_REPLACE_EXISTING, the
/// reference's flags.
const NAME_FLAGS: u32 = 0x1 | 0x2;
/// Header flag NO_REPLY_EXPECTED.
const NO_REPLY_EXPECTED: u8 = 0x1;

/// What the service asks of the agent. Called on the service's thread, one
/// call at a time; an implementation shares state with the daemon through
/// a mutex or a channel and answers promptly (a D-Bus caller waits).
pub trait Handler: Send + 'static {
    /// `SetUpdateControlMap(s) -> i`: validate and store the map (JSON, the
    /// reference's schema); the refresh interval in seconds (the reference
    /// answers half the map expiration time), or why the map is refused.
    fn set_update_control_map(&mut self, json: &str) -> Result<i32, String>;
    /// `GetJwtToken() -> (s, s)`: the current token (empty when there is
    /// none) and the server URL.
    fn jwt(&mut self) -> (String, String);
    /// `FetchJwtToken() -> b`: request a new token; `true` when requested.
    /// The new token is announced with [`Emitter::jwt_token_state_change`].
    fn fetch_jwt(&mut self) -> bool;
}

/// Sends the service's signals; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Emitter {
    send: Arc<Mutex<SendConn>>,
    fd: RawFd,
}

impl Emitter {
    /// An error reply to `call`. rustbus 0.19.3 (the latest release) does
    /// not write the ERROR_NAME header field (fixed upstream after it, not
    /// released), and the bus drops a connection that sends an error
    /// without one: error replies are written here, on the connection's
    /// socket, under the same lock and with a serial from the same counter.
    fn send_error(&self, call: &MarshalledMessage, name: &str, text: &str) -> io::Result<()> {
        let (Some(reply_serial), Some(destination)) =
            (call.dynheader.serial, call.dynheader.sender.as_deref())
        else {
            return Ok(()); // nobody to answer
        };
        let mut conn = self.send.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = error_message(conn.alloc_serial(), reply_serial, destination, name, text);
        let mut sent = 0;
        while sent < bytes.len() {
            match nix::sys::socket::send(
                self.fd,
                &bytes[sent..],
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(n) => sent += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Broadcasts `JwtTokenStateChange(token, server_url)` from
    /// `/io/mender/AuthenticationManager`, as the reference does whenever
    /// the token changes.
    pub fn jwt_token_state_change(&self, token: &str, server_url: &str) -> io::Result<()> {
        let mut msg = MessageBuilder::new()
            .signal(AUTH_INTERFACE, "JwtTokenStateChange", AUTH_MANAGER_PATH)
            .build();
        msg.body.push_param(token).map_err(to_io)?;
        msg.body.push_param(server_url).map_err(to_io)?;
        send(&self.send, &msg)
    }
}

/// The running service: its thread and the connection it serves.
pub struct Service {
    emitter: Emitter,
    fd: RawFd,
    unique_name: String,
    thread: Option<JoinHandle<()>>,
}

impl Service {
    /// [`Service::start`] on the system bus: `DBUS_SYSTEM_BUS_ADDRESS`, or
    /// else [`DEFAULT_SYSTEM_BUS`].
    pub fn start_system<H: Handler>(handler: H) -> io::Result<Self> {
        let address = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
            .ok()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| DEFAULT_SYSTEM_BUS.to_owned());
        Self::start(&address, handler)
    }

    /// Connects to the bus at `address`, owns both names, and serves them
    /// on a new thread. Fails (without a thread) when the bus is not there
    /// (`NotFound`, `ConnectionRefused`), refuses the names
    /// (`PermissionDenied`: the policy) or another owner keeps them.
    pub fn start<H: Handler>(address: &str, mut handler: H) -> io::Result<Self> {
        let addr = parse_address(address)?;
        let mut conn = DuplexConn::connect_to_bus(addr, false).map_err(to_io)?;
        let timeout = Timeout::Duration(core::time::Duration::from_secs(10));
        let unique_name = conn.send_hello(timeout).map_err(to_io)?;
        for name in [UPDATE_MANAGER_NAME, AUTH_MANAGER_NAME] {
            request_name(&mut conn, name, timeout)?;
        }
        let fd = conn.recv.as_raw_fd();
        let DuplexConn { send, mut recv } = conn;
        let emitter = Emitter {
            send: Arc::new(Mutex::new(send)),
            fd,
        };
        let replies = emitter.clone();
        let thread = std::thread::Builder::new()
            .name("dbus".into())
            .spawn(move || serve(&mut recv, &replies, &mut handler))?;
        log::info!("D-Bus: serving {UPDATE_MANAGER_NAME} and {AUTH_MANAGER_NAME} as {unique_name}");
        Ok(Self {
            emitter,
            fd,
            unique_name,
            thread: Some(thread),
        })
    }

    /// The signal sender, for the daemon's thread.
    pub fn emitter(&self) -> Emitter {
        self.emitter.clone()
    }

    /// The connection's unique bus name (`:1.N`).
    pub fn unique_name(&self) -> &str {
        &self.unique_name
    }

    /// Closes the connection (the bus releases the names) and waits for the
    /// service's thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // The emitter keeps the descriptor open until `self` is dropped, so
        // it is still this connection's.
        let _ = nix::sys::socket::shutdown(self.fd, nix::sys::socket::Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A D-Bus server address (`unix:path=...` or `unix:abstract=...`, values
/// %-escaped; the first usable of a `;`-separated list).
fn parse_address(address: &str) -> io::Result<nix::sys::socket::UnixAddr> {
    for one in address.split(';') {
        let Some(pairs) = one.strip_prefix("unix:") else {
            continue;
        };
        for pair in pairs.split(',') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let value = unescape(value)?;
            match key {
                "path" => {
                    let path = std::ffi::OsStr::new(
                        std::str::from_utf8(&value).map_err(|_| bad_address(address))?,
                    );
                    return nix::sys::socket::UnixAddr::new(path).map_err(io::Error::from);
                }
                "abstract" => {
                    return nix::sys::socket::UnixAddr::new_abstract(&value)
                        .map_err(io::Error::from)
                }
                _ => {}
            }
        }
    }
    Err(bad_address(address))
}

fn bad_address(address: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("no unix:path= or unix:abstract= in the D-Bus address {address:?}"),
    )
}

fn unescape(value: &str) -> io::Result<Vec<u8>> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad_address(value))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn to_io(e: impl Into<rustbus::connection::Error>) -> io::Error {
    match e.into() {
        rustbus::connection::Error::IoError(e) => e,
        rustbus::connection::Error::NixError(e) => io::Error::from(e),
        e => io::Error::other(e.to_string()),
    }
}

fn send(conn: &Mutex<SendConn>, msg: &MarshalledMessage) -> io::Result<()> {
    let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
    conn.send_message_write_all(msg).map(drop).map_err(to_io)
}

/// `RequestName` on the bus driver, waiting for its reply.
fn request_name(conn: &mut DuplexConn, name: &str, timeout: Timeout) -> io::Result<()> {
    let msg = rustbus::standard_messages::request_name(name, NAME_FLAGS);
    let serial = conn.send.send_message_write_all(&msg).map_err(to_io)?;
    loop {
        let reply = conn.recv.get_next_message(timeout).map_err(to_io)?;
        if reply.dynheader.response_serial != Some(serial) {
            continue; // NameAcquired and the like
        }
        if let Some(error) = &reply.dynheader.error_name {
            let text = reply.body.parser().get::<String>().unwrap_or_default();
            let kind = if error.ends_with(".AccessDenied") {
                io::ErrorKind::PermissionDenied
            } else {
                io::ErrorKind::Other
            };
            return Err(io::Error::new(
                kind,
                format!("the bus refused {name}: {error}: {text}"),
            ));
        }
        // 1: primary owner, 4: already the owner; 2 (queued), 3 (exists):
        // another process keeps it.
        return match reply.body.parser().get::<u32>().map_err(to_io)? {
            1 | 4 => Ok(()),
            code => Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another process owns {name} (RequestName: {code})"),
            )),
        };
    }
}

/// The service's loop: answers method calls until the connection closes.
fn serve<H: Handler>(recv: &mut RecvConn, replies: &Emitter, handler: &mut H) {
    loop {
        let msg = match recv.get_next_message(Timeout::Infinite) {
            Ok(msg) => msg,
            Err(rustbus::connection::Error::ConnectionClosed) => return,
            Err(e) => {
                log::warn!("D-Bus: service stopped: {e}");
                return;
            }
        };
        if msg.typ != MessageType::Call {
            continue;
        }
        let reply = dispatch(&msg, handler);
        if msg.flags & NO_REPLY_EXPECTED != 0 {
            continue;
        }
        let sent = match reply {
            Ok(reply) => send(&replies.send, &reply),
            Err((name, text)) => replies.send_error(&msg, name, &text),
        };
        if let Err(e) = sent {
            log::warn!("D-Bus: cannot reply: {e}");
        }
    }
}

/// The reply to one method call.
fn dispatch<H: Handler>(call: &MarshalledMessage, handler: &mut H) -> Reply {
    let header = &call.dynheader;
    let path = header.object.as_deref().unwrap_or("");
    let member = header.member.as_deref().unwrap_or("");
    let signature = header.signature.as_deref().unwrap_or("");
    let Some(object) = Object::at(path) else {
        return error(
            ERROR_UNKNOWN_METHOD,
            format!("Object does not exist at path “{path}”"),
        );
    };
    // The interface is optional in a call: then the member alone decides.
    let interface = header
        .interface
        .as_deref()
        .or_else(|| object.interface_of(member))
        .unwrap_or("");
    let Some(expected) = object.signature(interface, member) else {
        return if object.has_interface(interface) {
            error(ERROR_UNKNOWN_METHOD, format!("No such method “{member}”"))
        } else {
            error(
                ERROR_UNKNOWN_METHOD,
                format!("No such interface “{interface}” on object at path {path}"),
            )
        };
    };
    if signature != expected {
        return error(
            ERROR_INVALID_ARGS,
            format!(
                "Type of message, “({signature})”, does not match expected type “({expected})”"
            ),
        );
    }
    let mut reply = call.dynheader.make_response();
    let pushed = match (interface, member) {
        (INTROSPECTABLE, "Introspect") => reply.body.push_param(object.introspect()),
        (PEER, "Ping") => Ok(()),
        (PEER, "GetMachineId") => match machine_id() {
            Some(id) => reply.body.push_param(id),
            None => {
                return error(ERROR_FAILED, "No machine ID (/etc/machine-id)".into());
            }
        },
        (PROPERTIES, "GetAll") => {
            let name = call.body.parser().get::<String>().unwrap_or_default();
            if !object.has_interface(&name) {
                return error(ERROR_INVALID_ARGS, format!("No such interface “{name}”"));
            }
            let none: HashMap<String, rustbus::wire::marshal::traits::Variant<u8>> = HashMap::new();
            reply.body.push_param(none)
        }
        (PROPERTIES, _) => {
            let (_, name) = call
                .body
                .parser()
                .get2::<String, String>()
                .unwrap_or_default();
            return error(ERROR_INVALID_ARGS, format!("No such property “{name}”"));
        }
        (UPDATE_INTERFACE, "SetUpdateControlMap") => {
            let json = call.body.parser().get::<String>().unwrap_or_default();
            log::info!("D-Bus: received an update control map: {json}");
            match handler.set_update_control_map(&json) {
                Ok(refresh) => reply.body.push_param(refresh),
                Err(why) => {
                    log::error!("D-Bus: update control map refused: {why}");
                    return error(ERROR_FAILED, format!("Invalid update control map: {why}"));
                }
            }
        }
        (AUTH_INTERFACE, "GetJwtToken") => {
            let (token, server_url) = handler.jwt();
            reply.body.push_param2(token, server_url)
        }
        (AUTH_INTERFACE, "FetchJwtToken") => reply.body.push_param(handler.fetch_jwt()),
        _ => unreachable!("Object::signature lists only the members above"),
    };
    match pushed {
        Ok(()) => Ok(reply),
        Err(e) => error(ERROR_FAILED, format!("Cannot encode the reply: {e}")),
    }
}

/// A method return, or an error (name, message).
type Reply = Result<MarshalledMessage, (&'static str, String)>;

fn error(name: &'static str, text: String) -> Reply {
    Err((name, text))
}

/// A little-endian ERROR message: header (reply serial, destination, error
/// name, signature `s`) and the text as its body.
fn error_message(
    serial: u32,
    reply_serial: u32,
    destination: &str,
    name: &str,
    text: &str,
) -> Vec<u8> {
    fn pad(buf: &mut Vec<u8>, to: usize) {
        while !buf.len().is_multiple_of(to) {
            buf.push(0);
        }
    }
    fn string(buf: &mut Vec<u8>, s: &str) {
        pad(buf, 4);
        buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
        buf.extend_from_slice(s.as_bytes());
        buf.push(0);
    }
    let mut body = Vec::new();
    string(&mut body, text);
    let mut m = vec![b'l', 3, NO_REPLY_EXPECTED, 1];
    m.extend_from_slice(&(body.len() as u32).to_le_bytes());
    m.extend_from_slice(&serial.to_le_bytes());
    m.extend_from_slice(&[0; 4]); // header fields' length, below
    let fields = m.len();
    // Each field: (code, signature) then the value; 8-aligned.
    pad(&mut m, 8);
    m.extend_from_slice(&[5, 1, b'u', 0]); // REPLY_SERIAL
    m.extend_from_slice(&reply_serial.to_le_bytes());
    pad(&mut m, 8);
    m.extend_from_slice(&[6, 1, b's', 0]); // DESTINATION
    string(&mut m, destination);
    pad(&mut m, 8);
    m.extend_from_slice(&[4, 1, b's', 0]); // ERROR_NAME
    string(&mut m, name);
    pad(&mut m, 8);
    m.extend_from_slice(&[8, 1, b'g', 0, 1, b's', 0]); // SIGNATURE
    let len = (m.len() - fields) as u32;
    m[fields - 4..fields].copy_from_slice(&len.to_le_bytes());
    pad(&mut m, 8);
    m.extend_from_slice(&body);
    m
}

fn machine_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The objects the service answers for.
#[derive(Clone, Copy)]
enum Object {
    /// `/`, `/io`, `/io/mender`: introspection (their children) only.
    Inner(&'static str),
    Update,
    Auth,
}

/// The interfaces GDBus adds to every registered object (the reference's
/// introspection lists them first).
const STANDARD_XML: &str = r#"  <interface name="org.freedesktop.DBus.Properties">
    <method name="Get">
      <arg type="s" name="interface_name" direction="in"/>
      <arg type="s" name="property_name" direction="in"/>
      <arg type="v" name="value" direction="out"/>
    </method>
    <method name="GetAll">
      <arg type="s" name="interface_name" direction="in"/>
      <arg type="a{sv}" name="properties" direction="out"/>
    </method>
    <method name="Set">
      <arg type="s" name="interface_name" direction="in"/>
      <arg type="s" name="property_name" direction="in"/>
      <arg type="v" name="value" direction="in"/>
    </method>
    <signal name="PropertiesChanged">
      <arg type="s" name="interface_name"/>
      <arg type="a{sv}" name="changed_properties"/>
      <arg type="as" name="invalidated_properties"/>
    </signal>
  </interface>
  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect">
      <arg type="s" name="xml_data" direction="out"/>
    </method>
  </interface>
  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
    <method name="GetMachineId">
      <arg type="s" name="machine_uuid" direction="out"/>
    </method>
  </interface>
"#;

const UPDATE_XML: &str = r#"  <interface name="io.mender.Update1">
    <method name="SetUpdateControlMap">
      <arg type="s" name="update_control_map" direction="in"/>
      <arg type="i" name="refresh_timeout" direction="out"/>
    </method>
  </interface>
"#;

const AUTH_XML: &str = r#"  <interface name="io.mender.Authentication1">
    <method name="GetJwtToken">
      <arg type="s" name="token" direction="out"/>
      <arg type="s" name="server_url" direction="out"/>
    </method>
    <method name="FetchJwtToken">
      <arg type="b" name="success" direction="out"/>
    </method>
    <signal name="JwtTokenStateChange">
      <arg type="s" name="token"/>
      <arg type="s" name="server_url"/>
    </signal>
  </interface>
"#;

const DOCTYPE: &str = r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
                      "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
"#;

impl Object {
    fn at(path: &str) -> Option<Self> {
        match path {
            "/" => Some(Self::Inner("  <node name=\"io\"/>\n")),
            "/io" => Some(Self::Inner("  <node name=\"mender\"/>\n")),
            "/io/mender" => Some(Self::Inner(
                "  <node name=\"UpdateManager\"/>\n  <node name=\"AuthenticationManager\"/>\n",
            )),
            UPDATE_MANAGER_PATH => Some(Self::Update),
            AUTH_MANAGER_PATH => Some(Self::Auth),
            _ => None,
        }
    }

    /// `(interface, member, input signature)` of every method it answers.
    fn methods(self) -> &'static [(&'static str, &'static str, &'static str)] {
        const STANDARD: [(&str, &str, &str); 6] = [
            (INTROSPECTABLE, "Introspect", ""),
            (PEER, "Ping", ""),
            (PEER, "GetMachineId", ""),
            (PROPERTIES, "Get", "ss"),
            (PROPERTIES, "GetAll", "s"),
            (PROPERTIES, "Set", "ssv"),
        ];
        const UPDATE: [(&str, &str, &str); 7] = [
            STANDARD[0],
            STANDARD[1],
            STANDARD[2],
            STANDARD[3],
            STANDARD[4],
            STANDARD[5],
            (UPDATE_INTERFACE, "SetUpdateControlMap", "s"),
        ];
        const AUTH: [(&str, &str, &str); 8] = [
            STANDARD[0],
            STANDARD[1],
            STANDARD[2],
            STANDARD[3],
            STANDARD[4],
            STANDARD[5],
            (AUTH_INTERFACE, "GetJwtToken", ""),
            (AUTH_INTERFACE, "FetchJwtToken", ""),
        ];
        match self {
            Self::Inner(_) => &STANDARD[..1],
            Self::Update => &UPDATE,
            Self::Auth => &AUTH,
        }
    }

    fn signature(self, interface: &str, member: &str) -> Option<&'static str> {
        self.methods()
            .iter()
            .find(|(i, m, _)| *i == interface && *m == member)
            .map(|(_, _, s)| *s)
    }

    fn interface_of(self, member: &str) -> Option<&'static str> {
        self.methods()
            .iter()
            .find(|(_, m, _)| *m == member)
            .map(|(i, _, _)| *i)
    }

    fn has_interface(self, interface: &str) -> bool {
        self.methods().iter().any(|(i, _, _)| *i == interface)
    }

    fn introspect(self) -> String {
        let body = match self {
            Self::Inner(children) => children.to_owned(),
            Self::Update => format!("{STANDARD_XML}{UPDATE_XML}"),
            Self::Auth => format!("{STANDARD_XML}{AUTH_XML}"),
        };
        format!("{DOCTYPE}<node>\n{body}</node>\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(parse_address("unix:path=/run/dbus/system_bus_socket").is_ok());
        assert!(parse_address("unix:path=/tmp/a%20b,guid=0123").is_ok());
        assert!(parse_address("tcp:host=x;unix:abstract=/tmp/dbus-x").is_ok());
        assert_eq!(
            parse_address("tcp:host=localhost,port=1")
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(unescape("a%2fb%3D").unwrap(), b"a/b=");
        assert!(unescape("a%2").is_err());
    }
}
