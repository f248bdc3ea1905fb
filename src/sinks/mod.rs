//! Sinks: where normalized documents are delivered.
//!
//! A sink takes batches of NDJSON documents. [`Sink::deliver`] returns only once the
//! batch is durable (written and synced for a file, written and flushed for stdout);
//! that return is the acknowledgement the collector waits for before it moves a
//! checkpoint. Before a delivery the collector records [`Sink::mark`] in its state; if
//! the process dies between the delivery and the checkpoint, [`Sink::repair`] undoes the
//! partial or unacknowledged delivery on restart, so that the batch, delivered again, is
//! in the output exactly once (for files; stdout cannot be repaired: at least once).

mod config;
#[cfg(feature = "elasticsearch")]
pub mod elasticsearch;
mod file;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "syslog")]
pub mod syslog;

pub use config::{FileConfig, SinkConfig, SinkContext, build};
#[cfg(feature = "elasticsearch")]
pub use elasticsearch::{EsConfig, EsSink};
pub use file::{FileSink, Rotation};
#[cfg(feature = "kafka")]
pub use kafka::KafkaSink;
#[cfg(feature = "syslog")]
pub use syslog::{SyslogConfig, SyslogSink};

use std::io::Write;

use crate::error::Error;

/// How [`open_exclusive`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Appends to the file (created when missing).
    Append,
    /// Starts the file anew (created when missing), once its lock is taken.
    Truncate,
}

/// Opens a file the product writes detection data to (an output, rejects, dead
/// letters): created readable and writable by its owner only (0600 on Unix; an existing
/// file keeps its mode), and locked (an exclusive `flock`) for as long as it stays open,
/// so that a second process on the same file stops with [`Error::Locked`] instead of
/// interleaving its lines or cutting the other's. A file to start anew is emptied only
/// once the lock is taken. Devices and pipes are opened as they are.
pub fn open_exclusive(path: &std::path::Path, mode: OpenMode) -> Result<std::fs::File, Error> {
    let create = |source| Error::Create {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.create(true);
    match mode {
        OpenMode::Append => options.append(true),
        OpenMode::Truncate => options.write(true),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path).map_err(create)?;
    // A device or a pipe (`/dev/null`, `/dev/stdout`, a FIFO) is neither locked nor
    // emptied: many processes may write to it, and it has no length.
    if !file.metadata().map_err(create)?.is_file() {
        return Ok(file);
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(Error::Locked {
                path: path.to_path_buf(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(create(e)),
    }
    if mode == OpenMode::Truncate {
        file.set_len(0).map_err(create)?;
    }
    Ok(file)
}

/// Opens a file of NDJSON records to append to (rejects, dead letters) as
/// [`open_exclusive`] does, and cuts a record a crash left torn ([`cut_torn_tail`]), so
/// that the next record starts a line of its own.
pub fn open_records(path: &std::path::Path) -> Result<std::fs::File, Error> {
    let file = open_exclusive(path, OpenMode::Append)?;
    cut_torn_tail(&file, path).map_err(|source| Error::Write {
        path: path.display().to_string(),
        source,
    })?;
    Ok(file)
}

/// A path as the file system resolves it (links, `..`), so that two spellings of one
/// file compare equal; a file not there yet is resolved through its directory.
pub fn canonical(p: &std::path::Path) -> std::path::PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(if dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            dir
        })
        .map_or_else(|_| p.to_path_buf(), |d| d.join(name)),
        _ => p.to_path_buf(),
    }
}

/// Cuts a torn last line (one without its newline, left by a process killed in the
/// middle of a write) off a file of NDJSON records that `file` has open for writing;
/// returns how many bytes were cut. A device or a pipe is left as it is.
pub fn cut_torn_tail(file: &std::fs::File, path: &std::path::Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(0);
    }
    let len = meta.len();
    let mut reader = std::fs::File::open(path)?;
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        reader.seek(SeekFrom::Start(start))?;
        reader.read_exact(&mut chunk[..n])?;
        if let Some(pos) = memchr::memrchr(b'\n', &chunk[..n]) {
            end = start + pos as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        file.set_len(end)?;
        file.sync_data()?;
    }
    Ok(len - end)
}

