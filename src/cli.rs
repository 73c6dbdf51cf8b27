//! Command-line definitions only (clap derive). No work happens here: `commands` resolves these, with
//! pipeline.yaml, into one request per command. Domain enums stay clap-free: `choice` wraps them at this edge.
use crate::faces::geometry::Border;
use crate::faces::upscale::Method as UpscaleMethod;
use crate::gan::augment::DiffAugment;
use crate::gan::steps::{GanLoss, Optimizer};
use crate::named::Named;
use crate::stages::pack::Fit;
use crate::stages::Stage;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// The value parser of a domain enum: its names (with their help) as the choices.
fn choice<T: Named + Send + Sync>() -> impl TypedValueParser<Value = T> {
    let values = T::ALL.iter().map(|v| PossibleValue::new(v.name()).help(v.help()));
    PossibleValuesParser::new(values).map(|name| T::parse_name(&name).expect("clap checked the name"))
}

#[derive(Debug, Parser)]
#[command(
    name = "anime-pipe",
    version,
    about = "Turn messy anime image collections into clean, reproducible training data.",
    long_about = "Turn messy anime image collections into clean, reproducible training data.\n\n\
Each stage reads the previous stage's Parquet manifest under <workdir>/manifests/ and writes its own, so every step \
is inspectable (polars, pandas, duckdb) and re-runnable:\n\n  \
ingest -> dedup -> [crop -> upscale] -> clean -> pack [-> train -> eval]\n\n\
Typical session:\n  \
anime-pipe ingest                 # sources from pipeline.yaml (or --source PATH)\n  \
anime-pipe dedup                  # exact + near duplicates get `duplicate_of`, nothing is deleted\n  \
anime-pipe clean --min-size 64    # quality filters; every reject has a reason\n  \
anime-pipe pack --size 64         # safetensors shards + manifest, byte-identical on re-runs\n  \
anime-pipe run                    # all stages in pipeline.yaml, skipping up-to-date ones\n  \
anime-pipe lock                   # pipeline.lock: what every stage produced (commit it)\n  \
anime-pipe run --locked           # in CI: exit 3, naming the stage, when the dataset differs from the lock\n  \
anime-pipe stats                  # what each manifest holds",
    after_help = "Config: pipeline.yaml in the current directory unless --config is given (see README.md for every key)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Pipeline config [default: ./pipeline.yaml if it exists, else built-in defaults]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where manifests/, cache/ and shards/ live [default: the config file's directory, else .]
    #[arg(long, global = true, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Worker threads (results are identical for any value) [default: all cores]
    #[arg(short = 'j', long = "threads", global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// No progress bars and no summary table (errors are still printed)
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More log output (-v: info, -vv: debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print the stage summary as one JSON object on stdout (for scripts)
    #[arg(long, global = true)]
    pub json: bool,
    /// Where ONNX models run: auto (CUDA if it can be registered, else CPU), cpu, cuda or cuda:N [config: device, default auto]
    #[arg(long, global = true, value_name = "DEVICE")]
    pub device: Option<String>,
    /// Work on partition K of N (from 0) of ingest, crop, upscale, clean or pack; without it, read from a Slurm,
    /// Kubernetes, AWS Batch or Google Batch array job's environment. `anime-pipe merge STAGE` assembles the parts
    #[arg(long, global = true, value_name = "K/N")]
    pub partition: Option<String>,
    /// The number of partitions, when the scheduler gives only an index (Kubernetes Indexed Jobs: the Job's
    /// completions), or to re-submit part of a Slurm array (then the array index is the partition) [env:
    /// ANIME_PIPE_PARTITIONS]
    #[arg(long, global = true, value_name = "N")]
    pub partitions: Option<u32>,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process; boxing would only obscure the clap definitions
pub enum Command {
    /// Scan sources (folders, .zip, .tar, .tar.gz) into the content-addressed cache and manifests/ingest.parquet
    Ingest(IngestArgs),
    /// Mark exact (bytes, pixels) and near (perceptual hash) duplicates in manifests/dedup.parquet
    ///
    /// Nothing is decoded: ingest's measures are read from ingest.parquet. A re-run reuses the near pairs the last
    /// run found (cache/memo/dedup/) and searches only pairs that involve a new picture; the groups are exactly a
    /// fresh run's (the summary says how many pictures were reused and searched).
    Dedup(DedupArgs),
    /// Detect faces (FaceBoxes/YOLO via ONNX Runtime) and cut square crops into the cache and manifests/crop.parquet
    Crop(CropArgs),
    /// Upscale items smaller than the training size (Lanczos, waifu2x or Real-ESRGAN) into manifests/upscale.parquet
    Upscale(UpscaleArgs),
    /// Score sharpness, colourfulness, entropy and size; reject with reasons into manifests/clean.parquet
    Clean(CleanArgs),
    /// Resize to square training sizes and write safetensors shards + manifests/pack.parquet
    Pack(PackArgs),
    /// Run the stages listed in pipeline.yaml (data stages, then train and eval when listed), skipping those whose
    /// inputs and settings did not change
    #[command(after_help = RUN_AFTER_HELP)]
    Run(RunArgs),
    /// Assemble the parts of a partitioned stage (--partition K/N, job arrays) into its manifest
    #[command(after_help = MERGE_HELP)]
    Merge(MergeArgs),
    /// Write pipeline.lock beside pipeline.yaml: per stage its inputs fingerprint, manifest checksum and row counts
    /// by status and reason; the shard checksums; the dataset digest; the anime-pipe and ONNX Runtime versions
    #[command(after_help = LOCK_AFTER_HELP)]
    Lock,
    /// Compare two manifests, two workdirs, or a pipeline.lock with a workdir: rows added, removed and changed
    #[command(after_help = DIFF_AFTER_HELP)]
    Diff(DiffArgs),
    /// Summarise every manifest: counts, rejects by reason, size histograms
    Stats(StatsArgs),
    /// Check cache objects and shards against the checksums in the manifests
    Verify,
    /// Delete cache objects no manifest or current memo needs, stale memos and merged parts; print bytes freed
    Gc(GcArgs),
    /// FID and KID (Inception pool3) of a training run's checkpoints or one generator; report.html for runs
    Eval(EvalArgs),
    /// Train a DCGAN on the packed shards (ONNX Runtime, CPU or CUDA) into runs/<name>/: checkpoints, samples, curves
    #[command(after_help = TRAIN_EXAMPLES)]
    Train(TrainArgs),
    /// Generate images with an exported generator (runs/<name>/generator.onnx): grids and latent-space walks
    Sample(SampleArgs),
    /// Write a small synthetic dataset (with duplicates and broken files) and a pipeline.yaml to try the tool on
    SampleData(SampleDataArgs),
    /// Write the GAN's training-step graphs (D step, G step, fused) and generator as standard ONNX files
    #[command(long_about = crate::gan::export::LONG_HELP)]
    Graph(GraphArgs),
    /// List the ONNX models the config uses (where found, sha256 against the pins, inputs/outputs); `models fetch`
    /// downloads them
    #[command(after_help = MODELS_HELP)]
    Models(ModelsArgs),
    /// Print a shell completion script to stdout (e.g. `anime-pipe completions bash > ~/.local/share/bash-completion/completions/anime-pipe`)
    Completions(CompletionsArgs),
    /// Write the man page (roff): to stdout, or one page per subcommand into --dir
    Man(ManArgs),
    /// Time GAN training iterations on random data (bench/train_step.sh)
    #[command(hide = true)]
    BenchStep(BenchStepArgs),
}

const RUN_AFTER_HELP: &str = "\
`stages:` in pipeline.yaml may end with `train` (train on the packed shards into runs/<preset>-<key>/, where the key \
is a hash of the resolved `train:` section and the dataset digest: a re-run with both unchanged finds that run \
complete and skips it; an interrupted one is resumed) and `eval` (FID/KID of its checkpoints; skipped, saying so, \
when models.fid_inception is not found).

Exit status: 0 done (with --locked: and identical to pipeline.lock), 3 with --locked: the workdir differs from \
pipeline.lock (each differing stage is named; `anime-pipe diff` shows the rows), 2 an error, 130 Ctrl-C.";

const LOCK_AFTER_HELP: &str = "\
Run it after `anime-pipe run`, and commit pipeline.lock: `anime-pipe run --locked` (in CI) then fails, naming the \
stage and what changed, whenever the dataset no longer matches. Exit status: 0 written, 2 an error (e.g. a stage \
of pipeline.yaml has no manifest yet).";

const DIFF_AFTER_HELP: &str = "\
A and B are each a manifest (.parquet), a workdir (or its manifests/ folder), or a pipeline.lock (then compared \
stage by stage with the other side, a workdir, under the current pipeline.yaml). Rows are matched by `key` (pack rows \
by key and size); a row is changed when its status, reason, duplicate_of, object (the image bytes) or split \
differ, or a score (sharpness, colorfulness, entropy, detector score, aspect) differs beyond --tolerance.

Examples:
  anime-pipe diff baseline/ .                       # two workdirs, every stage
  anime-pipe diff old/clean.parquet manifests/clean.parquet
  anime-pipe diff pipeline.lock .                   # what `run --locked` checks
  anime-pipe --json diff baseline/ . > diff.json

Exit status: 0 no differences, 3 differences, 2 an error.";
const MODELS_HELP: &str = "\
Lookup order for each model: models.<key> in pipeline.yaml (authoritative when set), then $ANIME_PIPE_MODELS/<file>, \
then $XDG_CACHE_HOME/anime-pipe/models/<file> (~/.cache/anime-pipe/models), then ../shared/models/<file> beside the \
config (this repository's development default).

Verdicts: ok (pinned bytes, inputs/outputs as the stage expects), ok-unpinned (fits, but not a file the project \
knows), MISSING, BAD (cannot be loaded, or wrong inputs/outputs: exit status 2).

Examples:
  anime-pipe models
  anime-pipe models fetch --from https://mirror.example.org/anime-pipe/models
  anime-pipe models fetch anime_faceboxes fid_inception --from /mnt/share/models";

#[derive(Debug, Args, Clone, Default)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub action: Option<ModelsAction>,
}

