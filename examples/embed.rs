//! Using the normalizer from your own code, with a sink of your own: the smallest
//! embedding, which needs none of the default features.
//!
//! ```sh
//! cargo run --example embed
//! ```
//!
//! In your own crate: `sophos-tac = { version = "0.1", default-features = false }` gives the
//! normalizer, the profiles, the pipeline and the file sink, without the collector, the
//! network outputs or the command line's dependencies.

use sophos_tac::mapping::Profile;
use sophos_tac::sinks::Sink;
use sophos_tac::{Error, LineOutcome, Normalizer};

/// A sink of your own: here, it keeps the documents in memory (yours might send them to
/// a queue). `deliver` returns once the batch is durable: that is the acknowledgement.
#[derive(Default)]
struct Memory {
    documents: Vec<serde_json::Value>,
}

impl Sink for Memory {
    fn name(&self) -> String {
        "memory".into()
    }

    /// Where the next delivery starts, so that `repair` can undo a partial one.
    fn mark(&mut self) -> Result<String, Error> {
        Ok(self.documents.len().to_string())
    }

    fn deliver(&mut self, ndjson: &[u8], _ids: Option<&[String]>) -> Result<(), Error> {
        for line in ndjson.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let doc = serde_json::from_slice(line).map_err(|e| Error::Write {
                path: self.name(),
                source: std::io::Error::other(e),
            })?;
            self.documents.push(doc);
        }
        Ok(())
    }

    fn repair(&mut self, mark: &str) -> Result<(), Error> {
        let len = mark.parse().unwrap_or(self.documents.len());
        self.documents.truncate(len);
        Ok(())
    }
}

fn main() -> Result<(), Error> {
    let rows = [
        r#"{"record_identifier":"r-1","customer_id":"c-1","calendar_time":"2024-05-01T10:00:00Z","meta_hostname":"web-1","ioc_severity":4}"#,
        r#"{"record_identifier":"r-2","customer_id":"c-1","calendar_time":"2024-05-01T10:01:00Z","meta_hostname":"db-1","meta_os_platform":"linux"}"#,
        r#"not a row"#,
    ];
    let normalizer = Normalizer::new(Profile::documented());
    let mut warnings = normalizer.new_warnings();
    let mut batch = Vec::new();
    let mut ids = Vec::new();
    for row in rows {
        match normalizer.normalize_line(row.as_bytes(), &mut batch, &mut warnings) {
            // The row key: the index's _id and the Kafka key every path gives this row.
            LineOutcome::Normalized => ids.push(sophos_tac::row::key(row)),
            LineOutcome::Blank => {}
            LineOutcome::Rejected(reason) => eprintln!("rejected: {reason}"),
        }
    }
    let mut sink = Memory::default();
    let mark = sink.mark()?;
    if let Err(e) = sink.deliver(&batch, Some(&ids)) {
        sink.repair(&mark)?;
        return Err(e);
    }
    sink.committed()?;
    for (id, doc) in ids.iter().zip(&sink.documents) {
        println!(
            "{id}: host {} at {}",
            doc["host"]["name"], doc["@timestamp"]
        );
    }
    Ok(())
}
