//! Property tests of the decay-schedule grammar: arbitrary strings and grammar-shaped
//! specs parse to a schedule that obeys every rule of `Schedule::new`, or to an error naming the spec
//! and the parameter; a schedule printed (its `Display`) and read back as a `ladder` spec or a TOML
//! `[[schedule]]` table is the same schedule. Budget and guarantees: docs/RELIABILITY.md, "Fuzzing and
//! property tests".

use occ_core::Mode;
use occ_memory::schedule::file;
use occ_memory::schedule::parse::{format_duration, parse_age, parse_spec, AgeError};
use occ_memory::{AgeUnit, Level, Representation, Schedule, ScheduleError, ScheduleSpec};
use proptest::prelude::*;

/// Every rule of `Schedule::new`, and `representation` agreeing with the levels.
fn schedule_problems(s: &Schedule) -> Vec<String> {
    let mut v = Vec::new();
    let levels = s.levels();
    let Some(first) = levels.first() else { return vec!["no levels".into()] };
    if first.from != 0 {
        v.push(format!("first level at {}", first.from));
    }
    if first.repr == Representation::Dropped {
        v.push("drops the newest round".into());
    }
    for (i, w) in levels.windows(2).enumerate() {
        if w[1].from <= w[0].from {
            v.push(format!("level {} at {} after {}", i + 1, w[1].from, w[0].from));
        }
    }
    let area = |m: Mode| {
        let (w, h) = m.default_canvas();
        u64::from(w) * u64::from(h)
    };
    for (i, l) in levels.iter().enumerate() {
        if let Representation::Downscale { from, to } = l.repr {
            if area(to) >= area(from) {
                v.push(format!("level {i}: downscale {from}>{to} does not shrink"));
            }
        }
        if s.representation(l.from) != l.repr {
            v.push(format!("age {}: {} instead of {}", l.from, s.representation(l.from), l.repr));
        }
        if l.from > 0 && i > 0 && s.representation(l.from - 1) != levels[i - 1].repr {
            v.push(format!("age {}: not level {}", l.from - 1, i - 1));
        }
    }
    if s.representation(u64::MAX) != levels[levels.len() - 1].repr {
        v.push("the last level does not last forever".into());
    }
    if Schedule::new(s.name.clone(), s.unit, levels.to_vec()).as_ref() != Ok(s) {
        v.push("Schedule::new refuses or changes it".into());
    }
    v
}

fn check_parsed(spec: &str) -> Result<(), TestCaseError> {
    match parse_spec(spec) {
        Ok(ScheduleSpec::Fixed(s)) => {
            let v = schedule_problems(&s);
            prop_assert!(v.is_empty(), "{spec:?} → {s}: {}", v.join("; "));
            prop_assert_eq!(&s.name, spec.trim());
        }
        Ok(ScheduleSpec::Budget { tokens, candidates }) => {
            prop_assert!(tokens >= 1);
            prop_assert!(!candidates.is_empty());
        }
        Err(e) => {
            // Every error names the spec as written (trimmed), whatever it holds.
            let msg = e.to_string();
            prop_assert!(msg.contains(&format!("{:?}", spec.trim())), "{spec:?}: {msg}");
        }
    }
    Ok(())
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        5 => prop::sample::select(vec![Mode::Tiny, Mode::Small, Mode::Base, Mode::Large, Mode::Gundam]),
        1 => (1u32..40, 1u32..40, any::<bool>()).prop_map(|(b, i, crop)| Mode::custom(64 * b, 64 * i, crop).unwrap()),
    ]
}

fn repr() -> impl Strategy<Value = Representation> {
    prop_oneof![
        2 => Just(Representation::Text),
        4 => mode().prop_map(|mode| Representation::Image { mode }),
        2 => (mode(), mode()).prop_map(|(from, to)| Representation::Downscale { from, to }),
        1 => Just(Representation::Dropped),
    ]
}

/// A valid schedule with arbitrary levels, ages and unit (downscales that do not shrink and a dropped
/// first level are left out: those are errors, tested by `grammar_shaped_specs_*`).
fn schedule() -> impl Strategy<Value = Schedule> {
    let gaps = prop::collection::vec(prop_oneof![4 => 1u64..20, 1 => 1u64..100_000, 1 => 1u64..(u64::MAX / 64)], 0..8);
    (prop::collection::vec(repr(), 1..9), gaps, any::<bool>()).prop_filter_map(
        "dropped first level or growing downscale",
        |(reprs, gaps, secs)| {
            let unit = if secs { AgeUnit::Seconds } else { AgeUnit::Rounds };
            let mut from = 0u64;
            let mut levels = Vec::new();
            for (i, r) in reprs.into_iter().enumerate() {
                if i > 0 {
                    from = from.checked_add(*gaps.get(i - 1)?)?;
                }
                levels.push(Level { from, repr: r });
            }
            Schedule::new("generated", unit, levels).ok()
        },
    )
}

