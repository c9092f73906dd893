//! `compress-bench train`: trains a small DeepEncoder-style reader from scratch on rendered pages
//! (occ-train), with checkpoints, exact resume, validation and curves; `--export DIR` writes the
//! latest checkpoint as a reader folder for `--engine mini --weights DIR` (docs/TRAINING.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use candle_core::Device;
use occ_train::trainer::{EvalLog, StartInfo, StepLog};
use occ_train::{TrainConfig, TrainOptions};

use crate::engine::DeviceArg;
use crate::interrupt::{Interrupt, Interrupted};
use crate::messages::TrainCheckpoint;
use crate::output::{self, Output};

/// Train a reader (DeepEncoder-style optical compressor) from a TOML config.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Training config (experiments/train/<name>.toml).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Run folder: checkpoints, journals, curves [default: results/train/<name>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue from the run folder's latest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Start a new run from another reader's weights (a reader folder, checkpoint or run folder)
    /// whose model differs at most in the page side (`canvas`): position tables are resized, the
    /// vocabulary kept, the optimiser starts at zero (a page-size curriculum; docs/TRAINING.md).
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Device to train on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Override the schedule's length (`optim.steps`): the warm-up + cosine schedule ends there. A
    /// resumed run may change it (the architecture must stay the same).
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// Stop (with a checkpoint) at this step, before the schedule's end.
    #[arg(long, value_name = "STEP")]
    pub stop_at: Option<usize>,
    /// Stop (with a checkpoint) after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub time_limit: Option<u64>,
    /// Micro-batches rendered ahead of the model.
    #[arg(long, default_value_t = 4)]
    pub prefetch: usize,
    /// Float32 matrix products in full precision on CUDA (default: TF32 tensor cores).
    #[arg(long)]
    pub no_tf32: bool,
    /// After training, write the latest checkpoint as a reader folder here (weights in bf16).
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Test hook: send this process SIGINT once this step is done.
    #[arg(long, hide = true)]
    pub interrupt_after: Option<usize>,
}

struct Progress<'a> {
    out: &'a Output,
    /// A bar on a terminal, else a `progress:` line every `--progress-interval` seconds.
    bar: Option<output::Progress>,
    log_every: usize,
    interrupt_after: Option<usize>,
}

