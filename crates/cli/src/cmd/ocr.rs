//! `compress-bench ocr`: read page images with DeepSeek-OCR.

use crate::output::Output;

/// read page images with DeepSeek-OCR.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _out: &Output) -> anyhow::Result<()> {
    anyhow::bail!("`compress-bench ocr` is not built yet (issue 4)")
}
