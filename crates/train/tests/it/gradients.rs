//! Every trainable tensor's gradient against central finite differences of the loss, on the tiny
//! reader (float32): at each tensor's largest-gradient element, the two must agree within 10 %
//! (plus a small absolute slack for float32 noise).
//!
//! Top-k routing is piecewise: a perturbation that changes which experts a token picks is a jump
//! that no gradient describes. The check therefore routes every token to all experts
//! (`experts_per_token = experts`), where the loss is smooth and the router's gradient (through
//! the routing weights) is still exercised; `routed_experts_get_gradients` covers top-2 routing.

use candle_core::{Device, Tensor};
use occ_train::model::{batch_loss, batch_losses, reader_prompt, CellTargets, Params, CELL_HEAD};

use crate::common::{tempdir, tiny_config};
use crate::data::source;

/// Three training pages of the tiny reader and its prompt.
struct Fixture {
    pages: Vec<occ_train::data::Page>,
    prompt: occ_model::prompt::PromptTokens,
}

impl Fixture {
    fn new(cfg: &occ_train::TrainConfig) -> Fixture {
        let (src, tok, vocab) = source(cfg);
        Fixture { pages: src.batch(3, 0, 0, 3).unwrap(), prompt: reader_prompt(&cfg.model, &tok, &vocab).unwrap() }
    }

    /// The summed loss of the three pages.
    fn loss(&self, cfg: &occ_train::TrainConfig, params: &Params) -> Tensor {
        let images: Vec<&image::RgbImage> = self.pages.iter().map(|p| &p.image).collect();
        let targets: Vec<&[u32]> = self.pages.iter().map(|p| p.target.as_slice()).collect();
        batch_loss(&cfg.model, params.var_builder(), &self.prompt, &images, &targets, &targets).unwrap().sum
    }
}

#[test]
fn gradients_of_every_module_match_finite_differences() {
    let dir = tempdir();
    let cfg = tiny_config(dir.path(), |s| {
        s.replace("probe_share = 0.3", "probe_share = 0.0").replace("experts_per_token = 2", "experts_per_token = 4")
    });
    let fx = Fixture::new(&cfg);
    let params = Params::init(&cfg.model, 5, &Device::Cpu).unwrap();
    let loss = |params: &Params| -> (Tensor, f64) {
        let sum = fx.loss(&cfg, params);
        let v = f64::from(sum.to_scalar::<f32>().unwrap());
        (sum, v)
    };
    let (sum, _) = loss(&params);
    let grads = sum.backward().unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (name, var) in &params.vars {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name}: no gradient"));
        let gv = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (i, &gi) = gv.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).unwrap();
        if name.contains(".experts.") && gi == 0.0 {
            continue; // a routed expert no token chose in this batch
        }
        assert!(gi != 0.0, "{name}: the gradient is zero everywhere");
        let orig = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let eps = 2e-3f32 * orig[i].abs().max(1.0);
        let at = |delta: f32| {
            let mut v = orig.clone();
            v[i] += delta;
            var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()).unwrap();
            loss(&params).1
        };
        let (plus, minus) = (at(eps), at(-eps));
        var.set(&Tensor::from_vec(orig.clone(), var.shape(), &Device::Cpu).unwrap()).unwrap();
        let fd = (plus - minus) / (2.0 * f64::from(eps));
        let gi = f64::from(gi);
        let err = (fd - gi).abs();
        if err.is_nan() || err > 0.1 * gi.abs() + 2e-3 {
            failures.push(format!("{name}[{i}]: analytic {gi:.6}, finite differences {fd:.6}"));
        }
        checked += 1;
    }
    assert!(checked > 40, "only {checked} tensors checked");
    assert!(failures.is_empty(), "{} of {checked} tensors disagree:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn routed_experts_get_gradients() {
    let dir = tempdir();
    let cfg = tiny_config(dir.path(), |s| s);
    let params = Params::init(&cfg.model, 5, &Device::Cpu).unwrap();
    let grads = Fixture::new(&cfg).loss(&cfg, &params).backward().unwrap();
    let mut experts_with_grad = 0;
    for (name, var) in &params.vars {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name}: no gradient"));
        let mass = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        if name.contains(".experts.") {
            experts_with_grad += usize::from(mass > 0.0);
        } else {
            assert!(mass > 0.0, "{name}: zero gradient");
        }
    }
    assert!(experts_with_grad >= 6, "only {experts_with_grad} routed expert tensors got gradients");
}

