//! Whole HTTP responses (`ResponseReader`, `parse_response`): any split of
//! the input and any body buffer size; never panic, never claim more input
//! or body space than given, and agree with the one-buffer parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite::protocol::http::{parse_response, ResponseReader, ResponseStatus};

fuzz_target!(|data: &[u8]| {
    let Some((&shape, data)) = data.split_first() else { return };
    let piece = usize::from(shape & 0x3f) + 1;
    let body_len = usize::from(shape >> 6) * 97 + 1;
    let mut reader = ResponseReader::new(shape & 0x20 != 0);
    let mut body = vec![0u8; body_len];
    let mut offset = 0;
    let mut streamed = Vec::new();
    let mut finished = false;
    for _ in 0..1_000_000 {
        let end = (offset + piece).min(data.len());
        let Ok(progress) = reader.push(&data[offset..end], &mut body) else { break };
        assert!(progress.consumed <= end - offset);
        assert!(progress.produced <= body.len());
        streamed.extend_from_slice(&body[..progress.produced]);
        offset += progress.consumed;
        if progress.status == ResponseStatus::Done {
            finished = true;
            break;
        }
        if offset >= data.len() && progress.produced == 0 {
            break;
        }
    }
    let mut raw = data.to_vec();
    if let Ok(Some(parsed)) = parse_response(&mut raw, true) {
        let end = parsed.body_start.checked_add(parsed.body_len).unwrap();
        assert!(end <= raw.len());
        if finished && shape & 0x20 == 0 {
            assert_eq!(&raw[parsed.body_start..end], &streamed[..]);
        }
    }
});
