//! Paired comparison of runs: which samples of two runs read the same page, and the differences of
//! their scores on those pages with bootstrap CIs.
//!
//! **Pairing.** The first run is the baseline; every other run is paired with it by one of two
//! rules ([`PairingRule`]), chosen per pair of runs:
//!
//! - **Same page** (the runs share at least one mode). Two samples are paired when they have the
//!   same *page key* — corpus, passage id, mode, target ratio and page setting (degradation, font
//!   family, line height: `crate::axes`), the columns a sample id is made of — and their pages are
//!   identical: the same ground truth (the exact text on the page, from `predictions.parquet`), page
//!   size and fitted font size. The key alone is not enough: two runs with different seeds or
//!   passage-length limits can start the same passage and continue it with different ones, and
//!   another renderer or font set can lay the same text out differently; such samples are counted as
//!   "page differs" and left out.
//! - **Same passage and ratio** (the runs share no mode: other readers with modes of their own, such
//!   as DeepSeek-OCR's `small`/`base` and DeepSeek-OCR-2's `v2-single`/`v2`). A page of another mode
//!   is another page (another canvas, and a text budget of the ratio times that mode's vision
//!   tokens), so the mode is left out of the key: samples with the same corpus, passage id, target
//!   ratio and page setting are paired, each mode of the baseline with each mode of the other run,
//!   when their ground truths are the same text cut at two budgets (the shorter, trailing whitespace
//!   aside, begins the longer). Other texts (another seed, passage limits or corpus version) are
//!   "page differs".
//!
//! A key that occurs more than once in a run (which no sweep or score run writes) is ambiguous and
//! never paired.
//!
//! **Differences.** For each pair in which both samples have status `ok`, the difference
//! other − baseline of each metric of [`METRICS`] is taken; per cell (corpus, mode — the pair of modes
//! under the second rule —, page setting, target ratio) and pooled over the ratios of each corpus ×
//! mode × page setting, the mean difference gets the percentile bootstrap CI
//! of [`crate::stats::cell_stats`] (no CI below [`crate::stats::MIN_N_FOR_CI`] pairs), seeded from the
//! comparison seed and the cell key. Because both runs read the same pages, the page-to-page
//! variation of difficulty cancels: the paired CI is much narrower than the two runs' own CIs suggest.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::axes::facet_of_sample;
use crate::metrics::METRICS;
use crate::results::{self, Manifest, ResultsError, PREDICTIONS_FILE, SAMPLES_FILE};
use crate::rng::SplitMix64;
use crate::schema::{self, PairedRow, PredictionRow, SampleRow, SampleStatus, SchemaError, Table};
use crate::stats::{cell_stats, median};
use crate::summary::sample_metric;

/// Errors of a comparison; each names the run folder or the runs involved.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{}", in_dir(.dir, .source))]
    Results { dir: String, source: ResultsError },
    #[error("{}", in_dir(.dir, .source))]
    Schema { dir: String, source: SchemaError },
    #[error(
        "{dir} has no {file}: only finished runs can be compared (finish an interrupted sweep with `sweep --resume`)"
    )]
    Unfinished { dir: String, file: &'static str },
    #[error("a comparison needs at least two runs, {0} given")]
    TooFewRuns(usize),
    #[error("{given} labels given for {runs} runs")]
    LabelCount { given: usize, runs: usize },
    #[error("label {0:?} is given to two runs; labels must be distinct")]
    DuplicateLabel(String),
    #[error("runs {baseline} and {other} have no sample in common: {detail}")]
    NothingShared { baseline: String, other: String, detail: String },
    #[error(
        "runs {baseline} and {other} share {n_paired} pages, but on each of them one of the runs failed \
         (status not ok): there is no pair of scores to compare"
    )]
    NothingScored { baseline: String, other: String, n_paired: usize },
}

/// `dir: cause`, or the cause alone when it already names the folder (a file in it): each cause
/// is stated once.
fn in_dir(dir: &str, source: &dyn std::fmt::Display) -> String {
    let cause = source.to_string();
    if cause.contains(dir) {
        cause
    } else {
        format!("{dir}: {cause}")
    }
}

