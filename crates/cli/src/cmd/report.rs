//! `compress-bench report`: plots, tables and the HTML report of a sweep run.

use std::path::PathBuf;

use anyhow::Context;

use crate::messages::ReportFiles;
use crate::output::Output;

/// Plots, tables and the HTML report of a sweep run.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directory (results/<experiment>/<run_id>).
    pub run_dir: PathBuf,
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let files = occ_report::write_report(&args.run_dir)
        .with_context(|| format!("writing the report of {}", args.run_dir.display()))?;
    out.send(&ReportFiles {
        run_dir: args.run_dir.display().to_string(),
        markdown: files.markdown.display().to_string(),
        html: files.html.display().to_string(),
        plots: files.plots.iter().map(|p| p.display().to_string()).collect(),
        pages: files.pages.as_ref().map(|p| p.display().to_string()),
    })?;
    out.result(&files.html.display().to_string());
    out.info(&format!("{} and {} plots", files.markdown.display(), files.plots.len()));
    Ok(())
}
