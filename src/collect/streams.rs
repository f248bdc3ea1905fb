//! A tenant's SIEM API streams (`[siem] streams`: alerts, events): each is paged from its
//! cursor while the API says `has_more`, each page's new items normalized (`siem-alert`,
//! `siem-event`) and delivered to every output, and the cursor moved in the transaction
//! that records the items' keys, once every output acknowledged them.
//!
//! - The first run starts at `from_date = now − lookback_secs` (24 h less a minute).
//! - An item whose `(stream, id)` was delivered is dropped (an alert and its event share
//!   an id); keys are kept for the API's reach and an hour more.
//! - The API serves 24 h back: when a stream was last drained longer ago than that (an
//!   outage), the time in between cannot be read any more. The gap is logged, counted in
//!   `sophos_tac_siem_gap_seconds` and kept for `--status`, and the stream goes on from
//!   the oldest time the API serves; nothing it can still serve is lost.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::value::RawValue;

use crate::collect::client::{SiemStart, Tenant};
use crate::collect::state::StreamPage;
use crate::collect::{CollectError, Collector, PassSummary};
use crate::mapping::Profile;
use crate::normalizer::{LineOutcome, Normalizer};
use crate::sync::lock;

/// How much longer than the API's reach an item's key is kept.
const KEY_MARGIN_MS: i64 = 3_600_000;

/// One SIEM API stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `/siem/v1/alerts`.
    Alerts,
    /// `/siem/v1/events`.
    Events,
}

impl Stream {
    /// Its name in the API, the config, the state and the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Alerts => "alerts",
            Stream::Events => "events",
        }
    }

    /// The kind of its items (`alert`, `event`), as the row key and Elastic's data set
    /// (`sophos_central.alert`) name it.
    pub fn item(self) -> &'static str {
        match self {
            Stream::Alerts => "alert",
            Stream::Events => "event",
        }
    }

    /// The stream of that name.
    pub fn from_name(name: &str) -> Option<Stream> {
        match name {
            "alerts" => Some(Stream::Alerts),
            "events" => Some(Stream::Events),
            _ => None,
        }
    }

    /// The profile its items are normalized with.
    pub fn profile(self) -> Profile {
        match self {
            Stream::Alerts => Profile::siem_alert(),
            Stream::Events => Profile::siem_event(),
        }
    }
}

/// A configured stream and its normalizer.
#[derive(Debug)]
pub(super) struct StreamLane {
    pub(super) stream: Stream,
    pub(super) normalizer: Normalizer,
}

/// The lanes of the streams `[siem] streams` lists.
pub(super) fn lanes(streams: &[String]) -> Vec<StreamLane> {
    streams
        .iter()
        .filter_map(|s| Stream::from_name(s))
        .map(|stream| StreamLane {
            stream,
            normalizer: Normalizer::new(stream.profile()),
        })
        .collect()
}

impl Collector {
    /// Every configured stream of a tenant, one after the other. A failing stream is
    /// recorded and logged; the other goes on, and so does the tenant's Data Lake lane.
    pub(super) async fn streams(self: &Arc<Self>, tenant: &Tenant) -> PassSummary {
        let mut total = PassSummary::default();
        for index in 0..self.siem.len() {
            let stream = self.siem[index].stream;
            match self.stream(tenant, index).await {
                Ok(s) => total.add(&s),
                Err(e) => {
                    total.streams_failed += 1;
                    self.metrics.failure(&tenant.id);
                    tracing::error!(tenant = %tenant.id, stream = stream.name(), error = %e, "stream failed; it will be retried");
                    let _ = lock(&self.state).record_stream_error(
                        &tenant.id,
                        stream.name(),
                        &e.to_string(),
                    );
                }
            }
        }
        total
    }

