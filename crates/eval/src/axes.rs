//! Robustness axes of a sweep: how each page is degraded after rendering and the typography it is set
//! in. A spec lists the levels of each axis (`degradations`, `fonts`, `line_heights`); the sample list
//! crosses them ([`ExperimentSpec::settings`](crate::spec::ExperimentSpec::settings)), every row of
//! `samples.parquet` records its level of each axis in columns, and the report facets by them.
//!
//! A **degradation level** is written as `none` or a chain of steps joined by `+`, applied in the
//! order written to the fitted page (occ-render's [`occ_render::degrade`]):
//!
//! | step | meaning |
//! | --- | --- |
//! | `blur:S` | Gaussian blur, standard deviation S px (0 < S ≤ 1000) |
//! | `jpeg:Q` | encoded as baseline JPEG at quality Q (1–100) and decoded again |
//! | `noise:S` | Gaussian noise of standard deviation S (pixel values 0–255, 0 < S ≤ 255), seeded per sample |
//! | `downscale:F` | resized to F × the page size (0 < F < 1, Lanczos 3) and back, so the page keeps its size and vision tokens |
//!
//! Each kind appears at most once in a level, so a level has one value per kind (the columns
//! `blur_sigma`, `jpeg_quality`, `noise_sigma`, `downscale`). The ratio fitting happens before the
//! degradation: a degraded page carries exactly the text, font size and token counts of the clean page
//! of the same setting.
//!
//! A level's **label** (`blur:1.5+jpeg:30`, numbers in their shortest form) is its name in results
//! and reports; the defaults are `none`, `dejavu-sans` and a line height of 1.2, the page of a sweep
//! without axes.

use std::fmt;

use image::RgbImage;
use occ_core::rng::SplitMix64;
use occ_render::degrade::{self, Degradation, Filter};
use occ_render::FontFamily;
use serde::{Deserialize, Serialize};

/// The line height (× the font size) of a sweep's pages when the spec names none.
pub const DEFAULT_LINE_HEIGHT: f64 = 1.2;

/// The line heights a spec may ask for (× the font size): below 1 the lines of the default fonts
/// overlap, above 4 a page is mostly gaps.
pub const LINE_HEIGHT_RANGE: (f64, f64) = (1.0, 4.0);

/// The label of the level without degradation.
pub const NO_DEGRADATION: &str = "none";

/// One step of a degradation level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Gaussian blur of standard deviation `sigma` px.
    Blur { sigma: f64 },
    /// JPEG round trip at `quality`.
    Jpeg { quality: u8 },
    /// Gaussian noise of standard deviation `sigma` (0–255 scale).
    Noise { sigma: f64 },
    /// Resize to `factor` × the page size and back.
    Downscale { factor: f64 },
}

impl Step {
    fn kind(&self) -> &'static str {
        match self {
            Step::Blur { .. } => "blur",
            Step::Jpeg { .. } => "jpeg",
            Step::Noise { .. } => "noise",
            Step::Downscale { .. } => "downscale",
        }
    }

    fn parse(text: &str) -> Result<Step, String> {
        let (kind, value) = text
            .split_once(':')
            .ok_or_else(|| format!("step {text:?}: expected kind:value (blur:1.5, jpeg:30, noise:8, downscale:0.5)"))?;
        let kind = kind.trim();
        let value = value.trim();
        let number = |v: &str| {
            v.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| format!("{kind}: {v:?} is not a number"))
        };
        match kind {
            "blur" => {
                let sigma = number(value)?;
                if !(sigma > 0.0 && sigma <= 1000.0) {
                    return Err(format!("blur:{value}: the standard deviation must be in (0, 1000] px"));
                }
                Ok(Step::Blur { sigma })
            }
            "jpeg" => {
                let quality = value
                    .parse::<u8>()
                    .ok()
                    .filter(|q| (1..=100).contains(q))
                    .ok_or_else(|| format!("jpeg:{value}: the quality must be a whole number in 1..=100"))?;
                Ok(Step::Jpeg { quality })
            }
            "noise" => {
                let sigma = number(value)?;
                if !(sigma > 0.0 && sigma <= 255.0) {
                    return Err(format!("noise:{value}: the standard deviation must be in (0, 255]"));
                }
                Ok(Step::Noise { sigma })
            }
            "downscale" => {
                let factor = number(value)?;
                if !(factor > 0.0 && factor < 1.0) {
                    return Err(format!("downscale:{value}: the factor must be in (0, 1)"));
                }
                Ok(Step::Downscale { factor })
            }
            other => Err(format!("unknown degradation {other:?}: expected blur, jpeg, noise or downscale")),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Blur { sigma } => write!(f, "blur:{sigma}"),
            Step::Jpeg { quality } => write!(f, "jpeg:{quality}"),
            Step::Noise { sigma } => write!(f, "noise:{sigma}"),
            Step::Downscale { factor } => write!(f, "downscale:{factor}"),
        }
    }
}

