//! The per-sample pages of a run (`pages.html`, self-contained): every page, cell by cell and the
//! worst first, with a thumbnail of the page, its scores and token accounting, and its ground truth
//! against the reader's output with the differences marked ([`crate::diff`]).
//!
//! **Order.** Cells (corpus, mode, target ratio, page setting) in sample-list order; within a cell the failed
//! samples first (no score), then the pages by ascending character precision (ties by sample index).
//!
//! **Thumbnails.** A run keeps no page images: they would be the largest files of a run (a Base page
//! is ~1 MB as pixels, ~100 KB as PNG), and they are not needed, because rendering is deterministic and
//! the run records everything that decides the page: the exact text on it (`ground_truth` in
//! `predictions.parquet`), its mode and language, the font size the ratio fitting chose and its page
//! setting (font family, line height and degradation, whose noise is seeded by the sample id;
//! `samples.parquet`). The page is drawn again from those
//! ([`occ_eval::render::OccRenderer::redraw_sample`]) — the same pixels the reader saw, as long as the
//! renderer version and fonts are the run's (the manifest records the run's renderer; the pages note a
//! difference). The redraw is checked: a ground truth that does not come out whole at the recorded
//! size gets no thumbnail, with the reason. Runs not drawn by occ-render (scored predictions, the blank
//! test renderer) get none. Only the [`THUMBNAILS_PER_CELL`] worst pages of a cell get one, which keeps
//! the file at about 40 KB per thumbnail and the drawing time at most that of those pages' own
//! rendering (`render_ms`), spread over the CPU threads.

use base64::Engine;
use image::{DynamicImage, ImageFormat};
use occ_eval::render::OccRenderer;
use occ_eval::results::Manifest;
use occ_eval::schema::{PredictionRow, SampleRow, SampleStatus};
use occ_eval::Lang;
use rayon::prelude::*;

use crate::diff;
use crate::tables::escape;

/// File name of the per-sample pages in a run folder.
pub const PAGES_FILE: &str = "pages.html";

/// Longest side of a thumbnail, px (a PNG of 25–50 KB).
pub const THUMBNAIL_PX: u32 = 240;

/// Pages of a cell that get a thumbnail: the worst ones (every page keeps its scores and diff). This
/// bounds the size of `pages.html` and the drawing time on large cells.
pub const THUMBNAILS_PER_CELL: usize = 10;

/// ` · blur:1.5 · dejavu-serif · lh1.6`: the page setting of a row where it is off the defaults
/// (`occ_eval::axes`), empty otherwise.
pub fn setting_tag(r: &SampleRow) -> String {
    let mut s = String::new();
    if !r.degradation.is_empty() && r.degradation != occ_eval::axes::NO_DEGRADATION {
        s.push_str(&format!(" · {}", r.degradation));
    }
    if !r.font_family.is_empty() && r.font_family != occ_eval::schema::absent_font_family() {
        s.push_str(&format!(" · {}", r.font_family));
    }
    if r.line_height != 0.0 && r.line_height != occ_eval::axes::DEFAULT_LINE_HEIGHT {
        s.push_str(&format!(" · lh{}", r.line_height));
    }
    s
}

/// The samples of each cell (corpus, mode, ratio, page setting), the worst first (see the module docs).
pub fn worst_first(samples: &[SampleRow]) -> Vec<Vec<&SampleRow>> {
    let mut sorted: Vec<&SampleRow> = samples.iter().collect();
    sorted.sort_by_key(|r| r.sample_index);
    let mut cells: Vec<Vec<&SampleRow>> = Vec::new();
    for r in sorted {
        match cells.iter_mut().find(|c| {
            c[0].corpus == r.corpus
                && c[0].mode == r.mode
                && c[0].target_ratio == r.target_ratio
                && occ_eval::axes::facet_of_sample(c[0]) == occ_eval::axes::facet_of_sample(r)
        }) {
            Some(c) => c.push(r),
            None => cells.push(vec![r]),
        }
    }
    for c in &mut cells {
        c.sort_by(|a, b| {
            let failed = |r: &SampleRow| r.status != SampleStatus::Ok;
            failed(b)
                .cmp(&failed(a))
                .then(a.char_precision.total_cmp(&b.char_precision))
                .then(a.sample_index.cmp(&b.sample_index))
        });
    }
    cells
}

fn lang(r: &SampleRow) -> Lang {
    if r.lang == "zh" {
        Lang::Zh
    } else {
        Lang::En
    }
}

