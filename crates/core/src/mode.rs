//! DeepSeek-OCR resolution modes and the one implementation of vision-token accounting.
//!
//! The modes, counts and tiling rule are described in docs/MODEL.md §2 and §3.3. Three different
//! numbers are called "vision tokens":
//!
//! - **nominal**: compressed feature vectors that carry image content (paper Table 1: 64 / 100 / 256 /
//!   400, Gundam `n·100 + 256`);
//! - **valid**: paper Eq. 1 for padded views, `ceil(N · min(w,h) / max(w,h))`; the HF code floors
//!   instead, exposed as [`VisionTokens::valid_floor`];
//! - **slots**: `<image>` placeholder positions in the decoder sequence, newline and view-separator
//!   rows included (73 / 111 / 273 / 421 / Gundam rule). This is what the decoder pays for.
//!
//! # Invariants
//! - Every count in the toolkit comes from [`Mode::vision_tokens`]; the renderer's ratio targeting,
//!   the model's prompt builder and the sweep's columns never recompute it.
//! - The Gundam tile grid comes from [`gundam_grid`], which reproduces the reference's candidate
//!   order (CPython set iteration order, sorted stably by tile count) and its tie rule exactly.
//! - DeepSeek-OCR-2 ([`Mode::V2`], [`Mode::V2Single`], docs/MODEL.md §14) counts in the same struct:
//!   no newline rows, so `slots = nominal + 1` (the view separator); its tile grid comes from
//!   [`v2_grid`] (transformers' `get_optimal_tiled_canvas` order and tie rule).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Patch size of SAM-base (pixels per patch side).
pub const PATCH_SIZE: u32 = 16;
/// Side reduction of the 16× token compressor (two stride-2 convolutions).
pub const DOWNSAMPLE: u32 = 4;
/// Pixels per compressed vision token side: `PATCH_SIZE · DOWNSAMPLE`.
pub const PIXELS_PER_TOKEN: u32 = PATCH_SIZE * DOWNSAMPLE;
/// The reference's default Gundam tile-count range (HF `dynamic_preprocess`).
pub const GUNDAM_MIN_TILES: u32 = 2;
/// See [`GUNDAM_MIN_TILES`]. vLLM's runner uses 6 (`MAX_CROPS`).
pub const GUNDAM_MAX_TILES: u32 = 9;
/// DeepSeek-OCR-2: side of the global view in crop mode (`size` of the image processor).
pub const V2_GLOBAL_SIZE: u32 = 1024;
/// DeepSeek-OCR-2: side of a local tile (`tile_size`), also the single view without cropping.
pub const V2_TILE_SIZE: u32 = 768;
/// DeepSeek-OCR-2: fewest local tiles when the image is tiled (`min_patches`).
pub const V2_MIN_TILES: u32 = 2;
/// DeepSeek-OCR-2: most local tiles (`max_patches`).
pub const V2_MAX_TILES: u32 = 6;

/// Errors of mode parsing and accounting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    #[error(
        "unknown mode {0:?}: expected tiny, small, base, large, gundam, custom:<base>x<image>[:crop] \
         (DeepSeek-OCR) or v2, v2-single (DeepSeek-OCR-2)"
    )]
    Unknown(String),
    #[error("mode {field} = {value} is not a positive multiple of 64")]
    NotMultipleOf64 { field: &'static str, value: u32 },
    #[error("image size {width}x{height} is empty")]
    EmptyImage { width: u32, height: u32 },
    #[error(
        "gundam tile range min {min} / max {max} is unsupported: min must be 1 or 2 and max in min..=12 \
         (the candidate order of the reference is tabulated for those)"
    )]
    UnsupportedTileRange { min: u32, max: u32 },
    #[error("DeepSeek-OCR-2 tile range min {min} / max {max} is unsupported: need 1 ≤ min ≤ max")]
    UnsupportedV2TileRange { min: u32, max: u32 },
}

