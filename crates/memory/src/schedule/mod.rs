//! Decay schedules: a round's age → its [`Representation`].
//!
//! A [`Schedule`] is a list of [`Level`]s, each starting at an age (`from`) and lasting until the next
//! level starts; the last level lasts forever. Ages count either **rounds** (the newest round has age
//! 0, the one before it age 1, …) or **wall-clock seconds** since the round was pushed
//! ([`AgeUnit`]). Rules, checked by [`Schedule::new`]:
//!
//! - at least one level, the first starting at age 0;
//! - strictly increasing starts;
//! - the newest round (age 0) is never [`Representation::Dropped`];
//! - a [`Representation::Downscale`] shrinks: `to`'s global view is smaller than `from`'s.
//!
//! Builders: [`Schedule::paper`] (the paper's ladder text → Gundam → Large → Base → Small → Tiny →
//! dropped, docs/MODEL.md §11.2), [`Schedule::paper_time`] (the same over wall time: 1 hour, 1 day, …),
//! [`Schedule::step`], [`Schedule::exponential`], [`Schedule::hybrid`], [`Schedule::text`], and
//! [`Schedule::ladder`] which they all call. The budget-constrained schedule is a
//! [`ScheduleSpec::Budget`]: the memory picks one of a candidate family ([`Schedule::budget_family`])
//! each time it assembles the context. The command-line grammar is in [`parse`], the TOML form in
//! [`file`](mod@file).

pub mod file;
pub mod parse;

use std::fmt;

use occ_core::Mode;
use serde::{Deserialize, Serialize};

use crate::error::ScheduleError;

/// How a round is held in the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Representation {
    /// The round's text, as text tokens.
    Text,
    /// The round's text rendered as page(s) for `mode` (a long round gives several pages).
    Image { mode: Mode },
    /// The pages rendered for `from`, each resampled to fit `to`'s canvas (aspect kept) and read in
    /// `to`: the existing image is downsampled, nothing is re-laid out.
    Downscale { from: Mode, to: Mode },
    /// Gone from the context.
    Dropped,
}

impl Representation {
    /// The mode the pages are read in (`None` for text and dropped rounds).
    pub fn reading_mode(&self) -> Option<Mode> {
        match *self {
            Representation::Image { mode } => Some(mode),
            Representation::Downscale { to, .. } => Some(to),
            Representation::Text | Representation::Dropped => None,
        }
    }

    /// Whether the round is held as page images.
    pub fn is_image(&self) -> bool {
        self.reading_mode().is_some()
    }

    /// Fidelity order used to check candidate families: text > image modes by nominal vision tokens
    /// of their default canvas (Gundam 856 > Large 400 > Base 256 > Small 100 > Tiny 64) > dropped.
    /// A downscale ranks as its target mode.
    pub fn fidelity_rank(&self) -> u64 {
        match *self {
            Representation::Text => u64::MAX,
            Representation::Image { mode } | Representation::Downscale { to: mode, .. } => {
                let (w, h) = mode.default_canvas();
                mode.vision_tokens(w, h).map(|v| u64::from(v.nominal)).unwrap_or(1)
            }
            Representation::Dropped => 0,
        }
    }
}

impl fmt::Display for Representation {
    /// `text`, `<mode>`, `<from>><to>` or `dropped`, the spelling [`parse`] accepts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Representation::Text => f.write_str("text"),
            Representation::Image { mode } => write!(f, "{mode}"),
            Representation::Downscale { from, to } => write!(f, "{from}>{to}"),
            Representation::Dropped => f.write_str("dropped"),
        }
    }
}

/// What older ladder levels become once a round is an image (see [`Schedule::ladder`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayPolicy {
    /// Re-render the text for each smaller mode ([`Representation::Image`]): text re-laid out at the
    /// largest font that fits the smaller canvas.
    #[default]
    Rerender,
    /// Downsample the page rendered for the first image level ([`Representation::Downscale`]): the
    /// same layout, fewer pixels — the paper's "progressively downsize the rendered images".
    Downsample,
}

/// Unit of the ages of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgeUnit {
    /// Rounds pushed after the round (the newest has age 0).
    #[default]
    Rounds,
    /// Whole seconds of the memory's clock since the round was pushed.
    Seconds,
}

/// One level: rounds of age `from` (inclusive) up to the next level's `from` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Level {
    pub from: u64,
    pub repr: Representation,
}