/// The tables of one finished run.
#[derive(Debug, Clone)]
pub struct RunTables {
    /// Short name of the run in tables, charts and `paired.csv`.
    pub label: String,
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub samples: Vec<SampleRow>,
    /// One per sample (joined on `sample_index`); holds each page's ground truth.
    pub predictions: Vec<PredictionRow>,
}

impl RunTables {
    /// Reads `manifest.json`, `samples.parquet` and `predictions.parquet` of a run folder.
    pub fn load(dir: &Path, label: &str) -> Result<RunTables, CompareError> {
        let name = dir.display().to_string();
        let manifest = Manifest::load(dir).map_err(|source| CompareError::Results { dir: name.clone(), source })?;
        for file in [SAMPLES_FILE, PREDICTIONS_FILE] {
            if !dir.join(file).is_file() {
                return Err(CompareError::Unfinished { dir: name, file });
            }
        }
        let samples =
            results::read_samples(dir).map_err(|source| CompareError::Results { dir: name.clone(), source })?;
        let schema_err = |source| CompareError::Schema { dir: name.clone(), source };
        let frame = schema::read_parquet(&dir.join(PREDICTIONS_FILE)).map_err(schema_err)?;
        let predictions = PredictionRow::from_frame(&frame).map_err(schema_err)?;
        Ok(RunTables { label: label.to_string(), dir: dir.to_path_buf(), manifest, samples, predictions })
    }

    /// The name of the engine that read the run's pages.
    pub fn engine(&self) -> String {
        self.samples.first().map(|s| s.engine.clone()).unwrap_or_else(|| {
            self.manifest
                .engines
                .first()
                .map(|e| e.name.clone())
                .unwrap_or_else(|| self.manifest.spec.engine.to_string())
        })
    }
}

/// Default run labels: `A`, `B`, … `Z`, `AA`, `AB`, …
pub fn default_label(index: usize) -> String {
    let mut n = index;
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    s.reverse();
    String::from_utf8_lossy(&s).into_owned()
}

/// Which samples of two runs count as one page read by both (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairingRule {
    /// The runs share a mode: the same corpus, passage, mode, ratio and page setting, on an identical
    /// page.
    SamePage,
    /// The runs share no mode: the same corpus, passage, ratio and page setting, every mode of one
    /// with every mode of the other, the same text cut at each mode's budget.
    SamePassageAndRatio,
}

impl PairingRule {
    /// The rule in a few words, for tables.
    pub fn describe(self) -> &'static str {
        match self {
            PairingRule::SamePage => "same page (corpus, passage, mode, ratio, identical page)",
            PairingRule::SamePassageAndRatio => {
                "same passage and ratio across modes (the runs share no mode; the same text at each mode's budget)"
            }
        }
    }
}

/// The pairing of one run with the baseline: counts and the pairs that carry scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pairing {
    pub baseline: String,
    pub other: String,
    /// The rule the samples were paired by.
    pub rule: PairingRule,
    /// Samples of each run.
    pub n_baseline: usize,
    pub n_other: usize,
    /// Pairs of samples on the same page (identical pages, or under
    /// [`PairingRule::SamePassageAndRatio`] one pair per baseline mode × other mode of a passage and
    /// ratio).
    pub n_paired: usize,
    /// Of `n_paired`, pairs whose samples both have status ok: the pairs in the differences.
    pub n_scored: usize,
    /// Of `n_paired`, pairs left out because a sample failed (status not ok) in either run.
    pub n_paired_failed: usize,
    /// Samples of the baseline whose key the other run has, on a different page (counted once per pair
    /// of samples; under [`PairingRule::SamePassageAndRatio`] the key has no mode and the texts differ).
    pub n_page_differs: usize,
    /// Baseline samples whose key the other run does not have.
    pub n_baseline_only: usize,
    /// Other-run samples whose key the baseline does not have.
    pub n_other_only: usize,
    /// Samples (of either run) whose key occurs more than once in their run.
    pub n_ambiguous: usize,
    /// Indices into the two runs' `samples` of the scored pairs (both ok), in baseline order.
    #[serde(skip)]
    pub pairs: Vec<(usize, usize)>,
}

