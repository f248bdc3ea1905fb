//! The collector's configuration file (TOML).
//!
//! ```toml
//! client_id = "…"
//! client_secret_env = "SOPHOS_CLIENT_SECRET"   # or: client_secret_file = "/etc/sophos-tac/secret"
//! # auth_url = "https://id.sophos.com/api/v2/oauth2/token"
//! # global_url = "https://api.central.sophos.com"
//! state_dir = "/var/lib/sophos-tac"
//! profile = "documented"                        # or "extended"
//!
//! [output]
//! type = "file"                                 # or "stdout"
//! path = "/var/lib/sophos-tac/sophos-tac.ndjson"
//! rotate_bytes = 104857600
//! rotate_secs = 86400
//! ```
//!
//! The secret is never read from the command line or the configuration file itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::collect::CollectError;
use crate::sinks::{EsConfig, FileConfig, Rotation, SinkConfig, SyslogConfig};

/// The `type`s an `[[output]]` may have.
pub const OUTPUT_TYPES: &[&str] = &["file", "stdout", "elasticsearch", "syslog", "kafka"];

/// A secret string: never shown by `Debug` or `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The configuration file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The API credential's client id.
    pub client_id: String,
    /// The name of an environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// A file holding the client secret (its first line).
    pub client_secret_file: Option<PathBuf>,
    /// The OAuth2 token URL.
    #[serde(default = "default_auth_url")]
    pub auth_url: String,
    /// The Sophos Central global API URL.
    #[serde(default = "default_global_url")]
    pub global_url: String,
    /// Where the state database (and the rejects file) live.
    pub state_dir: PathBuf,
    /// The mapping profile: `documented` (default) or `extended`.
    #[serde(default = "default_profile")]
    pub profile: String,
    /// The Data Lake query.
    #[serde(default)]
    pub query: QuerySection,
    /// Which tenants to collect.
    #[serde(default)]
    pub tenants: TenantsSection,
    /// Request limits and concurrency.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Where documents go: one `[output]` table, or several `[[output]]` tables (a
    /// window's checkpoint moves only once every output acknowledged it).
    #[serde(deserialize_with = "one_or_many")]
    pub output: Vec<OutputSection>,
    /// The service endpoint (metrics and health).
    #[serde(default)]
    pub service: ServiceSection,
    /// The SIEM API streams (alerts, events): off unless listed.
    #[serde(default)]
    pub siem: SiemSection,
}

/// `[siem]`: Sophos Central's SIEM API streams, collected for each tenant beside the
/// Data Lake detections, into the same outputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiemSection {
    /// The streams: `"alerts"` and/or `"events"` (none by default).
    pub streams: Vec<String>,
    /// How far back a stream's first run starts, seconds (default 24 h less a minute,
    /// the most the API accepts with a minute for clock skew; lower is allowed).
    pub lookback_secs: u64,
    /// How far back the API serves, seconds (24 h): a cursor older than this is
    /// restarted by the API, and the time before is reported as a gap. Change it only
    /// for a test API.
    pub api_reach_secs: u64,
    /// Items per page (`limit`, 1 to 1,000; default 1,000, the fewest calls).
    pub limit: u32,
    /// Pages one stream reads per pass, at most: a tenant's outbreak does not hold up
    /// the other tenants; the next pass goes on from its cursor.
    pub max_pages: u32,
    /// Event types the events stream leaves out (`exclude_types`), e.g.
    /// `["Event::Endpoint::UpdateSuccess"]`.
    pub exclude_types: Vec<String>,
    /// Minutes the API holds items back (`from_date_offset_minutes`, 0 to 1440; default
    /// 0): Sophos's answer to endpoints whose clock runs ahead, whose items would
    /// otherwise move the position past others not there yet.
    pub offset_minutes: u32,
}

impl Default for SiemSection {
    fn default() -> Self {
        SiemSection {
            streams: Vec::new(),
            lookback_secs: SIEM_REACH_SECS - 60,
            api_reach_secs: SIEM_REACH_SECS,
            limit: 1_000,
            max_pages: 100,
            exclude_types: Vec::new(),
            offset_minutes: 0,
        }
    }
}

/// How far back the SIEM API serves: 24 hours.
pub const SIEM_REACH_SECS: u64 = 86_400;

/// The SIEM API streams `[siem] streams` may list.
pub const SIEM_STREAMS: &[&str] = &["alerts", "events"];

/// `[service]`: the HTTP endpoint with `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// The address to listen on, e.g. `127.0.0.1:9464`; no endpoint when absent.
    pub listen: Option<std::net::SocketAddr>,
}

