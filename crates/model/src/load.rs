//! Loading real weights: an HF snapshot folder ([`WeightsDir`]), validation of every tensor name and
//! shape against the table derived from the typed configs ([`expected_tensors`]), and the one
//! function that memory-maps safetensors files ([`from_safetensors`]).
//!
//! The table is the one source of checkpoint names and shapes: the loader checks a checkpoint
//! against it, `encoder::expected_tensors` and the trainer read it, and tests tie it to what the
//! modules' constructors actually request ([`requested_tensors`]) and to the real checkpoint's index.
//! Tools that look at a checkpoint without loading it use the same reader and check:
//! [`read_safetensors_header`] (one file), [`read_index`] (`model.safetensors.index.json`),
//! [`WeightsDir::tensors`] (a folder), then [`compare_tensors`] / [`check_tensors`].
//!
//! Where the folder comes from (`--weights`, `OCC_WEIGHTS`, the HF cache, a download) is decided by
//! the CLI; this module only reads the folder it is handed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;

use crate::config::{ConfigError, HfConfig, VisionConfig};
use crate::decoder::DecoderConfig;

/// Errors of locating, validating and opening weights.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{what} not found: {path}")]
    NotFound { what: String, path: PathBuf },
    #[error("reading {path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {problem}")]
    Corrupt { path: PathBuf, problem: String },
    #[error("invalid config {path}")]
    Config { path: PathBuf, source: ConfigError },
    #[error("{0}")]
    Tensors(TensorMismatch),
    #[error("opening weights")]
    Candle(#[from] candle_core::Error),
}

/// What a checkpoint lacks or has wrong.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorMismatch {
    pub missing: Vec<String>,
    /// `(name, expected shape, found shape, file)`
    pub misshaped: Vec<(String, Vec<usize>, Vec<usize>, PathBuf)>,
    pub unexpected: Vec<String>,
}

impl TensorMismatch {
    /// Nothing missing, misshapen or unexpected.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.misshaped.is_empty() && self.unexpected.is_empty()
    }
}

impl std::fmt::Display for TensorMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOW: usize = 12;
        let mut s = format!(
            "the checkpoint does not match DeepSeek-OCR: {} missing, {} with a wrong shape, {} unexpected tensors",
            self.missing.len(),
            self.misshaped.len(),
            self.unexpected.len()
        );
        let mut list = |title: &str, items: Vec<String>| {
            if !items.is_empty() {
                let _ = write!(s, "\n  {title}:");
                for it in items.iter().take(SHOW) {
                    let _ = write!(s, "\n    {it}");
                }
                if items.len() > SHOW {
                    let _ = write!(s, "\n    … and {} more", items.len() - SHOW);
                }
            }
        };
        list("missing", self.missing.clone());
        list(
            "wrong shape",
            self.misshaped
                .iter()
                .map(|(n, e, g, p)| format!("{n}: expected {e:?}, got {g:?} in {}", p.display()))
                .collect(),
        );
        list("unexpected", self.unexpected.clone());
        f.write_str(&s)
    }
}

/// The 2,710 tensors (for the real configs) of a DeepSeek-OCR checkpoint: name → shape (the
/// encoder's [`expected_vision_tensors`] and the decoder's [`expected_decoder_tensors`]).
pub fn expected_tensors(vision: &VisionConfig, dec: &DecoderConfig) -> BTreeMap<String, Vec<usize>> {
    let mut t = expected_vision_tensors(vision);
    t.extend(expected_decoder_tensors(dec));
    t
}

