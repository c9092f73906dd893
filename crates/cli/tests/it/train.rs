//! `compress-bench train` end to end on the toy config, then the trained reader through every
//! command that reads pages: `ocr --engine mini`, `sweep --engine mini`; and bad input.

use std::path::Path;
use std::process::{Command, Output};

use occ_eval::results;

use crate::util::{assert_ok, scratch};

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cb(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).current_dir(dir).args(args).output().expect("running compress-bench")
}

#[test]
fn train_export_then_read_with_the_mini_engine() {
    let out = scratch("train");
    let root = root();
    let cfg = root.join("experiments/train/tiny.toml");
    let run = out.join("run");
    let reader = out.join("reader");
    let o = cb(
        &root,
        &[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--stop-at",
            "10",
            "--export",
            reader.to_str().unwrap(),
            "--json",
        ],
    );
    assert_ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    for kind in ["train_start", "train_step", "train_checkpoint", "train_summary"] {
        assert!(stdout.contains(&format!("\"type\":\"{kind}\"")), "no {kind} message:\n{stdout}");
    }
    for f in ["mini.json", "vocab.json", "model.safetensors"] {
        assert!(reader.join(f).exists(), "{f}");
    }
    // a resumed run continues from step 10
    let o = cb(
        &root,
        &["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "--resume", "--stop-at", "12"],
    );
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("to step 12/"), "{}", String::from_utf8_lossy(&o.stdout));

    // ocr: a page of the reader's mode
    let page = out.join("page.png");
    let text = out.join("page.txt");
    std::fs::write(&text, "The whale is white, and the sea is wide and grey.").unwrap();
    let o = cb(
        &root,
        &[
            "render",
            "--mode",
            "custom:128x128",
            "--ratio",
            "2",
            "--text-file",
            text.to_str().unwrap(),
            "--out",
            page.to_str().unwrap(),
        ],
    );
    assert_ok(&o);
    let w = reader.to_str().unwrap();
    let o = cb(
        &root,
        &[
            "ocr",
            "--engine",
            "mini",
            "--weights",
            w,
            "--mode",
            "custom:128x128",
            "--image",
            page.to_str().unwrap(),
            "--max-new-tokens",
            "24",
            "--json",
        ],
    );
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"type\":\"ocr\""));
    // another mode is refused, naming the reader's
    let o =
        cb(&root, &["ocr", "--engine", "mini", "--weights", w, "--mode", "tiny", "--image", page.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("custom:128x128"), "{}", String::from_utf8_lossy(&o.stderr));

    // bench: the reader's speed in its mode
    let o = cb(
        &root,
        &[
            "bench",
            "--engine",
            "mini",
            "--weights",
            w,
            "--modes",
            "custom:128x128",
            "--batch",
            "2",
            "--new-tokens",
            "4",
            "--encoder-batch",
            "0",
            "--warmup",
            "0",
            "--json",
        ],
    );
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("pages_per_s"), "{}", String::from_utf8_lossy(&o.stdout));

    // sweep: the engine is named in the results
    let ds = root.join("datasets");
    let o = cb(
        &root,
        &[
            "sweep",
            "--datasets",
            ds.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--name",
            "mini",
            "--engine",
            "mini",
            "--weights",
            w,
            "--modes",
            "custom:128x128",
            "--ratios",
            "2",
            "--pages",
            "2",
        ],
    );
    assert_ok(&o);
    let dir = std::fs::read_dir(out.join("mini")).unwrap().next().unwrap().unwrap().path();
    let rows = results::read_samples(&dir).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.engine == "mini" && r.status == "ok"), "{rows:?}");
    assert!(std::fs::read_to_string(dir.join("report.md")).unwrap().contains("mini"));
}