/// Reads `output` as one table (`[output]`) or an array of tables (`[[output]]`),
/// keeping the errors of the table itself.
fn one_or_many<'de, D>(d: D) -> Result<Vec<OutputSection>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct OneOrMany;
    impl<'de> serde::de::Visitor<'de> for OneOrMany {
        type Value = Vec<OutputSection>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an [output] table or [[output]] tables")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            OutputSection::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                .map(|o| vec![o])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
        }
    }
    d.deserialize_any(OneOrMany)
}

fn default_auth_url() -> String {
    "https://id.sophos.com/api/v2/oauth2/token".into()
}
fn default_global_url() -> String {
    "https://api.central.sophos.com".into()
}
fn default_profile() -> String {
    "documented".into()
}

/// `[query]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuerySection {
    /// The SQL; `{threshold}` is replaced by `threshold`.
    pub sql: String,
    /// The detection weight threshold.
    pub threshold: u32,
    /// How far back the first run starts, seconds (at most 30 days).
    pub lookback_secs: u64,
    /// How far before the checkpoint each window starts again, seconds.
    pub overlap_secs: u64,
    /// The longest window one query covers, seconds (default 30 days: windows are as wide
    /// as their results allow, see `max_window_pages`).
    pub max_window_secs: u64,
    /// The page budget of one window: a window whose results would take more pages than
    /// this is split (its run abandoned after the first page), so that one window's rows
    /// stay bounded in memory and one crash repeats a bounded amount of work.
    pub max_window_pages: u32,
    /// How far back the late sweep looks, seconds: a row that reaches the Data Lake up to
    /// this long after its `calendar_time` is still delivered (default 3 days, at most
    /// 30 days; 0 turns the sweep off).
    pub late_horizon_secs: u64,
    /// How often a tenant's late sweep starts, seconds (default 1 hour).
    pub late_sweep_secs: u64,
    /// Pause between two polls of a query run, milliseconds.
    pub poll_interval_ms: u64,
    /// Give up on a query run after this long, seconds.
    pub query_timeout_secs: u64,
    /// Rows per results page (at most 2000).
    pub page_size: u32,
    /// Pause between two passes in service mode, seconds.
    pub interval_secs: u64,
}

impl Default for QuerySection {
    fn default() -> Self {
        QuerySection {
            sql: "SELECT * FROM xdr_ioc_view WHERE ioc_detection_weight > {threshold}".into(),
            threshold: 3,
            lookback_secs: 86_400,
            overlap_secs: 600,
            max_window_secs: 30 * 86_400,
            max_window_pages: 10,
            late_horizon_secs: 3 * 86_400,
            late_sweep_secs: 3_600,
            poll_interval_ms: 2_000,
            query_timeout_secs: 600,
            page_size: 1_000,
            interval_secs: 300,
        }
    }
}

/// `[tenants]`: ids or names; an empty allow list allows all.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantsSection {
    /// Only these tenants (ids or names).
    pub allow: Vec<String>,
    /// Never these tenants (ids or names).
    pub deny: Vec<String>,
}

/// `[limits]`: Sophos documents 10 requests/s, 100/min, 1,000/h and 200,000/day per
/// credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Tenants collected at the same time.
    pub concurrency: usize,
    /// Requests per second per credential.
    pub per_second: u32,
    /// Requests per minute.
    pub per_minute: u32,
    /// Requests per hour.
    pub per_hour: u32,
    /// Requests per day.
    pub per_day: u32,
    /// Retries of one request (429, 5xx, timeouts) before giving up on it.
    pub max_retries: u32,
    /// Timeout of one HTTP request, seconds.
    pub request_timeout_secs: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            concurrency: 4,
            per_second: 10,
            per_minute: 100,
            per_hour: 1_000,
            per_day: 200_000,
            max_retries: 8,
            request_timeout_secs: 60,
        }
    }
}

