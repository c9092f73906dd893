//! `compress-bench bench`: speed benchmark of the DeepSeek-OCR engine (docs/PERFORMANCE.md), and of
//! DeepSeek-OCR-2 (`--engine deepseek-ocr-2 --modes v2`: its tower page by page, the same decoder
//! queue).
//!
//! For every mode × batch size: a page of real text rendered for the mode (Moby-Dick, chapter 1,
//! 12 px), `--pages` copies of it (default: the batch size) encoded by the vision encoder, then
//! decoded through the continuous-batching decoder with `--batch` slots, exactly `--new-tokens`
//! tokens per page (EOS suppressed), greedy, repetition blocker `--ngram` (default none, like the
//! reference benchmark). One warm-up run per configuration is not timed. Reported: pages/s,
//! generated tok/s, decode tok/s per sequence, prefill and encoder time per page, and the peak
//! device memory seen between stages (driver view: total − free, so it includes the allocator's
//! pool and the CUDA context). A run that fails with an out-of-memory error is retried at half the
//! batch.
//!
//! Run folder: `<out>/bench/<utc>-<pid>`, locked while the benchmark runs; every finished
//! measurement is appended to `bench.jsonl` as it finishes and `bench.json` holds the status
//! (`running`, `interrupted`, `failed` with the error chain, `complete`). A signal lets the
//! measurement in flight finish, marks the run `interrupted` and prints the command that runs the
//! benchmark again. There is no `--resume` (a hidden `--resume` and `--out` naming a bench run
//! folder are refused with the reason): timings are those of one process (warm-ups, the device's
//! state, the allocator's pool), so a benchmark continued in another process would mix two
//! processes' numbers; it is measured again.

use std::time::Instant;

use anyhow::Context;
use candle_core::Device;
use occ_core::{Mode, Prompt};
use occ_model::batcher::{generate_queue, BatcherConfig};
use occ_model::decoder::DecoderModel;
use occ_model::generate::{GenerationConfig, PromptInput};
use occ_model::pipeline::{device_name, dtype_name, DeepseekOcr};
use occ_model::pipeline_v2::DeepseekOcr2;
use occ_model::preprocess::prepare;
use occ_model::prompt::build_prompt;

use occ_eval::journal::JournalWriter;
use occ_eval::lock::RunLock;
use occ_eval::results;
use occ_eval::RunStatus;

use crate::engine::{self, EngineKind, Generation, ModelArgs, NgramArg};
use crate::interrupt::{Interrupt, Interrupted};
use crate::messages::{BenchReport, BenchRun, EncoderRun};
use crate::output::Output;

/// The text every benchmark page shows.
const PAGE_TEXT: &str = include_str!("../../../../datasets/samples/moby-dick-ch1.txt");

/// Speed benchmark of the DeepSeek-OCR engine (tok/s, pages/s, stage times, peak memory).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Modes to run (comma-separated; v2 and v2-single for deepseek-ocr-2).
    #[arg(long, value_delimiter = ',', default_value = "small")]
    pub modes: Vec<Mode>,
    /// Decoder batch sizes (slots) to run (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub batch: Vec<usize>,
    /// Pages per run [default: the batch size].
    #[arg(long)]
    pub pages: Option<usize>,
    /// Tokens generated per page (EOS suppressed).
    #[arg(long, default_value_t = 512)]
    pub new_tokens: usize,
    /// Repetition blocker.
    #[arg(long, value_enum, default_value = "none")]
    pub ngram: NgramArg,
    /// Untimed warm-up runs per configuration.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Also time the vision encoder alone on this many pages in one batch (0: skip).
    #[arg(long, default_value_t = 32)]
    pub encoder_batch: usize,
    /// Decode eagerly instead of replaying a captured CUDA graph.
    #[arg(long)]
    pub no_cuda_graph: bool,
    /// Bracket the timed runs (not the warm-ups) with cuProfilerStart/Stop, for `ncu
    /// --profile-from-start off` or `nsys --capture-range cudaProfilerApi`.
    #[arg(long)]
    pub cuda_profile: bool,
    /// The model to time.
    #[arg(long, default_value = "deepseek-ocr", value_parser = engine::engine_parser(engine::BENCH_MODELS))]
    pub engine: EngineKind,
    /// Results root: the run folder (lock, `bench.jsonl`, `bench.json`) goes to <out>/bench/<utc>-<pid>.
    #[arg(long, default_value = "results")]
    pub out: std::path::PathBuf,
    /// Test hook: send this process SIGINT once this many configurations are measured.
    #[arg(long, hide = true)]
    pub interrupt_after: Option<usize>,
    /// Not offered: a benchmark is measured again, never resumed (refused with the reason and the
    /// command that runs it again).
    #[arg(long, hide = true, value_name = "DIR")]
    pub resume: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// File of every finished measurement of a bench run, one JSON line each.
