//! The one Markdown and HTML path of every report: a report is a [`Document`], a sequence of blocks
//! (title, warnings, facts, paragraphs, headings, charts, tables), each written to `report.md` and to a
//! self-contained `report.html` (SVGs inlined) at once. The reports of sweeps, score runs, decay runs
//! (finished or not) and comparisons differ only in the blocks they add.

use std::path::{Path, PathBuf};

use crate::tables::{escape, TextTable};
use crate::{io_error, Chart, ReportError};

/// The style sheet of every HTML report.
pub const STYLE: &str = "body{font-family:sans-serif;max-width:1000px;margin:auto}\
     table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #bbb;padding:2px 6px;font-size:13px}\
     .warn{background:#fdd;border:2px solid #c00;padding:8px;font-weight:bold}";

/// A report being written, as Markdown and HTML side by side.
#[derive(Debug, Clone)]
pub struct Document {
    md: String,
    html: String,
}

impl Document {
    /// A document titled `title` (the Markdown `#` heading and the HTML `<h1>`); `page_title` is the
    /// HTML page's `<title>`.
    pub fn new(page_title: &str, title: &str) -> Document {
        let html = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n<style>{STYLE}</style>\n<title>{}</title></head><body>\n<h1>{}</h1>\n",
            escape(page_title),
            escape(title)
        );
        Document { md: format!("# {title}\n\n"), html }
    }

    /// A warning box: `lead` in bold, then `text` (may be empty).
    pub fn warning(&mut self, lead: &str, text: &str) {
        let sep = if text.is_empty() { "" } else { " " };
        self.md.push_str(&format!("> **{lead}**{sep}{text}\n\n"));
        self.html.push_str(&format!("<p class=\"warn\">{}{sep}{}</p>\n", escape(lead), escape(text)));
    }

    /// A list of `key: value` facts.
    pub fn facts(&mut self, facts: &[(String, String)]) {
        self.html.push_str("<ul>\n");
        for (k, v) in facts {
            self.md.push_str(&format!("- **{k}**: {v}\n"));
            self.html.push_str(&format!("<li><b>{}</b>: {}</li>\n", escape(k), escape(v)));
        }
        self.md.push('\n');
        self.html.push_str("</ul>\n");
    }

    /// A paragraph of plain text, after a blank line.
    pub fn paragraph(&mut self, text: &str) {
        self.blank_line();
        self.md.push_str(&format!("{text}\n\n"));
        self.html.push_str(&format!("<p>{}</p>\n", escape(text)));
    }

    /// A block given in both forms (for links and ready-made parts).
    pub fn raw(&mut self, md: &str, html: &str) {
        self.md.push_str(md);
        self.html.push_str(html);
    }

    /// A section heading (`##`, `<h2>`), after a blank line.
    pub fn heading(&mut self, text: &str) {
        self.blank_line();
        self.md.push_str(&format!("## {text}\n\n"));
        self.html.push_str(&format!("<h2>{}</h2>\n", escape(text)));
    }

    /// Charts: Markdown links to `plots/<file>`, the SVGs inlined in the HTML.
    pub fn charts(&mut self, charts: &[Chart]) {
        for c in charts {
            self.md.push_str(&format!("![{}](plots/{})\n\n", c.title, c.file));
            self.html.push_str(&format!("<figure>{}</figure>\n", crate::strip_xml_prolog(&c.svg)));
        }
    }

    /// Tables, one after the other.
    pub fn tables(&mut self, tables: &[TextTable]) {
        self.md.push_str(&tables.iter().map(TextTable::markdown).collect::<Vec<_>>().join("\n"));
        for t in tables {
            self.html.push_str(&t.html());
        }
    }

    /// Ends the Markdown so far with a blank line (a table or list must not run into what follows).
    fn blank_line(&mut self) {
        if !self.md.ends_with("\n\n") {
            self.md.push('\n');
        }
    }

    /// The finished `(report.md, report.html)`.
    pub fn finish(mut self) -> (String, String) {
        self.html.push_str("</body></html>\n");
        (self.md, self.html)
    }

    /// Finishes the document and writes it as `dir/<markdown>` and `dir/<html>`; returns the two paths.
    pub fn write(self, dir: &Path, markdown: &str, html: &str) -> Result<(PathBuf, PathBuf), ReportError> {
        let (md, page) = self.finish();
        let md_path = dir.join(markdown);
        std::fs::write(&md_path, md).map_err(io_error(&md_path))?;
        let html_path = dir.join(html);
        std::fs::write(&html_path, page).map_err(io_error(&html_path))?;
        Ok((md_path, html_path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_is_written_to_both_forms() {
        let mut d = Document::new("page <1>", "Title & more");
        d.warning("Careful:", "a <b> c");
        d.facts(&[("k".into(), "v".into())]);
        d.paragraph("text");
        d.heading("Tables");
        d.tables(&[TextTable { title: "t".into(), header: vec!["a".into()], rows: vec![vec!["1".into()]] }]);
        d.paragraph("after");
        d.heading("Next");
        let (md, html) = d.finish();
        assert_eq!(
            md,
            "# Title & more\n\n> **Careful:** a <b> c\n\n- **k**: v\n\ntext\n\n## Tables\n\n### t\n\n| a |\n| --- |\n| 1 |\n\nafter\n\n## Next\n\n"
        );
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</body></html>\n"));
        assert!(html.contains("<title>page &lt;1&gt;</title>") && html.contains("<h1>Title &amp; more</h1>"));
        assert!(html.contains("<p class=\"warn\">Careful: a &lt;b&gt; c</p>") && html.contains("<h2>Next</h2>"));
    }

    #[test]
    fn written_files_hold_the_finished_forms_and_a_missing_folder_is_named() {
        let dir = std::env::temp_dir().join(format!("occ-report-document-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut d = Document::new("p", "T");
        d.paragraph("text");
        let (md, html) = d.clone().finish();
        let (md_path, html_path) = d.clone().write(&dir, "a.md", "a.html").unwrap();
        assert_eq!((md_path.clone(), html_path.clone()), (dir.join("a.md"), dir.join("a.html")));
        assert_eq!(std::fs::read_to_string(md_path).unwrap(), md);
        assert_eq!(std::fs::read_to_string(html_path).unwrap(), html);
        let gone = dir.join("no-such-folder");
        let err = d.write(&gone, "a.md", "a.html").unwrap_err().to_string();
        assert!(err.starts_with(&gone.join("a.md").display().to_string()), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
