//! The SIEM profiles' tables: Sophos Central SIEM API alerts and events
//! (`shared/spec/siem-api.md`), with the field names of Elastic's `sophos_central`
//! integration.
//!
//! Every field Elastic's pipelines write is here under the same name and type,
//! `sophos_central.alert.*` / `sophos_central.event.*` included (with the copies Elastic
//! keeps only with its `preserve_duplicate_custom_fields` tag, so that nothing is lost
//! whichever way a user reads). Where Elastic's value is wrong (spec §4), the ECS field
//! holds the right one, and [`DIFFERENCES`] lists each such field; the page
//! `docs/siem-differences.md` is generated from it. Fields Elastic leaves out and ECS
//! has a place for (`host.*`, `event.severity`, …) are added.

use super::{Convert as C, EcsType::*, Field, Gate, Source, Source::*};

#[rustfmt::skip]
const fn f(name: &'static str, ecs_type: super::EcsType, source: Source, description: &'static str) -> Field {
    Field { name, ecs_type, array: false, description, source }
}

#[rustfmt::skip]
const fn list(name: &'static str, ecs_type: super::EcsType, source: Source, description: &'static str) -> Field {
    Field { name, ecs_type, array: true, description, source }
}

#[rustfmt::skip]
const fn text(name: &'static str, key: &'static str, description: &'static str) -> Field {
    f(name, Keyword, Key(key, C::Text), description)
}

/// An inbound detection: the remote end of the traffic is its origin.
const INBOUND: Gate = Gate::Contains(&["type"], "inbound");

/// The alert's IPS data.
const A_IPS: &str = "data";
/// The alert's `raw_data` text, under `data`.
const A_RAW: &[&str] = &["ips_threat", "raw_data"];
/// The event's `rawData` text, under `ips_threat_data`.
const E_RAW: &[&str] = &["rawData"];

