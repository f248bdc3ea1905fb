//! `sophos-tac normalize --input kafka://…?group=NAME`: one member of a consumer group,
//! until SIGTERM or Ctrl-C.

use std::fs::File;
use std::io::{BufWriter, IsTerminal};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sophos_tac::Error;
use sophos_tac::kafka::KafkaConfig;
use sophos_tac::pipeline::RejectsWriter;
use sophos_tac::sinks::{Sink, SinkContext};
use sophos_tac::sources::kafka::{self as source, SourceObserver, SourceSummary};

use crate::args::ProgressMode;
use crate::resolve::NormalizeConfig;
use crate::{EXIT_OK, EXIT_REJECTS};

/// Rejects to a file (synced before each commit) or stderr; progress on a terminal.
struct Report {
    rejects: Option<RejectsWriter<BufWriter<File>>>,
    bar: Option<ProgressBar>,
}

impl SourceObserver for Report {
    fn reject(&mut self, r: &serde_json::Value) -> Result<(), Error> {
        match &mut self.rejects {
            Some(w) => w.write_record(r),
            None => {
                let line = format!(
                    "sophos-tac: {}/{}@{}: {}",
                    r["topic"].as_str().unwrap_or_default(),
                    r["partition"],
                    r["offset"],
                    r["reason"].as_str().unwrap_or_default()
                );
                match &self.bar {
                    Some(bar) => bar.suspend(|| eprintln!("{line}")),
                    None => eprintln!("{line}"),
                }
                Ok(())
            }
        }
    }

    fn before_commit(&mut self) -> Result<(), Error> {
        let Some(w) = &mut self.rejects else {
            return Ok(());
        };
        w.flush()?;
        let name = w.name().to_string();
        w.get_mut()
            .get_ref()
            .sync_data()
            .map_err(|source| Error::Write { path: name, source })
    }

    fn progress(&mut self, s: &SourceSummary) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{} messages: {} normalized, {} rejected, {} batches committed",
                s.messages, s.counts.normalized, s.counts.rejected, s.batches
            ));
        }
    }
}

pub fn run(
    c: &NormalizeConfig,
    kafka: &KafkaConfig,
    rejects: Option<RejectsWriter<BufWriter<File>>>,
) -> anyhow::Result<u8> {
    let stop = Arc::new(AtomicBool::new(false));
    crate::signal::set_on_termination(Arc::clone(&stop));
    // A member restarts where its group committed: a file output is appended to, and a
    // failed delivery's messages are read again, so nothing is kept aside.
    let context = SinkContext {
        replays: true,
        ..SinkContext::default()
    };
    let mut output = sophos_tac::sinks::build(&c.output, &context)?;
    let terminal = std::io::stderr().is_terminal();
    let bar = (terminal && !c.quiet && c.progress != ProgressMode::Never).then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar.set_message(format!(
            "joining group {}",
            kafka.group.as_deref().unwrap_or("")
        ));
        bar
    });
    let mut report = Report { rejects, bar };
    let summary = source::run(
        kafka,
        &c.kafka_batch,
        &c.normalizer,
        output.as_mut(),
        &mut report,
        &stop,
    )?;
    if let Some(bar) = report.bar.take() {
        bar.finish_and_clear();
    }
    let refused = output.dead_lettered();
    if !c.quiet {
        let lag = summary
            .lag
            .map_or_else(|| "unknown".to_string(), |l| l.to_string());
        eprintln!(
            "sophos-tac: {} (group {}): {} messages, {} lines: {} normalized, {} rejected, {} blank; {} batches committed; lag {lag}",
            kafka.url(),
            kafka.group.as_deref().unwrap_or(""),
            summary.messages,
            summary.counts.lines,
            summary.counts.normalized,
            summary.counts.rejected,
            summary.counts.blank,
            summary.batches,
        );
        if summary.commits_refused > 0 {
            eprintln!(
                "sophos-tac: {} commit(s) refused in rebalances: those batches are read again by their partitions' new owners",
                summary.commits_refused
            );
        }
        crate::normalize::print_warnings(&c.normalizer, &summary.counts.warnings);
    }
    crate::normalize::print_report(&c.output.name(), output.as_ref(), c.quiet);
    Ok(if summary.counts.rejected > 0 || refused > 0 {
        EXIT_REJECTS
    } else {
        EXIT_OK
    })
}
