//! The documented profile's table: `shared/spec/documented-profile.md`, row by row.

use super::{Convert as C, EcsType::*, Field, Source::*};

#[rustfmt::skip]
const fn key(name: &'static str, ecs_type: super::EcsType, from: &'static str, description: &'static str) -> Field {
    Field { name, ecs_type, array: false, description, source: Key(from, C::Text) }
}

/// The time keys, in the order they are tried.
pub(super) const TIME_KEYS: &[&str] = &[
    "calendar_time",
    "unix_time",
    "ioc_unix_time",
    "ingestion_timestamp",
];

#[rustfmt::skip]
pub(super) static FIELDS: &[Field] = &[
    Field { name: "message", ecs_type: Text, array: false, description: "The row's original JSON text, unchanged.", source: Original },
    Field { name: "event.kind", ecs_type: Keyword, array: false, description: "The kind of the event. The highest categorization field in the hierarchy.", source: Constant("event") },
    Field { name: "event.severity", ecs_type: Long, array: false, description: "Numeric severity of the event.", source: Key("ioc_severity", C::Integer) },
    key("event.reason", Keyword, "description", "Reason why this event happened, according to the source."),
    key("event.code", Keyword, "ioc_detection_id", "Identification code for this event."),
    Field { name: "@timestamp", ecs_type: Date, array: false, description: "Date/time when the event originated.", source: FirstTime(TIME_KEYS) },
    key("user.name", Keyword, "meta_username", "Short name or login of the user."),
    key("registry.path", Keyword, "path", "Full path, including hive, key and value."),
    key("registry.key", Keyword, "key", "Hive-relative path of keys."),
    key("registry.data.type", Keyword, "type", "Standard registry type for encoding contents."),
    Field { name: "registry.data.strings", ecs_type: Wildcard, array: true, description: "List of strings representing what was written to the registry.", source: Key("data", C::ListOrEmpty) },
    Field { name: "source.ip", ecs_type: Ip, array: false, description: "IP address of the source.", source: Key("meta_public_ip", C::IpAddress) },
    key("source.mac", Keyword, "meta_mac_address", "MAC address of the source."),
    key("source.geo.country_iso_code", Keyword, "meta_public_ip_country_code", "Country ISO code."),
    key("source.geo.postal_code", Keyword, "meta_public_ip_postal", "Postal code."),
    key("source.geo.city_name", Keyword, "meta_public_ip_city", "City name."),
    key("source.geo.country_name", Keyword, "meta_public_ip_country", "Country name."),
    key("source.address", Keyword, "meta_public_ip", "Source address, as the row gives it (kept even when it is not a valid IP)."),
    key("host.name", Keyword, "meta_hostname", "Name of the host."),
    key("host.id", Keyword, "host_identifier", "Unique host id."),
    key("host.os.name", Keyword, "meta_os_name", "Operating system name, without the version."),
    key("host.os.version", Keyword, "meta_os_version", "Operating system version as a raw string."),
    key("host.domain", Keyword, "subject_domain", "Name of the domain of which the host is a member."),
    Field { name: "vulnerability.reference", ecs_type: Keyword, array: false, description: "Reference of the vulnerability.", source: Key("ioc_detection_references", C::Strip2) },
    key("vulnerability.description", Keyword, "ioc_detection_description", "Description of the vulnerability."),
    key("sophos.threat_center.cvss", Keyword, "ioc_detection_cvss", "The Common Vulnerability Scoring System score."),
    key("sophos.threat_center.id", Keyword, "endpoint_id", "The identifier of the endpoint."),
    key("sophos.threat_center.detection_attack", Keyword, "ioc_detection_attack", "The attack name."),
    key("sophos.threat_center.query.source", Keyword, "query_source", "The query source."),
    key("sophos.threat_center.query.action", Keyword, "osquery_action", "The query action."),
    key("sophos.threat_center.query.pack_version", Keyword, "meta_query_pack_version", "The query pack version."),
    key("sophos.threat_center.query.name", Keyword, "query_name", "The query name."),
    key("sophos.threat_center.endpoint.type", Keyword, "meta_endpoint_type", "The type of the endpoint."),
    Field { name: "related.ip", ecs_type: Ip, array: true, description: "All of the IPs seen on the event.", source: Related(&["source.ip"]) },
    Field { name: "related.user", ecs_type: Keyword, array: true, description: "All the user names or other user identifiers seen on the event.", source: Related(&["user.name"]) },
];
