//! Checkpoints: one folder per saved step inside the run folder, published atomically.
//!
//! `ckpt-NNNNNNN/` holds a loadable reader (`mini.json`, `vocab.json`, `model.safetensors` in
//! float32: `--weights ckpt-…` works in every command), the optimiser state
//! (`optimizer.safetensors`: `m.<name>`, `v.<name>`) and `state.json` (step, optimiser steps,
//! model fingerprint, the whole training config). A folder is written under a temporary name and
//! renamed when complete, then `latest` (the folder name) is replaced by rename; so an interrupted
//! write leaves the previous checkpoint as `latest`. The two newest checkpoints are kept.
//!
//! Without `optimizer.safetensors` (a checkpoint carried between machines with weights only) a
//! resume is a documented warm restart: zero moments, the learning rate warmed up again over
//! [`WARM_RESTART_STEPS`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use occ_model::mini::{self, OutputVocab};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::{TrainError, TrainResult};
use crate::model::Params;
use crate::optim::AdamW;

pub const STATE_FILE: &str = "state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const LATEST_FILE: &str = "latest";
/// Steps over which the learning rate ramps up again after a warm restart.
pub const WARM_RESTART_STEPS: usize = 50;
/// `state.json`'s `format`.
pub const FORMAT: &str = "occ-train-checkpoint-v1";

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub format: String,
    /// Optimiser steps completed (the next step to run).
    pub step: usize,
    /// AdamW's step counter (differs from `step` after a warm restart).
    pub adam_t: usize,
    pub model_fingerprint: String,
    /// Steps run since the last warm restart began (for its warm-up).
    pub restart_at: Option<usize>,
    pub config: TrainConfig,
}

/// What a resume restores.
#[derive(Debug)]
pub struct Restored {
    pub state: State,
    pub params: Params,
    pub vocab: OutputVocab,
    /// `None`: weights only (warm restart).
    pub optim: Option<AdamW>,
}

/// The folder name of step `step`.
pub fn folder_name(step: usize) -> String {
    format!("ckpt-{step:07}")
}

fn ckpt_err(path: &Path, problem: impl Into<String>) -> TrainError {
    TrainError::Checkpoint { path: path.into(), problem: problem.into() }
}

fn save_tensors(map: &BTreeMap<String, Tensor>, path: &Path) -> TrainResult<()> {
    let hm: HashMap<String, Tensor> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    candle_core::safetensors::save(&hm, path).map_err(|e| ckpt_err(path, e.to_string()))
}

/// Writes the reader files (`mini.json`, `vocab.json`, `model.safetensors`) of `params` into `dir`.
pub fn write_reader(dir: &Path, cfg: &TrainConfig, vocab: &OutputVocab, params: &Params) -> TrainResult<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let json = serde_json::to_string_pretty(&cfg.model).map_err(|e| TrainError::Other(e.to_string()))?;
    let p = dir.join(mini::CONFIG_FILE);
    std::fs::write(&p, json).map_err(|e| TrainError::io(&p, e))?;
    vocab.save(&dir.join(mini::VOCAB_FILE)).map_err(|e| TrainError::Other(e.to_string()))?;
    save_tensors(&params.tensors(), &dir.join(mini::WEIGHTS_FILE))
}

