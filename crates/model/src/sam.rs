//! SAM-base image encoder and the 16× token compressor (`model.sam_model.*`, docs/MODEL.md §4).
//!
//! Patch embedding (conv 16×16 stride 16) → absolute positions (resized by antialiased bicubic when
//! the grid differs from the stored 64×64) → blocks (windowed, or global at
//! `global_attn_indexes`, with decomposed relative positions) → neck (1×1 conv, LayerNorm2d, 3×3
//! conv, LayerNorm2d) → `net_2`, `net_3` (3×3 stride-2 convs, no activation).
//!
//! Windowed blocks zero-pad the grid bottom/right to a multiple of the window and do **not** mask
//! the padding: padded positions act as keys and values (equal to the qkv bias after projection).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{conv2d, conv2d_no_bias, Conv2d, Conv2dConfig, VarBuilder};

use crate::config::SamConfig;
use crate::nn::attention::sdpa;
use crate::nn::interpolate::{resize_grid_bicubic_aa, resize_rows_linear};
use crate::nn::linear::{dense, Dense};
use crate::nn::norm::{layer_norm, LayerNorm, LayerNorm2d};
use crate::nn::window::{window_partition, window_unpartition};
use crate::nn::{no_probe, Derived, Probe};
use crate::ops::{vit_attention, Act, VitGrid};

/// `get_rel_pos(q, k, table)`: the table resized to `2·max(q, k) − 1` rows (linear), then gathered
/// at `rel[i][j] = i·max(k/q, 1) − j·max(q/k, 1) + (k − 1)·max(q/k, 1)` (truncated like `.long()`).
///
/// # Shapes
/// `table`: (rows, d) → (q, k, d).
pub fn get_rel_pos(q: usize, k: usize, table: &Tensor) -> Result<Tensor> {
    let (_, d) = table.dims2()?;
    let max_dist = 2 * q.max(k) - 1;
    let table = resize_rows_linear(table, max_dist)?;
    let (qf, kf) = (q as f64, k as f64);
    let q_scale = (kf / qf).max(1.0);
    let k_scale = (qf / kf).max(1.0);
    let mut idx = Vec::with_capacity(q * k);
    for i in 0..q {
        for j in 0..k {
            let rel = (i as f64 * q_scale - j as f64 * k_scale) + (kf - 1.0) * k_scale;
            idx.push(rel as u32);
        }
    }
    let idx = Tensor::from_vec(idx, q * k, table.device())?;
    table.index_select(&idx, 0)?.reshape((q, k, d))
}

/// Multi-head attention with decomposed relative position bias (`blocks.N.attn`).
#[derive(Debug, Clone)]
pub struct Attention {
    qkv: Dense,
    proj: Dense,
    rel_pos_h: Tensor,
    rel_pos_w: Tensor,
    heads: usize,
    head_dim: usize,
    /// `get_rel_pos` tables per (axis 0 = h / 1 = w, side, dtype).
    tables: Derived<(u8, usize, DType)>,
}

impl Attention {
    /// `input_size`: the grid the relative tables were trained for (the window, or the stored
    /// position grid for global blocks): tables have `2·input_size − 1` rows.
    pub fn new(cfg: &SamConfig, input_size: usize, vb: VarBuilder<'_>) -> Result<Self> {
        let (dim, hd) = (cfg.width, cfg.head_dim());
        Ok(Attention {
            qkv: dense(dim, 3 * dim, vb.pp("qkv"))?,
            proj: dense(dim, dim, vb.pp("proj"))?,
            rel_pos_h: vb.get((2 * input_size - 1, hd), "rel_pos_h")?,
            rel_pos_w: vb.get((2 * input_size - 1, hd), "rel_pos_w")?,
            heads: cfg.heads,
            head_dim: hd,
            tables: Derived::default(),
        })
    }

    /// `get_rel_pos(side, side, table)` of axis 0 (height) or 1 (width) in `dtype`, computed once.
    fn rel_table(&self, axis: u8, side: usize, dtype: DType) -> Result<Tensor> {
        let table = if axis == 0 { &self.rel_pos_h } else { &self.rel_pos_w };
        self.tables.get_or((axis, side, dtype), || get_rel_pos(side, side, table)?.to_dtype(dtype))
    }

