//! `compress-bench bench`: speed benchmark of the DeepSeek-OCR engine (docs/PERFORMANCE.md), and of
//! DeepSeek-OCR-2 (`--engine deepseek-ocr-2 --modes v2`: its tower batched as v1's encoder, the same
//! decoder queue).
//!
//! For every mode × batch size: a page of real text rendered for the mode (Moby-Dick, chapter 1,
//! 12 px), `--pages` copies of it (default: the batch size) encoded by the vision encoder, then
//! decoded through the continuous-batching decoder with `--batch` slots, exactly `--new-tokens`
//! tokens per page (EOS suppressed), greedy, repetition blocker `--ngram` (default none, like the
//! reference benchmark). One warm-up run per configuration is not timed. Reported: pages/s,
//! generated tok/s, decode tok/s per sequence, the time of a decode step with the weights it reads
//! (`occ_model::bandwidth`) and their ratio, the achieved weight bandwidth, the kernels of the
//! captured decode step's CUDA graph, prefill and encoder time per page, and the peak
//! device memory seen between stages (driver view: total − free, so it includes the allocator's
//! pool and the CUDA context), and the largest batch that fits the free device memory
//! (`occ_model::memory_plan`, for the mode's prompt and `--new-tokens`). A batch above what fits
//! runs lowered to it (the decoder queue's `fit_slots`; requested and used batch both reported); a
//! run that still fails with an out-of-memory error is retried at half the batch.
//!
//! Run folder: `<out>/bench/<utc>-<pid>`, locked while the benchmark runs; every finished
//! measurement is appended to `bench.jsonl` as it finishes (with the session that measured it)
//! and `bench.json` holds the status (`running`, `interrupted`, `failed` with the error chain,
//! `complete`), the flags that define the benchmark, the reader measured (device, dtype, weights)
//! and every session. A signal lets the measurement in flight finish, marks the run `interrupted`
//! and prints the command that continues it. `--resume DIR` (or `--out DIR --resume`) restores the
//! recorded flags (one given again with another value is refused, naming it and both values),
//! refuses another reader, keeps the journaled measurements and measures only the others; the
//! report says when its numbers come from several sessions (process starts).

use std::time::Instant;

use anyhow::Context;
use candle_core::Device;
use clap::builder::TypedValueParser;
use occ_core::{Mode, Prompt};
use occ_model::bandwidth::DecodeWeights;
use occ_model::batcher::{generate_queue, BatcherConfig};
use occ_model::decoder::DecoderModel;
use occ_model::generate::{GenerationConfig, PromptInput};
use occ_model::memory_plan::{Sequences, SlotMemory};
use occ_model::pipeline::{device_name, dtype_name, splice, DeepseekOcr};
use occ_model::pipeline_v2::DeepseekOcr2;
use occ_model::preprocess::prepare;
use occ_model::prompt::build_prompt;

use occ_eval::journal::{self, JournalWriter};
use occ_eval::lock::RunLock;
use occ_eval::results;
use occ_eval::RunStatus;
use serde::{Deserialize, Serialize};

use crate::engine::{self, EngineKind, Generation, ModelArgs, NgramArg};
use crate::interrupt::{Interrupt, Interrupted};
use crate::messages::{BenchReport, BenchRun, EncoderRun};
use crate::output::Output;
use crate::runs;

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
    /// Size the decoder slots against this much free device memory (GB, 10⁹ bytes) instead of the
    /// device's own figure (CUDA; on the CPU nothing is lowered without it).
    #[arg(long, value_name = "GB")]
    pub free_memory_gb: Option<f64>,
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
    /// Test hook: send this process SIGINT once this many configurations are measured in this session.
    #[arg(long, hide = true)]
    pub interrupt_after: Option<usize>,
    /// Test hook: abort the process (like `kill -9`) once this many configurations are measured in
    /// this session.
    #[arg(long, hide = true)]
    pub crash_after: Option<usize>,
    /// Continue the bench run in DIR (interrupted, killed or failed; given alone: the run folder
    /// --out names): its recorded flags are used (others with other values are refused), its
    /// journaled measurements kept and only the others measured.
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "",
          value_parser = clap::builder::OsStringValueParser::new().map(std::path::PathBuf::from))]
    pub resume: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// File of every finished measurement of a bench run, one JSON line each.
