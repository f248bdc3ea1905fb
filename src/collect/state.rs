//! The collector's local state: an SQLite database in the state directory.
//!
//! - `tenants`: per tenant the checkpoint (the end of the last delivered live window),
//!   the origin (where its first window started), the late sweep's schedule and
//!   progress, the time of the last run, the last error, and counts of delivered rows
//!   and of rows the sweep caught;
//! - `seen`: the keys of delivered rows (`record_identifier`, or a hash of the row) with
//!   the row's `calendar_time`, kept while any window could still return the row;
//! - `outbox`: at most one delivery in progress, with the sink's mark, so that a crash
//!   between a delivery and its commit is repaired on restart;
//! - `streams`: per tenant and SIEM API stream (`alerts`, `events`), the cursor, how far
//!   the stream was drained, counts, and the gaps the API's 24-hour reach left;
//! - `siem_seen`: the ids of the SIEM items delivered, per tenant and stream, kept while
//!   the API can serve the item again.
//!
//! A lock file (`state_dir/lock`, held by [`lock_dir`]) keeps two collectors from
//! sharing one state directory.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::collect::CollectError;

/// The state database.
#[derive(Debug)]
pub struct State {
    db: Connection,
}

/// A tenant's late sweep, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepState {
    /// When the next sweep is due (ms); `None` until the tenant's first pass is done.
    pub due_ms: Option<i64>,
    /// Where the running sweep started (ms); `None` when no sweep runs.
    pub begin_ms: Option<i64>,
    /// How far the running sweep has come (ms): everything before is done.
    pub cursor_ms: Option<i64>,
    /// Where the running sweep ends (the live checkpoint when it started).
    pub end_ms: Option<i64>,
    /// When the running (or last) sweep started (wall clock, ms).
    pub started_ms: Option<i64>,
    /// When the last sweep finished (wall clock, ms).
    pub done_ms: Option<i64>,
    /// Rows the running (or last) sweep delivered.
    pub rows: i64,
    /// Windows the running (or last) sweep queried.
    pub windows: i64,
}

impl SweepState {
    /// True while a sweep is under way.
    pub fn running(&self) -> bool {
        self.cursor_ms.is_some()
    }
}

/// A tenant's row of the state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantStatus {
    /// Tenant id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// End of the last delivered live window (ms since the epoch).
    pub checkpoint_ms: Option<i64>,
    /// Where the tenant's first window started (ms): nothing older is collected.
    pub origin_ms: Option<i64>,
    /// When it was last collected (ms).
    pub last_run_ms: Option<i64>,
    /// The last error, if the last run failed.
    pub last_error: Option<String>,
    /// Rows delivered so far.
    pub delivered: i64,
    /// Rows delivered by late sweeps so far (rows the live windows had missed).
    pub late: i64,
    /// The late sweep.
    pub sweep: SweepState,
    /// Just past the newest key forgotten: keys of rows before it may be gone, so no
    /// sweep reaches back before it (it would deliver those rows again).
    pub pruned_before_ms: Option<i64>,
    /// Where the next live lane reaches back to, when that is before the checkpoint
    /// minus the overlap: the oldest time the last lane read too close to its query for
    /// rows that arrive a little late to be there yet.
    pub reread_ms: Option<i64>,
}

/// What a committed delivery moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A live window: the checkpoint moves to `checkpoint_ms`; the origin is set on the
    /// first one.
    Live {
        /// The window's start (the origin, when the tenant has none yet).
        from_ms: i64,
        /// The window's end: the new checkpoint.
        checkpoint_ms: i64,
        /// Where the next lane must reach back to (see [`TenantStatus::reread_ms`]).
        reread_ms: Option<i64>,
    },
    /// A window of the late sweep: its cursor moves to `cursor_ms`.
    Sweep {
        /// The window's end.
        cursor_ms: i64,
    },
}

/// A tenant's SIEM API stream, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStatus {
    /// Tenant id.
    pub tenant: String,
    /// `alerts` or `events`.
    pub stream: String,
    /// The API's `next_cursor` after the last committed page.
    pub cursor: Option<String>,
    /// How far the stream is read (ms): when the last page that said `has_more: false`
    /// was asked for (everything the API had by then is delivered), or, while pages are
    /// still ready, the newest `created_at` delivered; where the first run started, until
    /// its first page.
    pub drained_ms: Option<i64>,
    /// When it was last collected (ms).
    pub last_run_ms: Option<i64>,
    /// The last error, if the last run failed.
    pub last_error: Option<String>,
    /// Items delivered so far.
    pub delivered: i64,
    /// Items dropped as already delivered so far.
    pub duplicates: i64,
    /// Seconds that could not be read, in total: time the stream was not drained for
    /// longer than the API's reach.
    pub gap_secs: i64,
    /// The last gap: its seconds, and when it was found (ms).
    pub last_gap: Option<(i64, i64)>,
}

