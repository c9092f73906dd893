//! SVG charts with plotters: accuracy-vs-ratio curves per mode with 95% CI bands, the truncation
//! baseline and the paper's Table 2 points; per-page scatter; accuracy against font size; the
//! curves of several runs on one chart (`compress-bench compare`); and line charts described as data
//! ([`LineChart`], the panels of a decay run's report).

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use occ_eval::schema::{SampleRow, SampleStatus, SummaryRow};

use crate::paper::{points_for_mode, PAPER_METRICS};

/// Chart size in pixels.
pub const SIZE: (u32, u32) = (900, 560);

/// The frame of every chart of the reports: a white page of `size` px with the caption, the axes
/// over `x` and `y` with their descriptions and mesh, and the legend at `legend`.
struct Frame<'t> {
    size: (u32, u32),
    title: &'t str,
    y_label_px: u32,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    x_desc: &'t str,
    y_desc: &'t str,
    legend: SeriesLabelPosition,
}

/// Draws a chart: its [`Frame`], then what `series` draws into it, then the legend.
fn draw(f: Frame<'_>, series: impl FnOnce(&mut Chart2d<'_, '_>) -> Result<(), String>) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, f.size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(f.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(f.y_label_px)
            .build_cartesian_2d(f.x, f.y)
            .map_err(err)?;
        chart.configure_mesh().x_desc(f.x_desc).y_desc(f.y_desc).draw().map_err(err)?;
        series(&mut chart)?;
        chart
            .configure_series_labels()
            .position(f.legend)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Colour of a mode (stable across charts).
pub fn mode_color(mode: &str) -> RGBColor {
    match mode {
        "tiny" => RGBColor(31, 119, 180),
        "small" => RGBColor(255, 127, 14),
        "base" => RGBColor(44, 160, 44),
        "large" => RGBColor(214, 39, 40),
        "gundam" => RGBColor(148, 103, 189),
        _ => RGBColor(127, 127, 127),
    }
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("plotting: {e:?}")
}

impl<'t> Frame<'t> {
    /// The frame of a metric's curves against the compression ratio (the sweep's curves and the
    /// comparison's): a score in 0–1 over `x`, the legend at the lower left.
    fn ratio_curves(title: &'t str, metric: &'t str, x: std::ops::Range<f64>) -> Frame<'t> {
        Frame {
            size: SIZE,
            title,
            y_label_px: 50,
            x,
            y: 0f64..1.02f64,
            x_desc: "compression ratio (text tokens / nominal vision tokens)",
            y_desc: metric,
            legend: SeriesLabelPosition::LowerLeft,
        }
    }
}

fn x_range(xs: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(0.5);
    ((lo - pad).max(0.0), hi + pad)
}

type Chart2d<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// One mean curve over the target ratio (points sorted by ratio) with its CI: a band over consecutive
/// points that have a CI (cells below the minimum n have none), an error bar for a lone one.
fn draw_curve(chart: &mut Chart2d<'_, '_>, pts: &[&SummaryRow], color: RGBColor, label: &str) -> Result<(), String> {
    for run in pts.split(|r| !(r.ci_low.is_finite() && r.ci_high.is_finite())) {
        if run.len() > 1 {
            let mut band: Vec<(f64, f64)> = run.iter().map(|r| (r.target_ratio, r.ci_high)).collect();
            band.extend(run.iter().rev().map(|r| (r.target_ratio, r.ci_low)));
            chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.18)))).map_err(err)?;
        } else if let Some(r) = run.first() {
            let bar = vec![(r.target_ratio, r.ci_low), (r.target_ratio, r.ci_high)];
            chart.draw_series(std::iter::once(PathElement::new(bar, color.mix(0.5)))).map_err(err)?;
        }
    }
    chart
        .draw_series(LineSeries::new(pts.iter().map(|r| (r.target_ratio, r.mean)), color.stroke_width(2)))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    chart.draw_series(pts.iter().map(|r| Circle::new((r.target_ratio, r.mean), 3, color.filled()))).map_err(err)?;
    Ok(())
}