/// A DeepSeek-OCR resolution mode (docs/MODEL.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Mode {
    /// 512² direct resize, 64 tokens.
    Tiny,
    /// 640² direct resize, 100 tokens.
    Small,
    /// 1024² fit + pad, 256 tokens.
    Base,
    /// 1280² fit + pad, 400 tokens.
    Large,
    /// 1024² global view + 640² tiles.
    Gundam,
    /// Any other `base_size` / `image_size` (multiples of 64), with or without tiling.
    Custom { base_size: u32, image_size: u32, crop: bool },
    /// DeepSeek-OCR-2 with cropping (its default): a 1024² fit + pad global view (256 tokens) and,
    /// when the long side exceeds 768, 2–6 local 768² tiles (144 tokens each); no newline rows.
    V2,
    /// DeepSeek-OCR-2 without cropping (`crop_to_patches = False`): one 768² fit + pad view, 144
    /// tokens.
    V2Single,
}

impl Mode {
    /// The four single-view modes and Gundam, in the order of the paper's Table 1.
    pub const OFFICIAL: [Mode; 5] = [Mode::Tiny, Mode::Small, Mode::Base, Mode::Large, Mode::Gundam];

    /// The modes of DeepSeek-OCR-2.
    pub const V2_MODES: [Mode; 2] = [Mode::V2, Mode::V2Single];

    /// Whether this is a DeepSeek-OCR-2 mode (read by the v2 engine; refused by the v1 engine).
    pub fn is_v2(self) -> bool {
        matches!(self, Mode::V2 | Mode::V2Single)
    }

    /// Builds a custom mode, rejecting sizes that are not positive multiples of 64.
    pub fn custom(base_size: u32, image_size: u32, crop: bool) -> Result<Mode, ModeError> {
        for (field, value) in [("base_size", base_size), ("image_size", image_size)] {
            if value == 0 || value % PIXELS_PER_TOKEN != 0 {
                return Err(ModeError::NotMultipleOf64 { field, value });
            }
        }
        Ok(Mode::Custom { base_size, image_size, crop })
    }

    /// Side of the global view (`base_size` in the reference config).
    pub fn base_size(self) -> u32 {
        match self {
            Mode::Tiny => 512,
            Mode::Small => 640,
            Mode::Base | Mode::Gundam | Mode::V2 => 1024,
            Mode::Large => 1280,
            Mode::V2Single => V2_TILE_SIZE,
            Mode::Custom { base_size, .. } => base_size,
        }
    }

    /// Side of a local tile in crop mode; equal to `base_size` in the native modes.
    pub fn image_size(self) -> u32 {
        match self {
            Mode::Gundam => 640,
            Mode::V2 => V2_TILE_SIZE,
            Mode::Custom { image_size, .. } => image_size,
            other => other.base_size(),
        }
    }

    /// Whether the mode tiles large images (`crop_mode` in the reference).
    pub fn crop(self) -> bool {
        match self {
            Mode::Gundam | Mode::V2 => true,
            Mode::Custom { crop, .. } => crop,
            _ => false,
        }
    }

    /// Side of the single (global) view that the encoder sees. Non-crop modes use `image_size`
    /// (HF `infer`), crop modes `base_size`.
    pub fn global_view_size(self) -> u32 {
        if self.crop() {
            self.base_size()
        } else {
            self.image_size()
        }
    }

    /// Whether the global view is a direct (aspect-destroying) resize rather than fit + pad:
    /// the reference stretches non-crop views of at most 640 px (Tiny, Small).
    pub fn stretches(self) -> bool {
        !self.crop() && self.image_size() <= 640
    }

    /// The page canvas the renderer fills for this mode: the global view's square for single-view
    /// modes, so nothing is padded; a 2×3 tile page (1280 × 1920) for crop modes.
    pub fn default_canvas(self) -> (u32, u32) {
        if self.crop() {
            (2 * self.image_size(), 3 * self.image_size())
        } else {
            let s = self.global_view_size();
            (s, s)
        }
    }

