//! `anime-pipe graph`: writes the step graphs and the generator as `.onnx` files and describes their inputs and
//! outputs (a table, or JSON with `--json`).
use super::augment::DiffAugment;
use super::models::Arch;
use super::runner::formulation_name;
use super::steps::{self, GanLoss, Optimizer, Port, Role, StepGraph, StepKind, StepOptions};
use crate::workdir::atomic_write;
use anyhow::{Context, Result};
use onnxgrad::Formulation;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What to write.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub arch: Arch,
    pub batch: usize,
    /// Latents per call of generator.onnx (its shapes are static).
    pub samples: usize,
    /// Seed of the initial weights baked into generator.onnx.
    pub seed: u64,
    pub d_optimizer: Optimizer,
    pub g_optimizer: Optimizer,
    /// How operators are written out ([`Graph::lowered`]); native keeps every operator as built.
    pub formulation: Formulation,
    /// The G and fused steps also update a moving average of G's weights (`ema.g.*`, input `ema.decay`).
    pub ema: bool,
    pub loss: GanLoss,
    pub diffaugment: DiffAugment,
}

/// One written file and its interface.
#[derive(Debug, Clone, Serialize)]
pub struct GraphFile {
    pub kind: StepKind,
    pub path: PathBuf,
    pub bytes: usize,
    pub nodes: usize,
    pub inputs: Vec<Port>,
    pub outputs: Vec<Port>,
}

/// The JSON object `anime-pipe graph --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct GraphReport {
    pub arch: Arch,
    pub batch: usize,
    pub samples: usize,
    pub seed: u64,
    /// [`formulation_name`] of the request's formulation.
    pub formulation: String,
    pub files: Vec<GraphFile>,
}

/// Builds every graph (D step, G step, fused step, generator) and writes them into `dir` (created if missing).
pub fn write_graphs(dir: &Path, req: &ExportRequest) -> Result<GraphReport> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut store = steps::init_store(&req.arch, req.seed)?;
    let opts = StepOptions {
        arch: req.arch.clone(),
        batch: req.batch,
        d_optimizer: req.d_optimizer,
        g_optimizer: req.g_optimizer,
        output_gradients: false,
        primitive_backward: false,
        ema: req.ema,
        loss: req.loss,
        diffaugment: req.diffaugment,
    };
    let graphs = [
        steps::d_step(&opts, &mut store)?,
        steps::g_step(&opts, &mut store)?,
        steps::fused_step(&opts, &mut store)?,
        steps::generator_inference(&req.arch, &mut store, req.samples)?,
    ];
    let files = graphs.into_iter().map(|g| write_one(dir, lowered(g, &req.formulation)?)).collect::<Result<_>>()?;
    Ok(GraphReport {
        arch: req.arch.clone(),
        batch: req.batch,
        samples: req.samples,
        seed: req.seed,
        formulation: formulation_name(&req.formulation),
        files,
    })
}

/// `g` with its operators in `formulation`'s form; the ports keep their names, so its interface is unchanged.
fn lowered(g: StepGraph, formulation: &Formulation) -> Result<StepGraph> {
    Ok(StepGraph { graph: g.graph.lowered(formulation)?, ..g })
}

fn write_one(dir: &Path, g: StepGraph) -> Result<GraphFile> {
    let path = dir.join(g.kind.file_name());
    let bytes = g.to_exported_bytes()?;
    atomic_write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(GraphFile {
        kind: g.kind,
        path,
        bytes: bytes.len(),
        nodes: g.graph.nodes().len(),
        inputs: g.inputs,
        outputs: g.outputs,
    })
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Batch => "batch",
        Role::Hyperparameter => "hyperparameter",
        Role::State => "state",
        Role::FrozenState => "state (read only)",
        Role::StateOut => "state (updated)",
        Role::Metric => "metric",
        Role::Output => "output",
    }
}