    /// One stream of a tenant: its pages from the cursor while the API has more, up to
    /// `max_pages`.
    async fn stream(
        self: &Arc<Self>,
        tenant: &Tenant,
        index: usize,
    ) -> Result<PassSummary, CollectError> {
        let cfg = &self.config.file.siem;
        let stream = self.siem[index].stream;
        let name = stream.name();
        let reach_ms = cfg.api_reach_secs as i64 * 1000;
        let lookback_ms = cfg.lookback_secs as i64 * 1000;
        let mut total = PassSummary::default();
        let now = Timestamp::now().as_millisecond();
        let status = {
            let state = lock(&self.state);
            state.prune_items(&tenant.id, name, now)?;
            state.stream(&tenant.id, name)?
        };
        let mut cursor = status.as_ref().and_then(|s| s.cursor.clone());
        let drained = status.as_ref().and_then(|s| s.drained_ms);
        if cursor.is_some() {
            // The API restarts a cursor older than its reach there, without a word.
            total.gap_secs += self.gap(tenant, stream, drained, now, now - reach_ms)?;
        }
        for _ in 0..cfg.max_pages {
            if self.stopping() {
                return Ok(total);
            }
            let asked = Timestamp::now().as_millisecond();
            let start = match &cursor {
                Some(c) => SiemStart::Cursor(c),
                None => SiemStart::FromDate((asked - lookback_ms).div_euclid(1000)),
            };
            let fetch = self
                .client
                .siem_page(tenant, name, start, cfg.limit, &cfg.exclude_types);
            let page = match self.unless_stopped(fetch).await {
                Ok(None) => return Ok(total),
                Ok(Some(page)) => page,
                Err(CollectError::Http {
                    status: 400, body, ..
                }) if cursor.is_some() => {
                    // An API that refuses an old cursor rather than restarting it: start
                    // again at the oldest time it takes, and say what that leaves out.
                    tracing::warn!(tenant = %tenant.id, stream = name, answer = %body, "the API refused the stream's cursor: starting again from the oldest time it serves");
                    let drained = lock(&self.state)
                        .stream(&tenant.id, name)?
                        .and_then(|s| s.drained_ms);
                    total.gap_secs +=
                        self.gap(tenant, stream, drained, asked, asked - lookback_ms)?;
                    cursor = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let has_more = page.has_more;
            let next = page.next_cursor.clone().or_else(|| cursor.clone());
            let me = Arc::clone(self);
            let tenant_owned = tenant.clone();
            let items = page.items;
            let first_start = asked - lookback_ms;
            let done = self
                .blocking(move || {
                    me.deliver_items(
                        &tenant_owned,
                        index,
                        &items,
                        StreamPage {
                            stream: name,
                            cursor: next.as_deref(),
                            asked_ms: asked,
                            has_more,
                            delivered: 0,
                            duplicates: 0,
                        },
                        first_start,
                    )
                })
                .await?;
            total.add(&done);
            cursor = page.next_cursor.or(cursor);
            if !has_more {
                self.metrics.stream_drained(&tenant.id, name, asked);
                return Ok(total);
            }
        }
        tracing::info!(tenant = %tenant.id, stream = name, pages = cfg.max_pages, "the stream has more pages than siem.max_pages: the next pass goes on from its cursor");
        Ok(total)
    }

    /// Reports the time between `drained_ms` and `from_ms` (the oldest time the API
    /// serves), when the stream was drained before it: logged, counted and kept in the
    /// state, which then reads the stream from `from_ms` on. Returns the gap's seconds.
    fn gap(
        &self,
        tenant: &Tenant,
        stream: Stream,
        drained_ms: Option<i64>,
        now_ms: i64,
        from_ms: i64,
    ) -> Result<u64, CollectError> {
        let Some(drained) = drained_ms.filter(|d| *d < from_ms) else {
            return Ok(0);
        };
        let secs = ((from_ms - drained) / 1000).max(1);
        tracing::warn!(
            tenant = %tenant.id,
            name = %tenant.name,
            stream = stream.name(),
            gap_secs = secs,
            from = %crate::collect::window::from_ms(drained),
            to = %crate::collect::window::from_ms(from_ms),
            "the stream was not read for longer than the API serves: this time could not be read, and the stream goes on from the oldest time the API serves"
        );
        lock(&self.state).record_gap(&tenant.id, stream.name(), secs, now_ms, from_ms)?;
        self.metrics
            .stream_gap(&tenant.id, stream.name(), secs as u64);
        Ok(secs as u64)
    }

    /// Dedups, normalizes and delivers one page's items to every output, then records
    /// their keys and moves the cursor, in one transaction.
    fn deliver_items(
        &self,
        tenant: &Tenant,
        index: usize,
        items: &[Box<RawValue>],
        mut page: StreamPage<'_>,
        first_start_ms: i64,
    ) -> Result<PassSummary, CollectError> {
        let lane = &self.siem[index];
        let stream = lane.stream;
        let mut s = PassSummary {
            items: items.len() as u64,
            ..PassSummary::default()
        };
        s.counts.warnings = lane.normalizer.new_warnings();
        let mut keys = Vec::new();
        let mut in_page = HashSet::new();
        let mut out = Vec::new();
        let mut ids = Vec::new();
        let mut rejected = Vec::new();
        {
            let state = lock(&self.state);
            for item in items {
                // The document's id and the dedup key: the stream, the tenant, the id.
                let key = crate::row::item_key(stream.item(), item.get());
                if !in_page.insert(key.clone())
                    || state.item_seen(&tenant.id, stream.name(), &key)?
                {
                    s.duplicates += 1;
                    continue;
                }
                let outcome = lane.normalizer.normalize_line(
                    item.get().as_bytes(),
                    &mut out,
                    &mut s.counts.warnings,
                );
                s.counts.count(&outcome);
                match outcome {
                    LineOutcome::Normalized => ids.push(key.clone()),
                    LineOutcome::Blank => {}
                    LineOutcome::Rejected(reason) => {
                        let origin = crate::reject::Origin::Tenant { tenant: &tenant.id };
                        let record = crate::reject::record(&origin, &reason, item.get().as_bytes());
                        rejected.extend_from_slice(record.to_string().as_bytes());
                        rejected.push(b'\n');
                    }
                }
                keys.push(key);
            }
        }
        let mut outputs = lock(&self.outputs);
        let outbox = if out.is_empty() {
            Vec::new()
        } else {
            self.deliver_everywhere(&tenant.id, &mut outputs, &out, &ids)?
        };
        if !rejected.is_empty() {
            crate::sinks::append_whole(&mut lock(&self.rejects), &rejected)
                .map_err(|e| CollectError::State(format!("rejects.ndjson: {e}")))?;
        }
        page.delivered = s.counts.normalized;
        page.duplicates = s.duplicates;
        let until =
            page.asked_ms + self.config.file.siem.api_reach_secs as i64 * 1000 + KEY_MARGIN_MS;
        let committed =
            lock(&self.state).commit_page(&outbox, &tenant.id, &page, &keys, until, first_start_ms);
        self.metrics
            .state_result(committed.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        committed?;
        self.metrics
            .stream_page(&tenant.id, stream.name(), s.counts.normalized, s.duplicates);
        for o in outputs.iter_mut() {
            o.sink.committed()?;
        }
        tracing::info!(tenant = %tenant.id, stream = stream.name(), items = s.items, duplicates = s.duplicates, delivered = s.counts.normalized, rejected = s.counts.rejected, warnings = s.counts.warnings.total(), has_more = page.has_more, "page delivered");
        Ok(s)
    }
}