/// The decoder's tensors (`model.embed_tokens`, `model.layers.*`, `model.norm`, `lm_head`): name →
/// shape.
pub fn expected_decoder_tensors(dec: &DecoderConfig) -> BTreeMap<String, Vec<usize>> {
    let mut t: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut put = |name: String, shape: &[usize]| {
        t.insert(name, shape.to_vec());
    };
    let (h, v) = (dec.hidden_size, dec.vocab_size);
    let (qd, kvd) = (dec.num_attention_heads * dec.head_dim(), dec.num_key_value_heads * dec.head_dim());
    put("lm_head.weight".into(), &[v, h]);
    put("model.embed_tokens.weight".into(), &[v, h]);
    put("model.norm.weight".into(), &[h]);
    let mlp = |put: &mut dyn FnMut(String, &[usize]), p: String, width: usize| {
        put(format!("{p}.gate_proj.weight"), &[width, h]);
        put(format!("{p}.up_proj.weight"), &[width, h]);
        put(format!("{p}.down_proj.weight"), &[h, width]);
    };
    for i in 0..dec.num_hidden_layers {
        let l = format!("model.layers.{i}");
        put(format!("{l}.input_layernorm.weight"), &[h]);
        put(format!("{l}.post_attention_layernorm.weight"), &[h]);
        put(format!("{l}.self_attn.q_proj.weight"), &[qd, h]);
        put(format!("{l}.self_attn.k_proj.weight"), &[kvd, h]);
        put(format!("{l}.self_attn.v_proj.weight"), &[kvd, h]);
        put(format!("{l}.self_attn.o_proj.weight"), &[h, qd]);
        if dec.is_moe_layer(i) {
            let n = dec.n_routed_experts.unwrap_or(0);
            put(format!("{l}.mlp.gate.weight"), &[n, h]);
            for e in 0..n {
                mlp(&mut put, format!("{l}.mlp.experts.{e}"), dec.moe_intermediate_size);
            }
            if let Some(s) = dec.n_shared_experts {
                mlp(&mut put, format!("{l}.mlp.shared_experts"), dec.moe_intermediate_size * s);
            }
        } else {
            mlp(&mut put, format!("{l}.mlp"), dec.intermediate_size);
        }
    }
    t
}

/// Tensors of the checkpoint that no module reads: CLIP's patch embedding (the DeepEncoder feeds
/// CLIP SAM's features in place of patch embeddings). They are expected in a checkpoint; the
/// constructors never request them.
pub const UNREAD_TENSORS: [&str; 1] = ["model.vision_model.embeddings.patch_embedding.weight"];

/// The DeepEncoder's tensors in a checkpoint (`model.sam_model.*`, `model.vision_model.*`,
/// `model.projector.*` and the two layout vectors): name → shape. [`UNREAD_TENSORS`] are among
/// them.
pub fn expected_vision_tensors(vision: &VisionConfig) -> BTreeMap<String, Vec<usize>> {
    let mut t: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut put = |name: String, shape: &[usize]| {
        t.insert(name, shape.to_vec());
    };
    // layout vectors and projector
    let (p, n) = (vision.projector.input_dim, vision.projector.n_embed);
    put("model.image_newline".into(), &[n]);
    put("model.view_seperator".into(), &[n]);
    put("model.projector.layers.weight".into(), &[n, p]);
    put("model.projector.layers.bias".into(), &[n]);
    // SAM
    let s = &vision.sam;
    let w = s.width;
    let sp = "model.sam_model";
    put(format!("{sp}.patch_embed.proj.weight"), &[w, s.in_chans, s.patch_size, s.patch_size]);
    put(format!("{sp}.patch_embed.proj.bias"), &[w]);
    put(format!("{sp}.pos_embed"), &[1, s.pos_grid(), s.pos_grid(), w]);
    for i in 0..s.depth {
        let b = format!("{sp}.blocks.{i}");
        for norm in ["norm1", "norm2"] {
            put(format!("{b}.{norm}.weight"), &[w]);
            put(format!("{b}.{norm}.bias"), &[w]);
        }
        put(format!("{b}.attn.qkv.weight"), &[3 * w, w]);
        put(format!("{b}.attn.qkv.bias"), &[3 * w]);
        put(format!("{b}.attn.proj.weight"), &[w, w]);
        put(format!("{b}.attn.proj.bias"), &[w]);
        let side = if s.global_attn_indexes.contains(&i) { s.pos_grid() } else { s.window_size };
        put(format!("{b}.attn.rel_pos_h"), &[2 * side - 1, s.head_dim()]);
        put(format!("{b}.attn.rel_pos_w"), &[2 * side - 1, s.head_dim()]);
        put(format!("{b}.mlp.lin1.weight"), &[s.mlp_dim, w]);
        put(format!("{b}.mlp.lin1.bias"), &[s.mlp_dim]);
        put(format!("{b}.mlp.lin2.weight"), &[w, s.mlp_dim]);
        put(format!("{b}.mlp.lin2.bias"), &[w]);
    }
    let o = s.out_chans;
    put(format!("{sp}.neck.0.weight"), &[o, w, 1, 1]);
    put(format!("{sp}.neck.1.weight"), &[o]);
    put(format!("{sp}.neck.1.bias"), &[o]);
    put(format!("{sp}.neck.2.weight"), &[o, o, 3, 3]);
    put(format!("{sp}.neck.3.weight"), &[o]);
    put(format!("{sp}.neck.3.bias"), &[o]);
    let [d0, d1] = s.downsample_channels;
    put(format!("{sp}.net_2.weight"), &[d0, o, 3, 3]);
    put(format!("{sp}.net_3.weight"), &[d1, d0, 3, 3]);
    // CLIP
    let c = &vision.clip;
    let cw = c.width;
    let cp = "model.vision_model";
    put(format!("{cp}.embeddings.class_embedding"), &[cw]);
    put(format!("{cp}.embeddings.patch_embedding.weight"), &[cw, 3, c.patch_size, c.patch_size]);
    put(format!("{cp}.embeddings.position_embedding.weight"), &[c.pos_grid() * c.pos_grid() + 1, cw]);
    put(format!("{cp}.pre_layrnorm.weight"), &[cw]);
    put(format!("{cp}.pre_layrnorm.bias"), &[cw]);
    for i in 0..c.layers {
        let l = format!("{cp}.transformer.layers.{i}");
        for norm in ["layer_norm1", "layer_norm2"] {
            put(format!("{l}.{norm}.weight"), &[cw]);
            put(format!("{l}.{norm}.bias"), &[cw]);
        }
        put(format!("{l}.self_attn.qkv_proj.weight"), &[3 * cw, cw]);
        put(format!("{l}.self_attn.qkv_proj.bias"), &[3 * cw]);
        put(format!("{l}.self_attn.out_proj.weight"), &[cw, cw]);
        put(format!("{l}.self_attn.out_proj.bias"), &[cw]);
        put(format!("{l}.mlp.fc1.weight"), &[c.ffn_dim, cw]);
        put(format!("{l}.mlp.fc1.bias"), &[c.ffn_dim]);
        put(format!("{l}.mlp.fc2.weight"), &[cw, c.ffn_dim]);
        put(format!("{l}.mlp.fc2.bias"), &[cw]);
    }
    t
}

