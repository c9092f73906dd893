//! What the commands that write a run directory share: provenance (git commit, host) and the
//! announcement of a finished sweep run (`sweep`, `merge`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use occ_eval::results::{self, Manifest};
use occ_eval::sweep::Invocation;

use crate::engine::{EngineKind, ModelArgs};
use crate::messages::{Cell, SweepSummary};
use crate::output::Output;

/// `git rev-parse HEAD` of the working directory, or `unknown`.
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A one-line description of this machine.
pub fn host() -> String {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{} {}, {threads} CPU threads", std::env::consts::OS, std::env::consts::ARCH)
}

/// Flags of the model and engine (`engine::ModelArgs`) that take a value, kept in resume commands.
pub const MODEL_VALUE_FLAGS: [&str; 13] = [
    "--weights",
    "--device",
    "--dtype",
    "--synthetic-recipe",
    "--weights-seed",
    "--resize-order",
    // the openai engine's (`engine::OpenAiArgs`)
    "--endpoint",
    "--model",
    "--api-key-env",
    "--prompt-template",
    "--concurrency",
    "--retries",
    "--request-timeout",
];
/// Switches of the model (`engine::ModelArgs`) kept in resume commands (`--synthetic-weights` may
/// take a value).
pub const MODEL_SWITCHES: [&str; 4] = ["--offline", "--tiny", "--synthetic-weights", "--send-mode"];

/// The command that continues the run in `dir`: this process's program, global flags and
/// subcommand, then the flags of `argv` named in `keep_values` (with their values) and
/// `keep_switches`, then `--resume DIR`. Everything else (what defines the run, which the run
/// folder's manifest holds) is left out.
pub fn resume_command(argv: &[String], dir: &Path, keep_values: &[&str], keep_switches: &[&str]) -> String {
    rerun_command(argv, keep_values, keep_switches, &["--resume".into(), dir.display().to_string()])
}

/// [`resume_command`] with any ending: the program, global flags and subcommand of `argv`, its
/// flags named in `keep_values` (with their values) and `keep_switches`, then `tail`; each
/// argument quoted for a POSIX shell where it needs it.
pub fn rerun_command(argv: &[String], keep_values: &[&str], keep_switches: &[&str], tail: &[String]) -> String {
    let sub = subcommand_position(argv);
    let mut out: Vec<String> = argv.iter().take(sub + 1).cloned().collect();
    if let Some(first) = out.first_mut() {
        if Path::new(first.as_str()).file_name().is_some_and(|n| n == "compress-bench") {
            *first = "compress-bench".into();
        }
    }
    for (_, tokens) in flag_groups(argv.get(sub + 1..).unwrap_or_default(), keep_values, keep_switches) {
        out.extend(tokens);
    }
    out.extend_from_slice(tail);
    out.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
}

/// Index of the subcommand in `argv` (the first argument after the program that is not a flag).
fn subcommand_position(argv: &[String]) -> usize {
    argv.iter().skip(1).position(|a| !a.starts_with('-')).map_or(argv.len(), |p| p + 1)
}

/// The flags of `args` (the arguments after the subcommand) named in `values` (each with its
/// value: `--flag V` or `--flag=V`) and `switches` (`--synthetic-weights` with its value when one
/// follows), in order, each as its name and its tokens as given.
fn flag_groups(args: &[String], values: &[&str], switches: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let name = a.split('=').next().unwrap_or(a);
        let mut tokens = vec![a.clone()];
        if values.contains(&name) {
            if !a.contains('=') && i + 1 < args.len() {
                tokens.push(args[i + 1].clone());
                i += 1;
            }
            groups.push((name.to_string(), tokens));
        } else if switches.contains(&name) {
            if name == "--synthetic-weights" && !a.contains('=') && args.get(i + 1).is_some_and(|v| !v.starts_with('-'))
            {
                tokens.push(args[i + 1].clone());
                i += 1;
            }
            groups.push((name.to_string(), tokens));
        }
        i += 1;
    }
    groups
}

