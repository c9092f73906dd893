//! The report of a decay run (`compress-bench decay`, `occ_eval::decay`): its panels as data
//! ([`panels`]: line charts drawn by [`crate::charts::line_svg`]) and its tables, written as
//! `report.md` / `report.html` by the writer every report uses ([`crate::document`]); [`write_run`]
//! writes a whole run in order (tables and manifest through occ-eval, this report between them).
//!
//! Plots: `accuracy_vs_age.svg` (character precision of each round by its age, per schedule, with the
//! all-text truncation baseline of the paper schedule dashed), `tokens_vs_age.svg` (what each round
//! costs in the context by age, per schedule, against its text tokens), `accuracy_vs_budget.svg`
//! (mean character precision over all rounds against the context's total tokens, one point per
//! schedule, with the truncation baseline at the same budgets) and `needles_vs_age.svg`.

use std::path::{Path, PathBuf};

use occ_eval::decay::output::{self, RunMeta};
use occ_eval::decay::{DecayConfig, DecayResults, DecayRow};
use occ_eval::journal::JOURNAL_FILE;
use occ_eval::RunStatus;

use crate::charts::{line_svg, LineChart, Series};
use crate::document::Document;
use crate::tables::TextTable;
use crate::{write_plots, Chart, ReportError};

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

/// The four panels of the report as data, `(file name, chart)` (drawn by [`crate::charts::line_svg`]).
pub fn panels(results: &DecayResults) -> Vec<(String, LineChart)> {
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
    let chart = |title: String, x: &str, y: &str, series: Vec<Series>, y_max: Option<f64>| LineChart {
        title,
        x_desc: x.into(),
        y_desc: y.into(),
        series,
        y_max,
    };
    let age = "age (rounds before the newest)";
    vec![
        (
            "accuracy_vs_age.svg".into(),
            chart(format!("Recall accuracy by age ({engine})"), age, "character precision (1 − NED)", acc, Some(1.02)),
        ),
        (
            "tokens_vs_age.svg".into(),
            chart("Context tokens per round by age".into(), age, "tokens (text tokens or vision slots)", tokens, None),
        ),
        (
            "accuracy_vs_budget.svg".into(),
            chart(
                format!("Accuracy vs context size ({engine})"),
                "context tokens (text + vision slots)",
                "mean character precision",
                budget,
                Some(1.02),
            ),
        ),
        (
            "needles_vs_age.svg".into(),
            chart(
                format!("Needles retrieved by age ({engine})"),
                "age of the needle's round",
                "retrieved (1) / missed (0)",
                needles,
                Some(1.1),
            ),
        ),
    ]
}

/// The four charts of the report ([`panels`], drawn).
pub fn charts(results: &DecayResults) -> Result<Vec<Chart>, String> {
    panels(results).into_iter().map(|(file, c)| Ok(Chart { svg: line_svg(&c)?, title: c.title, file })).collect()
}

