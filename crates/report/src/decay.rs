//! The report of a decay run (`compress-bench decay`, `occ_eval::decay`): SVG plots (plotters) and
//! `report.md` / `report.html` (SVGs inlined); [`write_run`] writes a whole run in order (tables and
//! manifest through occ-eval, this report between them).
//!
//! Plots: `accuracy_vs_age.svg` (character precision of each round by its age, per schedule, with the
//! all-text truncation baseline of the paper schedule dashed), `tokens_vs_age.svg` (what each round
//! costs in the context by age, per schedule, against its text tokens), `accuracy_vs_budget.svg`
//! (mean character precision over all rounds against the context's total tokens, one point per
//! schedule, with the truncation baseline at the same budgets) and `needles_vs_age.svg`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use occ_eval::decay::output::{self, RunMeta};
use occ_eval::decay::{DecayConfig, DecayResults, DecayRow};
use occ_eval::journal::JOURNAL_FILE;

use crate::ReportError;

const SIZE: (u32, u32) = (900, 540);

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("plotting: {e:?}")
}

/// Colour of the i-th decay series: the comparison palette's Tableau colours without grey and
/// olive (the decay charts' eight colours, repeating).
fn color(i: usize) -> RGBColor {
    const TABLEAU: [usize; 8] = [0, 1, 2, 3, 4, 5, 6, 9];
    crate::charts::run_color(TABLEAU[i % TABLEAU.len()])
}

/// A series of a line chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
    /// Draw only markers (no line).
    pub markers_only: bool,
}

/// A line chart as SVG text.
pub fn line_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    y_max: Option<f64>,
) -> Result<String, String> {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0f64);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    let pad = ((x1 - x0) * 0.04).max(0.5);
    let y1 = y_max.unwrap_or(y1 * 1.08).max(1e-9);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((x0 - pad).max(0.0)..x1 + pad, 0f64..y1)
            .map_err(err)?;
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(err)?;
        for (i, s) in series.iter().enumerate() {
            let c = if s.dashed { BLACK } else { color(i) };
            if s.markers_only {
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 5, c.filled())))
                    .map_err(err)?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| Circle::new((x + 10, y), 5, c.filled()));
                continue;
            }
            let anno = if s.dashed {
                chart.draw_series(DashedLineSeries::new(s.points.clone(), 6, 4, c.stroke_width(1))).map_err(err)?
            } else {
                chart.draw_series(LineSeries::new(s.points.clone(), c.stroke_width(2))).map_err(err)?
            };
            anno.label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
            if !s.dashed {
                chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 2, c.filled()))).map_err(err)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn by_schedule(results: &DecayResults) -> Vec<(String, Vec<&DecayRow>)> {
    let mut out: Vec<(String, Vec<&DecayRow>)> = Vec::new();
    for r in &results.rows {
        match out.iter_mut().find(|(s, _)| *s == r.schedule) {
            Some((_, v)) => v.push(r),
            None => out.push((r.schedule.clone(), vec![r])),
        }
    }
    for (_, v) in &mut out {
        v.sort_by_key(|r| r.age);
    }
    out
}