    /// Vision-token counts for an input image of `width × height` pixels.
    pub fn vision_tokens(self, width: u32, height: u32) -> Result<VisionTokens, ModeError> {
        if self.is_v2() {
            return self.vision_tokens_with_tiles(width, height, V2_MIN_TILES, V2_MAX_TILES);
        }
        self.vision_tokens_with_tiles(width, height, GUNDAM_MIN_TILES, GUNDAM_MAX_TILES)
    }

    /// DeepSeek-OCR-2's counts (docs/MODEL.md §14.6): the global view gives `q²` tokens (`q =
    /// ceil(side / 64)`: 256 for 1024, 144 for 768), each tile `ceil(768 / 64)² = 144`, one view
    /// separator; no newline rows. Valid counts scale the padded global view by Eq. 1 like v1's Base.
    fn v2_vision_tokens(
        self,
        width: u32,
        height: u32,
        min_tiles: u32,
        max_tiles: u32,
    ) -> Result<VisionTokens, ModeError> {
        let q = grid_side(self.global_view_size());
        let global_nominal = q * q;
        let short_over_long = f64::from(width.min(height)) / f64::from(width.max(height));
        let v = f64::from(global_nominal) * short_over_long;
        let grid = if self.crop() {
            v2_grid(width, height, self.image_size(), min_tiles, max_tiles)?
        } else {
            GundamGrid::NONE
        };
        let q2 = grid_side(self.image_size());
        let tile_nominal = q2 * q2 * grid.tiles();
        Ok(VisionTokens {
            nominal: global_nominal + tile_nominal,
            valid: v.ceil() as u32 + tile_nominal,
            valid_floor: v.floor() as u32 + tile_nominal,
            slots: global_nominal + tile_nominal + 1,
            grid,
        })
    }

    /// [`Mode::vision_tokens`] with a configurable Gundam tile range.
    pub fn vision_tokens_with_tiles(
        self,
        width: u32,
        height: u32,
        min_tiles: u32,
        max_tiles: u32,
    ) -> Result<VisionTokens, ModeError> {
        if width == 0 || height == 0 {
            return Err(ModeError::EmptyImage { width, height });
        }
        if self.is_v2() {
            return self.v2_vision_tokens(width, height, min_tiles, max_tiles);
        }
        let global = self.global_view_size();
        let q = grid_side(global);
        let global_nominal = q * q;
        let global_slots = q * (q + 1) + 1;
        // Eq. 1: the share of the padded canvas that holds the image.
        let short_over_long = f64::from(width.min(height)) / f64::from(width.max(height));
        let (valid_ceil, valid_floor) = if self.stretches() {
            (global_nominal, global_nominal)
        } else {
            let v = f64::from(global_nominal) * short_over_long;
            (v.ceil() as u32, v.floor() as u32)
        };
        let grid = if self.crop() {
            gundam_grid(width, height, self.image_size(), min_tiles, max_tiles)?
        } else {
            GundamGrid::NONE
        };
        let (tile_nominal, tile_slots) = if grid.has_tiles() {
            let q2 = grid_side(self.image_size());
            let nominal = q2 * q2 * grid.tiles();
            let slots = (q2 * grid.across + 1) * (q2 * grid.down);
            (nominal, slots)
        } else {
            (0, 0)
        };
        Ok(VisionTokens {
            nominal: global_nominal + tile_nominal,
            valid: valid_ceil + tile_nominal,
            valid_floor: valid_floor + tile_nominal,
            slots: global_slots + tile_slots,
            grid,
        })
    }

    /// Lower-case name, as accepted by [`Mode::from_str`].
    pub fn name(self) -> String {
        self.to_string()
    }
}

/// Compressed tokens per side of a square view: `ceil((s / 16) / 4)` (docs/MODEL.md §2).
pub fn grid_side(view_size: u32) -> u32 {
    (view_size / PATCH_SIZE).div_ceil(DOWNSAMPLE)
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Tiny => f.write_str("tiny"),
            Mode::Small => f.write_str("small"),
            Mode::Base => f.write_str("base"),
            Mode::Large => f.write_str("large"),
            Mode::Gundam => f.write_str("gundam"),
            Mode::V2 => f.write_str("v2"),
            Mode::V2Single => f.write_str("v2-single"),
            Mode::Custom { base_size, image_size, crop } => {
                write!(f, "custom:{base_size}x{image_size}{}", if *crop { ":crop" } else { "" })
            }
        }
    }
}

