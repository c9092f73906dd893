//! The report over several runs (`compress-bench compare`): each run's curves on one chart per
//! corpus, mode and metric, and the paired differences of every run with the first (the baseline)
//! on the pages they share, with bootstrap CIs (`occ_eval::compare` pairs and computes; this module
//! draws and writes).
//!
//! Outputs in the comparison folder: `compare.md` (links the SVGs), `compare.html` (SVGs inlined, no
//! external files), `paired.csv` (every comparison × cell × metric, `occ_eval::schema::PairedRow`),
//! `compare.json` (the runs, the pairing counts and rules, the seed and the CI method),
//! `plots/<corpus>_<mode>_<metric>.svg` and, when the runs' modes differ (DeepSeek-OCR against
//! DeepSeek-OCR-2), `plots/<corpus>_overlay_<metric>.svg`: every run × mode on one chart.

use std::path::{Path, PathBuf};

use occ_eval::compare::{Comparison, Pairing, RunTables};
use occ_eval::results::utc_now;
use occ_eval::schema::{self, PairedRow, SummaryRow, Table};
use occ_eval::stats::{CI_METHOD, MIN_N_FOR_CI, NO_CI};
use serde::Serialize;

use crate::document::Document;
use crate::tables::TextTable;
use crate::{charts, io_error, write_plots, Chart, ReportError, CURVE_METRICS};

pub const MARKDOWN_FILE: &str = "compare.md";
pub const HTML_FILE: &str = "compare.html";
pub const CSV_FILE: &str = "paired.csv";
pub const JSON_FILE: &str = "compare.json";

/// Metrics that get a table of paired differences in the report (`paired.csv` has every metric).
pub const TABLE_METRICS: [(&str, &str); 3] = [
    ("char_precision", "character precision (1 − NED)"),
    ("word_f1", "word F1"),
    ("fox_precision_out_words", "Fox set precision, unique output words in GT"),
];

/// One run as listed in `compare.json` and the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunEntry {
    pub label: String,
    pub run_dir: String,
    pub experiment: String,
    pub run_id: String,
    pub engine: String,
    pub engine_version: String,
    /// The run's passage seed (its spec's `seed`).
    pub seed: u64,
    pub n_samples: usize,
    pub synthetic_weights: bool,
}

impl RunEntry {
    /// The entry of a loaded run.
    pub fn of(r: &RunTables) -> RunEntry {
        RunEntry {
            label: r.label.clone(),
            run_dir: r.dir.display().to_string(),
            experiment: r.manifest.experiment.clone(),
            run_id: r.manifest.run_id.clone(),
            engine: r.engine(),
            engine_version: r.samples.first().map(|s| s.engine_version.clone()).unwrap_or_default(),
            seed: r.manifest.spec.seed,
            n_samples: r.samples.len(),
            synthetic_weights: r.manifest.synthetic_weights || r.samples.iter().any(|s| s.synthetic_weights),
        }
    }
}

/// `compare.json`.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRecord {
    pub created_utc: String,
    /// Seed of the bootstrap of the paired differences.
    pub seed: u64,
    pub ci_method: String,
    pub min_n_for_ci: usize,
    pub runs: Vec<RunEntry>,
    /// Every run after the first, paired with the first.
    pub pairings: Vec<Pairing>,
}

/// Written files.
#[derive(Debug, Clone)]
pub struct CompareFiles {
    pub dir: PathBuf,
    pub markdown: PathBuf,
    pub html: PathBuf,
    pub csv: PathBuf,
    pub json: PathBuf,
    pub plots: Vec<PathBuf>,
}

/// A fresh folder `<out_root>/<name>/<UTC time>[-k]` for a comparison.
pub fn create_dir(out_root: &Path, name: &str) -> Result<PathBuf, ReportError> {
    let parent = out_root.join(name);
    std::fs::create_dir_all(&parent).map_err(io_error(&parent))?;
    let (_, compact) = utc_now();
    for attempt in 0..1000 {
        let id = if attempt == 0 { compact.clone() } else { format!("{compact}-{attempt}") };
        let dir = parent.join(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error(&dir)(e)),
        }
    }
    Err(ReportError::Io {
        path: parent.display().to_string(),
        source: std::io::Error::other("no free folder name for the comparison"),
    })
}

/// Each run's label and summary rows.
type Series = Vec<(String, Vec<SummaryRow>)>;

/// Each run's summary, recomputed from its samples with its own seed (as its `summary.csv`).
fn summaries(runs: &[RunTables]) -> Series {
    runs.iter().map(|r| (r.label.clone(), occ_eval::summary::summarize(&r.samples, r.manifest.spec.seed))).collect()
}

