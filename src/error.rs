//! Error types: why a line was rejected, and what stopped a run.

use std::path::PathBuf;

/// Why an input line is not a row. A rejected line is never dropped: the pipeline
/// keeps it, with its position and this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The line is not valid UTF-8; `valid_up_to` is the byte where decoding failed.
    #[error("invalid UTF-8 at byte {valid_up_to}")]
    InvalidUtf8 {
        /// Offset of the first invalid byte within the line.
        valid_up_to: usize,
    },
    /// The line is longer than the configured limit.
    #[error("line is {len} bytes, over the limit of {limit} bytes")]
    TooLong {
        /// Length of the line in bytes (without its line ending).
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The line is not JSON at all.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The line is JSON, but not an object.
    #[error("not a JSON object: the line holds {0}")]
    NotAnObject(&'static str),
    /// The line is an envelope whose `message` starts with `{` but does not hold a
    /// valid JSON object.
    #[error("envelope message is not a valid JSON object: {0}")]
    BrokenEnvelope(String),
}

/// An error that stops (part of) a run: the file it concerns is always named.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading an input failed (missing file, permission, corrupt gzip stream…).
    #[error("{path}: {source}")]
    Read {
        /// The input, as the user named it (`<stdin>` for standard input).
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing an output failed (full disk, closed pipe…).
    #[error("{path}: {source}")]
    Write {
        /// The output, as the user named it (`<stdout>` for standard output).
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the file's lock: it is writing to it.
    #[error("{path}: another process is writing to this file (it holds the file's lock); give each process its own file", path = path.display())]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// An output file could not be created.
    #[error("{path}: cannot create: {source}", path = path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// True when the error is a closed pipe on the output (the reader went away).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Write { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}
