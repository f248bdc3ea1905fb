//! `sophos-tac normalize`: files or stdin in, NDJSON out, rejects kept.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use sophos_tac::Error;
use sophos_tac::pipeline::{self, Observer, Reject, RejectsWriter, Summary};
use sophos_tac::sinks::{Sink, SinkConfig, SinkContext, SinkWriter};

use crate::args::ProgressMode;
use crate::resolve::NormalizeConfig;
use crate::{EXIT_ERROR, EXIT_OK, EXIT_REJECTS};

/// Inputs at least this large get a progress bar (on a terminal).
const LARGE_INPUT: u64 = 64 * 1024 * 1024;

/// Reports rejects to a file or to stderr, input errors to stderr, and progress
/// on a terminal.
struct Report {
    rejects: Option<RejectsWriter<BufWriter<File>>>,
    progress: Option<Progress>,
}

/// A progress bar on stderr: a bar when the total size is known, a byte counter
/// otherwise, shown only once the input proves large.
struct Progress {
    bar: ProgressBar,
    shown: bool,
    /// Bytes read before a hidden counter appears.
    threshold: u64,
    done: u64,
}

impl Progress {
    /// A bar when `total` is known, else a byte counter that appears once
    /// `threshold` bytes are read.
    fn new(total: Option<u64>, threshold: u64) -> Progress {
        let (bar, shown) = match total {
            Some(total) => {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                (bar, true)
            }
            None => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {bytes} read, {bytes_per_sec}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                (bar, false)
            }
        };
        Progress {
            bar,
            shown,
            threshold,
            done: 0,
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if !self.shown && self.done >= self.threshold {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
        self.bar.set_position(self.done);
    }
}

/// The progress bar a run gets, if any (see [`wants_progress`]).
fn progress_for(c: &NormalizeConfig) -> Option<Progress> {
    let total: Option<u64> = c.inputs.iter().map(|i| i.plain_size()).sum();
    let from_start = wants_progress(c.progress, c.quiet, std::io::stderr().is_terminal(), total)?;
    Some(Progress::new(
        total,
        if from_start { 0 } else { LARGE_INPUT },
    ))
}

/// `None`: no bar. `Some(true)`: a bar from the start. `Some(false)`: a counter
/// that appears once [`LARGE_INPUT`] bytes are read (the size is unknown).
fn wants_progress(
    mode: ProgressMode,
    quiet: bool,
    terminal: bool,
    total: Option<u64>,
) -> Option<bool> {
    match (mode, terminal) {
        (ProgressMode::Never, _) | (_, false) => None,
        (ProgressMode::Always, true) => Some(true),
        (ProgressMode::Auto, true) if quiet => None,
        (ProgressMode::Auto, true) => match total {
            Some(t) if t >= LARGE_INPUT => Some(true),
            Some(_) => None,
            None => Some(false),
        },
    }
}

impl Observer for Report {
    fn reject(&mut self, r: &Reject<'_>) -> Result<(), Error> {
        match &mut self.rejects {
            Some(w) => w.write(r),
            None => {
                self.eprintln(&format!("sophos-tac: {}:{}: {}", r.file, r.line, r.reason));
                Ok(())
            }
        }
    }

    fn input_error(&mut self, e: &Error) {
        self.eprintln(&format!("sophos-tac: {e}"));
    }

