//! The ONNX models the pipeline uses: where they are looked up, the files the project knows (sha256 pins), and
//! whether a file found is what its stage expects (`anime-pipe models`). Fetching pinned files from a mirror is
//! [`fetch`].
//!
//! Lookup order for each model (documented in README.md, "Getting the models"):
//! 1. the path set in pipeline.yaml (`models.<key>`) or by a flag: authoritative, never replaced by another file;
//! 2. `$ANIME_PIPE_MODELS/<file>` (a directory);
//! 3. the per-user model directory `$XDG_CACHE_HOME/anime-pipe/models/<file>` (`~/.cache/anime-pipe/models`), where
//!    `anime-pipe models fetch` installs by default;
//! 4. `../shared/models/<file>` beside the config: this repository's development default.
//!
//! The first that exists wins; when none does, the path reported (and named in the stage's error) is the last.
pub mod fetch;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Model files (`models:` in pipeline.yaml, relative paths resolved against the config's directory). Existence is
/// checked when a command loads one, so a config that never uses a model need not provide it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPaths {
    pub face_detector: PathBuf,
    pub waifu2x: PathBuf,
    pub realesrgan: PathBuf,
    pub fid_inception: PathBuf,
}

/// The environment variable naming a directory of model files (step 2 of the lookup).
pub const MODELS_ENV: &str = "ANIME_PIPE_MODELS";

/// One model the config refers to (a key of `models:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    FaceDetector,
    Waifu2x,
    Realesrgan,
    FidInception,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::FaceDetector, Role::Waifu2x, Role::Realesrgan, Role::FidInception];

    /// The key under `models:` in pipeline.yaml.
    pub fn key(self) -> &'static str {
        match self {
            Role::FaceDetector => "face_detector",
            Role::Waifu2x => "waifu2x",
            Role::Realesrgan => "realesrgan",
            Role::FidInception => "fid_inception",
        }
    }

    /// Who loads it.
    pub fn needed_by(self) -> &'static str {
        match self {
            Role::FaceDetector => "crop",
            Role::Waifu2x => "upscale (method: waifu2x)",
            Role::Realesrgan => "upscale (method: realesrgan)",
            Role::FidInception => "eval",
        }
    }

    /// The file looked up when the config does not name one.
    pub fn default_file(self) -> &'static str {
        match self {
            Role::FaceDetector => "anime_faceboxes.onnx",
            Role::Waifu2x => "waifu2x_upconv7_anime_scale2x.onnx",
            Role::Realesrgan => "realesr_animevideov3_x4.onnx",
            Role::FidInception => "fid_inception_v3_pool3.onnx",
        }
    }

    pub fn path(self, paths: &ModelPaths) -> &Path {
        match self {
            Role::FaceDetector => &paths.face_detector,
            Role::Waifu2x => &paths.waifu2x,
            Role::Realesrgan => &paths.realesrgan,
            Role::FidInception => &paths.fid_inception,
        }
    }
}

/// A model file the project knows: its exact bytes (size and sha256), the role it fills and where it comes from.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Pin {
    pub file: &'static str,
    pub role: Role,
    pub bytes: u64,
    pub sha256: &'static str,
    pub what: &'static str,
}

