//! The command layer: `main` hands over the parsed command line; [`settings`] resolves it with pipeline.yaml into
//! one request per command; the request goes to the module that does the work (stages, train, eval, gan, inspect).
pub mod pipeline;
pub mod settings;
mod training_fid;

pub use pipeline::Differs;

use crate::cli::{Cli, Command, StatsArgs};
use crate::config::resolve::Resolved;
use crate::config::ConfigFile;
use crate::env::Env;
use crate::report::{Reporter, Summary};
use crate::stages::Stage;
use crate::workdir::Workdir;
use anyhow::{bail, Result};
use settings::GlobalSettings;
use std::path::{Path, PathBuf};

/// The run stopped because of Ctrl-C, cleanly (outputs written): exit status 130, like a shell's SIGINT.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

pub fn run(cli: Cli) -> Result<()> {
    let Cli { global, command } = cli;
    let global = GlobalSettings::resolve(global)?;
    init_logging(&global);
    let reporter = Reporter { quiet: global.quiet, json: global.json };
    // Commands that read no pipeline.yaml.
    let command = match command {
        Command::Graph(args) => {
            let (request, out) = settings::graph(args)?;
            return crate::gan::export::run_command(&out, &request, &reporter);
        }
        Command::BenchStep(args) => return crate::gan::bench::run(&settings::bench_step(args, &global)?).map(|_| ()),
        Command::SampleData(args) => {
            reporter.emit(&crate::sample_data::write(&args.dir, args.count, args.seed)?);
            return Ok(());
        }
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(settings::completions(args), &mut cmd, "anime-pipe", &mut std::io::stdout());
            return Ok(());
        }
        Command::Man(args) => return man(settings::man(args)),
        Command::Models(args) => match settings::models(args)? {
            Some(request) => {
                reporter.emit(&crate::models::fetch::run(&request)?);
                return Ok(());
            }
            None => Command::Models(Default::default()),
        },
        other => other,
    };
    let (mut file, base_dir) = load_config(&global)?;
    if let Some(device) = &global.device {
        file.device = Some(device.clone());
    }
    let stage = match command {
        Command::Ingest(args) => {
            settings::ingest(args, &mut file)?;
            Stage::Ingest
        }
        Command::Dedup(args) => {
            settings::dedup(args, &mut file);
            Stage::Dedup
        }
        Command::Crop(args) => {
            settings::crop(args, &mut file);
            Stage::Crop
        }
        Command::Upscale(args) => {
            settings::upscale(args, &mut file);
            Stage::Upscale
        }
        Command::Clean(args) => {
            settings::clean(args, &mut file);
            Stage::Clean
        }
        Command::Pack(args) => {
            settings::pack(args, &mut file);
            Stage::Pack
        }
        Command::Run(args) => {
            let flags = settings::run(args);
            let resolved = file.resolve(&base_dir)?;
            let env = open_env(&global, &base_dir, resolved.device, reporter)?;
            return pipeline::run(&env, &resolved, flags, &base_dir.join(crate::inspect::lock::FILE_NAME));
        }
        Command::Lock => {
            let resolved = file.resolve(&base_dir)?;
            let env = open_env(&global, &base_dir, resolved.device, reporter)?;
            return pipeline::write_lock(&env, &resolved, &base_dir.join(crate::inspect::lock::FILE_NAME));
        }
        Command::Diff(args) => {
            // The config is resolved only when a side is a lock (its stage fingerprints follow pipeline.yaml).
            return pipeline::diff(settings::diff(args), global.json, || file.resolve(&base_dir));
        }
        Command::Merge(args) => {
            let crate::cli::MergeArgs { stage } = args;
            let resolved = file.resolve(&base_dir)?;
            let env = open_env(&global, &base_dir, resolved.device, reporter)?;
            reporter.emit(&crate::stages::run::merge(&env, &resolved.plan, stage)?);
            return Ok(());
        }
        Command::Stats(args) => {
            let resolved = file.resolve(&base_dir)?;
            let env = open_env(&global, &base_dir, resolved.device, reporter)?;
            return stats(&env, args);
        }
        Command::Gc(args) => {
            let crate::cli::GcArgs { dry_run } = args;
            let resolved = file.resolve(&base_dir)?;
            let env = open_env(&global, &base_dir, resolved.device, reporter)?;
            reporter.emit(&crate::gc::run(&env, &resolved.plan, dry_run)?);
            return Ok(());
        }
        Command::Verify => {
            let resolved = file.resolve(&base_dir)?;
            let env = open_env(&global, &base_dir, resolved.device, reporter)?;
            reporter.emit(&crate::inspect::verify::run(&env)?);
            return Ok(());
        }
        Command::Eval(args) => {
            let flags = settings::eval(args, &mut file)?;
            let resolved = file.resolve(&base_dir)?;
            let env = open_env(&global, &base_dir, resolved.device, reporter)?;
            let outcome = crate::eval::run(&env, &flags.into_request(&resolved))?;
            outcome.emit(&reporter);
            return Ok(());
        }
        Command::Train(args) => {
            let flags = settings::train(args, &mut file)?;
            let resolved = file.resolve(&base_dir)?;
            let env = open_env(&global, &base_dir, resolved.device, reporter)?;
            return train(&env, flags, &resolved);
        }
        Command::Sample(args) => {
            // Needs only a model file and a device: no workdir is opened (or created).
            let resolved = file.resolve(&base_dir)?;
            let threads = init_threads(global.threads)?;
            let summary = crate::train::sample::run(&settings::sample(args), resolved.device, threads)?;
            reporter.emit(&summary);
            return Ok(());
        }
        Command::Models(_) => {
            let resolved = file.resolve(&base_dir)?;
            let yolo = resolved.plan.crop.detector.family == crate::faces::detector::Family::Yolo;
            return models(crate::config::resolve::model_lookups(&file.models, &base_dir), yolo, &reporter);
        }
        Command::Graph(_)
        | Command::BenchStep(_)
        | Command::SampleData(_)
        | Command::Completions(_)
        | Command::Man(_) => unreachable!("handled above"),
    };
    let resolved = file.resolve(&base_dir)?;
    let env = open_env(&global, &base_dir, resolved.device, reporter)?;
    let summary = crate::stages::run::run_stage(&env, &resolved.plan, stage)?;
    reporter.emit(&summary);
    Ok(())
}

