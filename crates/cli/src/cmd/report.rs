//! `compress-bench report`: plots, tables and HTML report of a sweep run.

use crate::output::Output;

/// plots, tables and HTML report of a sweep run.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("`compress-bench report` is not built yet (issue 5)")
}