/// The reader flags of this command line (`argv`: program, global flags, subcommand, its
/// arguments): those named in `values` and `switches`, with their values, as given. A new run
/// records them in its manifest; `--resume` restores them ([`restore_reader_flags`]).
pub fn reader_flags(argv: &[String], values: &[&str], switches: &[&str]) -> Vec<String> {
    let sub = subcommand_position(argv);
    flag_groups(argv.get(sub + 1..).unwrap_or_default(), values, switches).into_iter().flat_map(|(_, t)| t).collect()
}

/// Reader flags that say where and how fast the reader runs, not what it is: a resumed run may
/// give them with another value (the engines' identity check still refuses a change of what reads,
/// e.g. a dtype that followed the device).
pub const PLACEMENT_FLAGS: [&str; 7] =
    ["--device", "--threads", "--offline", "--api-key-env", "--concurrency", "--retries", "--request-timeout"];

/// The value of a flag group as clap reads it: the value given, `on` for a switch, and
/// `--synthetic-weights` alone as `full`.
fn group_value(tokens: &[String]) -> String {
    match tokens {
        [flag] => match flag.split_once('=') {
            Some((_, v)) => v.to_string(),
            None if flag == "--synthetic-weights" => "full".into(),
            None => "on".into(),
        },
        [_, value, ..] => value.clone(),
        [] => String::new(),
    }
}

/// The arguments of subcommand `name` (`A`) for a resumed run: the reader flags its manifest
/// recorded (`recorded`, as the starting command gave them) with this command line's (`argv`)
/// arguments on top. A reader flag given now with another value than the recorded one (or than
/// its default, when the run started without it) is refused, naming the flag and both values,
/// unless it is a [`PLACEMENT_FLAGS`] flag; returns the arguments and a note per placement flag
/// that changed.
pub fn restore_reader_flags<A: clap::Args + clap::FromArgMatches>(
    name: &'static str,
    argv: &[String],
    recorded: &[String],
    values: &[&str],
    switches: &[&str],
) -> anyhow::Result<(A, Vec<String>)> {
    // the global flags (`--json`, `-q`, …) may follow the subcommand: its parser knows them too
    let command = <crate::output::OutputArgs as clap::Args>::augment_args(A::augment_args(clap::Command::new(name)));
    let sub = subcommand_position(argv);
    let now_args = argv.get(sub + 1..).unwrap_or_default();
    let given = flag_groups(now_args, values, switches);
    let before = flag_groups(recorded, values, switches);
    let mut refused = Vec::new();
    let mut notes = Vec::new();
    for (flag, tokens) in &given {
        let now = group_value(tokens);
        let was = match before.iter().find(|(f, _)| f == flag) {
            Some((_, t)) => Some(group_value(t)),
            None => command
                .get_arguments()
                .find(|a| a.get_long().is_some_and(|l| flag.strip_prefix("--") == Some(l)))
                .and_then(|a| a.get_default_values().first().map(|v| v.to_string_lossy().to_string())),
        };
        if was.as_deref() == Some(now.as_str()) {
            continue;
        }
        let was_text = was.map_or_else(|| "without it".to_string(), |v| format!("with {v:?}"));
        if PLACEMENT_FLAGS.contains(&flag.as_str()) {
            notes.push(format!("{flag} is {now:?} in this session (the run started {was_text})"));
        } else {
            refused.push(format!("{flag}: the run started {was_text}, this command gives {now:?}"));
        }
    }
    if !refused.is_empty() {
        anyhow::bail!(
            "a resumed run keeps the flags it was started with (recorded in its run folder); this command changes \
             them:\n  - {}\ndrop these flags to continue with the recorded values, or start a new run",
            refused.join("\n  - ")
        );
    }
    let mut merged: Vec<String> = vec![name.to_string()];
    for (flag, tokens) in before {
        if !given.iter().any(|(f, _)| *f == flag) {
            merged.extend(tokens);
        }
    }
    merged.extend(now_args.iter().cloned());
    let matches = command
        .try_get_matches_from(&merged)
        .map_err(|e| anyhow::anyhow!("the recorded reader flags ({}) do not parse: {e}", recorded.join(" ")))?;
    Ok((A::from_arg_matches(&matches)?, notes))
}

