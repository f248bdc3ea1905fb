//! Kafka, through librdkafka (the `rdkafka` crate, built from source): the settings
//! both ends share, read from a URL.
//!
//! ```text
//! kafka://host:9092[,host2:9092]/TOPIC[?group=NAME][&sasl=MECHANISM&user=NAME]
//! kafka+tls://host:9093/TOPIC                      (TLS; a CA file from --ca-file / ca_file)
//! ```
//!
//! `sasl` is `plain`, `scram-sha-256` or `scram-sha-512`; the password comes from an
//! environment variable (`SOPHOS_TAC_KAFKA_PASSWORD` for `normalize`, `password_env` for
//! `collect`), never from the URL: a URL with `user:password@` is refused. Other
//! librdkafka properties pass through as they are (`--kafka-property KEY=VALUE`, or the
//! `properties` table of an `[[output]]`), after the defaults, so they can replace them.
//!
//! The sink ([`crate::sinks::kafka`]) produces; the source ([`crate::sources::kafka`])
//! consumes in a consumer group.

use std::path::PathBuf;

use rdkafka::ClientConfig;

use crate::url::{Url, redact, refuse_credentials};

/// SASL authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct Sasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The user name.
    pub username: String,
    /// The password (from the environment).
    pub password: String,
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Where and how to reach a topic.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port`, comma-separated.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// The consumer group (for reading).
    pub group: Option<String>,
    /// TLS (`kafka+tls://`).
    pub tls: bool,
    /// A PEM file of CA certificates to trust (with TLS).
    pub ca_file: Option<PathBuf>,
    /// SASL, when asked for in the URL.
    pub sasl: Option<Sasl>,
    /// librdkafka properties, applied after the defaults.
    pub properties: Vec<(String, String)>,
}

/// True for a librdkafka property whose value is a secret (`sasl.password`,
/// `ssl.key.password`, `sasl.oauthbearer.client.secret`, …): shown as `***`.
pub fn secret_property(key: &str) -> bool {
    [
        "password",
        "secret",
        "sasl.jaas.config",
        "ssl.key.pem",
        "ssl_key",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// A property's value as it may be shown: `***` for a [secret one](secret_property).
pub fn shown_property<'a>(key: &str, value: &'a str) -> &'a str {
    if secret_property(key) { "***" } else { value }
}

/// Shows the settings with secret property values as `***` (the SASL password too).
impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), shown_property(k, v)))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("group", &self.group)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("sasl", &self.sasl)
            .field("properties", &properties)
            .finish()
    }
}

impl KafkaConfig {
    /// Reads a `kafka://` or `kafka+tls://` URL; `password` gives the SASL password
    /// when the URL asks for SASL.
    pub fn from_url(
        url: &str,
        password: impl FnOnce() -> Option<String>,
    ) -> Result<KafkaConfig, String> {
        refuse_credentials(url)?;
        let u = Url::parse(url)?;
        let tls = match u.scheme.to_ascii_lowercase().as_str() {
            "kafka" => false,
            "kafka+tls" => true,
            _ => return Err(format!("{url}: the scheme is kafka or kafka+tls")),
        };
        let (brokers, topic) = (u.authority, u.path);
        if topic.is_empty() || topic.contains('/') {
            return Err(format!(
                "{url}: give the brokers and one topic, as in kafka://host:9092,host2:9092/TOPIC"
            ));
        }
        let (mut group, mut mechanism, mut user) = (None, None, None);
        for (k, v) in u.query_pairs() {
            match k {
                "group" if !v.is_empty() => group = Some(v.to_string()),
                "sasl" => {
                    mechanism = Some(match v {
                        "plain" => "PLAIN",
                        "scram-sha-256" => "SCRAM-SHA-256",
                        "scram-sha-512" => "SCRAM-SHA-512",
                        _ => {
                            return Err(format!(
                                "{url}: sasl is plain, scram-sha-256 or scram-sha-512"
                            ));
                        }
                    })
                }
                "user" if !v.is_empty() => user = Some(v.to_string()),
                _ => {
                    return Err(format!(
                        "{url}: unknown parameter {k:?} (group, sasl and user are known)"
                    ));
                }
            }
        }
        let sasl = match (mechanism, user) {
            (None, None) => None,
            (Some(mechanism), Some(username)) => {
                let password = password()
                    .ok_or_else(|| format!("{url}: SASL needs a password, from the environment"))?;
                Some(Sasl {
                    mechanism: mechanism.to_string(),
                    username,
                    password,
                })
            }
            _ => return Err(format!("{url}: SASL needs both sasl= and user=")),
        };
        Ok(KafkaConfig {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            group,
            tls,
            ca_file: None,
            sasl,
            properties: Vec::new(),
        })
    }

