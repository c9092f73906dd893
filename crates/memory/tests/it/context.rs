//! Token accounting of `context()` against the mode tables, the render cache, determinism, budgets.

use std::sync::Arc;

use occ_core::Mode;
use occ_memory::{AgeUnit, Content, MemoryConfig, OpticalMemory, Representation, Role, Round, Schedule};

use crate::util::{memory, push_rounds, round_text, tokenizer};

#[test]
fn context_costs_match_the_mode_tables() {
    // Ages 5..0 under the paper ladder: base, base, large, large, gundam, text.
    let (mut m, _) = memory("paper");
    push_rounds(&mut m, 6);
    let ctx = m.context().unwrap();
    let tok = tokenizer();
    let want: [(Representation, usize, usize); 6] = [
        (Representation::Image { mode: Mode::Base }, 273, 256),
        (Representation::Image { mode: Mode::Base }, 273, 256),
        (Representation::Image { mode: Mode::Large }, 421, 400),
        (Representation::Image { mode: Mode::Large }, 421, 400),
        (Representation::Image { mode: Mode::Gundam }, 903, 856), // 1280×1920 page: 2×3 tiles
        (Representation::Text, 0, 0),
    ];
    assert_eq!(ctx.segments.len(), 6);
    for (i, (seg, (repr, slots, nominal))) in ctx.segments.iter().zip(want).enumerate() {
        assert_eq!(seg.round_id, format!("r{i}"), "oldest first");
        assert_eq!(seg.age, 5 - i as u64);
        assert_eq!(seg.representation, repr, "r{i}");
        assert_eq!((seg.cost.vision_slots, seg.cost.vision_nominal), (slots, nominal), "r{i}");
        match (&seg.content, repr) {
            (Content::Text(t), Representation::Text) => {
                assert_eq!(t, &round_text(i));
                assert_eq!(seg.cost.text_tokens, tok.count(t).unwrap());
            }
            (Content::Pages(p), _) => {
                assert_eq!(p.len(), 1, "a short round fits one page");
                assert_eq!(p[0].image.dimensions(), repr.reading_mode().unwrap().default_canvas());
                assert_eq!(p[0].text, round_text(i), "the page holds the whole round");
                assert_eq!(seg.cost.text_tokens, 0);
            }
            other => panic!("r{i}: unexpected content {other:?}"),
        }
    }
    let t = ctx.totals;
    assert_eq!(t.cost.vision_slots, 273 * 2 + 421 * 2 + 903);
    assert_eq!(t.cost.vision_nominal, 256 * 2 + 400 * 2 + 856);
    assert_eq!(t.tokens, t.cost.vision_slots + tok.count(&round_text(5)).unwrap());
    assert_eq!(t.all_text_tokens, (0..6).map(|i| tok.count(&round_text(i)).unwrap()).sum::<usize>());
    assert_eq!((t.rounds, t.text_rounds, t.image_rounds, t.dropped_rounds, t.pages), (6, 1, 5, 0, 5));
}

#[test]
fn tiny_and_small_pages_cost_their_table_slots_and_long_rounds_paginate() {
    // A Tiny page holds round(10 · 64) = 640 text tokens: a ~1,500-token round needs 3 pages.
    let (mut m, _) = memory("ladder:levels=text@0/tiny@1");
    let long: String = (0..120).map(|i| format!("Sentence {i} of a long tool output about whales. ")).collect();
    let n = tokenizer().count(&long).unwrap();
    m.push(Round::new("long", Role::Tool, long.clone())).unwrap();
    m.push(Round::new("now", Role::User, "ok")).unwrap();
    let ctx = m.context().unwrap();
    let seg = &ctx.segments[0];
    let Content::Pages(pages) = &seg.content else { panic!("pages") };
    assert_eq!(pages.len(), n.div_ceil(640), "{n} tokens");
    assert_eq!(seg.cost.vision_slots, 73 * pages.len());
    assert_eq!(seg.cost.vision_nominal, 64 * pages.len());
    let joined: String = pages.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(joined, long, "pages concatenate to the round");
    assert!(pages.iter().all(|p| p.image.dimensions() == (512, 512) && p.mode == Mode::Tiny));

    let (mut m, _) = memory("ladder:levels=text@0/small@1");
    push_rounds(&mut m, 2);
    assert_eq!(m.context().unwrap().segments[0].cost.vision_slots, 111);
}