/// The batch's loss is the sum of each page's loss alone: padding shorter pages to the longest is
/// invisible (causal attention), and the batched vision layout puts each page's rows in its slots.
#[test]
fn batch_loss_is_the_sum_of_each_pages_loss() {
    let dir = tempdir();
    let cfg = tiny_config(dir.path(), |s| s.to_string());
    let fx = Fixture::new(&cfg);
    let lens: Vec<usize> = fx.pages.iter().map(|p| p.target.len()).collect();
    assert!(lens.iter().any(|&l| l != lens[0]), "the fixture's pages must differ in length: {lens:?}");
    let params = Params::init(&cfg.model, 5, &Device::Cpu).unwrap();
    let whole = f64::from(fx.loss(&cfg, &params).to_scalar::<f32>().unwrap());
    let mut parts = 0.0;
    for page in &fx.pages {
        let bl = batch_loss(
            &cfg.model,
            params.var_builder(),
            &fx.prompt,
            &[&page.image],
            &[page.target.as_slice()],
            &[page.target.as_slice()],
        )
        .unwrap();
        assert_eq!(bl.tokens, page.target.len() + 1);
        parts += f64::from(bl.sum.to_scalar::<f32>().unwrap());
    }
    assert!((whole - parts).abs() <= 1e-4 * parts.abs(), "batch {whole} vs pages {parts}");
}

/// The cell loss: with a zero head every vision token predicts all ids alike, so the loss is
/// ln(vocab) whatever the targets; its gradient reaches the encoder's first layer (the point of
/// the loss) and not the decoder, which it does not pass through.
#[test]
fn the_cell_loss_starts_at_ln_vocab_and_trains_the_encoder_only() {
    let dir = tempdir();
    let cfg = tiny_config(dir.path(), |s| s);
    let fx = Fixture::new(&cfg);
    let mut params = Params::init(&cfg.model, 5, &Device::Cpu).unwrap();
    assert!(params.add_cell_head(&cfg.model, 5).unwrap());
    assert!(!params.add_cell_head(&cfg.model, 5).unwrap(), "added once");
    let images: Vec<&image::RgbImage> = fx.pages.iter().map(|p| &p.image).collect();
    let targets: Vec<&[u32]> = fx.pages.iter().map(|p| p.target.as_slice()).collect();
    let placed: Vec<&[occ_train::model::Placed]> = fx.pages.iter().map(|p| p.placed.as_slice()).collect();
    let cell = |head: &Tensor| {
        let c = CellTargets { head, placed: &placed };
        batch_losses(&cfg.model, params.var_builder(), &fx.prompt, &images, &targets, &targets, Some(c))
            .unwrap()
            .cell
            .unwrap()
    };
    let zero = params.vars[CELL_HEAD].as_tensor().zeros_like().unwrap();
    let at_zero = f64::from(cell(&zero).to_scalar::<f32>().unwrap());
    let ln_v = (cfg.model.vocab_size as f64).ln();
    assert!((at_zero - ln_v).abs() < 1e-4, "cell loss {at_zero} with a zero head, ln V = {ln_v}");
    let head = params.vars[CELL_HEAD].as_tensor().clone();
    let grads = cell(&head).backward().unwrap();
    for (name, var) in &params.vars {
        let mass =
            grads.get(var.as_tensor()).map_or(0.0, |g| g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap());
        if name == CELL_HEAD || name.contains("patch_embed") || name.contains("projector") {
            assert!(mass > 0.0, "{name}: no gradient from the cell loss");
        } else if name.starts_with("model.layers.") || name.contains("lm_head") {
            assert_eq!(mass, 0.0, "{name}: the cell loss does not pass through the decoder");
        }
    }
}