/// The four charts as `(file name, svg)`.
pub fn charts(results: &DecayResults) -> Result<Vec<(String, String)>, String> {
    let groups = by_schedule(results);
    let series = |f: &dyn Fn(&DecayRow) -> f64| -> Vec<Series> {
        groups
            .iter()
            .map(|(name, rows)| Series {
                name: name.clone(),
                points: rows.iter().map(|r| (f64::from(r.age), f(r))).collect(),
                dashed: false,
                markers_only: false,
            })
            .collect()
    };
    let mut acc = series(&|r| r.char_precision);
    if let Some((name, rows)) = groups.first() {
        acc.push(Series {
            name: format!("truncation baseline at {name}'s tokens"),
            points: rows.iter().map(|r| (f64::from(r.age), r.baseline_char_precision)).collect(),
            dashed: true,
            markers_only: false,
        });
    }
    let mut tokens = series(&|r| f64::from(r.cost_tokens));
    if let Some((_, rows)) = groups.first() {
        tokens.push(Series {
            name: "as text".into(),
            points: rows.iter().map(|r| (f64::from(r.age), f64::from(r.n_text_tokens))).collect(),
            dashed: true,
            markers_only: false,
        });
    }
    let mut budget: Vec<Series> = results
        .summaries
        .iter()
        .map(|s| Series {
            name: s.schedule.clone(),
            points: vec![(s.context_tokens as f64, s.mean_char_precision)],
            dashed: false,
            markers_only: true,
        })
        .collect();
    let mut base: Vec<(f64, f64)> =
        results.summaries.iter().map(|s| (s.context_tokens as f64, s.baseline_mean_char_precision)).collect();
    base.sort_by(|a, b| a.0.total_cmp(&b.0));
    budget.push(Series {
        name: "truncation baseline (text only)".into(),
        points: base,
        dashed: true,
        markers_only: false,
    });
    let needles: Vec<Series> = groups
        .iter()
        .map(|(name, _)| {
            let mut pts: Vec<(f64, f64)> = results
                .needles
                .iter()
                .filter(|n| &n.schedule == name)
                .map(|n| (f64::from(n.age), f64::from(u8::from(n.retrieved))))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series { name: name.clone(), points: pts, dashed: false, markers_only: false }
        })
        .collect();
    let engine = results.rows.first().map(|r| r.engine.as_str()).unwrap_or("");
    Ok(vec![
        (
            "accuracy_vs_age.svg".into(),
            line_chart(
                &format!("Recall accuracy by age ({engine})"),
                "age (rounds before the newest)",
                "character precision (1 − NED)",
                &acc,
                Some(1.02),
            )?,
        ),
        (
            "tokens_vs_age.svg".into(),
            line_chart(
                "Context tokens per round by age",
                "age (rounds before the newest)",
                "tokens (text tokens or vision slots)",
                &tokens,
                None,
            )?,
        ),
        (
            "accuracy_vs_budget.svg".into(),
            line_chart(
                &format!("Accuracy vs context size ({engine})"),
                "context tokens (text + vision slots)",
                "mean character precision",
                &budget,
                Some(1.02),
            )?,
        ),
        (
            "needles_vs_age.svg".into(),
            line_chart(
                &format!("Needles retrieved by age ({engine})"),
                "age of the needle's round",
                "retrieved (1) / missed (0)",
                &needles,
                Some(1.1),
            )?,
        ),
    ])
}

