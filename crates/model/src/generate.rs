//! Batched generation: one prefill of several left-padded prompts, then one decode step per token
//! for every unfinished row, with per-row stop (EOS or token budget), repetition blockers and greedy
//! or seeded top-p sampling (docs/MODEL.md §10).
//!
//! Batching follows [`crate::decoder::cache`]: prompts are left-padded to the longest, positions
//! and masks make every row compute what it would compute alone, and finished rows are dropped from
//! the cache so later steps only pay for the rows still running.

use std::time::{Duration, Instant};

use candle_core::{DType, Result, Tensor};

use crate::decoder::DecoderModel;
use crate::ngram::{no_repeat_ngram_banned, NgramBlocker};

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Sampling {
    /// Argmax (first index on ties, as `torch.argmax`). DeepSeek-OCR's setting (temperature 0).
    Greedy,
    /// Softmax at `temperature`, nucleus `top_p`, deterministic in `seed` (and the row index).
    TopP { temperature: f64, top_p: f64, seed: u64 },
}

/// Generation settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenerationConfig {
    /// Upper bound of generated tokens per row (EOS included).
    pub max_new_tokens: usize,
    pub eos_token_id: u32,
    /// Never stop at EOS (benchmarks: exactly `max_new_tokens` tokens). EOS may still be chosen.
    pub ignore_eos: bool,
    pub sampling: Sampling,
    /// The DeepSeek n-gram blocker over generated tokens (docs/MODEL.md §10.2).
    pub ngram: Option<NgramBlocker>,
    /// transformers' `no_repeat_ngram_size` over prompt + generated tokens (docs/MODEL.md §10.3).
    pub no_repeat_ngram_size: Option<usize>,
}

impl Default for GenerationConfig {
    /// Greedy, at most 8192 new tokens (both as the reference runners), EOS id 1, and the DeepSeek
    /// blocker 30 / 90 / `<td>` `</td>` of the official vLLM image runner (docs/MODEL.md §10.1). The HF `infer`
    /// path would use `no_repeat_ngram_size = 20` instead: set [`Self::hf_infer`] for that.
    fn default() -> Self {
        GenerationConfig {
            max_new_tokens: 8192,
            eos_token_id: 1,
            ignore_eos: false,
            sampling: Sampling::Greedy,
            ngram: Some(NgramBlocker::deepseek_default()),
            no_repeat_ngram_size: None,
        }
    }
}

impl GenerationConfig {
    /// The HF `infer` settings: greedy, `no_repeat_ngram_size = 20`, no DeepSeek blocker.
    pub fn hf_infer() -> Self {
        GenerationConfig { ngram: None, no_repeat_ngram_size: Some(20), ..Default::default() }
    }

    /// Plain greedy decoding without any blocker (parity tests).
    pub fn plain_greedy(max_new_tokens: usize) -> Self {
        GenerationConfig { max_new_tokens, ngram: None, no_repeat_ngram_size: None, ..Default::default() }
    }
}

/// One prompt to continue: its decoder input embeddings (image rows already in place) and its
/// token ids (image slots included; only the HF blocker reads them).
#[derive(Debug, Clone)]
pub struct PromptInput {
    /// `(seq, hidden)` in the model dtype.
    pub embeds: Tensor,
    pub ids: Vec<u32>,
}

/// What one row generated.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Generated ids, the stopping EOS included when there was one.
    pub tokens: Vec<u32>,
    /// Stopped at EOS (rather than at `max_new_tokens`).
    pub stopped_at_eos: bool,
}

/// Rows generated together, with the batch's stage times.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutput {
    pub rows: Vec<Generated>,
    /// Prefill of the whole batch until the first logits were on the host.
    pub prefill: Duration,
    /// Every decode step after that.
    pub decode: Duration,
    /// Decode steps run (the longest row's tokens − 1).
    pub decode_steps: usize,
}