impl FromStr for Mode {
    type Err = ModeError;

    fn from_str(s: &str) -> Result<Mode, ModeError> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "tiny" => return Ok(Mode::Tiny),
            "small" => return Ok(Mode::Small),
            "base" => return Ok(Mode::Base),
            "large" => return Ok(Mode::Large),
            "gundam" => return Ok(Mode::Gundam),
            "v2" => return Ok(Mode::V2),
            "v2-single" => return Ok(Mode::V2Single),
            _ => {}
        }
        let unknown = || ModeError::Unknown(s.to_string());
        let rest = lower.strip_prefix("custom:").ok_or_else(unknown)?;
        let (sizes, crop) = match rest.strip_suffix(":crop") {
            Some(sizes) => (sizes, true),
            None => (rest, false),
        };
        let (b, i) = sizes.split_once('x').ok_or_else(unknown)?;
        let base_size = b.parse().map_err(|_| unknown())?;
        let image_size = i.parse().map_err(|_| unknown())?;
        Mode::custom(base_size, image_size, crop)
    }
}

impl From<Mode> for String {
    fn from(m: Mode) -> String {
        m.to_string()
    }
}

impl TryFrom<String> for Mode {
    type Error = ModeError;
    fn try_from(s: String) -> Result<Mode, ModeError> {
        s.parse()
    }
}

/// The three vision-token counts of one image in one mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisionTokens {
    /// Feature vectors carrying image content (paper Table 1).
    pub nominal: u32,
    /// Paper Eq. 1 (`ceil`) for padded views plus every tile's tokens.
    pub valid: u32,
    /// The HF code's variant of Eq. 1 (`floor`).
    pub valid_floor: u32,
    /// `<image>` placeholder slots in the decoder prompt, newline and separator rows included.
    pub slots: u32,
    /// The Gundam tile grid (`1 × 1` = no tiles).
    pub grid: GundamGrid,
}

/// A tile grid: `across` tiles per row (width) and `down` rows (height), as the reference's
/// `images_spatial_crop = [across, down]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GundamGrid {
    pub across: u32,
    pub down: u32,
}

impl GundamGrid {
    /// No local tiles.
    pub const NONE: GundamGrid = GundamGrid { across: 1, down: 1 };

    /// Number of local tiles (0 when there are none).
    pub fn tiles(self) -> u32 {
        if self.has_tiles() {
            self.across * self.down
        } else {
            0
        }
    }

    /// Whether the reference emits local tiles for this grid (`across > 1 || down > 1`).
    pub fn has_tiles(self) -> bool {
        self.across > 1 || self.down > 1
    }
}

