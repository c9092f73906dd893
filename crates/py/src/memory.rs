//! `OpticalMemory`, `Schedule` and the context types over `occ_memory` (docs/MEMORY.md).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use occ_memory::schedule::{file, parse};
use occ_memory::{
    AgeUnit, Clock, Content, Cost, ManualClock, MemoryConfig, MemoryError, Representation, Role, Round,
    Schedule as RSchedule, ScheduleSpec, SystemClock,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::engine::{parse_prompt, Engine, OcrResult};
use crate::render::{parse_lang, tokenizer, Page};
use crate::{raise, OpticalMemoryError, ScheduleError};

fn memory_err(e: &MemoryError) -> PyErr {
    match e {
        MemoryError::Schedule(s) => raise::<ScheduleError>(s),
        other => raise::<OpticalMemoryError>(other),
    }
}

/// A decay schedule: a round's age → text, page images of a mode, a downscaled copy, or dropped.
///
/// `Schedule(spec)` parses the command-line grammar of `--schedule` (`paper`, `step:width=4`,
/// `exp:first=1h,factor=4`, `ladder:levels=text@0/base@4/tiny@8/dropped@20`, `budget:tokens=N`, …;
/// docs/MEMORY.md); `Schedule.from_toml(text)` and `Schedule.load(path)` read `[[schedule]]` tables.
/// Invalid specs raise `ScheduleError`.
#[pyclass(frozen, module = "compress_bench")]
#[derive(Clone)]
pub struct Schedule {
    pub(crate) spec: ScheduleSpec,
}

fn levels_of(s: &RSchedule) -> Vec<(u64, String)> {
    s.levels().iter().map(|l| (l.from, l.repr.to_string())).collect()
}

#[pymethods]
impl Schedule {
    #[new]
    fn new(spec: &str) -> PyResult<Schedule> {
        let spec = parse::parse_spec(spec).map_err(|e| raise::<ScheduleError>(&e))?;
        Ok(Schedule { spec })
    }

    /// The schedules of a TOML document of `[[schedule]]` tables (each `spec = "…"` or explicit
    /// `levels`); `path` names it in messages.
    #[staticmethod]
    #[pyo3(signature = (text, path = "<string>"))]
    fn from_toml(text: &str, path: &str) -> PyResult<Vec<Schedule>> {
        let specs = file::parse_str(text, path).map_err(|e| raise::<ScheduleError>(&e))?;
        Ok(specs.into_iter().map(|spec| Schedule { spec }).collect())
    }

    /// The schedules of a TOML file (`experiments/decay/*.toml`).
    #[staticmethod]
    fn load(path: std::path::PathBuf) -> PyResult<Vec<Schedule>> {
        let specs = file::load(&path).map_err(|e| raise::<ScheduleError>(&e))?;
        Ok(specs.into_iter().map(|spec| Schedule { spec }).collect())
    }

    /// The label for reports: the spec as written, or `budget:tokens=N`.
    #[getter]
    fn name(&self) -> String {
        self.spec.name()
    }

    /// `"fixed"` or `"budget"` (the most faithful candidate fitting `tokens`, chosen at each context).
    #[getter]
    fn kind(&self) -> &'static str {
        match self.spec {
            ScheduleSpec::Fixed(_) => "fixed",
            ScheduleSpec::Budget { .. } => "budget",
        }
    }

    /// Unit of the ages: `"rounds"` or `"seconds"` (`None` for a budget schedule).
    #[getter]
    fn unit(&self) -> Option<&'static str> {
        match &self.spec {
            ScheduleSpec::Fixed(s) => Some(match s.unit {
                AgeUnit::Rounds => "rounds",
                AgeUnit::Seconds => "seconds",
            }),
            ScheduleSpec::Budget { .. } => None,
        }
    }

    /// The levels `(from_age, representation)`: representation `text`, a mode, `FROM>TO` or
    /// `dropped` (`[]` for a budget schedule).
    #[getter]
    fn levels(&self) -> Vec<(u64, String)> {
        match &self.spec {
            ScheduleSpec::Fixed(s) => levels_of(s),
            ScheduleSpec::Budget { .. } => vec![],
        }
    }

    /// The token budget of a budget schedule.
    #[getter]
    fn tokens(&self) -> Option<usize> {
        match self.spec {
            ScheduleSpec::Budget { tokens, .. } => Some(tokens),
            ScheduleSpec::Fixed(_) => None,
        }
    }

    /// The representation of a round of age `age` under a fixed schedule.
    fn representation(&self, age: u64) -> PyResult<String> {
        match &self.spec {
            ScheduleSpec::Fixed(s) => Ok(s.representation(age).to_string()),
            ScheduleSpec::Budget { .. } => {
                Err(PyValueError::new_err("a budget schedule picks its levels when the context is assembled"))
            }
        }
    }

    fn __str__(&self) -> String {
        match &self.spec {
            ScheduleSpec::Fixed(s) => s.to_string(),
            ScheduleSpec::Budget { .. } => self.spec.name(),
        }
    }

    fn __repr__(&self) -> String {
        format!("<Schedule {}>", self.__str__())
    }

    fn __eq__(&self, other: &Schedule) -> bool {
        self.spec == other.spec
    }
}

