//! `sweep` beyond one process (docs/SCALE.md): `--workers N` (CPU engines) and `--gpus LIST|all`
//! (model engines) run the sweep as one worker process of this binary per shard on this host,
//! with one combined progress bar, and merge the shards into one run; `--emit-slurm DIR` writes a
//! Slurm array job over the shards, a merge job that depends on it and `submit.sh`.
//!
//! Both build on two lower flags that a worker (or an array task) is started with:
//! - `--shard K/N --shard-dir DIR`: the shard's run lives under DIR (its `--out`). The first
//!   start makes the run there; a later start resumes it from its journal (`--resume`, with the
//!   reader flags of this command line); a complete shard exits at once. So rerunning any worker
//!   or array task redoes nothing that finished.
//! - `--merge-shards ROOT`: joins the complete shards under ROOT (`ROOT/s1` … `ROOT/sN`) into one
//!   run in `--out` (`occ_eval::results::merge`, as `compress-bench merge`), once: the merged
//!   run's folder is written to `ROOT/merged`, and a second merge says so and stops.
//!
//! Nothing here schedules work itself: the host's devices (one process each) and Slurm do.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use occ_eval::plan::Shard;
use occ_eval::results::Manifest;
use occ_eval::spec::EngineKind;

use super::sweep::resolve_spec;
use occ_eval::status::RunStatus;

use super::sweep::Args;
use crate::interrupt::{Interrupt, Interrupted};
use crate::output::Output;
use crate::runs;

/// File under a shard root that names the merged run once the shards are merged.
pub const MERGED_FILE: &str = "merged";

/// Flags of `sweep` that spread it over processes, devices and Slurm (docs/SCALE.md).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Scale: several processes, GPUs, Slurm (docs/SCALE.md)")]
pub struct ScaleArgs {
    /// Run the sweep as N worker processes on this host (shard K of N each; CPU engines), with one
    /// progress bar, then merge them into one run in --out. Rerunning the same command resumes
    /// the unfinished shards from their journals and redoes nothing that finished.
    #[arg(long, value_name = "N", conflicts_with_all = ["gpus", "emit_slurm", "resume", "shard", "merge_shards"])]
    pub workers: Option<u32>,
    /// One worker process per GPU ("0,1,2,3", or "all": every GPU nvidia-smi lists, or those of
    /// CUDA_VISIBLE_DEVICES): each sees only its GPU (CUDA_VISIBLE_DEVICES) and reads with
    /// --device cuda; then as --workers.
    #[arg(long, value_name = "LIST|all", conflicts_with_all = ["emit_slurm", "resume", "shard", "merge_shards"])]
    pub gpus: Option<String>,
    /// --workers/--gpus: folder of the shard runs [default: <out>/<name>.shards/<spec
    /// fingerprint>-of<N>, so the same command finds them again].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Write a Slurm array job over the shards (array.sbatch), a merge job that runs when every
    /// task succeeded (merge.sbatch) and submit.sh (submits both; run it again after failures)
    /// into DIR; submits nothing.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["resume", "shard", "merge_shards", "dry_run"])]
    pub emit_slurm: Option<PathBuf>,
    /// --emit-slurm: array tasks, one shard each [default: 4].
    #[arg(long, value_name = "N", requires = "emit_slurm")]
    pub array: Option<u32>,
    /// --emit-slurm: the partition (#SBATCH --partition).
    #[arg(long, value_name = "P", requires = "emit_slurm")]
    pub partition: Option<String>,
    /// --emit-slurm: GPUs per array task (#SBATCH --gres=gpu:G; the sweep reads with --device cuda).
    #[arg(long, value_name = "G", requires = "emit_slurm")]
    pub gpus_per_task: Option<u32>,
    /// --emit-slurm: CPU cores per array task (#SBATCH --cpus-per-task).
    #[arg(long, value_name = "C", requires = "emit_slurm")]
    pub cpus_per_task: Option<u32>,
    /// --emit-slurm: time limit of each task and of the merge job (#SBATCH --time, e.g. 04:00:00).
    #[arg(long, value_name = "T", requires = "emit_slurm")]
    pub time: Option<String>,
    /// With --shard K/N: the shard's folder (its --out). A run found there is resumed from its
    /// journal, a complete one is left as it is (exit 0); the workers and array tasks use this.
    #[arg(long, value_name = "DIR", requires = "shard", conflicts_with = "dry_run")]
    pub shard_dir: Option<PathBuf>,
    /// Join the complete shard runs under ROOT (ROOT/s1 … ROOT/sN, as --workers, --gpus and
    /// --emit-slurm write them) into one run in --out; a second call finds ROOT/merged and stops.
    #[arg(long, value_name = "ROOT", conflicts_with_all = ["spec", "resume", "shard", "dry_run"])]
    pub merge_shards: Option<PathBuf>,
}

