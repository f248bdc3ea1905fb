//! The extended profile's table: the documented profile, plus every field the rows
//! carry that ECS has a place for, plus the rest under `sophos.threat_center.*`.
//!
//! The table is built from the documented one, so that every documented field keeps
//! its name and rule, with one change: placeholders are never emitted, and registry
//! fields appear only for rows that carry a registry `key` (no
//! `registry.data.strings: [""]`). The extra fields follow.

use std::sync::OnceLock;

use super::{Categorization as Cat, Convert as C, EcsType::*, Field, Source::*};

/// The extended table: the documented fields (adjusted as above), then the extra ones.
pub(super) fn fields() -> &'static [Field] {
    static FIELDS: OnceLock<Vec<Field>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        super::documented::FIELDS
            .iter()
            .map(without_placeholders)
            .chain(EXTRA.iter().copied())
            .collect()
    })
}

/// A documented rule, with registry fields gated on the row's registry `key` and no
/// `[""]` placeholder.
fn without_placeholders(field: &Field) -> Field {
    let source = match field.source {
        Key(key, convert) if field.name.starts_with("registry.") && key != "key" => {
            let convert = if convert == C::ListOrEmpty {
                C::Text
            } else {
                convert
            };
            KeyWhen(key, "key", convert)
        }
        other => other,
    };
    Field { source, ..*field }
}

#[rustfmt::skip]
const fn f(name: &'static str, ecs_type: super::EcsType, source: super::Source, description: &'static str) -> Field {
    Field { name, ecs_type, array: false, description, source }
}

#[rustfmt::skip]
const fn list(name: &'static str, ecs_type: super::EcsType, source: super::Source, description: &'static str) -> Field {
    Field { name, ecs_type, array: true, description, source }
}

#[rustfmt::skip]
const fn text(name: &'static str, key: &'static str, description: &'static str) -> Field {
    f(name, Keyword, Key(key, C::Text), description)
}

