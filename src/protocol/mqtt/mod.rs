//! MQTT 3.1.1 for the AWS IoT Jobs backend: a packet codec and a sans-IO
//! client [`Session`].
//!
//! # Why a hand-written codec
//!
//! The crates evaluated (crates.io, 2025) did not fit a `no_std`, heap-free,
//! never-panicking core:
//!
//! | crate | why not |
//! |---|---|
//! | `mqttrs` 0.4.1 | the closest fit (borrowing `decode_slice`/`encode_slice`), but unreleased since 2021, pulls a second `heapless` (0.7) and indexes wire data directly (`buf[*offset..]`), which can panic on hostile input |
//! | `mqtt-format` 0.4 | MQTT 5 oriented, `winnow` parser, MPL-2.0 |
//! | `rust-mqtt` 0.6 | a client with its own async `embedded-io-async` runtime, not a codec |
//! | `minimq` 0.13 | MQTT 5 client owning the network stack |
//!
//! The subset a device needs (CONNECT, CONNACK, PUBLISH QoS 0/1, PUBACK,
//! SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT)
//! is a few hundred lines. Every read of wire data is checked; truncated
//! input is [`Decoded::Incomplete`], never an error or a panic.
//!
//! # Wire format (MQTT 3.1.1, OASIS standard, section 2 and 3)
//!
//! Fixed header of every packet:
//!
//! ```text
//! +--------+-------------------+----------------------------+
//! | byte 0 | bytes 1..=4       | remaining length bytes     |
//! +--------+-------------------+----------------------------+
//! | type<<4| remaining length  | variable header + payload  |
//! | |flags | 7 bits per byte,  |                            |
//! |        | bit 7 = more      |                            |
//! +--------+-------------------+----------------------------+
//! ```
//!
//! | type | code | flags | variable header | payload |
//! |---|---|---|---|---|
//! | CONNECT | 1 | 0 | `"MQTT"`, level 4, connect flags, keep-alive u16 | client id, user name (optional), password (optional) |
//! | CONNACK | 2 | 0 | session-present flag, return code | - |
//! | PUBLISH | 3 | DUP, QoS (2 bits), RETAIN | topic, packet id (QoS > 0) | application bytes |
//! | PUBACK | 4 | 0 | packet id | - |
//! | SUBSCRIBE | 8 | 2 | packet id | (topic filter, requested QoS)+ |
//! | SUBACK | 9 | 0 | packet id | return code per filter (0x80 = failure) |
//! | UNSUBSCRIBE | 10 | 2 | packet id | topic filter+ |
//! | UNSUBACK | 11 | 0 | packet id | - |
//! | PINGREQ | 12 | 0 | - | - |
//! | PINGRESP | 13 | 0 | - | - |
//! | DISCONNECT | 14 | 0 | - | - |
//!
//! Strings are a big-endian u16 length and UTF-8 bytes without U+0000.
//! PUBREC/PUBREL/PUBCOMP (QoS 2) are refused: AWS IoT Core does not
//! support QoS 2 and the session never asks for it.

mod session;

pub use session::{
    Event, Received, Session, SessionBuffers, SessionConfig, SessionError, SessionState,
};

/// Largest remaining length the protocol can express (four length bytes).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;
/// Most bytes of a fixed header: one type byte and four length bytes.
pub const MAX_FIXED_HEADER_LEN: usize = 5;
/// Most QoS 1 publishes a [`Session`] keeps unacknowledged at once.
pub const MAX_IN_FLIGHT: usize = 8;
/// Most PUBACKs a [`Session`] queues before [`Session::poll_transmit`]
/// must drain them.
pub const MAX_PENDING_ACKS: usize = 8;
/// Most topic filters one SUBSCRIBE or UNSUBSCRIBE carries here.
pub const MAX_FILTERS_PER_REQUEST: usize = 8;

/// Packet type codes (the high nibble of byte 0).
mod kind {
    pub(super) const CONNECT: u8 = 1;
    pub(super) const CONNACK: u8 = 2;
    pub(super) const PUBLISH: u8 = 3;
    pub(super) const PUBACK: u8 = 4;
    pub(super) const PUBREC: u8 = 5;
    pub(super) const PUBCOMP: u8 = 7;
    pub(super) const SUBSCRIBE: u8 = 8;
    pub(super) const SUBACK: u8 = 9;
    pub(super) const UNSUBSCRIBE: u8 = 10;
    pub(super) const UNSUBACK: u8 = 11;
    pub(super) const PINGREQ: u8 = 12;
    pub(super) const PINGRESP: u8 = 13;
    pub(super) const DISCONNECT: u8 = 14;
}

