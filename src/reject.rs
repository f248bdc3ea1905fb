//! One reject record for every path: a line (or row) that is not a row, kept with where
//! it was, why, and its text, losslessly.
//!
//! `normalize` writes them to `--rejects` (or reports them on stderr), the Kafka input
//! to `--rejects`, `collect` to `rejects.ndjson` in its state directory; each is one JSON
//! object a line with the same `reason`, `text` / `text_base64` and `text_truncated`, and
//! the fields of its [`Origin`].

use serde_json::json;

use crate::error::RejectReason;

/// How much of a line over the length limit is kept, for its reject record (the files
/// source never holds more of such a line).
pub const REJECT_PREFIX_BYTES: usize = 1024;

/// Where a rejected line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// A line of a file or of stdin: `file`, `line` (1-based), `offset` (of the line's
    /// start, in the decompressed input).
    File {
        /// The input's name (`<stdin>` for standard input).
        file: &'a str,
        /// 1-based line number.
        line: u64,
        /// Byte offset of the line's start.
        offset: u64,
    },
    /// A line of a Kafka message: `topic`, `partition`, `offset`.
    Kafka {
        /// The topic.
        topic: &'a str,
        /// The partition.
        partition: i32,
        /// The message's offset.
        offset: i64,
    },
    /// A row the Data Lake returned for a tenant: `tenant`.
    Tenant {
        /// The tenant's id.
        tenant: &'a str,
    },
}

/// The record of a rejected line: its origin's fields, `reason`, and `text` (or
/// `text_base64` when it is not UTF-8); a line rejected for its length keeps only its
/// first [`REJECT_PREFIX_BYTES`], with `"text_truncated": true`.
pub fn record(origin: &Origin<'_>, reason: &RejectReason, bytes: &[u8]) -> serde_json::Value {
    let mut v = match *origin {
        Origin::File { file, line, offset } => {
            json!({ "file": file, "line": line, "offset": offset })
        }
        Origin::Kafka {
            topic,
            partition,
            offset,
        } => json!({ "topic": topic, "partition": partition, "offset": offset }),
        Origin::Tenant { tenant } => json!({ "tenant": tenant }),
    };
    v["reason"] = json!(reason.to_string());
    add_text_of(&mut v, bytes, reason);
    v
}

/// Adds a rejected line to its record as [`add_text`] does, but only its prefix when the
/// reason is its length, so that a huge line cannot make a huge record.
pub(crate) fn add_text_of(record: &mut serde_json::Value, bytes: &[u8], reason: &RejectReason) {
    if !matches!(reason, RejectReason::TooLong { .. }) || bytes.len() <= REJECT_PREFIX_BYTES {
        return add_text(record, bytes);
    }
    let mut prefix = &bytes[..REJECT_PREFIX_BYTES];
    // Cut a character split by the prefix's end, so that a UTF-8 line stays text.
    if let Err(e) = std::str::from_utf8(prefix)
        && e.error_len().is_none()
    {
        prefix = &prefix[..e.valid_up_to()];
    }
    add_text(record, prefix);
    record["text_truncated"] = json!(true);
}

/// Adds a rejected line to its record, losslessly: `text`, or `text_base64` when the line
/// is not UTF-8.
pub(crate) fn add_text(record: &mut serde_json::Value, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => record["text"] = json!(text),
        Err(_) => {
            use base64::Engine;
            record["text_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reject_record_of_a_long_line_keeps_a_prefix_at_a_character_boundary() {
        let line = "é".repeat(2000);
        let reason = RejectReason::TooLong {
            len: line.len(),
            limit: 10,
        };
        let mut v = json!({});
        add_text_of(&mut v, line.as_bytes(), &reason);
        assert_eq!(v["text"].as_str().unwrap(), "é".repeat(512));
        assert_eq!(v["text_truncated"], true);
        let mut v = json!({});
        add_text_of(&mut v, b"short", &RejectReason::InvalidJson("x".into()));
        assert_eq!(v, json!({ "text": "short" }));
    }

    #[test]
    fn every_origin_gives_the_same_reason_and_text_fields() {
        let reason = RejectReason::InvalidJson("expected value".into());
        for (origin, place) in [
            (
                Origin::File {
                    file: "a.ndjson",
                    line: 3,
                    offset: 40,
                },
                json!({ "file": "a.ndjson", "line": 3, "offset": 40 }),
            ),
            (
                Origin::Kafka {
                    topic: "raw",
                    partition: 1,
                    offset: 7,
                },
                json!({ "topic": "raw", "partition": 1, "offset": 7 }),
            ),
            (Origin::Tenant { tenant: "t-1" }, json!({ "tenant": "t-1" })),
        ] {
            let mut want = place;
            want["reason"] = json!(reason.to_string());
            want["text"] = json!("{not json");
            assert_eq!(record(&origin, &reason, b"{not json"), want);
        }
        let v = record(&Origin::Tenant { tenant: "t" }, &reason, b"\xff\xfe");
        assert_eq!(v["text_base64"], "//4=");
        assert!(v.get("text").is_none());
    }
}
