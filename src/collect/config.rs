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
    /// Where documents go.
    pub output: OutputSection,
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
    /// The longest window one query covers, seconds.
    pub max_window_secs: u64,
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
            max_window_secs: 3_600,
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

/// `[output]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// `file` or `stdout`.
    #[serde(rename = "type")]
    pub kind: String,
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
        let file: ConfigFile = toml::from_str(&text)
            .map_err(|e| CollectError::Config(format!("{}: {e}", path.display())))?;
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
        let q = &file.query;
        if q.lookback_secs > 30 * 86_400 {
            return Err(CollectError::Config(
                "query.lookback_secs is at most 30 days (2592000)".into(),
            ));
        }
        if q.page_size == 0 || q.page_size > 2000 || q.max_window_secs == 0 {
            return Err(CollectError::Config(
                "query.page_size is 1 to 2000, and query.max_window_secs at least 1".into(),
            ));
        }
        if !matches!(file.output.kind.as_str(), "file" | "stdout")
            || (file.output.kind == "file" && file.output.path.is_none())
        {
            return Err(CollectError::Config(
                "output.type is \"file\" (with output.path) or \"stdout\"".into(),
            ));
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

    #[test]
    fn secret_is_never_shown() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
