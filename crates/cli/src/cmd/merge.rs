//! `compress-bench merge`: join the outputs of `--shard K/N` runs into one run.

use std::path::PathBuf;

use anyhow::Context;

use crate::output::Output;
use crate::runs::{finish_run, host};

/// Join the outputs of `--shard K/N` runs into one run.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directories of every shard (any order).
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// Results root of the merged run.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Do not write the report.
    #[arg(long)]
    pub no_report: bool,
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let (dir, mut manifest) = occ_eval::results::merge(&args.shards, &args.out, &host()).context("merging shards")?;
    let failed = finish_run(&dir, &mut manifest, !args.no_report, out)?;
    if failed > 0 {
        anyhow::bail!("{failed} samples of the shards had failed; the merged results are written");
    }
    Ok(())
}
