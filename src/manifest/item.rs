//! The one item type that stages hand on: an accepted row of a manifest (a source image, a face crop, an
//! upscaled item) with its measures, and the one reader of such rows.
use super::columns::{self, col};
use super::{RowGroups, Status, Upstream, ROW_GROUP};
use crate::imagehash::{CropSignature, WINDOWS};
use crate::measure::{thumb_from_hex, thumb_hex, Measures};
use crate::named::Named;
use crate::quality::Scores;
use crate::workdir::Workdir;
use anyhow::{anyhow, Result};
use polars::prelude::{Column, DataFrame};

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub key: String,
    pub source: String,
    pub source_index: u32,
    pub path: String,
    /// Cache object holding the image (blake3 of its bytes).
    pub object: String,
    pub width: u32,
    pub height: u32,
    /// The source's flag, when the manifest carries it.
    pub already_cropped: Option<bool>,
    /// The upscaled version of `object` (upscale.parquet and after; null when the item was large enough).
    /// `width` and `height` stay those of `object`: size filters judge the original.
    pub upscaled_object: Option<String>,
    /// What later stages need from the pixels (null only in manifests written before measures existed).
    pub measures: Option<Measures>,
}

/// The rows with status "ok" of the upstream manifest, in canonical order (source_index, path; ties keep the
/// manifest's order). The manifest must still be the one the upstream's hash names.
pub fn read_items(workdir: &Workdir, upstream: &Upstream) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for batch in item_batches(workdir, upstream)? {
        items.extend(batch?);
    }
    Ok(items)
}

/// The same items as [`read_items`], one row group at a time: a stage that judges each item on its own holds a
/// row group of them, not the manifest. Every manifest anime-pipe writes is in canonical order, which a first pass
/// over two columns checks; one that is not (written by another tool) is read whole and sorted instead.
pub fn item_batches(workdir: &Workdir, upstream: &Upstream) -> Result<ItemBatches> {
    let groups = upstream.row_groups(workdir)?;
    let stage = upstream.stage.clone();
    if in_canonical_order(groups.with_only(&["source_index", "path"])?)? {
        return Ok(ItemBatches { batches: Batches::InOrder(groups), stage });
    }
    let mut items = Vec::new();
    for group in groups {
        items.extend(items_of(group?, &stage)?);
    }
    items.sort_by(|a, b| (a.source_index, &a.path).cmp(&(b.source_index, &b.path)));
    let mut batches = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(items.len().min(ROW_GROUP));
        batches.push(std::mem::replace(&mut items, rest));
    }
    Ok(ItemBatches { batches: Batches::Sorted(batches.into_iter()), stage })
}

/// Whether every row, accepted or not, comes after the one before it in (source_index, path).
fn in_canonical_order(groups: RowGroups) -> Result<bool> {
    let mut last: Option<(u32, String)> = None;
    for group in groups {
        let group = group?;
        let (index, path) = (columns::u32s(&group, "source_index")?, columns::strings(&group, "path")?);
        for (i, p) in index.into_iter().zip(path) {
            if last.as_ref().is_some_and(|(li, lp)| (*li, lp.as_str()) > (i, p.as_str())) {
                return Ok(false);
            }
            last = Some((i, p));
        }
    }
    Ok(true)
}

/// See [`item_batches`].
pub struct ItemBatches {
    batches: Batches,
    stage: String,
}

enum Batches {
    InOrder(RowGroups),
    Sorted(std::vec::IntoIter<Vec<Item>>),
}

impl Iterator for ItemBatches {
    type Item = Result<Vec<Item>>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.batches {
            Batches::InOrder(groups) => Some(groups.next()?.and_then(|df| items_of(df, &self.stage))),
            Batches::Sorted(batches) => batches.next().map(Ok),
        }
    }
}

/// The accepted rows of `df`. The frame is dropped once its columns are read and every value is moved, not
/// copied, into its item: at a million rows each copy of the rows is about a gigabyte.
fn items_of(df: DataFrame, stage: &str) -> Result<Vec<Item>> {
    let status = columns::strings(&df, "status")?;
    let (mut key, mut source, mut path, mut object) = (
        columns::strings(&df, "key")?,
        columns::strings(&df, "source")?,
        columns::strings(&df, "path")?,
        columns::opt_strings(&df, "object")?,
    );
    let (source_index, width, height) =
        (columns::u32s(&df, "source_index")?, columns::opt_u32s(&df, "width")?, columns::opt_u32s(&df, "height")?);
    let cropped = optional(&df, "already_cropped", columns::opt_bools)?;
    let mut upscaled = optional(&df, "upscaled_object", columns::opt_strings)?;
    let mut measures = read_measures(&df)?;
    let rows = df.height();
    drop(df);
    let mut items = Vec::new();
    for row in (0..rows).filter(|&r| status[r] == Status::Ok.name()) {
        let missing = |what: &str| anyhow!("{stage}.parquet row {:?}: status \"ok\" but no {what}", key[row]);
        items.push(Item {
            object: object[row].take().ok_or_else(|| missing("object"))?,
            width: width[row].ok_or_else(|| missing("width"))?,
            height: height[row].ok_or_else(|| missing("height"))?,
            key: std::mem::take(&mut key[row]),
            source: std::mem::take(&mut source[row]),
            source_index: source_index[row],
            path: std::mem::take(&mut path[row]),
            already_cropped: cropped[row],
            upscaled_object: upscaled[row].take(),
            measures: measures[row].take(),
        });
    }
    Ok(items)
}

