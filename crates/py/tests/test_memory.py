"""OpticalMemory: push, context, budget and recall (with Tesseract), and schedules."""

from __future__ import annotations

import difflib

import pytest

import compress_bench as cb

ROUNDS = [
    ("r0", "user", "Find me a flight to Lisbon on May 3, in the morning, for three people."),
    ("r1", "assistant", "TAP 1234 leaves Berlin at 09:40 from gate B12 and lands in Lisbon at 11:55 local time."),
    ("r2", "user", "Book it, and find a hotel near the river for six nights."),
    ("r3", "assistant", "Casa do Rio has three rooms from May 3 to May 9; the booking reference is QX-5521."),
    ("r4", "user", "Thanks. What was the gate of the flight again?"),
]


def filled(schedule="paper", **kw) -> cb.OpticalMemory:
    m = cb.OpticalMemory(schedule=schedule, **kw)
    for rid, role, text in ROUNDS:
        m.push(rid, role, text)
    return m


def test_push_and_context_oldest_first_with_costs():
    m = filled("ladder:levels=text@0/base@2/tiny@3/dropped@4")
    assert len(m) == 5
    assert m.rounds[0] == ROUNDS[0]
    c = m.context()
    # r0 (age 4) dropped; r1 tiny pages; r2 base pages; r3, r4 text.
    assert c.dropped == ["r0"]
    assert [s.round_id for s in c.segments] == ["r1", "r2", "r3", "r4"]
    assert [s.representation for s in c.segments] == ["tiny", "base", "text", "text"]
    assert [s.kind for s in c.segments] == ["pages", "pages", "text", "text"]
    r1, r2, r3, r4 = c.segments
    assert r4.text == ROUNDS[4][2] and r4.cost.text_tokens == cb.count_tokens(ROUNDS[4][2])
    assert r4.cost.vision_slots == 0 and r4.cost.tokens == r4.cost.text_tokens
    assert len(r1.pages) == 1 and r1.pages[0].mode == "tiny" and (r1.pages[0].width, r1.pages[0].height) == (512, 512)
    assert r1.cost.vision_slots == r1.pages[0].vision_tokens["slots"] and r1.cost.text_tokens == 0
    assert r2.pages[0].text == ROUNDS[2][2]  # the exact ground truth of the page
    assert c.tokens == sum(s.cost.tokens for s in c.segments)
    assert c.all_text_tokens == sum(cb.count_tokens(t) for _, _, t in ROUNDS)
    assert (c.text_rounds, c.image_rounds, c.dropped_rounds, c.pages) == (2, 2, 1, 2)
    assert m.representation("r1") == "tiny" and m.age("r1") == 3
    # A schedule given to context() does not replace the memory's.
    assert m.context("text").tokens == c.all_text_tokens
    assert m.schedule.name.startswith("ladder")
    assert m.tokens() == c.tokens


def test_pages_are_rendered_once():
    m = filled("paper")
    m.context()
    misses = m.cache_stats["misses"]
    m.context()
    assert m.cache_stats["misses"] == misses and m.cache_stats["hits"] > 0


def test_budget_picks_the_most_faithful_schedule_that_fits():
    m = filled("paper")
    all_text = m.context("text").tokens
    choice = m.budget(all_text)
    assert choice.schedule.name == "text" and choice.tokens == all_text
    choice = m.budget(150)
    assert choice.tokens <= 150 and m.context().tokens <= 150
    assert m.schedule == choice.schedule
    assert choice.considered[-1] == (choice.schedule.name, choice.tokens)
    with pytest.raises(cb.OpticalMemoryError, match="budget of 1 tokens"):
        m.budget(1)
    # The budget schedule chooses again at every context.
    b = filled("budget:tokens=150")
    assert b.context().tokens <= 150


def test_recall_reads_an_imaged_round_back_with_tesseract(tesseract):
    m = filled("ladder:levels=text@0/base@2")
    assert m.representation("r1") == "base"
    r = m.recall("r1", tesseract)
    assert r.representation == "base" and r.ground_truth == ROUNDS[1][2]
    assert len(r.outputs) == 1 and r.outputs[0].id == "r1#p0"
    similarity = difflib.SequenceMatcher(None, r.text, r.ground_truth).ratio()
    assert similarity > 0.9, (r.text, similarity)
    assert "B12" in r.text
    # Text rounds come back as themselves, without the engine.
    t = m.recall("r4", tesseract)
    assert t.text == ROUNDS[4][2] and t.outputs == []