impl occ_train::Observer for Progress<'_> {
    fn started(&mut self, info: &StartInfo) {
        let _ = self.out.send(info);
        self.out.info(&format!(
            "training: {} parameters, vocabulary {}, {} train / {} validation passages, steps {}..{} ({})",
            info.parameters,
            info.vocab_size,
            info.train_passages,
            info.validation_passages,
            info.start_step,
            info.total_steps,
            info.resume_kind
        ));
        let mut bar = self.out.progress(
            "train",
            "steps",
            info.total_steps as u64,
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise}, eta {eta}]",
        );
        bar.start_at(info.start_step as u64);
        self.bar = Some(bar);
    }

    fn step(&mut self, log: &StepLog) {
        let pps = log.pages as f64 / log.seconds.max(1e-9);
        let cell = log.cell_loss.map_or(String::new(), |c| format!("  cell {c:.3}"));
        let msg = format!(
            "loss {:.3}{cell}  lr {:.2e}  {:.1} pages/s  data wait {:.0}%",
            log.loss,
            log.lr,
            pps,
            100.0 * log.data_wait_seconds / log.seconds.max(1e-9)
        );
        if !self.out.progress_enabled() && log.step % self.log_every == 0 {
            self.out.info(&format!("step {}: {msg}", log.step));
        }
        if let Some(bar) = &mut self.bar {
            bar.set_message(msg);
            bar.set_position(log.step as u64);
        }
        if log.step % self.log_every == 0 {
            let _ = self.out.send(log);
        }
        if self.interrupt_after == Some(log.step) {
            Interrupt::raise();
        }
    }

    fn evaluated(&mut self, log: &EvalLog) {
        let _ = self.out.send(log);
        let line = format!(
            "step {}: validation {}x char precision {:.3} ({} pages, {:.0}% stopped at EOS), loss {:.3}, \
             image gain {:.3} nats/token, probe gain {:.3}",
            log.step,
            log.ratio,
            log.char_precision,
            log.pages,
            100.0 * log.stopped,
            log.loss,
            log.image_gain(),
            log.probe_gain()
        );
        match &self.bar {
            Some(bar) => bar.suspend(|| self.out.info(&line)),
            None => self.out.info(&line),
        }
    }

    fn checkpointed(&mut self, path: &Path, step: usize) {
        let _ = self.out.send(&TrainCheckpoint { step, path });
    }
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    let root = std::env::current_dir().context("current folder")?;
    let mut cfg = TrainConfig::load(&args.config, &root)?;
    if let Some(n) = args.steps {
        cfg.optim.steps = n;
        cfg.validate().context("--steps")?;
    }
    let run_dir = args.out.clone().unwrap_or_else(|| root.join("results").join("train").join(&cfg.name));
    let device = match args.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => {
            candle_core::cuda::set_gemm_reduced_precision_f32(!args.no_tf32);
            occ_model::ops::cuda_device(0)
                .context("opening CUDA device 0 (is this binary built with `--features cuda` and is a GPU visible?)")?
        }
    };
    if let Some(dir) = &args.export {
        occ_train::trainer::check_writable(dir).with_context(|| format!("export folder {}", dir.display()))?;
    }
    let interrupt = Interrupt::install()?;
    let opts = TrainOptions {
        run_dir: run_dir.clone(),
        resume: args.resume,
        init: args.init.clone(),
        stop_at: args.stop_at,
        time_limit: args.time_limit.map(Duration::from_secs),
        stop: Some(interrupt.flag()),
        device,
        prefetch: args.prefetch,
    };
    let mut progress = Progress { out, bar: None, log_every: cfg.run.log_every, interrupt_after: args.interrupt_after };
    let summary = occ_train::train(&cfg, &opts, &mut progress)
        .with_context(|| format!("training {} in {}", cfg.name, run_dir.display()))?;
    if let Some(bar) = &mut progress.bar {
        bar.finish();
    }
    out.send(&summary)?;
    out.result(&format!(
        "trained {} to step {}/{} in {:.0} s: {:.1} pages/s, {:.1}% of step time waiting for pages, last loss {}",
        cfg.name,
        summary.end_step,
        summary.total_steps,
        summary.seconds,
        summary.pages_per_second,
        100.0 * summary.data_wait_share,
        summary.last_loss.map_or("-".into(), |l| format!("{l:.4}"))
    ));
    for s in &summary.last_eval {
        out.result(&format!(
            "  validation {}x: char precision {:.3} ({} pages), image gain {:.3} nats/token, probe gain {:.3}",
            s.ratio,
            s.char_precision,
            s.pages,
            s.image_gain(),
            s.probe_gain()
        ));
    }
    if interrupt.requested() {
        // the flags that define the run again, then the run folder (even when it was the default)
        let argv: Vec<String> = std::env::args().collect();
        let values = ["--config", "--device", "--steps", "--prefetch", "--export"];
        let tail = ["--out".to_string(), run_dir.display().to_string(), "--resume".to_string()];
        let resume = crate::runs::rerun_command(&argv, &values, &["--no-tf32"], &tail);
        return Err(Interrupted {
            state: format!("{} holds a checkpoint of step {}", run_dir.display(), summary.end_step),
            done: format!("{} of {} steps", summary.end_step, summary.total_steps),
            resume,
        }
        .into());
    }
    if let Some(dir) = &args.export {
        let Some(ckpt) = occ_train::checkpoint::latest(&run_dir)? else {
            bail!("nothing to export: {} has no checkpoint", run_dir.display())
        };
        occ_train::checkpoint::export(&ckpt, dir)
            .with_context(|| format!("exporting {} to {}", ckpt.display(), dir.display()))?;
        out.result(&format!("exported {} to {}", ckpt.display(), dir.display()));
    }
    Ok(())
}
