//! Sinks: where normalized documents are delivered.
//!
//! A sink takes batches of NDJSON documents. [`Sink::deliver`] returns only once the
//! batch is durable (written and synced for a file, written and flushed for stdout);
//! that return is the acknowledgement the collector waits for before it moves a
//! checkpoint. Before a delivery the collector records [`Sink::mark`] in its state; if
//! the process dies between the delivery and the checkpoint, [`Sink::repair`] undoes the
//! partial or unacknowledged delivery on restart, so that the batch, delivered again, is
//! in the output exactly once (for files; stdout cannot be repaired: at least once).

mod file;

pub use file::{FileSink, Rotation};

use std::io::Write;

use crate::error::Error;

/// A destination for batches of NDJSON documents.
pub trait Sink: Send {
    /// A short name for logs and errors.
    fn name(&self) -> String;
    /// Where the next delivery starts, recorded before it so that [`Sink::repair`] can
    /// undo it.
    fn mark(&mut self) -> Result<String, Error>;
    /// Delivers a batch (whole NDJSON lines); durable when this returns `Ok`.
    fn deliver(&mut self, ndjson: &[u8]) -> Result<(), Error>;
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

    fn deliver(&mut self, ndjson: &[u8]) -> Result<(), Error> {
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
