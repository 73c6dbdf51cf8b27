//! The near-duplicate goal on real faces: a labelled set of real Getchu faces and copies derived from them per kind
//! (re-encoded at JPEG quality 60..95, resized to 50..90%, cropped by 0..10% per side independently, and all
//! three combined), run through ingest and dedup; recall per kind and the share of unrelated originals wrongly
//! grouped. The labels come from the derivation, never from the code under test.
//!
//! Honest "unrelated": Getchu holds genuine near duplicates (the same sprite re-exported, or with another
//! expression). The sampled originals are first deduplicated alone; every original dedup groups with another one
//! is left out of the labelled set (their number is printed and bounded), so a later grouping of two originals
//! can only come from a copy wrongly matched to an unrelated face.
//!
//! `DEDUP_RECALL_N` (default 400) sets the number of sampled originals: BENCHMARKS.md quotes a larger run.
use crate::support;
use crate::support::ingest_data::{context, jpeg, png, rows, Row};
use anime_pipe::stages::Stage;
use image::imageops::{self, FilterType};
use image::RgbImage;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::path::Path;

const KINDS: [&str; 4] = ["jpeg", "resize", "crop", "combined"];

/// SplitMix64: the copies depend on this seed only.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in lo..=hi.
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u32
    }
}

/// `n` byte-distinct faces of getchu64.zip, spread over the archive (every k-th distinct entry by name).
fn sample_faces(zip_path: &Path, n: usize) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(fs::File::open(zip_path).unwrap()).unwrap();
    let mut names: Vec<String> =
        archive.file_names().filter_map(Result::ok).filter(|f| f.ends_with(".jpg")).map(String::from).collect();
    names.sort();
    let mut seen = std::collections::HashSet::new();
    let mut distinct = Vec::new();
    for name in names {
        let mut bytes = Vec::new();
        archive.by_name(&name).unwrap().read_to_end(&mut bytes).unwrap();
        if seen.insert(blake3::hash(&bytes)) {
            distinct.push((name.rsplit('/').next().unwrap().to_string(), bytes));
        }
    }
    let step = distinct.len() / n;
    distinct.into_iter().step_by(step).take(n).collect()
}

/// One derived copy of `img` of the given kind, as file name suffix and bytes.
fn derive(img: &RgbImage, kind: &str, rng: &mut Rng) -> (String, Vec<u8>) {
    let reencode = |img: &RgbImage, rng: &mut Rng| jpeg(img, rng.range(60, 95) as u8);
    match kind {
        "jpeg" => ("jpg".into(), reencode(img, rng)),
        "resize" => ("png".into(), png(&resize(img, rng))),
        "crop" => ("png".into(), png(&crop(img, rng))),
        _ => {
            let cropped = crop(img, rng);
            let resized = resize(&cropped, rng);
            ("jpg".into(), reencode(&resized, rng))
        }
    }
}

/// Resized to 50..90% of each side (one factor), with a filter that varies with the seed.
fn resize(img: &RgbImage, rng: &mut Rng) -> RgbImage {
    let percent = rng.range(50, 90);
    let filter = [FilterType::Triangle, FilterType::CatmullRom, FilterType::Lanczos3][rng.range(0, 2) as usize];
    let side = |s: u32| (s * percent).div_ceil(100).max(1);
    imageops::resize(img, side(img.width()), side(img.height()), filter)
}

/// Cropped by 0..=10% independently on each of the four sides.
fn crop(img: &RgbImage, rng: &mut Rng) -> RgbImage {
    let (w, h) = img.dimensions();
    let (l, r) = (rng.range(0, w / 10), rng.range(0, w / 10));
    let (t, b) = (rng.range(0, h / 10), rng.range(0, h / 10));
    imageops::crop_imm(img, l, t, w - l - r, h - t - b).to_image()
}

/// key -> key of its group's kept row.
fn groups(rows: &[Row]) -> HashMap<String, String> {
    rows.iter().map(|r| (r.key.clone(), r.duplicate_of.clone().unwrap_or_else(|| r.key.clone()))).collect()
}

