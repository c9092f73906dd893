//! Grounded output (`<|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2], …]<|/det|>`, docs/MODEL.md §10.5)
//! and the post-processing of decoded text (§10.4).

use serde::{Deserialize, Serialize};

/// A box on the model's 0..999 grid, relative to the original image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridBox {
    pub x1: u32,
    pub y1: u32,
    pub x2: u32,
    pub y2: u32,
}

impl GridBox {
    /// Pixel box of an image of `width × height`, as the reference converts (`int(x / 999 · w)`).
    pub fn to_pixels(self, width: u32, height: u32) -> [u32; 4] {
        let px = |v: u32, side: u32| (f64::from(v) / 999.0 * f64::from(side)) as u32;
        [px(self.x1, width), px(self.y1, height), px(self.x2, width), px(self.y2, height)]
    }
}

/// One `<|ref|>…<|/ref|><|det|>…<|/det|>` block and the text that follows it up to the next block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroundedBlock {
    pub label: String,
    pub boxes: Vec<GridBox>,
    /// The block's content (text after `<|/det|>` until the next `<|ref|>`), trimmed.
    pub text: String,
}

const REF: &str = "<|ref|>";
const REF_END: &str = "<|/ref|>";
const DET: &str = "<|det|>";
const DET_END: &str = "<|/det|>";
const EOS_TEXT: &str = "<｜end▁of▁sentence｜>";

/// Every well-formed block of `text` in order; malformed spans are skipped (the reference prints
/// and skips what its `eval` cannot parse).
pub fn parse_grounding(text: &str) -> Vec<GroundedBlock> {
    let mut blocks: Vec<GroundedBlock> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(REF) {
        let after_ref = &rest[start + REF.len()..];
        let Some(label_end) = after_ref.find(REF_END) else { break };
        let label = &after_ref[..label_end];
        let after_label = &after_ref[label_end + REF_END.len()..];
        let Some(det_body) = after_label.strip_prefix(DET) else {
            rest = after_label;
            continue;
        };
        let Some(det_end) = det_body.find(DET_END) else { break };
        let after_det = &det_body[det_end + DET_END.len()..];
        let content_end = after_det.find(REF).unwrap_or(after_det.len());
        if let Some(boxes) = parse_boxes(&det_body[..det_end]) {
            blocks.push(GroundedBlock {
                label: label.to_string(),
                boxes,
                text: after_det[..content_end].trim().to_string(),
            });
        }
        rest = &after_det[content_end..];
    }
    blocks
}

/// `[[x1, y1, x2, y2], …]` (integers, whitespace anywhere); `None` if malformed.
fn parse_boxes(s: &str) -> Option<Vec<GridBox>> {
    let s = s.trim();
    let inner = s.strip_prefix('[')?.strip_suffix(']')?.trim();
    let mut boxes = Vec::new();
    let mut rest = inner;
    while !rest.is_empty() {
        let body_start = rest.strip_prefix('[')?;
        let close = body_start.find(']')?;
        let nums: Vec<u32> =
            body_start[..close].split(',').map(|v| v.trim().parse::<u32>()).collect::<Result<_, _>>().ok()?;
        let [x1, y1, x2, y2] = nums[..] else { return None };
        boxes.push(GridBox { x1, y1, x2, y2 });
        rest = body_start[close + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some(boxes)
}

/// Decoded text → final text (docs/MODEL.md §10.4): strip one trailing EOS string, then surrounding
/// whitespace.
pub fn postprocess(decoded: &str) -> String {
    decoded.strip_suffix(EOS_TEXT).unwrap_or(decoded).trim().to_string()
}

/// The reference's markdown clean-up of grounded output (`infer(save_results=True)`): `image` blocks
/// become `![](images/k.jpg)`, the other ref/det spans are removed, `\coloneqq` → `:=`,
/// `\eqqcolon` → `=:`.
pub fn grounded_to_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut images = 0;
    while let Some(start) = rest.find(REF) {
        // `<|ref|>label<|/ref|><|det|>…<|/det|>` starting at `start`, as the reference's regex
        let span = &rest[start + REF.len()..];
        let parsed = span.split_once(REF_END).and_then(|(label, after)| {
            let body = after.strip_prefix(DET)?;
            let end = body.find(DET_END)?;
            Some((label, &body[end + DET_END.len()..]))
        });
        let Some((label, after_span)) = parsed else { break };
        out.push_str(&rest[..start]);
        if label == "image" {
            out.push_str(&format!("![](images/{images}.jpg)\n"));
            images += 1;
        }
        rest = after_span;
    }
    out.push_str(rest);
    out.replace("\\coloneqq", ":=").replace("\\eqqcolon", "=:")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "<|ref|>title<|/ref|><|det|>[[115, 165, 465, 201]]<|/det|>\n# Title \n\n\
        <|ref|>text<|/ref|><|det|>[[10,20,30,40], [50, 60, 70, 80]]<|/det|>\nBody $a \\coloneqq b$\n\n\
        <|ref|>image<|/ref|><|det|>[[0, 0, 999, 999]]<|/det|>\n";

    #[test]
    fn parses_labels_boxes_and_content() {
        let blocks = parse_grounding(SAMPLE);
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0].label, "title");
        assert_eq!(blocks[0].boxes, [GridBox { x1: 115, y1: 165, x2: 465, y2: 201 }]);
        assert_eq!(blocks[0].text, "# Title");
        assert_eq!(blocks[1].boxes.len(), 2);
        assert_eq!(blocks[1].boxes[1], GridBox { x1: 50, y1: 60, x2: 70, y2: 80 });
        assert_eq!(blocks[2].label, "image");
        assert_eq!(blocks[2].text, "");
    }

    #[test]
    fn malformed_boxes_are_skipped() {
        let t = "<|ref|>a<|/ref|><|det|>[[1, 2, 3]]<|/det|>x<|ref|>b<|/ref|><|det|>[[1,2,3,4]]<|/det|>y";
        let blocks = parse_grounding(t);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, "b");
        assert!(parse_grounding("plain text").is_empty());
    }

    #[test]
    fn pixels_follow_the_reference_rounding() {
        let b = GridBox { x1: 0, y1: 500, x2: 999, y2: 998 };
        assert_eq!(b.to_pixels(1240, 1754), [0, 877, 1240, 1752]);
    }

    #[test]
    fn postprocess_and_markdown() {
        assert_eq!(postprocess("  hello\n<｜end▁of▁sentence｜>"), "hello");
        assert_eq!(postprocess("x<｜end▁of▁sentence｜> "), "x<｜end▁of▁sentence｜>");
        let md = grounded_to_markdown(SAMPLE);
        assert_eq!(md, "\n# Title \n\n\nBody $a := b$\n\n![](images/0.jpg)\n\n");
    }
}
