//! Where and how a command works: the things every stage, `train` and `eval` need that never change their results.
use crate::partition::Partition;
use crate::report::Reporter;
use crate::runtime::Device;
use crate::workdir::Workdir;

/// The environment of one command. Nothing here may change what a stage, training or evaluation computes (results
/// are identical for any thread count, and agree across devices up to float rounding), so none of it is part of a
/// fingerprint.
#[derive(Debug, Clone)]
pub struct Env {
    pub workdir: Workdir,
    /// Worker threads (`-j`).
    pub threads: usize,
    pub reporter: Reporter,
    /// Where ONNX graphs run (`device:` / `--device`).
    pub device: Device,
    /// The share of the items this process works on (`--partition K/N` or the batch system's array index); None
    /// for the whole stage. A partition writes a part of the stage's results; the merged manifest is the same as
    /// one unpartitioned run's.
    pub partition: Option<Partition>,
}