/// Quality of service of a PUBLISH or a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// At most once: no acknowledgement.
    AtMostOnce = 0,
    /// At least once: acknowledged with PUBACK, resent until then.
    AtLeastOnce = 1,
}

/// The CONNACK return code (section 3.2.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectReturnCode {
    /// 0: connection accepted.
    Accepted,
    /// 1: the server does not support protocol level 4.
    UnacceptableProtocolVersion,
    /// 2: the client id is not allowed.
    IdentifierRejected,
    /// 3: the MQTT service is unavailable.
    ServerUnavailable,
    /// 4: bad user name or password.
    BadUserNameOrPassword,
    /// 5: the client is not authorized.
    NotAuthorized,
    /// 6..=255: reserved codes.
    Reserved(u8),
}

impl ConnectReturnCode {
    /// The code for a wire byte.
    pub const fn from_byte(byte: u8) -> Self {
        match byte {
            0 => Self::Accepted,
            1 => Self::UnacceptableProtocolVersion,
            2 => Self::IdentifierRejected,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            other => Self::Reserved(other),
        }
    }

    /// The wire byte.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Accepted => 0,
            Self::UnacceptableProtocolVersion => 1,
            Self::IdentifierRejected => 2,
            Self::ServerUnavailable => 3,
            Self::BadUserNameOrPassword => 4,
            Self::NotAuthorized => 5,
            Self::Reserved(other) => other,
        }
    }
}

/// A CONNECT packet's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connect<'a> {
    /// Client identifier (AWS IoT: up to 128 bytes; upparat uses `upparat`).
    pub client_id: &'a str,
    /// Keep-alive in seconds; 0 turns the keep-alive off.
    pub keep_alive_secs: u16,
    /// Start a new session (paho's and upparat's default: true).
    pub clean_session: bool,
    /// Optional user name (AWS IoT custom authorizers, brokers with login).
    pub username: Option<&'a str>,
    /// Optional password; only sent with a user name.
    pub password: Option<&'a [u8]>,
}

/// A PUBLISH packet's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Publish<'a> {
    /// Re-delivery flag (set on retransmission).
    pub dup: bool,
    /// Delivery guarantee.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Topic name (no wildcards).
    pub topic: &'a str,
    /// Packet id, present exactly when `qos` is [`QoS::AtLeastOnce`].
    pub packet_id: Option<u16>,
    /// Application bytes.
    pub payload: &'a [u8],
}

/// A SUBSCRIBE payload: (topic filter, requested QoS) pairs, as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterList<'a> {
    bytes: &'a [u8],
    with_qos: bool,
}

impl<'a> FilterList<'a> {
    /// The filters (and requested QoS, 0 in UNSUBSCRIBE lists).
    pub fn iter(&self) -> FilterIter<'a> {
        FilterIter {
            rest: self.bytes,
            with_qos: self.with_qos,
        }
    }
}

/// Iterator over a [`FilterList`] (validated when decoded).
#[derive(Clone, Debug)]
pub struct FilterIter<'a> {
    rest: &'a [u8],
    with_qos: bool,
}