/// Saves a checkpoint of `step` into `run_dir` and publishes it as `latest`.
pub fn save(
    run_dir: &Path,
    state: &State,
    vocab: &OutputVocab,
    params: &Params,
    optim: &AdamW,
) -> TrainResult<PathBuf> {
    let name = folder_name(state.step);
    let tmp = run_dir.join(format!(".{name}.partial-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    write_reader(&tmp, &state.config, vocab, params)?;
    let mut moments = BTreeMap::new();
    for (k, t) in &optim.m {
        moments.insert(format!("m.{k}"), t.clone());
    }
    for (k, t) in &optim.v {
        moments.insert(format!("v.{k}"), t.clone());
    }
    save_tensors(&moments, &tmp.join(OPTIMIZER_FILE))?;
    let json = serde_json::to_string_pretty(state).map_err(|e| TrainError::Other(e.to_string()))?;
    let sp = tmp.join(STATE_FILE);
    std::fs::write(&sp, json).map_err(|e| TrainError::io(&sp, e))?;
    let dest = run_dir.join(&name);
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| TrainError::io(&dest, e))?;
    }
    std::fs::rename(&tmp, &dest).map_err(|e| TrainError::io(&dest, e))?;
    let latest_tmp = run_dir.join(format!(".{LATEST_FILE}.partial"));
    std::fs::write(&latest_tmp, &name).map_err(|e| TrainError::io(&latest_tmp, e))?;
    std::fs::rename(&latest_tmp, run_dir.join(LATEST_FILE)).map_err(|e| TrainError::io(run_dir, e))?;
    prune(run_dir, 2)?;
    Ok(dest)
}

/// Removes all but the `keep` newest checkpoint folders.
fn prune(run_dir: &Path, keep: usize) -> TrainResult<()> {
    let mut names: Vec<String> = std::fs::read_dir(run_dir)
        .map_err(|e| TrainError::io(run_dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ckpt-"))
        .collect();
    names.sort();
    let n = names.len();
    for old in names.into_iter().take(n.saturating_sub(keep)) {
        let p = run_dir.join(old);
        std::fs::remove_dir_all(&p).map_err(|e| TrainError::io(&p, e))?;
    }
    Ok(())
}

/// The checkpoint folder `latest` names in `run_dir`, if any.
pub fn latest(run_dir: &Path) -> TrainResult<Option<PathBuf>> {
    let p = run_dir.join(LATEST_FILE);
    if !p.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&p).map_err(|e| TrainError::io(&p, e))?;
    let dir = run_dir.join(name.trim());
    if !dir.is_dir() {
        return Err(ckpt_err(&p, format!("names {}, which is not a folder", dir.display())));
    }
    Ok(Some(dir))
}

fn load_tensors(path: &Path, device: &Device) -> TrainResult<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device).map_err(|e| ckpt_err(path, format!("unreadable: {e}")))
}

/// Loads a checkpoint folder for resuming `cfg`: refused (naming the file and what differs) when it
/// was written for another architecture, or when a tensor is missing, misshapen or truncated.
pub fn load(dir: &Path, cfg: &TrainConfig, tok: &occ_core::TextTokenizer, device: &Device) -> TrainResult<Restored> {
    let sp = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&sp).map_err(|e| TrainError::io(&sp, e))?;
    let state: State =
        serde_json::from_str(&text).map_err(|e| ckpt_err(&sp, format!("not a checkpoint state: {e}")))?;
    if state.format != FORMAT {
        return Err(ckpt_err(&sp, format!("format {:?}, expected {FORMAT:?}", state.format)));
    }
    let want = cfg.model_fingerprint();
    if state.model_fingerprint != want || state.config.model != cfg.model {
        return Err(ckpt_err(
            &sp,
            format!(
                "written for model {} (architecture {}), this config is {} (architecture {want}); \
                 resume with the config it was trained with",
                state.config.name, state.model_fingerprint, cfg.name
            ),
        ));
    }
    let vocab = OutputVocab::load(&dir.join(mini::VOCAB_FILE), tok).map_err(|e| ckpt_err(dir, e.to_string()))?;
    let wp = dir.join(mini::WEIGHTS_FILE);
    let weights = load_tensors(&wp, device)?;
    let mut params = Params::init(&cfg.model, 0, device)?;
    for (name, var) in &params.vars {
        let t = weights.get(name).ok_or_else(|| ckpt_err(&wp, format!("tensor {name} is missing")))?;
        if t.dims() != var.dims() {
            return Err(ckpt_err(&wp, format!("tensor {name} has shape {:?}, expected {:?}", t.dims(), var.dims())));
        }
        var.set(&t.to_dtype(candle_core::DType::F32)?)?;
    }
    // training-only tensors (the cell head) come back as they were saved
    for (name, t) in &weights {
        if crate::model::is_training_only(name) && !params.vars.contains_key(name) {
            params.vars.insert(name.clone(), Var::from_tensor(&t.to_dtype(candle_core::DType::F32)?)?);
        }
    }
    if weights.len() != params.vars.len() {
        return Err(ckpt_err(&wp, format!("{} tensors, expected {}", weights.len(), params.vars.len())));
    }
    let op = dir.join(OPTIMIZER_FILE);
    let optim = if op.exists() {
        let moments = load_tensors(&op, device)?;
        let mut o = AdamW::new(&params.vars)?;
        for (name, var) in &params.vars {
            for (prefix, slot) in [("m", &mut o.m), ("v", &mut o.v)] {
                let key = format!("{prefix}.{name}");
                let t = moments.get(&key).ok_or_else(|| ckpt_err(&op, format!("tensor {key} is missing")))?;
                if t.dims() != var.dims() {
                    return Err(ckpt_err(
                        &op,
                        format!("tensor {key} has shape {:?}, expected {:?}", t.dims(), var.dims()),
                    ));
                }
                slot.insert(name.clone(), t.clone());
            }
        }
        o.t = state.adam_t;
        Some(o)
    } else {
        None
    };
    params.device = device.clone();
    Ok(Restored { state, params, vocab, optim })
}

