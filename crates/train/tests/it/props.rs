//! Property tests of the training config parser: valid configs printed as TOML read
//! back to themselves; a config with one field made invalid (NaN, infinities, negative, zero, out of
//! range) is refused naming that field; arbitrary TOML is refused naming the file. Budget and
//! guarantees: docs/RELIABILITY.md, "Fuzzing and property tests".

use occ_train::config::{Stage, TrainConfig};
use proptest::prelude::*;

use crate::common::{tempdir, TINY};

fn tiny() -> TrainConfig {
    let cfg: TrainConfig = toml::from_str(TINY).unwrap();
    cfg.validate().unwrap();
    cfg
}

/// A `[lo, hi]` pair with `0 < lo <= hi` and `hi` finite.
fn ratio_pair() -> impl Strategy<Value = [f64; 2]> {
    (
        prop_oneof![1e-6f64..1.0, 1.0f64..40.0, any::<f64>().prop_filter("positive", |x| x.is_finite() && *x > 0.0)],
        0.0f64..30.0,
    )
        .prop_map(|(lo, extra)| [lo, if (lo + extra).is_finite() { lo + extra } else { lo }])
}

/// The tiny config with every validated number drawn from its valid range.
fn valid_config() -> impl Strategy<Value = TrainConfig> {
    let stages = prop::collection::vec((1usize..50, ratio_pair(), prop::option::of(1usize..16)), 0..4);
    (
        (ratio_pair(), 0.0f64..=1.0, 0.0f64..0.95, stages),
        ((0.8f32..3.0, 0.0f32..1.0), (0.0f32..0.29, 0.0f32..1.0)),
        (1usize..1000, 1usize..64, 1usize..8, 1e-8f64..1.0, 0.0f64..=1.0),
        (
            [0.0f64..1.0, 0.0f64..1.0],
            1e-12f64..1e-2,
            0.0f64..1.0,
            0.0f64..10.0,
            prop_oneof![0.5f64..1e6, Just(f64::INFINITY)],
        ),
        (prop::collection::vec(1e-3f64..50.0, 0..4), 1usize..1000, 1usize..1000, any::<u64>()),
    )
        .prop_map(
            |(
                (ratios, probe, dropout, stages),
                ((lh0, lh1), (m0, m1)),
                (steps, batch, acc, lr, min_share),
                (betas, eps, wd, clip, max_loss),
                (eval_ratios, ckpt, log, seed),
            )| {
                let mut c = tiny();
                c.data.ratios = ratios;
                c.data.probe_share = probe;
                c.data.input_dropout = dropout;
                let mut until = 0;
                c.data.stages = stages
                    .into_iter()
                    .map(|(gap, ratios, batch)| {
                        until += gap;
                        Stage { until, ratios, batch, probe_share: None }
                    })
                    .collect();
                c.data.line_height = [lh0, lh0 + (3.0 - lh0) * lh1];
                c.data.margin = [m0, m0 + (0.29 - m0) * m1];
                (c.optim.steps, c.optim.batch, c.optim.accumulate) = (steps, batch, acc);
                (c.optim.lr, c.optim.min_lr) = (lr, lr * min_share);
                (c.optim.betas, c.optim.eps, c.optim.weight_decay, c.optim.clip_norm, c.optim.max_loss) =
                    (betas, eps, wd, clip, max_loss);
                c.eval.ratios = eval_ratios;
                (c.run.checkpoint_every, c.run.log_every, c.run.seed) = (ckpt, log, seed);
                c
            },
        )
}

/// A float that is not a valid value of most fields.
fn bad_f64() -> impl Strategy<Value = f64> {
    prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, -1e-300, -0.0, 0.0, 1e308, 2.0])
}

