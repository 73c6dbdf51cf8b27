//! `checkpoints/`: checkpoint names, listing, and the metadata in a checkpoint's safetensors header (the format of
//! the state itself is `train::checkpoint`'s).
use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub(super) const GENERATOR_SUFFIX: &str = ".generator.onnx";
/// A longer safetensors header is taken for a corrupt file rather than read into memory.
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// What a checkpoint's file stem says: `epoch-0005` (end of epoch 5) or `step-00001234` (a run stopped inside an
/// epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckpointName {
    Epoch(u64),
    Step(u64),
}

impl CheckpointName {
    /// `epoch-NNNN` or `step-NNNNNNNN`.
    pub fn stem(self) -> String {
        match self {
            CheckpointName::Epoch(e) => format!("epoch-{e:04}"),
            CheckpointName::Step(s) => format!("step-{s:08}"),
        }
    }

    /// The name of a `<stem>.generator.onnx` file.
    pub fn of_generator_file(file_name: &str) -> Option<CheckpointName> {
        let stem = file_name.strip_suffix(GENERATOR_SUFFIX)?;
        fn number(digits: &str) -> Option<u64> {
            let plain = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
            plain.then(|| digits.parse().ok()).flatten()
        }
        if let Some(epoch) = stem.strip_prefix("epoch-").and_then(number) {
            return Some(CheckpointName::Epoch(epoch));
        }
        stem.strip_prefix("step-").and_then(number).map(CheckpointName::Step)
    }
}

/// `dir/*.safetensors`, skipping hidden (temporary) files; none when `dir` does not exist.
pub(super) fn states(dir: &Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if path.extension().is_some_and(|e| e == "safetensors") && !hidden {
            found.push(path);
        }
    }
    Ok(found)
}

/// `dir/{epoch,step}-N.generator.onnx` with their names; none when `dir` does not exist.
pub(super) fn generators(dir: &Path) -> Result<Vec<(CheckpointName, PathBuf)>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if let Some(name) = path.file_name().and_then(|n| CheckpointName::of_generator_file(&n.to_string_lossy())) {
            found.push((name, path));
        }
    }
    Ok(found)
}

/// The `__metadata__` strings of a safetensors file, reading only its header (not the tensor data).
pub fn read_checkpoint_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open checkpoint {}", path.display()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).with_context(|| format!("{}: truncated", path.display()))?;
    let len = u64::from_le_bytes(len);
    ensure!(len < MAX_HEADER_BYTES, "{}: implausible header length {len}", path.display());
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).with_context(|| format!("{}: truncated header", path.display()))?;
    #[derive(serde::Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__", default)]
        metadata: BTreeMap<String, String>,
    }
    let header: Header =
        serde_json::from_slice(&header).with_context(|| format!("{}: header is not valid JSON", path.display()))?;
    Ok(header.metadata)
}

/// The training step recorded in a checkpoint's metadata (`step`), if the file has one.
pub fn checkpoint_step(path: &Path) -> Option<u64> {
    read_checkpoint_metadata(path).ok()?.get("step")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_file_names_parse_to_epochs_and_steps() {
        use CheckpointName::*;
        let parse = CheckpointName::of_generator_file;
        assert_eq!(parse("epoch-0005.generator.onnx"), Some(Epoch(5)));
        assert_eq!(parse("epoch-12345.generator.onnx"), Some(Epoch(12345)));
        assert_eq!(parse("step-00001234.generator.onnx"), Some(Step(1234)));
        assert_eq!(parse("epoch-0005.safetensors"), None);
        assert_eq!(parse("epoch-.generator.onnx"), None);
        assert_eq!(parse("epoch-x1.generator.onnx"), None);
        assert_eq!(Epoch(5).stem(), "epoch-0005");
        assert_eq!(Step(1234).stem(), "step-00001234");
    }

    #[test]
    fn step_comes_from_the_header_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("epoch-0001.safetensors");
        let header = br#"{"__metadata__":{"step":"42","format":"x"}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(checkpoint_step(&path), Some(42));
        assert_eq!(read_checkpoint_metadata(&path).unwrap()["format"], "x");
        std::fs::write(&path, b"short").unwrap();
        assert_eq!(checkpoint_step(&path), None);
    }
}