impl ScaleArgs {
    /// Whether this command is one of this module's (then [`run`] handles it).
    pub fn active(&self) -> bool {
        self.workers.is_some()
            || self.gpus.is_some()
            || self.emit_slurm.is_some()
            || self.shard_dir.is_some()
            || self.merge_shards.is_some()
    }
}

/// Runs a sweep command whose [`ScaleArgs::active`] is true.
pub fn run(args: &Args, out: &Output) -> anyhow::Result<()> {
    let s = &args.scale;
    if let Some(root) = &s.merge_shards {
        return merge_shards(root, &args.out, !args.no_report, out).map(|_| ());
    }
    if let Some(dir) = &s.shard_dir {
        return shard_worker(args, dir, out);
    }
    if let Some(dir) = &s.emit_slurm {
        return emit_slurm(args, dir, out);
    }
    local_workers(args, out)
}

// ---------------------------------------------------------------------------------------------
// Command lines

/// Global flags and subcommand arguments of this process's command line (`argv` without the
/// program), split at the `sweep` subcommand.
fn split_argv() -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let at = argv.iter().position(|a| a == "sweep").context("no `sweep` subcommand on the command line")?;
    Ok((argv[..at].to_vec(), argv[at + 1..].to_vec()))
}

/// `args` without the flags named in `values` (with their value: `--f V` or `--f=V`) and
/// `switches`.
fn strip(args: &[String], values: &[&str], switches: &[&str]) -> Vec<String> {
    let mut kept = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let name = a.split('=').next().unwrap_or(a);
        if values.contains(&name) {
            if !a.contains('=') {
                i += 1; // its value
            }
        } else if !switches.contains(&name) {
            kept.push(a.clone());
        }
        i += 1;
    }
    kept
}

/// The flags of `args` named in `values` (with their value) and `switches`, as given.
fn keep(args: &[String], values: &[&str], switches: &[&str]) -> Vec<String> {
    let mut kept = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let name = a.split('=').next().unwrap_or(a);
        if values.contains(&name) {
            kept.push(a.clone());
            if !a.contains('=') && i + 1 < args.len() {
                kept.push(args[i + 1].clone());
                i += 1;
            }
        } else if switches.contains(&name) {
            kept.push(a.clone());
            // `--synthetic-weights` may take a value
            if name == "--synthetic-weights" && !a.contains('=') && args.get(i + 1).is_some_and(|v| !v.starts_with('-'))
            {
                kept.push(args[i + 1].clone());
                i += 1;
            }
        }
        i += 1;
    }
    kept
}

/// Flags of this module that take a value (left out of the command lines it starts).
const SCALE_VALUES: [&str; 10] = [
    "--workers",
    "--gpus",
    "--work-dir",
    "--emit-slurm",
    "--array",
    "--partition",
    "--gpus-per-task",
    "--cpus-per-task",
    "--time",
    "--merge-shards",
];

