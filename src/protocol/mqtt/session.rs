//! The sans-IO MQTT client session: bytes in, bytes and events out.
//!
//! The host owns the socket (TCP + TLS) and the clock. It loops:
//!
//! ```text
//! connect(now, out)            -> write out[..n] to a fresh connection
//! loop {
//!     read bytes               -> handle_bytes(now, bytes) until all are consumed,
//!                                 acting on each returned Event
//!     poll_transmit(now, out)  -> write each Some(n) until None
//!     handle_timeout(now)      -> Err: close the socket, reconnect later
//!     sleep until poll_at() or readable
//! }
//! ```
//!
//! | timer | deadline | on expiry |
//! |---|---|---|
//! | CONNACK | `connect` + `response_timeout_ms` | [`SessionError::ConnAckTimeout`] |
//! | keep-alive | oldest of last sent / last received + keep-alive | PINGREQ from [`Session::poll_transmit`] |
//! | dead connection | last received + 1.5 × keep-alive | [`SessionError::KeepAliveTimeout`] |
//! | QoS 1 retransmit | sent + `response_timeout_ms` (if not 0) | PUBLISH resent with DUP |
//!
//! Unacknowledged QoS 1 publishes survive a reconnect: after the next
//! CONNACK they are resent with DUP set, oldest first (MQTT 3.1.1 section
//! 4.4). Incoming QoS 1 publishes are acknowledged automatically; a
//! redelivered one (DUP) is handed out again, so handlers must be
//! idempotent (AWS IoT Jobs messages are).

use super::{
    check_type, decode_body, encode_connect, encode_disconnect, encode_pingreq, encode_puback,
    encode_publish, encode_subscribe, encode_unsubscribe, fixed_header, Connect, ConnectReturnCode,
    DecodeError, EncodeError, Packet, Publish, QoS, MAX_FIXED_HEADER_LEN, MAX_IN_FLIGHT,
    MAX_PENDING_ACKS,
};
use crate::agent::Instant;
use heapless::{Deque, Vec};

/// How the session connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig<'c> {
    /// MQTT client id (upparat's default: `upparat`).
    pub client_id: &'c str,
    /// Keep-alive in seconds; 0 turns pings and dead-connection detection
    /// off. paho's (and so upparat's) default is 60.
    pub keep_alive_secs: u16,
    /// Ask the broker for a new session (paho's default: true).
    pub clean_session: bool,
    /// Optional user name.
    pub username: Option<&'c str>,
    /// Optional password (needs a user name).
    pub password: Option<&'c [u8]>,
    /// How long to wait for CONNACK and for a PUBACK before resending the
    /// PUBLISH with DUP. 0 waits forever for a PUBACK (resends only after
    /// a reconnect) and for CONNACK until the keep-alive expires.
    pub response_timeout_ms: u64,
}

impl<'c> SessionConfig<'c> {
    /// Keep-alive 60 s, clean session, no login, 10 s response timeout.
    pub const fn new(client_id: &'c str) -> Self {
        Self {
            client_id,
            keep_alive_secs: 60,
            clean_session: true,
            username: None,
            password: None,
            response_timeout_ms: 10_000,
        }
    }
}

/// Caller-owned storage of a [`Session`].
#[derive(Debug)]
pub struct SessionBuffers<'b> {
    /// Holds one incoming packet while it arrives; the largest packet the
    /// session accepts is this long (an AWS IoT job document is at most
    /// 32 KiB, plus topic and header).
    pub receive: &'b mut [u8],
    /// Holds the encoded unacknowledged QoS 1 publishes for resending.
    pub in_flight: &'b mut [u8],
}

/// Where the session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// No connection: call [`Session::connect`] after opening one.
    Disconnected,
    /// CONNECT written, waiting for CONNACK.
    Connecting,
    /// CONNACK accepted.
    Connected,
}

/// Something the broker said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The broker accepted the connection.
    Connected {
        /// The broker kept the previous session's subscriptions.
        session_present: bool,
    },
    /// The broker refused the connection; the session is disconnected.
    ConnectionRefused(ConnectReturnCode),
    /// A message on a subscribed topic (acknowledged automatically).
    Publish {
        /// The topic it was published to.
        topic: &'a str,
        /// The message.
        payload: &'a [u8],
        /// Its QoS.
        qos: QoS,
        /// A retained message.
        retain: bool,
        /// Possibly a redelivery.
        dup: bool,
    },
    /// A SUBSCRIBE was answered: one code per filter, 0x80 = refused.
    SubAck {
        /// The id [`Session::subscribe`] returned.
        packet_id: u16,
        /// Granted QoS (0, 1) or 0x80 per filter.
        return_codes: &'a [u8],
    },
    /// An UNSUBSCRIBE was answered.
    UnsubAck {
        /// The id [`Session::unsubscribe`] returned.
        packet_id: u16,
    },
    /// A QoS 1 publish was acknowledged (and is forgotten).
    PubAck {
        /// The id [`Session::publish`] returned.
        packet_id: u16,
    },
    /// PINGRESP.
    Pong,
}

