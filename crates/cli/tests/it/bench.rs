//! `compress-bench bench` on tiny synthetic weights (CPU): its run folder, journal of finished
//! measurements, lock and status, SIGINT between configurations, `kill -9` and `--resume` (every
//! measurement once over the sessions, each with the session that measured it), and the flags a
//! resumed benchmark restores and refuses to change.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{assert_ok, scratch};

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

fn bench(out: &Path, extra: &[&str]) -> Output {
    bench_plan(out, "1,2", "0", extra)
}

/// A bench on tiny synthetic weights, 4 tokens per page, no warm-up, of the `batch` sizes (and
/// the encoder alone on `encoder_batch` pages).
fn bench_plan(out: &Path, batch: &str, encoder_batch: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "bench",
        "--synthetic-weights",
        "tiny",
        "--new-tokens",
        "4",
        "--warmup",
        "0",
        "--encoder-batch",
        encoder_batch,
        "--batch",
        batch,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("running compress-bench")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `bench` report a finished run prints on stdout (pretty JSON without `--json`).
fn report(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn only_dir(root: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(root.join("bench")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

fn state(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("bench.json")).unwrap()).unwrap()
}

fn journal(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("bench.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The measurement keys of journal lines (or report entries) with their sessions:
/// `run small/2 @1`, `encoder small/1 @2`.
fn keys<'a>(lines: impl IntoIterator<Item = (&'a str, &'a serde_json::Value)>) -> Vec<String> {
    lines
        .into_iter()
        .map(|(kind, m)| {
            let batch = if kind == "run" { &m["requested_batch"] } else { &m["batch"] };
            format!("{kind} {}/{} @{}", m["mode"].as_str().unwrap(), batch, m["session"])
        })
        .collect()
}

fn journal_keys(dir: &Path) -> Vec<String> {
    let lines = journal(dir);
    keys(lines.iter().map(|l| {
        let (kind, m) = l.as_object().unwrap().iter().next().unwrap();
        (kind.as_str(), m)
    }))
}

/// What a configuration's measurement is beside its timings (equal in every process).
fn shape(run: &serde_json::Value) -> serde_json::Value {
    let keep =
        ["mode", "batch", "requested_batch", "pages", "new_tokens", "prompt_tokens", "decode_steps", "cuda_graph"];
    keep.iter().map(|k| (k.to_string(), run[*k].clone())).collect::<serde_json::Map<_, _>>().into()
}

/// The printed command after `Continue with:`, split into its arguments.
fn continue_command(err: &str) -> Vec<String> {
    let line = err.lines().skip_while(|l| !l.contains("Continue with:")).nth(1).unwrap_or_else(|| panic!("{err}"));
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn a_bench_journals_each_measurement_and_sigint_marks_it_interrupted_with_the_command_that_resumes_it() {
    let out = scratch("bench-run");
    let whole = out.join("whole");
    let o = bench(&whole, &[]);
    assert_ok(&o);
    let dir = only_dir(&whole);
    let s = state(&dir);
    assert_eq!(s["status"], "complete");
    assert_eq!(s["sessions"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(journal_keys(&dir), ["run small/1 @0", "run small/2 @0"]);
    assert!(!dir.join(occ_eval::lock::LOCK_FILE).exists(), "the lock is released");
    let r = report(&o);
    assert_eq!((r["sessions"].as_u64(), r["run_dir"].as_str()), (Some(1), dir.to_str()), "{r}");
    assert!(!stderr(&o).contains("assembled from"), "one session: {}", stderr(&o));

    let cut = out.join("cut");
    let o = bench(&cut, &["--interrupt-after", "1"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted with 1 of 2 configurations done"), "{err}");
    let dir = only_dir(&cut);
    assert_eq!((state(&dir)["status"].as_str(), state(&dir)["measured"].as_u64()), (Some("interrupted"), Some(1)));
    assert_eq!(journal_keys(&dir), ["run small/1 @0"], "the measurement in flight is finished and kept");
    assert!(!dir.join(occ_eval::lock::LOCK_FILE).exists(), "the lock is released");
    let cmd = continue_command(&err);
    assert_eq!(cmd, ["compress-bench", "bench", "--resume", dir.to_str().unwrap()], "the flags are recorded");

    let o = run(&cmd[1..].iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&o);
    let err = stderr(&o);
    assert_eq!(only_dir(&cut), dir, "resumed in its own run folder");
    assert_eq!(journal_keys(&dir), ["run small/1 @0", "run small/2 @1"], "only the missing one is measured");
    let s = state(&dir);
    assert_eq!((s["status"].as_str(), s["measured"].as_u64()), (Some("complete"), Some(2)), "{s}");
    let sessions = s["sessions"].as_array().unwrap();
    assert_eq!(
        sessions.iter().map(|x| x["measured"].as_u64().unwrap()).collect::<Vec<_>>(),
        [1, 1],
        "one measurement per session: {s}"
    );
    assert!(sessions.iter().all(|x| x["wall_time_s"].as_f64().is_some()), "both ended with a status: {s}");
    let r = report(&o);
    assert_eq!(r["sessions"], 2, "{r}");
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(keys(runs.iter().map(|m| ("run", m))), ["run small/1 @0", "run small/2 @1"]);
    assert_eq!(runs[0], journal(&dir)[0]["run"], "the journaled measurement is reported as measured");
    assert!(err.contains("assembled from 2 sessions") && err.contains("journaled by session 0"), "{err}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_bench_killed_twice_and_resumed_has_every_measurement_exactly_once_with_its_session() {
    let out = scratch("bench-kill");
    let full = bench_plan(&out.join("full"), "1,2,3", "1", &[]);
    assert_ok(&full);

    // Session 0: aborted (as `kill -9` would) once the first configuration is journaled.
    let root = out.join("killed");
    let o = bench_plan(&root, "1,2,3", "1", &["--crash-after", "1"]);
    assert!(!o.status.success() && o.status.code() != Some(130), "killed: {:?}", o.status);
    let dir = only_dir(&root);
    let s = state(&dir);
    assert_eq!((s["status"].as_str(), s["measured"].as_u64()), (Some("running"), Some(1)), "killed mid-way: {s}");
    assert!(dir.join(occ_eval::lock::LOCK_FILE).exists(), "a killed process leaves its lock");
    assert_eq!(journal_keys(&dir), ["run small/1 @0"]);
    // A line torn by the kill is dropped on resume.
    let mut torn = std::fs::read(dir.join("bench.jsonl")).unwrap();
    torn.extend_from_slice(br#"{"run":{"mode":"small","batch":2,"#);
    std::fs::write(dir.join("bench.jsonl"), torn).unwrap();

    // Session 1 (`--resume DIR`, no other flag): killed again after one more.
    let d = dir.to_str().unwrap();
    let o = run(&["bench", "--resume", d, "--crash-after", "1"]);
    assert!(!o.status.success(), "killed again");
    assert!(stderr(&o).contains("took over the stale lock"), "{}", stderr(&o));
    assert_eq!(journal_keys(&dir), ["run small/1 @0", "run small/2 @1"], "the torn line is gone");
    assert_eq!(state(&dir)["status"], "running");

    // Session 2 (`--out DIR --resume`): the rest.
    let o = run(&["bench", "--out", d, "--resume"]);
    assert_ok(&o);
    let err = stderr(&o);
    assert!(err.contains("took over the stale lock"), "{err}");
    let want = ["run small/1 @0", "run small/2 @1", "run small/3 @2", "encoder small/1 @2"];
    assert_eq!(journal_keys(&dir), want, "every measurement once, nothing measured twice");
    let s = state(&dir);
    assert_eq!((s["status"].as_str(), s["measured"].as_u64()), (Some("complete"), Some(3)), "{s}");
    let sessions = s["sessions"].as_array().unwrap();
    let measured: Vec<u64> = sessions.iter().map(|x| x["measured"].as_u64().unwrap()).collect();
    assert_eq!(measured, [1, 1, 2], "{s}");
    let walls: Vec<bool> = sessions.iter().map(|x| x["wall_time_s"].is_number()).collect();
    assert_eq!(walls, [false, false, true], "a killed session records no wall time: {s}");
    assert_eq!(sessions[2]["command"][1], "bench", "{s}");
    assert!(!dir.join(occ_eval::lock::LOCK_FILE).exists(), "the lock is released");

    let (r, f) = (report(&o), report(&full));
    assert_eq!(r["sessions"], 3, "{r}");
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(keys(runs.iter().map(|m| ("run", m))), want[..3], "plan order, with sessions");
    assert_eq!(keys(r["encoder"].as_array().unwrap().iter().map(|m| ("encoder", m))), want[3..]);
    let shapes = |rep: &serde_json::Value| rep["runs"].as_array().unwrap().iter().map(shape).collect::<Vec<_>>();
    assert_eq!(shapes(&r), shapes(&f), "the configurations of an uninterrupted run");
    assert_eq!((&r["device"], &r["dtype"], &r["weights"]), (&f["device"], &f["dtype"], &f["weights"]));
    let lines = journal(&dir);
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(run, &lines[i]["run"], "reported as journaled");
    }
    assert!(err.contains("assembled from 3 sessions"), "{err}");
    assert!(err.contains("session 0: 1 configurations, 0 encoder runs"), "{err}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_bench_killed_with_sigkill_from_outside_resumes_to_every_measurement_once() {
    let out = scratch("bench-sigkill");
    let batches = ["1", "2", "3", "4", "5", "6"];
    let mut child = Command::new(BIN)
        .args(["bench", "--synthetic-weights", "tiny", "--new-tokens", "64", "--warmup", "0", "--encoder-batch", "0"])
        .args(["--batch", &batches.join(","), "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first journaled measurement, then `kill -9`.
    let t0 = std::time::Instant::now();
    let journaled = || {
        let dirs = std::fs::read_dir(out.join("bench")).map_or(Vec::new(), |d| d.map(|e| e.unwrap().path()).collect());
        dirs.first().and_then(|d| std::fs::read_to_string(d.join("bench.jsonl")).ok()).map_or(0, |j| j.lines().count())
    };
    while journaled() < 1 {
        assert!(t0.elapsed().as_secs() < 120, "nothing journaled in 2 minutes");
        assert!(child.try_wait().unwrap().is_none(), "the bench ended before it was killed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    let dir = only_dir(&out);
    assert_eq!(state(&dir)["status"], "running", "killed mid-way");
    let before = journal_keys(&dir);
    assert!(!before.is_empty() && before.len() < batches.len(), "killed mid-way: {before:?}");

    let o = run(&["bench", "--resume", dir.to_str().unwrap()]);
    assert_ok(&o);
    assert!(stderr(&o).contains("took over the stale lock"), "{}", stderr(&o));
    let want: Vec<String> =
        batches.iter().enumerate().map(|(i, b)| format!("run small/{b} @{}", usize::from(i >= before.len()))).collect();
    assert_eq!(journal_keys(&dir), want, "each configuration once: the killed session's, then the resume's");
    let r = report(&o);
    assert_eq!(keys(r["runs"].as_array().unwrap().iter().map(|m| ("run", m))), want);
    assert_eq!((r["sessions"].as_u64(), state(&dir)["status"].as_str()), (Some(2), Some("complete")));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_resumed_bench_restores_its_flags_and_refuses_changed_ones_or_another_reader() {
    let out = scratch("bench-flags");
    let o = bench(&out, &["--weights-seed", "3", "--interrupt-after", "1"]);
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let dir = only_dir(&out);
    let d = dir.to_str().unwrap();
    let recorded = state(&dir);
    let flags: Vec<&str> = recorded["flags"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    let want = "--synthetic-weights tiny --new-tokens 4 --warmup 0 --encoder-batch 0 --batch 1,2 --weights-seed 3";
    assert_eq!(flags.join(" "), want, "the flags that define the benchmark, without --out and the test hook");
    assert!(recorded["reader"]["weights"].as_str().unwrap().contains("seed-3"), "{recorded}");
    let journal_before = std::fs::read(dir.join("bench.jsonl")).unwrap();

    // Flags of other values: refused before anything is measured, naming each and both values.
    let o = run(&["bench", "--resume", d, "--batch", "1,4", "--weights-seed", "4", "--new-tokens", "4"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(r#"--batch: the run started with "1,2", this command gives "1,4""#), "{err}");
    assert!(err.contains(r#"--weights-seed: the run started with "3", this command gives "4""#), "{err}");
    assert!(!err.contains("--new-tokens:"), "the same value is accepted: {err}");
    // One the run started without, given with another value than its default.
    let o = run(&["bench", "--resume", d, "--modes", "base"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(r#"--modes: the run started with "small", this command gives "base""#), "{err}");
    assert_eq!(state(&dir), recorded, "bench.json untouched");
    assert_eq!(std::fs::read(dir.join("bench.jsonl")).unwrap(), journal_before, "nothing measured");

    // The same flags, but another reader measured before (its bench.json says so): refused,
    // naming the field and both values, bench.json put back as it was.
    let mut other = recorded.clone();
    other["reader"]["weights"] = "synthetic:elsewhere".into();
    std::fs::write(dir.join("bench.json"), serde_json::to_string_pretty(&other).unwrap()).unwrap();
    let o = run(&["bench", "--resume", d]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(r#"weights: the run measured "synthetic:elsewhere", this session loads"#), "{err}");
    assert_eq!(state(&dir), other, "a refused resume leaves bench.json as it was, not failed");
    assert!(!dir.join(occ_eval::lock::LOCK_FILE).exists(), "the lock is released");
    std::fs::write(dir.join("bench.json"), serde_json::to_string_pretty(&recorded).unwrap()).unwrap();

    // The recorded flags restored (a flag given again with its value is accepted).
    let o = run(&["bench", "--resume", d, "--batch", "1,2"]);
    assert_ok(&o);
    assert!(stderr(&o).contains("reader flags restored"), "{}", stderr(&o));
    assert_eq!(journal_keys(&dir), ["run small/1 @0", "run small/2 @1"]);
    let r = report(&o);
    assert!(r["weights"].as_str().unwrap().contains("seed-3"), "the recorded --weights-seed: {r}");
    assert_eq!(r["runs"][1]["pages"], 2, "--batch 2: two pages");

    // A complete run is not resumed; a bench run folder as --out (without --resume) is refused
    // with the command that continues it.
    let o = run(&["bench", "--resume", d]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already complete"), "{}", stderr(&o));
    let o = bench(&dir, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is a bench run folder") && err.contains(&format!("bench --resume {d}")), "{err}");
    assert!(!dir.join("bench").exists());
    assert_eq!(std::fs::read_dir(out.join("bench")).unwrap().count(), 1, "no run folder was made");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_failed_bench_is_marked_failed_with_its_error_and_the_command_that_continues_it() {
    let out = scratch("bench-fail");
    let missing = out.join("no-such-weights");
    let o = run(&["bench", "--weights", missing.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let dir = only_dir(&out);
    let s = state(&dir);
    assert_eq!((s["status"].as_str(), s["measured"].as_u64()), (Some("failed"), Some(0)), "{s}");
    let chain: Vec<&str> = s["error_chain"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(chain[0].contains("no-such-weights"), "the error as printed, outermost first: {chain:?}");
    assert!(err.contains(chain[0]), "{err}");
    assert!(err.contains(&format!("continue it with: compress-bench bench --resume {}", dir.display())), "{err}");
    assert!(!dir.join(occ_eval::lock::LOCK_FILE).exists(), "the lock is released");

    // Resumed, it loads the recorded weights again: failed again, both sessions kept.
    let o = run(&["bench", "--resume", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s = state(&dir);
    assert_eq!(s["status"], "failed");
    assert_eq!(s["sessions"].as_array().unwrap().len(), 2, "{s}");
    assert!(s["error_chain"][0].as_str().unwrap().contains("no-such-weights"), "{s}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// A batch above what the free device memory holds (issue 16): `--free-memory-gb` stands for the
/// device's figure on the CPU. The run is lowered to the largest batch that fits and says so
/// (requested and used batch, the largest batch that fits, a warning), and decodes as a run asked
/// for that batch (the library test `batcher::tests::more_slots_than_fit_run_lowered_with_the_same_tokens`
/// compares the tokens).
#[test]
fn a_batch_above_what_fits_the_free_memory_runs_lowered_and_reports_both() {
    use candle_core::DType;
    use occ_model::batcher::BatcherConfig;
    use occ_model::decoder::DecoderConfig;
    use occ_model::memory_plan::{Sequences, SlotMemory, RESERVE_BYTES};

    let root = scratch("bench-fit");
    // without a figure (CPU): nothing lowered, nothing planned
    let plain = bench_plan(&root.join("plain"), "2", "0", &["--pages", "4"]);
    assert_ok(&plain);
    let plain = report(&plain)["runs"][0].clone();
    assert_eq!((plain["batch"].as_u64(), plain["requested_batch"].as_u64()), (Some(2), Some(2)));
    assert!(plain.get("fits_batch").is_none(), "{plain}");

    // the tiny reader's plan at 4 new tokens, with bench's batcher settings for --batch 4: a figure
    // with room for 2 slots and their pages and half a slot more
    let prompt = plain["prompt_tokens"].as_u64().unwrap() as usize;
    let bc = BatcherConfig { slots: 4, prefill_batch: 4, ..Default::default() };
    let plan =
        SlotMemory::new(&DecoderConfig::tiny(), DType::F32, Sequences { prompt_len: prompt, max_new_tokens: 4 }, &bc);
    let usable = plan.bytes_for(2, 2) + plan.bytes_per_slot(1) / 2;
    let gb = (usable + RESERVE_BYTES) as f64 / 0.9 / 1e9;
    assert_eq!(plan.max_slots((gb * 1e9) as u64, 1), 2);

    let o = bench_plan(&root.join("fit"), "4", "0", &["--pages", "4", "--free-memory-gb", &format!("{gb}")]);
    assert_ok(&o);
    assert!(stderr(&o).contains("small batch 4: lowered to 2 slots, the largest that fits"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("batch   2 (of 4)") && stderr(&o).contains("largest batch that fits 2"),
        "{}",
        stderr(&o)
    );
    let run = report(&o)["runs"][0].clone();
    assert_eq!(run["requested_batch"], 4);
    assert_eq!(run["batch"], 2);
    assert_eq!(run["fits_batch"], 2);
    assert_eq!(run["oom_retries"], 0);
    assert!((run["free_gpu_gb"].as_f64().unwrap() - gb).abs() < 1e-6, "{run}");
    // the lowered run decodes as the one asked for 2 slots: same steps, same tokens generated
    assert_eq!(run["decode_steps"], plain["decode_steps"]);
    assert_eq!(run["pages"], plain["pages"]);
    // the journal holds the same (requested 4, used 2)
    let line = &journal(&only_dir(&root.join("fit")))[0]["run"];
    assert_eq!((line["requested_batch"].as_u64(), line["batch"].as_u64()), (Some(4), Some(2)));
}

/// Issue 16's decode figures on the CPU: the weights a step reads (`occ_model::bandwidth` for the
/// tiny reader, by slot count, in f32), the measured time per step and their ratio; no kernel count
/// without a captured CUDA graph (null, not absent).
#[test]
fn the_report_has_the_decode_weight_bandwidth_and_a_null_kernel_count_on_the_cpu() {
    use candle_core::DType;
    use occ_model::bandwidth::DecodeWeights;
    use occ_model::decoder::DecoderConfig;

    let root = scratch("bench-bandwidth");
    let o = bench_plan(&root, "1,2", "0", &["--json"]);
    assert_ok(&o);
    let report = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|m| m["type"] == "bench")
        .expect("a bench message")["data"]
        .clone();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{report}");
    for run in runs {
        let slots = run["batch"].as_u64().unwrap() as usize;
        let want = DecodeWeights::new(&DecoderConfig::tiny(), DType::F32, slots).total() as f64 / 1e9;
        let per_step = run["decode_weight_gb_per_step"].as_f64().unwrap();
        assert!((per_step - want).abs() < 1e-12, "{run}");
        let steps = run["decode_steps"].as_u64().unwrap() as f64;
        assert!(steps > 0.0, "{run}");
        let step_s = run["decode_step_s"].as_f64().unwrap();
        let decode_s = (run["pages"].as_f64().unwrap() * 3.0) / run["decode_tok_s_total"].as_f64().unwrap();
        assert!((step_s * steps - decode_s).abs() < 1e-6 * decode_s.max(1.0), "{run}");
        let gbs = run["decode_weight_gb_s"].as_f64().unwrap();
        assert!((gbs - per_step / step_s).abs() <= 1e-9 * gbs, "{run}");
        assert_eq!(run["cuda_graph"], false);
        assert!(run.get("decode_kernels_per_step").is_some_and(|k| k.is_null()), "{run}");
    }
    // two slots read one more embedding row and (top-2 of 8 experts) two more experts per MoE layer
    let (one, two) = (&runs[0], &runs[1]);
    assert!(
        two["decode_weight_gb_per_step"].as_f64().unwrap() > one["decode_weight_gb_per_step"].as_f64().unwrap(),
        "{report}"
    );
}
