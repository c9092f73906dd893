//! `compress-bench bench`: GPU/CPU speed benchmark of the DeepSeek-OCR engine.

use crate::output::Output;

/// GPU/CPU speed benchmark of the DeepSeek-OCR engine.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("`compress-bench bench` is not built yet (issue 6)")
}
