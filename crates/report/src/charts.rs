//! SVG charts with plotters: accuracy-vs-ratio curves per mode with 95% CI bands, the truncation
//! baseline and the paper's Table 2 points; per-page scatter.

use plotters::prelude::*;

use occ_eval::schema::{SampleRow, SummaryRow};

use crate::paper::{points_for_mode, PAPER_METRICS};

/// Chart size in pixels.
pub const SIZE: (u32, u32) = (900, 560);

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

fn x_range(xs: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(0.5);
    ((lo - pad).max(0.0), hi + pad)
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
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, 0f64..1.02f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("compression ratio (text tokens / nominal vision tokens)")
            .y_desc(metric)
            .draw()
            .map_err(err)?;
        for mode in &modes {
            let color = mode_color(mode);
            let mut pts: Vec<&&SummaryRow> = rows.iter().filter(|r| &r.mode == mode).collect();
            pts.sort_by(|a, b| a.target_ratio.total_cmp(&b.target_ratio));
            // The CI band spans consecutive points that have a CI (cells below the minimum n have none);
            // a lone point with a CI gets an error bar.
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
                .label(mode.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart
                .draw_series(pts.iter().map(|r| Circle::new((r.target_ratio, r.mean), 3, color.filled())))
                .map_err(err)?;
        }
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
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        }
        for (mode, pts) in &paper {
            let color = mode_color(mode);
            chart
                .draw_series(pts.iter().map(|&(x, y)| TriangleMarker::new((x, y), 6, color.filled())))
                .map_err(err)?
                .label(format!("paper Table 2, {mode}"))
                .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 6, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// One point per page: `metric` against the page's actual nominal ratio, coloured by mode.
pub fn scatter_svg(samples: &[SampleRow], corpus: &str, metric: &str, title: &str) -> Result<String, String> {
    let pts: Vec<(&SampleRow, f64)> = samples
        .iter()
        .filter(|r| r.corpus == corpus && r.status == "ok" && r.ratio_nominal.is_finite())
        .filter_map(|r| occ_eval::summary::sample_metric(r, metric).map(|v| (r, v)))
        .collect();
    let (x0, x1) = x_range(pts.iter().map(|(r, _)| r.ratio_nominal));
    let mut modes: Vec<String> = Vec::new();
    for (r, _) in &pts {
        if !modes.contains(&r.mode) {
            modes.push(r.mode.clone());
        }
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, 0f64..1.02f64)
            .map_err(err)?;
        chart.configure_mesh().x_desc("ratio_nominal (per page)").y_desc(metric).draw().map_err(err)?;
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
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
