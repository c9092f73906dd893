//! Per-cell statistics of a run: cells are (corpus, mode, target ratio, page setting — degradation,
//! font family, line height), in sample-list order.

use crate::metrics::METRICS;
use crate::rng::SplitMix64;
use crate::schema::{SampleRow, SampleStatus, SummaryRow};
use crate::stats::cell_stats;

/// Every metric of `summary.csv`: the engine's, `runaway` (share of flagged samples) and the
/// truncation baseline's (`truncation_<metric>`).
pub fn summary_metrics() -> Vec<String> {
    let mut m: Vec<String> = METRICS.iter().map(|s| s.to_string()).collect();
    m.push("runaway".into());
    m.extend(METRICS.iter().map(|s| format!("truncation_{s}")));
    m
}

/// The value of a summary metric of one sample row.
pub fn sample_metric(row: &SampleRow, metric: &str) -> Option<f64> {
    let b = |v: bool| f64::from(u8::from(v));
    Some(match metric {
        "char_precision" => row.char_precision,
        "word_precision" => row.word_precision,
        "word_recall" => row.word_recall,
        "word_f1" => row.word_f1,
        "fox_precision_gt_words" => row.fox_precision_gt_words,
        "fox_precision_out_words" => row.fox_precision_out_words,
        "exact_match" => b(row.exact_match),
        "runaway" => b(row.runaway),
        "truncation_char_precision" => row.truncation_char_precision,
        "truncation_word_precision" => row.truncation_word_precision,
        "truncation_word_recall" => row.truncation_word_recall,
        "truncation_word_f1" => row.truncation_word_f1,
        "truncation_fox_precision_gt_words" => row.truncation_fox_precision_gt_words,
        "truncation_fox_precision_out_words" => row.truncation_fox_precision_out_words,
        "truncation_exact_match" => row.truncation_exact_match,
        _ => return None,
    })
}

/// Summary rows of `rows` (any order; cells come out in order of their smallest sample index).
/// Bootstrap seeds derive from `seed` and the cell key, so the CSV is reproducible.
pub fn summarize(rows: &[SampleRow], seed: u64) -> Vec<SummaryRow> {
    let mut sorted: Vec<&SampleRow> = rows.iter().collect();
    sorted.sort_by_key(|r| r.sample_index);
    let same_cell = |a: &SampleRow, b: &SampleRow| {
        a.corpus == b.corpus
            && a.mode == b.mode
            && a.target_ratio == b.target_ratio
            && a.degradation == b.degradation
            && a.font_family == b.font_family
            && a.line_height == b.line_height
    };
    let mut cells: Vec<Vec<&SampleRow>> = Vec::new();
    for r in sorted {
        match cells.iter_mut().find(|c| same_cell(c[0], r)) {
            Some(c) => c.push(r),
            None => cells.push(vec![r]),
        }
    }
    let metrics = summary_metrics();
    let mut out = Vec::new();
    for members in &cells {
        let first = members[0];
        let (corpus, mode, ratio) = (&first.corpus, &first.mode, first.target_ratio);
        // The setting joins the bootstrap key only off the defaults (crate::axes::seed_key).
        let setting = crate::axes::seed_key(first);
        let ok: Vec<&&SampleRow> = members.iter().filter(|r| r.status == SampleStatus::Ok).collect();
        let n_failed = (members.len() - ok.len()) as u32;
        let mean_ratio =
            if ok.is_empty() { f64::NAN } else { ok.iter().map(|r| r.ratio_nominal).sum::<f64>() / ok.len() as f64 };
        for metric in &metrics {
            let values: Vec<f64> = ok.iter().filter_map(|r| sample_metric(r, metric)).collect();
            let key = format!("{corpus}/{mode}/{ratio}{setting}/{metric}");
            let st = cell_stats(&values, SplitMix64::stream(seed, &key).next_u64());
            out.push(SummaryRow {
                corpus: corpus.clone(),
                mode: mode.clone(),
                target_ratio: ratio,
                degradation: first.degradation.clone(),
                font_family: first.font_family.clone(),
                line_height: first.line_height,
                metric: metric.clone(),
                n: st.n as u32,
                n_failed,
                mean_ratio_nominal: mean_ratio,
                mean: st.mean,
                median: st.median,
                ci_low: st.ci_low,
                ci_high: st.ci_high,
                ci_method: st.ci_method().to_string(),
            });
        }
    }
    out
}