/// One committed page of a SIEM stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPage<'a> {
    /// `alerts` or `events`.
    pub stream: &'a str,
    /// The new cursor.
    pub cursor: Option<&'a str>,
    /// When the page was asked for (ms).
    pub asked_ms: i64,
    /// Whether the API said more pages are ready.
    pub has_more: bool,
    /// The newest `created_at` of the page's items (none later than `asked_ms`).
    pub read_ms: Option<i64>,
    /// Items delivered.
    pub delivered: u64,
    /// Items dropped as already delivered.
    pub duplicates: u64,
}

const STREAM_COLUMNS: &str = "tenant, stream, cursor, drained_ms, last_run_ms, last_error, delivered, duplicates, gap_secs, last_gap_secs, last_gap_ms";

fn stream_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StreamStatus> {
    let last_gap: (Option<i64>, Option<i64>) = (r.get(9)?, r.get(10)?);
    Ok(StreamStatus {
        tenant: r.get(0)?,
        stream: r.get(1)?,
        cursor: r.get(2)?,
        drained_ms: r.get(3)?,
        last_run_ms: r.get(4)?,
        last_error: r.get(5)?,
        delivered: r.get(6)?,
        duplicates: r.get(7)?,
        gap_secs: r.get(8)?,
        last_gap: last_gap.0.zip(last_gap.1),
    })
}

fn db_err(e: rusqlite::Error) -> CollectError {
    CollectError::State(e.to_string())
}

/// Columns added after the first release, with their definitions (added on open).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("tenants", "origin_ms", "INTEGER"),
    ("tenants", "late", "INTEGER NOT NULL DEFAULT 0"),
    ("tenants", "sweep_due_ms", "INTEGER"),
    ("tenants", "sweep_begin_ms", "INTEGER"),
    ("tenants", "sweep_cursor_ms", "INTEGER"),
    ("tenants", "sweep_end_ms", "INTEGER"),
    ("tenants", "sweep_started_ms", "INTEGER"),
    ("tenants", "sweep_done_ms", "INTEGER"),
    ("tenants", "sweep_rows", "INTEGER NOT NULL DEFAULT 0"),
    ("tenants", "sweep_windows", "INTEGER NOT NULL DEFAULT 0"),
    ("tenants", "pruned_before_ms", "INTEGER"),
    ("tenants", "reread_ms", "INTEGER"),
    // The output a delivery mark belongs to (none: the only output of older versions).
    ("outbox", "output", "TEXT"),
];

/// A delivery started but never committed: which output, and its mark before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The outbox entry.
    pub id: i64,
    /// The output's name; `None` for entries of versions with a single output.
    pub output: Option<String>,
    /// The output's mark before the delivery ([`crate::sinks::Sink::mark`]).
    pub mark: String,
}

const TENANT_COLUMNS: &str = "id, name, checkpoint_ms, origin_ms, last_run_ms, last_error, delivered, late, \
     sweep_due_ms, sweep_begin_ms, sweep_cursor_ms, sweep_end_ms, sweep_started_ms, sweep_done_ms, \
     sweep_rows, sweep_windows, pruned_before_ms, reread_ms";

fn tenant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TenantStatus> {
    Ok(TenantStatus {
        id: r.get(0)?,
        name: r.get(1)?,
        checkpoint_ms: r.get(2)?,
        origin_ms: r.get(3)?,
        last_run_ms: r.get(4)?,
        last_error: r.get(5)?,
        delivered: r.get(6)?,
        late: r.get(7)?,
        sweep: SweepState {
            due_ms: r.get(8)?,
            begin_ms: r.get(9)?,
            cursor_ms: r.get(10)?,
            end_ms: r.get(11)?,
            started_ms: r.get(12)?,
            done_ms: r.get(13)?,
            rows: r.get(14)?,
            windows: r.get(15)?,
        },
        pruned_before_ms: r.get(16)?,
        reread_ms: r.get(17)?,
    })
}