    fn progress(&mut self, bytes: u64) {
        if let Some(p) = &mut self.progress {
            p.advance(bytes);
        }
    }
}

impl Report {
    /// Prints a line on stderr without tearing the progress bar.
    fn eprintln(&self, line: &str) {
        match &self.progress {
            Some(p) => p.bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

/// Creates (or starts anew, or with `append` appends to, cutting a record a kill left
/// torn) an output or rejects file, readable by its owner only and locked against a
/// second writer.
pub(crate) fn create(path: &std::path::Path, append: bool) -> Result<BufWriter<File>, Error> {
    use sophos_tac::sinks::{OpenMode, open_exclusive, open_records};
    let file = if append {
        open_records(path)?
    } else {
        open_exclusive(path, OpenMode::Truncate)?
    };
    Ok(BufWriter::with_capacity(256 * 1024, file))
}

pub fn run(c: NormalizeConfig) -> anyhow::Result<u8> {
    crate::init_logging(
        if c.verbose {
            "warn,sophos_tac=debug"
        } else {
            "warn"
        },
        c.log_format,
    );
    let rejects = match &c.rejects {
        // Consuming Kafka, a restart must not erase rejects whose offsets were committed.
        Some(p) => Some(RejectsWriter::new(
            p.display().to_string(),
            create(p, c.kafka_input.is_some())?,
        )),
        None => None,
    };
    if let Some(kafka) = &c.kafka_input {
        return crate::consume::run(&c, kafka, rejects);
    }
    let mut report = Report {
        rejects,
        progress: progress_for(&c),
    };
    // Stdout and a file are streams: written as the pipeline goes, nothing to
    // acknowledge. Every other output is a sink, delivered to in batches.
    let out_name = c.output.name();
    let mut out = match &c.output {
        SinkConfig::Stdout => Output::Stream(Box::new(stdout_file())),
        SinkConfig::File(f) => Output::Stream(Box::new(create(&f.path, false)?)),
        other => {
            // Each line is read once: a failed delivery's documents are kept aside.
            let opened = sophos_tac::sinks::build(other, &SinkContext::default())?;
            Output::Sink(SinkWriter::new(opened, other.batch_bytes()))
        }
    };
    let summary = pipeline::run(
        &c.normalizer,
        &c.inputs,
        &mut out,
        &out_name,
        &mut report,
        &c.options,
    )?;
    let refused = match &out {
        Output::Sink(w) => {
            print_report(&out_name, w.sink(), c.quiet);
            w.sink().dead_lettered()
        }
        Output::Stream(_) => 0,
    };
    if let Some(w) = &mut report.rejects {
        w.flush()?;
    }
    if let Some(p) = report.progress.take() {
        p.bar.finish_and_clear();
    }
    if !c.quiet {
        print_summary(&c, &summary);
    }
    Ok(if summary.input_errors > 0 {
        EXIT_ERROR
    } else if summary.counts.rejected > 0 || refused > 0 {
        EXIT_REJECTS
    } else {
        EXIT_OK
    })
}

/// Where the pipeline writes: a stream, or a sink whose counts are read after the run.
enum Output {
    /// Stdout or a file.
    Stream(Box<dyn Write>),
    /// Any other output, delivered to in batches.
    Sink(SinkWriter<Box<dyn Sink>>),
}

impl Write for Output {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::Stream(w) => w.write(data),
            Output::Sink(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Stream(w) => w.flush(),
            Output::Sink(w) => w.flush(),
        }
    }
}

/// A sink's end-of-run line on stderr: always when it tells of documents refused or set
/// aside, otherwise unless `quiet`.
pub(crate) fn print_report(name: &str, sink: &dyn Sink, quiet: bool) {
    if let Some(r) = sink.report()
        && (!quiet || r.warning)
    {
        eprintln!("sophos-tac: {name}: {}", r.line);
    }
}

/// Standard output without Rust's line buffering: the pipeline writes whole blocks.
fn stdout_file() -> impl Write {
    use std::os::fd::AsFd;
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(File::from(fd)) as Box<dyn Write>,
        Err(_) => Box::new(std::io::stdout()),
    }
}

fn print_summary(c: &NormalizeConfig, s: &Summary) {
    let n = &s.counts;
    let mut line = format!(
        "sophos-tac: {} lines read: {} normalized, {} rejected, {} blank",
        n.lines, n.normalized, n.rejected, n.blank
    );
    if s.input_errors > 0 {
        line += &format!("; {} input(s) unreadable", s.input_errors);
    }
    eprintln!("{line}");
    print_warnings(&c.normalizer, &n.warnings);
}

/// The warnings of a run, by field, on stderr (nothing when there were none).
pub(crate) fn print_warnings(normalizer: &sophos_tac::Normalizer, w: &sophos_tac::Warnings) {
    let fields = normalizer.profile().fields();
    let warnings: Vec<String> = w
        .nonzero()
        .map(|(i, n)| format!("{} {n}", fields[i].name))
        .collect();
    if !warnings.is_empty() {
        eprintln!(
            "sophos-tac: warnings (value dropped, row kept): {}",
            warnings.join(", ")
        );
    }
    let lone = w.lone_surrogates();
    if lone > 0 {
        eprintln!(
            "sophos-tac: warnings (row kept): {lone} row(s) with lone surrogate escapes, read as U+FFFD (message kept as written)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_rules() {
        use ProgressMode::*;
        let big = Some(LARGE_INPUT);
        let small = Some(LARGE_INPUT - 1);
        assert_eq!(wants_progress(Auto, false, true, big), Some(true));
        assert_eq!(wants_progress(Auto, false, true, small), None);
        assert_eq!(wants_progress(Auto, false, true, None), Some(false));
        assert_eq!(wants_progress(Auto, true, true, big), None, "--quiet");
        assert_eq!(
            wants_progress(Auto, false, false, big),
            None,
            "not a terminal"
        );
        assert_eq!(wants_progress(Always, true, true, small), Some(true));
        assert_eq!(wants_progress(Always, false, false, big), None);
        assert_eq!(wants_progress(Never, false, true, big), None);
    }
}
