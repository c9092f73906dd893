//! What the commands that write a run directory share: provenance (git commit, host) and the
//! announcement of a finished sweep run (`sweep`, `merge`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use occ_eval::results::{self, Manifest};
use occ_eval::sweep::Invocation;

use crate::messages::{Cell, SweepSummary};
use crate::output::Output;

/// `git rev-parse HEAD` of the working directory, or `unknown`.
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A one-line description of this machine.
pub fn host() -> String {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{} {}, {threads} CPU threads", std::env::consts::OS, std::env::consts::ARCH)
}

/// Flags of the model and engine (`engine::ModelArgs`) that take a value, kept in resume commands.
pub const MODEL_VALUE_FLAGS: [&str; 13] = [
    "--weights",
    "--device",
    "--dtype",
    "--synthetic-recipe",
    "--weights-seed",
    "--resize-order",
    // the openai engine's (`engine::OpenAiArgs`)
    "--endpoint",
    "--model",
    "--api-key-env",
    "--prompt-template",
    "--concurrency",
    "--retries",
    "--request-timeout",
];
/// Switches of the model (`engine::ModelArgs`) kept in resume commands (`--synthetic-weights` may
/// take a value).
pub const MODEL_SWITCHES: [&str; 4] = ["--offline", "--tiny", "--synthetic-weights", "--send-mode"];

/// The command that continues the run in `dir`: this process's program, global flags and
/// subcommand, then the flags of `argv` named in `keep_values` (with their values) and
/// `keep_switches`, then `--resume DIR`. Everything else (what defines the run, which the run
/// folder's manifest holds) is left out.
pub fn resume_command(argv: &[String], dir: &Path, keep_values: &[&str], keep_switches: &[&str]) -> String {
    rerun_command(argv, keep_values, keep_switches, &["--resume".into(), dir.display().to_string()])
}

/// [`resume_command`] with any ending: the program, global flags and subcommand of `argv`, its
/// flags named in `keep_values` (with their values) and `keep_switches`, then `tail`; each
/// argument quoted for a POSIX shell where it needs it.
pub fn rerun_command(argv: &[String], keep_values: &[&str], keep_switches: &[&str], tail: &[String]) -> String {
    let is_sub = |a: &str| !a.starts_with('-');
    let sub = argv.iter().skip(1).position(|a| is_sub(a)).map_or(argv.len(), |p| p + 1);
    let mut out: Vec<String> = argv.iter().take(sub + 1).cloned().collect();
    if let Some(first) = out.first_mut() {
        if Path::new(first.as_str()).file_name().is_some_and(|n| n == "compress-bench") {
            *first = "compress-bench".into();
        }
    }
    let mut i = sub + 1;
    while i < argv.len() {
        let a = &argv[i];
        let name = a.split('=').next().unwrap_or(a);
        if keep_values.contains(&name) {
            out.push(a.clone());
            if !a.contains('=') && i + 1 < argv.len() {
                out.push(argv[i + 1].clone());
                i += 1;
            }
        } else if keep_switches.contains(&name) {
            out.push(a.clone());
            if name == "--synthetic-weights" && !a.contains('=') && argv.get(i + 1).is_some_and(|v| is_sub(v)) {
                out.push(argv[i + 1].clone());
                i += 1;
            }
        }
        i += 1;
    }
    out.extend_from_slice(tail);
    out.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
}

