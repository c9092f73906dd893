//! Reports of sweep runs: SVG charts (plotters), Markdown and self-contained HTML with the tables.
//!
//! Reads only the run's files (`manifest.json`, `samples.parquet`, and `score.json` for runs of
//! `compress-bench score`); statistics are recomputed with `occ_eval::summary`, the same code that
//! wrote `summary.csv`. The model is never in the loop. A score run's report adds a headline, the
//! table of ground-truth-token bins and the bad rows of its input.
//!
//! Outputs in the run directory: `plots/<corpus>_<metric>.svg` (curves; for a run with several page
//! settings, `occ_eval::axes`, the curves of each setting `plots/<corpus>_<metric>_<setting>.svg` and
//! the settings compared per mode `plots/<corpus>_<mode>_<metric>_by_setting.svg` instead),
//! `plots/<corpus>_scatter_char_precision.svg`, `plots/<corpus>_font_char_precision.svg` (accuracy
//! against font size, runs with fitted fonts), `report.md` (links the SVGs), `report.html` (SVGs
//! inlined, no external files) and `pages.html` (every page, worst first, with thumbnail and diff;
//! self-contained, linked from both reports).
//!
//! - [`charts`](mod@charts): SVG curves, scatter plots and line charts described as data (plotters);
//! - [`tables`]: the report's tables as data, rendered to Markdown and HTML;
//! - [`document`]: the one Markdown/HTML writer of every report (sweep, score and decay runs);
//! - [`paper`]: the paper's Table 2, drawn over the curves;
//! - [`pages`], [`diff`]: the per-sample pages and the marked differences of each page;
//! - [`compare`]: the report over several runs (`compress-bench compare`);
//! - [`decay`]: the report of a decay run (`compress-bench decay`), and writing such a run.

mod baseline;
pub mod charts;
pub mod compare;
pub mod decay;
pub mod diff;
pub mod document;
pub mod pages;
pub mod paper;
pub mod tables;

use std::path::{Path, PathBuf};

use occ_eval::results::{self, Manifest, ResultsError};
use occ_eval::schema::{self, BinRow, PredictionRow, Table};
use occ_eval::schema::{SampleRow, SummaryRow};
use occ_eval::score::{Headline, ScoreError, ScoreRecord};
use occ_eval::stats::{CI_METHOD, MIN_N_FOR_CI, NO_CI};
use occ_eval::{RunStatus, SampleStatus};