/// A schedule given as a `Schedule` or as a string in the grammar.
fn schedule_arg(obj: &Bound<'_, PyAny>) -> PyResult<ScheduleSpec> {
    if let Ok(s) = obj.cast::<Schedule>() {
        return Ok(s.get().spec.clone());
    }
    let text: String = obj.extract().map_err(|_| PyValueError::new_err("a schedule is a Schedule or a string"))?;
    parse::parse_spec(&text).map_err(|e| raise::<ScheduleError>(&e))
}

/// Token cost of a segment or context.
#[pyclass(frozen, get_all, module = "compress_bench")]
#[derive(Clone, Copy)]
pub struct TokenCost {
    /// Text tokens (DeepSeek-OCR tokenizer).
    pub text_tokens: usize,
    /// `<image>` slots of the pages in the decoder prompt.
    pub vision_slots: usize,
    /// Nominal vision tokens of the pages (paper Table 1).
    pub vision_nominal: usize,
    /// Decoder positions: `text_tokens + vision_slots`.
    pub tokens: usize,
}

impl From<Cost> for TokenCost {
    fn from(c: Cost) -> TokenCost {
        TokenCost {
            text_tokens: c.text_tokens,
            vision_slots: c.vision_slots,
            vision_nominal: c.vision_nominal,
            tokens: c.tokens(),
        }
    }
}

#[pymethods]
impl TokenCost {
    fn __repr__(&self) -> String {
        format!(
            "<TokenCost {} tokens: {} text, {} vision slots ({} nominal)>",
            self.tokens, self.text_tokens, self.vision_slots, self.vision_nominal
        )
    }
}

/// One round in the context: its text, or its page images, with its cost.
#[pyclass(frozen, module = "compress_bench")]
pub struct Segment {
    #[pyo3(get)]
    round_id: String,
    /// `system`, `user`, `assistant` or `tool`.
    #[pyo3(get)]
    role: String,
    /// Age in the schedule's unit.
    #[pyo3(get)]
    age: u64,
    /// Index of the schedule level.
    #[pyo3(get)]
    level: usize,
    /// `text`, a mode, `FROM>TO` (downscaled pages) or `dropped`.
    #[pyo3(get)]
    representation: String,
    /// The round's text for a text segment, else `None`.
    #[pyo3(get)]
    text: Option<String>,
    pages: Vec<Py<Page>>,
    #[pyo3(get)]
    cost: TokenCost,
}

#[pymethods]
impl Segment {
    /// `"text"` or `"pages"`.
    #[getter]
    fn kind(&self) -> &'static str {
        if self.text.is_some() {
            "text"
        } else {
            "pages"
        }
    }

    /// The page images of an imaged round, in reading order (`[]` for a text segment).
    #[getter]
    fn pages(&self, py: Python<'_>) -> Vec<Py<Page>> {
        self.pages.iter().map(|p| p.clone_ref(py)).collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "<Segment {} {} age {} as {}: {} tokens>",
            self.round_id, self.role, self.age, self.representation, self.cost.tokens
        )
    }
}

/// The ordered context, oldest round first, with token costs.
#[pyclass(frozen, module = "compress_bench")]
pub struct Context {
    /// The schedule used (the chosen candidate under a budget).
    #[pyo3(get)]
    schedule: String,
    segments: Vec<Py<Segment>>,
    /// Ids of dropped rounds, oldest first.
    #[pyo3(get)]
    dropped: Vec<String>,
    /// Sum of the segments' costs.
    #[pyo3(get)]
    cost: TokenCost,
    /// What every round (dropped ones included) would cost as text.
    #[pyo3(get)]
    all_text_tokens: usize,
    /// Rounds held as text, as images and dropped; page images in the context.
    #[pyo3(get)]
    text_rounds: usize,
    #[pyo3(get)]
    image_rounds: usize,
    #[pyo3(get)]
    dropped_rounds: usize,
    #[pyo3(get)]
    pages: usize,
    saving: Option<f64>,
}

