//! `compress-bench merge`: join shard outputs into one run.

use crate::output::Output;

/// join shard outputs into one run.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("`compress-bench merge` is not built yet (issue 5)")
}