/// Candidate `(across, down)` grids in the reference's visiting order, for each supported
/// `(min_tiles, max_tiles)`: CPython's iteration order of the candidate set, stably sorted by tile
/// count. Generated with CPython 3.11 (tuple hashing is unchanged since 3.8) by
/// `sorted(set(...), key=lambda x: x[0] * x[1])` exactly as in `dynamic_preprocess`.
/// The order with `min = 1` is the order with `min = 2` with `(1, 1)` in front.
const CANDIDATES_MIN2: &[(u32, &[(u32, u32)])] = &[
    (2, &[(1, 2), (2, 1)]),
    (3, &[(1, 2), (2, 1), (3, 1), (1, 3)]),
    (4, &[(1, 2), (2, 1), (3, 1), (1, 3), (4, 1), (1, 4), (2, 2)]),
    (5, &[(1, 2), (2, 1), (3, 1), (1, 3), (4, 1), (1, 4), (2, 2), (1, 5), (5, 1)]),
    (6, &[(1, 2), (2, 1), (3, 1), (1, 3), (4, 1), (1, 4), (2, 2), (1, 5), (5, 1), (6, 1), (2, 3), (1, 6), (3, 2)]),
    (
        7,
        &[
            (1, 2),
            (2, 1),
            (3, 1),
            (1, 3),
            (4, 1),
            (1, 4),
            (2, 2),
            (1, 5),
            (5, 1),
            (6, 1),
            (2, 3),
            (1, 6),
            (3, 2),
            (7, 1),
            (1, 7),
        ],
    ),
    (
        8,
        &[
            (1, 2),
            (2, 1),
            (3, 1),
            (1, 3),
            (2, 2),
            (4, 1),
            (1, 4),
            (5, 1),
            (1, 5),
            (1, 6),
            (6, 1),
            (3, 2),
            (2, 3),
            (7, 1),
            (1, 7),
            (4, 2),
            (2, 4),
            (1, 8),
            (8, 1),
        ],
    ),
    (
        9,
        &[
            (1, 2),
            (2, 1),
            (3, 1),
            (1, 3),
            (2, 2),
            (4, 1),
            (1, 4),
            (5, 1),
            (1, 5),
            (1, 6),
            (6, 1),
            (3, 2),
            (2, 3),
            (7, 1),
            (1, 7),
            (4, 2),
            (2, 4),
            (1, 8),
            (8, 1),
            (1, 9),
            (3, 3),
            (9, 1),
        ],
    ),
    (
        10,
        &[
            (1, 2),
            (2, 1),
            (3, 1),
            (1, 3),
            (2, 2),
            (4, 1),
            (1, 4),
            (5, 1),
            (1, 5),
            (1, 6),
            (6, 1),
            (3, 2),
            (2, 3),
            (7, 1),
            (1, 7),
            (4, 2),
            (2, 4),
            (1, 8),
            (8, 1),
            (1, 9),
            (3, 3),
            (9, 1),
            (2, 5),
            (5, 2),
            (10, 1),
            (1, 10),
        ],
    ),
    (
        11,
        &[
            (1, 2),
            (2, 1),
            (3, 1),
            (1, 3),
            (2, 2),
            (4, 1),
            (1, 4),
            (5, 1),
            (1, 5),
            (1, 6),
            (6, 1),
            (3, 2),
            (2, 3),
            (7, 1),
            (1, 7),
            (4, 2),
            (2, 4),
            (1, 8),
            (8, 1),
            (1, 9),
            (3, 3),
            (9, 1),
            (2, 5),
            (5, 2),
            (10, 1),
            (1, 10),
            (11, 1),
            (1, 11),
        ],
    ),
    (
        12,
        &[
            (1, 2),
            (2, 1),
            (3, 1),
            (1, 3),
            (2, 2),
            (4, 1),
            (1, 4),
            (5, 1),
            (1, 5),
            (1, 6),
            (6, 1),
            (3, 2),
            (2, 3),
            (7, 1),
            (1, 7),
            (4, 2),
            (2, 4),
            (1, 8),
            (8, 1),
            (1, 9),
            (3, 3),
            (9, 1),
            (2, 5),
            (5, 2),
            (10, 1),
            (1, 10),
            (11, 1),
            (1, 11),
            (12, 1),
            (3, 4),
            (4, 3),
            (1, 12),
            (6, 2),
            (2, 6),
        ],
    ),
];