impl<'a> Iterator for FilterIter<'a> {
    type Item = (&'a str, u8);

    fn next(&mut self) -> Option<Self::Item> {
        let mut reader = Reader::new(self.rest);
        let filter = reader.string().ok()?;
        let qos = if self.with_qos { reader.u8().ok()? } else { 0 };
        self.rest = reader.rest();
        Some((filter, qos))
    }
}

/// One decoded packet, borrowing from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Packet<'a> {
    /// CONNECT (client to server; decoded for tests and test brokers).
    Connect(Connect<'a>),
    /// CONNACK.
    ConnAck {
        /// The server kept a session for this client.
        session_present: bool,
        /// Accepted or why not.
        code: ConnectReturnCode,
    },
    /// PUBLISH.
    Publish(Publish<'a>),
    /// PUBACK for a QoS 1 PUBLISH.
    PubAck(u16),
    /// SUBSCRIBE (client to server).
    Subscribe {
        /// Packet id.
        packet_id: u16,
        /// Filters and requested QoS.
        filters: FilterList<'a>,
    },
    /// SUBACK: one return code per filter (0, 1, 2 granted; 0x80 failure).
    SubAck {
        /// Packet id of the SUBSCRIBE.
        packet_id: u16,
        /// Return codes, in filter order.
        return_codes: &'a [u8],
    },
    /// UNSUBSCRIBE (client to server).
    Unsubscribe {
        /// Packet id.
        packet_id: u16,
        /// Filters (QoS always 0).
        filters: FilterList<'a>,
    },
    /// UNSUBACK.
    UnsubAck(u16),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect,
}

/// What [`decode`] found at the start of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// The input holds only part of a packet. `required` is the whole
    /// packet's size once the fixed header is complete, else `None`.
    Incomplete {
        /// Total bytes of the packet, when known.
        required: Option<usize>,
    },
    /// A complete packet of `len` bytes.
    Packet {
        /// The packet.
        packet: Packet<'a>,
        /// Bytes it took from the input.
        len: usize,
    },
}

/// Why bytes are not a valid packet (the connection must be closed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The remaining length uses more than four bytes.
    MalformedLength,
    /// Reserved or unsupported packet type (0, 15, QoS 2 flows).
    UnsupportedType(u8),
    /// Fixed-header flags other than the ones the type requires.
    InvalidFlags(u8),
    /// PUBLISH with QoS 3, or QoS 2 (not supported).
    UnsupportedQos(u8),
    /// A field runs past the packet's remaining length.
    Truncated,
    /// Bytes left over after the packet's last field.
    TrailingBytes,
    /// A string is not UTF-8 or contains U+0000.
    InvalidString,
    /// A packet id of 0.
    ZeroPacketId,
    /// CONNECT with another protocol name or level than `MQTT` 4, or
    /// invalid connect flags.
    InvalidConnect,
    /// A CONNACK, SUBSCRIBE or UNSUBSCRIBE field has a reserved value.
    InvalidField,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::MalformedLength => f.write_str("MQTT remaining length longer than 4 bytes"),
            Self::UnsupportedType(t) => write!(f, "unsupported MQTT packet type {t}"),
            Self::InvalidFlags(b) => write!(f, "invalid MQTT fixed header byte {b:#04x}"),
            Self::UnsupportedQos(q) => write!(f, "unsupported MQTT QoS {q}"),
            Self::Truncated => f.write_str("MQTT field runs past the packet"),
            Self::TrailingBytes => f.write_str("bytes after the MQTT packet's last field"),
            Self::InvalidString => f.write_str("MQTT string is not valid UTF-8"),
            Self::ZeroPacketId => f.write_str("MQTT packet id 0"),
            Self::InvalidConnect => f.write_str("invalid MQTT CONNECT header"),
            Self::InvalidField => f.write_str("MQTT field with a reserved value"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why a packet could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is too small; the packet needs `required` bytes.
    BufferTooSmall {
        /// Bytes needed for the whole packet.
        required: usize,
    },
    /// A string is longer than 65,535 bytes, or contains U+0000.
    InvalidString,
    /// The packet would exceed [`MAX_REMAINING_LENGTH`].
    TooLarge,
    /// A packet id of 0, a QoS 1 publish without id or a QoS 0 with one,
    /// or a SUBSCRIBE / UNSUBSCRIBE without filters.
    InvalidField,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BufferTooSmall { required } => {
                write!(f, "the MQTT packet needs a buffer of {required} bytes")
            }
            Self::InvalidString => f.write_str("string not encodable as an MQTT string"),
            Self::TooLarge => f.write_str("MQTT packet larger than the protocol allows"),
            Self::InvalidField => f.write_str("invalid MQTT packet field"),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Checked reads over one packet's body.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if count > self.bytes.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&first, tail) = self.bytes.split_first().ok_or(DecodeError::Truncated)?;
        self.bytes = tail;
        Ok(first)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let high = self.u8()?;
        let low = self.u8()?;
        Ok(u16::from_be_bytes([high, low]))
    }

    fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId),
            id => Ok(id),
        }
    }

    fn binary(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    fn string(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.binary()?;
        let text = core::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidString)?;
        if text.contains('\0') {
            return Err(DecodeError::InvalidString);
        }
        Ok(text)
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// Reads a fixed header: `Ok(None)` if `input` ends inside it, else
/// `(byte 0, header length, remaining length)`.
fn fixed_header(input: &[u8]) -> Result<Option<(u8, usize, usize)>, DecodeError> {
    let Some(&first) = input.first() else {
        return Ok(None);
    };
    let mut remaining: usize = 0;
    for index in 0..4usize {
        let Some(&byte) = input.get(index + 1) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(Some((first, index + 2, remaining)));
        }
    }
    Err(DecodeError::MalformedLength)
}

/// Decodes the packet at the start of `input`.
///
/// Accepts any prefix of a valid stream: a packet cut anywhere is
/// [`Decoded::Incomplete`]. Never panics.
///
/// # Errors
/// [`DecodeError`] when the bytes cannot be the start of a valid packet.
pub fn decode(input: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    let Some((first, header_len, remaining)) = fixed_header(input)? else {
        return Ok(Decoded::Incomplete { required: None });
    };
    // Refuse a bad type before waiting for a body that may never come.
    check_type(first)?;
    let total = header_len.saturating_add(remaining);
    let Some(body) = input.get(header_len..total) else {
        return Ok(Decoded::Incomplete {
            required: Some(total),
        });
    };
    let packet = decode_body(first, body)?;
    Ok(Decoded::Packet { packet, len: total })
}