/// `[output]`. Its `Debug` shows secret Kafka property values as `***`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// `file`, `stdout`, `elasticsearch` (Elasticsearch or OpenSearch), `syslog` or
    /// `kafka`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The output's name in logs and metrics (default: its type); with several
    /// outputs, each needs its own.
    #[serde(default)]
    pub name: String,
    /// For `elasticsearch`: `https://host:9200/INDEX`; for `syslog`:
    /// `syslog+tls://host:6514`; for `kafka`: `kafka://host:9092[,host2:9092]/TOPIC` (or
    /// `kafka+tls://…`, and `?sasl=scram-sha-512&user=NAME` with `password_env`).
    pub url: Option<String>,
    /// For `kafka`: librdkafka properties, applied after the defaults (idempotent
    /// producer, `acks=all`, zstd), e.g. `{ "compression.type" = "lz4" }`.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    /// For `elasticsearch`: an environment variable holding an API key.
    pub api_key_env: Option<String>,
    /// For `elasticsearch`: a basic-auth user…
    pub username: Option<String>,
    /// …and an environment variable holding its password.
    pub password_env: Option<String>,
    /// For `elasticsearch`: take a plain `http://` URL to a host that is not loopback
    /// (refused by default: the credentials and documents would cross the network in
    /// clear).
    #[serde(default)]
    pub allow_http: bool,
    /// For `elasticsearch`: a PEM file of CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// For `elasticsearch`: gzip bulk requests.
    #[serde(default)]
    pub gzip: bool,
    /// For `elasticsearch`: install the profile's index template at start-up.
    #[serde(default)]
    pub install_template: bool,
    /// For `elasticsearch`, with `install_template`: make the index a data stream.
    #[serde(default)]
    pub data_stream: bool,
    /// For `elasticsearch`: documents per bulk request (default 1000).
    pub batch_docs: Option<usize>,
    /// For `elasticsearch`: bytes per bulk request (default 5 MiB).
    pub batch_bytes: Option<usize>,
    /// For `elasticsearch`: bulk requests in flight at once (default 2; 1 to 32).
    pub concurrency: Option<usize>,
    /// The dead-letter file (default `state_dir/dead-letter.ndjson`, or
    /// `state_dir/dead-letter-NAME.ndjson` with several outputs).
    pub dead_letter: Option<PathBuf>,
    /// For `elasticsearch` and `syslog`: retries of one delivery (429, 5xx, connection
    /// errors) before the window is given up until the next pass (default 10, backing
    /// off up to 30 s each).
    pub max_retries: Option<u32>,
    /// For `elasticsearch` and `syslog`: seconds to connect, with the TLS handshake
    /// (default 10; 1 to 3600).
    pub connect_timeout_secs: Option<u64>,
    /// For `elasticsearch`: seconds for one bulk request (default 60); for `syslog`: for
    /// one write (default 30); for `file`: for one write and sync, past which the
    /// delivery is called stuck (default 300); 1 to 3600.
    pub timeout_secs: Option<u64>,
    /// For `syslog`: the facility (default 16, local0).
    pub facility: Option<u8>,
    /// For `syslog`: the severity (default 6, informational).
    pub severity: Option<u8>,
    /// For `syslog`: the APP-NAME (default `sophos-tac`).
    pub app_name: Option<String>,
    /// For `syslog`: the largest message the receiver takes whole (default 8192,
    /// rsyslog's default); larger ones are counted and warned about once.
    pub max_message_bytes: Option<usize>,
    /// For `syslog`: `send` (default) a message over `max_message_bytes` whole, or keep
    /// it in the dead-letter file (`dead-letter`).
    pub oversize: Option<String>,
    /// The file (for `file`).
    pub path: Option<PathBuf>,
    /// Rotate the file at this size.
    pub rotate_bytes: Option<u64>,
    /// Rotate the file after this many seconds.
    pub rotate_secs: Option<u64>,
}

/// A loaded configuration: the file plus the secret.
#[derive(Debug, Clone)]
pub struct CollectConfig {
    /// The file's settings.
    pub file: ConfigFile,
    /// The client secret.
    pub secret: Secret,
    /// Warnings to show (e.g. a config file readable by others).
    pub warnings: Vec<String>,
}

