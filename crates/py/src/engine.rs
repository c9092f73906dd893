//! Engines: `Engine` (any `occ_core::OcrEngine`) and its subclasses, each built the way
//! `compress-bench`'s `--engine` builds it (`crates/cli/src/engine.rs`, `engine/openai.rs`).

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use candle_core::{DType, Device};
use occ_core::{EngineInfo, OcrEngine, OcrOptions, OcrOutput, OcrPage, Prompt};
use occ_model::load::WeightsDir;
use occ_model::pipeline::{DeepseekOcr, SyntheticSize};
use occ_model::synth::Recipe;
use occ_serve::{OpenAiConfig, OpenAiEngine};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::PyClassInitializer;

use crate::image_in::images_in;
use crate::render::{parse_lang, parse_mode};
use crate::{raise, EngineError};

/// A task prompt by name: `free-ocr` (the compression study's `Free OCR.`), `markdown`,
/// `grounding`, or any text holding `<image>` once.
pub(crate) fn parse_prompt(prompt: &str) -> PyResult<Prompt> {
    Ok(match prompt {
        "free-ocr" => Prompt::FreeOcr,
        "markdown" => Prompt::Markdown,
        "grounding" => Prompt::Grounding,
        custom if custom.matches("<image>").count() == 1 => Prompt::Custom(custom.to_string()),
        other => {
            return Err(PyValueError::new_err(format!(
                "prompt {other:?}: expected free-ocr, markdown, grounding or a text holding <image> once"
            )))
        }
    })
}

/// An OCR engine. Build one of its subclasses: `Tesseract`, `DeepSeekOcr`, `MiniReader`,
/// `OpenAIEngine`. Calls on one engine are serialised (a mutex); they release the GIL.
#[pyclass(subclass, frozen, module = "compress_bench")]
pub struct Engine {
    inner: Mutex<Box<dyn OcrEngine>>,
    info: EngineInfo,
}

impl Engine {
    fn new(engine: Box<dyn OcrEngine>) -> Engine {
        let info = engine.info();
        Engine { inner: Mutex::new(engine), info }
    }

    /// The engine, for a call (a panic in an earlier call does not make it unusable).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Box<dyn OcrEngine>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What an engine read from one page.
#[pyclass(frozen, get_all, module = "compress_bench")]
pub struct OcrResult {
    /// The page id (`page-<i>` for the i-th image of the call, or the memory's page id).
    pub id: String,
    /// The decoded text.
    pub text: String,
    /// Generated token ids (model engines).
    pub token_ids: Option<Vec<u32>>,
    /// Prompt length in decoder tokens, vision slots included (model engines).
    pub n_prompt_tokens: Option<usize>,
    /// Generated tokens (model engines).
    pub n_generated_tokens: Option<usize>,
    /// Generation stopped at `max_new_tokens` rather than at the end of the text.
    pub hit_max_tokens: bool,
    /// Seconds per stage: preprocess, vision, prefill, decode.
    pub timings: (f64, f64, f64, f64),
}

impl From<OcrOutput> for OcrResult {
    fn from(o: OcrOutput) -> OcrResult {
        let t = o.timings;
        OcrResult {
            id: o.id,
            text: o.text,
            token_ids: o.token_ids,
            n_prompt_tokens: o.n_prompt_tokens,
            n_generated_tokens: o.n_generated_tokens,
            hit_max_tokens: o.hit_max_tokens,
            timings: (
                t.preprocess.as_secs_f64(),
                t.vision.as_secs_f64(),
                t.prefill.as_secs_f64(),
                t.decode.as_secs_f64(),
            ),
        }
    }
}

#[pymethods]
impl OcrResult {
    fn __repr__(&self) -> String {
        format!("<OcrResult {} {:?}>", self.id, self.text.chars().take(60).collect::<String>())
    }
}

#[pymethods]
impl Engine {
    /// Identity: `{"name", "version", "weights", "synthetic_weights", "device", "dtype"}`.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("name", &self.info.name)?;
        d.set_item("version", &self.info.version)?;
        d.set_item("weights", &self.info.weights)?;
        d.set_item("synthetic_weights", self.info.synthetic_weights)?;
        d.set_item("device", &self.info.device)?;
        d.set_item("dtype", &self.info.dtype)?;
        Ok(d)
    }