fn markdown(config: &DecayConfig, results: &DecayResults, meta: &RunMeta, plots: &[String]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Decay run {}\n", meta.run_id);
    let _ = writeln!(md, "- command: `{}`", meta.command);
    let _ = writeln!(md, "- engine: {}", meta.engine);
    let _ = writeln!(
        md,
        "- conversation: {} rounds of {} tokens from `{}` (seed {}), {} needles; pages at ratio {}",
        config.rounds, config.round_tokens, config.corpus, config.seed, config.needles, config.page_ratio
    );
    let _ = writeln!(md, "- wall time: {:.1} s, {} pages read by the engine", meta.wall_s, results.pages_read);
    let _ = writeln!(md, "- created: {}\n", meta.created_utc);
    md.push_str("## Schedules\n\n");
    md.push_str("| schedule | context tokens | all-text tokens | saving | char precision | word F1 | truncation baseline | needles | text / image / dropped rounds | pages |\n");
    md.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n");
    for s in &results.summaries {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {:.2}× | {:.3} | {:.3} | {:.3} | {}/{} | {} / {} / {} | {} |",
            s.schedule,
            s.context_tokens,
            s.all_text_tokens,
            s.saving,
            s.mean_char_precision,
            s.mean_word_f1,
            s.baseline_mean_char_precision,
            s.needles_retrieved,
            s.needles,
            s.text_rounds,
            s.image_rounds,
            s.dropped_rounds,
            s.pages
        );
    }
    md.push_str("\nLevels used:\n\n");
    for s in &results.summaries {
        let _ = writeln!(md, "- `{}`", s.levels);
    }
    md.push_str("\n## By representation\n\n| schedule | representation | rounds | mean char precision | mean word F1 | mean tokens per round | mean font px |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    for (name, rows) in by_schedule(results) {
        let mut reprs: Vec<&str> = Vec::new();
        for r in rows.iter().rev() {
            if !reprs.contains(&r.representation.as_str()) {
                reprs.push(&r.representation);
            }
        }
        reprs.reverse();
        for repr in reprs {
            let sel: Vec<&&DecayRow> = rows.iter().filter(|r| r.representation == repr).collect();
            let n = sel.len() as f64;
            let mean = |f: &dyn Fn(&DecayRow) -> f64| sel.iter().map(|r| f(r)).sum::<f64>() / n;
            let _ = writeln!(
                md,
                "| `{name}` | {repr} | {} | {:.3} | {:.3} | {:.0} | {:.1} |",
                sel.len(),
                mean(&|r| r.char_precision),
                mean(&|r| r.word_f1),
                mean(&|r| f64::from(r.cost_tokens)),
                mean(&|r| r.font_px)
            );
        }
    }
    md.push_str("\nNeedles: a needle counts as retrieved when the engine's read-back of its round, whitespace removed, contains the 4-digit code (an OCR engine answers the question by reading the round back).\n\n## Plots\n\n");
    for p in plots {
        let _ = writeln!(md, "![{p}](plots/{p})\n");
    }
    md
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Minimal Markdown → HTML for the report's own constructs (headings, lists, tables, images).
fn html(md: &str, svgs: &[(String, String)]) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>decay report</title><style>body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}code{background:#f4f4f4}</style></head><body>\n",
    );
    let mut in_table = false;
    let mut in_list = false;
    for line in md.lines() {
        let is_row = line.starts_with('|');
        if in_table && !is_row {
            out.push_str("</table>\n");
            in_table = false;
        }
        let is_item = line.starts_with("- ");
        if in_list && !is_item {
            out.push_str("</ul>\n");
            in_list = false;
        }
        let code = |s: &str| {
            let parts: Vec<&str> = s.split('`').collect();
            parts
                .iter()
                .enumerate()
                .map(|(i, p)| if i % 2 == 1 { format!("<code>{}</code>", escape(p)) } else { escape(p) })
                .collect::<String>()
        };
        if let Some(h) = line.strip_prefix("## ") {
            let _ = writeln!(out, "<h2>{}</h2>", code(h));
        } else if let Some(h) = line.strip_prefix("# ") {
            let _ = writeln!(out, "<h1>{}</h1>", code(h));
        } else if is_item {
            if !in_list {
                out.push_str("<ul>\n");
                in_list = true;
            }
            let _ = writeln!(out, "<li>{}</li>", code(&line[2..]));
        } else if is_row {
            if line.contains("---") {
                continue;
            }
            let tag = if in_table { "td" } else { "th" };
            if !in_table {
                out.push_str("<table>\n");
                in_table = true;
            }
            let cells: Vec<String> =
                line.trim_matches('|').split('|').map(|c| format!("<{tag}>{}</{tag}>", code(c.trim()))).collect();
            let _ = writeln!(out, "<tr>{}</tr>", cells.join(""));
        } else if let Some(rest) = line.strip_prefix("![") {
            let name = rest.split(']').next().unwrap_or("");
            if let Some((_, svg)) = svgs.iter().find(|(n, _)| n == name) {
                let _ = writeln!(out, "<figure>{svg}</figure>");
            }
        } else if !line.trim().is_empty() {
            let _ = writeln!(out, "<p>{}</p>", code(line));
        }
    }
    if in_table {
        out.push_str("</table>\n");
    }
    if in_list {
        out.push_str("</ul>\n");
    }
    out.push_str("</body></html>\n");
    out
}

/// Writes every file of a decay run into `dir` (created if needed): `decay.parquet`,
/// `needles.parquet`, the report ([`write_report`]) and `manifest.json` listing them; returns their
/// paths in that order.
pub fn write_run(
    dir: &Path,
    config: &DecayConfig,
    results: &DecayResults,
    meta: &RunMeta,
) -> Result<Vec<PathBuf>, ReportError> {
    let mut files = output::write_tables(dir, results)?;
    files.extend(write_report(dir, config, results, meta)?);
    let manifest = output::write_manifest(dir, config, results, meta, &files)?;
    files.push(manifest);
    Ok(files)
}

