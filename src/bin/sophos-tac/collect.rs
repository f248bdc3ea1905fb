//! `sophos-tac collect`: the collector as a service, once, or its status.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sophos_tac::collect::Collector;
use sophos_tac::collect::config::CollectConfig;

use crate::args::CollectArgs;
use crate::{EXIT_ERROR, EXIT_OK, EXIT_REJECTS, EXIT_TENANT_FAILED};

/// How long the runtime waits, after the collector stopped, for HTTP requests it
/// abandoned (they run on blocking threads and cannot be interrupted).
const ABANDONED_REQUESTS_WAIT: Duration = Duration::from_secs(1);

/// How long after SIGTERM (or Ctrl-C) the process ends at the latest.
const STOP_BOUND: Duration = Duration::from_secs(10);

pub fn run(args: CollectArgs) -> anyhow::Result<u8> {
    crate::init_logging("info", args.log_format);
    let config = CollectConfig::load(&args.config)?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if args.status {
        return status(&config);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let code = runtime.block_on(async {
        if args.check {
            return Ok(check(&args, &config).await);
        }
        let collector = Arc::new(Collector::open(config)?);
        // Once a stop is asked for, the process ends within STOP_BOUND whatever a
        // delivery under way does (a receiver that never answers): what it had not
        // committed is repaired and delivered again at the next start, as after kill -9.
        let watchdog = {
            let collector = Arc::clone(&collector);
            tokio::spawn(async move {
                collector.stopped().await;
                std::thread::spawn(|| {
                    std::thread::sleep(STOP_BOUND);
                    tracing::error!(
                        bound_secs = STOP_BOUND.as_secs(),
                        "stopping: a delivery was still under way after the stop bound; it is abandoned (repaired and delivered again at the next start)"
                    );
                    std::process::exit(i32::from(EXIT_ERROR));
                });
            })
        };
        // SIGTERM and Ctrl-C ask the collector to stop, for the whole run.
        let signals = {
            let collector = Arc::clone(&collector);
            tokio::spawn(async move {
                crate::signal::terminated().await;
                tracing::info!(
                    "stop asked for: abandoning the fetches under way, finishing the deliveries"
                );
                collector.stop();
            })
        };
        let summary = collector.run(args.once).await;
        signals.abort();
        watchdog.abort();
        let summary = summary?;
        // A failed SIEM stream counts as a failed tenant: retried next pass, and said.
        anyhow::Ok(if summary.tenants_failed > 0 || summary.streams_failed > 0 {
            EXIT_TENANT_FAILED
        } else if summary.counts.rejected > 0 {
            EXIT_REJECTS
        } else {
            EXIT_OK
        })
    });
    runtime.shutdown_timeout(ABANDONED_REQUESTS_WAIT);
    code
}

/// `--check`: prints the report; exit 0 when every check passed, else 2.
async fn check(args: &CollectArgs, config: &CollectConfig) -> u8 {
    println!("sophos-tac collect --check {}", args.config.display());
    let report = sophos_tac::collect::check::check(config).await;
    let mut problems = 0;
    for finding in &report {
        match &finding.result {
            Ok(found) => println!("ok       {}: {found}", finding.what),
            Err(problem) => {
                problems += 1;
                println!("PROBLEM  {}: {problem}", finding.what);
            }
        }
    }
    if problems == 0 {
        println!("no problem found");
        EXIT_OK
    } else {
        println!("{problems} problem(s) found");
        EXIT_ERROR
    }
}

fn status(config: &CollectConfig) -> anyhow::Result<u8> {
    let now = jiff::Timestamp::now().as_millisecond();
    let show = |ms: Option<i64>| {
        ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
            .map_or("-".to_string(), |t| t.to_string())
    };
    println!(
        "{:<38} {:<24} {:<26} {:>10} {:>10} {:>8}  {:<52}  last error",
        "tenant", "name", "checkpoint", "lag (s)", "delivered", "late", "late sweep"
    );
    for t in Collector::status(&config.file.state_dir)? {
        let lag = t
            .checkpoint_ms
            .map_or("-".to_string(), |c| ((now - c) / 1000).to_string());
        println!(
            "{:<38} {:<24} {:<26} {:>10} {:>10} {:>8}  {:<52}  {}",
            t.id,
            t.name,
            show(t.checkpoint_ms),
            lag,
            t.delivered,
            t.late,
            sweep_status(&t.sweep, config, now),
            t.last_error.as_deref().unwrap_or("-")
        );
    }
    let streams = Collector::stream_status(&config.file.state_dir)?;
    if !streams.is_empty() {
        println!();
        println!(
            "{:<38} {:<8} {:<26} {:>10} {:>10} {:>10}  {:<40}  last error",
            "tenant",
            "stream",
            "read to",
            "lag (s)",
            "delivered",
            "duplicates",
            "gaps (beyond the API's reach)"
        );
        for s in streams {
            let lag = s
                .drained_ms
                .map_or("-".to_string(), |d| ((now - d) / 1000).to_string());
            let gaps = match s.last_gap {
                None => "none".to_string(),
                Some((secs, at)) => format!(
                    "{} in all; last {} at {}",
                    human(s.gap_secs),
                    human(secs),
                    show(Some(at))
                ),
            };
            println!(
                "{:<38} {:<8} {:<26} {:>10} {:>10} {:>10}  {:<40}  {}",
                s.tenant,
                s.stream,
                show(s.drained_ms),
                lag,
                s.delivered,
                s.duplicates,
                gaps,
                // A server's words, on one line and without control characters.
                s.last_error.as_deref().map_or("-".to_string(), |e| e
                    .replace(|c: char| c.is_control(), " "))
            );
        }
    }
    Ok(EXIT_OK)
}

/// One line on a tenant's late sweep: running (progress) or idle (when it is next due),
/// the last one's rows, and BEHIND when it has been due longer than `late_sweep_secs`.
fn sweep_status(
    sweep: &sophos_tac::collect::state::SweepState,
    config: &CollectConfig,
    now: i64,
) -> String {
    let q = &config.file.query;
    if q.late_horizon_secs == 0 {
        return "off".into();
    }
    let ago = |ms: i64| human((now - ms).max(0) / 1000);
    let mut parts = Vec::new();
    if let Some(due) = sweep.due_ms
        && now - due > q.late_sweep_secs as i64 * 1000
    {
        parts.push(format!(
            "BEHIND by {}",
            ago(due + q.late_sweep_secs as i64 * 1000)
        ));
    }
    match (sweep.begin_ms, sweep.cursor_ms, sweep.end_ms) {
        (Some(begin), Some(cursor), Some(end)) => {
            let done = (cursor - begin) as f64 / (end - begin).max(1) as f64;
            parts.push(format!(
                "running {:.0}%, {} rows, {} windows, for {}",
                (100.0 * done).clamp(0.0, 100.0),
                sweep.rows,
                sweep.windows,
                sweep.started_ms.map_or("-".into(), ago)
            ));
        }
        _ => {
            if let Some(done) = sweep.done_ms {
                parts.push(format!("last {} ago: {} rows", ago(done), sweep.rows));
            }
            match sweep.due_ms {
                Some(due) if due > now => {
                    parts.push(format!("next in {}", human((due - now) / 1000)))
                }
                Some(_) => parts.push("due".into()),
                None => parts.push("first after the first pass".into()),
            }
        }
    }
    parts.join("; ")
}

/// A duration for people: `45s`, `12m`, `3h05m`, `2d04h`.
fn human(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3_600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3_600),
    }
}