    /// Reads page images; returns one `OcrResult` per image, in order.
    ///
    /// `images`: one image or a list of them (`Page`, PNG/JPEG bytes, a file path, a numpy array or a
    /// PIL image). `mode`: the resolution mode to read in; `None` reads each `Page` in its own mode
    /// and needs a mode for other images. `prompt`: `free-ocr`, `markdown`, `grounding` or a text
    /// holding `<image>`. The generation options apply to model engines.
    #[pyo3(signature = (images, mode = None, *, prompt = "free-ocr", max_new_tokens = 8192, temperature = 0.0, seed = 0))]
    fn ocr(
        &self,
        py: Python<'_>,
        images: &Bound<'_, PyAny>,
        mode: Option<&str>,
        prompt: &str,
        max_new_tokens: usize,
        temperature: f64,
        seed: u64,
    ) -> PyResult<Vec<OcrResult>> {
        let mode = mode.map(parse_mode).transpose()?;
        let prompt = parse_prompt(prompt)?;
        let inputs = images_in(images)?;
        let mut pages = Vec::with_capacity(inputs.len());
        let mut truths = Vec::new();
        for (i, input) in inputs.into_iter().enumerate() {
            let Some(page_mode) = mode.or(input.mode) else {
                return Err(PyValueError::new_err(format!(
                    "image {i} is not a Page, so it has no mode: pass mode= (tiny, small, base, large, gundam, custom:…)"
                )));
            };
            let image = std::sync::Arc::try_unwrap(input.image).unwrap_or_else(|a| (*a).clone());
            let id = format!("page-{i}");
            if let Some(text) = input.text {
                truths.push((id.clone(), text));
            }
            pages.push(OcrPage { id, image, mode: page_mode });
        }
        let options = OcrOptions { max_new_tokens, temperature, seed, ignore_eos: false };
        let outputs = py
            .detach(|| {
                let mut engine = self.lock();
                // As the sweep's runner does: a rendered page's text is handed over before it is read
                // (readers ignore it; the fake engine answers with it).
                for (id, text) in &truths {
                    engine.ground_truth(id, text);
                }
                engine.ocr(&pages, &prompt, &options)
            })
            .map_err(|e| raise::<EngineError>(&e))?;
        Ok(outputs.into_iter().map(OcrResult::from).collect())
    }

    fn __repr__(&self) -> String {
        format!("<Engine {}>", self.info)
    }
}

/// Device and dtype by name, as `--device` / `--dtype` (f32 on cpu, bf16 on cuda by default).
fn device_dtype(device: &str, dtype: Option<&str>) -> PyResult<(Device, DType)> {
    let dev = match device {
        "cpu" => Device::Cpu,
        "cuda" => occ_model::ops::cuda_device(0).map_err(|e| {
            PyErr::new::<EngineError, _>(format!(
                "opening CUDA device 0 (is the package built with the cuda feature and is a GPU visible?): {}",
                crate::chain(&e)
            ))
        })?,
        other => return Err(PyValueError::new_err(format!("device {other:?}: expected cpu or cuda"))),
    };
    let dt = match (dtype, device) {
        (Some("f32"), _) | (None, "cpu") => DType::F32,
        (Some("bf16"), _) | (None, _) => DType::BF16,
        (Some("f16"), _) => DType::F16,
        (Some(other), _) => return Err(PyValueError::new_err(format!("dtype {other:?}: expected f32, bf16 or f16"))),
    };
    Ok((dev, dt))
}

/// Tesseract (Debian's `tesseract` program) reading pages of one language.
///
/// `lang`: `en` or `zh`; `psm`: Tesseract's page segmentation mode (6: one block of text);
/// `threads`: pages read in parallel (default: the CPU threads); `program`: the executable.
#[pyclass(extends = Engine, frozen, module = "compress_bench")]
pub struct Tesseract;

