//! The decode ops' CPU specifications against plain candle ops.

use super::*;
use candle_core::{DType, Device, IndexOp, Result, Tensor, D};

use crate::synth::uniform_tensor as rand;

#[test]
fn swiglu_equals_silu_times_up() -> Result<()> {
    for dtype in [DType::F32, DType::BF16] {
        let x = (rand(&[3, 5, 8], 1) * 3.0)?.to_dtype(dtype)?;
        // PyTorch's rule: silu in float32 rounded to the dtype, then the product rounded
        let g = x.narrow(D::Minus1, 0, 4)?.to_dtype(DType::F32)?;
        let u = x.narrow(D::Minus1, 4, 4)?.to_dtype(DType::F32)?;
        let s = candle_nn::ops::silu(&g)?.to_dtype(dtype)?.to_dtype(DType::F32)?;
        let want = (s * u)?.to_dtype(dtype)?;
        let got = swiglu(&x)?;
        assert_eq!(got.dims(), [3, 5, 4]);
        let diff = (got.to_dtype(DType::F32)? - want.to_dtype(DType::F32)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff <= if dtype == DType::F32 { 1e-6 } else { 0.0 }, "{dtype:?}: {diff}");
    }
    assert!(swiglu(&rand(&[2, 3], 0)).is_err(), "odd width is an error");
    Ok(())
}

#[test]
fn kv_insert_and_decode_attention_match_plain_ops() -> Result<()> {
    let (slots, heads, kv_heads, cap, d) = (3usize, 4usize, 2usize, 9usize, 8usize);
    let cache = Tensor::zeros((2, slots, kv_heads, cap, d), DType::F32, &Device::Cpu)?;
    let full = rand(&[2, slots, kv_heads, cap, d], 7);
    let pos_v = [2u32, 5, 0];
    // columns 0..=pos of every slot, as a prefill would leave them
    for (s, &p) in pos_v.iter().enumerate() {
        kv_insert(&cache, &full.i((.., s, .., ..p as usize + 1, ..))?, s)?;
    }
    let q = rand(&[slots, heads, d], 9);
    let pos = Tensor::new(&pos_v, &Device::Cpu)?;
    let scale = 1.0 / (d as f32).sqrt();
    let got = decode_attention(&q, &cache, &pos, scale)?;
    for (s, &p) in pos_v.iter().enumerate() {
        let len = p as usize + 1;
        for h in 0..heads {
            let kvh = h / (heads / kv_heads);
            let k = full.i((0, s, kvh, ..len, ..))?;
            let v = full.i((1, s, kvh, ..len, ..))?;
            let qh = q.i((s, h..h + 1, ..))?;
            let p = candle_nn::ops::softmax_last_dim(&(qh.matmul(&k.t()?)? * scale as f64)?)?;
            let want = p.matmul(&v)?.squeeze(0)?;
            let diff = (got.i((s, h))? - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-6, "slot {s} head {h}: {diff}");
        }
    }
    // an idle slot past the capacity writes nothing
    let before = cache.flatten_all()?.to_vec1::<f32>()?;
    let past = Tensor::new(&[9u32, 10, 11], &Device::Cpu)?;
    let inv: Vec<f32> = (0..d / 2).map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / d as f32)).collect();
    let qkv = Tensor::ones((slots, (heads + 2 * kv_heads) * d), DType::F32, &Device::Cpu)?;
    kv_rope_write(&cache, &qkv, &past, heads, &inv)?;
    assert_eq!(cache.flatten_all()?.to_vec1::<f32>()?, before);
    // inserting a prompt of 4 columns into slot 1 = the same columns written one by one
    let other = Tensor::zeros((2, slots, kv_heads, cap, d), DType::F32, &Device::Cpu)?;
    kv_insert(&other, &full.i((.., 1, .., ..4, ..))?, 1)?;
    let a = other.i((.., 1, .., ..4, ..))?.flatten_all()?.to_vec1::<f32>()?;
    assert_eq!(a, full.i((.., 1, .., ..4, ..))?.flatten_all()?.to_vec1::<f32>()?);
    assert_eq!(other.i((.., 0))?.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0, "other slots untouched");
    assert!(kv_insert(&other, &full.i((.., 1))?.narrow(2, 0, 9)?.pad_with_zeros(2, 0, 1)?, 1).is_err());
    Ok(())
}