/// A degradation level: the steps applied to a page after it is fitted, in order (none for the clean
/// page). Written and read as its label.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DegradationLevel {
    steps: Vec<Step>,
}

impl DegradationLevel {
    /// The clean page.
    pub fn none() -> DegradationLevel {
        DegradationLevel::default()
    }

    /// Parses `none` or `kind:value+kind:value…` (see the module docs).
    pub fn parse(text: &str) -> Result<DegradationLevel, String> {
        let t = text.trim();
        if t.is_empty() || t == NO_DEGRADATION {
            return Ok(DegradationLevel::none());
        }
        let mut steps: Vec<Step> = Vec::new();
        for part in t.split('+') {
            let step = Step::parse(part.trim())?;
            if steps.iter().any(|s| s.kind() == step.kind()) {
                return Err(format!("{t:?}: {} appears twice (each kind at most once per level)", step.kind()));
            }
            steps.push(step);
        }
        Ok(DegradationLevel { steps })
    }

    /// The steps, in the order they are applied.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Whether this is the clean page.
    pub fn is_none(&self) -> bool {
        self.steps.is_empty()
    }

    /// Blur standard deviation, px (0 without blur).
    pub fn blur_sigma(&self) -> f64 {
        self.steps.iter().find_map(|s| if let Step::Blur { sigma } = s { Some(*sigma) } else { None }).unwrap_or(0.0)
    }

    /// JPEG quality (`None` without a JPEG round trip).
    pub fn jpeg_quality(&self) -> Option<u32> {
        self.steps.iter().find_map(|s| if let Step::Jpeg { quality } = s { Some(u32::from(*quality)) } else { None })
    }

    /// Noise standard deviation (0 without noise).
    pub fn noise_sigma(&self) -> f64 {
        self.steps.iter().find_map(|s| if let Step::Noise { sigma } = s { Some(*sigma) } else { None }).unwrap_or(0.0)
    }

    /// Downscale factor (1 without downscaling).
    pub fn downscale(&self) -> f64 {
        self.steps
            .iter()
            .find_map(|s| if let Step::Downscale { factor } = s { Some(*factor) } else { None })
            .unwrap_or(1.0)
    }

    /// Applies the level to a page. `noise_seed` fixes the noise (the sweep derives it from the
    /// sample id with [`noise_seed`], so a page redrawn from its row gets the same noise).
    pub fn apply(&self, image: &RgbImage, noise_seed: u64) -> Result<RgbImage, String> {
        if self.steps.is_empty() {
            return Ok(image.clone());
        }
        let (w, h) = image.dimensions();
        let chain: Vec<Degradation> = self
            .steps
            .iter()
            .map(|s| match *s {
                Step::Blur { sigma } => Degradation::GaussianBlur { sigma: sigma as f32 },
                Step::Jpeg { quality } => Degradation::Jpeg { quality },
                Step::Noise { sigma } => Degradation::Noise { sigma: sigma as f32, seed: noise_seed },
                Step::Downscale { factor } => Degradation::Downscale {
                    width: ((f64::from(w) * factor).round() as u32).max(1),
                    height: ((f64::from(h) * factor).round() as u32).max(1),
                    filter: Filter::Lanczos3,
                    restore: true,
                },
            })
            .collect();
        degrade::apply_all(image, &chain).map_err(|e| format!("degradation {self}: {e}"))
    }
}

/// The seed of a sample's noise: a function of its sample id alone.
pub fn noise_seed(sample_id: &str) -> u64 {
    SplitMix64::stream(0, &format!("noise/{sample_id}")).next_u64()
}

impl fmt::Display for DegradationLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return f.write_str(NO_DEGRADATION);
        }
        let parts: Vec<String> = self.steps.iter().map(Step::to_string).collect();
        f.write_str(&parts.join("+"))
    }
}

impl TryFrom<String> for DegradationLevel {
    type Error = String;
    fn try_from(s: String) -> Result<DegradationLevel, String> {
        DegradationLevel::parse(&s)
    }
}

