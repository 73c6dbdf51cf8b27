//! Dispatch: command line + pipeline.yaml -> resolved settings and a stage context -> the stage modules.
use crate::cli::{Cli, Command, GlobalArgs};
use crate::config::{ConfigFile, Settings, SourceOptions};
use crate::report::Reporter;
use crate::stages;
use crate::workdir::Workdir;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// Everything a stage needs: resolved settings, where to work, how many threads, how to report.
pub struct Ctx {
    pub settings: Settings,
    pub workdir: Workdir,
    pub threads: usize,
    pub reporter: Reporter,
}

pub fn run(cli: Cli) -> Result<()> {
    init_logging(&cli.global);
    match &cli.command {
        Command::Graph(args) => return crate::gan::export::run_command(args, &reporter(&cli.global)),
        Command::BenchStep(args) => return crate::gan::bench::run_command(args, &cli.global),
        _ => {}
    }
    if let Command::SampleData(args) = &cli.command {
        let summary = crate::sample_data::write(&args.dir, args.count, args.seed)?;
        reporter(&cli.global).emit(&summary);
        return Ok(());
    }
    let (mut file, base_dir) = load_config(&cli.global)?;
    apply_overrides(&mut file, &cli.command)?;
    if let Some(device) = &cli.global.device {
        file.device = Some(device.clone());
    }
    let settings = Settings::resolve(file, &base_dir)?;
    if let Command::Sample(args) = &cli.command {
        // Needs only a model file and a device: no workdir is opened (or created).
        let summary = crate::train::sample_command(args, settings.device, init_threads(cli.global.threads)?)?;
        reporter(&cli.global).emit(&summary);
        return Ok(());
    }
    let workdir = Workdir::open(cli.global.workdir.clone().unwrap_or_else(|| base_dir.clone()))?;
    let threads = init_threads(cli.global.threads)?;
    let ctx = Ctx { settings, workdir, threads, reporter: reporter(&cli.global) };
    let summary = match &cli.command {
        Command::Ingest(_) => stages::ingest::run(&ctx)?,
        Command::Dedup(_) => stages::dedup::run(&ctx)?,
        Command::Crop(_) => stages::crop::run(&ctx)?,
        Command::Upscale(_) => stages::upscale::run(&ctx)?,
        Command::Clean(_) => stages::clean::run(&ctx)?,
        Command::Pack(_) => stages::pack::run(&ctx)?,
        Command::Run(args) => stages::pipeline::run(&ctx, args.force)?,
        Command::Stats(args) => {
            // The sheet first, so a failure to read crop.parquet stops before any output.
            let sheet = match &args.contact_sheet {
                Some(path) => Some(crate::contact_sheet::write(&ctx.workdir, path)?),
                None => None,
            };
            let summary = stages::stats::run(&ctx, args.stage.as_deref())?;
            if let Some(sheet) = sheet.filter(|_| !ctx.reporter.json) {
                ctx.reporter.emit(&sheet);
            }
            if ctx.reporter.json {
                return Ok(()); // stats printed its own, richer JSON object
            }
            summary
        }
        Command::Eval(args) => {
            let outcome = crate::eval::run(&ctx, &crate::eval::EvalRequest::from_args(args))?;
            outcome.emit(&ctx.reporter);
            return Ok(());
        }
        Command::Verify => stages::verify::run(&ctx)?,
        Command::Train(args) => {
            let (summary, interrupted) = crate::train::run(&ctx, args)?;
            ctx.reporter.emit(&summary);
            // A checkpointed Ctrl-C is not a finished run: scripts chaining `train && eval` must see it.
            return if interrupted { Err(Interrupted.into()) } else { Ok(()) };
        }
        Command::SampleData(_) | Command::Graph(_) | Command::BenchStep(_) | Command::Sample(_) => {
            unreachable!("handled above")
        }
    };
    ctx.reporter.emit(&summary);
    Ok(())
}

/// The run stopped because of Ctrl-C, cleanly (outputs written): exit status 130, like a shell's SIGINT.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

fn reporter(global: &GlobalArgs) -> Reporter {
    Reporter { quiet: global.quiet, json: global.json }
}

fn init_logging(global: &GlobalArgs) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ANIME_PIPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// `--config FILE`, else `./pipeline.yaml` if present, else defaults. Returns the file and the directory that
/// relative paths in it resolve against.
fn load_config(global: &GlobalArgs) -> Result<(ConfigFile, PathBuf)> {
    let cwd = std::env::current_dir()?;
    let path = match &global.config {
        Some(p) if !p.exists() => bail!("--config {}: no such file", p.display()),
        Some(p) => Some(p.clone()),
        None => Some(cwd.join("pipeline.yaml")).filter(|p| p.exists()),
    };
    match path {
        Some(p) => {
            let base = p.parent().map(Path::to_path_buf).filter(|d| !d.as_os_str().is_empty()).unwrap_or(cwd);
            Ok((ConfigFile::load(&p)?, base))
        }
        None => Ok((ConfigFile::default(), cwd)),
    }
}

