//! Pages are a pure function of their coordinates, and their targets spell the ground truth.

use std::sync::Arc;

use occ_core::TextTokenizer;
use occ_model::mini::OutputVocab;
use occ_train::data::{read_passages, PageSource, TextKind};

use crate::common::{tempdir, tiny_config};

pub fn source(cfg: &occ_train::TrainConfig) -> (PageSource, Arc<TextTokenizer>, Arc<OutputVocab>) {
    let tok = Arc::new(TextTokenizer::deepseek_ocr().unwrap());
    let passages = read_passages(&cfg.data.train[0]).unwrap();
    let extra = occ_train::model::prompt_ids(&cfg.model, &tok).unwrap();
    let vocab = Arc::new(
        OutputVocab::build(&tok, passages.iter().map(|p| p.text.as_str()), &extra, cfg.model.vocab_size).unwrap(),
    );
    let src = PageSource {
        passages,
        cfg: cfg.data.clone(),
        mode: cfg.model.mode().unwrap(),
        tok: tok.clone(),
        vocab: vocab.clone(),
        max_target: 200,
        place: true,
    };
    (src, tok, vocab)
}

#[test]
fn pages_depend_only_on_their_coordinates() {
    let dir = tempdir();
    let cfg = tiny_config(dir.path(), |s| s);
    let (src, tok, vocab) = source(&cfg);
    let a = src.batch(7, 3, 1, 6).unwrap();
    let b = src.batch(7, 3, 1, 6).unwrap();
    let c = src.batch(7, 4, 1, 6).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.text, y.text);
        assert_eq!(x.image.as_raw(), y.image.as_raw());
        assert_eq!(x.target, y.target);
    }
    assert!(a.iter().zip(&c).any(|(x, y)| x.text != y.text), "another step draws other pages");
    for p in &a {
        assert_eq!((p.image.width(), p.image.height()), (128, 128));
        let real = vocab.to_real(&p.target).unwrap();
        assert_eq!(tok.decode(&real, false).unwrap(), p.text, "the target spells the ground truth exactly");
        assert!(p.ratio > 0.5 && p.ratio < 4.0, "ratio {}", p.ratio);
    }
}

#[test]
fn bad_passage_files_are_named_by_line() {
    let dir = tempdir();
    let p = dir.path().join("bad.jsonl");
    std::fs::write(&p, "{\"id\": \"a\", \"text\": \"fine\"}\n{\"id\": \"b\"}\n").unwrap();
    let err = read_passages(&p).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl") && err.contains("line 2") && err.contains("text"), "{err}");
}

#[test]
fn pages_longer_than_the_decoder_takes_are_redrawn() {
    let dir = tempdir();
    let cfg = tiny_config(dir.path(), |s| s.replace("probe_share = 0.3", "probe_share = 0.6"));
    let (mut src, _, _) = source(&cfg);
    let all = src.batch(7, 0, 0, 16).unwrap();
    let longest = all.iter().map(|p| p.target.len()).max().unwrap();
    src.max_target = longest - 1; // at least one of these draws is now too long
    for p in src.batch(7, 0, 0, 16).unwrap() {
        assert!(p.target.len() < longest, "a page of {} reader tokens got through", p.target.len());
    }
    for p in src.fixed_ratio_pages(3.0, 2).unwrap() {
        assert!(p.target.len() < longest);
    }
}

#[test]
fn curriculum_stages_set_the_ratios_and_batch_of_their_steps() {
    let dir = tempdir();
    let cfg = tiny_config(dir.path(), |s| {
        s.replace("probe_share = 0.3", "probe_share = 0.0\n[[data.stages]]\nuntil = 2\nratios = [5.0, 6.0]\nbatch = 3")
    });
    assert_eq!((cfg.data.batch_at(0, 4), cfg.data.batch_at(1, 4), cfg.data.batch_at(2, 4)), (3, 3, 4));
    let (src, _, _) = source(&cfg);
    for page in src.batch(7, 1, 0, 4).unwrap() {
        assert!(page.ratio > 4.5, "a stage-1 page at {}x", page.ratio);
    }
    for page in src.batch(7, 2, 0, 4).unwrap() {
        assert!(page.ratio < 3.5, "a page after the stage at {}x", page.ratio);
    }
}

#[test]
fn a_stage_may_set_the_probe_share() {
    let dir = tempdir();
    let cfg = tiny_config(dir.path(), |s| {
        s.replace(
            "probe_share = 0.3",
            "probe_share = 0.0\n[[data.stages]]\nuntil = 2\nratios = [1.5, 3.0]\nprobe_share = 1.0",
        )
    });
    let (src, _, _) = source(&cfg);
    assert!(src.batch(7, 1, 0, 8).unwrap().iter().all(|p| p.kind != TextKind::Prose), "stage 1: probes only");
    assert!(src.batch(7, 2, 0, 8).unwrap().iter().all(|p| p.kind == TextKind::Prose), "after it: prose only");
}

