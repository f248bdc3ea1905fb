//! `collect`: pulls Threat Analysis Center rows from Sophos Central, normalizes them
//! and delivers them, with no loss and no duplicates.
//!
//! Each pass has two lanes per tenant, live first:
//!
//! - **Live**: `[checkpoint − overlap, now)` (the first run starts at now − lookback) is
//!   queried in the XDR Data Lake, as one window when its results fit the page budget
//!   (`max_window_pages`), split into narrower windows when they do not.
//! - **Late sweep**: every `late_sweep_secs`, `[now − reach, checkpoint)` is queried
//!   again (reach = `late_horizon_secs` + `late_sweep_secs` + `overlap_secs`, never
//!   before the tenant's first window), in windows sized the same way, so that a row
//!   that reaches the Data Lake up to `late_horizon_secs` after its `calendar_time` is
//!   still delivered. Its progress is kept in the state, so a crash resumes it.
//!
//! Rows whose key (`record_identifier`, or a SHA-256 of the row) was delivered before
//! are dropped; keys live as long as any window can return their row. The others are
//! normalized and delivered to every output. The checkpoint (or the sweep's cursor)
//! moves only after every output acknowledged the whole window, in the same transaction
//! that records the keys. Before delivering, each output's mark is recorded; after a
//! crash (even `kill -9`), or when an output fails part way, the outputs are repaired
//! back to their marks, and the window is fetched again. So a crash repeats at most one
//! window's work and, with file and index outputs, never loses or duplicates a row.

pub mod check;
pub mod client;
pub mod config;
pub mod metrics;
pub mod service;
pub mod state;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::sync::lock;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::value::RawValue;

use crate::mapping::Profile;
use crate::normalizer::{LineOutcome, Normalizer};
use crate::sinks::{Sink, SinkContext};
use client::{Client, Fetched, Tenant};
use config::{CollectConfig, OutputSection};
use metrics::Metrics;
use state::{Progress, State};

/// The narrowest window: one that still holds more rows than the page budget is read
/// whole rather than split again.
const MIN_WINDOW: SignedDuration = SignedDuration::from_secs(1);

/// How far back a live lane may reach at most (what the Data Lake keeps).
const LIVE_REACH_SECS: u64 = 30 * 86_400;

/// What can go wrong while collecting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// The configuration is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The credential was refused, or the token endpoint failed.
    #[error("authentication: {0}")]
    Auth(String),
    /// An API answered with an error status.
    #[error("{url}: HTTP {status}: {body}")]
    Http {
        /// The URL called.
        url: String,
        /// The status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// A connection error or timeout, after the retries.
    #[error("{0}")]
    Transport(String),
    /// An API answer was not what the API documents.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// A query run did not succeed.
    #[error("query run {run} did not succeed: {result}")]
    QueryFailed {
        /// The run id.
        run: String,
        /// Its result (`failed`, `timedOut`, …).
        result: String,
    },
    /// The state database failed.
    #[error("state: {0}")]
    State(String),
    /// The sink failed.
    #[error("{0}")]
    Sink(#[from] crate::Error),
}

/// The counts of one pass over the tenants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassSummary {
    /// Tenants collected without error.
    pub tenants_ok: usize,
    /// Tenants whose collection failed (they are retried next pass).
    pub tenants_failed: usize,
    /// Rows received from the API.
    pub rows: u64,
    /// Rows dropped as already delivered.
    pub duplicates: u64,
    /// Documents delivered.
    pub delivered: u64,
    /// Of those, rows that only a late sweep caught.
    pub late: u64,
    /// Rows that are not rows (kept in `rejects.ndjson` in the state directory).
    pub rejected: u64,
    /// Late sweeps finished in this pass.
    pub sweeps_finished: usize,
    /// Tenants whose sweep is behind: it has been due for longer than `late_sweep_secs`.
    pub sweeps_behind: usize,
}

impl PassSummary {
    fn add(&mut self, o: &PassSummary) {
        self.rows += o.rows;
        self.duplicates += o.duplicates;
        self.delivered += o.delivered;
        self.late += o.late;
        self.rejected += o.rejected;
        self.sweeps_finished += o.sweeps_finished;
        self.sweeps_behind += o.sweeps_behind;
    }
}

/// The two lanes of a tenant's collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// From the checkpoint to now.
    Live,
    /// The late sweep, over the horizon behind the checkpoint.
    Sweep,
}

impl Lane {
    fn name(self) -> &'static str {
        match self {
            Lane::Live => "live",
            Lane::Sweep => "sweep",
        }
    }
}

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