pub const BENCH_JOURNAL: &str = "bench.jsonl";
/// Status of a bench run.
pub const BENCH_STATE: &str = "bench.json";

/// The run folder of a benchmark: locked, its measurements journaled as they finish.
struct BenchDir {
    dir: std::path::PathBuf,
    journal: JournalWriter,
    _lock: RunLock,
    started_utc: String,
    command: Vec<String>,
    /// Configurations measured and journaled.
    measured: usize,
}

impl BenchDir {
    /// A fresh run folder `<out>/bench/<utc>-<pid>` (`-2`, `-3`, … if taken: a folder is never
    /// reused), locked, with a `running` status. `--out` pointing at a bench run folder is refused:
    /// a benchmark is not continued.
    fn open(out: &std::path::Path) -> anyhow::Result<BenchDir> {
        if out.join(BENCH_STATE).is_file() {
            anyhow::bail!(
                "--out {} is a bench run folder; a benchmark is not resumed or added to (its numbers are those of \
                 one process: warm-ups, the device's state, the allocator's pool), so run it again with --out set \
                 to the results root (default: results), which gets a new run folder",
                out.display()
            );
        }
        let (started_utc, stamp) = results::utc_now();
        let parent = out.join("bench");
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("creating the bench run folder under {}", parent.display()))?;
        let base = format!("{stamp}-{}", std::process::id());
        let mut k = 1;
        let dir = loop {
            let dir = parent.join(if k == 1 { base.clone() } else { format!("{base}-{k}") });
            match std::fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && k < 1000 => k += 1,
                Err(e) => return Err(e).with_context(|| format!("creating the bench run folder {}", dir.display())),
            }
        };
        let command: Vec<String> = std::env::args().collect();
        let lock = RunLock::acquire(&dir, &command.join(" "))?;
        let journal = JournalWriter::open(&dir.join(BENCH_JOURNAL), 0)?;
        let b = BenchDir { dir, journal, _lock: lock, started_utc, command, measured: 0 };
        b.state(RunStatus::Running, &[])?;
        Ok(b)
    }

    fn record(&mut self, kind: &str, value: &impl serde::Serialize) -> anyhow::Result<()> {
        self.journal.append(&serde_json::json!({ kind: value }))?;
        self.journal.flush()?;
        if kind == "run" {
            self.measured += 1;
        }
        Ok(())
    }

    /// Writes `bench.json`: the status, the configurations measured, the command and, for a
    /// `failed` run, the error and its causes (outermost first).
    fn state(&self, status: RunStatus, error_chain: &[String]) -> anyhow::Result<()> {
        let (now, _) = results::utc_now();
        let mut state = serde_json::json!({
            "status": status,
            "started_utc": self.started_utc,
            "updated_utc": now,
            "measured": self.measured,
            "command": self.command,
        });
        if !error_chain.is_empty() {
            state["error_chain"] = serde_json::json!(error_chain);
        }
        let path = self.dir.join(BENCH_STATE);
        let tmp = self.dir.join(format!("{BENCH_STATE}.tmp"));
        std::fs::write(&tmp, serde_json::to_string_pretty(&state)? + "\n")
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// This command again, every flag as given but the test hook (and a refused `--resume`).
fn rerun_command() -> String {
    let argv: Vec<String> = std::env::args().collect();
    let mut keep = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        let a = &argv[i];
        if a == "--interrupt-after" || a == "--resume" {
            i += 2;
            continue;
        }
        if !a.starts_with("--interrupt-after=") && !a.starts_with("--resume=") {
            keep.push(a.clone());
        }
        i += 1;
    }
    crate::runs::rerun_command(&keep[..keep.len().min(2)], &[], &[], &keep[keep.len().min(2)..])
}