    /// The URL again, for messages (no password is ever in it).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "kafka+tls" } else { "kafka" };
        redact(&format!("{scheme}://{}/{}", self.brokers, self.topic))
    }

    /// The client configuration: brokers, TLS, SASL, then `defaults`, then
    /// `properties` (which may replace any of them).
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        let protocol = match (self.tls, self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if let Some(ca) = &self.ca_file {
            c.set("ssl.ca.location", ca.display().to_string());
        }
        if let Some(s) = &self.sasl {
            c.set("sasl.mechanism", &s.mechanism)
                .set("sasl.username", &s.username)
                .set("sasl.password", &s.password);
        }
        // librdkafka applies the properties in no set order: a default whose alias the
        // user set is left out, so that the user's value is the one in force.
        let set_by_user = |key: &str| {
            self.properties
                .iter()
                .any(|(k, _)| k == key || alias(k) == Some(key))
        };
        for (k, v) in defaults {
            if !set_by_user(k) {
                c.set(*k, *v);
            }
        }
        // Of two aliases the user set, the one set last.
        for (i, (k, v)) in self.properties.iter().enumerate() {
            let later = self.properties[i + 1..]
                .iter()
                .any(|(l, _)| l == k || alias(l) == Some(k.as_str()));
            if !later {
                c.set(k, v);
            }
        }
        c
    }
}

/// The other name of a librdkafka property that has two.
pub fn alias(key: &str) -> Option<&'static str> {
    Some(match key {
        "message.timeout.ms" => "delivery.timeout.ms",
        "delivery.timeout.ms" => "message.timeout.ms",
        "acks" => "request.required.acks",
        "request.required.acks" => "acks",
        "linger.ms" => "queue.buffering.max.ms",
        "queue.buffering.max.ms" => "linger.ms",
        _ => return None,
    })
}

/// Parses `KEY=VALUE` (a `--kafka-property`).
pub fn property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?}: give KEY=VALUE, as in compression.type=lz4")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_brokers_topic_group_tls_and_sasl() {
        let c = KafkaConfig::from_url("kafka://a:9092,b:9092/raw?group=g", || None).unwrap();
        assert_eq!(
            (
                c.brokers.as_str(),
                c.topic.as_str(),
                c.group.as_deref(),
                c.tls
            ),
            ("a:9092,b:9092", "raw", Some("g"), false)
        );
        assert_eq!(c.url(), "kafka://a:9092,b:9092/raw");
        let c = KafkaConfig::from_url("kafka+tls://a:9093/ecs?sasl=scram-sha-512&user=u", || {
            Some("pw".into())
        })
        .unwrap();
        let sasl = c.sasl.clone().unwrap();
        assert_eq!(
            (sasl.mechanism.as_str(), sasl.username.as_str()),
            ("SCRAM-SHA-512", "u")
        );
        assert!(!format!("{c:?}").contains("pw"), "the password never shows");
        let cfg = c.client_config(&[("acks", "all")]);
        assert_eq!(cfg.get("acks"), Some("all"));
        assert_eq!(cfg.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(cfg.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(
            (cfg.get("sasl.username"), cfg.get("sasl.password")),
            (Some("u"), Some("pw"))
        );
        for bad in [
            "kafka://a:9092",
            "kafka:///t",
            "http://a/t",
            "kafka://a:9092/t?sasl=gssapi&user=u",
            "kafka://a:9092/t?sasl=plain",
            "kafka://a:9092/t?acks=0",
        ] {
            assert!(
                KafkaConfig::from_url(bad, || Some("x".into())).is_err(),
                "{bad}"
            );
        }
        let err = KafkaConfig::from_url("kafka://u:hunter2@a:9092/t", || None).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        let err = KafkaConfig::from_url("kafka://a:9092/t?sasl=plain&user=u", || None).unwrap_err();
        assert!(err.contains("password"), "{err}");
    }

    #[test]
    fn debug_shows_no_secret_property() {
        let mut c = KafkaConfig::from_url("kafka://b:9092/t", || None).unwrap();
        c.properties = vec![
            ("sasl.password".into(), "Hunter2-Kafka".into()),
            ("ssl.key.password".into(), "Key-Pass-9".into()),
            ("compression.type".into(), "lz4".into()),
        ];
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("Hunter2-Kafka") && !shown.contains("Key-Pass-9"),
            "{shown}"
        );
        assert!(shown.contains("lz4"), "{shown}");
    }

    #[test]
    fn a_user_alias_replaces_the_default_and_the_last_of_two_wins() {
        let mut c = KafkaConfig::from_url("kafka://b:9092/t", || None).unwrap();
        c.properties = vec![("delivery.timeout.ms".into(), "7000".into())];
        let config = c.client_config(&[("message.timeout.ms", "60000"), ("acks", "all")]);
        assert_eq!(config.get("message.timeout.ms"), None);
        assert_eq!(config.get("delivery.timeout.ms"), Some("7000"));
        assert_eq!(config.get("acks"), Some("all"));
        c.properties = vec![
            ("message.timeout.ms".into(), "5000".into()),
            ("delivery.timeout.ms".into(), "9000".into()),
        ];
        let config = c.client_config(&[]);
        assert_eq!(config.get("message.timeout.ms"), None);
        assert_eq!(config.get("delivery.timeout.ms"), Some("9000"));
    }

    #[test]
    fn properties_are_key_value() {
        assert_eq!(
            property("linger.ms=20"),
            Ok(("linger.ms".into(), "20".into()))
        );
        assert!(property("linger.ms").is_err());
        assert!(property("=1").is_err());
    }
}