fn check_type(first: u8) -> Result<(), DecodeError> {
    let packet_type = first >> 4;
    let flags = first & 0x0f;
    let expected_flags = match packet_type {
        kind::PUBLISH => {
            let qos = (flags >> 1) & 0b11;
            if qos > 1 {
                return Err(DecodeError::UnsupportedQos(qos));
            }
            return Ok(());
        }
        kind::SUBSCRIBE | kind::UNSUBSCRIBE => 0b0010,
        kind::CONNECT
        | kind::CONNACK
        | kind::PUBACK
        | kind::SUBACK
        | kind::UNSUBACK
        | kind::PINGREQ
        | kind::PINGRESP
        | kind::DISCONNECT => 0,
        other @ (0 | kind::PUBREC..=kind::PUBCOMP | 15..) => {
            return Err(DecodeError::UnsupportedType(other))
        }
    };
    if flags == expected_flags {
        Ok(())
    } else {
        Err(DecodeError::InvalidFlags(first))
    }
}

fn decode_body(first: u8, body: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let mut reader = Reader::new(body);
    let packet = match first >> 4 {
        kind::CONNECT => Packet::Connect(decode_connect(&mut reader)?),
        kind::CONNACK => {
            let acknowledge = reader.u8()?;
            if acknowledge & 0xfe != 0 {
                return Err(DecodeError::InvalidField);
            }
            Packet::ConnAck {
                session_present: acknowledge & 1 == 1,
                code: ConnectReturnCode::from_byte(reader.u8()?),
            }
        }
        kind::PUBLISH => {
            let qos = if first & 0b0110 == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            let topic = reader.string()?;
            let packet_id = match qos {
                QoS::AtMostOnce => None,
                QoS::AtLeastOnce => Some(reader.packet_id()?),
            };
            let payload = reader.rest();
            reader = Reader::new(&[]);
            Packet::Publish(Publish {
                dup: first & 0b1000 != 0,
                qos,
                retain: first & 1 != 0,
                topic,
                packet_id,
                payload,
            })
        }
        kind::PUBACK => Packet::PubAck(reader.packet_id()?),
        kind::SUBSCRIBE => {
            let packet_id = reader.packet_id()?;
            let filters = filter_list(&mut reader, true)?;
            Packet::Subscribe { packet_id, filters }
        }
        kind::SUBACK => {
            let packet_id = reader.packet_id()?;
            let return_codes = reader.rest();
            reader = Reader::new(&[]);
            Packet::SubAck {
                packet_id,
                return_codes,
            }
        }
        kind::UNSUBSCRIBE => {
            let packet_id = reader.packet_id()?;
            let filters = filter_list(&mut reader, false)?;
            Packet::Unsubscribe { packet_id, filters }
        }
        kind::UNSUBACK => Packet::UnsubAck(reader.packet_id()?),
        kind::PINGREQ => Packet::PingReq,
        kind::PINGRESP => Packet::PingResp,
        kind::DISCONNECT => Packet::Disconnect,
        other => return Err(DecodeError::UnsupportedType(other)),
    };
    reader.end()?;
    Ok(packet)
}

fn decode_connect<'a>(reader: &mut Reader<'a>) -> Result<Connect<'a>, DecodeError> {
    if reader.string()? != "MQTT" || reader.u8()? != 4 {
        return Err(DecodeError::InvalidConnect);
    }
    let flags = reader.u8()?;
    let has_username = flags & 0x80 != 0;
    let has_password = flags & 0x40 != 0;
    // Reserved bit, or a will (this codec does not carry wills), or a
    // password without a user name (forbidden in 3.1.1).
    if flags & 0x01 != 0 || flags & 0x3c != 0 || (has_password && !has_username) {
        return Err(DecodeError::InvalidConnect);
    }
    let keep_alive_secs = reader.u16()?;
    let client_id = reader.string()?;
    let username = if has_username {
        Some(reader.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(reader.binary()?)
    } else {
        None
    };
    Ok(Connect {
        client_id,
        keep_alive_secs,
        clean_session: flags & 0x02 != 0,
        username,
        password,
    })
}

