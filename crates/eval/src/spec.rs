//! Experiment specs: the TOML files in `experiments/`, resolved and validated before any work.
//!
//! ```toml
//! name = "quick"
//! corpora = ["en"]                 # en, zh (datasets/<name>.jsonl) or probes (generated)
//! modes = ["tiny", "small"]        # occ_core::Mode names
//! ratios = "5..25:5"               # "a..b" (step 1), "a..b:step", "10,12,20", or [10.0, 12.0]
//! pages = 3                        # pages per cell (corpus × mode × ratio)
//! seed = 0
//! engine = "tesseract"             # deepseek-ocr, deepseek-ocr-2, mini, tesseract, openai or fake-perfect ([`EngineKind`])
//! max_new_tokens = 4096
//! [ratios_by_mode]                 # optional per-mode override of `ratios`
//! tiny = "10.5,11.8"
//! degradations = ["none", "blur:1.5"]  # robustness axes (occ_eval::axes); default: the clean page,
//! fonts = ["dejavu-sans"]               # DejaVu Sans at a line height of 1.2
//! line_heights = [1.2]
//! [normalization]                  # see occ_eval::normalize
//! nfkc = true
//! ```
//!
//! The command line overrides any field (the CLI builds a [`SpecOverrides`]).

use std::collections::BTreeMap;
use std::path::Path;

use occ_core::Mode;
use serde::{Deserialize, Serialize};

use occ_render::FontFamily;

use crate::axes::{DegradationLevel, PageSetting, DEFAULT_LINE_HEIGHT, LINE_HEIGHT_RANGE};
use crate::metrics::RepetitionRule;
use crate::normalize::Normalization;

/// Errors of spec parsing and validation; each names the field and the offending value.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("reading experiment spec {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("parsing experiment spec {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{field}: {source}")]
    Mode { field: String, source: occ_core::ModeError },
    #[error("{field}: ratio range {text:?} is empty (the end is below the start)")]
    EmptyRatioRange { field: String, text: String },
    #[error("{field}: ratio {value} must be greater than 0 (compression ratio = text tokens / vision tokens)")]
    NonPositiveRatio { field: String, value: f64 },
    #[error("{field}: cannot parse ratios {text:?}: expected \"5..25\", \"5..25:0.5\" or \"10,12,20\"")]
    RatioSyntax { field: String, text: String },
    #[error("{field} is empty: {hint}")]
    Empty { field: String, hint: String },
    #[error("{field} = {value}: {message}")]
    Invalid { field: String, value: String, message: String },
}

/// The readers of a run. Written in specs, manifests and on the command line by its name
/// (`deepseek-ocr`, `mini`, `tesseract`, `openai`, `fake-perfect`, `external`); the CLI builds the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// DeepSeek-OCR (occ-model, candle).
    DeepseekOcr,
    /// DeepSeek-OCR-2 (occ-model, candle; reads modes v2 and v2-single only).
    #[serde(rename = "deepseek-ocr-2")]
    DeepseekOcr2,
    /// A reader trained by `compress-bench train` (occ-model, candle).
    Mini,
    /// Debian's Tesseract on the same pixels ([`crate::tesseract`]).
    Tesseract,
    /// Any server that speaks OpenAI's chat completions, over HTTP (the CLI builds it from its
    /// endpoint flags; the manifest names the endpoint and the model).
    #[serde(rename = "openai")]
    OpenAi,
    /// Answers with each page's ground truth (`occ_core::fakes::FakeOcr`, handed the text by the
    /// runner; tests of the machinery).
    FakePerfect,
    /// Predictions made elsewhere and scored by [`crate::score`]: no page is read here (the
    /// engines of such a run name who made the predictions).
    External,
}

/// A name that is not an [`EngineKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown engine {0:?}: expected deepseek-ocr, deepseek-ocr-2, mini, tesseract, openai, fake-perfect or external"
)]
pub struct UnknownEngine(pub String);

