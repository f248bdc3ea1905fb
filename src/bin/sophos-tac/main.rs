//! The `sophos-tac` command: a thin layer over the library.

mod args;
mod collect;
mod consume;
mod normalize;
mod resolve;
mod signal;

use std::io::Write;
use std::process::ExitCode;

use args::{Args, Format};
use clap::Parser;
use resolve::Config;
use sophos_tac::catalogue;

/// Exit status: every line normalized or blank.
pub const EXIT_OK: u8 = 0;
/// Exit status: the run finished, but at least one line was rejected.
pub const EXIT_REJECTS: u8 = 1;
/// Exit status: an error stopped the run or an input could not be read.
pub const EXIT_ERROR: u8 = 2;
/// Exit status of `collect --once`: at least one tenant failed (the others were
/// collected).
pub const EXIT_TENANT_FAILED: u8 = 3;

fn main() -> ExitCode {
    let config = match Args::parse().into_config() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    match run(config) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("sophos-tac: {}", one_line(e));
    ExitCode::from(EXIT_ERROR)
}

/// An error and its causes on one line, each cause once: a cause whose text the line
/// already holds (errors that show their source in their own message) is not repeated.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace(['\n', '\r'], " ")
}

/// Logs (tracing) to stderr, at `RUST_LOG`'s levels or else `default`, as text or as
/// one JSON object per line.
pub fn init_logging(default: &str, format: args::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        args::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        args::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

fn run(config: Config) -> anyhow::Result<u8> {
    match config {
        Config::Normalize(c) => normalize::run(*c),
        Config::Collect(c) => collect::run(c),
        Config::Fields(c) => {
            let text = match (&c.template, c.format) {
                (Some(t), _) => {
                    serde_json::to_string_pretty(&catalogue::index_template(&c.profile, t))? + "\n"
                }
                (None, Format::Json) => {
                    serde_json::to_string_pretty(&catalogue::json(&c.profile))? + "\n"
                }
                (None, Format::Markdown) => catalogue::markdown(&c.profile),
            };
            std::io::stdout()
                .lock()
                .write_all(text.as_bytes())
                .map_err(|e| anyhow::anyhow!("<stdout>: {e}"))?;
            Ok(EXIT_OK)
        }
    }
}