fn filter_list<'a>(reader: &mut Reader<'a>, with_qos: bool) -> Result<FilterList<'a>, DecodeError> {
    let bytes = reader.rest();
    if bytes.is_empty() {
        return Err(DecodeError::InvalidField);
    }
    while !reader.rest().is_empty() {
        reader.string()?;
        if with_qos && reader.u8()? > 2 {
            return Err(DecodeError::InvalidField);
        }
    }
    Ok(FilterList { bytes, with_qos })
}

/// Appends to a caller buffer; past its end it only counts, so a short
/// buffer reports the exact size needed.
struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut [u8]) -> Self {
        Self { out, len: 0 }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        let end = self.len.saturating_add(bytes.len());
        if let Some(slot) = self.out.get_mut(self.len..end) {
            slot.copy_from_slice(bytes);
        }
        self.len = end;
    }

    fn u8(&mut self, byte: u8) {
        self.bytes(&[byte]);
    }

    fn u16(&mut self, value: u16) {
        self.bytes(&value.to_be_bytes());
    }

    fn binary(&mut self, bytes: &[u8]) {
        // Lengths were checked by `string_len` / `binary_len`.
        self.u16(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
        self.bytes(bytes);
    }

    fn header(&mut self, first: u8, remaining: usize) -> Result<(), EncodeError> {
        if remaining > MAX_REMAINING_LENGTH {
            return Err(EncodeError::TooLarge);
        }
        self.u8(first);
        let mut rest = remaining;
        loop {
            let mut byte = (rest & 0x7f) as u8;
            rest >>= 7;
            if rest > 0 {
                byte |= 0x80;
            }
            self.u8(byte);
            if rest == 0 {
                return Ok(());
            }
        }
    }

    fn finish(self) -> Result<usize, EncodeError> {
        if self.len <= self.out.len() {
            Ok(self.len)
        } else {
            Err(EncodeError::BufferTooSmall { required: self.len })
        }
    }
}

fn binary_len(bytes: &[u8]) -> Result<usize, EncodeError> {
    if bytes.len() > usize::from(u16::MAX) {
        return Err(EncodeError::InvalidString);
    }
    Ok(2 + bytes.len())
}

fn string_len(text: &str) -> Result<usize, EncodeError> {
    if text.contains('\0') {
        return Err(EncodeError::InvalidString);
    }
    binary_len(text.as_bytes())
}

fn sum(parts: &[usize]) -> Result<usize, EncodeError> {
    parts
        .iter()
        .try_fold(0usize, |total, part| total.checked_add(*part))
        .ok_or(EncodeError::TooLarge)
}

/// Writes a CONNECT packet into `out` and returns its length.
///
/// # Errors
/// [`EncodeError::BufferTooSmall`] with the size needed,
/// [`EncodeError::InvalidString`] for an unencodable string,
/// [`EncodeError::InvalidField`] for a password without a user name.
pub fn encode_connect(connect: &Connect<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    if connect.password.is_some() && connect.username.is_none() {
        return Err(EncodeError::InvalidField);
    }
    let username_len = connect.username.map(string_len).transpose()?.unwrap_or(0);
    let password_len = connect.password.map(binary_len).transpose()?.unwrap_or(0);
    let remaining = sum(&[
        10,
        string_len(connect.client_id)?,
        username_len,
        password_len,
    ])?;
    let mut flags = 0u8;
    if connect.clean_session {
        flags |= 0x02;
    }
    if connect.username.is_some() {
        flags |= 0x80;
    }
    if connect.password.is_some() {
        flags |= 0x40;
    }
    let mut writer = Writer::new(out);
    writer.header(kind::CONNECT << 4, remaining)?;
    writer.binary(b"MQTT");
    writer.u8(4);
    writer.u8(flags);
    writer.u16(connect.keep_alive_secs);
    writer.binary(connect.client_id.as_bytes());
    if let Some(username) = connect.username {
        writer.binary(username.as_bytes());
    }
    if let Some(password) = connect.password {
        writer.binary(password);
    }
    writer.finish()
}

/// Writes a CONNACK packet (for tests and test brokers).
///
/// # Errors
/// [`EncodeError::BufferTooSmall`] with the size needed (4).
pub fn encode_connack(
    session_present: bool,
    code: ConnectReturnCode,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let mut writer = Writer::new(out);
    writer.header(kind::CONNACK << 4, 2)?;
    writer.u8(u8::from(session_present));
    writer.u8(code.to_byte());
    writer.finish()
}

