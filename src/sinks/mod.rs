//! Sinks: where normalized documents are delivered.
//!
//! A sink takes batches of NDJSON documents. [`Sink::deliver`] returns only once the
//! batch is durable (written and synced for a file, written and flushed for stdout);
//! that return is the acknowledgement the collector waits for before it moves a
//! checkpoint. Before a delivery the collector records [`Sink::mark`] in its state; if
//! the process dies between the delivery and the checkpoint, [`Sink::repair`] undoes the
//! partial or unacknowledged delivery on restart, so that the batch, delivered again, is
//! in the output exactly once (for files; stdout cannot be repaired: at least once).

pub mod elasticsearch;
mod file;
pub mod syslog;

pub use elasticsearch::{EsConfig, EsSink};
pub use file::{FileSink, Rotation};
pub use syslog::{SyslogConfig, SyslogSink};

use std::io::Write;

use crate::error::Error;

/// A destination for batches of NDJSON documents.
pub trait Sink: Send {
    /// A short name for logs and errors.
    fn name(&self) -> String;
    /// Where the next delivery starts, recorded before it so that [`Sink::repair`] can
    /// undo it.
    fn mark(&mut self) -> Result<String, Error>;
    /// Delivers a batch (whole NDJSON lines); durable when this returns `Ok`. `ids`,
    /// when given, is a stable id per line (sinks that deduplicate use it).
    fn deliver(&mut self, ndjson: &[u8], ids: Option<&[String]>) -> Result<(), Error>;
    /// Undoes whatever was delivered after `mark` (after a crash).
    fn repair(&mut self, mark: &str) -> Result<(), Error>;
    /// Called once a delivery is acknowledged and recorded: a safe point to rotate.
    fn committed(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// Standard output: written and flushed; cannot be repaired (at least once).
#[derive(Debug, Default)]
pub struct StdoutSink;

impl Sink for StdoutSink {
    fn name(&self) -> String {
        "<stdout>".to_string()
    }

    fn mark(&mut self) -> Result<String, Error> {
        Ok(String::new())
    }

    fn deliver(&mut self, ndjson: &[u8], _ids: Option<&[String]>) -> Result<(), Error> {
        let mut out = std::io::stdout().lock();
        out.write_all(ndjson)
            .and_then(|()| out.flush())
            .map_err(|source| Error::Write {
                path: self.name(),
                source,
            })
    }

    fn repair(&mut self, _mark: &str) -> Result<(), Error> {
        Ok(())
    }
}

/// Adapts a [`Sink`] to [`Write`], for the `normalize` pipeline: bytes are buffered
/// and delivered in batches of whole lines of about `batch_bytes`, the rest on
/// [`Write::flush`].
pub struct SinkWriter<S: Sink> {
    sink: S,
    buf: Vec<u8>,
    batch_bytes: usize,
}

impl<S: Sink> SinkWriter<S> {
    /// Wraps a sink.
    pub fn new(sink: S, batch_bytes: usize) -> Self {
        SinkWriter {
            sink,
            buf: Vec::new(),
            batch_bytes: batch_bytes.max(1),
        }
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    fn deliver_through(&mut self, end: usize) -> std::io::Result<()> {
        if end == 0 {
            return Ok(());
        }
        self.sink
            .deliver(&self.buf[..end], None)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.buf.drain(..end);
        Ok(())
    }
}

impl<S: Sink> std::fmt::Debug for SinkWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkWriter")
            .field("sink", &self.sink.name())
            .field("buffered", &self.buf.len())
            .finish()
    }
}

impl<S: Sink> Write for SinkWriter<S> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= self.batch_bytes {
            let end = memchr::memrchr(b'\n', &self.buf).map_or(0, |p| p + 1);
            self.deliver_through(end)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let end = self.buf.len();
        self.deliver_through(end)
    }
}