fn open_sink(
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
fn repair_pending(state: &State, outputs: &mut [Output]) -> Result<(), CollectError> {
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

/// A running collector: client, state, outputs and normalizer.
pub struct Collector {
    config: CollectConfig,
    client: Client,
    state: Mutex<State>,
    outputs: Mutex<Vec<Output>>,
    rejects: Mutex<std::fs::File>,
    normalizer: Normalizer,
    metrics: Arc<Metrics>,
    /// Per tenant, the widest window its recent results allow (learned; starts wide).
    spans: Mutex<HashMap<String, Sizing>>,
    /// True once a stop was asked for ([`Collector::stop`]; the binary asks on SIGTERM and Ctrl-C): the
    /// fetches under way are abandoned, the deliveries under way finish and are
    /// committed, and no new window starts.
    stop: tokio::sync::watch::Sender<bool>,
    /// Held for the collector's life: one collector per state directory.
    _lock: std::fs::File,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn secs(n: u64) -> SignedDuration {
    SignedDuration::from_secs(i64::try_from(n).unwrap_or(i64::MAX))
}

fn from_ms(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl Collector {
    /// Opens the state and the sink, and repairs a delivery a crash interrupted. Fails
    /// when another collector runs on the same state directory.
    pub fn open(config: CollectConfig) -> Result<Collector, CollectError> {
        let dir_lock = state::lock_dir(&config.file.state_dir)?;
        let state = State::open(&config.file.state_dir)?;
        let mut outputs = open_outputs(&config, false)?;
        repair_pending(&state, &mut outputs)?;
        let metrics = Arc::new(Metrics::new());
        for t in state.status()? {
            metrics.restore_tenant(&t);
        }
        for o in &outputs {
            metrics.register_output(&o.name);
        }
        let rejects_path = config.file.state_dir.join("rejects.ndjson");
        let rejects = crate::sinks::open_records(&rejects_path)
            .map_err(|e| CollectError::State(e.to_string()))?;
        let profile = Profile::by_name(&config.file.profile).unwrap_or_else(Profile::documented);
        Ok(Collector {
            client: Client::new(&config, Arc::clone(&metrics))?,
            normalizer: Normalizer::new(profile),
            state: Mutex::new(state),
            outputs: Mutex::new(outputs),
            rejects: Mutex::new(rejects),
            metrics,
            spans: Mutex::new(HashMap::new()),
            stop: tokio::sync::watch::Sender::new(false),
            _lock: dir_lock,
            config,
        })
    }

    /// The collector's metrics and readiness.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Asks the collector to stop: the fetches under way are abandoned (nothing of them
    /// was committed), the deliveries under way finish, no new window starts, and
    /// [`Collector::run`] returns.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// True once a stop was asked for.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Returns once a stop is asked for.
    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        // The sender lives as long as `self`: an error cannot happen while we wait.
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Runs `work` unless a stop is asked for first (then `None`: `work` is dropped).
    async fn unless_stopped<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, CollectError>>,
    ) -> Result<Option<T>, CollectError> {
        tokio::select! {
            biased;
            () = self.stopped() => Ok(None),
            r = work => r.map(Some),
        }
    }

    /// Discovers the tenants to collect (whoami, then the tenant listing), filtered by
    /// the allow and deny lists.
    pub async fn discover(&self) -> Result<Vec<Tenant>, CollectError> {
        let principal = self.client.whoami().await?;
        let all = self.client.tenants(&principal).await?;
        let chosen = choose_tenants(all, &self.config.file.tenants);
        tracing::info!(
            kind = principal.kind(),
            tenants = chosen.len(),
            "discovered"
        );
        let state = lock(&self.state);
        for tenant in &chosen {
            state.add_tenant(&tenant.id, &tenant.name)?;
            self.metrics.add_tenant(&tenant.id);
        }
        Ok(chosen)
    }

    /// One pass, live first: every tenant's live lane until it is caught up (up to
    /// `limits.concurrency` tenants at a time), then the late sweeps that are due,
    /// longest-due first, until `sweep_deadline` (`None`: every due sweep to its end).
    /// A failing tenant is recorded and skipped; the others go on.
    pub async fn pass(
        self: &Arc<Self>,
        tenants: &[Tenant],
        sweep_deadline: Option<Instant>,
    ) -> PassSummary {
        let mut summary = PassSummary::default();
        let live = self
            .each_tenant(tenants.to_vec(), |me, tenant| async move {
                me.live(&tenant).await
            })
            .await;
        let mut healthy = Vec::new();
        for (tenant, result) in live {
            match result {
                Ok(s) => {
                    summary.add(&s);
                    healthy.push(tenant);
                }
                Err(e) => self.tenant_failed(&mut summary, &tenant, &e),
            }
        }
        if self.config.file.query.late_horizon_secs > 0 {
            // Longest-due first, so that a tight budget cannot starve the same tenants.
            let due = |t: &Tenant| {
                lock(&self.state)
                    .tenant(&t.id)
                    .ok()
                    .flatten()
                    .and_then(|t| t.sweep.due_ms)
                    .unwrap_or(i64::MAX)
            };
            healthy.sort_by_cached_key(due);
            let sweeps = self
                .each_tenant(healthy, move |me, tenant| async move {
                    me.sweep(&tenant, sweep_deadline).await
                })
                .await;
            for (tenant, result) in sweeps {
                match result {
                    Ok(s) => summary.add(&s),
                    Err(e) => self.tenant_failed(&mut summary, &tenant, &e),
                }
            }
        }
        summary.tenants_ok = tenants.len() - summary.tenants_failed;
        summary
    }

    /// Runs `work` for every tenant, `limits.concurrency` at a time, in the given order.
    async fn each_tenant<F, Fut>(
        self: &Arc<Self>,
        tenants: Vec<Tenant>,
        work: F,
    ) -> Vec<(Tenant, Result<PassSummary, CollectError>)>
    where
        F: Fn(Arc<Self>, Tenant) -> Fut,
        Fut: std::future::Future<Output = Result<PassSummary, CollectError>> + Send + 'static,
    {
        let permits = Arc::new(tokio::sync::Semaphore::new(
            self.config.file.limits.concurrency.max(1),
        ));
        let mut tasks = tokio::task::JoinSet::new();
        let mut ids = HashMap::new();
        for tenant in tenants {
            // Taken in order, so that the first tenants start first.
            let permit = Arc::clone(&permits).acquire_owned().await;
            let job = work(Arc::clone(self), tenant.clone());
            let handle = tasks.spawn(async move {
                let _permit = permit;
                job.await
            });
            ids.insert(handle.id(), tenant);
        }
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next_with_id().await {
            match joined {
                Ok((id, result)) => {
                    if let Some(tenant) = ids.remove(&id) {
                        results.push((tenant, result));
                    }
                }
                Err(e) => {
                    // A task that panicked counts as a failed tenant, retried next pass.
                    if let Some(tenant) = ids.remove(&e.id()) {
                        let message = format!("the tenant's task failed: {e}");
                        results.push((tenant, Err(CollectError::State(message))));
                    }
                }
            }
        }
        results
    }

    fn tenant_failed(&self, summary: &mut PassSummary, tenant: &Tenant, e: &CollectError) {
        summary.tenants_failed += 1;
        self.metrics.failure(&tenant.id);
        tracing::error!(tenant = %tenant.id, name = %tenant.name, error = %e, "tenant failed; it will be retried");
        let _ = lock(&self.state).record_error(&tenant.id, &e.to_string());
    }

    /// The live lane: windows from the checkpoint until it reaches now; then forgets the
    /// keys no window can return any more.
    ///
    /// Only the lane's first window reaches back by the overlap (or to where the last
    /// lane's windows were read too close to their query to be complete); each window
    /// after it starts where the one before ended, so that a dense overlap (an outbreak)
    /// is read once per pass, not once per window, and the calls stay in proportion to
    /// the rows.
    async fn live(&self, tenant: &Tenant) -> Result<PassSummary, CollectError> {
        let q = &self.config.file.query;
        let overlap = secs(q.overlap_secs);
        let mut total = PassSummary::default();
        // Where the next window starts, once the first one was read.
        let mut next: Option<Timestamp> = None;
        // The oldest time this lane read too close to its query for late rows to be
        // there: recorded with each window, the next lane's first window reaches back to
        // it (after a failure or a restart too).
        let mut incomplete: Option<Timestamp> = None;
        let (checkpoint, reread) = loop {
            if self.stopping() {
                return Ok(total);
            }
            let now = Timestamp::now();
            let t = lock(&self.state).tenant(&tenant.id)?;
            let checkpoint = t.as_ref().and_then(|t| t.checkpoint_ms).map(from_ms);
            let from = match next {
                Some(from) => from,
                None => {
                    let start = live_start(checkpoint, now, secs(q.lookback_secs), overlap);
                    let reread = t.as_ref().and_then(|t| t.reread_ms).map(from_ms);
                    reread.map_or(start, |r| r.min(start).max(now - secs(LIVE_REACH_SECS)))
                }
            };
            if let Some(c) = checkpoint {
                let lag_ms = now.duration_since(c).as_millis() as i64;
                tracing::debug!(tenant = %tenant.id, lag_ms, "live lane");
            }
            // A window ends past the checkpoint however dense the rows, or it would
            // not move forward.
            let floor = checkpoint.map_or(from, |c| c.max(from)) + MIN_WINDOW;
            let fetch = self.fetch_window(tenant, from, floor, now);
            let Some((to, rows)) = self.unless_stopped(fetch).await? else {
                return Ok(total);
            };
            // Rows of `[now − overlap, to)` may still be on their way: unless an
            // earlier window of this lane already left that open, remember it.
            let open = from.max(now - overlap);
            if to > open && incomplete.is_none() {
                incomplete = Some(open);
            }
            // Kept only where the next lane's usual start (`checkpoint − overlap`) does
            // not reach.
            let reread = incomplete.filter(|i| *i < to - overlap);
            let progress = Progress::Live {
                from_ms: from.as_millisecond(),
                checkpoint_ms: to.as_millisecond(),
                reread_ms: reread.map(Timestamp::as_millisecond),
            };
            let s = self.deliver_window(tenant, Lane::Live, from, to, &rows, progress)?;
            total.add(&s);
            next = Some(to);
            if to >= now {
                // Caught up: the last window's end is the checkpoint now.
                self.metrics.success(&tenant.id);
                break (to, reread);
            }
        };
        let reach = self.config.sweep_reach();
        let before = (Timestamp::now() - reach)
            .min(checkpoint - overlap)
            .min(reread.unwrap_or(checkpoint))
            - overlap;
        let pruned = lock(&self.state).prune(&tenant.id, before.as_millisecond())?;
        if pruned > 0 {
            tracing::debug!(tenant = %tenant.id, pruned, "forgot keys no window can return");
        }
        Ok(total)
    }

    /// The late sweep: when it is due, re-queries `[now − reach, checkpoint)` (never
    /// before the tenant's first window) and delivers what was not delivered before.
    /// Stops at `deadline` between two windows; the next pass resumes at the cursor.
    async fn sweep(
        &self,
        tenant: &Tenant,
        deadline: Option<Instant>,
    ) -> Result<PassSummary, CollectError> {
        let q = &self.config.file.query;
        let every = secs(q.late_sweep_secs);
        let reach = self.config.sweep_reach();
        let mut total = PassSummary::default();
        let Some(t) = lock(&self.state).tenant(&tenant.id)? else {
            return Ok(total);
        };
        let (Some(checkpoint), Some(origin)) = (t.checkpoint_ms, t.origin_ms) else {
            return Ok(total); // no live window yet
        };
        let now = Timestamp::now();
        let Some(due) = t.sweep.due_ms else {
            // The first live windows just read everything: the first sweep is one
            // interval away.
            lock(&self.state).schedule_sweep(&tenant.id, (now + every).as_millisecond())?;
            return Ok(total);
        };
        let overdue = now.as_millisecond() - due;
        if overdue > every.as_millis() as i64 {
            total.sweeps_behind = 1;
            tracing::warn!(
                tenant = %tenant.id,
                name = %tenant.name,
                overdue_secs = overdue / 1000,
                "the late sweep is behind: the API budget does not cover every tenant's sweep within late_sweep_secs (raise late_sweep_secs or the limits, or lower late_horizon_secs)"
            );
        }
        if !t.sweep.running() {
            if overdue < 0 {
                return Ok(total);
            }
            let begin = sweep_begin(now, reach, origin, t.pruned_before_ms);
            lock(&self.state).start_sweep(&tenant.id, begin, checkpoint)?;
            tracing::info!(tenant = %tenant.id, from = %from_ms(begin), to = %from_ms(checkpoint), "late sweep started");
        }
        loop {
            let Some(t) = lock(&self.state).tenant(&tenant.id)? else {
                return Ok(total);
            };
            let (Some(cursor), Some(end)) = (t.sweep.cursor_ms, t.sweep.end_ms) else {
                return Ok(total);
            };
            let now = Timestamp::now();
            let from = from_ms(cursor.max((now - reach).as_millisecond()));
            let end = from_ms(end);
            if from >= end {
                let started = t.sweep.started_ms.unwrap_or(now.as_millisecond());
                let next = started + every.as_millis() as i64;
                lock(&self.state).finish_sweep(&tenant.id, next)?;
                total.sweeps_finished += 1;
                tracing::info!(
                    tenant = %tenant.id,
                    rows = t.sweep.rows,
                    windows = t.sweep.windows,
                    secs = (now.as_millisecond() - started) / 1000,
                    next = %from_ms(next),
                    "late sweep done"
                );
                return Ok(total);
            }
            if self.stopping() || deadline.is_some_and(|d| Instant::now() >= d) {
                tracing::debug!(tenant = %tenant.id, cursor = %from, "late sweep paused until the next pass (live windows first)");
                return Ok(total);
            }
            let fetch = self.fetch_window(tenant, from, from + MIN_WINDOW, end);
            let Some((to, rows)) = self.unless_stopped(fetch).await? else {
                return Ok(total);
            };
            let progress = Progress::Sweep {
                cursor_ms: to.as_millisecond(),
            };
            let s = self.deliver_window(tenant, Lane::Sweep, from, to, &rows, progress)?;
            total.add(&s);
        }
    }

    /// Queries `[from, end)`, or its widest start `[from, to)` whose results fit the page
    /// budget, with `to` at least `floor`; returns `to` and the rows. A window over
    /// budget is abandoned after its first page and narrowed in proportion to its row
    /// count (or halved when the API does not give the count); the narrower width is
    /// remembered for the tenant, and doubled again after windows that used less than a
    /// quarter of the budget. A window that cannot be narrowed (down to `floor`) is read
    /// whole, whatever its size.
    async fn fetch_window(
        &self,
        tenant: &Tenant,
        from: Timestamp,
        floor: Timestamp,
        end: Timestamp,
    ) -> Result<(Timestamp, Vec<Box<RawValue>>), CollectError> {
        let q = &self.config.file.query;
        let budget = u64::from(q.max_window_pages) * u64::from(q.page_size);
        let widest = secs(q.max_window_secs).max(MIN_WINDOW);
        let sql = self.config.sql();
        let sizing = lock(&self.spans).get(&tenant.id).copied();
        let mut span = sizing.map_or(widest, |s| s.span).min(widest);
        // What an earlier, over-budget window said of the time ahead.
        // (Only a stretch this window starts in: the other lane's is not about it.)
        let mut over = sizing
            .and_then(|s| s.over)
            .filter(|o| o.since <= from && o.end > from);
        loop {
            let to =
                window_end(from, span, floor, end, over, budget).min((from + widest).max(floor));
            let width = to.duration_since(from);
            let limit = (to > floor).then_some(budget);
            match self.client.query(tenant, &sql, from, to, q, limit).await? {
                Fetched::Rows(rows) => {
                    let next = if to < end && (rows.len() as u64) < budget / 4 {
                        (span * 2).min(widest)
                    } else {
                        span
                    };
                    // The rest of a known over-budget stretch holds what this window
                    // did not.
                    let over = over.filter(|o| o.end > to).map(|o| Over {
                        end: o.end,
                        rows: o.rows.saturating_sub(rows.len() as u64),
                        since: to,
                    });
                    lock(&self.spans).insert(tenant.id.clone(), Sizing { span: next, over });
                    return Ok((to, rows));
                }
                Fetched::TooMany { total } => {
                    span = narrowed(width, total, budget);
                    over = Some(Over {
                        end: to,
                        rows: total.unwrap_or(budget + 1),
                        since: from,
                    });
                    lock(&self.spans).insert(tenant.id.clone(), Sizing { span, over });
                    tracing::info!(
                        tenant = %tenant.id,
                        from = %from,
                        to = %to,
                        rows = total,
                        budget,
                        narrower_secs = span.as_secs(),
                        "the window holds more rows than its page budget: narrowing it"
                    );
                }
            }
        }
    }

    /// Delivers one window's rows (off the async workers: file sync and HTTP block),
    /// and logs it.
    fn deliver_window(
        &self,
        tenant: &Tenant,
        lane: Lane,
        from: Timestamp,
        to: Timestamp,
        rows: &[Box<RawValue>],
        progress: Progress,
    ) -> Result<PassSummary, CollectError> {
        let deliver = || self.deliver(tenant, lane, rows, to, progress);
        // On a multi-threaded runtime the blocking delivery moves off the async worker;
        // a current-thread runtime (which cannot) runs it in place.
        let s = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::CurrentThread => deliver(),
            _ => tokio::task::block_in_place(deliver),
        }?;
        tracing::info!(tenant = %tenant.id, lane = lane.name(), from = %from, to = %to, rows = s.rows, duplicates = s.duplicates, delivered = s.delivered, rejected = s.rejected, "window delivered");
        Ok(s)
    }

    /// Dedups, normalizes and delivers one window's rows, then records the keys and
    /// moves the checkpoint or the sweep's cursor.
    fn deliver(
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
        let mut warnings = self.normalizer.new_warnings();
        // The window's rejects, written once its documents are delivered: a window that
        // fails and is fetched again does not keep its rejects twice.
        let mut rejected = Vec::new();
        // Rows keyed without their tenant (no customer_id: a query.sql that leaves it
        // out): two tenants' rows with one record_identifier would be one document.
        let mut no_customer = 0u64;
        {
            let state = lock(&self.state);
            for row in rows {
                let key = crate::row::dedup_key(row.get());
                if !in_window.insert(key.clone()) || state.seen(&tenant.id, &key)? {
                    s.duplicates += 1;
                    continue;
                }
                let start = out.len();
                match self
                    .normalizer
                    .normalize_line(row.get().as_bytes(), &mut out, &mut warnings)
                {
                    LineOutcome::Normalized => {
                        // The document's key, as every path computes it: from its
                        // `message` (the row, or the row an envelope-like row holds).
                        let id = crate::sinks::document_key(&out[start..out.len() - 1]);
                        if id.starts_with("id:") {
                            no_customer += 1;
                        }
                        ids.push(id);
                        s.delivered += 1;
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
                        s.rejected += 1;
                        let mut record = serde_json::json!({ "tenant": tenant.id, "reason": reason.to_string() });
                        crate::pipeline::add_text_of(&mut record, row.get().as_bytes(), &reason);
                        rejected.extend_from_slice(record.to_string().as_bytes());
                        rejected.push(b'\n');
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
        let outbox = if out.is_empty() {
            Vec::new()
        } else {
            self.deliver_everywhere(&tenant.id, &mut outputs, &out, &ids)?
        };
        if !rejected.is_empty() {
            // Whole or cut back (a full disk), and synced before the commit.
            crate::sinks::append_whole(&mut lock(&self.rejects), &rejected)
                .map_err(|e| CollectError::State(format!("rejects.ndjson: {e}")))?;
        }
        let committed =
            lock(&self.state).commit_delivery(&outbox, &tenant.id, &keys, s.delivered, progress);
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

    /// Delivers a window's documents to every output, after recording each output's
    /// mark; returns the outbox entries to forget once the window is committed. When an
    /// output fails, the outputs that took the window are repaired back to their marks
    /// (a file is cut back; an index keeps the documents, whose ids make the next
    /// delivery a no-op) and the error is returned: the window is not committed, and
    /// the next pass fetches and delivers it again.
    fn deliver_everywhere(
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

    /// Runs passes until [`Collector::stop`] is called (the `sophos-tac` binary calls it
    /// on SIGTERM and Ctrl-C; the library installs no signal handler), or once. In service mode the late
    /// sweeps of a pass stop at the next pass's start (`interval_secs`), so that live
    /// windows come first; `once` runs every due sweep to its end.
    pub async fn run(self: Arc<Self>, once: bool) -> Result<PassSummary, CollectError> {
        let interval = Duration::from_secs(self.config.file.query.interval_secs.max(1));
        let endpoint = match self.config.file.service.listen {
            Some(addr) => {
                let listener = service::bind(addr).await?;
                tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
                Some(tokio::spawn(service::serve(listener, Arc::clone(&self))))
            }
            None => None,
        };
        let result = self.passes(once, interval).await;
        if let Some(endpoint) = endpoint {
            endpoint.abort();
        }
        result
    }

    async fn passes(
        self: &Arc<Self>,
        once: bool,
        interval: Duration,
    ) -> Result<PassSummary, CollectError> {
        loop {
            let next_pass = Instant::now() + interval;
            let deadline = (!once).then_some(next_pass);
            let summary = match self.unless_stopped(self.discover()).await {
                Ok(None) => return Ok(PassSummary::default()),
                Ok(Some(tenants)) => self.pass(&tenants, deadline).await,
                Err(e) if once => return Err(e),
                Err(e) => {
                    tracing::error!(error = %e, "discovery failed; retrying next pass");
                    PassSummary::default()
                }
            };
            tracing::info!(
                ok = summary.tenants_ok,
                failed = summary.tenants_failed,
                rows = summary.rows,
                duplicates = summary.duplicates,
                delivered = summary.delivered,
                late = summary.late,
                rejected = summary.rejected,
                sweeps_finished = summary.sweeps_finished,
                sweeps_behind = summary.sweeps_behind,
                "pass done"
            );
            if once || self.stopping() {
                return Ok(summary);
            }
            // Passes start every interval; the sweeps of a pass stop at the next one's
            // start, so a pass that ran them runs straight into the next.
            tokio::select! {
                _ = tokio::time::sleep_until(next_pass.into()) => {}
                () = self.stopped() => {
                    tracing::info!("stopping");
                    return Ok(summary);
                }
            }
        }
    }

    /// Every tenant's status from the state database.
    pub fn status(state_dir: &std::path::Path) -> Result<Vec<state::TenantStatus>, CollectError> {
        State::open(state_dir)?.status()
    }
}

/// The tenants the allow and deny lists (ids or names) let through, in their order.
pub fn choose_tenants(all: Vec<Tenant>, lists: &config::TenantsSection) -> Vec<Tenant> {
    let listed = |list: &[String], tenant: &Tenant| {
        list.iter().any(|x| *x == tenant.id || *x == tenant.name)
    };
    all.into_iter()
        .filter(|x| (lists.allow.is_empty() || listed(&lists.allow, x)) && !listed(&lists.deny, x))
        .collect()
}

/// How wide a tenant's windows are, learned from their results.
#[derive(Debug, Clone, Copy)]
struct Sizing {
    /// The widest window its recent results allow.
    span: SignedDuration,
    /// A stretch ahead known to hold more rows than the budget, from a window that was
    /// over it: the windows that follow need not ask again.
    over: Option<Over>,
}

/// A stretch `[since, end)` that held at least `rows` rows when it was asked, less the
/// rows delivered from it since.
#[derive(Debug, Clone, Copy)]
struct Over {
    since: Timestamp,
    end: Timestamp,
    rows: u64,
}

/// The end of a window from `from`: `span` wide, at least to `floor`, at most to `end`.
/// When an over-budget stretch `over` is known ahead, a window that would reach its end
/// is narrowed without asking while the stretch's rows are over `budget`, and one whose
/// rows fit reaches its end, or `end` when the stretch's rate of rows says the time
/// after it fits too.
fn window_end(
    from: Timestamp,
    span: SignedDuration,
    floor: Timestamp,
    end: Timestamp,
    over: Option<Over>,
    budget: u64,
) -> Timestamp {
    let to = (from + span).max(floor).min(end);
    let Some(o) = over else { return to };
    if o.rows <= budget {
        let known = o.end.duration_since(o.since).as_secs_f64().max(1.0);
        let after = end.duration_since(o.end).as_secs_f64().max(0.0);
        let expected = o.rows as f64 * (1.0 + after / known);
        let reach = if expected <= budget as f64 {
            end
        } else {
            o.end
        };
        return to.max(reach.min(end));
    }
    if to < o.end {
        return to;
    }
    let narrower = narrowed(o.end.duration_since(from), Some(o.rows), budget);
    (from + narrower.min(span)).max(floor).min(end)
}

/// A window `width` wide that holds `rows` rows (unknown: `None`), narrowed to what a
/// `budget` of rows should fit: in proportion to its rows, with a fifth to spare, and at
/// least halved; never narrower than [`MIN_WINDOW`].
fn narrowed(width: SignedDuration, rows: Option<u64>, budget: u64) -> SignedDuration {
    let factor = rows.map_or(0.5, |t| (0.8 * budget as f64 / t as f64).min(0.5));
    SignedDuration::from_secs_f64(width.as_secs_f64() * factor).max(MIN_WINDOW)
}

/// Where a new sweep starts: `now − reach`, but never before the tenant's first window
/// (`origin`), nor before the newest key forgotten (`pruned_before`): the keys of older
/// rows may be gone, and the sweep would deliver those rows again. So turning the sweep on,
/// or widening the horizon, covers rows from then on and reaches its full width as time
/// passes, without doubling anything.
fn sweep_begin(
    now: Timestamp,
    reach: SignedDuration,
    origin: i64,
    pruned_before: Option<i64>,
) -> i64 {
    (now - reach)
        .as_millisecond()
        .max(origin)
        .max(pruned_before.unwrap_or(i64::MIN))
}

/// Where a tenant's next live window starts: the checkpoint minus the overlap, or
/// `now − lookback` on the first run; never older than 30 days (what the Data Lake
/// keeps). It ends at now, or earlier when its results do not fit the page budget.
fn live_start(
    checkpoint: Option<Timestamp>,
    now: Timestamp,
    lookback: SignedDuration,
    overlap: SignedDuration,
) -> Timestamp {
    let oldest = now - secs(LIVE_REACH_SECS);
    let from = match checkpoint {
        Some(c) => c - overlap,
        None => now - lookback,
    };
    // After a long outage the checkpoint may be older than the Data Lake's 30 days.
    from.max(oldest).min(now)
}

/// A fault-injection point for the crash tests, built only with the `fault-injection`
/// feature (which `cargo test` turns on, and no release build has): with
/// `SOPHOS_TAC_CRASH_AFTER_DELIVERIES=N`, the process aborts after its N-th delivery,
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

/// A row's `calendar_time` and how late it reached the Data Lake
/// (`ingestion_timestamp − calendar_time`), when both are RFC 3339 strings; other values
/// (epochs, nulls) leave the part they concern out.
pub fn lateness(row: &str) -> (Option<Timestamp>, Option<SignedDuration>) {
    #[derive(serde::Deserialize)]
    struct Times<'a> {
        #[serde(borrow)]
        calendar_time: Option<&'a RawValue>,
        #[serde(borrow)]
        ingestion_timestamp: Option<&'a RawValue>,
    }
    let Ok(times) = serde_json::from_str::<Times>(row) else {
        return (None, None);
    };
    let time = |raw: Option<&RawValue>| -> Option<Timestamp> {
        crate::value::unquote(raw?.get())?.parse().ok()
    };
    let calendar = time(times.calendar_time);
    let late = time(times.ingestion_timestamp)
        .zip(calendar)
        .map(|(i, c)| i.duration_since(c));
    (calendar, late)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_windows_start_at_the_checkpoint_minus_the_overlap() {
        let now: Timestamp = "2024-06-01T12:00:00Z".parse().unwrap();
        let m = SignedDuration::from_mins(10);
        let day = SignedDuration::from_hours(24);
        // first run: from now − lookback
        assert_eq!(live_start(None, now, day, m), now - day);
        // then from the checkpoint minus the overlap
        let c = now - SignedDuration::from_mins(30);
        assert_eq!(live_start(Some(c), now, day, m), c - m);
        // a checkpoint older than 30 days restarts at the oldest the Data Lake keeps
        let old = now - SignedDuration::from_hours(24 * 60);
        let oldest = now - secs(LIVE_REACH_SECS);
        assert_eq!(live_start(Some(old), now, day, m), oldest);
        // a lookback beyond 30 days too
        assert_eq!(live_start(None, now, day * 45, m), oldest);
    }

    #[test]
    fn a_known_over_budget_stretch_narrows_without_asking_and_a_fitting_rest_is_read_whole() {
        let t0: Timestamp = "2024-06-01T00:00:00Z".parse().unwrap();
        let h = SignedDuration::from_hours(1);
        let end = t0 + h * 24;
        let floor = t0 + MIN_WINDOW;
        // nothing known: the span
        assert_eq!(window_end(t0, h, floor, end, None, 1000), t0 + h);
        // the next 24 h hold 5,000 rows, over a budget of 1,000: narrowed before asking
        let over = Over {
            since: t0,
            end,
            rows: 5_000,
        };
        let to = window_end(t0, h * 48, floor, end, Some(over), 1000);
        assert!(to <= t0 + h * 4 && to > t0, "{to}");
        // a window short of the stretch's end is left as it is
        assert_eq!(window_end(t0, h, floor, end, Some(over), 1000), t0 + h);
        // the rest fits: read to the stretch's end, and on to `end` when its rate says so
        let rest = Over {
            since: t0,
            end: t0 + h * 23,
            rows: 500,
        };
        assert_eq!(window_end(t0, h, floor, end, Some(rest), 1000), end);
        let dense = Over { rows: 990, ..rest };
        assert_eq!(
            window_end(t0, h, floor, end, Some(dense), 1000),
            t0 + h * 23
        );
    }

    #[test]
    fn a_sweep_never_reaches_before_the_origin_or_forgotten_keys() {
        let now: Timestamp = "2024-06-01T12:00:00Z".parse().unwrap();
        let reach = SignedDuration::from_hours(72);
        let ms = |t: Timestamp| t.as_millisecond();
        let three_days_ago = ms(now - reach);
        // a tenant collected for a week, keys kept for the whole reach
        let week_ago = ms(now - SignedDuration::from_hours(24 * 7));
        assert_eq!(
            sweep_begin(now, reach, week_ago, Some(three_days_ago - 1)),
            three_days_ago
        );
        // a tenant first collected yesterday: nothing older than its first window
        let yesterday = ms(now - SignedDuration::from_hours(24));
        assert_eq!(sweep_begin(now, reach, yesterday, None), yesterday);
        // the sweep was off (keys kept 20 minutes) until now: it starts where keys are whole
        let twenty_minutes_ago = ms(now - SignedDuration::from_mins(20));
        assert_eq!(
            sweep_begin(now, reach, week_ago, Some(twenty_minutes_ago)),
            twenty_minutes_ago
        );
    }

    #[test]
    fn lateness_reads_rfc3339_times_and_leaves_the_rest_out() {
        let row = r#"{"record_identifier":"r1","calendar_time":"2024-06-01T10:00:00.000Z","ingestion_timestamp":"2024-06-02T10:30:00Z"}"#;
        let (calendar, late) = lateness(row);
        assert_eq!(calendar, "2024-06-01T10:00:00Z".parse().ok());
        assert_eq!(late, Some(SignedDuration::from_mins(24 * 60 + 30)));
        assert_eq!(lateness(r#"{"calendar_time":"not a time"}"#), (None, None));
        assert_eq!(lateness(r#"{"calendar_time":1700000000}"#), (None, None));
        assert_eq!(lateness("[1,2]"), (None, None));
    }
}