/// The files in the project's model set (`../shared/models`), pinned by content. Any of a role's pins is accepted.
pub const PINS: &[Pin] = &[
    Pin {
        file: "anime_faceboxes.onnx",
        role: Role::FaceDetector,
        bytes: 4_032_801,
        sha256: "6ced66393956e169da757beec26d27093382201bb61716933c4c25dfbded51c3",
        what: "FaceBoxes anime face detector (WynMew/AnimeFaceBoxes, Apache-2.0)",
    },
    Pin {
        file: "waifu2x_upconv7_anime_scale2x.onnx",
        role: Role::Waifu2x,
        bytes: 2_212_251,
        sha256: "b9d5a9773eed7a80e0c68e3c874838a5e5dc8411a86dd0f6a362e9bc3a37e6a3",
        what: "waifu2x upconv_7 anime_style_art_rgb 2x, no denoise (MIT)",
    },
    Pin {
        file: "waifu2x_upconv7_anime_noise1_scale2x.onnx",
        role: Role::Waifu2x,
        bytes: 2_212_251,
        sha256: "6095e252d4ac551f41a64c98735c0a9b35f96cc8df340b93ae2543615c6f3771",
        what: "waifu2x upconv_7 anime_style_art_rgb 2x, denoise level 1 (MIT)",
    },
    Pin {
        file: "realesr_animevideov3_x4.onnx",
        role: Role::Realesrgan,
        bytes: 2_490_198,
        sha256: "e1f6b63f7787ce20e962ac34769a50b09ed04107e7c62517430c26952d159270",
        what: "Real-ESRGAN animevideov3 4x (SRVGG compact, BSD-3-Clause)",
    },
    Pin {
        file: "fid_inception_v3_pool3.onnx",
        role: Role::FidInception,
        bytes: 87_092_048,
        sha256: "f5afc9bf957480692c21e9f66e16383d040f8748c46b958db07e12c335d4d897",
        what: "Inception-v3 pool3 of TensorFlow FID / pytorch-fid (weights Apache-2.0)",
    },
];

/// The pin of a file by name (`anime_faceboxes.onnx`, or without `.onnx`).
pub fn pin_named(name: &str) -> Option<&'static Pin> {
    PINS.iter().find(|p| p.file == name || p.file.strip_suffix(".onnx") == Some(name))
}

/// The directories searched after the config's path.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDirs {
    /// `$ANIME_PIPE_MODELS`.
    pub env: Option<PathBuf>,
    /// `$XDG_CACHE_HOME/anime-pipe/models` or `~/.cache/anime-pipe/models`.
    pub user: Option<PathBuf>,
    /// `../shared/models` beside the config (development default).
    pub dev: PathBuf,
}

impl ModelDirs {
    /// From the process environment; `base_dir` is the config file's directory.
    pub fn from_env(base_dir: &Path) -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        Self { env: var(MODELS_ENV), user: user_model_dir(), dev: base_dir.join("../shared/models") }
    }
}

/// The per-user model directory: `$XDG_CACHE_HOME/anime-pipe/models`, else `$HOME/.cache/anime-pipe/models`.
pub fn user_model_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let cache = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()).or_else(|| var("HOME").map(|h| h.join(".cache")))?;
    Some(cache.join("anime-pipe").join("models"))
}

/// Where a model was looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `models.<key>` in pipeline.yaml (or a flag).
    Config,
    /// `$ANIME_PIPE_MODELS`.
    Env,
    /// The per-user model directory.
    User,
    /// `../shared/models` (development default).
    Dev,
}

impl Origin {
    pub fn label(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Env => "$ANIME_PIPE_MODELS",
            Origin::User => "user model dir",
            Origin::Dev => "../shared/models (dev default)",
        }
    }
}

/// The outcome of looking one model up.
#[derive(Debug, Clone, Serialize)]
pub struct Lookup {
    /// The path to load: the first candidate that exists, else the last candidate.
    pub path: PathBuf,
    /// Which candidate exists (None: none does).
    pub found: Option<Origin>,
    /// Every candidate, in order.
    pub candidates: Vec<(Origin, PathBuf)>,
}

/// Looks up a model: `configured` (already resolved against the config's directory) is the only candidate when
/// set; otherwise `file` in the env directory, the user directory, then the development directory.
pub fn locate(configured: Option<&Path>, file: &str, dirs: &ModelDirs) -> Lookup {
    let candidates: Vec<(Origin, PathBuf)> = match configured {
        Some(path) => vec![(Origin::Config, path.to_path_buf())],
        None => {
            let env = dirs.env.as_ref().map(|d| (Origin::Env, d.join(file)));
            let user = dirs.user.as_ref().map(|d| (Origin::User, d.join(file)));
            env.into_iter().chain(user).chain([(Origin::Dev, dirs.dev.join(file))]).collect()
        }
    };
    let hit = candidates.iter().find(|(_, p)| p.is_file());
    let (found, path) = match hit {
        Some((origin, path)) => (Some(*origin), path.clone()),
        None => (None, candidates.last().expect("at least one candidate").1.clone()),
    };
    Lookup { path, found, candidates }
}