/// Appends `bytes` (whole lines) to `file` and syncs them; when that fails part way,
/// cuts the file back to where it was, so that no torn line stays behind (a full disk).
pub fn append_whole(file: &mut std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    let before = file.metadata()?.len();
    let written = file.write_all(bytes).and_then(|()| file.sync_data());
    if written.is_err() {
        let _ = file.set_len(before).and_then(|()| file.sync_data());
    }
    written
}

/// A dead-letter file: NDJSON records of what an output refused for good or set aside,
/// each with its reason. Opened (for appending) on the first record; each record is
/// synced before the call returns, so a kept document is never lost. A document kept
/// once is not kept again by the same process (a `collect` window delivered again after
/// another output failed), so that each is in the file, and counted, once.
#[derive(Debug)]
pub struct DeadLetter {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    /// SHA-256 digests of the documents kept so far (forgotten past [`KEPT_DIGESTS`]).
    kept: std::collections::HashSet<[u8; 32]>,
}

/// How many kept documents a [`DeadLetter`] remembers, to keep each once.
const KEPT_DIGESTS: usize = 100_000;

impl DeadLetter {
    /// A dead-letter file at `path`, not yet opened.
    pub fn new(path: std::path::PathBuf) -> DeadLetter {
        DeadLetter {
            path,
            file: None,
            kept: std::collections::HashSet::new(),
        }
    }

    /// Keeps `document` with its `record` (which holds it and the reason), unless this
    /// process kept the same document before; true when it was written now.
    pub fn keep(&mut self, document: &[u8], record: &serde_json::Value) -> Result<bool, Error> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(document).into();
        if self.kept.contains(&digest) {
            return Ok(false);
        }
        self.write(record)?;
        if self.kept.len() >= KEPT_DIGESTS {
            self.kept.clear();
        }
        self.kept.insert(digest);
        Ok(true)
    }

    /// Where it is.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends one record (a line of JSON) and syncs it.
    pub fn write(&mut self, record: &serde_json::Value) -> Result<(), Error> {
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let f = open_records(&self.path)?;
                self.file.insert(f)
            }
        };
        let mut line = record.to_string().into_bytes();
        line.push(b'\n');
        append_whole(file, &line).map_err(|source| Error::Write {
            path: self.path.display().to_string(),
            source,
        })
    }
}

/// Keeps `count` undelivered documents with `keep(i)` for each, and says so for the
/// failing line: how many, and where, or where keeping them failed (which never hides
/// the delivery's own cause: the caller puts this after it).
pub fn keep_undelivered(
    count: usize,
    path: &std::path::Path,
    mut keep: impl FnMut(usize) -> Result<(), Error>,
) -> String {
    for i in 0..count {
        if let Err(e) = keep(i) {
            return format!(
                "and keeping the undelivered documents failed after {i} of {count}: {e}"
            );
        }
    }
    format!(
        "{count} undelivered document{} kept in {}",
        if count == 1 { "" } else { "s" },
        path.display()
    )
}

/// The key of a document given without one: the [row key](crate::row::key) of the row it
/// was made from (its `message`), or for a SIEM API item (a document whose
/// `event.dataset` is `sophos_central.alert` or `sophos_central.event`) the
/// [item key](crate::row::item_key) of its `event.original`, as every path computes it.
/// The index output uses it as `_id`, the Kafka output as the message key, so that a
/// row's copies collapse into one.
pub fn document_key(doc: &[u8]) -> String {
    use std::borrow::Cow;
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(borrow)]
        original: Option<Cow<'a, str>>,
        #[serde(borrow)]
        dataset: Option<Cow<'a, str>>,
    }
    #[derive(serde::Deserialize)]
    struct Doc<'a> {
        #[serde(borrow)]
        message: Option<Cow<'a, str>>,
        #[serde(borrow)]
        event: Option<Event<'a>>,
    }
    let parsed = serde_json::from_slice::<Doc>(doc).ok();
    if let Some(Doc {
        event:
            Some(Event {
                original: Some(item),
                dataset: Some(dataset),
            }),
        ..
    }) = &parsed
        && let Some(stream) = dataset.strip_prefix("sophos_central.")
    {
        return crate::row::item_key(stream, item);
    }
    let message = parsed.and_then(|d| d.message);
    let text = message
        .as_deref()
        .unwrap_or_else(|| std::str::from_utf8(doc).unwrap_or_default());
    crate::row::key(text)
}