/// Errors of report generation.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error(transparent)]
    Score(#[from] ScoreError),
    #[error(transparent)]
    Compare(#[from] occ_eval::compare::CompareError),
    #[error(transparent)]
    Decay(#[from] occ_eval::decay::DecayError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("chart {name}: {message}")]
    Chart { name: String, message: String },
}

/// The [`ReportError::Io`] of an operation on `path`.
pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io { path: path.display().to_string(), source }
}

/// Writes each chart as `dir/plots/<file>` (the folder made when missing); returns the paths, in order.
pub(crate) fn write_plots(dir: &Path, charts: &[Chart]) -> Result<Vec<PathBuf>, ReportError> {
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(io_error(&plots_dir))?;
    charts
        .iter()
        .map(|c| {
            let p = plots_dir.join(&c.file);
            std::fs::write(&p, &c.svg).map_err(io_error(&p))?;
            Ok(p)
        })
        .collect()
}

/// Metrics drawn as curves.
pub const CURVE_METRICS: [&str; 4] = ["char_precision", "word_f1", "fox_precision_gt_words", "fox_precision_out_words"];

/// The warning shown for runs on synthetic weights.
pub const SYNTHETIC_WARNING: &str = "synthetic weights — scores are meaningless";

/// Bad rows of a score run listed in the report (all of them are in `score.json`).
pub const BAD_ROWS_SHOWN: usize = 50;

/// What a report is made from.
#[derive(Debug, Clone)]
pub struct ReportInput {
    pub manifest: Manifest,
    pub samples: Vec<SampleRow>,
    pub summary: Vec<SummaryRow>,
    /// The input accounting of a `compress-bench score` run; `None` for sweeps.
    pub score: Option<ScoreRecord>,
    /// A score run's `bins.csv` (empty for sweeps).
    pub bins: Vec<BinRow>,
    /// A score run's headline, recomputed from the samples (empty for sweeps).
    pub headline: Vec<Headline>,
    /// What the run folder lacks (an unfinished run, tables not written yet), one line each;
    /// empty for a complete run. The report states each at its top.
    pub missing: Vec<String>,
}

impl ReportInput {
    /// Loads a run directory: a complete run, or one that is still running, was interrupted or
    /// killed (its rows are then read from `journal.jsonl` when its tables are missing).
    pub fn load(dir: &Path) -> Result<ReportInput, ReportError> {
        let manifest = Manifest::load(dir)?;
        let mut missing = Vec::new();
        let samples = if dir.join(results::SAMPLES_FILE).is_file() {
            results::read_samples(dir)?
        } else if dir.join(occ_eval::journal::JOURNAL_FILE).is_file() {
            missing.push(format!(
                "{} (not written yet: the rows are read from {})",
                results::SAMPLES_FILE,
                occ_eval::journal::JOURNAL_FILE
            ));
            let (entries, _) =
                occ_eval::journal::read(&dir.join(occ_eval::journal::JOURNAL_FILE)).map_err(ResultsError::from)?;
            entries.into_values().map(|e| e.sample).collect()
        } else {
            return Err(ReportError::Results(ResultsError::Manifest {
                path: dir.display().to_string(),
                message: format!(
                    "no {} and no {}: the run has no sample to report",
                    results::SAMPLES_FILE,
                    occ_eval::journal::JOURNAL_FILE
                ),
            }));
        };
        if manifest.status != RunStatus::Complete && manifest.merged_from.is_empty() {
            let n = samples.len();
            let planned = manifest.n_samples_planned;
            missing.insert(
                0,
                format!(
                    "the run is {} with {n} of {planned} planned samples ({} missing); continue it with \
                     `{}`",
                    if manifest.status == RunStatus::Running {
                        "running or was killed"
                    } else {
                        manifest.status.as_str()
                    },
                    planned.saturating_sub(n),
                    continue_command(dir, &manifest)
                ),
            );
        }
        let summary = occ_eval::summary::summarize(&samples, manifest.spec.seed);
        let score = ScoreRecord::load(dir)?;
        let (bins, headline) = match &score {
            Some(_) => (occ_eval::score::read_bins(dir)?, occ_eval::score::headline(&samples, manifest.spec.seed)),
            None => (Vec::new(), Vec::new()),
        };
        Ok(ReportInput { manifest, samples, summary, score, bins, headline, missing })
    }

    fn synthetic(&self) -> bool {
        self.manifest.synthetic_weights || self.samples.iter().any(|s| s.synthetic_weights)
    }

    /// Whether the curves of `corpus` carry the paper's Table 2: the English corpus of a sweep, or
    /// an English score run binned by ground-truth tokens (the paper's Fox protocol).
    fn paper_overlay(&self, corpus: &str) -> bool {
        match &self.score {
            Some(record) => record.binned() && record.lang == occ_eval::Lang::En,
            None => corpus == "en",
        }
    }
}

/// One chart.
#[derive(Debug, Clone)]
pub struct Chart {
    pub file: String,
    pub title: String,
    pub svg: String,
}

/// Every chart of a report. A run with several page settings (`occ_eval::axes`) is faceted: the
/// curves of each setting (`<corpus>_<metric>_<setting>.svg`) and, per mode, the settings' curves on
/// one chart (`<corpus>_<mode>_<metric>_by_setting.svg`) take the place of the pooled curves.
pub fn charts(input: &ReportInput) -> Result<Vec<Chart>, ReportError> {
    let mut out = Vec::new();
    let mut corpora: Vec<String> = Vec::new();
    for r in &input.summary {
        if !corpora.contains(&r.corpus) {
            corpora.push(r.corpus.clone());
        }
    }
    let engine = input.manifest.engines.first().map(|e| e.name.clone()).unwrap_or_default();
    let tag = if input.synthetic() { " [SYNTHETIC WEIGHTS]" } else { "" };
    let (facets, varied) = occ_eval::axes::facets(input.summary.iter().map(occ_eval::axes::facet_of_summary));
    for corpus in &corpora {
        if varied.is_empty() {
            for metric in CURVE_METRICS {
                let title =
                    format!("{engine} on {corpus}: {metric} (mean, bootstrap 95% CI where n ≥ {MIN_N_FOR_CI}){tag}");
                let svg = charts::curve_svg(&input.summary, corpus, metric, &title, input.paper_overlay(corpus))
                    .map_err(|message| ReportError::Chart { name: format!("{corpus}_{metric}"), message })?;
                out.push(Chart { file: format!("{corpus}_{metric}.svg"), title, svg });
            }
        } else {
            out.extend(facet_charts(input, corpus, &facets, &varied, &engine, tag)?);
        }
        let title = format!("{engine} on {corpus}: char_precision per page{tag}");
        let svg = charts::scatter_svg(&input.samples, corpus, "char_precision", &title)
            .map_err(|message| ReportError::Chart { name: format!("{corpus}_scatter"), message })?;
        out.push(Chart { file: format!("{corpus}_scatter_char_precision.svg"), title, svg });
        if input.samples.iter().any(|r| &r.corpus == corpus && r.status == SampleStatus::Ok && charts::has_font(r)) {
            let title = format!("{engine} on {corpus}: char_precision against font size{tag}");
            let svg = charts::font_svg(&input.samples, corpus, "char_precision", &title)
                .map_err(|message| ReportError::Chart { name: format!("{corpus}_font"), message })?;
            out.push(Chart { file: format!("{corpus}_font_char_precision.svg"), title, svg });
        }
    }
    Ok(out)
}

/// The faceted charts of one corpus (see [`charts`]).
fn facet_charts(
    input: &ReportInput,
    corpus: &str,
    facets: &[occ_eval::axes::Facet],
    varied: &[&str],
    engine: &str,
    tag: &str,
) -> Result<Vec<Chart>, ReportError> {
    let mut out = Vec::new();
    let of_facet = |f: &occ_eval::axes::Facet| -> Vec<SummaryRow> {
        input.summary.iter().filter(|r| occ_eval::axes::facet_of_summary(r) == *f).cloned().collect()
    };
    for f in facets {
        let rows = of_facet(f);
        if !rows.iter().any(|r| r.corpus == corpus) {
            continue;
        }
        let (name, slug) = (f.title(varied), f.slug(varied));
        for metric in CURVE_METRICS {
            let title = format!(
                "{engine} on {corpus}, {name}: {metric} (mean, bootstrap 95% CI where n ≥ {MIN_N_FOR_CI}){tag}"
            );
            let svg = charts::curve_svg(&rows, corpus, metric, &title, input.paper_overlay(corpus))
                .map_err(|message| ReportError::Chart { name: format!("{corpus}_{metric}_{slug}"), message })?;
            out.push(Chart { file: format!("{corpus}_{metric}_{slug}.svg"), title, svg });
        }
    }
    let by_facet: Vec<(String, Vec<SummaryRow>)> = facets.iter().map(|f| (f.title(varied), of_facet(f))).collect();
    let mut modes: Vec<String> = Vec::new();
    for r in input.summary.iter().filter(|r| r.corpus == corpus) {
        if !modes.contains(&r.mode) {
            modes.push(r.mode.clone());
        }
    }
    for mode in &modes {
        for metric in CURVE_METRICS {
            let title = format!("{engine} on {corpus}, {mode}: {metric} by page setting{tag}");
            let svg = charts::runs_curve_svg(&by_facet, corpus, mode, metric, &title).map_err(|message| {
                ReportError::Chart { name: format!("{corpus}_{mode}_{metric}_by_setting"), message }
            })?;
            out.push(Chart { file: format!("{corpus}_{mode}_{metric}_by_setting.svg"), title, svg });
        }
    }
    Ok(out)
}

/// The Markdown body shared by `report.md` (without images).
pub fn tables_markdown(input: &ReportInput) -> String {
    tables::faceted_tables(&input.summary).iter().map(tables::TextTable::markdown).collect::<Vec<_>>().join("\n")
}

fn notes() -> String {
    let text = "Metrics are defined in `occ_eval::metrics` (docs/SWEEPS.md): character precision = 1 − normalised \
     edit distance; word F1 over word multisets; the paper's undefined \"precision\" is reported in both \
     readings of Fox's set precision: unique output words found in the ground truth ÷ unique output words \
     (fox-out, the reading that reproduces the paper's Table 2 and carries its points) and unique \
     ground-truth words found in the output ÷ unique ground-truth words (fox-gt). The truncation baseline \
     keeps as many text tokens as the page has nominal vision tokens (1/r of the text). Cells show mean \
     [95% CI] in percent.";
    format!(
        "{text} CI method: {CI_METHOD} (seeded, reproducible); cells with fewer than {MIN_N_FOR_CI} samples \
         show \"{NO_CI}\" instead of an interval (with 1–3 samples the bootstrap interval is zero-width or the \
         sample's min–max) and have no band on the curves. Even at 5–10 samples this interval is narrower than \
         a true 95% interval (it covered the mean 83–90% of the time in simulations)."
    )
}

fn score_notes() -> &'static str {
    "Predictions made elsewhere, scored with the sweep's normalisation and metrics. A cell is a group, a \
     mode and a bin of ground-truth tokens [lo, hi); its ratio (the x axis and the tables' ratio) is the \
     mean of its pages' text tokens ÷ nominal vision tokens, rounded to 2 decimals."
}