/// An age → representation map (see the module docs for the rules).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Schedule {
    /// Label for reports (the command-line spelling when parsed).
    pub name: String,
    pub unit: AgeUnit,
    levels: Vec<Level>,
}

/// The paper's image ladder, largest first (docs/MODEL.md §11.2).
pub const PAPER_MODES: [Mode; 5] = [Mode::Gundam, Mode::Large, Mode::Base, Mode::Small, Mode::Tiny];
/// Default start ages (rounds) of the paper ladder's image levels, then the drop age.
pub const PAPER_AGES: [u64; 6] = [1, 2, 4, 8, 16, 32];
/// The paper figure's time levels: 1 hour, 1 day, 1 week, 1 month (30 d), 1 year (365 d), then
/// dropped after 10 years.
pub const PAPER_TIME_AGES: [u64; 6] = [3_600, 86_400, 604_800, 2_592_000, 31_536_000, 315_360_000];

impl Schedule {
    /// A validated schedule.
    pub fn new(name: impl Into<String>, unit: AgeUnit, levels: Vec<Level>) -> Result<Schedule, ScheduleError> {
        let schedule = name.into();
        let first = levels.first().ok_or_else(|| ScheduleError::NoLevels { schedule: schedule.clone() })?;
        if first.from != 0 {
            return Err(ScheduleError::FirstLevelNotZero { schedule, from: first.from });
        }
        if first.repr == Representation::Dropped {
            return Err(ScheduleError::DropsNewest { schedule });
        }
        for (i, w) in levels.windows(2).enumerate() {
            if w[1].from <= w[0].from {
                return Err(ScheduleError::NotMonotone { schedule, index: i + 1, prev: w[0].from, next: w[1].from });
            }
        }
        for l in &levels {
            if let Representation::Downscale { from, to } = l.repr {
                let area = |m: Mode| {
                    let (w, h) = m.default_canvas();
                    u64::from(w) * u64::from(h)
                };
                if area(to) >= area(from) {
                    return Err(ScheduleError::InvalidDownscale {
                        schedule,
                        from: from.to_string(),
                        to: to.to_string(),
                    });
                }
            }
        }
        Ok(Schedule { name: schedule, unit, levels })
    }

    /// The levels, in order of age.
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// Index of the level holding rounds of age `age`.
    pub fn level_index(&self, age: u64) -> usize {
        self.levels.iter().rposition(|l| l.from <= age).unwrap_or(0)
    }

    /// The representation of a round of age `age`.
    pub fn representation(&self, age: u64) -> Representation {
        self.levels[self.level_index(age)].repr
    }

    /// Every round as text (the all-text baseline).
    pub fn text() -> Schedule {
        Schedule {
            name: "text".into(),
            unit: AgeUnit::Rounds,
            levels: vec![Level { from: 0, repr: Representation::Text }],
        }
    }

    /// A ladder: text for ages below `text_until` (no text level when it is 0), then `modes[i]` from
    /// `starts[i]`, then dropped from `drop` (never when `None`). Under [`DecayPolicy::Downsample`] every
    /// image level after the first is a [`Representation::Downscale`] of the first level's pages.
    pub fn ladder(
        name: impl Into<String>,
        unit: AgeUnit,
        text_until: u64,
        modes: &[Mode],
        starts: &[u64],
        drop: Option<u64>,
        policy: DecayPolicy,
    ) -> Result<Schedule, ScheduleError> {
        let name = name.into();
        if modes.len() != starts.len() {
            return Err(ScheduleError::BadValue {
                spec: name,
                key: "ages".into(),
                value: format!("{starts:?}"),
                expected: format!("one start age per image mode ({} modes)", modes.len()),
            });
        }
        let mut levels = Vec::with_capacity(modes.len() + 2);
        if text_until > 0 {
            levels.push(Level { from: 0, repr: Representation::Text });
        }
        for (i, (&mode, &from)) in modes.iter().zip(starts).enumerate() {
            let repr = match (policy, i) {
                (DecayPolicy::Downsample, i) if i > 0 => Representation::Downscale { from: modes[0], to: mode },
                _ => Representation::Image { mode },
            };
            levels.push(Level { from, repr });
        }
        if let Some(from) = drop {
            levels.push(Level { from, repr: Representation::Dropped });
        }
        Schedule::new(name, unit, levels)
    }