/// Writes a PUBLISH packet.
///
/// # Errors
/// [`EncodeError::BufferTooSmall`] with the size needed;
/// [`EncodeError::InvalidField`] when `packet_id` does not match `qos`
/// or is 0; [`EncodeError::InvalidString`] for a bad topic.
pub fn encode_publish(publish: &Publish<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let id_len = match (publish.qos, publish.packet_id) {
        (QoS::AtMostOnce, None) => 0,
        (QoS::AtLeastOnce, Some(id)) if id != 0 => 2,
        _ => return Err(EncodeError::InvalidField),
    };
    let remaining = sum(&[string_len(publish.topic)?, id_len, publish.payload.len()])?;
    let mut first = (kind::PUBLISH << 4) | ((publish.qos as u8) << 1);
    if publish.dup {
        first |= 0b1000;
    }
    if publish.retain {
        first |= 1;
    }
    let mut writer = Writer::new(out);
    writer.header(first, remaining)?;
    writer.binary(publish.topic.as_bytes());
    if let Some(id) = publish.packet_id {
        writer.u16(id);
    }
    writer.bytes(publish.payload);
    writer.finish()
}

fn encode_id_only(packet_type: u8, packet_id: u16, out: &mut [u8]) -> Result<usize, EncodeError> {
    if packet_id == 0 {
        return Err(EncodeError::InvalidField);
    }
    let mut writer = Writer::new(out);
    writer.header(packet_type << 4, 2)?;
    writer.u16(packet_id);
    writer.finish()
}

/// Writes a PUBACK packet (4 bytes).
///
/// # Errors
/// [`EncodeError::BufferTooSmall`]; [`EncodeError::InvalidField`] for id 0.
pub fn encode_puback(packet_id: u16, out: &mut [u8]) -> Result<usize, EncodeError> {
    encode_id_only(kind::PUBACK, packet_id, out)
}

/// Writes an UNSUBACK packet (4 bytes; for tests and test brokers).
///
/// # Errors
/// [`EncodeError::BufferTooSmall`]; [`EncodeError::InvalidField`] for id 0.
pub fn encode_unsuback(packet_id: u16, out: &mut [u8]) -> Result<usize, EncodeError> {
    encode_id_only(kind::UNSUBACK, packet_id, out)
}

/// Writes a SUBSCRIBE packet for `filters` (topic filter, requested QoS).
///
/// # Errors
/// [`EncodeError::BufferTooSmall`] with the size needed;
/// [`EncodeError::InvalidField`] for id 0 or no filters;
/// [`EncodeError::InvalidString`] for a bad filter.
pub fn encode_subscribe(
    packet_id: u16,
    filters: &[(&str, QoS)],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    if packet_id == 0 || filters.is_empty() {
        return Err(EncodeError::InvalidField);
    }
    let mut remaining = 2usize;
    for (filter, _) in filters {
        remaining = sum(&[remaining, string_len(filter)?, 1])?;
    }
    let mut writer = Writer::new(out);
    writer.header((kind::SUBSCRIBE << 4) | 0b0010, remaining)?;
    writer.u16(packet_id);
    for (filter, qos) in filters {
        writer.binary(filter.as_bytes());
        writer.u8(*qos as u8);
    }
    writer.finish()
}

/// Writes a SUBACK packet (for tests and test brokers).
///
/// # Errors
/// [`EncodeError::BufferTooSmall`]; [`EncodeError::InvalidField`] for id 0.
pub fn encode_suback(
    packet_id: u16,
    return_codes: &[u8],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    if packet_id == 0 {
        return Err(EncodeError::InvalidField);
    }
    let mut writer = Writer::new(out);
    writer.header(kind::SUBACK << 4, sum(&[2, return_codes.len()])?)?;
    writer.u16(packet_id);
    writer.bytes(return_codes);
    writer.finish()
}

/// Writes an UNSUBSCRIBE packet for `filters`.
///
/// # Errors
/// As [`encode_subscribe`].
pub fn encode_unsubscribe(
    packet_id: u16,
    filters: &[&str],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    if packet_id == 0 || filters.is_empty() {
        return Err(EncodeError::InvalidField);
    }
    let mut remaining = 2usize;
    for filter in filters {
        remaining = sum(&[remaining, string_len(filter)?])?;
    }
    let mut writer = Writer::new(out);
    writer.header((kind::UNSUBSCRIBE << 4) | 0b0010, remaining)?;
    writer.u16(packet_id);
    for filter in filters {
        writer.binary(filter.as_bytes());
    }
    writer.finish()
}

fn encode_empty(packet_type: u8, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut writer = Writer::new(out);
    writer.header(packet_type << 4, 0)?;
    writer.finish()
}

/// Writes a PINGREQ packet (2 bytes).
///
/// # Errors
/// [`EncodeError::BufferTooSmall`].
pub fn encode_pingreq(out: &mut [u8]) -> Result<usize, EncodeError> {
    encode_empty(kind::PINGREQ, out)
}

