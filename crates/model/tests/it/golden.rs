//! Golden files of `tests/golden/encoder` and the stage comparison helper.
//!
//! Each stage `S` of a golden safetensors file has `S.head` (first values, flattened row-major),
//! `S.sample` (every k-th value, `k = max(1, ceil(n / SAMPLES))`), `S.stats` (f64: mean, std,
//! abs-max, sum, rms), `S.shape` (i64) and, for small outputs, `S.full`
//! (see `tests/reference/gen_encoder_goldens.py`).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use occ_model::preprocess::ResizeOrder;

/// Values per stage in `S.sample` (must match the generator).
pub const SAMPLES: usize = 2048;

/// Tolerances, relative: max |rust − reference| over the compared values ÷ the stage RMS of the
/// reference. ONE table for every parity test; the first matching prefix wins.
pub const TOLERANCES: &[(&str, f64)] = &[
    ("sam.pos_embed", 1e-5),
    ("sam.rel_pos", 1e-5),
    ("clip.pos_embed", 1e-5),
    ("sam.", 1e-4),
    ("clip.", 1e-4),
    ("concat", 1e-4),
    ("projector", 1e-4),
    ("rows", 1e-4),
];

pub fn tolerance(stage: &str) -> f64 {
    TOLERANCES.iter().find(|(p, _)| stage.starts_with(p)).map(|(_, t)| *t).unwrap_or(1e-4)
}

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/encoder")
}

/// `tests/golden/encoder/meta.json`: how the encoder goldens were made (versions, Pillow, seed).
pub fn encoder_meta() -> serde_json::Value {
    let path = golden_dir().join("meta.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The resize order of the Pillow that made a golden folder (`"pillow"` in its meta.json): its
/// preprocessed views, and everything computed from them, are bit-exact in that order only.
pub fn recorded_resize_order(meta: &serde_json::Value) -> ResizeOrder {
    let version = meta["pillow"].as_str().expect("the goldens' meta.json records the Pillow version");
    ResizeOrder::for_pillow_version(version).expect("a Pillow version")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub struct Golden {
    pub name: String,
    tensors: HashMap<String, Tensor>,
}

/// One stage compared.
#[derive(Debug, Clone)]
pub struct Report {
    pub stage: String,
    pub compared: usize,
    pub max_abs: f64,
    pub rms: f64,
    pub rel: f64,
    pub tol: f64,
    /// Flat index (row-major, batch included) of the worst value, with both values.
    pub worst: (usize, f32, f32),
    pub problem: Option<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problem.is_none() && self.rel <= self.tol
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<28} n={:<6} max_abs={:.3e} rms={:.3e} rel={:.3e} tol={:.0e} worst@{} rust={} ref={} {}",
            self.stage,
            self.compared,
            self.max_abs,
            self.rms,
            self.rel,
            self.tol,
            self.worst.0,
            self.worst.1,
            self.worst.2,
            match (&self.problem, self.rel <= self.tol) {
                (Some(p), _) => format!("FAIL: {p}"),
                (None, true) => "ok".to_string(),
                (None, false) => "FAIL".to_string(),
            }
        )
    }
}

impl Golden {
    pub fn load(file: &str) -> Golden {
        let path = golden_dir().join(file);
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
            .unwrap_or_else(|e| panic!("reading golden {}: {e}", path.display()));
        Golden { name: file.to_string(), tensors }
    }

    fn get(&self, key: &str) -> Option<Vec<f32>> {
        let t = self.tensors.get(key)?;
        Some(t.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).unwrap())
    }

    pub fn stages(&self) -> Vec<String> {
        let mut s: Vec<String> =
            self.tensors.keys().filter_map(|k| k.strip_suffix(".stats")).map(str::to_string).collect();
        s.sort();
        s
    }

    pub fn shape(&self, stage: &str) -> Vec<usize> {
        let t = &self.tensors[&format!("{stage}.shape")];
        t.to_vec1::<i64>().unwrap().into_iter().map(|v| v as usize).collect()
    }

    /// Compares `actual` with the stage's golden head, sample and (if stored) full values.
    pub fn compare(&self, stage: &str, actual: &Tensor) -> Report {
        let tol = tolerance(stage);
        let mut report = Report {
            stage: stage.to_string(),
            compared: 0,
            max_abs: 0.0,
            rms: 0.0,
            rel: f64::INFINITY,
            tol,
            worst: (0, 0.0, 0.0),
            problem: None,
        };
        let Some(stats) = self.tensors.get(&format!("{stage}.stats")) else {
            report.problem = Some(format!("no golden for stage {stage} in {}", self.name));
            return report;
        };
        let stats = stats.to_vec1::<f64>().unwrap();
        report.rms = stats[4];
        let want_shape = self.shape(stage);
        if actual.dims() != want_shape.as_slice() {
            report.problem = Some(format!("shape: expected {want_shape:?}, got {:?}", actual.dims()));
            return report;
        }
        let flat: Vec<f32> =
            actual.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).unwrap();
        let n = flat.len();
        let k = n.div_ceil(SAMPLES).max(1);
        let mut pairs: Vec<(usize, f32)> = Vec::new();
        if let Some(full) = self.get(&format!("{stage}.full")) {
            pairs.extend(full.into_iter().enumerate());
        } else {
            let head = self.get(&format!("{stage}.head")).unwrap_or_default();
            pairs.extend(head.into_iter().enumerate());
            let sample = self.get(&format!("{stage}.sample")).unwrap_or_default();
            pairs.extend(sample.into_iter().enumerate().map(|(i, v)| (i * k, v)));
        }
        let mut max_abs = 0f64;
        for (i, want) in pairs.iter().copied() {
            if i >= n {
                report.problem = Some(format!("golden index {i} beyond {n} values"));
                return report;
            }
            let d = (f64::from(flat[i]) - f64::from(want)).abs();
            if d > max_abs || d.is_nan() {
                max_abs = d;
                report.worst = (i, flat[i], want);
            }
        }
        report.compared = pairs.len();
        report.max_abs = max_abs;
        report.rel = if report.rms > 0.0 { max_abs / report.rms } else { max_abs };
        // The whole-tensor mean must agree too (catches errors outside the sampled values).
        let mean = flat.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        if (mean - stats[0]).abs() > tol * report.rms.max(1e-12) {
            report.problem = Some(format!("mean: expected {:.6e}, got {mean:.6e}", stats[0]));
        }
        report
    }
}

/// Panics with the full table when any stage fails; prints it either way (`--nocapture`).
pub fn assert_reports(title: &str, reports: &[Report]) {
    let table: Vec<String> = reports.iter().map(|r| r.to_string()).collect();
    eprintln!("{title}\n{}", table.join("\n"));
    let failed: Vec<&str> = reports.iter().filter(|r| !r.ok()).map(|r| r.stage.as_str()).collect();
    assert!(failed.is_empty(), "{title}: stages out of tolerance: {failed:?}\n{}", table.join("\n"));
}
