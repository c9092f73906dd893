//! The training loop: pages rendered ahead on worker threads, teacher-forced loss, gradient
//! accumulation and clipping, AdamW on the warm-up + cosine schedule, validation every N steps,
//! journals (`train_log.jsonl`, `eval_log.jsonl`), atomic checkpoints with exact resume, and the
//! curves (Parquet + SVG) at the end.
//!
//! # Invariants
//! - Step `s` of a run resumed from a checkpoint of step `s` computes exactly what the
//!   uninterrupted run computes (data by coordinates, optimiser state restored, float32 weights).
//! - A step whose loss is not finite or exceeds `optim.max_loss` is not applied: training stops
//!   with [`TrainError::Diverged`] and the last checkpoint stays `latest`.
//! - Journals hold each step once: a resume drops lines after the checkpoint's step.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Device;
use occ_core::TextTokenizer;
use occ_model::mini::OutputVocab;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, State, WARM_RESTART_STEPS};
use crate::config::TrainConfig;
use crate::data::{read_passages, Page, PageSource};
use crate::error::{TrainError, TrainResult};
use crate::eval::{evaluate, RatioScore};
use crate::model::{batch_losses, prompt_ids, reader_prompt, CellTargets, Params, Placed, CELL_HEAD};
use crate::optim::{learning_rate, AdamW, Grads};

pub const TRAIN_LOG: &str = "train_log.jsonl";
pub const EVAL_LOG: &str = "eval_log.jsonl";

/// How to run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The run folder (checkpoints, journals, curves).
    pub run_dir: PathBuf,
    /// Continue from the run folder's `latest` checkpoint (refused if there is none).
    pub resume: bool,
    /// A new run starts from this reader's weights instead of random ones (a reader, checkpoint
    /// or run folder whose model differs at most in the page side: [`checkpoint::init_from`]).
    /// Ignored on resume (the run's own checkpoint holds the weights by then).
    pub init: Option<PathBuf>,
    /// Stop (with a checkpoint) once this step is reached, before the schedule's end.
    pub stop_at: Option<usize>,
    /// Stop (with a checkpoint) once this much time has passed.
    pub time_limit: Option<Duration>,
    /// A stop request (the CLI sets it on SIGINT / SIGTERM): the run stops after the step in
    /// flight, with a validation and a checkpoint, as at a time limit.
    pub stop: Option<Arc<AtomicBool>>,
    pub device: Device,
    /// Micro-batches rendered ahead of the model.
    pub prefetch: usize,
}

/// One optimiser step, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    pub step: usize,
    /// Mean cross-entropy per target token (nats).
    pub loss: f64,
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub pages: usize,
    pub tokens: usize,
    /// Seconds of the step, and the part spent waiting for rendered pages.
    pub seconds: f64,
    pub data_wait_seconds: f64,
    /// Seconds of the forward passes (model build, encoder, decoder, loss) and of the backward
    /// passes, each ended by a device synchronisation; the rest of `seconds` is waiting for pages,
    /// gradient accumulation, clipping and the AdamW update.
    #[serde(default)]
    pub forward_seconds: f64,
    #[serde(default)]
    pub backward_seconds: f64,
    /// The cell loss (nats per cell holding text; `optim.cell_loss` > 0 only), unweighted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell_loss: Option<f64>,
}

/// One validation, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalLog {
    pub step: usize,
    pub ratio: f64,
    pub pages: usize,
    pub char_precision: f64,
    pub stopped: f64,
    /// Teacher-forced loss (nats per token) of the validation texts with their own images, and
    /// with another page's image ([`RatioScore`]); absent in journals written before they existed.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub loss: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub loss_other_image: f64,
    /// The same on validation probes (random strings, shuffled words: text no language model can
    /// guess); absent in journals written before they existed.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub probe_loss: f64,
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub probe_loss_other_image: f64,
    pub seconds: f64,
    /// The first page's output (a glimpse of what the reader writes).
    pub sample: String,
}

impl EvalLog {
    /// Nats per token the reader takes from the page: `loss_other_image − loss` (≈ 0 while it
    /// ignores the image).
    pub fn image_gain(&self) -> f64 {
        self.loss_other_image - self.loss
    }

    /// Nats per token the reader takes from probe pages (NaN when not measured).
    pub fn probe_gain(&self) -> f64 {
        self.probe_loss_other_image - self.probe_loss
    }
}

fn nan() -> f64 {
    f64::NAN
}

/// JSON has no NaN: serde_json writes it as `null`, read back here as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What the caller is told as training goes.
pub trait Observer {
    fn started(&mut self, _info: &StartInfo) {}
    fn step(&mut self, _log: &StepLog) {}
    fn evaluated(&mut self, _log: &EvalLog) {}
    fn checkpointed(&mut self, _path: &Path, _step: usize) {}
}

