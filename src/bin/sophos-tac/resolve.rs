//! The flags resolved into what to run: the library's own settings types, checked.

use std::path::PathBuf;

use anyhow::{Context, bail};
use sophos_tac::Normalizer;
use sophos_tac::catalogue::TemplateOptions;
use sophos_tac::mapping::Profile;
use sophos_tac::pipeline::{Input, Options};
use sophos_tac::sinks::{FileConfig, SinkConfig};

use crate::args::{
    Args, CollectArgs, Command, Format, LogFormat, NormalizeArgs, Oversize, ProgressMode,
};

/// A resolved `normalize` run.
#[derive(Debug)]
pub struct NormalizeConfig {
    /// The compiled profile.
    pub normalizer: Normalizer,
    /// The inputs, in order.
    pub inputs: Vec<Input>,
    /// A Kafka topic to read in a consumer group, instead of `inputs`.
    pub kafka_input: Option<sophos_tac::kafka::KafkaConfig>,
    /// With `kafka_input`: how it batches.
    pub kafka_batch: sophos_tac::sources::kafka::SourceOptions,
    /// Where documents go.
    pub output: SinkConfig,
    /// Where rejects go; `None` reports them on stderr.
    pub rejects: Option<PathBuf>,
    /// Threads and block size.
    pub options: Options,
    /// No summary.
    pub quiet: bool,
    /// Logs at debug level (else warnings only).
    pub verbose: bool,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// When to show a progress bar.
    pub progress: ProgressMode,
}

/// A resolved `fields` run.
#[derive(Debug)]
pub struct FieldsConfig {
    /// The profile to describe.
    pub profile: Profile,
    /// The format of the catalogue.
    pub format: Format,
    /// Set when the index template is wanted instead.
    pub template: Option<TemplateOptions>,
}

/// What to run.
#[derive(Debug)]
pub enum Config {
    /// `normalize`.
    Normalize(Box<NormalizeConfig>),
    /// `fields`.
    Fields(FieldsConfig),
    /// `collect`.
    Collect(CollectArgs),
}

/// A Kafka URL with the flags that go with it (`--ca-file`, `--kafka-property`, and the
/// SASL password from SOPHOS_TAC_KAFKA_PASSWORD).
fn kafka_config(
    url: &str,
    ca_file: &Option<PathBuf>,
    properties: &[(String, String)],
) -> anyhow::Result<sophos_tac::kafka::KafkaConfig> {
    let mut kafka = sophos_tac::kafka::KafkaConfig::from_url(url, || {
        std::env::var("SOPHOS_TAC_KAFKA_PASSWORD").ok()
    })
    .map_err(anyhow::Error::msg)?;
    kafka.ca_file = ca_file.clone();
    kafka.properties = properties.to_vec();
    Ok(kafka)
}

fn profile(name: &str) -> anyhow::Result<Profile> {
    Profile::by_name(name).with_context(|| format!("unknown profile {name:?}"))
}

/// `-o` and the flags that go with its kind of output.
fn output(a: &NormalizeArgs, profile: &Profile) -> anyhow::Result<SinkConfig> {
    let Some(o) = a.output.as_deref() else {
        return Ok(SinkConfig::Stdout);
    };
    let scheme = o
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    Ok(match scheme.as_str() {
        "" => SinkConfig::File(FileConfig {
            path: PathBuf::from(o),
            ..FileConfig::default()
        }),
        "http" | "https" => {
            sophos_tac::url::refuse_plain_http(o, a.allow_http, "the index URL")
                .map_err(anyhow::Error::msg)?;
            let mut es = sophos_tac::sinks::EsConfig::from_url(o, profile.clone())
                .map_err(anyhow::Error::msg)?;
            es.api_key = std::env::var("SOPHOS_TAC_ES_API_KEY").ok();
            es.basic = std::env::var("SOPHOS_TAC_ES_USER")
                .ok()
                .zip(std::env::var("SOPHOS_TAC_ES_PASSWORD").ok());
            es.ca_file = a.ca_file.clone();
            es.gzip = a.gzip;
            es.batch_docs = a.batch_docs.max(1);
            es.concurrency = usize::from(a.bulk_concurrency.max(1));
            es.max_retries = a.retries;
            es.timeouts = es.timeouts.with_secs(Some(a.connect_timeout), a.timeout);
            es.dead_letter = a.dead_letter.clone();
            es.install_template = a
                .install_template
                .then(|| TemplateOptions::for_index(&es.index, a.data_stream));
            SinkConfig::Elasticsearch(Box::new(es))
        }
        s if s.starts_with("syslog") => {
            let mut sys =
                sophos_tac::sinks::SyslogConfig::from_url(o).map_err(anyhow::Error::msg)?;
            sys.facility = a.syslog_facility;
            sys.severity = a.syslog_severity;
            sys.app_name = a.syslog_app_name.clone();
            sys.ca_file = a.ca_file.clone();
            sys.max_retries = a.retries;
            sys.timeouts = sys.timeouts.with_secs(Some(a.connect_timeout), a.timeout);
            sys.max_message_bytes = a.syslog_max_bytes.max(1);
            sys.oversize_dead_letter =
                (a.syslog_oversize == Oversize::DeadLetter).then(|| a.dead_letter.clone());
            sys.refused_dead_letter = Some(a.dead_letter.clone());
            SinkConfig::Syslog(Box::new(sys))
        }
        s if s.starts_with("kafka") => {
            let mut kafka = kafka_config(o, &a.ca_file, &a.kafka_property)?;
            kafka.group = None;
            SinkConfig::Kafka(Box::new(sophos_tac::sinks::kafka::KafkaSinkConfig {
                kafka,
                dead_letter: a.dead_letter.clone(),
            }))
        }
        other => bail!(
            "{}: unknown output scheme {other:?} (a file path, http(s)://, syslog+tcp|tls|udp:// or kafka[+tls]://)",
            sophos_tac::url::redact(o)
        ),
    })
}