/// Writes the reader of checkpoint `ckpt` into `dest` with its weights in bf16 (the shipped form:
/// half the size; readers load any float dtype), without training-only tensors. `dest` is written under a temporary name first.
pub fn export(ckpt: &Path, dest: &Path) -> TrainResult<()> {
    let wp = ckpt.join(mini::WEIGHTS_FILE);
    let weights = load_tensors(&wp, &Device::Cpu)?;
    let mut half = BTreeMap::new();
    for (k, t) in weights {
        if crate::model::is_training_only(&k) {
            continue;
        }
        half.insert(k, t.to_dtype(candle_core::DType::BF16)?);
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
    let tmp = parent.join(format!(".export-partial-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    for f in [mini::CONFIG_FILE, mini::VOCAB_FILE] {
        std::fs::copy(ckpt.join(f), tmp.join(f)).map_err(|e| TrainError::io(&ckpt.join(f), e))?;
    }
    save_tensors(&half, &tmp.join(mini::WEIGHTS_FILE))?;
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|e| TrainError::io(dest, e))?;
    }
    std::fs::rename(&tmp, dest).map_err(|e| TrainError::io(dest, e))
}

/// What `train --init` starts a run from.
#[derive(Debug)]
pub struct Initialised {
    pub params: Params,
    /// The source's output vocabulary (the decoder's ids must keep their meaning).
    pub vocab: OutputVocab,
    /// The checkpoint or reader folder the weights came from.
    pub source: PathBuf,
    /// Tensors resized to this config's page (position tables), by name.
    pub resized: Vec<String>,
}

/// Model fields an `--init` source may differ in: the page side. Every weight keeps its shape
/// except the position tables of the page's patch and token grids, which are resized.
const INIT_MAY_DIFFER: &[&str] = &["canvas"];

/// The dotted paths at which two JSON values differ.
fn json_diff(a: &serde_json::Value, b: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => json_diff(u, v, &p, out),
                    _ => out.push(p),
                }
            }
        }
        _ if a != b => out.push(path.to_string()),
        _ => {}
    }
}

