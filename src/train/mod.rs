//! `anime-pipe train` and `anime-pipe sample`: DCGAN training on ONNX Runtime, and inference with the result.
//!
//! ```text
//! anime-pipe train --preset dcgan64 --epochs 200        # the packed shards of pipeline.yaml's workdir
//! anime-pipe train --resume runs/dcgan64-20261122-111208 # after a crash or Ctrl-C: continues exactly
//! anime-pipe sample --model runs/<name>/generator.onnx -n 64 --grid 8x8 --out samples.png --seed 7
//! anime-pipe sample --model runs/<name>/generator.onnx --interpolate 10 --out walk.png
//! ```
//!
//! * [`presets`] - hyperparameters, the named presets and their resolution (preset < `train:` < flags).
//! * [`loader`] - memory-mapped shards, seeded per-epoch shuffles, augmentation, a prefetching thread.
//! * [`trainer`] - the loop over `gan::runner` (state stays on the execution provider's device between steps),
//!   metrics, samples, checkpoints, Ctrl-C and divergence handling, exact resume.
//! * [`rundir`] - the run directory layout and `metrics.parquet` (the contract with `anime-pipe eval`).
//! * [`checkpoint`] - the checkpoint format.
//! * [`plots`] - `loss.png`.
//! * [`sample`] - the exported generator, latents, grids, walks.
pub mod checkpoint;
pub mod loader;
pub mod plots;
pub mod presets;
pub mod rundir;
pub mod sample;
pub mod trainer;

use crate::app::Ctx;
use crate::cli::{SampleArgs, TrainArgs};
use crate::config::TrainOptions;
use crate::report::Summary;
use crate::runtime::{Device, SessionOptions};
use anyhow::{bail, Result};
use std::time::Instant;

/// Writes the command-line flags into the `train:` options (flags win over pipeline.yaml).
pub fn apply_flags(o: &mut TrainOptions, a: &TrainArgs) {
    fn set<T: Clone>(target: &mut Option<T>, value: &Option<T>) {
        if value.is_some() {
            *target = value.clone();
        }
    }
    set(&mut o.preset, &a.preset);
    set(&mut o.arch, &a.arch);
    set(&mut o.image_size, &a.image_size);
    set(&mut o.latent, &a.latent);
    set(&mut o.g_width, &a.g_width);
    set(&mut o.d_width, &a.d_width);
    if a.epochs.is_some() || a.steps.is_some() {
        // A length on the command line replaces the file's whole length (an --epochs flag must not be cut short
        // by a `steps:` key, nor the other way round).
        o.epochs = a.epochs;
        o.steps = a.steps;
    }
    set(&mut o.batch_size, &a.batch_size);
    set(
        &mut o.optimizer,
        &a.optimizer.as_deref().map(|s| match s {
            "adamw" => crate::gan::steps::Optimizer::Adamw,
            _ => crate::gan::steps::Optimizer::Adam,
        }),
    );
    set(&mut o.lr_d, &a.lr_d);
    set(&mut o.lr_g, &a.lr_g);
    set(&mut o.betas_d, &a.betas_d);
    set(&mut o.betas_g, &a.betas_g);
    set(&mut o.weight_decay, &a.weight_decay);
    set(&mut o.real_label, &a.real_label);
    set(&mut o.label_flip, &a.label_flip);
    set(&mut o.d_steps, &a.d_steps);
    set(&mut o.seed, &a.seed);
    set(&mut o.split, &a.split);
    if a.no_flip {
        o.flip = Some(false);
    }
    set(&mut o.translate, &a.translate);
    set(&mut o.crop, &a.crop);
    set(&mut o.rotate, &a.rotate);
    set(&mut o.sample_every, &a.sample_every);
    set(&mut o.checkpoint_every, &a.checkpoint_every);
    set(&mut o.log_every, &a.log_every);
    set(&mut o.prefetch, &a.prefetch);
}

/// Flags that would change a run's results, by name, when set (refused with `--resume`).
fn result_changing_flags(a: &TrainArgs) -> Vec<&'static str> {
    let set = [
        ("--preset", a.preset.is_some()),
        ("--arch", a.arch.is_some()),
        ("--image-size", a.image_size.is_some()),
        ("--latent", a.latent.is_some()),
        ("--g-width", a.g_width.is_some()),
        ("--d-width", a.d_width.is_some()),
        ("--batch-size", a.batch_size.is_some()),
        ("--optimizer", a.optimizer.is_some()),
        ("--lr-d", a.lr_d.is_some()),
        ("--lr-g", a.lr_g.is_some()),
        ("--betas-d", a.betas_d.is_some()),
        ("--betas-g", a.betas_g.is_some()),
        ("--weight-decay", a.weight_decay.is_some()),
        ("--real-label", a.real_label.is_some()),
        ("--label-flip", a.label_flip.is_some()),
        ("--d-steps", a.d_steps.is_some()),
        ("--seed", a.seed.is_some()),
        ("--split", a.split.is_some()),
        ("--no-flip", a.no_flip),
        ("--translate", a.translate.is_some()),
        ("--crop", a.crop.is_some()),
        ("--rotate", a.rotate.is_some()),
        ("--split-graphs", a.split_graphs),
    ];
    set.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect()
}