/// Written files.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub markdown: PathBuf,
    pub html: PathBuf,
    pub plots: Vec<PathBuf>,
    /// `pages.html`; `None` when the run has no `predictions.parquet`.
    pub pages: Option<PathBuf>,
    /// What the run lacks ([`ReportInput::missing`]); empty for a complete run.
    pub missing: Vec<String>,
}

/// Writes `plots/*.svg`, `report.md`, `report.html` and (when the run has `predictions.parquet`)
/// `pages.html` into the run directory.
pub fn write_report(dir: &Path) -> Result<ReportFiles, ReportError> {
    let input = ReportInput::load(dir)?;
    let charts = charts(&input)?;
    let pages = match read_predictions(dir, &input)? {
        Some(predictions) => {
            let p = dir.join(pages::PAGES_FILE);
            std::fs::write(&p, pages::pages_html(&input.manifest, &input.samples, &predictions))
                .map_err(io_error(&p))?;
            Some(p)
        }
        None => None,
    };
    let plots = write_plots(dir, &charts)?;
    let m = &input.manifest;
    let (title, facts, notes, headline, mut all_tables) = match &input.score {
        Some(record) => {
            let mut t = tables::score_bins(&input.bins);
            t.extend(tables::score_bad_rows(record, BAD_ROWS_SHOWN));
            let notes = format!("{} {}", score_notes(), notes());
            (
                format!("Scored predictions: {}", m.experiment),
                tables::score_facts(m, record),
                notes,
                Some(tables::score_headline(&input.headline)),
                t,
            )
        }
        None => {
            (format!("Compression sweep: {}", m.experiment), tables::run_facts(m), notes().to_string(), None, vec![])
        }
    };
    all_tables.extend(tables::faceted_tables(&input.summary));
    let tables = all_tables;
    let mut doc = document::Document::new(&m.experiment, &title);
    if input.synthetic() {
        doc.warning(&format!("Warning: {SYNTHETIC_WARNING}."), "This run checks the plumbing only.");
    }
    for line in &input.missing {
        doc.warning("Incomplete run — missing:", line);
    }
    doc.facts(&facts);
    doc.paragraph(&notes);
    if let Some(h) = &headline {
        doc.raw(&format!("{}\n", h.markdown()), &h.html());
    }
    baseline::section(&mut doc, dir, &input);
    doc.heading("Curves");
    doc.charts(&charts);
    doc.heading("Tables");
    doc.tables(&tables);
    if pages.is_some() {
        let worst = pages::worst_table(&input.samples);
        let lead = "Every page with its thumbnail and its ground truth against the output, the differences marked, \
                    worst first";
        doc.heading("Pages");
        doc.raw(
            &format!("{lead}: [{0}]({0}).\n\n", pages::PAGES_FILE),
            &format!("<p>{lead}: <a href=\"{0}\">{0}</a>.</p>\n", pages::PAGES_FILE),
        );
        doc.tables(&[worst]);
    }
    let (md_path, html_path) = doc.write(dir, "report.md", "report.html")?;
    Ok(ReportFiles { markdown: md_path, html: html_path, plots, pages, missing: input.missing.clone() })
}