#[test]
fn input_dropout_hides_inputs_never_labels() {
    let dir = tempdir();
    let plain = tiny_config(dir.path(), |s| s.to_string());
    let hidden = tiny_config(dir.path(), |s| s.replace("probe_share = 0.3", "probe_share = 0.3\ninput_dropout = 0.5"));
    let (a, _, _) = source(&plain);
    let (b, _, _) = source(&hidden);
    let placeholder = b.vocab.reader_id(occ_core::tokenizer::IMAGE_ID).unwrap();
    let pa = a.batch(3, 4, 0, 8).unwrap();
    let pb = b.batch(3, 4, 0, 8).unwrap();
    let (mut kept, mut dropped) = (0, 0);
    for (x, y) in pa.iter().zip(&pb) {
        assert_eq!(x.input, x.target, "no dropout: the input is the target");
        // the same page and labels: dropout is drawn after the page
        assert_eq!((&x.text, &x.target), (&y.text, &y.target));
        assert_eq!(y.input.len(), y.target.len());
        for (&i, &t) in y.input.iter().zip(&y.target) {
            if i == t {
                kept += 1;
            } else {
                assert_eq!(i, placeholder, "a dropped input becomes the image placeholder");
                dropped += 1;
            }
        }
    }
    let share = f64::from(dropped) / f64::from(kept + dropped);
    assert!((0.35..0.65).contains(&share), "{dropped} of {} inputs hidden", kept + dropped);
    // seeded by the page's coordinates: the same step draws the same inputs
    let again = b.batch(3, 4, 0, 8).unwrap();
    assert!(again.iter().zip(&pb).all(|(x, y)| x.input == y.input));
}

#[test]
fn validation_probes_are_fixed_unguessable_pages_at_the_asked_ratio() {
    let dir = tempdir();
    let cfg = tiny_config(dir.path(), |s| s);
    let (src, tok, vocab) = source(&cfg);
    let a = src.fixed_ratio_probes(2.0, 4).unwrap();
    let b = src.fixed_ratio_probes(2.0, 4).unwrap();
    assert_eq!(a.len(), 4);
    let kinds: Vec<TextKind> = a.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [TextKind::RandomString, TextKind::ShuffledWords, TextKind::RandomString, TextKind::ShuffledWords]
    );
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.text, y.text, "the same probes at every validation");
        assert_eq!(x.image.as_raw(), y.image.as_raw());
        assert!((x.ratio - 2.0).abs() < 1e-9, "ratio {}", x.ratio);
        let real = vocab.to_real(&x.target).unwrap();
        assert_eq!(tok.decode(&real, false).unwrap(), x.text, "the target spells the ground truth exactly");
    }
    assert_ne!(a[0].text, a[2].text, "each page index draws its own probe");
    // and they are not training pages: no training step draws the same text
    let train = src.batch(cfg.run.seed, 0, 0, 8).unwrap();
    assert!(train.iter().all(|p| a.iter().all(|q| q.text != p.text)));
}

/// The cell loss's targets: every reader token of a page's text that is drawn is placed on the
/// page, in reading order (lines top to bottom, left to right within a line), so that the placed
/// ids spell the page's text without its whitespace.
#[test]
fn placed_tokens_spell_the_page_in_reading_order() {
    let dir = tempdir();
    let cfg = tiny_config(dir.path(), |s| s);
    let (src, tok, vocab) = source(&cfg);
    for p in src.batch(11, 0, 0, 6).unwrap() {
        assert!(!p.placed.is_empty(), "{:?}: nothing placed", p.text);
        let ids: Vec<u32> = p.placed.iter().map(|x| x.id).collect();
        let spelt = tok.decode(&vocab.to_real(&ids).unwrap(), false).unwrap();
        let strip = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        assert_eq!(strip(&spelt), strip(&p.text), "{:?}", p.kind);
        for w in p.placed.windows(2) {
            let (a, b) = (w[0], w[1]);
            assert!((0.0..=1.0).contains(&a.x) && (0.0..=1.0).contains(&a.y), "{a:?} is off the page");
            assert!(b.y >= a.y, "{b:?} is above {a:?}");
            if b.y == a.y {
                assert!(b.x >= a.x, "{b:?} is left of {a:?} on the same line");
            }
        }
        // the text spans the page: the first token is near the top left, the last lower down
        let (first, last) = (p.placed[0], p.placed[p.placed.len() - 1]);
        assert!(first.x < 0.5 && first.y < 0.5, "first token at {first:?}");
        assert!(last.y > first.y || p.placed.len() < 8, "last token at {last:?}");
    }
}