/// What one [`Session::handle_bytes`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received<'a> {
    /// Bytes of the input taken; call again with the rest.
    pub consumed: usize,
    /// The packet completed by these bytes, if any.
    pub event: Option<Event<'a>>,
}

/// Why the session cannot go on. Except for [`Self::InFlightFull`],
/// [`Self::AckBacklog`], [`Self::NotConnected`] and [`Self::Encode`],
/// the session is disconnected afterwards and the host must close the
/// socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// The call needs a connected session.
    NotConnected,
    /// The broker sent an invalid packet.
    Decode(DecodeError),
    /// A packet could not be written (output buffer too small ...).
    Encode(EncodeError),
    /// An incoming packet does not fit the receive buffer.
    PacketTooLarge {
        /// Receive buffer size the packet needs.
        required: usize,
    },
    /// A valid packet at the wrong time (a server-only packet, anything
    /// but CONNACK before CONNACK, a second CONNACK).
    ProtocolViolation,
    /// [`super::MAX_IN_FLIGHT`] QoS 1 publishes await PUBACK.
    InFlightFull,
    /// The in-flight buffer cannot hold this publish next to the others.
    InFlightBufferTooSmall {
        /// Bytes the publish needs in the buffer.
        required: usize,
    },
    /// PUBACKs are queued: drain [`Session::poll_transmit`] and retry.
    AckBacklog,
    /// No CONNACK within the response timeout.
    ConnAckTimeout,
    /// Nothing received for 1.5 × keep-alive.
    KeepAliveTimeout,
}

impl core::fmt::Display for SessionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotConnected => f.write_str("the MQTT session is not connected"),
            Self::Decode(error) => write!(f, "invalid packet from the MQTT broker: {error}"),
            Self::Encode(error) => write!(f, "cannot write MQTT packet: {error}"),
            Self::PacketTooLarge { required } => write!(
                f,
                "incoming MQTT packet needs a receive buffer of {required} bytes"
            ),
            Self::ProtocolViolation => f.write_str("the MQTT broker broke the protocol"),
            Self::InFlightFull => f.write_str("too many unacknowledged MQTT publishes"),
            Self::InFlightBufferTooSmall { required } => {
                write!(f, "the MQTT in-flight buffer needs {required} more bytes")
            }
            Self::AckBacklog => f.write_str("MQTT acknowledgements wait to be sent"),
            Self::ConnAckTimeout => f.write_str("the MQTT broker did not answer CONNECT"),
            Self::KeepAliveTimeout => f.write_str("the MQTT connection went silent"),
        }
    }
}

impl core::error::Error for SessionError {}

impl From<EncodeError> for SessionError {
    fn from(error: EncodeError) -> Self {
        Self::Encode(error)
    }
}

/// One unacknowledged QoS 1 publish, encoded at `start..start + len` of
/// the in-flight buffer.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    packet_id: u16,
    start: usize,
    len: usize,
    /// When it was last written; `None` = to be (re)sent.
    sent_at: Option<Instant>,
}

/// A sans-IO MQTT 3.1.1 client session (QoS 0 and 1).
///
/// Bounded work per call: one packet in, or one packet out.
#[derive(Debug)]
pub struct Session<'b> {
    config: SessionConfig<'b>,
    receive: &'b mut [u8],
    received_len: usize,
    /// `receive[..received_len]` is a packet already handed out.
    packet_done: bool,
    store: &'b mut [u8],
    store_len: usize,
    in_flight: Vec<InFlight, MAX_IN_FLIGHT>,
    pending_acks: Deque<u16, MAX_PENDING_ACKS>,
    state: SessionState,
    connect_sent_at: Instant,
    last_sent: Instant,
    last_received: Instant,
    ping_outstanding: bool,
    last_packet_id: u16,
}

impl<'b> Session<'b> {
    /// A disconnected session.
    pub fn new(config: SessionConfig<'b>, buffers: SessionBuffers<'b>) -> Self {
        Self {
            config,
            receive: buffers.receive,
            received_len: 0,
            packet_done: false,
            store: buffers.in_flight,
            store_len: 0,
            in_flight: Vec::new(),
            pending_acks: Deque::new(),
            state: SessionState::Disconnected,
            connect_sent_at: Instant::default(),
            last_sent: Instant::default(),
            last_received: Instant::default(),
            ping_outstanding: false,
            last_packet_id: 0,
        }
    }