/// The Gundam tile grid of the reference's `dynamic_preprocess` (docs/MODEL.md §3.3).
///
/// Returns [`GundamGrid::NONE`] when both sides fit one tile (`width ≤ tile && height ≤ tile`);
/// otherwise the candidate closest in aspect ratio, with the reference's tie rule: on an exact
/// float tie a later candidate wins only if `width·height > 0.5·tile²·across·down`.
pub fn gundam_grid(
    width: u32,
    height: u32,
    tile: u32,
    min_tiles: u32,
    max_tiles: u32,
) -> Result<GundamGrid, ModeError> {
    if width == 0 || height == 0 {
        return Err(ModeError::EmptyImage { width, height });
    }
    if width <= tile && height <= tile {
        return Ok(GundamGrid::NONE);
    }
    let candidates = CANDIDATES_MIN2
        .iter()
        .find(|(max, _)| *max == max_tiles)
        .map(|(_, c)| *c)
        .filter(|_| min_tiles == 1 || min_tiles == 2)
        .ok_or(ModeError::UnsupportedTileRange { min: min_tiles, max: max_tiles })?;
    let leading: &[(u32, u32)] = if min_tiles == 1 { &[(1, 1)] } else { &[] };
    let aspect = f64::from(width) / f64::from(height);
    let area = f64::from(width) * f64::from(height);
    let tile_area = f64::from(tile) * f64::from(tile);
    let mut best_diff = f64::INFINITY;
    let mut best = (1, 1);
    for &(i, j) in leading.iter().chain(candidates) {
        let diff = (aspect - f64::from(i) / f64::from(j)).abs();
        if diff < best_diff {
            best_diff = diff;
            best = (i, j);
        } else if diff == best_diff && area > 0.5 * tile_area * f64::from(i) * f64::from(j) {
            best = (i, j);
        }
    }
    Ok(GundamGrid { across: best.0, down: best.1 })
}