#[test]
fn bad_training_input_is_named() {
    let out = scratch("train-bad");
    let root = root();
    let bad = out.join("bad.toml");
    let text = std::fs::read_to_string(root.join("experiments/train/tiny.toml"))
        .unwrap()
        .replace("[optim]", "[optim]\nmomentum = 0.9");
    std::fs::write(&bad, text).unwrap();
    let o = cb(&root, &["train", "--config", bad.to_str().unwrap(), "--out", out.join("r").to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml") && err.contains("momentum"), "{err}");
    // a missing reader folder is named with where it looked
    let o = cb(
        &root,
        &[
            "ocr",
            "--engine",
            "mini",
            "--weights",
            out.join("nothing").to_str().unwrap(),
            "--mode",
            "custom:256x256",
            "--image",
            "x.png",
        ],
    );
    assert!(!o.status.success());
}

/// SIGINT (here raised by the hidden test hook once step 3 is done) stops training after the step
/// in flight with a checkpoint, exits 130 and prints the command that continues the run, which
/// then finishes it.
#[test]
fn sigint_stops_training_with_a_checkpoint_and_a_working_resume_command() {
    let out = scratch("train-sigint");
    let root = root();
    let cfg = root.join("experiments/train/tiny.toml");
    let run = out.join("run");
    let (cfg_s, run_s) = (cfg.to_str().unwrap(), run.to_str().unwrap());
    let o = cb(&root, &["train", "--config", cfg_s, "--out", run_s, "--steps", "8", "--interrupt-after", "3"]);
    assert_eq!(o.status.code(), Some(130), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("interrupted with 3 of 8 steps done"), "{err}");
    let latest = std::fs::read_to_string(run.join("latest")).unwrap();
    assert_eq!(latest.trim(), "ckpt-0000003", "the step in flight is checkpointed");
    let resume = err.lines().skip_while(|l| !l.contains("Continue with:")).nth(1).expect("a resume command").trim();
    let want = format!("compress-bench train --config {cfg_s} --steps 8 --out {run_s} --resume");
    assert_eq!(resume, want);
    let args: Vec<&str> = resume.split(' ').skip(1).collect();
    let o = cb(&root, &args);
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("to step 8/8"), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn a_stderr_that_is_not_a_terminal_gets_training_progress_lines_at_the_interval() {
    let out = scratch("train-progress");
    let root = root();
    let cfg = root.join("experiments/train/tiny.toml");
    let cfg_s = cfg.to_str().unwrap();
    let run = out.join("run");
    let run_s = run.to_str().unwrap();
    // The test's pipes are not terminals: a line per step at a tiny interval, under --json too.
    let o = cb(
        &root,
        &["--json", "train", "--config", cfg_s, "--out", run_s, "--steps", "3", "--progress-interval", "1e-6"],
    );
    assert_ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("progress: ")).collect();
    assert_eq!(lines.len(), 3, "one line per step: {err}");
    assert!(lines[0].starts_with("progress: train 1/3 steps (33%), "), "{lines:?}");
    assert!(lines[1].contains(" elapsed, about ") && lines[1].contains(" left; loss "), "{lines:?}");
    assert!(lines[2].starts_with("progress: train 3/3 steps (100%), "), "{lines:?}");
    // A resumed run counts from where it starts; --quiet and 0 print none.
    let o = cb(
        &root,
        &["train", "--config", cfg_s, "--out", run_s, "--resume", "--steps", "4", "--progress-interval", "1e-6"],
    );
    assert_ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("progress: ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("progress: train 4/4 steps (100%), ") && lines[0].contains("; loss "), "{lines:?}");
    for extra in [&["--progress-interval", "1e-6", "--quiet"][..], &["--progress-interval", "0"]] {
        let dir = out.join(format!("quiet-{}", extra.len()));
        let mut args = vec!["train", "--config", cfg_s, "--out", dir.to_str().unwrap(), "--steps", "2"];
        args.extend_from_slice(extra);
        let o = cb(&root, &args);
        assert_ok(&o);
        assert!(!String::from_utf8_lossy(&o.stderr).contains("progress: "), "{extra:?}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}
