//! `sophos-tac collect`: the collector as a service, once, or its status.

use std::sync::Arc;

use anyhow::Context;
use sophos_tac::collect::Collector;
use sophos_tac::collect::config::CollectConfig;

use crate::args::CollectArgs;
use crate::{EXIT_OK, EXIT_REJECTS, EXIT_TENANT_FAILED};

pub fn run(args: CollectArgs) -> anyhow::Result<u8> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
    let config = CollectConfig::load(&args.config)?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if args.status {
        return status(&config);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let collector = Arc::new(Collector::open(config)?);
        let summary = collector.run(args.once).await?;
        Ok(if summary.tenants_failed > 0 {
            EXIT_TENANT_FAILED
        } else if summary.rejected > 0 {
            EXIT_REJECTS
        } else {
            EXIT_OK
        })
    })
}

fn status(config: &CollectConfig) -> anyhow::Result<u8> {
    let now = jiff::Timestamp::now().as_millisecond();
    let show = |ms: Option<i64>| {
        ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
            .map_or("-".to_string(), |t| t.to_string())
    };
    println!(
        "{:<38} {:<24} {:<26} {:>10} {:>10}  last error",
        "tenant", "name", "checkpoint", "lag (s)", "delivered"
    );
    for t in Collector::status(&config.file.state_dir)? {
        let lag = t
            .checkpoint_ms
            .map_or("-".to_string(), |c| ((now - c) / 1000).to_string());
        println!(
            "{:<38} {:<24} {:<26} {:>10} {:>10}  {}",
            t.id,
            t.name,
            show(t.checkpoint_ms),
            lag,
            t.delivered,
            t.last_error.as_deref().unwrap_or("-")
        );
    }
    Ok(EXIT_OK)
}
