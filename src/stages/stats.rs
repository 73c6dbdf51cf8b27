//! `anime-pipe stats` (stub: being implemented).
use crate::app::Ctx;
use crate::report::Summary;
use anyhow::Result;

pub fn run(_ctx: &Ctx, _stage: Option<&str>) -> Result<Summary> {
    anyhow::bail!("stats: not implemented yet")
}
