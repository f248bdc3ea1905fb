//! The collector's local state: an SQLite database in the state directory.
//!
//! - `tenants`: a checkpoint per tenant (the end of the last delivered window), the
//!   time of the last run, the last error and a delivered-row count;
//! - `seen`: the keys of recently delivered rows (`record_identifier`, or a hash of the
//!   row), each kept until its window has left the overlap;
//! - `outbox`: at most one delivery in progress, with the sink's mark, so that a crash
//!   between a delivery and its checkpoint is repaired on restart.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::collect::CollectError;

/// The state database.
#[derive(Debug)]
pub struct State {
    db: Connection,
}

/// What `collect --status` shows for a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantStatus {
    /// Tenant id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// End of the last delivered window (ms since the epoch).
    pub checkpoint_ms: Option<i64>,
    /// When it was last collected (ms).
    pub last_run_ms: Option<i64>,
    /// The last error, if the last run failed.
    pub last_error: Option<String>,
    /// Rows delivered so far.
    pub delivered: i64,
}

fn db_err(e: rusqlite::Error) -> CollectError {
    CollectError::State(e.to_string())
}

impl State {
    /// Opens (or creates) `state.db` in `dir`.
    pub fn open(dir: &Path) -> Result<State, CollectError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| CollectError::State(format!("{}: {e}", dir.display())))?;
        let db = Connection::open(dir.join("state.db")).map_err(db_err)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS tenants (
                 id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', checkpoint_ms INTEGER,
                 last_run_ms INTEGER, last_error TEXT, delivered INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS seen (
                 tenant TEXT NOT NULL, key TEXT NOT NULL, until_ms INTEGER NOT NULL,
                 PRIMARY KEY (tenant, key));
             CREATE TABLE IF NOT EXISTS outbox (
                 id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, mark TEXT NOT NULL);",
        )
        .map_err(db_err)?;
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
        self.db
            .query_row(
                "SELECT checkpoint_ms FROM tenants WHERE id = ?1",
                params![tenant],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(db_err)
    }

    /// True when the key was delivered before for this tenant.
    pub fn seen(&self, tenant: &str, key: &str) -> Result<bool, CollectError> {
        self.db
            .query_row(
                "SELECT 1 FROM seen WHERE tenant = ?1 AND key = ?2",
                params![tenant, key],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(db_err)
    }

    /// Deliveries started but never committed (after a crash): `(id, mark)`.
    pub fn pending(&self) -> Result<Vec<(i64, String)>, CollectError> {
        let mut stmt = self
            .db
            .prepare("SELECT id, mark FROM outbox ORDER BY id")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
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

    /// Records a delivery about to start; returns its id.
    pub fn begin_delivery(&self, tenant: &str, mark: &str) -> Result<i64, CollectError> {
        self.db
            .execute(
                "INSERT INTO outbox (tenant, mark) VALUES (?1, ?2)",
                params![tenant, mark],
            )
            .map_err(db_err)?;
        Ok(self.db.last_insert_rowid())
    }

    /// After the sink acknowledged a delivery: in one transaction, remembers its keys,
    /// moves the checkpoint, forgets the outbox entry, and prunes keys whose window
    /// has left the overlap.
    pub fn commit_delivery(
        &mut self,
        outbox: Option<i64>,
        tenant: &str,
        keys: &[(String, i64)],
        checkpoint_ms: i64,
        overlap_ms: i64,
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
        tx.execute(
            "UPDATE tenants SET checkpoint_ms = ?2, last_run_ms = ?3, last_error = NULL, delivered = delivered + ?4 WHERE id = ?1",
            params![tenant, checkpoint_ms, jiff::Timestamp::now().as_millisecond(), keys.len() as i64],
        )
        .map_err(db_err)?;
        if let Some(id) = outbox {
            tx.execute("DELETE FROM outbox WHERE id = ?1", params![id])
                .map_err(db_err)?;
        }
        tx.execute(
            "DELETE FROM seen WHERE tenant = ?1 AND until_ms < ?2",
            params![tenant, checkpoint_ms - 2 * overlap_ms],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)
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
        let mut stmt = self.db.prepare("SELECT id, name, checkpoint_ms, last_run_ms, last_error, delivered FROM tenants ORDER BY name, id").map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TenantStatus {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    checkpoint_ms: r.get(2)?,
                    last_run_ms: r.get(3)?,
                    last_error: r.get(4)?,
                    delivered: r.get(5)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_keys_and_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(dir.path()).unwrap();
        s.add_tenant("t1", "Tenant 1").unwrap();
        assert_eq!(s.checkpoint("t1").unwrap(), None);
        let id = s.begin_delivery("t1", "0\tout").unwrap();
        assert_eq!(s.pending().unwrap(), vec![(id, "0\tout".to_string())]);
        s.commit_delivery(Some(id), "t1", &[("k1".into(), 10_000)], 10_000, 1_000)
            .unwrap();
        assert!(s.pending().unwrap().is_empty());
        assert_eq!(s.checkpoint("t1").unwrap(), Some(10_000));
        assert!(s.seen("t1", "k1").unwrap());
        assert!(!s.seen("t2", "k1").unwrap());
        // k1 (kept until its window's end, 10000) stays while a window could return it…
        s.commit_delivery(None, "t1", &[], 12_000, 1_000).unwrap();
        assert!(s.seen("t1", "k1").unwrap());
        // …and falls out once the checkpoint is more than two overlaps past it
        s.commit_delivery(None, "t1", &[], 12_001, 1_000).unwrap();
        assert!(!s.seen("t1", "k1").unwrap());
        let st = s.status().unwrap();
        assert_eq!((st[0].delivered, st[0].checkpoint_ms), (1, Some(12_001)));
    }
}
