//! `compress-bench decay`: optical-memory decay sweep.

use crate::output::Output;

/// optical-memory decay sweep.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("`compress-bench decay` is not built yet (issue 7)")
}