/// The Sophos Central SIEM API alert profile (`siem-alert`).
#[rustfmt::skip]
pub(super) static ALERT: &[Field] = &[
    f("@timestamp", Date, FirstTime(&["when", "created_at"]), "Time of the alert on the endpoint (`when`), else when Sophos Central received it."),
    f("event.original", Stored, Original, "The item as the API served it, unchanged."),
    f("event.kind", Keyword, Constant("alert"), "The kind of the event: an alert."),
    list("event.category", Keyword, Constant("host"), "ECS event category (as Elastic writes it)."),
    list("event.type", Keyword, Constant("info"), "ECS event type (as Elastic writes it)."),
    f("event.dataset", Keyword, Constant("sophos_central.alert"), "The data set: Elastic's `sophos_central.alert`."),
    text("event.code", "type", "The alert type, e.g. `Event::Endpoint::Threat::PuaCleanupFailed`."),
    text("event.id", "id", "The alert's id."),
    f("event.created", Date, Key("created_at", C::Time), "When Sophos Central received the alert."),
    f("event.severity", Long, Key("severity", C::Severity), "Severity as a number: none 0, low 21, medium 47, high 73, critical 99."),
    f("message", Text, Key("description", C::Text), "The alert's description."),
    text("organization.id", "customer_id", "The tenant's id."),
    f("user.name", Keyword, Key("source", C::UserOf), "The user, from `DOMAIN\\user`."),
    f("user.domain", Keyword, Key("source", C::DomainOf), "The user's domain, from `DOMAIN\\user`."),
    text("host.name", "location", "The endpoint's name."),
    f("host.id", Keyword, Nested(A_IPS, &["endpoint_id"], C::Text), "The endpoint's id."),
    f("host.type", Keyword, Nested(A_IPS, &["endpoint_type"], C::Text), "The endpoint's type (computer, server)."),
    f("host.os.type", Keyword, Nested(A_IPS, &["endpoint_platform"], C::OsType), "Operating system family: windows, linux or macos."),
    list("host.ip", Ip, Nested(A_IPS, &["source_info", "ip"], C::IpAddress), "The endpoint's address."),
    f("source.ip", Ip, Either(INBOUND, &Nested(A_IPS, &["ips_threat", "remote_ip"], C::IpAddress), &Labelled(A_IPS, A_RAW, "Local IP:", C::IpAddress)), "Origin of the traffic: the remote end of an inbound detection, else the endpoint's address on that interface."),
    f("source.port", Long, Either(INBOUND, &Nested(A_IPS, &["ips_threat", "remote_port"], C::Port), &Nested(A_IPS, &["ips_threat", "local_port"], C::Port)), "Port at the origin of the traffic."),
    f("destination.ip", Ip, Either(INBOUND, &Labelled(A_IPS, A_RAW, "Local IP:", C::IpAddress), &Nested(A_IPS, &["ips_threat", "remote_ip"], C::IpAddress)), "Target of the traffic: the endpoint for an inbound detection, else the remote end."),
    f("destination.port", Long, Either(INBOUND, &Nested(A_IPS, &["ips_threat", "local_port"], C::Port), &Nested(A_IPS, &["ips_threat", "remote_port"], C::Port)), "Port at the target of the traffic."),
    f("process.name", Keyword, Either(Gate::Present(A_IPS, &["hmpa_exploit"]), &Nested(A_IPS, &["hmpa_exploit", "process_name"], C::Text), &Nested(A_IPS, &["ips_threat", "executable_name"], C::Text)), "The process: the exploited one when there is an exploit, else the one the IPS names."),
    f("process.pid", Long, Either(Gate::Present(A_IPS, &["hmpa_exploit"]), &Nested(A_IPS, &["hmpa_exploit", "process_pid"], C::Integer), &Nested(A_IPS, &["ips_threat", "executable_pid"], C::Integer)), "The same process's id."),
    f("process.executable", Keyword, Either(Gate::Present(A_IPS, &["hmpa_exploit"]), &Nested(A_IPS, &["hmpa_exploit", "process_path"], C::Text), &Nested(A_IPS, &["ips_threat", "executable_path"], C::Text)), "The same process's path."),
    f("sophos_central.alert.created_at", Date, Key("created_at", C::Time), "When Sophos Central received the alert."),
    text("sophos_central.alert.customer_id", "customer_id", "The tenant's id."),
    text("sophos_central.alert.description", "description", "The alert's description."),
    text("sophos_central.alert.event_service_event_id", "event_service_event_id", "The id of the event this alert is for."),
    text("sophos_central.alert.id", "id", "The alert's id."),
    text("sophos_central.alert.location", "location", "The endpoint's name."),
    text("sophos_central.alert.severity", "severity", "The severity word (low, medium, high…)."),
    text("sophos_central.alert.source.original", "source", "The user as given (`DOMAIN\\user`)."),
    f("sophos_central.alert.source.domain.name", Keyword, Key("source", C::DomainOf), "The user's domain."),
    f("sophos_central.alert.source.user.name", Keyword, Key("source", C::UserOf), "The user's name."),
    text("sophos_central.alert.threat.value", "threat", "The threat's name."),
    f("sophos_central.alert.threat.cleanable", Boolean, Key("threat_cleanable", C::Bool), "Whether the threat can be cleaned up."),
    text("sophos_central.alert.type", "type", "The alert type."),
    f("sophos_central.alert.when", Date, Key("when", C::Time), "Time of the alert on the endpoint."),
    f("sophos_central.alert.data.app_id", Keyword, Nested(A_IPS, &["app_id"], C::Text), "The application that raised the alert."),
    f("sophos_central.alert.data.source_app_id", Keyword, Nested(A_IPS, &["source_app_id"], C::Text), "The source application."),
    f("sophos_central.alert.data.threat_status", Keyword, Nested(A_IPS, &["threat_status"], C::Text), "The threat's status."),
    f("sophos_central.alert.data.policy_type", Long, Nested(A_IPS, &["policy_type"], C::Integer), "The policy type."),
    list("sophos_central.alert.data.core_remedy.items", Object, Nested(A_IPS, &["core_remedy_items", "items"], C::SnakeCaseObjects), "Remedied items, keys in snake_case."),
    f("sophos_central.alert.data.core_remedy.total_items", Long, Nested(A_IPS, &["core_remedy_items", "totalItems"], C::Integer), "How many items were remedied."),
    list("sophos_central.alert.data.certificates", Object, Nested(A_IPS, &["certificates"], C::Json), "Certificates."),
    f("sophos_central.alert.data.created_at", Date, Nested(A_IPS, &["created_at"], C::Time), "Creation time (epoch milliseconds in the item)."),
    f("sophos_central.alert.data.inserted_at", Date, Nested(A_IPS, &["inserted_at"], C::Time), "Insertion time (epoch milliseconds in the item)."),
    f("sophos_central.alert.data.make_actionable_at", Date, Nested(A_IPS, &["make_actionable_at"], C::Time), "When the alert becomes actionable."),
    f("sophos_central.alert.data.endpoint.id", Keyword, Nested(A_IPS, &["endpoint_id"], C::Text), "The endpoint's id."),
    f("sophos_central.alert.data.endpoint.java_id", Keyword, Nested(A_IPS, &["endpoint_java_id"], C::Text), "The endpoint's Java id."),
    f("sophos_central.alert.data.endpoint.platform", Keyword, Nested(A_IPS, &["endpoint_platform"], C::Text), "The endpoint's platform."),
    f("sophos_central.alert.data.endpoint.type", Keyword, Nested(A_IPS, &["endpoint_type"], C::Text), "The endpoint's type."),
    f("sophos_central.alert.data.event_service_id.data", Keyword, Nested(A_IPS, &["event_service_id", "data"], C::Text), "The event service id (base64)."),
    f("sophos_central.alert.data.event_service_id.type", Long, Nested(A_IPS, &["event_service_id", "type"], C::Integer), "The event service id's type."),
    f("sophos_central.alert.data.user_match_uuid.data", Keyword, Nested(A_IPS, &["user_match_uuid", "data"], C::Text), "The user match UUID (base64)."),
    f("sophos_central.alert.data.user_match_uuid.type", Long, Nested(A_IPS, &["user_match_uuid", "type"], C::Integer), "The user match UUID's type."),
    f("sophos_central.alert.data.hmpa_exploit.family_id", Keyword, Nested(A_IPS, &["hmpa_exploit", "family_id"], C::Text), "The exploit family."),
    f("sophos_central.alert.data.hmpa_exploit.process_name", Keyword, Nested(A_IPS, &["hmpa_exploit", "process_name"], C::Text), "The exploited process's name."),
    f("sophos_central.alert.data.hmpa_exploit.process_path", Keyword, Nested(A_IPS, &["hmpa_exploit", "process_path"], C::Text), "The exploited process's path."),
    f("sophos_central.alert.data.hmpa_exploit.process_pid", Long, Nested(A_IPS, &["hmpa_exploit", "process_pid"], C::Integer), "The exploited process's id."),
    f("sophos_central.alert.data.hmpa_exploit.process_version", Keyword, Nested(A_IPS, &["hmpa_exploit", "process_version"], C::Text), "The exploited process's version."),
    f("sophos_central.alert.data.hmpa_exploit.thumbprint", Keyword, Nested(A_IPS, &["hmpa_exploit", "thumbprint"], C::Text), "The exploit's thumbprint."),
    f("sophos_central.alert.data.hmpa_exploit.type", Keyword, Nested(A_IPS, &["hmpa_exploit", "type"], C::Text), "The exploit type (CryptoGuard…)."),
    f("sophos_central.alert.data.hmpa_exploit.uid", Keyword, Nested(A_IPS, &["hmpa_exploit", "uid"], C::Text), "The exploit's id."),
    f("sophos_central.alert.data.hmpa_exploit.version", Keyword, Nested(A_IPS, &["hmpa_exploit", "version"], C::Text), "The exploit's version."),
    f("sophos_central.alert.data.ips_threat.detection_type", Long, Nested(A_IPS, &["ips_threat", "detection_type"], C::Integer), "The IPS detection type."),
    f("sophos_central.alert.data.ips_threat.executable.name", Keyword, Nested(A_IPS, &["ips_threat", "executable_name"], C::Text), "The IPS executable's name."),
    f("sophos_central.alert.data.ips_threat.executable.path", Keyword, Nested(A_IPS, &["ips_threat", "executable_path"], C::Text), "The IPS executable's path."),
    f("sophos_central.alert.data.ips_threat.executable.pid", Keyword, Nested(A_IPS, &["ips_threat", "executable_pid"], C::Text), "The IPS executable's process id (a string, as Elastic keeps it)."),
    f("sophos_central.alert.data.ips_threat.executable.version", Keyword, Nested(A_IPS, &["ips_threat", "executable_version"], C::Text), "The IPS executable's version."),
    f("sophos_central.alert.data.ips_threat.local_port", Long, Nested(A_IPS, &["ips_threat", "local_port"], C::Port), "The endpoint's port."),
    f("sophos_central.alert.data.ips_threat.remote.ip", Ip, Nested(A_IPS, &["ips_threat", "remote_ip"], C::IpAddress), "The remote end's address."),
    f("sophos_central.alert.data.ips_threat.remote.port", Long, Nested(A_IPS, &["ips_threat", "remote_port"], C::Port), "The remote end's port."),
    f("sophos_central.alert.data.ips_threat.tech_support_id", Keyword, Nested(A_IPS, &["ips_threat", "tech_support_id"], C::Text), "The technical support reference."),
    f("sophos_central.alert.data.ips_threat.raw_data.original", Keyword, Nested(A_IPS, A_RAW, C::Text), "The IPS report as text."),
    f("sophos_central.alert.data.ips_threat.raw_data.message", Keyword, Labelled(A_IPS, A_RAW, "Message", C::Text), "The report's `Message` line (the whole text when it has no labelled line)."),
    f("sophos_central.alert.data.ips_threat.raw_data.reference", Keyword, Labelled(A_IPS, A_RAW, "Reference", C::Text), "The report's `Reference`."),
    f("sophos_central.alert.data.ips_threat.raw_data.packet_type", Keyword, Labelled(A_IPS, A_RAW, "Packet type", C::Text), "The report's `Packet type`."),
    f("sophos_central.alert.data.ips_threat.raw_data.local.ip", Ip, Labelled(A_IPS, A_RAW, "Local IP:", C::IpAddress), "The report's `Local IP`."),
    f("sophos_central.alert.data.ips_threat.raw_data.local.port", Long, Labelled(A_IPS, A_RAW, "Local Port:", C::Port), "The report's `Local Port`."),
    f("sophos_central.alert.data.ips_threat.raw_data.local.mac", Keyword, Labelled(A_IPS, A_RAW, "Local MAC:", C::Mac), "The report's `Local MAC`, as `AA-BB-…`."),
    f("sophos_central.alert.data.ips_threat.raw_data.remote.ip", Ip, Labelled(A_IPS, A_RAW, "Remote IP:", C::IpAddress), "The report's `Remote IP`."),
    f("sophos_central.alert.data.ips_threat.raw_data.remote.port", Long, Labelled(A_IPS, A_RAW, "Remote Port:", C::Port), "The report's `Remote Port`."),
    f("sophos_central.alert.data.ips_threat.raw_data.remote.mac", Keyword, Labelled(A_IPS, A_RAW, "Remote MAC:", C::Mac), "The report's `Remote MAC`, as `AA-BB-…`."),
    f("sophos_central.alert.data.ips_threat.raw_data.pid", Keyword, Labelled(A_IPS, A_RAW, "PID:", C::Text), "The report's `PID`."),
    f("sophos_central.alert.data.ips_threat.raw_data.executable", Keyword, Labelled(A_IPS, A_RAW, "Executable:", C::Text), "The report's `Executable`."),
    f("sophos_central.alert.data.ips_threat.raw_data.version", Keyword, Labelled(A_IPS, A_RAW, "Version:", C::Text), "The report's `Version`."),
    f("sophos_central.alert.data.ips_threat.raw_data.signer", Keyword, Labelled(A_IPS, A_RAW, "Signer:", C::Text), "The report's `Signer`."),
    f("sophos_central.alert.data.ips_threat.raw_data.sha_256", Keyword, Labelled(A_IPS, A_RAW, "SHA-256:", C::Text), "The report's `SHA-256`."),
    f("sophos_central.alert.data.source_info_ip", Ip, Nested(A_IPS, &["source_info", "ip"], C::IpAddress), "The endpoint's address."),
    f("sophos_central.alert.data.threat_id.counter", Long, Nested(A_IPS, &["threat_id", "counter"], C::Integer), "The threat id's counter."),
    f("sophos_central.alert.data.threat_id.date", Date, Nested(A_IPS, &["threat_id", "date"], C::Time), "The threat id's time."),
    f("sophos_central.alert.data.threat_id.machine_identifier", Long, Nested(A_IPS, &["threat_id", "machineIdentifier"], C::Integer), "The threat id's machine part."),
    f("sophos_central.alert.data.threat_id.process_identifier", Long, Nested(A_IPS, &["threat_id", "processIdentifier"], C::Integer), "The threat id's process part."),
    f("sophos_central.alert.data.threat_id.time", Date, Nested(A_IPS, &["threat_id", "time"], C::Time), "The threat id's time."),
    f("sophos_central.alert.data.threat_id.time_sec", Date, Nested(A_IPS, &["threat_id", "timeSecond"], C::Time), "The threat id's time (seconds in the item)."),
    f("sophos_central.alert.data.threat_id.timestamp", Date, Nested(A_IPS, &["threat_id", "timestamp"], C::Time), "The threat id's time (seconds in the item)."),
    f("sophos_central.alert.data.user_match_id.counter", Long, Nested(A_IPS, &["user_match_id", "counter"], C::Integer), "The user match id's counter."),
    f("sophos_central.alert.data.user_match_id.date", Date, Nested(A_IPS, &["user_match_id", "date"], C::Time), "The user match id's time."),
    f("sophos_central.alert.data.user_match_id.machine_identifier", Long, Nested(A_IPS, &["user_match_id", "machineIdentifier"], C::Integer), "The user match id's machine part."),
    f("sophos_central.alert.data.user_match_id.process_identifier", Long, Nested(A_IPS, &["user_match_id", "processIdentifier"], C::Integer), "The user match id's process part."),
    f("sophos_central.alert.data.user_match_id.time", Date, Nested(A_IPS, &["user_match_id", "time"], C::Time), "The user match id's time."),
    f("sophos_central.alert.data.user_match_id.time_sec", Date, Nested(A_IPS, &["user_match_id", "timeSecond"], C::Time), "The user match id's time (seconds in the item)."),
    f("sophos_central.alert.data.user_match_id.timestamp", Date, Nested(A_IPS, &["user_match_id", "timestamp"], C::Time), "The user match id's time (seconds in the item)."),
    list("related.ip", Ip, Related(&["source.ip", "destination.ip", "host.ip"]), "All of the IPs seen on the alert."),
    list("related.user", Keyword, Related(&["user.name"]), "All the user names seen on the alert."),
    list("related.hash", Keyword, Related(&["sophos_central.alert.data.ips_threat.raw_data.sha_256"]), "All the hashes seen on the alert."),
];