impl CollectConfig {
    /// Reads the configuration file and the secret it points to.
    pub fn load(path: &Path) -> Result<CollectConfig, CollectError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CollectError::Config(format!("{}: {e}", path.display())))?;
        let mut file: ConfigFile =
            toml::from_str(&text).map_err(|e| CollectError::Config(toml_error(path, &text, &e)))?;
        let mut warnings = Vec::new();
        warn_if_shared(path, &mut warnings);
        let secret = match (&file.client_secret_env, &file.client_secret_file) {
            (Some(var), None) => std::env::var(var).map_err(|_| {
                CollectError::Config(format!(
                    "the environment variable {var} (client_secret_env) is not set"
                ))
            })?,
            (None, Some(p)) => {
                warn_if_shared(p, &mut warnings);
                let s = std::fs::read_to_string(p)
                    .map_err(|e| CollectError::Config(format!("{}: {e}", p.display())))?;
                s.lines().next().unwrap_or_default().trim().to_string()
            }
            _ => {
                return Err(CollectError::Config(
                    "set exactly one of client_secret_env and client_secret_file".into(),
                ));
            }
        };
        if secret.is_empty() {
            return Err(CollectError::Config("the client secret is empty".into()));
        }
        check_bounds(&file)
            .map_err(|e| CollectError::Config(format!("{}: {e}", path.display())))?;
        for (url, what) in [
            (&file.auth_url, "auth_url"),
            (&file.global_url, "global_url"),
        ] {
            crate::url::refuse_plain_http(url, false, what).map_err(CollectError::Config)?;
        }
        let q = &file.query;
        if q.late_horizon_secs > 0 && q.late_sweep_secs == 0 {
            return Err(CollectError::Config(
                "query.late_sweep_secs is at least 1 (set late_horizon_secs = 0 to turn the sweep off)"
                    .into(),
            ));
        }
        check_outputs(&mut file)?;
        let mut streams = std::collections::HashSet::new();
        for stream in &file.siem.streams {
            if !SIEM_STREAMS.contains(&stream.as_str()) {
                return Err(CollectError::Config(format!(
                    "siem.streams: {stream:?} is not one of {}",
                    SIEM_STREAMS.join(", ")
                )));
            }
            if !streams.insert(stream) {
                return Err(CollectError::Config(format!(
                    "siem.streams lists {stream:?} twice"
                )));
            }
        }
        if file.profile.starts_with("siem-") {
            return Err(CollectError::Config(format!(
                "profile {:?} is for SIEM API items: the Data Lake's rows take \"documented\" or \"extended\" (the [siem] streams use the SIEM profiles on their own)",
                file.profile
            )));
        }
        if crate::mapping::Profile::by_name(&file.profile).is_none() {
            return Err(CollectError::Config(format!(
                "unknown profile {:?}",
                file.profile
            )));
        }
        Ok(CollectConfig {
            file,
            secret: Secret::new(secret),
            warnings,
        })
    }

    /// The profiles of the SIEM streams listed in `[siem] streams`, in that order.
    pub fn siem_profiles(&self) -> Vec<crate::mapping::Profile> {
        self.file
            .siem
            .streams
            .iter()
            .filter_map(|s| crate::collect::streams::Stream::from_name(s))
            .map(crate::collect::streams::Stream::profile)
            .collect()
    }

    /// The SQL with its threshold filled in.
    pub fn sql(&self) -> String {
        self.file
            .query
            .sql
            .replace("{threshold}", &self.file.query.threshold.to_string())
    }

    /// The overlap between windows.
    pub fn overlap(&self) -> Duration {
        Duration::from_secs(self.file.query.overlap_secs)
    }

    /// How far back a late sweep reaches: the horizon, plus one sweep interval and one
    /// overlap, so that a row arriving just inside the horizon is still in reach of the
    /// first sweep that starts after it arrives. Zero when the sweep is off.
    pub fn sweep_reach(&self) -> jiff::SignedDuration {
        let q = &self.file.query;
        if q.late_horizon_secs == 0 {
            return jiff::SignedDuration::ZERO;
        }
        let secs = q.late_horizon_secs + q.late_sweep_secs + q.overlap_secs;
        jiff::SignedDuration::from_secs(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// Where an output's dead-letter records go.
    pub fn dead_letter(&self, o: &OutputSection) -> PathBuf {
        dead_letter_path(&self.file.state_dir, self.file.output.len() > 1, o)
    }

    /// The output an `[[output]]` table describes, with its secrets read from the
    /// environment variables it names.
    pub fn sink(&self, o: &OutputSection) -> Result<SinkConfig, CollectError> {
        let url = o.url.as_deref().unwrap_or_default();
        let dead_letter = self.dead_letter(o);
        Ok(match o.kind.as_str() {
            "stdout" => SinkConfig::Stdout,
            "file" => SinkConfig::File(FileConfig {
                path: o.path.clone().unwrap_or_default(),
                rotation: Rotation {
                    max_bytes: o.rotate_bytes,
                    max_age: o.rotate_secs.map(std::time::Duration::from_secs),
                },
                delivery_bound: o.timeout_secs.map(std::time::Duration::from_secs),
            }),
            "syslog" => {
                let mut sys = SyslogConfig::from_url(url).map_err(CollectError::Config)?;
                sys.facility = o.facility.unwrap_or(sys.facility).min(23);
                sys.severity = o.severity.unwrap_or(sys.severity).min(7);
                if let Some(app) = &o.app_name {
                    sys.app_name = app.clone();
                }
                sys.ca_file = o.ca_file.clone();
                sys.max_message_bytes = o.max_message_bytes.unwrap_or(sys.max_message_bytes).max(1);
                sys.max_retries = o.max_retries.unwrap_or(sys.max_retries);
                sys.timeouts = sys
                    .timeouts
                    .with_secs(o.connect_timeout_secs, o.timeout_secs);
                sys.oversize_dead_letter = match o.oversize.as_deref() {
                    None | Some("send") => None,
                    Some("dead-letter") => Some(dead_letter.clone()),
                    Some(other) => {
                        return Err(CollectError::Config(format!(
                            "output.oversize is \"send\" or \"dead-letter\", not {other:?}"
                        )));
                    }
                };
                sys.refused_dead_letter = Some(dead_letter);
                SinkConfig::Syslog(Box::new(sys))
            }
            "kafka" => {
                let password = || {
                    o.password_env
                        .as_ref()
                        .and_then(|var| std::env::var(var).ok())
                };
                let mut kafka = crate::kafka::KafkaConfig::from_url(url, password).map_err(|e| {
                    CollectError::Config(format!(
                        "{e} (for output {}: the password comes from the variable password_env names)",
                        o.name
                    ))
                })?;
                kafka.group = None;
                kafka.ca_file = o.ca_file.clone();
                kafka.properties = o
                    .properties
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                SinkConfig::Kafka(Box::new(crate::sinks::kafka::KafkaSinkConfig {
                    kafka,
                    dead_letter,
                }))
            }
            "elasticsearch" => {
                let profile = crate::mapping::Profile::by_name(&self.file.profile)
                    .unwrap_or_else(crate::mapping::Profile::documented);
                crate::url::refuse_plain_http(url, o.allow_http, "the index URL (output.url)")
                    .map_err(CollectError::Config)?;
                let mut es = EsConfig::from_url(url, profile).map_err(CollectError::Config)?;
                // The index takes the SIEM streams' documents too: its template types
                // their fields.
                es.also = self.siem_profiles();
                let env =
                    |var: &Option<String>, what: &str| -> Result<Option<String>, CollectError> {
                        var.as_ref()
                            .map(|v| {
                                std::env::var(v).map_err(|_| {
                                    CollectError::Config(format!(
                                        "the environment variable {v} ({what}) is not set"
                                    ))
                                })
                            })
                            .transpose()
                    };
                es.api_key = env(&o.api_key_env, "output.api_key_env")?;
                if let Some(user) = &o.username {
                    let password = env(&o.password_env, "output.password_env")?.unwrap_or_default();
                    es.basic = Some((user.clone(), password));
                }
                es.ca_file = o.ca_file.clone();
                es.gzip = o.gzip;
                es.batch_docs = o.batch_docs.unwrap_or(es.batch_docs).max(1);
                es.max_retries = o.max_retries.unwrap_or(es.max_retries);
                es.timeouts = es
                    .timeouts
                    .with_secs(o.connect_timeout_secs, o.timeout_secs);
                es.batch_bytes = o.batch_bytes.unwrap_or(es.batch_bytes).max(1);
                es.concurrency = o.concurrency.unwrap_or(es.concurrency).max(1);
                es.dead_letter = dead_letter;
                es.install_template = o.install_template.then(|| {
                    crate::catalogue::TemplateOptions::for_index(&es.index, o.data_stream)
                });
                SinkConfig::Elasticsearch(Box::new(es))
            }
            other => {
                return Err(CollectError::Config(format!(
                    "output.type {other:?} is not one of {}",
                    OUTPUT_TYPES.join(", ")
                )));
            }
        })
    }
}

/// An output's dead-letter file: as configured, or `dead-letter.ndjson` in the state
/// directory (`dead-letter-NAME.ndjson` when there are several outputs).
fn dead_letter_path(state_dir: &Path, several: bool, o: &OutputSection) -> PathBuf {
    o.dead_letter.clone().unwrap_or_else(|| {
        state_dir.join(if several {
            format!("dead-letter-{}.ndjson", o.name)
        } else {
            "dead-letter.ndjson".into()
        })
    })
}

/// Checks each output's settings, names the unnamed ones after their type, and refuses
/// two outputs with one name, one file or one dead-letter file.
fn check_outputs(file: &mut ConfigFile) -> Result<(), CollectError> {
    if file.output.is_empty() {
        return Err(CollectError::Config("give at least one [[output]]".into()));
    }
    let several = file.output.len() > 1;
    let mut names = std::collections::HashSet::new();
    // The collector's own files are not outputs' to take.
    let mut paths: std::collections::HashSet<PathBuf> = ["rejects.ndjson", "state.db", "lock"]
        .iter()
        .map(|f| crate::sinks::canonical(&file.state_dir.join(f)))
        .collect();
    for o in &mut file.output {
        let complete = match o.kind.as_str() {
            "file" => o.path.is_some(),
            "stdout" => true,
            "elasticsearch" | "syslog" | "kafka" => o.url.is_some(),
            _ => false,
        };
        if !complete {
            return Err(CollectError::Config(
                "output.type is \"file\" (with output.path), \"stdout\", or \"elasticsearch\", \"syslog\" or \"kafka\" (with output.url)".into(),
            ));
        }
        if o.name.is_empty() {
            o.name = o.kind.clone();
        }
        let foreign: Vec<&str> = o
            .keys_set()
            .into_iter()
            .filter(|k| !keys_of(&o.kind).contains(k))
            .collect();
        if !foreign.is_empty() {
            return Err(CollectError::Config(format!(
                "output {:?} (type {:?}): {} do{} not apply to this type (it takes: {})",
                o.name,
                o.kind,
                foreign.join(", "),
                if foreign.len() == 1 { "es" } else { "" },
                keys_of(&o.kind).join(", ")
            )));
        }
        let plain = o
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !plain {
            return Err(CollectError::Config(format!(
                "output name {:?}: use letters, digits, - and _",
                o.name
            )));
        }
        if !names.insert(o.name.clone()) {
            return Err(CollectError::Config(format!(
                "two outputs are named {:?}: with several outputs, give each its own name",
                o.name
            )));
        }
        let dead_letter = dead_letter_path(&file.state_dir, several, o);
        for p in o.path.iter().chain([&dead_letter]) {
            if !paths.insert(crate::sinks::canonical(p)) {
                return Err(CollectError::Config(format!(
                    "{}: two outputs would write to this file",
                    p.display()
                )));
            }
        }
    }
    Ok(())
}

/// A TOML error as one line: the file, the line and column, and TOML's own message.
fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> String {
    let message = e.message().replace(['\n', '\r'], " ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |p| p + 1) + 1;
            format!("{}:{line}:{column}: {message}", path.display())
        }
        None => format!("{}: {message}", path.display()),
    }
}

