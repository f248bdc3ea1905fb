//! The command line's flags (clap), as typed; [`crate::resolve`] turns them into the
//! library's settings.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use sophos_tac::mapping::Profile;

/// Sophos Central Threat Analysis Center detections → Elastic Common Schema.
#[derive(Debug, Parser)]
#[command(name = "sophos-tac", version, about, long_about = None)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Normalize NDJSON rows (or envelopes) into ECS documents, one per line.
    Normalize(Box<NormalizeArgs>),
    /// Print the field catalogue, or the index template, of a profile.
    Fields(FieldsArgs),
    /// Pull rows from Sophos Central, normalize and deliver them (a service, or --once).
    Collect(CollectArgs),
}

/// Flags of `collect`.
#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    /// The configuration file (TOML). The client secret comes from the environment
    /// variable or the file it names, never from the command line.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// One pass over every tenant, then exit (for cron).
    #[arg(long)]
    pub once: bool,
    /// Print each tenant's checkpoint, lag and last error from the state database.
    #[arg(long, conflicts_with = "once")]
    pub status: bool,
    /// Check the configuration and exit: obtain a token, run whoami, list the tenants it
    /// would collect, check the state directory and every output. Sends no Data Lake
    /// query. Exits 0, or 2 with one line per problem.
    #[arg(long, conflicts_with_all = ["once", "status"])]
    pub check: bool,
    /// How log lines are written on stderr: `text` for people, `json` (one object per
    /// line) for log shippers.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (timestamp, level, message, fields).
    Json,
}

