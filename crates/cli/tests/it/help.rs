//! `--help` of every subcommand: defaults shown, decay's headings, and one meaning per flag name
//! across subcommands (docs/RELIABILITY.md, "Help and messages").

use std::collections::BTreeMap;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

const SUBCOMMANDS: [&str; 11] =
    ["render", "ocr", "sweep", "report", "merge", "compare", "score", "decay", "bench", "inspect", "train"];

fn help(sub: &str) -> String {
    let o = Command::new(BIN).args([sub, "--help"]).output().unwrap();
    assert!(o.status.success(), "{sub} --help: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// The flags of a `--help` text, each with its help (wrapped lines joined) and its heading.
fn flags(text: &str) -> BTreeMap<String, (String, String)> {
    let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut heading = String::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            heading = line.trim_end_matches(':').to_string();
            current = None;
            continue;
        }
        let trimmed = line.trim_start();
        let is_flag = trimmed.starts_with("--") || (trimmed.starts_with('-') && trimmed.get(2..4) == Some(", "));
        if is_flag && line.len() - trimmed.len() <= 6 {
            let spec = trimmed.split_once("--").map_or("", |(_, rest)| rest);
            let name = spec.split([' ', '=', '[']).next().unwrap_or_default().to_string();
            // One-line layout: the help follows the flag after two spaces or more.
            let inline = spec.split_once("  ").map(|(_, h)| h.trim().to_string()).unwrap_or_default();
            out.insert(name.clone(), (inline, heading.clone()));
            current = Some(name);
        } else if let Some(name) = &current {
            if !trimmed.is_empty() {
                let entry = out.get_mut(name).unwrap();
                if !entry.0.is_empty() {
                    entry.0.push(' ');
                }
                entry.0.push_str(trimmed);
            }
        }
    }
    out
}

#[test]
fn the_help_parser_reads_both_clap_layouts() {
    let f = flags(&help("score"));
    assert!(f["out"].0.starts_with("Results root"), "{:?}", f["out"]);
    assert!(f["out"].0.contains("[default: results]"), "{:?}", f["out"]);
    let f = flags(&help("sweep"));
    assert!(f["ratios"].0.starts_with("Ratios:"), "{:?}", f["ratios"]);
    assert_eq!(f["weights"].1, "Model (deepseek-ocr and mini engines)");
}

#[test]
fn sweep_help_shows_every_default() {
    let f = flags(&help("sweep"));
    for (flag, default) in [
        ("ratios", "[default: the spec's, else 5..25:5]"),
        ("modes", "[default: the spec's, else tiny,small]"),
        ("corpora", "[default: the spec's, else en]"),
        ("pages", "[default: the spec's, else 3]"),
        ("seed", "[default: the spec's, else 0]"),
        ("engine", "[default: the spec's, else tesseract]"),
        ("max-new-tokens", "[default: the spec's, else 4096]"),
        ("name", "[default: the spec's, else adhoc]"),
        ("datasets", "[default: the spec's datasets_dir, else datasets]"),
        ("out", "[default: results]"),
        ("threads", "[default: available CPU threads]"),
        ("progress-interval", "[default: 30]"),
    ] {
        assert!(f[flag].0.contains(default), "--{flag}: {:?} lacks {default}", f[flag].0);
    }
    assert!(f.contains_key("dry-run"), "{f:?}");
}

#[test]
fn decay_help_puts_its_flags_under_their_own_headings() {
    let text = help("decay");
    let f = flags(&text);
    for (flag, heading) in [
        ("spec", "Conversation and schedules"),
        ("schedule", "Conversation and schedules"),
        ("rounds", "Conversation and schedules"),
        ("seed", "Conversation and schedules"),
        ("engine", "Reading back"),
        ("threads", "Reading back"),
        ("psm", "Reading back"),
        ("out", "Run folder"),
        ("resume", "Run folder"),
        ("dry-run", "Run folder"),
        ("weights", "Model (deepseek-ocr and mini engines)"),
        ("device", "Model (deepseek-ocr and mini engines)"),
        ("json", "Options"),
    ] {
        assert_eq!(f[flag].1, heading, "--{flag}");
    }
    let at = |h: &str| text.find(&format!("\n{h}:\n")).unwrap_or_else(|| panic!("no heading {h}"));
    assert!(at("Conversation and schedules") < at("Reading back"));
    assert!(at("Reading back") < at("Run folder"));
    assert!(at("Run folder") < at("Model (deepseek-ocr and mini engines)"));
    for (flag, default) in [
        ("rounds", "else 50]"),
        ("round-tokens", "else 600]"),
        ("corpus", "else en]"),
        ("seed", "else 7]"),
        ("needles", "else 10]"),
        ("page-ratio", "else 10]"),
        ("schedule", "else paper]"),
        ("max-new-tokens", "[default: 4096]"),
        ("engine", "[default: tesseract]"),
        ("psm", "[default: 6]"),
    ] {
        assert!(f[flag].0.contains(default), "--{flag}: {:?} lacks {default}", f[flag].0);
    }
}

/// A flag name means one thing in every subcommand that has it: its help starts the same way.
#[test]
fn a_flag_name_means_the_same_in_every_subcommand() {
    let rules: [(&str, &str); 10] = [
        ("seed", "Seed of the run's random choices"),
        ("threads", "tesseract: pages read in parallel, one process each"),
        ("max-new-tokens", "Upper bound of generated tokens per page"),
        ("modes", "Modes"),
        ("datasets", "Folder of the corpora"),
        ("no-report", "Do not write the report"),
        ("resume", "Continue"),
        ("json", "Print results as JSON Lines on stdout"),
        ("quiet", "No progress bars"),
        ("progress-interval", "Where stderr is not a terminal"),
    ];
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for sub in SUBCOMMANDS {
        let f = flags(&help(sub));
        for (flag, prefix) in rules {
            if let Some((text, _)) = f.get(flag) {
                assert!(text.starts_with(prefix), "{sub} --{flag}: {text:?} does not start with {prefix:?}");
                seen.entry(flag).or_default().push(sub);
            }
        }
        // The seed of synthetic weights is never called --seed.
        if let Some((text, _)) = f.get("weights-seed") {
            assert!(text.starts_with("Seed of the synthetic weights"), "{sub}: {text}");
        }
        // `--tiny` (synthetic weights) is not offered beside `--mode tiny`.
        assert!(!f.contains_key("tiny"), "{sub} --help offers --tiny");
    }
    assert_eq!(seen["seed"], ["sweep", "compare", "score", "decay"]);
    // compare's old name of its seed still parses (a runtime error on the missing runs, not a usage error).
    let o = Command::new(BIN).args(["compare", "--bootstrap-seed", "3", "/no/run/a", "/no/run/b"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(seen["threads"], ["ocr", "sweep", "decay"]);
    assert_eq!(seen["json"].len(), SUBCOMMANDS.len());
}