/// The tensors a model constructor requests from its [`VarBuilder`] (`build` gets one at the
/// checkpoint root), with the shapes it asks for, in request order: e.g.
/// `requested_tensors(|vb| DeepEncoder::new(&cfg, vb))`. The weights are never read (every request is
/// answered with a broadcast zero of the asked shape, float32 on the CPU), but what the constructor
/// computes from them (concatenations, stacks) is computed: use small configs for the decoder.
/// Tests tie [`expected_tensors`] to this.
pub fn requested_tensors<T>(
    build: impl FnOnce(VarBuilder<'static>) -> candle_core::Result<T>,
) -> candle_core::Result<Vec<(String, Vec<usize>)>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let vb = VarBuilder::from_backend(Box::new(ShapeRecorder(seen.clone())), DType::F32, Device::Cpu);
    build(vb)?;
    let list = seen.lock().map_err(|_| candle_core::Error::Msg("requested_tensors: poisoned lock".into()))?.clone();
    Ok(list)
}

/// Names and shapes requested so far.
type Requests = Arc<Mutex<Vec<(String, Vec<usize>)>>>;

/// A backend that records every request and answers with a broadcast zero of the asked shape.
struct ShapeRecorder(Requests);

impl candle_nn::var_builder::SimpleBackend for ShapeRecorder {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if let Ok(mut seen) = self.0.lock() {
            seen.push((name.to_string(), s.dims().to_vec()));
        }
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("tensor {name} was requested without a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// One tensor of a safetensors header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub file: PathBuf,
}

fn corrupt(path: &Path, problem: impl Into<String>) -> LoadError {
    LoadError::Corrupt { path: path.to_path_buf(), problem: problem.into() }
}

fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "BF16" | "F16" | "I16" | "U16" => 2,
        "F32" | "I32" | "U32" => 4,
        "F64" | "I64" | "U64" => 8,
        _ => return None,
    })
}

