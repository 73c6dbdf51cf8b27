//! The GAN step runner on CPU: the fused graph and the split D/G graphs agree, runs are bit-reproducible and
//! resumable, the G step leaves D's parameters alone, and a tiny GAN learns a trivial image distribution.
use anime_pipe::gan::augment::DiffAugment;
use anime_pipe::gan::models::{Arch, Family};
use anime_pipe::gan::runner::{AdamHyper, GanConfig, GeneratorWeights, Runner, RunnerOptions, SessionTuning};
use anime_pipe::gan::steps::{self, GanLoss, Role};
use anime_pipe::runtime::Device;
use anyhow::Result;
use onnxgrad::Formulation;

type State = anime_pipe::gan::runner::StateTensors;

fn tiny_dcgan() -> Arch {
    Arch { family: Family::Dcgan, image_size: 16, nz: 8, ngf: 8, ndf: 8, dropout: 0.0, spectral_norm: false }
}

/// anime300's layout at toy size: dense projection, max-pooling discriminator with dropout.
fn tiny_anime300() -> Arch {
    Arch { family: Family::Anime300, image_size: 16, nz: 12, ngf: 4, ndf: 4, dropout: 0.4, spectral_norm: false }
}

/// The #14 additions together: spectrally normalised D (no batch norm in it) and every DiffAugment transform.
fn with_sn_and_diffaugment(config: GanConfig) -> GanConfig {
    let arch = Arch { spectral_norm: true, ..config.arch.clone() };
    GanConfig { arch, diffaugment: DiffAugment::ALL, ..config }
}

fn cpu(fused: bool, threads: usize) -> RunnerOptions {
    RunnerOptions { device: Device::Cpu, threads, fused, ..RunnerOptions::default() }
}

/// Deterministic pseudo-random bytes (splitmix64), a different batch for each `seed`.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

fn batch_bytes(config: &GanConfig, step: u64) -> Vec<u8> {
    let s = config.arch.image_size;
    bytes(config.batch * s * s * 3, step + 1)
}

fn run_steps(runner: &mut Runner, config: &GanConfig, from: u64, to: u64) -> Result<()> {
    for i in from..to {
        runner.step(&batch_bytes(config, i))?;
    }
    Ok(())
}

/// Largest |a - b| / max(|b|, 1e-3) over every element of every tensor (the key sets must match).
fn max_rel_diff(a: &State, b: &State) -> f32 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut worst = 0.0f32;
    for (name, (_, va)) in a {
        for (x, y) in va.iter().zip(&b[name].1) {
            worst = worst.max((x - y).abs() / y.abs().max(1e-3));
        }
    }
    worst
}