impl From<DegradationLevel> for String {
    fn from(d: DegradationLevel) -> String {
        d.to_string()
    }
}

/// One point of the axes: how a page is set and degraded.
#[derive(Debug, Clone, PartialEq)]
pub struct PageSetting {
    pub degradation: DegradationLevel,
    pub font: FontFamily,
    /// Line pitch × the font size.
    pub line_height: f64,
}

impl Default for PageSetting {
    fn default() -> PageSetting {
        PageSetting {
            degradation: DegradationLevel::none(),
            font: FontFamily::default(),
            line_height: DEFAULT_LINE_HEIGHT,
        }
    }
}

impl PageSetting {
    /// The part of a sample id that names the setting: empty for the default, else `/`-separated
    /// parts for each axis off its default (`/blur:1.5`, `/dejavu-serif`, `/lh1.5`).
    pub fn id_suffix(&self) -> String {
        let d = PageSetting::default();
        let mut s = String::new();
        if self.degradation != d.degradation {
            s.push_str(&format!("/{}", self.degradation));
        }
        if self.font != d.font {
            s.push_str(&format!("/{}", self.font));
        }
        if self.line_height != d.line_height {
            s.push_str(&format!("/lh{}", self.line_height));
        }
        s
    }

    /// The setting recorded in a row of `samples.parquet` (its `degradation`, `font_family` and
    /// `line_height` columns); `None` for a row of pages the toolkit did not draw (a score run).
    pub fn of_row(row: &crate::schema::SampleRow) -> Result<Option<PageSetting>, String> {
        if row.font_family.is_empty() {
            return Ok(None);
        }
        Ok(Some(PageSetting {
            degradation: DegradationLevel::parse(&row.degradation)?,
            font: row.font_family.parse().map_err(|e: occ_render::UnknownFontFamily| e.to_string())?,
            line_height: row.line_height,
        }))
    }
}

/// A facet of a report: the values of the axes of one row, as text (`degradation`, `font_family`,
/// `line_height`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Facet {
    pub degradation: String,
    pub font_family: String,
    pub line_height: String,
}

impl Facet {
    /// A short title naming only the axes in `varied` (`degradation`, `font_family`, `line_height`).
    pub fn title(&self, varied: &[&str]) -> String {
        let mut parts = Vec::new();
        for axis in varied {
            match *axis {
                "degradation" => parts.push(format!("degradation {}", self.degradation)),
                "font_family" => parts.push(format!("font {}", self.font_family)),
                "line_height" => parts.push(format!("line height {}", self.line_height)),
                _ => {}
            }
        }
        parts.join(", ")
    }

    /// A file-name-safe form of [`Facet::title`]'s values (`blur-1.5_dejavu-serif`).
    pub fn slug(&self, varied: &[&str]) -> String {
        let mut parts = Vec::new();
        for axis in varied {
            let v = match *axis {
                "degradation" => self.degradation.clone(),
                "font_family" => self.font_family.clone(),
                "line_height" => format!("lh{}", self.line_height),
                _ => continue,
            };
            parts.push(
                v.chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' })
                    .collect::<String>(),
            );
        }
        parts.join("_")
    }
}

/// Whether a row's page has the default setting, or one the toolkit does not know (pages made
/// elsewhere: empty font family, line height 0).
pub fn plain_setting(r: &crate::schema::SampleRow) -> bool {
    (r.degradation.is_empty() || r.degradation == NO_DEGRADATION)
        && (r.font_family.is_empty() || r.font_family == FontFamily::default().name())
        && (r.line_height == 0.0 || r.line_height == DEFAULT_LINE_HEIGHT)
}

/// The part of a statistics seed key that names a row's setting: empty for a plain setting (so a run
/// without axes keeps the seeds, and the statistics, it had before they existed), else
/// `/<degradation>/<font_family>/<line_height>`.
pub fn seed_key(r: &crate::schema::SampleRow) -> String {
    if plain_setting(r) {
        String::new()
    } else {
        format!("/{}/{}/{}", r.degradation, r.font_family, r.line_height)
    }
}

/// The facet of a sample row.
pub fn facet_of_sample(r: &crate::schema::SampleRow) -> Facet {
    Facet {
        degradation: r.degradation.clone(),
        font_family: r.font_family.clone(),
        line_height: format!("{}", r.line_height),
    }
}

