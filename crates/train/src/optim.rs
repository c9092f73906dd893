//! AdamW (decoupled weight decay) with its state in tensors we own, so a checkpoint can carry it and
//! a resumed run continues bit for bit; the learning-rate schedule; global-norm gradient clipping.
//!
//! candle-nn's `AdamW` keeps its moments private, which rules out exact resume.

use std::collections::BTreeMap;

use candle_core::{backprop::GradStore, Tensor, Var};

use crate::config::OptimConfig;
use crate::error::{TrainError, TrainResult};

/// Linear warm-up to `lr` over `warmup_steps`, then cosine decay to `min_lr` at `steps`.
pub fn learning_rate(cfg: &OptimConfig, step: usize) -> f64 {
    if step < cfg.warmup_steps {
        return cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    let span = cfg.steps.saturating_sub(cfg.warmup_steps).max(1) as f64;
    let progress = ((step - cfg.warmup_steps) as f64 / span).min(1.0);
    cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Gradients summed over micro-batches, by variable name.
#[derive(Debug, Default)]
pub struct Grads {
    pub sums: BTreeMap<String, Tensor>,
}

impl Grads {
    /// Adds the gradients of one backward pass.
    pub fn add(&mut self, vars: &BTreeMap<String, Var>, store: &GradStore) -> TrainResult<()> {
        for (name, var) in vars {
            let Some(g) = store.get(var.as_tensor()) else { continue };
            // detached: a gradient computed from tracked tensors would keep the step's whole
            // autograd graph alive (and, through the moments, every step's)
            let g = g.detach();
            let sum = match self.sums.remove(name) {
                Some(s) => (s + g)?,
                None => g,
            };
            self.sums.insert(name.clone(), sum);
        }
        Ok(())
    }

    /// Multiplies every gradient by `s`.
    pub fn scale(&mut self, s: f64) -> TrainResult<()> {
        for g in self.sums.values_mut() {
            *g = (&*g * s)?;
        }
        Ok(())
    }

    /// The global L2 norm (one read-back).
    pub fn norm(&self) -> TrainResult<f64> {
        let mut total: Option<Tensor> = None;
        for g in self.sums.values() {
            let s = g.sqr()?.sum_all()?;
            total = Some(match total {
                Some(t) => (t + s)?,
                None => s,
            });
        }
        Ok(match total {
            Some(t) => f64::from(t.to_scalar::<f32>()?).sqrt(),
            None => 0.0,
        })
    }
}

/// AdamW state: the first and second moments of every variable and the steps taken.
#[derive(Debug)]
pub struct AdamW {
    pub m: BTreeMap<String, Tensor>,
    pub v: BTreeMap<String, Tensor>,
    /// Optimiser steps taken so far.
    pub t: usize,
}

impl AdamW {
    /// Zero moments for `vars`.
    pub fn new(vars: &BTreeMap<String, Var>) -> TrainResult<AdamW> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        let m = vars.iter().map(|(k, v)| Ok((k.clone(), zeros(v)?))).collect::<TrainResult<BTreeMap<_, _>>>()?;
        let v = vars.iter().map(|(k, v)| Ok((k.clone(), zeros(v)?))).collect::<TrainResult<BTreeMap<_, _>>>()?;
        Ok(AdamW { m, v, t: 0 })
    }

    /// One update of every variable with a gradient, at learning rate `lr`. Weight decay applies
    /// to matrices and convolutions only (not to norms, biases or learned vectors).
    pub fn step(&mut self, cfg: &OptimConfig, vars: &BTreeMap<String, Var>, grads: &Grads, lr: f64) -> TrainResult<()> {
        self.t += 1;
        let [b1, b2] = cfg.betas;
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        for (name, var) in vars {
            let Some(g) = grads.sums.get(name) else { continue };
            let (Some(m), Some(v)) = (self.m.get(name), self.v.get(name)) else {
                return Err(TrainError::Other(format!("optimiser has no state for {name}")));
            };
            let m = ((m * b1)? + (g * (1.0 - b1))?)?.detach();
            let v = ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?.detach();
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + cfg.eps)?)?;
            let p = var.as_tensor();
            let decayed =
                if p.rank() >= 2 && cfg.weight_decay > 0.0 { (p * (1.0 - lr * cfg.weight_decay))? } else { p.clone() };
            var.set(&(decayed - (update * lr)?)?)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }
}