fn train(env: &Env, flags: settings::TrainFlags, resolved: &Resolved) -> Result<()> {
    let settings::TrainFlags { run, debug, bench_loader } = flags;
    if let Some(batches) = bench_loader {
        env.reporter.emit(&crate::train::bench_loader::run(&env.workdir, &resolved.train, batches)?);
        return Ok(());
    }
    let request = crate::train::trainer::TrainRequest {
        workdir: env.workdir.clone(),
        config: resolved.train.clone(),
        run,
        device: env.device,
        threads: env.threads,
        reporter: env.reporter,
        debug,
    };
    let make = |c: &crate::train::presets::TrainConfig| {
        training_fid::make_scorer(env, &resolved.eval, &resolved.plan.models.fid_inception, c)
    };
    let outcome = crate::train::trainer::train(&request, Some(&make))?;
    env.reporter.emit(&outcome.summary());
    // A checkpointed Ctrl-C is not a finished run: scripts chaining `train && eval` must see it.
    if outcome.stop == crate::train::trainer::StopReason::Interrupted {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// `anime-pipe models`: every model of `models:`, checked. Exit status 2 when a model that is present is unusable.
fn models(lookups: [(crate::models::Role, crate::models::Lookup); 4], yolo: bool, reporter: &Reporter) -> Result<()> {
    let reports: Vec<crate::models::ModelReport> =
        lookups.into_iter().map(|(role, lookup)| crate::models::inspect(role, yolo, lookup)).collect();
    if reporter.json {
        println!("{}", serde_json::json!({ "models": reports }));
    } else if !reporter.quiet {
        print!("{}", crate::models::render(&reports));
    }
    let bad: Vec<&str> = reports.iter().filter(|r| r.verdict == crate::models::Verdict::Bad).map(|r| r.key).collect();
    if !bad.is_empty() {
        bail!("unusable model(s): {} (see the problems listed above)", bad.join(", "));
    }
    Ok(())
}

/// `anime-pipe man`: the top-level page on stdout, or every page into a directory.
fn man(dir: Option<PathBuf>) -> Result<()> {
    let cmd = <Cli as clap::CommandFactory>::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(cmd, &dir)?;
            println!("man pages written to {}", dir.display());
        }
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?,
    }
    Ok(())
}

/// `anime-pipe --version`: the version, and which ONNX Runtime would be loaded (never an error when it is absent).
pub fn version_text() -> String {
    format!(
        "anime-pipe {}
{}
",
        env!("CARGO_PKG_VERSION"),
        crate::runtime::describe()
    )
}

fn stats(env: &Env, args: StatsArgs) -> Result<()> {
    let StatsArgs { stage, contact_sheet } = args;
    // The sheet first, so a failure to read crop.parquet stops before any output.
    let sheet: Option<Summary> = match &contact_sheet {
        Some(path) => Some(crate::inspect::contact_sheet::write(&env.workdir, path)?),
        None => None,
    };
    let summary = crate::inspect::stats::run(env, stage.as_deref())?;
    if env.reporter.json {
        return Ok(()); // stats printed its own, richer JSON object
    }
    if let Some(sheet) = sheet {
        env.reporter.emit(&sheet);
    }
    env.reporter.emit(&summary);
    Ok(())
}

fn open_env(
    global: &GlobalSettings,
    base_dir: &Path,
    device: crate::runtime::Device,
    reporter: Reporter,
) -> Result<Env> {
    let workdir = Workdir::open(global.workdir.clone().unwrap_or_else(|| base_dir.to_path_buf()))?;
    let threads = init_threads(global.threads)?;
    let partition = crate::partition::detect(global.partition, global.partitions, |name| std::env::var(name).ok())?;
    Ok(Env { workdir, threads, reporter, device, partition })
}

fn init_logging(global: &GlobalSettings) {
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
fn load_config(global: &GlobalSettings) -> Result<(ConfigFile, PathBuf)> {
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
