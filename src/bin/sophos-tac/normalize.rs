//! `sophos-tac normalize`: files or stdin in, NDJSON out, rejects kept.

use std::fs::File;
use std::io::{BufWriter, Write};

use sophos_tac::Error;
use sophos_tac::pipeline::{self, Observer, Reject, RejectsWriter, Summary};

use crate::args::{NormalizeConfig, Target};
use crate::{EXIT_ERROR, EXIT_OK, EXIT_REJECTS};

/// Reports rejects to a file or to stderr, and input errors to stderr.
struct Report {
    rejects: Option<RejectsWriter<BufWriter<File>>>,
}

impl Observer for Report {
    fn reject(&mut self, r: &Reject<'_>) -> Result<(), Error> {
        match &mut self.rejects {
            Some(w) => w.write(r),
            None => {
                eprintln!("sophos-tac: {}:{}: {}", r.file, r.line, r.reason);
                Ok(())
            }
        }
    }

    fn input_error(&mut self, e: &Error) {
        eprintln!("sophos-tac: {e}");
    }
}

fn create(path: &std::path::Path) -> Result<BufWriter<File>, Error> {
    File::create(path)
        .map(|f| BufWriter::with_capacity(256 * 1024, f))
        .map_err(|source| Error::Create {
            path: path.to_path_buf(),
            source,
        })
}

pub fn run(c: NormalizeConfig) -> anyhow::Result<u8> {
    let rejects = match &c.rejects {
        Some(p) => Some(RejectsWriter::new(p.display().to_string(), create(p)?)),
        None => None,
    };
    let mut report = Report { rejects };
    let (mut out, out_name): (Box<dyn Write>, String) = match &c.output {
        Target::Stdout => (Box::new(stdout_file()), "<stdout>".to_string()),
        Target::File(p) => (Box::new(create(p)?), p.display().to_string()),
    };
    let summary = pipeline::run(
        &c.normalizer,
        &c.inputs,
        &mut out,
        &out_name,
        &mut report,
        &c.options,
    )?;
    if let Some(w) = &mut report.rejects {
        w.flush()?;
    }
    if !c.quiet {
        print_summary(&c, &summary);
    }
    Ok(if summary.input_errors > 0 {
        EXIT_ERROR
    } else if summary.rejected > 0 {
        EXIT_REJECTS
    } else {
        EXIT_OK
    })
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
    let mut line = format!(
        "sophos-tac: {} lines read: {} normalized, {} rejected, {} blank",
        s.lines, s.normalized, s.rejected, s.blank
    );
    if s.input_errors > 0 {
        line += &format!("; {} input(s) unreadable", s.input_errors);
    }
    eprintln!("{line}");
    let fields = c.normalizer.profile().fields();
    let warnings: Vec<String> = s
        .warnings
        .nonzero()
        .map(|(i, n)| format!("{} {n}", fields[i].name))
        .collect();
    if !warnings.is_empty() {
        eprintln!(
            "sophos-tac: warnings (value dropped, row kept): {}",
            warnings.join(", ")
        );
    }
}
