//! Manifest rows: what ingest learned about each file, their canonical order, unique keys and the manifest frames.
use super::spill::Spillable;
use super::Source;
use crate::manifest::columns::{self, col, frame};
use crate::manifest::{measure_columns, read_measures, Reason, ROW_GROUP};
use crate::manifest::{status_column, Status};
use crate::measure::Measures;
use crate::named::Named;
use crate::stages::parts::Publisher;
use anyhow::Result;
use polars::prelude::{Column, DataFrame};
use std::collections::HashSet;
use std::sync::Arc;

/// What ingest learned about one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Outcome {
    pub(super) bytes: Option<u64>,
    pub(super) blake3: Option<String>,
    pub(super) format: Option<String>,
    pub(super) width: Option<u32>,
    pub(super) height: Option<u32>,
    pub(super) color: Option<String>,
    pub(super) frames: Option<u32>,
    /// Hashes and quality scores from the one decode (accepted files); shared, not copied, by the row, the
    /// re-run index and the run's outcomes by content hash (~0.8 KB each, the bulk of an outcome).
    pub(super) measures: Option<Arc<Measures>>,
    /// None when accepted.
    pub(super) reason: Option<Reason>,
    pub(super) error: Option<String>,
}

impl Outcome {
    pub(super) fn rejected(reason: Reason, error: impl Into<String>) -> Self {
        Self { reason: Some(reason), error: Some(error.into()), ..Self::default() }
    }
    pub(super) fn with_bytes(mut self, bytes: Option<u64>) -> Self {
        self.bytes = bytes;
        self
    }
    pub(super) fn is_ok(&self) -> bool {
        self.reason.is_none()
    }
}

/// One manifest row before keys are assigned.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) source_index: u32,
    pub(super) path: String,
    pub(super) path_hex: Option<String>,
    /// Position inside an archive (0 for directory files): orders entries that share a name.
    pub(super) ordinal: u32,
    pub(super) out: Outcome,
}

impl Row {
    pub(super) fn new(source_index: u32, raw_path: &[u8], ordinal: u32, out: Outcome) -> Self {
        let (path, path_hex) = path_identity(raw_path, None);
        Self { source_index, path, path_hex, ordinal, out }
    }
}

/// Lossy UTF-8 path plus the raw bytes in hex when they are not UTF-8 (`decoded` is a better rendering of
/// non-UTF-8 bytes when the container says how they are encoded, e.g. CP437 zip names).
pub(super) fn path_identity(raw: &[u8], decoded: Option<String>) -> (String, Option<String>) {
    match std::str::from_utf8(raw) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (decoded.unwrap_or_else(|| String::from_utf8_lossy(raw).into_owned()), Some(hex(raw))),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // Once per file per run (every origin of the re-run index): one allocation, not a string per byte.
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Canonical row order: (source_index, path, path_hex, entry order) — independent of listing order and threads.
pub(super) fn canonical_order(a: &Row, b: &Row) -> std::cmp::Ordering {
    (a.source_index, &a.path, &a.path_hex, a.ordinal).cmp(&(b.source_index, &b.path, &b.path_hex, b.ordinal))
}

/// Rows spill to disk in canonical order, with their outcomes in the index's columns.
impl Spillable for Row {
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        canonical_order(self, other)
    }

    fn to_frame(rows: &[Self]) -> Result<DataFrame> {
        let head = vec![
            col("source_index", rows.iter().map(|r| r.source_index).collect::<Vec<u32>>()),
            col("path", rows.iter().map(|r| r.path.clone()).collect::<Vec<_>>()),
            col("path_hex", rows.iter().map(|r| r.path_hex.clone()).collect::<Vec<_>>()),
            col("ordinal", rows.iter().map(|r| r.ordinal).collect::<Vec<u32>>()),
        ];
        frame(rows.len(), head.into_iter().chain(outcome_columns(rows.iter().map(|r| &r.out))).collect())
    }

    fn from_frame(df: &DataFrame) -> Result<Vec<Self>> {
        let (source_index, ordinal) = (columns::u32s(df, "source_index")?, columns::u32s(df, "ordinal")?);
        let (path, path_hex) = (columns::strings(df, "path")?, columns::opt_strings(df, "path_hex")?);
        let rows = source_index.into_iter().zip(path).zip(path_hex).zip(ordinal).zip(read_outcomes(df)?);
        Ok(rows
            .map(|((((source_index, path), path_hex), ordinal), out)| Row {
                source_index,
                path,
                path_hex,
                ordinal,
                out,
            })
            .collect())
    }
}

