//! Schedules: age → representation maps, the command-line grammar and the TOML form.

use occ_core::Mode;
use occ_memory::schedule::{file, parse};
use occ_memory::{AgeUnit, DecayPolicy, Representation, Schedule, ScheduleSpec};

fn fixed(spec: &str) -> Schedule {
    match spec.parse::<ScheduleSpec>().unwrap() {
        ScheduleSpec::Fixed(s) => s,
        other => panic!("{spec}: expected a fixed schedule, got {other:?}"),
    }
}

fn img(mode: Mode) -> Representation {
    Representation::Image { mode }
}

/// Checks `(age, representation)` pairs and reports every mismatch.
fn check(s: &Schedule, cases: &[(u64, Representation)]) {
    let bad: Vec<String> = cases
        .iter()
        .filter(|(age, want)| s.representation(*age) != *want)
        .map(|(age, want)| format!("age {age}: want {want}, got {}", s.representation(*age)))
        .collect();
    assert!(bad.is_empty(), "{s}\n{}", bad.join("\n"));
}

#[test]
fn paper_ladder_maps_ages_to_the_six_levels_then_drops() {
    use Representation::{Dropped, Text};
    let s = Schedule::paper();
    assert_eq!(s.unit, AgeUnit::Rounds);
    check(
        &s,
        &[
            (0, Text),
            (1, img(Mode::Gundam)),
            (2, img(Mode::Large)),
            (3, img(Mode::Large)),
            (4, img(Mode::Base)),
            (7, img(Mode::Base)),
            (8, img(Mode::Small)),
            (15, img(Mode::Small)),
            (16, img(Mode::Tiny)),
            (31, img(Mode::Tiny)),
            (32, Dropped),
            (1_000_000, Dropped),
        ],
    );
    assert_eq!(fixed("paper"), s);
    assert_eq!(fixed("paper:ages=1/2/4/8/16/32").levels(), s.levels());
}

#[test]
fn paper_time_uses_the_figure_time_levels() {
    let s = fixed("paper-time");
    assert_eq!(s.unit, AgeUnit::Seconds);
    check(
        &s,
        &[
            (0, Representation::Text),
            (3_599, Representation::Text),
            (3_600, img(Mode::Gundam)),
            (86_400, img(Mode::Large)),
            (7 * 86_400, img(Mode::Base)),
            (30 * 86_400, img(Mode::Small)),
            (365 * 86_400, img(Mode::Tiny)),
            (3_650 * 86_400, Representation::Dropped),
        ],
    );
    assert_eq!(s.levels(), Schedule::paper_time().levels());
}

#[test]
fn step_exp_and_hybrid_boundaries() {
    use Representation::{Dropped, Text};
    // step: width 3 → text 0..3, gundam 3..6, large 6..9, base 9..12, small 12..15, tiny 15..18, dropped.
    let s = fixed("step:width=3");
    check(
        &s,
        &[
            (2, Text),
            (3, img(Mode::Gundam)),
            (8, img(Mode::Large)),
            (12, img(Mode::Small)),
            (17, img(Mode::Tiny)),
            (18, Dropped),
        ],
    );
    assert_eq!(
        s.levels(),
        Schedule::step(3, &occ_memory::schedule::PAPER_MODES, true, DecayPolicy::Rerender).unwrap().levels()
    );
    // exp: first 2, factor 2 → text 0..2, gundam 2..4, large 4..8, base 8..16, small 16..32, tiny 32..64.
    let s = fixed("exp");
    check(
        &s,
        &[
            (1, Text),
            (2, img(Mode::Gundam)),
            (4, img(Mode::Large)),
            (15, img(Mode::Base)),
            (16, img(Mode::Small)),
            (63, img(Mode::Tiny)),
            (64, Dropped),
        ],
    );
    // exp with factor 3, first 1: boundaries 1, 3, 9, 27, 81, drop 243.
    let s = fixed("exp:first=1,factor=3,drop=never");
    let starts: Vec<u64> = s.levels().iter().map(|l| l.from).collect();
    assert_eq!(starts, vec![0, 1, 3, 9, 27, 81]);
    // hybrid: last 4 as text, then base and tiny for 2 ages each, then dropped.
    let s = fixed("hybrid:k=4,width=2,modes=base/tiny");
    check(
        &s,
        &[
            (3, Text),
            (4, img(Mode::Base)),
            (5, img(Mode::Base)),
            (6, img(Mode::Tiny)),
            (7, img(Mode::Tiny)),
            (8, Dropped),
        ],
    );
    // hybrid width defaults to k.
    let starts: Vec<u64> = fixed("hybrid:k=3,modes=small,drop=never").levels().iter().map(|l| l.from).collect();
    assert_eq!(starts, vec![0, 3]);
    // Wall-time exp.
    let s = fixed("exp:first=1h,factor=24,modes=base/tiny");
    assert_eq!(s.unit, AgeUnit::Seconds);
    check(&s, &[(3_599, Text), (3_600, img(Mode::Base)), (86_400, img(Mode::Tiny)), (24 * 86_400, Dropped)]);
}