/// `anime-pipe train`: the summary, and whether Ctrl-C ended the run (after its checkpoint).
pub fn run(ctx: &Ctx, args: &TrainArgs) -> Result<(Summary, bool)> {
    if let Some(batches) = args.bench_loader {
        return Ok((bench_loader(ctx, batches)?, false));
    }
    let run = match &args.resume {
        Some(dir) => {
            let refused = result_changing_flags(args);
            if !refused.is_empty() {
                bail!(
                    "--resume continues a run with its own config.json; {} would change its results (only --epochs, \
                     --steps, --sample-every, --checkpoint-every, --log-every and --prefetch may be given)",
                    refused.join(", ")
                );
            }
            trainer::RunChoice::Resume {
                dir: dir.clone(),
                overrides: trainer::ResumeOverrides {
                    epochs: args.epochs,
                    steps: args.steps,
                    sample_every: args.sample_every,
                    checkpoint_every: args.checkpoint_every,
                    log_every: args.log_every,
                    prefetch: args.prefetch,
                },
            }
        }
        None => trainer::RunChoice::New { name: args.name.clone() },
    };
    let request = trainer::TrainRequest {
        workdir: ctx.workdir.clone(),
        config: ctx.settings.train.clone(),
        run,
        device: ctx.settings.device,
        threads: ctx.threads,
        reporter: ctx.reporter,
        debug: trainer::DebugOptions {
            nan_at_step: args.debug_nan_at_step,
            split_graphs: args.split_graphs,
            profile: args.profile.clone(),
        },
    };
    let outcome = trainer::train(&request)?;
    Ok((outcome.summary(), outcome.stop == trainer::StopReason::Interrupted))
}

/// `train --bench-loader N`: the loader alone (shuffle, augmentation, assembly, channel), as the trainer uses it.
fn bench_loader(ctx: &Ctx, batches: u64) -> Result<Summary> {
    let c = &ctx.settings.train;
    let mut summary = Summary::start("train --bench-loader");
    let opened = Instant::now();
    let set = std::sync::Arc::new(loader::ShardSet::open(&ctx.workdir, c.image_size, &c.split)?);
    let open_s = opened.elapsed().as_secs_f64();
    let spec = loader::LoaderSpec { batch_size: c.batch_size, seed: c.seed, augment: c.augment };
    let mut loader = loader::Loader::spawn(set.clone(), spec, loader::Position::default(), c.prefetch)?;
    let clock = Instant::now();
    let mut checksum = 0u64;
    for _ in 0..batches {
        let batch = loader.next_batch()?;
        checksum = checksum.wrapping_add(batch.pixels.iter().step_by(4099).map(|&b| u64::from(b)).sum::<u64>());
    }
    let seconds = clock.elapsed().as_secs_f64().max(1e-9);
    let images = batches as f64 * c.batch_size as f64;
    summary.count("images in split", set.len() as u64).count("batches", batches);
    summary
        .fact("batch", format!("{} x {}x{}x3 u8", c.batch_size, c.image_size, c.image_size))
        .fact(
            "augment",
            format!(
                "flip {}, translate {} px, crop {}, rotate {} deg",
                c.augment.flip, c.augment.translate, c.augment.crop, c.augment.rotate
            ),
        )
        .fact("open + map shards", format!("{:.3} s", open_s))
        .fact("batches/s", format!("{:.1}", batches as f64 / seconds))
        .fact("images/s", format!("{:.0}", images / seconds))
        .fact("MB/s", format!("{:.0}", images * set.image_bytes() as f64 / seconds / 1e6))
        .fact("checksum", checksum);
    Ok(summary.finish())
}

/// `anime-pipe sample`.
pub fn sample_command(args: &SampleArgs, device: Device, threads: usize) -> Result<Summary> {
    let mut summary = Summary::start("sample");
    let options = SessionOptions { device, threads, optimize: true };
    let mut generator = sample::Generator::from_file(&args.model, &options)?;
    let nz = generator.nz();
    let (z, cols, rows, what) = match args.interpolate {
        Some(k) => {
            if !(2..=1000).contains(&k) || !(1..=1000).contains(&args.rows) {
                bail!("--interpolate {k} --rows {}: expected 2..=1000 steps and 1..=1000 rows", args.rows);
            }
            let walk = sample::walk_latents(args.seed, args.rows, k, nz, !args.lerp);
            (walk, k, args.rows, if args.lerp { "lerp walks" } else { "slerp walks" })
        }
        None => {
            let grid = args.grid.as_deref().map(sample::parse_grid).transpose()?;
            let n = args.count.or(grid.map(|(c, r)| c * r)).unwrap_or(64);
            if n == 0 || n > 100_000 {
                bail!("-n {n}: expected 1..=100000 images");
            }
            let (cols, rows) = grid.unwrap_or_else(|| {
                let cols = (n as f64).sqrt().ceil() as usize;
                (cols, n.div_ceil(cols))
            });
            if cols * rows < n {
                bail!("--grid {cols}x{rows} has {} cells, fewer than -n {n}", cols * rows);
            }
            (sample::latents(args.seed, n, nz), cols, rows, "images")
        }
    };
    let count = z.len() / nz;
    let images = generator.generate(&z)?;
    let grid = sample::enlarge(&sample::grid(&images, generator.size(), cols, rows), args.scale);
    sample::write_png(&args.out, &grid)?;
    if let Some(dir) = &args.separate {
        std::fs::create_dir_all(dir)?;
        let cell = generator.size() * generator.size() * 3;
        for (i, pixels) in images.chunks_exact(cell).enumerate() {
            let s = generator.size() as u32;
            let image = image::RgbImage::from_raw(s, s, pixels.to_vec()).expect("cell size");
            sample::write_png(&dir.join(format!("{i:05}.png")), &sample::enlarge(&image, args.scale))?;
        }
    }
    if let Some(path) = &args.save_latents {
        crate::workdir::atomic_write(path, &sample::npy_bytes(&[count, nz], &z))?;
    }
    summary.count(what, count as u64);
    summary
        .fact("grid", format!("{cols}x{rows} of {0}x{0}", generator.size()))
        .fact("latent size", nz)
        .fact("seed", args.seed)
        .fact("out", args.out.display());
    Ok(summary.finish())
}