/// The keys each output type takes (besides `type` and `name`).
fn keys_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "file" => &["path", "rotate_bytes", "rotate_secs", "timeout_secs"],
        "elasticsearch" => &[
            "url",
            "api_key_env",
            "allow_http",
            "username",
            "password_env",
            "ca_file",
            "gzip",
            "install_template",
            "data_stream",
            "batch_docs",
            "batch_bytes",
            "concurrency",
            "dead_letter",
            "max_retries",
            "connect_timeout_secs",
            "timeout_secs",
        ],
        "syslog" => &[
            "url",
            "ca_file",
            "dead_letter",
            "max_retries",
            "facility",
            "severity",
            "app_name",
            "max_message_bytes",
            "oversize",
            "connect_timeout_secs",
            "timeout_secs",
        ],
        "kafka" => &[
            "url",
            "properties",
            "password_env",
            "ca_file",
            "dead_letter",
        ],
        _ => &[],
    }
}

impl std::fmt::Debug for OutputSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: std::collections::BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), crate::kafka::shown_property(k, v)))
            .collect();
        f.debug_struct("OutputSection")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("url", &self.url.as_deref().map(crate::url::redact))
            .field("properties", &properties)
            .field("keys", &self.keys_set())
            .field("path", &self.path)
            .field("dead_letter", &self.dead_letter)
            .finish_non_exhaustive()
    }
}