pub const BENCH_JOURNAL: &str = "bench.jsonl";
/// Status of a bench run.
pub const BENCH_STATE: &str = "bench.json";

/// `bench`'s own flags that define the benchmark and take a value: recorded in `bench.json` (with
/// the model flags, `runs::MODEL_VALUE_FLAGS`) and restored by `--resume`.
const VALUE_FLAGS: [&str; 9] = [
    "--modes",
    "--batch",
    "--pages",
    "--new-tokens",
    "--ngram",
    "--warmup",
    "--encoder-batch",
    "--engine",
    "--free-memory-gb",
];
/// `bench`'s own switches that define the benchmark (with `runs::MODEL_SWITCHES`).
const SWITCHES: [&str; 2] = ["--no-cuda-graph", "--cuda-profile"];

/// The flags recorded and restored: `bench`'s and the model's.
fn flag_names() -> (Vec<&'static str>, Vec<&'static str>) {
    ([&VALUE_FLAGS[..], &runs::MODEL_VALUE_FLAGS[..]].concat(), [&SWITCHES[..], &runs::MODEL_SWITCHES[..]].concat())
}

/// One line of `bench.jsonl`: `{"run": {…}}` or `{"encoder": {…}}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one per measured configuration: a few per run, boxing buys nothing
enum BenchLine {
    Run(BenchRun),
    Encoder(EncoderRun),
}

impl BenchLine {
    /// The session that measured it.
    fn session(&self) -> usize {
        match self {
            BenchLine::Run(r) => r.session,
            BenchLine::Encoder(e) => e.session,
        }
    }
}

/// The reader a benchmark measures; a resumed benchmark must load the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reader {
    device: String,
    dtype: String,
    weights: String,
}

/// One process that worked on a bench run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    started_utc: String,
    command: Vec<String>,
    /// Measurements (configurations and encoder runs) it journaled.
    measured: usize,
    /// Its wall time; absent while it runs and for a session killed outright.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wall_time_s: Option<f64>,
}

/// `bench.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BenchState {
    status: RunStatus,
    /// When the first session started.
    started_utc: String,
    #[serde(default)]
    updated_utc: String,
    /// Configurations journaled, over every session.
    measured: usize,
    /// The latest session's command line.
    command: Vec<String>,
    /// The flags that define the benchmark, as the first session gave them (absent in runs
    /// written before bench was resumable: read from `command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reader: Option<Reader>,
    #[serde(default)]
    sessions: Vec<Session>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    error_chain: Vec<String>,
}