/// The truncation baseline of a chart: the mean of `truncation_<metric>` over the given rows at each
/// ratio, drawn dashed.
fn draw_truncation(chart: &mut Chart2d<'_, '_>, trunc: &[&SummaryRow]) -> Result<(), String> {
    let mut ratios: Vec<f64> = trunc.iter().map(|r| r.target_ratio).collect();
    ratios.sort_by(f64::total_cmp);
    ratios.dedup();
    let line: Vec<(f64, f64)> = ratios
        .iter()
        .map(|&x| {
            let v: Vec<f64> = trunc.iter().filter(|r| r.target_ratio == x).map(|r| r.mean).collect();
            (x, v.iter().sum::<f64>() / v.len() as f64)
        })
        .collect();
    if !line.is_empty() {
        chart
            .draw_series(DashedLineSeries::new(line, 6, 4, BLACK.stroke_width(1)))
            .map_err(err)?
            .label("truncation baseline")
            .legend(|(x, y)| DashedPathElement::new(vec![(x, y), (x + 20, y)], 6, 4, BLACK.stroke_width(1)));
    }
    Ok(())
}

/// Mean ± CI of `metric` per mode over the target ratio, with the truncation baseline (mean of
/// `truncation_<metric>` over the modes at each ratio) and, when `paper` is set and the metric is
/// one of [`PAPER_METRICS`], Table 2 for Tiny and Small. Cells without a known ratio
/// (`target_ratio` 0, scored predictions without vision tokens) are not drawn.
pub fn curve_svg(
    summary: &[SummaryRow],
    corpus: &str,
    metric: &str,
    title: &str,
    paper: bool,
) -> Result<String, String> {
    let drawable = |r: &SummaryRow| r.corpus == corpus && r.n > 0 && r.mean.is_finite() && r.target_ratio > 0.0;
    let rows: Vec<&SummaryRow> = summary.iter().filter(|r| drawable(r) && r.metric == metric).collect();
    let trunc_metric = format!("truncation_{metric}");
    let trunc: Vec<&SummaryRow> = summary.iter().filter(|r| drawable(r) && r.metric == trunc_metric).collect();
    let mut modes: Vec<String> = Vec::new();
    for r in &rows {
        if !modes.contains(&r.mode) {
            modes.push(r.mode.clone());
        }
    }
    let with_paper = paper && PAPER_METRICS.contains(&metric);
    let paper: Vec<(String, Vec<(f64, f64)>)> = if with_paper {
        modes.iter().filter_map(|m| points_for_mode(m).map(|p| (m.clone(), p))).collect()
    } else {
        Vec::new()
    };
    let (x0, x1) =
        x_range(rows.iter().map(|r| r.target_ratio).chain(paper.iter().flat_map(|(_, p)| p.iter().map(|q| q.0))));
    let frame = Frame::ratio_curves(title, metric, x0..x1);
    draw(frame, |chart| {
        for mode in &modes {
            let mut pts: Vec<&SummaryRow> = rows.iter().copied().filter(|r| &r.mode == mode).collect();
            pts.sort_by(|a, b| a.target_ratio.total_cmp(&b.target_ratio));
            draw_curve(chart, &pts, mode_color(mode), mode)?;
        }
        draw_truncation(chart, &trunc)?;
        for (mode, pts) in &paper {
            let color = mode_color(mode);
            chart
                .draw_series(pts.iter().map(|&(x, y)| TriangleMarker::new((x, y), 6, color.filled())))
                .map_err(err)?
                .label(format!("paper Table 2, {mode}"))
                .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 6, color.filled()));
        }
        Ok(())
    })
}