    /// The paper's ladder over rounds with the default ages [`PAPER_AGES`]: text for the newest round,
    /// Gundam from age 1, Large 2, Base 4, Small 8, Tiny 16, dropped from 32.
    pub fn paper() -> Schedule {
        Schedule::paper_with("paper", AgeUnit::Rounds, &PAPER_AGES[..5], Some(PAPER_AGES[5]), DecayPolicy::Rerender)
            .unwrap_or_else(|_| Schedule::text())
    }

    /// The paper's ladder over wall time ([`PAPER_TIME_AGES`]): text for an hour, Gundam for a day,
    /// Large for a week, Base for a month, Small for a year, Tiny for ten years, then dropped.
    pub fn paper_time() -> Schedule {
        Schedule::paper_with(
            "paper-time",
            AgeUnit::Seconds,
            &PAPER_TIME_AGES[..5],
            Some(PAPER_TIME_AGES[5]),
            DecayPolicy::Rerender,
        )
        .unwrap_or_else(|_| Schedule::text())
    }

    /// The paper's ladder with the given start ages of Gundam, Large, Base, Small and Tiny.
    pub fn paper_with(
        name: impl Into<String>,
        unit: AgeUnit,
        starts: &[u64],
        drop: Option<u64>,
        policy: DecayPolicy,
    ) -> Result<Schedule, ScheduleError> {
        let text_until = starts.first().copied().unwrap_or(0);
        Schedule::ladder(name, unit, text_until, &PAPER_MODES, starts, drop, policy)
    }

    /// Equal steps: text for ages `0..width`, then each mode for `width` more, then dropped (when
    /// `drop`) once every mode has had its step.
    pub fn step(width: u64, modes: &[Mode], drop: bool, policy: DecayPolicy) -> Result<Schedule, ScheduleError> {
        let end = drop.then(|| width.saturating_mul(modes.len() as u64 + 1));
        Schedule::hybrid_named(format!("step:width={width}"), AgeUnit::Rounds, width, width, modes, end, policy)
    }

    /// Hybrid: the last `k` rounds as text, then a ladder of `modes`, `width` ages per level, then
    /// dropped (when `drop`).
    pub fn hybrid(
        k: u64,
        width: u64,
        modes: &[Mode],
        drop: bool,
        policy: DecayPolicy,
    ) -> Result<Schedule, ScheduleError> {
        let end = drop.then(|| k.saturating_add(width.saturating_mul(modes.len() as u64)));
        Schedule::hybrid_named(format!("hybrid:k={k},width={width}"), AgeUnit::Rounds, k, width, modes, end, policy)
    }

    /// Text below `k`, then `modes` each `width` wide, dropped from `drop`.
    pub(crate) fn hybrid_named(
        name: String,
        unit: AgeUnit,
        k: u64,
        width: u64,
        modes: &[Mode],
        drop: Option<u64>,
        policy: DecayPolicy,
    ) -> Result<Schedule, ScheduleError> {
        if width == 0 {
            return Err(ScheduleError::BadValue {
                spec: name,
                key: "width".into(),
                value: "0".into(),
                expected: "a level width of at least 1".into(),
            });
        }
        let starts: Vec<u64> = (0..modes.len() as u64).map(|i| k.saturating_add(i.saturating_mul(width))).collect();
        Schedule::ladder(name, unit, k, modes, &starts, drop, policy)
    }

    /// Exponential: text for ages below `first`, then level `i` of `modes` from `first · factorⁱ`
    /// (boundaries doubling for `factor = 2`), dropped from `first · factorⁿ` when `drop`.
    /// Boundaries are rounded up to whole ages and must strictly increase.
    pub fn exponential(
        unit: AgeUnit,
        first: u64,
        factor: f64,
        modes: &[Mode],
        drop: bool,
        policy: DecayPolicy,
    ) -> Result<Schedule, ScheduleError> {
        let name = format!("exp:first={first},factor={factor}");
        Schedule::exponential_named(name, unit, first, factor, modes, drop.then_some(None), policy)
    }