/// Command-line flags win over pipeline.yaml: they are written into the options before resolution, so the same
/// validation (and the same error messages) apply to both.
fn apply_overrides(file: &mut ConfigFile, command: &Command) -> Result<()> {
    match command {
        Command::Ingest(a) if !a.sources.is_empty() => {
            file.sources = sources_from_paths(&a.sources, a.already_cropped)?;
        }
        Command::Dedup(a) => {
            file.dedup.phash_threshold = a.threshold.or(file.dedup.phash_threshold);
            if a.no_near {
                file.dedup.near = Some(false);
            }
        }
        Command::Crop(a) => {
            let c = &mut file.crop;
            if !a.scales.is_empty() {
                c.scales = Some(a.scales.clone());
            }
            c.score_threshold = a.score_threshold.or(c.score_threshold);
            c.min_face_size = a.min_face_size.or(c.min_face_size);
            c.max_faces = a.max_faces.or(c.max_faces);
            c.margin = a.margin.or(c.margin);
            c.border = a.border.map(border_option).or(c.border);
        }
        Command::Upscale(a) => {
            let u = &mut file.upscale;
            u.target = a.target.or(u.target);
            u.method = a.method.or(u.method);
        }
        Command::Clean(a) => {
            let c = &mut file.clean;
            c.min_size = a.min_size.or(c.min_size);
            c.max_aspect = a.max_aspect.or(c.max_aspect);
            c.min_sharpness = a.min_sharpness.or(c.min_sharpness);
            c.min_colorfulness = a.min_colorfulness.or(c.min_colorfulness);
            c.min_entropy = a.min_entropy.or(c.min_entropy);
        }
        Command::Pack(a) => {
            let p = &mut file.pack;
            if !a.sizes.is_empty() {
                p.sizes = Some(a.sizes.clone());
            }
            p.fit = a.fit.or(p.fit);
            p.shard_samples = a.shard_samples.or(p.shard_samples);
            p.val_fraction = a.val_fraction.or(p.val_fraction);
        }
        Command::Train(a) => crate::train::apply_flags(&mut file.train, a),
        Command::Eval(a) => {
            let e = &mut file.eval;
            e.samples = a.samples.or(e.samples);
            e.seed = a.seed.or(e.seed);
            e.batch_size = a.batch_size.or(e.batch_size);
            e.split = a.split.clone().or(e.split.take());
            e.kid_subsets = a.kid_subsets.or(e.kid_subsets);
            e.kid_subset_size = a.kid_subset_size.or(e.kid_subset_size);
            e.max_reference = a.max_reference.or(e.max_reference);
            if let Some(path) = &a.inception {
                // Relative to where the command runs, not to the config file.
                file.models.fid_inception = Some(std::env::current_dir()?.join(path));
            }
        }
        _ => {}
    }
    Ok(())
}

fn border_option(b: crate::cli::BorderArg) -> crate::config::Border {
    use crate::cli::BorderArg;
    use crate::config::Border;
    match b {
        BorderArg::Clamp => Border::Clamp,
        BorderArg::Edge => Border::Edge,
        BorderArg::Constant => Border::Constant,
    }
}

/// `--source PATH` entries, named after their file stem (made unique with a numeric suffix).
fn sources_from_paths(paths: &[PathBuf], already_cropped: bool) -> Result<Vec<SourceOptions>> {
    let cwd = std::env::current_dir()?;
    let mut used = std::collections::BTreeSet::new();
    paths
        .iter()
        .map(|p| {
            let stem = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "source".into());
            let stem =
                stem.trim_end_matches(".gz").trim_end_matches(".tar").trim_end_matches(".zip").trim_end_matches(".tgz");
            let base: String =
                stem.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
            let base = if base.is_empty() { "source".to_string() } else { base };
            let mut name = base.clone();
            let mut n = 2;
            while !used.insert(name.clone()) {
                name = format!("{base}-{n}");
                n += 1;
            }
            Ok(SourceOptions { name, path: cwd.join(p), already_cropped })
        })
        .collect()
}

/// Sizes the global rayon pool (and polars' pool) from `-j`. Results never depend on the count.
fn init_threads(requested: Option<usize>) -> Result<usize> {
    let threads = match requested {
        Some(0) => bail!("-j/--threads 0: expected at least 1 thread"),
        Some(n) => n,
        None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    };
    // polars reads this once, when its pool first starts (after this point).
    std::env::set_var("POLARS_MAX_THREADS", threads.to_string());
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    Ok(threads)
}