/// The Sophos Central SIEM API event profile (`siem-event`).
#[rustfmt::skip]
pub(super) static EVENT: &[Field] = &[
    f("@timestamp", Date, FirstTime(&["when", "created_at"]), "Time of the event on the endpoint (`when`), else when Sophos Central received it."),
    f("event.original", Stored, Original, "The item as the API served it, unchanged."),
    f("event.kind", Keyword, Constant("event"), "The kind of the event."),
    list("event.category", Keyword, Constant("host"), "ECS event category (as Elastic writes it)."),
    list("event.type", Keyword, Constant("info"), "ECS event type (as Elastic writes it)."),
    f("event.dataset", Keyword, Constant("sophos_central.event"), "The data set: Elastic's `sophos_central.event`."),
    text("event.code", "type", "The event type, e.g. `Event::Endpoint::Threat::Detected`."),
    text("event.id", "id", "The event's id."),
    f("event.created", Date, Key("created_at", C::Time), "When Sophos Central received the event."),
    f("event.severity", Long, Key("severity", C::Severity), "Severity as a number: none 0, low 21, medium 47, high 73, critical 99."),
    f("message", Text, Key("name", C::Text), "What happened, as a sentence (the event's `name`)."),
    text("organization.id", "customer_id", "The tenant's id."),
    text("user.id", "user_id", "The user's id."),
    f("user.name", Keyword, Key("source", C::UserOf), "The user, from `DOMAIN\\user`."),
    f("user.domain", Keyword, Key("source", C::DomainOf), "The user's domain, from `DOMAIN\\user`."),
    text("host.name", "location", "The endpoint's name."),
    text("host.id", "endpoint_id", "The endpoint's id."),
    text("host.type", "endpoint_type", "The endpoint's type (computer, server)."),
    list("host.ip", Ip, Nested("source_info", &["ip"], C::IpAddress), "The endpoint's address."),
    f("source.ip", Ip, Either(INBOUND, &Nested("ips_threat_data", &["remoteIp"], C::IpAddress), &Labelled("ips_threat_data", E_RAW, "Local IP:", C::IpAddress)), "Origin of the traffic: the remote end of an inbound detection, else the endpoint's address on that interface."),
    f("source.port", Long, Either(INBOUND, &Nested("ips_threat_data", &["remotePort"], C::Port), &Nested("ips_threat_data", &["localPort"], C::Port)), "Port at the origin of the traffic."),
    f("destination.ip", Ip, Either(INBOUND, &Labelled("ips_threat_data", E_RAW, "Local IP:", C::IpAddress), &Nested("ips_threat_data", &["remoteIp"], C::IpAddress)), "Target of the traffic: the endpoint for an inbound detection, else the remote end."),
    f("destination.port", Long, Either(INBOUND, &Nested("ips_threat_data", &["localPort"], C::Port), &Nested("ips_threat_data", &["remotePort"], C::Port)), "Port at the target of the traffic."),
    f("process.name", Keyword, Either(Gate::Present("amsi_threat_data", &[]), &Nested("amsi_threat_data", &["processName"], C::Text), &Nested("ips_threat_data", &["executableName"], C::Text)), "The process: the one AMSI names when there is one, else the one the IPS names."),
    f("process.pid", Long, Either(Gate::Present("amsi_threat_data", &[]), &Nested("amsi_threat_data", &["processId"], C::Integer), &Nested("ips_threat_data", &["executablePid"], C::Integer)), "The same process's id."),
    f("process.executable", Keyword, Either(Gate::Present("amsi_threat_data", &[]), &Nested("amsi_threat_data", &["processPath"], C::Text), &Nested("ips_threat_data", &["executablePath"], C::Text)), "The same process's path."),
    f("process.parent.executable", Keyword, Nested("amsi_threat_data", &["parentProcessPath"], C::Text), "The AMSI process's parent's path."),
    text("process.hash.sha256", "appSha256", "SHA-256 of the application."),
    f("sophos_central.event.amsi_threat_data.parent_process.id", Keyword, Nested("amsi_threat_data", &["parentProcessId"], C::Text), "The AMSI parent process's id."),
    f("sophos_central.event.amsi_threat_data.parent_process.path", Keyword, Nested("amsi_threat_data", &["parentProcessPath"], C::Text), "The AMSI parent process's path."),
    f("sophos_central.event.amsi_threat_data.process.id", Keyword, Nested("amsi_threat_data", &["processId"], C::Text), "The AMSI process's id."),
    f("sophos_central.event.amsi_threat_data.process.name", Keyword, Nested("amsi_threat_data", &["processName"], C::Text), "The AMSI process's name."),
    f("sophos_central.event.amsi_threat_data.process.path", Keyword, Nested("amsi_threat_data", &["processPath"], C::Text), "The AMSI process's path."),
    list("sophos_central.event.app_certs", Object, Key("appCerts", C::Json), "The application's certificates."),
    text("sophos_central.event.app_sha256", "appSha256", "SHA-256 of the application."),
    list("sophos_central.event.core_remedy.items", Object, Nested("core_remedy_items", &["items"], C::SnakeCaseObjects), "Remedied items, keys in snake_case."),
    f("sophos_central.event.core_remedy.total_items", Long, Nested("core_remedy_items", &["totalItems"], C::Integer), "How many items were remedied."),
    f("sophos_central.event.created_at", Date, Key("created_at", C::Time), "When Sophos Central received the event."),
    text("sophos_central.event.customer_id", "customer_id", "The tenant's id."),
    text("sophos_central.event.endpoint.id", "endpoint_id", "The endpoint's id."),
    text("sophos_central.event.endpoint.type", "endpoint_type", "The endpoint's type."),
    text("sophos_central.event.group", "group", "The event group (PROTECTION, MALWARE, UPDATING…)."),
    text("sophos_central.event.id", "id", "The event's id."),
    f("sophos_central.event.ips_threat_data.detection_type", Long, Nested("ips_threat_data", &["detectionType"], C::Integer), "The IPS detection type."),
    f("sophos_central.event.ips_threat_data.executable.name", Keyword, Nested("ips_threat_data", &["executableName"], C::Text), "The IPS executable's name."),
    f("sophos_central.event.ips_threat_data.executable.path", Keyword, Nested("ips_threat_data", &["executablePath"], C::Text), "The IPS executable's path."),
    f("sophos_central.event.ips_threat_data.executable.pid", Long, Nested("ips_threat_data", &["executablePid"], C::Integer), "The IPS executable's process id."),
    f("sophos_central.event.ips_threat_data.executable.version", Keyword, Nested("ips_threat_data", &["executableVersion"], C::Text), "The IPS executable's version."),
    f("sophos_central.event.ips_threat_data.local_port", Long, Nested("ips_threat_data", &["localPort"], C::Port), "The endpoint's port."),
    f("sophos_central.event.ips_threat_data.remote.ip", Ip, Nested("ips_threat_data", &["remoteIp"], C::IpAddress), "The remote end's address."),
    f("sophos_central.event.ips_threat_data.remote.port", Long, Nested("ips_threat_data", &["remotePort"], C::Port), "The remote end's port."),
    f("sophos_central.event.ips_threat_data.tech_support_id", Keyword, Nested("ips_threat_data", &["techSupportId"], C::Text), "The technical support reference."),
    f("sophos_central.event.ips_threat_data.raw_data.original", Keyword, Nested("ips_threat_data", E_RAW, C::Text), "The IPS report as text."),
    f("sophos_central.event.ips_threat_data.raw_data.message", Keyword, Labelled("ips_threat_data", E_RAW, "Message", C::Text), "The report's `Message` line (the whole text when it has no labelled line)."),
    f("sophos_central.event.ips_threat_data.raw_data.reference", Keyword, Labelled("ips_threat_data", E_RAW, "Reference", C::Text), "The report's `Reference`."),
    f("sophos_central.event.ips_threat_data.raw_data.packet_type", Keyword, Labelled("ips_threat_data", E_RAW, "Packet type", C::Text), "The report's `Packet type`."),
    f("sophos_central.event.ips_threat_data.raw_data.local.ip", Ip, Labelled("ips_threat_data", E_RAW, "Local IP:", C::IpAddress), "The report's `Local IP`."),
    f("sophos_central.event.ips_threat_data.raw_data.local.port", Long, Labelled("ips_threat_data", E_RAW, "Local Port:", C::Port), "The report's `Local Port`."),
    f("sophos_central.event.ips_threat_data.raw_data.local.mac", Keyword, Labelled("ips_threat_data", E_RAW, "Local MAC:", C::Mac), "The report's `Local MAC`, as `AA-BB-…`."),
    f("sophos_central.event.ips_threat_data.raw_data.remote.ip", Ip, Labelled("ips_threat_data", E_RAW, "Remote IP:", C::IpAddress), "The report's `Remote IP`."),
    f("sophos_central.event.ips_threat_data.raw_data.remote.port", Long, Labelled("ips_threat_data", E_RAW, "Remote Port:", C::Port), "The report's `Remote Port`."),
    f("sophos_central.event.ips_threat_data.raw_data.remote.mac", Keyword, Labelled("ips_threat_data", E_RAW, "Remote MAC:", C::Mac), "The report's `Remote MAC`, as `AA-BB-…`."),
    f("sophos_central.event.ips_threat_data.raw_data.pid", Keyword, Labelled("ips_threat_data", E_RAW, "PID:", C::Text), "The report's `PID`."),
    f("sophos_central.event.ips_threat_data.raw_data.executable", Keyword, Labelled("ips_threat_data", E_RAW, "Executable:", C::Text), "The report's `Executable`."),
    f("sophos_central.event.ips_threat_data.raw_data.version", Keyword, Labelled("ips_threat_data", E_RAW, "Version:", C::Text), "The report's `Version`."),
    f("sophos_central.event.ips_threat_data.raw_data.signer", Keyword, Labelled("ips_threat_data", E_RAW, "Signer:", C::Text), "The report's `Signer`."),
    f("sophos_central.event.ips_threat_data.raw_data.sha_256", Keyword, Labelled("ips_threat_data", E_RAW, "SHA-256:", C::Text), "The report's `SHA-256`."),
    text("sophos_central.event.location", "location", "The endpoint's name."),
    text("sophos_central.event.name", "name", "What happened, as a sentence."),
    text("sophos_central.event.origin", "origin", "The origin of the detection (BLOCKLISTED…)."),
    text("sophos_central.event.severity", "severity", "The severity word (low, medium, high…)."),
    text("sophos_central.event.source.original", "source", "The user as given (`DOMAIN\\user`)."),
    f("sophos_central.event.source.domain.name", Keyword, Key("source", C::DomainOf), "The user's domain."),
    f("sophos_central.event.source.user.name", Keyword, Key("source", C::UserOf), "The user's name."),
    f("sophos_central.event.source_info.ip", Ip, Nested("source_info", &["ip"], C::IpAddress), "The endpoint's address."),
    text("sophos_central.event.threat", "threat", "The threat's name."),
    text("sophos_central.event.type", "type", "The event type."),
    text("sophos_central.event.user_id", "user_id", "The user's id."),
    f("sophos_central.event.when", Date, Key("when", C::Time), "Time of the event on the endpoint."),
    list("related.ip", Ip, Related(&["source.ip", "destination.ip", "host.ip"]), "All of the IPs seen on the event."),
    list("related.user", Keyword, Related(&["user.name"]), "All the user names seen on the event."),
    list("related.hash", Keyword, Related(&["process.hash.sha256", "sophos_central.event.ips_threat_data.raw_data.sha_256"]), "All the hashes seen on the event."),
];