impl OutputSection {
    /// Its name, or its type while it has none.
    fn name_or_kind(&self) -> &str {
        if self.name.is_empty() {
            &self.kind
        } else {
            &self.name
        }
    }

    /// The keys this table sets (besides `type` and `name`).
    fn keys_set(&self) -> Vec<&'static str> {
        let set = [
            ("url", self.url.is_some()),
            ("properties", !self.properties.is_empty()),
            ("api_key_env", self.api_key_env.is_some()),
            ("allow_http", self.allow_http),
            ("username", self.username.is_some()),
            ("password_env", self.password_env.is_some()),
            ("ca_file", self.ca_file.is_some()),
            ("gzip", self.gzip),
            ("install_template", self.install_template),
            ("data_stream", self.data_stream),
            ("batch_docs", self.batch_docs.is_some()),
            ("batch_bytes", self.batch_bytes.is_some()),
            ("concurrency", self.concurrency.is_some()),
            ("dead_letter", self.dead_letter.is_some()),
            ("max_retries", self.max_retries.is_some()),
            ("connect_timeout_secs", self.connect_timeout_secs.is_some()),
            ("timeout_secs", self.timeout_secs.is_some()),
            ("facility", self.facility.is_some()),
            ("severity", self.severity.is_some()),
            ("app_name", self.app_name.is_some()),
            ("max_message_bytes", self.max_message_bytes.is_some()),
            ("oversize", self.oversize.is_some()),
            ("path", self.path.is_some()),
            ("rotate_bytes", self.rotate_bytes.is_some()),
            ("rotate_secs", self.rotate_secs.is_some()),
        ];
        set.into_iter()
            .filter(|(_, s)| *s)
            .map(|(k, _)| k)
            .collect()
    }
}

const DAY: u64 = 86_400;