/// The page settings of a comparison's charts: one scope without axes; with them one per setting,
/// each over that setting's rows of every run (with its title and file name suffixes).
fn scopes(series: &Series) -> Vec<(String, String, Series)> {
    let (facets, varied) =
        occ_eval::axes::facets(series.iter().flat_map(|(_, rows)| rows.iter().map(occ_eval::axes::facet_of_summary)));
    if varied.is_empty() {
        return vec![(String::new(), String::new(), series.clone())];
    }
    facets
        .iter()
        .map(|f| {
            let of_facet = series
                .iter()
                .map(|(label, rows)| {
                    let mine = rows.iter().filter(|r| occ_eval::axes::facet_of_summary(r) == *f).cloned().collect();
                    (label.clone(), mine)
                })
                .collect();
            (format!(", {}", f.title(&varied)), format!("_{}", f.slug(&varied)), of_facet)
        })
        .collect()
}

/// One chart per corpus × mode × metric of [`CURVE_METRICS`] (corpus and mode in the baseline's order,
/// then those only other runs have); runs with several page settings (`occ_eval::axes`) get one per
/// setting too (`<corpus>_<mode>_<metric>_<setting>.svg`).
pub fn curves(runs: &[RunTables]) -> Result<Vec<Chart>, ReportError> {
    curves_of(&summaries(runs))
}