/// A field whose value deliberately differs from what Elastic's pipeline writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Difference {
    /// The profile (`siem-alert` or `siem-event`).
    pub profile: &'static str,
    /// The fields concerned.
    pub fields: &'static [&'static str],
    /// What Elastic writes there.
    pub elastic: &'static str,
    /// What we write, and why (with the spec's section).
    pub ours: &'static str,
}

/// Every deliberate difference from Elastic's output; `docs/siem-differences.md` is
/// generated from this table and a test checks every other field against Elastic's
/// expected documents.
#[rustfmt::skip]
pub static DIFFERENCES: &[Difference] = &[
    Difference { profile: "siem-alert", fields: &["process.executable"],
        elastic: "`data.ips_threat.executable_name`: the *name* of the IPS process, while `process.name` and `process.pid` come from the exploited process (`hmpa_exploit`).",
        ours: "The path of the same process as `process.name` and `process.pid`: `hmpa_exploit.process_path` when there is an exploit, else `ips_threat.executable_path` (§4.2)." },
    Difference { profile: "siem-alert", fields: &["source.ip"],
        elastic: "`data.source_info.ip`, the endpoint's own address.",
        ours: "The origin of the traffic: the IPS remote end for an inbound detection, else the endpoint's address on that interface (the report's `Local IP`). The endpoint's address is `host.ip` (§4.4)." },
    Difference { profile: "siem-alert", fields: &["destination.ip", "destination.port"],
        elastic: "Always the IPS remote end.",
        ours: "The target of the traffic: the endpoint (`Local IP`, `local_port`) for an inbound detection, else the remote end (§4.4)." },
    Difference { profile: "siem-alert", fields: &[
            "sophos_central.alert.data.created_at", "sophos_central.alert.data.inserted_at", "sophos_central.alert.data.make_actionable_at",
            "sophos_central.alert.data.threat_id.date", "sophos_central.alert.data.threat_id.time", "sophos_central.alert.data.threat_id.time_sec", "sophos_central.alert.data.threat_id.timestamp",
            "sophos_central.alert.data.user_match_id.date", "sophos_central.alert.data.user_match_id.time", "sophos_central.alert.data.user_match_id.time_sec", "sophos_central.alert.data.user_match_id.timestamp"],
        elastic: "Before package 1.3.0: `<year of the run>-01-01T00:00:00.<ms>`, whatever the epoch value (the activity test's expected file still shows it).",
        ours: "The instant the epoch value means, seconds or milliseconds, as Elastic writes since 1.3.0 (§4.1)." },
    Difference { profile: "siem-alert", fields: &["related.ip"],
        elastic: "`source.ip` and `destination.ip` only (the endpoint's address and the IPS remote end).",
        ours: "Every address the alert names: `source.ip`, `destination.ip` and `host.ip`, so the report's `Local IP` too (§4.11)." },
    Difference { profile: "siem-event", fields: &["related.ip"],
        elastic: "`source.ip` and `destination.ip` only (the endpoint's address and the IPS remote end).",
        ours: "Every address the event names: `source.ip`, `destination.ip` and `host.ip`, so the report's `Local IP` too (§4.11)." },
    Difference { profile: "siem-alert", fields: &["sophos_central.alert.data.ips_threat.raw_data.message"],
        elastic: "For a report in none of its three grok forms (14, 9 or 8 labelled lines in that order), the whole text, and no other `raw_data` field.",
        ours: "Each labelled line read by its label, whatever the form: the `Message` line, and the other fields filled; a text with no label at all is kept whole, as Elastic does (§3.4)." },
    Difference { profile: "siem-alert", fields: &["destination.port", "sophos_central.alert.data.ips_threat.local_port", "sophos_central.alert.data.ips_threat.remote.port"],
        elastic: "Any integer, as a long (`-1` or `70000` too).",
        ours: "A port, 0 to 65535; anything else is left out with a warning." },
    Difference { profile: "siem-event", fields: &["related.hash"],
        elastic: "Only the SHA-256 parsed from the IPS report.",
        ours: "That, and the application's hash (`appSha256`, also `process.hash.sha256`) (§4.11)." },
    Difference { profile: "siem-event", fields: &["sophos_central.event.ips_threat_data.raw_data.message"],
        elastic: "For a report in none of its three grok forms (14, 9 or 8 labelled lines in that order), the whole text, and no other `raw_data` field.",
        ours: "Each labelled line read by its label, whatever the form: the `Message` line, and the other fields filled; a text with no label at all is kept whole, as Elastic does (§3.4)." },
    Difference { profile: "siem-event", fields: &["source.port", "destination.port", "sophos_central.event.ips_threat_data.local_port", "sophos_central.event.ips_threat_data.remote.port"],
        elastic: "Any integer, as a long (`-1` or `70000` too).",
        ours: "A port, 0 to 65535; anything else is left out with a warning." },
    Difference { profile: "siem-event", fields: &["event.action"],
        elastic: "The `name` sentence (\"New user added automatically: …\").",
        ours: "Left out: ECS `event.action` is a short action keyword. The sentence is `message` and `sophos_central.event.name` (§4.7)." },
    Difference { profile: "siem-event", fields: &["threat.feed.name"],
        elastic: "The `threat` (a detection name such as `IPS/Inbound/7777001`).",
        ours: "Left out: ECS `threat.feed.name` names a threat-intelligence feed. The name is `sophos_central.event.threat` (§4.6)." },
    Difference { profile: "siem-event", fields: &["process.executable", "process.pid", "process.working_directory"],
        elastic: "`process.name` from AMSI, `process.executable` and `process.pid` from the IPS (another process), and the AMSI process's path as `process.working_directory`.",
        ours: "One process: the AMSI one when the event has AMSI data (its path as `process.executable`, its id as `process.pid` when that is a number), else the IPS one; no `working_directory`. The IPS process stays under `sophos_central.event.ips_threat_data` (§4.2)." },
    Difference { profile: "siem-event", fields: &["source.ip", "source.port"],
        elastic: "`source_info.ip` (the endpoint's own address) and the IPS local port.",
        ours: "The origin of the traffic: the IPS remote end for an inbound detection, else the endpoint's `Local IP` and port. The endpoint's address is `host.ip` (§4.4)." },
    Difference { profile: "siem-event", fields: &["destination.ip", "destination.port"],
        elastic: "Always the IPS remote end.",
        ours: "The target of the traffic: the endpoint for an inbound detection, else the remote end (§4.4)." },
];