impl Args {
    /// Resolves the flags into a [`Config`].
    pub fn into_config(self) -> anyhow::Result<Config> {
        Ok(match self.command {
            Command::Normalize(a) => Config::Normalize(Box::new(normalize(*a)?)),
            Command::Collect(a) => Config::Collect(a),
            Command::Fields(a) => Config::Fields(FieldsConfig {
                profile: profile(&a.profile)?,
                format: a.format,
                template: a.index_template.then(|| {
                    let mut t = TemplateOptions {
                        data_stream: a.data_stream,
                        ..TemplateOptions::default()
                    };
                    if !a.index_pattern.is_empty() {
                        t.index_patterns = a.index_pattern;
                    }
                    t
                }),
            }),
        })
    }
}

fn normalize(a: NormalizeArgs) -> anyhow::Result<NormalizeConfig> {
    let mut options = Options::default();
    if let Some(n) = a.threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        options.threads = n;
    }
    if a.block_bytes == 0 {
        bail!("--block-bytes must be at least 1");
    }
    options.block_bytes = a.block_bytes;
    if a.max_line_bytes == 0 {
        bail!("--max-line-bytes must be at least 1");
    }
    let profile = profile(&a.profile)?;
    let output = output(&a, &profile)?;
    // One file, one purpose: each is locked by the one writer that owns it.
    let files = [
        ("-o", output.path().map(PathBuf::from)),
        ("--rejects", a.rejects.clone()),
        ("--dead-letter", Some(a.dead_letter.clone())),
    ];
    for (i, (flag, path)) in files.iter().enumerate() {
        for (other, other_path) in &files[i + 1..] {
            if let (Some(p), Some(q)) = (path, other_path)
                && sophos_tac::sinks::canonical(p) == sophos_tac::sinks::canonical(q)
                && !p.starts_with("/dev/")
            {
                bail!(
                    "{}: {flag} and {other} name the same file; give each its own",
                    p.display()
                );
            }
        }
    }
    let mut inputs: Vec<Input> = a
        .files
        .into_iter()
        .map(|p| {
            if p.as_os_str() == "-" {
                Input::Stdin
            } else {
                Input::Path(p)
            }
        })
        .collect();
    if inputs.is_empty() {
        inputs.push(Input::Stdin);
    }
    let kafka_input = match &a.input {
        Some(url) => {
            let kafka = kafka_config(url, &a.ca_file, &a.kafka_property)?;
            if kafka.group.is_none() {
                bail!("{url}: give the consumer group, as in kafka://host:9092/TOPIC?group=NAME");
            }
            Some(kafka)
        }
        None => None,
    };
    Ok(NormalizeConfig {
        normalizer: Normalizer::new(profile).with_max_line_bytes(a.max_line_bytes),
        inputs,
        kafka_input,
        kafka_batch: {
            let mut batch = sophos_tac::sources::kafka::SourceOptions::default();
            batch.batch_messages = a.kafka_batch.max(1);
            batch.threads = options.threads;
            batch.in_flight = a.kafka_in_flight.into();
            batch
        },
        output,
        rejects: a.rejects,
        options,
        quiet: a.quiet,
        verbose: a.verbose,
        log_format: a.log_format,
        progress: a.progress,
    })
}