#[pymethods]
impl Tesseract {
    #[new]
    #[pyo3(signature = (lang = "en", psm = 6, threads = None, program = "tesseract"))]
    fn new(lang: &str, psm: u32, threads: Option<usize>, program: &str) -> PyResult<PyClassInitializer<Tesseract>> {
        let lang = parse_lang(lang)?;
        let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        let t =
            occ_eval::tesseract::Tesseract::new(program, lang, psm, threads).map_err(|e| raise::<EngineError>(&e))?;
        Ok(PyClassInitializer::from(Engine::new(Box::new(t))).add_subclass(Tesseract))
    }
}

/// DeepSeek-OCR in candle: from an HF snapshot folder (`weights=DIR` holding config.json,
/// tokenizer.json and model-*.safetensors), or on seeded synthetic weights (`synthetic="tiny"`,
/// `"reduced"` or `"full"`; meaningless text, for tests and speed runs).
///
/// `device`: `cpu` or `cuda` (a package built with the `cuda` feature); `dtype`: `f32`, `bf16` or
/// `f16` (default f32 on cpu, bf16 on cuda); `seed` and `recipe` pick the synthetic weights.
#[pyclass(extends = Engine, frozen, module = "compress_bench")]
pub struct DeepSeekOcr;

#[pymethods]
impl DeepSeekOcr {
    #[new]
    #[pyo3(signature = (weights = None, *, device = "cpu", dtype = None, synthetic = None, seed = 0, recipe = 1))]
    fn new(
        py: Python<'_>,
        weights: Option<PathBuf>,
        device: &str,
        dtype: Option<&str>,
        synthetic: Option<&str>,
        seed: u64,
        recipe: u32,
    ) -> PyResult<PyClassInitializer<DeepSeekOcr>> {
        let (dev, dt) = device_dtype(device, dtype)?;
        let engine = match (weights, synthetic) {
            (Some(_), Some(_)) => return Err(PyValueError::new_err("give either weights= or synthetic=, not both")),
            (None, None) => {
                return Err(PyValueError::new_err(
                    "DeepSeekOcr needs weights=DIR (an HF snapshot of deepseek-ai/DeepSeek-OCR) or synthetic=\"tiny\"",
                ))
            }
            (None, Some(size)) => {
                let size = match size {
                    "full" => SyntheticSize::Full,
                    "reduced" => SyntheticSize::Reduced,
                    "tiny" => SyntheticSize::Tiny,
                    other => {
                        return Err(PyValueError::new_err(format!(
                            "synthetic {other:?}: expected tiny, reduced or full"
                        )))
                    }
                };
                let recipe = Recipe::from_version(recipe)
                    .ok_or_else(|| PyValueError::new_err(format!("unknown synthetic recipe {recipe} (known: 1, 2)")))?;
                py.detach(|| DeepseekOcr::synthetic_with_recipe(size, recipe, seed, dt, &dev)).map_err(|e| {
                    PyErr::new::<EngineError, _>(format!("building the synthetic engine: {}", crate::chain(&e)))
                })?
            }
            (Some(dir), None) => py.detach(|| {
                let wd = WeightsDir::open(&dir).map_err(|e| {
                    PyErr::new::<EngineError, _>(format!(
                        "opening DeepSeek-OCR weights in {}: {}",
                        dir.display(),
                        crate::chain(&e)
                    ))
                })?;
                DeepseekOcr::from_weights_dir(&wd, dt, &dev).map_err(|e| {
                    PyErr::new::<EngineError, _>(format!(
                        "loading DeepSeek-OCR weights from {}: {}",
                        dir.display(),
                        crate::chain(&e)
                    ))
                })
            })?,
        };
        Ok(PyClassInitializer::from(Engine::new(Box::new(engine))).add_subclass(DeepSeekOcr))
    }
}

/// A reader trained by `compress-bench train` (a checkpoint or export folder holding mini.json,
/// vocab.json and model.safetensors), as `--engine mini --weights DIR`.
#[pyclass(extends = Engine, frozen, module = "compress_bench")]
pub struct MiniReader;

