//! The tiny config and its passage files.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use occ_train::TrainConfig;

/// A tiny reader (128-px page, 4 vision tokens) trained on a few committed passages.
pub const TINY: &str = r#"
name = "tiny"

[model]
canvas = 128
vocab_size = 320

[model.sam]
width = 16
depth = 2
heads = 2
mlp_dim = 32
window_size = 4
global_attn_indexes = [1]
out_chans = 16
downsample_channels = [16, 32]

[model.clip]
layers = 1
heads = 2
ffn_dim = 32

[model.decoder]
hidden_size = 32
layers = 2
heads = 2
intermediate_size = 64
moe_intermediate_size = 16
experts = 4
experts_per_token = 2
shared_experts = 1
first_dense_layers = 1
max_positions = 256

[data]
train = ["train.jsonl"]
validation = "val.jsonl"
ratios = [1.5, 3.0]
probe_share = 0.3

[optim]
steps = 40
batch = 4
accumulate = 2
lr = 3e-3
min_lr = 3e-4
warmup_steps = 4

[eval]
every = 0
ratios = [2.0]
pages = 2

[run]
seed = 7
checkpoint_every = 2
log_every = 1
"#;

/// Writes `train.jsonl` (20 passages) and `val.jsonl` (3) from the committed English corpus into
/// `dir`, and returns the tiny config rooted there, with `edit` applied to its TOML text.
pub fn tiny_config(dir: &Path, edit: impl Fn(String) -> String) -> TrainConfig {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/en.jsonl");
    let lines: Vec<String> =
        std::io::BufReader::new(std::fs::File::open(&corpus).unwrap()).lines().take(23).map(|l| l.unwrap()).collect();
    let mut f = std::fs::File::create(dir.join("train.jsonl")).unwrap();
    for l in &lines[..20] {
        writeln!(f, "{l}").unwrap();
    }
    let mut f = std::fs::File::create(dir.join("val.jsonl")).unwrap();
    for l in &lines[20..] {
        writeln!(f, "{l}").unwrap();
    }
    let path = dir.join("tiny.toml");
    std::fs::write(&path, edit(TINY.to_string())).unwrap();
    TrainConfig::load(&path, dir).unwrap()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
