//! One resolve per command (uv's `settings.rs`): the command line's arguments, destructured completely so that a
//! new flag cannot be silently ignored, are written into pipeline.yaml's options (flags win), the options are
//! resolved once (`config::resolve`), and the command gets one request holding exactly what it needs. Nothing past
//! this module sees a clap type.
use crate::cli::{
    BenchStepArgs, CleanArgs, CompletionsArgs, CropArgs, DedupArgs, DiffArgs, EvalArgs, GlobalArgs, GraphArgs,
    IngestArgs, ManArgs, ModelsAction, ModelsArgs, ModelsFetchArgs, PackArgs, RunArgs, SampleArgs, TrainArgs,
    UpscaleArgs,
};
use crate::commands::pipeline::{DiffRequest, RunFlags};
use crate::config::{ConfigFile, SourceOptions, TrainOptions};
use crate::eval::{EvalRequest, Target};
use crate::gan::bench::BenchRequest;
use crate::gan::export::{arch_from_args, ExportRequest};
use crate::gan::runner::{default_formulation, parse_formulation, SessionTuning};
use crate::gan::steps::Optimizer;
use crate::runtime::{Device, Resolved};
use crate::train::sample::SampleRequest;
use crate::train::trainer::{DebugOptions, ResumeOverrides, RunChoice};
use anyhow::{bail, Context, Result};
use onnxgrad::Formulation;
use std::path::{Path, PathBuf};

/// The global flags, resolved.
#[derive(Debug, Clone)]
pub struct GlobalSettings {
    pub config: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    pub threads: Option<usize>,
    pub quiet: bool,
    pub verbose: u8,
    pub json: bool,
    pub device: Option<String>,
    /// `--partition K/N` parsed.
    pub partition: Option<(u32, u32)>,
    pub partitions: Option<u32>,
}

impl GlobalSettings {
    pub fn resolve(args: GlobalArgs) -> Result<Self> {
        let GlobalArgs { config, workdir, threads, quiet, verbose, json, device, partition, partitions } = args;
        let partition = partition.as_deref().map(crate::partition::parse_flag).transpose()?;
        Ok(Self { config, workdir, threads, quiet, verbose, json, device, partition, partitions })
    }
}

pub fn ingest(args: IngestArgs, file: &mut ConfigFile) -> Result<()> {
    let IngestArgs { sources, already_cropped } = args;
    if !sources.is_empty() {
        file.sources = sources_from_paths(&sources, already_cropped)?;
    }
    Ok(())
}

/// `anime-pipe models [fetch]`: `Some(request)` for `fetch`, `None` for the listing (which reads `models:`).
pub fn models(args: ModelsArgs) -> Result<Option<crate::models::fetch::FetchRequest>> {
    let ModelsArgs { action } = args;
    match action {
        None => Ok(None),
        Some(ModelsAction::Fetch(ModelsFetchArgs { names, from, dir })) => {
            let dir = match dir {
                Some(dir) => dir,
                None => crate::models::fetch::default_dir()?,
            };
            Ok(Some(crate::models::fetch::FetchRequest { names, from, dir }))
        }
    }
}

pub fn completions(args: CompletionsArgs) -> clap_complete::Shell {
    let CompletionsArgs { shell } = args;
    shell
}

pub fn man(args: ManArgs) -> Option<PathBuf> {
    let ManArgs { dir } = args;
    dir
}

pub fn dedup(args: DedupArgs, file: &mut ConfigFile) {
    let DedupArgs { threshold, no_near, no_crops } = args;
    let d = &mut file.dedup;
    override_with(&mut d.phash_threshold, threshold);
    if no_near {
        d.near = Some(false);
    }
    if no_crops {
        d.crops = Some(false);
    }
}

pub fn crop(args: CropArgs, file: &mut ConfigFile) {
    let CropArgs { scales, score_threshold, min_face_size, max_faces, margin, border } = args;
    let c = &mut file.crop;
    if !scales.is_empty() {
        c.scales = Some(scales);
    }
    override_with(&mut c.score_threshold, score_threshold);
    override_with(&mut c.min_face_size, min_face_size);
    override_with(&mut c.max_faces, max_faces);
    override_with(&mut c.margin, margin);
    override_with(&mut c.border, border);
}