/// `a` quoted for a POSIX shell when it needs it.
fn shell_quote(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// This invocation, as a run's manifest records it.
pub fn invocation() -> Invocation {
    Invocation {
        git_commit: git_commit(),
        host: host(),
        command: std::env::args().collect(),
        tool: "compress-bench".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// Writes the tables of a sweep run in `dir` and its manifest (`occ_eval::sweep::finish`), the
/// report unless `report` is false, and announces them. Returns the number of failed samples.
pub fn finish_run(dir: &Path, manifest: &mut Manifest, report: bool, out: &Output) -> anyhow::Result<usize> {
    let (written, summary) =
        occ_eval::sweep::finish(dir, manifest).with_context(|| format!("writing the results of {}", dir.display()))?;
    let mut files = BTreeMap::new();
    for f in [results::SAMPLES_FILE, results::PREDICTIONS_FILE, results::SUMMARY_FILE, results::MANIFEST_FILE] {
        files.insert(f, dir.join(f).display().to_string());
    }
    if report {
        let r = occ_report::write_report(dir).with_context(|| format!("writing the report of {}", dir.display()))?;
        files.insert("report.md", r.markdown.display().to_string());
        files.insert("report.html", r.html.display().to_string());
    }
    out.send(&SweepSummary {
        run_dir: dir.display().to_string(),
        run_id: &manifest.run_id,
        status: manifest.status,
        n_samples: written.samples,
        n_failed: written.failed,
        wall_time_s: manifest.wall_time_s,
        files: files.clone(),
        cells: Cell::all(&summary),
    })?;
    out.result(&summary_line(written.samples, written.failed, manifest, dir));
    for (k, v) in &files {
        out.info(&format!("  {k}: {v}"));
    }
    Ok(written.failed)
}

/// The one-line result of a finished sweep. A run of one session says how long it took; a resumed
/// run says what this session did and that the time is the recorded sessions' only (a session
/// killed with `kill -9` never records its time, so the run's total would mislead).
fn summary_line(samples: usize, failed: usize, manifest: &Manifest, dir: &Path) -> String {
    match manifest.sessions.as_slice() {
        [.., last] if manifest.sessions.len() > 1 => format!(
            "{samples} samples ({failed} failed) -> {}; this session read {} in {:.1} s; {} recorded sessions took \
             {:.1} s (a killed session's time is not recorded)",
            dir.display(),
            last.samples,
            last.wall_time_s,
            manifest.sessions.len(),
            manifest.wall_time_s
        ),
        _ => format!("{samples} samples ({failed} failed) in {:.1} s -> {}", manifest.wall_time_s, dir.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_run_says_what_this_session_did_and_whose_time_is_counted() {
        let mut m: Manifest = serde_json::from_str(include_str!("../tests/fixtures/manifest-two-sessions.json"))
            .unwrap_or_else(|e| panic!("fixture: {e}"));
        let dir = Path::new("/runs/r");
        let line = summary_line(30, 1, &m, dir);
        assert!(line.contains("30 samples (1 failed)"), "{line}");
        assert!(line.contains("this session read 20 in 0.4 s"), "{line}");
        assert!(line.contains("2 recorded sessions took 0.7 s"), "{line}");
        m.sessions.truncate(1);
        m.wall_time_s = m.sessions[0].wall_time_s;
        assert_eq!(summary_line(10, 0, &m, dir), "10 samples (0 failed) in 0.3 s -> /runs/r");
    }

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn resume_commands_keep_engine_flags_and_drop_the_run_definition() {
        let cmd = resume_command(
            &argv("/x/target/release/compress-bench --quiet sweep spec.toml --ratios 5..7 --weights /w --tiny --threads=3 --pages 2"),
            Path::new("results/adhoc/r1"),
            &[&MODEL_VALUE_FLAGS[..], &["--threads"]].concat(),
            &MODEL_SWITCHES,
        );
        assert_eq!(cmd, "compress-bench --quiet sweep --weights /w --tiny --threads=3 --resume results/adhoc/r1");
        let cmd = resume_command(
            &argv("compress-bench decay --synthetic-weights tiny --engine mini --rounds 5"),
            Path::new("out dir/decay/x"),
            &["--engine"],
            &MODEL_SWITCHES,
        );
        assert_eq!(cmd, "compress-bench decay --synthetic-weights tiny --engine mini --resume 'out dir/decay/x'");
    }
}
