//! Bad input gives clear errors.

use occ_core::fakes::FakeOcr;
use occ_memory::schedule::file;
use occ_memory::{AgeUnit, Level, MemoryError, Role, Round, Schedule, ScheduleError, ScheduleSpec};

use crate::util::{memory, push_rounds};

fn parse_err(spec: &str) -> ScheduleError {
    spec.parse::<ScheduleSpec>().expect_err(spec)
}

#[test]
fn schedule_without_levels_is_an_error() {
    assert!(matches!(Schedule::new("empty", AgeUnit::Rounds, vec![]), Err(ScheduleError::NoLevels { .. })));
    assert!(matches!(parse_err("ladder:levels="), ScheduleError::NoLevels { .. }));
    assert!(matches!(parse_err("ladder"), ScheduleError::NoLevels { .. }));
    let err = file::parse_str("[[schedule]]\nname = \"x\"\nlevels = []\n", "f.toml").unwrap_err();
    assert!(matches!(err, ScheduleError::NoLevels { .. }), "{err}");
    assert!(err.to_string().contains("has no levels"), "{err}");
    let err = file::parse_str("", "f.toml").unwrap_err();
    assert!(err.to_string().contains("no [[schedule]] tables"), "{err}");
}

#[test]
fn negative_ages_are_reported_as_negative() {
    let err = parse_err("paper:ages=-1/2/4/8/16");
    assert!(matches!(&err, ScheduleError::NegativeAge { value, .. } if value == "-1"), "{err:?}");
    assert!(err.to_string().contains("\"-1\" in ages is negative"), "{err}");
    assert!(matches!(parse_err("step:width=-3"), ScheduleError::NegativeAge { .. }));
    assert!(matches!(parse_err("ladder:levels=text@0/tiny@-2h"), ScheduleError::NegativeAge { .. }));
    let toml = "[[schedule]]\nname = \"n\"\nlevels = [{ from = 0, repr = \"text\" }, { from = -1, repr = \"tiny\" }]\n";
    let err = file::parse_str(toml, "f.toml").unwrap_err();
    assert!(matches!(&err, ScheduleError::NegativeAge { field, .. } if field == "levels[1].from"), "{err:?}");
}

#[test]
fn non_monotone_and_malformed_schedules_are_errors() {
    let err = parse_err("paper:ages=4/2/8/16/32");
    assert!(matches!(err, ScheduleError::NotMonotone { index: 2, prev: 4, next: 2, .. }), "{err:?}");
    assert!(matches!(parse_err("ladder:levels=text@0/base@4/tiny@4"), ScheduleError::NotMonotone { .. }));
    assert!(matches!(parse_err("ladder:levels=base@1"), ScheduleError::FirstLevelNotZero { from: 1, .. }));
    assert!(matches!(parse_err("ladder:levels=dropped@0"), ScheduleError::DropsNewest { .. }));
    assert!(matches!(parse_err("ladder:levels=text@0/tiny>base@3"), ScheduleError::InvalidDownscale { .. }));
    assert!(matches!(parse_err("ladder:levels=text@0/tiny@1d/dropped@9"), ScheduleError::MixedUnits { .. }));
    assert!(matches!(parse_err("exp:factor=1"), ScheduleError::BadValue { .. }));
    assert!(matches!(parse_err("paper:ages=1/2/3"), ScheduleError::BadValue { .. }));
    assert!(matches!(parse_err("paper:modes=huge"), ScheduleError::BadValue { .. }));
    assert!(matches!(parse_err("paper:policy=blur"), ScheduleError::BadValue { .. }));
    assert!(matches!(parse_err("budget:tokens=-5"), ScheduleError::BadValue { .. }));
    assert!(matches!(parse_err("budget"), ScheduleError::BadValue { .. }));
    let err = parse_err("forgetful");
    assert!(err.to_string().contains("expected one of text, paper"), "{err}");
    let err = parse_err("paper:width=3");
    assert!(matches!(&err, ScheduleError::UnknownKey { key, .. } if key == "width"), "{err:?}");
    assert!(matches!(parse_err("step:k=3"), ScheduleError::UnknownKey { .. }));
    let levels = vec![
        Level { from: 0, repr: occ_memory::Representation::Text },
        Level { from: 0, repr: occ_memory::Representation::Dropped },
    ];
    assert!(matches!(Schedule::new("dup", AgeUnit::Rounds, levels), Err(ScheduleError::NotMonotone { .. })));
}

#[test]
fn budget_below_one_round_is_an_error() {
    let (mut m, _) = memory("paper");
    push_rounds(&mut m, 3);
    let err = m.budget(5).unwrap_err();
    let MemoryError::BudgetTooSmall { budget, cheapest_tokens, ref cheapest, rounds } = err else { panic!("{err:?}") };
    assert_eq!((budget, rounds), (5, 3));
    // The newest round is ~25 text tokens, cheaper than a 73-slot Tiny page.
    assert_eq!(cheapest, "ladder:levels=text@0/dropped@1");
    assert!(cheapest_tokens > 5);
    assert!(err.to_string().contains("raise the budget to at least"), "{err}");
    // The schedule is unchanged after a failed budget.
    assert_eq!(m.context().unwrap().schedule, "paper");
    // The same through a budget schedule.
    m.set_schedule("budget:tokens=5".parse::<ScheduleSpec>().unwrap());
    assert!(matches!(m.context(), Err(MemoryError::BudgetTooSmall { .. })));
    // No candidates at all.
    let mut cfg = m.config().clone();
    cfg.candidates.clear();
    let mut empty = occ_memory::OpticalMemory::with_parts(
        cfg,
        crate::util::tokenizer(),
        std::sync::Arc::new(occ_memory::ManualClock::at(0)),
    )
    .unwrap();
    assert!(matches!(empty.budget(10), Err(MemoryError::NoCandidates)));
}

#[test]
fn unknown_and_duplicate_round_ids_are_errors() {
    let (mut m, _) = memory("paper");
    push_rounds(&mut m, 2);
    let mut engine = FakeOcr::fixed("x");
    let err = m.recall("nope", &mut engine).unwrap_err();
    assert!(matches!(&err, MemoryError::UnknownRound { id, rounds: 2 } if id == "nope"), "{err:?}");
    assert!(err.to_string().contains("unknown round id \"nope\""), "{err}");
    assert!(matches!(m.representation("nope"), Err(MemoryError::UnknownRound { .. })));
    let err = m.push(Round::new("r1", Role::User, "again")).unwrap_err();
    assert!(matches!(err, MemoryError::DuplicateRound { .. }), "{err:?}");
    assert_eq!(m.len(), 2);
}
