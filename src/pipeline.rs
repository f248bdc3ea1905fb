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
use std::io::Write;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use serde_json::json;

use crate::error::{Error, RejectReason};
use crate::normalizer::{LineCounts, LineOutcome, Normalizer};
use crate::reject::Origin;
pub use crate::reject::REJECT_PREFIX_BYTES;
pub use crate::sources::files::Input;
use crate::sources::files::{BlockSource, LongLine};

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
    /// The line as read, without its line ending (only its prefix when `truncated`).
    pub bytes: &'a [u8],
    /// True when `bytes` is only the line's prefix: the line was over the length limit
    /// and was never held whole.
    pub truncated: bool,
}

impl Reject<'_> {
    /// The reject as one NDJSON record: `file`, `line`, `offset`, `reason`, and
    /// `text` (the original line) or, when the line is not UTF-8, `text_base64`.
    ///
    /// A line over the length limit keeps only its first [`REJECT_PREFIX_BYTES`] (cut at
    /// a character boundary), with `"text_truncated": true`; its true length is in the
    /// reason.
    pub fn to_json(&self) -> serde_json::Value {
        let origin = Origin::File {
            file: self.file,
            line: self.line,
            offset: self.offset,
        };
        let mut v = crate::reject::record(&origin, self.reason, self.bytes);
        if self.truncated {
            v["text_truncated"] = json!(true);
        }
        v
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
    /// What the normalizer made of the lines.
    pub counts: LineCounts,
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
    sink.summary.counts.warnings = normalizer.new_warnings();
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
    read_all(
        inputs,
        options.block_bytes,
        normalizer.max_line_bytes(),
        &mut inline,
    );
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
fn read_all(inputs: &[Input], block_bytes: usize, max_line: usize, to: &mut impl Blocks) {
    // Buffers taken but not filled (an input ended) go to the next input.
    let mut spare: Option<Buffers> = None;
    for (file, input) in inputs.iter().enumerate() {
        let mut source = match input.open() {
            Ok(r) => BlockSource::new(r, block_bytes, max_line),
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
            match source.next_block(&mut buffers.input, &mut buffers.long) {
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
                    normalizer.max_line_bytes(),
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
    /// The lines of `input` cut down to their prefix, in order.
    long: Vec<LongLine>,
    output: Vec<u8>,
}

/// A block's reject, positioned within the block.
#[derive(Debug)]
struct LocalReject {
    line: u64,
    start: usize,
    end: usize,
    /// Input bytes left out of the block before the line (see [`LongLine`]).
    skipped_before: u64,
    /// The line was cut down to its prefix.
    truncated: bool,
    reason: RejectReason,
}

/// The transform's result for one block.
#[derive(Debug)]
struct Batch {
    file: usize,
    /// What the normalizer made of the block's lines.
    counts: LineCounts,
    /// Input bytes left out of the block (see [`LongLine`]).
    skipped: u64,
    rejects: Vec<LocalReject>,
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
        counts: LineCounts {
            warnings: normalizer.new_warnings(),
            ..LineCounts::default()
        },
        skipped: 0,
        rejects: Vec::new(),
        buffers: Buffers::default(),
    };
    buffers.output.clear();
    let data = &buffers.input;
    let mut start = 0;
    let mut next_long = 0;
    while start < data.len() {
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |p| start + p + 1);
        let mut line = &data[start..end];
        if first_in_file && start == 0 {
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        let cut = buffers
            .long
            .get(next_long)
            .is_some_and(|l| l.start == start);
        let outcome = match buffers.long.get(next_long) {
            Some(long) if long.start == start => {
                next_long += 1;
                batch.skipped += long.skipped;
                LineOutcome::Rejected(RejectReason::TooLong {
                    len: usize::try_from(long.len).unwrap_or(usize::MAX),
                    limit: normalizer.max_line_bytes(),
                })
            }
            _ => normalizer.normalize_line(line, &mut buffers.output, &mut batch.counts.warnings),
        };
        let index = batch.counts.lines;
        batch.counts.count(&outcome);
        if let LineOutcome::Rejected(reason) = outcome {
            let content_end = if data[..end].ends_with(b"\r\n") {
                end - 2
            } else if data[..end].ends_with(b"\n") {
                end - 1
            } else {
                end
            };
            let skipped_before = batch.skipped
                - buffers
                    .long
                    .get(next_long.wrapping_sub(1))
                    .filter(|l| l.start == start)
                    .map_or(0, |l| l.skipped);
            batch.rejects.push(LocalReject {
                line: index,
                start,
                end: content_end.max(start),
                skipped_before,
                truncated: cut,
                reason,
            });
        }
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
                offset: self.base_offset + r.start as u64 + r.skipped_before,
                reason: &r.reason,
                bytes: &data[r.start..r.end],
                truncated: r.truncated,
            })?;
        }
        let s = &mut self.summary;
        s.counts.merge(&batch.counts);
        let read = data.len() as u64 + batch.skipped;
        s.bytes += read;
        self.base_line += batch.counts.lines;
        self.base_offset += read;
        self.observer.progress(read);
        Ok(())
    }

    fn input_error(&mut self, e: &Error) {
        self.summary.input_errors += 1;
        self.observer.input_error(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block of `input` read with blocks of `block` bytes and lines of at most
    /// `max` bytes: the blocks' bytes joined, and the long lines seen.
    fn blocks(input: &[u8], block: usize, max: usize) -> (Vec<u8>, Vec<LongLine>, usize) {
        let mut source =
            BlockSource::new(Box::new(std::io::Cursor::new(input.to_vec())), block, max);
        let (mut all, mut longs, mut n) = (Vec::new(), Vec::new(), 0);
        let (mut buf, mut long) = (Vec::new(), Vec::new());
        while source.next_block(&mut buf, &mut long).unwrap() {
            assert!(
                buf.len() <= block + max + 2 * 64 * 1024,
                "a block stays bounded"
            );
            let base = all.len();
            all.extend_from_slice(&buf);
            longs.extend(long.iter().map(|l| LongLine {
                start: base + l.start,
                ..*l
            }));
            n += 1;
        }
        (all, longs, n)
    }

    #[test]
    fn a_line_over_the_limit_is_cut_to_its_prefix_and_its_length_kept() {
        let long = vec![b'x'; 3_000_000];
        let mut input = b"{\"a\":1}\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\r\n{\"b\":2}\n");
        let (all, longs, _) = blocks(&input, 4096, 1000);
        let mut want = b"{\"a\":1}\n".to_vec();
        want.extend_from_slice(&long[..1000]);
        want.extend_from_slice(b"\n{\"b\":2}\n");
        assert_eq!(all, want);
        assert_eq!(
            longs,
            vec![LongLine {
                start: 8,
                len: 3_000_000,
                skipped: 2_999_001
            }]
        );
    }

    #[test]
    fn a_cut_prefix_ends_on_a_character_boundary() {
        let line = "é".repeat(100_000);
        let input = format!("{line}\nok\n");
        let (all, longs, _) = blocks(input.as_bytes(), 4096, 1001);
        let text = std::str::from_utf8(&all).expect("the prefix stays UTF-8");
        assert_eq!(text, format!("{}\nok\n", "é".repeat(500)));
        assert_eq!(longs[0].len, 200_000);
        assert_eq!(longs[0].skipped, 199_000);
    }

    #[test]
    fn a_long_last_line_without_newline_and_lines_within_the_limit() {
        let mut input = vec![b'y'; 10_000];
        input.splice(0..0, b"short\n".iter().copied());
        let (all, longs, _) = blocks(&input, 1024, 5000);
        assert_eq!(all.len(), 6 + REJECT_PREFIX_BYTES);
        assert_eq!(longs[0].len, 10_000);
        // lines longer than a block but within the limit stay whole
        let input = [vec![b'z'; 3000], b"\n".to_vec(), vec![b'w'; 3000]].concat();
        let (all, longs, n) = blocks(&input, 1024, 5000);
        assert_eq!((all, longs.len(), n), (input, 0, 2));
    }

    #[test]
    fn counts_and_offsets_take_the_skipped_bytes_into_account() {
        let normalizer =
            Normalizer::new(crate::mapping::Profile::documented()).with_max_line_bytes(100);
        let mut input = b"{\"meta_hostname\":\"a\"}\n".to_vec();
        input.extend(std::iter::repeat_n(b'q', 500_000));
        input.extend_from_slice(b"\nnot json\n{\"meta_hostname\":\"b\"}\n");
        let path = std::env::temp_dir().join(format!("sophos-tac-long-{}", std::process::id()));
        std::fs::write(&path, &input).unwrap();
        struct Keep(Vec<serde_json::Value>);
        impl Observer for Keep {
            fn reject(&mut self, r: &Reject<'_>) -> Result<(), Error> {
                self.0.push(r.to_json());
                Ok(())
            }
            fn input_error(&mut self, e: &Error) {
                panic!("{e}")
            }
        }
        for threads in [1, 2] {
            let mut out = Vec::new();
            let mut keep = Keep(Vec::new());
            let options = Options {
                threads,
                block_bytes: 4096,
            };
            let s = run(
                &normalizer,
                &[Input::Path(path.clone())],
                &mut out,
                "out",
                &mut keep,
                &options,
            )
            .unwrap();
            assert_eq!(
                (s.counts.lines, s.counts.normalized, s.counts.rejected),
                (4, 2, 2)
            );
            assert_eq!(s.bytes, input.len() as u64);
            let r = &keep.0;
            assert_eq!(r[0]["line"], 2);
            assert_eq!(r[0]["offset"], 22);
            assert_eq!(
                r[0]["reason"],
                "line is 500000 bytes, over the limit of 100 bytes"
            );
            assert_eq!(r[0]["text"].as_str().unwrap().len(), 100);
            assert_eq!(r[0]["text_truncated"], true);
            assert_eq!(r[1]["line"], 3);
            assert_eq!(r[1]["offset"], 22 + 500_001);
        }
        std::fs::remove_file(&path).unwrap();
    }
}