/// The fields Elastic writes that come from its agent or its pipeline's settings, not
/// from the item (spec §5); they are not compared.
pub const ELASTIC_ONLY: &[&str] = &[
    "ecs.version",
    "tags",
    "agent",
    "elastic_agent",
    "data_stream",
    "input",
    "event.agent_id_status",
    "event.ingested",
];

/// The value after `label` on the first line of `text` that starts with it (the label
/// followed by white space, or ending the line), trimmed; `None` when no line has it or
/// the value is empty. The label `Message` also stands for the whole text when no line
/// starts with any of the report's labels, as Elastic's last grok pattern does.
pub fn labelled<'t>(text: &'t str, label: &str) -> Option<&'t str> {
    let value_of = |line: &'t str, label: &str| -> Option<&'t str> {
        let rest = line.strip_prefix(label)?;
        (rest.is_empty() || label.ends_with(':') || rest.starts_with(char::is_whitespace))
            .then(|| rest.trim())
    };
    let found = text
        .lines()
        .find_map(|line| value_of(line, label))
        .filter(|v| !v.is_empty());
    if found.is_none()
        && label == "Message"
        && !text
            .lines()
            .any(|line| RAW_DATA_LABELS.iter().any(|l| value_of(line, l).is_some()))
    {
        let whole = text.trim();
        return (!whole.is_empty()).then_some(whole);
    }
    found
}