/// The prompts' embeddings left-padded with zero rows to the longest, stacked on the model's device
/// and dtype, with each row's padding: `((batch, max_len, hidden), left_pad)`. A prompt whose
/// embeddings are not `(len(ids), hidden)` is an error naming it.
pub(crate) fn padded_batch(model: &DecoderModel, prompts: &[PromptInput]) -> Result<(Tensor, Vec<usize>)> {
    let hidden = model.config().hidden_size;
    let (dtype, device) = (model.dtype(), model.device());
    let mut lens = Vec::with_capacity(prompts.len());
    for (i, p) in prompts.iter().enumerate() {
        let (len, h) = p.embeds.dims2()?;
        if h != hidden || len == 0 || len != p.ids.len() {
            candle_core::bail!(
                "prompt {i}: embeddings {:?} and {} ids do not form a (seq, {hidden}) prompt",
                p.embeds.dims(),
                p.ids.len()
            )
        }
        lens.push(len);
    }
    let max_len = lens.iter().copied().max().unwrap_or(0);
    let left_pad: Vec<usize> = lens.iter().map(|&l| max_len - l).collect();
    let rows = prompts
        .iter()
        .zip(&left_pad)
        .map(|(p, &pad)| {
            let e = p.embeds.to_dtype(dtype)?.to_device(device)?;
            if pad == 0 {
                Ok(e)
            } else {
                Tensor::cat(&[&Tensor::zeros((pad, hidden), dtype, device)?, &e], 0)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((Tensor::stack(&rows, 0)?, left_pad))
}

/// Generates a continuation for every prompt, batched. Outputs are in input order.
pub fn generate(model: &DecoderModel, prompts: &[PromptInput], cfg: &GenerationConfig) -> Result<BatchOutput> {
    let b = prompts.len();
    if b == 0 {
        return Ok(BatchOutput { rows: Vec::new(), prefill: Duration::ZERO, decode: Duration::ZERO, decode_steps: 0 });
    }
    let (embeds, left_pad) = padded_batch(model, prompts)?; // (b, max_len, hidden)
    let max_len = embeds.dim(1)?;
    let device = model.device().clone();

    let start = Instant::now();
    let mut cache = model.new_cache(left_pad);
    let h = model.forward_hidden(&embeds, 0, &mut cache)?;
    let mut logits = model.logits(&h.narrow(1, max_len - 1, 1)?)?.squeeze(1)?; // (b, vocab)

    let mut out: Vec<Generated> = vec![Generated { tokens: Vec::new(), stopped_at_eos: false }; b];
    let mut active: Vec<usize> = (0..b).collect();
    let mut prefill = None;
    let mut steps = 0usize;
    let mut decode_start = Instant::now();
    while !active.is_empty() && cfg.max_new_tokens > 0 {
        let host = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        if prefill.is_none() {
            prefill = Some(start.elapsed());
            decode_start = Instant::now();
        }
        let mut keep = Vec::with_capacity(active.len());
        let mut next = Vec::with_capacity(active.len());
        for (slot, &row) in active.iter().enumerate() {
            let mut scores = host[slot].clone();
            let generated = &out[row].tokens;
            if let Some(blocker) = &cfg.ngram {
                ban(&mut scores, &blocker.banned(generated));
            }
            if let Some(n) = cfg.no_repeat_ngram_size {
                let mut all = prompts[row].ids.clone();
                all.extend_from_slice(generated);
                ban(&mut scores, &no_repeat_ngram_banned(n, &all));
            }
            let token = choose(&scores, &cfg.sampling, row, generated.len())?;
            let o = &mut out[row];
            o.tokens.push(token);
            if token == cfg.eos_token_id && !cfg.ignore_eos {
                o.stopped_at_eos = true;
            } else if o.tokens.len() < cfg.max_new_tokens {
                keep.push(slot);
                next.push(token);
            }
        }
        if keep.is_empty() {
            break;
        }
        if keep.len() != active.len() {
            cache.retain(&keep)?;
            active = keep.iter().map(|&s| active[s]).collect();
        }
        let ids = Tensor::from_vec(next, (active.len(), 1), &device)?;
        let e = model.embed(&ids)?;
        let offset = cache.len();
        let h = model.forward_hidden(&e, offset, &mut cache)?;
        logits = model.logits(&h)?.squeeze(1)?;
        steps += 1;
    }
    let prefill = prefill.unwrap_or_else(|| start.elapsed());
    Ok(BatchOutput { rows: out, prefill, decode: decode_start.elapsed(), decode_steps: steps })
}

fn ban(scores: &mut [f32], ids: &[u32]) {
    for &id in ids {
        if let Some(s) = scores.get_mut(id as usize) {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// Index of the first maximum.
pub fn argmax(scores: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best as u32
}

fn choose(scores: &[f32], sampling: &Sampling, row: usize, step: usize) -> Result<u32> {
    match *sampling {
        Sampling::Greedy => Ok(argmax(scores)),
        Sampling::TopP { temperature, top_p, seed } => {
            if temperature <= 0.0 {
                return Ok(argmax(scores));
            }
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if !max.is_finite() {
                candle_core::bail!("sampling: every logit of row {row} is banned or not finite")
            }
            let mut probs: Vec<(u32, f64)> = scores
                .iter()
                .enumerate()
                .map(|(i, &s)| (i as u32, (((s - max) as f64) / temperature).exp()))
                .filter(|p| p.1 > 0.0)
                .collect();
            let total: f64 = probs.iter().map(|p| p.1).sum();
            probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut kept = 0.0;
            let mut cut = probs.len();
            for (i, p) in probs.iter().enumerate() {
                kept += p.1 / total;
                if kept >= top_p {
                    cut = i + 1;
                    break;
                }
            }
            probs.truncate(cut.max(1));
            let mass: f64 = probs.iter().map(|p| p.1).sum();
            let key = seed ^ crate::synth::fnv1a64(&(row as u64).to_le_bytes());
            let u = (crate::synth::splitmix64_at(key, step as u64) >> 11) as f64 / (1u64 << 53) as f64 * mass;
            let mut acc = 0.0;
            for p in &probs {
                acc += p.1;
                if u < acc {
                    return Ok(p.0);
                }
            }
            Ok(probs[probs.len() - 1].0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY, -5.0]), 1);
    }

    #[test]
    fn sampling_is_seeded_and_respects_top_p() {
        let scores = [0.0f32, 5.0, 4.9, -10.0];
        let s = |seed, step| choose(&scores, &Sampling::TopP { temperature: 1.0, top_p: 0.9, seed }, 0, step).unwrap();
        let a: Vec<u32> = (0..64).map(|i| s(7, i)).collect();
        let b: Vec<u32> = (0..64).map(|i| s(7, i)).collect();
        assert_eq!(a, b, "same seed, same draws");
        assert!(a.iter().all(|&t| t == 1 || t == 2), "top-p 0.9 keeps the two big logits only: {a:?}");
        assert!(a.contains(&1) && a.contains(&2));
        let greedy = choose(&scores, &Sampling::TopP { temperature: 0.0, top_p: 1.0, seed: 0 }, 0, 0).unwrap();
        assert_eq!(greedy, 1);
    }
}