/// sha256 (lowercase hex) of a file, streamed.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Element type of a graph input or output, as the check reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorSig {
    pub name: String,
    pub dtype: String,
    /// Dimensions; -1 for a symbolic one.
    pub shape: Vec<i64>,
}

/// A graph's inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    pub inputs: Vec<TensorSig>,
    pub outputs: Vec<TensorSig>,
}

/// Reads a model's inputs and outputs with an ONNX Runtime session (CPU, no graph optimisation).
pub fn read_signature(path: &Path) -> anyhow::Result<Signature> {
    use crate::runtime::{session_from_file, Device, SessionOptions};
    let options = SessionOptions { device: Device::Cpu, threads: 1, optimize: false };
    let (session, _) = session_from_file(path, &options)?;
    let sig = |name: &str, ty: &ort::value::ValueType| TensorSig {
        name: name.to_string(),
        dtype: match ty {
            ort::value::ValueType::Tensor { ty, .. } => format!("{ty}"),
            other => format!("{other}"),
        },
        shape: ty.tensor_shape().map(|s| s.iter().copied().collect()).unwrap_or_default(),
    };
    Ok(Signature {
        inputs: session.inputs().iter().map(|i| sig(i.name(), i.dtype())).collect(),
        outputs: session.outputs().iter().map(|o| sig(o.name(), o.dtype())).collect(),
    })
}

/// What a stage needs of a tensor: a name (None: any, matched by position) and a rank, float32.
struct Want {
    name: Option<&'static str>,
    rank: usize,
}

/// The inputs and outputs each stage relies on (see `faces::detector`, `faces::upscale`, `eval::features`).
/// `yolo`: the crop stage's detector family is YOLO (one image input, its first output decoded).
fn expected(role: Role, yolo: bool) -> (Vec<Want>, Vec<Want>) {
    let w = |name, rank| Want { name, rank };
    match role {
        Role::FaceDetector if yolo => (vec![w(None, 4)], vec![w(None, 3)]),
        Role::FaceDetector => (vec![w(None, 4)], vec![w(Some("loc"), 3), w(Some("conf"), 3)]),
        Role::Waifu2x | Role::Realesrgan => (vec![w(None, 4)], vec![w(None, 4)]),
        Role::FidInception => (vec![w(Some("image"), 4)], vec![w(Some("pool3"), 2)]),
    }
}

/// The mismatches between a signature and what `role`'s stage expects (empty: it fits).
pub fn check_signature(role: Role, yolo: bool, sig: &Signature) -> Vec<String> {
    let (inputs, outputs) = expected(role, yolo);
    let mut problems = Vec::new();
    for (side, wants, have) in [("input", inputs, &sig.inputs), ("output", outputs, &sig.outputs)] {
        for (i, want) in wants.iter().enumerate() {
            let found = match want.name {
                Some(name) => have.iter().find(|t| t.name == name),
                None => have.get(i),
            };
            let label = want.name.map_or_else(|| format!("{side} #{i}"), |n| format!("{side} {n:?}"));
            match found {
                None => problems.push(format!(
                    "missing {label} (has {})",
                    have.iter().map(|t| format!("{:?}", t.name)).collect::<Vec<_>>().join(", ")
                )),
                Some(t) => {
                    if t.shape.len() != want.rank {
                        problems.push(format!(
                            "{label}: rank {} (shape {:?}), expected rank {}",
                            t.shape.len(),
                            t.shape,
                            want.rank
                        ));
                    }
                    if t.dtype != "f32" {
                        problems.push(format!("{label}: element type {}, expected f32", t.dtype));
                    }
                }
            }
        }
    }
    problems
}