/// The labels of an IPS report (`raw_data` / `rawData`), in the order Sophos writes them.
pub const RAW_DATA_LABELS: &[&str] = &[
    "Message",
    "Reference",
    "Packet type",
    "Local IP:",
    "Local Port:",
    "Local MAC:",
    "Remote IP:",
    "Remote Port:",
    "Remote MAC:",
    "PID:",
    "Executable:",
    "Version:",
    "Signer:",
    "SHA-256:",
];

/// A MAC address as ECS writes it: `:` and `.` become `-`, letters upper case.
pub fn mac(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ':' | '.' => '-',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// A Sophos Central severity word as a number (see [`Convert::Severity`](super::Convert::Severity)).
pub fn severity(word: &str) -> Option<i64> {
    Some(match word.to_ascii_lowercase().as_str() {
        "none" | "informational" | "info" => 0,
        "low" => 21,
        "medium" => 47,
        "high" => 73,
        "very_high" | "critical" => 99,
        _ => return None,
    })
}

/// A JSON list of objects (JSON text) with each object's keys in snake_case and its
/// empty values left out, as compact JSON; `None` when it is not a list of objects.
pub fn snake_case_objects(json: &str) -> Option<String> {
    let items: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(json).ok()?;
    let out: Vec<serde_json::Value> = items
        .into_iter()
        .map(|item| {
            serde_json::Value::Object(
                item.into_iter()
                    .filter(|(_, v)| !is_empty(v))
                    .map(|(k, v)| (snake_case(&k), v))
                    .collect(),
            )
        })
        .filter(|v| !is_empty(v))
        .collect();
    Some(serde_json::Value::Array(out).to_string())
}

fn is_empty(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// `camelCase` as `camel_case`.
fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for (i, c) in key.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Message       OS-WINDOWS SMB attempt\nReference     CVE-2017-0146\nPacket type   TCP\nLocal IP:     192.168.0.3\nLocal Port:   123\nLocal MAC:    00:50:b6:90:9e:e3\nRemote IP:    192.168.0.2";

    #[test]
    fn a_report_line_is_read_by_its_label() {
        assert_eq!(labelled(REPORT, "Message"), Some("OS-WINDOWS SMB attempt"));
        assert_eq!(labelled(REPORT, "Packet type"), Some("TCP"));
        assert_eq!(labelled(REPORT, "Local IP:"), Some("192.168.0.3"));
        assert_eq!(labelled(REPORT, "Remote IP:"), Some("192.168.0.2"));
        assert_eq!(labelled(REPORT, "SHA-256:"), None);
        // a label is a whole word: "Messages" is not "Message"
        assert_eq!(labelled("Messages  x\nReference  r", "Message"), None);
        // a text without any label is its own message, as Elastic's last pattern
        assert_eq!(
            labelled("something odd happened", "Message"),
            Some("something odd happened")
        );
        assert_eq!(labelled("something odd happened", "Reference"), None);
        assert_eq!(labelled("", "Message"), None);
        // Windows line endings
        assert_eq!(labelled("Message  m\r\nPID:  42\r\n", "PID:"), Some("42"));
    }

    #[test]
    fn macs_are_written_as_ecs_writes_them() {
        assert_eq!(mac("00:50:b6:90:9e:e3"), "00-50-B6-90-9E-E3");
        assert_eq!(mac("0050.b690.9ee3"), "0050-B690-9EE3");
        assert_eq!(mac("00-00-5E-00-53-00"), "00-00-5E-00-53-00");
    }

    #[test]
    fn severity_words_are_numbers_and_others_are_not() {
        assert_eq!(severity("low"), Some(21));
        assert_eq!(severity("MEDIUM"), Some(47));
        assert_eq!(severity("high"), Some(73));
        assert_eq!(severity("very_high"), Some(99));
        assert_eq!(severity("none"), Some(0));
        assert_eq!(severity("urgent"), None);
    }

    #[test]
    fn remedy_items_get_snake_case_keys_and_lose_empty_values() {
        let items = r#"[{"type":"file","result":"SUCCESS","suspendResult":"NOT_APPLICABLE","descriptor":"C:\\foo.dll","processPath":"","sophosPid":""}]"#;
        let out: serde_json::Value =
            serde_json::from_str(&snake_case_objects(items).unwrap()).unwrap();
        assert_eq!(
            out,
            serde_json::json!([{"type":"file","result":"SUCCESS","suspend_result":"NOT_APPLICABLE","descriptor":"C:\\foo.dll"}])
        );
        assert_eq!(snake_case_objects("[]").as_deref(), Some("[]"));
        assert_eq!(snake_case_objects(r#"[{"a":""}]"#).as_deref(), Some("[]"));
        assert_eq!(snake_case_objects(r#"{"a":1}"#), None);
        assert_eq!(snake_case_objects("[1]"), None);
    }

    #[test]
    fn every_difference_names_fields_of_its_profile() {
        for d in DIFFERENCES {
            let profile = super::super::Profile::by_name(d.profile).unwrap();
            for f in d.fields {
                // a field we leave out is not in the table; the others are
                let left_out = matches!(
                    *f,
                    "event.action" | "threat.feed.name" | "process.working_directory"
                );
                assert_eq!(profile.field(f).is_none(), left_out, "{}: {f}", d.profile);
            }
        }
    }
}
