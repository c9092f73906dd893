//! Order of the vision rows inside the `<image>` placeholder span (docs/MODEL.md §6).
//!
//! - Global view (`h × w` features): each feature row followed by one `image_newline` →
//!   `h·(w + 1)` rows.
//! - Local tiles (only when the grid has more than one tile): the tiles are stitched into one
//!   `(down·h2) × (across·w2)` grid, row by row across tiles, each big row followed by one
//!   `image_newline` → `down·h2·(across·w2 + 1)` rows.
//! - Order: `[local block] [global block] [view_seperator]`.
//!
//! The row count equals [`occ_core::VisionTokens::slots`] for every mode (tested).

use candle_core::{Result, Tensor};
use occ_core::GundamGrid;

fn square_side(n: usize, what: &str) -> Result<usize> {
    let s = (n as f64).sqrt() as usize;
    if s * s != n {
        candle_core::bail!("layout: {what} has {n} feature rows, not a square grid");
    }
    Ok(s)
}

/// Appends `newline` after each row of a `(rows, cols, c)` grid → `(rows·(cols + 1), c)`.
fn with_newlines(grid: &Tensor, newline: &Tensor) -> Result<Tensor> {
    let (rows, _, c) = grid.dims3()?;
    let nl = newline.reshape((1, 1, c))?.broadcast_as((rows, 1, c))?.to_dtype(grid.dtype())?;
    let out = Tensor::cat(&[grid, &nl], 1)?;
    let (r, k, c) = out.dims3()?;
    out.reshape((r * k, c))
}

/// The rows of a batch of global-only views (no local tiles), as [`lay_out`] lays out each one.
///
/// # Shapes
/// `global`: (b, h·w, c); `newline`, `separator`: (c) → (b, h·(w + 1) + 1, c).
pub fn lay_out_batch(global: &Tensor, newline: &Tensor, separator: &Tensor) -> Result<Tensor> {
    let (b, n, c) = global.dims3()?;
    let side = square_side(n, "the global view")?;
    let nl = newline.reshape((1, 1, 1, c))?.to_dtype(global.dtype())?.broadcast_as((b, side, 1, c))?;
    let rows = Tensor::cat(&[&global.reshape((b, side, side, c))?, &nl], 2)?.reshape((b, side * (side + 1), c))?;
    let sep = separator.reshape((1, 1, c))?.to_dtype(global.dtype())?.broadcast_as((b, 1, c))?;
    Tensor::cat(&[&rows, &sep], 1)
}

/// The rows of one image.
///
/// # Shapes
/// `global`: (h·w, c); `tiles`: (across·down, h2·w2, c) with the grid, or `None`;
/// `newline`, `separator`: (c) → (slots, c).
pub fn lay_out(
    global: &Tensor,
    tiles: Option<(&Tensor, GundamGrid)>,
    newline: &Tensor,
    separator: &Tensor,
) -> Result<Tensor> {
    let (n, c) = global.dims2()?;
    let side = square_side(n, "the global view")?;
    let global_rows = with_newlines(&global.reshape((side, side, c))?, newline)?;
    let sep = separator.reshape((1, c))?.to_dtype(global.dtype())?;
    match tiles {
        Some((tiles, grid)) if grid.has_tiles() => {
            let (count, n2, c2) = tiles.dims3()?;
            let (across, down) = (grid.across as usize, grid.down as usize);
            if count != across * down || c2 != c {
                candle_core::bail!(
                    "layout: expected {} tiles of width {c} for a {across}x{down} grid, got {count} of width {c2}",
                    across * down
                );
            }
            let s2 = square_side(n2, "a tile")?;
            let big = tiles
                .reshape((down, across, s2, s2, c))?
                .permute((0, 2, 1, 3, 4))? // (down, h2, across, w2, c)
                .contiguous()?
                .reshape((down * s2, across * s2, c))?;
            let local_rows = with_newlines(&big, newline)?;
            Tensor::cat(&[&local_rows, &global_rows, &sep], 0)
        }
        _ => Tensor::cat(&[&global_rows, &sep], 0),
    }
}
