//! Window sizing: where a lane's windows start, how wide they are, and how a window over
//! the page budget is narrowed (remembering a stretch known to be over it).

use jiff::{SignedDuration, Timestamp};

/// The narrowest window: one that still holds more rows than the page budget is read
/// whole rather than split again.
pub(super) const MIN_WINDOW: SignedDuration = SignedDuration::from_secs(1);

/// How far back a live lane may reach at most (what the Data Lake keeps).
pub(super) const LIVE_REACH_SECS: u64 = 30 * 86_400;

pub(super) fn secs(n: u64) -> SignedDuration {
    SignedDuration::from_secs(i64::try_from(n).unwrap_or(i64::MAX))
}

pub(super) fn from_ms(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// How wide a tenant's windows are, learned from their results.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizing {
    /// The widest window its recent results allow.
    pub(super) span: SignedDuration,
    /// A stretch ahead known to hold more rows than the budget, from a window that was
    /// over it: the windows that follow need not ask again.
    pub(super) over: Option<Over>,
}

/// A stretch `[since, end)` that held at least `rows` rows when it was asked, less the
/// rows delivered from it since.
#[derive(Debug, Clone, Copy)]
pub(super) struct Over {
    pub(super) since: Timestamp,
    pub(super) end: Timestamp,
    pub(super) rows: u64,
}

/// The end of a window from `from`: `span` wide, at least to `floor`, at most to `end`.
/// When an over-budget stretch `over` is known ahead, a window that would reach its end
/// is narrowed without asking while the stretch's rows are over `budget`, and one whose
/// rows fit reaches its end, or `end` when the stretch's rate of rows says the time
/// after it fits too.
pub(super) fn window_end(
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
pub(super) fn narrowed(width: SignedDuration, rows: Option<u64>, budget: u64) -> SignedDuration {
    let factor = rows.map_or(0.5, |t| (0.8 * budget as f64 / t as f64).min(0.5));
    SignedDuration::from_secs_f64(width.as_secs_f64() * factor).max(MIN_WINDOW)
}

/// Where a new sweep starts: `now − reach`, but never before the tenant's first window
/// (`origin`), nor before the newest key forgotten (`pruned_before`): the keys of older
/// rows may be gone, and the sweep would deliver those rows again. So turning the sweep on,
/// or widening the horizon, covers rows from then on and reaches its full width as time
/// passes, without doubling anything.
pub(super) fn sweep_begin(
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
pub(super) fn live_start(
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
}