/// A batch's documents: its non-empty lines, without their newlines.
pub fn documents(ndjson: &[u8]) -> impl Iterator<Item = &[u8]> {
    crate::input::lines(ndjson).filter(|l| !l.is_empty())
}

/// A batch's documents (its non-empty lines), each with its key: the one `ids` gives for
/// it, or else its row's key ([`document_key`]).
pub fn keyed_documents<'a>(ndjson: &'a [u8], ids: Option<&[String]>) -> Vec<(String, &'a [u8])> {
    documents(ndjson)
        .enumerate()
        .map(|(i, line)| {
            let key = ids
                .and_then(|ids| ids.get(i).cloned())
                .unwrap_or_else(|| document_key(line));
            (key, line)
        })
        .collect()
}

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
    /// Starts delivering a batch, and returns without waiting for its acknowledgement
    /// where the sink can (Kafka hands the messages to its producer); the batch is then
    /// [pending](Sink::pending) until [`Sink::settle`] hears of it. Acknowledgements come
    /// back in the order the batches were submitted. A sink that cannot deliver in the
    /// background delivers at once, as [`Sink::deliver`] (the default), and so does one
    /// that keeps a failed batch's documents aside ([`SinkContext::replays`] false): its
    /// caller does not deliver them again, so each batch is settled before the next.
    fn submit(&mut self, ndjson: &[u8], ids: Option<&[String]>) -> Result<(), Error> {
        self.deliver(ndjson, ids)
    }
    /// Batches submitted and not acknowledged yet: the oldest `n − pending()` of the `n`
    /// submitted are acknowledged (durable). Zero for a sink that delivers at once.
    fn pending(&self) -> usize {
        0
    }
    /// Waits up to `wait` for the oldest pending batch's acknowledgement (nothing to do
    /// when none is pending). `Ok` whether or not it came within `wait` ([`Sink::pending`]
    /// tells); an error when that batch failed — then every pending batch is given up on,
    /// and none of them is to be taken as delivered.
    fn settle(&mut self, _wait: std::time::Duration) -> Result<(), Error> {
        Ok(())
    }
    /// Called once a delivery is acknowledged and recorded: a safe point to rotate.
    fn committed(&mut self) -> Result<(), Error> {
        Ok(())
    }
    /// The longest one delivery of `documents` documents (`bytes` in all) may take, with
    /// every timeout and retry: past it, the delivery is stuck (`/healthz` says so). Five
    /// minutes unless the sink knows better.
    fn delivery_bound(&self, _documents: usize, _bytes: usize) -> std::time::Duration {
        std::time::Duration::from_secs(300)
    }
    /// Documents kept in the dead-letter file so far (refused for good, or set aside).
    fn dead_lettered(&self) -> u64 {
        0
    }
    /// Checks that the destination can be written to or reached, without delivering
    /// anything (for `collect --check`).
    fn check(&mut self) -> Result<(), Error> {
        Ok(())
    }
    /// What the sink did so far, in one line for the end of a run; `None` when it has
    /// nothing to say beyond the documents written.
    fn report(&self) -> Option<SinkReport> {
        None
    }
}

/// A sink's end-of-run line ([`Sink::report`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkReport {
    /// What was delivered, refused and kept, on one line.
    pub line: String,
    /// True when the line tells of documents refused or set aside: shown even when the
    /// user asked for quiet.
    pub warning: bool,
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn mark(&mut self) -> Result<String, Error> {
        (**self).mark()
    }
    fn deliver(&mut self, ndjson: &[u8], ids: Option<&[String]>) -> Result<(), Error> {
        (**self).deliver(ndjson, ids)
    }
    fn repair(&mut self, mark: &str) -> Result<(), Error> {
        (**self).repair(mark)
    }
    fn submit(&mut self, ndjson: &[u8], ids: Option<&[String]>) -> Result<(), Error> {
        (**self).submit(ndjson, ids)
    }
    fn pending(&self) -> usize {
        (**self).pending()
    }
    fn settle(&mut self, wait: std::time::Duration) -> Result<(), Error> {
        (**self).settle(wait)
    }
    fn committed(&mut self) -> Result<(), Error> {
        (**self).committed()
    }
    fn delivery_bound(&self, documents: usize, bytes: usize) -> std::time::Duration {
        (**self).delivery_bound(documents, bytes)
    }
    fn dead_lettered(&self) -> u64 {
        (**self).dead_lettered()
    }
    fn check(&mut self) -> Result<(), Error> {
        (**self).check()
    }
    fn report(&self) -> Option<SinkReport> {
        (**self).report()
    }
}