/// A PNG thumbnail (grayscale, longest side [`THUMBNAIL_PX`]) of a sample's page as a `data:` URI,
/// or why there is none.
pub fn thumbnail(sample: &SampleRow, ground_truth: &str) -> Result<String, String> {
    let page = OccRenderer::redraw_sample(sample, ground_truth)?;
    let small = DynamicImage::ImageRgb8(page).thumbnail(THUMBNAIL_PX, THUMBNAIL_PX).into_luma8();
    let mut png = std::io::Cursor::new(Vec::new());
    small.write_to(&mut png, ImageFormat::Png).map_err(|e| format!("encoding the thumbnail: {e}"))?;
    Ok(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png.into_inner())))
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", 100.0 * v)
    } else {
        "–".into()
    }
}

fn cell_anchor(k: usize) -> String {
    format!("cell-{k}")
}

/// Why a run's pages get no thumbnails, if they get none.
fn no_thumbnails(manifest: &Manifest) -> Option<String> {
    if OccRenderer::drew(&manifest.renderer) {
        None
    } else {
        Some(format!("No thumbnails: this run's pages were not drawn by occ-render (renderer: {}).", manifest.renderer))
    }
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:auto}\
    table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #bbb;padding:2px 6px;font-size:13px}\
    section.page{border-top:1px solid #999;padding:6px 0;margin:6px 0}\
    .row{display:flex;gap:12px;align-items:flex-start}\
    img.thumb{border:1px solid #888;flex:none}\
    .facts{font-size:13px}.facts ul{margin:2px 0;padding-left:18px}\
    .diff{font-family:monospace;font-size:12px;white-space:pre-wrap;word-wrap:break-word;background:#fafafa;padding:6px}\
    del{background:#f8c0c0;color:#700}ins{background:#bfe8bf;color:#050;text-decoration:none}\
    .err{color:#a00}";

/// `pages.html` of a run: `predictions` joined to `samples` on `sample_index`.
pub fn pages_html(manifest: &Manifest, samples: &[SampleRow], predictions: &[PredictionRow]) -> String {
    let by_index: std::collections::HashMap<u64, &PredictionRow> =
        predictions.iter().map(|p| (p.sample_index, p)).collect();
    let cells = worst_first(samples);
    let missing_thumbs = no_thumbnails(manifest);
    let thumbs: std::collections::HashMap<u64, Result<String, String>> = if missing_thumbs.is_none() {
        let drawn: Vec<&SampleRow> = cells.iter().flat_map(|c| c.iter().take(THUMBNAILS_PER_CELL)).copied().collect();
        drawn
            .par_iter()
            .filter(|r| r.status != SampleStatus::RenderError)
            .filter_map(|r| by_index.get(&r.sample_index).map(|p| (r, p)))
            .map(|(r, p)| (r.sample_index, thumbnail(r, &p.ground_truth)))
            .collect()
    } else {
        Default::default()
    };
    let norm = manifest.spec.normalization;
    let mut h = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n<style>{STYLE}</style>\n<title>Pages: {}</title></head><body>\n",
        escape(&manifest.experiment)
    );
    h.push_str(&format!("<h1>Pages of {} ({})</h1>\n", escape(&manifest.experiment), escape(&manifest.run_id)));
    h.push_str(
        "<p>Every page of the run, cell by cell; within a cell failed samples first, then the pages by ascending \
         character precision (the worst first). The texts are the normalised ground truth and output that the \
         metrics compare: <del>struck red</del> is in the ground truth but not in the output (missed), \
         <ins>green</ins> is in the output but not in the ground truth (added or misread); a word diff for \
         English, a character diff for Chinese.</p>\n",
    );
    match &missing_thumbs {
        Some(why) => h.push_str(&format!("<p>{}</p>\n", escape(why))),
        None => {
            let mut note = format!(
                "Thumbnails of the {THUMBNAILS_PER_CELL} worst pages of each cell, drawn again from the ground truth, \
                 mode, font size and page setting the run recorded (rendering and degrading are deterministic); a page \
                 whose ground truth does not come out whole at its recorded size has none."
            );
            if manifest.renderer != OccRenderer::description() {
                note.push_str(&format!(
                    " The run was rendered by \"{}\"; this report was drawn by \"{}\", so pixels may differ.",
                    manifest.renderer,
                    OccRenderer::description()
                ));
            }
            h.push_str(&format!("<p>{}</p>\n", escape(&note)));
        }
    }
    h.push_str("<table>\n<tr><th>cell</th><th>pages</th><th>failed</th><th>worst page</th><th>char precision (worst)</th><th>mean</th></tr>\n");
    for (k, cell) in cells.iter().enumerate() {
        let ok: Vec<f64> = cell.iter().filter(|r| r.status == SampleStatus::Ok).map(|r| r.char_precision).collect();
        let mean = if ok.is_empty() { f64::NAN } else { ok.iter().sum::<f64>() / ok.len() as f64 };
        let first = cell[0];
        h.push_str(&format!(
            "<tr><td><a href=\"#{}\">{} · {} · {}×{}</a></td><td>{}</td><td>{}</td><td><a href=\"#s{}\">{}</a></td><td>{}</td><td>{}</td></tr>\n",
            cell_anchor(k),
            escape(&first.corpus),
            escape(&first.mode),
            first.target_ratio,
            escape(&setting_tag(first)),
            cell.len(),
            cell.len() - ok.len(),
            first.sample_index,
            escape(&first.sample_id),
            if first.status == SampleStatus::Ok { pct(first.char_precision) } else { escape(first.status.as_str()) },
            pct(mean),
        ));
    }
    h.push_str("</table>\n");
    for (k, cell) in cells.iter().enumerate() {
        let first = cell[0];
        h.push_str(&format!(
            "<h2 id=\"{}\">{} · {} · {}×{}</h2>\n",
            cell_anchor(k),
            escape(&first.corpus),
            escape(&first.mode),
            first.target_ratio,
            escape(&setting_tag(first))
        ));
        for (rank, r) in cell.iter().enumerate() {
            let p = by_index.get(&r.sample_index);
            h.push_str(&format!(
                "<section class=\"page\" id=\"s{}\" data-sample-id=\"{}\">\n<h3>{}. {} — {}</h3>\n<div class=\"row\">",
                r.sample_index,
                escape(&r.sample_id),
                rank + 1,
                escape(&r.sample_id),
                if r.status == SampleStatus::Ok {
                    format!("character precision {}", pct(r.char_precision))
                } else {
                    escape(r.status.as_str())
                }
            ));
            match thumbs.get(&r.sample_index) {
                Some(Ok(uri)) => {
                    h.push_str(&format!("<img class=\"thumb\" alt=\"page {}\" src=\"{uri}\">", escape(&r.sample_id)))
                }
                Some(Err(why)) => h.push_str(&format!("<p class=\"err\">no thumbnail: {}</p>", escape(why))),
                None => {}
            }
            h.push_str("<div class=\"facts\"><ul>");
            let mut facts = vec![
                format!(
                    "word F1 {}, Fox precision {} (output words) / {} (GT words)",
                    pct(r.word_f1),
                    pct(r.fox_precision_out_words),
                    pct(r.fox_precision_gt_words)
                ),
                format!(
                    "{} text tokens on {} nominal vision tokens: ratio {:.2} (target {})",
                    r.n_text_tokens, r.n_vision_tokens_nominal, r.ratio_nominal, r.target_ratio
                ),
                format!("font {:.2} px on a {}×{} page", r.font_px, r.page_w_px, r.page_h_px),
                format!(
                    "{} characters in the ground truth, {} in the output; edit distance {}",
                    r.n_chars_gt, r.n_chars_out, r.edit_distance
                ),
            ];
            if r.runaway {
                facts.push(format!("runaway output ({})", r.runaway_reason));
            }
            if let Some(e) = &r.error {
                facts.push(format!("error: {e}"));
            }
            for f in facts {
                h.push_str(&format!("<li>{}</li>", escape(&f)));
            }
            h.push_str("</ul></div></div>\n");
            if let (Some(p), SampleStatus::Ok) = (p, r.status) {
                let l = lang(r);
                let segments = diff::diff(&norm.apply(&p.ground_truth, l), &norm.apply(&p.prediction, l), l);
                let (same, missing, extra) = diff::counts(&segments);
                h.push_str(&format!(
                    "<p>diff: {same} characters in both, {missing} missed, {extra} added or misread</p>\n<p class=\"diff\">{}</p>\n",
                    diff::html(&segments)
                ));
            }
            h.push_str("</section>\n");
        }
    }
    h.push_str("</body></html>\n");
    h
}

/// The worst page of each cell, for the report (details in `pages.html`).
pub fn worst_table(samples: &[SampleRow]) -> crate::tables::TextTable {
    let header = ["corpus", "mode", "ratio", "pages", "worst page", "char precision", "font px"];
    let rows = worst_first(samples)
        .iter()
        .map(|cell| {
            let w = cell[0];
            vec![
                w.corpus.clone(),
                w.mode.clone(),
                format!("{}{}", w.target_ratio, setting_tag(w)),
                cell.len().to_string(),
                w.sample_id.clone(),
                if w.status == SampleStatus::Ok { pct(w.char_precision) } else { w.status.to_string() },
                if crate::charts::has_font(w) { format!("{:.2}", w.font_px) } else { "–".into() },
            ]
        })
        .collect();
    crate::tables::TextTable {
        title: format!("worst page per cell (every page, worst first: {PAGES_FILE})"),
        header: header.iter().map(|s| s.to_string()).collect(),
        rows,
    }
}
