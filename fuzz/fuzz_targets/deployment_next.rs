//! The update check's 200 body never panics the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite::protocol::deployments::DeploymentInstructions;

fuzz_target!(|data: &[u8]| {
    if let Ok(instructions) = DeploymentInstructions::parse(data) {
        assert!(!instructions.id.is_empty() && !instructions.uri.is_empty());
    }
});
