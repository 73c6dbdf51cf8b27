//! The one place that owns ONNX Runtime: finding and loading the shared library (ort's `load-dynamic`), the process
//! environment, execution-provider selection (`--device`) and session construction. Every stage that runs an ONNX
//! graph (detector, upscalers, training steps, FID) gets its sessions here.
use anyhow::{anyhow, bail, Context, Result};
use ort::environment::Environment;
use ort::ep::{ExecutionProvider, CPU, CUDA};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

/// The ONNX Runtime version the project is built and tested against (ort's `api-31`).
pub const ORT_VERSION: &str = "1.31.1";

const INSTALL_HINT: &str = "ONNX Runtime is loaded at run time and was not found.\n  \
fix: run `scripts/install-ort.sh` in the anime-pipe checkout (fetches the onnxruntime==1.31.1 wheel from PyPI \
into .ort/lib/), or `pip install onnxruntime==1.31.1` and set \
ORT_DYLIB_PATH=$(python3 -c 'import onnxruntime,os;print(os.path.dirname(onnxruntime.__file__))')/capi/libonnxruntime.so.1.31.1";

/// Where a graph runs: `auto` (CUDA when it can be registered, else CPU, said once), `cpu`, or `cuda[:N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Auto,
    Cpu,
    Cuda(i32),
}

impl FromStr for Device {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<i32>) {
                Some(Ok(n)) if n >= 0 => Ok(Device::Cuda(n)),
                _ => bail!("device {s:?}: expected auto, cpu, cuda or cuda:N (N = GPU index)"),
            },
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Auto => write!(f, "auto"),
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Finds the ONNX Runtime library: `$ORT_DYLIB_PATH`, then `.ort/lib/` in the current directory or any of its
/// ancestors, then beside the executable's ancestors (so `target/release/anime-pipe` finds the checkout's `.ort`).
pub fn find_library() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(PathBuf::from(path));
    }
    let cwd = std::env::current_dir().ok();
    let exe = std::env::current_exe().ok();
    let starts = cwd.iter().chain(exe.iter());
    starts
        .flat_map(|p| p.ancestors().map(Path::to_path_buf).collect::<Vec<_>>())
        .find_map(|dir| library_in(&dir.join(".ort/lib")))
}

fn library_in(dir: &Path) -> Option<PathBuf> {
    let exact = dir.join(format!("libonnxruntime.so.{ORT_VERSION}"));
    if exact.is_file() {
        return Some(exact);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so")))
        .collect();
    found.sort();
    found.pop()
}

/// Loads ONNX Runtime once per process and returns the shared environment.
pub fn environment() -> Result<&'static Environment> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let _guard = INIT_LOCK.lock().map_err(|_| anyhow!("ONNX Runtime initialisation panicked earlier"))?;
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let path = find_library().ok_or_else(|| anyhow!(INSTALL_HINT))?;
    if !path.is_file() {
        bail!("ORT_DYLIB_PATH={} is not a file.\n{INSTALL_HINT}", path.display());
    }
    let env = ort::init_from(&path)
        .map_err(|e| anyhow!("cannot load ONNX Runtime from {}: {e}\n{INSTALL_HINT}", path.display()))?
        .with_name("anime-pipe")
        .with_telemetry(false)
        .build()
        .map_err(|e| anyhow!("cannot create the ONNX Runtime environment: {e}"))?;
    Ok(ENVIRONMENT.get_or_init(|| env))
}

/// One line (two with the install hint) for `--version`: the ONNX Runtime version and library that would be
/// loaded, or "not found". Never fails: a missing or broken library is reported, not raised.
pub fn describe() -> String {
    let path = match find_library() {
        None => return format!("ONNX Runtime: not found\n{INSTALL_HINT}"),
        Some(p) if !p.is_file() => {
            return format!("ONNX Runtime: not found (ORT_DYLIB_PATH={} is not a file)\n{INSTALL_HINT}", p.display())
        }
        Some(p) => p,
    };
    match environment() {
        Ok(_) => format!("ONNX Runtime: {} ({})", loaded_version(&path), path.display()),
        Err(e) => format!("ONNX Runtime: cannot be loaded from {}: {e:#}", path.display()),
    }
}

/// The version string the library reports (`OrtGetApiBase()->GetVersionString()`, e.g. "1.31.1"). ort keeps its
/// handle to the library private, so the already-loaded library is opened once more by path (dlopen returns the
/// same, reference-counted handle) and closed again.
fn loaded_version(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let unknown = || "version unknown".to_string();
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return unknown() };
    // SAFETY: dlopen/dlsym/dlclose with valid NUL-terminated strings; the library is ONNX Runtime (already loaded by
    // `environment()`), whose exported `OrtGetApiBase` has the signature of ort-sys's binding and returns a static
    // struct whose `GetVersionString` returns a static NUL-terminated string.
    unsafe {
        let handle = libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            return unknown();
        }
        let symbol = libc::dlsym(handle, c"OrtGetApiBase".as_ptr());
        let version = if symbol.is_null() {
            unknown()
        } else {
            let get_base: unsafe extern "C" fn() -> *const ort::sys::OrtApiBase = std::mem::transmute(symbol);
            let base = get_base();
            if base.is_null() {
                unknown()
            } else {
                std::ffi::CStr::from_ptr(((*base).GetVersionString)()).to_string_lossy().into_owned()
            }
        };
        libc::dlclose(handle);
        version
    }
}

/// How a session should run.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    pub device: Device,
    /// Intra-op threads (from `-j`); 0 lets ONNX Runtime decide.
    pub threads: usize,
    /// Full graph optimisation; tests of graph semantics may turn it off.
    pub optimize: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self { device: Device::Auto, threads: 0, optimize: true }
    }
}