/// `predictions.parquet` of a run (from the journal when the samples came from it), or `None`
/// when the run has none.
fn read_predictions(dir: &Path, input: &ReportInput) -> Result<Option<Vec<PredictionRow>>, ReportError> {
    let path = dir.join(results::PREDICTIONS_FILE);
    if !dir.join(results::SAMPLES_FILE).is_file() {
        let (entries, _) =
            occ_eval::journal::read(&dir.join(occ_eval::journal::JOURNAL_FILE)).map_err(ResultsError::from)?;
        let rows: Vec<PredictionRow> = entries.into_values().map(|e| e.prediction).collect();
        return Ok((!rows.is_empty() && rows.len() == input.samples.len()).then_some(rows));
    }
    if !path.is_file() {
        return Ok(None);
    }
    let frame = schema::read_parquet(&path).map_err(ResultsError::from)?;
    Ok(Some(PredictionRow::from_frame(&frame).map_err(ResultsError::from)?))
}

pub(crate) fn strip_xml_prolog(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

/// The command that continues an unfinished run: `sweep --resume DIR`, or for a score run (it
/// reads its input again) its last session's command without the test hooks, then `--resume DIR`.
fn continue_command(dir: &Path, manifest: &occ_eval::results::Manifest) -> String {
    let command = manifest.sessions.last().map(|s| s.command.as_slice()).unwrap_or_default();
    if !dir.join(occ_eval::score::STATE_FILE).is_file() || command.len() < 2 {
        return format!("compress-bench sweep --resume {}", dir.display());
    }
    let mut out = vec!["compress-bench".to_string()];
    let mut args = command.iter().skip(1);
    while let Some(a) = args.next() {
        if a == "--resume" || a == "--interrupt-after" {
            args.next();
        } else if !a.starts_with("--resume=") && !a.starts_with("--interrupt-after=") {
            out.push(a.clone());
        }
    }
    out.extend(["--resume".to_string(), dir.display().to_string()]);
    out.join(" ")
}