#[rustfmt::skip]
static EXTRA: &[Field] = &[
    // --- event ---
    list("event.category", Keyword, Categorize(Cat::Category), "ECS event category, derived from the query and the detection."),
    list("event.type", Keyword, Categorize(Cat::Type), "ECS event type, derived from the query and the detection."),
    f("event.outcome", Keyword, Categorize(Cat::Outcome), "Outcome of a logon (success or failure), when known."),
    f("event.ingested", Date, Key("ingestion_timestamp", C::Time), "Time the row reached the Sophos Data Lake."),
    f("event.risk_score", Float, Key("ioc_detection_weight", C::Number), "Risk score: the detection weight."),
    // --- host ---
    text("host.os.full", "meta_os_name", "Operating system name, including the version or code name."),
    text("host.os.platform", "meta_os_platform", "Operating system platform (windows, debian, darwin…)."),
    f("host.os.type", Keyword, Key("meta_os_platform", C::OsType), "Operating system family: windows, linux or macos."),
    list("host.ip", Ip, Key("meta_ip_address", C::IpAddress), "Host IP address (the endpoint's local address)."),
    list("host.mac", Keyword, Key("meta_mac_address", C::Text), "Host MAC address."),
    // --- source, user, destination, server ---
    f("source.nat.ip", Ip, Key("meta_public_ip", C::IpAddress), "Translated (public) IP of the endpoint."),
    text("user.domain", "subject_domain", "Domain of the subject user."),
    text("user.target.name", "target_username", "Name of the targeted user."),
    text("user.target.domain", "target_domain", "Domain of the targeted user."),
    f("destination.address", Keyword, FirstKey(&["target_domain", "remote_address"], C::Text), "Destination address: the target domain, or the remote address."),
    text("destination.domain", "target_domain", "Destination domain."),
    f("destination.ip", Ip, Key("remote_address", C::IpAddress), "Remote IP address."),
    f("destination.port", Long, Key("remote_port", C::Integer), "Remote port."),
    text("server.domain", "target_server", "Target server."),
    // --- process ---
    f("process.pid", Long, FirstKey(&["process_pid", "pid"], C::Integer), "Process id."),
    text("process.name", "process_name", "Process name."),
    f("process.executable", Keyword, FirstKey(&["process_path"], C::FilePath), "Absolute path to the process executable."),
    f("process.command_line", Wildcard, FirstKey(&["process_cmd_line", "cmdline"], C::CommandLine), "Full command line that started the process, as a string."),
    list("process.args", Keyword, FirstKey(&["process_cmd_line", "cmdline"], C::Args), "Process arguments, in order."),
    f("process.hash.sha256", Keyword, FirstKey(&["process_sha256", "sha256"], C::Text), "SHA256 hash of the process executable."),
    text("process.hash.sha1", "sha1", "SHA1 hash of the process executable."),
    f("process.code_signature.exists", Boolean, Key("is_process_file_signed", C::Bool), "Whether the executable is signed."),
    f("process.code_signature.subject_name", Keyword, Nested("process_local_rep_signers", &["reputationData", "signerInfo", "0", "signer"], C::Text), "Subject name of the first signer."),
    text("process.user.name", "username", "User the process runs as."),
    text("process.user.id", "uid", "Id of the user the process runs as."),
    text("process.group.id", "gid", "Id of the group the process runs as."),
    f("process.parent.pid", Long, FirstKey(&["parent_pid", "parent"], C::Integer), "Parent process id."),
    f("process.parent.name", Keyword, FirstKey(&["process_parent_name", "parent_name"], C::Text), "Parent process name."),
    f("process.parent.executable", Keyword, FirstKey(&["parent_path", "process_parent_path"], C::FilePath), "Parent process executable."),
    f("process.parent.command_line", Wildcard, Key("parent_cmdline", C::CommandLine), "Parent process command line, as a string."),
    list("process.parent.args", Keyword, Key("parent_cmdline", C::Args), "Parent process arguments, in order."),
    // --- file ---
    f("file.path", Keyword, FirstKey(&["ioc_event_path", "path"], C::FilePath), "Full path to the file (registry paths are not files)."),
    f("file.name", Keyword, FirstKey(&["ioc_event_path", "path"], C::FileName), "File name, with the extension."),
    f("file.directory", Keyword, FirstKey(&["ioc_event_path", "path"], C::Directory), "Directory of the file."),
    f("file.size", Long, FirstKey(&["file_size", "process_file_size"], C::Integer), "File size in bytes."),
    text("file.hash.sha256", "sha256", "SHA256 hash of the file."),
    text("file.hash.sha1", "sha1", "SHA1 hash of the file."),
    text("file.pe.original_file_name", "original_filename", "Internal name of the file, from its PE header."),
    text("file.pe.description", "file_description", "Description of the file, from its PE header."),
    text("file.pe.file_version", "file_version", "File version, from its PE header."),
    text("file.pe.company", "company_name", "Company, from the PE header."),
    text("file.pe.product", "product_name", "Product, from the PE header."),
    // --- organization, rule, threat ---
    text("organization.id", "customer_id", "Sophos Central tenant (customer) id."),
    text("rule.id", "ioc_detection_id", "Id of the detection rule."),
    f("rule.name", Keyword, FirstKey(&["threat_name", "ioc_detection_id"], C::Text), "Name of the detection rule."),
    text("rule.description", "ioc_detection_description", "Description of the detection rule."),
    f("rule.reference", Keyword, Key("ioc_detection_references", C::Strip2), "Reference URL of the detection rule."),
    text("rule.category", "ioc_detection_category", "Category of the detection rule."),
    text("rule.ruleset", "query_name", "The Sophos query that produced the detection."),
    list("threat.tactic.id", Keyword, Key("ioc_detection_mitre_attack", C::TacticIds), "MITRE ATT&CK tactic ids."),
    list("threat.tactic.name", Keyword, Key("ioc_detection_mitre_attack", C::TacticNames), "MITRE ATT&CK tactic names."),
    list("threat.technique.id", Keyword, Key("ioc_detection_mitre_attack", C::TechniqueIds), "MITRE ATT&CK technique ids."),
    list("threat.technique.name", Keyword, Key("ioc_detection_mitre_attack", C::TechniqueNames), "MITRE ATT&CK technique names."),
    f("threat.framework", Keyword, ConstantWhen("threat.tactic.id", "MITRE ATT&CK"), "Threat classification framework, when tactics are given."),
    text("threat.indicator.provider", "threat_source", "Source of the threat indicator."),
    // --- what has no ECS home ---
    text("sophos.threat_center.record_identifier", "record_identifier", "Identifier of the Data Lake record."),
    text("sophos.threat_center.detection_id_dedup", "detection_id_dedup", "Deduplication id of the detection."),
    text("sophos.threat_center.detection_identifier", "detection_identifier", "Identifier of the detection."),
    text("sophos.threat_center.message.id", "message_identifier", "Identifier of the message."),
    text("sophos.threat_center.aggressive_activity", "meta_aggressive_activity", "Whether aggressive activity was seen (True/False)."),
    text("sophos.threat_center.domain_controller", "meta_domain_controller", "Whether the endpoint is a domain controller (True/False)."),
    text("sophos.threat_center.worker.id", "ioc_worker_id", "Id of the Sophos worker that produced the detection."),
    text("sophos.threat_center.worker.name", "ioc_worker_name", "Name of the Sophos worker that produced the detection."),
    f("sophos.threat_center.upload_size", Long, Key("upload_size", C::Integer), "Size of the uploaded record, in bytes."),
    text("sophos.threat_center.ioc.attack_type", "ioc_attack_type", "Attack type of the IOC."),
    f("sophos.threat_center.ioc.detection.attack", Keyword, FirstKey(&["threat_name", "ioc_detection_attack"], C::Text), "Attack name: the threat name, or the detection's attack."),
    text("sophos.threat_center.ioc.detection.category", "ioc_detection_category", "Detection category."),
    text("sophos.threat_center.ioc.detection.type", "ioc_detection_type", "Detection type."),
    text("sophos.threat_center.ioc.detection.weight", "ioc_detection_weight", "Detection weight, as text."),
    text("sophos.threat_center.ioc.detection.cvss", "ioc_detection_cvss", "CVSS score of the detection."),
    list("sophos.threat_center.ioc.detection.licences", Keyword, Key("ioc_detection_licenses", C::StringList), "Licences the detection needs."),
    f("sophos.threat_center.ioc.detection.sigma", Object, Key("ioc_detection_sigma", C::Object), "The detection's Sigma rule metadata, parsed."),
    f("sophos.threat_center.ioc.detection.access", Object, Key("ioc_detection_access", C::Object), "CVSS access metrics, parsed."),
    f("sophos.threat_center.ioc.detection.impact", Object, Key("ioc_detection_impact", C::Object), "CVSS impact metrics, parsed."),
    text("sophos.threat_center.ioc.log_type", "ioc_log_type", "Log type of the IOC."),
    text("sophos.threat_center.ioc.ttp_summary", "ioc_event_ttp_summary", "Tactics and techniques summary."),
    f("sophos.threat_center.ioc.unix_time", Date, Key("ioc_unix_time", C::Time), "Time of the IOC."),
    f("sophos.threat_center.ioc.created_at", Date, Key("ioc_created_at", C::Time), "Time the IOC was created."),
    f("sophos.threat_center.analysis", Object, Key("analysis", C::Object), "The query's analysis data, parsed."),
    f("sophos.threat_center.event.id", Long, Key("eventid", C::Integer), "Windows event id."),
    text("sophos.threat_center.logon_process", "logon_process", "Windows logon process."),
    f("sophos.threat_center.logon_type", Long, Key("logon_type", C::Integer), "Windows logon type."),
    text("sophos.threat_center.authentication_package", "authentication_package", "Windows authentication package."),
    text("sophos.threat_center.failure_reason", "failure_reason", "Windows logon failure reason."),
    text("sophos.threat_center.status", "status", "Windows status code."),
    text("sophos.threat_center.sub_status", "sub_status", "Windows sub-status code."),
    text("sophos.threat_center.package", "package", "Package."),
    text("sophos.threat_center.threat_type", "threat_type", "Threat type."),
    text("sophos.threat_center.user_upn", "user_upn", "User principal name."),
    f("sophos.threat_center.password.last_set", Date, Key("password_last_set", C::DayFirstTime), "When the account's password was last set."),
    text("sophos.threat_center.ml.score", "ml_score", "Machine-learning score."),
    f("sophos.threat_center.ml.score_band", Keyword, FirstKey(&["process_ml_score_band", "ml_score_band"], C::Text), "Machine-learning score band."),
    f("sophos.threat_center.ml_score_data.config_version", Keyword, Nested("ml_score_data", &["configVersion"], C::Text), "Machine-learning model configuration version."),
    f("sophos.threat_center.lolbins_ml_results.score", Keyword, Nested("lolbins_ml_results", &["score"], C::Text), "LOLBins model score."),
    f("sophos.threat_center.lolbins_ml_results.score_label", Keyword, Nested("lolbins_ml_results", &["score_label"], C::Text), "LOLBins model label."),
    f("sophos.threat_center.lolbins_ml_results.sha256", Keyword, Nested("lolbins_ml_results", &["sha256"], C::Text), "SHA256 scored by the LOLBins model."),
    f("sophos.threat_center.global_rep", Long, FirstKey(&["global_rep", "process_global_rep"], C::Integer), "Global reputation."),
    f("sophos.threat_center.local_rep", Long, FirstKey(&["local_rep", "process_local_rep"], C::Integer), "Local reputation."),
    text("sophos.threat_center.pua.score", "pua_score", "Potentially unwanted application score."),
    text("sophos.threat_center.sha256.reputation_band", "sha256_reputation_band", "Reputation band of the file's SHA256."),
    text("sophos.threat_center.sha256.reputation_score", "sha256_reputation_score", "Reputation score of the file's SHA256."),
    text("sophos.threat_center.process.ml_score", "process_ml_score", "Machine-learning score of the process."),
    text("sophos.threat_center.process.pua.score", "process_pua_score", "PUA score of the process."),
    text("sophos.threat_center.process.hash.sha256.reputation_band", "process_sha256_reputation_band", "Reputation band of the process's SHA256."),
    text("sophos.threat_center.process.hash.sha256.reputation_score", "process_sha256_reputation_score", "Reputation score of the process's SHA256."),
    f("sophos.threat_center.process.executable.is_signed", Boolean, Key("is_process_file_signed", C::Bool), "Whether the process executable is signed."),
    // --- related (after every field they gather; related.ip and .user are documented) ---
    list("related.hash", Keyword, Related(&["process.hash.sha256", "process.hash.sha1", "file.hash.sha256", "file.hash.sha1"]), "All the hashes seen on the event."),
    list("related.hosts", Keyword, Related(&["host.name", "destination.domain", "server.domain"]), "All the host names seen on the event."),
];
