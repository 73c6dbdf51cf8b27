//! `anime-pipe sample-data DIR` (stub: being implemented).
use crate::report::Summary;
use anyhow::Result;
use std::path::Path;

pub fn write(_dir: &Path, _count: usize, _seed: u64) -> Result<Summary> {
    anyhow::bail!("sample-data: not implemented yet")
}
