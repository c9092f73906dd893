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
        status: &manifest.status,
        n_samples: written.samples,
        n_failed: written.failed,
        wall_time_s: manifest.wall_time_s,
        files: files.clone(),
        cells: Cell::all(&summary),
    })?;
    out.result(&format!(
        "{} samples ({} failed) in {:.1} s -> {}",
        written.samples,
        written.failed,
        manifest.wall_time_s,
        dir.display()
    ));
    for (k, v) in &files {
        out.info(&format!("  {k}: {v}"));
    }
    Ok(written.failed)
}
