//! The training loop: loader -> runner, with metrics, samples, checkpoints, Ctrl-C and divergence handling.
//!
//! One *step* (iteration) is `d_steps` discriminator updates, each on its own real batch, then one generator
//! update (with `d_steps = 1` the runner's fused graph does both in one ONNX Runtime call). An *epoch* is
//! `floor(N / batch)` real batches. After each step: metrics every `log_every` steps (the only device-to-host
//! transfer besides checkpoints and samples); at each epoch's end a sample grid every `sample_every` epochs and a
//! checkpoint every `checkpoint_every` epochs; at the end of the run (length reached, Ctrl-C) a final checkpoint
//! and grid wherever the run stands.
//!
//! **Divergence.** A non-finite loss at a logged step, or a non-finite value in the state at a checkpoint, stops
//! the run with an error naming the step and the last good checkpoint; nothing non-finite is ever written as a
//! checkpoint, so `--resume` continues from the last good state.
//!
//! **Exact resume.** The checkpoint holds the state tensors, the runner's counters and random-stream position and
//! the loader position; the loader's streams are functions of (seed, position). On CPU a resumed run computes
//! the same floating-point operations in the same order as an uninterrupted one, so its state is bit-identical
//! (tests/train_run.rs checks this, resuming at another thread count). ONNX Runtime's CPU kernels partition work
//! across threads without changing any summation order: dcgan64 at batch 128 gave byte-identical checkpoints at
//! -j 1, 2, 3 and 4 (checked by hand; a CUDA run is not bit-reproducible).
use crate::gan::generator::{latents, Generator, EXPORT_BATCH};
use crate::gan::runner::{GeneratorWeights, Metrics, Runner, RunnerOptions, SessionTuning};
use crate::pixels::write_png;
use crate::report::{Reporter, Summary};
use crate::rundir::{self, MetricRow, RunDir};
use crate::runtime::{Device, Resolved, SessionOptions};
use crate::train::checkpoint::{self, Checkpoint, Meta, Progress};
use crate::train::loader::{stream_seed, Loader, LoaderSpec, Position, ShardSet};
use crate::train::plots;
use crate::train::presets::TrainConfig;
use crate::train::progress::write_progress;
use crate::train::run_config::{arch_of, gan_config, DatasetInfo, RunConfig, RUN_FORMAT};
use crate::train::sample::{self, GRID_COMPRESSION, SAMPLE_COLS, SAMPLE_ROWS};
use crate::train::scoring::{GeneratorScorer, MakeScorer};
use crate::workdir::{atomic_write, Workdir};
use anyhow::{bail, Context, Result};
use onnxgrad::Formulation;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `metrics.parquet` and `loss.png` are rewritten at least this often (and at every epoch end and checkpoint).
const FLUSH_EVERY: Duration = Duration::from_secs(30);

/// New run or continuation.
#[derive(Debug, Clone)]
pub enum RunChoice {
    /// A new run directory under `<workdir>/runs/`, named `name` or `<preset>-<UTC time>`.
    New { name: Option<String> },
    /// Continue the run in this directory from its latest checkpoint.
    Resume { dir: PathBuf, overrides: ResumeOverrides },
}

/// What may change when resuming (everything else would make the continuation a different run).
#[derive(Debug, Clone, Default)]
pub struct ResumeOverrides {
    pub epochs: Option<u64>,
    pub steps: Option<u64>,
    pub sample_every: Option<u64>,
    pub checkpoint_every: Option<u64>,
    pub log_every: Option<u64>,
    pub eval_every: Option<u64>,
    pub eval_samples: Option<usize>,
    pub prefetch: Option<usize>,
}

/// Testing and diagnosis switches (hidden flags).
#[derive(Debug, Clone, Default)]
pub struct DebugOptions {
    /// Feed a NaN latent at this step (1-based), to exercise the divergence stop.
    pub nan_at_step: Option<u64>,
    /// Run the separate D and G step graphs instead of the fused one.
    pub split_graphs: bool,
    /// ONNX Runtime profile path prefix.
    pub profile: Option<PathBuf>,
    /// How the step graphs are written out (None: the device's default); speed only, never part of the run.
    pub formulation: Option<Formulation>,
    /// Batch norm's primitive backward (the formulation before the closed form); speed only.
    pub primitive_backward: bool,
}

