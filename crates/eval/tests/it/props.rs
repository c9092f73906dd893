//! Property tests of the experiment-spec parser: the ratio grammar on arbitrary
//! strings, ratio lists printed and read back, and TOML specs with one field made invalid (the error
//! names that field) or none (the resolved spec is valid and survives its JSON form). Budget and
//! guarantees: docs/RELIABILITY.md, "Fuzzing and property tests".

use occ_eval::spec::{parse_ratios, ExperimentSpec, RatioInput, SpecError, SpecFile, SpecOverrides};
use proptest::prelude::*;

/// Strings shaped like the grammar (`a..b`, `a..b:step`, `x,y,z`) with numbers of every kind, and junk.
fn ratio_text() -> impl Strategy<Value = String> {
    let num = prop_oneof![
        4 => (1u32..400).prop_map(|n| format!("{}", f64::from(n) / 4.0)),
        1 => any::<f64>().prop_map(|x| x.to_string()),
        1 => prop::sample::select(vec![
            "0", "-1", "-0", "1e-300", "1e300", "1e309", "inf", "-inf", "NaN", "infinity", "0.0000001", "", " ", "x",
            "1e-9", "5e-324", "179769313486231570000000000000000000000000000000000000000000000000000000",
        ])
        .prop_map(String::from),
    ];
    prop_oneof![
        3 => (num.clone(), num.clone()).prop_map(|(a, b)| format!("{a}..{b}")),
        3 => (num.clone(), num.clone(), num.clone()).prop_map(|(a, b, s)| format!("{a}..{b}:{s}")),
        2 => prop::collection::vec(num, 0..6).prop_map(|v| v.join(",")),
        1 => "[0-9.,: e+-]{0,16}",
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The ratio grammar never panics; a range gives 1..=100000 values from its start, strictly
    /// increasing by the step, none past the end; every error names the field; `RatioInput::resolve`
    /// accepts exactly non-empty lists of finite positive ratios.
    #[test]
    fn the_ratio_grammar_gives_a_valid_grid_or_an_error_naming_the_field(text in ratio_text()) {
        let field = "ratios_by_mode.tiny";
        match parse_ratios(&text, field) {
            Ok(values) => {
                if let Some((a, rest)) = text.trim().split_once("..") {
                    let (b, step) = match rest.split_once(':') {
                        Some((b, s)) => (b, s.trim().parse::<f64>().unwrap()),
                        None => (rest, 1.0),
                    };
                    let (a, b): (f64, f64) = (a.trim().parse().unwrap(), b.trim().parse().unwrap());
                    prop_assert!(!values.is_empty() && values.len() <= 100_000, "{text:?}: {} values", values.len());
                    prop_assert!((values[0] - a).abs() <= 1e-9 * a.max(1.0), "{text:?}: starts at {}", values[0]);
                    let last = values[values.len() - 1];
                    prop_assert!(last <= b + 1e-6 * b.max(1.0), "{text:?}: ends at {last}");
                    for w in values.windows(2) {
                        prop_assert!(w[1] > w[0], "{text:?}: {} then {}", w[0], w[1]);
                        prop_assert!(((w[1] - w[0]) - step).abs() <= 1e-6 * step.max(1.0) + 2e-9, "{text:?}: step {}", w[1] - w[0]);
                    }
                }
                let resolved = RatioInput::Text(text.clone()).resolve(field);
                let valid = !values.is_empty() && values.iter().all(|v| v.is_finite() && *v > 0.0);
                prop_assert_eq!(resolved.is_ok(), valid, "{:?}: {:?}", text, resolved);
                if let Err(e) = resolved {
                    prop_assert!(e.to_string().starts_with(field), "{}", e);
                }
            }
            Err(e) => prop_assert!(e.to_string().starts_with(field), "{text:?}: {e}"),
        }
    }

    /// A list of ratios printed with `Display` (shortest round-trip form) and joined by commas reads
    /// back to the same values; as a range `a..b:step` on a grid of quarters it gives the grid.
    #[test]
    fn printed_ratio_lists_and_ranges_read_back(
        values in prop::collection::vec(prop_oneof![0.01f64..100.0, (1u32..100).prop_map(f64::from), any::<f64>().prop_filter("positive", |v| v.is_finite() && *v > 0.0)], 1..12),
        (a, n, q) in (1u32..200, 0u32..60, 1u32..20),
    ) {
        let text = values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
        prop_assert_eq!(&parse_ratios(&text, "ratios").unwrap(), &values);
        prop_assert_eq!(&RatioInput::Text(text).resolve("ratios").unwrap(), &values);
        let (start, step) = (f64::from(a) / 4.0, f64::from(q) / 4.0);
        let end = start + f64::from(n) * step;
        let grid = parse_ratios(&format!("{start}..{end}:{step}"), "ratios").unwrap();
        let want: Vec<f64> = (0..=n).map(|i| start + f64::from(i) * step).collect();
        prop_assert_eq!(grid, want);
    }
}

/// One field of a spec, valid or made invalid, as TOML; `None` when it stays valid.
#[derive(Debug, Clone)]
enum Field {
    Name(String),
    Corpora(Vec<String>),
    Modes(Vec<String>),
    Ratios(String),
    RatiosByMode(String, String),
    Pages(i64),
    MaxNewTokens(i64),
    Passages(u32, u32),
}

impl Field {
    /// Adds this field to a TOML table (quoted by the `toml` crate's own printer).
    fn insert(&self, t: &mut toml::Table) {
        use toml::Value;
        let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
        match self {
            Field::Name(n) => t.insert("name".into(), Value::String(n.clone())),
            Field::Corpora(c) => t.insert("corpora".into(), strings(c)),
            Field::Modes(m) => t.insert("modes".into(), strings(m)),
            Field::Ratios(r) => t.insert("ratios".into(), Value::String(r.clone())),
            Field::Pages(p) => t.insert("pages".into(), Value::Integer(*p)),
            Field::MaxNewTokens(n) => t.insert("max_new_tokens".into(), Value::Integer(*n)),
            Field::Passages(lo, hi) => {
                t.insert("min_passage_tokens".into(), Value::Integer((*lo).into()));
                t.insert("max_passage_tokens".into(), Value::Integer((*hi).into()))
            }
            Field::RatiosByMode(m, r) => {
                let mut by_mode = toml::Table::new();
                by_mode.insert(m.clone(), Value::String(r.clone()));
                t.insert("ratios_by_mode".into(), Value::Table(by_mode))
            }
        };
    }

    /// The field an error must name when this value is invalid (`None` when it is valid).
    fn invalid_field(&self) -> Option<String> {
        let bad_ratios = |r: &str| RatioInput::Text(r.into()).resolve("x").is_err();
        let bad_mode = |m: &str| m.parse::<occ_core::Mode>().is_err();
        match self {
            Field::Name(n) => (n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .then(|| "name".into()),
            Field::Corpora(c) => c.is_empty().then(|| "corpora".into()),
            Field::Modes(m) => (m.is_empty() || m.iter().any(|m| bad_mode(m))).then(|| "modes".into()),
            Field::Ratios(r) => bad_ratios(r).then(|| "ratios".into()),
            Field::RatiosByMode(m, r) => (bad_mode(m) || bad_ratios(r)).then(|| format!("ratios_by_mode.{m}")),
            Field::Pages(p) => (*p == 0).then(|| "pages".into()),
            Field::MaxNewTokens(n) => (*n == 0).then(|| "max_new_tokens".into()),
            Field::Passages(lo, hi) => (hi < lo).then(|| "max_passage_tokens".into()),
        }
    }
}

fn field() -> impl Strategy<Value = Field> {
    let mode = prop_oneof![
        4 => prop::sample::select(vec!["tiny", "small", "base", "large", "gundam", "Tiny", " base "]).prop_map(String::from),
        1 => prop::sample::select(vec!["huge", "", "custom:640x640", "custom:100x64", "custom:1024x640:crop", "custom:"]).prop_map(String::from),
        1 => "[a-z:0-9]{0,10}",
    ];
    prop_oneof![
        prop_oneof![3 => "[a-zA-Z0-9_-]{1,12}", 1 => "[ -~]{0,12}", 1 => any::<String>()].prop_map(Field::Name),
        prop::collection::vec(prop::sample::select(vec!["en", "zh", "probes", "x"]).prop_map(String::from), 0..3)
            .prop_map(Field::Corpora),
        prop::collection::vec(mode.clone(), 0..4).prop_map(Field::Modes),
        ratio_text().prop_map(Field::Ratios),
        (mode, ratio_text()).prop_map(|(m, r)| Field::RatiosByMode(m, r)),
        prop_oneof![3 => 1i64..20, 1 => Just(0i64)].prop_map(Field::Pages),
        prop_oneof![3 => 1i64..8192, 1 => Just(0i64)].prop_map(Field::MaxNewTokens),
        (0u32..2000, 0u32..2000).prop_map(|(a, b)| Field::Passages(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A spec whose fields are each valid or invalid: it resolves exactly when all are valid, the
    /// error names the first invalid field in resolve order, and a resolved spec survives its JSON
    /// form (the manifest) with the same fingerprint.
    #[test]
    fn a_spec_resolves_or_names_its_invalid_field(fields in prop::collection::vec(field(), 0..5)) {
        // One value per field kind (TOML refuses a key given twice).
        let mut seen = std::collections::HashSet::new();
        let fields: Vec<Field> = fields.into_iter().filter(|f| seen.insert(std::mem::discriminant(f))).collect();
        let mut table = toml::Table::new();
        for f in &fields {
            f.insert(&mut table);
        }
        let toml = toml::to_string(&table).unwrap();
        let file: SpecFile = toml::from_str(&toml).map_err(|e| TestCaseError::fail(format!("{toml}: {e}")))?;
        // The order `ExperimentSpec::resolve` checks fields in.
        let order = ["name", "corpora", "modes", "ratios", "ratios_by_mode", "pages", "max_new_tokens", "max_passage_tokens"];
        let first_bad = fields
            .iter()
            .filter_map(Field::invalid_field)
            .min_by_key(|f| order.iter().position(|o| f == o || f.starts_with(&format!("{o}."))).unwrap());
        match (ExperimentSpec::resolve(file, SpecOverrides::default()), first_bad) {
            (Ok(spec), None) => {
                prop_assert!(spec.pages >= 1 && spec.max_new_tokens >= 1 && !spec.modes.is_empty() && !spec.corpora.is_empty());
                prop_assert!(spec.min_passage_tokens <= spec.max_passage_tokens);
                for m in &spec.modes {
                    prop_assert!(spec.ratios_for(*m).iter().all(|r| r.is_finite() && *r > 0.0));
                    prop_assert!(!spec.ratios_for(*m).is_empty());
                }
                // The manifest's JSON form reads back to the same spec, except that serde_json (without
                // its `float_roundtrip` feature) may read a 17-digit ratio 1 ULP off (5.625847494595825e-133
                // reads as …824e-133; docs/RELIABILITY.md); then only the fingerprint differs.
                let back: ExperimentSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
                let ulp = |a: &[f64], b: &[f64]| {
                    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits().abs_diff(y.to_bits()) <= 1)
                };
                prop_assert!(ulp(&back.ratios, &spec.ratios), "{:?} vs {:?}", back.ratios, spec.ratios);
                for (mode, r) in &spec.ratios_by_mode {
                    prop_assert!(ulp(&back.ratios_by_mode[mode], r), "{mode}");
                }
                let mut same = back.clone();
                (same.ratios, same.ratios_by_mode) = (spec.ratios.clone(), spec.ratios_by_mode.clone());
                prop_assert_eq!(&same, &spec);
                if back == spec {
                    prop_assert_eq!(back.fingerprint(), spec.fingerprint());
                }
            }
            (Err(e), Some(field)) => {
                let msg = e.to_string();
                prop_assert!(msg.starts_with(&field), "{toml}: expected {field}: {msg}");
            }
            (Ok(_), Some(field)) => prop_assert!(false, "{toml}: resolved with {field} invalid"),
            (Err(e), None) => prop_assert!(false, "{toml}: refused: {e}"),
        }
    }

    /// Arbitrary text as a spec file: parsed or a `Parse` error naming the file, never a panic.
    #[test]
    fn arbitrary_spec_files_parse_or_name_the_file(body in prop_oneof!["[ -~\n]{0,80}", any::<String>(), prop::collection::vec(field(), 0..3).prop_map(|fs| {
            let mut t = toml::Table::new();
            fs.iter().for_each(|f| f.insert(&mut t));
            t.insert("colour".into(), toml::Value::Integer(1));
            toml::to_string(&t).unwrap()
        })]) {
        let path = std::env::temp_dir().join(format!("occ-props-spec-{}.toml", std::process::id()));
        std::fs::write(&path, &body).unwrap();
        let res = SpecFile::load(&path);
        std::fs::remove_file(&path).ok();
        match res {
            Ok(_) => prop_assert!(!body.contains("colour")),
            Err(e @ SpecError::Parse { .. }) => prop_assert!(e.to_string().contains(&path.display().to_string()), "{e}"),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }
}

/// Regression (found by `the_ratio_grammar_gives_a_valid_grid_or_an_error_naming_the_field`): a range
/// of more than 2^64 steps overflowed the count and gave no ratios (then "ratios is empty") or,
/// in a debug build, a panic; it is "over 100000 ratios" now.
#[test]
fn a_range_of_astronomically_many_steps_is_refused_as_too_many() {
    for text in ["1..1e300:1e-300", "1..inf", "1..1e308:1e-10", "0.5..1e30"] {
        let err = parse_ratios(text, "ratios").unwrap_err();
        assert!(matches!(err, SpecError::Invalid { .. }), "{text}: {err}");
        assert!(err.to_string().contains("over 100000 ratios"), "{text}: {err}");
    }
}

/// Regression (same property): a range with a NaN end (`0.25..NaN:0.25`) gave one ratio, 0.25, and
/// an infinite start gave `[inf]`; both are syntax errors now.
#[test]
fn a_range_with_a_nan_or_infinite_end_point_is_a_syntax_error() {
    for text in ["0.25..NaN:0.25", "5..nan", "NaN..5", "inf..inf", "inf..inf:1"] {
        let err = parse_ratios(text, "ratios").unwrap_err();
        assert!(matches!(err, SpecError::RatioSyntax { .. }), "{text}: {err}");
        assert!(err.to_string().starts_with("ratios: cannot parse ratios"), "{text}: {err}");
    }
}

/// Regression (same property, found by a CI run): `1e300..1e300` gave `[inf]` — the rounding to
/// 1e-9 scaled the value past f64's range; values that large are kept as they are now.
#[test]
fn a_range_of_huge_ratios_keeps_them_finite() {
    assert_eq!(parse_ratios("1e300..1e300", "ratios").unwrap(), vec![1e300]);
    assert_eq!(parse_ratios("1e300..1.5e300:1e300", "ratios").unwrap(), vec![1e300]);
    let two = parse_ratios("1e299..2e299:1e299", "ratios").unwrap();
    assert!(two.len() == 2 && two.iter().all(|v| v.is_finite()), "{two:?}");
}
