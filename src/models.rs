//! The ONNX models the pipeline uses, and where they are.
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Model files (`models:` in pipeline.yaml, relative paths resolved against the config's directory). Existence is
/// checked when a command loads one, so a config that never uses a model need not provide it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPaths {
    pub face_detector: PathBuf,
    pub waifu2x: PathBuf,
    pub realesrgan: PathBuf,
    pub fid_inception: PathBuf,
}