impl EngineKind {
    /// Every engine, in the order of the documentation.
    pub const ALL: [EngineKind; 7] = [
        EngineKind::DeepseekOcr,
        EngineKind::DeepseekOcr2,
        EngineKind::Mini,
        EngineKind::Tesseract,
        EngineKind::OpenAi,
        EngineKind::FakePerfect,
        EngineKind::External,
    ];

    /// The name used in specs, manifests and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::DeepseekOcr => "deepseek-ocr",
            EngineKind::DeepseekOcr2 => "deepseek-ocr-2",
            EngineKind::Mini => "mini",
            EngineKind::Tesseract => "tesseract",
            EngineKind::OpenAi => "openai",
            EngineKind::FakePerfect => "fake-perfect",
            EngineKind::External => "external",
        }
    }

    /// Whether the engine is a model loaded from weights (occ-model).
    pub fn is_model(self) -> bool {
        matches!(self, EngineKind::DeepseekOcr | EngineKind::DeepseekOcr2 | EngineKind::Mini)
    }

    /// Why the engine cannot read pages in `mode`, if it cannot: DeepSeek-OCR-2 reads the v2 modes
    /// only, DeepSeek-OCR the v1 modes only (the other engines read any page).
    pub fn refuses_mode(self, mode: Mode) -> Option<String> {
        match self {
            EngineKind::DeepseekOcr2 if !mode.is_v2() => Some(format!(
                "the deepseek-ocr-2 engine reads modes v2 and v2-single (DeepSeek-OCR-2's vision tower), not \
                 DeepSeek-OCR (v1)'s mode {mode}"
            )),
            EngineKind::DeepseekOcr if mode.is_v2() => Some(format!(
                "the deepseek-ocr engine reads DeepSeek-OCR (v1)'s modes, not {mode} (a DeepSeek-OCR-2 mode: use \
                 --engine deepseek-ocr-2)"
            )),
            _ => None,
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for EngineKind {
    type Err = UnknownEngine;

    fn from_str(s: &str) -> Result<EngineKind, UnknownEngine> {
        EngineKind::ALL.into_iter().find(|e| e.name() == s.trim()).ok_or_else(|| UnknownEngine(s.to_string()))
    }
}

/// Ratios as written in TOML: a string grammar or an array of numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RatioInput {
    Text(String),
    List(Vec<f64>),
}

impl RatioInput {
    /// The ratio values, validated (`field` names the source in errors).
    pub fn resolve(&self, field: &str) -> Result<Vec<f64>, SpecError> {
        let values = match self {
            RatioInput::List(v) => v.clone(),
            RatioInput::Text(t) => parse_ratios(t, field)?,
        };
        if values.is_empty() {
            return Err(SpecError::Empty { field: field.into(), hint: "give at least one ratio".into() });
        }
        if let Some(&bad) = values.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            return Err(SpecError::NonPositiveRatio { field: field.into(), value: bad });
        }
        Ok(values)
    }
}

/// Parses `"a..b"` (step 1), `"a..b:step"` (both ends included when on the grid) or `"x,y,z"`.
pub fn parse_ratios(text: &str, field: &str) -> Result<Vec<f64>, SpecError> {
    let syntax = || SpecError::RatioSyntax { field: field.into(), text: text.into() };
    let num = |s: &str| s.trim().parse::<f64>().map_err(|_| syntax());
    let t = text.trim();
    if let Some((start, rest)) = t.split_once("..") {
        let (end, step) = match rest.split_once(':') {
            Some((e, s)) => (num(e)?, num(s)?),
            None => (num(rest)?, 1.0),
        };
        let start = num(start)?;
        if !start.is_finite() || end.is_nan() {
            return Err(syntax());
        }
        if !(step.is_finite() && step > 0.0) {
            return Err(SpecError::Invalid {
                field: field.into(),
                value: text.into(),
                message: "the step must be greater than 0".into(),
            });
        }
        if start <= 0.0 {
            return Err(SpecError::NonPositiveRatio { field: field.into(), value: start });
        }
        if end < start {
            return Err(SpecError::EmptyRatioRange { field: field.into(), text: text.into() });
        }
        // Counted in f64: a range of 2^64 steps or more (`1..inf`) must not wrap to no ratio at all.
        let steps = ((end - start) / step + 1e-9).floor();
        if steps >= 100_000.0 {
            return Err(SpecError::Invalid {
                field: field.into(),
                value: text.into(),
                message: "over 100000 ratios".into(),
            });
        }
        let count = steps as usize + 1;
        // start + i·step, rounded to 1e-9 so 5..6:0.1 gives 5.3, not 5.300000000000001 (not above
        // ~1e299, where the scaled value would overflow to infinity: those values stay as they are).
        Ok((0..count)
            .map(|i| {
                let v = start + i as f64 * step;
                let rounded = (v * 1e9).round() / 1e9;
                if rounded.is_finite() {
                    rounded
                } else {
                    v
                }
            })
            .collect())
    } else {
        t.split(',').filter(|s| !s.trim().is_empty()).map(num).collect()
    }
}