#[pymethods]
impl MiniReader {
    #[new]
    #[pyo3(signature = (weights, *, device = "cpu", dtype = None))]
    fn new(
        py: Python<'_>,
        weights: PathBuf,
        device: &str,
        dtype: Option<&str>,
    ) -> PyResult<PyClassInitializer<MiniReader>> {
        let (dev, dt) = device_dtype(device, dtype)?;
        let engine = py.detach(|| DeepseekOcr::from_mini_dir(&weights, dt, &dev)).map_err(|e| {
            PyErr::new::<EngineError, _>(format!(
                "loading the mini reader from {}: {}",
                weights.display(),
                crate::chain(&e)
            ))
        })?;
        Ok(PyClassInitializer::from(Engine::new(Box::new(engine))).add_subclass(MiniReader))
    }
}

/// Any server speaking OpenAI's chat completions (`compress-bench serve`, vLLM, SGLang, a hosted
/// API), as `--engine openai`: each page is sent as an image with the task prompt.
///
/// `base_url`: the API up to and including `/v1`; `model`: the model name of every request;
/// `api_key`: sent as a bearer token; `prompt_template`: the text after the image, `{prompt}`
/// standing for the task prompt; `concurrency`: requests in flight; `retries`: retries of a page
/// after a 429, a 5xx, a timeout or a connection error; `timeout`: seconds one request may take;
/// `send_mode`: send each page's mode as the request's `mode` (understood by `compress-bench serve`).
#[pyclass(extends = Engine, frozen, module = "compress_bench")]
pub struct OpenAIEngine;

#[pymethods]
impl OpenAIEngine {
    #[new]
    #[pyo3(signature = (base_url, model, api_key = None, *, prompt_template = "{prompt}", concurrency = 8, retries = 4, timeout = 600.0, send_mode = false))]
    fn new(
        base_url: &str,
        model: &str,
        api_key: Option<String>,
        prompt_template: &str,
        concurrency: usize,
        retries: u32,
        timeout: f64,
        send_mode: bool,
    ) -> PyResult<PyClassInitializer<OpenAIEngine>> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(PyValueError::new_err(format!("base_url {base_url:?}: expected an http:// or https:// URL")));
        }
        if timeout.is_nan() || timeout <= 0.0 {
            return Err(PyValueError::new_err(format!("timeout must be positive, not {timeout}")));
        }
        if concurrency == 0 {
            return Err(PyValueError::new_err("concurrency must be at least 1"));
        }
        let mut cfg = OpenAiConfig::new(base_url, model);
        cfg.api_key = api_key;
        cfg.prompt_template = prompt_template.to_string();
        cfg.concurrency = concurrency;
        cfg.max_retries = retries;
        cfg.timeout = Duration::from_secs_f64(timeout);
        cfg.send_mode = send_mode;
        let engine = OpenAiEngine::new(cfg).map_err(|e| raise::<EngineError>(&e))?;
        Ok(PyClassInitializer::from(Engine::new(Box::new(engine))).add_subclass(OpenAIEngine))
    }
}

/// An engine that answers each page with its ground truth (`occ_core::fakes::FakeOcr::perfect`,
/// `--engine fake-perfect`): tests of the machinery, not a reader.
#[pyclass(extends = Engine, frozen, module = "compress_bench")]
pub struct FakePerfect;

#[pymethods]
impl FakePerfect {
    #[new]
    fn new() -> PyClassInitializer<FakePerfect> {
        PyClassInitializer::from(Engine::new(Box::new(occ_core::fakes::FakeOcr::perfect(Default::default()))))
            .add_subclass(FakePerfect)
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_class::<OcrResult>()?;
    m.add_class::<Tesseract>()?;
    m.add_class::<DeepSeekOcr>()?;
    m.add_class::<MiniReader>()?;
    m.add_class::<OpenAIEngine>()?;
    m.add_class::<FakePerfect>()?;
    Ok(())
}