#[test]
fn downsampled_pages_keep_aspect_and_cost_the_target_mode() {
    let (mut m, _) = memory("ladder:levels=text@0/gundam@1/gundam>large@2/gundam>base@3/gundam>tiny@4");
    push_rounds(&mut m, 5);
    let ctx = m.context().unwrap();
    // (age 4) gundam>tiny, (3) gundam>base, (2) gundam>large, (1) gundam, (0) text.
    let sizes: Vec<((u32, u32), usize)> = ctx.segments[..4]
        .iter()
        .map(|s| match &s.content {
            Content::Pages(p) => (p[0].image.dimensions(), s.cost.vision_slots),
            Content::Text(_) => panic!("text"),
        })
        .collect();
    // 1280×1920 fitted inside 512², 1024², 1280² with the aspect kept.
    assert_eq!(sizes, vec![((341, 512), 73), ((683, 1024), 273), ((853, 1280), 421), ((1280, 1920), 903)]);
    assert_eq!(occ_memory::fit_inside(1280, 1920, Mode::Tiny), (341, 512));
    assert_eq!(occ_memory::fit_inside(400, 300, Mode::Tiny), (400, 300), "never enlarged");
}

#[test]
fn render_cache_renders_each_round_once_per_representation() {
    let (mut m, _) = memory("paper:policy=downsample");
    push_rounds(&mut m, 4);
    // Ages 3, 2: gundam>large (resampled entry + the gundam source: 2 misses each); age 1: gundam.
    m.context().unwrap();
    let s = m.cache_stats();
    assert_eq!((s.hits, s.misses, s.entries), (0, 5, 5));
    m.context().unwrap();
    let s = m.cache_stats();
    assert_eq!((s.hits, s.misses), (3, 5), "second context is served from the cache");
    // A new round ages everything by one: r0 → gundam>base (new resample, cached gundam source),
    // r1, r2 → gundam>large (r1 cached; r2 new resample of its cached gundam page), r3 → gundam (new).
    m.push(Round::new("r4", Role::User, round_text(4))).unwrap();
    m.context().unwrap();
    let s = m.cache_stats();
    assert_eq!((s.hits, s.misses), (3 + 3, 5 + 3));
    // Identical texts share entries whatever their ids: r4-again (age 1, gundam) gets the Gundam
    // page that r4's downscale (age 2, gundam>large) was made from.
    m.push(Round::new("r4-again", Role::User, round_text(4))).unwrap();
    m.push(Round::new("r5", Role::User, round_text(5))).unwrap();
    let ctx = m.context().unwrap();
    let again = ctx.segments.iter().find(|s| s.round_id == "r4-again").unwrap();
    assert_eq!(again.representation, Representation::Image { mode: Mode::Gundam });
    let Content::Pages(a) = &again.content else { panic!("pages") };
    let b = m.pages("r4", Representation::Image { mode: Mode::Gundam }).unwrap();
    assert!(Arc::ptr_eq(a, &b), "one render for both rounds");
}

#[test]
fn context_is_deterministic_across_memories() {
    let run = || {
        let (mut m, _) = memory("paper:policy=downsample");
        push_rounds(&mut m, 7);
        m.context().unwrap()
    };
    let (a, b) = (run(), run());
    assert_eq!(a.totals, b.totals);
    for (x, y) in a.segments.iter().zip(&b.segments) {
        assert_eq!((x.representation, x.cost), (y.representation, y.cost));
        if let (Content::Pages(p), Content::Pages(q)) = (&x.content, &y.content) {
            assert!(p.iter().zip(q.iter()).all(|(p, q)| p.image.as_raw() == q.image.as_raw()), "{}", x.round_id);
        }
    }
}

