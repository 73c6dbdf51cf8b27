//! Directory sources: files listed by `listing`, reused from the re-run index when unchanged, else read (at most
//! `limits.max_file_bytes + 1` bytes) and examined in parallel.
use super::examine::examine;
use super::index::{Index, IndexRow};
use super::listing::{os_bytes, DirFile, DirListing};
use super::rows::{hex, Outcome, Row};
use super::sink::Sink;
use super::{checkpoint_files, Ctx, Source, Stats};
use crate::manifest::Reason;
use anyhow::Result;
use rayon::prelude::*;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::Ordering;

pub(super) fn ingest_dir(
    ctx: &Ctx<'_>,
    source: &Source,
    source_index: u32,
    dir: &DirListing,
    index: &mut Index,
    sink: &mut Sink,
    stats: &Stats,
) -> Result<()> {
    for (rel, out) in &dir.problems {
        let row = Row::new(source_index, rel, 0, out.clone());
        if ctx.owns(&row) {
            sink.row(row)?;
        }
    }
    let mut todo = Vec::new();
    for f in dir.files.iter().filter(|f| ctx.owns(&Row::new(source_index, &f.rel, 0, Outcome::default()))) {
        let origin = hex(&os_bytes(dir.path_of(f).as_os_str()));
        match index.reuse_file(&origin, f.stamp, &ctx.env.workdir) {
            Some(out) => {
                stats.reused.fetch_add(1, Ordering::Relaxed);
                sink.remember(IndexRow::file(origin, f, out.clone()))?;
                sink.row(Row::new(source_index, &f.rel, 0, out))?;
            }
            // Only the file: its origin (~2 bytes a path byte) is made again when it is examined.
            None => todo.push(f),
        }
    }
    let bar = ctx.env.reporter.bar(todo.len() as u64, "ingest");
    bar.set_message(format!("{} ({})", source.name, dir.root.display()));
    // In chunks, each saved as a progress file once examined: a killed run keeps the chunks it finished.
    for chunk in todo.chunks(checkpoint_files()) {
        let outcomes = chunk
            .par_iter()
            .map(|f| {
                let out = read_and_examine(&dir.path_of(f), f, ctx, stats);
                bar.inc(1);
                out
            })
            .collect::<Result<Vec<_>>>()?;
        let mut done = Vec::with_capacity(chunk.len());
        for (f, out) in chunk.iter().zip(outcomes) {
            if out.reason != Some(Reason::Unreadable) {
                done.push(IndexRow::file(hex(&os_bytes(dir.path_of(f).as_os_str())), f, out.clone()));
            }
            sink.row(Row::new(source_index, &f.rel, 0, out))?;
        }
        stats.checkpoints.save(done.clone())?;
        for entry in done {
            sink.remember(entry)?;
        }
    }
    bar.finish_and_clear();
    Ok(())
}

fn read_and_examine(path: &Path, f: &DirFile, ctx: &Ctx<'_>, stats: &Stats) -> Result<Outcome> {
    let max = ctx.inputs.limits.max_file_bytes;
    if f.stamp.size > max {
        let detail = format!("{} bytes > limits.max_file_bytes = {max} (not read)", f.stamp.size);
        return Ok(Outcome::rejected(Reason::TooLarge, detail).with_bytes(Some(f.stamp.size)));
    }
    // Read at most max+1 bytes: the file may have grown since it was listed.
    let mut bytes = Vec::with_capacity(f.stamp.size as usize);
    match File::open(path).and_then(|file| file.take(max + 1).read_to_end(&mut bytes)) {
        Ok(_) => examine(&bytes, ctx, stats),
        Err(e) => Ok(Outcome::rejected(Reason::Unreadable, e.to_string()).with_bytes(Some(f.stamp.size))),
    }
}