impl Pairing {
    /// No pairs yet: the two runs' labels and sample counts, the rule, and the ambiguous samples found
    /// while indexing them.
    fn empty(baseline: &RunTables, other: &RunTables, rule: PairingRule, n_ambiguous: usize) -> Self {
        Pairing {
            baseline: baseline.label.clone(),
            other: other.label.clone(),
            rule,
            n_baseline: baseline.samples.len(),
            n_other: other.samples.len(),
            n_paired: 0,
            n_scored: 0,
            n_paired_failed: 0,
            n_page_differs: 0,
            n_baseline_only: 0,
            n_other_only: 0,
            n_ambiguous,
            pairs: Vec::new(),
        }
    }

    /// Counts baseline sample `i` against other-run sample `j` under the pairing's key: a different
    /// page, a pair left out because a sample failed, or a scored pair.
    fn count(&mut self, i: usize, j: usize, same_page: bool, both_ok: bool) {
        if !same_page {
            self.n_page_differs += 1;
            return;
        }
        self.n_paired += 1;
        if both_ok {
            self.pairs.push((i, j));
        } else {
            self.n_paired_failed += 1;
        }
    }
}

/// What identifies a sample's page across runs, before the page itself is compared.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PageKey {
    corpus: String,
    passage_id: String,
    mode: String,
    target_ratio_bits: u64,
    /// The page setting (`occ_eval::axes`): a degraded page is another page than the clean one.
    degradation: String,
    font_family: String,
    line_height_bits: u64,
}

fn key(s: &SampleRow) -> PageKey {
    PageKey {
        corpus: s.corpus.clone(),
        passage_id: s.passage_id.clone(),
        mode: s.mode.clone(),
        target_ratio_bits: s.target_ratio.to_bits(),
        degradation: s.degradation.clone(),
        font_family: s.font_family.clone(),
        line_height_bits: s.line_height.to_bits(),
    }
}

/// Keys of a run → sample position, with the positions of keys that occur more than once.
fn index(run: &RunTables) -> (HashMap<PageKey, usize>, Vec<usize>) {
    let mut first: HashMap<PageKey, usize> = HashMap::new();
    let mut repeated: HashMap<PageKey, Vec<usize>> = HashMap::new();
    for (i, s) in run.samples.iter().enumerate() {
        let k = key(s);
        match first.get(&k) {
            Some(&j) => repeated.entry(k).or_insert_with(|| vec![j]).push(i),
            None => {
                first.insert(k, i);
            }
        }
    }
    let mut ambiguous = Vec::new();
    for (k, positions) in repeated {
        first.remove(&k);
        ambiguous.extend(positions);
    }
    (first, ambiguous)
}

/// The key of a sample without its mode: what pages of other modes share under
/// [`PairingRule::SamePassageAndRatio`].
fn passage_key(s: &SampleRow) -> PageKey {
    PageKey { mode: String::new(), ..key(s) }
}

/// Whether two ground truths are the same text cut at two budgets: the shorter, trailing whitespace
/// aside, begins the longer.
fn same_text_cut(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let short = short.trim_end();
    !short.is_empty() && long.starts_with(short)
}

/// Modes of a run.
fn modes_of(run: &RunTables) -> HashSet<&str> {
    run.samples.iter().map(|s| s.mode.as_str()).collect()
}

fn ground_truths(run: &RunTables) -> HashMap<u64, &str> {
    run.predictions.iter().map(|p| (p.sample_index, p.ground_truth.as_str())).collect()
}