#[derive(Debug, Subcommand, Clone)]
pub enum ModelsAction {
    /// Fetch pinned model files from a mirror: resumes partial downloads, checks sha256 before installing
    Fetch(ModelsFetchArgs),
}

#[derive(Debug, Args, Clone)]
pub struct ModelsFetchArgs {
    /// Pinned files (e.g. anime_faceboxes.onnx or anime_faceboxes) or models: keys (face_detector) [default: all]
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Mirror: an http(s) URL prefix (NAME is appended) or a folder holding the files
    #[arg(long, value_name = "URL_OR_DIR")]
    pub from: String,
    /// Model directory to install into [default: $ANIME_PIPE_MODELS, else ~/.cache/anime-pipe/models]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct CompletionsArgs {
    /// Shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args, Clone, Default)]
pub struct ManArgs {
    /// Write anime-pipe.1 and anime-pipe-<command>.1 into DIR instead of printing anime-pipe.1
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

const TRAIN_EXAMPLES: &str = "\
Examples:
  anime-pipe train --preset dcgan64 --epochs 200     # on shards/64/ (anime-pipe pack)
  anime-pipe train --preset anime300 --crop 0.1 --rotate 5 --name a300
  anime-pipe train --resume runs/a300 --epochs 300   # continue or extend a run

Ctrl-C finishes the current step, writes a checkpoint and a sample grid, and exits with status 130 (a second \
Ctrl-C exits at once). Outputs in runs/<name>/: config.json, metrics.parquet, loss.png, samples/, progress.png, \
checkpoints/, generator.onnx (for `anime-pipe sample` and `anime-pipe eval`).";

#[derive(Debug, Args, Clone, Default)]
pub struct IngestArgs {
    /// Ingest these folders/archives instead of the config's sources (name = file stem; repeatable)
    #[arg(long = "source", value_name = "PATH")]
    pub sources: Vec<PathBuf>,
    /// Mark --source inputs as already-cropped faces (e.g. the Kaggle Anime Face Dataset)
    #[arg(long, requires = "sources")]
    pub already_cropped: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct DedupArgs {
    /// Near-duplicate threshold: max Hamming distance between 64-bit perceptual hashes [config: dedup.phash_threshold, default 6]
    #[arg(long, value_name = "BITS")]
    pub threshold: Option<u32>,
    /// Only exact duplicates (bytes and pixels); skip the perceptual-hash search
    #[arg(long)]
    pub no_near: bool,
    /// Skip the search for cropped copies (window pHashes); keep the whole-image pHash search [config: dedup.crops, default true]
    #[arg(long)]
    pub no_crops: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct CropArgs {
    /// Detector scale; repeat for several, merged by NMS (2 finds faces of 50-100 px) [config: crop.scales, default 1 2]
    #[arg(long = "scale", value_name = "F")]
    pub scales: Vec<f64>,
    /// Minimum detector score for a face to be cropped [config: crop.score_threshold, default 0.5]
    #[arg(long, value_name = "P")]
    pub score_threshold: Option<f64>,
    /// Reject faces whose box's shorter side is below this many source pixels [config: crop.min_face_size, default 32]
    #[arg(long, value_name = "PX")]
    pub min_face_size: Option<u32>,
    /// Crop at most this many faces per image, best first [config: crop.max_faces, default 64]
    #[arg(long, value_name = "N")]
    pub max_faces: Option<u32>,
    /// Extra crop size as a fraction of the face box (0.5 = a quarter on each side) [config: crop.margin, default 0.5]
    #[arg(long, value_name = "F")]
    pub margin: Option<f64>,
    /// What to do where a crop leaves the image [config: crop.border, default clamp]
    #[arg(long, value_parser = choice::<Border>())]
    pub border: Option<Border>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct UpscaleArgs {
    /// Upscale items whose shorter side is below this to exactly this [config: upscale.target, default: largest pack size]
    #[arg(long, value_name = "PX")]
    pub target: Option<u32>,
    /// Upscaler [config: upscale.method, default lanczos]
    #[arg(long, value_parser = choice::<UpscaleMethod>())]
    pub method: Option<UpscaleMethod>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct CleanArgs {
    /// Reject images whose shorter side is below this many pixels [config: clean.min_size, default 64]
    #[arg(long, value_name = "PX")]
    pub min_size: Option<u32>,
    /// Reject images whose longer/shorter side ratio exceeds this [config: clean.max_aspect, default 2.5]
    #[arg(long, value_name = "RATIO")]
    pub max_aspect: Option<f64>,
    /// Reject blurry images: variance of the Laplacian below this [config: clean.min_sharpness, default 0 = off]
    #[arg(long, value_name = "SCORE")]
    pub min_sharpness: Option<f64>,
    /// Reject grayscale/monochrome images: colourfulness below this [config: clean.min_colorfulness, default 0 = off]
    #[arg(long, value_name = "SCORE")]
    pub min_colorfulness: Option<f64>,
    /// Reject low-information images: luma histogram entropy (bits) below this [config: clean.min_entropy, default 0 = off]
    #[arg(long, value_name = "BITS")]
    pub min_entropy: Option<f64>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct PackArgs {
    /// Output size in pixels (square); repeat for several sizes [config: pack.sizes, default 64]
    #[arg(long = "size", value_name = "PX")]
    pub sizes: Vec<u32>,
    /// How non-square images become square [config: pack.fit, default crop]
    #[arg(long, value_parser = choice::<Fit>())]
    pub fit: Option<Fit>,
    /// Samples per shard file [config: pack.shard_samples, default 4096]
    #[arg(long, value_name = "N")]
    pub shard_samples: Option<usize>,
    /// Fraction of samples assigned to the validation split, by hash [config: pack.val_fraction, default 0.05]
    #[arg(long, value_name = "F")]
    pub val_fraction: Option<f64>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Re-run every data stage even if its inputs did not change (a complete training run is still not retrained)
    #[arg(long)]
    pub force: bool,
    /// Then compare the workdir with pipeline.lock; exit with status 3, naming each stage that differs, if it does
    #[arg(long)]
    pub locked: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct DiffArgs {
    /// A manifest (.parquet), a workdir, or a pipeline.lock
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// A manifest (.parquet), a workdir, or a pipeline.lock
    #[arg(value_name = "B")]
    pub b: PathBuf,
    /// Only this stage (with two workdirs)
    #[arg(long, value_name = "STAGE", value_parser = choice::<Stage>())]
    pub stage: Option<Stage>,
    /// Scores within this (absolute, or relative above 1) count as equal
    #[arg(long, value_name = "T", default_value_t = 1e-6)]
    pub tolerance: f64,
}

const MERGE_HELP: &str = "\
A partition computes its items' results (kept in cache/memo/ and ingest's re-run index) and writes manifests/parts/<stage>/<fingerprint>/\
part-K-of-N.parquet plus a completion marker. merge checks that all N parts of the stage's current inputs are done \
and writes the stage's manifest, byte-identical to an unpartitioned run. The next stage merges by itself when all \
parts are done; otherwise it names the missing partitions.

Example (Slurm): sbatch --array=0-3 --wrap 'anime-pipe crop' && anime-pipe merge crop
The whole chain, every stage but dedup as an array: docs/cluster.md";

#[derive(Debug, Args, Clone, Default)]
pub struct GcArgs {
    /// Only count what would be deleted
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args, Clone)]
pub struct MergeArgs {
    /// The partitioned stage (ingest, crop, upscale, clean or pack)
    #[arg(value_parser = choice::<Stage>())]
    pub stage: Stage,
}

#[derive(Debug, Args, Clone, Default)]
pub struct StatsArgs {
    /// Only this stage's manifest (ingest, dedup, clean, pack)
    #[arg(long)]
    pub stage: Option<String>,
    /// Also write a PNG grid of the face crops in manifests/crop.parquet (96 px cells, with scores) to PATH
    #[arg(long, value_name = "PATH")]
    pub contact_sheet: Option<PathBuf>,
}

#[derive(Debug, Args, Clone, Default)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["run", "model"])))]
pub struct EvalArgs {
    /// Training run directory (or a run name under <workdir>/runs): evaluates its checkpoints, writes eval.parquet
    /// and report.html there
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    /// One exported generator (.onnx) instead of a run; results are printed only
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Only these epochs' checkpoints, comma-separated (e.g. 100,200,300) [default: every checkpoint]
    #[arg(long, value_delimiter = ',', value_name = "EPOCHS", requires = "run")]
    pub checkpoints: Vec<u32>,
    /// Generated samples per generator [config: eval.samples, default 10000]
    #[arg(short = 'n', long = "samples", value_name = "N")]
    pub samples: Option<usize>,
    /// Seed of the latents and of KID's subsets [config: eval.seed, default 0]
    #[arg(long, value_name = "SEED")]
    pub seed: Option<u64>,
    /// Images per generator / Inception batch [config: eval.batch_size, default 50]
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Reference split of the packed dataset [config: eval.split, default train]
    #[arg(long, value_name = "SPLIT")]
    pub split: Option<String>,
    /// Reference pack size [default: the generator's output size]
    #[arg(long, value_name = "PX")]
    pub size: Option<u32>,
    /// The FID Inception model [config: models.fid_inception, default: looked up, see `anime-pipe models`]
    #[arg(long, value_name = "PATH")]
    pub inception: Option<PathBuf>,
    /// KID subsets [config: eval.kid_subsets, default 100]
    #[arg(long, value_name = "N")]
    pub kid_subsets: Option<usize>,
    /// KID subset size [config: eval.kid_subset_size, default 1000]
    #[arg(long, value_name = "N")]
    pub kid_subset_size: Option<usize>,
    /// Use only the first N reference images in pack order [config: eval.max_reference, default all]
    #[arg(long, value_name = "N")]
    pub max_reference: Option<usize>,
    /// Re-evaluate checkpoints that eval.parquet already holds with the same settings
    #[arg(long)]
    pub force: bool,
    /// Also write each generator's Inception features to DIR/<generator>.safetensors (for bench/fid_reference.py)
    #[arg(long, value_name = "DIR")]
    pub save_features: Option<PathBuf>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct TrainArgs {
    /// Hyperparameter preset: dcgan64, lightning1000, anime300, getchu, dcgan128 [config: train.preset, default dcgan64]
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Continue the run in DIR from its latest checkpoint, with its own config (only --epochs, --steps and the
    /// *-every/--prefetch flags may change; on CPU the result is bit-identical to an uninterrupted run, at any -j)
    #[arg(long, value_name = "DIR", conflicts_with = "name")]
    pub resume: Option<PathBuf>,
    /// Run directory name under <workdir>/runs/ [default: <preset>-<YYYYmmdd-HHMMSS> (UTC)]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Train for this many epochs [config: train.epochs, default: the preset's]
    #[arg(long, value_name = "N")]
    pub epochs: Option<u64>,
    /// Stop after this many steps (D+G iterations), whichever of --epochs/--steps comes first [config: train.steps]
    #[arg(long, value_name = "N")]
    pub steps: Option<u64>,
    /// Architecture: dcgan64, dcgan128, anime300 [config: train.arch, default: the preset's]
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Image size in pixels; shards/<size>/ must exist [config: train.image_size, default: the architecture's]
    #[arg(long, value_name = "PX")]
    pub image_size: Option<u32>,
    /// Latent vector size [config: train.latent]
    #[arg(long, value_name = "N")]
    pub latent: Option<usize>,
    /// Generator base width (ngf) [config: train.g_width, default 64]
    #[arg(long, value_name = "N")]
    pub g_width: Option<usize>,
    /// Discriminator base width (ndf) [config: train.d_width, default 64]
    #[arg(long, value_name = "N")]
    pub d_width: Option<usize>,
    /// Batch size [config: train.batch_size]
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// adam (weight decay as L2) or adamw (decoupled) [config: train.optimizer, default adam]
    #[arg(long, value_name = "OPT", value_parser = choice::<Optimizer>())]
    pub optimizer: Option<Optimizer>,
    /// Discriminator learning rate [config: train.lr_d]
    #[arg(long, value_name = "LR")]
    pub lr_d: Option<f64>,
    /// Generator learning rate [config: train.lr_g]
    #[arg(long, value_name = "LR")]
    pub lr_g: Option<f64>,
    /// Discriminator Adam betas, e.g. 0.5,0.999 [config: train.betas_d]
    #[arg(long, value_name = "B1,B2", value_parser = parse_betas)]
    pub betas_d: Option<[f64; 2]>,
    /// Generator Adam betas, e.g. 0.5,0.999 [config: train.betas_g]
    #[arg(long, value_name = "B1,B2", value_parser = parse_betas)]
    pub betas_g: Option<[f64; 2]>,
    /// Weight decay of both optimisers [config: train.weight_decay, default 0]
    #[arg(long, value_name = "WD")]
    pub weight_decay: Option<f64>,
    /// D's target for real images; 0.9 = one-sided label smoothing [config: train.real_label, default 1]
    #[arg(long, value_name = "T")]
    pub real_label: Option<f64>,
    /// Probability of flipping each of D's labels (noisy labels) [config: train.label_flip, default 0]
    #[arg(long, value_name = "P")]
    pub label_flip: Option<f64>,
    /// Discriminator steps per generator step [config: train.d_steps, default 1]
    #[arg(long, value_name = "N")]
    pub d_steps: Option<u32>,
    /// Keep a moving average of G's weights with this decay (0.999 is usual; warmed up over the first steps);
    /// generator.onnx then carries the average, generator.raw.onnx the trained weights [config: train.ema,
    /// default 0 = off]
    #[arg(long, value_name = "DECAY")]
    pub ema: Option<f64>,
    /// Adversarial loss: bce (DCGAN's, with the label options above) or hinge (D: relu(1 - D(x)) + relu(1 +
    /// D(G(z))), G: -D(G(z))) [config: train.loss, default bce]
    #[arg(long, value_name = "LOSS")]
    pub loss: Option<GanLoss>,
    /// Differentiable augmentation of every image D sees, real and generated, inside the step graph so G learns
    /// through it (DiffAugment): a list of color, translation, cutout, or none; for small sets (10k-30k images)
    /// [config: train.diffaugment, default none]
    #[arg(long, value_name = "POLICY")]
    pub diffaugment: Option<DiffAugment>,
    /// Spectral normalisation of every D weight (one power iteration per step, its vectors checkpointed); the
    /// DCGAN discriminator then has no batch norm [config: train.spectral_norm, default false]
    #[arg(long)]
    pub spectral_norm: bool,
    /// Seed of initialisation, shuffling, augmentation and latents [config: train.seed, default 1]
    #[arg(long, value_name = "SEED")]
    pub seed: Option<u64>,
    /// Pack split to train on [config: train.split, default train]
    #[arg(long, value_name = "SPLIT")]
    pub split: Option<String>,
    /// No horizontal-flip augmentation [config: train.flip: false]
    #[arg(long)]
    pub no_flip: bool,
    /// Random translation of up to N pixels, edges replicated [config: train.translate, default 0]
    #[arg(long, value_name = "PX")]
    pub translate: Option<u32>,
    /// Random crop: keep 1-F..1 of the side at a random place, scaled back (0.1 = small crops) [config: train.crop,
    /// default 0]
    #[arg(long, value_name = "F")]
    pub crop: Option<f64>,
    /// Random rotation of up to DEG degrees either way, edges replicated [config: train.rotate, default 0]
    #[arg(long, value_name = "DEG")]
    pub rotate: Option<f64>,
    /// Sample grid every N epochs [config: train.sample_every, default 1]
    #[arg(long, value_name = "N")]
    pub sample_every: Option<u64>,
    /// Checkpoint (+ generator.onnx) every N epochs [config: train.checkpoint_every]
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<u64>,
    /// Read losses from the device and log them every N steps [config: train.log_every, default 10]
    #[arg(long, value_name = "N")]
    pub log_every: Option<u64>,
    /// Score the generator every N steps (and at the end) by FID against the training images, with the FID
    /// Inception (models.fid_inception) and eval's reference cache: the FID goes into metrics.parquet, and the
    /// best-scoring generator is kept as best.generator.onnx with best.json [config: train.eval_every, default 0 =
    /// off]
    #[arg(long, value_name = "N")]
    pub eval_every: Option<u64>,
    /// Generated samples per in-training FID (small and fast; FIDs compare only at equal counts) [config:
    /// train.eval_samples, default 1000]
    #[arg(long, value_name = "N")]
    pub eval_samples: Option<usize>,
    /// Batches prepared ahead by the loader thread [config: train.prefetch, default 4]
    #[arg(long, value_name = "N")]
    pub prefetch: Option<usize>,
    /// Measure the data loader alone: assemble N batches, print batches/s, train nothing
    #[arg(long, value_name = "N", hide = true)]
    pub bench_loader: Option<u64>,
    /// Testing: feed a NaN latent at this step to exercise the divergence stop
    #[arg(long, value_name = "STEP", hide = true)]
    pub debug_nan_at_step: Option<u64>,
    /// Run separate D and G step graphs instead of the fused one (same values, slower)
    #[arg(long, hide = true)]
    pub split_graphs: bool,
    /// Write ONNX Runtime profiles (Chrome trace JSON) with this path prefix
    #[arg(long, value_name = "PREFIX", hide = true)]
    pub profile: Option<PathBuf>,
    /// How the step graphs are written out for ONNX Runtime: auto (the device's default), native, subpixel or
    /// subpixel:N (the same maths: only float rounding and the speed differ; see `anime-pipe bench-step`)
    #[arg(long, default_value = "auto", value_name = "F")]
    pub formulation: String,
    /// Batch norm's backward as the derivative of its primitives (the formulation before the closed form)
    #[arg(long, hide = true)]
    pub primitive_backward: bool,
}

/// `B1,B2` for `--betas-d` / `--betas-g`.
fn parse_betas(s: &str) -> Result<[f64; 2], String> {
    let parts: Vec<&str> = s.split(',').collect();
    match parts[..] {
        [a, b] => match (a.trim().parse(), b.trim().parse()) {
            (Ok(a), Ok(b)) => Ok([a, b]),
            _ => Err(format!("{s:?}: expected two numbers, e.g. 0.5,0.999")),
        },
        _ => Err(format!("{s:?}: expected two comma-separated numbers, e.g. 0.5,0.999")),
    }
}

#[derive(Debug, Args, Clone)]
pub struct SampleArgs {
    /// Exported generator: runs/<name>/generator.onnx or checkpoints/*.generator.onnx
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Output PNG
    #[arg(long, value_name = "PNG")]
    pub out: PathBuf,
    /// Number of images [default: the grid's cells, else 64]
    #[arg(short = 'n', long = "count", value_name = "N", conflicts_with = "interpolate")]
    pub count: Option<usize>,
    /// Grid layout, columns x rows (e.g. 8x8) [default: a square-ish grid for -n]
    #[arg(long, value_name = "COLSxROWS", conflicts_with = "interpolate")]
    pub grid: Option<String>,
    /// Latent-space walks: rows of K images, each row from one random latent point to another (slerp)
    #[arg(long, value_name = "K")]
    pub interpolate: Option<usize>,
    /// Number of walks with --interpolate
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub rows: usize,
    /// Walk in a straight line (lerp) instead of along the sphere (slerp)
    #[arg(long, requires = "interpolate")]
    pub lerp: bool,
    /// Seed of the latents (ChaCha8, standard normal)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Enlarge every pixel to FxF (nearest neighbour) for viewing
    #[arg(long, value_name = "F", default_value_t = 1)]
    pub scale: u32,
    /// Also write each image as DIR/NNNNN.png
    #[arg(long, value_name = "DIR")]
    pub separate: Option<PathBuf>,
    /// Also write the latents as a NumPy .npy file (float32 [n, nz])
    #[arg(long, value_name = "NPY")]
    pub save_latents: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct SampleDataArgs {
    /// Directory to create (its pipeline.yaml points at the generated images)
    pub dir: PathBuf,
    /// Number of distinct synthetic faces
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// Seed for the generator (same seed, same bytes)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Args, Clone)]
pub struct GraphArgs {
    /// Architecture: dcgan64, dcgan128 or anime300
    #[arg(long, default_value = "dcgan64")]
    pub arch: String,
    /// Batch size of the step graphs (their shapes are static)
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Directory to write the .onnx files into (created if missing)
    #[arg(long, default_value = "graphs", value_name = "DIR")]
    pub out: PathBuf,
    /// Latent size [default: the architecture's: 100, or 300 for anime300]
    #[arg(long)]
    pub nz: Option<usize>,
    /// Generator base width [default: 64]
    #[arg(long)]
    pub ngf: Option<usize>,
    /// Discriminator base width [default: 64]
    #[arg(long)]
    pub ndf: Option<usize>,
    /// Latent vectors per generator.onnx call [default: --batch]
    #[arg(long, value_name = "N")]
    pub samples: Option<usize>,
    /// Seed of the initial weights baked into generator.onnx
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// AdamW (decoupled weight decay) instead of Adam, for both networks
    #[arg(long)]
    pub adamw: bool,
    /// How operators are written out: native (every operator as built: the portable, readable form), subpixel
    /// (each ConvTranspose as four stride-1 phase Convs + DepthToSpace), subpixel:N (only on input maps of at
    /// most N pixels), or cpu / cuda (what the runner itself feeds ONNX Runtime on that device)
    #[arg(long, default_value = "native", value_name = "F")]
    pub formulation: String,
    /// The G and fused steps also update a moving average of G's weights (state `ema.g.*`, scalar input
    /// `ema.decay`: `ema' = p' + decay * (ema - p')`), as `train --ema` runs them
    #[arg(long)]
    pub ema: bool,
    /// Adversarial loss: bce (inputs real_target, fake_target, gen_target) or hinge (no targets)
    #[arg(long, default_value = "bce", value_name = "LOSS")]
    pub loss: GanLoss,
    /// DiffAugment before D (color, translation, cutout; per-step inputs aug_<pass>.*)
    #[arg(long, default_value = "none", value_name = "POLICY")]
    pub diffaugment: DiffAugment,
    /// Spectrally normalised D weights (state d.<layer>.weight_u, updated by the D and fused steps)
    #[arg(long)]
    pub spectral_norm: bool,
}

#[derive(Debug, Args, Clone)]
pub struct BenchStepArgs {
    /// Architecture: dcgan64, dcgan128 or anime300
    #[arg(long, default_value = "dcgan64")]
    pub arch: String,
    /// Batch sizes to time
    #[arg(long, num_args = 1.., default_values_t = [64usize, 128])]
    pub batch: Vec<usize>,
    /// Timed iterations (the median is reported)
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed iterations first
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// fused, split or both
    #[arg(long, default_value = "both")]
    pub mode: String,
    /// Turn ONNX Runtime's graph optimisations off
    #[arg(long)]
    pub no_optimize: bool,
    /// ONNX Runtime graph optimisation level: 0 (off), 1 (basic), 2 (extended), 3 (all, with layout changes)
    #[arg(long, value_name = "N")]
    pub opt_level: Option<u8>,
    /// Turn ONNX Runtime's memory-pattern planning off
    #[arg(long)]
    pub no_memory_pattern: bool,
    /// Let intra-op threads spin between kernels (ONNX Runtime's default; the runner turns it off)
    #[arg(long)]
    pub spinning: bool,
    /// How the step graphs are written out, one or more of: auto (the device's default), native (every operator
    /// as built), subpixel (ConvTranspose as phase Convs wherever possible), subpixel:N (on input maps of at
    /// most N pixels); each is timed
    #[arg(long, num_args = 1.., default_values_t = ["auto".to_string()], value_name = "F")]
    pub formulation: Vec<String>,
    /// Batch norm's backward as the derivative of its primitives (the formulation before the closed form)
    #[arg(long, hide = true)]
    pub primitive_backward: bool,
    /// CUDA: capture each step as a CUDA graph and replay it (ONNX Runtime's enable_cuda_graph)
    #[arg(long)]
    pub cuda_graph: bool,
    /// CUDA: TF32 math on or off [default: the provider's]
    #[arg(long, value_name = "on|off")]
    pub tf32: Option<String>,
    /// Also profile this many iterations per configuration and print the top operators (stderr)
    #[arg(long, default_value_t = 0)]
    pub profile_steps: usize,
    /// Where profiles go
    #[arg(long, default_value = "target/bench-profiles", value_name = "DIR")]
    pub profile_dir: PathBuf,
}
