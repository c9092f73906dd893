//! `compress-bench inspect`: config, tensor list and vision tokens per mode for an image size.

use crate::output::Output;

/// config, tensor list and vision tokens per mode for an image size.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("`compress-bench inspect` is not built yet (issue 3)")
}