/// The facet of a summary row.
pub fn facet_of_summary(r: &crate::schema::SummaryRow) -> Facet {
    Facet {
        degradation: r.degradation.clone(),
        font_family: r.font_family.clone(),
        line_height: format!("{}", r.line_height),
    }
}

/// The facets of `facets` in first-seen order, and the axes that take more than one value among them.
pub fn facets(facets: impl Iterator<Item = Facet>) -> (Vec<Facet>, Vec<&'static str>) {
    let mut all: Vec<Facet> = Vec::new();
    for f in facets {
        if !all.contains(&f) {
            all.push(f);
        }
    }
    let mut varied = Vec::new();
    let differs = |get: &dyn Fn(&Facet) -> &String| all.iter().any(|f| get(f) != get(&all[0]));
    if !all.is_empty() {
        if differs(&|f| &f.degradation) {
            varied.push("degradation");
        }
        if differs(&|f| &f.font_family) {
            varied.push("font_family");
        }
        if differs(&|f| &f.line_height) {
            varied.push("line_height");
        }
    }
    (all, varied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_label_and_split_into_columns() {
        let l = DegradationLevel::parse(" blur:1.50 + jpeg:30 ").unwrap();
        assert_eq!(l.to_string(), "blur:1.5+jpeg:30");
        assert_eq!((l.blur_sigma(), l.jpeg_quality(), l.noise_sigma(), l.downscale()), (1.5, Some(30), 0.0, 1.0));
        let none = DegradationLevel::parse("none").unwrap();
        assert!(none.is_none() && none.to_string() == "none" && none.jpeg_quality().is_none());
        let l = DegradationLevel::parse("downscale:0.5+noise:8").unwrap();
        assert_eq!((l.downscale(), l.noise_sigma()), (0.5, 8.0));
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(json, "\"downscale:0.5+noise:8\"");
        assert_eq!(serde_json::from_str::<DegradationLevel>(&json).unwrap(), l);
    }

    #[test]
    fn bad_levels_say_what_is_wrong() {
        for (text, want) in [
            ("blur", "kind:value"),
            ("blur:0", "(0, 1000]"),
            ("blur:x", "not a number"),
            ("jpeg:0", "1..=100"),
            ("jpeg:50.5", "1..=100"),
            ("noise:-1", "(0, 255]"),
            ("downscale:1", "(0, 1)"),
            ("sharpen:2", "unknown degradation"),
            ("blur:1+blur:2", "twice"),
            ("blur:inf", "not a number"),
        ] {
            let err = DegradationLevel::parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn a_level_changes_pixels_but_not_the_page_size_and_is_deterministic() {
        let mut img = RgbImage::from_pixel(64, 48, image::Rgb([255, 255, 255]));
        for x in 10..50 {
            for y in 20..24 {
                img.put_pixel(x, y, image::Rgb([0, 0, 0]));
            }
        }
        assert!(DegradationLevel::none().apply(&img, 1).unwrap() == img);
        for text in ["blur:1.5", "jpeg:10", "noise:20", "downscale:0.25", "blur:1+jpeg:40+noise:5+downscale:0.5"] {
            let l = DegradationLevel::parse(text).unwrap();
            let a = l.apply(&img, 7).unwrap();
            assert_eq!(a.dimensions(), img.dimensions(), "{text}");
            assert!(a != img, "{text} changes the page");
            assert!(a == l.apply(&img, 7).unwrap(), "{text} is deterministic");
        }
        let noise = DegradationLevel::parse("noise:20").unwrap();
        assert!(noise.apply(&img, 1).unwrap() != noise.apply(&img, 2).unwrap(), "the seed fixes the noise");
        assert_eq!(noise_seed("en/a/tiny/r8"), noise_seed("en/a/tiny/r8"));
        assert_ne!(noise_seed("en/a/tiny/r8"), noise_seed("en/b/tiny/r8"));
    }

    #[test]
    fn the_default_setting_has_no_id_suffix() {
        assert_eq!(PageSetting::default().id_suffix(), "");
        let s = PageSetting {
            degradation: DegradationLevel::parse("blur:2").unwrap(),
            font: FontFamily::DejavuSerif,
            line_height: 1.5,
        };
        assert_eq!(s.id_suffix(), "/blur:2/dejavu-serif/lh1.5");
        let f = Facet { degradation: "blur:2".into(), font_family: "dejavu-serif".into(), line_height: "1.5".into() };
        assert_eq!(f.slug(&["degradation", "line_height"]), "blur-2_lh1.5");
        assert_eq!(f.title(&["degradation"]), "degradation blur:2");
    }
}
