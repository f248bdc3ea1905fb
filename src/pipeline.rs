//! The pipeline: read → normalize → write, on all cores, in input order.
//!
//! In Vector's vocabulary: the **source** cuts each input into blocks of whole lines
//! (about [`Options::block_bytes`] each); the **transform** normalizes blocks on
//! [`Options::threads`] workers; the **sink** writes the documents of each block in
//! input order and reports rejects to an [`Observer`].
//!
//! Memory is bounded by a fixed pool of buffers: the source takes an empty buffer
//! from the pool before it reads a block, and the sink gives it back once the
//! block is written. At most `3 × threads` blocks are in flight, whatever the size
//! of the input. Counts are exact: every line ends up as exactly one of normalized,
//! rejected or blank, and the [`Summary`] adds up.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use flate2::read::MultiGzDecoder;
use serde_json::json;

use crate::error::{Error, RejectReason};
use crate::normalizer::{LineOutcome, Normalizer, Warnings};

/// One input of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Standard input.
    Stdin,
    /// A file; gzip-compressed files are recognised by their content.
    Path(PathBuf),
}

impl Input {
    /// The name used in messages and reject records: the path, or `<stdin>`.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "<stdin>".to_string(),
            Input::Path(p) => p.display().to_string(),
        }
    }

    /// The input's size in bytes when it is a plain (not gzip) file; `None` for
    /// stdin, a gzip file, or a file that cannot be read.
    pub fn plain_size(&self) -> Option<u64> {
        let Input::Path(p) = self else { return None };
        let mut head = [0u8; 2];
        let mut file = File::open(p).ok()?;
        let n = file.read(&mut head).ok()?;
        if n == 2 && head == [0x1f, 0x8b] {
            return None;
        }
        file.metadata().ok().map(|m| m.len())
    }

    /// Opens the input, decompressing it when it starts with the gzip magic bytes.
    pub fn open(&self) -> Result<Box<dyn Read + Send>, Error> {
        let read_err = |source| Error::Read {
            path: self.name(),
            source,
        };
        let raw: Box<dyn Read + Send> = match self {
            Input::Stdin => Box::new(io::stdin()),
            Input::Path(p) => Box::new(File::open(p).map_err(read_err)?),
        };
        let mut reader = BufReader::with_capacity(256 * 1024, raw);
        let head = reader.fill_buf().map_err(read_err)?;
        if head.starts_with(&[0x1f, 0x8b]) {
            Ok(Box::new(MultiGzDecoder::new(reader)))
        } else {
            Ok(Box::new(reader))
        }
    }
}

/// How a run is carried out.
#[derive(Debug, Clone)]
pub struct Options {
    /// Worker threads; 1 runs everything on the calling thread.
    pub threads: usize,
    /// Target size of a block, in bytes (a block always ends at a line boundary).
    pub block_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            block_bytes: 1024 * 1024,
        }
    }
}

/// A line that is not a row, with where it was and why.
#[derive(Debug, Clone, Copy)]
pub struct Reject<'a> {
    /// The input's name.
    pub file: &'a str,
    /// 1-based line number within the input.
    pub line: u64,
    /// Byte offset of the line's start within the (decompressed) input.
    pub offset: u64,
    /// Why the line was rejected.
    pub reason: &'a RejectReason,
    /// The line as read, without its line ending.
    pub bytes: &'a [u8],
}

impl Reject<'_> {
    /// The reject as one NDJSON record: `file`, `line`, `offset`, `reason`, and
    /// `text` (the original line) or, when the line is not UTF-8, `text_base64`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = json!({ "file": self.file, "line": self.line, "offset": self.offset, "reason": self.reason.to_string() });
        add_text(&mut v, self.bytes);
        v
    }
}