/// Reads and checks the header of one safetensors file: every tensor's byte range must lie inside
/// the file and match its dtype and shape, so a truncated or corrupted file is reported by name
/// before anything is mapped.
pub fn read_safetensors_header(path: &Path) -> Result<BTreeMap<String, TensorInfo>, LoadError> {
    let io = |e| LoadError::Io { path: path.to_path_buf(), source: e };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    if file_len < 8 {
        return Err(corrupt(
            path,
            format!("not a safetensors file: {file_len} bytes, fewer than the 8-byte header size"),
        ));
    }
    let mut len8 = [0u8; 8];
    f.read_exact(&mut len8).map_err(io)?;
    let n = u64::from_le_bytes(len8);
    if n > 100 << 20 || 8 + n > file_len {
        return Err(corrupt(
            path,
            format!("not a safetensors file or truncated: header size {n} bytes, file size {file_len} bytes"),
        ));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(io)?;
    let doc: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| corrupt(path, format!("the safetensors header is not valid JSON: {e}")))?;
    let obj = doc.as_object().ok_or_else(|| corrupt(path, "the safetensors header is not a JSON object"))?;
    let data_len = file_len - 8 - n;
    let mut out = BTreeMap::new();
    let mut max_end = 0u64;
    for (name, entry) in obj {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: &str| corrupt(path, format!("tensor {name}: {what} in the header"));
        let dtype = entry.get("dtype").and_then(|d| d.as_str()).ok_or_else(|| bad("no dtype"))?;
        let shape: Vec<usize> = entry
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("a non-integer dimension"))?;
        let offs = entry.get("data_offsets").and_then(|o| o.as_array()).ok_or_else(|| bad("no data_offsets"))?;
        let (start, end) = match offs.as_slice() {
            [a, b] => {
                (a.as_u64().ok_or_else(|| bad("bad data_offsets"))?, b.as_u64().ok_or_else(|| bad("bad data_offsets"))?)
            }
            _ => return Err(bad("bad data_offsets")),
        };
        let size = dtype_size(dtype).ok_or_else(|| bad(&format!("unknown dtype {dtype}")))?;
        // Checked: a shape like [2^32, 2^32] must not wrap to a size that matches an empty range.
        let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let Some((numel, bytes)) = numel.and_then(|n| Some((n, n.checked_mul(size)?))) else {
            return Err(bad(&format!("shape {shape:?} of {dtype} values overflows the address space")));
        };
        if end < start || end - start != bytes as u64 {
            return Err(bad(&format!(
                "byte range {start}..{end} does not hold {numel} {dtype} values ({bytes} bytes)"
            )));
        }
        max_end = max_end.max(end);
        out.insert(name.clone(), TensorInfo { dtype: dtype.to_string(), shape, file: path.to_path_buf() });
    }
    if max_end > data_len {
        return Err(corrupt(
            path,
            format!(
                "file is truncated: its header declares {max_end} bytes of tensor data, the file holds {data_len} \
                 (file size {file_len} bytes); download it again"
            ),
        ));
    }
    Ok(out)
}

/// Memory-maps safetensors files into a [`VarBuilder`] that casts to `dtype` on `device`.
///
/// Headers are checked first ([`read_safetensors_header`]), so a truncated file fails with its name.
// The workspace denies unsafe code; memory-mapping is the one exception (see SAFETY below).
#[allow(unsafe_code)]
pub fn from_safetensors(paths: &[PathBuf], dtype: DType, device: &Device) -> Result<VarBuilder<'static>, LoadError> {
    for p in paths {
        read_safetensors_header(p)?;
    }
    // SAFETY: memory-mapping is `unsafe` because another process could modify or truncate the file
    // while it is mapped. The files are checkpoint files opened read-only for the duration of the
    // run; their headers and byte ranges were validated just above, and candle copies every tensor
    // out of the map (casting to `dtype`, moving to `device`) when the model is built.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(paths, dtype, device) }?;
    Ok(vb)
}

/// An HF snapshot folder of deepseek-ai/DeepSeek-OCR.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightsDir {
    pub root: PathBuf,
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    /// The safetensors files (from `model.safetensors.index.json` when present).
    pub weights: Vec<PathBuf>,
}