/// Flags of `normalize`.
#[derive(Debug, clap::Args)]
pub struct NormalizeArgs {
    /// Input files (NDJSON, gzip recognised by content); `-` or none reads stdin.
    pub files: Vec<PathBuf>,
    /// Read from a Kafka topic instead, in a consumer group:
    /// `kafka://host:9092[,host2:9092]/TOPIC?group=NAME` (or `kafka+tls://…`). Runs until
    /// SIGTERM or Ctrl-C; offsets are committed once the output acknowledged the
    /// documents. A file output is appended to.
    #[arg(long, value_name = "URL", conflicts_with = "files")]
    pub input: Option<String>,
    /// Write documents to this file instead of stdout, or send them to an
    /// Elasticsearch/OpenSearch index: `https://host:9200/INDEX` (credentials from
    /// SOPHOS_TAC_ES_API_KEY, or SOPHOS_TAC_ES_USER and SOPHOS_TAC_ES_PASSWORD), to a
    /// syslog server: `syslog+tcp://host:port`, `syslog+tls://…`, `syslog+udp://…`, or to
    /// a Kafka topic: `kafka://host:9092[,host2:9092]/TOPIC` (or `kafka+tls://…`).
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<String>,
    /// With a Kafka input or output: a librdkafka property, `KEY=VALUE` (repeatable), as
    /// in `compression.type=lz4`. SASL: add `?sasl=scram-sha-512&user=NAME` to the URL;
    /// the password comes from SOPHOS_TAC_KAFKA_PASSWORD.
    #[arg(long, value_name = "KEY=VALUE", value_parser = sophos_tac::kafka::property)]
    pub kafka_property: Vec<(String, String)>,
    /// With a Kafka input: the most messages in one batch (one delivery to the output;
    /// a commit covers the batches acknowledged since the last one).
    #[arg(long, value_name = "N", default_value_t = 2000, requires = "input")]
    pub kafka_batch: usize,
    /// With a Kafka input: the most batches delivered to the output and not yet
    /// acknowledged; the next ones are read and normalized meanwhile.
    #[arg(long, value_name = "N", default_value_t = sophos_tac::sources::kafka::DEFAULT_IN_FLIGHT as u8, requires = "input", value_parser = clap::value_parser!(u8).range(1..=64))]
    pub kafka_in_flight: u8,
    /// With an Elasticsearch/OpenSearch or Kafka output: where refused documents go.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "sophos-tac-dead-letter.ndjson"
    )]
    pub dead_letter: PathBuf,
    /// With an Elasticsearch/OpenSearch output: take a plain http:// URL to a host that
    /// is not loopback (refused by default: credentials and documents in clear).
    #[arg(long)]
    pub allow_http: bool,
    /// With an Elasticsearch/OpenSearch output: install the profile's index template
    /// (named after the index, for exactly that index) before sending.
    #[arg(long)]
    pub install_template: bool,
    /// With --install-template: make the index a data stream.
    #[arg(long, requires = "install_template")]
    pub data_stream: bool,
    /// With an Elasticsearch/OpenSearch or syslog+tls output: trust the CA certificates
    /// of this PEM file instead of the platform's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// With an Elasticsearch/OpenSearch output: gzip the bulk requests.
    #[arg(long)]
    pub gzip: bool,
    /// With an Elasticsearch/OpenSearch output: documents per bulk request.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub batch_docs: usize,
    /// With an Elasticsearch/OpenSearch output: bulk requests in flight at once (1–32).
    #[arg(long, value_name = "N", default_value_t = sophos_tac::sinks::elasticsearch::DEFAULT_CONCURRENCY as u8, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub bulk_concurrency: u8,
    /// With a syslog output: the facility (0–23; 16 is local0).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u8).range(0..=23))]
    pub syslog_facility: u8,
    /// With a syslog output: the severity (0–7; 6 is informational).
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u8).range(0..=7))]
    pub syslog_severity: u8,
    /// With a syslog output: the APP-NAME.
    #[arg(long, value_name = "NAME", default_value = "sophos-tac")]
    pub syslog_app_name: String,
    /// With a syslog output: the largest message the receiver takes whole (rsyslog's
    /// default maxMessageSize is 8192; syslog-ng's log-msg-size 65536). Larger ones are
    /// counted and warned about once.
    #[arg(long, value_name = "BYTES", default_value_t = sophos_tac::sinks::syslog::DEFAULT_MAX_MESSAGE_BYTES)]
    pub syslog_max_bytes: usize,
    /// With a syslog output: what becomes of a message over --syslog-max-bytes: `send`
    /// it whole, or keep it in the --dead-letter file (with the reason).
    #[arg(long, value_enum, default_value = "send")]
    pub syslog_oversize: Oversize,
    /// With an Elasticsearch/OpenSearch output: retries of a failing request before
    /// giving up (exponential backoff with jitter, up to 30 s apart).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub retries: u32,
    /// With an Elasticsearch/OpenSearch or syslog output: seconds to connect (with the
    /// TLS handshake).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: u64,
    /// With an Elasticsearch/OpenSearch output: seconds for one bulk request (default
    /// 60); with a syslog output: for one write (default 30).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: Option<u64>,
    /// Write rejected lines to this file as NDJSON (file, line, offset, reason, text)
    /// instead of reporting each on stderr.
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// The mapping profile.
    #[arg(long, default_value = "documented", value_parser = clap::builder::PossibleValuesParser::new(Profile::NAMES))]
    pub profile: String,
    /// Worker threads (default: all cores). 1 runs on a single thread.
    #[arg(long, short = 'j', value_name = "N")]
    pub threads: Option<usize>,
    /// Reject lines longer than this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = sophos_tac::DEFAULT_MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
    /// Target size of the blocks the input is cut into (whole lines), in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    pub block_bytes: usize,
    /// No summary on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// Log what the outputs do (retries, reconnections) on stderr; without it only
    /// warnings are logged. `RUST_LOG` overrides both.
    #[arg(short, long)]
    pub verbose: bool,
    /// How log lines are written on stderr: `text` or `json` (one object per line).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Progress bar on stderr: `auto` shows it on a terminal for inputs of 64 MiB or
    /// more (unless --quiet), `always` on a terminal whatever the size, `never` not.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

/// What becomes of a syslog message over the size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Oversize {
    /// Sent whole (a receiver with a smaller limit truncates or splits it).
    Send,
    /// Kept in the dead-letter file, with the reason.
    DeadLetter,
}

/// When to show a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// On a terminal, for large inputs, unless --quiet.
    Auto,
    /// On a terminal, whatever the size.
    Always,
    /// Never.
    Never,
}

/// The catalogue's formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// A markdown table.
    Markdown,
    /// A JSON document.
    Json,
}

/// Flags of `fields`.
#[derive(Debug, clap::Args)]
pub struct FieldsArgs {
    /// The mapping profile.
    #[arg(long, default_value = "documented", value_parser = clap::builder::PossibleValuesParser::new(Profile::NAMES))]
    pub profile: String,
    /// The catalogue's format.
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: Format,
    /// Print a composable index template (Elasticsearch / OpenSearch) instead.
    #[arg(long)]
    pub index_template: bool,
    /// With --index-template: an index pattern (repeatable; default `sophos-tac-*`).
    #[arg(long, value_name = "PATTERN", requires = "index_template")]
    pub index_pattern: Vec<String>,
    /// With --index-template: create matching indices as a data stream.
    #[arg(long, requires = "index_template")]
    pub data_stream: bool,
}
