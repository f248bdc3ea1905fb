//! A tenant's two lanes: the live lane from its checkpoint to now, and the late sweep over
//! the horizon behind it; each reads windows sized to the page budget.

use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use serde_json::value::RawValue;

use crate::collect::client::{Fetched, Tenant};
use crate::collect::state::Progress;
use crate::collect::window::{
    LIVE_REACH_SECS, MIN_WINDOW, Over, Sizing, from_ms, live_start, narrowed, secs, sweep_begin,
    window_end,
};
use crate::collect::{CollectError, Collector, Lane, PassSummary};
use crate::sync::lock;

impl Collector {
    /// The live lane: windows from the checkpoint until it reaches now; then forgets the
    /// keys no window can return any more.
    ///
    /// Only the lane's first window reaches back by the overlap (or to where the last
    /// lane's windows were read too close to their query to be complete); each window
    /// after it starts where the one before ended, so that a dense overlap (an outbreak)
    /// is read once per pass, not once per window, and the calls stay in proportion to
    /// the rows.
    pub(super) async fn live(
        self: &Arc<Self>,
        tenant: &Tenant,
    ) -> Result<PassSummary, CollectError> {
        let q = &self.config.file.query;
        let overlap = secs(q.overlap_secs);
        let mut total = PassSummary::default();
        // Where the next window starts, once the first one was read.
        let mut next: Option<Timestamp> = None;
        // The oldest time this lane read too close to its query for late rows to be
        // there: recorded with each window, the next lane's first window reaches back to
        // it (after a failure or a restart too).
        let mut incomplete: Option<Timestamp> = None;
        // The window being delivered (in a task of its own) while the next one is
        // fetched: one at a time, so the checkpoints move in order, and memory holds at
        // most two windows of rows.
        let mut delivering: Option<tokio::task::JoinHandle<Result<PassSummary, CollectError>>> =
            None;
        // Waits for the window in flight, and adds what it did.
        async fn settle(
            delivering: &mut Option<tokio::task::JoinHandle<Result<PassSummary, CollectError>>>,
            total: &mut PassSummary,
        ) -> Result<(), CollectError> {
            if let Some(task) = delivering.take() {
                let s = task
                    .await
                    .map_err(|e| CollectError::State(format!("the delivery task failed: {e}")))??;
                total.add(&s);
            }
            Ok(())
        }
        let (checkpoint, reread) = loop {
            if self.stopping() {
                settle(&mut delivering, &mut total).await?;
                return Ok(total);
            }
            let now = Timestamp::now();
            let t = lock(&self.state).tenant(&tenant.id);
            let t = match t {
                Ok(t) => t,
                Err(e) => {
                    // Never leave a window in flight behind.
                    settle(&mut delivering, &mut total).await?;
                    return Err(e);
                }
            };
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
            // not move forward. (With a window in flight, the checkpoint read is the one
            // before it, and `from`, its end, is later.)
            let floor = checkpoint.map_or(from, |c| c.max(from)) + MIN_WINDOW;
            let fetch = self.fetch_window(tenant, from, floor, now);
            let fetched = self.unless_stopped(fetch).await;
            // The window before is committed before this one is delivered.
            settle(&mut delivering, &mut total).await?;
            let Some((to, rows)) = fetched? else {
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
            next = Some(to);
            if to >= now {
                // Caught up: the last window's end is the checkpoint now.
                let s = self
                    .deliver_window(tenant, Lane::Live, (from, to), rows, progress)
                    .await?;
                total.add(&s);
                self.metrics.success(&tenant.id);
                break (to, reread);
            }
            // A backlog: the next window is fetched while this one is delivered.
            let (me, owned) = (Arc::clone(self), tenant.clone());
            delivering = Some(tokio::spawn(async move {
                me.deliver_window(&owned, Lane::Live, (from, to), rows, progress)
                    .await
            }));
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
    pub(super) async fn sweep(
        self: &Arc<Self>,
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
            let s = self
                .deliver_window(tenant, Lane::Sweep, (from, to), rows, progress)
                .await?;
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
    pub(super) async fn fetch_window(
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
}