/// Everything `train` needs.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub workdir: Workdir,
    /// The resolved config of a new run (ignored when resuming: the run's own config.json is used).
    pub config: TrainConfig,
    pub run: RunChoice,
    pub device: Device,
    /// Intra-op threads for ONNX Runtime (results are bit-identical only for equal thread counts).
    pub threads: usize,
    pub reporter: Reporter,
    pub debug: DebugOptions,
}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Finished,
    Interrupted,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run_dir: PathBuf,
    pub stop: StopReason,
    pub step: u64,
    /// Complete epochs.
    pub epoch: u64,
    pub last_metrics: Option<Metrics>,
    pub last_checkpoint: Option<PathBuf>,
    /// Real images per second over this session's steps.
    pub images_per_s: f64,
    pub seconds: f64,
    /// Time spent waiting for the loader, in the step graphs, and writing samples/checkpoints/metrics.
    pub loader_wait_s: f64,
    pub step_s: f64,
    pub io_s: f64,
    pub device: Resolved,
    pub steps_this_session: u64,
    /// The best in-training score (`train.eval_every`), this session or before.
    pub best: Option<rundir::Best>,
}

impl Outcome {
    /// The one-screen summary.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::start("train");
        s.count("steps", self.step).count("epochs complete", self.epoch);
        s.count("steps this session", self.steps_this_session);
        if let Some(m) = &self.last_metrics {
            s.fact("final loss D / G", format!("{:.4} / {:.4}", m.d_loss, m.g_loss));
            s.fact("final D(x) / D(G(z))", format!("{:.3} / {:.3}", m.d_real, m.d_fake));
        }
        s.fact("images/s", format!("{:.1}", self.images_per_s));
        s.fact(
            "time in steps / loader wait / outputs",
            format!("{:.1} s / {:.1} s / {:.1} s", self.step_s, self.loader_wait_s, self.io_s),
        );
        s.fact("device", format!("{:?}", self.device).to_lowercase());
        s.fact("stopped", format!("{:?}", self.stop).to_lowercase());
        s.fact("run", self.run_dir.display());
        if let Some(c) = &self.last_checkpoint {
            s.fact("checkpoint", c.display());
        }
        let dir = RunDir::at(&self.run_dir);
        s.fact("generator", dir.generator_path().display());
        if let Some(b) = &self.best {
            s.fact(
                "best generator",
                format!(
                    "{} (step {}, FID {:.2}, {} weights)",
                    dir.best_generator_path().display(),
                    b.step,
                    b.fid,
                    b.weights
                ),
            );
        }
        s.fact("samples", dir.samples_dir().display());
        s.fact("curves", dir.loss_plot_path().display());
        if self.stop == StopReason::Interrupted {
            s.fact("continue with", format!("anime-pipe train --resume {}", self.run_dir.display()));
        }
        let mut s = s.finish();
        s.seconds = self.seconds;
        s
    }
}

/// Set by the Ctrl-C handler; the loop finishes its step, checkpoints and returns.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler once per process.
fn install_ctrlc() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        if let Err(e) = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond Ctrl-C: exiting without a checkpoint");
                std::process::exit(130);
            }
            eprintln!("\nCtrl-C: finishing this step and writing a checkpoint (Ctrl-C again to abort)");
        }) {
            tracing::warn!("cannot install the Ctrl-C handler: {e}");
        }
    });
}