#[test]
fn downsample_policy_turns_older_levels_into_downscales_of_the_first_image() {
    let s = fixed("paper:policy=downsample");
    let reprs: Vec<String> = s.levels().iter().map(|l| l.repr.to_string()).collect();
    assert_eq!(reprs, ["text", "gundam", "gundam>large", "gundam>base", "gundam>small", "gundam>tiny", "dropped"]);
    assert_eq!(s.representation(20), Representation::Downscale { from: Mode::Gundam, to: Mode::Tiny });
}

#[test]
fn explicit_ladder_and_toml_agree() {
    let cli = fixed("ladder:levels=text@0/base@4/base>tiny@12/dropped@30");
    let toml = r#"
[[schedule]]
spec = "ladder:levels=text@0/base@4/base>tiny@12/dropped@30"

[[schedule]]
name = "two-step"
levels = [
  { from = 0, repr = "text" },
  { from = 4, repr = "base" },
  { from = 12, repr = "base>tiny" },
  { from = 30, repr = "dropped" },
]

[[schedule]]
spec = "budget:tokens=5000"
"#;
    let specs = file::parse_str(toml, "mem.toml").unwrap();
    assert_eq!(specs.len(), 3);
    let ScheduleSpec::Fixed(a) = &specs[0] else { panic!("fixed") };
    let ScheduleSpec::Fixed(b) = &specs[1] else { panic!("fixed") };
    assert_eq!(a.levels(), cli.levels());
    assert_eq!(b.levels(), cli.levels());
    assert_eq!(b.name, "two-step");
    assert!(matches!(&specs[2], ScheduleSpec::Budget { tokens: 5000, candidates } if !candidates.is_empty()));
    let durations = r#"
[[schedule]]
name = "week"
levels = [{ from = "0s", repr = "text" }, { from = "1d", repr = "small" }, { from = "1w", repr = "dropped" }]
"#;
    let ScheduleSpec::Fixed(w) = &file::parse_str(durations, "mem.toml").unwrap()[0] else { panic!("fixed") };
    assert_eq!(w.unit, AgeUnit::Seconds);
    assert_eq!(w.representation(86_399), Representation::Text);
    assert_eq!(w.representation(86_400), img(Mode::Small));
}

#[test]
fn committed_experiment_files_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/decay");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let v: toml::Value = toml::from_str(&text).unwrap();
            let defs: Vec<file::ScheduleDef> = v["schedule"].clone().try_into().unwrap();
            let specs = file::resolve_all(&defs, &path.display().to_string()).unwrap();
            assert!(!specs.is_empty(), "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 2, "expected the committed schedule files in {}", dir.display());
}

#[test]
fn budget_family_is_ordered_by_fidelity_at_every_age() {
    let family = Schedule::budget_family();
    assert_eq!(family[0].name, "text");
    for w in family.windows(2) {
        for age in 0..200 {
            let (a, b) = (w[0].representation(age), w[1].representation(age));
            assert!(
                a.fidelity_rank() >= b.fidelity_rank(),
                "{} is less faithful than {} at age {age}: {a} < {b}",
                w[0].name,
                w[1].name
            );
        }
    }
    // The fidelity order of the ladder.
    let ranks: Vec<u64> = [Mode::Gundam, Mode::Large, Mode::Base, Mode::Small, Mode::Tiny]
        .into_iter()
        .map(|mode| img(mode).fidelity_rank())
        .collect();
    assert_eq!(ranks, vec![856, 400, 256, 100, 64]);
}

#[test]
fn ages_and_durations_parse_with_units() {
    assert_eq!(parse::parse_age("12"), Ok((12, AgeUnit::Rounds)));
    assert_eq!(parse::parse_age("90s"), Ok((90, AgeUnit::Seconds)));
    assert_eq!(parse::parse_age("2h"), Ok((7_200, AgeUnit::Seconds)));
    assert_eq!(parse::parse_age("1w"), Ok((604_800, AgeUnit::Seconds)));
    assert_eq!(parse::parse_age("-1"), Err(parse::AgeError::Negative));
    assert_eq!(parse::parse_age("1x"), Err(parse::AgeError::Invalid));
    assert_eq!(parse::format_duration(86_400), "1d");
    assert_eq!(parse::format_duration(90), "90s");
    assert_eq!(
        parse::parse_repr("gundam>tiny"),
        Some(Representation::Downscale { from: Mode::Gundam, to: Mode::Tiny })
    );
    assert_eq!(parse::parse_repr("drop"), Some(Representation::Dropped));
}