/// A quiet observer.
#[derive(Debug, Default)]
pub struct Silent;
impl Observer for Silent {}

/// The run as it starts.
#[derive(Debug, Clone, Serialize)]
pub struct StartInfo {
    pub start_step: usize,
    pub total_steps: usize,
    pub parameters: usize,
    pub vocab_size: usize,
    pub train_passages: usize,
    pub validation_passages: usize,
    pub resumed_from: Option<PathBuf>,
    /// `exact` (optimiser state restored), `warm-restart` (weights only), `init` (a new run from
    /// another reader's weights: `resumed_from` names it) or `fresh`.
    pub resume_kind: String,
}

/// How the run ended.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub start_step: usize,
    pub end_step: usize,
    pub total_steps: usize,
    pub last_loss: Option<f64>,
    pub seconds: f64,
    pub pages_per_second: f64,
    pub data_wait_share: f64,
    pub checkpoint: Option<PathBuf>,
    pub last_eval: Vec<RatioScore>,
}

type Prefetched = (usize, usize, TrainResult<Vec<Page>>);

/// Renders micro-batches of steps `start..end` in order on a worker thread (rayon inside).
fn prefetch(
    source: Arc<PageSource>,
    seed: u64,
    start: usize,
    end: usize,
    cfg: &TrainConfig,
    depth: usize,
) -> Receiver<Prefetched> {
    let (tx, rx) = sync_channel(depth.max(1));
    let (accumulate, batch) = (cfg.optim.accumulate, cfg.optim.batch);
    std::thread::spawn(move || {
        for step in start..end {
            let batch = source.cfg.batch_at(step, batch);
            for micro in 0..accumulate {
                let pages = source.batch(seed, step, micro, batch);
                if tx.send((step, micro, pages)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Keeps journal lines of steps up to `upto` (steps count completed optimiser steps; a resume from
/// a checkpoint of step `upto` drops what an interrupted run journaled after it).
fn truncate_journal(path: &Path, upto: usize) -> TrainResult<()> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| (s as usize) <= upto)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, kept).map_err(|e| TrainError::io(path, e))
}

fn append(path: &Path, value: &impl Serialize) -> TrainResult<()> {
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| TrainError::io(path, e))?;
    let line = serde_json::to_string(value).map_err(|e| TrainError::Other(e.to_string()))?;
    writeln!(f, "{line}").map_err(|e| TrainError::io(path, e))
}

/// Checks that `dir` can be created and written before any work starts.
pub fn check_writable(dir: &Path) -> TrainResult<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok").map_err(|e| TrainError::io(&probe, e))?;
    std::fs::remove_file(&probe).map_err(|e| TrainError::io(&probe, e))
}

/// Runs (or resumes) training of `cfg`.
pub fn train(cfg: &TrainConfig, opts: &TrainOptions, obs: &mut dyn Observer) -> TrainResult<Summary> {
    let started = Instant::now();
    check_writable(&opts.run_dir)?;
    // One trainer per run folder: a second one is refused, a killed one's lock taken over.
    let _lock = occ_eval::lock::RunLock::acquire(&opts.run_dir, "compress-bench train")
        .map_err(|e| TrainError::Other(e.to_string()))?;
    let tok = Arc::new(TextTokenizer::deepseek_ocr().map_err(|e| TrainError::Other(e.to_string()))?);
    let mode = cfg.model.mode().map_err(|e| TrainError::Other(e.to_string()))?;
    let train_passages: Vec<_> = cfg
        .data
        .train
        .iter()
        .map(|p| read_passages(p))
        .collect::<TrainResult<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let val_passages = read_passages(&cfg.data.validation)?;

    let (mut params, vocab, mut optim, start_step, restart_at, resumed_from, resume_kind) = if opts.resume {
        let dir = checkpoint::latest(&opts.run_dir)?.ok_or_else(|| TrainError::Checkpoint {
            path: opts.run_dir.clone(),
            problem: "no checkpoint to resume (no `latest` file); start without --resume".into(),
        })?;
        let r = checkpoint::load(&dir, cfg, &tok, &opts.device)?;
        let step = r.state.step;
        match r.optim {
            Some(o) => (r.params, r.vocab, o, step, r.state.restart_at, Some(dir), "exact"),
            None => {
                let o = AdamW::new(&r.params.vars)?;
                (r.params, r.vocab, o, step, Some(step), Some(dir), "warm-restart")
            }
        }
    } else {
        if checkpoint::latest(&opts.run_dir)?.is_some() {
            return Err(TrainError::Checkpoint {
                path: opts.run_dir.clone(),
                problem: "the run folder already holds checkpoints; pass --resume to continue or choose a new folder"
                    .into(),
            });
        }
        if let Some(src) = &opts.init {
            let i = checkpoint::init_from(src, cfg, &tok, &opts.device)?;
            let o = AdamW::new(&i.params.vars)?;
            (i.params, i.vocab, o, 0, None, Some(i.source), "init")
        } else {
            let extra = prompt_ids(&cfg.model, &tok)?;
            let texts = train_passages.iter().take(cfg.data.vocab_passages).map(|p| p.text.as_str());
            let vocab = OutputVocab::build(&tok, texts, &extra, cfg.model.vocab_size)
                .map_err(|e| TrainError::Other(e.to_string()))?;
            let params = Params::init(&cfg.model, cfg.run.seed, &opts.device)?;
            let o = AdamW::new(&params.vars)?;
            (params, vocab, o, 0, None, None, "fresh")
        }
    };
    // The cell head (training only) joins a run when `optim.cell_loss` is switched on, also on
    // resume; its optimiser state starts at zero.
    if cfg.optim.cell_loss > 0.0 && params.add_cell_head(&cfg.model, cfg.run.seed)? {
        let head = params.vars[CELL_HEAD].as_tensor();
        optim.m.insert(CELL_HEAD.into(), head.zeros_like()?);
        optim.v.insert(CELL_HEAD.into(), head.zeros_like()?);
    }
    let vocab = Arc::new(vocab);
    let prompt = reader_prompt(&cfg.model, &tok, &vocab)?;
    let total = cfg.optim.steps;
    let end = opts.stop_at.map_or(total, |s| s.min(total));
    let train_log = opts.run_dir.join(TRAIN_LOG);
    let eval_log = opts.run_dir.join(EVAL_LOG);
    truncate_journal(&train_log, start_step)?;
    truncate_journal(&eval_log, start_step)?;
    obs.started(&StartInfo {
        start_step,
        total_steps: total,
        parameters: params.count(),
        vocab_size: vocab.len(),
        train_passages: train_passages.len(),
        validation_passages: val_passages.len(),
        resumed_from: resumed_from.clone(),
        resume_kind: resume_kind.into(),
    });

    let max_target = cfg.model.decoder.max_positions.saturating_sub(prompt.ids.len() + 1);
    let source = Arc::new(PageSource {
        passages: train_passages,
        cfg: cfg.data.clone(),
        mode,
        tok: tok.clone(),
        vocab: vocab.clone(),
        max_target,
        place: cfg.optim.cell_loss > 0.0,
    });
    let val_source = PageSource {
        passages: val_passages,
        cfg: cfg.data.clone(),
        mode,
        tok: tok.clone(),
        vocab: vocab.clone(),
        max_target,
        place: cfg.optim.cell_loss > 0.0,
    };
    let rx = prefetch(source, cfg.run.seed, start_step, end, cfg, opts.prefetch);

    let mut step = start_step;
    let mut last_loss = None;
    let mut last_ckpt = None;
    let (mut pages_done, mut busy, mut waited) = (0usize, 0.0f64, 0.0f64);
    let mut last_eval = Vec::new();
    let state_at = |step: usize, optim: &AdamW| State {
        format: checkpoint::FORMAT.into(),
        step,
        adam_t: optim.t,
        model_fingerprint: cfg.model_fingerprint(),
        restart_at,
        config: cfg.clone(),
    };
    while step < end {
        let t0 = Instant::now();
        let (mut wait, mut forward, mut backward) = (0.0, 0.0, 0.0);
        let mut grads = Grads::default();
        let (mut loss_sum, mut tokens, mut pages) = (0.0f64, 0usize, 0usize);
        let (mut cell_sum, mut cell_batches) = (0.0f64, 0usize);
        for micro in 0..cfg.optim.accumulate {
            let tw = Instant::now();
            let (s, m, batch) = rx.recv().map_err(|_| TrainError::Other("the page renderer stopped".into()))?;
            wait += tw.elapsed().as_secs_f64();
            if (s, m) != (step, micro) {
                return Err(TrainError::Other(format!("page order: got step {s}.{m}, expected {step}.{micro}")));
            }
            let batch = batch?;
            let images: Vec<&image::RgbImage> = batch.iter().map(|p| &p.image).collect();
            let inputs: Vec<&[u32]> = batch.iter().map(|p| p.input.as_slice()).collect();
            let targets: Vec<&[u32]> = batch.iter().map(|p| p.target.as_slice()).collect();
            let tf = Instant::now();
            let placed: Vec<&[Placed]> = batch.iter().map(|p| p.placed.as_slice()).collect();
            let cells = (cfg.optim.cell_loss > 0.0)
                .then(|| params.vars.get(CELL_HEAD).map(|h| CellTargets { head: h.as_tensor(), placed: &placed }))
                .flatten();
            let bl = batch_losses(&cfg.model, params.var_builder(), &prompt, &images, &inputs, &targets, cells)?;
            // the cell loss is weighted per target token, as the gradients are scaled by 1/tokens
            let total = match &bl.cell {
                Some(c) => {
                    cell_sum += f64::from(c.to_scalar::<f32>()?);
                    cell_batches += 1;
                    (&bl.sum + (c * (cfg.optim.cell_loss * bl.tokens as f64))?)?
                }
                None => bl.sum.clone(),
            };
            opts.device.synchronize()?;
            forward += tf.elapsed().as_secs_f64();
            let tb = Instant::now();
            let store = total.backward()?;
            opts.device.synchronize()?;
            backward += tb.elapsed().as_secs_f64();
            grads.add(&params.vars, &store)?;
            loss_sum += f64::from(bl.sum.to_scalar::<f32>()?);
            tokens += bl.tokens;
            pages += batch.len();
        }
        let loss = loss_sum / tokens.max(1) as f64;
        if !loss.is_finite() || loss > cfg.optim.max_loss {
            return Err(TrainError::Diverged { step, loss, limit: cfg.optim.max_loss });
        }
        grads.scale(1.0 / tokens.max(1) as f64)?;
        let grad_norm = grads.norm()?;
        if !grad_norm.is_finite() {
            return Err(TrainError::Diverged { step, loss: grad_norm, limit: cfg.optim.max_loss });
        }
        if cfg.optim.clip_norm > 0.0 && grad_norm > cfg.optim.clip_norm {
            grads.scale(cfg.optim.clip_norm / grad_norm)?;
        }
        let mut lr = learning_rate(&cfg.optim, step);
        if let Some(r) = restart_at {
            if step < r + WARM_RESTART_STEPS {
                lr *= (step - r + 1) as f64 / WARM_RESTART_STEPS as f64;
            }
        }
        optim.step(&cfg.optim, &params.vars, &grads, lr)?;
        step += 1;
        let seconds = t0.elapsed().as_secs_f64();
        pages_done += pages;
        busy += seconds;
        waited += wait;
        last_loss = Some(loss);
        let log = StepLog {
            step,
            loss,
            lr,
            grad_norm,
            pages,
            tokens,
            seconds,
            data_wait_seconds: wait,
            forward_seconds: forward,
            backward_seconds: backward,
            cell_loss: (cell_batches > 0).then(|| cell_sum / cell_batches as f64),
        };
        if step % cfg.run.log_every == 0 || step == end || step == start_step + 1 {
            append(&train_log, &log)?;
        }
        obs.step(&log);
        let out_of_time = opts.time_limit.is_some_and(|l| started.elapsed() >= l)
            || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
        let finishing = step == end || out_of_time;
        if (cfg.eval.every > 0 && step % cfg.eval.every == 0) || finishing {
            last_eval = run_eval(cfg, &params, &tok, &vocab, &val_source, step, &eval_log, obs)?;
        }
        if step % cfg.run.checkpoint_every == 0 || finishing {
            let path = checkpoint::save(&opts.run_dir, &state_at(step, &optim), &vocab, &params, &optim)?;
            obs.checkpointed(&path, step);
            last_ckpt = Some(path);
        }
        if out_of_time {
            break;
        }
    }
    drop(rx);
    crate::curves::write(&opts.run_dir)?;
    Ok(Summary {
        start_step,
        end_step: step,
        total_steps: total,
        last_loss,
        seconds: started.elapsed().as_secs_f64(),
        pages_per_second: if busy > 0.0 { pages_done as f64 / busy } else { 0.0 },
        data_wait_share: if busy > 0.0 { waited / busy } else { 0.0 },
        checkpoint: last_ckpt,
        last_eval,
    })
}

fn run_eval(
    cfg: &TrainConfig,
    params: &Params,
    tok: &TextTokenizer,
    vocab: &OutputVocab,
    source: &PageSource,
    step: usize,
    log: &Path,
    obs: &mut dyn Observer,
) -> TrainResult<Vec<RatioScore>> {
    let mut scores = Vec::new();
    for &ratio in &cfg.eval.ratios {
        let t = Instant::now();
        let pages = source.fixed_ratio_pages(ratio, cfg.eval.pages)?;
        let probes = source.fixed_ratio_probes(ratio, cfg.eval.pages)?;
        let (score, texts) = evaluate(&cfg.model, params, tok, vocab, ratio, &pages, &probes)?;
        let entry = EvalLog {
            step,
            ratio,
            pages: score.pages,
            char_precision: score.char_precision,
            stopped: score.stopped,
            loss: score.loss,
            loss_other_image: score.loss_other_image,
            probe_loss: score.probe_loss,
            probe_loss_other_image: score.probe_loss_other_image,
            seconds: t.elapsed().as_secs_f64(),
            sample: texts.first().map(|s| s.chars().take(160).collect()).unwrap_or_default(),
        };
        append(log, &entry)?;
        obs.evaluated(&entry);
        scores.push(score);
    }
    Ok(scores)
}