impl WeightsDir {
    /// Finds `config.json`, `tokenizer.json` and the safetensors files in `root`.
    pub fn open(root: &Path) -> Result<WeightsDir, LoadError> {
        if !root.is_dir() {
            return Err(LoadError::NotFound { what: "weights folder".into(), path: root.to_path_buf() });
        }
        let need = |name: &str| {
            let p = root.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(LoadError::NotFound { what: name.to_string(), path: p })
            }
        };
        let config = need("config.json")?;
        let tokenizer = need("tokenizer.json")?;
        let index = root.join("model.safetensors.index.json");
        let weights = if index.is_file() {
            let map = read_index(&index)?;
            let files: BTreeSet<&str> = map.values().map(String::as_str).collect();
            files
                .into_iter()
                .map(|f| {
                    let p = root.join(f);
                    if p.is_file() {
                        Ok(p)
                    } else {
                        Err(LoadError::NotFound {
                            what: format!("weights file {f} listed in {}", index.display()),
                            path: p,
                        })
                    }
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            let rd = std::fs::read_dir(root).map_err(|e| LoadError::Io { path: root.to_path_buf(), source: e })?;
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            files.sort();
            files
        };
        if weights.is_empty() {
            return Err(LoadError::NotFound {
                what: "model*.safetensors weights (or model.safetensors.index.json)".into(),
                path: root.to_path_buf(),
            });
        }
        Ok(WeightsDir { root: root.to_path_buf(), config, tokenizer, weights })
    }

    /// `config.json` parsed into the typed vision and decoder configs.
    pub fn configs(&self) -> Result<(VisionConfig, DecoderConfig), LoadError> {
        let text = std::fs::read_to_string(&self.config)
            .map_err(|e| LoadError::Io { path: self.config.clone(), source: e })?;
        let cfg_err = |e| LoadError::Config { path: self.config.clone(), source: e };
        let hf = HfConfig::from_json(&text).map_err(cfg_err)?;
        let vision = VisionConfig::try_from(&hf).map_err(cfg_err)?;
        let dec = DecoderConfig::try_from(&hf).map_err(cfg_err)?;
        Ok((vision, dec))
    }

    /// Every tensor of every file ([`read_safetensors_header`] of each; nothing is mapped).
    pub fn tensors(&self) -> Result<BTreeMap<String, TensorInfo>, LoadError> {
        let mut found: BTreeMap<String, TensorInfo> = BTreeMap::new();
        for f in &self.weights {
            found.extend(read_safetensors_header(f)?);
        }
        Ok(found)
    }

    /// Every tensor of every file, checked against `expected` (names and shapes).
    pub fn validate(&self, expected: &BTreeMap<String, Vec<usize>>) -> Result<(), LoadError> {
        check_tensors(expected, &self.tensors()?)
    }

    /// The mapped weights.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> Result<VarBuilder<'static>, LoadError> {
        from_safetensors(&self.weights, dtype, device)
    }
}

/// The `weight_map` of a `model.safetensors.index.json`: tensor name → the file (relative to the
/// index's folder) that holds it.
pub fn read_index(path: &Path) -> Result<BTreeMap<String, String>, LoadError> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Io { path: path.to_path_buf(), source: e })?;
    let index: Index = serde_json::from_str(&text)
        .map_err(|e| corrupt(path, format!("not a safetensors index (a weight_map of names to files): {e}")))?;
    Ok(index.weight_map)
}

/// Compares found tensors with the expected table ([`check_tensors`] as an error).
pub fn check_tensors(
    expected: &BTreeMap<String, Vec<usize>>,
    found: &BTreeMap<String, TensorInfo>,
) -> Result<(), LoadError> {
    let m = compare_tensors(expected, found);
    if m.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Tensors(m))
    }
}