fn same_float(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Pairs `other` with `baseline` (see the module docs): by the same page when the runs share a mode,
/// else by the same passage and ratio.
pub fn pair(baseline: &RunTables, other: &RunTables) -> Pairing {
    let (a, b) = (modes_of(baseline), modes_of(other));
    if a.is_disjoint(&b) && !a.is_empty() && !b.is_empty() {
        pair_across_modes(baseline, other)
    } else {
        pair_same_page(baseline, other)
    }
}

/// [`PairingRule::SamePage`].
fn pair_same_page(baseline: &RunTables, other: &RunTables) -> Pairing {
    let (base_index, base_ambiguous) = index(baseline);
    let (other_index, other_ambiguous) = index(other);
    let base_gt = ground_truths(baseline);
    let other_gt = ground_truths(other);
    let mut p = Pairing::empty(baseline, other, PairingRule::SamePage, base_ambiguous.len() + other_ambiguous.len());
    let mut positions: Vec<(&PageKey, &usize)> = base_index.iter().collect();
    positions.sort_by_key(|(_, &i)| i);
    for (k, &i) in positions {
        let Some(&j) = other_index.get(k) else {
            p.n_baseline_only += 1;
            continue;
        };
        let (a, b) = (&baseline.samples[i], &other.samples[j]);
        let identical = matches!(
            (base_gt.get(&a.sample_index), other_gt.get(&b.sample_index)),
            (Some(x), Some(y)) if x == y
        ) && a.page_w_px == b.page_w_px
            && a.page_h_px == b.page_h_px
            && same_float(a.font_px, b.font_px);
        p.count(i, j, identical, a.status == SampleStatus::Ok && b.status == SampleStatus::Ok);
    }
    p.n_other_only = other_index.keys().filter(|k| !base_index.contains_key(*k)).count();
    p.n_scored = p.pairs.len();
    p
}

/// [`PairingRule::SamePassageAndRatio`]: every baseline sample with every sample of the other run
/// that has its passage key (one per other mode), in baseline order, then the other run's order.
fn pair_across_modes(baseline: &RunTables, other: &RunTables) -> Pairing {
    let (base_index, base_ambiguous) = index(baseline);
    let (other_index, other_ambiguous) = index(other);
    let base_gt = ground_truths(baseline);
    let other_gt = ground_truths(other);
    let mut by_passage: HashMap<PageKey, Vec<usize>> = HashMap::new();
    for &j in other_index.values() {
        by_passage.entry(passage_key(&other.samples[j])).or_default().push(j);
    }
    for positions in by_passage.values_mut() {
        positions.sort_unstable();
    }
    let mut p =
        Pairing::empty(baseline, other, PairingRule::SamePassageAndRatio, base_ambiguous.len() + other_ambiguous.len());
    let mut positions: Vec<usize> = base_index.values().copied().collect();
    positions.sort_unstable();
    let mut base_passages = HashSet::new();
    for i in positions {
        let a = &baseline.samples[i];
        let k = passage_key(a);
        let Some(partners) = by_passage.get(&k) else {
            p.n_baseline_only += 1;
            base_passages.insert(k);
            continue;
        };
        for &j in partners {
            let b = &other.samples[j];
            let same = matches!(
                (base_gt.get(&a.sample_index), other_gt.get(&b.sample_index)),
                (Some(x), Some(y)) if same_text_cut(x, y)
            );
            p.count(i, j, same, a.status == SampleStatus::Ok && b.status == SampleStatus::Ok);
        }
        base_passages.insert(k);
    }
    p.n_other_only =
        other_index.values().filter(|&&j| !base_passages.contains(&passage_key(&other.samples[j]))).count();
    p.n_scored = p.pairs.len();
    p
}

/// A finished comparison: every run's pairing with the baseline and the rows of `paired.csv`.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub pairings: Vec<Pairing>,
    pub rows: Vec<PairedRow>,
}

fn set_of<T: PartialEq + Clone>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Why two runs share nothing: what each has.
fn nothing_shared_detail(a: &RunTables, b: &RunTables, p: &Pairing) -> String {
    let describe = |r: &RunTables| {
        let corpora = set_of(r.samples.iter().map(|s| s.corpus.clone()));
        let modes = set_of(r.samples.iter().map(|s| s.mode.clone()));
        let ratios = set_of(r.samples.iter().map(|s| s.target_ratio.to_string()));
        format!(
            "{} ({} samples; corpora {}; modes {}; ratios {})",
            r.label,
            r.samples.len(),
            corpora.join(","),
            modes.join(","),
            ratios.join(",")
        )
    };
    let mut s = format!("{} and {}; pairing: {}", describe(a), describe(b), p.rule.describe());
    if p.n_page_differs > 0 && p.rule == PairingRule::SamePassageAndRatio {
        s.push_str(&format!(
            "; {} pairs of samples have the same corpus, passage and ratio but another text (a different seed, \
             passage limits or corpus version)",
            p.n_page_differs
        ));
    } else if p.n_page_differs > 0 {
        s.push_str(&format!(
            "; {} samples have the same corpus, passage, mode and ratio but a different page (ground truth, page \
             size or font size: a different seed, passage limits, corpus version or renderer)",
            p.n_page_differs
        ));
    }
    s
}