/// The global flags of a started process: this command's, without `--json` (workers write logs).
fn child_globals(globals: &[String]) -> Vec<String> {
    strip(globals, &[], &["--json"])
}

/// `a` quoted for a POSIX shell where it needs it.
fn quote(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

fn shell_line(program: &str, args: &[String]) -> String {
    std::iter::once(quote(program)).chain(args.iter().map(|a| quote(a))).collect::<Vec<_>>().join(" ")
}

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding this program (std::env::current_exe)")
}

/// An absolute form of `p` (relative to the current folder), without requiring it to exist.
fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
}

// ---------------------------------------------------------------------------------------------
// Shard folders

/// The run folder under a shard folder (`DIR/<name>/<run_id>`), if one was made. Folders without a
/// manifest or journal (a start killed before its first write) are ignored.
pub fn shard_run(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let mut runs = Vec::new();
    let Ok(names) = std::fs::read_dir(dir) else { return Ok(None) };
    for name in names {
        let name = name?.path();
        if !name.is_dir() {
            continue;
        }
        for run in std::fs::read_dir(&name)? {
            let run = run?.path();
            if run.join(occ_eval::results::MANIFEST_FILE).is_file() {
                runs.push(run);
            }
        }
    }
    match runs.len() {
        0 => Ok(None),
        1 => Ok(runs.pop()),
        _ => bail!(
            "{} holds {} runs ({}); a shard folder holds one",
            dir.display(),
            runs.len(),
            runs.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The folder of shard `k` under a shard root.
pub fn shard_folder(root: &Path, k: u32) -> PathBuf {
    root.join(format!("s{k}"))
}

/// Samples journaled and planned in a shard folder (0, 0 before its manifest is written).
fn shard_progress(dir: &Path) -> (u64, u64) {
    let Ok(Some(run)) = shard_run(dir) else { return (0, 0) };
    let planned = Manifest::load(&run).map(|m| m.n_samples_planned as u64).unwrap_or(0);
    let done = std::fs::read(run.join(occ_eval::journal::JOURNAL_FILE))
        .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
        .unwrap_or(0);
    (done, planned)
}

/// `--shard K/N --shard-dir DIR`: start the shard's run in DIR, resume the one there, or stop at
/// once when it is complete. The run is a child process of this binary (so a resumed run is
/// exactly `sweep --resume`); its exit status is this one's.
fn shard_worker(args: &Args, dir: &Path, out: &Output) -> anyhow::Result<()> {
    let text = args.shard.as_deref().context("--shard-dir needs --shard K/N")?;
    let shard = Shard::parse(text).map_err(anyhow::Error::msg)?;
    let (globals, sub) = split_argv()?;
    let mut child_args = globals.clone();
    child_args.push("sweep".into());
    match shard_run(dir)? {
        Some(run) => {
            let m = Manifest::load(&run)?;
            if m.shard != Some(shard) {
                bail!(
                    "{} is {}, not shard {}/{}; give each shard its own --shard-dir",
                    run.display(),
                    m.shard.map_or("not a shard run".to_string(), |s| format!("shard {}/{}", s.index, s.count)),
                    shard.index,
                    shard.count
                );
            }
            let wanted = resolve_spec(args)?.fingerprint();
            if m.spec_fingerprint != wanted {
                bail!(
                    "{} is a run of spec {}, this command's spec is {}: a changed sweep needs another --shard-dir \
                     (or --emit-slurm folder)",
                    run.display(),
                    m.spec_fingerprint,
                    wanted
                );
            }
            if m.status == RunStatus::Complete {
                out.info(&format!("shard {}/{} is complete: {}", shard.index, shard.count, run.display()));
                return Ok(());
            }
            out.info(&format!(
                "shard {}/{}: resuming {} ({} of {} samples journaled)",
                shard.index,
                shard.count,
                run.display(),
                shard_progress(dir).0,
                m.n_samples_planned
            ));
            let values = [&runs::MODEL_VALUE_FLAGS[..], &["--threads", "--datasets"]].concat();
            let switches = [&runs::MODEL_SWITCHES[..], &["--no-report", "--json", "--quiet", "-q"]].concat();
            child_args.extend(keep(&sub, &values, &switches));
            child_args.extend(["--resume".to_string(), run.display().to_string()]);
        }
        None => {
            child_args.extend(strip(&sub, &["--shard-dir", "--out"], &[]));
            child_args.extend(["--out".to_string(), dir.display().to_string()]);
        }
    }
    // The first SIGINT/SIGTERM reaches the run too (same process group, or Slurm's signal to the
    // whole task): it stops after its batch and this process waits for it.
    let _interrupt = Interrupt::install()?;
    let status = Command::new(exe()?)
        .args(&child_args)
        .status()
        .with_context(|| format!("starting {}", shell_line("compress-bench", &child_args)))?;
    if status.success() {
        return Ok(());
    }
    // A sweep killed by a signal exits as a shell reports it: 128 + the signal.
    let code = status.code().unwrap_or_else(|| {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(sig) = status.signal() {
                eprintln!("error: the sweep of shard {}/{} was killed by signal {sig}", shard.index, shard.count);
                return 128 + sig;
            }
        }
        1
    });
    std::process::exit(code);
}

/// `--merge-shards ROOT`: one run in `out_root` from the complete shards under ROOT, once.
/// Returns the merged run's folder.
pub fn merge_shards(root: &Path, out_root: &Path, report: bool, out: &Output) -> anyhow::Result<PathBuf> {
    let marker = root.join(MERGED_FILE);
    if let Ok(text) = std::fs::read_to_string(&marker) {
        let dir = PathBuf::from(text.trim());
        if dir.join(occ_eval::results::SAMPLES_FILE).is_file() {
            out.result(&format!("the shards of {} are already merged into {}", root.display(), dir.display()));
            return Ok(dir);
        }
    }
    let mut dirs = Vec::new();
    let mut k = 1;
    while shard_folder(root, k).is_dir() {
        if let Some(run) = shard_run(&shard_folder(root, k))? {
            dirs.push(run);
        }
        k += 1;
    }
    if dirs.is_empty() {
        bail!("no shard runs under {} (expected {}/s1 … sN)", root.display(), root.display());
    }
    let (dir, mut manifest) = occ_eval::results::merge(&dirs, out_root, &runs::host()).context("merging the shards")?;
    let failed = runs::finish_run(&dir, &mut manifest, report, out)?;
    std::fs::write(&marker, format!("{}\n", absolute(&dir)?.display()))
        .with_context(|| format!("writing {}", marker.display()))?;
    if failed > 0 {
        bail!("{failed} samples of the shards had failed; the merged results are written in {}", dir.display());
    }
    Ok(dir)
}

// ---------------------------------------------------------------------------------------------
// One host: --workers / --gpus

/// The GPUs of `--gpus`: a comma-separated list of indices, or `all`.
fn gpu_list(text: &str) -> anyhow::Result<Vec<String>> {
    if text.trim() == "all" {
        if let Ok(visible) = std::env::var("CUDA_VISIBLE_DEVICES") {
            let ids: Vec<String> = visible.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
            if !ids.is_empty() {
                return Ok(ids);
            }
        }
        let o = Command::new("nvidia-smi")
            .args(["--query-gpu=index", "--format=csv,noheader"])
            .output()
            .context("--gpus all: running nvidia-smi to list the GPUs")?;
        if !o.status.success() {
            bail!("--gpus all: nvidia-smi failed: {}", String::from_utf8_lossy(&o.stderr).trim());
        }
        let ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if ids.is_empty() {
            bail!("--gpus all: nvidia-smi lists no GPU");
        }
        return Ok(ids);
    }
    let ids: Vec<String> = text.split(',').map(|s| s.trim().to_string()).collect();
    if ids.iter().any(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_digit())) {
        bail!("--gpus {text:?}: expected GPU indices separated by commas (e.g. 0,1,2,3) or `all`");
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != ids.len() {
        bail!("--gpus {text:?}: a GPU is named twice");
    }
    Ok(ids)
}

/// One worker process of [`local_workers`].
struct Worker {
    shard: u32,
    gpu: Option<String>,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    status: Option<ExitStatus>,
}

impl Worker {
    fn label(&self, n: u32) -> String {
        match &self.gpu {
            Some(g) => format!("shard {}/{n} (GPU {g})", self.shard),
            None => format!("shard {}/{n}", self.shard),
        }
    }
}

/// What a dead worker's log says: its last `error:` line (the CLI's final error, whatever
/// backtrace follows), else its last `n` lines.
fn tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(f) = File::open(path) else { return Vec::new() };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    if let Some(e) = lines.iter().rev().find(|l| l.starts_with("error:")) {
        return vec![e.clone()];
    }
    lines[lines.len().saturating_sub(n)..].to_vec()
}

fn describe(status: &ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("killed by signal {sig}");
        }
    }
    match status.code() {
        Some(c) if c > 128 => format!("exit status {c}: its sweep was killed by signal {}", c - 128),
        Some(c) => format!("exit status {c}"),
        None => "no exit status".into(),
    }
}

