//! # sophos-tac
//!
//! Turns Sophos Central *Threat Analysis Center* detections (rows of the XDR Data
//! Lake's `xdr_ioc_view`) into Elastic Common Schema (ECS) documents.
//!
//! The crate is a library with a thin command-line front end. Its parts, laid out as
//! data flows through them (source → transform → sink, acknowledgements flowing back;
//! `docs/architecture.md` draws it):
//!
//! - [`sources`]: where rows come from: files and stdin ([`sources::files`]), a Kafka
//!   consumer group (`sources::kafka`); and `collect`, the source that talks to Sophos
//!   Central, with its checkpoints, dedup, state and delivery loop.
//! - The transform: [`Normalizer`] (one line in, one ECS document or a reject out),
//!   driven by a [`mapping::Profile`], a table of rules ([`mapping::Field`]) from which
//!   the normalizer, the [`catalogue`], the docs and the index template all come; and
//!   [`pipeline`], read → normalize → write on every core, in input order.
//! - [`sinks`]: where documents go, each opened by one factory ([`sinks::build`]) from one
//!   [`sinks::SinkConfig`]: files with rotation, stdout, an index, syslog, Kafka;
//!   acknowledged.
//! - Shared by those: [`row`] (the one key every path gives a row: the index's `_id`,
//!   the Kafka message key; and the collector's dedup key), [`url`] (one URL reader and
//!   redactor), `kafka` (the settings both Kafka ends share), `http` (the one HTTP
//!   client, ureq with rustls), [`error`].
//!
//! Cargo features (all on by default) keep the heavy parts out of an embedder's build:
//! with `default-features = false` the crate is the normalizer, the profiles, the
//! catalogue, the pipeline and the file and stdout sinks.
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
// The row reader: internal, public only for the benchmark that compares it with
// sonic-rs (`benches/normalize.rs`); not part of the API.
#[doc(hidden)]
pub mod input;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod mapping;
mod normalizer;
mod output;
pub mod pipeline;
pub mod reject;
pub mod row;
pub mod sinks;
pub mod sources;
#[cfg(any(feature = "kafka", feature = "collect"))]
mod sync;
mod time;
pub mod url;
mod value;

pub use error::{Error, RejectReason};
pub use normalizer::{DEFAULT_MAX_LINE_BYTES, LineCounts, LineOutcome, Normalizer, Warnings};