/// The TOML file as written (every field optional; defaults in [`ExperimentSpec::resolve`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    pub name: Option<String>,
    pub description: Option<String>,
    pub corpora: Option<Vec<String>>,
    pub modes: Option<Vec<String>>,
    pub ratios: Option<RatioInput>,
    #[serde(default)]
    pub ratios_by_mode: BTreeMap<String, RatioInput>,
    pub pages: Option<usize>,
    pub seed: Option<u64>,
    pub engine: Option<EngineKind>,
    pub max_new_tokens: Option<usize>,
    pub min_passage_tokens: Option<usize>,
    pub max_passage_tokens: Option<usize>,
    pub datasets_dir: Option<String>,
    pub normalization: Option<Normalization>,
    pub repetition: Option<RepetitionRule>,
    pub tesseract_psm: Option<u32>,
    /// Degradation levels of the pages ([`crate::axes`]): `none`, `blur:1.5`, `jpeg:30+noise:8`, …
    pub degradations: Option<Vec<String>>,
    /// Font families of the pages (`dejavu-sans`, `dejavu-serif`, `dejavu-sans-mono`, `droid-sans-fallback`).
    pub fonts: Option<Vec<String>>,
    /// Line heights of the pages (× the font size).
    pub line_heights: Option<Vec<f64>>,
    /// A second engine that reads the same pages after the main one (`sweep --baseline`).
    pub baseline: Option<EngineKind>,
}

impl SpecFile {
    /// Reads and parses a TOML spec.
    pub fn load(path: &Path) -> Result<SpecFile, SpecError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::Io { path: display.clone(), source: e })?;
        toml::from_str(&text).map_err(|e| SpecError::Parse { path: display, message: e.to_string() })
    }
}

/// Command-line overrides (every `Some` replaces the TOML value).
#[derive(Debug, Clone, Default)]
pub struct SpecOverrides {
    pub name: Option<String>,
    pub corpora: Option<Vec<String>>,
    pub modes: Option<Vec<String>>,
    pub ratios: Option<String>,
    pub pages: Option<usize>,
    pub seed: Option<u64>,
    pub engine: Option<EngineKind>,
    pub max_new_tokens: Option<usize>,
    pub datasets_dir: Option<String>,
    pub baseline: Option<EngineKind>,
}