/// `--workers N` / `--gpus LIST`: one worker process per shard, one progress bar, then the merge.
fn local_workers(args: &Args, out: &Output) -> anyhow::Result<()> {
    let s = &args.scale;
    if args.dry_run {
        bail!("--dry-run estimates one process; run it without --workers/--gpus (the time divides by the workers)");
    }
    let spec = resolve_spec(args)?;
    let gpus = s.gpus.as_deref().map(gpu_list).transpose()?;
    let n = match (&gpus, s.workers) {
        (Some(g), _) => g.len() as u32,
        (None, Some(n)) => n,
        (None, None) => bail!("--workers N or --gpus LIST"),
    };
    if n == 0 {
        bail!("--workers 0: at least one worker");
    }
    if gpus.is_some() && !spec.engine.is_model() {
        bail!(
            "--gpus runs a model engine (deepseek-ocr, mini) on each GPU; the {} engine reads on the CPU: use --workers N",
            spec.engine
        );
    }
    let root = match &s.work_dir {
        Some(d) => d.clone(),
        None => args.out.join(format!("{}.shards", spec.name)).join(format!("{}-of{n}", spec.fingerprint())),
    };
    std::fs::create_dir_all(root.join("logs")).with_context(|| format!("creating {}", root.display()))?;
    if let Ok(text) = std::fs::read_to_string(root.join(MERGED_FILE)) {
        let dir = PathBuf::from(text.trim());
        if dir.join(occ_eval::results::SAMPLES_FILE).is_file() {
            out.result(&format!(
                "this sweep is done: its {n} shards ({}) are merged into {}",
                root.display(),
                dir.display()
            ));
            return Ok(());
        }
    }
    let (globals, sub) = split_argv()?;
    let mut base = strip(&sub, &[&SCALE_VALUES[..], &["--out", "--shard-dir"]].concat(), &["--no-report"]);
    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    let share = (cores / n as usize).max(1);
    if spec.engine == EngineKind::Tesseract && args.threads.is_none() {
        base.extend(["--threads".to_string(), share.to_string()]);
    }
    if gpus.is_some() {
        base = strip(&base, &["--device"], &[]);
        base.extend(["--device".to_string(), "cuda".to_string()]);
    }
    let program = exe()?;
    let mut workers: Vec<Worker> = (1..=n)
        .map(|k| {
            let mut a = child_globals(&globals);
            a.push("sweep".into());
            a.extend(base.iter().cloned());
            a.extend(["--no-report".to_string(), "--shard".into(), format!("{k}/{n}")]);
            a.extend(["--shard-dir".to_string(), shard_folder(&root, k).display().to_string()]);
            Worker {
                shard: k,
                gpu: gpus.as_ref().map(|g| g[k as usize - 1].clone()),
                args: a,
                log: root.join("logs").join(format!("s{k}.log")),
                child: None,
                status: None,
            }
        })
        .collect();
    let interrupt = Interrupt::install()?;
    out.info(&format!(
        "sweep {}: {n} worker{}{} over shards in {} (logs: {}/logs)",
        spec.name,
        if n == 1 { "" } else { "s" },
        gpus.as_ref().map(|g| format!(" on GPUs {}", g.join(","))).unwrap_or_default(),
        root.display(),
        root.display()
    ));
    for w in &mut workers {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&w.log)
            .with_context(|| format!("opening {}", w.log.display()))?;
        let mut cmd = Command::new(&program);
        cmd.args(&w.args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        if let Some(g) = &w.gpu {
            cmd.env("CUDA_VISIBLE_DEVICES", g);
        }
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            cmd.env("RAYON_NUM_THREADS", share.to_string());
        }
        w.child = Some(cmd.spawn().with_context(|| format!("starting the worker of {}", w.label(n)))?);
    }
    let mut bar =
        out.progress("sweep", "samples", 0, "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} {msg}");
    let mut started_bar = false;
    let mut forwarded = false;
    loop {
        let mut running = 0;
        for w in &mut workers {
            if let Some(child) = &mut w.child {
                match child.try_wait()? {
                    Some(status) => {
                        w.status = Some(status);
                        w.child = None;
                    }
                    None => running += 1,
                }
            }
        }
        let (done, planned) =
            (1..=n).map(|k| shard_progress(&shard_folder(&root, k))).fold((0, 0), |(d, p), (dk, pk)| (d + dk, p + pk));
        if planned > 0 {
            bar.set_length(planned);
            if !started_bar {
                bar.start_at(done);
                started_bar = true;
            }
            bar.set_position(done);
            bar.set_message(format!("{running} of {n} workers running"));
        }
        if running == 0 {
            break;
        }
        if interrupt.requested() && !forwarded {
            // A signal sent to this process alone (a terminal's Ctrl-C reaches the workers too):
            // pass it on, each worker stops after its batch in flight.
            for w in &workers {
                if let Some(c) = &w.child {
                    let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
                }
            }
            forwarded = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bar.finish();
    let rerun = shell_line("compress-bench", &std::env::args().skip(1).collect::<Vec<_>>());
    let failed: Vec<&Worker> = workers.iter().filter(|w| !w.status.is_some_and(|s| s.success())).collect();
    if interrupt.requested() {
        let (done, planned) =
            (1..=n).map(|k| shard_progress(&shard_folder(&root, k))).fold((0, 0), |(d, p), (dk, pk)| (d + dk, p + pk));
        return Err(Interrupted {
            state: format!("the shards in {} keep every journaled sample", root.display()),
            done: format!("{done} of {planned} samples"),
            resume: rerun,
        }
        .into());
    }
    if !failed.is_empty() {
        for w in &failed {
            let status = w.status.as_ref().map_or("no exit status".into(), describe);
            let mut text = format!("worker of {} died ({status}); its log {}", w.label(n), w.log.display());
            for line in tail(&w.log, 5) {
                text.push_str("\n    ");
                text.push_str(&line);
            }
            let env = w.gpu.as_ref().map(|g| format!("CUDA_VISIBLE_DEVICES={g} ")).unwrap_or_default();
            text.push_str(&format!("\n  this shard alone: {env}{}", shell_line("compress-bench", &w.args)));
            out.warn(&text);
        }
        bail!(
            "{} of {n} workers failed ({}); the finished shards and every journaled sample are kept in {}. Continue \
             with the same command, which resumes only the unfinished shards:\n  {rerun}",
            failed.len(),
            failed.iter().map(|w| w.label(n)).collect::<Vec<_>>().join(", "),
            root.display()
        );
    }
    let t = Instant::now();
    let merged = merge_shards(&root, &args.out, !args.no_report, out)?;
    out.info(&format!("merged {n} shards into {} in {:.1} s", merged.display(), t.elapsed().as_secs_f64()));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Slurm: --emit-slurm

/// `--emit-slurm DIR`: array.sbatch, merge.sbatch and submit.sh (docs/SCALE.md).
fn emit_slurm(args: &Args, dir: &Path, out: &Output) -> anyhow::Result<()> {
    let s = &args.scale;
    if args.scale.workers.is_some() || args.scale.gpus.is_some() {
        bail!("--emit-slurm writes a Slurm job; Slurm places the tasks (no --workers/--gpus)");
    }
    let spec = resolve_spec(args)?; // every bad spec fails now, not in the job
    let n = s.array.unwrap_or(4);
    if n == 0 {
        bail!("--array 0: at least one task");
    }
    if let Some(t) = &s.time {
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit() || c == ':' || c == '-') {
            bail!("--time {t:?}: a Slurm time limit, e.g. 04:00:00, 90 or 1-00:00:00");
        }
    }
    std::fs::create_dir_all(dir.join("logs")).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let root = dir.join("shards");
    let out_root = absolute(&args.out)?;
    let cwd = std::env::current_dir()?;
    let program = exe()?.display().to_string();
    let (globals, sub) = split_argv()?;
    let mut base = strip(&sub, &[&SCALE_VALUES[..], &["--out", "--shard-dir"]].concat(), &["--no-report"]);
    if s.gpus_per_task.is_some_and(|g| g > 0) {
        base = strip(&base, &["--device"], &[]);
        base.extend(["--device".to_string(), "cuda".to_string()]);
    }
    let mut task = child_globals(&globals);
    task.push("sweep".into());
    task.extend(base);
    task.push("--no-report".into());
    let task_line = format!(
        "{} --shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\" --shard-dir {}/s\"${{SLURM_ARRAY_TASK_ID}}\"",
        shell_line(&program, &task),
        quote(&root.display().to_string())
    );
    let mut header = String::new();
    if let Some(p) = &s.partition {
        header.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(t) = &s.time {
        header.push_str(&format!("#SBATCH --time={t}\n"));
    }
    let logs = dir.join("logs").display().to_string();
    let mut array = format!(
        "#!/bin/bash\n# Written by `compress-bench sweep --emit-slurm` (docs/SCALE.md): task K of {n} runs shard K/{n} of \
         the sweep\n# `{name}` into {root}/sK. A task started again resumes its shard from the journal; a complete shard \
         exits at once.\n#SBATCH --job-name={name}-shards\n#SBATCH --array=1-{n}\n#SBATCH --output={logs}/shard-%a.log\n\
         #SBATCH --open-mode=append\n",
        name = spec.name,
        root = root.display(),
    );
    array.push_str(&header);
    if let Some(g) = s.gpus_per_task.filter(|&g| g > 0) {
        array.push_str(&format!("#SBATCH --gres=gpu:{g}\n"));
    }
    if let Some(c) = s.cpus_per_task {
        array.push_str(&format!("#SBATCH --cpus-per-task={c}\n"));
    }
    array.push_str(&format!(
        "set -euo pipefail\ncd {}\n{}exec {task_line}\n",
        quote(&cwd.display().to_string()),
        match s.cpus_per_task {
            Some(c) => format!("export RAYON_NUM_THREADS={c}\n"),
            None => String::new(),
        }
    ));
    let mut merge_args = child_globals(&globals);
    merge_args.extend(["sweep".to_string(), "--merge-shards".into(), root.display().to_string()]);
    merge_args.extend(["--out".to_string(), out_root.display().to_string()]);
    if args.no_report {
        merge_args.push("--no-report".into());
    }
    let mut merge = format!(
        "#!/bin/bash\n# Written by `compress-bench sweep --emit-slurm`: joins the {n} shards of {root} into one run in \
         {out}\n# once every array task succeeded (submit.sh submits it with --dependency=afterok).\n\
         #SBATCH --job-name={name}-merge\n#SBATCH --output={logs}/merge.log\n#SBATCH --open-mode=append\n",
        name = spec.name,
        root = root.display(),
        out = out_root.display(),
    );
    merge.push_str(&header);
    merge.push_str(&format!(
        "set -euo pipefail\ncd {}\nexec {}\n",
        quote(&cwd.display().to_string()),
        shell_line(&program, &merge_args)
    ));
    let submit = format!(
        r#"#!/bin/bash
# Written by `compress-bench sweep --emit-slurm` (docs/SCALE.md): submits the shard array and the merge
# job that runs when every task succeeded. Run it again after failures (a cancelled, pre-empted or
# timed-out task): finished shards exit at once, the others resume from their journals, then the merge.
set -euo pipefail
cd "$(dirname "$0")"
if [ -s {merged} ]; then
  echo "already merged into $(cat {merged})"
  exit 0
fi
# The jobs of an earlier submission: its array must be over (two tasks of one shard must not run at
# once); its merge job, waiting on an array with a failed task, would never run: cancel it.
if [ -s jobs ]; then
  old_array=$(awk '$1 == "array" {{ id = $2 }} END {{ print id }}' jobs)
  old_merge=$(awk '$1 == "merge" {{ id = $2 }} END {{ print id }}' jobs)
  if [ -n "$old_array" ] && [ -n "$(squeue -h -r -j "$old_array" -o %i 2>/dev/null)" ]; then
    echo "array job $old_array of the last submission still has tasks queued or running; wait for it (or scancel it) first" >&2
    exit 1
  fi
  [ -z "$old_merge" ] || scancel "$old_merge" 2>/dev/null || true
fi
array=$(sbatch --parsable array.sbatch)
array=${{array%%;*}}
merge=$(sbatch --parsable --dependency=afterok:"$array" merge.sbatch)
merge=${{merge%%;*}}
printf 'array %s\nmerge %s\n' "$array" "$merge" >> jobs
echo "submitted: array job $array ({n} shards), merge job $merge (after every shard succeeded)"
echo "logs: {logs}; merged run: {out}/{name}/ (its folder is written to {merged})"
"#,
        merged = quote(&root.join(MERGED_FILE).display().to_string()),
        logs = logs,
        out = out_root.display(),
        name = spec.name,
    );
    for (file, text) in [("array.sbatch", array), ("merge.sbatch", merge), ("submit.sh", submit)] {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    out.result(&format!(
        "wrote {d}/array.sbatch ({n} tasks), {d}/merge.sbatch and {d}/submit.sh; submit with: bash {d}/submit.sh",
        d = dir.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn strip_and_keep_take_flags_with_their_values_in_both_spellings() {
        let args =
            v(&["spec.toml", "--workers", "2", "--out=r", "--threads", "3", "--synthetic-weights", "--no-report"]);
        assert_eq!(
            strip(&args, &["--workers", "--out"], &["--no-report"]),
            v(&["spec.toml", "--threads", "3", "--synthetic-weights"])
        );
        assert_eq!(
            keep(&args, &["--threads"], &["--synthetic-weights", "--no-report"]),
            v(&["--threads", "3", "--synthetic-weights", "--no-report"])
        );
    }

    #[test]
    fn gpu_lists_are_indices_without_repeats() {
        assert_eq!(gpu_list("0,1, 3").unwrap(), v(&["0", "1", "3"]));
        assert!(gpu_list("0,0").is_err());
        assert!(gpu_list("cuda:0").is_err());
        assert!(gpu_list("").is_err());
    }
}