    /// The stored relative table of the height axis, (2·input_size − 1, head_dim).
    pub fn rel_pos_h(&self) -> &Tensor {
        &self.rel_pos_h
    }

    /// The stored relative table of the width axis.
    pub fn rel_pos_w(&self) -> &Tensor {
        &self.rel_pos_w
    }

    /// `x + proj(attention(normed))`: the attention of a block over its span, then the output
    /// projection and the residual add in one epilogue.
    ///
    /// # Shapes
    /// `normed`, `x`: (b, h, w, dim) → (b, h, w, dim).
    pub fn forward(&self, normed: &Tensor, x: &Tensor, span: AttentionSpan) -> Result<Tensor> {
        let (_, h, w, _) = normed.dims4()?;
        let unit = match span {
            AttentionSpan::Global => (h, w),
            AttentionSpan::Windowed(ws) => (ws, ws),
        };
        let core = if crate::ops::vit_attention_supported(normed, self.head_dim, unit, true) {
            self.core_fused(normed, span)?
        } else {
            self.core_materialised(normed, span)?
        };
        self.proj.forward_with(&core, Act::None, Some(x))
    }

    /// The attention before the output projection, through [`crate::ops::vit_attention`]: straight
    /// from the q|k|v projection of the unpadded grid (windows and their padding are indexed, the
    /// relative-position bias computed on the fly).
    ///
    /// # Shapes
    /// `normed`: (b, h, w, dim) → (b, h, w, dim).
    pub fn core_fused(&self, normed: &Tensor, span: AttentionSpan) -> Result<Tensor> {
        let (b, h, w, dim) = normed.dims4()?;
        let qkv = self.qkv.forward(normed)?.reshape((b, h * w, 3 * dim))?;
        let (window, (uh, uw)) = match span {
            AttentionSpan::Global => (None, (h, w)),
            AttentionSpan::Windowed(ws) => (Some(ws), (ws, ws)),
        };
        let rh = self.rel_table(0, uh, normed.dtype())?;
        let rw = self.rel_table(1, uw, normed.dtype())?;
        let grid = VitGrid { heads: self.heads, grid: (h, w), window, scale: (self.head_dim as f32).powf(-0.5) };
        vit_attention(&qkv, self.qkv.bias(), Some((&rh, &rw)), grid)?.reshape((b, h, w, dim))
    }

    /// The attention before the output projection, as the reference writes it: windows cut from the
    /// zero-padded grid, the n × n bias materialised, scores in f32.
    ///
    /// # Shapes
    /// `normed`: (b, h, w, dim) → (b, h, w, dim).
    pub fn core_materialised(&self, normed: &Tensor, span: AttentionSpan) -> Result<Tensor> {
        match span {
            AttentionSpan::Global => self.attend(normed),
            AttentionSpan::Windowed(ws) => {
                let (_, h, w, _) = normed.dims4()?;
                let (windows, padded) = window_partition(normed, ws)?;
                window_unpartition(&self.attend(&windows)?, ws, padded, h, w)
            }
        }
    }

