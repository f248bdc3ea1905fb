//! Delivery: the outputs, each window's rows normalized and delivered to every one of
//! them, the outbox of marks that lets a crash be repaired, and the commit that moves the
//! checkpoint once every output acknowledged.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use serde_json::value::RawValue;

use crate::collect::client::Tenant;
use crate::collect::config::{CollectConfig, OutputSection};
use crate::collect::state::{Progress, State};
use crate::collect::{CollectError, Collector, Lane, PassSummary, lateness};
use crate::normalizer::LineOutcome;
use crate::sinks::{Sink, SinkContext};
use crate::sync::lock;

/// One configured output: its name (for logs, metrics and the outbox) and its sink.
pub struct Output {
    /// `[[output]] name`, by default its type.
    pub name: String,
    /// The sink.
    pub sink: Box<dyn Sink>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Output({}: {})", self.name, self.sink.name())
    }
}

/// Opens the configured outputs. `for_check` leaves out what would change a server
/// (installing an index template).
pub fn open_outputs(config: &CollectConfig, for_check: bool) -> Result<Vec<Output>, CollectError> {
    config
        .file
        .output
        .iter()
        .map(|o| {
            Ok(Output {
                name: o.name.clone(),
                sink: open_sink(config, o, for_check)?,
            })
        })
        .collect()
}

pub(super) fn open_sink(
    config: &CollectConfig,
    o: &OutputSection,
    for_check: bool,
) -> Result<Box<dyn Sink>, CollectError> {
    // A failed window is fetched and delivered again: no sink keeps it aside.
    let context = SinkContext {
        replays: true,
        check_only: for_check,
    };
    Ok(crate::sinks::build(&config.sink(o)?, &context)?)
}

/// Undoes the deliveries that were started and never committed (after a crash, or a
/// delivery that failed part way), so that the window, delivered again, is in each
/// output once.
pub(super) fn repair_pending(state: &State, outputs: &mut [Output]) -> Result<(), CollectError> {
    for p in state.pending()? {
        let output = match &p.output {
            Some(name) => outputs.iter_mut().find(|o| o.name == *name),
            // Written by a version with a single output.
            None => outputs.first_mut(),
        };
        match output {
            Some(o) => {
                tracing::warn!(output = %o.name, sink = %o.sink.name(), "repairing a delivery that was not acknowledged");
                o.sink.repair(&p.mark)?;
            }
            None => {
                tracing::warn!(output = ?p.output, "an unacknowledged delivery to an output no longer configured: nothing to repair");
            }
        }
        state.drop_pending(p.id)?;
    }
    Ok(())
}

