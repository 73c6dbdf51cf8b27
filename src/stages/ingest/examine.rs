//! One file's bytes -> its outcome: blake3, the safe decode, the measures later stages need.
use super::rows::Outcome;
use super::{Ctx, Stats};
use crate::imageio;
use crate::manifest::Reason;
use crate::measure::measure;
use anyhow::Result;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// Hashes, decodes (the one decode of this content in the whole pipeline) and measures one file's bytes; stores
/// accepted ones in the cache. Content seen recently in this run (the same bytes under another name) is not
/// decoded again: its outcome depends on the bytes and the limits only. Errors only when the cache cannot be
/// written (the workdir's fault, not the input's).
pub(super) fn examine(bytes: &[u8], ctx: &Ctx<'_>, stats: &Stats) -> Result<Outcome> {
    let hash = blake3::hash(bytes).to_hex().to_string();
    if let Some(seen) = stats.seen.lock().expect("no panics while held").get(&hash) {
        return Ok(seen);
    }
    stats.decoded.fetch_add(1, Ordering::Relaxed);
    let out = decode_and_measure(bytes, hash.clone(), ctx, stats)?;
    stats.seen.lock().expect("no panics while held").insert(hash, out.clone());
    Ok(out)
}

/// Outcomes of the contents examined most recently, in two generations of at most [`Seen::GENERATION`] each: a
/// full generation becomes the old one and the older one is dropped, so memory stays bounded (~1 KB an outcome,
/// its measures) in a collection of millions. A copy of bytes last seen more than a generation of distinct
/// contents earlier is decoded again: same outcome, one more in the summary's `images decoded`.
#[derive(Default)]
pub(super) struct Seen {
    current: HashMap<String, Outcome>,
    previous: HashMap<String, Outcome>,
}

impl Seen {
    const GENERATION: usize = 1 << 16;

    fn get(&self, hash: &str) -> Option<Outcome> {
        self.current.get(hash).or_else(|| self.previous.get(hash)).cloned()
    }

    fn insert(&mut self, hash: String, out: Outcome) {
        if self.current.len() >= Self::GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(hash, out);
    }
}

fn decode_and_measure(bytes: &[u8], hash: String, ctx: &Ctx<'_>, stats: &Stats) -> Result<Outcome> {
    let size = Some(bytes.len() as u64);
    let out = match imageio::decode_rgb8(bytes, &ctx.inputs.limits) {
        Ok(decoded) => {
            stats.writer.store(hash.clone(), bytes.to_vec())?;
            let (width, height) = decoded.image.dimensions();
            Outcome {
                bytes: size,
                blake3: Some(hash),
                format: Some(decoded.format.to_string()),
                width: Some(width),
                height: Some(height),
                color: Some(decoded.color),
                frames: Some(decoded.frames),
                measures: Some(std::sync::Arc::new(measure(decoded.image))),
                reason: None,
                error: None,
            }
        }
        Err(e) => {
            let format = imageio::sniff_format(bytes).or_else(|| imageio::sniff_unsupported(bytes));
            let detail = match looks_like_archive(bytes) {
                true if e.reason == Reason::NotAnImage => {
                    "an archive inside a source is not opened: list it under `sources:` to ingest its entries".into()
                }
                _ => e.detail,
            };
            Outcome {
                bytes: size,
                blake3: Some(hash),
                format: format.map(str::to_string),
                ..Outcome::rejected(e.reason, detail)
            }
        }
    };
    Ok(out)
}

fn looks_like_archive(b: &[u8]) -> bool {
    b.starts_with(b"PK\x03\x04") || b.starts_with(&[0x1F, 0x8B]) || b.get(257..262) == Some(b"ustar")
}
