//! [`OpticalMemory`]: rounds in, a token-costed context out, recall through an engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use occ_core::{OcrEngine, OcrOptions, OcrOutput, OcrPage, Prompt, TextTokenizer};
use occ_render::Lang;
use serde::Serialize;

use crate::cache::{text_hash, CacheStats, Pages, RenderCache, RenderSettings};
use crate::clock::{Clock, SystemClock};
use crate::context::{Content, Context, Cost, Segment, Totals};
use crate::error::MemoryError;
use crate::round::Round;
use crate::schedule::{AgeUnit, Representation, Schedule, ScheduleSpec};

/// Settings of a memory.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    /// The schedule used by [`OpticalMemory::context`] and [`OpticalMemory::recall`].
    pub schedule: ScheduleSpec,
    /// Candidates of [`OpticalMemory::budget`], most faithful first ([`Schedule::budget_family`]).
    pub candidates: Vec<Schedule>,
    /// Text tokens per nominal vision token of a full page (`occ_render::paginate`): a round longer
    /// than `page_ratio · nominal` tokens is split over several pages; a shorter one gets one page at
    /// the largest font that fits. Default 10 (the paper's ~10× "near-lossless" point).
    pub page_ratio: f64,
    /// Language of the font chain of the pages.
    pub lang: Lang,
    /// Prompt and generation options of [`OpticalMemory::recall`].
    pub prompt: Prompt,
    pub ocr: OcrOptions,
}

impl Default for MemoryConfig {
    fn default() -> MemoryConfig {
        MemoryConfig {
            schedule: ScheduleSpec::default(),
            candidates: Schedule::budget_family(),
            page_ratio: 10.0,
            lang: Lang::En,
            prompt: Prompt::FreeOcr,
            ocr: OcrOptions { max_new_tokens: 4096, ..OcrOptions::default() },
        }
    }
}

impl MemoryConfig {
    /// The default settings with another schedule.
    pub fn with_schedule(schedule: impl Into<ScheduleSpec>) -> MemoryConfig {
        MemoryConfig { schedule: schedule.into(), ..MemoryConfig::default() }
    }
}

#[derive(Debug, Clone)]
struct Stored {
    round: Round,
    pushed_at: Duration,
    text_tokens: usize,
    text_sha: [u8; 32],
}

/// The outcome of [`OpticalMemory::budget`].
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// What [`OpticalMemory::recall`] read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recall {
    pub id: String,
    /// The round's representation at the time of the call.
    pub representation: Representation,
    /// The text: the round's own text for text rounds, the engine's page outputs joined by `\n` for
    /// imaged rounds, empty for dropped rounds.
    pub text: String,
    /// The ground truth on the pages, joined the same way (the round's text for text rounds, empty
    /// for dropped ones).
    pub ground_truth: String,
    /// The engine's outputs, one per page (empty unless the round is imaged).
    pub outputs: Vec<OcrOutput>,
}

/// Optical memory: keeps rounds, decays them by a schedule, assembles a token-costed context.
#[derive(Debug)]
pub struct OpticalMemory {
    config: MemoryConfig,
    tokenizer: TextTokenizer,
    clock: Arc<dyn Clock>,
    rounds: Vec<Stored>,
    index: HashMap<String, usize>,
    cache: RenderCache,
}

impl OpticalMemory {
    /// A memory with the embedded DeepSeek-OCR tokenizer and the system clock.
    pub fn new(config: MemoryConfig) -> Result<OpticalMemory, MemoryError> {
        OpticalMemory::with_parts(config, TextTokenizer::deepseek_ocr()?, Arc::new(SystemClock))
    }

