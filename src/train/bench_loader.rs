//! `anime-pipe train --bench-loader N`: the loader's throughput alone, without the step graphs.
use crate::report::Summary;
use crate::train::loader;
use crate::train::presets::TrainConfig;
use crate::workdir::Workdir;
use anyhow::Result;
use std::time::Instant;

/// `train --bench-loader N`: the loader alone (shuffle, augmentation, assembly, channel), as the trainer uses it.
pub fn run(workdir: &Workdir, c: &TrainConfig, batches: u64) -> Result<Summary> {
    let mut summary = Summary::start("train --bench-loader");
    let opened = Instant::now();
    let set = std::sync::Arc::new(loader::ShardSet::open(workdir, c.image_size, &c.split)?);
    let open_s = opened.elapsed().as_secs_f64();
    let spec = loader::LoaderSpec { batch_size: c.batch_size, seed: c.seed, augment: c.augment };
    let mut loader = loader::Loader::spawn(set.clone(), spec, loader::Position::default(), c.prefetch)?;
    let clock = Instant::now();
    let mut checksum = 0u64;
    for _ in 0..batches {
        let batch = loader.next_batch()?;
        checksum = checksum.wrapping_add(batch.pixels.iter().step_by(4099).map(|&b| u64::from(b)).sum::<u64>());
    }
    let seconds = clock.elapsed().as_secs_f64().max(1e-9);
    let images = batches as f64 * c.batch_size as f64;
    summary.count("images in split", set.len() as u64).count("batches", batches);
    summary
        .fact("batch", format!("{} x {}x{}x3 u8", c.batch_size, c.image_size, c.image_size))
        .fact(
            "augment",
            format!(
                "flip {}, translate {} px, crop {}, rotate {} deg",
                c.augment.flip, c.augment.translate, c.augment.crop, c.augment.rotate
            ),
        )
        .fact("open + map shards", format!("{:.3} s", open_s))
        .fact("batches/s", format!("{:.1}", batches as f64 / seconds))
        .fact("images/s", format!("{:.0}", images / seconds))
        .fact("MB/s", format!("{:.0}", images * set.image_bytes() as f64 / seconds / 1e6))
        .fact("checksum", checksum);
    Ok(summary.finish())
}
