//! Update Control Maps: arbitrary bytes never panic the parser, the
//! response scanner or the persisted-pool loader; written maps parse back
//! to themselves; a sequence of pool operations (chunks split on 0xFF,
//! the first byte choosing the operation) keeps the pool within bounds and
//! its record loadable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite::agent::control_map::{ControlMap, ControlState, Pool, MAX_ENCODED_LEN, MAX_MAPS};
use otalite::agent::Instant;

const DEPLOYMENT: &str = "3380e4f2-c913-11eb-9119-c39aba66b261";

fn round_trip(pool: &Pool, now: Instant) -> Pool {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    let len = pool.encode(&mut buf).expect("a pool fits MAX_ENCODED_LEN");
    let loaded = Pool::load(&buf[..len], now, 600).expect("an encoded pool loads");
    assert_eq!(loaded.len(), pool.len());
    loaded
}

fuzz_target!(|data: &[u8]| {
    if let Ok(map) = ControlMap::parse(data) {
        let mut out = [0u8; 1024];
        let len = map.write_json(&mut out).expect("a map fits 1 KiB");
        assert_eq!(ControlMap::parse(&out[..len]).as_ref(), Ok(&map));
    }
    let _ = ControlMap::from_response_body(data);
    if let Ok(pool) = Pool::load(data, Instant::from_millis(0), 600) {
        let again = round_trip(&pool, Instant::from_millis(0));
        assert_eq!(round_trip(&again, Instant::from_millis(0)), again);
    }

    let mut pool = Pool::new();
    let mut now = Instant::from_millis(0);
    for chunk in data.split(|&byte| byte == 0xFF) {
        let Some((&op, rest)) = chunk.split_first() else {
            continue;
        };
        now = now.after(u64::from(op) * 997);
        let expiration = u32::from(op) * 3;
        let state = ControlState::ALL[usize::from(op / 8) % 3];
        match op % 8 {
            0 => {
                let _ = pool.set_local_json(rest, now, expiration);
            }
            1 => {
                let map = ControlMap::parse(rest).ok();
                let _ = pool.insert_server(DEPLOYMENT, map, now, expiration);
            }
            2 => {
                let _ = pool.query_and_update(state, now);
            }
            3 => pool.clear_expired(),
            4 => {
                pool.expire(now);
                if let Some(next) = pool.next_expiry() {
                    assert!(next > now);
                }
            }
            5 => pool.delete_all(DEPLOYMENT),
            6 => pool = round_trip(&pool, now),
            _ => {
                let _ = pool.pause_timer(DEPLOYMENT, now, u32::from(op));
            }
        }
        assert!(pool.len() <= MAX_MAPS);
    }
});
