//! `anime-pipe bench-step` (hidden): times training iterations of the runner on random data, like
//! `bench/torch_dcgan.py` times PyTorch, and summarises ONNX Runtime profiles by operator and by phase.
use super::models::Arch;
use super::runner::{default_formulation, formulation_name, GanConfig, Runner, RunnerOptions, SessionTuning};
use crate::runtime::Device;
use anyhow::{Context, Result};
use onnxgrad::Formulation;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to time.
#[derive(Debug, Clone)]
pub struct BenchRequest {
    pub arch: Arch,
    pub batches: Vec<usize>,
    pub steps: usize,
    pub warmup: usize,
    /// `true` = fused graph, `false` = D step + G step graphs; each is timed.
    pub fused: Vec<bool>,
    pub device: Device,
    pub threads: usize,
    pub optimize: bool,
    /// Iterations to profile after timing (0: no profile).
    pub profile_steps: usize,
    pub profile_dir: PathBuf,
    pub tuning: SessionTuning,
    /// Formulations to time, each overriding `tuning.formulation` (None: the device's default).
    pub formulations: Vec<Option<Formulation>>,
}

/// One timing, printed as a JSON line (same keys as bench/torch_dcgan.py's).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub tool: &'static str,
    pub arch: String,
    pub batch: usize,
    pub mode: &'static str,
    pub ms_per_step: f64,
    pub ms_min: f64,
    /// Median process CPU time (user + system, all threads) per iteration: the work done, less sensitive than wall
    /// time to other jobs sharing the cores.
    pub cpu_ms_per_step: f64,
    pub steps: usize,
    pub threads: usize,
    pub device: String,
    pub optimize: bool,
    /// Non-default session settings, e.g. "opt_level=2 spinning=false".
    pub tuning: String,
    /// How the graphs were written out ([`formulation_name`]).
    pub formulation: String,
}

/// Times every (batch, mode) and prints each result as it comes; then profiles when asked.
pub fn run(req: &BenchRequest) -> Result<Vec<BenchResult>> {
    let mut results = Vec::new();
    let formulations =
        if req.formulations.is_empty() { vec![req.tuning.formulation] } else { req.formulations.clone() };
    for &batch in &req.batches {
        for &fused in &req.fused {
            for &formulation in &formulations {
                let one = BenchRequest { tuning: SessionTuning { formulation, ..req.tuning }, ..req.clone() };
                let r = time_one(&one, batch, fused)?;
                println!("{}", serde_json::to_string(&r)?);
                results.push(r);
                if req.profile_steps > 0 {
                    let summary = profile_one(&one, batch, fused)?;
                    eprint!("{summary}");
                }
            }
        }
    }
    Ok(results)
}

fn runner(req: &BenchRequest, batch: usize, fused: bool, profile: Option<PathBuf>) -> Result<Runner> {
    let config = GanConfig::new(req.arch.clone(), batch, 1);
    let options = RunnerOptions {
        device: req.device,
        threads: req.threads,
        optimize: req.optimize,
        fused,
        fetch_metrics_every: u64::MAX,
        profile,
    };
    Runner::with_tuning(&config, &options, req.tuning)
}

/// Random real images (the step's cost does not depend on the pixel values).
fn random_batch(batch: usize, size: usize) -> Vec<u8> {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    (0..batch * size * size * 3)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

fn time_one(req: &BenchRequest, batch: usize, fused: bool) -> Result<BenchResult> {
    let mut r = runner(req, batch, fused, None)?;
    let real = random_batch(batch, req.arch.image_size);
    let mut times = Vec::with_capacity(req.steps);
    let mut cpu_times = Vec::with_capacity(req.steps);
    for i in 0..req.warmup + req.steps {
        let t = Instant::now();
        let c = process_cpu_ms();
        r.step(&real)?;
        if i >= req.warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
            cpu_times.push(process_cpu_ms() - c);
        }
    }
    cpu_times.sort_by(f64::total_cmp);
    let m = r.metrics()?;
    anyhow::ensure!(m.d_loss.is_finite() && m.g_loss.is_finite(), "non-finite losses after the benchmark: {m:?}");
    times.sort_by(f64::total_cmp);
    Ok(BenchResult {
        tool: "anime-pipe",
        arch: req.arch.name(),
        batch,
        mode: if fused { "fused" } else { "split" },
        ms_per_step: round2(median(&times)),
        ms_min: round2(times.first().copied().unwrap_or(f64::NAN)),
        cpu_ms_per_step: round2(median(&cpu_times)),
        steps: req.steps,
        threads: req.threads,
        device: format!("{:?}", r.device()).to_lowercase(),
        optimize: req.optimize,
        tuning: describe(&req.tuning),
        formulation: formulation_name(&req.tuning.formulation.unwrap_or_else(|| default_formulation(r.device()))),
    })
}

/// User + system CPU time of this process so far, ms.
fn process_cpu_ms() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return f64::NAN;
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(u.ru_utime) + ms(u.ru_stime)
}

