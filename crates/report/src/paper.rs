//! The paper's Table 2 (Fox, English, 100 pages; docs/MODEL.md §11.1), verbatim.

/// One bin of Table 2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperBin {
    /// GT text-token range of the bin.
    pub tokens: (u32, u32),
    /// Precision with 64 vision tokens (Tiny), in [0, 1].
    pub precision_64: f64,
    /// Mean compression with 64 vision tokens.
    pub compression_64: f64,
    pub precision_100: f64,
    pub compression_100: f64,
    pub pages: u32,
}

/// Table 2 of the DeepSeek-OCR paper. "Precision" is undefined there; docs/MODEL.md §11.1 argues it is
/// Fox's set precision and compares its two readings.
pub const TABLE2: [PaperBin; 7] = [
    PaperBin {
        tokens: (600, 700),
        precision_64: 0.965,
        compression_64: 10.5,
        precision_100: 0.985,
        compression_100: 6.7,
        pages: 7,
    },
    PaperBin {
        tokens: (700, 800),
        precision_64: 0.938,
        compression_64: 11.8,
        precision_100: 0.973,
        compression_100: 7.5,
        pages: 28,
    },
    PaperBin {
        tokens: (800, 900),
        precision_64: 0.838,
        compression_64: 13.2,
        precision_100: 0.968,
        compression_100: 8.5,
        pages: 28,
    },
    PaperBin {
        tokens: (900, 1000),
        precision_64: 0.859,
        compression_64: 15.1,
        precision_100: 0.968,
        compression_100: 9.7,
        pages: 14,
    },
    PaperBin {
        tokens: (1000, 1100),
        precision_64: 0.793,
        compression_64: 16.5,
        precision_100: 0.915,
        compression_100: 10.6,
        pages: 11,
    },
    PaperBin {
        tokens: (1100, 1200),
        precision_64: 0.764,
        compression_64: 17.7,
        precision_100: 0.898,
        compression_100: 11.3,
        pages: 8,
    },
    PaperBin {
        tokens: (1200, 1300),
        precision_64: 0.591,
        compression_64: 19.7,
        precision_100: 0.871,
        compression_100: 12.6,
        pages: 4,
    },
];

/// Paper points `(compression, precision)` for a mode name: Tiny = 64 tokens, Small = 100.
pub fn points_for_mode(mode: &str) -> Option<Vec<(f64, f64)>> {
    TABLE2.iter().map(|b| point(b, mode)).collect()
}

/// The paper's bin with exactly this ground-truth token range, if any.
pub fn bin(tokens: (u32, u32)) -> Option<&'static PaperBin> {
    TABLE2.iter().find(|b| b.tokens == tokens)
}

/// The paper's `(compression, precision)` of a bin for a mode name (Tiny and Small only).
pub fn point(bin: &PaperBin, mode: &str) -> Option<(f64, f64)> {
    match mode {
        "tiny" => Some((bin.compression_64, bin.precision_64)),
        "small" => Some((bin.compression_100, bin.precision_100)),
        _ => None,
    }
}

/// Metrics whose charts carry the paper's points: Fox set precision read as unique output words
/// found in the ground truth ÷ unique output words (the reading that reproduces Table 2 on real
/// model outputs, docs/MODEL.md §11.1), and character precision for reference. The other reading
/// (`fox_precision_gt_words`) is drawn and tabulated, without the paper's points.
pub const PAPER_METRICS: [&str; 2] = ["fox_precision_out_words", "char_precision"];
