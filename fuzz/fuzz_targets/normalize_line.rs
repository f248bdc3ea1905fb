//! Fuzzes the line normalizer: no input may panic it; a normalized line gives
//! exactly one JSON document on one line, and anything else writes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sophos_tac::{LineOutcome, Normalizer, mapping::Profile};

fuzz_target!(|data: &[u8]| {
    let normalizer = Normalizer::new(Profile::documented()).with_max_line_bytes(4096);
    let mut out = Vec::new();
    let mut warnings = normalizer.new_warnings();
    match normalizer.normalize_line(data, &mut out, &mut warnings) {
        LineOutcome::Normalized => {
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            let doc: serde_json::Value = serde_json::from_slice(&out).expect("output is JSON");
            assert_eq!(doc["event"]["kind"], "event");
        }
        LineOutcome::Blank | LineOutcome::Rejected(_) => assert!(out.is_empty()),
    }
});
