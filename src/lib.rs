//! # sophos-tac
//!
//! Turns Sophos Central *Threat Analysis Center* detections (rows of the XDR Data
//! Lake's `xdr_ioc_view`) into Elastic Common Schema (ECS) documents.
//!
//! The crate is a library with a thin command-line front end. Its parts, in the
//! order data flows through them:
//!
//! - [`input`]: lines, envelopes and rows: classifies one NDJSON line and gives a
//!   borrowed view of the row's values.
//! - [`mapping`]: a profile is a table of rules ([`mapping::Field`]); the
//!   normalizer, the field catalogue, the docs and the index template all come from it.
//! - [`output`]: the ECS document writer.
//! - [`pipeline`]: read → normalize → write, in parallel and in input order.
//! - [`catalogue`]: the field catalogue and the Elasticsearch/OpenSearch index
//!   template generated from a profile.
//! - [`collect`]: the Sophos Central client and collector (checkpoints, dedup, state).
//! - [`sinks`]: where documents go (files with rotation, stdout, an index, syslog,
//!   Kafka), acknowledged.
//! - [`kafka`]: Kafka settings, and the consumer-group source that feeds `normalize`.
//! - [`row`]: a row's keys: the one key every path gives a row (the index's `_id`, the
//!   Kafka message key), and the collector's dedup key.
//! - [`http`]: the one HTTP client (ureq, rustls with ring) the index sink and the
//!   collector share.
//!
//! The smallest use is one line at a time:
//!
//! ```
//! use sophos_tac::{mapping::Profile, Normalizer, LineOutcome};
//!
//! let normalizer = Normalizer::new(Profile::documented());
//! let mut out = Vec::new();
//! let mut warnings = normalizer.new_warnings();
//! let line = br#"{"ioc_detection_id":"X-1","calendar_time":"2024-05-01T10:00:00Z","meta_hostname":"web-1"}"#;
//! let outcome = normalizer.normalize_line(line, &mut out, &mut warnings);
//! assert!(matches!(outcome, LineOutcome::Normalized));
//! let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
//! assert_eq!(doc["host"]["name"], "web-1");
//! assert_eq!(doc["@timestamp"], "2024-05-01T10:00:00Z");
//! ```
#![warn(missing_docs)]

pub mod catalogue;
#[cfg(feature = "collect")]
pub mod collect;
pub mod error;
#[cfg(any(feature = "elasticsearch", feature = "collect"))]
pub mod http;
pub mod input;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod mapping;
mod normalizer;
pub mod output;
pub mod pipeline;
pub mod row;
pub mod sinks;
pub mod time;
pub mod url;
pub mod value;

pub use error::{Error, RejectReason};
pub use normalizer::{DEFAULT_MAX_LINE_BYTES, LineOutcome, Normalizer, Warnings};