#[test]
fn wall_clock_ages_come_from_the_injected_clock() {
    use std::time::Duration;
    let (mut m, clock) = memory("paper-time");
    m.push(Round::new("old", Role::User, "a week-old question")).unwrap();
    clock.advance(Duration::from_secs(7 * 86_400));
    m.push(Round::new("hour", Role::Assistant, "an answer from an hour ago")).unwrap();
    clock.advance(Duration::from_secs(3_600));
    m.push(Round::new("now", Role::User, "a fresh question")).unwrap();
    assert_eq!(m.age("old", AgeUnit::Seconds).unwrap(), 7 * 86_400 + 3_600);
    assert_eq!(m.age("old", AgeUnit::Rounds).unwrap(), 2);
    let reprs: Vec<Representation> = m.context().unwrap().segments.iter().map(|s| s.representation).collect();
    assert_eq!(
        reprs,
        vec![
            Representation::Image { mode: Mode::Base },
            Representation::Image { mode: Mode::Gundam },
            Representation::Text
        ]
    );
    clock.advance(Duration::from_secs(3_650 * 86_400));
    let ctx = m.context().unwrap();
    assert!(ctx.segments.is_empty(), "ten years later everything is dropped");
    assert_eq!(ctx.dropped, vec!["old", "hour", "now"]);
    assert_eq!(ctx.tokens(), 0);
}

#[test]
fn budget_picks_the_most_faithful_candidate_that_fits() {
    let tok = tokenizer();
    let (mut m, _) = memory("paper");
    push_rounds(&mut m, 6);
    let all_text: usize = (0..6).map(|i| tok.count(&round_text(i)).unwrap()).sum();
    let newest = tok.count(&round_text(5)).unwrap();
    // Enough for everything as text: the first candidate.
    let c = m.budget(all_text).unwrap();
    assert_eq!((c.index, c.schedule.name.as_str(), c.tokens), (0, "text", all_text));
    assert_eq!(m.context().unwrap().tokens(), all_text);
    // One token less (the rounds are ~25 tokens each, all text ~150): the exp ladders keep all six
    // rounds as text or add Gundam pages (903 slots); text@0 + Tiny pages (73 slots) for ages 1..k
    // fits only for k = 1, so the first fit is "newest as text, the one before as Tiny".
    let c = m.budget(all_text - 1).unwrap();
    assert_eq!(c.schedule.name, "ladder:levels=text@0/tiny@1/dropped@2");
    assert_eq!(c.tokens, newest + 73);
    assert_eq!(c.considered.len(), c.index + 1);
    assert!(c.considered[..c.index].iter().all(|(_, t)| *t > all_text - 1));
    let ctx = m.context().unwrap();
    assert_eq!((ctx.tokens(), ctx.dropped.len()), (newest + 73, 4));
    // Below that, only the newest round as text remains.
    let c = m.budget(newest + 72).unwrap();
    assert_eq!((c.schedule.name.as_str(), c.tokens), ("ladder:levels=text@0/dropped@1", newest));
    // The budget-constrained spec re-selects on every context() call.
    m.set_schedule("budget:tokens=100000".parse::<occ_memory::ScheduleSpec>().unwrap());
    assert_eq!(m.context().unwrap().schedule, "text");
    // A budget-sized memory with a long history prefers images over dropping.
    let (mut m, _) = memory("paper");
    let long: String = (0..60).map(|i| format!("Line {i} of a long tool output. ")).collect();
    for i in 0..4 {
        m.push(Round::new(format!("t{i}"), Role::Tool, format!("{i}: {long}"))).unwrap();
    }
    let c = m.budget(2_000).unwrap();
    let ctx = m.context().unwrap();
    assert!(ctx.tokens() <= 2_000 && ctx.totals.image_rounds > 0, "{} {:?}", c.schedule, ctx.totals);
}

#[test]
fn tokens_with_equals_the_assembled_context() {
    let (mut m, _) = memory("paper");
    push_rounds(&mut m, 9);
    for s in Schedule::budget_family() {
        let t = m.tokens_with(&s).unwrap();
        assert_eq!(t, m.context_with(&s).unwrap().tokens(), "{}", s.name);
    }
}

#[test]
fn invalid_page_ratio_is_rejected() {
    let cfg = MemoryConfig { page_ratio: 0.0, ..MemoryConfig::default() };
    let err = OpticalMemory::with_parts(cfg, tokenizer(), Arc::new(occ_memory::ManualClock::at(0))).unwrap_err();
    assert!(err.to_string().contains("page ratio 0"), "{err}");
}
