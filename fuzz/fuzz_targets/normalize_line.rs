//! Fuzzes the line normalizer with every profile (the Data Lake's and the SIEM API's):
//! no input may panic it; a normalized line gives exactly one JSON document on one line,
//! of the profile's kind, and anything else writes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sophos_tac::{LineOutcome, Normalizer, mapping::Profile};

fuzz_target!(|data: &[u8]| {
    for (profile, kind) in [
        (Profile::documented(), "event"),
        (Profile::siem_alert(), "alert"),
        (Profile::siem_event(), "event"),
    ] {
        let normalizer = Normalizer::new(profile).with_max_line_bytes(4096);
        let mut out = Vec::new();
        let mut warnings = normalizer.new_warnings();
        match normalizer.normalize_line(data, &mut out, &mut warnings) {
            LineOutcome::Normalized => {
                assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
                let doc: serde_json::Value =
                    serde_json::from_slice(&out).expect("output is JSON");
                assert_eq!(doc["event"]["kind"], kind);
            }
            LineOutcome::Blank | LineOutcome::Rejected(_) => assert!(out.is_empty()),
        }
    }
});