/// The verdict on one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A pinned file, with the inputs and outputs its stage expects.
    Ok,
    /// Not a pinned file, but its inputs and outputs fit (a model of your own): usable, not vouched for.
    Unpinned,
    /// Pinned bytes; the signature could not be read because ONNX Runtime is not installed.
    PinnedUnchecked,
    /// Not found anywhere in the lookup order.
    Missing,
    /// Found, but ONNX Runtime cannot load it or its inputs/outputs do not fit the stage.
    Bad,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Unpinned => "ok, unpinned",
            Verdict::PinnedUnchecked => "pinned, I/O not checked",
            Verdict::Missing => "MISSING",
            Verdict::Bad => "BAD",
        }
    }
}

/// Everything `anime-pipe models` says about one model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub key: &'static str,
    pub needed_by: &'static str,
    pub lookup: Lookup,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    /// The pinned file these bytes are (None: not a pinned file, or not found).
    pub pinned_as: Option<&'static str>,
    pub signature: Option<Signature>,
    /// Why the signature is not as expected, or why it could not be read.
    pub problems: Vec<String>,
    pub verdict: Verdict,
}

/// Checks one looked-up model: size, sha256 against the pins, and (when ONNX Runtime is there) its signature.
pub fn inspect(role: Role, yolo: bool, lookup: Lookup) -> ModelReport {
    let mut report = ModelReport {
        key: role.key(),
        needed_by: role.needed_by(),
        bytes: None,
        sha256: None,
        pinned_as: None,
        signature: None,
        problems: Vec::new(),
        verdict: Verdict::Missing,
        lookup,
    };
    if report.lookup.found.is_none() {
        return report;
    }
    let path = report.lookup.path.clone();
    report.bytes = std::fs::metadata(&path).ok().map(|m| m.len());
    match file_sha256(&path) {
        Ok(sha) => {
            report.pinned_as = PINS.iter().find(|p| p.role == role && p.sha256 == sha).map(|p| p.file);
            report.sha256 = Some(sha);
        }
        Err(e) => {
            report.problems.push(format!("cannot read: {e}"));
            report.verdict = Verdict::Bad;
            return report;
        }
    }
    let ort_missing = crate::runtime::find_library().is_none_or(|p| !p.is_file());
    if ort_missing {
        report.problems.push("ONNX Runtime not found: inputs/outputs not checked".into());
        report.verdict = if report.pinned_as.is_some() { Verdict::PinnedUnchecked } else { Verdict::Bad };
        return report;
    }
    match read_signature(&path) {
        Ok(sig) => {
            report.problems = check_signature(role, yolo, &sig);
            report.signature = Some(sig);
            report.verdict = match (report.problems.is_empty(), report.pinned_as.is_some()) {
                (false, _) => Verdict::Bad,
                (true, true) => Verdict::Ok,
                (true, false) => Verdict::Unpinned,
            };
        }
        Err(e) => {
            report.problems.push(format!("{e:#}"));
            report.verdict = Verdict::Bad;
        }
    }
    report
}

