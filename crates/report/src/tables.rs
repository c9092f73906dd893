//! The report's tables, as data (rendered to Markdown and HTML by the caller).

use occ_eval::results::Manifest;
use occ_eval::schema::SummaryRow;

use crate::paper::TABLE2;

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

/// `96.5 [94.1, 98.2]` (percent, one decimal), or `–` for an empty cell.
pub fn pct_ci(r: &SummaryRow) -> String {
    if r.n == 0 || !r.mean.is_finite() {
        return "–".into();
    }
    format!("{:.1} [{:.1}, {:.1}]", 100.0 * r.mean, 100.0 * r.ci_low, 100.0 * r.ci_high)
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
    ("fox_precision_gt_words", "Fox set precision, unique GT words found, %"),
    ("fox_precision_out_words", "Fox set precision, unique output words in GT, %"),
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

fn paper_comparison(rows: &[&SummaryRow]) -> Option<TextTable> {
    let find = |mode: &str, ratio: f64, metric: &str| {
        rows.iter().find(|r| r.mode == mode && (r.target_ratio - ratio).abs() < 1e-9 && r.metric == metric).copied()
    };
    let mut body = Vec::new();
    for b in TABLE2 {
        let t = find("tiny", b.compression_64, "fox_precision_gt_words");
        let s = find("small", b.compression_100, "fox_precision_gt_words");
        if t.is_none() && s.is_none() {
            continue;
        }
        let cell = |mode: &str, ratio: f64, metric: &str| find(mode, ratio, metric).map_or("–".into(), pct_ci);
        body.push(vec![
            format!("{}–{}", b.tokens.0, b.tokens.1),
            format!("{:.1}", 100.0 * b.precision_64),
            cell("tiny", b.compression_64, "fox_precision_gt_words"),
            cell("tiny", b.compression_64, "fox_precision_out_words"),
            cell("tiny", b.compression_64, "char_precision"),
            format!("{:.1}", 100.0 * b.precision_100),
            cell("small", b.compression_100, "fox_precision_gt_words"),
            cell("small", b.compression_100, "fox_precision_out_words"),
            cell("small", b.compression_100, "char_precision"),
        ]);
    }
    if body.is_empty() {
        return None;
    }
    let corpus = rows.first().map(|r| r.corpus.as_str()).unwrap_or("");
    Some(TextTable {
        title: format!("{corpus}: paper Table 2 vs this run (same compression per bin)"),
        header: [
            "GT tokens",
            "paper @64",
            "tiny fox-gt",
            "tiny fox-out",
            "tiny char",
            "paper @100",
            "small fox-gt",
            "small fox-out",
            "small char",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows: body,
    })
}

/// The run's identity block (Markdown bullet list).
pub fn run_facts(m: &Manifest) -> Vec<(String, String)> {
    let engines: Vec<String> = m.engines.iter().map(|e| e.to_string()).collect();
    vec![
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
    ]
}