#[test]
fn rms_norm_rounds_like_the_reference() -> Result<()> {
    for dtype in [DType::F32, DType::BF16] {
        let x = (rand(&[4, 6, 32], 3) * 2.5)?.to_dtype(dtype)?;
        let w = (rand(&[32], 4) + 1.0)?.to_dtype(dtype)?;
        let xf = x.to_dtype(DType::F32)?;
        let inv = (xf.sqr()?.mean_keepdim(D::Minus1)? + 1e-6)?.sqrt()?.recip()?;
        let want = xf.broadcast_mul(&inv)?.to_dtype(dtype)?.broadcast_mul(&w)?;
        let got = rms_norm(&x, &w, 1e-6)?;
        let diff = (got.to_dtype(DType::F32)? - want.to_dtype(DType::F32)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff <= if dtype == DType::F32 { 1e-6 } else { 0.0 }, "{dtype:?}: {diff}");
    }
    Ok(())
}

#[test]
fn fused_rope_matches_candle_rope_and_writes_the_cache() -> Result<()> {
    let (slots, h, kv, d, cap) = (3usize, 4usize, 2usize, 8usize, 6usize);
    let inv: Vec<f32> = (0..d / 2).map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / d as f32)).collect();
    let qkv = rand(&[slots, (h + 2 * kv) * d], 5);
    let pos_v = [0u32, 3, 5];
    let pos = Tensor::new(&pos_v, &Device::Cpu)?;
    // reference: candle's rope on (slots, heads, 1, d) with cos/sin (slots, 1, d/2)
    let angles: Vec<f32> = pos_v.iter().flat_map(|&p| inv.iter().map(move |f| p as f32 * f)).collect();
    let ang = Tensor::from_vec(angles, (slots, 1, d / 2), &Device::Cpu)?;
    let (cos, sin) = (ang.cos()?, ang.sin()?);
    let heads = |from: usize, n: usize| qkv.narrow(1, from * d, n * d)?.reshape((slots, n, 1, d))?.contiguous();
    let want_q = candle_nn::rotary_emb::rope(&heads(0, h)?, &cos, &sin)?.squeeze(2)?;
    let want_k = candle_nn::rotary_emb::rope(&heads(h, kv)?, &cos, &sin)?.squeeze(2)?;
    let got_q = rope_q(&qkv, &pos, h, kv, &inv)?;
    let dq = (got_q - want_q)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(dq < 1e-6, "q: {dq}");
    let cache = Tensor::zeros((2, slots, kv, cap, d), DType::F32, &Device::Cpu)?;
    kv_rope_write(&cache, &qkv, &pos, h, &inv)?;
    for (s, &p) in pos_v.iter().enumerate() {
        let k = cache.i((0, s, .., p as usize, ..))?;
        let v = cache.i((1, s, .., p as usize, ..))?;
        let dk = (k - want_k.i(s)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let dv = (v - heads(h + kv, kv)?.i((s, .., 0, ..))?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(dk < 1e-6 && dv == 0.0, "slot {s}: k {dk}, v {dv}");
    }
    Ok(())
}

#[test]
fn ban_advance_and_host_writes() -> Result<()> {
    let logits = Tensor::zeros((2, 5), DType::F32, &Device::Cpu)?;
    let ban = Tensor::new(&[[1u32, NO_BAN], [4, 0]], &Device::Cpu)?;
    apply_ban(&logits, &ban)?;
    let l = logits.to_vec2::<f32>()?;
    let scores = Tensor::new(&[[0.5f32, 2.0, 2.0, -1.0], [f32::NAN, -3.0, -2.0, -2.0]], &Device::Cpu)?;
    assert_eq!(argmax_rows(&scores)?.to_vec1::<u32>()?, [1, 2], "first maximum, NaN skipped");
    assert_eq!(l[0].iter().filter(|x| x.is_infinite()).count(), 1);
    assert!(l[0][1].is_infinite() && l[1][4].is_infinite() && l[1][0].is_infinite());
    let pos = Tensor::new(&[3u32, 7], &Device::Cpu)?;
    advance(&pos)?;
    assert_eq!(pos.to_vec1::<u32>()?, [4, 8]);
    write_u32(&pos, &[11, 12])?;
    assert_eq!(pos.to_vec1::<u32>()?, [11, 12]);
    assert!(write_u32(&pos, &[1]).is_err());
    Ok(())
}