/// Pairs every run after the first with the first and computes the paired differences. `seed`
/// seeds the bootstrap. Errors when fewer than two runs are given or a run shares no scored page
/// with the baseline.
pub fn compare(runs: &[RunTables], seed: u64) -> Result<Comparison, CompareError> {
    let (baseline, others) = match runs.split_first() {
        Some((b, o)) if !o.is_empty() => (b, o),
        _ => return Err(CompareError::TooFewRuns(runs.len())),
    };
    for (i, r) in runs.iter().enumerate() {
        if runs[..i].iter().any(|q| q.label == r.label) {
            return Err(CompareError::DuplicateLabel(r.label.clone()));
        }
    }
    let mut pairings = Vec::new();
    let mut rows = Vec::new();
    for (k, other) in others.iter().enumerate() {
        let p = pair(baseline, other);
        if p.n_paired == 0 {
            return Err(CompareError::NothingShared {
                baseline: baseline.label.clone(),
                other: other.label.clone(),
                detail: nothing_shared_detail(baseline, other, &p),
            });
        }
        if p.pairs.is_empty() {
            return Err(CompareError::NothingScored {
                baseline: baseline.label.clone(),
                other: other.label.clone(),
                n_paired: p.n_paired,
            });
        }
        rows.extend(paired_rows(baseline, other, &p, seed, k + 1));
        pairings.push(p);
    }
    Ok(Comparison { pairings, rows })
}

