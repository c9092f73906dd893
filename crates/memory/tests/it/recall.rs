//! Recall through an engine (fakes from occ-core).

use std::collections::HashMap;

use occ_core::fakes::FakeOcr;
use occ_core::Mode;
use occ_memory::Representation;

use crate::util::{memory, push_rounds, round_text};

#[test]
fn recall_reads_imaged_rounds_through_the_engine() {
    let (mut m, _) = memory("paper");
    push_rounds(&mut m, 3);
    // r0 is Large (age 2), r1 Gundam (age 1), r2 text.
    let mut truth = HashMap::new();
    for id in ["r0", "r1"] {
        let repr = m.representation(id).unwrap();
        let pages = m.pages(id, repr).unwrap();
        for (k, p) in pages.iter().enumerate() {
            truth.insert(format!("{id}#p{k}"), p.text.clone());
        }
    }
    let mut perfect = FakeOcr::perfect(truth.clone());
    let r = m.recall("r0", &mut perfect).unwrap();
    assert_eq!(r.representation, Representation::Image { mode: Mode::Large });
    assert_eq!((r.text.as_str(), r.ground_truth.as_str()), (round_text(0).as_str(), round_text(0).as_str()));
    assert_eq!(r.outputs.len(), 1);
    assert_eq!(perfect.calls(), 1);

    let mut lossy = FakeOcr::drop_every(truth, 2);
    let r = m.recall("r1", &mut lossy).unwrap();
    let want: String = round_text(1).chars().enumerate().filter(|(i, _)| (i + 1) % 2 != 0).map(|(_, c)| c).collect();
    assert_eq!(r.text, want);

    // Text rounds never reach the engine.
    let mut never = FakeOcr::fixed("unused");
    let r = m.recall("r2", &mut never).unwrap();
    assert_eq!((r.text, r.representation, never.calls()), (round_text(2), Representation::Text, 0));
}

#[test]
fn dropped_rounds_recall_empty_text() {
    let (mut m, _) = memory("ladder:levels=text@0/dropped@1");
    push_rounds(&mut m, 2);
    let mut engine = FakeOcr::fixed("x");
    let r = m.recall("r0", &mut engine).unwrap();
    assert_eq!((r.text.as_str(), r.representation, engine.calls()), ("", Representation::Dropped, 0));
}

#[test]
fn engine_errors_name_the_round() {
    let (mut m, _) = memory("paper");
    push_rounds(&mut m, 2);
    let mut engine = FakeOcr::perfect(HashMap::new());
    let err = m.recall("r0", &mut engine).unwrap_err().to_string();
    assert!(err.contains("\"r0\"") && err.contains("r0#p0"), "{err}");
}