/// Writes `plots/*.svg`, `report.md` and `report.html`; returns their paths.
pub fn write_report(
    dir: &Path,
    config: &DecayConfig,
    results: &DecayResults,
    meta: &RunMeta,
) -> Result<Vec<PathBuf>, ReportError> {
    let svgs = charts(results).map_err(|message| ReportError::Chart { name: "decay".into(), message })?;
    let io = |p: &Path, e: std::io::Error| ReportError::Io { path: p.display().to_string(), source: e };
    std::fs::create_dir_all(dir.join("plots")).map_err(|e| io(&dir.join("plots"), e))?;
    let mut files = Vec::new();
    for (name, svg) in &svgs {
        let p = dir.join("plots").join(name);
        std::fs::write(&p, svg).map_err(|e| io(&p, e))?;
        files.push(p);
    }
    let names: Vec<String> = svgs.iter().map(|(n, _)| n.clone()).collect();
    let md = markdown(config, results, meta, &names);
    let p = dir.join("report.md");
    std::fs::write(&p, &md).map_err(|e| io(&p, e))?;
    files.push(p);
    let p = dir.join("report.html");
    std::fs::write(&p, html(&md, &svgs)).map_err(|e| io(&p, e))?;
    files.push(p);
    Ok(files)
}

/// What [`report_folder`] wrote.
#[derive(Debug, Clone)]
pub struct FolderReport {
    /// The run's status (`complete`, `running`, `interrupted`, `failed`).
    pub status: String,
    /// Files written (`plots/*.svg`, `report.md`, `report.html`), or the run's own report files
    /// when they could not be rebuilt.
    pub files: Vec<PathBuf>,
    /// What the folder lacks, one line each (empty for a complete run).
    pub missing: Vec<String>,
}

/// The report of a decay run folder, complete or not. A run whose journal holds every read-back
/// gets its plots and report rebuilt from it (no engine); an unfinished run gets a `report.md` /
/// `report.html` that states what it has and what is missing, with the command that continues it.
pub fn report_folder(dir: &Path) -> Result<FolderReport, ReportError> {
    let folder = occ_eval::decay::load_folder(dir)?;
    let state = &folder.state;
    let status = state.status().to_string();
    let config = state.config();
    let mut missing = Vec::new();
    if let Some(results) = &folder.results {
        for f in [output::DECAY_FILE, output::NEEDLES_FILE] {
            if !dir.join(f).is_file() {
                missing.push(format!(
                    "{f} (every read-back is journaled: `compress-bench decay --resume {}` writes it)",
                    dir.display()
                ));
            }
        }
        let files = write_report(dir, &config, results, &state.meta)?;
        return Ok(FolderReport { status, files, missing });
    }
    if status == "complete" && folder.reads_journaled == 0 {
        // Written before decay runs had a journal: its own report stands.
        let files: Vec<PathBuf> =
            ["report.md", "report.html"].iter().map(|f| dir.join(f)).filter(|p| p.is_file()).collect();
        missing.push(format!(
            "{JOURNAL_FILE} (the run was written before decay runs were journaled; its report is left as written)"
        ));
        return Ok(FolderReport { status, files, missing });
    }
    missing.push(format!(
        "the run is {status} with {} read-backs journaled: some rounds are not read back yet",
        folder.reads_journaled
    ));
    for f in [output::DECAY_FILE, output::NEEDLES_FILE, "plots/*.svg"] {
        missing.push(format!("{f} (written when the run completes)"));
    }
    let resume = format!("compress-bench decay --resume {} --engine {}", dir.display(), state.meta.engine.name);
    let mut md = format!("# Decay run {} ({status})\n\n", state.meta.run_id);
    for line in &missing {
        let _ = writeln!(md, "> **Incomplete run — missing:** {line}\n");
    }
    let _ = writeln!(md, "- **engine**: {}", state.meta.engine);
    let _ = writeln!(
        md,
        "- **schedules**: {}",
        state.schedules.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(md, "- **rounds**: {} of {} tokens", config.rounds, config.round_tokens);
    let _ = writeln!(md, "- **command**: `{}`", state.meta.command);
    let _ = writeln!(md, "\nContinue the run with `{resume}` (and the engine flags it was started with).");
    let io = |p: &Path, e: std::io::Error| ReportError::Io { path: p.display().to_string(), source: e };
    let md_path = dir.join("report.md");
    std::fs::write(&md_path, &md).map_err(|e| io(&md_path, e))?;
    let html_path = dir.join("report.html");
    std::fs::write(&html_path, html(&md, &[])).map_err(|e| io(&html_path, e))?;
    Ok(FolderReport { status, files: vec![md_path, html_path], missing })
}
