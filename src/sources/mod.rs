//! Sources: where rows come from.
//!
//! - [`files`]: standard input and files (NDJSON, gzip recognised by its content), read
//!   by [`crate::pipeline`] in blocks of whole lines;
//! - `kafka` (feature `kafka`): a topic read in a consumer group, offsets committed once
//!   the sink acknowledged;
//! - the Sophos Central Data Lake is read by `crate::collect` (feature `collect`),
//!   which is a source with its own checkpoints and delivery loop.

pub mod files;
#[cfg(feature = "kafka")]
pub mod kafka;
