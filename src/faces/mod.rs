//! Faces: detection (FaceBoxes / YOLO through ONNX Runtime), crop geometry, NMS, and super-resolution upscaling.
//! The stages that use them are `stages::crop` and `stages::upscale`; `contact_sheet` shows the result.
pub mod detector;
pub mod geometry;
pub mod nms;
pub mod upscale;

use crate::runtime::{session_from_file_with, Resolved, SessionOptions};
use anyhow::{anyhow, Result};
use ort::session::Session;
use std::path::Path;

/// An ONNX Runtime session for a face/upscale model, as `runtime::session_from_file` builds it (device, `-j`
/// threads, optimisation) but with idle intra-op threads sleeping instead of spinning: these stages run rayon workers (decoding,
/// resizing, PNG encoding) beside the session, and spinning ORT threads would steal their cores.
pub fn load_session(path: &Path, options: &SessionOptions) -> Result<(Session, Resolved)> {
    session_from_file_with(path, options, |builder| builder.with_intra_op_spinning(false).map_err(|e| anyhow!("{e}")))
}