struct Peak {
    device: Device,
    bytes: Option<u64>,
}

impl Peak {
    fn sample(&mut self) {
        if let Some(b) = occ_model::ops::device_memory_used(&self.device) {
            self.bytes = Some(self.bytes.unwrap_or(0).max(b));
        }
    }

    fn gb(&self) -> Option<f64> {
        self.bytes.map(|b| b as f64 / 1e9)
    }
}

fn page_for(mode: Mode) -> anyhow::Result<image::RgbImage> {
    let spec = occ_render::RenderSpec::for_mode(mode, occ_render::Lang::En);
    let page = occ_render::render_page(PAGE_TEXT, &spec).context("rendering the benchmark page")?;
    Ok(page.image)
}

fn is_oom(e: &anyhow::Error) -> bool {
    let s = format!("{e:#}").to_lowercase();
    s.contains("out of memory") || s.contains("out_of_memory")
}

fn generation(args: &Args) -> GenerationConfig {
    Generation { ignore_eos: true, ..Generation::greedy(args.new_tokens, args.ngram) }.config()
}

/// The model a benchmark times: DeepSeek-OCR (or a mini reader) or DeepSeek-OCR-2.
enum Model {
    V1(Box<DeepseekOcr>),
    V2(Box<DeepseekOcr2>),
}

impl Model {
    fn decoder(&self) -> &DecoderModel {
        match self {
            Model::V1(e) => e.decoder(),
            Model::V2(e) => e.decoder(),
        }
    }

    fn weights(&self) -> String {
        match self {
            Model::V1(e) => e.weights().id.clone(),
            Model::V2(e) => e.weights.clone(),
        }
    }
}

/// Encodes `pages` copies of the mode's page and returns the prompts and the seconds taken.
fn encode(model: &Model, mode: Mode, pages: usize) -> anyhow::Result<(Vec<PromptInput>, f64)> {
    let engine = match model {
        Model::V1(e) => e,
        Model::V2(e) => return encode_v2(e, mode, pages),
    };
    let image = page_for(mode)?;
    let vt = mode.vision_tokens(image.width(), image.height())?;
    let mut tokens = build_prompt(engine.tokenizer(), &Prompt::FreeOcr, &[vt.slots as usize])?;
    if let Some(vocab) = engine.vocab() {
        tokens = vocab.spell_prompt(engine.tokenizer(), &tokens)?; // a mini reader's ids
    }
    let prepared = vec![prepare(&image, mode)?; pages];
    let device = engine.decoder().device();
    let t = Instant::now();
    let rows = engine.encoder().encode(&prepared, device)?;
    device.synchronize()?;
    let seconds = t.elapsed().as_secs_f64();
    let inputs = rows
        .iter()
        .map(|r| Ok(PromptInput { embeds: engine.splice(&tokens, r)?, ids: tokens.ids.clone() }))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((inputs, seconds))
}

/// [`encode`] of DeepSeek-OCR-2: its vision tower page by page (preprocessing, tower and splice
/// timed together).
fn encode_v2(engine: &DeepseekOcr2, mode: Mode, pages: usize) -> anyhow::Result<(Vec<PromptInput>, f64)> {
    let image = page_for(mode)?;
    let device = engine.decoder().device();
    let t = Instant::now();
    let inputs = (0..pages)
        .map(|_| engine.prompt_input(&image, mode, &Prompt::FreeOcr))
        .collect::<candle_core::Result<Vec<_>>>()?;
    device.synchronize()?;
    Ok((inputs, t.elapsed().as_secs_f64()))
}