impl BenchState {
    fn load(dir: &std::path::Path) -> anyhow::Result<BenchState> {
        let path = dir.join(BENCH_STATE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{} is not a bench run folder (reading {BENCH_STATE})", dir.display()))?;
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
    }

    /// The flags that define the benchmark.
    fn flags(&self) -> Vec<String> {
        let (values, switches) = flag_names();
        self.flags.clone().unwrap_or_else(|| runs::reader_flags(&self.command, &values, &switches))
    }
}

/// The run folder `--resume` names: its value, or `--out` when it is given alone.
fn resume_dir(args: &Args) -> Option<std::path::PathBuf> {
    let dir = args.resume.as_ref()?;
    Some(if dir.as_os_str().is_empty() { args.out.clone() } else { dir.clone() })
}

/// A resumed benchmark's arguments: the flags its `bench.json` recorded under this command's
/// ([`runs::resumed_reader`]: one given again with another value is refused, naming it and both
/// values). A complete run is not resumed.
fn restored(args: Args, dir: &std::path::Path, out: &Output) -> anyhow::Result<Args> {
    let state = BenchState::load(dir)?;
    if state.status == RunStatus::Complete {
        anyhow::bail!("bench run {} is already complete; start a new benchmark instead", dir.display());
    }
    let (values, switches) = flag_names();
    Ok(runs::resumed_reader("bench", dir, Some(state.flags()), &values, &switches, out)?.unwrap_or(args))
}

/// The command that continues the bench run in `dir`: global flags, then `--resume DIR` (its
/// flags are recorded).
fn resume_command(dir: &std::path::Path) -> String {
    runs::resume_command(&std::env::args().collect::<Vec<_>>(), dir, &[], &[])
}

/// A resume refused before anything was measured: the run folder is left as it was, not `failed`.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The run folder of a benchmark: locked, its measurements journaled as they finish.
struct BenchDir {
    dir: std::path::PathBuf,
    journal: JournalWriter,
    _lock: RunLock,
    state: BenchState,
    /// `bench.json` as this session found it (a resumed run), put back when the resume is refused.
    before: Option<BenchState>,
    /// Measurements journaled by earlier sessions, in journal order.
    journaled: Vec<BenchLine>,
    t0: Instant,
}

impl BenchDir {
    /// A fresh run folder `<out>/bench/<utc>-<pid>` (`-2`, `-3`, … if taken: a folder is never
    /// reused), locked, with a `running` status. `--out` pointing at a bench run folder is refused
    /// (`--resume` continues it).
    fn create(out: &std::path::Path) -> anyhow::Result<BenchDir> {
        if out.join(BENCH_STATE).is_file() {
            anyhow::bail!(
                "--out {} is a bench run folder; continue it with: {}, or set --out to the results root \
                 (default: results) for a new benchmark",
                out.display(),
                resume_command(out)
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
        let argv: Vec<String> = std::env::args().collect();
        let lock = RunLock::acquire(&dir, &argv.join(" "))?;
        let (values, switches) = flag_names();
        let state = BenchState {
            status: RunStatus::Running,
            started_utc,
            updated_utc: String::new(),
            measured: 0,
            flags: Some(runs::reader_flags(&argv, &values, &switches)),
            command: argv,
            reader: None,
            sessions: Vec::new(),
            error_chain: Vec::new(),
        };
        BenchDir::open(dir, lock, state, None, Vec::new(), 0)
    }

    /// The bench run in `dir`, locked (a stale lock taken over), with its journaled measurements
    /// (a line torn by a kill dropped) and a new session.
    fn resume(dir: &std::path::Path, out: &Output) -> anyhow::Result<BenchDir> {
        let argv: Vec<String> = std::env::args().collect();
        let lock = RunLock::acquire(dir, &argv.join(" "))?;
        if let Some(old) = lock.took_over() {
            out.warn(&format!(
                "took over the stale lock of process {} (started {}), which is gone",
                old.pid, old.started_utc
            ));
        }
        let before = BenchState::load(dir)?;
        if before.status == RunStatus::Complete {
            anyhow::bail!("bench run {} is already complete; start a new benchmark instead", dir.display());
        }
        let (journaled, valid) = journal::read_lines::<BenchLine>(&dir.join(BENCH_JOURNAL))?;
        // The journal is the truth of what each session measured (a killed one never wrote its end).
        let runs = journaled.iter().filter(|l| matches!(l, BenchLine::Run(_))).count();
        let mut state = BenchState { command: argv, measured: runs, error_chain: Vec::new(), ..before.clone() };
        for (k, s) in state.sessions.iter_mut().enumerate() {
            s.measured = journaled.iter().filter(|l| l.session() == k).count();
        }
        if state.sessions.is_empty() {
            // A run written before sessions were recorded: its one session, as the journal holds it.
            state.sessions.push(Session {
                started_utc: state.started_utc.clone(),
                command: before.command.clone(),
                measured: journaled.len(),
                wall_time_s: None,
            });
        }
        BenchDir::open(dir.to_path_buf(), lock, state, Some(before), journaled, valid)
    }

    fn open(
        dir: std::path::PathBuf,
        lock: RunLock,
        mut state: BenchState,
        before: Option<BenchState>,
        journaled: Vec<BenchLine>,
        valid: u64,
    ) -> anyhow::Result<BenchDir> {
        let journal = JournalWriter::open(&dir.join(BENCH_JOURNAL), valid)?;
        let (now, _) = results::utc_now();
        state.sessions.push(Session {
            started_utc: now,
            command: state.command.clone(),
            measured: 0,
            wall_time_s: None,
        });
        let mut b = BenchDir { dir, journal, _lock: lock, state, before, journaled, t0: Instant::now() };
        b.state(RunStatus::Running, &[])?;
        Ok(b)
    }

    /// This session's number: 0 for the run's first process, 1 for its first resume, …
    fn session(&self) -> usize {
        self.state.sessions.len() - 1
    }

    /// Records the reader this session loaded; a resumed run that measured another is refused
    /// (its `bench.json` put back as it was), naming each field and both values.
    fn reader(&mut self, now: Reader) -> anyhow::Result<()> {
        if let Some(was) = &self.state.reader {
            let fields = [("device", &was.device, &now.device), ("dtype", &was.dtype, &now.dtype)];
            let changed: Vec<String> = [("weights", &was.weights, &now.weights)]
                .into_iter()
                .chain(fields)
                .filter(|(_, a, b)| a != b)
                .map(|(f, a, b)| format!("{f}: the run measured {a:?}, this session loads {b:?}"))
                .collect();
            if !changed.is_empty() {
                if let Some(before) = &self.before {
                    self.write(before)?;
                }
                return Err(Refused(format!(
                    "--resume {}: a resumed benchmark measures the same reader (its numbers go in one table); \
                     this session's differs:\n  - {}",
                    self.dir.display(),
                    changed.join("\n  - ")
                ))
                .into());
            }
        }
        self.state.reader = Some(now);
        self.state(RunStatus::Running, &[])
    }

    /// Journals a measurement (flushed to disk), then counts it in `bench.json`.
    fn record(&mut self, line: &BenchLine) -> anyhow::Result<()> {
        self.journal.append(line)?;
        self.journal.flush()?;
        if matches!(line, BenchLine::Run(_)) {
            self.state.measured += 1;
        }
        if let Some(s) = self.state.sessions.last_mut() {
            s.measured += 1;
        }
        self.state(RunStatus::Running, &[])
    }

    /// Writes `bench.json`: the status, the configurations measured, the command, the sessions
    /// (this one with its wall time once it ends) and, for a `failed` run, the error and its causes
    /// (outermost first).
    fn state(&mut self, status: RunStatus, error_chain: &[String]) -> anyhow::Result<()> {
        self.state.status = status;
        self.state.updated_utc = results::utc_now().0;
        self.state.error_chain = error_chain.to_vec();
        let wall = self.t0.elapsed().as_secs_f64();
        if let Some(s) = self.state.sessions.last_mut() {
            s.wall_time_s = (status != RunStatus::Running).then_some(wall);
        }
        self.write(&self.state)
    }

    fn write(&self, state: &BenchState) -> anyhow::Result<()> {
        let path = self.dir.join(BENCH_STATE);
        let tmp = self.dir.join(format!("{BENCH_STATE}.tmp"));
        std::fs::write(&tmp, serde_json::to_string_pretty(state)? + "\n")
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The first measurement earlier sessions journaled that `wanted` accepts, taken out (a
    /// journal holding one twice yields it once).
    fn take(&mut self, wanted: impl Fn(&BenchLine) -> bool) -> Option<BenchLine> {
        let i = self.journaled.iter().position(wanted)?;
        Some(self.journaled.remove(i))
    }
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

/// [`encode`] of DeepSeek-OCR-2, batched as v1's: the page prepared once (views, prompt), its
/// copies through the tower together ([`occ_model::encoder_v2::Ocr2Encoder::encode_batch`]: views of
/// one side in one forward, at most the encoder's batch at a time), then spliced. As for v1, only
/// the tower is timed.
fn encode_v2(engine: &DeepseekOcr2, mode: Mode, pages: usize) -> anyhow::Result<(Vec<PromptInput>, f64)> {
    let image = page_for(mode)?;
    let page = engine.prepare_page(&image, mode, &Prompt::FreeOcr)?;
    let prepared = vec![page.image; pages];
    let device = engine.decoder().device();
    let t = Instant::now();
    let rows = engine.encoder().encode_batch(&prepared)?;
    device.synchronize()?;
    let seconds = t.elapsed().as_secs_f64();
    let inputs = rows
        .iter()
        .map(|r| Ok(PromptInput { embeds: splice(engine.decoder(), &page.tokens, r)?, ids: page.tokens.ids.clone() }))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((inputs, seconds))
}

/// Free device memory for sizing the slots: `--free-memory-gb`, else the device's figure (CUDA).
fn free_memory(args: &Args, device: &Device) -> Option<u64> {
    match args.free_memory_gb {
        Some(gb) => Some((gb.max(0.0) * 1e9) as u64),
        None => occ_model::ops::device_memory_free(device),
    }
}

/// The queue's settings for `inputs`: with `--free-memory-gb`, the figure less the prompt
/// embeddings already encoded (what the device's figure, read by the queue, would no longer hold).
fn batcher_config(args: &Args, batch: usize, inputs: &[PromptInput]) -> BatcherConfig {
    let held: u64 = inputs.iter().map(|p| (p.embeds.elem_count() * p.embeds.dtype().size_in_bytes()) as u64).sum();
    BatcherConfig {
        slots: batch,
        prefill_batch: batch.min(8),
        cuda_graph: !args.no_cuda_graph,
        free_memory: args.free_memory_gb.map(|gb| ((gb.max(0.0) * 1e9) as u64).saturating_sub(held)),
        ..Default::default()
    }
}

fn run_one(engine: &Model, args: &Args, mode: Mode, batch: usize, peak: &mut Peak) -> anyhow::Result<BenchRun> {
    let pages = args.pages.unwrap_or(batch).max(1);
    let cfg = generation(args);
    let device = engine.decoder().device();
    let free = free_memory(args, device);
    for _ in 0..args.warmup {
        let (inputs, _) = encode(engine, mode, batch.min(pages))?;
        let warm = GenerationConfig { max_new_tokens: cfg.max_new_tokens.min(16), ..cfg.clone() };
        generate_queue(engine.decoder(), &inputs, &warm, &batcher_config(args, batch, &inputs))?;
    }
    if args.cuda_profile {
        occ_model::ops::cuda_profiler(device, true)?;
    }
    let t = Instant::now();
    let (inputs, encode_s) = encode(engine, mode, pages)?;
    peak.sample();
    let bc = batcher_config(args, batch, &inputs);
    let prompt_tokens = inputs.first().map_or(0, |p| p.ids.len());
    let decoder = engine.decoder();
    let seq = Sequences { prompt_len: prompt_tokens, max_new_tokens: args.new_tokens };
    let plan = SlotMemory::new(decoder.config(), decoder.dtype(), seq, &bc);
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
    let slots = q.fit.used.max(1) as f64;
    let per_s = |n: f64, s: f64| if s > 0.0 { n / s } else { 0.0 };
    // the weights a step over the slots reads, against the measured time of a step
    let weights = DecodeWeights::new(decoder.config(), decoder.dtype(), q.fit.used);
    let step_s = (q.decode_steps > 0).then(|| decode_s / q.decode_steps as f64);
    Ok(BenchRun {
        mode: mode.to_string(),
        batch: if q.fit.lowered() { q.fit.used } else { batch },
        pages,
        new_tokens: args.new_tokens,
        prompt_tokens,
        wall_s: wall,
        pages_per_s: per_s(pages as f64, wall),
        tok_s: per_s(generated as f64, wall),
        decode_tok_s: per_s(decode_tokens, decode_s) / slots,
        decode_tok_s_total: per_s(decode_tokens, decode_s),
        encode_s_per_page: encode_s / pages as f64,
        prefill_s: q.prefill.as_secs_f64() / pages as f64,
        decode_steps: q.decode_steps,
        decode_step_s: step_s,
        decode_weight_gb_per_step: Some(weights.total() as f64 / 1e9),
        decode_weight_gb_s: step_s.and_then(|s| weights.gb_per_s(s)),
        cuda_graph: q.graph,
        decode_kernels_per_step: q.graph_kernels,
        peak_gpu_gb: peak.gb(),
        oom_retries: 0,
        requested_batch: Some(batch),
        fits_batch: free.map(|f| plan.max_slots(f, 1)),
        gb_per_slot: free.map(|_| plan.bytes_per_slot(1) as f64 / 1e9),
        free_gpu_gb: free.map(|f| f as f64 / 1e9),
        session: 0,
    })
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let resume = resume_dir(&args);
    let args = match &resume {
        Some(dir) => restored(args, dir, out)?,
        None => args,
    };
    if args.batch.contains(&0) || args.new_tokens == 0 {
        anyhow::bail!("--batch sizes and --new-tokens must be at least 1")
    }
    let interrupt = Interrupt::install()?;
    let mut run_dir = match &resume {
        Some(dir) => BenchDir::resume(dir, out)?,
        None => BenchDir::create(&args.out)?,
    };
    let result = measure(&args, &mut run_dir, &interrupt, out);
    if let Err(e) = &result {
        if e.downcast_ref::<Interrupted>().is_none() && e.downcast_ref::<Refused>().is_none() {
            match run_dir.state(RunStatus::Failed, &crate::output::causes(e)) {
                Ok(()) => out.info(&format!("continue it with: {}", resume_command(&run_dir.dir))),
                Err(m) => out.warn(&format!("marking {} failed: {m:#}", run_dir.dir.display())),
            }
        }
    }
    result
}

/// The human-readable line of a configuration measured (`now`: in this session).
fn say_run(out: &Output, run: &BenchRun, now: bool) {
    out.info(&format!(
        "{:<8} batch {:>3}{}  {:>7.2} pages/s  {:>8.1} tok/s  decode {:>7.1} tok/s/seq{}  prefill {:>7.1} ms/page  encode {:>7.1} ms/page  graph {}{}  peak {}{}{}",
        run.mode,
        run.batch,
        match run.requested_batch {
            Some(r) if r != run.batch => format!(" (of {r})"),
            _ => String::new(),
        },
        run.pages_per_s,
        run.tok_s,
        run.decode_tok_s,
        match (run.decode_step_s, run.decode_weight_gb_s) {
            (Some(step), Some(gbs)) => format!(" ({:.3} ms/step, weights {gbs:.0} GB/s)", step * 1e3),
            _ => String::new(),
        },
        run.prefill_s * 1e3,
        run.encode_s_per_page * 1e3,
        run.cuda_graph,
        run.decode_kernels_per_step.map_or(String::new(), |k| format!(" ({k} kernels/step)")),
        run.peak_gpu_gb.map_or("-".into(), |g| format!("{g:.2} GB")),
        match (run.fits_batch, run.free_gpu_gb) {
            (Some(n), Some(free)) => format!(
                "  largest batch that fits {n} ({} new tokens: {:.3} GB per slot, {free:.1} GB free)",
                run.new_tokens,
                run.gb_per_slot.unwrap_or(0.0)
            ),
            _ => String::new(),
        },
        if now { String::new() } else { format!("  (journaled by session {})", run.session) },
    ));
}

/// The line of the encoder alone (`now`: measured in this session).
fn say_encoder(out: &Output, e: &EncoderRun, now: bool) {
    let from = if now { String::new() } else { format!("  (journaled by session {})", e.session) };
    out.info(&format!("{:<8} encoder batch {:>3}  {:>7.2} ms/page{from}", e.mode, e.batch, e.s_per_page * 1e3));
}

/// The sessions whose measurements a report holds.
fn sessions_of(report: &BenchReport) -> std::collections::BTreeSet<usize> {
    report.runs.iter().map(|r| r.session).chain(report.encoder.iter().map(|e| e.session)).collect()
}

/// What a report assembled from several sessions says: which session measured what.
fn sessions_note(report: &BenchReport) -> Option<String> {
    let sessions = sessions_of(report);
    if sessions.len() < 2 {
        return None;
    }
    let each: Vec<String> = sessions
        .iter()
        .map(|&k| {
            let runs = report.runs.iter().filter(|r| r.session == k).count();
            let enc = report.encoder.iter().filter(|e| e.session == k).count();
            format!("session {k}: {runs} configurations, {enc} encoder runs")
        })
        .collect();
    Some(format!(
        "assembled from {} sessions (process starts) of {}: {}; each number is valid for the process that \
         measured it (its own warm-ups), but numbers of different sessions were measured under that process's \
         device state and machine load (each entry's `session` says which)",
        sessions.len(),
        report.run_dir,
        each.join("; ")
    ))
}

/// Loads the engine and measures every configuration the run folder's journal lacks into it.
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
    let reader =
        Reader { device: device_name(&device), dtype: dtype_name(engine.decoder().dtype()), weights: engine.weights() };
    run_dir.reader(reader.clone())?;
    let mut peak = Peak { device: device.clone(), bytes: None };
    peak.sample();
    let mut report = BenchReport {
        engine: "compress-bench".into(),
        device: reader.device,
        dtype: reader.dtype,
        weights: reader.weights,
        run_dir: run_dir.dir.display().to_string(),
        sessions: 1,
        runs: Vec::new(),
        encoder: Vec::new(),
    };
    let session = run_dir.session();
    let planned = args.modes.len() * args.batch.len();
    let mut fresh = 0;
    for &mode in &args.modes {
        let name = mode.to_string();
        for &batch in &args.batch {
            let wanted = |l: &BenchLine| matches!(l, BenchLine::Run(r) if r.mode == name && r.requested_batch.unwrap_or(r.batch) == batch);
            if let Some(BenchLine::Run(run)) = run_dir.take(wanted) {
                say_run(out, &run, false);
                report.runs.push(run);
                continue;
            }
            if interrupt.requested() {
                run_dir.state(RunStatus::Interrupted, &[])?;
                return Err(Interrupted {
                    state: format!(
                        "{} is marked interrupted and holds the measurements in {BENCH_JOURNAL}",
                        run_dir.dir.display()
                    ),
                    done: format!("{} of {planned} configurations", run_dir.state.measured),
                    resume: resume_command(&run_dir.dir),
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
            if run.batch < b {
                out.warn(&format!(
                    "{mode} batch {b}: lowered to {} slots, the largest that fits {:.1} GB of free device memory \
                     ({:.2} GB per slot)",
                    run.batch,
                    run.free_gpu_gb.unwrap_or(0.0),
                    run.gb_per_slot.unwrap_or(0.0)
                ));
            }
            let run = BenchRun { oom_retries: retries, requested_batch: Some(batch), session, ..run };
            say_run(out, &run, true);
            let line = BenchLine::Run(run);
            run_dir.record(&line)?;
            if let BenchLine::Run(run) = line {
                report.runs.push(run);
            }
            fresh += 1;
            if args.crash_after == Some(fresh) {
                std::process::abort();
            }
            if args.interrupt_after == Some(fresh) {
                Interrupt::raise();
            }
        }
        if args.encoder_batch > 0 {
            let n = args.encoder_batch;
            let wanted = |l: &BenchLine| matches!(l, BenchLine::Encoder(e) if e.mode == name && e.batch == n);
            if let Some(BenchLine::Encoder(e)) = run_dir.take(wanted) {
                say_encoder(out, &e, false);
                report.encoder.push(e);
                continue;
            }
            encode(&engine, mode, n)?; // warm-up at the same size (GEMM plans, the allocator's pool)
            let (_, s) = encode(&engine, mode, n)?;
            peak.sample();
            let e = EncoderRun { mode: name.clone(), batch: n, s_per_page: s / n as f64, session };
            say_encoder(out, &e, true);
            let line = BenchLine::Encoder(e);
            run_dir.record(&line)?;
            if let BenchLine::Encoder(e) = line {
                report.encoder.push(e);
            }
        }
    }
    run_dir.state(RunStatus::Complete, &[])?;
    report.sessions = sessions_of(&report).len();
    let note = sessions_note(&report);
    out.send(&report)?;
    if let Some(note) = note {
        out.info(&note);
    }
    out.info(&format!("  run folder: {}", run_dir.dir.display()));
    if !out.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
