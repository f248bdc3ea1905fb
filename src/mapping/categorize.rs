//! ECS categorization (`event.category`, `event.type`, `event.outcome`) for the
//! extended profile, derived from the row, using only ECS allowed values.
//!
//! | the row                                                        | category            | type              | outcome |
//! |----------------------------------------------------------------|---------------------|-------------------|---------|
//! | `ioc_detection_type` is `Vulnerability`                        | `vulnerability`     | `info`            |         |
//! | Windows logon events (4624/4625/4648/4771/4776) or a logon query | `authentication`  | `start`           | `success` for 4624, `failure` for the others and for brute-force / invalid-logon queries |
//! | Windows account events (4720–4726, 4738, 4740, 4767, 4781) or a `user_account` query | `iam` | `user` + `creation`/`deletion`/`change` | |
//! | a registry key (`key`) outside a vulnerability row             | `registry`          | `change`          |         |
//! | a process (`process_name`, `process_cmd_line`, `cmdline`)      | `process`           | `info`            |         |
//! | a remote address                                               | `network`           | `connection`      |         |
//! | a file path (`ioc_event_path`)                                 | `file`              | `info`            |         |
//! | none of these                                                  | `intrusion_detection` | `info`          |         |
//!
//! Several rows of the table may apply; categories and types are listed once each,
//! in table order.

use std::borrow::Cow;

/// The row keys categorization reads.
pub const KEYS: &[&str] = &[
    "ioc_detection_type",
    "query_name",
    "eventid",
    "key",
    "process_name",
    "process_cmd_line",
    "cmdline",
    "remote_address",
    "ioc_event_path",
];

/// The result of categorizing one row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Categories {
    /// `event.category` values.
    pub category: Vec<&'static str>,
    /// `event.type` values.
    pub kind: Vec<&'static str>,
    /// `event.outcome`, when known.
    pub outcome: Option<&'static str>,
}

impl Categories {
    fn add(&mut self, category: &'static str, kinds: &[&'static str]) {
        if !self.category.contains(&category) {
            self.category.push(category);
        }
        for k in kinds {
            if !self.kind.contains(k) {
                self.kind.push(k);
            }
        }
    }
}

const LOGON_SUCCESS: &[i64] = &[4624];
const LOGON_FAILURE: &[i64] = &[4625, 4648, 4771, 4776];

/// Categorizes a row; `get` gives the text of one of [`KEYS`] (absent as `None`).
pub fn categorize<'a>(get: impl Fn(&str) -> Option<Cow<'a, str>>) -> Categories {
    let mut c = Categories::default();
    let query = get("query_name")
        .map(|q| q.to_ascii_lowercase())
        .unwrap_or_default();
    let event_id: Option<i64> = get("eventid").and_then(|e| e.parse().ok());
    let vulnerability =
        get("ioc_detection_type").is_some_and(|t| t.eq_ignore_ascii_case("vulnerability"));
    if vulnerability {
        c.add("vulnerability", &["info"]);
    }
    let logon_query = query.contains("logon") || query.contains("brute_force");
    if event_id.is_some_and(|e| LOGON_SUCCESS.contains(&e) || LOGON_FAILURE.contains(&e))
        || logon_query
    {
        c.add("authentication", &["start"]);
        let failed = event_id.is_some_and(|e| LOGON_FAILURE.contains(&e))
            || query.contains("invalid_logon")
            || query.contains("brute_force");
        c.outcome = if failed {
            Some("failure")
        } else if event_id.is_some_and(|e| LOGON_SUCCESS.contains(&e)) {
            Some("success")
        } else {
            None
        };
    }
    let account = match event_id {
        Some(4720) => Some("creation"),
        Some(4726) => Some("deletion"),
        Some(4722..=4725 | 4738 | 4740 | 4767 | 4781) => Some("change"),
        _ if query.contains("user_account") => Some("change"),
        _ => None,
    };
    if let Some(kind) = account {
        c.add("iam", &["user", kind]);
    }
    if !vulnerability && get("key").is_some() {
        c.add("registry", &["change"]);
    }
    if ["process_name", "process_cmd_line", "cmdline"]
        .iter()
        .any(|k| get(k).is_some())
    {
        c.add("process", &["info"]);
    }
    if get("remote_address").is_some() {
        c.add("network", &["connection"]);
    }
    if get("ioc_event_path").is_some() {
        c.add("file", &["info"]);
    }
    if c.category.is_empty() {
        c.add("intrusion_detection", &["info"]);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(pairs: &[(&str, &str)]) -> Categories {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        categorize(|k| {
            pairs
                .iter()
                .find(|(pk, _)| pk == k)
                .map(|(_, v)| Cow::Owned(v.clone()))
        })
    }

    #[test]
    fn logon_failure() {
        let c = cat(&[
            ("query_name", "windows_event_invalid_logon_brute_force"),
            ("eventid", "4625"),
            ("remote_address", "1.2.3.4"),
        ]);
        assert_eq!(c.category, ["authentication", "network"]);
        assert_eq!(c.kind, ["start", "connection"]);
        assert_eq!(c.outcome, Some("failure"));
    }

    #[test]
    fn logon_success_and_account_change() {
        assert_eq!(cat(&[("eventid", "4624")]).outcome, Some("success"));
        let c = cat(&[
            ("eventid", "4738"),
            ("query_name", "windows_event_user_account_changed"),
        ]);
        assert_eq!(
            (c.category, c.kind, c.outcome),
            (vec!["iam"], vec!["user", "change"], None)
        );
        assert_eq!(cat(&[("eventid", "4720")]).kind, ["user", "creation"]);
    }

    #[test]
    fn vulnerability_registry_process_file_fallback() {
        assert_eq!(
            cat(&[("ioc_detection_type", "Vulnerability"), ("key", "HKLM")]).category,
            ["vulnerability"]
        );
        assert_eq!(cat(&[("key", "HKLM\\Run")]).category, ["registry"]);
        assert_eq!(cat(&[("process_name", "bash")]).category, ["process"]);
        assert_eq!(cat(&[("ioc_event_path", "C:\\x.exe")]).category, ["file"]);
        let c = cat(&[]);
        assert_eq!(
            (c.category, c.kind),
            (vec!["intrusion_detection"], vec!["info"])
        );
    }
}
