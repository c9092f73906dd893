//! The loop on a tiny config: the loss falls, resume is exact, checkpoints round-trip, and bad
//! states are refused by name.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use occ_train::checkpoint;
use occ_train::trainer::{Silent, StepLog, TRAIN_LOG};
use occ_train::{train, TrainConfig, TrainError, TrainOptions};

use crate::common::{tempdir, tiny_config};

fn opts(run: &Path, resume: bool, stop_at: Option<usize>) -> TrainOptions {
    TrainOptions {
        run_dir: run.into(),
        resume,
        init: None,
        stop_at,
        time_limit: None,
        stop: None,
        device: Device::Cpu,
        prefetch: 2,
    }
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn assert_same(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) {
    assert_eq!(a.len(), b.len());
    for (k, x) in a {
        let y = &b[k];
        let (x, y) =
            (x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), y.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()), "{k} differs");
    }
}

#[test]
fn the_loss_falls() {
    let dir = tempdir();
    let cfg = tiny_config(dir.path(), |s| s);
    let run = dir.path().join("run");
    let summary = train(&cfg, &opts(&run, false, None), &mut Silent).unwrap();
    assert_eq!(summary.end_step, 40);
    let log: Vec<StepLog> = std::fs::read_to_string(run.join(TRAIN_LOG))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(log.len(), 40, "every step journaled once");
    let first = log[0].loss;
    let last: f64 = log[35..].iter().map(|s| s.loss).sum::<f64>() / 5.0;
    assert!(first > 5.0, "starts near ln(320): {first}");
    assert!(last < first - 1.0, "loss {first} -> {last}");
    for f in ["curves.parquet", "eval.parquet", "loss.svg", "precision.svg"] {
        assert!(run.join(f).exists(), "{f}");
    }
    // the final evaluation ran through the inference engine, and measured the teacher-forced
    // loss with each page's own image and with another page's
    assert_eq!(summary.last_eval.len(), 1);
    let e = &summary.last_eval[0];
    assert!(e.loss.is_finite() && e.loss < first, "validation loss {}", e.loss);
    assert!(e.loss_other_image.is_finite() && e.loss_other_image > 0.0, "{}", e.loss_other_image);
    // and the same on validation probes (random strings and shuffled words)
    assert!(e.probe_loss.is_finite() && e.probe_loss > 0.0, "probe loss {}", e.probe_loss);
    assert!(e.probe_loss_other_image.is_finite() && e.probe_gain().is_finite(), "{}", e.probe_loss_other_image);
    let evals: Vec<occ_train::trainer::EvalLog> = std::fs::read_to_string(run.join("eval_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(evals.iter().all(|x| x.loss.is_finite() && x.image_gain().is_finite() && x.probe_gain().is_finite()));
    // a journal line written before probes were measured reads back with NaN probe losses
    let old_line = r#"{"step":4,"ratio":1.5,"pages":2,"char_precision":0.1,"stopped":0.0,"loss":3.0,"loss_other_image":3.1,"seconds":0.2,"sample":"x"}"#;
    let old: occ_train::trainer::EvalLog = serde_json::from_str(old_line).unwrap();
    assert!(old.probe_loss.is_nan() && old.probe_gain().is_nan() && (old.image_gain() - 0.1).abs() < 1e-9);
    // JSON has no NaN: an undefined loss is written as null and read back as NaN
    let mut undefined = evals[0].clone();
    undefined.loss_other_image = f64::NAN;
    let line = serde_json::to_string(&undefined).unwrap();
    assert!(line.contains("\"loss_other_image\":null"), "{line}");
    let back: occ_train::trainer::EvalLog = serde_json::from_str(&line).unwrap();
    assert!(back.loss_other_image.is_nan() && back.image_gain().is_nan());
    // and the checkpoint is a reader the engine loads
    let ckpt = checkpoint::latest(&run).unwrap().unwrap();
    let engine = occ_model::pipeline::DeepseekOcr::from_mini_dir(&ckpt, candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(occ_core::OcrEngine::info(&engine).name, "mini");
}

#[test]
fn resume_equals_an_uninterrupted_run_and_checkpoints_round_trip() {
    let dir = tempdir();
    let cfg = tiny_config(dir.path(), |s| s);
    let whole = dir.path().join("whole");
    let parts = dir.path().join("parts");
    train(&cfg, &opts(&whole, false, Some(4)), &mut Silent).unwrap();
    train(&cfg, &opts(&parts, false, Some(2)), &mut Silent).unwrap();
    let s = train(&cfg, &opts(&parts, true, Some(4)), &mut Silent).unwrap();
    assert_eq!((s.start_step, s.end_step), (2, 4));
    let a = whole.join(checkpoint::folder_name(4));
    let b = parts.join(checkpoint::folder_name(4));
    assert_same(&tensors(&a.join("model.safetensors")), &tensors(&b.join("model.safetensors")));
    assert_same(&tensors(&a.join(checkpoint::OPTIMIZER_FILE)), &tensors(&b.join(checkpoint::OPTIMIZER_FILE)));
    // the journal holds each step once
    let log = std::fs::read_to_string(parts.join(TRAIN_LOG)).unwrap();
    assert_eq!(log.lines().count(), 4, "{log}");

    // load = what was saved, bit for bit
    let tok = occ_core::TextTokenizer::deepseek_ocr().unwrap();
    let r = checkpoint::load(&a, &cfg, &tok, &Device::Cpu).unwrap();
    assert_eq!(r.state.step, 4);
    let saved = tensors(&a.join("model.safetensors"));
    let loaded: HashMap<String, Tensor> = r.params.tensors().into_iter().collect();
    assert_same(&saved, &loaded);
    let o = r.optim.unwrap();
    assert_eq!(o.t, 4);
    let moments: HashMap<String, Tensor> =
        o.m.iter()
            .map(|(k, v)| (format!("m.{k}"), v.clone()))
            .chain(o.v.iter().map(|(k, v)| (format!("v.{k}"), v.clone())))
            .collect();
    assert_same(&tensors(&a.join(checkpoint::OPTIMIZER_FILE)), &moments);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn bad_states_are_refused_and_the_last_good_checkpoint_stays() {
    let dir = tempdir();
    let cfg = tiny_config(dir.path(), |s| s);
    let run = dir.path().join("run");
    train(&cfg, &opts(&run, false, Some(4)), &mut Silent).unwrap();
    let latest = || checkpoint::latest(&run).unwrap().unwrap();
    assert!(latest().ends_with(checkpoint::folder_name(4)));

    // a fresh start on a folder with checkpoints is refused; so is --resume without one
    let err = train(&cfg, &opts(&run, false, Some(6)), &mut Silent).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");
    let err = train(&cfg, &opts(&dir.path().join("empty"), true, Some(6)), &mut Silent).unwrap_err().to_string();
    assert!(err.contains("no checkpoint"), "{err}");

    // exploding loss: stops at the step, names it, keeps the checkpoint
    let mut tight: TrainConfig = cfg.clone();
    tight.optim.max_loss = 0.01;
    match train(&tight, &opts(&run, true, Some(6)), &mut Silent) {
        Err(TrainError::Diverged { step, .. }) => assert_eq!(step, 4),
        other => panic!("expected divergence, got {other:?}"),
    }
    assert!(latest().ends_with(checkpoint::folder_name(4)));

    // an interrupted checkpoint write leaves the previous checkpoint as latest
    std::fs::create_dir_all(run.join(".ckpt-0000006.partial-999")).unwrap();
    std::fs::write(run.join(".ckpt-0000006.partial-999/model.safetensors"), b"half a file").unwrap();
    let s = train(&cfg, &opts(&run, true, Some(5)), &mut Silent).unwrap();
    assert_eq!(s.start_step, 4);

    // another architecture is refused, naming both
    let other = tiny_config(&dir.path().join("o").tap_mkdir(), |s| s.replace("width = 16", "width = 24"));
    let err = train(&other, &opts(&run, true, Some(6)), &mut Silent).unwrap_err().to_string();
    assert!(err.contains("architecture"), "{err}");

    // a truncated weights file is refused, naming it
    let cut = dir.path().join("cut");
    copy_dir(&run, &cut);
    let w = checkpoint::latest(&cut).unwrap().unwrap().join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    let err = train(&cfg, &opts(&cut, true, Some(6)), &mut Silent).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");

    // weights only (optimizer state dropped): a warm restart
    let warm = dir.path().join("warm");
    copy_dir(&run, &warm);
    std::fs::remove_file(checkpoint::latest(&warm).unwrap().unwrap().join(checkpoint::OPTIMIZER_FILE)).unwrap();
    let mut seen = String::new();
    struct Kind<'a>(&'a mut String);
    impl occ_train::Observer for Kind<'_> {
        fn started(&mut self, info: &occ_train::trainer::StartInfo) {
            *self.0 = info.resume_kind.clone();
        }
    }
    train(&cfg, &opts(&warm, true, Some(6)), &mut Kind(&mut seen)).unwrap();
    assert_eq!(seen, "warm-restart");

    // an output folder that cannot be created is refused before any work
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = train(&cfg, &opts(&file.join("run"), false, Some(2)), &mut Silent).unwrap_err().to_string();
    assert!(err.contains("a-file"), "{err}");
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// `optim.cell_loss`: the cell head trains with the reader, is journaled, resumes exactly (it is in
/// the checkpoint), joins a run that did not have it when switched on at a resume, and stays out of
/// an exported reader; both load as readers.
#[test]
fn the_cell_loss_resumes_exactly_and_stays_out_of_exports() {
    let dir = tempdir();
    let cfg = tiny_config(dir.path(), |s| s.replace("warmup_steps = 4", "warmup_steps = 4\ncell_loss = 0.5"));
    assert_eq!(cfg.optim.cell_loss, 0.5);
    let whole = dir.path().join("whole");
    let parts = dir.path().join("parts");
    train(&cfg, &opts(&whole, false, Some(4)), &mut Silent).unwrap();
    train(&cfg, &opts(&parts, false, Some(2)), &mut Silent).unwrap();
    train(&cfg, &opts(&parts, true, Some(4)), &mut Silent).unwrap();
    let a = whole.join(checkpoint::folder_name(4));
    let b = parts.join(checkpoint::folder_name(4));
    let weights = tensors(&a.join("model.safetensors"));
    assert!(weights.contains_key(occ_train::model::CELL_HEAD), "the head is in the checkpoint");
    assert_same(&weights, &tensors(&b.join("model.safetensors")));
    assert_same(&tensors(&a.join(checkpoint::OPTIMIZER_FILE)), &tensors(&b.join(checkpoint::OPTIMIZER_FILE)));
    let log: Vec<StepLog> = std::fs::read_to_string(whole.join(TRAIN_LOG))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ln_v = (cfg.model.vocab_size as f64).ln();
    for s in &log {
        let c = s.cell_loss.expect("the cell loss is journaled");
        assert!(c.is_finite() && c > 0.0 && c < 2.0 * ln_v, "step {}: cell loss {c}", s.step);
    }
    // exported: the reader's tensors only, and both load as readers
    let out = dir.path().join("reader");
    checkpoint::export(&a, &out).unwrap();
    let exported = tensors(&out.join("model.safetensors"));
    assert!(!exported.contains_key(occ_train::model::CELL_HEAD));
    assert_eq!(exported.len() + 1, weights.len());
    for d in [&a, &out] {
        occ_model::pipeline::DeepseekOcr::from_mini_dir(d, candle_core::DType::F32, &Device::Cpu).unwrap();
    }
    // switched on at a resume of a run without it: the head joins (fresh moments) and trains
    let plain = tiny_config(dir.path(), |s| s);
    let late = dir.path().join("late");
    train(&plain, &opts(&late, false, Some(2)), &mut Silent).unwrap();
    assert!(!tensors(&late.join(checkpoint::folder_name(2)).join("model.safetensors"))
        .contains_key(occ_train::model::CELL_HEAD));
    train(&cfg, &opts(&late, true, Some(3)), &mut Silent).unwrap();
    let w = tensors(&late.join(checkpoint::folder_name(3)).join("model.safetensors"));
    assert!(w.contains_key(occ_train::model::CELL_HEAD));
}

/// A page-size curriculum: a 256-px run starts from a 128-px run's weights. Every tensor but the
/// position tables is copied bit for bit, those are resized to the new grids, the source's
/// vocabulary is kept, and the new run trains from step 0; a model that differs in anything but
/// the page side is refused by field.
#[test]
fn a_run_starts_from_another_page_sides_weights() {
    let dir = tempdir();
    let small = tiny_config(dir.path(), |s| s);
    let big = tiny_config(dir.path(), |s| s.replace("canvas = 128", "canvas = 256"));
    let src = dir.path().join("small");
    train(&small, &opts(&src, false, Some(2)), &mut Silent).unwrap();

    let tok = occ_core::TextTokenizer::deepseek_ocr().unwrap();
    let i = checkpoint::init_from(&src, &big, &tok, &Device::Cpu).unwrap();
    assert!(i.source.ends_with(checkpoint::folder_name(2)), "{}", i.source.display());
    let from = tensors(&i.source.join("model.safetensors"));
    let got: HashMap<String, Tensor> = i.params.tensors().into_iter().collect();
    assert_eq!(from.len(), got.len());
    let mut resized = i.resized.clone();
    resized.sort();
    // SAM's absolute table, the global block's (index 1) relative tables, the global encoder's table
    assert_eq!(
        resized,
        [
            "model.sam_model.blocks.1.attn.rel_pos_h",
            "model.sam_model.blocks.1.attn.rel_pos_w",
            "model.sam_model.pos_embed",
            "model.vision_model.embeddings.position_embedding.weight",
        ]
    );
    assert_eq!(got["model.sam_model.pos_embed"].dims(), [1, 16, 16, 16]);
    assert_eq!(got["model.sam_model.blocks.1.attn.rel_pos_h"].dims(), [31, 8]);
    // windowed blocks keep their window-sized tables
    assert_eq!(got["model.sam_model.blocks.0.attn.rel_pos_h"].dims(), [7, 8]);
    assert_eq!(got["model.vision_model.embeddings.position_embedding.weight"].dims(), [17, 32]);
    for (k, t) in &from {
        if !i.resized.contains(k) {
            assert_same(&HashMap::from([(k.clone(), t.clone())]), &HashMap::from([(k.clone(), got[k].clone())]));
        }
    }
    // the class row of the global encoder's table is kept
    let cls = |m: &HashMap<String, Tensor>| {
        m["model.vision_model.embeddings.position_embedding.weight"].get(0).unwrap().to_vec1::<f32>().unwrap()
    };
    assert_eq!(cls(&from), cls(&got));

    // the run itself: step 0 of its own schedule, the source's vocabulary, checkpoints at 256 px
    let run = dir.path().join("big");
    let mut o = opts(&run, false, Some(2));
    o.init = Some(src.clone());
    let s = train(&big, &o, &mut Silent).unwrap();
    assert_eq!((s.start_step, s.end_step), (0, 2));
    let ck = run.join(checkpoint::folder_name(2));
    assert_eq!(
        std::fs::read_to_string(ck.join("vocab.json")).unwrap(),
        std::fs::read_to_string(i.source.join("vocab.json")).unwrap()
    );
    assert_eq!(tensors(&ck.join("model.safetensors"))["model.sam_model.pos_embed"].dims(), [1, 16, 16, 16]);

    // anything else that differs is refused, by field
    let other =
        tiny_config(dir.path(), |s| s.replace("canvas = 128", "canvas = 256").replace("layers = 2", "layers = 3"));
    let err = checkpoint::init_from(&src, &other, &tok, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("decoder.layers") && err.contains("mini.json"), "{err}");
}