    /// A memory with a given tokenizer and clock (tests pass a [`crate::ManualClock`]).
    pub fn with_parts(
        config: MemoryConfig,
        tokenizer: TextTokenizer,
        clock: Arc<dyn Clock>,
    ) -> Result<OpticalMemory, MemoryError> {
        if !(config.page_ratio.is_finite() && config.page_ratio > 0.0) {
            return Err(MemoryError::InvalidPageRatio { ratio: config.page_ratio });
        }
        Ok(OpticalMemory {
            config,
            tokenizer,
            clock,
            rounds: Vec::new(),
            index: HashMap::new(),
            cache: RenderCache::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    /// The tokenizer that counts text tokens.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Replaces the schedule (the render cache stays valid).
    pub fn set_schedule(&mut self, schedule: impl Into<ScheduleSpec>) {
        self.config.schedule = schedule.into();
    }

    /// Stores a round as the newest one. Errors on a duplicate id.
    pub fn push(&mut self, round: Round) -> Result<(), MemoryError> {
        if self.index.contains_key(&round.id) {
            return Err(MemoryError::DuplicateRound { id: round.id });
        }
        let text_tokens = self.tokenizer.count(&round.text)?;
        let text_sha = text_hash(&round.text);
        self.index.insert(round.id.clone(), self.rounds.len());
        self.rounds.push(Stored { round, pushed_at: self.clock.now(), text_tokens, text_sha });
        Ok(())
    }

    /// Number of rounds.
    pub fn len(&self) -> usize {
        self.rounds.len()
    }

    /// Whether no round was pushed.
    pub fn is_empty(&self) -> bool {
        self.rounds.is_empty()
    }

    /// The rounds, oldest first.
    pub fn rounds(&self) -> impl Iterator<Item = &Round> {
        self.rounds.iter().map(|s| &s.round)
    }

    /// Render-cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    fn position(&self, id: &str) -> Result<usize, MemoryError> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| MemoryError::UnknownRound { id: id.into(), rounds: self.rounds.len() })
    }

    fn age_at(&self, i: usize, unit: AgeUnit) -> u64 {
        match unit {
            AgeUnit::Rounds => (self.rounds.len() - 1 - i) as u64,
            AgeUnit::Seconds => self.clock.now().saturating_sub(self.rounds[i].pushed_at).as_secs(),
        }
    }

    /// Age of a round in `unit`.
    pub fn age(&self, id: &str, unit: AgeUnit) -> Result<u64, MemoryError> {
        Ok(self.age_at(self.position(id)?, unit))
    }

    /// Pages of round `i` in `repr` (`None` for text and dropped).
    fn pages_of(&mut self, i: usize, repr: Representation) -> Result<Option<Pages>, MemoryError> {
        let s = &self.rounds[i];
        let settings =
            RenderSettings { tokenizer: &self.tokenizer, page_ratio: self.config.page_ratio, lang: self.config.lang };
        self.cache.pages(&s.round.id, &s.round.text, s.text_sha, repr, &settings)
    }

    fn segment_cost(&mut self, i: usize, repr: Representation) -> Result<(Cost, Option<Pages>), MemoryError> {
        Ok(match repr {
            Representation::Text => (Cost { text_tokens: self.rounds[i].text_tokens, ..Cost::default() }, None),
            Representation::Dropped => (Cost::default(), None),
            _ => {
                let pages = self.pages_of(i, repr)?.unwrap_or_default();
                (Cost::of_pages(&pages), Some(pages))
            }
        })
    }

    /// The context under a given schedule (the memory's own schedule is not changed).
    pub fn context_with(&mut self, schedule: &Schedule) -> Result<Context, MemoryError> {
        let mut segments = Vec::with_capacity(self.rounds.len());
        let mut dropped = Vec::new();
        let mut totals = Totals { rounds: self.rounds.len(), ..Totals::default() };
        for i in 0..self.rounds.len() {
            let age = self.age_at(i, schedule.unit);
            let level = schedule.level_index(age);
            let repr = schedule.representation(age);
            totals.all_text_tokens += self.rounds[i].text_tokens;
            let (cost, pages) = self.segment_cost(i, repr)?;
            let s = &self.rounds[i];
            let content = match (repr, pages) {
                (Representation::Dropped, _) => {
                    totals.dropped_rounds += 1;
                    dropped.push(s.round.id.clone());
                    continue;
                }
                (_, Some(pages)) => {
                    totals.image_rounds += 1;
                    totals.pages += pages.len();
                    Content::Pages(pages)
                }
                (_, None) => {
                    totals.text_rounds += 1;
                    Content::Text(s.round.text.clone())
                }
            };
            totals.cost = totals.cost.plus(cost);
            segments.push(Segment {
                round_id: s.round.id.clone(),
                role: s.round.role,
                age,
                level,
                representation: repr,
                content,
                cost,
            });
        }
        totals.tokens = totals.cost.tokens();
        Ok(Context { schedule: schedule.name.clone(), segments, dropped, totals })
    }

    /// Total decoder tokens of the context under `schedule`, without assembling it.
    pub fn tokens_with(&mut self, schedule: &Schedule) -> Result<usize, MemoryError> {
        let mut total = 0;
        for i in 0..self.rounds.len() {
            let repr = schedule.representation(self.age_at(i, schedule.unit));
            total += self.segment_cost(i, repr)?.0.tokens();
        }
        Ok(total)
    }

    /// The schedule in force now: the fixed one, or the budget's choice for the current rounds.
    pub fn resolved_schedule(&mut self) -> Result<Schedule, MemoryError> {
        match self.config.schedule.clone() {
            ScheduleSpec::Fixed(s) => Ok(s),
            ScheduleSpec::Budget { tokens, candidates } => Ok(self.select(tokens, &candidates)?.schedule),
        }
    }

    /// The ordered mixture of text segments and page images (oldest first) with the token cost of
    /// each, under the memory's schedule.
    pub fn context(&mut self) -> Result<Context, MemoryError> {
        let schedule = self.resolved_schedule()?;
        self.context_with(&schedule)
    }

    /// Picks the schedule that keeps the context at or under `n` tokens with the most fidelity and
    /// makes it the memory's schedule.
    ///
    /// Rule: candidates ([`MemoryConfig::candidates`]) are ordered most faithful first; the first
    /// whose context costs ≤ `n` tokens ([`Totals::tokens`]) wins. The default family
    /// ([`Schedule::budget_family`]) is ordered so that each candidate is, at every age, at least as
    /// faithful as the next, so the first fit is the most faithful fit. Errors with
    /// [`MemoryError::BudgetTooSmall`] when no candidate fits (e.g. a budget below one round).
    pub fn budget(&mut self, n: usize) -> Result<BudgetChoice, MemoryError> {
        let candidates = self.config.candidates.clone();
        let choice = self.select(n, &candidates)?;
        self.config.schedule = ScheduleSpec::Fixed(choice.schedule.clone());
        Ok(choice)
    }

    fn select(&mut self, n: usize, candidates: &[Schedule]) -> Result<BudgetChoice, MemoryError> {
        if candidates.is_empty() {
            return Err(MemoryError::NoCandidates);
        }
        let mut considered = Vec::with_capacity(candidates.len());
        for (index, c) in candidates.iter().enumerate() {
            let tokens = self.tokens_with(c)?;
            considered.push((c.name.clone(), tokens));
            if tokens <= n {
                return Ok(BudgetChoice { schedule: c.clone(), index, tokens, considered });
            }
        }
        let (cheapest, cheapest_tokens) =
            considered.iter().min_by_key(|(_, t)| *t).cloned().unwrap_or_else(|| (String::new(), 0));
        Err(MemoryError::BudgetTooSmall { budget: n, cheapest, cheapest_tokens, rounds: self.rounds.len() })
    }

    /// The representation of a round under the memory's schedule now.
    pub fn representation(&mut self, id: &str) -> Result<Representation, MemoryError> {
        let i = self.position(id)?;
        let schedule = self.resolved_schedule()?;
        Ok(schedule.representation(self.age_at(i, schedule.unit)))
    }

    /// Reads a round back as the memory holds it now: text rounds return their text; imaged rounds
    /// are read by `engine` page by page (page ids `<round id>#p<k>`, batches of
    /// [`OcrEngine::preferred_batch`]); dropped rounds return empty text (nothing is left to read).
    pub fn recall(&mut self, id: &str, engine: &mut dyn OcrEngine) -> Result<Recall, MemoryError> {
        let repr = self.representation(id)?;
        self.recall_as(id, repr, engine)
    }

    /// [`OpticalMemory::recall`] for a given representation of the round.
    pub fn recall_as(
        &mut self,
        id: &str,
        repr: Representation,
        engine: &mut dyn OcrEngine,
    ) -> Result<Recall, MemoryError> {
        let i = self.position(id)?;
        let text = self.rounds[i].round.text.clone();
        let pages = match repr {
            Representation::Text => {
                return Ok(Recall {
                    id: id.into(),
                    representation: repr,
                    text: text.clone(),
                    ground_truth: text,
                    outputs: vec![],
                })
            }
            Representation::Dropped => {
                return Ok(Recall {
                    id: id.into(),
                    representation: repr,
                    text: String::new(),
                    ground_truth: String::new(),
                    outputs: vec![],
                })
            }
            _ => self.pages_of(i, repr)?.unwrap_or_default(),
        };
        let ocr_pages: Vec<OcrPage> = pages
            .iter()
            .enumerate()
            .map(|(k, p)| OcrPage { id: format!("{id}#p{k}"), image: (*p.image).clone(), mode: p.mode })
            .collect();
        let mut outputs = Vec::with_capacity(ocr_pages.len());
        for batch in ocr_pages.chunks(engine.preferred_batch().max(1)) {
            let out = engine
                .ocr(batch, &self.config.prompt, &self.config.ocr)
                .map_err(|source| MemoryError::Engine { id: id.into(), source: Box::new(source) })?;
            if out.len() != batch.len() {
                return Err(MemoryError::EngineOutputCount { id: id.into(), expected: batch.len(), got: out.len() });
            }
            outputs.extend(out);
        }
        let read = outputs.iter().map(|o| o.text.as_str()).collect::<Vec<_>>().join("\n");
        let truth = pages.iter().map(|p| p.text.as_str()).collect::<Vec<_>>().join("\n");
        Ok(Recall { id: id.into(), representation: repr, text: read, ground_truth: truth, outputs })
    }

    /// The pages of a round in a representation (empty for text and dropped), rendered once and
    /// cached.
    pub fn pages(&mut self, id: &str, repr: Representation) -> Result<Pages, MemoryError> {
        let i = self.position(id)?;
        Ok(self.pages_of(i, repr)?.unwrap_or_default())
    }
}