impl Collector {
    /// Runs a delivery off the async workers (file syncs and HTTP block): on the
    /// blocking pool for a current-thread runtime, which cannot lend its one thread (the
    /// runtime — the /healthz server, timers, the other tenants — goes on meanwhile);
    /// in place on a multi-threaded one, which hands this worker's other tasks to the
    /// others. Either way the delivery finishes even when a stop is asked for meanwhile.
    pub(super) async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce() -> Result<T, CollectError> + Send + 'static,
    ) -> Result<T, CollectError> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::current().runtime_flavor() {
            RuntimeFlavor::CurrentThread => tokio::task::spawn_blocking(work)
                .await
                .map_err(|e| CollectError::State(format!("the delivery task failed: {e}")))?,
            _ => tokio::task::block_in_place(work),
        }
    }

    /// Delivers one window's rows (off the async workers, see [`Collector::blocking`]),
    /// and logs it.
    pub(super) async fn deliver_window(
        self: &Arc<Self>,
        tenant: &Tenant,
        lane: Lane,
        (from, to): (Timestamp, Timestamp),
        rows: Vec<Box<RawValue>>,
        progress: Progress,
    ) -> Result<PassSummary, CollectError> {
        let me = Arc::clone(self);
        let owned = tenant.clone();
        let s = self
            .blocking(move || me.deliver(&owned, lane, &rows, to, progress))
            .await?;
        tracing::info!(tenant = %tenant.id, lane = lane.name(), from = %from, to = %to, rows = s.rows, duplicates = s.duplicates, delivered = s.counts.normalized, rejected = s.counts.rejected, warnings = s.counts.warnings.total(), "window delivered");
        Ok(s)
    }

    /// Dedups, normalizes and delivers one window's rows, then records the keys and
    /// moves the checkpoint or the sweep's cursor.
    pub(super) fn deliver(
        &self,
        tenant: &Tenant,
        lane: Lane,
        rows: &[Box<RawValue>],
        to: Timestamp,
        progress: Progress,
    ) -> Result<PassSummary, CollectError> {
        let mut s = PassSummary {
            rows: rows.len() as u64,
            ..PassSummary::default()
        };
        let mut keys: Vec<(String, i64)> = Vec::new();
        let mut in_window = HashSet::new();
        let mut out = Vec::new();
        // A stable id per delivered document: the row key, the same on every path.
        let mut ids: Vec<String> = Vec::new();
        s.counts.warnings = self.normalizer.new_warnings();
        // The window's rejects, written once its documents are delivered: a window that
        // fails and is fetched again does not keep its rejects twice.
        let mut rejected = Vec::new();
        // Rows keyed without their tenant (no customer_id: a query.sql that leaves it
        // out): two tenants' rows with one record_identifier would be one document.
        let mut no_customer = 0u64;
        // The rows not delivered before, found under the state's lock; then normalized
        // without it, so that the other lanes (and this lane's next fetch) go on.
        let fresh: Vec<(&RawValue, String)> = {
            let state = lock(&self.state);
            let mut fresh = Vec::with_capacity(rows.len());
            for row in rows {
                let key = crate::row::dedup_key(row.get());
                if !in_window.insert(key.clone()) || state.seen(&tenant.id, &key)? {
                    s.duplicates += 1;
                    continue;
                }
                fresh.push((&**row, key));
            }
            fresh
        };
        {
            for (row, key) in fresh {
                // The document's key, as every path computes it: from its `message`
                // (the row, or the row an envelope-like row holds).
                let mut id = String::new();
                let outcome = self.normalizer.normalize_line_keyed(
                    row.get().as_bytes(),
                    &mut out,
                    &mut s.counts.warnings,
                    Some(&mut id),
                );
                s.counts.count(&outcome);
                match outcome {
                    LineOutcome::Normalized => {
                        if id.starts_with("id:") {
                            no_customer += 1;
                        }
                        ids.push(id);
                        if lane == Lane::Sweep {
                            s.late += 1;
                            let (calendar_time, late) = lateness(row.get());
                            tracing::info!(
                                tenant = %tenant.id,
                                key = %key,
                                calendar_time = calendar_time.map(|t| t.to_string()),
                                lateness_secs = late.map(|d| d.as_secs()),
                                "late row caught by the sweep"
                            );
                        }
                    }
                    LineOutcome::Blank => {}
                    LineOutcome::Rejected(reason) => {
                        keep_reject(&tenant.id, &reason, row.get().as_bytes(), &mut rejected);
                    }
                }
                // Kept until the window's end (at or after the row's own time) leaves
                // every window's reach; see `live`.
                keys.push((key, to.as_millisecond()));
            }
        }
        if no_customer > 0 {
            tracing::warn!(tenant = %tenant.id, rows = no_customer, "rows without customer_id are keyed by their record_identifier alone, so rows of two tenants with the same one would be one document: keep customer_id in query.sql (SELECT * does)");
        }
        // One delivery at a time, to every output: mark, deliver (durable), then commit.
        let mut outputs = lock(&self.outputs);
        let outbox =
            self.deliver_and_keep_rejects(&tenant.id, &mut outputs, &out, &ids, &rejected)?;
        let committed = lock(&self.state).commit_delivery(
            &outbox,
            &tenant.id,
            &keys,
            s.counts.normalized,
            progress,
        );
        self.metrics
            .state_result(committed.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        committed?;
        self.metrics.window(&tenant.id, &s);
        if let Progress::Live { checkpoint_ms, .. } = progress {
            self.metrics.checkpoint(&tenant.id, checkpoint_ms);
        }
        for o in outputs.iter_mut() {
            o.sink.committed()?;
        }
        Ok(s)
    }

    /// Delivers a batch's documents to every output (when it has any) and then appends
    /// its rejects to `rejects.ndjson` (whole or cut back on a full disk, and synced
    /// before the commit); returns the outbox entries to forget at the commit.
    pub(super) fn deliver_and_keep_rejects(
        &self,
        tenant: &str,
        outputs: &mut [Output],
        out: &[u8],
        ids: &[String],
        rejected: &[u8],
    ) -> Result<Vec<i64>, CollectError> {
        let outbox = if out.is_empty() {
            Vec::new()
        } else {
            self.deliver_everywhere(tenant, outputs, out, ids)?
        };
        if !rejected.is_empty() {
            crate::sinks::append_whole(&mut lock(&self.rejects), rejected)
                .map_err(|e| CollectError::State(format!("rejects.ndjson: {e}")))?;
        }
        Ok(outbox)
    }

    /// Delivers a window's documents to every output, after recording each output's
    /// mark; returns the outbox entries to forget once the window is committed. When an
    /// output fails, the outputs that took the window are repaired back to their marks
    /// (a file is cut back; an index keeps the documents, whose ids make the next
    /// delivery a no-op) and the error is returned: the window is not committed, and
    /// the next pass fetches and delivers it again.
    pub(super) fn deliver_everywhere(
        &self,
        tenant: &str,
        outputs: &mut [Output],
        out: &[u8],
        ids: &[String],
    ) -> Result<Vec<i64>, CollectError> {
        let documents = ids.len() as u64;
        {
            let state = lock(&self.state);
            // A delivery that failed before left its marks: undo it first.
            repair_pending(&state, outputs)?;
        }
        let mut outbox = Vec::with_capacity(outputs.len());
        for o in outputs.iter_mut() {
            let mark = o.sink.mark()?;
            outbox.push(lock(&self.state).begin_delivery(tenant, &o.name, &mark)?);
        }
        for o in outputs.iter_mut() {
            let started = Instant::now();
            let dead_before = o.sink.dead_lettered();
            self.metrics
                .delivering(Some((&o.name, o.sink.delivery_bound(ids.len(), out.len()))));
            let delivered = o.sink.deliver(out, Some(ids));
            self.metrics.delivering(None);
            if let Err(e) = delivered {
                tracing::error!(output = %o.name, sink = %o.sink.name(), error = %e, "an output failed: the window is not committed, and every output will be repaired and take it again");
                let state = lock(&self.state);
                if let Err(repair) = repair_pending(&state, outputs) {
                    tracing::error!(error = %repair, "the repair failed; it is tried again before the next delivery");
                }
                return Err(e.into());
            }
            let dead = o.sink.dead_lettered() - dead_before;
            self.metrics.output(
                &o.name,
                documents - dead.min(documents),
                dead,
                started.elapsed(),
            );
        }
        crash_point();
        Ok(outbox)
    }
}

/// Appends the reject record of a tenant's row or item (one line) to `rejected`.
pub(super) fn keep_reject(
    tenant: &str,
    reason: &crate::error::RejectReason,
    bytes: &[u8],
    rejected: &mut Vec<u8>,
) {
    let record = crate::reject::record(&crate::reject::Origin::Tenant { tenant }, reason, bytes);
    rejected.extend_from_slice(record.to_string().as_bytes());
    rejected.push(b'\n');
}

/// A fault-injection point for the crash tests, built only with the `fault-injection`
/// feature (which `cargo test` turns on, and `cargo build` and `cargo install` leave out):
/// with `SOPHOS_TAC_CRASH_AFTER_DELIVERIES=N`, the process aborts after its N-th delivery,
/// before that delivery is committed — the worst moment for a crash.
#[cfg(not(feature = "fault-injection"))]
fn crash_point() {}

#[cfg(feature = "fault-injection")]
fn crash_point() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static DELIVERIES: AtomicU64 = AtomicU64::new(0);
    if let Some(n) = std::env::var("SOPHOS_TAC_CRASH_AFTER_DELIVERIES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        && DELIVERIES.fetch_add(1, Ordering::SeqCst) + 1 >= n
    {
        std::process::abort();
    }
}