/// Adds a rejected line to its record, losslessly: `text`, or `text_base64` when the line
/// is not UTF-8.
pub fn add_text(record: &mut serde_json::Value, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => record["text"] = json!(text),
        Err(_) => {
            use base64::Engine;
            record["text_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
    }
}

/// Receives what the pipeline reports besides documents, in input order.
pub trait Observer {
    /// A rejected line. An error stops the run (the rejects output failed).
    fn reject(&mut self, reject: &Reject<'_>) -> Result<(), Error>;
    /// An input could not be read (or stopped being readable); the run goes on
    /// with the next input.
    fn input_error(&mut self, error: &Error);
    /// `bytes` more input bytes were processed.
    fn progress(&mut self, _bytes: u64) {}
}

/// Writes rejects as NDJSON (see [`Reject::to_json`]).
#[derive(Debug)]
pub struct RejectsWriter<W: Write> {
    name: String,
    out: W,
}

impl<W: Write> RejectsWriter<W> {
    /// Writes to `out`, named `name` in error messages.
    pub fn new(name: impl Into<String>, out: W) -> Self {
        RejectsWriter {
            name: name.into(),
            out,
        }
    }

    /// Writes one reject.
    pub fn write(&mut self, reject: &Reject<'_>) -> Result<(), Error> {
        self.write_record(&reject.to_json())
    }

    /// Writes one reject record as it is (the Kafka source's, which has a topic,
    /// partition and offset in place of a file, line and offset).
    pub fn write_record(&mut self, record: &serde_json::Value) -> Result<(), Error> {
        let mut line = serde_json::to_vec(record).unwrap_or_default();
        line.push(b'\n');
        self.out.write_all(&line).map_err(|source| Error::Write {
            path: self.name.clone(),
            source,
        })
    }

    /// Flushes the output.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.out.flush().map_err(|source| Error::Write {
            path: self.name.clone(),
            source,
        })
    }

    /// The output.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// The output's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Lines read (blank ones included).
    pub lines: u64,
    /// Lines turned into a document.
    pub normalized: u64,
    /// Lines that are not rows.
    pub rejected: u64,
    /// Blank lines, skipped.
    pub blank: u64,
    /// Per-field counts of values that could not take their field's type.
    pub warnings: Warnings,
    /// Inputs that could not be read, or not to the end.
    pub input_errors: u64,
    /// Input bytes processed (decompressed).
    pub bytes: u64,
}

/// Runs the pipeline over `inputs`, writing documents to `out` (named `out_name`
/// in errors). Returns the counts, or the error that stopped the run (a failed
/// write). Unreadable inputs do not stop the run: they go to the observer and are
/// counted.
pub fn run(
    normalizer: &Normalizer,
    inputs: &[Input],
    out: &mut dyn Write,
    out_name: &str,
    observer: &mut dyn Observer,
    options: &Options,
) -> Result<Summary, Error> {
    let names: Vec<String> = inputs.iter().map(Input::name).collect();
    let mut sink = Sink {
        out,
        out_name,
        observer,
        names: &names,
        file: usize::MAX,
        base_line: 0,
        base_offset: 0,
        summary: Summary::default(),
    };
    sink.summary.warnings = normalizer.new_warnings();
    if options.threads <= 1 {
        run_sequential(normalizer, inputs, &mut sink, options)?;
    } else {
        run_parallel(normalizer, inputs, &mut sink, options)?;
    }
    sink.out.flush().map_err(|source| Error::Write {
        path: out_name.to_string(),
        source,
    })?;
    Ok(sink.summary)
}

fn run_sequential(
    normalizer: &Normalizer,
    inputs: &[Input],
    sink: &mut Sink<'_>,
    options: &Options,
) -> Result<(), Error> {
    let mut inline = Inline {
        normalizer,
        sink,
        free: None,
        failed: None,
    };
    read_all(inputs, options.block_bytes, &mut inline);
    inline.failed.map_or(Ok(()), Err)
}

/// Where the source puts what it reads.
trait Blocks {
    /// An empty set of buffers to read a block into; `None` stops the source.
    fn buffers(&mut self) -> Option<Buffers>;
    /// A block of whole lines of input `file`; false stops the source.
    fn block(&mut self, file: usize, first: bool, buffers: Buffers) -> bool;
    /// An input that cannot be read, or not to the end; false stops the source.
    fn input_error(&mut self, error: Error) -> bool;
}

/// The single-threaded run: each block is normalized and written as it is read.
struct Inline<'n, 's, 'a> {
    normalizer: &'n Normalizer,
    sink: &'s mut Sink<'a>,
    free: Option<Buffers>,
    failed: Option<Error>,
}

impl Blocks for Inline<'_, '_, '_> {
    fn buffers(&mut self) -> Option<Buffers> {
        Some(self.free.take().unwrap_or_default())
    }

    fn block(&mut self, file: usize, first: bool, buffers: Buffers) -> bool {
        let batch = transform(self.normalizer, file, first, buffers);
        let written = self.sink.accept(&batch);
        self.free = Some(batch.buffers);
        written.map_err(|e| self.failed = Some(e)).is_ok()
    }

    fn input_error(&mut self, error: Error) -> bool {
        self.sink.input_error(&error);
        true
    }
}