/// Runs (or continues) a training run. `make_scorer` builds the in-training scorer when the config in force has
/// `train.eval_every` (a run that asks for one without it is refused).
pub fn train(request: &TrainRequest, make_scorer: Option<MakeScorer>) -> Result<Outcome> {
    // A new run's scorer is made before its directory, so a missing model leaves nothing behind.
    let new_run = matches!(request.run, RunChoice::New { .. });
    let mut scorer = if new_run { scorer_for(&request.config, make_scorer)? } else { None };
    let (dir, config, resume_from) = prepare_run(request)?;
    if !new_run {
        scorer = scorer_for(&config, make_scorer)?;
    }
    let data = Arc::new(ShardSet::open(&request.workdir, config.image_size, &config.split)?);
    let spec = LoaderSpec { batch_size: config.batch_size, seed: config.seed, augment: config.augment };
    let batches_per_epoch = spec.batches_per_epoch(data.len());
    if batches_per_epoch < u64::from(config.d_steps) {
        bail!(
            "the {} split at {}px has {} images: fewer than train.d_steps = {} batches of train.batch_size = {}",
            config.split,
            config.image_size,
            data.len(),
            config.d_steps,
            config.batch_size
        );
    }
    let gan = gan_config(&config)?;
    let options = RunnerOptions {
        device: request.device,
        threads: request.threads,
        optimize: true,
        fused: config.d_steps == 1 && !request.debug.split_graphs,
        fetch_metrics_every: config.log_every,
        profile: request.debug.profile.clone(),
    };
    let tuning = SessionTuning {
        formulation: request.debug.formulation,
        primitive_backward: request.debug.primitive_backward,
        ..SessionTuning::training()
    };
    let mut runner = Runner::with_tuning(&gan, &options, tuning)?;
    let mut state = LoopState::fresh();
    if let Some((path, ckpt)) = resume_from {
        if ckpt.meta.dataset_digest != data.digest() {
            eprintln!(
                "warning: the training shards changed since {} was written (dataset digest {} -> {}); \
                 the continuation will not match an uninterrupted run",
                path.display(),
                short(&ckpt.meta.dataset_digest),
                short(data.digest())
            );
        }
        runner.load_state(ckpt.tensors).with_context(|| format!("resuming from {}", path.display()))?;
        runner.set_progress(&ckpt.meta.progress.runner)?;
        state.loader = ckpt.meta.progress.loader;
        state.epochs_done = ckpt.meta.progress.epoch;
        state.last_checkpoint = Some(path);
        state.rows = rundir::read_metrics(&dir.metrics_path())?
            .into_iter()
            .filter(|r| r.step <= ckpt.meta.progress.step())
            .collect();
    }
    let run_config = RunConfig {
        format: RUN_FORMAT.into(),
        name: dir.name(),
        train: config.clone(),
        arch: gan.arch.clone(),
        gan: gan.clone(),
        dataset: DatasetInfo {
            digest: data.digest().to_string(),
            workdir: std::path::absolute(request.workdir.root()).unwrap_or_else(|_| request.workdir.root().into()),
            image_size: config.image_size,
            split: config.split.clone(),
            images: data.len(),
            batches_per_epoch,
            shards: data.paths().to_vec(),
        },
        device: match runner.device() {
            Resolved::Cpu => "cpu".into(),
            Resolved::Cuda(n) => format!("cuda:{n}"),
        },
        threads: request.threads,
        anime_pipe_version: env!("CARGO_PKG_VERSION").into(),
    };
    dir.create_dirs()?;
    atomic_write(&dir.config_path(), serde_json::to_string_pretty(&run_config)?.as_bytes())?;
    let loader = Loader::spawn(data.clone(), spec, state.loader, config.prefetch)?;
    let events = super::tensorboard::EventWriter::create(dir.root())?;
    let mut run = Run {
        events,
        request,
        config: &config,
        dir: &dir,
        runner,
        loader,
        digest: data.digest().to_string(),
        fixed_latents: latents(stream_seed(config.seed, "fixed_latents", 0), SAMPLE_COLS * SAMPLE_ROWS, gan.arch.nz),
        state,
        batches_per_epoch,
        best: rundir::read_best(&dir.best_path())?,
        scorer,
    };
    run.go()
}

/// The in-training scorer `config` asks for (`train.eval_every`), if any.
fn scorer_for(config: &TrainConfig, make_scorer: Option<MakeScorer>) -> Result<Option<Box<dyn GeneratorScorer>>> {
    match (config.eval_every, make_scorer) {
        (0, _) => Ok(None),
        (_, Some(make)) => Ok(Some(make(config)?)),
        (n, None) => bail!("train.eval_every = {n}: this command cannot score generators; set it to 0"),
    }
}

/// Whether the run in `dir` reached its configured length: its latest checkpoint is at the last epoch or step.
/// False for a directory without config.json or checkpoint (a run that never got going, or an interrupted one).
pub fn is_finished(dir: &RunDir) -> Result<bool> {
    let Ok(text) = std::fs::read_to_string(dir.config_path()) else {
        return Ok(false);
    };
    let config: RunConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a run config this version understands", dir.config_path().display()))?;
    let Some((_, meta)) = checkpoint::latest(dir)? else {
        return Ok(false);
    };
    let crate::train::presets::Length { epochs, steps } = config.train.length;
    let done = epochs.is_some_and(|e| meta.progress.epoch >= e) || steps.is_some_and(|s| meta.progress.step() >= s);
    Ok(done && dir.generator_path().is_file())
}