fn run_one(engine: &Model, args: &Args, mode: Mode, batch: usize, peak: &mut Peak) -> anyhow::Result<BenchRun> {
    let pages = args.pages.unwrap_or(batch).max(1);
    let cfg = generation(args);
    let bc = BatcherConfig {
        slots: batch,
        prefill_batch: batch.min(8),
        cuda_graph: !args.no_cuda_graph,
        ..Default::default()
    };
    for _ in 0..args.warmup {
        let (inputs, _) = encode(engine, mode, batch.min(pages))?;
        let warm = GenerationConfig { max_new_tokens: cfg.max_new_tokens.min(16), ..cfg.clone() };
        generate_queue(engine.decoder(), &inputs, &warm, &bc)?;
    }
    let device = engine.decoder().device();
    if args.cuda_profile {
        occ_model::ops::cuda_profiler(device, true)?;
    }
    let t = Instant::now();
    let (inputs, encode_s) = encode(engine, mode, pages)?;
    peak.sample();
    let q = generate_queue(engine.decoder(), &inputs, &cfg, &bc)?;
    device.synchronize()?;
    let wall = t.elapsed().as_secs_f64();
    if args.cuda_profile {
        occ_model::ops::cuda_profiler(device, false)?;
    }
    peak.sample();
    let generated: usize = q.rows.iter().map(|r| r.tokens.len()).sum();
    let decode_s = q.decode.as_secs_f64();
    // tokens produced by decode steps (each page's first token comes from its prefill)
    let decode_tokens = generated.saturating_sub(pages) as f64;
    let slots = batch.min(pages).max(1) as f64;
    let per_s = |n: f64, s: f64| if s > 0.0 { n / s } else { 0.0 };
    Ok(BenchRun {
        mode: mode.to_string(),
        batch,
        pages,
        new_tokens: args.new_tokens,
        prompt_tokens: inputs.first().map_or(0, |p| p.ids.len()),
        wall_s: wall,
        pages_per_s: per_s(pages as f64, wall),
        tok_s: per_s(generated as f64, wall),
        decode_tok_s: per_s(decode_tokens, decode_s) / slots,
        decode_tok_s_total: per_s(decode_tokens, decode_s),
        encode_s_per_page: encode_s / pages as f64,
        prefill_s: q.prefill.as_secs_f64() / pages as f64,
        decode_steps: q.decode_steps,
        cuda_graph: q.graph,
        peak_gpu_gb: peak.gb(),
        oom_retries: 0,
    })
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    if args.batch.contains(&0) || args.new_tokens == 0 {
        anyhow::bail!("--batch sizes and --new-tokens must be at least 1")
    }
    if let Some(dir) = &args.resume {
        anyhow::bail!(
            "bench has no --resume ({}): a benchmark's numbers are those of one process (warm-ups, the device's \
             state, the allocator's pool), so an interrupted benchmark is measured again, in a new run folder; its \
             bench.jsonl keeps what it measured. Run it again with: {}",
            dir.display(),
            rerun_command()
        );
    }
    let interrupt = Interrupt::install()?;
    let mut run_dir = BenchDir::open(&args.out)?;
    let result = measure(&args, &mut run_dir, &interrupt, out);
    if let Err(e) = &result {
        if e.downcast_ref::<Interrupted>().is_none() {
            if let Err(m) = run_dir.state(RunStatus::Failed, &crate::output::causes(e)) {
                out.warn(&format!("marking {} failed: {m:#}", run_dir.dir.display()));
            }
        }
    }
    result
}