/// The parallel run's source side: blocks go to the workers, numbered in input order.
struct ToWorkers {
    pool: Receiver<Buffers>,
    work: Sender<Work>,
    done: Sender<Done>,
    seq: u64,
}

impl Blocks for ToWorkers {
    fn buffers(&mut self) -> Option<Buffers> {
        self.pool.recv().ok()
    }

    fn block(&mut self, file: usize, first: bool, buffers: Buffers) -> bool {
        let seq = self.seq;
        self.seq += 1;
        self.work
            .send(Work::Block {
                seq,
                file,
                first,
                buffers,
            })
            .is_ok()
    }

    fn input_error(&mut self, error: Error) -> bool {
        let seq = self.seq;
        self.seq += 1;
        self.done.send(Done::InputError(seq, error)).is_ok()
    }
}

/// The source: reads every input into blocks of whole lines.
fn read_all(inputs: &[Input], block_bytes: usize, to: &mut impl Blocks) {
    // Buffers taken but not filled (an input ended) go to the next input.
    let mut spare: Option<Buffers> = None;
    for (file, input) in inputs.iter().enumerate() {
        let mut source = match input.open() {
            Ok(r) => BlockSource::new(r, block_bytes),
            Err(e) => {
                if !to.input_error(e) {
                    return;
                }
                continue;
            }
        };
        let mut first = true;
        loop {
            let Some(mut buffers) = spare.take().or_else(|| to.buffers()) else {
                return;
            };
            match source.next_block(&mut buffers.input) {
                Ok(true) => {
                    if !to.block(file, first, buffers) {
                        return;
                    }
                    first = false;
                }
                Ok(false) => {
                    spare = Some(buffers);
                    break;
                }
                Err(source) => {
                    spare = Some(buffers);
                    if !to.input_error(Error::Read {
                        path: input.name(),
                        source,
                    }) {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

enum Work {
    Block {
        seq: u64,
        file: usize,
        first: bool,
        buffers: Buffers,
    },
}

enum Done {
    Batch(u64, Batch),
    InputError(u64, Error),
}

fn run_parallel(
    normalizer: &Normalizer,
    inputs: &[Input],
    sink: &mut Sink<'_>,
    options: &Options,
) -> Result<(), Error> {
    let in_flight = options.threads * 3;
    let (pool_tx, pool_rx) = bounded::<Buffers>(in_flight);
    for _ in 0..in_flight {
        let _ = pool_tx.send(Buffers::default());
    }
    let (work_tx, work_rx) = bounded::<Work>(in_flight);
    let (done_tx, done_rx) = unbounded::<Done>();
    std::thread::scope(|scope| {
        {
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                read_all(
                    inputs,
                    options.block_bytes,
                    &mut ToWorkers {
                        pool: pool_rx,
                        work: work_tx,
                        done: done_tx,
                        seq: 0,
                    },
                )
            });
        }
        for _ in 0..options.threads {
            let (work_rx, done_tx) = (work_rx.clone(), done_tx.clone());
            scope.spawn(move || {
                for Work::Block {
                    seq,
                    file,
                    first,
                    buffers,
                } in work_rx
                {
                    if done_tx
                        .send(Done::Batch(
                            seq,
                            transform(normalizer, file, first, buffers),
                        ))
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
        drop((work_rx, done_tx));
        write_in_order(sink, done_rx, pool_tx)
    })
}

/// The sink side of the parallel run: puts batches back in input order.
fn write_in_order(
    sink: &mut Sink<'_>,
    done: Receiver<Done>,
    pool: Sender<Buffers>,
) -> Result<(), Error> {
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let mut next = 0u64;
    for item in done {
        let seq = match &item {
            Done::Batch(seq, _) | Done::InputError(seq, _) => *seq,
        };
        pending.insert(seq, item);
        while let Some(item) = pending.remove(&next) {
            match item {
                Done::Batch(_, batch) => {
                    sink.accept(&batch)?;
                    let _ = pool.try_send(batch.buffers);
                }
                Done::InputError(_, e) => sink.input_error(&e),
            }
            next += 1;
        }
    }
    Ok(())
}

/// The buffers one block travels with; recycled through the pool.
#[derive(Debug, Default)]
struct Buffers {
    input: Vec<u8>,
    output: Vec<u8>,
}

/// Cuts a reader into blocks of whole lines.
struct BlockSource {
    reader: Box<dyn Read + Send>,
    block_bytes: usize,
    carry: Vec<u8>,
    eof: bool,
}

impl BlockSource {
    fn new(reader: Box<dyn Read + Send>, block_bytes: usize) -> Self {
        BlockSource {
            reader,
            block_bytes: block_bytes.max(1),
            carry: Vec::new(),
            eof: false,
        }
    }

    /// Fills `buf` with the next whole lines (the last line of the input may lack
    /// its `\n`). Returns false when the input is exhausted.
    fn next_block(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        buf.clear();
        buf.append(&mut self.carry);
        let mut scanned = 0;
        loop {
            if buf.len() >= self.block_bytes || self.eof {
                if let Some(pos) = memchr::memrchr(b'\n', &buf[scanned..]) {
                    let end = scanned + pos + 1;
                    self.carry.extend_from_slice(&buf[end..]);
                    buf.truncate(end);
                    return Ok(true);
                }
                if self.eof {
                    return Ok(!buf.is_empty());
                }
                // A line longer than a block: keep reading until it ends.
                scanned = buf.len();
            }
            let want = (self.block_bytes.saturating_sub(buf.len())).max(64 * 1024) as u64;
            let n = match (&mut self.reader).take(want).read_to_end(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.eof = true;
            }
        }
    }
}

/// A block's reject, positioned within the block.
#[derive(Debug)]
struct LocalReject {
    line: u64,
    start: usize,
    end: usize,
    reason: RejectReason,
}

/// The transform's result for one block.
#[derive(Debug)]
struct Batch {
    file: usize,
    lines: u64,
    normalized: u64,
    blank: u64,
    rejects: Vec<LocalReject>,
    warnings: Warnings,
    buffers: Buffers,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Normalizes every line of a block into `buffers.output`.
fn transform(
    normalizer: &Normalizer,
    file: usize,
    first_in_file: bool,
    mut buffers: Buffers,
) -> Batch {
    let mut batch = Batch {
        file,
        lines: 0,
        normalized: 0,
        blank: 0,
        rejects: Vec::new(),
        warnings: normalizer.new_warnings(),
        buffers: Buffers::default(),
    };
    buffers.output.clear();
    let data = &buffers.input;
    let mut start = 0;
    while start < data.len() {
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |p| start + p + 1);
        let mut line = &data[start..end];
        if first_in_file && start == 0 {
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        match normalizer.normalize_line(line, &mut buffers.output, &mut batch.warnings) {
            LineOutcome::Normalized => batch.normalized += 1,
            LineOutcome::Blank => batch.blank += 1,
            LineOutcome::Rejected(reason) => {
                let content_end = if data[..end].ends_with(b"\r\n") {
                    end - 2
                } else if data[..end].ends_with(b"\n") {
                    end - 1
                } else {
                    end
                };
                batch.rejects.push(LocalReject {
                    line: batch.lines,
                    start,
                    end: content_end.max(start),
                    reason,
                });
            }
        }
        batch.lines += 1;
        start = end;
    }
    batch.buffers = buffers;
    batch
}

/// Writes batches in order and keeps the counts.
struct Sink<'a> {
    out: &'a mut dyn Write,
    out_name: &'a str,
    observer: &'a mut dyn Observer,
    names: &'a [String],
    file: usize,
    base_line: u64,
    base_offset: u64,
    summary: Summary,
}

impl Sink<'_> {
    fn accept(&mut self, batch: &Batch) -> Result<(), Error> {
        if batch.file != self.file {
            self.file = batch.file;
            self.base_line = 0;
            self.base_offset = 0;
        }
        self.out
            .write_all(&batch.buffers.output)
            .map_err(|source| Error::Write {
                path: self.out_name.to_string(),
                source,
            })?;
        let data = &batch.buffers.input;
        for r in &batch.rejects {
            self.observer.reject(&Reject {
                file: &self.names[batch.file],
                line: self.base_line + r.line + 1,
                offset: self.base_offset + r.start as u64,
                reason: &r.reason,
                bytes: &data[r.start..r.end],
            })?;
        }
        let s = &mut self.summary;
        s.lines += batch.lines;
        s.normalized += batch.normalized;
        s.blank += batch.blank;
        s.rejected += batch.rejects.len() as u64;
        s.bytes += data.len() as u64;
        s.warnings.merge(&batch.warnings);
        self.base_line += batch.lines;
        self.base_offset += data.len() as u64;
        self.observer.progress(data.len() as u64);
        Ok(())
    }

    fn input_error(&mut self, e: &Error) {
        self.summary.input_errors += 1;
        self.observer.input_error(e);
    }
}