/// DeepSeek-OCR-2's tile grid (transformers' `get_optimal_tiled_canvas`, docs/MODEL.md §14.5).
///
/// Returns [`GundamGrid::NONE`] when the long side fits one tile (`max(width, height) ≤ tile`).
/// Otherwise candidates `(across, down)` with `min ≤ across·down ≤ max` are visited across-major
/// (`across` 1..=max outer, `down` 1..=max inner), stably sorted by tile count; the one whose
/// `across / down` is closest to `width / height` wins, and on an exact float tie a later candidate
/// replaces it when `width·height > 0.5·tile²·across·down`.
pub fn v2_grid(width: u32, height: u32, tile: u32, min_tiles: u32, max_tiles: u32) -> Result<GundamGrid, ModeError> {
    if width == 0 || height == 0 {
        return Err(ModeError::EmptyImage { width, height });
    }
    if min_tiles == 0 || min_tiles > max_tiles {
        return Err(ModeError::UnsupportedV2TileRange { min: min_tiles, max: max_tiles });
    }
    if width.max(height) <= tile {
        return Ok(GundamGrid::NONE);
    }
    let mut candidates: Vec<(u32, u32)> = (1..=max_tiles)
        .flat_map(|a| (1..=max_tiles).map(move |d| (a, d)))
        .filter(|(a, d)| (min_tiles..=max_tiles).contains(&(a * d)))
        .collect();
    candidates.sort_by_key(|(a, d)| a * d); // stable, as Python's `sorted`
    let aspect = f64::from(width) / f64::from(height);
    let area = f64::from(width) * f64::from(height);
    let tile_area = f64::from(tile) * f64::from(tile);
    let mut best_diff = f64::INFINITY;
    let mut best = (1, 1);
    for (a, d) in candidates {
        let diff = (aspect - f64::from(a) / f64::from(d)).abs();
        if diff < best_diff {
            best_diff = diff;
            best = (a, d);
        } else if diff == best_diff && area > 0.5 * tile_area * f64::from(a) * f64::from(d) {
            best = (a, d);
        }
    }
    Ok(GundamGrid { across: best.0, down: best.1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        mode: Mode,
        size: (u32, u32),
        nominal: u32,
        valid: u32,
        valid_floor: u32,
        slots: u32,
        grid: (u32, u32),
    }

    #[test]
    fn vision_token_table_matches_spec() {
        let a4 = (1240, 1754); // A4 at 150 DPI, ratio 0.70696
        let cases = [
            Case {
                mode: Mode::Tiny,
                size: (512, 512),
                nominal: 64,
                valid: 64,
                valid_floor: 64,
                slots: 73,
                grid: (1, 1),
            },
            Case { mode: Mode::Tiny, size: a4, nominal: 64, valid: 64, valid_floor: 64, slots: 73, grid: (1, 1) },
            Case { mode: Mode::Small, size: a4, nominal: 100, valid: 100, valid_floor: 100, slots: 111, grid: (1, 1) },
            Case {
                mode: Mode::Base,
                size: (1024, 1024),
                nominal: 256,
                valid: 256,
                valid_floor: 256,
                slots: 273,
                grid: (1, 1),
            },
            Case { mode: Mode::Base, size: a4, nominal: 256, valid: 181, valid_floor: 180, slots: 273, grid: (1, 1) },
            Case { mode: Mode::Large, size: a4, nominal: 400, valid: 283, valid_floor: 282, slots: 421, grid: (1, 1) },
            // The worked Gundam examples of docs/MODEL.md §2.
            Case { mode: Mode::Gundam, size: a4, nominal: 856, valid: 781, valid_floor: 780, slots: 903, grid: (2, 3) },
            Case {
                mode: Mode::Gundam,
                size: (1000, 800),
                nominal: 656,
                valid: 605,
                valid_floor: 604,
                slots: 693,
                grid: (2, 2),
            },
            Case {
                mode: Mode::Gundam,
                size: (800, 600),
                nominal: 856,
                valid: 792,
                valid_floor: 792,
                slots: 893,
                grid: (3, 2),
            },
            Case {
                mode: Mode::Gundam,
                size: (3000, 1000),
                nominal: 556,
                valid: 386,
                valid_floor: 385,
                slots: 583,
                grid: (3, 1),
            },
            Case {
                mode: Mode::Gundam,
                size: (600, 800),
                nominal: 856,
                valid: 792,
                valid_floor: 792,
                slots: 903,
                grid: (2, 3),
            },
            Case {
                mode: Mode::Gundam,
                size: (640, 480),
                nominal: 256,
                valid: 192,
                valid_floor: 192,
                slots: 273,
                grid: (1, 1),
            },
        ];
        let mut failures = Vec::new();
        for c in &cases {
            let got = c.mode.vision_tokens(c.size.0, c.size.1).unwrap();
            let want = (c.nominal, c.valid, c.valid_floor, c.slots, c.grid);
            let have = (got.nominal, got.valid, got.valid_floor, got.slots, (got.grid.across, got.grid.down));
            if want != have {
                failures.push(format!("{} {:?}: want {want:?}, got {have:?}", c.mode, c.size));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn a4_valid_tokens_match_paper_eq1() {
        // docs/MODEL.md §2: an A4 page (ratio 0.7072) gives Base 181 (floor) / 182 (ceil).
        let t = Mode::Base.vision_tokens(2100, 2970).unwrap();
        assert_eq!((t.valid_floor, t.valid), (181, 182));
        let t = Mode::Large.vision_tokens(2100, 2970).unwrap();
        assert_eq!((t.valid_floor, t.valid), (282, 283));
    }

    #[test]
    fn candidate_order_matches_reference_listing() {
        // The visiting order of CPython for at most 6 tiles (the vLLM runner's cap), docs/MODEL.md §3.3.
        let max6 = CANDIDATES_MIN2.iter().find(|(m, _)| *m == 6).unwrap().1;
        assert_eq!(
            max6,
            &[(1, 2), (2, 1), (3, 1), (1, 3), (4, 1), (1, 4), (2, 2), (1, 5), (5, 1), (6, 1), (2, 3), (1, 6), (3, 2)]
        );
        for (max, c) in CANDIDATES_MIN2 {
            let expected: usize = (1..=*max)
                .flat_map(|i| (1..=*max).map(move |j| (i, j)))
                .filter(|(i, j)| (2..=*max).contains(&(i * j)))
                .count();
            assert_eq!(c.len(), expected, "max {max}");
            assert!(c.windows(2).all(|w| w[0].0 * w[0].1 <= w[1].0 * w[1].1), "max {max} not sorted by count");
        }
    }

    #[test]
    fn tie_rule_prefers_later_candidate_only_for_large_images() {
        // ar = 1.25 is equidistant from (1,2) and (2,1): |1.25 − 0.5| = |1.25 − 2| = 0.75, an exact
        // float tie that the image area decides.
        let small = gundam_grid(650, 520, 640, 2, 9).unwrap();
        assert_eq!((small.across, small.down), (2, 2), "(2,2) is closer than either");
        let g = gundam_grid(1250, 1000, 640, 2, 2).unwrap();
        // area 1.25e6 > 0.5·640²·2 = 409600, so the later (2,1) wins the tie.
        assert_eq!((g.across, g.down), (2, 1));
        let g = gundam_grid(650, 520, 640, 2, 2).unwrap();
        // area 338000 ≤ 409600: the first candidate (1,2) stays.
        assert_eq!((g.across, g.down), (1, 2));
    }

    #[test]
    fn v2_counts_have_no_newline_rows_and_one_separator() {
        // 256 global + 144 per tile + 1 separator (docs/MODEL.md §14.6).
        let cases = [
            ((700, 700), (0, 1, 1), 257),   // fits one tile: global view only
            ((768, 500), (0, 1, 1), 257),   // long side exactly 768: still untiled
            ((600, 848), (6, 2, 3), 1121),  // the committed portrait page
            ((800, 600), (6, 3, 2), 1121),  // the committed landscape page
            ((1000, 1000), (4, 2, 2), 833), // square: 2×2
            ((1600, 800), (2, 2, 1), 545),  // 2:1
            ((3000, 1000), (3, 3, 1), 689), // 3:1
            ((1000, 4000), (4, 1, 4), 833), // 1:4
            ((5000, 1000), (5, 5, 1), 977), // 5:1
        ];
        for ((w, h), (tiles, across, down), slots) in cases {
            let t = Mode::V2.vision_tokens(w, h).unwrap();
            assert_eq!((t.grid.tiles(), t.grid.across, t.grid.down), (tiles, across, down), "{w}x{h}");
            assert_eq!(t.nominal, 256 + 144 * tiles, "{w}x{h}");
            assert_eq!(t.slots, t.nominal + 1, "{w}x{h}");
            assert_eq!(t.slots, slots, "{w}x{h}");
        }
        let single = Mode::V2Single.vision_tokens(600, 848).unwrap();
        assert_eq!((single.nominal, single.slots, single.grid.tiles()), (144, 145, 0));
        // Eq. 1 on the padded global view: 600/848 of 256 → 181.1 → 182 (ceil) / 181 (floor).
        let t = Mode::V2.vision_tokens(600, 848).unwrap();
        assert_eq!((t.valid, t.valid_floor), (182 + 864, 181 + 864));
    }

    #[test]
    fn v2_candidates_are_across_major_and_sorted_stably() {
        // A 1:1 image ties (1,2)/(2,1) at count 2 only with max 2; with max 6 (2,2) is exact.
        assert_eq!(v2_grid(1000, 1000, 768, 2, 6).unwrap(), GundamGrid { across: 2, down: 2 });
        // ar 1.25: (1,2) and (2,1) are equidistant (0.75); the area decides as in v1's rule.
        assert_eq!(v2_grid(1250, 1000, 768, 2, 2).unwrap(), GundamGrid { across: 2, down: 1 });
        assert_eq!(v2_grid(800, 640, 768, 2, 2).unwrap(), GundamGrid { across: 1, down: 2 });
        assert!(v2_grid(800, 640, 768, 3, 2).is_err());
    }

    #[test]
    fn mode_names_round_trip() {
        for m in Mode::OFFICIAL.into_iter().chain(Mode::V2_MODES).chain([Mode::custom(768, 512, true).unwrap()]) {
            assert_eq!(m.to_string().parse::<Mode>().unwrap(), m);
        }
        assert!(matches!("huge".parse::<Mode>(), Err(ModeError::Unknown(_))));
        assert!(matches!(
            "custom:1000x640".parse::<Mode>(),
            Err(ModeError::NotMultipleOf64 { field: "base_size", .. })
        ));
        assert!(Mode::Base.vision_tokens(0, 10).is_err());
        assert!(Mode::Gundam.vision_tokens_with_tiles(2000, 1000, 3, 9).is_err());
    }
}
