//! Measures the collector's state size per million dedup keys:
//! `cargo run --release --example state_size -- [KEYS] [TENANTS]` (default 1,000,000 keys
//! over 10 tenants). Keys look like real ones: `id:` and a 24-hex-digit
//! `record_identifier`, per tenant UUID. Written in windows of 1,000 keys, as the
//! collector does, then checkpointed so that the WAL is folded into the database.

use sophos_tac::collect::state::{Progress, State};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let tenants: u64 = args.next().map_or(Ok(10), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let mut state = State::open(dir.path())?;
    let mut rng = fastrand::Rng::with_seed(7);
    let started = std::time::Instant::now();
    for t in 0..tenants {
        let tenant = format!("{t:08x}-7454-4197-ab40-0ddc013a0a65");
        state.add_tenant(&tenant, "Tenant")?;
        let per = keys / tenants;
        let mut done = 0;
        while done < per {
            let n = (per - done).min(1_000);
            let window: Vec<(String, i64)> = (0..n)
                .map(|_| (format!("id:{:024x}", rng.u128(..) >> 32), 1_700_000_000_000))
                .collect();
            let progress = Progress::Live {
                from_ms: 0,
                checkpoint_ms: 1_700_000_000_000,
                reread_ms: None,
            };
            state.commit_delivery(&[], &tenant, &window, n, progress)?;
            done += n;
        }
    }
    drop(state);
    // Fold the WAL into the database, and measure the database file alone.
    let db = rusqlite::Connection::open(dir.path().join("state.db"))?;
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    drop(db);
    let bytes = std::fs::metadata(dir.path().join("state.db"))?.len();
    println!(
        "{keys} keys over {tenants} tenants: {:.1} MiB ({:.0} bytes per key, {:.0} MiB per million keys), written in {:.1} s",
        bytes as f64 / 1048576.0,
        bytes as f64 / keys as f64,
        bytes as f64 / keys as f64 * 1e6 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