/// The arguments (`A`, subcommand `name`) of a sweep, decay or bench run resumed from `dir`: the reader
/// flags its manifest recorded restored under this command line's ([`restore_reader_flags`]), with
/// what was restored and each placement flag that changed said on stderr. `None` when the manifest
/// recorded none (a run written before reader flags were): its resuming command gives its own.
pub fn resumed_reader<A: clap::Args + clap::FromArgMatches>(
    name: &'static str,
    dir: &Path,
    recorded: Option<Vec<String>>,
    values: &[&str],
    switches: &[&str],
    out: &Output,
) -> anyhow::Result<Option<A>> {
    let Some(recorded) = recorded else { return Ok(None) };
    let argv: Vec<String> = std::env::args().collect();
    let (restored, notes) = restore_reader_flags::<A>(name, &argv, &recorded, values, switches)
        .with_context(|| format!("--resume {}", dir.display()))?;
    for n in notes {
        out.info(&n);
    }
    if !recorded.is_empty() {
        out.info(&format!("reader flags restored from the run's manifest: {}", recorded.join(" ")));
    }
    Ok(Some(restored))
}

/// The prompt a sweep's or decay run's reader is given, as the manifest records it: the task prompt in the plain
/// template for the model readers (`<image>\nFree OCR. `), the text sent after the page image for
/// the openai engine (`--prompt-template` with `{prompt}` filled in); `None` for readers without
/// a prompt (Tesseract, the fake engine).
pub fn prompt_of(kind: EngineKind, model: &ModelArgs) -> Option<String> {
    match kind {
        EngineKind::DeepseekOcr | EngineKind::DeepseekOcr2 | EngineKind::Mini => {
            Some(occ_core::Prompt::FreeOcr.text().to_string())
        }
        EngineKind::OpenAi => {
            let mut config = occ_serve::OpenAiConfig::new(String::new(), String::new());
            config.prompt_template = model.openai.prompt_template.clone();
            Some(config.prompt_text(&occ_core::Prompt::FreeOcr))
        }
        EngineKind::Tesseract | EngineKind::FakePerfect | EngineKind::External => None,
    }
}