/// A checkpoint to resume from and where it was read.
type ResumePoint = (PathBuf, Checkpoint);

/// The run directory, the config in force and, when resuming, the checkpoint to start from.
fn prepare_run(request: &TrainRequest) -> Result<(RunDir, TrainConfig, Option<ResumePoint>)> {
    match &request.run {
        RunChoice::New { name } => {
            let runs = request.workdir.runs_dir();
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let name = name.clone().unwrap_or_else(|| rundir::default_name(&runs, &request.config.preset, now));
            arch_of(&request.config)?; // fail before creating the directory
            Ok((RunDir::new_run(&runs, &name)?, request.config.clone(), None))
        }
        RunChoice::Resume { dir, overrides } => {
            let dir = RunDir::open(dir)?;
            let text = std::fs::read_to_string(dir.config_path())?;
            let previous: RunConfig = serde_json::from_str(&text).with_context(|| {
                format!("{}: not a run config this version understands", dir.config_path().display())
            })?;
            let mut config = previous.train;
            apply_resume_overrides(&mut config, overrides);
            crate::train::presets::validate(&config)?;
            let from = match checkpoint::latest(&dir)? {
                Some((path, _)) => {
                    let ckpt = checkpoint::read(&path)?;
                    Some((path, ckpt))
                }
                None => {
                    eprintln!("note: {} has no checkpoint yet; starting it from step 0", dir.root().display());
                    None
                }
            };
            Ok((dir, config, from))
        }
    }
}