fn describe(t: &SessionTuning) -> String {
    let mut parts = Vec::new();
    if let Some(l) = t.opt_level {
        parts.push(format!("opt_level={l}"));
    }
    if let Some(m) = t.memory_pattern {
        parts.push(format!("memory_pattern={m}"));
    }
    if let Some(s) = t.spinning {
        parts.push(format!("spinning={s}"));
    }
    if t.cuda_graph {
        parts.push("cuda_graph=true".to_string());
    }
    if let Some(on) = t.tf32 {
        parts.push(format!("tf32={on}"));
    }
    if t.primitive_backward {
        parts.push("primitive_backward=true".to_string());
    }
    parts.join(" ")
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn profile_one(req: &BenchRequest, batch: usize, fused: bool) -> Result<String> {
    std::fs::create_dir_all(&req.profile_dir)?;
    let mode = if fused { "fused" } else { "split" };
    let form = req.tuning.formulation.map(|f| formulation_name(&f)).unwrap_or_else(|| "auto".into()).replace(':', "");
    let prefix = req.profile_dir.join(format!("{}_b{batch}_{mode}_{form}_", req.arch.name()));
    let mut r = runner(req, batch, fused, Some(prefix))?;
    let real = random_batch(batch, req.arch.image_size);
    for _ in 0..req.warmup + req.profile_steps {
        r.step(&real)?;
    }
    let files = r.end_profiling()?;
    let mut profile = OpProfile::default();
    for f in &files {
        profile.add_trace(f)?;
    }
    // Warm-up iterations are in the trace too; the table is per profiled iteration, over all of them.
    let iterations = req.warmup + req.profile_steps;
    Ok(profile.render(&format!("{} batch {batch} {mode} {form}", req.arch.name()), iterations, &files))
}

/// Node times from ONNX Runtime traces, by operator type and by phase.
#[derive(Debug, Default)]
pub struct OpProfile {
    /// op type -> (total µs, node executions)
    pub by_op: BTreeMap<String, (f64, u64)>,
    /// phase (forward / backward / adam) -> total µs
    pub by_phase: BTreeMap<&'static str, f64>,
    /// Whole `model_run` time, µs.
    pub run_us: f64,
}

impl OpProfile {
    /// Adds the node events of one profile file (Chrome trace JSON written by ONNX Runtime).
    pub fn add_trace(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let events: Vec<serde_json::Value> = serde_json::from_str(&text).context("parsing the profile")?;
        for e in events {
            let dur = e["dur"].as_f64().unwrap_or(0.0);
            let name = e["name"].as_str().unwrap_or("");
            match e["cat"].as_str() {
                Some("Session") if name == "model_run" => self.run_us += dur,
                Some("Node") if name.ends_with("_kernel_time") => {
                    let op = e["args"]["op_name"].as_str().unwrap_or("?").to_string();
                    let entry = self.by_op.entry(op).or_default();
                    entry.0 += dur;
                    entry.1 += 1;
                    *self.by_phase.entry(phase_of(name)).or_default() += dur;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A table: top operators by total time and the forward/backward/Adam split.
    pub fn render(&self, title: &str, iterations: usize, files: &[PathBuf]) -> String {
        let total: f64 = self.by_op.values().map(|(t, _)| t).sum();
        let per_iter = |us: f64| us / 1e3 / iterations.max(1) as f64;
        let mut ops: Vec<(&String, &(f64, u64))> = self.by_op.iter().collect();
        ops.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
        let mut out = format!(
            "profile: {title}: {:.1} ms/iteration in kernels, {:.1} ms/iteration in runs ({} iterations; {})\n",
            per_iter(total),
            per_iter(self.run_us),
            iterations,
            files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
        );
        out.push_str(&format!("  {:<28} {:>10} {:>7} {:>8}\n", "operator", "ms/iter", "share", "calls"));
        for (op, (us, calls)) in ops.iter().take(14) {
            out.push_str(&format!(
                "  {:<28} {:>10.2} {:>6.1}% {:>8}\n",
                op,
                per_iter(*us),
                100.0 * us / total,
                *calls as usize / iterations.max(1)
            ));
        }
        for (phase, us) in &self.by_phase {
            out.push_str(&format!("  phase {:<22} {:>10.2} {:>6.1}%\n", phase, per_iter(*us), 100.0 * us / total));
        }
        out
    }
}

/// Which part of a step a node belongs to, from onnxgrad's names: backward nodes are named `<forward>.bwd...`,
/// optimiser nodes live under `<param>.adam` and `d_adam` / `g_adam`.
fn phase_of(node: &str) -> &'static str {
    if node.contains(".adam") || node.starts_with("d_adam") || node.starts_with("g_adam") {
        "adam"
    } else if node.contains(".bwd") || node.contains(".grad") {
        "backward"
    } else {
        "forward"
    }
}
