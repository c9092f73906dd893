//! `compress-bench ocr`: read page images with DeepSeek-OCR, a mini reader or Tesseract.
//!
//! With `--truth FILE.jsonl --predictions-out P.jsonl` the pages are a document set with ground
//! truth: the truth file is joined to the images by file name (`occ_eval::truth`; every image
//! without truth, truth row without image and name given twice is named, warned about and counted,
//! or refuses the run with `--strict`), only joined pages are read, and each page's reading becomes a
//! line of `score`'s input (`occ_eval::predictions`), so `compress-bench score P.jsonl` scores the set
//! (docs/SWEEPS.md, "Reading a document set"). Engines and weights: `crate::engine`.
//!
//! `--pdf FILE` reads a PDF's pages (`--pages`, rendered at `--dpi` by `occ_serve::pdf`), each page
//! named `FILE#page=N` in the outputs. `--engine openai` reads through an OpenAI-compatible server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use image::RgbImage;
use occ_core::{EngineInfo, Mode, OcrEngine, OcrOptions, OcrPage, Prompt, Timings, VisionTokens};
use occ_eval::predictions::{PredictionLine, PredictionsWriter};
use occ_eval::tesseract::{Tesseract, DEFAULT_PSM};
use occ_eval::truth::{self, Join, JoinedPage};
use occ_eval::Lang;
use occ_model::generate::GenerationConfig;
use occ_model::grounding::GroundedBlock;
use occ_model::pipeline::{DeepseekOcr, PageOutput};
use occ_model::pipeline_v2::DeepseekOcr2;
use occ_serve::pdf::PageRange;
use occ_serve::OpenAiEngine;

use crate::engine::{self, EngineKind, Generation, ModelArgs, NgramArg, TesseractSettings};
use crate::messages::{EngineLoaded, OcrPageRead, Predictions, StageTimes, TruthProblem};
use crate::output::Output;

/// Join problems printed on stderr (all of them are `truth_problem` messages under `--json`).
const PROBLEMS_PRINTED: usize = 20;

/// Task prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PromptArg {
    /// `<image>\nFree OCR.` (plain text; the paper's compression study).
    FreeOcr,
    /// `<image>\n<|grounding|>Convert the document to markdown.`
    Markdown,
    /// `<image>\n<|grounding|>OCR this image.` (text with boxes).
    Grounding,
}