    /// Where the session is.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// QoS 1 publishes not yet acknowledged.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Starts a connection: writes CONNECT into `out` and returns its
    /// length. Call on every new socket; unacknowledged publishes are
    /// resent after CONNACK.
    ///
    /// # Errors
    /// [`SessionError::Encode`] (output buffer too small, bad client id).
    pub fn connect(&mut self, now: Instant, out: &mut [u8]) -> Result<usize, SessionError> {
        let connect = Connect {
            client_id: self.config.client_id,
            keep_alive_secs: self.config.keep_alive_secs,
            clean_session: self.config.clean_session,
            username: self.config.username,
            password: self.config.password,
        };
        let len = encode_connect(&connect, out)?;
        self.received_len = 0;
        self.packet_done = false;
        // PUBACKs owed on the old connection are lost; the broker
        // redelivers those publishes.
        self.pending_acks.clear();
        for entry in self.in_flight.iter_mut() {
            entry.sent_at = None;
        }
        self.state = SessionState::Connecting;
        self.connect_sent_at = now;
        self.last_sent = now;
        self.last_received = now;
        self.ping_outstanding = false;
        Ok(len)
    }

    /// The host lost the connection (socket closed, TLS error).
    pub fn handle_connection_lost(&mut self) {
        self.state = SessionState::Disconnected;
    }

    /// Writes DISCONNECT into `out` and ends the session's connection.
    ///
    /// # Errors
    /// [`SessionError::NotConnected`]; [`SessionError::Encode`].
    pub fn disconnect(&mut self, out: &mut [u8]) -> Result<usize, SessionError> {
        if self.state == SessionState::Disconnected {
            return Err(SessionError::NotConnected);
        }
        let len = encode_disconnect(out)?;
        self.state = SessionState::Disconnected;
        Ok(len)
    }

    fn next_packet_id(&mut self) -> u16 {
        // At most MAX_IN_FLIGHT + 1 candidates are tried.
        loop {
            self.last_packet_id = self.last_packet_id.wrapping_add(1).max(1);
            let id = self.last_packet_id;
            if !self.in_flight.iter().any(|entry| entry.packet_id == id) {
                return id;
            }
        }
    }

    /// Writes SUBSCRIBE for `filters` into `out`; returns the packet id
    /// (matched by [`Event::SubAck`]) and the length.
    ///
    /// # Errors
    /// [`SessionError::NotConnected`]; [`SessionError::Encode`].
    pub fn subscribe(
        &mut self,
        now: Instant,
        filters: &[(&str, QoS)],
        out: &mut [u8],
    ) -> Result<(u16, usize), SessionError> {
        self.require_connected()?;
        let packet_id = self.next_packet_id();
        let len = encode_subscribe(packet_id, filters, out)?;
        self.last_sent = now;
        Ok((packet_id, len))
    }

    /// Writes UNSUBSCRIBE for `filters` into `out`; returns the packet id
    /// (matched by [`Event::UnsubAck`]) and the length.
    ///
    /// # Errors
    /// [`SessionError::NotConnected`]; [`SessionError::Encode`].
    pub fn unsubscribe(
        &mut self,
        now: Instant,
        filters: &[&str],
        out: &mut [u8],
    ) -> Result<(u16, usize), SessionError> {
        self.require_connected()?;
        let packet_id = self.next_packet_id();
        let len = encode_unsubscribe(packet_id, filters, out)?;
        self.last_sent = now;
        Ok((packet_id, len))
    }