fn apply_resume_overrides(c: &mut TrainConfig, o: &ResumeOverrides) {
    if o.epochs.is_some() || o.steps.is_some() {
        c.length = crate::train::presets::Length { epochs: o.epochs, steps: o.steps };
    }
    for (target, value) in [
        (&mut c.sample_every, o.sample_every),
        (&mut c.checkpoint_every, o.checkpoint_every),
        (&mut c.log_every, o.log_every),
    ] {
        if let Some(v) = value {
            *target = v;
        }
    }
    if let Some(p) = o.prefetch {
        c.prefetch = p;
    }
    if let Some(n) = o.eval_every {
        c.eval_every = n;
    }
    if let Some(n) = o.eval_samples {
        c.eval_samples = n;
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// Counters and logs of the loop.
struct LoopState {
    /// The loader's next batch.
    loader: Position,
    /// 0-based epoch of the latest batch trained on.
    batch_epoch: u64,
    epochs_done: u64,
    rows: Vec<MetricRow>,
    last_metrics: Option<Metrics>,
    last_checkpoint: Option<PathBuf>,
    /// Images and time since the previous metrics row.
    images_since_row: u64,
    row_clock: Instant,
    last_flush: Instant,
    loader_wait: Duration,
    step_time: Duration,
    io_time: Duration,
    images_total: u64,
    steps_total: u64,
}

impl LoopState {
    fn fresh() -> LoopState {
        LoopState {
            loader: Position::default(),
            batch_epoch: 0,
            epochs_done: 0,
            rows: Vec::new(),
            last_metrics: None,
            last_checkpoint: None,
            images_since_row: 0,
            row_clock: Instant::now(),
            last_flush: Instant::now(),
            loader_wait: Duration::ZERO,
            step_time: Duration::ZERO,
            io_time: Duration::ZERO,
            images_total: 0,
            steps_total: 0,
        }
    }
}

struct Run<'a> {
    request: &'a TrainRequest,
    /// TensorBoard: every metrics row's scalars and every sample grid.
    events: super::tensorboard::EventWriter,
    config: &'a TrainConfig,
    dir: &'a RunDir,
    runner: Runner,
    loader: Loader,
    digest: String,
    fixed_latents: Vec<f32>,
    state: LoopState,
    batches_per_epoch: u64,
    /// In-training scoring (`train.eval_every`) and the best score so far.
    scorer: Option<Box<dyn GeneratorScorer>>,
    best: Option<rundir::Best>,
}

impl Run<'_> {
    fn step(&self) -> u64 {
        self.runner.progress().iteration
    }

    /// Planned total steps (for the progress bar).
    fn planned_steps(&self) -> u64 {
        let per_epoch = self.batches_per_epoch as f64 / f64::from(self.config.d_steps);
        let by_epochs = self.config.length.epochs.map(|e| (e as f64 * per_epoch).ceil() as u64);
        match (by_epochs, self.config.length.steps) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(0),
        }
    }

    fn finished(&self) -> bool {
        let l = self.config.length;
        l.steps.is_some_and(|s| self.step() >= s) || l.epochs.is_some_and(|e| self.state.epochs_done >= e)
    }

    fn go(&mut self) -> Result<Outcome> {
        install_ctrlc();
        INTERRUPTED.store(false, Ordering::SeqCst);
        let start = Instant::now();
        let bar = self.request.reporter.bar(self.planned_steps(), "train");
        bar.set_position(self.step());
        self.state.row_clock = Instant::now();
        let mut stop = if self.finished() { Some(StopReason::Finished) } else { None };
        while stop.is_none() {
            self.one_step()?;
            bar.set_position(self.step());
            if let Some(m) = &self.state.last_metrics {
                bar.set_message(self.status_line(m));
            }
            let epochs_before = self.state.epochs_done;
            self.state.epochs_done = self.state.loader.epoch;
            if self.finished() {
                stop = Some(StopReason::Finished);
            } else if INTERRUPTED.load(Ordering::SeqCst) {
                stop = Some(StopReason::Interrupted);
            }
            if self.due_for_scoring(stop.is_some()) {
                self.timed_io(|run| run.score_generator())?;
            }
            for epoch in epochs_before + 1..=self.state.epochs_done {
                self.end_of_epoch(epoch, stop.is_some() && epoch == self.state.epochs_done)?;
                // Without a progress bar (a log file, nohup, CI) one line per epoch shows the run is alive.
                if bar.is_hidden() && !self.request.reporter.quiet {
                    eprintln!("{}", self.epoch_line(epoch));
                }
            }
            if stop.is_some() && self.state.epochs_done == epochs_before {
                self.timed_io(|run| {
                    run.check_losses()?;
                    run.write_samples(&run.dir.step_sample_path(run.step()))?;
                    run.write_checkpoint(false)
                })?;
            }
            if self.state.last_flush.elapsed() >= FLUSH_EVERY {
                self.timed_io(|run| run.flush())?;
            }
        }
        bar.finish_and_clear();
        let seconds = start.elapsed().as_secs_f64();
        let loop_s = (self.state.step_time + self.state.loader_wait).as_secs_f64();
        Ok(Outcome {
            run_dir: self.dir.root().to_path_buf(),
            stop: stop.expect("loop ends with a reason"),
            step: self.step(),
            epoch: self.state.epochs_done,
            last_metrics: self.state.last_metrics,
            last_checkpoint: self.state.last_checkpoint.clone(),
            images_per_s: if loop_s > 0.0 { self.state.images_total as f64 / loop_s } else { 0.0 },
            seconds,
            loader_wait_s: self.state.loader_wait.as_secs_f64(),
            step_s: self.state.step_time.as_secs_f64(),
            io_s: self.state.io_time.as_secs_f64(),
            device: self.runner.device(),
            steps_this_session: self.state.steps_total,
            best: self.best.clone(),
        })
    }

    fn status_line(&self, m: &Metrics) -> String {
        let total = self.config.length.epochs.map_or(String::new(), |e| format!("/{e}"));
        let row_ips = self.state.rows.last().map_or(0.0, |r| r.images_per_s);
        let best = self.best.as_ref().map_or(String::new(), |b| format!("  best FID {:.1} @{}", b.fid, b.step));
        format!(
            "epoch {}{total}  D {:.3}  G {:.3}  D(x) {:.2}  D(G(z)) {:.2}  {:.0} img/s{best}",
            self.state.epochs_done + 1,
            m.d_loss,
            m.g_loss,
            m.d_real,
            m.d_fake,
            row_ips
        )
    }

    /// `epoch 3/25 done: step 372, D 0.512  G 2.310 ..., last checkpoint ...`.
    fn epoch_line(&self, epoch: u64) -> String {
        let total = self.config.length.epochs.map_or(String::new(), |e| format!("/{e}"));
        let losses = self.state.last_metrics.as_ref().map_or(String::new(), |m| {
            let ips = self.state.rows.last().map_or(0.0, |r| r.images_per_s);
            format!(
                ", D {:.3}  G {:.3}  D(x) {:.2}  D(G(z)) {:.2}  {ips:.0} img/s",
                m.d_loss, m.g_loss, m.d_real, m.d_fake
            )
        });
        let checkpoint = self
            .state
            .last_checkpoint
            .as_ref()
            .and_then(|p| p.file_name())
            .map_or(String::new(), |n| format!(", last checkpoint {}", n.to_string_lossy()));
        format!("epoch {epoch}{total} done: step {}{losses}{checkpoint}", self.step())
    }

    /// One iteration: `d_steps` real batches through D, one G update.
    fn one_step(&mut self) -> Result<()> {
        let mut metrics = None;
        let d_steps = self.config.d_steps;
        let next_step = self.step() + 1;
        for k in 0..d_steps {
            let wait = Instant::now();
            let batch = self.loader.next_batch()?;
            self.state.loader_wait += wait.elapsed();
            debug_assert_eq!(batch.position, self.state.loader);
            let clock = Instant::now();
            if d_steps == 1 && !self.request.debug.split_graphs {
                metrics = if self.request.debug.nan_at_step == Some(next_step) {
                    let mut noise = self.runner.draw_noise();
                    noise.z[0] = f32::NAN;
                    self.runner.step_with(&batch.pixels, &noise)?
                } else {
                    self.runner.step(&batch.pixels)?
                };
            } else {
                self.runner.step_d(&batch.pixels)?;
                if k + 1 == d_steps {
                    metrics = self.runner.step_g()?;
                }
            }
            self.state.step_time += clock.elapsed();
            self.state.batch_epoch = batch.position.epoch;
            self.state.loader = advance(self.state.loader, self.batches_per_epoch);
            self.state.images_since_row += self.config.batch_size as u64;
            self.state.images_total += self.config.batch_size as u64;
        }
        self.state.steps_total += 1;
        if let Some(m) = metrics {
            self.record(m)?;
        }
        Ok(())
    }

    /// Adds a metrics row; a non-finite loss ends the run.
    fn record(&mut self, m: Metrics) -> Result<()> {
        let elapsed = self.state.row_clock.elapsed().as_secs_f64();
        let row = MetricRow {
            step: m.iteration,
            epoch: (self.state.batch_epoch + 1) as u32,
            loss_d: f64::from(m.d_loss),
            loss_g: f64::from(m.g_loss),
            d_x: f64::from(m.d_real),
            d_gz: f64::from(m.d_fake),
            lr_d: self.config.d.lr,
            lr_g: self.config.g.lr,
            images_per_s: if elapsed > 0.0 { self.state.images_since_row as f64 / elapsed } else { 0.0 },
            fid: None,
            fid_raw: None,
        };
        self.state.images_since_row = 0;
        self.state.row_clock = Instant::now();
        if self.state.rows.last().is_none_or(|r| r.step < row.step) {
            self.events.scalars(
                row.step,
                &[
                    ("loss/D", row.loss_d),
                    ("loss/G", row.loss_g),
                    ("D/real (D(x))", row.d_x),
                    ("D/fake (D(G(z)))", row.d_gz),
                    ("lr/D", row.lr_d),
                    ("lr/G", row.lr_g),
                    ("perf/images_per_s", row.images_per_s),
                ],
            )?;
            self.state.rows.push(row);
        }
        self.state.last_metrics = Some(m);
        if !(m.d_loss.is_finite() && m.g_loss.is_finite()) {
            let _ = self.flush();
            bail!(
                "training diverged at step {}: loss_d = {}, loss_g = {} (NaN/Inf). The run stopped without writing \
                 a checkpoint; {}",
                m.iteration,
                m.d_loss,
                m.g_loss,
                self.last_good()
            );
        }
        Ok(())
    }

    /// Reads the latest losses from the device (a metrics row when the step has none) and stops on NaN/Inf.
    fn check_losses(&mut self) -> Result<()> {
        if self.step() == 0 {
            return Ok(());
        }
        let m = self.runner.metrics()?;
        match self.state.rows.last().is_none_or(|r| r.step < m.iteration) {
            true => self.record(m),
            false => match m.d_loss.is_finite() && m.g_loss.is_finite() {
                true => Ok(()),
                false => self.record(m),
            },
        }
    }

    fn last_good(&self) -> String {
        match &self.state.last_checkpoint {
            Some(p) => format!(
                "the last good checkpoint is {} (`anime-pipe train --resume {}` continues from it; lower the learning \
                 rates train.lr_d / train.lr_g first)",
                p.display(),
                self.dir.root().display()
            ),
            None => "none was written yet (lower the learning rates train.lr_d / train.lr_g and start again)".into(),
        }
    }

    fn end_of_epoch(&mut self, epoch: u64, last: bool) -> Result<()> {
        self.timed_io(|run| {
            run.check_losses()?;
            if epoch.is_multiple_of(run.config.sample_every) || last {
                run.write_samples(&run.dir.sample_path(epoch))?;
                write_progress(run.dir)?;
            }
            if epoch.is_multiple_of(run.config.checkpoint_every) || last {
                // Only a checkpoint at the run's own position may be called the epoch's (the run ended here).
                let at_end = run.state.loader.batch == 0 && run.state.epochs_done == epoch;
                run.write_checkpoint(at_end)
            } else {
                run.flush()
            }
        })
    }

    /// Every `eval_every` steps, and at the end of the run, unless this step already has a score.
    fn due_for_scoring(&self, ending: bool) -> bool {
        let every = self.config.eval_every;
        let step = self.step();
        let scored = self.state.rows.last().is_some_and(|r| r.step == step && r.fid.is_some());
        every > 0 && step > 0 && !scored && (step.is_multiple_of(every) || ending)
    }

    /// Scores the exported generator (and the raw weights of a run with a moving average), records the scores in
    /// this step's metrics row and keeps the best generator.
    fn score_generator(&mut self) -> Result<()> {
        self.check_losses()?; // this step's metrics row, to hold the scores
        let step = self.step();
        let average = self.runner.generator_onnx_bytes(EXPORT_BATCH, GeneratorWeights::Average)?;
        let raw = match self.runner.has_average() {
            true => Some(self.runner.generator_onnx_bytes(EXPORT_BATCH, GeneratorWeights::Raw)?),
            false => None,
        };
        let scorer = self.scorer.as_mut().expect("scoring is due only with a scorer");
        let fid = scorer.score(&average)?;
        let fid_raw = match &raw {
            Some(bytes) => Some(scorer.score(bytes)?),
            None => None,
        };
        let (samples, reference) = (scorer.samples(), scorer.reference());
        if let Some(row) = self.state.rows.iter_mut().rev().find(|r| r.step == step) {
            (row.fid, row.fid_raw) = (Some(fid), fid_raw);
        }
        let mut scalars = vec![("eval/FID", fid)];
        scalars.extend(fid_raw.map(|f| ("eval/FID raw weights", f)));
        self.events.scalars(step, &scalars)?;
        let average_name = if raw.is_some() { "ema" } else { "trained" };
        let mut candidates = vec![(fid, average_name, &average)];
        if let (Some(f), Some(bytes)) = (fid_raw, &raw) {
            candidates.push((f, "raw", bytes));
        }
        let (score, weights, bytes) = candidates
            .into_iter()
            .fold(None, |best: Option<(f64, &str, &Vec<u8>)>, c| match best {
                Some(b) if b.0 <= c.0 => Some(b),
                _ => Some(c),
            })
            .expect("one candidate at least");
        if self.best.as_ref().is_none_or(|b| score < b.fid) {
            let best = rundir::Best { step, fid: score, weights: weights.to_string(), samples, reference };
            // The generator first: best.json never names a generator that is not there.
            atomic_write(&self.dir.best_generator_path(), bytes)?;
            atomic_write(&self.dir.best_path(), serde_json::to_string_pretty(&best)?.as_bytes())?;
            self.best = Some(best);
        }
        // On a terminal the progress bar's message carries the best score (status_line); in a log, one line each.
        if !self.request.reporter.quiet && !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            let raw_text = fid_raw.map_or(String::new(), |f| format!(", raw weights {f:.2}"));
            let best = self.best.as_ref().map_or(String::new(), |b| format!("; best {:.2} at step {}", b.fid, b.step));
            eprintln!("step {step}: FID {fid:.2}{raw_text} ({samples} samples){best}");
        }
        self.flush()
    }

    fn timed_io(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        let clock = Instant::now();
        let result = f(self);
        self.state.io_time += clock.elapsed();
        // Output time is not training throughput: restart the images/s window.
        self.state.row_clock += clock.elapsed();
        result
    }

    fn session_options(&self) -> SessionOptions {
        SessionOptions { device: self.request.device, threads: self.request.threads, optimize: true }
    }

    /// The fixed latent batch through the current generator, as an 8x4 grid.
    fn write_samples(&mut self, path: &std::path::Path) -> Result<()> {
        let model = self.runner.generator_onnx_bytes(SAMPLE_COLS * SAMPLE_ROWS, GeneratorWeights::Average)?;
        let mut generator = Generator::from_bytes(&model, &self.session_options(), "generator")?;
        let (images, side) = generator.generate_all(&self.fixed_latents, EXPORT_BATCH)?;
        let grid = sample::grid(&images, side as usize, SAMPLE_COLS, SAMPLE_ROWS);
        write_png(path, &grid, GRID_COMPRESSION)?;
        let png = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        self.events.image(self.step(), "samples", png, grid.width(), grid.height())?;
        self.events.flush()
    }

    /// Checks the current losses, then writes the generator and the full state (in that order, so every
    /// checkpoint has its generator), then the metrics and the curves.
    fn write_checkpoint(&mut self, at_epoch_end: bool) -> Result<()> {
        self.check_losses()?;
        let tensors = self.runner.state()?;
        if let Some((name, _)) = tensors.iter().find(|(_, (_, data))| data.iter().any(|v| !v.is_finite())) {
            let _ = self.flush();
            bail!(
                "training diverged before step {}: state tensor {name} holds NaN/Inf. No checkpoint was written; {}",
                self.step(),
                self.last_good()
            );
        }
        let progress =
            Progress { epoch: self.state.epochs_done, loader: self.state.loader, runner: self.runner.progress() };
        let name = checkpoint::name(&progress, at_epoch_end);
        let path = self.dir.checkpoint_state_path(name);
        let onnx = self.runner.generator_onnx_bytes(EXPORT_BATCH, GeneratorWeights::Average)?;
        atomic_write(&self.dir.checkpoint_generator_path(name), &onnx)?;
        let raw = match self.runner.has_average() {
            true => Some(self.runner.generator_onnx_bytes(EXPORT_BATCH, GeneratorWeights::Raw)?),
            false => None,
        };
        if let Some(raw) = &raw {
            atomic_write(&self.dir.checkpoint_raw_generator_path(name), raw)?;
        }
        let meta = Meta {
            progress,
            seed: self.config.seed,
            arch: self.config.arch.clone(),
            dataset_digest: self.digest.clone(),
            config: self.config.clone(),
        };
        checkpoint::write(&path, &Checkpoint { meta, tensors })?;
        atomic_write(&self.dir.generator_path(), &onnx)?;
        if let Some(raw) = &raw {
            atomic_write(&self.dir.raw_generator_path(), raw)?;
        }
        self.state.last_checkpoint = Some(path);
        self.flush()
    }

    /// Rewrites metrics.parquet and loss.png.
    fn flush(&mut self) -> Result<()> {
        self.events.flush()?;
        rundir::write_metrics(&self.dir.metrics_path(), &self.state.rows)?;
        let title = format!("{} ({}, batch {})", self.dir.name(), self.config.arch, self.config.batch_size);
        plots::write_loss_plot(&self.dir.loss_plot_path(), &self.state.rows, &title)?;
        self.state.last_flush = Instant::now();
        Ok(())
    }
}

/// The position after `p`.
fn advance(p: Position, batches_per_epoch: u64) -> Position {
    match p.batch + 1 == batches_per_epoch {
        true => Position { epoch: p.epoch + 1, batch: 0 },
        false => Position { epoch: p.epoch, batch: p.batch + 1 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_advance_across_epochs() {
        assert_eq!(advance(Position { epoch: 0, batch: 1 }, 3), Position { epoch: 0, batch: 2 });
        assert_eq!(advance(Position { epoch: 0, batch: 2 }, 3), Position { epoch: 1, batch: 0 });
    }
}
