//! A tenant's SIEM API streams (`[siem] streams`: alerts, events): each is paged from its
//! cursor while the API says `has_more`, each page's new items normalized (`siem-alert`,
//! `siem-event`) and delivered to every output, and the cursor moved in the transaction
//! that records the items' keys, once every output acknowledged them.
//!
//! - The first run starts at `from_date = now − lookback_secs` (24 h less a minute).
//! - An item whose `(stream, id)` was delivered is dropped (an alert and its event share
//!   an id); keys are kept for the API's reach and an hour more.
//! - The API serves 24 h back: when a stream was last read further back than that (an
//!   outage), the time in between cannot be read any more. The gap is logged, counted in
//!   `sophos_tac_siem_gap_seconds` and kept for `--status`, and the stream goes on from
//!   the oldest time the API serves; nothing it can still serve is lost.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::value::RawValue;

use crate::collect::client::{SiemStart, Tenant};
use crate::collect::config::SiemSection;
use crate::collect::delivery::keep_reject;
use crate::collect::state::StreamPage;
use crate::collect::{CollectError, Collector, PassSummary};
use crate::mapping::Profile;
use crate::normalizer::{LineOutcome, Normalizer};
use crate::sync::lock;

/// How much longer than the API's reach an item's key is kept.
const KEY_MARGIN_MS: i64 = 3_600_000;

