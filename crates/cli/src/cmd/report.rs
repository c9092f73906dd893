//! `compress-bench report`: plots, tables and the HTML report of a run folder — a sweep or score
//! run (complete, interrupted or killed: the rows are then read from its journal) or a decay run
//! (rebuilt from its journal; an unfinished one gets a report of what it has). Whatever the folder
//! lacks is stated at the top of the report and printed as warnings.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::messages::ReportFiles;
use crate::output::Output;

/// Plots, tables and the HTML report of a run folder (sweep, score or decay).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directory (results/<experiment>/<run_id> or results/decay/<run_id>).
    pub run_dir: PathBuf,
}

/// Whether `dir` holds a decay run (`"kind": "decay"` in its manifest).
fn is_decay(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(occ_eval::results::MANIFEST_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|m| m["kind"] == "decay")
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
            status: Some(r.status.clone()),
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
