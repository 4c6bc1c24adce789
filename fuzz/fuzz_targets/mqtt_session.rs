//! The MQTT decoder and the client session never panic, never claim more
//! input than given, and agree with each other on any split of the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite::agent::Instant;
use otalite::protocol::mqtt::{
    decode, encode_connack, ConnectReturnCode, Decoded, QoS, Session, SessionBuffers,
    SessionConfig,
};

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else { return };
    // The decoder alone: walk packet by packet.
    let mut rest = data;
    while let Ok(Decoded::Packet { len, .. }) = decode(rest) {
        assert!(len > 0 && len <= rest.len());
        rest = &rest[len..];
    }
    // The session, after an accepted CONNACK, fed in pieces of `split + 1`.
    let mut receive = [0u8; 512];
    let mut in_flight = [0u8; 256];
    let mut config = SessionConfig::new("fuzz");
    config.keep_alive_secs = 5;
    let mut session = Session::new(
        config,
        SessionBuffers { receive: &mut receive, in_flight: &mut in_flight },
    );
    let mut out = [0u8; 600];
    let mut now = Instant::from_millis(0);
    session.connect(now, &mut out).unwrap();
    let mut connack = [0u8; 4];
    encode_connack(false, ConnectReturnCode::Accepted, &mut connack).unwrap();
    assert!(session.handle_bytes(now, &connack).unwrap().event.is_some());
    let _ = session.publish(now, "t", b"p", QoS::AtLeastOnce, &mut out);
    for piece in data.chunks(usize::from(split) + 1) {
        let mut piece = piece;
        while !piece.is_empty() {
            match session.handle_bytes(now, piece) {
                Ok(received) => {
                    assert!(received.consumed <= piece.len());
                    if received.consumed == 0 && received.event.is_none() {
                        break;
                    }
                    piece = &piece[received.consumed..];
                }
                Err(_) => return,
            }
            while let Ok(Some(len)) = session.poll_transmit(now, &mut out) {
                assert!(len <= out.len());
            }
        }
        now = now.after(u64::from(split) * 50);
        let _ = session.handle_timeout(now);
        if let Some(at) = session.poll_at() {
            assert!(at.as_millis() > 0);
        }
    }
});