/// Rows of one pairing: per corpus × mode (baseline mode and other mode: the same under
/// [`PairingRule::SamePage`]) × page setting (first appearance in the baseline), each ratio's cell in
/// ascending order and then the pooled row (`target_ratio` null); per cell every metric of [`METRICS`].
fn paired_rows(baseline: &RunTables, other: &RunTables, p: &Pairing, seed: u64, comparison: usize) -> Vec<PairedRow> {
    let pairs: Vec<(&SampleRow, &SampleRow)> =
        p.pairs.iter().map(|&(i, j)| (&baseline.samples[i], &other.samples[j])).collect();
    let groups =
        set_of(pairs.iter().map(|(a, b)| (a.corpus.clone(), a.mode.clone(), b.mode.clone(), facet_of_sample(a))));
    let mut out = Vec::new();
    for (corpus, mode, other_mode, facet) in &groups {
        let in_group: Vec<&(&SampleRow, &SampleRow)> = pairs
            .iter()
            .filter(|(a, b)| {
                &a.corpus == corpus && &a.mode == mode && &b.mode == other_mode && facet_of_sample(a) == *facet
            })
            .collect();
        // the seed key of a cell of one mode is unchanged by the second rule's pairs of modes
        let modes = if mode == other_mode { mode.clone() } else { format!("{mode}>{other_mode}") };
        let first = in_group[0].0;
        let setting = crate::axes::seed_key(first);
        let mut ratios = set_of(in_group.iter().map(|(a, _)| a.target_ratio));
        ratios.sort_by(f64::total_cmp);
        let scopes = ratios.iter().map(|&r| Some(r)).chain(std::iter::once(None));
        for ratio in scopes {
            let members: Vec<&(&SampleRow, &SampleRow)> =
                in_group.iter().copied().filter(|(a, _)| ratio.is_none_or(|r| a.target_ratio == r)).collect();
            let scope = ratio.map_or_else(|| "all".to_string(), |r| r.to_string());
            for metric in METRICS {
                let values: Vec<(f64, f64)> = members
                    .iter()
                    .filter_map(|(a, b)| Some((sample_metric(a, metric)?, sample_metric(b, metric)?)))
                    .collect();
                let diffs: Vec<f64> = values.iter().map(|(x, y)| y - x).collect();
                let key = format!("compare/{comparison}/{corpus}/{modes}{setting}/{scope}/{metric}");
                let st = cell_stats(&diffs, SplitMix64::stream(seed, &key).next_u64());
                let mean = |f: fn(&(f64, f64)) -> f64| crate::stats::mean(&values.iter().map(f).collect::<Vec<_>>());
                out.push(PairedRow {
                    baseline: p.baseline.clone(),
                    other: p.other.clone(),
                    corpus: corpus.clone(),
                    mode: mode.clone(),
                    other_mode: other_mode.clone(),
                    degradation: first.degradation.clone(),
                    font_family: first.font_family.clone(),
                    line_height: first.line_height,
                    target_ratio: ratio,
                    metric: metric.to_string(),
                    n_pairs: st.n as u32,
                    mean_baseline: mean(|v| v.0),
                    mean_other: mean(|v| v.1),
                    mean_diff: st.mean,
                    median_diff: median(&diffs),
                    ci_low: st.ci_low,
                    ci_high: st.ci_high,
                    ci_method: st.ci_method().to_string(),
                    n_other_better: diffs.iter().filter(|d| **d > 0.0).count() as u32,
                    n_other_worse: diffs.iter().filter(|d| **d < 0.0).count() as u32,
                    n_tied: diffs.iter().filter(|d| **d == 0.0).count() as u32,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{CI_METHOD, NO_CI};

    fn run(label: &str, cells: &[(&str, f64, &[f64])], gt: &dyn Fn(&str) -> String) -> RunTables {
        let mut samples = Vec::new();
        let mut predictions = Vec::new();
        for (mode, ratio, scores) in cells {
            for (p, &score) in scores.iter().enumerate() {
                let i = samples.len() as u64;
                let passage_id = format!("p{p}");
                samples.push(SampleRow {
                    sample_index: i,
                    sample_id: format!("en/{passage_id}/{mode}/r{ratio}"),
                    status: if score.is_nan() { SampleStatus::EngineError } else { SampleStatus::Ok },
                    corpus: "en".into(),
                    passage_id: passage_id.clone(),
                    mode: (*mode).into(),
                    target_ratio: *ratio,
                    char_precision: if score.is_nan() { 0.0 } else { score },
                    font_px: 10.0,
                    page_w_px: 512,
                    page_h_px: 512,
                    engine: label.into(),
                    ..SampleRow::default()
                });
                predictions.push(PredictionRow {
                    run_id: "r".into(),
                    sample_index: i,
                    sample_id: String::new(),
                    mode: (*mode).into(),
                    ground_truth: gt(&passage_id),
                    prediction: String::new(),
                });
            }
        }
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "manifest_version": 1, "tool": "t", "tool_version": "0", "git_commit": "x", "experiment": "e",
            "run_id": label, "created_utc": "", "status": "complete",
            "spec": serde_json::to_value(crate::spec::ExperimentSpec::resolve(
                crate::spec::SpecFile::default(), crate::spec::SpecOverrides::default()).unwrap()).unwrap(),
            "spec_fingerprint": "", "shard": null, "merged_from": [], "engines": [], "synthetic_weights": false,
            "renderer": "", "tokenizer": "", "host": "", "n_samples_planned": 0, "n_samples_done": 0,
            "n_failed": 0, "sessions": [], "wall_time_s": 0.0
        }))
        .unwrap();
        RunTables { label: label.into(), dir: PathBuf::new(), manifest, samples, predictions }
    }

    fn same(p: &str) -> String {
        format!("text of {p}")
    }

    #[test]
    fn paired_differences_are_the_mean_of_other_minus_baseline() {
        let a = run("A", &[("tiny", 10.0, &[0.9, 0.8, 0.7]), ("tiny", 20.0, &[0.5, 0.4, 0.3])], &same);
        let b = run("B", &[("tiny", 10.0, &[1.0, 0.8, 0.6]), ("tiny", 20.0, &[0.6, 0.6, 0.6])], &same);
        let c = compare(&[a, b], 0).unwrap();
        let p = &c.pairings[0];
        assert_eq!((p.n_paired, p.n_scored, p.n_page_differs, p.n_baseline_only, p.n_other_only), (6, 6, 0, 0, 0));
        let row = |ratio: Option<f64>| {
            c.rows.iter().find(|r| r.metric == "char_precision" && r.target_ratio == ratio).unwrap().clone()
        };
        let r10 = row(Some(10.0));
        assert_eq!(r10.n_pairs, 3);
        assert!(r10.mean_diff.abs() < 1e-12, "{r10:?}");
        assert_eq!((r10.n_other_better, r10.n_other_worse, r10.n_tied), (1, 1, 1));
        assert!(r10.ci_low.is_nan() && r10.ci_method == NO_CI, "three pairs get no CI");
        let r20 = row(Some(20.0));
        assert!((r20.mean_diff - 0.2).abs() < 1e-12 && (r20.mean_baseline - 0.4).abs() < 1e-12);
        let all = row(None);
        assert_eq!(all.n_pairs, 6);
        assert!((all.mean_diff - 0.1).abs() < 1e-12);
        assert_eq!(all.ci_method, CI_METHOD);
        assert!(all.ci_low <= all.mean_diff && all.mean_diff <= all.ci_high);
    }

    /// `run` with every page read a second time blurred (scores `blurred`, in page order).
    fn with_blur(mut r: RunTables, blurred: &[f64]) -> RunTables {
        let n = r.samples.len();
        for (k, &score) in blurred.iter().enumerate().take(n) {
            let mut s = r.samples[k].clone();
            s.sample_index += n as u64;
            s.degradation = "blur:2".into();
            s.blur_sigma = 2.0;
            s.char_precision = score;
            let mut p = r.predictions[k].clone();
            p.sample_index = s.sample_index;
            r.samples.push(s);
            r.predictions.push(p);
        }
        r
    }

    #[test]
    fn pages_of_each_setting_are_paired_and_summarised_apart() {
        let a = with_blur(run("A", &[("tiny", 10.0, &[0.9, 0.8, 0.7])], &same), &[0.5, 0.5, 0.5]);
        let b = with_blur(run("B", &[("tiny", 10.0, &[0.9, 0.8, 0.7])], &same), &[0.8, 0.8, 0.8]);
        let c = compare(&[a, b], 0).unwrap();
        let p = &c.pairings[0];
        assert_eq!((p.n_paired, p.n_ambiguous), (6, 0), "the same page clean and blurred is two pages");
        let row = |degradation: &str| {
            c.rows
                .iter()
                .find(|r| r.metric == "char_precision" && r.target_ratio.is_none() && r.degradation == degradation)
                .unwrap()
                .clone()
        };
        let (clean, blurred) = (row(""), row("blur:2"));
        assert_eq!((clean.n_pairs, blurred.n_pairs), (3, 3));
        assert!(clean.mean_diff.abs() < 1e-12, "{clean:?}");
        assert!((blurred.mean_diff - 0.3).abs() < 1e-12, "{blurred:?}");
    }

    #[test]
    fn only_identical_pages_are_paired_and_everything_is_counted() {
        let a = run("A", &[("tiny", 10.0, &[0.9, 0.8, f64::NAN, 0.7])], &same);
        // B: p0 has another text (another seed), p3 is missing, and it has a ratio A lacks.
        let b = run("B", &[("tiny", 10.0, &[0.5, 0.5, 0.5]), ("tiny", 12.0, &[0.5])], &|p: &str| {
            if p == "p0" {
                "another text".into()
            } else {
                same(p)
            }
        });
        let c = compare(&[a, b], 0).unwrap();
        let p = &c.pairings[0];
        assert_eq!(p.n_page_differs, 1);
        assert_eq!((p.n_paired, p.n_paired_failed, p.n_scored), (2, 1, 1));
        assert_eq!((p.n_baseline_only, p.n_other_only), (1, 1));
    }

    #[test]
    fn runs_with_nothing_in_common_are_an_error() {
        let a = run("A", &[("tiny", 10.0, &[0.9])], &same);
        let b = run("B", &[("small", 12.0, &[0.9])], &same);
        let e = compare(&[a.clone(), b], 0).unwrap_err().to_string();
        assert!(e.contains("no sample in common") && e.contains("modes tiny") && e.contains("modes small"), "{e}");
        assert!(e.contains("ratios 10") && e.contains("ratios 12") && e.contains("same passage and ratio"), "{e}");
        let seeded = run("C", &[("tiny", 10.0, &[0.9])], &|_| "other".into());
        let e = compare(&[a.clone(), seeded], 0).unwrap_err().to_string();
        assert!(e.contains("different page"), "{e}");
        assert!(matches!(compare(std::slice::from_ref(&a), 0), Err(CompareError::TooFewRuns(1))));
        let mut twin = a.clone();
        twin.label = "A".into();
        assert!(matches!(compare(&[a, twin], 0), Err(CompareError::DuplicateLabel(_))));
    }

    #[test]
    fn runs_that_share_no_mode_are_paired_by_passage_and_ratio_across_modes() {
        // v1's Small and Base against v2's v2-single and v2: the same passages, each mode's page a
        // longer or shorter cut of the same text.
        let cut = |n: usize| move |p: &str| format!("{} of {p}", "word ".repeat(n)).trim_end().to_string();
        let mut a = run("v1", &[("small", 10.0, &[0.9, 0.8, 0.7]), ("base", 10.0, &[0.6, 0.5, 0.4])], &cut(3));
        let b = run("v2", &[("v2-single", 10.0, &[1.0, 0.9, 0.8]), ("v2", 10.0, &[0.9, 0.9, 0.9])], &cut(3));
        // Base's pages hold more of the text: the same passage, cut later.
        for (s, p) in a.samples.iter().zip(a.predictions.iter_mut()) {
            if s.mode == "base" {
                p.ground_truth = format!("{} and more", p.ground_truth);
            }
        }
        let c = compare(&[a.clone(), b], 0).unwrap();
        let p = &c.pairings[0];
        assert_eq!(p.rule, PairingRule::SamePassageAndRatio);
        assert_eq!((p.n_paired, p.n_scored, p.n_page_differs), (12, 12, 0), "2 x 2 modes x 3 passages");
        assert_eq!((p.n_baseline_only, p.n_other_only, p.n_ambiguous), (0, 0, 0));
        let pooled = |mode: &str, other: &str| {
            c.rows
                .iter()
                .find(|r| {
                    r.metric == "char_precision" && r.target_ratio.is_none() && r.mode == mode && r.other_mode == other
                })
                .unwrap_or_else(|| panic!("no row {mode} {other}"))
                .clone()
        };
        let r = pooled("small", "v2-single");
        assert_eq!(r.n_pairs, 3);
        assert!((r.mean_diff - 0.1).abs() < 1e-12 && (r.mean_baseline - 0.8).abs() < 1e-12, "{r:?}");
        let r = pooled("base", "v2");
        assert!((r.mean_diff - 0.4).abs() < 1e-12, "{r:?}");
        assert_eq!(
            c.rows.iter().filter(|r| r.metric == "char_precision").count(),
            4 * 2,
            "4 pairs of modes x (r10, all)"
        );
        // Another text of a passage (another seed) is not the same page.
        let seeded = run("v2b", &[("v2", 10.0, &[0.9, 0.9, 0.9])], &|p: &str| {
            if p == "p0" {
                "another text".into()
            } else {
                cut(3)(p)
            }
        });
        let p = &compare(&[a.clone(), seeded], 0).unwrap().pairings[0];
        assert_eq!((p.n_paired, p.n_page_differs), (4, 2), "p0 of small and of base");
        // Runs that share a mode keep the same-page rule: base is not paired with v2.
        let mixed = run("mixed", &[("small", 10.0, &[0.9, 0.9, 0.9]), ("v2", 10.0, &[0.9, 0.9, 0.9])], &cut(3));
        let p = &compare(&[a, mixed], 0).unwrap().pairings[0];
        assert_eq!((p.rule, p.n_paired, p.n_baseline_only, p.n_other_only), (PairingRule::SamePage, 3, 3, 3));
        // What JSON calls the rule.
        assert_eq!(serde_json::to_value(PairingRule::SamePassageAndRatio).unwrap(), "same_passage_and_ratio");
    }

    #[test]
    fn labels_run_through_the_alphabet() {
        assert_eq!(default_label(0), "A");
        assert_eq!(default_label(25), "Z");
        assert_eq!(default_label(26), "AA");
        assert_eq!(default_label(27), "AB");
    }

    #[test]
    fn a_folder_that_is_not_a_run_is_named_once() {
        let dir = std::env::temp_dir().join(format!("occ-compare-not-a-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let message = RunTables::load(&dir, "A").unwrap_err().to_string();
        let name = dir.display().to_string();
        assert_eq!(message.matches(&name).count(), 1, "{message}");
        assert!(message.contains("manifest.json"), "{message}");
        // A cause that does not name the folder gets it in front.
        let bare = CompareError::Results { dir: name.clone(), source: ResultsError::Merge("x".into()) };
        assert_eq!(bare.to_string(), format!("{name}: cannot merge: x"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