/// The human-readable listing of `anime-pipe models`.
pub fn render(reports: &[ModelReport]) -> String {
    let mut out = String::new();
    for r in reports {
        out.push_str(&format!("── models.{} ── {} (needed by {})\n", r.key, r.verdict.label(), r.needed_by));
        for (origin, path) in &r.lookup.candidates {
            let mark = if r.lookup.found == Some(*origin) { "found " } else { "      " };
            out.push_str(&format!("  {mark} {:<32} {}\n", origin.label(), path.display()));
        }
        if let (Some(bytes), Some(sha)) = (r.bytes, &r.sha256) {
            let pin = match r.pinned_as {
                Some(file) => format!("pinned: {file}"),
                None => "not a pinned file".to_string(),
            };
            out.push_str(&format!("  size {bytes} bytes, sha256 {sha} ({pin})\n"));
        }
        if let Some(sig) = &r.signature {
            let list = |ts: &[TensorSig]| {
                ts.iter().map(|t| format!("{} {}{:?}", t.name, t.dtype, t.shape)).collect::<Vec<_>>().join(", ")
            };
            out.push_str(&format!("  inputs  {}\n  outputs {}\n", list(&sig.inputs), list(&sig.outputs)));
        }
        for p in &r.problems {
            out.push_str(&format!("  problem: {p}\n"));
        }
        if r.verdict == Verdict::Missing {
            let role = Role::ALL.iter().find(|role| role.key() == r.key).copied();
            let file = role.map_or("", |role| role.default_file());
            out.push_str(&format!(
                "  get it: anime-pipe models fetch {file} --from URL_OR_DIR (README: Getting the models)\n"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(root: &Path) -> ModelDirs {
        ModelDirs { env: Some(root.join("env")), user: Some(root.join("user")), dev: root.join("dev") }
    }

    #[test]
    fn lookup_order_is_config_then_env_then_user_then_dev() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dirs(tmp.path());
        let file = "m.onnx";
        // Nothing anywhere: the development default is reported, found = None.
        let l = locate(None, file, &d);
        assert_eq!((l.found, l.path.clone()), (None, d.dev.join(file)));
        assert_eq!(l.candidates.iter().map(|c| c.0).collect::<Vec<_>>(), [Origin::Env, Origin::User, Origin::Dev]);
        for (origin, dir) in
            [(Origin::Dev, &d.dev), (Origin::User, d.user.as_ref().unwrap()), (Origin::Env, d.env.as_ref().unwrap())]
        {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(file), b"x").unwrap();
            let l = locate(None, file, &d);
            assert_eq!((l.found, l.path), (Some(origin), dir.join(file)), "{origin:?} wins over what comes after");
        }
        // A configured path is authoritative, even when missing.
        let cfg = tmp.path().join("elsewhere.onnx");
        let l = locate(Some(&cfg), file, &d);
        assert_eq!((l.found, l.path.clone(), l.candidates.len()), (None, cfg.clone(), 1));
        std::fs::write(&cfg, b"y").unwrap();
        assert_eq!(locate(Some(&cfg), file, &d).found, Some(Origin::Config));
    }

    #[test]
    fn pins_cover_every_default_and_look_like_sha256() {
        for role in Role::ALL {
            let pin = pin_named(role.default_file()).unwrap();
            assert_eq!(pin.role, role);
        }
        for pin in PINS {
            assert_eq!(pin.sha256.len(), 64);
            assert!(pin.sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        assert_eq!(pin_named("anime_faceboxes").unwrap().file, "anime_faceboxes.onnx");
    }

    #[test]
    fn sha256_of_a_known_string() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(file_sha256(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn signature_check_names_what_is_wrong() {
        let t = |name: &str, dtype: &str, shape: &[i64]| TensorSig {
            name: name.into(),
            dtype: dtype.into(),
            shape: shape.to_vec(),
        };
        let inception = Signature {
            inputs: vec![t("image", "f32", &[-1, 3, 299, 299])],
            outputs: vec![t("pool3", "f32", &[-1, 2048])],
        };
        assert!(check_signature(Role::FidInception, false, &inception).is_empty());
        let problems = check_signature(Role::FaceDetector, false, &inception);
        assert!(problems.iter().any(|p| p.contains("missing output \"loc\"")), "{problems:?}");
        let upscaler =
            Signature { inputs: vec![t("input", "f16", &[-1, 3, -1, -1])], outputs: vec![t("o", "f32", &[-1, 3])] };
        let problems = check_signature(Role::Waifu2x, false, &upscaler);
        assert!(problems.iter().any(|p| p.contains("element type f16")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("rank 2")), "{problems:?}");
    }
}