/// The `ok` pages of `corpus` that `keep` accepts, each with its `metric`, and their modes in the
/// order they first appear: the points of the per-page charts.
fn pages_by_mode<'a>(
    samples: &'a [SampleRow],
    corpus: &str,
    metric: &str,
    keep: impl Fn(&SampleRow) -> bool,
) -> (Vec<(&'a SampleRow, f64)>, Vec<String>) {
    let pts: Vec<(&SampleRow, f64)> = samples
        .iter()
        .filter(|r| r.corpus == corpus && r.status == SampleStatus::Ok && keep(r))
        .filter_map(|r| occ_eval::summary::sample_metric(r, metric).map(|v| (r, v)))
        .collect();
    let mut modes: Vec<String> = Vec::new();
    for (r, _) in &pts {
        if !modes.contains(&r.mode) {
            modes.push(r.mode.clone());
        }
    }
    (pts, modes)
}

/// One point per page: `metric` against the page's actual nominal ratio, coloured by mode.
pub fn scatter_svg(samples: &[SampleRow], corpus: &str, metric: &str, title: &str) -> Result<String, String> {
    let (pts, modes) = pages_by_mode(samples, corpus, metric, |r| r.ratio_nominal.is_finite());
    let (x0, x1) = x_range(pts.iter().map(|(r, _)| r.ratio_nominal));
    let frame = Frame {
        size: SIZE,
        title,
        y_label_px: 50,
        x: x0..x1,
        y: 0f64..1.02f64,
        x_desc: "ratio_nominal (per page)",
        y_desc: metric,
        legend: SeriesLabelPosition::LowerLeft,
    };
    draw(frame, |chart| {
        for mode in &modes {
            let color = mode_color(mode);
            chart
                .draw_series(
                    pts.iter()
                        .filter(|(r, _)| &r.mode == mode)
                        .map(|(r, v)| Circle::new((r.ratio_nominal, *v), 3, color.mix(0.6).filled())),
                )
                .map_err(err)?
                .label(mode.as_str())
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
        }
        Ok(())
    })
}

/// Whether a sample has a known font size (sweeps fit one; scored predictions and the blank test
/// renderer have none).
pub fn has_font(r: &SampleRow) -> bool {
    r.font_px.is_finite() && r.font_px > 0.0
}

/// Accuracy against font size: one point per page (`metric` against the font size the ratio fitting
/// chose), coloured by mode, with each mode's mean per 1 px band of font size as a line.
pub fn font_svg(samples: &[SampleRow], corpus: &str, metric: &str, title: &str) -> Result<String, String> {
    let (pts, modes) = pages_by_mode(samples, corpus, metric, has_font);
    let (x0, x1) = x_range(pts.iter().map(|(r, _)| r.font_px));
    let frame = Frame {
        size: SIZE,
        title,
        y_label_px: 50,
        x: x0..x1,
        y: 0f64..1.02f64,
        x_desc: "font size (em, px)",
        y_desc: metric,
        legend: SeriesLabelPosition::LowerRight,
    };
    draw(frame, |chart| {
        for mode in &modes {
            let color = mode_color(mode);
            let mine: Vec<&(&SampleRow, f64)> = pts.iter().filter(|(r, _)| &r.mode == mode).collect();
            chart
                .draw_series(mine.iter().map(|(r, v)| Circle::new((r.font_px, *v), 3, color.mix(0.5).filled())))
                .map_err(err)?
                .label(format!("{mode} (pages; line: mean per 1 px)"))
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
            let mut bands: Vec<(i64, Vec<(f64, f64)>)> = Vec::new();
            for (r, v) in &mine {
                let band = r.font_px.floor() as i64;
                match bands.iter_mut().find(|(b, _)| *b == band) {
                    Some((_, members)) => members.push((r.font_px, *v)),
                    None => bands.push((band, vec![(r.font_px, *v)])),
                }
            }
            bands.sort_by_key(|(b, _)| *b);
            let line: Vec<(f64, f64)> = bands
                .iter()
                .map(|(_, m)| {
                    let n = m.len() as f64;
                    (m.iter().map(|p| p.0).sum::<f64>() / n, m.iter().map(|p| p.1).sum::<f64>() / n)
                })
                .collect();
            chart.draw_series(LineSeries::new(line, color.stroke_width(2))).map_err(err)?;
        }
        Ok(())
    })
}

/// Colour of the i-th run of a comparison (Tableau 10, then repeating).
pub fn run_color(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    PALETTE[i % PALETTE.len()]
}

/// Several runs on one chart: for one corpus, mode and metric, each run's mean ± CI over the target
/// ratio (`runs`: label and that run's summary rows), and the truncation baseline of the first run.
pub fn runs_curve_svg(
    runs: &[(String, Vec<SummaryRow>)],
    corpus: &str,
    mode: &str,
    metric: &str,
    title: &str,
) -> Result<String, String> {
    let drawable =
        |r: &SummaryRow| r.corpus == corpus && r.mode == mode && r.n > 0 && r.mean.is_finite() && r.target_ratio > 0.0;
    let curves: Vec<(String, Vec<&SummaryRow>)> = runs
        .iter()
        .map(|(label, rows)| (label.clone(), rows.iter().filter(|r| drawable(r) && r.metric == metric).collect()))
        .collect();
    let trunc_metric = format!("truncation_{metric}");
    let trunc: Vec<&SummaryRow> = runs
        .first()
        .map(|(_, rows)| rows.iter().filter(|r| drawable(r) && r.metric == trunc_metric).collect())
        .unwrap_or_default();
    series_curve_svg(curves, &trunc, metric, title)
}

/// Every run and mode on one chart (`compress-bench compare` of runs whose modes differ, such as
/// DeepSeek-OCR against DeepSeek-OCR-2): for one corpus and metric, one mean ± CI curve per run ×
/// mode (in the runs' order, each run's modes in the order of its rows), labelled `<run> · <mode>`,
/// and the truncation baseline of the first run (mean over its modes at each ratio).
pub fn overlay_curve_svg(
    runs: &[(String, Vec<SummaryRow>)],
    corpus: &str,
    metric: &str,
    title: &str,
) -> Result<String, String> {
    let drawable = |r: &SummaryRow| r.corpus == corpus && r.n > 0 && r.mean.is_finite() && r.target_ratio > 0.0;
    let mut curves: Vec<(String, Vec<&SummaryRow>)> = Vec::new();
    for (label, rows) in runs {
        let mut modes: Vec<&str> = Vec::new();
        for r in rows.iter().filter(|r| drawable(r) && r.metric == metric) {
            if !modes.contains(&r.mode.as_str()) {
                modes.push(&r.mode);
            }
        }
        for mode in modes {
            let pts = rows.iter().filter(|r| drawable(r) && r.metric == metric && r.mode == mode).collect();
            curves.push((overlay_label(label, mode), pts));
        }
    }
    let trunc_metric = format!("truncation_{metric}");
    let trunc: Vec<&SummaryRow> = runs
        .first()
        .map(|(_, rows)| rows.iter().filter(|r| drawable(r) && r.metric == trunc_metric).collect())
        .unwrap_or_default();
    series_curve_svg(curves, &trunc, metric, title)
}

/// The legend label of one run × mode curve of [`overlay_curve_svg`].
pub fn overlay_label(run: &str, mode: &str) -> String {
    format!("{run} · {mode}")
}

/// Curves of labelled series (each sorted here by ratio, coloured by its position) and a truncation
/// baseline on one chart of `metric` against the ratio.
fn series_curve_svg(
    mut curves: Vec<(String, Vec<&SummaryRow>)>,
    trunc: &[&SummaryRow],
    metric: &str,
    title: &str,
) -> Result<String, String> {
    for (_, pts) in &mut curves {
        pts.sort_by(|a, b| a.target_ratio.total_cmp(&b.target_ratio));
    }
    let (x0, x1) = x_range(curves.iter().flat_map(|(_, pts)| pts.iter().map(|r| r.target_ratio)));
    let frame = Frame::ratio_curves(title, metric, x0..x1);
    draw(frame, |chart| {
        for (i, (label, pts)) in curves.iter().enumerate() {
            if !pts.is_empty() {
                draw_curve(chart, pts, run_color(i), label)?;
            }
        }
        draw_truncation(chart, trunc)?;
        Ok(())
    })
}

/// Size of a [`LineChart`] in pixels.
pub const LINE_SIZE: (u32, u32) = (900, 540);

/// Colour of the i-th series of a [`LineChart`]: the comparison palette's Tableau colours without
/// grey and olive (eight colours, repeating).
fn line_color(i: usize) -> RGBColor {
    const TABLEAU: [usize; 8] = [0, 1, 2, 3, 4, 5, 6, 9];
    run_color(TABLEAU[i % TABLEAU.len()])
}

/// A series of a [`LineChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
    /// Draw only markers (no line).
    pub markers_only: bool,
}

