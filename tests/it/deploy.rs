//! The deployment files a user takes as they are: the systemd unit (`systemd-analyze
//! verify`, and its exposure score), the example configuration (`collect --check`
//! against the simulator) and the Prometheus alert rules (`promtool check rules` and
//! `promtool test rules`). A missing tool skips its test with a message; `.ci/run`
//! installs them (Debian's systemd and prometheus packages).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::collect::{SECRET, Sim, bounded};

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs a tool, or says why the test is skipped when it is not installed.
fn tool(name: &str, args: &[&str], dir: &Path) -> Option<std::process::Output> {
    if Command::new(name).arg("--version").output().is_err() {
        crate::common::missing_tool(name, "apt-get install prometheus systemd");
        return None;
    }
    let mut c = Command::new(name);
    c.args(args).current_dir(dir);
    Some(bounded(c, Duration::from_secs(120)))
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().unwrap();
    // The unit as shipped, with ExecStart pointing at the binary under test.
    let unit = std::fs::read_to_string(repo("deploy/sophos-tac.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/sophos-tac collect "));
    let unit = unit.replace(
        "/usr/local/bin/sophos-tac",
        env!("CARGO_BIN_EXE_sophos-tac"),
    );
    std::fs::write(dir.path().join("sophos-tac.service"), unit).unwrap();
    let Some(out) = tool(
        "systemd-analyze",
        &["verify", "--man=no", "sophos-tac.service"],
        dir.path(),
    ) else {
        return;
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("sophos-tac.service"),
        "a complaint about the unit: {text}"
    );
    let Some(out) = tool(
        "systemd-analyze",
        &["security", "--offline=yes", "sophos-tac.service"],
        dir.path(),
    ) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let score: f64 = text
        .split("Overall exposure level for sophos-tac.service: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {text}"));
    // 0 is the most locked down, 10 the least; systemd calls below 2 "OK".
    assert!(score < 2.0, "exposure {score}:\n{text}");
}

#[test]
fn the_example_configuration_passes_check_but_for_the_cluster_it_cannot_reach() {
    let sim = Sim::start(&["--kind", "partner", "--tenants", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let example = std::fs::read_to_string(repo("deploy/collect.toml")).unwrap();
    // Only the places of this machine change: the simulator, a scratch directory, and
    // a cluster port nothing answers.
    let config = example
        .replace(
            "client_id = \"your-client-id\"",
            &format!(
                "client_id = \"demo-client\"\nauth_url = \"{}/api/v2/oauth2/token\"\nglobal_url = \"{}\"",
                sim.url, sim.url
            ),
        )
        .replace(
            "/run/credentials/sophos-tac.service/client-secret",
            &secret.display().to_string(),
        )
        .replace("/var/lib/sophos-tac", &dir.path().join("state").display().to_string())
        .replace("https://127.0.0.1:9200", &format!("http://127.0.0.1:{dead}"));
    let path = dir.path().join("collect.toml");
    std::fs::write(&path, config).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for p in [&path, &secret] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    let mut c = Command::new(env!("CARGO_BIN_EXE_sophos-tac"));
    c.args(["collect", "--check", "--config"])
        .arg(&path)
        .env("SOPHOS_TAC_ES_API_KEY", "not-a-real-key");
    let out = bounded(c, Duration::from_secs(60));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("PROBLEM")).collect();
    assert_eq!(problems.len(), 1, "{text}");
    assert!(problems[0].starts_with("PROBLEM  output siem: "), "{text}");
    for line in [
        "ok       configuration: profile documented; outputs: siem (elasticsearch), archive (file)",
        "ok       tenants: 2 to collect",
        "ok       output archive: ",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    assert!(
        !text.contains("warn"),
        "no warning (modes are 0600): {text}"
    );
}

#[test]
fn the_alert_rules_load_and_fire_when_they_should() {
    let Some(out) = tool(
        "promtool",
        &["check", "rules", "../../deploy/alerts.yml"],
        &repo("tests/data"),
    ) else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tool(
        "promtool",
        &["test", "rules", "alerts-test.yml"],
        &repo("tests/data"),
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