/// A column that older or other manifests may lack: all null then.
fn optional<T: Clone>(
    df: &DataFrame,
    name: &str,
    read: fn(&DataFrame, &str) -> Result<Vec<Option<T>>>,
) -> Result<Vec<Option<T>>> {
    if columns::has(df, name) {
        read(df, name)
    } else {
        Ok(vec![None; df.height()])
    }
}

/// The measure columns: `pixel_hash`, `phash`, `thumb`, the crop signature (`window_phashes`: 16 u64 LE in 128
/// bytes, `gray_thumb`: 16x16 luma, `colour_thumb`: 8x8 RGB, binary), `sharpness`, `colorfulness`, `grayscale`,
/// `entropy`.
pub const MEASURE_COLUMNS: [&str; 10] = [
    "pixel_hash",
    "phash",
    "thumb",
    "window_phashes",
    "gray_thumb",
    "colour_thumb",
    "sharpness",
    "colorfulness",
    "grayscale",
    "entropy",
];

/// The measures of every row (None where a row, or the manifest, has none).
pub fn read_measures(df: &DataFrame) -> Result<Vec<Option<Measures>>> {
    if !MEASURE_COLUMNS.iter().all(|c| columns::has(df, c)) {
        return Ok(vec![None; df.height()]);
    }
    let (pixel_hash, phash, thumb) =
        (columns::opt_strings(df, "pixel_hash")?, columns::opt_u64s(df, "phash")?, columns::opt_strings(df, "thumb")?);
    let (sharpness, colorfulness, entropy) = (
        columns::opt_f64s(df, "sharpness")?,
        columns::opt_f64s(df, "colorfulness")?,
        columns::opt_f64s(df, "entropy")?,
    );
    let grayscale = columns::opt_bools(df, "grayscale")?;
    let (windows, gray, colour) = (
        columns::opt_binaries(df, "window_phashes")?,
        columns::opt_binaries(df, "gray_thumb")?,
        columns::opt_binaries(df, "colour_thumb")?,
    );
    Ok((0..df.height())
        .map(|r| {
            Some(Measures {
                pixel_hash: pixel_hash[r].clone()?,
                phash: phash[r]?,
                thumb: thumb_from_hex(thumb[r].as_deref()?)?,
                crop: CropSignature {
                    windows: windows_from_bytes(windows[r].as_deref()?)?,
                    gray: gray[r].as_deref()?.try_into().ok()?,
                    colour: colour[r].as_deref()?.try_into().ok()?,
                },
                quality: Scores {
                    sharpness: sharpness[r]?,
                    colorfulness: colorfulness[r]?,
                    grayscale: grayscale[r]?,
                    entropy: entropy[r]?,
                },
            })
        })
        .collect())
}

/// The measure columns of `rows` (null where a row has none), in [`MEASURE_COLUMNS`] order.
pub fn measure_columns<'a>(rows: impl Iterator<Item = Option<&'a Measures>> + Clone) -> Vec<Column> {
    let pick = |f: fn(&Measures) -> f64| rows.clone().map(|m| m.map(f)).collect::<Vec<Option<f64>>>();
    vec![
        col("pixel_hash", rows.clone().map(|m| m.map(|m| m.pixel_hash.clone())).collect::<Vec<_>>()),
        col("phash", rows.clone().map(|m| m.map(|m| m.phash)).collect::<Vec<Option<u64>>>()),
        col("thumb", rows.clone().map(|m| m.map(|m| thumb_hex(&m.thumb))).collect::<Vec<_>>()),
        col("window_phashes", rows.clone().map(|m| m.map(|m| windows_bytes(&m.crop.windows))).collect::<Vec<_>>()),
        col("gray_thumb", rows.clone().map(|m| m.map(|m| m.crop.gray.as_slice())).collect::<Vec<_>>()),
        col("colour_thumb", rows.clone().map(|m| m.map(|m| m.crop.colour.as_slice())).collect::<Vec<_>>()),
        col("sharpness", pick(|m| m.quality.sharpness)),
        col("colorfulness", pick(|m| m.quality.colorfulness)),
        col("grayscale", rows.clone().map(|m| m.map(|m| m.quality.grayscale)).collect::<Vec<_>>()),
        col("entropy", pick(|m| m.quality.entropy)),
    ]
}

/// The window hashes as their column stores them: 16 u64, little-endian, in window order.
fn windows_bytes(windows: &[u64; WINDOWS]) -> Vec<u8> {
    windows.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn windows_from_bytes(bytes: &[u8]) -> Option<[u64; WINDOWS]> {
    if bytes.len() != 8 * WINDOWS {
        return None;
    }
    Some(std::array::from_fn(|k| u64::from_le_bytes(bytes[8 * k..8 * k + 8].try_into().expect("8 bytes"))))
}
