//! HTTP/1.1 response heads and chunked bodies, split where the input says,
//! never panic and never claim more input than they were given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite::protocol::http::{ChunkedDecoder, HeadStatus, ResponseHeadParser};

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else { return };
    let piece = usize::from(split) + 1;
    let mut parser = ResponseHeadParser::new();
    let mut offset = 0;
    let mut body_start = None;
    while offset < data.len() {
        let end = (offset + piece).min(data.len());
        match parser.push(&data[offset..end]) {
            Ok(HeadStatus::NeedsMoreInput) => offset = end,
            Ok(HeadStatus::Done { consumed }) => {
                assert!(consumed <= end - offset);
                body_start = Some(offset + consumed);
                break;
            }
            Err(_) => return,
        }
    }
    let Some(mut offset) = body_start else { return };
    let mut decoder = ChunkedDecoder::default();
    let mut output = vec![0u8; piece];
    for _ in 0..100_000 {
        if offset >= data.len() {
            break;
        }
        let Ok(progress) = decoder.decode(&data[offset..], &mut output) else { return };
        assert!(progress.consumed <= data.len() - offset && progress.produced <= output.len());
        if progress.consumed == 0 && progress.produced == 0 {
            break;
        }
        offset += progress.consumed;
    }
});