/// Loads the engine and measures every configuration into the run folder.
fn measure(args: &Args, run_dir: &mut BenchDir, interrupt: &Interrupt, out: &Output) -> anyhow::Result<()> {
    if let Some((m, why)) = args.modes.iter().find_map(|&m| args.engine.refuses_mode(m).map(|w| (m, w))) {
        anyhow::bail!("--modes {m}: {why}");
    }
    let engine = if args.engine == EngineKind::DeepseekOcr2 {
        Model::V2(Box::new(engine::load_model_v2(&args.model, out)?))
    } else {
        Model::V1(Box::new(engine::load_model(args.engine, &args.model, out)?))
    };
    if let Some(native) = match &engine {
        Model::V1(e) => e.native_mode(),
        Model::V2(_) => None,
    } {
        if let Some(m) = args.modes.iter().find(|&&m| m != native) {
            anyhow::bail!("the mini reader reads {native} pages only; got --modes {m} (use --modes {native})");
        }
    }
    let device = engine.decoder().device().clone();
    let mut peak = Peak { device: device.clone(), bytes: None };
    peak.sample();
    let mut report = BenchReport {
        engine: "compress-bench".into(),
        device: device_name(&device),
        dtype: dtype_name(engine.decoder().dtype()),
        weights: engine.weights(),
        runs: Vec::new(),
        encoder: Vec::new(),
    };
    let planned = args.modes.len() * args.batch.len();
    for &mode in &args.modes {
        for &batch in &args.batch {
            if interrupt.requested() {
                run_dir.state(RunStatus::Interrupted, &[])?;
                return Err(Interrupted {
                    state: format!(
                        "{} is marked interrupted and holds the measurements in {BENCH_JOURNAL} \
                         (a benchmark is measured again, not resumed: its numbers are one process's)",
                        run_dir.dir.display()
                    ),
                    done: format!("{} of {planned} configurations", report.runs.len()),
                    resume: rerun_command(),
                }
                .into());
            }
            let mut b = batch;
            let mut retries = 0;
            let run = loop {
                match run_one(&engine, args, mode, b, &mut peak) {
                    Ok(r) => break r,
                    Err(e) if is_oom(&e) && b > 1 => {
                        out.warn(&format!("{mode} batch {b}: out of device memory, retrying at batch {}", b / 2));
                        b /= 2;
                        retries += 1;
                    }
                    Err(e) => return Err(e).with_context(|| format!("benchmark {mode}, batch {b}")),
                }
            };
            let run = BenchRun { oom_retries: retries, ..run };
            out.info(&format!(
                "{:<8} batch {:>3}  {:>7.2} pages/s  {:>8.1} tok/s  decode {:>7.1} tok/s/seq  prefill {:>7.1} ms/page  encode {:>7.1} ms/page  graph {}  peak {}",
                run.mode,
                run.batch,
                run.pages_per_s,
                run.tok_s,
                run.decode_tok_s,
                run.prefill_s * 1e3,
                run.encode_s_per_page * 1e3,
                run.cuda_graph,
                run.peak_gpu_gb.map_or("-".into(), |g| format!("{g:.2} GB")),
            ));
            run_dir.record("run", &run)?;
            report.runs.push(run);
            if args.interrupt_after.is_some_and(|n| report.runs.len() >= n) {
                Interrupt::raise();
            }
        }
        if args.encoder_batch > 0 {
            let n = args.encoder_batch;
            encode(&engine, mode, n)?; // warm-up at the same size (GEMM plans, the allocator's pool)
            let (_, s) = encode(&engine, mode, n)?;
            peak.sample();
            let e = EncoderRun { mode: mode.to_string(), batch: n, s_per_page: s / n as f64 };
            out.info(&format!("{:<8} encoder batch {:>3}  {:>7.2} ms/page", e.mode, e.batch, e.s_per_page * 1e3));
            run_dir.record("encoder", &e)?;
            report.encoder.push(e);
        }
    }
    run_dir.state(RunStatus::Complete, &[])?;
    out.send(&report)?;
    out.info(&format!("  run folder: {}", run_dir.dir.display()));
    if !out.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
