//! `collect --check`: what is wrong with a configuration, in seconds, without
//! collecting anything.
//!
//! It obtains a token, runs whoami, lists the tenants the configuration would collect,
//! reads one item of each SIEM API stream `[siem] streams` lists from the first of them,
//! checks that the state directory takes writes, and that every output can be written
//! to or reached. It sends no Data Lake query and delivers nothing. The client secret
//! never shows in the report, even when a server echoes it.

use std::sync::Arc;

use crate::collect::client::Client;
use crate::collect::config::CollectConfig;
use crate::collect::delivery::open_sink;
use crate::collect::metrics::Metrics;
use crate::collect::{CollectError, choose_tenants, state};

/// One line of the report: what was checked, and what was found (`Err`: a problem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was checked (`access token`, `output archive`, …).
    pub what: String,
    /// What was found, or the problem, on one line.
    pub result: Result<String, String>,
}

/// How many tenants the report names before it says "and N more".
const NAMED_TENANTS: usize = 10;

/// Runs every check; the report has one finding per check, in order.
pub async fn check(config: &CollectConfig) -> Vec<Finding> {
    let mut report = Vec::new();
    let mut add = |what: &str, result: Result<String, String>| {
        let secret = config.secret.expose();
        let hide = |s: String| s.replace(secret, "***").replace(['\n', '\r'], " ");
        report.push(Finding {
            what: what.to_string(),
            result: result.map(hide).map_err(hide),
        });
    };
    let outputs: Vec<String> = config
        .file
        .output
        .iter()
        .map(|o| format!("{} ({})", o.name, o.kind))
        .collect();
    add(
        "configuration",
        Ok(format!(
            "profile {}; outputs: {}",
            config.file.profile,
            outputs.join(", ")
        )),
    );
    match Client::new(config, Arc::new(Metrics::new())) {
        Err(e) => add("access token", Err(e.to_string())),
        Ok(client) => match client.authenticate().await {
            Err(e) => add("access token", Err(e.to_string())),
            Ok(()) => {
                add(
                    "access token",
                    Ok(format!("obtained from {}", config.file.auth_url)),
                );
                match client.whoami().await {
                    Err(e) => add("whoami", Err(e.to_string())),
                    Ok(principal) => {
                        add("whoami", Ok(format!("a {} credential", principal.kind())));
                        match client.tenants(&principal).await {
                            Err(e) => add("tenants", Err(e.to_string())),
                            Ok(all) => {
                                let listed = all.len();
                                let chosen = choose_tenants(all, &config.file.tenants);
                                add("tenants", tenants_line(&chosen, listed));
                                if let Some(first) = chosen.first() {
                                    for stream in &config.file.siem.streams {
                                        let what = format!("siem {stream}");
                                        add(
                                            &what,
                                            siem_stream(&client, config, first, stream).await,
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    }
    add("state directory", state_dir(config));
    for o in &config.file.output {
        let what = format!("output {}", o.name);
        let result = match open_sink(config, o, true) {
            Ok(mut sink) => sink
                .check()
                .map(|()| format!("{}: ok", sink.name()))
                .map_err(|e| e.to_string()),
            // The collector this configuration runs holds its files: not a problem.
            Err(CollectError::Sink(crate::Error::Locked { path })) => Ok(format!(
                "{}: held by another process (the running collector?): not checked",
                path.display()
            )),
            Err(e) => Err(e.to_string()),
        };
        add(&what, result);
    }
    report
}

/// Reads one item of a SIEM API stream of `tenant`, from as far back as a first run
/// starts.
async fn siem_stream(
    client: &Client,
    config: &CollectConfig,
    tenant: &crate::collect::client::Tenant,
    stream: &str,
) -> Result<String, String> {
    let siem = &config.file.siem;
    let from = jiff::Timestamp::now().as_second() - siem.lookback_secs as i64;
    let page = client
        .siem_page(
            tenant,
            stream,
            crate::collect::client::SiemStart::FromDate(from),
            1,
            crate::collect::streams::Stream::from_name(stream)
                .map_or(&[][..], |s| s.excluded(siem)),
            siem.offset_minutes,
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "reached for {} ({}): {} in the last {} s",
        tenant.name,
        tenant.id,
        match (page.items.len(), page.has_more) {
            (0, _) => "no item".to_string(),
            (_, true) => "items".to_string(),
            (_, false) => "one item".to_string(),
        },
        siem.lookback_secs
    ))
}

fn tenants_line(
    chosen: &[crate::collect::client::Tenant],
    listed: usize,
) -> Result<String, String> {
    if chosen.is_empty() {
        return Err(format!(
            "none to collect: the credential sees {listed}, and [tenants] allow/deny leave none"
        ));
    }
    let mut names: Vec<String> = chosen
        .iter()
        .take(NAMED_TENANTS)
        .map(|t| format!("{} ({})", t.name, t.id))
        .collect();
    if chosen.len() > NAMED_TENANTS {
        names.push(format!("and {} more", chosen.len() - NAMED_TENANTS));
    }
    Ok(format!(
        "{} to collect, of {listed}: {}",
        chosen.len(),
        names.join(", ")
    ))
}

/// The state directory exists (or can be made), takes a new file, and its database
/// opens; a collector running on it is reported, not counted as a problem.
fn state_dir(config: &CollectConfig) -> Result<String, String> {
    let dir = &config.file.state_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let probe = dir.join(".check-probe");
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("{}: takes no writes: {e}", dir.display()))?;
    match state::lock_dir(dir) {
        Ok(_lock) => {
            let s = state::State::open(dir).map_err(|e| e.to_string())?;
            let tenants = s.status().map_err(|e| e.to_string())?.len();
            Ok(format!(
                "{}: writable; {tenants} tenants in the state",
                dir.display()
            ))
        }
        Err(_) => Ok(format!(
            "{}: writable; a collector is running on it now",
            dir.display()
        )),
    }
}