/// The device a session actually got, after `auto` resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Cpu,
    Cuda(i32),
}

static AUTO_FALLBACK_SAID: OnceLock<()> = OnceLock::new();

/// CUDA execution provider settings beyond the device (speed only; ignored on CPU).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CudaOptions {
    /// ONNX Runtime's `enable_cuda_graph`: capture the whole run once and replay it (static shapes, every input and
    /// output bound to fixed device buffers; a runner with several buffer sets gives each its own `gpu_graph_id`).
    pub cuda_graph: bool,
    /// `use_tf32` (TF32 tensor-core math for fp32 convolutions and GEMMs); None: the provider's default.
    pub tf32: Option<bool>,
}

/// A session builder with threads, optimisation level and execution provider set per `options`.
pub fn session_builder(options: &SessionOptions) -> Result<(SessionBuilder, Resolved)> {
    session_builder_with(options, CudaOptions::default())
}

/// [`session_builder`] with CUDA provider settings.
pub fn session_builder_with(options: &SessionOptions, cuda: CudaOptions) -> Result<(SessionBuilder, Resolved)> {
    let env = environment()?;
    let level = if options.optimize { GraphOptimizationLevel::All } else { GraphOptimizationLevel::Disable };
    let mut builder = Session::builder(env)
        .map_err(|e| anyhow!("{e}"))?
        .with_optimization_level(level)
        .map_err(|e| anyhow!("{e}"))?;
    if options.threads > 0 {
        builder = builder.with_intra_threads(options.threads).map_err(|e| anyhow!("{e}"))?;
    }
    let resolved = match options.device {
        Device::Cpu => Resolved::Cpu,
        Device::Cuda(n) => {
            register_cuda(&mut builder, n, cuda).map_err(|e| {
                anyhow!(
                    "--device cuda:{n}: ONNX Runtime could not register the CUDA execution provider: {e}\n  \
                 fix: install the GPU build (`scripts/install-ort.sh --gpu`, CUDA 13 + cuDNN 9 libraries on \
                 LD_LIBRARY_PATH), or use --device cpu"
                )
            })?;
            Resolved::Cuda(n)
        }
        Device::Auto => match register_cuda(&mut builder, 0, cuda) {
            Ok(()) => Resolved::Cuda(0),
            Err(reason) => {
                if AUTO_FALLBACK_SAID.set(()).is_ok() {
                    eprintln!("note: --device auto: CUDA unavailable ({reason}); running on CPU");
                }
                Resolved::Cpu
            }
        },
    };
    if resolved == Resolved::Cpu {
        CPU::default().register(&mut builder).map_err(|e| anyhow!("{e}"))?;
    }
    Ok((builder, resolved))
}

fn register_cuda(builder: &mut SessionBuilder, device_id: i32, cuda: CudaOptions) -> Result<()> {
    if !CUDA::is_available().unwrap_or(false) {
        bail!("this ONNX Runtime build has no CUDA execution provider (CPU-only wheel)");
    }
    let mut ep = CUDA::default().with_device_id(device_id);
    if cuda.cuda_graph {
        ep = ep.with_cuda_graph(true);
    }
    if let Some(on) = cuda.tf32 {
        ep = ep.with_tf32(on);
    }
    ep.register(builder).map_err(|e| anyhow!("{e}"))
}

/// A session from an in-memory ONNX model (no temp files).
pub fn session_from_bytes(model: &[u8], options: &SessionOptions) -> Result<(Session, Resolved)> {
    let (mut builder, resolved) = session_builder(options)?;
    let session = builder.commit_from_memory(model).map_err(|e| anyhow!("cannot load ONNX model: {e}"))?;
    Ok((session, resolved))
}

/// A session from an `.onnx` file, with the file named in any error.
pub fn session_from_file(path: &Path, options: &SessionOptions) -> Result<(Session, Resolved)> {
    session_from_file_with(path, options, Ok)
}

/// [`session_from_file`] with one more builder setting applied after `options` (e.g. thread spinning).
pub fn session_from_file_with(
    path: &Path,
    options: &SessionOptions,
    adjust: impl FnOnce(SessionBuilder) -> Result<SessionBuilder>,
) -> Result<(Session, Resolved)> {
    let bytes = std::fs::read(path).with_context(|| {
        format!("cannot read model {} (set its path under `models:` in pipeline.yaml)", path.display())
    })?;
    let (builder, resolved) = session_builder(options)?;
    let mut builder = adjust(builder)?;
    let session =
        builder.commit_from_memory(&bytes).map_err(|e| anyhow!("cannot load ONNX model {}: {e}", path.display()))?;
    Ok((session, resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_parses_and_rejects_with_a_hint() {
        assert_eq!("cuda:1".parse::<Device>().unwrap(), Device::Cuda(1));
        assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda(0));
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        let err = "gpu".parse::<Device>().unwrap_err().to_string();
        assert!(err.contains("auto, cpu, cuda"), "{err}");
    }

    #[test]
    fn runs_an_identity_graph_on_cpu() {
        // The smallest valid model: Y = Identity(X), float [1]. Built by hand here to keep this module's test free of
        // the graph builder; it checks library discovery + session creation end to end.
        let model: &[u8] = include_bytes!("../tests/data/identity.onnx");
        let (mut session, resolved) =
            session_from_bytes(model, &SessionOptions { device: Device::Cpu, threads: 1, optimize: true }).unwrap();
        assert_eq!(resolved, Resolved::Cpu);
        let x = ort::value::Tensor::from_array(([1usize], vec![3.5f32])).unwrap();
        let out = session.run(ort::inputs!["X" => x]).unwrap();
        let (_, y) = out["Y"].try_extract_tensor::<f32>().unwrap();
        assert_eq!(y, &[3.5]);
    }
}