/// Writes a PINGRESP packet (2 bytes; for tests and test brokers).
///
/// # Errors
/// [`EncodeError::BufferTooSmall`].
pub fn encode_pingresp(out: &mut [u8]) -> Result<usize, EncodeError> {
    encode_empty(kind::PINGRESP, out)
}

/// Writes a DISCONNECT packet (2 bytes).
///
/// # Errors
/// [`EncodeError::BufferTooSmall`].
pub fn encode_disconnect(out: &mut [u8]) -> Result<usize, EncodeError> {
    encode_empty(kind::DISCONNECT, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn encoded(encode: impl FnOnce(&mut [u8]) -> Result<usize, EncodeError>) -> Vec<u8> {
        let mut out = [0u8; 512];
        let len = encode(&mut out).unwrap();
        out[..len].to_vec()
    }

    fn decoded(bytes: &[u8]) -> Packet<'_> {
        match decode(bytes).unwrap() {
            Decoded::Packet { packet, len } => {
                assert_eq!(len, bytes.len());
                packet
            }
            other => panic!("{other:?}"),
        }
    }

    /// Every strict prefix is `Incomplete`, never an error.
    fn assert_prefixes_incomplete(bytes: &[u8]) {
        for cut in 0..bytes.len() {
            match decode(&bytes[..cut]) {
                Ok(Decoded::Incomplete { required }) => {
                    if let Some(required) = required {
                        assert_eq!(required, bytes.len());
                    }
                }
                other => panic!("prefix {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn connect_matches_the_spec_example() {
        // What paho (upparat) sends: "MQTT" level 4, clean session,
        // keep-alive 60, client id "upparat".
        let bytes = encoded(|out| {
            encode_connect(
                &Connect {
                    client_id: "upparat",
                    keep_alive_secs: 60,
                    clean_session: true,
                    username: None,
                    password: None,
                },
                out,
            )
        });
        assert_eq!(
            bytes,
            b"\x10\x13\x00\x04MQTT\x04\x02\x00\x3c\x00\x07upparat".to_vec()
        );
        assert_prefixes_incomplete(&bytes);
        let Packet::Connect(connect) = decoded(&bytes) else {
            panic!()
        };
        assert_eq!(connect.client_id, "upparat");
        assert_eq!(connect.keep_alive_secs, 60);
        assert!(connect.clean_session);
    }

    #[test]
    fn connect_with_login_round_trips() {
        let connect = Connect {
            client_id: "thing",
            keep_alive_secs: 0,
            clean_session: false,
            username: Some("user"),
            password: Some(b"secret"),
        };
        let bytes = encoded(|out| encode_connect(&connect, out));
        assert_eq!(decoded(&bytes), Packet::Connect(connect));
        let no_user = Connect {
            username: None,
            ..connect
        };
        assert_eq!(
            encode_connect(&no_user, &mut [0; 64]),
            Err(EncodeError::InvalidField)
        );
    }

    #[test]
    fn publish_round_trips_and_reports_size() {
        let publish = Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "$aws/things/t/jobs/get",
            packet_id: Some(7),
            payload: b"{}",
        };
        let bytes = encoded(|out| encode_publish(&publish, out));
        assert_eq!(bytes[0], 0x3a);
        assert_eq!(decoded(&bytes), Packet::Publish(publish));
        assert_prefixes_incomplete(&bytes);
        assert_eq!(
            encode_publish(&publish, &mut [0; 4]),
            Err(EncodeError::BufferTooSmall {
                required: bytes.len()
            })
        );
        let qos0_with_id = Publish {
            qos: QoS::AtMostOnce,
            ..publish
        };
        assert_eq!(
            encode_publish(&qos0_with_id, &mut [0; 64]),
            Err(EncodeError::InvalidField)
        );
    }

    #[test]
    fn large_remaining_length_uses_more_bytes() {
        let payload = [0x55u8; 300];
        let publish = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: "a",
            packet_id: None,
            payload: &payload,
        };
        let mut out = [0u8; 400];
        let len = encode_publish(&publish, &mut out).unwrap();
        // 3 + 300 = 303 = 0xAF 0x02.
        assert_eq!(&out[..3], &[0x31, 0xaf, 0x02]);
        assert_eq!(len, 306);
        assert_eq!(decoded(&out[..len]), Packet::Publish(publish));
    }

    #[test]
    fn small_packets_round_trip() {
        let subscribe = encoded(|out| {
            encode_subscribe(
                3,
                &[("a/+", QoS::AtLeastOnce), ("b/#", QoS::AtMostOnce)],
                out,
            )
        });
        let Packet::Subscribe { packet_id, filters } = decoded(&subscribe) else {
            panic!()
        };
        assert_eq!(packet_id, 3);
        assert_eq!(filters.iter().collect::<Vec<_>>(), [("a/+", 1), ("b/#", 0)]);
        let unsubscribe = encoded(|out| encode_unsubscribe(4, &["a/+"], out));
        let Packet::Unsubscribe { filters, .. } = decoded(&unsubscribe) else {
            panic!()
        };
        assert_eq!(filters.iter().collect::<Vec<_>>(), [("a/+", 0)]);
        let suback = encoded(|out| encode_suback(3, &[1, 0x80], out));
        assert_eq!(
            decoded(&suback),
            Packet::SubAck {
                packet_id: 3,
                return_codes: &[1, 0x80]
            }
        );
        assert_eq!(
            decoded(&encoded(|o| encode_puback(9, o))),
            Packet::PubAck(9)
        );
        assert_eq!(
            decoded(&encoded(|o| encode_unsuback(9, o))),
            Packet::UnsubAck(9)
        );
        assert_eq!(decoded(&encoded(encode_pingreq)), Packet::PingReq);
        assert_eq!(decoded(&encoded(encode_pingresp)), Packet::PingResp);
        assert_eq!(decoded(&encoded(encode_disconnect)), Packet::Disconnect);
        assert_eq!(
            decoded(&encoded(|o| encode_connack(
                true,
                ConnectReturnCode::NotAuthorized,
                o
            ))),
            Packet::ConnAck {
                session_present: true,
                code: ConnectReturnCode::NotAuthorized
            }
        );
        assert_eq!(
            encode_puback(0, &mut [0; 4]),
            Err(EncodeError::InvalidField)
        );
        assert_eq!(
            encode_subscribe(1, &[], &mut [0; 4]),
            Err(EncodeError::InvalidField)
        );
    }

    #[test]
    fn malformed_packets_are_errors() {
        let cases: &[(&[u8], DecodeError)] = &[
            (b"\x30\xff\xff\xff\xff\x01", DecodeError::MalformedLength),
            (b"\x00\x00", DecodeError::UnsupportedType(0)),
            (b"\xf0\x00", DecodeError::UnsupportedType(15)),
            (b"\x50\x02\x00\x01", DecodeError::UnsupportedType(5)),
            (b"\x34\x00", DecodeError::UnsupportedQos(2)),
            (b"\x36\x00", DecodeError::UnsupportedQos(3)),
            (b"\x80\x00", DecodeError::InvalidFlags(0x80)),
            (b"\xc1\x00", DecodeError::InvalidFlags(0xc1)),
            (b"\x40\x02\x00\x00", DecodeError::ZeroPacketId),
            (b"\x40\x03\x00\x01\x00", DecodeError::TrailingBytes),
            (b"\x40\x01\x00", DecodeError::Truncated),
            (b"\x20\x02\x02\x00", DecodeError::InvalidField),
            // Topic length 5 in a 3-byte body.
            (b"\x30\x03\x00\x05a", DecodeError::Truncated),
            (b"\x30\x03\x00\x01\xff", DecodeError::InvalidString),
            (b"\x30\x03\x00\x01\x00", DecodeError::InvalidString),
            // SUBSCRIBE with requested QoS 3, and with no filter.
            (b"\x82\x06\x00\x01\x00\x01a\x03", DecodeError::InvalidField),
            (b"\x82\x02\x00\x01", DecodeError::InvalidField),
            (
                b"\x10\x0a\x00\x04MQTT\x03\x02\x00\x00",
                DecodeError::InvalidConnect,
            ),
        ];
        for (bytes, error) in cases {
            assert_eq!(decode(bytes), Err(*error), "{bytes:x?}");
        }
    }

    #[test]
    fn bad_type_is_refused_before_the_body_arrives() {
        // A huge remaining length with a reserved type fails at once
        // instead of waiting for 268 MB.
        assert_eq!(
            decode(b"\x00\xff\xff\xff\x7f"),
            Err(DecodeError::UnsupportedType(0))
        );
        assert_eq!(
            decode(b"\x30\xff\xff\xff\x7f"),
            Ok(Decoded::Incomplete {
                required: Some(5 + MAX_REMAINING_LENGTH)
            })
        );
    }

    #[test]
    fn oversized_packets_are_refused_when_encoding() {
        assert_eq!(
            string_len(core::str::from_utf8(&[b'a'; 70_000]).unwrap()),
            Err(EncodeError::InvalidString)
        );
        let mut writer = Writer::new(&mut []);
        assert_eq!(
            writer.header(0x30, MAX_REMAINING_LENGTH + 1),
            Err(EncodeError::TooLarge)
        );
    }
}
