//! `compress-bench report`: plots, tables and the HTML report of a run folder — a sweep or score
//! run (complete, interrupted or killed: the rows are then read from its journal) or a decay run
//! (rebuilt from its journal; an unfinished one gets a report of what it has). Whatever the folder
//! lacks is stated at the top of the report and printed as warnings.

use std::path::{Path, PathBuf};

use anyhow::Context;
use occ_eval::manifest::{ManifestHead, RunKind};

use crate::messages::ReportFiles;
use crate::output::Output;

/// Plots, tables and the HTML report of a run folder (sweep, score or decay).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directory (results/<experiment>/<run_id> or results/decay/<run_id>).
    pub run_dir: PathBuf,
}

/// Whether `dir` holds a decay run: the `kind` in the head of its manifest, of any version
/// ([`ManifestHead::load`] migrates older shapes). A folder whose manifest is missing or unreadable
/// goes to the sweep's report, which states what is missing or why the manifest cannot be read.
fn is_decay(dir: &Path) -> bool {
    ManifestHead::load(dir).is_ok_and(|head| head.kind == RunKind::Decay)
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let dir = &args.run_dir;
    let context = || format!("writing the report of {}", dir.display());
    if is_decay(dir) {
        let r = occ_report::decay::report_folder(dir).with_context(context)?;
        for m in &r.missing {
            out.warn(&format!("missing: {m}"));
        }
        let file = |name: &str| r.files.iter().find(|p| p.ends_with(name)).map(|p| p.display().to_string());
        out.send(&ReportFiles {
            run_dir: dir.display().to_string(),
            markdown: file("report.md").unwrap_or_default(),
            html: file("report.html").unwrap_or_default(),
            plots: r
                .files
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "svg"))
                .map(|p| p.display().to_string())
                .collect(),
            pages: None,
            status: Some(r.status),
            missing: r.missing.clone(),
        })?;
        out.result(&file("report.html").unwrap_or_default());
        return Ok(());
    }
    let files = occ_report::write_report(dir).with_context(context)?;
    for m in &files.missing {
        out.warn(&format!("missing: {m}"));
    }
    out.send(&ReportFiles {
        run_dir: dir.display().to_string(),
        markdown: files.markdown.display().to_string(),
        html: files.html.display().to_string(),
        plots: files.plots.iter().map(|p| p.display().to_string()).collect(),
        pages: files.pages.as_ref().map(|p| p.display().to_string()),
        status: None,
        missing: files.missing.clone(),
    })?;
    out.result(&files.html.display().to_string());
    out.info(&format!("{} and {} plots", files.markdown.display(), files.plots.len()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../eval/tests/fixtures/manifests").join(name)
    }

    #[test]
    fn decay_folders_are_told_by_the_manifest_head_of_any_version() {
        assert!(is_decay(&fixture("decay-v1")), "a first-version decay manifest (schema_version, engine, wall_s)");
        assert!(!is_decay(&fixture("sweep-v1")), "a first-version sweep manifest (no kind)");
        assert!(!is_decay(&fixture("no-such-run")), "no manifest: the sweep's report states what is missing");
        let dir = std::env::temp_dir().join(format!("occ-cli-report-kind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let current = occ_eval::decay::output::DecayState::load(&fixture("decay-v1")).unwrap();
        occ_eval::decay::output::write_state(&dir, &current.config(), &current.meta, occ_eval::RunStatus::Running, 0)
            .unwrap();
        assert!(is_decay(&dir), "a current decay manifest");
        std::fs::write(dir.join("manifest.json"), r#"{"kind": "decay"}"#).unwrap();
        assert!(!is_decay(&dir), "a kind alone is not a manifest");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
