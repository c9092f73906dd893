//! Training curves from the journals: `curves.parquet` (one row per journaled step: loss, learning
//! rate, gradient norm, pages, seconds, data wait), `eval.parquet` (one row per step × ratio:
//! character precision), and `loss.svg` / `precision.svg`.

use std::path::Path;

use plotters::prelude::*;
use polars::prelude::*;

use crate::error::{TrainError, TrainResult};
use crate::trainer::{EvalLog, StepLog, EVAL_LOG, TRAIN_LOG};

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> TrainResult<Vec<T>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| TrainError::Other(format!("{}, line {}: {e}", path.display(), i + 1)))
        })
        .collect()
}

fn polars_err(e: PolarsError) -> TrainError {
    TrainError::Other(format!("writing curves: {e}"))
}

fn write_parquet(mut df: DataFrame, path: &Path) -> TrainResult<()> {
    let file = std::fs::File::create(path).map_err(|e| TrainError::io(path, e))?;
    ParquetWriter::new(file).finish(&mut df).map_err(polars_err)?;
    Ok(())
}

/// Writes the Parquet tables and the two charts into `run_dir`.
pub fn write(run_dir: &Path) -> TrainResult<()> {
    let steps: Vec<StepLog> = read_jsonl(&run_dir.join(TRAIN_LOG))?;
    let evals: Vec<EvalLog> = read_jsonl(&run_dir.join(EVAL_LOG))?;
    let col = |name: &str, v: Vec<f64>| Column::new(name.into(), v);
    let df = DataFrame::new(
        steps.len(),
        vec![
            Column::new("step".into(), steps.iter().map(|s| s.step as u64).collect::<Vec<_>>()),
            col("loss", steps.iter().map(|s| s.loss).collect()),
            col("lr", steps.iter().map(|s| s.lr).collect()),
            col("grad_norm", steps.iter().map(|s| s.grad_norm).collect()),
            Column::new("pages".into(), steps.iter().map(|s| s.pages as u64).collect::<Vec<_>>()),
            Column::new("tokens".into(), steps.iter().map(|s| s.tokens as u64).collect::<Vec<_>>()),
            col("seconds", steps.iter().map(|s| s.seconds).collect()),
            col("data_wait_seconds", steps.iter().map(|s| s.data_wait_seconds).collect()),
            col("forward_seconds", steps.iter().map(|s| s.forward_seconds).collect()),
            col("backward_seconds", steps.iter().map(|s| s.backward_seconds).collect()),
        ],
    )
    .map_err(polars_err)?;
    write_parquet(df, &run_dir.join("curves.parquet"))?;
    let df = DataFrame::new(
        evals.len(),
        vec![
            Column::new("step".into(), evals.iter().map(|s| s.step as u64).collect::<Vec<_>>()),
            col("ratio", evals.iter().map(|s| s.ratio).collect()),
            Column::new("pages".into(), evals.iter().map(|s| s.pages as u64).collect::<Vec<_>>()),
            col("char_precision", evals.iter().map(|s| s.char_precision).collect()),
            col("stopped", evals.iter().map(|s| s.stopped).collect()),
            col("loss", evals.iter().map(|s| s.loss).collect()),
            col("loss_other_image", evals.iter().map(|s| s.loss_other_image).collect()),
            col("image_gain", evals.iter().map(|s| s.image_gain()).collect()),
            col("probe_loss", evals.iter().map(|s| s.probe_loss).collect()),
            col("probe_loss_other_image", evals.iter().map(|s| s.probe_loss_other_image).collect()),
            col("probe_gain", evals.iter().map(|s| s.probe_gain()).collect()),
        ],
    )
    .map_err(polars_err)?;
    write_parquet(df, &run_dir.join("eval.parquet"))?;
    let loss: Vec<(f64, f64)> = steps.iter().map(|s| (s.step as f64, s.loss)).collect();
    chart(&run_dir.join("loss.svg"), "training loss", "loss (nats / token)", &[("loss".into(), loss)], None)?;
    let mut ratios: Vec<f64> = evals.iter().map(|e| e.ratio).collect();
    ratios.sort_by(f64::total_cmp);
    ratios.dedup();
    let series: Vec<(String, Vec<(f64, f64)>)> = ratios
        .iter()
        .map(|&r| {
            (
                format!("{r}x"),
                evals.iter().filter(|e| e.ratio == r).map(|e| (e.step as f64, e.char_precision)).collect(),
            )
        })
        .collect();
    chart(&run_dir.join("precision.svg"), "validation character precision", "char precision", &series, Some((0.0, 1.0)))
}

fn chart(
    path: &Path,
    title: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    y: Option<(f64, f64)>,
) -> TrainResult<()> {
    let err = |e: &dyn std::fmt::Debug| TrainError::Other(format!("drawing {}: {e:?}", path.display()));
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, v) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(v);
        y1 = y1.max(v);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let (y0, y1) = y.unwrap_or((y0.min(0.0), if y1 > y0 { y1 * 1.05 } else { y0 + 1.0 }));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(&e))?;
        c.configure_mesh().x_desc("step").y_desc(y_desc).draw().map_err(|e| err(&e))?;
        for (i, (name, p)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            c.draw_series(LineSeries::new(p.iter().copied(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    std::fs::write(path, svg).map_err(|e| TrainError::io(path, e))
}