/// An outcome's columns, as the re-run index and spilled rows store them.
pub(super) fn outcome_columns<'a>(outs: impl Iterator<Item = &'a Outcome> + Clone) -> Vec<Column> {
    let strs = |f: fn(&Outcome) -> Option<String>| outs.clone().map(f).collect::<Vec<_>>();
    vec![
        col("bytes", outs.clone().map(|o| o.bytes).collect::<Vec<Option<u64>>>()),
        col("blake3", strs(|o| o.blake3.clone())),
        col("format", strs(|o| o.format.clone())),
        col("width", outs.clone().map(|o| o.width).collect::<Vec<Option<u32>>>()),
        col("height", outs.clone().map(|o| o.height).collect::<Vec<Option<u32>>>()),
        col("color", strs(|o| o.color.clone())),
        col("frames", outs.clone().map(|o| o.frames).collect::<Vec<Option<u32>>>()),
        col("reason", outs.clone().map(|o| o.reason.map(|r| r.name())).collect::<Vec<_>>()),
        col("error", strs(|o| o.error.clone())),
    ]
    .into_iter()
    .chain(measure_columns(outs.map(|o| o.measures.as_deref())))
    .collect()
}

/// The outcomes of [`outcome_columns`], read back.
pub(super) fn read_outcomes(df: &DataFrame) -> Result<Vec<Outcome>> {
    let bytes = columns::opt_u64s(df, "bytes")?;
    let (blake3, format, color) =
        (columns::opt_strings(df, "blake3")?, columns::opt_strings(df, "format")?, columns::opt_strings(df, "color")?);
    let (width, height, frames) =
        (columns::opt_u32s(df, "width")?, columns::opt_u32s(df, "height")?, columns::opt_u32s(df, "frames")?);
    let (reason, error) = (columns::opt_strings(df, "reason")?, columns::opt_strings(df, "error")?);
    let reason = reason
        .into_iter()
        .map(|r| r.map(|r| r.parse::<Reason>().map_err(anyhow::Error::msg)).transpose())
        .collect::<Result<Vec<_>>>()?;
    let mut measures = read_measures(df)?;
    Ok((0..df.height())
        .map(|i| Outcome {
            bytes: bytes[i],
            blake3: blake3[i].clone(),
            format: format[i].clone(),
            width: width[i],
            height: height[i],
            color: color[i].clone(),
            frames: frames[i],
            reason: reason[i],
            measures: measures[i].take().map(Arc::new),
            error: error[i].clone(),
        })
        .collect())
}

/// Keys, `<source>/<path>`, assigned as the rows stream by in canonical order, made unique with `#2`, `#3`, ...
/// for repeated names (a zip may hold the same entry name twice; distinct non-UTF-8 names may be equal once made
/// lossy). Natural keys are reserved first, so a file really named `a.jpg#2` keeps its key. A repeated name's
/// rows are adjacent in canonical order (source names are unique and have no '/'), and a suffixed key can only
/// collide with a natural key that ends in `#` and digits: those are all this needs to remember, noted while the
/// rows were found.
#[derive(Default)]
pub(super) struct Keys {
    suffixed_natural: HashSet<String>,
    /// The (source_index, path) of the previous row, and the next suffix to try for it.
    current: Option<(u32, String, u32)>,
}

impl Keys {
    /// Remembers `row`'s natural key if it looks like a suffixed one; call for every row before [`Keys::assign`].
    pub(super) fn note(&mut self, sources: &[Source], row: &Row) {
        let base = natural_key(sources, row);
        if base.rsplit_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            self.suffixed_natural.insert(base);
        }
    }

    /// The key of the next row in canonical order.
    pub(super) fn assign(&mut self, sources: &[Source], row: &Row) -> String {
        let base = natural_key(sources, row);
        match &mut self.current {
            Some((source, path, next)) if *source == row.source_index && *path == row.path => loop {
                let key = format!("{base}#{next}");
                *next += 1;
                if !self.suffixed_natural.contains(&key) {
                    return key;
                }
            },
            _ => {
                self.current = Some((row.source_index, row.path.clone(), 2));
                base
            }
        }
    }
}