fn curves_of(series: &Series) -> Result<Vec<Chart>, ReportError> {
    let mut groups: Vec<(String, String)> = Vec::new();
    for (_, rows) in series {
        for r in rows {
            let g = (r.corpus.clone(), r.mode.clone());
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    let scopes = scopes(series);
    let mut out = Vec::new();
    for (corpus, mode) in &groups {
        for (name, slug, rows) in &scopes {
            for metric in CURVE_METRICS {
                let title = format!(
                    "{corpus}, {mode}{name}: {metric} per run (mean, bootstrap 95% CI where n ≥ {MIN_N_FOR_CI})"
                );
                let svg = charts::runs_curve_svg(rows, corpus, mode, metric, &title).map_err(|message| {
                    ReportError::Chart { name: format!("{corpus}_{mode}_{metric}{slug}"), message }
                })?;
                let file = format!("{corpus}_{mode}_{metric}{slug}.svg").replace([':', '/'], "_");
                out.push(Chart { file, title, svg });
            }
        }
    }
    Ok(out)
}

/// Whether the runs read different modes (some run lacks a mode another has): then no chart per mode
/// shows them side by side, and [`overlays`] draws every run × mode on one chart.
pub fn modes_differ(runs: &[RunTables]) -> bool {
    fn modes(r: &RunTables) -> Vec<&str> {
        let mut m: Vec<&str> = r.samples.iter().map(|s| s.mode.as_str()).collect();
        m.sort_unstable();
        m.dedup();
        m
    }
    runs.first().is_some_and(|first| runs.iter().any(|r| modes(r) != modes(first)))
}

/// One chart per corpus × metric of [`CURVE_METRICS`] (and page setting, as [`curves`]) with every run
/// × mode's mean and CI over the ratio: `<corpus>_overlay_<metric>.svg`. Empty when the runs read the
/// same modes ([`modes_differ`]).
pub fn overlays(runs: &[RunTables]) -> Result<Vec<Chart>, ReportError> {
    if !modes_differ(runs) {
        return Ok(Vec::new());
    }
    overlays_of(&summaries(runs))
}

fn overlays_of(series: &Series) -> Result<Vec<Chart>, ReportError> {
    let mut corpora: Vec<String> = Vec::new();
    for (_, rows) in series {
        for r in rows {
            if !corpora.contains(&r.corpus) {
                corpora.push(r.corpus.clone());
            }
        }
    }
    let scopes = scopes(series);
    let mut out = Vec::new();
    for corpus in &corpora {
        for (name, slug, rows) in &scopes {
            for metric in CURVE_METRICS {
                let title = format!(
                    "{corpus}{name}: {metric}, every run and mode (mean, bootstrap 95% CI where n ≥ {MIN_N_FOR_CI})"
                );
                let svg = charts::overlay_curve_svg(rows, corpus, metric, &title).map_err(|message| {
                    ReportError::Chart { name: format!("{corpus}_overlay_{metric}{slug}"), message }
                })?;
                let file = format!("{corpus}_overlay_{metric}{slug}.svg").replace([':', '/'], "_");
                out.push(Chart { file, title, svg });
            }
        }
    }
    Ok(out)
}

/// `+1.2 [−0.3, +2.5]` in percentage points; `+1.2 [n too small]` without a CI.
pub fn pp_ci(mean: f64, low: f64, high: f64) -> String {
    if !mean.is_finite() {
        return "–".into();
    }
    let pp = |v: f64| format!("{:+.1}", 100.0 * v);
    if low.is_finite() && high.is_finite() {
        format!("{} [{}, {}]", pp(mean), pp(low), pp(high))
    } else {
        format!("{} [{NO_CI}]", pp(mean))
    }
}

/// The runs compared.
pub fn runs_table(runs: &[RunEntry]) -> TextTable {
    TextTable {
        title: "runs (the first is the baseline)".into(),
        header: ["label", "engine", "engine version", "experiment", "run id", "seed", "samples", "folder"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        rows: runs
            .iter()
            .map(|r| {
                vec![
                    r.label.clone(),
                    format!("{}{}", r.engine, if r.synthetic_weights { " (SYNTHETIC WEIGHTS)" } else { "" }),
                    r.engine_version.clone(),
                    r.experiment.clone(),
                    r.run_id.clone(),
                    r.seed.to_string(),
                    r.n_samples.to_string(),
                    r.run_dir.clone(),
                ]
            })
            .collect(),
    }
}

/// How many samples each comparison paired, and why the others were not.
pub fn pairing_table(pairings: &[Pairing]) -> TextTable {
    TextTable {
        title: "pairing: samples on the same pages".into(),
        header: [
            "baseline",
            "other",
            "pairing",
            "samples (baseline / other)",
            "paired",
            "scored pairs",
            "paired, a sample failed",
            "same key, page differs",
            "baseline only",
            "other only",
            "ambiguous key",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows: pairings
            .iter()
            .map(|p| {
                vec![
                    p.baseline.clone(),
                    p.other.clone(),
                    p.rule.describe().to_string(),
                    format!("{} / {}", p.n_baseline, p.n_other),
                    p.n_paired.to_string(),
                    p.n_scored.to_string(),
                    p.n_paired_failed.to_string(),
                    p.n_page_differs.to_string(),
                    p.n_baseline_only.to_string(),
                    p.n_other_only.to_string(),
                    p.n_ambiguous.to_string(),
                ]
            })
            .collect(),
    }
}

/// One table per comparison, corpus and metric of [`TABLE_METRICS`]: a row per mode × ratio and per
/// mode over all ratios (the pair of modes, `small → v2`, where the runs share no mode).
pub fn difference_tables(rows: &[PairedRow]) -> Vec<TextTable> {
    let setting = |r: &PairedRow| {
        let parts = [r.degradation.clone(), r.font_family.clone(), format!("lh{}", r.line_height)];
        parts.join(" · ")
    };
    let with_setting = rows.iter().any(|r| setting(r) != setting(&rows[0]));
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for r in rows {
        let k = (r.baseline.clone(), r.other.clone(), r.corpus.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut out = Vec::new();
    for (baseline, other, corpus) in &keys {
        for (metric, label) in TABLE_METRICS {
            let body: Vec<Vec<String>> = rows
                .iter()
                .filter(|r| &r.baseline == baseline && &r.other == other && &r.corpus == corpus && r.metric == metric)
                .map(|r| {
                    let modes = if r.other_mode == r.mode {
                        r.mode.clone()
                    } else {
                        format!("{} → {}", r.mode, r.other_mode)
                    };
                    let mode = if with_setting { format!("{modes} · {}", setting(r)) } else { modes };
                    vec![
                        mode,
                        r.target_ratio.map_or_else(|| "all".to_string(), |x| x.to_string()),
                        r.n_pairs.to_string(),
                        format!("{:.1}", 100.0 * r.mean_baseline),
                        format!("{:.1}", 100.0 * r.mean_other),
                        pp_ci(r.mean_diff, r.ci_low, r.ci_high),
                        format!("{} / {} / {}", r.n_other_better, r.n_other_worse, r.n_tied),
                    ]
                })
                .collect();
            if body.is_empty() {
                continue;
            }
            let across = rows
                .iter()
                .any(|r| &r.baseline == baseline && &r.other == other && &r.corpus == corpus && r.other_mode != r.mode);
            let (on, mode_header) = if across {
                ("the same passages and ratios", format!("mode ({baseline} → {other})"))
            } else {
                ("the same pages", "mode".to_string())
            };
            out.push(TextTable {
                title: format!("{corpus}: {label}, {other} − {baseline} on {on}"),
                header: [
                    mode_header,
                    "ratio".to_string(),
                    "pairs".to_string(),
                    format!("{baseline}, %"),
                    format!("{other}, %"),
                    format!("{other} − {baseline}, pp [95% CI]"),
                    format!("{other} better / worse / tied"),
                ]
                .to_vec(),
                rows: body,
            });
        }
    }
    out
}

fn notes() -> String {
    format!(
        "Samples are paired when both runs read the same page. Runs that share a mode are paired by the same \
         page: the same corpus, passage, mode, target ratio and page setting (degradation, font, line height), \
         and an identical page (the same ground truth text, page size and font size). Runs that share no mode \
         (other readers with modes of their own, such as DeepSeek-OCR against DeepSeek-OCR-2) are paired by the \
         same passage and ratio: the same corpus, passage, target ratio and page setting, every mode of one run \
         with every mode of the other, when the two pages hold the same text cut at each mode's budget (a page \
         of another mode holds the ratio times that mode's vision tokens); the table above names the rule of \
         each comparison. Samples whose key matches \
         but whose page differs (another seed, passage limits, corpus version or renderer) and samples one run \
         lacks are counted above and left out. A pair enters the differences when both samples have status ok. \
         Differences are other − baseline in percentage points (positive: the other run scores higher), per \
         page, averaged per cell (corpus, mode, ratio) and over every ratio of a mode (\"all\"). CI method: \
         {CI_METHOD} of the paired differences (seeded, reproducible); cells with fewer than {MIN_N_FOR_CI} \
         pairs show \"{NO_CI}\". The curves show each run's own mean and CI over all its pages; when the runs \
         read different modes, one chart per metric overlays every run and mode. \
         `{CSV_FILE}` has every metric."
    )
}

/// Pairs the runs (`seed` seeds the bootstrap), then writes every file of the comparison into a new
/// folder `<out_root>/<name>/<UTC time>` ([`create_dir`]); nothing is written when the runs cannot be
/// compared.
pub fn write_compare(
    runs: &[RunTables],
    out_root: &Path,
    name: &str,
    seed: u64,
) -> Result<(CompareFiles, Comparison), ReportError> {
    let comparison = occ_eval::compare::compare(runs, seed)?;
    let dir = create_dir(out_root, name)?;
    write_files(runs, comparison, &dir, seed)
}

/// [`write_compare`] into the folder `dir` (created if missing; the files of an earlier
/// comparison there are replaced): a sweep's comparison with its baseline run
/// (`occ_eval::sweep::BASELINE_COMPARE_DIR`).
pub fn write_compare_into(
    runs: &[RunTables],
    dir: &Path,
    seed: u64,
) -> Result<(CompareFiles, Comparison), ReportError> {
    let comparison = occ_eval::compare::compare(runs, seed)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io_error(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    write_files(runs, comparison, dir, seed)
}

/// Every file of a comparison, into `dir`.
fn write_files(
    runs: &[RunTables],
    comparison: Comparison,
    dir: &Path,
    seed: u64,
) -> Result<(CompareFiles, Comparison), ReportError> {
    let series = summaries(runs);
    let overlay = if modes_differ(runs) { overlays_of(&series)? } else { Vec::new() };
    let per_mode = curves_of(&series)?;
    let charts: Vec<Chart> = overlay.iter().chain(&per_mode).cloned().collect();
    let plots = write_plots(dir, &charts)?;
    let csv = dir.join(CSV_FILE);
    let mut frame = PairedRow::to_frame(&comparison.rows).map_err(occ_eval::results::ResultsError::from)?;
    schema::write_csv(&mut frame, &csv).map_err(occ_eval::results::ResultsError::from)?;
    let entries: Vec<RunEntry> = runs.iter().map(RunEntry::of).collect();
    let (created, _) = utc_now();
    let record = CompareRecord {
        created_utc: created,
        seed,
        ci_method: CI_METHOD.into(),
        min_n_for_ci: MIN_N_FOR_CI,
        runs: entries.clone(),
        pairings: comparison.pairings.clone(),
    };
    let json = dir.join(JSON_FILE);
    let text = serde_json::to_string_pretty(&record).map_err(|e| io_error(&json)(std::io::Error::other(e)))?;
    std::fs::write(&json, text + "\n").map_err(io_error(&json))?;

    let synthetic = entries.iter().any(|r| r.synthetic_weights);
    let title = format!(
        "Comparison: {}",
        entries.iter().map(|r| format!("{} ({})", r.label, r.engine)).collect::<Vec<_>>().join(" vs ")
    );
    let mut tables = vec![runs_table(&entries), pairing_table(&comparison.pairings)];
    tables.extend(difference_tables(&comparison.rows));
    let notes = notes();
    let warning = "A run used synthetic weights: its scores are meaningless.";

    let mut doc = Document::new(&title, &title);
    if synthetic {
        doc.warning(&format!("Warning: {warning}"), "");
    }
    doc.paragraph(&notes);
    doc.tables(&tables[..2]);
    doc.heading("Paired differences");
    doc.tables(&tables[2..]);
    if !overlay.is_empty() {
        doc.heading("Curves of every run and mode");
        doc.charts(&overlay);
    }
    doc.heading("Curves");
    doc.charts(&per_mode);
    let (md_path, html_path) = doc.write(dir, MARKDOWN_FILE, HTML_FILE)?;
    Ok((CompareFiles { dir: dir.to_path_buf(), markdown: md_path, html: html_path, csv, json, plots }, comparison))
}