/// Starts `cfg`'s weights from another reader: `src` is a reader folder (`--export`), a checkpoint
/// folder or a run folder (its `latest` checkpoint). Its model may differ from `cfg.model` only in
/// the page side (`canvas`; a page-size curriculum trains on small pages first): the patch
/// encoder's absolute position table (`sam_model.pos_embed`, bicubic with antialiasing), the
/// relative position tables of its global-attention blocks (`rel_pos_h`/`rel_pos_w`, linear) and
/// the global encoder's position table (class row kept, grid rows bicubic) are resized to the new
/// grids by the same interpolation the reader uses at inference on other page sizes; every other
/// tensor is copied as is. Refused, naming the file and field or tensor, otherwise. The optimiser
/// state starts at zero and the run at step 0 of its own schedule.
pub fn init_from(
    src: &Path,
    cfg: &TrainConfig,
    tok: &occ_core::TextTokenizer,
    device: &Device,
) -> TrainResult<Initialised> {
    let dir = if src.join(LATEST_FILE).is_file() {
        latest(src)?.ok_or_else(|| ckpt_err(src, "no checkpoint"))?
    } else {
        src.to_path_buf()
    };
    let cp = dir.join(mini::CONFIG_FILE);
    let theirs = mini::MiniConfig::load(&cp).map_err(|e| ckpt_err(&cp, e.to_string()))?;
    let to_json = |c: &mini::MiniConfig| serde_json::to_value(c).map_err(|e| TrainError::Other(e.to_string()));
    let mut differ = Vec::new();
    json_diff(&to_json(&theirs)?, &to_json(&cfg.model)?, "", &mut differ);
    let refused: Vec<&String> = differ.iter().filter(|p| !INIT_MAY_DIFFER.contains(&p.as_str())).collect();
    if !refused.is_empty() {
        let names: Vec<&str> = refused.iter().map(|s| s.as_str()).collect();
        return Err(ckpt_err(
            &cp,
            format!(
                "its model differs from config {}'s in {} (only `canvas` may differ when starting from another reader)",
                cfg.name,
                names.join(", ")
            ),
        ));
    }
    let vocab = OutputVocab::load(&dir.join(mini::VOCAB_FILE), tok).map_err(|e| ckpt_err(&dir, e.to_string()))?;
    let wp = dir.join(mini::WEIGHTS_FILE);
    let weights = load_tensors(&wp, device)?;
    let params = Params::init(&cfg.model, 0, device)?;
    let mut resized = Vec::new();
    for (name, var) in &params.vars {
        let t = weights.get(name).ok_or_else(|| ckpt_err(&wp, format!("tensor {name} is missing")))?;
        let t = t.to_dtype(candle_core::DType::F32)?;
        let t = if t.dims() == var.dims() {
            t
        } else {
            let r = resized_for_page(name, &t, var.dims())
                .map_err(|e| ckpt_err(&wp, format!("tensor {name}: {e}")))?
                .ok_or_else(|| {
                ckpt_err(&wp, format!("tensor {name} has shape {:?}, expected {:?}", t.dims(), var.dims()))
            })?;
            resized.push(name.clone());
            r
        };
        var.set(&t)?;
    }
    Ok(Initialised { params, vocab, source: dir, resized })
}

/// `table` resized to `want` when it is one of the reader's position tables (see [`init_from`]);
/// `None` for any other tensor.
fn resized_for_page(name: &str, table: &Tensor, want: &[usize]) -> candle_core::Result<Option<Tensor>> {
    use occ_model::nn::interpolate::{resize_grid_bicubic_aa, resize_rows_linear};
    let t = if name.ends_with("sam_model.pos_embed") && want.len() == 4 && want[1] == want[2] {
        // (1, g, g, width)
        resize_grid_bicubic_aa(&table.squeeze(0)?, want[1], want[2])?.unsqueeze(0)?
    } else if (name.ends_with(".attn.rel_pos_h") || name.ends_with(".attn.rel_pos_w")) && want.len() == 2 {
        // (2·side − 1, head_dim)
        resize_rows_linear(table, want[0])?
    } else if name.ends_with("embeddings.position_embedding.weight") && want.len() == 2 {
        // (1 + g², width): the class row, then the grid row-major
        occ_model::clip::resize_position_table(table, want[0])?
    } else {
        return Ok(None);
    };
    if t.dims() != want {
        candle_core::bail!("resized to {:?}, expected {want:?}", t.dims());
    }
    Ok(Some(t))
}