/// How much nearer than `lookback_secs` a stream starts again after the API refused
/// its start: room for a clock behind the API's.
const SKEW_MS: i64 = 300_000;

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

    /// The event types left out of its pages: `[siem] exclude_types`, which only the
    /// events stream takes.
    pub fn excluded(self, siem: &SiemSection) -> &[String] {
        match self {
            Stream::Events => &siem.exclude_types,
            Stream::Alerts => &[],
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
        let exclude = stream.excluded(cfg);
        let mut total = PassSummary::default();
        let now = Timestamp::now().as_millisecond();
        let status = {
            let state = lock(&self.state);
            state.prune_all_items(now)?;
            state.stream(&tenant.id, name)?
        };
        let mut cursor = status.as_ref().and_then(|s| s.cursor.clone());
        let read = status.as_ref().and_then(|s| s.drained_ms);
        // Gap seconds found in this pass, so that a second finding adds to the first.
        let mut gap = 0;
        // Where a stream without a cursor starts: `lookback_secs` back the first time,
        // and then where that first run started (kept before its first page, so that a
        // crash or a failed first page does not move it later and lose what was before),
        // while the API still serves it.
        let mut from_ms = now - lookback_ms;
        match (&cursor, read) {
            // The API restarts a cursor older than its reach there, without a word.
            (Some(_), _) => gap += self.gap(tenant, stream, read, now, now - reach_ms, gap)?,
            (None, Some(start)) if start < now - reach_ms => {
                gap += self.gap(tenant, stream, read, now, from_ms, gap)?;
            }
            (None, Some(start)) => from_ms = start,
            (None, None) => lock(&self.state).begin_stream(&tenant.id, name, from_ms)?,
        }
        let (mut reset, mut more) = (false, false);
        for _ in 0..cfg.max_pages {
            if self.stopping() {
                break;
            }
            let asked = Timestamp::now().as_millisecond();
            let start = match &cursor {
                Some(c) => SiemStart::Cursor(c),
                None => SiemStart::FromDate(from_ms.div_euclid(1000)),
            };
            let fetch =
                self.client
                    .siem_page(tenant, name, start, cfg.limit, exclude, cfg.offset_minutes);
            let page = match self.unless_stopped(fetch).await {
                Ok(None) => break,
                Ok(Some(page)) => page,
                Err(CollectError::Http {
                    status: 400, body, ..
                }) if !reset => {
                    // An API that refuses an old cursor rather than restarting it, or a
                    // `from_date` (a clock behind the API's): start again `lookback_secs`
                    // back, less five minutes for skew (once a pass), and say what that
                    // leaves out.
                    tracing::warn!(tenant = %tenant.id, stream = name, answer = %body, "the API refused where the stream would go on: starting again from the oldest time it surely serves");
                    reset = true;
                    let read = lock(&self.state)
                        .stream(&tenant.id, name)?
                        .and_then(|s| s.drained_ms);
                    from_ms = asked - (lookback_ms - SKEW_MS).max(lookback_ms / 2);
                    gap += self.gap(tenant, stream, read, asked, from_ms, gap)?;
                    cursor = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if page.items.len() > 2 * cfg.limit as usize {
                return Err(CollectError::Protocol(format!(
                    "/siem/v1/{name}: {} items on a page of limit {}",
                    page.items.len(),
                    cfg.limit
                )));
            }
            if page.has_more && page.next_cursor.is_some() && page.next_cursor == cursor {
                return Err(CollectError::Protocol(format!(
                    "/siem/v1/{name}: has_more, but the same next_cursor: the stream does not move"
                )));
            }
            let has_more = page.has_more;
            let next = page.next_cursor.or_else(|| cursor.clone());
            let me = Arc::clone(self);
            let owned = (tenant.clone(), next.clone());
            let items = page.items;
            // What the API had by the request, less what it holds back.
            let position = asked - i64::from(cfg.offset_minutes) * 60_000;
            let done = self
                .blocking(move || {
                    let (tenant, next) = owned;
                    me.deliver_items(
                        &tenant,
                        index,
                        &items,
                        next.as_deref(),
                        position,
                        has_more,
                        from_ms,
                    )
                })
                .await?;
            total.add(&done);
            cursor = next;
            more = has_more;
            if !has_more {
                break;
            }
        }
        if more && !self.stopping() {
            tracing::info!(tenant = %tenant.id, stream = name, pages = cfg.max_pages, "the stream has more than siem.max_pages pages ready: the next pass goes on from its cursor");
        }
        if let Some(s) = lock(&self.state).stream(&tenant.id, name)?
            && let Some(read) = s.drained_ms
        {
            self.metrics.stream_drained(&tenant.id, name, read);
        }
        total.gap_secs += gap as u64;
        Ok(total)
    }

    /// Reports the time between `read_ms` and `from_ms` (the oldest time the API
    /// serves), when the stream was read only up to before it: logged, counted and kept
    /// in the state, which then reads the stream from `from_ms` on. `earlier` is the gap
    /// already found in this pass (the state's last gap is the pass's whole). Returns
    /// the gap's seconds.
    fn gap(
        &self,
        tenant: &Tenant,
        stream: Stream,
        read_ms: Option<i64>,
        now_ms: i64,
        from_ms: i64,
        earlier: i64,
    ) -> Result<i64, CollectError> {
        // Less than a second is the time between two clock reads, not a gap.
        let Some(read) = read_ms.filter(|d| from_ms - *d >= 1000) else {
            return Ok(0);
        };
        let secs = (from_ms - read) / 1000;
        tracing::warn!(
            tenant = %tenant.id,
            name = %tenant.name,
            stream = stream.name(),
            gap_secs = secs,
            from = %crate::collect::window::from_ms(read),
            to = %crate::collect::window::from_ms(from_ms),
            "the stream was not read for longer than the API serves: this time could not be read, and the stream goes on from the oldest time the API serves"
        );
        lock(&self.state).record_gap(
            &tenant.id,
            stream.name(),
            secs,
            earlier + secs,
            now_ms,
            from_ms,
        )?;
        self.metrics
            .stream_gap(&tenant.id, stream.name(), secs as u64);
        Ok(secs)
    }

    /// Dedups, normalizes and delivers one page's items to every output, then records
    /// their keys and moves the cursor (and how far the stream is read), in one
    /// transaction.
    #[allow(clippy::too_many_arguments)]
    fn deliver_items(
        &self,
        tenant: &Tenant,
        index: usize,
        items: &[Box<RawValue>],
        cursor: Option<&str>,
        asked_ms: i64,
        has_more: bool,
        start_ms: i64,
    ) -> Result<PassSummary, CollectError> {
        let lane = &self.siem[index];
        let stream = lane.stream;
        let mut s = PassSummary {
            items: items.len() as u64,
            ..PassSummary::default()
        };
        s.counts.warnings = lane.normalizer.new_warnings();
        // The new items and their keys (the document id and the dedup key: the stream,
        // the tenant, the id), found under the state's lock; normalized after it.
        let mut in_page = HashSet::new();
        let mut fresh = Vec::new();
        {
            let state = lock(&self.state);
            for item in items {
                let key = crate::row::item_key_of(stream.item(), item.get(), Some(&tenant.id));
                if !in_page.insert(key.clone())
                    || state.item_seen(&tenant.id, stream.name(), &key)?
                {
                    s.duplicates += 1;
                } else {
                    fresh.push((key, item));
                }
            }
        }
        let mut keys = Vec::with_capacity(fresh.len());
        let mut out = Vec::new();
        let mut ids = Vec::new();
        let mut rejected = Vec::new();
        // The newest creation time of the page's items (none later than the request):
        // the stream is read up to about then, even before it is drained.
        let mut newest: Option<i64> = None;
        for (key, item) in fresh {
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
                    keep_reject(&tenant.id, &reason, item.get().as_bytes(), &mut rejected);
                }
            }
            if let Some(created) = created_ms(item.get()) {
                newest = Some(newest.map_or(created, |n| n.max(created)).min(asked_ms));
            }
            keys.push(key);
        }
        let mut outputs = lock(&self.outputs);
        let outbox =
            self.deliver_and_keep_rejects(&tenant.id, &mut outputs, &out, &ids, &rejected)?;
        let page = StreamPage {
            stream: stream.name(),
            cursor,
            asked_ms,
            has_more,
            read_ms: newest,
            delivered: s.counts.normalized,
            duplicates: s.duplicates,
        };
        let until = asked_ms + self.config.file.siem.api_reach_secs as i64 * 1000 + KEY_MARGIN_MS;
        let committed =
            lock(&self.state).commit_page(&outbox, &tenant.id, &page, &keys, until, start_ms);
        self.metrics
            .state_result(committed.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        committed?;
        self.metrics
            .stream_page(&tenant.id, stream.name(), s.counts.normalized, s.duplicates);
        for o in outputs.iter_mut() {
            o.sink.committed()?;
        }
        tracing::info!(tenant = %tenant.id, stream = stream.name(), items = s.items, duplicates = s.duplicates, delivered = s.counts.normalized, rejected = s.counts.rejected, warnings = s.counts.warnings.total(), has_more, "page delivered");
        Ok(s)
    }
}

/// An item's `created_at` (ms), when it is an RFC 3339 string.
fn created_ms(item: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Created<'a> {
        #[serde(borrow)]
        created_at: Option<std::borrow::Cow<'a, str>>,
    }
    let c: Created = serde_json::from_str(item).ok()?;
    Some(c.created_at?.parse::<Timestamp>().ok()?.as_millisecond())
}