/// Every duration and count of the file within its range, or the first that is not,
/// named with its key and its range.
fn check_bounds(file: &ConfigFile) -> Result<(), String> {
    let q = &file.query;
    let l = &file.limits;
    let mut checks: Vec<(String, u64, u64, u64)> = vec![
        ("query.lookback_secs".into(), q.lookback_secs, 0, 30 * DAY),
        ("query.overlap_secs".into(), q.overlap_secs, 0, DAY),
        (
            "query.max_window_secs".into(),
            q.max_window_secs,
            1,
            30 * DAY,
        ),
        (
            "query.max_window_pages".into(),
            q.max_window_pages.into(),
            1,
            1_000,
        ),
        (
            "query.late_horizon_secs".into(),
            q.late_horizon_secs,
            0,
            30 * DAY,
        ),
        (
            "query.late_sweep_secs".into(),
            q.late_sweep_secs,
            0,
            7 * DAY,
        ),
        (
            "query.poll_interval_ms".into(),
            q.poll_interval_ms,
            1,
            60_000,
        ),
        (
            "query.query_timeout_secs".into(),
            q.query_timeout_secs,
            1,
            DAY,
        ),
        ("query.page_size".into(), q.page_size.into(), 1, 2_000),
        ("query.interval_secs".into(), q.interval_secs, 1, DAY),
        ("limits.concurrency".into(), l.concurrency as u64, 1, 256),
        (
            "siem.api_reach_secs".into(),
            file.siem.api_reach_secs,
            2,
            SIEM_REACH_SECS,
        ),
        (
            "siem.lookback_secs".into(),
            file.siem.lookback_secs,
            1,
            file.siem.api_reach_secs.saturating_sub(1).max(1),
        ),
        ("siem.limit".into(), file.siem.limit.into(), 1, 1_000),
        (
            "siem.max_pages".into(),
            file.siem.max_pages.into(),
            1,
            10_000,
        ),
        (
            "siem.offset_minutes".into(),
            file.siem.offset_minutes.into(),
            0,
            1_440,
        ),
        (
            "limits.per_second".into(),
            l.per_second.into(),
            1,
            1_000_000,
        ),
        (
            "limits.per_minute".into(),
            l.per_minute.into(),
            1,
            1_000_000_000,
        ),
        (
            "limits.per_hour".into(),
            l.per_hour.into(),
            1,
            1_000_000_000,
        ),
        ("limits.per_day".into(), l.per_day.into(), 1, 1_000_000_000),
        ("limits.max_retries".into(), l.max_retries.into(), 0, 100),
        (
            "limits.request_timeout_secs".into(),
            l.request_timeout_secs,
            1,
            3_600,
        ),
    ];
    for o in &file.output {
        let key = |k: &str| format!("output {:?}: {k}", o.name_or_kind());
        let mut opt = |k: &str, v: Option<u64>, lo: u64, hi: u64| {
            if let Some(v) = v {
                checks.push((key(k), v, lo, hi));
            }
        };
        opt("max_retries", o.max_retries.map(u64::from), 0, 100);
        opt("batch_docs", o.batch_docs.map(|v| v as u64), 1, 100_000);
        opt("batch_bytes", o.batch_bytes.map(|v| v as u64), 1, 1 << 30);
        opt("concurrency", o.concurrency.map(|v| v as u64), 1, 32);
        opt(
            "max_message_bytes",
            o.max_message_bytes.map(|v| v as u64),
            64,
            16 << 20,
        );
        opt("rotate_bytes", o.rotate_bytes, 1, u64::MAX);
        opt("rotate_secs", o.rotate_secs, 1, 366 * DAY);
        opt("connect_timeout_secs", o.connect_timeout_secs, 1, 3_600);
        opt("timeout_secs", o.timeout_secs, 1, 3_600);
        opt("facility", o.facility.map(u64::from), 0, 23);
        opt("severity", o.severity.map(u64::from), 0, 7);
    }
    for (key, value, lo, hi) in checks {
        if value < lo || value > hi {
            return Err(format!("{key} is {value}: it must be from {lo} to {hi}"));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn warn_if_shared(path: &Path, warnings: &mut Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        warnings.push(format!(
            "{} is readable by other users (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        ));
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path, _warnings: &mut Vec<String>) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `text` as a configuration file (the secret from a variable that is set).
    fn load(text: &str) -> Result<CollectConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        CollectConfig::load(&path)
            .map_err(|e| e.to_string().replace(&path.display().to_string(), "c.toml"))
    }

    const BASE: &str = "client_id = \"x\"\nclient_secret_env = \"PATH\"\nstate_dir = \"/tmp/s\"\n";

    #[test]
    fn every_duration_and_count_has_a_bound_named_with_its_key() {
        for (section, key, value, range) in [
            ("query", "max_window_secs", "1000000000000", "1 to 2592000"),
            ("query", "overlap_secs", "1000000000000", "0 to 86400"),
            ("query", "page_size", "0", "1 to 2000"),
            ("query", "interval_secs", "0", "1 to 86400"),
            ("limits", "concurrency", "0", "1 to 256"),
            ("limits", "request_timeout_secs", "99999999", "1 to 3600"),
        ] {
            let text = format!("{BASE}[{section}]\n{key} = {value}\n[output]\ntype = \"stdout\"\n");
            let err = load(&text).unwrap_err();
            assert_eq!(
                err,
                format!(
                    "configuration: c.toml: {section}.{key} is {value}: it must be from {range}"
                ),
            );
        }
        let text = format!(
            "{BASE}[output]\ntype = \"syslog\"\nurl = \"syslog+tcp://h:1\"\ntimeout_secs = 0\n"
        );
        assert!(
            load(&text)
                .unwrap_err()
                .ends_with("output \"syslog\": timeout_secs is 0: it must be from 1 to 3600")
        );
        let ok = format!("{BASE}[output]\ntype = \"stdout\"\n");
        assert!(load(&ok).is_ok());
    }

    #[test]
    fn debug_of_a_loaded_config_never_shows_the_secret_and_plain_http_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, "Very-Secret-1234\n").unwrap();
        let with_file = |text: String| {
            text.replace(
                "client_secret_env = \"PATH\"",
                &format!("client_secret_file = \"{}\"", secret_file.display()),
            )
        };
        let text = with_file(format!("{BASE}[output]\ntype = \"stdout\"\n"));
        let config = load(&text).unwrap();
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains("Very-Secret-1234"), "{shown}");
        let http = text.replace("[output]", "global_url = \"http://api.example\"\n[output]");
        let err = load(&http).unwrap_err();
        assert!(err.contains("global_url is plain http://"), "{err}");
        let index = with_file(format!(
            "{BASE}[output]\ntype = \"elasticsearch\"\nurl = \"http://es.example:9200/i\"\n"
        ));
        let config = load(&index).unwrap();
        let err = config.sink(&config.file.output[0]).unwrap_err().to_string();
        assert!(err.contains("allow_http = true"), "{err}");
        let allowed = index.replace("url = ", "allow_http = true\nurl = ");
        let config = load(&allowed).unwrap();
        assert!(config.sink(&config.file.output[0]).is_ok());
    }

    #[test]
    fn keys_of_another_output_type_are_refused() {
        let text = format!(
            "{BASE}[output]\ntype = \"file\"\npath = \"/tmp/o\"\nbatch_docs = 10\nurl = \"http://h/i\"\n"
        );
        let err = load(&text).unwrap_err();
        assert!(
            err.contains("output \"file\" (type \"file\"): url, batch_docs do not apply to this type (it takes: path, rotate_bytes, rotate_secs, timeout_secs)"),
            "{err}"
        );
    }

    #[test]
    fn siem_streams_are_off_by_default_and_checked_when_listed() {
        let out = "[output]\ntype = \"stdout\"\n";
        let c = load(&format!("{BASE}{out}")).unwrap();
        assert!(c.file.siem.streams.is_empty() && c.siem_profiles().is_empty());
        assert_eq!(c.file.siem.lookback_secs, 86_340);
        let c = load(&format!(
            "{BASE}[siem]\nstreams = [\"events\", \"alerts\"]\n{out}"
        ))
        .unwrap();
        let names: Vec<&str> = c.siem_profiles().iter().map(|p| p.name()).collect();
        assert_eq!(names, ["siem-event", "siem-alert"]);
        let err = load(&format!("profile = \"siem-alert\"\n{BASE}{out}")).unwrap_err();
        assert!(err.contains("is for SIEM API items"), "{err}");
        for (siem, error) in [
            (
                "streams = [\"audit\"]",
                "siem.streams: \"audit\" is not one of alerts, events",
            ),
            (
                "streams = [\"alerts\", \"alerts\"]",
                "siem.streams lists \"alerts\" twice",
            ),
            (
                "lookback_secs = 86400",
                "siem.lookback_secs is 86400: it must be from 1 to 86399",
            ),
            (
                "api_reach_secs = 90000",
                "siem.api_reach_secs is 90000: it must be from 2 to 86400",
            ),
            (
                "limit = 1001",
                "siem.limit is 1001: it must be from 1 to 1000",
            ),
            (
                "max_pages = 0",
                "siem.max_pages is 0: it must be from 1 to 10000",
            ),
            ("stream = [\"alerts\"]", "unknown field `stream`"),
            (
                "offset_minutes = 2000",
                "siem.offset_minutes is 2000: it must be from 0 to 1440",
            ),
        ] {
            let err = load(&format!("{BASE}[siem]\n{siem}\n{out}")).unwrap_err();
            assert!(err.contains(error), "{siem}: {err}");
        }
    }

    #[test]
    fn a_toml_error_is_one_line_with_its_place() {
        let err = load("client_id = \"x\"\n").unwrap_err();
        assert!(!err.contains('\n'), "{err}");
        assert!(
            err.starts_with("configuration: c.toml:1:1: missing field"),
            "{err}"
        );
        let err = load(&format!("{BASE}[query]\npage_size = \"big\"\n")).unwrap_err();
        assert!(err.starts_with("configuration: c.toml:5:13: "), "{err}");
        assert!(!err.contains('|'), "{err}");
    }

    #[test]
    fn secret_is_never_shown() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