pub fn upscale(args: UpscaleArgs, file: &mut ConfigFile) {
    let UpscaleArgs { target, method } = args;
    override_with(&mut file.upscale.target, target);
    override_with(&mut file.upscale.method, method);
}

pub fn clean(args: CleanArgs, file: &mut ConfigFile) {
    let CleanArgs { min_size, max_aspect, min_sharpness, min_colorfulness, min_entropy } = args;
    let c = &mut file.clean;
    override_with(&mut c.min_size, min_size);
    override_with(&mut c.max_aspect, max_aspect);
    override_with(&mut c.min_sharpness, min_sharpness);
    override_with(&mut c.min_colorfulness, min_colorfulness);
    override_with(&mut c.min_entropy, min_entropy);
}

pub fn pack(args: PackArgs, file: &mut ConfigFile) {
    let PackArgs { sizes, fit, shard_samples, val_fraction } = args;
    let p = &mut file.pack;
    if !sizes.is_empty() {
        p.sizes = Some(sizes);
    }
    override_with(&mut p.fit, fit);
    override_with(&mut p.shard_samples, shard_samples);
    override_with(&mut p.val_fraction, val_fraction);
}

pub fn run(args: RunArgs) -> RunFlags {
    let RunArgs { force, locked } = args;
    RunFlags { force, locked }
}

pub fn diff(args: DiffArgs) -> DiffRequest {
    let DiffArgs { a, b, stage, tolerance } = args;
    DiffRequest { a, b, stage, tolerance }
}

/// `anime-pipe eval`: its flags into `eval:` and `models:`, and what to evaluate.
pub struct EvalFlags {
    pub target: Target,
    pub size: Option<u32>,
    pub force: bool,
    pub save_features: Option<PathBuf>,
}

pub fn eval(args: EvalArgs, file: &mut ConfigFile) -> Result<EvalFlags> {
    let EvalArgs {
        run,
        model,
        checkpoints,
        samples,
        seed,
        batch_size,
        split,
        size,
        inception,
        kid_subsets,
        kid_subset_size,
        max_reference,
        force,
        save_features,
    } = args;
    let e = &mut file.eval;
    override_with(&mut e.samples, samples);
    override_with(&mut e.seed, seed);
    override_with(&mut e.batch_size, batch_size);
    override_with(&mut e.split, split);
    override_with(&mut e.kid_subsets, kid_subsets);
    override_with(&mut e.kid_subset_size, kid_subset_size);
    override_with(&mut e.max_reference, max_reference);
    if let Some(path) = inception {
        // Relative to where the command runs, not to the config file.
        file.models.fid_inception = Some(std::env::current_dir()?.join(path));
    }
    let target = match (run, model) {
        (Some(dir), _) => Target::Run { dir, epochs: checkpoints },
        (None, Some(model)) => Target::Model(model),
        (None, None) => bail!("eval needs --run DIR or --model FILE"),
    };
    Ok(EvalFlags { target, size, force, save_features })
}

impl EvalFlags {
    pub fn into_request(self, resolved: &crate::config::resolve::Resolved) -> EvalRequest {
        let EvalFlags { target, size, force, save_features } = self;
        EvalRequest {
            target,
            size,
            force,
            save_features,
            settings: resolved.eval.clone(),
            inception: resolved.plan.models.fid_inception.clone(),
        }
    }
}

/// `anime-pipe train`: its flags into `train:`, and the run to make or continue.
pub struct TrainFlags {
    pub run: RunChoice,
    pub debug: DebugOptions,
    pub bench_loader: Option<u64>,
}