fn ingest_and_dedup(work: &Path, data: &Path) -> Vec<Row> {
    let ctx = context(work, data.parent().unwrap(), &format!("sources:\n  - {{name: s, path: {:?}}}\n", data));
    ctx.run(Stage::Ingest).unwrap();
    ctx.run(Stage::Dedup).unwrap();
    rows(work, "dedup")
}

#[test]
fn real_faces_and_their_copies_meet_the_recall_and_false_grouping_goal() {
    let Some(shared) = support::shared_dir() else { return };
    let n: usize = std::env::var("DEDUP_RECALL_N").ok().map_or(400, |v| v.parse().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let originals_dir = tmp.path().join("originals");
    fs::create_dir_all(&originals_dir).unwrap();
    let faces = sample_faces(&shared.join("data/getchu64.zip"), n);
    for (name, bytes) in &faces {
        fs::write(originals_dir.join(name), bytes).unwrap();
    }
    // Originals dedup groups among themselves are not "unrelated": leave them out.
    let alone = groups(&ingest_and_dedup(&tmp.path().join("work-alone"), &originals_dir));
    let mut size: HashMap<&str, usize> = HashMap::new();
    alone.values().for_each(|g| *size.entry(g).or_default() += 1);
    let distinct: Vec<&(String, Vec<u8>)> =
        faces.iter().filter(|(name, _)| size[alone[&format!("s/{name}")].as_str()] == 1).collect();
    let excluded = faces.len() - distinct.len();
    eprintln!("{} sampled faces, {excluded} left out as grouped among themselves", faces.len());
    assert!(excluded * 20 <= faces.len(), "over 5% of sampled faces grouped among themselves: {excluded}");

    let data = tmp.path().join("labelled");
    fs::create_dir_all(&data).unwrap();
    let mut rng = Rng(20_261_202);
    // (kind, original's file, copy's file): the labels.
    let mut copies: Vec<(&str, &str, String)> = Vec::new();
    for (name, bytes) in &distinct {
        fs::write(data.join(name), bytes).unwrap();
        let img = image::load_from_memory(bytes).unwrap().to_rgb8();
        for kind in KINDS {
            let (ext, copy) = derive(&img, kind, &mut rng);
            let file = format!("{kind}__{}.{ext}", name.trim_end_matches(".jpg"));
            fs::write(data.join(&file), copy).unwrap();
            copies.push((kind, name, file));
        }
    }
    let group_of = groups(&ingest_and_dedup(&tmp.path().join("work"), &data));
    let original_group = |name: &str| group_of[&format!("s/{name}")].clone();
    let mut recall: BTreeMap<&str, usize> = BTreeMap::new();
    for (kind, original, file) in &copies {
        if group_of[&format!("s/{file}")] == original_group(original) {
            *recall.entry(kind).or_default() += 1;
        }
    }
    let mut originals_per_group: HashMap<String, usize> = HashMap::new();
    distinct.iter().for_each(|(name, _)| *originals_per_group.entry(original_group(name)).or_default() += 1);
    let wrongly_grouped: usize = originals_per_group.values().filter(|&&c| c > 1).sum();
    let total = distinct.len();
    for kind in KINDS {
        let found = recall.get(kind).copied().unwrap_or(0);
        eprintln!("recall {kind}: {found}/{total} = {:.4}", found as f64 / total as f64);
    }
    eprintln!("originals wrongly grouped: {wrongly_grouped}/{total} = {:.4}", wrongly_grouped as f64 / total as f64);
    for kind in KINDS {
        let found = recall.get(kind).copied().unwrap_or(0);
        assert!(found * 100 >= total * 95, "recall of {kind} copies {found}/{total} is under 95%");
    }
    assert!(wrongly_grouped * 1000 <= total * 2, "{wrongly_grouped} of {total} unrelated originals grouped together");
}
