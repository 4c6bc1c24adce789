//! The artifact reader on arbitrary bytes, fed in pieces whose sizes come
//! from the input itself, with both checkpoints passed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite::artifact::{ArtifactReader, Event, WINDOW_LEN};

fuzz_target!(|data: &[u8]| {
    let (split_seed, artifact) = match data.split_first() {
        Some((seed, rest)) => (usize::from(*seed) + 1, rest),
        None => return,
    };
    let mut window = vec![0u8; WINDOW_LEN];
    let mut output = vec![0u8; 1 + split_seed * 7];
    let Ok(mut reader) = ArtifactReader::new(&mut window) else { return };
    let mut input = artifact;
    let mut steps = 0usize;
    while !input.is_empty() && steps < 1_000_000 {
        steps += 1;
        let piece = &input[..input.len().min(split_seed * 13)];
        let Ok((event, consumed)) = reader.feed(piece, &mut output) else { return };
        assert!(consumed <= piece.len());
        input = &input[consumed..];
        match event {
            Event::SignatureCheck => {
                if reader.verify_signature(&[]).is_err() {
                    return;
                }
            }
            Event::HeaderReady => reader.accept_header(),
            Event::ScriptData(n) | Event::PayloadData(n) => assert!(n <= output.len()),
            Event::Done => return,
            _ => {}
        }
    }
    let _ = reader.finish();
    // End of input (an archive may lack its end-of-archive blocks).
    let _ = reader.end_of_input();
});