#[pymethods]
impl Context {
    /// The segments, oldest first.
    #[getter]
    fn segments(&self, py: Python<'_>) -> Vec<Py<Segment>> {
        self.segments.iter().map(|p| p.clone_ref(py)).collect()
    }

    /// Decoder positions of the whole context (text tokens + vision slots).
    #[getter]
    fn tokens(&self) -> usize {
        self.cost.tokens
    }

    /// `all_text_tokens / tokens`: how many times cheaper than keeping everything as text.
    #[getter]
    fn saving(&self) -> Option<f64> {
        self.saving
    }

    fn __len__(&self) -> usize {
        self.segments.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "<Context {}: {} segments, {} tokens ({} text rounds, {} imaged, {} dropped)>",
            self.schedule,
            self.segments.len(),
            self.cost.tokens,
            self.text_rounds,
            self.image_rounds,
            self.dropped_rounds
        )
    }
}

fn context_to_py(py: Python<'_>, c: occ_memory::Context) -> PyResult<Context> {
    let mut segments = Vec::with_capacity(c.segments.len());
    for s in c.segments {
        let (text, pages) = match s.content {
            Content::Text(t) => (Some(t), vec![]),
            Content::Pages(ps) => {
                (None, ps.iter().map(|p| Py::new(py, Page::from_memory(p))).collect::<PyResult<_>>()?)
            }
        };
        segments.push(Py::new(
            py,
            Segment {
                round_id: s.round_id,
                role: s.role.to_string(),
                age: s.age,
                level: s.level,
                representation: s.representation.to_string(),
                text,
                pages,
                cost: s.cost.into(),
            },
        )?);
    }
    let t = c.totals;
    Ok(Context {
        schedule: c.schedule,
        segments,
        dropped: c.dropped,
        cost: t.cost.into(),
        all_text_tokens: t.all_text_tokens,
        text_rounds: t.text_rounds,
        image_rounds: t.image_rounds,
        dropped_rounds: t.dropped_rounds,
        pages: t.pages,
        saving: t.saving(),
    })
}

/// The outcome of `OpticalMemory.budget(n)`.
#[pyclass(frozen, get_all, module = "compress_bench")]
pub struct BudgetChoice {
    /// The chosen schedule (now the memory's schedule).
    pub schedule: Schedule,
    /// Its index in the candidate list.
    pub index: usize,
    /// Its context's tokens (≤ the budget).
    pub tokens: usize,
    /// `(name, tokens)` of every candidate tried, in order, the chosen one last.
    pub considered: Vec<(String, usize)>,
}

#[pymethods]
impl BudgetChoice {
    fn __repr__(&self) -> String {
        format!("<BudgetChoice {} ({} tokens)>", self.schedule.spec.name(), self.tokens)
    }
}

/// What `OpticalMemory.recall` read back.
#[pyclass(frozen, get_all, module = "compress_bench")]
pub struct Recall {
    pub id: String,
    /// The round's representation at the time of the call.
    pub representation: String,
    /// The text: the round's own text for text rounds, the engine's page outputs joined by `\n` for
    /// imaged rounds, `""` for dropped rounds.
    pub text: String,
    /// The ground truth on the pages, joined the same way.
    pub ground_truth: String,
    /// The engine's outputs, one per page (empty unless the round is imaged).
    pub outputs: Vec<Py<OcrResult>>,
}

#[pymethods]
impl Recall {
    fn __repr__(&self) -> String {
        format!("<Recall {} as {}: {:?}>", self.id, self.representation, self.text.chars().take(60).collect::<String>())
    }
}

fn parse_role(role: &str) -> PyResult<Role> {
    Ok(match role {
        "system" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            return Err(PyValueError::new_err(format!("role {other:?}: expected system, user, assistant or tool")))
        }
    })
}

/// Optical memory for agents: recent rounds stay text, older ones become ever smaller page images
/// (docs/MEMORY.md).
///
/// `schedule`: a `Schedule` or a spec string (default `paper`: text, then Gundam, Large, Base,
/// Small, Tiny from ages 1, 2, 4, 8, 16, dropped at 32). `page_ratio`: text tokens per nominal vision
/// token of a full page (10). `lang`: `en` or `zh` (font chain). `prompt`, `max_new_tokens`: what
/// `recall` asks the engine. `candidates`: the schedules `budget` chooses from, most faithful first
/// (default: the library's budget family). `clock`: `None` for the system clock, or a start time in
/// seconds for a manual clock moved by `advance` (wall-time schedules in tests).
///
/// Every method takes the memory's mutex with the GIL released, so a thread waiting for a long call on
/// the same memory never blocks the other Python threads.
#[pyclass(frozen, module = "compress_bench")]
pub struct OpticalMemory {
    inner: Mutex<occ_memory::OpticalMemory>,
    manual: Option<ManualClock>,
}

