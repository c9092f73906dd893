//! The report's tables, as data (rendered to Markdown and HTML by the caller).

use occ_eval::results::Manifest;
use occ_eval::schema::{BinRow, SummaryRow};
use occ_eval::score::{Bin, Headline, ScoreRecord};
use occ_eval::stats::CellStats;

use crate::paper::{point, TABLE2};

/// A titled table of strings.
#[derive(Debug, Clone, PartialEq)]
pub struct TextTable {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl TextTable {
    /// GitHub-flavoured Markdown.
    pub fn markdown(&self) -> String {
        let mut s =
            format!("### {}\n\n| {} |\n|{}\n", self.title, self.header.join(" | "), " --- |".repeat(self.header.len()));
        for r in &self.rows {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        s
    }

    /// An HTML `<table>` with a heading.
    pub fn html(&self) -> String {
        let mut s = format!("<h3>{}</h3>\n<table>\n<tr>", escape(&self.title));
        for h in &self.header {
            s.push_str(&format!("<th>{}</th>", escape(h)));
        }
        s.push_str("</tr>\n");
        for r in &self.rows {
            s.push_str("<tr>");
            for c in r {
                s.push_str(&format!("<td>{}</td>", escape(c)));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</table>\n");
        s
    }
}

/// HTML escaping of text.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `96.5 [94.1, 98.2]` (percent, one decimal); `96.5 [n too small]` for a cell with too few samples
/// for a CI (`occ_eval::stats::MIN_N_FOR_CI`); `–` for an empty cell.
pub fn pct_ci(r: &SummaryRow) -> String {
    if r.n == 0 {
        return "–".into();
    }
    pct_interval(r.mean, r.ci_low, r.ci_high)
}

fn unique<T: PartialEq + Clone>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Metrics that get a ratio × mode table.
pub const TABLE_METRICS: [(&str, &str); 5] = [
    ("char_precision", "character precision (1 − NED), %"),
    ("word_f1", "word F1, %"),
    ("fox_precision_out_words", "Fox set precision, unique output words in GT (the paper's reading), %"),
    ("fox_precision_gt_words", "Fox set precision, unique GT words found, %"),
    ("runaway", "runaway outputs (max tokens or repetition loop), %"),
];

/// Every table of the report: per corpus and metric a ratio × mode table (mean [95% CI] with the
/// truncation baseline), a cell-size table, and the paper comparison when the run has its bins.
pub fn tables(summary: &[SummaryRow]) -> Vec<TextTable> {
    let mut out = Vec::new();
    let corpora = unique(summary.iter().map(|r| r.corpus.clone()));
    for corpus in &corpora {
        let rows: Vec<&SummaryRow> = summary.iter().filter(|r| &r.corpus == corpus).collect();
        let modes = unique(rows.iter().map(|r| r.mode.clone()));
        let mut ratios = unique(rows.iter().map(|r| r.target_ratio));
        ratios.sort_by(f64::total_cmp);
        let find = |mode: &str, ratio: f64, metric: &str| {
            rows.iter().find(|r| r.mode == mode && r.target_ratio == ratio && r.metric == metric).copied()
        };
        for (metric, label) in TABLE_METRICS {
            let mut header = vec!["ratio".to_string()];
            header.extend(modes.iter().cloned());
            let has_truncation = metric != "runaway";
            if has_truncation {
                header.push("truncation".into());
            }
            let mut body = Vec::new();
            for &ratio in &ratios {
                let mut line = vec![format!("{ratio}")];
                for m in &modes {
                    line.push(find(m, ratio, metric).map(pct_ci).unwrap_or_else(|| "–".into()));
                }
                if has_truncation {
                    let trunc = format!("truncation_{metric}");
                    let vals: Vec<f64> = modes
                        .iter()
                        .filter_map(|m| find(m, ratio, &trunc))
                        .filter(|r| r.n > 0)
                        .map(|r| r.mean)
                        .collect();
                    line.push(if vals.is_empty() {
                        "–".into()
                    } else {
                        format!("{:.1}", 100.0 * vals.iter().sum::<f64>() / vals.len() as f64)
                    });
                }
                body.push(line);
            }
            out.push(TextTable { title: format!("{corpus}: {label}"), header, rows: body });
        }
        let mut header = vec!["ratio".to_string()];
        header.extend(modes.iter().map(|m| format!("{m} n / failed / mean ratio")));
        let body =
            ratios
                .iter()
                .map(|&ratio| {
                    let mut line = vec![format!("{ratio}")];
                    for m in &modes {
                        line.push(find(m, ratio, "char_precision").map_or("–".into(), |r| {
                            format!("{} / {} / {:.2}", r.n, r.n_failed, r.mean_ratio_nominal)
                        }));
                    }
                    line
                })
                .collect();
        out.push(TextTable { title: format!("{corpus}: pages per cell"), header, rows: body });
        if let Some(t) = paper_comparison(&rows) {
            out.push(t);
        }
    }
    out
}

/// The tables of a run faceted by its page settings (`occ_eval::axes`): [`tables`] when the run
/// has one setting; otherwise, per corpus, a table of character precision by setting and mode (mean
/// over the ratios), then [`tables`] of each setting, titled with it.
pub fn faceted_tables(summary: &[SummaryRow]) -> Vec<TextTable> {
    let (facets, varied) = occ_eval::axes::facets(summary.iter().map(occ_eval::axes::facet_of_summary));
    if varied.is_empty() {
        return tables(summary);
    }
    let mut out = Vec::new();
    for corpus in unique(summary.iter().map(|r| r.corpus.clone())) {
        let rows: Vec<&SummaryRow> =
            summary.iter().filter(|r| r.corpus == corpus && r.metric == "char_precision" && r.n > 0).collect();
        let modes = unique(rows.iter().map(|r| r.mode.clone()));
        let mut header: Vec<String> = varied.iter().map(|a| a.to_string()).collect();
        header.extend(modes.iter().map(|m| format!("{m} (mean over ratios)")));
        let mut body = Vec::new();
        for f in &facets {
            let mut line: Vec<String> = varied
                .iter()
                .map(|a| match *a {
                    "degradation" => f.degradation.clone(),
                    "font_family" => f.font_family.clone(),
                    _ => f.line_height.clone(),
                })
                .collect();
            for m in &modes {
                let means: Vec<f64> = rows
                    .iter()
                    .filter(|r| &r.mode == m && occ_eval::axes::facet_of_summary(r) == *f)
                    .map(|r| r.mean)
                    .collect();
                line.push(if means.is_empty() {
                    "–".into()
                } else {
                    format!("{:.1}", 100.0 * means.iter().sum::<f64>() / means.len() as f64)
                });
            }
            body.push(line);
        }
        out.push(TextTable {
            title: format!("{corpus}: character precision (1 − NED) by page setting, %"),
            header,
            rows: body,
        });
    }
    for f in &facets {
        let mine: Vec<SummaryRow> =
            summary.iter().filter(|r| occ_eval::axes::facet_of_summary(r) == *f).cloned().collect();
        for mut t in tables(&mine) {
            t.title = format!("{} — {}", t.title, f.title(&varied));
            out.push(t);
        }
    }
    out
}

fn paper_comparison(rows: &[&SummaryRow]) -> Option<TextTable> {
    let find = |mode: &str, ratio: f64, metric: &str| {
        rows.iter().find(|r| r.mode == mode && (r.target_ratio - ratio).abs() < 1e-9 && r.metric == metric).copied()
    };
    let mut body = Vec::new();
    for b in TABLE2 {
        let t = find("tiny", b.compression_64, "fox_precision_out_words");
        let s = find("small", b.compression_100, "fox_precision_out_words");
        if t.is_none() && s.is_none() {
            continue;
        }
        let cell = |mode: &str, ratio: f64, metric: &str| find(mode, ratio, metric).map_or("–".into(), pct_ci);
        body.push(vec![
            format!("{}–{}", b.tokens.0, b.tokens.1),
            format!("{:.1}", 100.0 * b.precision_64),
            cell("tiny", b.compression_64, "fox_precision_out_words"),
            cell("tiny", b.compression_64, "fox_precision_gt_words"),
            cell("tiny", b.compression_64, "char_precision"),
            format!("{:.1}", 100.0 * b.precision_100),
            cell("small", b.compression_100, "fox_precision_out_words"),
            cell("small", b.compression_100, "fox_precision_gt_words"),
            cell("small", b.compression_100, "char_precision"),
        ]);
    }
    if body.is_empty() {
        return None;
    }
    let corpus = rows.first().map(|r| r.corpus.as_str()).unwrap_or("");
    Some(TextTable {
        title: format!(
            "{corpus}: paper Table 2 vs this run (same compression per bin; fox-out is the paper's reading)"
        ),
        header: [
            "GT tokens",
            "paper @64",
            "tiny fox-out",
            "tiny fox-gt",
            "tiny char",
            "paper @100",
            "small fox-out",
            "small fox-gt",
            "small char",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows: body,
    })
}

/// `mean [low, high]` in percent, `mean [n too small]` without CI bounds, `–` without a mean.
fn pct_interval(mean: f64, low: f64, high: f64) -> String {
    if !mean.is_finite() {
        return "–".into();
    }
    if !(low.is_finite() && high.is_finite()) {
        return format!("{:.1} [{}]", 100.0 * mean, occ_eval::stats::NO_CI);
    }
    format!("{:.1} [{:.1}, {:.1}]", 100.0 * mean, 100.0 * low, 100.0 * high)
}

/// The headline of a score run: per group × mode, Fox precision in the output-words reading over
/// every scored page, with the other reading and character precision beside it.
pub fn score_headline(headline: &[Headline]) -> TextTable {
    let pct = |s: &CellStats| pct_interval(s.mean, s.ci_low, s.ci_high);
    TextTable {
        title: "Headline: every scored page, mean [bootstrap 95% CI], %".into(),
        header: [
            "group",
            "mode",
            "pages",
            "Fox precision, output words in GT",
            "Fox precision, GT words found",
            "character precision",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows: headline
            .iter()
            .map(|h| {
                vec![
                    h.group.clone(),
                    h.mode.clone(),
                    h.n_pages.to_string(),
                    pct(&h.fox_precision_out_words),
                    pct(&h.fox_precision_gt_words),
                    pct(&h.char_precision),
                ]
            })
            .collect(),
    }
}

/// The bins of a score run, one table per group: per mode the pages, the compression and both
/// readings of Fox precision (output words first: the paper's), with the paper's Table 2 point
/// beside Tiny and Small for the bins it has.
pub fn score_bins(rows: &[BinRow]) -> Vec<TextTable> {
    let groups = unique(rows.iter().map(|r| r.group.clone()));
    let mut out = Vec::new();
    for group in &groups {
        let in_group: Vec<&BinRow> = rows.iter().filter(|r| &r.group == group).collect();
        let modes = unique(in_group.iter().map(|r| r.mode.clone()));
        let mut bins = unique(in_group.iter().map(|r| (r.tokens_lo, r.tokens_hi)));
        bins.sort();
        let paper_modes: Vec<&String> =
            modes.iter().filter(|m| bins.iter().any(|b| paper_bin(*b).and_then(|p| point(p, m)).is_some())).collect();
        let mut header = vec!["GT tokens".to_string()];
        for m in &modes {
            header.extend([
                format!("{m} pages"),
                format!("{m} compression"),
                format!("{m} fox-out"),
                format!("{m} fox-gt"),
                format!("{m} char"),
            ]);
            if paper_modes.contains(&m) {
                header.push(format!("paper {m} (compression)"));
            }
        }
        let mut body = Vec::new();
        for &bin in &bins {
            let mut line = vec![Bin { lo: bin.0, hi: bin.1 }.to_string()];
            for m in &modes {
                match in_group.iter().find(|r| &r.mode == m && (r.tokens_lo, r.tokens_hi) == bin) {
                    Some(r) => line.extend([
                        r.n_pages.to_string(),
                        r.compression.map_or("–".into(), |c| format!("{c:.2}")),
                        pct_interval(
                            r.fox_precision_out_words,
                            r.fox_precision_out_words_ci_low,
                            r.fox_precision_out_words_ci_high,
                        ),
                        pct_interval(
                            r.fox_precision_gt_words,
                            r.fox_precision_gt_words_ci_low,
                            r.fox_precision_gt_words_ci_high,
                        ),
                        pct_interval(r.char_precision, r.char_precision_ci_low, r.char_precision_ci_high),
                    ]),
                    None => line.extend(std::iter::repeat_n("–".to_string(), 5)),
                }
                if paper_modes.contains(&m) {
                    line.push(
                        paper_bin(bin)
                            .and_then(|p| {
                                point(p, m).map(|(c, v)| format!("{:.1} ({c}) · {} pages", 100.0 * v, p.pages))
                            })
                            .unwrap_or_else(|| "–".into()),
                    );
                }
            }
            body.push(line);
        }
        out.push(TextTable {
            title: format!("{group}: bins of ground-truth tokens (fox-out is the paper's reading), %"),
            header,
            rows: body,
        });
    }
    out
}

fn paper_bin(bin: (Option<u32>, Option<u32>)) -> Option<&'static crate::paper::PaperBin> {
    match bin {
        (Some(lo), Some(hi)) => crate::paper::bin((lo, hi)),
        _ => None,
    }
}

/// Rows of the input that were not scored, by line (at most `limit`, then a count of the rest).
pub fn score_bad_rows(record: &ScoreRecord, limit: usize) -> Option<TextTable> {
    if record.bad_rows.is_empty() {
        return None;
    }
    let mut rows: Vec<Vec<String>> = record
        .bad_rows
        .iter()
        .take(limit)
        .map(|b| vec![b.line.to_string(), b.id.clone().unwrap_or_default(), b.problem.to_string()])
        .collect();
    if record.bad_rows.len() > limit {
        rows.push(vec!["…".into(), String::new(), format!("{} more in score.json", record.bad_rows.len() - limit)]);
    }
    Some(TextTable {
        title: format!("Bad rows, left out ({})", record.bad_rows.len()),
        header: vec!["line".into(), "id".into(), "problem".into()],
        rows,
    })
}

/// The identity block of a score run.
pub fn score_facts(m: &Manifest, record: &ScoreRecord) -> Vec<(String, String)> {
    let b = &record.bins;
    let range = match (b.min_tokens, b.max_tokens) {
        (None, None) => "all".to_string(),
        (lo, hi) => Bin { lo, hi }.to_string(),
    };
    let bins = b.width.map_or("none (one cell per group and mode)".to_string(), |w| format!("{w} tokens"));
    vec![
        ("experiment".into(), m.experiment.clone()),
        ("run id".into(), m.run_id.clone()),
        ("predictions by".into(), m.engines.iter().map(|e| e.name.clone()).collect::<Vec<_>>().join("; ")),
        ("input".into(), format!("{} (sha256 {})", record.input, record.input_sha256)),
        (
            "rows".into(),
            format!(
                "{} lines read: {} scored, {} bad rows left out{}, {} outside the token range",
                record.n_lines,
                record.n_scored,
                record.n_bad,
                if record.strict { " (strict)" } else { "" },
                record.n_out_of_range
            ),
        ),
        ("ground-truth tokens".into(), format!("range {range}, bins {bins}")),
        ("language".into(), record.lang.as_str().into()),
        ("tokenizer".into(), m.tokenizer.clone()),
        ("bootstrap seed".into(), m.spec.seed.to_string()),
        ("git commit".into(), m.git_commit.clone()),
        ("tool".into(), format!("{} {}", m.tool, m.tool_version)),
        ("host".into(), m.host.clone()),
        ("created".into(), m.created_utc.clone()),
        ("wall time".into(), format!("{:.1} s", m.wall_time_s)),
    ]
}

/// The run's identity block (Markdown bullet list).
pub fn run_facts(m: &Manifest) -> Vec<(String, String)> {
    let engines: Vec<String> = m.engines.iter().map(|e| e.to_string()).collect();
    let mut facts = vec![
        ("experiment".into(), m.experiment.clone()),
        ("run id".into(), m.run_id.clone()),
        ("engine".into(), engines.join("; ")),
        (
            "weights".into(),
            m.engines.iter().map(|e| e.weights.clone().unwrap_or_else(|| "n/a".into())).collect::<Vec<_>>().join("; "),
        ),
        ("renderer".into(), m.renderer.clone()),
        (
            "samples".into(),
            format!("{} done of {} planned, {} failed", m.n_samples_done, m.n_samples_planned, m.n_failed),
        ),
        (
            "corpora / modes".into(),
            format!(
                "{} / {}",
                m.spec.corpora.join(", "),
                m.spec.modes.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
            ),
        ),
        ("pages per cell, seed".into(), format!("{}, {}", m.spec.pages, m.spec.seed)),
        ("git commit".into(), m.git_commit.clone()),
        ("tool".into(), format!("{} {}", m.tool, m.tool_version)),
        ("host".into(), m.host.clone()),
        ("created".into(), m.created_utc.clone()),
        ("wall time".into(), format!("{:.1} s", m.wall_time_s)),
    ];
    if let Some(b) = m.spec.baseline {
        facts.push(("baseline engine".into(), format!("{b}, on the same pages (Baseline below)")));
    }
    if m.spec.settings() != [occ_eval::axes::PageSetting::default()] {
        let list = |v: Vec<String>| v.join(", ");
        facts.insert(
            8,
            (
                "page settings: degradations / fonts / line heights".into(),
                format!(
                    "{} / {} / {}",
                    list(m.spec.degradations.iter().map(|x| x.to_string()).collect()),
                    list(m.spec.fonts.iter().map(|x| x.to_string()).collect()),
                    list(m.spec.line_heights.iter().map(|x| x.to_string()).collect())
                ),
            ),
        );
    }
    facts
}