    /// [`Schedule::exponential`] with a name and an explicit drop age (`Some(None)`: the next boundary).
    pub(crate) fn exponential_named(
        name: String,
        unit: AgeUnit,
        first: u64,
        factor: f64,
        modes: &[Mode],
        drop: Option<Option<u64>>,
        policy: DecayPolicy,
    ) -> Result<Schedule, ScheduleError> {
        if !(factor.is_finite() && factor > 1.0) {
            return Err(ScheduleError::BadValue {
                spec: name,
                key: "factor".into(),
                value: factor.to_string(),
                expected: "a finite number > 1".into(),
            });
        }
        if first == 0 {
            return Err(ScheduleError::BadValue {
                spec: name,
                key: "first".into(),
                value: "0".into(),
                expected: "an age ≥ 1 (the newest round stays text)".into(),
            });
        }
        let boundary = |i: usize| -> u64 {
            let v = (first as f64 * factor.powi(i as i32)).ceil();
            if v >= 1e18 {
                u64::MAX / 2
            } else {
                v as u64
            }
        };
        let starts: Vec<u64> = (0..modes.len()).map(boundary).collect();
        let drop_at = drop.map(|d| d.unwrap_or_else(|| boundary(modes.len())));
        Schedule::ladder(name, unit, first, modes, &starts, drop_at, policy)
    }

    /// The default candidates of budget selection, most faithful first. Each candidate is, at every
    /// age, at least as faithful as the next ([`Representation::fidelity_rank`]), so "the first one
    /// that fits" keeps the most fidelity:
    ///
    /// 1. all text;
    /// 2. the paper ladder with doubling boundaries starting at 64, 32, 16, 8, 4, 2, 1 rounds;
    /// 3. the newest round as text, older ones as Tiny, dropped from age 32, 16, 8, 4, 2;
    /// 4. only the newest round, as text; 5. only the newest round, as Tiny pages.
    pub fn budget_family() -> Vec<Schedule> {
        let mut family = vec![Schedule::text()];
        for first in [64, 32, 16, 8, 4, 2, 1] {
            if let Ok(s) = Schedule::exponential(AgeUnit::Rounds, first, 2.0, &PAPER_MODES, true, DecayPolicy::Rerender)
            {
                family.push(s);
            }
        }
        for drop in [32, 16, 8, 4, 2] {
            let name = format!("ladder:levels=text@0/tiny@1/dropped@{drop}");
            if let Ok(s) =
                Schedule::ladder(name, AgeUnit::Rounds, 1, &[Mode::Tiny], &[1], Some(drop), DecayPolicy::Rerender)
            {
                family.push(s);
            }
        }
        let latest = [
            ("ladder:levels=text@0/dropped@1", Representation::Text),
            ("ladder:levels=tiny@0/dropped@1", Representation::Image { mode: Mode::Tiny }),
        ];
        for (name, repr) in latest {
            let levels = vec![Level { from: 0, repr }, Level { from: 1, repr: Representation::Dropped }];
            if let Ok(s) = Schedule::new(name, AgeUnit::Rounds, levels) {
                family.push(s);
            }
        }
        family
    }

    /// Renamed copy.
    pub fn named(mut self, name: impl Into<String>) -> Schedule {
        self.name = name.into();
        self
    }
}

impl fmt::Display for Schedule {
    /// `name [text@0, gundam@1, …]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let levels: Vec<String> = self
            .levels
            .iter()
            .map(|l| match self.unit {
                AgeUnit::Rounds => format!("{}@{}", l.repr, l.from),
                AgeUnit::Seconds => format!("{}@{}", l.repr, parse::format_duration(l.from)),
            })
            .collect();
        write!(f, "{} [{}]", self.name, levels.join(", "))
    }
}

/// What the memory is told to use: a fixed schedule, or the most faithful of `candidates` whose
/// context fits `tokens` (chosen again each time the context is assembled).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleSpec {
    Fixed(Schedule),
    Budget { tokens: usize, candidates: Vec<Schedule> },
}

impl ScheduleSpec {
    /// The label for reports: the schedule's name or `budget:tokens=N`.
    pub fn name(&self) -> String {
        match self {
            ScheduleSpec::Fixed(s) => s.name.clone(),
            ScheduleSpec::Budget { tokens, .. } => format!("budget:tokens={tokens}"),
        }
    }
}

impl From<Schedule> for ScheduleSpec {
    fn from(s: Schedule) -> ScheduleSpec {
        ScheduleSpec::Fixed(s)
    }
}

impl Default for ScheduleSpec {
    fn default() -> ScheduleSpec {
        ScheduleSpec::Fixed(Schedule::paper())
    }
}