fn natural_key(sources: &[Source], row: &Row) -> String {
    format!("{}/{}", sources[row.source_index as usize].name, row.path)
}

/// Writes the manifest from rows in canonical order, a row group at a time.
pub(super) fn publish_rows(
    publisher: &mut Publisher,
    sources: &[Source],
    rows: impl Iterator<Item = Result<Row>>,
    mut keys: Keys,
) -> Result<()> {
    let mut batch: Vec<(String, Row)> = Vec::with_capacity(ROW_GROUP);
    let mut pushed = false;
    for row in rows {
        let row = row?;
        batch.push((keys.assign(sources, &row), row));
        if batch.len() == ROW_GROUP {
            publisher.push(manifest_frame(sources, &batch)?)?;
            batch.clear();
            pushed = true;
        }
    }
    if !batch.is_empty() || !pushed {
        publisher.push(manifest_frame(sources, &batch)?)?;
    }
    Ok(())
}

fn manifest_frame(sources: &[Source], keyed: &[(String, Row)]) -> Result<DataFrame> {
    let rows = || keyed.iter().map(|(_, r)| r);
    let pick = |f: fn(&Row) -> Option<String>| rows().map(f).collect::<Vec<_>>();
    let names: Vec<String> = rows().map(|r| sources[r.source_index as usize].name.clone()).collect();
    let cropped: Vec<bool> = rows().map(|r| sources[r.source_index as usize].already_cropped).collect();
    let status = status_column(rows().map(|r| Status::ok_if(r.out.is_ok())));
    let object = pick(|r| r.out.blake3.clone().filter(|_| r.out.is_ok()));
    frame(
        keyed.len(),
        vec![
            col("key", keyed.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()),
            col("source", names),
            col("source_index", rows().map(|r| r.source_index).collect::<Vec<u32>>()),
            col("path", rows().map(|r| r.path.clone()).collect::<Vec<_>>()),
            col("path_hex", pick(|r| r.path_hex.clone())),
            col("already_cropped", cropped),
            col("bytes", rows().map(|r| r.out.bytes).collect::<Vec<Option<u64>>>()),
            col("blake3", pick(|r| r.out.blake3.clone())),
            col("object", object),
            col("format", pick(|r| r.out.format.clone())),
            col("width", rows().map(|r| r.out.width).collect::<Vec<Option<u32>>>()),
            col("height", rows().map(|r| r.out.height).collect::<Vec<Option<u32>>>()),
            col("color", pick(|r| r.out.color.clone())),
            col("frames", rows().map(|r| r.out.frames).collect::<Vec<Option<u32>>>()),
            status,
            col("reason", rows().map(|r| r.out.reason.map(|r| r.name())).collect::<Vec<_>>()),
            col("error", pick(|r| r.out.error.clone())),
        ]
        .into_iter()
        .chain(measure_columns(rows().map(|r| r.out.measures.as_deref())))
        .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn non_utf8_paths_keep_their_bytes_in_hex() {
        assert_eq!(path_identity(b"ok/\xc3\xa9.jpg", None), ("ok/é.jpg".to_string(), None));
        let (path, hex) = path_identity(b"bad\xff.jpg", None);
        assert_eq!(path, "bad\u{fffd}.jpg");
        assert_eq!(hex.as_deref(), Some("626164ff2e6a7067"));
    }

    #[test]
    fn repeated_names_get_unique_keys_in_canonical_order() {
        let sources = vec![Source { name: "s".into(), path: "/x".into(), already_cropped: false }];
        let mut rows: Vec<Row> = [(3u32, "a.jpg"), (1, "a.jpg"), (0, "b.jpg"), (2, "a.jpg#2")]
            .iter()
            .map(|&(ord, p)| Row::new(0, p.as_bytes(), ord, Outcome::default()))
            .collect();
        rows.sort_by(canonical_order);
        let mut keys = Keys::default();
        rows.iter().for_each(|r| keys.note(&sources, r));
        let keys: Vec<String> = rows.iter().map(|r| keys.assign(&sources, r)).collect();
        assert_eq!(keys, vec!["s/a.jpg", "s/a.jpg#3", "s/a.jpg#2", "s/b.jpg"]);
        let unique: BTreeSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
    }
}
