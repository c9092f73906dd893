//! `compress-bench sweep`: compression sweeps over ratios, modes and corpora.

use crate::output::Output;

/// compression sweeps over ratios, modes and corpora.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("`compress-bench sweep` is not built yet (issue 5)")
}