/// What `found` lacks, has with another shape, or has beyond `expected`, each list in name order.
pub fn compare_tensors(
    expected: &BTreeMap<String, Vec<usize>>,
    found: &BTreeMap<String, TensorInfo>,
) -> TensorMismatch {
    let mut m = TensorMismatch::default();
    for (name, shape) in expected {
        match found.get(name) {
            None => m.missing.push(name.clone()),
            Some(info) if &info.shape != shape => {
                m.misshaped.push((name.clone(), shape.clone(), info.shape.clone(), info.file.clone()))
            }
            Some(_) => {}
        }
    }
    m.unexpected = found.keys().filter(|k| !expected.contains_key(*k)).cloned().collect();
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = include_str!("../assets/deepseek-ocr/model.safetensors.index.json");

    fn real_table() -> BTreeMap<String, Vec<usize>> {
        expected_tensors(&VisionConfig::deepseek_ocr(), &DecoderConfig::deepseek_ocr())
    }

    #[test]
    fn expected_table_matches_the_real_index_names_and_sizes() {
        let table = real_table();
        assert_eq!(table.len(), 2710);
        let doc: serde_json::Value = serde_json::from_str(INDEX).unwrap();
        let names: BTreeSet<&str> = doc["weight_map"].as_object().unwrap().keys().map(|s| s.as_str()).collect();
        let ours: BTreeSet<&str> = table.keys().map(|s| s.as_str()).collect();
        assert_eq!(ours, names);
        // total_size of the bf16 checkpoint (docs/MODEL.md §8): 2 bytes per parameter
        let params: usize = table.values().map(|s| s.iter().product::<usize>()).sum();
        assert_eq!(params, 3_336_106_240);
        assert_eq!(2 * params as u64, doc["metadata"]["total_size"].as_u64().unwrap());
        assert_eq!(table["model.sam_model.blocks.2.attn.rel_pos_h"], [127, 64]);
        assert_eq!(table["model.sam_model.blocks.3.attn.rel_pos_w"], [27, 64]);
        assert_eq!(table["model.layers.5.mlp.shared_experts.down_proj.weight"], [1280, 1792]);
    }

    /// What the encoder's and the decoder's constructors request, as a table (a name requested twice
    /// must be asked with one shape).
    fn requested(vision: &VisionConfig, dec: &DecoderConfig) -> BTreeMap<String, Vec<usize>> {
        let mut list = requested_tensors(|vb| crate::encoder::DeepEncoder::new(vision, vb)).unwrap();
        list.extend(requested_tensors(|vb| crate::decoder::DecoderModel::new(dec, vb)).unwrap());
        let mut table = BTreeMap::new();
        for (name, shape) in list {
            if let Some(before) = table.insert(name.clone(), shape.clone()) {
                assert_eq!(before, shape, "{name} requested with two shapes");
            }
        }
        table
    }

    #[test]
    fn expected_table_is_what_the_modules_request() {
        use crate::mini::{MiniClip, MiniConfig, MiniDecoder, MiniSam};
        let mini = MiniConfig {
            canvas: 256,
            vocab_size: 300,
            sam: MiniSam {
                width: 32,
                depth: 2,
                heads: 2,
                mlp_dim: 64,
                window_size: 4,
                global_attn_indexes: vec![1],
                out_chans: 16,
                downsample_channels: [32, 64],
                ink_input: false,
            },
            clip: MiniClip { layers: 1, heads: 2, ffn_dim: 64 },
            decoder: MiniDecoder {
                hidden_size: 64,
                layers: 3,
                heads: 4,
                intermediate_size: 96,
                moe_intermediate_size: 32,
                experts: 4,
                experts_per_token: 2,
                shared_experts: 1,
                first_dense_layers: 1,
                max_positions: 512,
            },
        };
        mini.validate().unwrap();
        let dense = DecoderConfig { n_routed_experts: None, n_shared_experts: None, ..DecoderConfig::tiny() };
        let every_other = DecoderConfig { moe_layer_freq: 2, num_hidden_layers: 4, ..DecoderConfig::tiny() };
        let cases = [
            ("real encoder, reduced decoder", VisionConfig::deepseek_ocr(), DecoderConfig::reduced()),
            ("tiny", VisionConfig::tiny(), DecoderConfig::tiny()),
            ("tiny, dense decoder", VisionConfig::tiny(), dense),
            ("tiny, MoE every other layer", VisionConfig::tiny(), every_other),
            ("mini reader", mini.vision(), mini.decoder_config()),
        ];
        for (what, vision, dec) in cases {
            let mut table = expected_tensors(&vision, &dec);
            for name in UNREAD_TENSORS {
                assert!(table.remove(name).is_some(), "{what}: {name} is in the checkpoint table");
            }
            let asked = requested(&vision, &dec);
            let only = |a: &BTreeMap<String, Vec<usize>>, b: &BTreeMap<String, Vec<usize>>| -> Vec<String> {
                a.keys().filter(|k| !b.contains_key(*k)).cloned().collect()
            };
            assert!(
                only(&table, &asked).is_empty(),
                "{what}: in the table, never requested: {:?}",
                only(&table, &asked)
            );
            assert!(only(&asked, &table).is_empty(), "{what}: requested, not in the table: {:?}", only(&asked, &table));
            assert_eq!(table, asked, "{what}: shapes");
            // what the encoder reads is what `encoder::expected_tensors` lists
            let listed: BTreeMap<String, Vec<usize>> =
                crate::encoder::expected_tensors(&vision).unwrap().into_iter().collect();
            let reads = requested_tensors(|vb| crate::encoder::DeepEncoder::new(&vision, vb)).unwrap();
            assert_eq!(listed, reads.into_iter().collect(), "{what}");
        }
    }

    #[test]
    fn index_reader_gives_the_weight_map() {
        let dir = std::env::temp_dir().join(format!("occ-index-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.safetensors.index.json");
        std::fs::write(&path, INDEX).unwrap();
        let map = read_index(&path).unwrap();
        assert_eq!(map.len(), 2710);
        assert_eq!(map.keys().cloned().collect::<BTreeSet<_>>(), real_table().keys().cloned().collect());
        std::fs::write(&path, r#"{"weight_map":{"a":1}}"#).unwrap();
        let err = read_index(&path).unwrap_err().to_string();
        assert!(err.contains("model.safetensors.index.json") && err.contains("weight_map"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    fn info(shape: &[usize]) -> TensorInfo {
        TensorInfo { dtype: "BF16".into(), shape: shape.to_vec(), file: PathBuf::from("model.safetensors") }
    }

    #[test]
    fn mismatch_lists_missing_misshaped_and_unexpected() {
        let table = real_table();
        let mut found: BTreeMap<String, TensorInfo> = table.iter().map(|(k, v)| (k.clone(), info(v))).collect();
        assert!(check_tensors(&table, &found).is_ok());
        found.remove("model.layers.3.mlp.experts.17.up_proj.weight");
        found.insert("model.norm.weight".into(), info(&[1024]));
        found.insert("model.extra".into(), info(&[1]));
        let m = compare_tensors(&table, &found);
        assert_eq!((m.missing.len(), m.misshaped.len(), m.unexpected.len()), (1, 1, 1));
        let err = check_tensors(&table, &found).unwrap_err().to_string();
        assert!(err.contains("1 missing, 1 with a wrong shape, 1 unexpected"), "{err}");
        assert!(err.contains("model.layers.3.mlp.experts.17.up_proj.weight"), "{err}");
        assert!(err.contains("model.norm.weight: expected [1280], got [1024]"), "{err}");
        assert!(err.contains("model.extra"), "{err}");
    }

    fn write_st(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn tiny_safetensors() -> Vec<u8> {
        let header = br#"{"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header);
        v.extend_from_slice(&[0u8; 16]);
        v
    }

    #[test]
    fn corrupted_and_truncated_files_are_named() {
        let dir = std::env::temp_dir().join(format!("occ-load-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = write_st(&dir, "good.safetensors", &tiny_safetensors());
        let h = read_safetensors_header(&good).unwrap();
        assert_eq!(h["a.weight"].shape, [2, 2]);
        let bytes = tiny_safetensors();
        let truncated = write_st(&dir, "truncated.safetensors", &bytes[..bytes.len() - 4]);
        let err = read_safetensors_header(&truncated).unwrap_err().to_string();
        assert!(err.contains("truncated.safetensors") && err.contains("truncated"), "{err}");
        let garbage = write_st(&dir, "garbage.safetensors", b"\x10\0\0\0\0\0\0\0not json at all!");
        let err = read_safetensors_header(&garbage).unwrap_err().to_string();
        assert!(err.contains("garbage.safetensors") && err.contains("not valid JSON"), "{err}");
        let tiny = write_st(&dir, "tiny.safetensors", b"abc");
        let err = from_safetensors(&[tiny], DType::F32, &Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("tiny.safetensors") && err.contains("3 bytes"), "{err}");
        let huge = write_st(&dir, "huge.safetensors", &u64::MAX.to_le_bytes());
        assert!(read_safetensors_header(&huge).unwrap_err().to_string().contains("header size"));
        let vb = from_safetensors(&[good], DType::F32, &Device::Cpu).unwrap();
        assert_eq!(vb.get((2, 2), "a.weight").unwrap().dims(), [2, 2]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn weights_dir_reports_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("occ-wdir-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = WeightsDir::open(&dir).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
        let err = WeightsDir::open(&dir).unwrap_err().to_string();
        assert!(err.contains("safetensors"), "{err}");
        std::fs::write(dir.join("model.safetensors.index.json"), r#"{"weight_map":{"a":"model-1.safetensors"}}"#)
            .unwrap();
        let err = WeightsDir::open(&dir).unwrap_err().to_string();
        assert!(err.contains("model-1.safetensors"), "{err}");
        write_st(&dir, "model-1.safetensors", &tiny_safetensors());
        let w = WeightsDir::open(&dir).unwrap();
        assert_eq!(w.weights.len(), 1);
        std::fs::remove_dir_all(&dir).ok();
    }
}
