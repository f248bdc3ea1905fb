//! Stop signals: SIGTERM and SIGINT (Ctrl-C).

/// Returns when the process receives SIGTERM or SIGINT (Ctrl-C); never, when the
/// signals cannot be listened for.
pub async fn terminated() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Sets `flag` when SIGTERM or SIGINT arrives, from a thread of its own (for code that
/// does not run on Tokio).
pub fn set_on_termination(flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(terminated());
        tracing::info!("stop asked for: finishing the batch under way");
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
}
