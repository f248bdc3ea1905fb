//! Every `sh` block of the README and of `docs/` runs, as a user would run it: with bash
//! (`set -euo pipefail`), in a scratch directory holding a copy of `examples/`, with the
//! built `sophos-tac` and `sophos-central-sim` first on `PATH`, bounded in time. A block
//! that cannot run here says so on its first line (`# not run by the tests: <why>`), and
//! the test lists those.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::collect::bounded;

/// A fenced `sh` block: where it is, and its text.
struct Block {
    place: String,
    text: String,
}

fn blocks(path: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_end() == "```sh" => current = Some((n + 1, String::new())),
            Some((start, body)) if line.trim_end() == "```" => {
                out.push(Block {
                    place: format!("{}:{}", path.display(), start),
                    text: std::mem::take(body),
                });
                current = None;
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Fails (in CI) or skips with a message when a tool the blocks use is missing.
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install {tool} (.ci/run does)"
        );
        eprintln!("skipped: the documentation's commands use {tool}, which is not installed");
    }
    found
}

#[test]
fn every_command_of_the_readme_and_the_guide_runs() {
    if !["jq", "curl", "python3", "gzip"].iter().all(|t| have(t)) {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_sophos-tac"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        bin_dir.join("sophos-central-sim").exists(),
        "the simulator's binary is built with the workspace (cargo test builds it; or cargo build -p sophos-central-sim)"
    );
    let mut files = vec![root.join("README.md")];
    let mut guide: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    guide.sort();
    files.extend(guide);
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (mut ran, mut skipped) = (0, Vec::new());
    for block in files.iter().flat_map(|f| blocks(f)) {
        if let Some(why) = block
            .text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# not run by the tests: "))
        {
            skipped.push(format!("{}: {why}", block.place));
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&root.join("examples"), &dir.path().join("examples"));
        let script = format!(
            "set -euo pipefail\n{}\n# stop what the block left running\njobs -p | xargs -r kill 2>/dev/null || true\n",
            block.text
        );
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &script])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env_remove("SOPHOS_CLIENT_SECRET")
            .env_remove("RUST_LOG");
        let out = bounded(cmd, Duration::from_secs(300));
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "{} failed ({:?}):\n{}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}",
            block.place,
            out.status,
            block.text
        );
        // The tour's counts, not only its status: every row once, the index holds six.
        let numbers: Vec<&str> = stdout.lines().map(str::trim).collect();
        if block.text.contains("uniq -d") && block.text.contains("examples/collect-demo.toml") {
            assert_eq!(
                numbers[numbers.len() - 3..],
                ["0", "1500", "1500"],
                "{stdout}\n{stderr}"
            );
        }
        if block.text.contains("--profile extended --format json") {
            assert!(numbers.contains(&"148"), "{stdout}");
        }
        if block.text.contains("/readyz") {
            // --check passed, the service was ready, and the metrics and the file agree.
            for line in ["no problem found", "ready"] {
                assert!(numbers.contains(&line), "{stdout}");
            }
            assert!(
                stdout.contains("sophos_tac_output_acknowledged_total{output=\"file\"} 200"),
                "{stdout}"
            );
            assert_eq!(numbers.last(), Some(&"200"), "{stdout}\n{stderr}");
        }
        if block.text.contains("collect-siem-demo") {
            // every detection, alert and event once, through the kill
            let counts: Vec<(&str, &str)> = numbers
                .iter()
                .filter_map(|l| l.split_once(' '))
                .filter(|(n, _)| n.parse::<u32>().is_ok())
                .collect();
            for (n, what) in [
                ("100", "data lake"),
                ("20", "sophos_central.alert"),
                ("80", "sophos_central.event"),
            ] {
                assert!(
                    counts.contains(&(n, what)),
                    "{n} {what}?\n{stdout}\n{stderr}"
                );
            }
            assert!(numbers.contains(&"0"), "{stdout}");
        }
        if block.text.contains("group=demo") {
            assert_eq!(numbers.last(), Some(&"6"), "{stdout}\n{stderr}");
        }
        if block.text.contains("_count") {
            assert_eq!(numbers.last(), Some(&"6"), "{stdout}");
        }
        println!("ran {}:\n{stdout}", block.place);
        ran += 1;
    }
    println!("{ran} blocks ran; not run, with the reason:");
    for s in &skipped {
        println!("  {s}");
    }
    assert!(ran >= 6, "{ran} blocks ran");
}