    /// Attention over all of `x`'s grid with the materialised bias (before `proj`).
    fn attend(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, w, dim) = x.dims4()?;
        let (nh, hd) = (self.heads, self.head_dim);
        let qkv = self.qkv.forward(x)?.reshape((b, h * w, 3, nh, hd))?.permute((2, 0, 3, 1, 4))?; // (3, b, nh, hw, hd)
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let (rel_h, rel_w) = self.rel_pos_parts(&q, h, w)?; // (b·nh, h, w, kh), (b·nh, h, w, kw)
        let bias = rel_h.unsqueeze(4)?.broadcast_add(&rel_w.unsqueeze(3)?)?.reshape((b, nh, h * w, h * w))?;
        let out = sdpa(&q, &k, &v, Some(&bias), (hd as f64).powf(-0.5))?; // (b, nh, hw, hd)
        out.reshape((b, nh, h, w, hd))?.permute((0, 2, 3, 1, 4))?.reshape((b, h, w, dim))
    }

    /// The two parts of `bias[(y,x),(y',x')] = <q_{y,x}, Rh[y,y']> + <q_{y,x}, Rw[x,x']>` (unscaled q):
    /// `rel_h` `(b·nh, h, w, kh)` and `rel_w` `(b·nh, h, w, kw)`, both contiguous.
    fn rel_pos_parts(&self, q: &Tensor, h: usize, w: usize) -> Result<(Tensor, Tensor)> {
        let (b, nh, _, hd) = q.dims4()?;
        let bh = b * nh;
        let rh = self.rel_table(0, h, q.dtype())?; // (h, h, hd)
        let rw = self.rel_table(1, w, q.dtype())?; // (w, w, hd)
        let r_q = q.reshape((bh, h, w, hd))?;
        // rel_h[n, y, x, k] = Σ_c r_q[n, y, x, c] · rh[y, k, c]: batched over y.
        let rel_h = r_q
            .permute((1, 0, 2, 3))? // (h, bh, w, hd)
            .contiguous()?
            .reshape((h, bh * w, hd))?
            .matmul(&rh.transpose(1, 2)?.contiguous()?)? // (h, bh·w, h)
            .reshape((h, bh, w, h))?
            .permute((1, 0, 2, 3))?; // (bh, h, w, kh)
                                     // rel_w[n, y, x, k] = Σ_c r_q[n, y, x, c] · rw[x, k, c]: batched over x.
        let rel_w = r_q
            .permute((2, 0, 1, 3))? // (w, bh, h, hd)
            .contiguous()?
            .reshape((w, bh * h, hd))?
            .matmul(&rw.transpose(1, 2)?.contiguous()?)? // (w, bh·h, w)
            .reshape((w, bh, h, w))?
            .permute((1, 2, 0, 3))?; // (bh, h, w, kw)
        Ok((rel_h.contiguous()?, rel_w.contiguous()?))
    }
}

/// `blocks.N.mlp`: lin1 → exact GELU → lin2.
#[derive(Debug, Clone)]
pub struct Mlp {
    lin1: Dense,
    lin2: Dense,
}

impl Mlp {
    pub fn new(cfg: &SamConfig, vb: VarBuilder<'_>) -> Result<Self> {
        Ok(Mlp {
            lin1: dense(cfg.width, cfg.mlp_dim, vb.pp("lin1"))?,
            lin2: dense(cfg.mlp_dim, cfg.width, vb.pp("lin2"))?,
        })
    }

    /// `x + lin2(gelu(lin1(normed)))`.
    pub fn forward(&self, normed: &Tensor, x: &Tensor) -> Result<Tensor> {
        self.lin2.forward_with(&self.lin1.forward_with(normed, Act::Gelu, None)?, Act::None, Some(x))
    }
}

/// How a block attends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionSpan {
    /// Within `window × window` windows of the zero-padded grid.
    Windowed(usize),
    /// Over the whole grid.
    Global,
}

/// `blocks.N`: pre-norm transformer block.
#[derive(Debug, Clone)]
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
    span: AttentionSpan,
}