impl OpticalMemory {
    fn lock(&self) -> MutexGuard<'_, occ_memory::OpticalMemory> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl OpticalMemory {
    #[new]
    #[pyo3(signature = (schedule = None, *, page_ratio = 10.0, lang = "en", prompt = "free-ocr", max_new_tokens = 4096, candidates = None, clock = None))]
    fn new(
        py: Python<'_>,
        schedule: Option<&Bound<'_, PyAny>>,
        page_ratio: f64,
        lang: &str,
        prompt: &str,
        max_new_tokens: usize,
        candidates: Option<Vec<Bound<'_, PyAny>>>,
        clock: Option<f64>,
    ) -> PyResult<OpticalMemory> {
        let mut config = MemoryConfig::default();
        if let Some(s) = schedule {
            config.schedule = schedule_arg(s)?;
        }
        config.page_ratio = page_ratio;
        config.lang = parse_lang(lang)?;
        config.prompt = parse_prompt(prompt)?;
        config.ocr.max_new_tokens = max_new_tokens;
        if let Some(cands) = candidates {
            config.candidates = cands
                .iter()
                .map(|c| match schedule_arg(c)? {
                    ScheduleSpec::Fixed(s) => Ok(s),
                    ScheduleSpec::Budget { .. } => {
                        Err(PyErr::new::<ScheduleError, _>("a budget candidate must be a fixed schedule, not budget:…"))
                    }
                })
                .collect::<PyResult<_>>()?;
        }
        let manual = match clock {
            Some(t) if t.is_finite() && t >= 0.0 => Some(ManualClock::at(t as u64)),
            Some(t) => return Err(PyValueError::new_err(format!("clock must be a time in seconds >= 0, not {t}"))),
            None => None,
        };
        let clock: Arc<dyn Clock> = match &manual {
            Some(m) => Arc::new(m.clone()),
            None => Arc::new(SystemClock),
        };
        let tok = tokenizer()?.clone();
        let memory =
            py.detach(|| occ_memory::OpticalMemory::with_parts(config, tok, clock)).map_err(|e| memory_err(&e))?;
        Ok(OpticalMemory { inner: Mutex::new(memory), manual })
    }

    /// Stores a round: a unique `id`, its `role` (`system`, `user`, `assistant`, `tool`) and its text.
    fn push(&self, py: Python<'_>, id: String, role: &str, text: String) -> PyResult<()> {
        let role = parse_role(role)?;
        py.detach(|| self.lock().push(Round::new(id, role, text))).map_err(|e| memory_err(&e))
    }

    /// The context under the memory's schedule (or `schedule`, which does not replace it): text
    /// segments and page images, oldest first, each with its token cost. Pages are rendered once
    /// and cached.
    #[pyo3(signature = (schedule = None))]
    fn context(&self, py: Python<'_>, schedule: Option<&Bound<'_, PyAny>>) -> PyResult<Context> {
        let spec = schedule.map(schedule_arg).transpose()?;
        let c = py
            .detach(|| {
                let mut m = self.lock();
                match spec {
                    None => m.context(),
                    Some(ScheduleSpec::Fixed(s)) => m.context_with(&s),
                    Some(budget) => {
                        let saved = m.config().schedule.clone();
                        m.set_schedule(budget);
                        let c = m.context();
                        m.set_schedule(saved);
                        c
                    }
                }
            })
            .map_err(|e| memory_err(&e))?;
        context_to_py(py, c)
    }

    /// Tokens of the context under the memory's schedule (or `schedule`).
    #[pyo3(signature = (schedule = None))]
    fn tokens(&self, py: Python<'_>, schedule: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        let spec = schedule.map(schedule_arg).transpose()?;
        py.detach(|| {
            let mut m = self.lock();
            let s = match spec {
                Some(ScheduleSpec::Fixed(s)) => s,
                Some(budget @ ScheduleSpec::Budget { .. }) => {
                    let saved = m.config().schedule.clone();
                    m.set_schedule(budget);
                    let s = m.resolved_schedule();
                    m.set_schedule(saved);
                    s?
                }
                None => m.resolved_schedule()?,
            };
            m.tokens_with(&s)
        })
        .map_err(|e| memory_err(&e))
    }

