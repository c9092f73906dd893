//! Does a reader read its page? Two measurements on training pages (seed 99, step 0, drawn as
//! training draws them, from the validation passages):
//!
//! 1. The encoder's stages (SAM, neck, compressor, CLIP, projector) on `n` pages: the mean square
//!    of each stage's output and the share of it that varies from page to page. At initialisation
//!    a fifth to a third of every stage varies with the page; a collapsed encoder writes (almost)
//!    the same features for every page (docs/TRAINING.md, "Encoder collapse").
//! 2. The teacher-forced loss per token of each page's text read with its own image and with the
//!    next page's image, by kind of page (prose, shuffled words, random strings): equal losses mean
//!    the decoder takes nothing from the page.
//!
//! Usage: `cargo run --release -p occ-train --example encoder_collapse -- CONFIG CHECKPOINT|init N`
//! (`init`: the config's freshly initialised weights).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use occ_core::TextTokenizer;
use occ_model::encoder::DeepEncoder;
use occ_model::mini::OutputVocab;
use occ_model::preprocess::images_tensor;
use occ_train::data::{read_passages, PageSource};
use occ_train::model::{batch_loss, prompt_ids, reader_prompt, Params};
use occ_train::TrainConfig;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, weights, n] = args.as_slice() else {
        return Err("usage: encoder_collapse CONFIG CHECKPOINT|init N".into());
    };
    let n = n.parse::<usize>().ok().filter(|&n| n >= 2).ok_or("N: a page count of at least 2")?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cfg = TrainConfig::load(Path::new(config), &root)?;
    let tok = Arc::new(TextTokenizer::deepseek_ocr()?);
    let passages = read_passages(&cfg.data.validation)?;
    let (params, vocab) = if weights == "init" {
        let extra = prompt_ids(&cfg.model, &tok)?;
        let texts = passages.iter().map(|p| p.text.as_str());
        let vocab = OutputVocab::build(&tok, texts, &extra, cfg.model.vocab_size)?;
        (Params::init(&cfg.model, cfg.run.seed, &Device::Cpu)?, vocab)
    } else {
        let r = occ_train::checkpoint::load(Path::new(weights), &cfg, &tok, &Device::Cpu)?;
        (r.params, r.vocab)
    };
    let vocab = Arc::new(vocab);
    let source = PageSource {
        passages,
        cfg: cfg.data.clone(),
        mode: cfg.model.mode().map_err(|e| e.to_string())?,
        tok: tok.clone(),
        vocab: vocab.clone(),
        max_target: cfg.model.decoder.max_positions.saturating_sub(64),
        place: false,
    };
    let pages = source.batch(99, 0, 0, n)?;
    let vb = params.detached_var_builder();

    println!("encoder stages on {n} pages: mean square, and the share that varies from page to page");
    let encoder = DeepEncoder::new(&cfg.model.vision(), vb.clone())?;
    let images: Vec<&image::RgbImage> = pages.iter().map(|p| &p.image).collect();
    let pixels = images_tensor(&images, DType::F32, &Device::Cpu)?;
    let mut probe = |name: &str, t: &Tensor| -> candle_core::Result<()> {
        let t = t.to_dtype(DType::F32)?;
        let across = t.broadcast_sub(&t.mean_keepdim(0)?)?.sqr()?.mean_all()?.to_scalar::<f32>()?;
        let total = t.sqr()?.mean_all()?.to_scalar::<f32>()?;
        println!("  {name:32} mean square {total:12.4}   varies with the page {:5.1} %", 100.0 * across / total);
        Ok(())
    };
    encoder.encode_views_probed(&pixels, &mut probe)?;

    println!("teacher-forced loss per token: own image / the next page's image");
    let prompt = reader_prompt(&cfg.model, &tok, &vocab)?;
    let mut rows = BTreeMap::<String, (f64, f64, usize)>::new();
    for (i, page) in pages.iter().enumerate() {
        let other = &pages[(i + 1) % n];
        let target = [page.target.as_slice()];
        let own = batch_loss(&cfg.model, vb.clone(), &prompt, &[&page.image], &target, &target)?;
        let swapped = batch_loss(&cfg.model, vb.clone(), &prompt, &[&other.image], &target, &target)?;
        let row = rows.entry(format!("{:?}", page.kind)).or_default();
        row.0 += f64::from(own.sum.to_scalar::<f32>()?);
        row.1 += f64::from(swapped.sum.to_scalar::<f32>()?);
        row.2 += own.tokens;
    }
    for (kind, (own, swapped, tokens)) in rows {
        let t = tokens as f64;
        println!("  {kind:14} {tokens:6} tokens   {:.3} / {:.3} nats", own / t, swapped / t);
    }
    Ok(())
}
