//! Bad configs are refused, naming the field.

use occ_train::TrainConfig;

use crate::common::{tempdir, TINY};

fn load(text: &str) -> String {
    let dir = tempdir();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, text).unwrap();
    TrainConfig::load(&p, dir.path()).unwrap_err().to_string()
}

#[test]
fn unknown_fields_are_named() {
    let err = load(&TINY.replace("width = 16", "width = 16\nwidht = 3"));
    assert!(err.contains("widht"), "{err}");
    let err = load(&TINY.replace("[optim]", "[optim]\nmomentum = 0.9"));
    assert!(err.contains("momentum"), "{err}");
}

#[test]
fn dimensions_that_cannot_build_are_named() {
    let err = load(&TINY.replace("heads = 2\nmlp_dim", "heads = 3\nmlp_dim"));
    assert!(err.contains("sam.heads"), "{err}");
    let err = load(&TINY.replace("canvas = 128", "canvas = 100"));
    assert!(err.contains("canvas"), "{err}");
    let err = load(&TINY.replace("experts_per_token = 2", "experts_per_token = 5"));
    assert!(err.contains("experts_per_token"), "{err}");
    let err = load(&TINY.replace("vocab_size = 320", "vocab_size = 100"));
    assert!(err.contains("vocab_size"), "{err}");
    let err = load(&TINY.replace("ratios = [1.5, 3.0]", "ratios = [3.0, 1.5]"));
    assert!(err.contains("data.ratios"), "{err}");
    let err = load(&TINY.replace("max_positions = 256", "max_positions = 10"));
    assert!(err.contains("max_positions"), "{err}");
    let err = load(&TINY.replace("probe_share = 0.3", "probe_share = 0.3\ninput_dropout = 0.95"));
    assert!(err.contains("data.input_dropout"), "{err}");
}

#[test]
fn the_shipped_configs_load() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for name in ["mini-xs", "mini-xs-read", "mini-s", "mini-m", "mini-l", "diag-128"] {
        let p = root.join(format!("experiments/train/{name}.toml"));
        let cfg = TrainConfig::load(&p, &root).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(cfg.name, name);
    }
}

#[test]
fn curriculum_stages_are_checked_by_field() {
    let stages = |text: &str| TINY.replace("probe_share = 0.3", &format!("probe_share = 0.3\n{text}"));
    let err = load(&stages(
        "[[data.stages]]\nuntil = 5\nratios = [1.0, 2.0]\n[[data.stages]]\nuntil = 5\nratios = [1.0, 2.0]",
    ));
    assert!(err.contains("data.stages[1].until"), "{err}");
    let err = load(&stages("[[data.stages]]\nuntil = 5\nratios = [2.0, 1.0]"));
    assert!(err.contains("data.stages[0].ratios"), "{err}");
    let err = load(&stages("[[data.stages]]\nuntil = 5\nratios = [1.0, 2.0]\nbatch = 0"));
    assert!(err.contains("data.stages[0].batch"), "{err}");
    let err = load(&stages("[[data.stages]]\nuntil = 5\nratios = [1.0, 2.0]\nprobe_share = 1.5"));
    assert!(err.contains("data.stages[0].probe_share"), "{err}");
    let err = load(&stages("[[data.stages]]\nuntil = 5\nratio = [1.0, 2.0]"));
    assert!(err.contains("ratio"), "{err}");
}

/// `ink_input` is written only when set: the configs (and so the architecture fingerprints) of
/// readers trained before it existed are unchanged, and their checkpoints still resume.
#[test]
fn ink_input_is_written_only_when_set() {
    let dir = tempdir();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, TINY).unwrap();
    let light = TrainConfig::load(&p, dir.path()).unwrap();
    assert!(!light.model.sam.ink_input);
    assert!(!serde_json::to_string(&light.model).unwrap().contains("ink_input"));
    std::fs::write(&p, TINY.replace("width = 16", "width = 16\nink_input = true")).unwrap();
    let ink = TrainConfig::load(&p, dir.path()).unwrap();
    let json = serde_json::to_string(&ink.model).unwrap();
    assert!(json.contains("\"ink_input\":true"), "{json}");
    assert_ne!(ink.model_fingerprint(), light.model_fingerprint());
    assert!(ink.model.vision().sam.ink_input, "the flag reaches the encoder");
}