/// Takes the state directory's lock (`state_dir/lock`) for as long as the returned file
/// is open: a second collector on the same directory gets a clear error instead of
/// delivering every row twice. `--status` reads without it.
pub fn lock_dir(dir: &Path) -> Result<std::fs::File, CollectError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CollectError::State(format!("{}: {e}", dir.display())))?;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| CollectError::State(format!("{}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(CollectError::State(format!(
            "another collector is running on {} (it holds {}); stop it first",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(CollectError::State(format!("{}: {e}", path.display())))
        }
    }
}

impl State {
    /// Opens (or creates) `state.db` in `dir`, adding the columns of newer versions.
    pub fn open(dir: &Path) -> Result<State, CollectError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| CollectError::State(format!("{}: {e}", dir.display())))?;
        let db = Connection::open(dir.join("state.db")).map_err(db_err)?;
        db.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS tenants (
                 id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', checkpoint_ms INTEGER,
                 last_run_ms INTEGER, last_error TEXT, delivered INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS seen (
                 tenant TEXT NOT NULL, key TEXT NOT NULL, until_ms INTEGER NOT NULL,
                 PRIMARY KEY (tenant, key)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS outbox (
                 id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, mark TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS streams (
                 tenant TEXT NOT NULL, stream TEXT NOT NULL, cursor TEXT, drained_ms INTEGER,
                 last_run_ms INTEGER, last_error TEXT, delivered INTEGER NOT NULL DEFAULT 0,
                 duplicates INTEGER NOT NULL DEFAULT 0, gap_secs INTEGER NOT NULL DEFAULT 0,
                 last_gap_secs INTEGER, last_gap_ms INTEGER, PRIMARY KEY (tenant, stream));
             CREATE TABLE IF NOT EXISTS siem_seen (
                 tenant TEXT NOT NULL, stream TEXT NOT NULL, key TEXT NOT NULL,
                 until_ms INTEGER NOT NULL, PRIMARY KEY (tenant, stream, key)) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS siem_seen_until ON siem_seen (until_ms);",
        )
        .map_err(db_err)?;
        for (table, column, definition) in ADDED_COLUMNS {
            let exists: bool = db
                .query_row(
                    &format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
                    params![column],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(db_err)?
                > 0;
            if !exists {
                db.execute_batch(&format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {definition}"
                ))
                .map_err(db_err)?;
            }
        }
        Ok(State { db })
    }

    /// Records a tenant (and its current name).
    pub fn add_tenant(&self, id: &str, name: &str) -> Result<(), CollectError> {
        self.db
            .execute("INSERT INTO tenants (id, name) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET name = excluded.name", params![id, name])
            .map(|_| ())
            .map_err(db_err)
    }

    /// The tenant's checkpoint (ms), if it has one.
    pub fn checkpoint(&self, tenant: &str) -> Result<Option<i64>, CollectError> {
        Ok(self.tenant(tenant)?.and_then(|t| t.checkpoint_ms))
    }

    /// The tenant's whole row, if it is known.
    pub fn tenant(&self, tenant: &str) -> Result<Option<TenantStatus>, CollectError> {
        self.db
            .query_row(
                &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?1"),
                params![tenant],
                tenant_row,
            )
            .optional()
            .map_err(db_err)
    }

    /// True when the key was delivered before for this tenant.
    pub fn seen(&self, tenant: &str, key: &str) -> Result<bool, CollectError> {
        // Prepared once (asked once per row of every window).
        self.db
            .prepare_cached("SELECT 1 FROM seen WHERE tenant = ?1 AND key = ?2")
            .and_then(|mut stmt| stmt.query_row(params![tenant, key], |_| Ok(())))
            .optional()
            .map(|r| r.is_some())
            .map_err(db_err)
    }

    /// Deliveries started but never committed (after a crash or a failed delivery).
    pub fn pending(&self) -> Result<Vec<Pending>, CollectError> {
        let mut stmt = self
            .db
            .prepare("SELECT id, output, mark FROM outbox ORDER BY id")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Pending {
                    id: r.get(0)?,
                    output: r.get(1)?,
                    mark: r.get(2)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    /// Forgets a repaired delivery.
    pub fn drop_pending(&self, id: i64) -> Result<(), CollectError> {
        self.db
            .execute("DELETE FROM outbox WHERE id = ?1", params![id])
            .map(|_| ())
            .map_err(db_err)
    }

    /// Records a delivery to `output` about to start, with the output's mark; returns
    /// its id.
    pub fn begin_delivery(
        &self,
        tenant: &str,
        output: &str,
        mark: &str,
    ) -> Result<i64, CollectError> {
        self.db
            .execute(
                "INSERT INTO outbox (tenant, output, mark) VALUES (?1, ?2, ?3)",
                params![tenant, output, mark],
            )
            .map_err(db_err)?;
        Ok(self.db.last_insert_rowid())
    }

    /// After the sink acknowledged a delivery: in one transaction, remembers its keys
    /// (each with the time until which a window could return it), counts the delivered
    /// rows, moves the live checkpoint or the sweep's cursor, and forgets the outbox
    /// entries (one per output).
    pub fn commit_delivery(
        &mut self,
        outbox: &[i64],
        tenant: &str,
        keys: &[(String, i64)],
        delivered: u64,
        progress: Progress,
    ) -> Result<(), CollectError> {
        let tx = self.db.transaction().map_err(db_err)?;
        {
            let mut insert = tx
                .prepare("INSERT OR REPLACE INTO seen (tenant, key, until_ms) VALUES (?1, ?2, ?3)")
                .map_err(db_err)?;
            for (key, until) in keys {
                insert
                    .execute(params![tenant, key, until])
                    .map_err(db_err)?;
            }
        }
        let now = jiff::Timestamp::now().as_millisecond();
        let delivered = delivered as i64;
        match progress {
            Progress::Live {
                from_ms,
                checkpoint_ms,
                reread_ms,
            } => tx.execute(
                "UPDATE tenants SET checkpoint_ms = ?2, origin_ms = COALESCE(origin_ms, ?3), \
                 last_run_ms = ?4, last_error = NULL, delivered = delivered + ?5, \
                 reread_ms = ?6 WHERE id = ?1",
                params![tenant, checkpoint_ms, from_ms, now, delivered, reread_ms],
            ),
            Progress::Sweep { cursor_ms } => tx.execute(
                "UPDATE tenants SET sweep_cursor_ms = ?2, sweep_rows = sweep_rows + ?3, \
                 sweep_windows = sweep_windows + 1, late = late + ?3, delivered = delivered + ?3, \
                 last_run_ms = ?4, last_error = NULL WHERE id = ?1",
                params![tenant, cursor_ms, delivered, now],
            ),
        }
        .map_err(db_err)?;
        for id in outbox {
            tx.execute("DELETE FROM outbox WHERE id = ?1", params![id])
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Forgets the keys whose window ended before `before_ms` (no window reaches that far
    /// back any more), and moves [`TenantStatus::pruned_before_ms`] just past the newest
    /// key forgotten; returns how many keys went.
    pub fn prune(&mut self, tenant: &str, before_ms: i64) -> Result<usize, CollectError> {
        let tx = self.db.transaction().map_err(db_err)?;
        let newest: Option<i64> = tx
            .query_row(
                "SELECT MAX(until_ms) FROM seen WHERE tenant = ?1 AND until_ms < ?2",
                params![tenant, before_ms],
                |r| r.get(0),
            )
            .map_err(db_err)?;
        let Some(newest) = newest else {
            return Ok(0);
        };
        let n = tx
            .execute(
                "DELETE FROM seen WHERE tenant = ?1 AND until_ms < ?2",
                params![tenant, before_ms],
            )
            .map_err(db_err)?;
        tx.execute(
            "UPDATE tenants SET pruned_before_ms = MAX(COALESCE(pruned_before_ms, ?2), ?2) WHERE id = ?1",
            params![tenant, newest + 1],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(n)
    }

    /// Sets when the tenant's next sweep is due.
    pub fn schedule_sweep(&self, tenant: &str, due_ms: i64) -> Result<(), CollectError> {
        self.db
            .execute(
                "UPDATE tenants SET sweep_due_ms = ?2 WHERE id = ?1",
                params![tenant, due_ms],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    /// Starts a sweep over `[begin_ms, end_ms)`.
    pub fn start_sweep(
        &self,
        tenant: &str,
        begin_ms: i64,
        end_ms: i64,
    ) -> Result<(), CollectError> {
        self.db
            .execute(
                "UPDATE tenants SET sweep_begin_ms = ?2, sweep_cursor_ms = ?2, sweep_end_ms = ?3, \
                 sweep_started_ms = ?4, sweep_rows = 0, sweep_windows = 0 WHERE id = ?1",
                params![
                    tenant,
                    begin_ms,
                    end_ms,
                    jiff::Timestamp::now().as_millisecond()
                ],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    /// Ends the running sweep and schedules the next one at `next_due_ms`.
    pub fn finish_sweep(&self, tenant: &str, next_due_ms: i64) -> Result<(), CollectError> {
        self.db
            .execute(
                "UPDATE tenants SET sweep_cursor_ms = NULL, sweep_done_ms = ?2, sweep_due_ms = ?3 \
                 WHERE id = ?1",
                params![tenant, jiff::Timestamp::now().as_millisecond(), next_due_ms],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    /// How many dedup keys the tenant holds.
    pub fn key_count(&self, tenant: &str) -> Result<i64, CollectError> {
        self.db
            .query_row(
                "SELECT COUNT(*) FROM seen WHERE tenant = ?1",
                params![tenant],
                |r| r.get(0),
            )
            .map_err(db_err)
    }

    /// Records a failed run of a tenant.
    pub fn record_error(&self, tenant: &str, error: &str) -> Result<(), CollectError> {
        self.db
            .execute(
                "UPDATE tenants SET last_error = ?2, last_run_ms = ?3 WHERE id = ?1",
                params![tenant, error, jiff::Timestamp::now().as_millisecond()],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    /// Every tenant's status, by name.
    pub fn status(&self) -> Result<Vec<TenantStatus>, CollectError> {
        let mut stmt = self
            .db
            .prepare(&format!(
                "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name, id"
            ))
            .map_err(db_err)?;
        let rows = stmt.query_map([], tenant_row).map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }
}

/// The SIEM API streams.
impl State {
    /// A tenant's stream, if it was collected before.
    pub fn stream(&self, tenant: &str, stream: &str) -> Result<Option<StreamStatus>, CollectError> {
        self.db
            .query_row(
                &format!("SELECT {STREAM_COLUMNS} FROM streams WHERE tenant = ?1 AND stream = ?2"),
                params![tenant, stream],
                stream_row,
            )
            .optional()
            .map_err(db_err)
    }

    /// Every stream of every tenant, by tenant and stream.
    pub fn streams(&self) -> Result<Vec<StreamStatus>, CollectError> {
        let mut stmt = self
            .db
            .prepare(&format!(
                "SELECT {STREAM_COLUMNS} FROM streams ORDER BY tenant, stream"
            ))
            .map_err(db_err)?;
        let rows = stmt.query_map([], stream_row).map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    /// True when the item's key was delivered before for this tenant and stream.
    pub fn item_seen(&self, tenant: &str, stream: &str, key: &str) -> Result<bool, CollectError> {
        self.db
            .query_row(
                "SELECT 1 FROM siem_seen WHERE tenant = ?1 AND stream = ?2 AND key = ?3",
                params![tenant, stream, key],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(db_err)
    }

    /// Where a stream's first run starts (`from_ms`), recorded before its first page so
    /// that a crash or a failed first page does not move it.
    pub fn begin_stream(
        &self,
        tenant: &str,
        stream: &str,
        from_ms: i64,
    ) -> Result<(), CollectError> {
        self.db
            .execute(
                "INSERT INTO streams (tenant, stream, drained_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(tenant, stream) DO UPDATE SET drained_ms = COALESCE(drained_ms, ?3)",
                params![tenant, stream, from_ms],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    /// Records a gap of `secs` seconds found at `now_ms` (`last_secs` in this pass, this
    /// one included), and that the stream is read from `from_ms` on (so that the same gap
    /// is not reported twice).
    pub fn record_gap(
        &self,
        tenant: &str,
        stream: &str,
        secs: i64,
        last_secs: i64,
        now_ms: i64,
        from_ms: i64,
    ) -> Result<(), CollectError> {
        self.db
            .execute(
                "INSERT INTO streams (tenant, stream, gap_secs, last_gap_secs, last_gap_ms, drained_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(tenant, stream) DO UPDATE SET \
                 gap_secs = gap_secs + ?3, last_gap_secs = ?4, last_gap_ms = ?5, drained_ms = ?6",
                params![tenant, stream, secs, last_secs, now_ms, from_ms],
            )
            .map(|_| ())
            .map_err(db_err)
    }

    /// After every output acknowledged a page's items: in one transaction, remembers
    /// their keys until `until_ms`, moves the cursor (and how far the stream is drained,
    /// when the API said no more pages are ready; `start_ms` until the first time),
    /// counts the items, and forgets the outbox entries (one per output).
    pub fn commit_page(
        &mut self,
        outbox: &[i64],
        tenant: &str,
        page: &StreamPage<'_>,
        keys: &[String],
        until_ms: i64,
        start_ms: i64,
    ) -> Result<(), CollectError> {
        let tx = self.db.transaction().map_err(db_err)?;
        {
            let mut insert = tx
                .prepare(
                    "INSERT OR REPLACE INTO siem_seen (tenant, stream, key, until_ms) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db_err)?;
            for key in keys {
                insert
                    .execute(params![tenant, page.stream, key, until_ms])
                    .map_err(db_err)?;
            }
        }
        // Drained: everything the API had when the page was asked for. Not yet: read
        // up to the newest item delivered, if that is further.
        let drained = (!page.has_more).then_some(page.asked_ms);
        tx.execute(
            "INSERT INTO streams (tenant, stream, cursor, drained_ms, last_run_ms, delivered, duplicates) \
             VALUES (?1, ?2, ?3, COALESCE(?4, MAX(?5, COALESCE(?9, ?5))), ?6, ?7, ?8) \
             ON CONFLICT(tenant, stream) DO UPDATE SET cursor = COALESCE(?3, cursor), \
             drained_ms = COALESCE(?4, MAX(COALESCE(drained_ms, ?5), COALESCE(?9, drained_ms, ?5))), \
             last_run_ms = ?6, last_error = NULL, delivered = delivered + ?7, \
             duplicates = duplicates + ?8",
            params![
                tenant,
                page.stream,
                page.cursor,
                drained,
                start_ms,
                jiff::Timestamp::now().as_millisecond(),
                page.delivered as i64,
                page.duplicates as i64,
                page.read_ms
            ],
        )
        .map_err(db_err)?;
        for id in outbox {
            tx.execute("DELETE FROM outbox WHERE id = ?1", params![id])
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Forgets the item keys, of every tenant and stream (collected or not any more),
    /// kept until before `now_ms`; returns how many went.
    pub fn prune_all_items(&self, now_ms: i64) -> Result<usize, CollectError> {
        self.db
            .execute("DELETE FROM siem_seen WHERE until_ms < ?1", params![now_ms])
            .map_err(db_err)
    }

    /// How many item keys the tenant's stream holds.
    pub fn item_key_count(&self, tenant: &str, stream: &str) -> Result<i64, CollectError> {
        self.db
            .query_row(
                "SELECT COUNT(*) FROM siem_seen WHERE tenant = ?1 AND stream = ?2",
                params![tenant, stream],
                |r| r.get(0),
            )
            .map_err(db_err)
    }

    /// Records a failed run of a tenant's stream.
    pub fn record_stream_error(
        &self,
        tenant: &str,
        stream: &str,
        error: &str,
    ) -> Result<(), CollectError> {
        self.db
            .execute(
                "INSERT INTO streams (tenant, stream, last_error, last_run_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(tenant, stream) DO UPDATE SET last_error = ?3, last_run_ms = ?4",
                params![tenant, stream, error, jiff::Timestamp::now().as_millisecond()],
            )
            .map(|_| ())
            .map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_keeps_its_cursor_its_keys_and_its_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(dir.path()).unwrap();
        assert_eq!(s.stream("t1", "events").unwrap(), None);
        let out = s.begin_delivery("t1", "file", "mark").unwrap();
        let page = |cursor, asked_ms, has_more, read_ms| StreamPage {
            stream: "events",
            cursor: Some(cursor),
            asked_ms,
            has_more,
            read_ms,
            delivered: 2,
            duplicates: 1,
        };
        // the first start is kept before the first page, and stays
        s.begin_stream("t1", "events", 500).unwrap();
        s.begin_stream("t1", "events", 700).unwrap();
        let keys = ["k1".to_string(), "k2".to_string()];
        s.commit_page(
            &[out],
            "t1",
            &page("c1", 1_000, true, None),
            &keys,
            90_000,
            600,
        )
        .unwrap();
        assert!(s.pending().unwrap().is_empty(), "the outbox entry is gone");
        let st = s.stream("t1", "events").unwrap().unwrap();
        assert_eq!(
            (
                st.cursor.as_deref(),
                st.drained_ms,
                st.delivered,
                st.duplicates
            ),
            (Some("c1"), Some(500), 2, 1)
        );
        assert!(s.item_seen("t1", "events", "k1").unwrap());
        assert!(!s.item_seen("t1", "alerts", "k1").unwrap(), "per stream");
        assert!(!s.item_seen("t2", "events", "k1").unwrap(), "per tenant");
        // more pages: read up to their newest item
        s.commit_page(
            &[],
            "t1",
            &page("c1b", 1_500, true, Some(800)),
            &[],
            95_000,
            600,
        )
        .unwrap();
        assert_eq!(
            s.stream("t1", "events").unwrap().unwrap().drained_ms,
            Some(800)
        );
        // the last page: drained when it was asked for
        let k3 = ["k3".to_string()];
        s.commit_page(
            &[],
            "t1",
            &page("c2", 2_000, false, Some(1_900)),
            &k3,
            95_000,
            600,
        )
        .unwrap();
        let st = s.stream("t1", "events").unwrap().unwrap();
        assert_eq!(
            (st.cursor.as_deref(), st.drained_ms, st.delivered),
            (Some("c2"), Some(2_000), 6)
        );
        // gaps: summed, the last one kept (a pass's whole), and read on from its end
        s.record_gap("t1", "events", 30, 30, 100_000, 70_000)
            .unwrap();
        s.record_gap("t1", "events", 12, 12, 200_000, 180_000)
            .unwrap();
        s.record_gap("t1", "events", 1, 13, 200_000, 181_000)
            .unwrap();
        let st = s.stream("t1", "events").unwrap().unwrap();
        assert_eq!(
            (st.gap_secs, st.last_gap, st.drained_ms),
            (43, Some((13, 200_000)), Some(181_000))
        );
        // errors, then keys past their time are forgotten, whatever their tenant
        s.record_stream_error("t1", "alerts", "HTTP 403").unwrap();
        assert_eq!(s.streams().unwrap().len(), 2);
        assert_eq!(s.prune_all_items(92_000).unwrap(), 2);
        assert_eq!(s.item_key_count("t1", "events").unwrap(), 1);
        // it all survives a reopen
        drop(s);
        let s = State::open(dir.path()).unwrap();
        assert_eq!(
            s.stream("t1", "events").unwrap().unwrap().cursor.as_deref(),
            Some("c2")
        );
        assert_eq!(
            s.stream("t1", "alerts")
                .unwrap()
                .unwrap()
                .last_error
                .as_deref(),
            Some("HTTP 403")
        );
    }

    #[test]
    fn checkpoint_keys_and_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(dir.path()).unwrap();
        s.add_tenant("t1", "Tenant 1").unwrap();
        assert_eq!(s.checkpoint("t1").unwrap(), None);
        let id = s.begin_delivery("t1", "file", "0\tout").unwrap();
        let pending = Pending {
            id,
            output: Some("file".into()),
            mark: "0\tout".into(),
        };
        assert_eq!(s.pending().unwrap(), vec![pending]);
        let live = |from_ms, checkpoint_ms| Progress::Live {
            from_ms,
            checkpoint_ms,
            reread_ms: None,
        };
        s.commit_delivery(&[id], "t1", &[("k1".into(), 9_000)], 1, live(5_000, 10_000))
            .unwrap();
        assert!(s.pending().unwrap().is_empty());
        assert_eq!(s.checkpoint("t1").unwrap(), Some(10_000));
        assert!(s.seen("t1", "k1").unwrap());
        assert!(!s.seen("t2", "k1").unwrap());
        // the origin is the first window's start, and stays
        s.commit_delivery(&[], "t1", &[], 0, live(9_000, 12_000))
            .unwrap();
        let t = s.tenant("t1").unwrap().unwrap();
        assert_eq!(
            (t.origin_ms, t.checkpoint_ms, t.delivered),
            (Some(5_000), Some(12_000), 1)
        );
        // keys go when their calendar time is before the threshold, not before
        assert_eq!(s.prune("t1", 9_000).unwrap(), 0);
        assert!(s.seen("t1", "k1").unwrap());
        assert_eq!(s.prune("t1", 9_001).unwrap(), 1);
        assert!(!s.seen("t1", "k1").unwrap());
        // the newest threshold is kept, and never moves back
        s.prune("t1", 5_000).unwrap();
        assert_eq!(
            s.tenant("t1").unwrap().unwrap().pruned_before_ms,
            Some(9_001)
        );
    }

    #[test]
    fn a_sweep_keeps_its_progress_and_counts_late_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(dir.path()).unwrap();
        s.add_tenant("t1", "Tenant 1").unwrap();
        assert_eq!(
            s.tenant("t1").unwrap().unwrap().sweep,
            SweepState::default()
        );
        s.schedule_sweep("t1", 50).unwrap();
        s.start_sweep("t1", 100, 1_000).unwrap();
        s.commit_delivery(
            &[],
            "t1",
            &[("late".into(), 150)],
            1,
            Progress::Sweep { cursor_ms: 400 },
        )
        .unwrap();
        // reopened (as after kill -9): the sweep resumes at its cursor
        drop(s);
        let s = State::open(dir.path()).unwrap();
        let t = s.tenant("t1").unwrap().unwrap();
        assert!(t.sweep.running());
        assert_eq!(
            (
                t.sweep.begin_ms,
                t.sweep.cursor_ms,
                t.sweep.end_ms,
                t.sweep.rows,
                t.sweep.windows
            ),
            (Some(100), Some(400), Some(1_000), 1, 1)
        );
        assert_eq!((t.late, t.delivered, t.checkpoint_ms), (1, 1, None));
        s.finish_sweep("t1", 5_000).unwrap();
        let t = s.tenant("t1").unwrap().unwrap();
        assert!(!t.sweep.running());
        assert_eq!((t.sweep.due_ms, t.sweep.rows, t.late), (Some(5_000), 1, 1));
        assert!(t.sweep.done_ms.is_some());
    }

    #[test]
    fn a_state_of_the_first_release_gains_the_new_columns() {
        let dir = tempfile::tempdir().unwrap();
        let db = Connection::open(dir.path().join("state.db")).unwrap();
        db.execute_batch(
            "CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', checkpoint_ms INTEGER,
                 last_run_ms INTEGER, last_error TEXT, delivered INTEGER NOT NULL DEFAULT 0);
             INSERT INTO tenants (id, name, checkpoint_ms, delivered) VALUES ('t1', 'old', 777, 3);
             CREATE TABLE outbox (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, mark TEXT NOT NULL);
             INSERT INTO outbox (tenant, mark) VALUES ('t1', '12\tout.ndjson');",
        )
        .unwrap();
        drop(db);
        let s = State::open(dir.path()).unwrap();
        let t = s.tenant("t1").unwrap().unwrap();
        assert_eq!(
            (t.checkpoint_ms, t.delivered, t.origin_ms, t.late),
            (Some(777), 3, None, 0)
        );
        // a delivery a crash interrupted under the single-output version: no output name
        let pending = s.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].output.as_deref(), pending[0].mark.as_str()),
            (None, "12\tout.ndjson")
        );
    }

    #[test]
    fn a_second_collector_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_dir(dir.path()).unwrap();
        let err = lock_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another collector is running"), "{err}");
        drop(held);
        lock_dir(dir.path()).unwrap();
    }

    /// Thirty simulated days of 2,000 rows a day with a 3-day reach, pruned every hour:
    /// the key count never exceeds what the reach holds, and the database file stops
    /// growing once the first keys fall out (SQLite reuses the freed pages).
    #[test]
    fn the_state_stays_bounded_over_a_long_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(dir.path()).unwrap();
        s.add_tenant("t1", "Tenant 1").unwrap();
        let (hour, day) = (3_600_000i64, 86_400_000i64);
        let reach = 3 * day;
        let per_hour = 2_000 / 24;
        let mut sizes = Vec::new();
        let mut max_keys = 0;
        for h in 0..30 * 24 {
            let now = h * hour;
            let keys: Vec<(String, i64)> = (0..per_hour)
                .map(|i| {
                    (
                        format!("id:{h:06}-{i:04}-0123456789abcdef"),
                        now - i * 1_000,
                    )
                })
                .collect();
            s.commit_delivery(
                &[],
                "t1",
                &keys,
                keys.len() as u64,
                Progress::Live {
                    from_ms: 0,
                    checkpoint_ms: now,
                    reread_ms: None,
                },
            )
            .unwrap();
            s.prune("t1", now - reach).unwrap();
            max_keys = max_keys.max(s.key_count("t1").unwrap());
            if h % 24 == 23 {
                sizes.push(
                    std::fs::metadata(dir.path().join("state.db"))
                        .unwrap()
                        .len()
                        + std::fs::metadata(dir.path().join("state.db-wal")).map_or(0, |m| m.len()),
                );
            }
        }
        assert!(max_keys <= (per_hour * (3 * 24 + 1)), "{max_keys} keys");
        // from day 5 on (two days after the first prune), the files do not grow by more
        // than the WAL's own churn
        let settled = sizes[4];
        let last = *sizes.last().unwrap();
        assert!(
            last <= settled * 3 / 2,
            "grew from {settled} to {last}: {sizes:?}"
        );
    }
}