/// Every port except the bulk of the state, which is summarised per role: a line for each batch input,
/// hyperparameter, metric and output, then counts and a few example names for the state.
pub fn render_table(report: &GraphReport) -> String {
    let mut out = format!(
        "arch {} (image {}x{}, nz {}, ngf {}, ndf {}), batch {}, generator samples {}, formulation {}\n",
        report.arch.name(),
        report.arch.image_size,
        report.arch.image_size,
        report.arch.nz,
        report.arch.ngf,
        report.arch.ndf,
        report.batch,
        report.samples,
        report.formulation
    );
    for f in &report.files {
        out.push_str(&format!("\n── {} ({} nodes, {:.1} MB) ──\n", f.path.display(), f.nodes, f.bytes as f64 / 1e6));
        let mut rows: Vec<[String; 5]> = Vec::new();
        for (direction, ports) in [("in", &f.inputs), ("out", &f.outputs)] {
            for p in ports.iter().filter(|p| !is_state(p.role)) {
                rows.push([
                    direction.into(),
                    p.name.clone(),
                    p.dtype.clone(),
                    format!("{:?}", p.shape),
                    role_name(p.role).into(),
                ]);
            }
            for role in [Role::State, Role::FrozenState, Role::StateOut] {
                let of_role: Vec<&Port> = ports.iter().filter(|p| p.role == role).collect();
                if of_role.is_empty() {
                    continue;
                }
                let elements: usize = of_role.iter().map(|p| p.shape.iter().product::<usize>()).sum();
                let examples: Vec<&str> = of_role.iter().take(2).map(|p| p.name.as_str()).collect();
                rows.push([
                    direction.into(),
                    format!("{} tensors: {}, ...", of_role.len(), examples.join(", ")),
                    "f32".into(),
                    format!("{elements} values"),
                    role_name(role).into(),
                ]);
            }
        }
        out.push_str(&table(&["", "name", "dtype", "shape", "role"], &rows));
    }
    out
}

fn is_state(role: Role) -> bool {
    matches!(role, Role::State | Role::FrozenState | Role::StateOut)
}

fn table(header: &[&str; 5], rows: &[[String; 5]]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&header.map(String::from));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// `anime-pipe graph --help`.
pub const LONG_HELP: &str =
    "Write the GAN's training-step graphs and its generator as standard ONNX files (opset 18, no \
custom operators, no training extensions: any ONNX Runtime runs them, on any execution provider).\n\n\
Files written into --out:\n  \
d_step.onnx     one discriminator update: G forward on z (frozen), D on the real and on the generated images, \
BCE-with-logits loss, Adam\n  \
g_step.onnx     one generator update: G forward, D forward (D frozen, gradients flow through it), BCE loss, Adam\n  \
gan_step.onnx   both in one graph (one whole PyTorch-example iteration, one G forward fewer)\n  \
generator.onnx  inference: z [N, nz] -> image [N, 3, S, S] float in [-1, 1] and image_u8 [N, S, S, 3], weights \
baked in (seeded initial weights here; `anime-pipe train` exports trained ones)\n\n\
Inputs and outputs, by name:\n  \
real [B, S, S, 3] uint8 (NHWC, as in the shards), z [B, nz] float, real_target / fake_target / gen_target [B] \
float (per-sample BCE targets: label smoothing or noise without a rebuild), d.drop_*.mask (anime300's dropout \
masks, 0/1);\n  \
d_adam.* / g_adam.*: lr, beta1, beta2, eps, weight_decay (float scalars) and step (int64 scalar, 1 for the first \
update);\n  \
state: parameters (g.convt1.weight, d.bn2.bias, ...), batch-norm running statistics (g.bn1.running_mean, ...) and \
Adam moments (X.adam_m, X.adam_v) come in as X and go out updated as X.new: feed each X.new back as X for the next \
step; a step also reads the other network's parameters unchanged;\n  \
metrics: d_loss, d_real (mean sigmoid D(x)), d_fake (mean sigmoid D(G(z)) before D's update), g_loss, g_fake \
(after it).\n\n\
Running a step from Python (initial state: parameters from the seeded initialisation, e.g. from a checkpoint, \
moments zero):\n  \
import onnxruntime as ort\n  \
s = ort.InferenceSession('graphs/gan_step.onnx')\n  \
feeds = {i.name: state_or_batch[i.name] for i in s.get_inputs()}\n  \
out = dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))\n  \
state.update({k[:-4]: v for k, v in out.items() if k.endswith('.new')})\n  \
print(out['d_loss'], out['g_loss'])";

/// The architecture named by `--arch`, with `--nz/--ngf/--ndf` overrides.
pub fn arch_from_args(name: &str, nz: Option<usize>, ngf: Option<usize>, ndf: Option<usize>) -> Result<Arch> {
    let mut arch: Arch = name.parse()?;
    arch.nz = nz.unwrap_or(arch.nz);
    arch.ngf = ngf.unwrap_or(arch.ngf);
    arch.ndf = ndf.unwrap_or(arch.ndf);
    arch.validate()?;
    Ok(arch)
}

/// `anime-pipe graph`: writes the graphs into `out` and describes them (a table, or JSON with `--json`).
pub fn run_command(out: &std::path::Path, req: &ExportRequest, reporter: &crate::report::Reporter) -> Result<()> {
    let report = write_graphs(out, req)?;
    if reporter.json {
        println!("{}", serde_json::to_string(&report)?);
    } else if !reporter.quiet {
        print!("{}", render_table(&report));
    }
    Ok(())
}