/// A resolved, validated experiment: everything a run needs, recorded in `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    pub name: String,
    pub description: String,
    pub corpora: Vec<String>,
    pub modes: Vec<Mode>,
    /// Ratios of every mode without an entry in `ratios_by_mode`.
    pub ratios: Vec<f64>,
    pub ratios_by_mode: BTreeMap<String, Vec<f64>>,
    pub pages: usize,
    pub seed: u64,
    pub engine: EngineKind,
    pub max_new_tokens: usize,
    /// Passages with fewer / more ground-truth tokens (as listed in the corpus) are not drawn.
    pub min_passage_tokens: usize,
    pub max_passage_tokens: usize,
    pub datasets_dir: String,
    pub normalization: Normalization,
    pub repetition: RepetitionRule,
    /// Tesseract page-segmentation mode (`--psm`).
    pub tesseract_psm: u32,
    /// Robustness axes ([`crate::axes`]): every page is drawn in each combination of a degradation
    /// level, a font family and a line height. Left out of the manifest (and of the fingerprint)
    /// while at their defaults, so a spec without axes records and hashes as before they existed.
    #[serde(default = "default_degradations", skip_serializing_if = "is_default_degradations")]
    pub degradations: Vec<DegradationLevel>,
    #[serde(default = "default_fonts", skip_serializing_if = "is_default_fonts")]
    pub fonts: Vec<FontFamily>,
    #[serde(default = "default_line_heights", skip_serializing_if = "is_default_line_heights")]
    pub line_heights: Vec<f64>,
    /// The engine that reads the same pages after the main one, into a run of its own inside the
    /// main run's folder (`baseline-<engine>/`), compared with it there (`compare/`). Left out of
    /// the manifest (and the fingerprint) when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<EngineKind>,
}

pub(crate) fn default_degradations() -> Vec<DegradationLevel> {
    vec![DegradationLevel::none()]
}

fn is_default_degradations(v: &[DegradationLevel]) -> bool {
    v == default_degradations().as_slice()
}

pub(crate) fn default_fonts() -> Vec<FontFamily> {
    vec![FontFamily::default()]
}

fn is_default_fonts(v: &[FontFamily]) -> bool {
    v == default_fonts().as_slice()
}

pub(crate) fn default_line_heights() -> Vec<f64> {
    vec![DEFAULT_LINE_HEIGHT]
}

fn is_default_line_heights(v: &[f64]) -> bool {
    v == default_line_heights().as_slice()
}

/// `values` unless one repeats (named by `field`).
fn unique<T: PartialEq + std::fmt::Display>(field: &str, values: Vec<T>) -> Result<Vec<T>, SpecError> {
    if values.is_empty() {
        return Err(SpecError::Empty { field: field.into(), hint: "give at least one level (or leave it out)".into() });
    }
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(SpecError::Invalid {
                field: field.into(),
                value: v.to_string(),
                message: "listed twice".into(),
            });
        }
    }
    Ok(values)
}

/// Refuses a baseline engine that cannot be one for a run of `engine` over `modes`: the main
/// engine itself, `external` (it reads no page), or an engine that cannot read one of the modes.
pub fn check_baseline(engine: EngineKind, baseline: EngineKind, modes: &[Mode]) -> Result<(), SpecError> {
    let invalid = |message: String| SpecError::Invalid {
        field: "baseline (--baseline)".into(),
        value: baseline.name().into(),
        message,
    };
    if baseline == engine {
        return Err(invalid(format!(
            "the baseline must be another engine than the run's own ({engine}): it reads the same pages for comparison"
        )));
    }
    if baseline == EngineKind::External {
        return Err(invalid("external reads no page; choose an engine that reads pages (e.g. tesseract)".into()));
    }
    if let Some((mode, message)) = modes.iter().find_map(|&m| baseline.refuses_mode(m).map(|msg| (m, msg))) {
        return Err(invalid(format!("it cannot read the run's mode {mode}: {message}")));
    }
    Ok(())
}

/// Corpora the toolkit knows by name (others are accepted if `datasets/<name>.jsonl` exists).
pub const KNOWN_CORPORA: [&str; 3] = ["en", "zh", "probes"];