    /// Publishes `payload` to `topic`. Writes the PUBLISH into `out` and
    /// returns the packet id (QoS 1) and the length to send now.
    ///
    /// A QoS 1 publish is also kept in the in-flight buffer until its
    /// PUBACK; while disconnected it is only kept (length 0) and sent
    /// after the next CONNACK.
    ///
    /// # Errors
    /// [`SessionError::NotConnected`] for QoS 0 while not connected;
    /// [`SessionError::InFlightFull`]; [`SessionError::InFlightBufferTooSmall`];
    /// [`SessionError::Encode`].
    pub fn publish(
        &mut self,
        now: Instant,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        out: &mut [u8],
    ) -> Result<(Option<u16>, usize), SessionError> {
        let connected = self.state == SessionState::Connected;
        if qos == QoS::AtMostOnce {
            self.require_connected()?;
            let publish = Publish {
                dup: false,
                qos,
                retain: false,
                topic,
                packet_id: None,
                payload,
            };
            let len = encode_publish(&publish, out)?;
            self.last_sent = now;
            return Ok((None, len));
        }
        if self.in_flight.is_full() {
            return Err(SessionError::InFlightFull);
        }
        // A placeholder id sizes the packet; the real one is taken once
        // it fits, so a refused publish uses no id.
        let probe = Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id: Some(1),
            payload,
        };
        let free = self.store.get_mut(self.store_len..).unwrap_or(&mut []);
        let len = match encode_publish(&probe, free) {
            Ok(len) => len,
            Err(EncodeError::BufferTooSmall { required }) => {
                return Err(SessionError::InFlightBufferTooSmall { required })
            }
            Err(other) => return Err(other.into()),
        };
        let start = self.store_len;
        let end = start.saturating_add(len);
        let packet_id = self.next_packet_id();
        // The id sits right after the topic: header, 2-byte length, topic.
        let id_at = len
            .saturating_sub(payload.len())
            .saturating_sub(2)
            .saturating_add(start);
        if let Some(slot) = self.store.get_mut(id_at..id_at.saturating_add(2)) {
            slot.copy_from_slice(&packet_id.to_be_bytes());
        }
        let mut written = 0;
        if connected {
            let stored = self.store.get(start..end).unwrap_or(&[]);
            let slot =
                out.get_mut(..len)
                    .ok_or(SessionError::Encode(EncodeError::BufferTooSmall {
                        required: len,
                    }))?;
            slot.copy_from_slice(stored);
            written = len;
            self.last_sent = now;
        }
        self.store_len = end;
        let entry = InFlight {
            packet_id,
            start,
            len,
            sent_at: connected.then_some(now),
        };
        // Cannot fail: fullness was checked above.
        let _ = self.in_flight.push(entry);
        Ok((Some(packet_id), written))
    }

    fn require_connected(&self) -> Result<(), SessionError> {
        if self.state == SessionState::Connected {
            Ok(())
        } else {
            Err(SessionError::NotConnected)
        }
    }

    fn fail(&mut self, error: SessionError) -> SessionError {
        self.state = SessionState::Disconnected;
        error
    }

    /// Feeds bytes read from the connection. Takes bytes up to the end of
    /// the next packet and returns how many it took and the packet's
    /// event, if it completed. Any split of the stream works; call again
    /// with the rest, and drain [`Self::poll_transmit`] after each event.
    ///
    /// # Errors
    /// [`SessionError::AckBacklog`] (nothing taken: drain
    /// [`Self::poll_transmit`] first); [`SessionError::NotConnected`];
    /// fatal: [`SessionError::Decode`], [`SessionError::PacketTooLarge`],
    /// [`SessionError::ProtocolViolation`].
    pub fn handle_bytes(
        &mut self,
        now: Instant,
        data: &[u8],
    ) -> Result<Received<'_>, SessionError> {
        if self.state == SessionState::Disconnected {
            return Err(SessionError::NotConnected);
        }
        if self.pending_acks.is_full() {
            return Err(SessionError::AckBacklog);
        }
        if self.packet_done {
            self.received_len = 0;
            self.packet_done = false;
        }
        let mut consumed = 0usize;
        // The fixed header arrives one byte at a time (at most five).
        let total = loop {
            let have = self.receive.get(..self.received_len).unwrap_or(&[]);
            match fixed_header(have) {
                Err(error) => return Err(self.fail(SessionError::Decode(error))),
                Ok(Some((first, header_len, remaining))) => {
                    if let Err(error) = check_type(first) {
                        return Err(self.fail(SessionError::Decode(error)));
                    }
                    break header_len.saturating_add(remaining);
                }
                Ok(None) => {
                    let Some(&byte) = data.get(consumed) else {
                        return Ok(Received {
                            consumed,
                            event: None,
                        });
                    };
                    let Some(slot) = self.receive.get_mut(self.received_len) else {
                        return Err(self.fail(SessionError::PacketTooLarge {
                            required: MAX_FIXED_HEADER_LEN,
                        }));
                    };
                    *slot = byte;
                    self.received_len += 1;
                    consumed += 1;
                    self.last_received = now;
                }
            }
        };
        if total > self.receive.len() {
            return Err(self.fail(SessionError::PacketTooLarge { required: total }));
        }
        let wanted = total.saturating_sub(self.received_len);
        let input = data.get(consumed..).unwrap_or(&[]);
        let take = wanted.min(input.len());
        if let (Some(slot), Some(bytes)) = (
            self.receive
                .get_mut(self.received_len..self.received_len.saturating_add(take)),
            input.get(..take),
        ) {
            slot.copy_from_slice(bytes);
        }
        self.received_len = self.received_len.saturating_add(take);
        consumed = consumed.saturating_add(take);
        if take > 0 {
            self.last_received = now;
        }
        if self.received_len < total {
            return Ok(Received {
                consumed,
                event: None,
            });
        }
        self.packet_done = true;
        self.handle_packet(total, consumed)
    }

    fn handle_packet(
        &mut self,
        total: usize,
        consumed: usize,
    ) -> Result<Received<'_>, SessionError> {
        let first = self.receive.first().copied().unwrap_or(0);
        let header_len = match fixed_header(self.receive.get(..total).unwrap_or(&[])) {
            Ok(Some((_, header_len, _))) => header_len,
            _ => return Err(self.fail(SessionError::Decode(DecodeError::Truncated))),
        };
        let body = self.receive.get(header_len..total).unwrap_or(&[]);
        let packet = match decode_body(first, body) {
            Ok(packet) => packet,
            Err(error) => {
                self.state = SessionState::Disconnected;
                return Err(SessionError::Decode(error));
            }
        };
        if self.state == SessionState::Connecting {
            let Packet::ConnAck {
                session_present,
                code,
            } = packet
            else {
                self.state = SessionState::Disconnected;
                return Err(SessionError::ProtocolViolation);
            };
            let event = if code == ConnectReturnCode::Accepted {
                self.state = SessionState::Connected;
                Event::Connected { session_present }
            } else {
                self.state = SessionState::Disconnected;
                Event::ConnectionRefused(code)
            };
            return Ok(Received {
                consumed,
                event: Some(event),
            });
        }
        let event = match packet {
            Packet::Publish(publish) => {
                if let Some(packet_id) = publish.packet_id {
                    // Cannot fail: fullness was checked on entry.
                    let _ = self.pending_acks.push_back(packet_id);
                }
                Event::Publish {
                    topic: publish.topic,
                    payload: publish.payload,
                    qos: publish.qos,
                    retain: publish.retain,
                    dup: publish.dup,
                }
            }
            Packet::PubAck(packet_id) => {
                release(
                    self.store,
                    &mut self.store_len,
                    &mut self.in_flight,
                    packet_id,
                );
                Event::PubAck { packet_id }
            }
            Packet::SubAck {
                packet_id,
                return_codes,
            } => Event::SubAck {
                packet_id,
                return_codes,
            },
            Packet::UnsubAck(packet_id) => Event::UnsubAck { packet_id },
            Packet::PingResp => {
                self.ping_outstanding = false;
                Event::Pong
            }
            _ => {
                self.state = SessionState::Disconnected;
                return Err(SessionError::ProtocolViolation);
            }
        };
        Ok(Received {
            consumed,
            event: Some(event),
        })
    }

    /// Writes the next automatic packet into `out`: a PUBACK owed, a QoS 1
    /// publish to resend (DUP set), or a keep-alive PINGREQ. Returns its
    /// length, or `None` when nothing is due. One packet per call.
    ///
    /// # Errors
    /// [`SessionError::Encode`] when `out` is too small (nothing is lost;
    /// retry with a larger buffer).
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        out: &mut [u8],
    ) -> Result<Option<usize>, SessionError> {
        if self.state != SessionState::Connected {
            return Ok(None);
        }
        if let Some(&packet_id) = self.pending_acks.front() {
            let len = encode_puback(packet_id, out)?;
            self.pending_acks.pop_front();
            self.last_sent = now;
            return Ok(Some(len));
        }
        let timeout = self.config.response_timeout_ms;
        let due = self.in_flight.iter_mut().find(|entry| match entry.sent_at {
            None => true,
            Some(sent) => timeout > 0 && now >= sent.after(timeout),
        });
        if let Some(entry) = due {
            let stored = self
                .store
                .get(entry.start..entry.start.saturating_add(entry.len))
                .unwrap_or(&[]);
            let slot = out.get_mut(..entry.len).ok_or(SessionError::Encode(
                EncodeError::BufferTooSmall {
                    required: entry.len,
                },
            ))?;
            slot.copy_from_slice(stored);
            if let Some(first) = slot.first_mut() {
                *first |= 0b1000;
            }
            entry.sent_at = Some(now);
            self.last_sent = now;
            return Ok(Some(entry.len));
        }
        if let Some(ping_at) = self.ping_due() {
            if now >= ping_at {
                let len = encode_pingreq(out)?;
                self.ping_outstanding = true;
                self.last_sent = now;
                return Ok(Some(len));
            }
        }
        Ok(None)
    }

    fn keep_alive_ms(&self) -> u64 {
        u64::from(self.config.keep_alive_secs) * 1000
    }

    fn ping_due(&self) -> Option<Instant> {
        let keep_alive = self.keep_alive_ms();
        if keep_alive == 0 || self.ping_outstanding || self.state != SessionState::Connected {
            return None;
        }
        Some(self.last_sent.min(self.last_received).after(keep_alive))
    }

    fn dead_at(&self) -> Option<Instant> {
        let keep_alive = self.keep_alive_ms();
        (keep_alive > 0).then(|| self.last_received.after(keep_alive + keep_alive / 2))
    }

    fn connack_deadline(&self) -> Option<Instant> {
        let timeout = self.config.response_timeout_ms;
        (timeout > 0).then(|| self.connect_sent_at.after(timeout))
    }

    /// Checks the connection's timers.
    ///
    /// # Errors
    /// [`SessionError::ConnAckTimeout`] or
    /// [`SessionError::KeepAliveTimeout`]: the session is disconnected,
    /// close the socket and reconnect (with a back-off).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        let expired = |deadline: Option<Instant>| deadline.is_some_and(|at| now >= at);
        match self.state {
            SessionState::Connecting
                if expired(self.connack_deadline()) || expired(self.dead_at()) =>
            {
                Err(self.fail(SessionError::ConnAckTimeout))
            }
            SessionState::Connected if expired(self.dead_at()) => {
                Err(self.fail(SessionError::KeepAliveTimeout))
            }
            _ => Ok(()),
        }
    }

    /// When to call [`Self::handle_timeout`] and [`Self::poll_transmit`]
    /// next (`None`: only when bytes arrive). Work already due (owed
    /// PUBACKs, resends after CONNACK) is not counted: drain
    /// [`Self::poll_transmit`] after every input.
    pub fn poll_at(&self) -> Option<Instant> {
        let earliest = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        };
        match self.state {
            SessionState::Disconnected => None,
            SessionState::Connecting => earliest(self.connack_deadline(), self.dead_at()),
            SessionState::Connected => {
                let timeout = self.config.response_timeout_ms;
                let resend = if timeout == 0 {
                    None
                } else {
                    self.in_flight
                        .iter()
                        .filter_map(|entry| entry.sent_at.map(|sent| sent.after(timeout)))
                        .min()
                };
                earliest(earliest(self.ping_due(), self.dead_at()), resend)
            }
        }
    }
}

