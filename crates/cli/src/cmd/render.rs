//! `compress-bench render`: text → page PNG + metadata JSON.

use crate::output::Output;

/// Render text to a page image.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("render is being built (issue 2)")
}