/// The network timeouts of a sink: connecting (TCP, and the TLS handshake with it), and
/// each read or write (or, for an HTTP request, its whole exchange).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting, and the TLS handshake.
    pub connect: std::time::Duration,
    /// One read or write; one whole HTTP request.
    pub io: std::time::Duration,
}

/// The longest backoff between two attempts of a delivery (30 s, with up to 50% jitter).
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(45);

impl Timeouts {
    /// These timeouts with the ones given, in seconds, in place.
    pub fn with_secs(self, connect: Option<u64>, io: Option<u64>) -> Timeouts {
        Timeouts {
            connect: connect.map_or(self.connect, std::time::Duration::from_secs),
            io: io.map_or(self.io, std::time::Duration::from_secs),
        }
    }

    /// The worst case of one delivery of a sink that tries `retries + 1` times, each
    /// attempt connecting and exchanging up to `exchanges` times, with backoffs of up to
    /// `max_backoff` between attempts.
    pub fn bound(
        &self,
        retries: u32,
        exchanges: u32,
        max_backoff: std::time::Duration,
    ) -> std::time::Duration {
        let attempt = (self.connect.saturating_add(self.io)).saturating_mul(exchanges.max(1));
        attempt
            .saturating_mul(retries.saturating_add(1))
            .saturating_add(max_backoff.saturating_mul(retries))
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
        // The pipeline names the output itself: pass the cause on without the name.
        self.sink
            .deliver(&self.buf[..end], None)
            .map_err(|e| match e {
                Error::Write { source, .. } => source,
                other => std::io::Error::other(other.to_string()),
            })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undelivered_documents_are_counted_and_a_failing_dead_letter_file_does_not_hide_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.ndjson");
        let mut dl = DeadLetter::new(path.clone());
        let said = keep_undelivered(2, &path, |i| dl.write(&serde_json::json!({ "i": i })));
        assert_eq!(
            said,
            format!("2 undelivered documents kept in {}", path.display())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let mut dl = DeadLetter::new(dir.path().join("no/such/dir/dl.ndjson"));
        let said = keep_undelivered(3, &path, |i| dl.write(&serde_json::json!({ "i": i })));
        assert!(
            said.starts_with("and keeping the undelivered documents failed after 0 of 3: "),
            "{said}"
        );
    }

    #[test]
    fn a_record_torn_by_a_crash_is_cut_before_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.ndjson");
        std::fs::write(&path, "{\"reason\":\"whole\"}\n{\"reason\":\"to").unwrap();
        let mut dl = DeadLetter::new(path.clone());
        dl.keep(b"d", &serde_json::json!({ "reason": "next" }))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"reason\":\"whole\"}\n{\"reason\":\"next\"}\n"
        );
    }

    #[test]
    fn a_document_is_kept_once_however_often_its_window_is_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.ndjson");
        let mut dl = DeadLetter::new(path.clone());
        let record = |n: u32| serde_json::json!({ "reason": format!("try {n}"), "document": "d" });
        assert!(dl.keep(b"d", &record(1)).unwrap());
        assert!(!dl.keep(b"d", &record(2)).unwrap(), "the window's retry");
        assert!(dl.keep(b"e", &record(3)).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("try 1") && !text.contains("try 2"), "{text}");
    }

    #[test]
    fn one_writer_per_file_and_a_locked_file_is_never_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let mut first = open_exclusive(&path, OpenMode::Append).unwrap();
        append_whole(&mut first, b"{\"a\":1}\n").unwrap();
        for mode in [OpenMode::Append, OpenMode::Truncate] {
            match open_exclusive(&path, mode) {
                Err(Error::Locked { path: p }) => assert_eq!(p, path),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}\n", "not emptied");
        let shown = open_exclusive(&path, OpenMode::Append)
            .unwrap_err()
            .to_string();
        assert!(
            shown.contains("another process is writing to this file"),
            "{shown}"
        );
        drop(first);
        let again = open_exclusive(&path, OpenMode::Truncate).unwrap();
        assert_eq!(again.metadata().unwrap().len(), 0);
    }
}