pub fn train(args: TrainArgs, file: &mut ConfigFile) -> Result<TrainFlags> {
    let TrainArgs {
        preset,
        resume,
        name,
        epochs,
        steps,
        arch,
        image_size,
        latent,
        g_width,
        d_width,
        batch_size,
        optimizer,
        lr_d,
        lr_g,
        betas_d,
        betas_g,
        weight_decay,
        real_label,
        label_flip,
        ema,
        loss,
        diffaugment,
        spectral_norm,
        d_steps,
        seed,
        split,
        no_flip,
        translate,
        crop,
        rotate,
        sample_every,
        checkpoint_every,
        log_every,
        eval_every,
        eval_samples,
        prefetch,
        bench_loader,
        debug_nan_at_step,
        split_graphs,
        profile,
        formulation,
        primitive_backward,
    } = args;
    let formulation = parse_formulation(&formulation).context("--formulation")?;
    let o: &mut TrainOptions = &mut file.train;
    // Each flag that would change a run's results is written into `train:` and remembered by name: `--resume`
    // continues a run with its own config.json and refuses them.
    let mut changing = Vec::new();
    let mut set = |flag: &'static str, given: bool| {
        if given {
            changing.push(flag);
        }
    };
    set("--preset", override_with(&mut o.preset, preset));
    set("--arch", override_with(&mut o.arch, arch));
    set("--image-size", override_with(&mut o.image_size, image_size));
    set("--latent", override_with(&mut o.latent, latent));
    set("--g-width", override_with(&mut o.g_width, g_width));
    set("--d-width", override_with(&mut o.d_width, d_width));
    set("--batch-size", override_with(&mut o.batch_size, batch_size));
    set("--optimizer", override_with(&mut o.optimizer, optimizer));
    set("--lr-d", override_with(&mut o.lr_d, lr_d));
    set("--lr-g", override_with(&mut o.lr_g, lr_g));
    set("--betas-d", override_with(&mut o.betas_d, betas_d));
    set("--betas-g", override_with(&mut o.betas_g, betas_g));
    set("--weight-decay", override_with(&mut o.weight_decay, weight_decay));
    set("--real-label", override_with(&mut o.real_label, real_label));
    set("--label-flip", override_with(&mut o.label_flip, label_flip));
    set("--ema", override_with(&mut o.ema, ema));
    set("--loss", override_with(&mut o.loss, loss));
    set("--diffaugment", override_with(&mut o.diffaugment, diffaugment));
    set("--spectral-norm", override_with(&mut o.spectral_norm, spectral_norm.then_some(true)));
    set("--d-steps", override_with(&mut o.d_steps, d_steps));
    set("--seed", override_with(&mut o.seed, seed));
    set("--split", override_with(&mut o.split, split));
    set("--no-flip", override_with(&mut o.flip, no_flip.then_some(false)));
    set("--translate", override_with(&mut o.translate, translate));
    set("--crop", override_with(&mut o.crop, crop));
    set("--rotate", override_with(&mut o.rotate, rotate));
    set("--split-graphs", split_graphs);
    if epochs.is_some() || steps.is_some() {
        // A length on the command line replaces the file's whole length (an --epochs flag must not be cut short
        // by a `steps:` key, nor the other way round).
        (o.epochs, o.steps) = (epochs, steps);
    }
    override_with(&mut o.sample_every, sample_every);
    override_with(&mut o.checkpoint_every, checkpoint_every);
    override_with(&mut o.log_every, log_every);
    override_with(&mut o.eval_every, eval_every);
    override_with(&mut o.eval_samples, eval_samples);
    override_with(&mut o.prefetch, prefetch);
    let run = match resume {
        Some(dir) => {
            if !changing.is_empty() {
                bail!(
                    "--resume continues a run with its own config.json; {} would change its results (only --epochs, \
                     --steps, --sample-every, --checkpoint-every, --log-every, --eval-every, --eval-samples and --prefetch may be \
                     given)",
                    changing.join(", ")
                );
            }
            let overrides = ResumeOverrides {
                epochs,
                steps,
                sample_every,
                checkpoint_every,
                log_every,
                eval_every,
                eval_samples,
                prefetch,
            };
            RunChoice::Resume { dir, overrides }
        }
        None => RunChoice::New { name },
    };
    let debug = DebugOptions { nan_at_step: debug_nan_at_step, split_graphs, profile, formulation, primitive_backward };
    Ok(TrainFlags { run, debug, bench_loader })
}

pub fn sample(args: SampleArgs) -> SampleRequest {
    let SampleArgs { model, out, count, grid, interpolate, rows, lerp, seed, scale, separate, save_latents } = args;
    SampleRequest { model, out, count, grid, interpolate, rows, lerp, seed, scale, separate, save_latents }
}