/// The report of a finished run.
fn document(config: &DecayConfig, results: &DecayResults, meta: &RunMeta, charts: &[Chart]) -> Document {
    let mut d = Document::new(&format!("decay run {}", meta.run_id), &format!("Decay run {}", meta.run_id));
    d.facts(&[
        ("command".into(), format!("`{}`", meta.command)),
        ("engine".into(), meta.engine.to_string()),
        (
            "conversation".into(),
            format!(
                "{} rounds of {} tokens from `{}` (seed {}), {} needles planted; pages at ratio {}",
                config.rounds,
                config.round_tokens,
                config.corpus,
                config.seed,
                results.conversation.needles.len(),
                config.page_ratio
            ),
        ),
        ("wall time".into(), format!("{:.1} s, {} pages read by the engine", meta.wall_s, results.pages_read)),
        ("created".into(), meta.created_utc.clone()),
    ]);
    d.heading("Schedules");
    let header = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let schedules = TextTable {
        title: "per schedule".into(),
        header: header(&[
            "schedule",
            "context tokens",
            "all-text tokens",
            "saving",
            "char precision",
            "word F1",
            "truncation baseline",
            "needles",
            "text / image / dropped rounds",
            "pages",
        ]),
        rows: results
            .summaries
            .iter()
            .map(|s| {
                vec![
                    format!("`{}`", s.schedule),
                    s.context_tokens.to_string(),
                    s.all_text_tokens.to_string(),
                    format!("{:.2}×", s.saving),
                    format!("{:.3}", s.mean_char_precision),
                    format!("{:.3}", s.mean_word_f1),
                    format!("{:.3}", s.baseline_mean_char_precision),
                    format!("{}/{}", s.needles_retrieved, s.needles),
                    format!("{} / {} / {}", s.text_rounds, s.image_rounds, s.dropped_rounds),
                    s.pages.to_string(),
                ]
            })
            .collect(),
    };
    let levels = TextTable {
        title: "levels used".into(),
        header: header(&["schedule", "levels"]),
        rows: results.summaries.iter().map(|s| vec![format!("`{}`", s.schedule), s.levels.clone()]).collect(),
    };
    let mut by_repr = TextTable {
        title: "by representation".into(),
        header: header(&[
            "schedule",
            "representation",
            "rounds",
            "mean char precision",
            "mean word F1",
            "mean tokens per round",
            "mean font px",
        ]),
        rows: Vec::new(),
    };
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
            by_repr.rows.push(vec![
                format!("`{name}`"),
                repr.to_string(),
                sel.len().to_string(),
                format!("{:.3}", mean(&|r| r.char_precision)),
                format!("{:.3}", mean(&|r| r.word_f1)),
                format!("{:.0}", mean(&|r| f64::from(r.cost_tokens))),
                // Text and dropped rounds have no page, so no font (null): "–" when none has one.
                {
                    let fonts: Vec<f64> = sel.iter().filter_map(|r| r.font_px).collect();
                    if fonts.is_empty() {
                        "–".to_string()
                    } else {
                        format!("{:.1}", fonts.iter().sum::<f64>() / fonts.len() as f64)
                    }
                },
            ]);
        }
    }
    d.tables(&[schedules, levels, by_repr]);
    d.paragraph(
        "Needles: a needle counts as retrieved when the engine's read-back of its round, whitespace removed, \
         contains the 4-digit code (an OCR engine answers the question by reading the round back).",
    );
    d.heading("Plots");
    d.charts(charts);
    d
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

/// Writes `plots/*.svg`, `report.md` and `report.html` (through the one report writer,
/// [`Document`]); returns their paths.
pub fn write_report(
    dir: &Path,
    config: &DecayConfig,
    results: &DecayResults,
    meta: &RunMeta,
) -> Result<Vec<PathBuf>, ReportError> {
    let charts = charts(results).map_err(|message| ReportError::Chart { name: "decay".into(), message })?;
    let mut files = write_plots(dir, &charts)?;
    let (md, html) = document(config, results, meta, &charts).write(dir, "report.md", "report.html")?;
    files.extend([md, html]);
    Ok(files)
}

/// What [`report_folder`] wrote.
#[derive(Debug, Clone)]
pub struct FolderReport {
    /// The run's status (`complete`, `running`, `interrupted`, `failed`).
    pub status: RunStatus,
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
    let status = state.status();
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
    if status == RunStatus::Complete && folder.reads_journaled == 0 {
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
    let id = &state.meta.run_id;
    let mut d = Document::new(&format!("decay run {id}"), &format!("Decay run {id} ({status})"));
    for line in &missing {
        d.warning("Incomplete run — missing:", line);
    }
    d.facts(&[
        ("engine".into(), state.meta.engine.to_string()),
        ("schedules".into(), state.schedules.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")),
        ("rounds".into(), format!("{} of {} tokens", config.rounds, config.round_tokens)),
        ("command".into(), format!("`{}`", state.meta.command)),
    ]);
    d.raw(
        &format!("Continue the run with `{resume}` (and the engine flags it was started with).\n"),
        &format!(
            "<p>Continue the run with <code>{}</code> (and the engine flags it was started with).</p>\n",
            crate::tables::escape(&resume)
        ),
    );
    let (md_path, html_path) = d.write(dir, "report.md", "report.html")?;
    Ok(FolderReport { status, files: vec![md_path, html_path], missing })
}