/// The `ladder` spec of a schedule, from its `Display` (`name [text@0, base@4, …]`).
fn as_ladder_spec(s: &Schedule) -> String {
    let shown = s.to_string();
    let inner = shown.rsplit_once(" [").unwrap().1.strip_suffix(']').unwrap();
    format!("ladder:levels={}", inner.replace(", ", "/"))
}

/// A `[[schedule]]` table with explicit levels (integer ages for rounds, duration strings for seconds).
fn as_toml(s: &Schedule) -> String {
    let levels: Vec<String> = s
        .levels()
        .iter()
        .map(|l| {
            let from = match s.unit {
                AgeUnit::Rounds if l.from <= i64::MAX as u64 => l.from.to_string(),
                AgeUnit::Rounds => format!("{:?}", l.from.to_string()),
                AgeUnit::Seconds => format!("{:?}", format_duration(l.from)),
            };
            format!("{{ from = {from}, repr = {:?} }}", l.repr.to_string())
        })
        .collect();
    format!("[[schedule]]\nname = {:?}\nlevels = [{}]\n", s.name, levels.join(", "))
}

/// Specs shaped like the grammar: a kind (or a near miss), then mostly that kind's parameters (sometimes
/// another kind's or an unknown one) with values that are ages, durations, negative, huge, lists,
/// modes, valid ladders or junk.
fn grammar_spec() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        8 => prop::sample::select(vec!["text", "paper", "paper-time", "step", "hybrid", "exp", "ladder", "budget"])
            .prop_map(String::from),
        1 => prop::sample::select(vec!["", "PAPER", "ladders", "Exp", " step "]).prop_map(String::from),
        1 => "[a-z:-]{0,8}",
    ];
    let age = prop_oneof![
        "[0-9]{1,4}",
        "[0-9]{1,3}[smhdwy]",
        "-[0-9]{1,3}[smhdwy]?",
        "[0-9]{19,22}[smhdwy]?",
        Just("never".to_string()),
        Just("1.5".to_string()),
        Just("+3".to_string()),
        Just(String::new()),
    ];
    let repr_text = prop_oneof![
        repr().prop_map(|r| r.to_string()),
        Just("drop".to_string()),
        "[a-z>:0-9]{0,10}",
        Just("custom:64x4294967232:crop".to_string()),
    ];
    let value = prop_oneof![
        4 => age.clone(),
        2 => prop::collection::vec(age.clone(), 0..8).prop_map(|v| v.join("/")),
        2 => prop::collection::vec((repr_text.clone(), age), 0..8)
            .prop_map(|v| v.into_iter().map(|(r, a)| format!("{r}@{a}")).collect::<Vec<_>>().join("/")),
        2 => prop::collection::vec(repr_text, 0..7).prop_map(|v| v.join("/")),
        1 => prop::sample::select(vec!["rerender", "downsample", "1e309", "NaN", "inf", "1.0000001", "0.5"])
            .prop_map(String::from),
        1 => "[ -~]{0,12}",
        2 => schedule().prop_map(|s| as_ladder_spec(&s).split_once('=').unwrap().1.to_string()),
    ];
    kind.prop_flat_map(move |kind| {
        let own: Vec<&'static str> = match kind.trim() {
            "paper" | "paper-time" => vec!["ages", "drop", "modes", "policy"],
            "step" => vec!["width", "modes", "drop", "policy"],
            "hybrid" => vec!["k", "width", "modes", "drop", "policy"],
            "exp" => vec!["first", "factor", "modes", "drop", "policy"],
            "ladder" => vec!["levels"],
            "budget" => vec!["tokens"],
            _ => vec!["ages", "drop", "modes", "policy", "width", "k", "first", "factor", "levels", "tokens"],
        };
        let key = prop_oneof![8 => prop::sample::select(own).prop_map(String::from), 1 => "[a-z]{1,6}"];
        let param = prop_oneof![
            10 => (key, value.clone()).prop_map(|(k, v)| format!("{k}={v}")),
            1 => "[ -~]{0,6}",
        ];
        (Just(kind), prop::collection::vec(param, 0..4), any::<bool>())
    })
    .prop_map(|(k, params, colon)| if params.is_empty() && !colon { k } else { format!("{k}:{}", params.join(",")) })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any string at all: a valid schedule or an error naming it, never a panic.
    #[test]
    fn arbitrary_strings_parse_to_a_valid_schedule_or_an_error_naming_the_spec(spec in prop_oneof![any::<String>(), "[ -~]{0,40}"]) {
        check_parsed(&spec)?;
    }

    /// Grammar-shaped specs reach every kind and parameter: same property, and a parameter that is not
    /// the kind's, or a bad value, is named in the error.
    #[test]
    fn grammar_shaped_specs_parse_to_a_valid_schedule_or_an_error_naming_the_spec(spec in grammar_spec()) {
        check_parsed(&spec)?;
        if let Err(e) = parse_spec(&spec) {
            match &e {
                ScheduleError::UnknownKey { key, .. } | ScheduleError::BadValue { key, .. } => {
                    // The parameter as written, or one the kind needs (`budget` without `tokens=`).
                    let known = ["ages", "drop", "modes", "policy", "width", "k", "first", "factor", "levels", "tokens"];
                    prop_assert!(spec.contains(key.as_str()) || known.contains(&key.as_str()), "{spec:?}: key {key:?}");
                }
                ScheduleError::NegativeAge { field, value, .. } => {
                    prop_assert!(value.trim_start().starts_with('-'), "{spec:?}: {e}");
                    prop_assert!(["ages", "drop", "width", "k", "first", "levels"].contains(&field.as_str()), "{e}");
                }
                _ => {}
            }
        }
    }

    /// Printing a schedule (`Display`) and reading it back as a `ladder` spec gives the same levels and
    /// unit; so does writing it as a TOML `[[schedule]]` table.
    #[test]
    fn a_printed_schedule_parses_back_to_itself(s in schedule()) {
        let spec = as_ladder_spec(&s);
        let ScheduleSpec::Fixed(back) = parse_spec(&spec).map_err(|e| TestCaseError::fail(format!("{spec}: {e}")))? else {
            return Err(TestCaseError::fail(format!("{spec}: not a fixed schedule")));
        };
        prop_assert_eq!(back.levels(), s.levels(), "{}", spec);
        // One level at age 0 carries no unit: it reads back as rounds.
        let unit = if s.levels().len() == 1 && s.unit == AgeUnit::Rounds { AgeUnit::Rounds } else { s.unit };
        prop_assert_eq!(back.unit, unit, "{}", spec);
        let toml = as_toml(&s);
        let specs = file::parse_str(&toml, "props.toml").map_err(|e| TestCaseError::fail(format!("{toml}: {e}")))?;
        prop_assert_eq!(specs, vec![ScheduleSpec::Fixed(s.clone())], "{}", toml);
    }

    /// Ages: `N` is N rounds, a duration is its seconds (`format_duration` reads back exactly), a
    /// negative age is reported as negative, and an age past u64 is invalid rather than wrapped.
    #[test]
    fn ages_read_back_exactly(n in prop_oneof![0u64..10_000, any::<u64>()], unit in 0usize..6) {
        prop_assert_eq!(parse_age(&n.to_string()), Ok((n, AgeUnit::Rounds)));
        prop_assert_eq!(parse_age(&format_duration(n)), Ok((n, AgeUnit::Seconds)));
        let (suffix, mult) = [("s", 1u64), ("m", 60), ("h", 3_600), ("d", 86_400), ("w", 604_800), ("y", 31_536_000)][unit];
        let want = n.checked_mul(mult).map(|v| (v, AgeUnit::Seconds)).ok_or(AgeError::Invalid);
        prop_assert_eq!(parse_age(&format!("{n}{suffix}")), want);
        if n > 0 {
            prop_assert_eq!(parse_age(&format!("-{n}{suffix}")), Err(AgeError::Negative));
        }
        prop_assert_eq!(parse_age(&format!("{}0", u64::MAX)), Err(AgeError::Invalid));
    }

    /// Arbitrary TOML text as a schedule file: schedules that obey the rules, or an error, never a panic.
    #[test]
    fn arbitrary_schedule_files_parse_or_fail_cleanly(
        body in prop_oneof![
            "[ -~\n]{0,80}",
            (schedule(), "[ -~]{0,10}").prop_map(|(s, junk)| format!("{}{junk}", as_toml(&s))),
            grammar_spec().prop_map(|g| format!("[[schedule]]\nspec = {g:?}\n")),
        ]
    ) {
        match file::parse_str(&body, "fuzz.toml") {
            Ok(specs) => {
                prop_assert!(!specs.is_empty());
                for s in specs {
                    if let ScheduleSpec::Fixed(s) = s {
                        let v = schedule_problems(&s);
                        prop_assert!(v.is_empty(), "{}", v.join("; "));
                    }
                }
            }
            Err(ScheduleError::File { path, .. }) => prop_assert_eq!(path, "fuzz.toml"),
            Err(_) => {}
        }
    }
}
