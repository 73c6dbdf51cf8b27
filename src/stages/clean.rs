//! `anime-pipe clean` (stub: being implemented).
use crate::app::Ctx;
use crate::report::Summary;
use anyhow::Result;

pub fn fingerprint(_ctx: &Ctx) -> Result<String> {
    anyhow::bail!("clean: not implemented yet")
}

pub fn run(_ctx: &Ctx) -> Result<Summary> {
    anyhow::bail!("clean: not implemented yet")
}