impl Block {
    pub fn new(cfg: &SamConfig, index: usize, vb: VarBuilder<'_>) -> Result<Self> {
        let span = if cfg.global_attn_indexes.contains(&index) {
            AttentionSpan::Global
        } else {
            AttentionSpan::Windowed(cfg.window_size)
        };
        let input_size = match span {
            AttentionSpan::Global => cfg.pos_grid(),
            AttentionSpan::Windowed(ws) => ws,
        };
        Ok(Block {
            norm1: layer_norm(cfg.width, cfg.eps, vb.pp("norm1"))?,
            attn: Attention::new(cfg, input_size, vb.pp("attn"))?,
            norm2: layer_norm(cfg.width, cfg.eps, vb.pp("norm2"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
            span,
        })
    }

    pub fn span(&self) -> AttentionSpan {
        self.span
    }

    pub fn attn(&self) -> &Attention {
        &self.attn
    }

    /// # Shapes
    /// `x`: (b, h, w, dim) → (b, h, w, dim).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.attn.forward(&self.norm1.forward(x)?, x, self.span)?;
        self.mlp.forward(&self.norm2.forward(&x)?, &x)
    }
}

/// SAM-base encoder with neck and compressor (`model.sam_model`).
#[derive(Debug, Clone)]
pub struct Sam {
    patch_embed: Conv2d,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    neck_0: Conv2d,
    neck_1: LayerNorm2d,
    neck_2: Conv2d,
    neck_3: LayerNorm2d,
    net_2: Conv2d,
    net_3: Conv2d,
    cfg: SamConfig,
    /// Resized position tables per grid side.
    pos: Derived<usize>,
}

impl Sam {
    /// `vb` points at `model.sam_model`.
    pub fn new(cfg: &SamConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let patch_cfg = Conv2dConfig { stride: cfg.patch_size, ..Default::default() };
        let pad1 = Conv2dConfig { padding: 1, ..Default::default() };
        let down = Conv2dConfig { padding: 1, stride: 2, ..Default::default() };
        let g = cfg.pos_grid();
        let blocks = (0..cfg.depth).map(|i| Block::new(cfg, i, vb.pp("blocks").pp(i))).collect::<Result<Vec<_>>>()?;
        let neck = vb.pp("neck");
        let [c2, c3] = cfg.downsample_channels;
        Ok(Sam {
            patch_embed: conv2d(cfg.in_chans, cfg.width, cfg.patch_size, patch_cfg, vb.pp("patch_embed").pp("proj"))?,
            pos_embed: vb.get((1, g, g, cfg.width), "pos_embed")?,
            blocks,
            neck_0: conv2d_no_bias(cfg.width, cfg.out_chans, 1, Conv2dConfig::default(), neck.pp(0))?,
            neck_1: LayerNorm2d::new(cfg.out_chans, cfg.eps, neck.pp(1))?,
            neck_2: conv2d_no_bias(cfg.out_chans, cfg.out_chans, 3, pad1, neck.pp(2))?,
            neck_3: LayerNorm2d::new(cfg.out_chans, cfg.eps, neck.pp(3))?,
            net_2: conv2d_no_bias(cfg.out_chans, c2, 3, down, vb.pp("net_2"))?,
            net_3: conv2d_no_bias(c2, c3, 3, down, vb.pp("net_3"))?,
            cfg: cfg.clone(),
            pos: Derived::default(),
        })
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The absolute position table for a `grid × grid` patch grid (`get_abs_pos_sam`).
    ///
    /// # Shapes
    /// → (1, grid, grid, dim).
    pub fn pos_embed(&self, grid: usize) -> Result<Tensor> {
        self.pos.get_or(grid, || resize_grid_bicubic_aa(&self.pos_embed.squeeze(0)?, grid, grid)?.unsqueeze(0))
    }

    /// # Shapes
    /// `x`: (b, 3, s, s) → (b, c3, s/64, s/64) (c3 = 1024 for SAM-base).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_probed(x, &mut no_probe)
    }

    /// [`Sam::forward`], reporting `sam.patch_embed`, `sam.blocks.N`, `sam.neck`, `sam.net_2` and
    /// `sam.net_3` to `probe` (channels-last for the first two, NCHW after the neck).
    pub fn forward_probed(&self, x: &Tensor, probe: Probe<'_>) -> Result<Tensor> {
        let (_, c, s, s2) = x.dims4()?;
        if c != self.cfg.in_chans || s != s2 || s % self.cfg.patch_size != 0 {
            candle_core::bail!(
                "sam input: expected (b, {}, s, s) with s a multiple of {}, got {:?}",
                self.cfg.in_chans,
                self.cfg.patch_size,
                x.dims()
            );
        }
        let ink;
        let x = if self.cfg.ink_input {
            ink = x.affine(-0.5, 0.5)?; // (1 − x) / 2: paper 0, ink 1
            &ink
        } else {
            x
        };
        let x = self.patch_embed.forward(x)?.permute((0, 2, 3, 1))?.contiguous()?; // (b, h, w, dim)
        probe("sam.patch_embed", &x)?;
        let grid = x.dim(1)?;
        let mut x = x.broadcast_add(&self.pos_embed(grid)?)?;
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x)?;
            probe(&format!("sam.blocks.{i}"), &x)?;
        }
        let x = x.permute((0, 3, 1, 2))?.contiguous()?; // (b, dim, h, w)
        let x = self.neck_0.forward(&x)?;
        let x = self.neck_1.forward(&x)?;
        let x = self.neck_2.forward(&x)?;
        let x = self.neck_3.forward(&x)?;
        probe("sam.neck", &x)?;
        let x = self.net_2.forward(&x)?;
        probe("sam.net_2", &x)?;
        let x = self.net_3.forward(&x)?;
        probe("sam.net_3", &x)?;
        Ok(x)
    }
}