/// One field made invalid: (the name the error must contain, the edit).
fn invalid_edit() -> impl Strategy<Value = (String, TrainConfig)> {
    let f = |name: &'static str, edit: fn(&mut TrainConfig, f64) -> bool| {
        bad_f64().prop_filter_map("still valid", move |x| {
            let mut c = tiny();
            edit(&mut c, x).then(|| (name.to_string(), c))
        })
    };
    prop_oneof![
        f("data.ratios", |c, x| {
            c.data.ratios[0] = x;
            !(x > 0.0 && x <= c.data.ratios[1])
        }),
        f("data.ratios", |c, x| {
            c.data.ratios[1] = x;
            !(x.is_finite() && x >= c.data.ratios[0])
        }),
        f("data.probe_share", |c, x| {
            c.data.probe_share = x;
            !(0.0..=1.0).contains(&x)
        }),
        f("data.input_dropout", |c, x| {
            c.data.input_dropout = x;
            !(0.0..0.95).contains(&x)
        }),
        f("data.line_height", |c, x| {
            c.data.line_height[0] = x as f32;
            !(x as f32 >= 0.8 && x as f32 <= c.data.line_height[1])
        }),
        f("data.line_height", |c, x| {
            c.data.line_height[1] = x as f32;
            !((1.0..=3.0).contains(&(x as f32)))
        }),
        f("data.margin", |c, x| {
            c.data.margin[1] = x as f32;
            !((0.0..0.3).contains(&(x as f32)) && x as f32 >= c.data.margin[0])
        }),
        f("optim.lr", |c, x| {
            c.optim.lr = x;
            !(x.is_finite() && x >= c.optim.min_lr && x > 0.0)
        }),
        f("min_lr", |c, x| {
            c.optim.min_lr = x;
            !(x >= 0.0 && x <= c.optim.lr)
        }),
        f("optim.betas", |c, x| {
            c.optim.betas[1] = x;
            !(0.0..1.0).contains(&x)
        }),
        f("optim.eps", |c, x| {
            c.optim.eps = x;
            !(x.is_finite() && x > 0.0)
        }),
        f("optim.weight_decay", |c, x| {
            c.optim.weight_decay = x;
            !(x.is_finite() && x >= 0.0)
        }),
        f("optim.clip_norm", |c, x| {
            c.optim.clip_norm = x;
            !(x.is_finite() && x >= 0.0)
        }),
        f("optim.max_loss", |c, x| {
            c.optim.max_loss = x;
            x.is_nan() || x <= 0.0
        }),
        f("eval.ratios", |c, x| {
            c.eval.ratios.push(x);
            !(x.is_finite() && x > 0.0)
        }),
        f("data.stages[0].ratios", |c, x| {
            c.data.stages = vec![Stage { until: 3, ratios: [1.0, x], batch: None, probe_share: None }];
            !(x.is_finite() && x >= 1.0)
        }),
        f("data.stages[1].until", |c, _| {
            c.data.stages = vec![
                Stage { until: 3, ratios: [1.0, 2.0], batch: None, probe_share: None },
                Stage { until: 3, ratios: [1.0, 2.0], batch: None, probe_share: None },
            ];
            true
        }),
        f("data.stages[0].batch", |c, _| {
            c.data.stages = vec![Stage { until: 3, ratios: [1.0, 2.0], batch: Some(0), probe_share: None }];
            true
        }),
        f("optim.steps", |c, _| {
            c.optim.steps = 0;
            true
        }),
        f("batch", |c, _| {
            c.optim.batch = 0;
            true
        }),
        f("accumulate", |c, _| {
            c.optim.accumulate = 0;
            true
        }),
        f("checkpoint_every", |c, _| {
            c.run.checkpoint_every = 0;
            true
        }),
        f("log_every", |c, _| {
            c.run.log_every = 0;
            true
        }),
        f("data.train", |c, _| {
            c.data.train.clear();
            true
        }),
        f("canvas", |c, _| {
            c.model.canvas = 100;
            true
        }),
        f("vocab_size", |c, _| {
            c.model.vocab_size = 3;
            true
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A valid config printed as TOML (its `Serialize`) reads back to itself and stays valid.
    #[test]
    fn valid_configs_print_and_read_back_to_themselves(c in valid_config()) {
        c.validate().map_err(|e| TestCaseError::fail(format!("generated config refused: {e}")))?;
        let text = toml::to_string(&c).unwrap();
        let back: TrainConfig = toml::from_str(&text).map_err(|e| TestCaseError::fail(format!("{text}\n{e}")))?;
        prop_assert_eq!(&back, &c);
        prop_assert!(back.validate().is_ok());
        prop_assert_eq!(back.model_fingerprint(), c.model_fingerprint());
    }

    /// One field made invalid (NaN, ±inf, negative, zero, out of its range): refused, naming it.
    #[test]
    fn an_invalid_field_is_refused_by_name((field, c) in invalid_edit()) {
        match c.validate() {
            Ok(()) => prop_assert!(false, "accepted with {field} invalid: {:?}", c.optim),
            Err(e) => prop_assert!(e.to_string().contains(&field), "{field}: {e}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Arbitrary TOML (junk, or the tiny config with a line dropped or a value replaced): a valid
    /// config or an error naming the file, never a panic.
    #[test]
    fn arbitrary_config_files_load_or_name_the_file(
        edit in prop_oneof![
            "[ -~\n]{0,120}".prop_map(|t| (t, None)),
            (any::<prop::sample::Index>(), prop::option::of(prop_oneof![
                Just("nan".to_string()), Just("-inf".to_string()), Just("-1".to_string()), Just("0".to_string()),
                Just("1e999".to_string()), Just("\"x\"".to_string()), Just("[]".to_string()), Just("18446744073709551616".to_string()),
            ])).prop_map(|(i, v)| (String::new(), Some((i, v)))),
        ],
    ) {
        let text = match edit {
            (t, None) => t,
            (_, Some((i, v))) => {
                let mut lines: Vec<String> = TINY.lines().map(String::from).collect();
                let k = i.index(lines.len());
                match v {
                    None => { lines.remove(k); }
                    Some(v) => if let Some((key, _)) = lines[k].split_once(" = ") { lines[k] = format!("{key} = {v}"); },
                }
                lines.join("\n")
            }
        };
        let dir = tempdir();
        let path = dir.path().join("fuzz.toml");
        std::fs::write(&path, &text).unwrap();
        match TrainConfig::load(&path, dir.path()) {
            Ok(c) => prop_assert!(c.validate().is_ok()),
            Err(e) => prop_assert!(e.to_string().contains(&path.display().to_string()), "{e}"),
        }
    }
}

/// Regression (found by `an_invalid_field_is_refused_by_name`): optim.eps, optim.weight_decay,
/// optim.clip_norm and optim.max_loss were not checked, so eps = NaN (or 0, dividing by zero where
/// the second moment is 0), a negative weight decay or clip norm, and max_loss = NaN (never stopping
/// a diverged run) were accepted; each is refused naming its field now.
#[test]
fn optimiser_numbers_are_checked_by_name() {
    for (field, edit) in [
        ("optim.eps", (|c: &mut TrainConfig| c.optim.eps = f64::NAN) as fn(&mut TrainConfig)),
        ("optim.eps", |c| c.optim.eps = 0.0),
        ("optim.weight_decay", |c| c.optim.weight_decay = -0.01),
        ("optim.clip_norm", |c| c.optim.clip_norm = f64::NAN),
        ("optim.max_loss", |c| c.optim.max_loss = f64::NAN),
    ] {
        let mut c = tiny();
        edit(&mut c);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
}
