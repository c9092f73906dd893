//! `compress-bench compare`: one report over several runs, with paired differences on the pages they
//! share (`occ_eval::compare` pairs, `occ_report::compare` writes).

use std::path::PathBuf;

use anyhow::Context;
use occ_eval::compare::{default_label, RunTables};
use occ_report::compare::RunEntry;

use crate::messages::{compare_files, Compare, CompareHeadline};
use crate::output::Output;

/// One report over several runs: curves on shared charts, paired differences with bootstrap CIs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run folders (results/<experiment>/<run_id>); the first is the baseline of the differences.
    #[arg(required = true, num_args = 2.., value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Labels of the runs in tables and charts, comma separated, in order [default: A, B, C, …].
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Seed of the run's random choices: the bootstrap of the paired differences (`score --seed`
    /// seeds its bootstrap the same way; `--bootstrap-seed` is the old name).
    #[arg(long, alias = "bootstrap-seed", default_value_t = 0)]
    pub seed: u64,
    /// Results root: the comparison goes to <out>/<name>/<UTC time>.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Folder name under the results root.
    #[arg(long, default_value = "compare")]
    pub name: String,
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let labels: Vec<String> = match &args.labels {
        Some(l) if l.len() != args.runs.len() => {
            return Err(occ_eval::compare::CompareError::LabelCount { given: l.len(), runs: args.runs.len() }.into())
        }
        Some(l) => l.clone(),
        None => (0..args.runs.len()).map(default_label).collect(),
    };
    let runs: Vec<RunTables> = args
        .runs
        .iter()
        .zip(&labels)
        .map(|(dir, label)| RunTables::load(dir, label))
        .collect::<Result<_, _>>()
        .context("reading the runs to compare")?;
    let (files, comparison) =
        occ_report::compare::write_compare(&runs, &args.out, &args.name, args.seed).context("comparing the runs")?;
    let entries: Vec<RunEntry> = runs.iter().map(RunEntry::of).collect();
    let headline = CompareHeadline::of(&comparison);
    let file_map = compare_files(&files);
    out.send(&Compare {
        out_dir: files.dir.display().to_string(),
        files: file_map,
        plots: files.plots.iter().map(|p| p.display().to_string()).collect(),
        runs: &entries,
        pairings: &comparison.pairings,
        headline,
    })?;
    for p in &comparison.pairings {
        out.info(&format!(
            "{} vs {} ({}): {} pages paired ({} scored, {} with a failed sample); not paired: {} with a different page, {} only in {}, {} only in {}",
            p.other,
            p.baseline,
            p.rule.describe(),
            p.n_paired,
            p.n_scored,
            p.n_paired_failed,
            p.n_page_differs,
            p.n_baseline_only,
            p.baseline,
            p.n_other_only,
            p.other
        ));
    }
    for r in comparison.rows.iter().filter(|r| r.target_ratio.is_none() && r.metric == "char_precision") {
        let modes = if r.other_mode == r.mode { r.mode.clone() } else { format!("{} → {}", r.mode, r.other_mode) };
        out.info(&format!(
            "  {} − {} on {}/{}: char precision {} pp over {} pairs",
            r.other,
            r.baseline,
            r.corpus,
            modes,
            occ_report::compare::pp_ci(r.mean_diff, r.ci_low, r.ci_high),
            r.n_pairs
        ));
    }
    out.result(&files.html.display().to_string());
    Ok(())
}
