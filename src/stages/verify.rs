//! `anime-pipe verify` (stub: being implemented).
use crate::app::Ctx;
use crate::report::Summary;
use anyhow::Result;

pub fn run(_ctx: &Ctx) -> Result<Summary> {
    anyhow::bail!("verify: not implemented yet")
}