/// A chart described as data: its title, axes and series (a report's panels are lists of these,
/// drawn by [`line_svg`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub series: Vec<Series>,
    /// Top of the y axis; `None`: 8 % above the highest point.
    pub y_max: Option<f64>,
}

/// A [`LineChart`] as SVG text: each series a line with point markers (dashed black for a
/// baseline, markers only where asked), the legend at the upper right.
pub fn line_svg(c: &LineChart) -> Result<String, String> {
    let (title, x_desc, y_desc, series, y_max) =
        (c.title.as_str(), c.x_desc.as_str(), c.y_desc.as_str(), &c.series, c.y_max);
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
    let frame = Frame {
        size: LINE_SIZE,
        title,
        y_label_px: 60,
        x: (x0 - pad).max(0.0)..x1 + pad,
        y: 0f64..y1,
        x_desc,
        y_desc,
        legend: SeriesLabelPosition::UpperRight,
    };
    draw(frame, |chart| {
        for (i, s) in series.iter().enumerate() {
            let c = if s.dashed { BLACK } else { line_color(i) };
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
            let anno = anno.label(s.name.as_str());
            if s.dashed {
                anno.legend(move |(x, y)| DashedPathElement::new(vec![(x, y), (x + 20, y)], 6, 4, c.stroke_width(1)));
            } else {
                anno.legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
            }
            if !s.dashed {
                chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 2, c.filled()))).map_err(err)?;
            }
        }
        Ok(())
    })
}