fn params_with_prefix(s: &State, prefix: &str) -> State {
    s.iter()
        .filter(|(n, _)| n.starts_with(prefix) && !n.ends_with(".adam_m") && !n.ends_with(".adam_v"))
        .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

#[test]
fn fused_graph_and_split_graphs_give_the_same_iterations() -> Result<()> {
    // Both compute PyTorch's iteration: the split G step recomputes G(z) with the same z and weights, and its D is
    // the updated one, as in the fused graph. Only summation order inside ONNX Runtime could differ.
    // With spectral norm, the split G step runs the D step's power iteration again from the vector it wrote, as the
    // fused graph's G half does from the value it computed; DiffAugment's inputs are drawn once per iteration.
    let configs = [
        GanConfig::new(tiny_dcgan(), 4, 3),
        GanConfig::new(tiny_anime300(), 4, 3),
        with_sn_and_diffaugment(GanConfig::new(tiny_dcgan(), 4, 3)),
        with_sn_and_diffaugment(GanConfig::new(tiny_anime300(), 4, 3)),
    ];
    for config in configs {
        let arch = config.arch.clone();
        let mut fused = Runner::new(&config, &cpu(true, 1))?;
        let mut split = Runner::new(&config, &cpu(false, 1))?;
        for i in 0..4 {
            let real = batch_bytes(&config, i);
            let a = fused.step(&real)?.expect("metrics every step");
            let b = split.step(&real)?.expect("metrics every step");
            for (x, y) in [(a.d_loss, b.d_loss), (a.g_loss, b.g_loss), (a.d_fake, b.d_fake), (a.g_fake, b.g_fake)] {
                assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{}: step {i}: {a:?} vs {b:?}", arch.name());
            }
        }
        let diff = max_rel_diff(&fused.state()?, &split.state()?);
        assert!(diff < 1e-4, "{}: states differ by {diff}", arch.name());
    }
    Ok(())
}

#[test]
fn every_formulation_trains_the_same_iterations() -> Result<()> {
    // Graphs written as built (native, primitive batch-norm backward: main's graphs before the formulations),
    // with the closed-form batch-norm backward, and with sub-pixel ConvTranspose everywhere (tiny maps: <= 8x8
    // is every layer here): the same training up to summation order.
    let config = GanConfig::new(tiny_dcgan(), 4, 5);
    let tuned = |formulation: Formulation, primitive_backward: bool| {
        let tuning = SessionTuning { formulation: Some(formulation), primitive_backward, ..SessionTuning::training() };
        Runner::with_tuning(&config, &cpu(true, 1), tuning)
    };
    let mut reference = tuned(Formulation::native(), true)?;
    let mut others = [tuned(Formulation::native(), false)?, tuned(Formulation::subpixel(), false)?];
    for i in 0..4 {
        let real = batch_bytes(&config, i);
        let a = reference.step(&real)?.expect("metrics every step");
        for (k, other) in others.iter_mut().enumerate() {
            let b = other.step(&real)?.expect("metrics every step");
            for (x, y) in [(a.d_loss, b.d_loss), (a.g_loss, b.g_loss), (a.d_fake, b.d_fake), (a.g_fake, b.g_fake)] {
                assert!((x - y).abs() <= 1e-4 * y.abs().max(1.0), "formulation {k}: step {i}: {a:?} vs {b:?}");
            }
        }
    }
    // Adam moves each parameter by about lr = 2e-4 per step whatever the gradient's size, so a rounding-level
    // difference in a near-zero gradient can flip one step's direction: bound the absolute difference by that.
    let reference = reference.state()?;
    for (k, other) in others.iter().enumerate() {
        let other = other.state()?;
        let worst = other
            .iter()
            .flat_map(|(n, (_, v))| v.iter().zip(&reference[n].1).map(|(x, y)| (x - y).abs()))
            .fold(0.0f32, f32::max);
        assert!(worst < 2.0 * 2e-4 * 4.0, "formulation {k}: states differ by {worst}");
        eprintln!("formulation {k}: largest state difference {worst:e} after 4 iterations");
    }
    Ok(())
}

#[test]
fn same_seed_gives_bit_identical_state_and_another_seed_does_not() -> Result<()> {
    for fused in [true, false] {
        let config = GanConfig::new(tiny_dcgan(), 4, 11);
        let mut a = Runner::new(&config, &cpu(fused, 2))?;
        let mut b = Runner::new(&config, &cpu(fused, 2))?;
        run_steps(&mut a, &config, 0, 5)?;
        run_steps(&mut b, &config, 0, 5)?;
        assert!(a.state()? == b.state()?, "fused={fused}: same seed, different bits");
        assert_eq!(a.progress(), b.progress());

        let other = GanConfig { seed: 12, ..config.clone() };
        let mut c = Runner::new(&other, &cpu(fused, 2))?;
        run_steps(&mut c, &other, 0, 5)?;
        assert!(max_rel_diff(&a.state()?, &c.state()?) > 1e-3, "the seed has no effect");
    }
    Ok(())
}

#[test]
fn resuming_from_state_and_progress_continues_bit_identically() -> Result<()> {
    resume_bit_identically(GanConfig::new(tiny_anime300(), 4, 5))?;
    // The moving average of G is state too (and its decay's warm-up follows the resumed update count).
    resume_bit_identically(GanConfig { ema: 0.999, ..GanConfig::new(tiny_anime300(), 4, 5) })?;
    // Spectral norm's vectors are state; DiffAugment draws from the random stream.
    resume_bit_identically(with_sn_and_diffaugment(GanConfig::new(tiny_dcgan(), 4, 5)))
}

fn resume_bit_identically(config: GanConfig) -> Result<()> {
    // anime300 draws dropout masks too, so the random stream's position matters.
    let mut whole = Runner::new(&config, &cpu(true, 1))?;
    run_steps(&mut whole, &config, 0, 6)?;

    let mut first = Runner::new(&config, &cpu(true, 1))?;
    run_steps(&mut first, &config, 0, 3)?;
    let (state, progress) = (first.state()?, first.progress());
    drop(first);
    let progress: anime_pipe::gan::runner::Progress = serde_json::from_str(&serde_json::to_string(&progress)?)?;
    let mut resumed = Runner::new(&config, &cpu(true, 1))?;
    resumed.load_state(state)?;
    resumed.set_progress(&progress)?;
    run_steps(&mut resumed, &config, 3, 6)?;
    assert!(resumed.state()? == whole.state()?, "the resumed run diverged");
    assert_eq!(resumed.progress(), whole.progress());
    Ok(())
}

#[test]
fn load_state_rejects_missing_unknown_and_misshapen_tensors() -> Result<()> {
    let config = GanConfig::new(tiny_dcgan(), 4, 1);
    let mut r = Runner::new(&config, &cpu(true, 1))?;
    let good = r.state()?;
    let mut missing = good.clone();
    missing.remove("d.conv1.weight.adam_v");
    assert!(r.load_state(missing).unwrap_err().to_string().contains("d.conv1.weight.adam_v"));
    let mut unknown = good.clone();
    unknown.insert("d.extra".into(), (vec![1], vec![0.0]));
    assert!(r.load_state(unknown).unwrap_err().to_string().contains("d.extra"));
    let mut misshapen = good.clone();
    misshapen.insert("g.bn1.bias".into(), (vec![3], vec![0.0; 3]));
    assert!(r.load_state(misshapen).unwrap_err().to_string().contains("g.bn1.bias"));
    r.load_state(good)?;
    Ok(())
}

#[test]
fn g_step_leaves_d_parameters_unchanged_and_updates_g() -> Result<()> {
    let config = GanConfig::new(tiny_dcgan(), 4, 2);
    let mut r = Runner::new(&config, &cpu(false, 1))?;
    // By construction: the G step graph updates no D parameter and reads every one of them.
    let g_step = r.graphs().find(|g| g.kind == steps::StepKind::GStep).expect("split runner has a G step");
    let updated: Vec<&str> = g_step.inputs_with(Role::State).map(|p| p.name.as_str()).collect();
    assert!(updated.iter().all(|n| n.starts_with("g.") || n.contains("running_")), "{updated:?}");
    assert!(g_step.inputs_with(Role::FrozenState).any(|p| p.name == "d.conv1.weight"));

    let s0 = r.state()?;
    r.step_d(&batch_bytes(&config, 0))?;
    let s1 = r.state()?;
    r.step_g()?;
    let s2 = r.state()?;
    let (d0, d1, d2) = (params_with_prefix(&s0, "d."), params_with_prefix(&s1, "d."), params_with_prefix(&s2, "d."));
    let (g0, g1, g2) = (params_with_prefix(&s0, "g."), params_with_prefix(&s1, "g."), params_with_prefix(&s2, "g."));
    assert!(max_rel_diff(&d1, &d0) > 1e-3, "the D step did not change D");
    assert!(g1 == g0, "the D step changed G's parameters");
    assert!(d2 == d1, "the G step changed D's parameters");
    for (name, (_, after)) in &g2 {
        assert!(after != &g1[name].1, "the G step did not change {name}");
    }
    Ok(())
}

/// A 16x16 "dataset": a fixed colour gradient (red along x, green along y, blue constant) plus uniform noise.
fn gradient_images(n: usize, size: usize, seed: u64) -> Vec<u8> {
    let noise = bytes(n * size * size * 3, seed);
    let mut out = Vec::with_capacity(noise.len());
    for i in 0..n * size * size {
        let (y, x) = ((i / size) % size, i % size);
        let clean = [x as f32 / (size - 1) as f32 * 200.0 + 28.0, y as f32 / (size - 1) as f32 * 200.0 + 28.0, 128.0];
        for (c, base) in clean.iter().enumerate() {
            let jitter = noise[3 * i + c] as f32 / 255.0 * 40.0 - 20.0;
            out.push((base + jitter).round().clamp(0.0, 255.0) as u8);
        }
    }
    out
}

/// Mean over samples of the generator's `image_u8` output, in [-1, 1] units, `[S, S, 3]` flattened.
fn mean_generated(runner: &mut Runner, n: usize) -> Result<Vec<f32>> {
    let arch = runner.config().arch.clone();
    let onnx = runner.generator_onnx_bytes(n, GeneratorWeights::Average)?;
    let options = anime_pipe::runtime::SessionOptions { device: Device::Cpu, threads: 1, optimize: true };
    let (mut session, _) = anime_pipe::runtime::session_from_bytes(&onnx, &options)?;
    // Fixed latents: a seeded normal-ish sample (sum of uniforms), the same at every call.
    let u = bytes(n * arch.nz * 4, 99);
    let z: Vec<f32> = u.chunks(4).map(|c| c.iter().map(|&b| b as f32 / 255.0).sum::<f32>() - 2.0).collect();
    let input = ort::value::Tensor::from_array((vec![n, arch.nz], z))?;
    let out = session.run(ort::inputs![steps::GEN_Z => input])?;
    let (_, pixels) = out[steps::GEN_IMAGE_U8].try_extract_tensor::<u8>()?;
    let per_image = arch.image_size * arch.image_size * 3;
    let mut mean = vec![0.0f32; per_image];
    for image in pixels.chunks(per_image) {
        for (m, &p) in mean.iter_mut().zip(image) {
            *m += (p as f32 / 127.5 - 1.0) / n as f32;
        }
    }
    Ok(mean)
}

#[test]
fn tiny_gan_learns_a_colour_gradient() -> Result<()> {
    learns_a_colour_gradient(GanConfig::new(tiny_dcgan(), 16, 7))
}

#[test]
fn tiny_gan_learns_a_colour_gradient_with_the_hinge_loss() -> Result<()> {
    learns_a_colour_gradient(GanConfig { loss: GanLoss::Hinge, ..GanConfig::new(tiny_dcgan(), 16, 7) })
}

#[test]
fn tiny_gan_learns_a_colour_gradient_with_a_spectrally_normalised_discriminator() -> Result<()> {
    let config = GanConfig::new(Arch { spectral_norm: true, ..tiny_dcgan() }, 16, 7);
    learns_a_colour_gradient(GanConfig { loss: GanLoss::Hinge, ..config })
}

#[test]
fn tiny_gan_learns_a_colour_gradient_through_differentiable_augmentation() -> Result<()> {
    // D only ever sees recoloured, shifted, cut-out images, yet G learns the un-augmented distribution.
    learns_a_colour_gradient(GanConfig { diffaugment: DiffAugment::ALL, ..GanConfig::new(tiny_dcgan(), 16, 7) })
}

#[test]
fn spectral_norm_vectors_are_updated_by_the_d_step_only() -> Result<()> {
    let config = with_sn_and_diffaugment(GanConfig::new(tiny_dcgan(), 4, 2));
    let mut r = Runner::new(&config, &cpu(false, 1))?;
    let vectors = |s: &State| -> State {
        s.iter().filter(|(n, _)| n.ends_with(".weight_u")).map(|(n, v)| (n.clone(), v.clone())).collect()
    };
    let s0 = vectors(&r.state()?);
    assert_eq!(s0.len(), 3, "one vector per D convolution: two downsampling layers at 16x16 and the logit layer");
    assert!(!r.state()?.keys().any(|n| n.starts_with("d.bn")), "a spectrally normalised DCGAN D has no batch norm");
    r.step_d(&batch_bytes(&config, 0))?;
    let s1 = vectors(&r.state()?);
    r.step_g()?;
    let s2 = vectors(&r.state()?);
    for (name, (_, v)) in &s1 {
        assert!(v != &s0[name].1, "the D step did not advance {name}");
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{name}: the stored vector is normalised ({norm})");
    }
    assert!(s2 == s1, "the G step changed a spectral-norm vector");
    Ok(())
}

#[test]
fn the_moving_average_of_a_tiny_gan_learns_a_colour_gradient() -> Result<()> {
    // mean_generated exports the average: it must have learned too, not lag at the initial weights.
    learns_a_colour_gradient(GanConfig { ema: 0.99, ..GanConfig::new(tiny_dcgan(), 16, 7) })
}

fn learns_a_colour_gradient(mut config: GanConfig) -> Result<()> {
    let hyper = AdamHyper { lr: 1e-3, ..AdamHyper::default() };
    (config.d, config.g) = (hyper, hyper);
    let mut r = Runner::new(&config, &RunnerOptions { fetch_metrics_every: 10, ..cpu(true, 0) })?;
    let target: Vec<f32> = gradient_images(1, 16, 0)
        .iter()
        .zip(gradient_images(1, 16, 1)) // two noisy copies average towards the clean gradient; noise is ±20/127.5
        .map(|(&a, b)| (a as f32 + b as f32) / 255.0 - 1.0)
        .collect();
    let mse = |m: &[f32]| m.iter().zip(&target).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / m.len() as f32;
    let before = mse(&mean_generated(&mut r, 64)?);
    let mut fetched = 0;
    for step in 0..300u64 {
        if let Some(m) = r.step(&gradient_images(16, 16, 1000 + step))? {
            fetched += 1;
            assert!(m.d_loss.is_finite() && m.g_loss.is_finite(), "{m:?}");
            assert!((0.0..=1.0).contains(&m.d_real) && (0.0..=1.0).contains(&m.g_fake), "{m:?}");
        }
    }
    assert_eq!(fetched, 30, "metrics every 10 of 300 iterations");
    let after = mse(&mean_generated(&mut r, 64)?);
    eprintln!("MSE of the mean generated image to the gradient: {before:.4} -> {after:.4}; {:?}", r.metrics()?);
    assert!(before > 0.1, "an untrained generator is far from the gradient: {before}");
    assert!(after < 0.2 * before, "MSE {before} -> {after}");
    Ok(())
}

#[test]
fn the_moving_average_of_g_follows_its_warmed_up_formula_fused_and_split() -> Result<()> {
    use onnxgrad::ema::warmed_up_decay;
    for fused in [true, false] {
        let config = GanConfig { ema: 0.99, ..GanConfig::new(tiny_dcgan(), 4, 3) };
        let mut r = Runner::new(&config, &cpu(fused, 1))?;
        assert!(r.has_average());
        let s0 = r.state()?;
        let g_params = params_with_prefix(&s0, "g.");
        // Every trained G tensor has an average, starting equal to it; nothing else is averaged.
        let averaged: Vec<String> = s0.keys().filter_map(|n| n.strip_prefix("ema.").map(str::to_string)).collect();
        assert_eq!(averaged, g_params.keys().cloned().collect::<Vec<_>>(), "fused={fused}");
        for name in &averaged {
            assert!(s0[&format!("ema.{name}")] == s0[name], "fused={fused}: ema.{name} does not start at {name}");
        }
        let mut previous = s0;
        for t in 1..=3u64 {
            r.step(&batch_bytes(&config, t))?;
            let now = r.state()?;
            let decay = warmed_up_decay(0.99, t) as f32;
            for name in &averaged {
                let key = format!("ema.{name}");
                let (old, new, got) = (&previous[&key].1, &now[name].1, &now[&key].1);
                for ((o, p), e) in old.iter().zip(new).zip(got) {
                    let want = decay * o + (1.0 - decay) * p;
                    assert!(
                        (e - want).abs() <= 1e-5 * want.abs().max(1e-2),
                        "fused={fused} step {t} {key}: {e} vs {want}"
                    );
                }
            }
            previous = now;
        }
        // The exports differ: one carries the average, the other the trained weights.
        let average = r.generator_onnx_bytes(4, GeneratorWeights::Average)?;
        let raw = r.generator_onnx_bytes(4, GeneratorWeights::Raw)?;
        assert!(average != raw, "fused={fused}: the average export equals the raw one");
    }
    // Without a moving average both exports are the trained weights.
    let config = GanConfig::new(tiny_dcgan(), 4, 3);
    let mut r = Runner::new(&config, &cpu(true, 1))?;
    r.step(&batch_bytes(&config, 0))?;
    assert!(!r.has_average() && !r.state()?.keys().any(|n| n.starts_with("ema.")));
    assert!(r.generator_onnx_bytes(4, GeneratorWeights::Average)? == r.generator_onnx_bytes(4, GeneratorWeights::Raw)?);
    Ok(())
}
