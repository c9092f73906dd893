//! The "Baseline" section of a sweep's report when its spec names a baseline engine (`sweep
//! --baseline`): which engine read which pages, where the baseline's run and the comparison are,
//! and each engine's mean character precision per cell side by side (from the two runs' files).

use std::collections::BTreeMap;
use std::path::Path;

use occ_eval::schema::SummaryRow;
use occ_eval::sweep::{baseline_dir, BASELINE_COMPARE_DIR};

use crate::document::Document;
use crate::tables::{escape, TextTable};
use crate::ReportInput;

/// The metric the section puts side by side.
const METRIC: &str = "char_precision";

type Key = (String, String, u64, String);

fn key(r: &SummaryRow) -> Key {
    let setting = format!("{} · {} · {}", r.degradation, r.font_family, r.line_height);
    (r.corpus.clone(), r.mode.clone(), r.target_ratio.to_bits(), setting)
}

fn mean(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "–".into()
    }
}

/// Adds the section to `doc` when the run in `dir` has a baseline (nothing otherwise).
pub(crate) fn section(doc: &mut Document, dir: &Path, input: &ReportInput) {
    let m = &input.manifest;
    let Some(engine) = m.spec.baseline else { return };
    let main = m.spec.engine;
    let bdir = baseline_dir(dir, engine);
    let folder = bdir.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
    let compare_html = format!("{BASELINE_COMPARE_DIR}/{}", crate::compare::HTML_FILE);
    doc.heading("Baseline");
    let baseline = ReportInput::load(&bdir).ok();
    let (md, html) = match &baseline {
        None => {
            let text = format!(
                "The same pages are to be read by the baseline engine {engine} into {folder}/, which is not there yet: \
                 finish it with `compress-bench sweep --resume {}`.",
                dir.display()
            );
            (format!("{text}\n\n"), format!("<p>{}</p>\n", escape(&text)))
        }
        Some(b) => {
            let bm = &b.manifest;
            let status = if bm.status == occ_eval::RunStatus::Complete && dir.join(&compare_html).is_file() {
                String::new()
            } else {
                format!(
                    " The baseline is not finished (its run is {}, the comparison {}written): continue with \
                     `compress-bench sweep --resume {}`.",
                    bm.status,
                    if dir.join(&compare_html).is_file() { "" } else { "not " },
                    dir.display()
                )
            };
            let lead = format!(
                "The same pages (corpora {}, seed {}, {} pages per cell) were read by two engines: {main} (this run, {} \
                 samples) and the baseline {engine} ({} samples, its own run in {folder}/).",
                m.spec.corpora.join(", "),
                m.spec.seed,
                m.spec.pages,
                m.n_samples_done,
                bm.n_samples_done,
            );
            let md = format!(
                "{lead} Baseline report: [{folder}/report.html]({folder}/report.html); paired comparison ({engine} \
                 first): [{compare_html}]({compare_html}).{status}\n\n"
            );
            let html = format!(
                "<p>{} Baseline report: <a href=\"{folder}/report.html\">{folder}/report.html</a>; paired comparison \
                 ({engine} first): <a href=\"{compare_html}\">{compare_html}</a>.{}</p>\n",
                escape(&lead),
                escape(&status)
            );
            (md, html)
        }
    };
    doc.raw(&md, &html);
    let Some(b) = baseline else { return };
    let theirs: BTreeMap<Key, &SummaryRow> =
        b.summary.iter().filter(|r| r.metric == METRIC).map(|r| (key(r), r)).collect();
    let settings_vary = input
        .summary
        .iter()
        .filter(|r| r.metric == METRIC)
        .map(|r| key(r).3)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        > 1;
    let mut header: Vec<String> = vec!["corpus".into(), "mode".into(), "ratio".into()];
    if settings_vary {
        header.push("page setting".into());
    }
    header.extend([
        "pages".into(),
        format!("{main} (this run)"),
        format!("{engine} (baseline)"),
        format!("{main} − {engine}"),
    ]);
    let rows = input
        .summary
        .iter()
        .filter(|r| r.metric == METRIC)
        .map(|r| {
            let k = key(r);
            let other = theirs.get(&k);
            let mut row = vec![r.corpus.clone(), r.mode.clone(), format!("{}", r.target_ratio)];
            if settings_vary {
                row.push(k.3.clone());
            }
            let b_mean = other.map_or(f64::NAN, |o| o.mean);
            row.extend([
                format!("{} / {}", r.n, other.map_or(0, |o| o.n)),
                mean(r.mean),
                mean(b_mean),
                mean(r.mean - b_mean),
            ]);
            row
        })
        .collect();
    doc.tables(&[TextTable {
        title: format!("Character precision, mean per cell: {main} beside the baseline {engine} (same pages)"),
        header,
        rows,
    }]);
}