impl ExperimentSpec {
    /// Merges the TOML file and the overrides, applies defaults and validates.
    pub fn resolve(file: SpecFile, o: SpecOverrides) -> Result<ExperimentSpec, SpecError> {
        let name = o.name.or(file.name).unwrap_or_else(|| "adhoc".into());
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(SpecError::Invalid {
                field: "name".into(),
                value: name,
                message: "use letters, digits, '-' and '_' only (it names a results folder)".into(),
            });
        }
        let corpora = o.corpora.or(file.corpora).unwrap_or_else(|| vec!["en".into()]);
        if corpora.is_empty() {
            return Err(SpecError::Empty { field: "corpora".into(), hint: "choose from en, zh, probes".into() });
        }
        let mode_names = o.modes.or(file.modes).unwrap_or_else(|| vec!["tiny".into(), "small".into()]);
        if mode_names.is_empty() {
            return Err(SpecError::Empty {
                field: "modes".into(),
                hint: "choose from tiny, small, base, large, gundam".into(),
            });
        }
        let modes = mode_names
            .iter()
            .map(|m| m.parse::<Mode>().map_err(|e| SpecError::Mode { field: "modes".into(), source: e }))
            .collect::<Result<Vec<_>, _>>()?;
        let ratios = match o.ratios {
            Some(text) => RatioInput::Text(text).resolve("--ratios")?,
            None => file.ratios.unwrap_or(RatioInput::Text("5..25:5".into())).resolve("ratios")?,
        };
        let mut ratios_by_mode = BTreeMap::new();
        for (mode, input) in &file.ratios_by_mode {
            let field = format!("ratios_by_mode.{mode}");
            let parsed: Mode = mode.parse().map_err(|e| SpecError::Mode { field: field.clone(), source: e })?;
            ratios_by_mode.insert(parsed.to_string(), input.resolve(&field)?);
        }
        let pages = o.pages.or(file.pages).unwrap_or(3);
        if pages == 0 {
            return Err(SpecError::Invalid {
                field: "pages".into(),
                value: "0".into(),
                message: "need at least 1 page per cell".into(),
            });
        }
        let max_new_tokens = o.max_new_tokens.or(file.max_new_tokens).unwrap_or(4096);
        if max_new_tokens == 0 {
            return Err(SpecError::Invalid {
                field: "max_new_tokens".into(),
                value: "0".into(),
                message: "must be positive".into(),
            });
        }
        let min_passage_tokens = file.min_passage_tokens.unwrap_or(0);
        let max_passage_tokens = file.max_passage_tokens.unwrap_or(usize::MAX);
        if max_passage_tokens < min_passage_tokens {
            return Err(SpecError::Invalid {
                field: "max_passage_tokens".into(),
                value: max_passage_tokens.to_string(),
                message: format!("below min_passage_tokens = {min_passage_tokens}"),
            });
        }
        let degradations = match file.degradations {
            None => default_degradations(),
            Some(levels) => {
                let parsed = levels
                    .iter()
                    .map(|t| {
                        DegradationLevel::parse(t).map_err(|message| SpecError::Invalid {
                            field: "degradations".into(),
                            value: t.clone(),
                            message,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                unique("degradations", parsed)?
            }
        };
        let fonts = match file.fonts {
            None => default_fonts(),
            Some(names) => {
                let parsed = names
                    .iter()
                    .map(|t| {
                        t.parse::<FontFamily>().map_err(|e| SpecError::Invalid {
                            field: "fonts".into(),
                            value: t.clone(),
                            message: e.to_string(),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                unique("fonts", parsed)?
            }
        };
        let line_heights = unique("line_heights", file.line_heights.unwrap_or_else(default_line_heights))?;
        let (lo, hi) = LINE_HEIGHT_RANGE;
        if let Some(bad) = line_heights.iter().find(|h| !(h.is_finite() && **h >= lo && **h <= hi)) {
            return Err(SpecError::Invalid {
                field: "line_heights".into(),
                value: bad.to_string(),
                message: format!("a line height must be in [{lo}, {hi}] (× the font size)"),
            });
        }
        let engine = o.engine.or(file.engine).unwrap_or(EngineKind::Tesseract);
        if let Some((mode, message)) = modes.iter().find_map(|&m| engine.refuses_mode(m).map(|msg| (m, msg))) {
            return Err(SpecError::Invalid { field: "modes".into(), value: mode.to_string(), message });
        }
        let baseline = o.baseline.or(file.baseline);
        if let Some(b) = baseline {
            check_baseline(engine, b, &modes)?;
        }
        let spec = ExperimentSpec {
            name,
            description: file.description.unwrap_or_default(),
            corpora,
            modes,
            ratios,
            ratios_by_mode,
            pages,
            seed: o.seed.or(file.seed).unwrap_or(0),
            engine,
            max_new_tokens,
            min_passage_tokens,
            max_passage_tokens,
            datasets_dir: o.datasets_dir.or(file.datasets_dir).unwrap_or_else(|| "datasets".into()),
            normalization: file.normalization.unwrap_or_default(),
            repetition: file.repetition.unwrap_or_default(),
            tesseract_psm: file.tesseract_psm.unwrap_or(crate::tesseract::DEFAULT_PSM),
            degradations,
            fonts,
            line_heights,
            baseline,
        };
        Ok(spec)
    }

    /// Every page setting of the sweep (degradation → font → line height, in spec order).
    pub fn settings(&self) -> Vec<PageSetting> {
        let mut out = Vec::new();
        for d in &self.degradations {
            for &font in &self.fonts {
                for &line_height in &self.line_heights {
                    out.push(PageSetting { degradation: d.clone(), font, line_height });
                }
            }
        }
        out
    }

    /// The ratios swept for `mode`.
    pub fn ratios_for(&self, mode: Mode) -> &[f64] {
        self.ratios_by_mode.get(&mode.to_string()).map(Vec::as_slice).unwrap_or(&self.ratios)
    }

    /// A short stable hash of the spec (for run ids and shard compatibility checks).
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_string(self).unwrap_or_default();
        let digest = Sha256::digest(json.as_bytes());
        digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_round_trip() {
        for e in EngineKind::ALL {
            assert_eq!(e.name().parse::<EngineKind>(), Ok(e));
            assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{e}\""));
        }
        assert!("gpt".parse::<EngineKind>().unwrap_err().to_string().contains("tesseract"));
    }

    #[test]
    fn ratio_grammar() {
        assert_eq!(parse_ratios("5..8", "r").unwrap(), vec![5.0, 6.0, 7.0, 8.0]);
        assert_eq!(parse_ratios("5..6:0.5", "r").unwrap(), vec![5.0, 5.5, 6.0]);
        assert_eq!(parse_ratios("5..6:0.1", "r").unwrap().len(), 11);
        assert_eq!(parse_ratios("5..6:0.1", "r").unwrap()[3], 5.3);
        assert_eq!(parse_ratios("10, 12,20", "r").unwrap(), vec![10.0, 12.0, 20.0]);
        assert_eq!(parse_ratios("5..25", "r").unwrap().len(), 21);
        assert_eq!(parse_ratios("7..7", "r").unwrap(), vec![7.0]);
    }

    #[test]
    fn bad_ratios_are_named_errors() {
        assert!(matches!(parse_ratios("25..5", "r"), Err(SpecError::EmptyRatioRange { .. })));
        assert!(matches!(parse_ratios("0..5", "r"), Err(SpecError::NonPositiveRatio { .. })));
        assert!(matches!(parse_ratios("5..x", "r"), Err(SpecError::RatioSyntax { .. })));
        assert!(matches!(parse_ratios("5..9:0", "r"), Err(SpecError::Invalid { .. })));
        assert!(matches!(RatioInput::Text("10,-2".into()).resolve("r"), Err(SpecError::NonPositiveRatio { .. })));
        assert!(matches!(RatioInput::List(vec![]).resolve("r"), Err(SpecError::Empty { .. })));
        let err = RatioInput::Text("0,10".into()).resolve("--ratios").unwrap_err().to_string();
        assert!(err.contains("--ratios") && err.contains("greater than 0"), "{err}");
    }

    #[test]
    fn toml_and_overrides_merge() {
        let file: SpecFile = toml::from_str(
            r#"
            name = "t"
            modes = ["tiny", "small"]
            ratios = [10.0, 20.0]
            pages = 4
            [ratios_by_mode]
            small = "6..8"
            [normalization]
            lowercase = true
            "#,
        )
        .unwrap();
        let spec = ExperimentSpec::resolve(
            file.clone(),
            SpecOverrides { pages: Some(2), modes: Some(vec!["small".into(), "base".into()]), ..Default::default() },
        )
        .unwrap();
        assert_eq!(spec.pages, 2);
        assert_eq!(spec.modes, vec![Mode::Small, Mode::Base]);
        assert_eq!(spec.ratios_for(Mode::Small), &[6.0, 7.0, 8.0]);
        assert_eq!(spec.ratios_for(Mode::Base), &[10.0, 20.0]);
        assert!(spec.normalization.lowercase && spec.normalization.nfkc);
        let json = serde_json::to_string(&spec).unwrap();
        let back: ExperimentSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
        assert_eq!(back.fingerprint(), spec.fingerprint());
    }

    #[test]
    fn robustness_axes_parse_default_and_leave_old_specs_as_they_were() {
        let plain = ExperimentSpec::resolve(SpecFile::default(), SpecOverrides::default()).unwrap();
        assert_eq!(plain.settings(), vec![PageSetting::default()]);
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("degradations") && !json.contains("line_heights"), "{json}");
        // A manifest written before the axes existed reads back with the defaults.
        let back: ExperimentSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plain);
        let file: SpecFile = toml::from_str(
            r#"
            degradations = ["none", "blur:1.5+jpeg:30"]
            fonts = ["dejavu-sans", "dejavu-serif"]
            line_heights = [1.2, 1.6]
            "#,
        )
        .unwrap();
        let spec = ExperimentSpec::resolve(file, SpecOverrides::default()).unwrap();
        let settings = spec.settings();
        assert_eq!(settings.len(), 8);
        assert_eq!(settings[0], PageSetting::default());
        assert_eq!(settings[7].degradation.to_string(), "blur:1.5+jpeg:30");
        assert_eq!((settings[7].font, settings[7].line_height), (FontFamily::DejavuSerif, 1.6));
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains("\"degradations\":[\"none\",\"blur:1.5+jpeg:30\"]"), "{json}");
        let back: ExperimentSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
        assert_ne!(spec.fingerprint(), plain.fingerprint());
        for (toml_text, want) in [
            ("degradations = [\"blur:0\"]", "degradations"),
            ("degradations = [\"none\", \"none\"]", "listed twice"),
            ("degradations = []", "degradations is empty"),
            ("fonts = [\"comic-sans\"]", "dejavu-serif"),
            ("line_heights = [0.5]", "[1, 4]"),
        ] {
            let file: SpecFile = toml::from_str(toml_text).unwrap();
            let err = ExperimentSpec::resolve(file, SpecOverrides::default()).unwrap_err().to_string();
            assert!(err.contains(want), "{toml_text}: {err}");
        }
    }

    #[test]
    fn invalid_specs_fail_with_the_field_named() {
        let bad_mode = SpecOverrides { modes: Some(vec!["huge".into()]), ..Default::default() };
        let err = ExperimentSpec::resolve(SpecFile::default(), bad_mode).unwrap_err().to_string();
        assert!(err.contains("modes") && err.contains("huge"), "{err}");
        let zero = SpecOverrides { pages: Some(0), ..Default::default() };
        assert!(ExperimentSpec::resolve(SpecFile::default(), zero).is_err());
        assert!(toml::from_str::<SpecFile>("colour = 1").is_err(), "unknown fields are rejected");
        let err = toml::from_str::<SpecFile>("engine = \"gpt\"").unwrap_err().to_string();
        assert!(err.contains("gpt") && err.contains("fake-perfect"), "{err}");
        let empty = SpecOverrides { ratios: Some("20..10".into()), ..Default::default() };
        let err = ExperimentSpec::resolve(SpecFile::default(), empty).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
    }
}