/// `anime-pipe graph`: the request and the output directory.
pub fn graph(args: GraphArgs) -> Result<(ExportRequest, PathBuf)> {
    let GraphArgs {
        arch,
        batch,
        out,
        nz,
        ngf,
        ndf,
        samples,
        seed,
        adamw,
        formulation,
        ema,
        loss,
        diffaugment,
        spectral_norm,
    } = args;
    let formulation = graph_formulation(&formulation)?;
    let optimizer = if adamw { Optimizer::Adamw } else { Optimizer::Adam };
    let samples = samples.unwrap_or(batch);
    anyhow::ensure!(samples > 0, "--samples must be at least 1");
    let arch = crate::gan::models::Arch { spectral_norm, ..arch_from_args(&arch, nz, ngf, ndf)? };
    let (d_optimizer, g_optimizer) = (optimizer, optimizer);
    let request =
        ExportRequest { arch, batch, samples, seed, d_optimizer, g_optimizer, formulation, ema, loss, diffaugment };
    Ok((request, out))
}

/// `graph --formulation`: a name [`parse_formulation`] reads, or the device whose runner default to write.
fn graph_formulation(name: &str) -> Result<Formulation> {
    Ok(match name {
        "cpu" => default_formulation(Resolved::Cpu),
        "cuda" => default_formulation(Resolved::Cuda(0)),
        "auto" => {
            bail!("--formulation auto: `graph` runs on no device; give cpu, cuda, native, subpixel or subpixel:N")
        }
        other => parse_formulation(other).context("--formulation")?.unwrap_or_else(Formulation::native),
    })
}

pub fn bench_step(args: BenchStepArgs, global: &GlobalSettings) -> Result<BenchRequest> {
    let BenchStepArgs {
        arch,
        batch,
        steps,
        warmup,
        mode,
        no_optimize,
        opt_level,
        no_memory_pattern,
        spinning,
        formulation,
        cuda_graph,
        tf32,
        primitive_backward,
        profile_steps,
        profile_dir,
    } = args;
    let tf32 = match tf32.as_deref() {
        None => None,
        Some("on") => Some(true),
        Some("off") => Some(false),
        Some(other) => bail!("--tf32 {other:?}: expected on or off"),
    };
    let formulations =
        formulation.iter().map(|f| parse_formulation(f)).collect::<Result<Vec<_>>>().context("--formulation")?;
    let fused = match mode.as_str() {
        "fused" => vec![true],
        "split" => vec![false],
        "both" => vec![true, false],
        other => bail!("--mode {other:?}: expected fused, split or both"),
    };
    let device = match &global.device {
        Some(d) => d.parse().map_err(|e| anyhow::anyhow!("--device {d:?}: {e}"))?,
        None => Device::Auto,
    };
    Ok(BenchRequest {
        arch: arch_from_args(&arch, None, None, None)?,
        batches: batch,
        steps: steps.max(1),
        warmup,
        fused,
        device,
        threads: global.threads.unwrap_or(0),
        optimize: !no_optimize,
        profile_steps,
        profile_dir,
        tuning: SessionTuning {
            opt_level,
            memory_pattern: no_memory_pattern.then_some(false),
            spinning: Some(spinning),
            formulation: None,
            cuda_graph,
            tf32,
            primitive_backward,
        },
        formulations,
    })
}

/// Writes `value` over `target` when given; says whether it was.
fn override_with<T>(target: &mut Option<T>, value: Option<T>) -> bool {
    let given = value.is_some();
    if given {
        *target = value;
    }
    given
}

/// `--source PATH` entries, named after their file stem (made unique with a numeric suffix).
fn sources_from_paths(paths: &[PathBuf], already_cropped: bool) -> Result<Vec<SourceOptions>> {
    let cwd = std::env::current_dir()?;
    let mut used = std::collections::BTreeSet::new();
    Ok(paths
        .iter()
        .map(|p| {
            let base = source_name(p);
            let mut name = base.clone();
            let mut n = 2;
            while !used.insert(name.clone()) {
                name = format!("{base}-{n}");
                n += 1;
            }
            SourceOptions { name, path: cwd.join(p), already_cropped }
        })
        .collect())
}

fn source_name(path: &Path) -> String {
    let stem = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "source".into());
    let stem = stem.trim_end_matches(".gz").trim_end_matches(".tar").trim_end_matches(".zip").trim_end_matches(".tgz");
    let base: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    if base.is_empty() {
        "source".to_string()
    } else {
        base
    }
}