/// Forgets the in-flight publish `packet_id` and closes the gap it left
/// in the buffer.
fn release(
    store: &mut [u8],
    store_len: &mut usize,
    in_flight: &mut Vec<InFlight, MAX_IN_FLIGHT>,
    packet_id: u16,
) {
    let Some(index) = in_flight
        .iter()
        .position(|entry| entry.packet_id == packet_id)
    else {
        return;
    };
    let removed = in_flight.remove(index);
    let gap_end = removed.start.saturating_add(removed.len);
    if gap_end <= *store_len && gap_end <= store.len() {
        store.copy_within(gap_end..*store_len, removed.start);
    }
    *store_len = store_len.saturating_sub(removed.len);
    for entry in in_flight.iter_mut() {
        if entry.start > removed.start {
            entry.start = entry.start.saturating_sub(removed.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode, encode_connack, encode_publish, encode_suback, Decoded};
    use super::*;
    use std::vec::Vec;

    const T0: Instant = Instant::from_millis(1_000_000);

    fn at(ms: u64) -> Instant {
        T0.after(ms)
    }

    struct Fixture {
        receive: [u8; 256],
        in_flight: [u8; 256],
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                receive: [0; 256],
                in_flight: [0; 256],
            }
        }

        fn session(&mut self) -> Session<'_> {
            let mut config = SessionConfig::new("upparat");
            config.keep_alive_secs = 10;
            config.response_timeout_ms = 2_000;
            Session::new(
                config,
                SessionBuffers {
                    receive: &mut self.receive,
                    in_flight: &mut self.in_flight,
                },
            )
        }
    }

    fn packet(encode: impl FnOnce(&mut [u8]) -> Result<usize, EncodeError>) -> Vec<u8> {
        let mut out = [0u8; 256];
        let len = encode(&mut out).unwrap();
        out[..len].to_vec()
    }

    /// Feeds all of `bytes` and collects what the events said, as text.
    fn feed(session: &mut Session<'_>, now: Instant, mut bytes: &[u8]) -> Vec<std::string::String> {
        let mut events = Vec::new();
        while !bytes.is_empty() {
            let received = session.handle_bytes(now, bytes).unwrap();
            assert!(received.consumed > 0 || received.event.is_some());
            if let Some(event) = received.event {
                events.push(std::format!("{event:?}"));
            }
            bytes = &bytes[received.consumed..];
        }
        events
    }

    fn transmit(session: &mut Session<'_>, now: Instant) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        let mut out = [0u8; 256];
        while let Some(len) = session.poll_transmit(now, &mut out).unwrap() {
            sent.push(out[..len].to_vec());
        }
        sent
    }

    fn connected(session: &mut Session<'_>) {
        let mut out = [0u8; 64];
        session.connect(T0, &mut out).unwrap();
        let events = feed(
            session,
            T0,
            &packet(|o| encode_connack(false, ConnectReturnCode::Accepted, o)),
        );
        assert_eq!(events, ["Connected { session_present: false }"]);
        assert_eq!(session.state(), SessionState::Connected);
    }

    #[test]
    fn connects_subscribes_and_receives_byte_by_byte() {
        let mut fixture = Fixture::new();
        let mut session = fixture.session();
        let mut out = [0u8; 64];
        let len = session.connect(T0, &mut out).unwrap();
        assert!(matches!(
            decode(&out[..len]),
            Ok(Decoded::Packet {
                packet: Packet::Connect(_),
                ..
            })
        ));
        let connack = packet(|o| encode_connack(false, ConnectReturnCode::Accepted, o));
        for byte in &connack[..connack.len() - 1] {
            let received = session
                .handle_bytes(T0, core::slice::from_ref(byte))
                .unwrap();
            assert_eq!(
                received,
                Received {
                    consumed: 1,
                    event: None
                }
            );
        }
        let received = session
            .handle_bytes(T0, &connack[connack.len() - 1..])
            .unwrap();
        assert_eq!(
            received.event,
            Some(Event::Connected {
                session_present: false
            })
        );

        let (packet_id, len) = session
            .subscribe(
                T0,
                &[("$aws/things/t/jobs/notify", QoS::AtLeastOnce)],
                &mut out,
            )
            .unwrap();
        assert!(len > 0);
        let suback = packet(|o| encode_suback(packet_id, &[1], o));
        let publish = packet(|o| {
            encode_publish(
                &Publish {
                    dup: false,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    topic: "$aws/things/t/jobs/notify",
                    packet_id: Some(0x1234),
                    payload: br#"{"jobs":{}}"#,
                },
                o,
            )
        });
        let stream: Vec<u8> = [suback, publish].concat();
        // Byte by byte: every split of the stream gives the same events.
        let mut events = Vec::new();
        for byte in &stream {
            events.extend(feed(&mut session, T0, core::slice::from_ref(byte)));
        }
        assert_eq!(events.len(), 2);
        assert!(events[0].starts_with("SubAck"));
        assert!(events[1].contains("$aws/things/t/jobs/notify"));
        // The QoS 1 publish is acknowledged automatically.
        assert_eq!(transmit(&mut session, T0), [b"\x40\x02\x12\x34".to_vec()]);
        // And with everything in one read.
        let events = feed(&mut session, T0, &stream);
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn refused_connection_reports_the_code() {
        let mut fixture = Fixture::new();
        let mut session = fixture.session();
        session.connect(T0, &mut [0; 64]).unwrap();
        let connack = packet(|o| encode_connack(false, ConnectReturnCode::NotAuthorized, o));
        let received = session.handle_bytes(T0, &connack).unwrap();
        assert_eq!(
            received.event,
            Some(Event::ConnectionRefused(ConnectReturnCode::NotAuthorized))
        );
        assert_eq!(session.state(), SessionState::Disconnected);
    }

    #[test]
    fn anything_but_connack_first_is_a_violation() {
        let mut fixture = Fixture::new();
        let mut session = fixture.session();
        session.connect(T0, &mut [0; 64]).unwrap();
        assert_eq!(
            session.handle_bytes(T0, b"\xd0\x00"),
            Err(SessionError::ProtocolViolation)
        );
        assert_eq!(session.state(), SessionState::Disconnected);
    }

    #[test]
    fn qos1_publish_is_resent_with_dup_until_acknowledged() {
        let mut fixture = Fixture::new();
        let mut session = fixture.session();
        connected(&mut session);
        let mut out = [0u8; 128];
        let (id1, len1) = session
            .publish(T0, "a/update", b"one", QoS::AtLeastOnce, &mut out)
            .unwrap();
        let first = out[..len1].to_vec();
        assert_eq!(first[0], 0x32);
        let (id2, _) = session
            .publish(T0, "b/update", b"two", QoS::AtLeastOnce, &mut out)
            .unwrap();
        assert_ne!(id1, id2);
        assert_eq!(session.in_flight_count(), 2);
        assert_eq!(session.poll_at(), Some(at(2_000)));
        assert!(transmit(&mut session, at(1_999)).is_empty());
        let resent = transmit(&mut session, at(2_000));
        assert_eq!(resent.len(), 2);
        assert_eq!(resent[0][0], 0x3a);
        assert_eq!(&resent[0][1..], &first[1..]);
        // PUBACK of the first: the second moves down and stays intact.
        feed(
            &mut session,
            at(2_100),
            &packet(|o| encode_puback(id1.unwrap(), o)),
        );
        assert_eq!(session.in_flight_count(), 1);
        let resent = transmit(&mut session, at(4_000));
        let Ok(Decoded::Packet {
            packet: Packet::Publish(publish),
            ..
        }) = decode(&resent[0])
        else {
            panic!()
        };
        assert_eq!(
            (publish.topic, publish.payload, publish.dup),
            ("b/update", &b"two"[..], true)
        );
        assert_eq!(publish.packet_id, id2);
    }

    #[test]
    fn unacknowledged_publishes_are_resent_after_reconnect() {
        let mut fixture = Fixture::new();
        let mut session = fixture.session();
        // Published while disconnected: kept, nothing to send yet.
        let (id, len) = session
            .publish(T0, "t", b"x", QoS::AtLeastOnce, &mut [0; 64])
            .unwrap();
        assert_eq!(len, 0);
        assert_eq!(
            session.publish(T0, "t", b"x", QoS::AtMostOnce, &mut [0; 64]),
            Err(SessionError::NotConnected)
        );
        connected(&mut session);
        let sent = transmit(&mut session, T0);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0][0], 0x3a);
        session.handle_connection_lost();
        connected(&mut session);
        assert_eq!(transmit(&mut session, T0).len(), 1);
        feed(&mut session, T0, &packet(|o| encode_puback(id.unwrap(), o)));
        assert_eq!(session.in_flight_count(), 0);
    }

    #[test]
    fn in_flight_limits_are_reported() {
        let mut fixture = Fixture::new();
        let mut session = fixture.session();
        connected(&mut session);
        let mut out = [0u8; 256];
        assert_eq!(
            session.publish(T0, "t", &[0; 300], QoS::AtLeastOnce, &mut out),
            Err(SessionError::InFlightBufferTooSmall { required: 308 })
        );
        for _ in 0..MAX_IN_FLIGHT {
            session
                .publish(T0, "t", b"p", QoS::AtLeastOnce, &mut out)
                .unwrap();
        }
        assert_eq!(
            session.publish(T0, "t", b"p", QoS::AtLeastOnce, &mut out),
            Err(SessionError::InFlightFull)
        );
    }

    #[test]
    fn keep_alive_pings_and_detects_a_dead_connection() {
        let mut fixture = Fixture::new();
        let mut session = fixture.session();
        connected(&mut session);
        assert_eq!(session.poll_at(), Some(at(10_000)));
        assert!(transmit(&mut session, at(9_999)).is_empty());
        assert_eq!(transmit(&mut session, at(10_000)), [b"\xc0\x00".to_vec()]);
        // One ping outstanding: the next deadline is the dead line.
        assert_eq!(session.poll_at(), Some(at(15_000)));
        assert!(transmit(&mut session, at(12_000)).is_empty());
        session.handle_timeout(at(14_999)).unwrap();
        assert_eq!(
            session.handle_timeout(at(15_000)),
            Err(SessionError::KeepAliveTimeout)
        );
        assert_eq!(session.state(), SessionState::Disconnected);
        assert_eq!(session.poll_at(), None);
    }

    #[test]
    fn pong_keeps_the_connection_alive() {
        let mut fixture = Fixture::new();
        let mut session = fixture.session();
        connected(&mut session);
        transmit(&mut session, at(10_000));
        assert_eq!(feed(&mut session, at(10_050), b"\xd0\x00"), ["Pong"]);
        session.handle_timeout(at(15_000)).unwrap();
        assert_eq!(session.poll_at(), Some(at(20_000)));
    }

    #[test]
    fn missing_connack_times_out() {
        let mut fixture = Fixture::new();
        let mut session = fixture.session();
        session.connect(T0, &mut [0; 64]).unwrap();
        assert_eq!(session.poll_at(), Some(at(2_000)));
        session.handle_timeout(at(1_999)).unwrap();
        assert_eq!(
            session.handle_timeout(at(2_000)),
            Err(SessionError::ConnAckTimeout)
        );
    }

    #[test]
    fn oversized_and_malformed_input_disconnects() {
        let mut fixture = Fixture::new();
        let mut session = fixture.session();
        connected(&mut session);
        assert_eq!(
            session.handle_bytes(T0, b"\x30\xff\x7f"),
            Err(SessionError::PacketTooLarge {
                required: 3 + 0x3fff
            })
        );
        assert_eq!(session.state(), SessionState::Disconnected);
        connected(&mut session);
        assert_eq!(
            session.handle_bytes(T0, b"\x30\xff\xff\xff\xff"),
            Err(SessionError::Decode(DecodeError::MalformedLength))
        );
        connected(&mut session);
        assert_eq!(
            session.handle_bytes(T0, b"\x82\x00"),
            Err(SessionError::Decode(DecodeError::Truncated))
        );
        connected(&mut session);
        assert_eq!(
            session.handle_bytes(T0, b"\x20\x02\x00\x00"),
            Err(SessionError::ProtocolViolation)
        );
    }

    #[test]
    fn ack_backlog_stops_input_until_drained() {
        let mut fixture = Fixture::new();
        let mut session = fixture.session();
        connected(&mut session);
        let mut stream = Vec::new();
        for id in 1..=(MAX_PENDING_ACKS as u16 + 1) {
            stream.extend(packet(|o| {
                encode_publish(
                    &Publish {
                        dup: false,
                        qos: QoS::AtLeastOnce,
                        retain: false,
                        topic: "t",
                        packet_id: Some(id),
                        payload: b"",
                    },
                    o,
                )
            }));
        }
        let mut rest = &stream[..];
        for _ in 0..MAX_PENDING_ACKS {
            let consumed = session.handle_bytes(T0, rest).unwrap().consumed;
            rest = &rest[consumed..];
        }
        assert_eq!(
            session.handle_bytes(T0, rest),
            Err(SessionError::AckBacklog)
        );
        assert_eq!(transmit(&mut session, T0).len(), MAX_PENDING_ACKS);
        assert!(session.handle_bytes(T0, rest).unwrap().event.is_some());
    }
}