/// Read page images with DeepSeek-OCR, a mini reader or Tesseract.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Page image(s); pages are read in batches of the engine's size.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["images", "pdf"])]
    pub image: Vec<PathBuf>,
    /// A folder of page images: its .png, .jpg and .jpeg files in file-name order (not its subfolders).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// A PDF document: its pages are rendered (pure Rust) and read one by one, named FILE#page=N.
    #[arg(long, value_name = "FILE")]
    pub pdf: Option<PathBuf>,
    /// Pages of --pdf, counted from 1: N, N-M, N- or -M [default: every page].
    #[arg(long, value_name = "RANGE", requires = "pdf")]
    pub pages: Option<PageRange>,
    /// Resolution the pages of --pdf are rendered at, in dots per inch.
    #[arg(long, default_value_t = 144.0, value_name = "DPI")]
    pub dpi: f32,
    /// Ground truth, JSON Lines of `image` (file name), `truth` and optional `id`, `group`,
    /// `text_tokens`, joined to the images by file name; only joined pages are read (docs/SWEEPS.md).
    #[arg(long, value_name = "FILE", requires = "predictions_out")]
    pub truth: Option<PathBuf>,
    /// Write `score`'s input here, one line per joined page: id, truth, prediction, mode,
    /// vision_tokens, text_tokens and group where known, and the image's file name.
    #[arg(long, value_name = "FILE", requires = "truth")]
    pub predictions_out: Option<PathBuf>,
    /// Refuse the run, reading nothing, if the join has any problem (an image without truth, a truth
    /// row without image or unreadable, a name or id given twice) or an image cannot be decoded.
    #[arg(long, requires = "truth")]
    pub strict: bool,
    /// tesseract: language of the pages (en or zh).
    #[arg(long, default_value = "en")]
    pub lang: Lang,
    /// tesseract: pages read in parallel, one process each [default: available CPU threads].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    /// Resolution mode: tiny, small, base, large, gundam or custom:<base>x<image>[:crop]; v2 or
    /// v2-single for the deepseek-ocr-2 engine.
    #[arg(long, default_value = "small")]
    pub mode: Mode,
    /// Task prompt.
    #[arg(long, value_enum, default_value = "free-ocr")]
    pub prompt: PromptArg,
    /// A custom prompt text instead (must contain `<image>` once).
    #[arg(long, conflicts_with = "prompt", value_name = "TEXT")]
    pub prompt_text: Option<String>,
    /// Upper bound of generated tokens per page.
    #[arg(long, default_value_t = 8192)]
    pub max_new_tokens: usize,
    /// Generate exactly --max-new-tokens tokens (benchmarks).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Repetition blocker.
    #[arg(long, value_enum, default_value = "deepseek")]
    pub ngram: NgramArg,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus mass when sampling.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    pub sample_seed: u64,
    /// The reader.
    #[arg(long, default_value = "deepseek-ocr", value_parser = engine::engine_parser(engine::READERS))]
    pub engine: EngineKind,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Peak resident memory of this process (Linux `VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A loaded reader: a model with its generation settings, Tesseract, or an OpenAI-compatible server
/// with the options of every request.
enum Reader {
    Model {
        engine: Box<DeepseekOcr>,
        cfg: GenerationConfig,
    },
    /// DeepSeek-OCR-2, read as DeepSeek-OCR is (the same batcher, the same generation flags).
    ModelV2 {
        engine: Box<DeepseekOcr2>,
        cfg: GenerationConfig,
    },
    Tesseract(Tesseract),
    Remote {
        engine: Box<OpenAiEngine>,
        options: OcrOptions,
    },
}

/// What a reader gave for one page (the model's fields are `None` for Tesseract).
struct PageRead {
    text: String,
    blocks: Vec<GroundedBlock>,
    token_ids: Option<Vec<u32>>,
    n_prompt_tokens: Option<usize>,
    stopped_at_eos: Option<bool>,
    vision_tokens: Option<VisionTokens>,
    timings: Timings,
}

impl Reader {
    fn load(args: &Args, out: &Output) -> anyhow::Result<Reader> {
        if let Some(why) = args.engine.refuses_mode(args.mode) {
            bail!("--mode {}: {why}", args.mode);
        }
        if args.engine == EngineKind::DeepseekOcr2 {
            let engine = Box::new(engine::load_model_v2(&args.model, out)?);
            return Ok(Reader::ModelV2 { engine, cfg: generation(args).config() });
        }
        if args.engine.is_model() {
            let engine = Box::new(engine::load_model(args.engine, &args.model, out)?);
            return Ok(Reader::Model { engine, cfg: generation(args).config() });
        }
        if args.engine == EngineKind::OpenAi {
            let options = OcrOptions {
                max_new_tokens: args.max_new_tokens,
                temperature: args.temperature,
                seed: args.sample_seed,
                ignore_eos: args.ignore_eos,
            };
            return Ok(Reader::Remote { engine: Box::new(args.model.openai.build()?), options });
        }
        if args.engine != EngineKind::Tesseract {
            bail!("ocr reads with deepseek-ocr, mini or tesseract, not {}", args.engine);
        }
        if args.model.synthetic().is_some() {
            bail!("--synthetic-weights is for the deepseek-ocr engine; tesseract has no weights");
        }
        if args.prompt_text.is_some() || args.prompt != PromptArg::FreeOcr {
            out.warn("tesseract reads plain text; --prompt and --prompt-text are ignored");
        }
        let threads = args.threads.map(|n| usize::try_from(n).unwrap_or(1));
        Ok(Reader::Tesseract(TesseractSettings { psm: DEFAULT_PSM, threads }.build(args.lang)?))
    }

    fn info(&self) -> EngineInfo {
        match self {
            Reader::Model { engine, .. } => OcrEngine::info(engine.as_ref()),
            Reader::ModelV2 { engine, .. } => engine.info(),
            Reader::Tesseract(t) => t.info(),
            Reader::Remote { engine, .. } => engine.info(),
        }
    }

    /// Pages per call of [`Reader::read`].
    fn batch(&self) -> usize {
        match self {
            Reader::Model { engine, .. } => engine.max_batch.max(1),
            Reader::ModelV2 { engine, .. } => engine.preferred_batch(),
            Reader::Tesseract(t) => t.preferred_batch(),
            Reader::Remote { engine, .. } => engine.preferred_batch(),
        }
    }

    /// Reads `images` in `mode`; outputs are in input order.
    fn read(&mut self, images: &[(String, RgbImage)], mode: Mode, prompt: &Prompt) -> anyhow::Result<Vec<PageRead>> {
        match self {
            Reader::Model { engine, cfg } => {
                let pages: Vec<(&RgbImage, Mode)> = images.iter().map(|(_, i)| (i, mode)).collect();
                Ok(model_reads(engine.ocr(&pages, prompt, cfg)?))
            }
            Reader::ModelV2 { engine, cfg } => {
                let pages: Vec<(&RgbImage, Mode)> = images.iter().map(|(_, i)| (i, mode)).collect();
                Ok(model_reads(engine.ocr(&pages, prompt, cfg)?))
            }
            Reader::Tesseract(t) => {
                let pages: Vec<OcrPage> =
                    images.iter().map(|(id, image)| OcrPage { id: id.clone(), image: image.clone(), mode }).collect();
                let results = t.ocr(&pages, prompt, &OcrOptions::default())?;
                Ok(results
                    .into_iter()
                    .zip(images)
                    .map(|(r, (_, image))| PageRead {
                        text: r.text,
                        blocks: Vec::new(),
                        token_ids: None,
                        n_prompt_tokens: None,
                        stopped_at_eos: None,
                        // The token accounting of the mode the page stands for (Tesseract reads the
                        // pixels as they are).
                        vision_tokens: mode.vision_tokens(image.width(), image.height()).ok(),
                        timings: r.timings,
                    })
                    .collect())
            }
            Reader::Remote { engine, options } => {
                let pages: Vec<OcrPage> =
                    images.iter().map(|(id, image)| OcrPage { id: id.clone(), image: image.clone(), mode }).collect();
                let results = engine.ocr(&pages, prompt, options)?;
                Ok(results
                    .into_iter()
                    .map(|r| PageRead {
                        blocks: occ_model::grounding::parse_grounding(&r.text),
                        text: r.text,
                        // the server's usage; token ids only from servers that send them (this toolkit's)
                        stopped_at_eos: r.token_ids.as_ref().map(|_| !r.hit_max_tokens),
                        token_ids: r.token_ids,
                        n_prompt_tokens: r.n_prompt_tokens,
                        vision_tokens: None,
                        timings: r.timings,
                    })
                    .collect())
            }
        }
    }
}

/// The pages of `--pdf` (those of `--pages`), rendered at `--dpi`, by the names `FILE#page=N`
/// that are appended to `paths`.
fn render_pdf(args: &Args, paths: &mut Vec<PathBuf>) -> anyhow::Result<HashMap<PathBuf, RgbImage>> {
    /// Pixels of one rendered page at most (a letter page at 1,200 dpi is 135 M).
    const MAX_PIXELS: u64 = 150_000_000;
    let Some(pdf) = &args.pdf else { return Ok(HashMap::new()) };
    let bytes = std::fs::read(pdf).with_context(|| format!("reading --pdf {}", pdf.display()))?;
    let range = args.pages.unwrap_or(PageRange::ALL);
    let images = occ_serve::pdf::rasterize(&bytes, range, args.dpi, MAX_PIXELS, usize::MAX)
        .with_context(|| format!("rendering --pdf {}", pdf.display()))?;
    let mut out = HashMap::new();
    for (i, image) in images.into_iter().enumerate() {
        let name = PathBuf::from(format!("{}#page={}", pdf.display(), range.from + i));
        paths.push(name.clone());
        out.insert(name, image);
    }
    Ok(out)
}

/// What an occ-model reader gave for each page.
fn model_reads(results: Vec<PageOutput>) -> Vec<PageRead> {
    results
        .into_iter()
        .map(|r| PageRead {
            text: r.text,
            blocks: r.blocks,
            token_ids: Some(r.token_ids),
            n_prompt_tokens: Some(r.n_prompt_tokens),
            stopped_at_eos: Some(r.stopped_at_eos),
            vision_tokens: Some(r.vision_tokens),
            timings: r.timings,
        })
        .collect()
}

fn generation(args: &Args) -> Generation {
    Generation {
        max_new_tokens: args.max_new_tokens,
        ignore_eos: args.ignore_eos,
        ngram: args.ngram,
        temperature: args.temperature,
        top_p: args.top_p,
        sample_seed: args.sample_seed,
    }
}

/// Reads the truth file and joins it to the images; announces every problem, and refuses the run
/// under `--strict` when there is one.
fn join_truth(path: &Path, images: &[PathBuf], strict: bool, out: &Output) -> anyhow::Result<Join> {
    let parsed = truth::read_truth(path)?;
    let join = truth::join(images, parsed);
    for p in &join.problems {
        out.send(&TruthProblem { kind: p.kind(), image: p.image(), message: p.to_string() })?;
    }
    if !out.json {
        for p in join.problems.iter().take(PROBLEMS_PRINTED) {
            out.warn(&p.to_string());
        }
        if join.problems.len() > PROBLEMS_PRINTED {
            out.warn(&format!("… and {} more problems joining the truth", join.problems.len() - PROBLEMS_PRINTED));
        }
    }
    let counts: Vec<String> = join.counts().iter().map(|(k, n)| format!("{n} {k}")).collect();
    out.info(&format!(
        "{}: {} truth lines, {} images, {} pages joined{}",
        path.display(),
        join.n_truth_lines,
        join.n_images,
        join.pages.len(),
        if counts.is_empty() { String::new() } else { format!(" ({})", counts.join(", ")) }
    ));
    if let (true, Some(first)) = (strict, join.problems.first()) {
        bail!(
            "--strict refuses the join of {} with the images: {} problem(s), the first: {first}; nothing was read",
            path.display(),
            join.problems.len()
        );
    }
    if join.pages.is_empty() {
        bail!(
            "no image joins a truth row of {} by file name ({} images, {} truth lines); nothing to read",
            path.display(),
            join.n_images,
            join.n_truth_lines
        );
    }
    Ok(join)
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let prompt = match (&args.prompt_text, args.prompt) {
        (Some(t), _) => Prompt::Custom(t.clone()),
        (None, PromptArg::FreeOcr) => Prompt::FreeOcr,
        (None, PromptArg::Markdown) => Prompt::Markdown,
        (None, PromptArg::Grounding) => Prompt::Grounding,
    };
    let mut paths = args.image.clone();
    if let Some(dir) = &args.images {
        paths.extend(truth::list_images(dir)?);
    }
    let mut pdf_pages = render_pdf(&args, &mut paths)?;
    // The join and the output file come before the engine, so a bad input costs no model load.
    let join = args.truth.as_deref().map(|t| join_truth(t, &paths, args.strict, out)).transpose()?;
    let mut writer = args
        .predictions_out
        .as_deref()
        .map(|p| PredictionsWriter::create(p).with_context(|| format!("--predictions-out {}", p.display())))
        .transpose()?;
    let pages: Vec<(PathBuf, Option<JoinedPage>)> = match &join {
        Some(j) => j.pages.iter().map(|p| (p.path.clone(), Some(p.clone()))).collect(),
        None => paths.iter().map(|p| (p.clone(), None)).collect(),
    };
    let t_load = Instant::now();
    let mut reader = Reader::load(&args, out)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let info = reader.info();
    out.send(&EngineLoaded { info: &info, load_seconds: load_s })?;
    let several = pages.len() > 1;
    let mut unreadable = 0usize;
    for chunk in pages.chunks(reader.batch()) {
        let mut batch = Vec::with_capacity(chunk.len());
        for (path, joined) in chunk {
            let loaded = pdf_pages.remove(path).map(Ok).unwrap_or_else(|| occ_model::preprocess::load_image(path));
            match loaded {
                Ok(image) => batch.push((path, joined, image)),
                // In a document set an undecodable page is left out and counted, like a join problem.
                Err(e) if joined.is_some() && !args.strict => {
                    out.warn(&format!("image {}: {e}; left out", path.display()));
                    unreadable += 1;
                }
                // The loader's error names the image and what failed (opening, reading, decoding).
                Err(e) => return Err(anyhow::Error::new(e)),
            }
        }
        let images: Vec<(String, RgbImage)> =
            batch.iter().map(|(path, _, image)| (path.display().to_string(), image.clone())).collect();
        let results = reader.read(&images, args.mode, &prompt).with_context(|| {
            let saved = writer.as_ref().map_or(String::new(), |w| {
                format!(" (the {} pages read before are in {})", w.written(), w.partial_path().display())
            });
            format!("running {}{saved}", info.name)
        })?;
        let peak = peak_rss_bytes();
        for ((path, joined, _), r) in batch.iter().zip(&results) {
            let id = joined.as_ref().map(JoinedPage::id);
            announce_page(path, id, args.mode, r, &info, peak, out)?;
            if let (Some(w), Some(page)) = (writer.as_mut(), joined) {
                let nominal = r.vision_tokens.map(|v| v.nominal);
                w.write(&PredictionLine::new(page, &r.text, Some(args.mode), nominal))?;
            } else {
                if several {
                    out.result(&format!("==> {} <==", path.display()));
                }
                out.result(&r.text);
            }
        }
        if let Some(w) = writer.as_mut() {
            w.flush()?;
        }
    }
    // Tesseract runs in child processes, whose memory this process does not see.
    if let (Some(p), Reader::Model { .. } | Reader::ModelV2 { .. }) = (peak_rss_bytes(), &reader) {
        out.info(&format!("peak resident memory {:.2} GB", p as f64 / 1e9));
    }
    if let (Some(w), Some(join)) = (writer, &join) {
        let written = w.written();
        let path = w.finish()?;
        out.send(&Predictions {
            path: path.display().to_string(),
            n_images: join.n_images,
            n_truth_lines: join.n_truth_lines,
            n_joined: join.pages.len(),
            n_written: written,
            n_unreadable: unreadable,
            problems: join.counts(),
        })?;
        let left_out = join.problems.len() + unreadable;
        out.result(&format!(
            "{written} predictions -> {} ({} images, {} truth lines, {left_out} problems left out); score them with \
             `compress-bench score {}`",
            path.display(),
            join.n_images,
            join.n_truth_lines,
            path.display()
        ));
    }
    Ok(())
}

/// The `ocr` message and the info line of one page.
fn announce_page(
    path: &Path,
    id: Option<&str>,
    mode: Mode,
    r: &PageRead,
    info: &EngineInfo,
    peak: Option<u64>,
    out: &Output,
) -> anyhow::Result<()> {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let n_generated = r.token_ids.as_ref().map(Vec::len);
    let decode_s = r.timings.decode.as_secs_f64();
    let decode_tok_s = match n_generated {
        Some(n) if decode_s > 0.0 && n > 1 => Some((n - 1) as f64 / decode_s),
        Some(_) => Some(0.0),
        None => None,
    };
    out.send(&OcrPageRead {
        image: path.display().to_string(),
        id,
        mode,
        text: &r.text,
        blocks: &r.blocks,
        token_ids: r.token_ids.as_deref(),
        n_prompt_tokens: r.n_prompt_tokens,
        n_generated_tokens: n_generated,
        stopped_at_eos: r.stopped_at_eos,
        vision_tokens: r.vision_tokens,
        timings_ms: StageTimes::from(&r.timings),
        decode_tok_per_s: decode_tok_s,
        engine: &info.name,
        synthetic_weights: info.synthetic_weights,
        device: &info.device,
        dtype: &info.dtype,
        peak_rss_bytes: peak,
    })?;
    let synthetic = if info.synthetic_weights { ", SYNTHETIC WEIGHTS" } else { "" };
    match (r.n_prompt_tokens, n_generated, r.stopped_at_eos) {
        (Some(prompt), Some(generated), Some(eos)) => out.info(&format!(
            "{}: {prompt} prompt + {generated} generated tokens ({}), vision {:.0} ms, prefill {:.0} ms, decode {:.0} ms \
             ({:.1} tok/s){synthetic}",
            path.display(),
            if eos { "EOS" } else { "max tokens" },
            ms(r.timings.vision),
            ms(r.timings.prefill),
            ms(r.timings.decode),
            decode_tok_s.unwrap_or(0.0),
        )),
        _ => out.info(&format!(
            "{}: {} characters read in {:.0} ms",
            path.display(),
            r.text.chars().count(),
            ms(r.timings.preprocess + r.timings.decode)
        )),
    }
    Ok(())
}