def test_engine_ocr_reads_pages_and_images(tesseract):
    page = cb.render("The quick brown fox jumps over the lazy dog.", mode="small", font_px=40)
    out = tesseract.ocr([page, page.png, page.array()], mode="small")
    assert [o.id for o in out] == ["page-0", "page-1", "page-2"]
    assert all("quick brown fox" in o.text for o in out), [o.text for o in out]
    assert tesseract.info["name"] == "tesseract"
    with pytest.raises(ValueError, match="pass mode="):
        tesseract.ocr(page.png)
    fake = cb.FakePerfect()
    assert fake.ocr(page)[0].text == page.text


def test_errors_carry_the_rust_message():
    m = filled()
    with pytest.raises(cb.OpticalMemoryError, match='round id "r1" is already in the memory'):
        m.push("r1", "user", "again")
    with pytest.raises(cb.OpticalMemoryError, match='unknown round id "nope"'):
        m.representation("nope")
    with pytest.raises(ValueError, match="role"):
        m.push("x", "robot", "hi")
    with pytest.raises(cb.OpticalMemoryError, match="page ratio"):
        cb.OpticalMemory(page_ratio=0)
    with pytest.raises(cb.EngineError, match="tesseract"):
        cb.Tesseract(program="/nonexistent/tesseract")


@pytest.mark.parametrize("spec,message", [
    ("nonsense", "nonsense"),
    ("paper:ages=1/x", "x"),
    ("ladder:levels=dropped@0", "drop"),
    ("ladder:levels=text@0/base@4/tiny@2", "4"),
    ("step:width=4,bogus=1", "bogus"),
    ("ladder:levels=text@0/tiny>base@3", "base"),
])
def test_schedule_parse_errors_are_exceptions(spec, message):
    with pytest.raises(cb.ScheduleError, match=message) as e:
        cb.Schedule(spec)
    assert isinstance(e.value, cb.CompressBenchError)
    with pytest.raises(cb.ScheduleError):
        cb.OpticalMemory(schedule=spec)


def test_schedules_by_name_grammar_and_toml(tmp_path):
    paper = cb.Schedule("paper")
    assert paper.levels[:2] == [(0, "text"), (1, "gundam")] and paper.levels[-1] == (32, "dropped")
    assert paper.representation(5) == "base" and paper.unit == "rounds"
    hybrid = cb.Schedule("hybrid:k=2,width=1,modes=base/tiny")
    assert hybrid.levels == [(0, "text"), (2, "base"), (3, "tiny"), (4, "dropped")]
    assert cb.Schedule("exp:first=1h,factor=4").unit == "seconds"
    budget = cb.Schedule("budget:tokens=500")
    assert budget.kind == "budget" and budget.tokens == 500
    toml = '''
[[schedule]]
spec = "paper:policy=downsample"

[[schedule]]
name = "two-step"
levels = [
  { from = 0, repr = "text" },
  { from = 4, repr = "base" },
  { from = 12, repr = "base>tiny" },
  { from = 30, repr = "dropped" },
]
'''
    a, b = cb.Schedule.from_toml(toml)
    assert a.name == "paper:policy=downsample"
    assert b.name == "two-step" and b.levels[2] == (12, "base>tiny")
    f = tmp_path / "s.toml"
    f.write_text(toml)
    assert cb.Schedule.load(f) == [a, b]
    with pytest.raises(cb.ScheduleError, match="s.toml"):
        f.write_text('[[schedule]]\nspec = "paper"\nbogus = 1\n')
        cb.Schedule.load(f)
    m = cb.OpticalMemory(schedule=b)
    assert m.schedule == b


def test_wall_time_schedule_with_a_manual_clock():
    m = cb.OpticalMemory(schedule="ladder:levels=text@0s/tiny@1h", clock=0)
    m.push("old", "user", "an old note about the river")
    m.advance(3600)
    m.push("new", "user", "a new note")
    assert m.age("old", "seconds") == 3600
    assert m.representation("old") == "tiny" and m.representation("new") == "text"