/// `a` quoted for a POSIX shell when it needs it.
fn shell_quote(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// This invocation, as a run's manifest records it.
pub fn invocation() -> Invocation {
    Invocation {
        git_commit: git_commit(),
        host: host(),
        command: std::env::args().collect(),
        tool: "compress-bench".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        reader_flags: None,
        prompt: None,
    }
}

/// Writes the tables of a sweep run in `dir` and its manifest (`occ_eval::sweep::finish`), the
/// report unless `report` is false, and announces them. Returns the number of failed samples.
pub fn finish_run(dir: &Path, manifest: &mut Manifest, report: bool, out: &Output) -> anyhow::Result<usize> {
    finish_run_with(dir, manifest, report, &[], out)
}

/// [`finish_run`] with `extra` entries in the `summary` message's files (a sweep's
/// `baseline_run` and `compare` folders, `sweep --baseline`).
pub fn finish_run_with(
    dir: &Path,
    manifest: &mut Manifest,
    report: bool,
    extra: &[(&'static str, String)],
    out: &Output,
) -> anyhow::Result<usize> {
    let (written, summary) =
        occ_eval::sweep::finish(dir, manifest).with_context(|| format!("writing the results of {}", dir.display()))?;
    let mut files = BTreeMap::new();
    for f in [results::SAMPLES_FILE, results::PREDICTIONS_FILE, results::SUMMARY_FILE, results::MANIFEST_FILE] {
        files.insert(f, dir.join(f).display().to_string());
    }
    if report {
        let r = occ_report::write_report(dir).with_context(|| format!("writing the report of {}", dir.display()))?;
        files.insert("report.md", r.markdown.display().to_string());
        files.insert("report.html", r.html.display().to_string());
    }
    for (k, v) in extra {
        files.insert(k, v.clone());
    }
    out.send(&SweepSummary {
        run_dir: dir.display().to_string(),
        run_id: &manifest.run_id,
        status: manifest.status,
        n_samples: written.samples,
        n_failed: written.failed,
        wall_time_s: manifest.wall_time_s,
        files: files.clone(),
        cells: Cell::all(&summary),
    })?;
    out.result(&summary_line(written.samples, written.failed, manifest, dir));
    for (k, v) in &files {
        out.info(&format!("  {k}: {v}"));
    }
    Ok(written.failed)
}

/// The one-line result of a finished sweep. A run of one session says how long it took; a resumed
/// run says what this session did and that the time is the recorded sessions' only (a session
/// killed with `kill -9` never records its time, so the run's total would mislead).
fn summary_line(samples: usize, failed: usize, manifest: &Manifest, dir: &Path) -> String {
    match manifest.sessions.as_slice() {
        [.., last] if manifest.sessions.len() > 1 => format!(
            "{samples} samples ({failed} failed) -> {}; this session read {} in {:.1} s; {} recorded sessions took \
             {:.1} s (a killed session's time is not recorded)",
            dir.display(),
            last.samples,
            last.wall_time_s,
            manifest.sessions.len(),
            manifest.wall_time_s
        ),
        _ => format!("{samples} samples ({failed} failed) in {:.1} s -> {}", manifest.wall_time_s, dir.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_run_says_what_this_session_did_and_whose_time_is_counted() {
        let mut m: Manifest = serde_json::from_str(include_str!("../tests/fixtures/manifest-two-sessions.json"))
            .unwrap_or_else(|e| panic!("fixture: {e}"));
        let dir = Path::new("/runs/r");
        let line = summary_line(30, 1, &m, dir);
        assert!(line.contains("30 samples (1 failed)"), "{line}");
        assert!(line.contains("this session read 20 in 0.4 s"), "{line}");
        assert!(line.contains("2 recorded sessions took 0.7 s"), "{line}");
        m.sessions.truncate(1);
        m.wall_time_s = m.sessions[0].wall_time_s;
        assert_eq!(summary_line(10, 0, &m, dir), "10 samples (0 failed) in 0.3 s -> /runs/r");
    }

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn reader_flags_are_the_named_flags_after_the_subcommand_as_given() {
        let flags = reader_flags(
            &argv(
                "compress-bench --json sweep --ratios 5 --synthetic-weights --dtype=f32 --threads 2 --tiny --pages 1",
            ),
            &[&MODEL_VALUE_FLAGS[..], &["--threads"]].concat(),
            &MODEL_SWITCHES,
        );
        assert_eq!(flags, argv("--synthetic-weights --dtype=f32 --threads 2 --tiny"));
        assert_eq!(group_value(&argv("--dtype=f32")), "f32");
        assert_eq!(group_value(&argv("--synthetic-weights")), "full");
        assert_eq!(group_value(&argv("--tiny")), "on");
        assert_eq!(group_value(&argv("--device cuda")), "cuda");
    }

    #[test]
    fn resume_commands_keep_engine_flags_and_drop_the_run_definition() {
        let cmd = resume_command(
            &argv("/x/target/release/compress-bench --quiet sweep spec.toml --ratios 5..7 --weights /w --tiny --threads=3 --pages 2"),
            Path::new("results/adhoc/r1"),
            &[&MODEL_VALUE_FLAGS[..], &["--threads"]].concat(),
            &MODEL_SWITCHES,
        );
        assert_eq!(cmd, "compress-bench --quiet sweep --weights /w --tiny --threads=3 --resume results/adhoc/r1");
        let cmd = resume_command(
            &argv("compress-bench decay --synthetic-weights tiny --engine mini --rounds 5"),
            Path::new("out dir/decay/x"),
            &["--engine"],
            &MODEL_SWITCHES,
        );
        assert_eq!(cmd, "compress-bench decay --synthetic-weights tiny --engine mini --resume 'out dir/decay/x'");
    }
}