    /// Picks the most faithful candidate schedule whose context fits `n` tokens and makes it the
    /// memory's schedule; raises `OpticalMemoryError` when even the cheapest does not fit.
    fn budget(&self, py: Python<'_>, n: usize) -> PyResult<BudgetChoice> {
        let c = py.detach(|| self.lock().budget(n)).map_err(|e| memory_err(&e))?;
        Ok(BudgetChoice {
            schedule: Schedule { spec: ScheduleSpec::Fixed(c.schedule) },
            index: c.index,
            tokens: c.tokens,
            considered: c.considered,
        })
    }

    /// Reads round `id` back as the memory holds it now: text rounds return their text; imaged
    /// rounds are read by `engine` page by page; dropped rounds return `""`.
    fn recall(&self, py: Python<'_>, id: &str, engine: PyRef<'_, Engine>) -> PyResult<Recall> {
        let engine: &Engine = &engine;
        let r = py
            .detach(|| {
                let mut e = engine.lock();
                self.lock().recall(id, e.as_mut())
            })
            .map_err(|e| memory_err(&e))?;
        Ok(Recall {
            id: r.id,
            representation: r.representation.to_string(),
            text: r.text,
            ground_truth: r.ground_truth,
            outputs: r.outputs.into_iter().map(|o| Py::new(py, OcrResult::from(o))).collect::<PyResult<_>>()?,
        })
    }

    /// The representation of round `id` now (`text`, a mode, `FROM>TO` or `dropped`).
    fn representation(&self, py: Python<'_>, id: &str) -> PyResult<String> {
        let r: Representation = py.detach(|| self.lock().representation(id)).map_err(|e| memory_err(&e))?;
        Ok(r.to_string())
    }

    /// Age of round `id` in `unit` (`rounds` or `seconds`).
    #[pyo3(signature = (id, unit = "rounds"))]
    fn age(&self, py: Python<'_>, id: &str, unit: &str) -> PyResult<u64> {
        let unit = match unit {
            "rounds" => AgeUnit::Rounds,
            "seconds" => AgeUnit::Seconds,
            other => return Err(PyValueError::new_err(format!("unit {other:?}: expected rounds or seconds"))),
        };
        py.detach(|| self.lock().age(id, unit)).map_err(|e| memory_err(&e))
    }

    /// The memory's schedule.
    #[getter]
    fn schedule(&self, py: Python<'_>) -> Schedule {
        Schedule { spec: py.detach(|| self.lock().config().schedule.clone()) }
    }

    /// Replaces the schedule (a `Schedule` or a spec string); cached pages stay valid.
    #[setter]
    fn set_schedule(&self, py: Python<'_>, schedule: &Bound<'_, PyAny>) -> PyResult<()> {
        let spec = schedule_arg(schedule)?;
        py.detach(|| self.lock().set_schedule(spec));
        Ok(())
    }

    /// The rounds, oldest first, as `(id, role, text)`.
    #[getter]
    fn rounds(&self, py: Python<'_>) -> Vec<(String, String, String)> {
        py.detach(|| self.lock().rounds().map(|r| (r.id.clone(), r.role.to_string(), r.text.clone())).collect())
    }

    /// Render-cache counters: `{"hits", "misses", "entries"}`.
    #[getter]
    fn cache_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py.detach(|| self.lock().cache_stats());
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("entries", s.entries)?;
        Ok(d)
    }

    /// Moves a manual clock (`OpticalMemory(clock=T)`) forward by `seconds`.
    fn advance(&self, seconds: f64) -> PyResult<()> {
        let Some(m) = &self.manual else {
            return Err(PyValueError::new_err("advance() needs a manual clock: OpticalMemory(clock=0)"));
        };
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(PyValueError::new_err(format!("seconds must be >= 0, not {seconds}")));
        }
        m.advance(Duration::from_secs_f64(seconds));
        Ok(())
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        py.detach(|| self.lock().len())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        py.detach(|| {
            let m = self.lock();
            format!("<OpticalMemory {} rounds, schedule {}>", m.len(), m.config().schedule.name())
        })
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Schedule>()?;
    m.add_class::<OpticalMemory>()?;
    m.add_class::<Context>()?;
    m.add_class::<Segment>()?;
    m.add_class::<TokenCost>()?;
    m.add_class::<BudgetChoice>()?;
    m.add_class::<Recall>()?;
    Ok(())
}
