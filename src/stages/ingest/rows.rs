//! Manifest rows: what ingest learned about each file, their canonical order, unique keys and the manifest frame.
use super::Source;
use crate::manifest::columns::{col, frame};
use crate::manifest::{measure_columns, row_group_ranges, Reason};
use crate::manifest::{status_column, Status};
use crate::measure::Measures;
use crate::named::Named;
use anyhow::Result;
use polars::prelude::DataFrame;
use std::collections::BTreeSet;
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
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Canonical row order: (source_index, path, path_hex, entry order) — independent of listing order and threads.
pub(super) fn sort_canonically(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        (a.source_index, &a.path, &a.path_hex, a.ordinal).cmp(&(b.source_index, &b.path, &b.path_hex, b.ordinal))
    });
}

/// `<source>/<path>`, made unique with `#2`, `#3`, ... in canonical order for repeated names (a zip may hold the
/// same entry name twice; distinct non-UTF-8 names may be equal once made lossy). Natural keys are reserved first,
/// so a file really named `a.jpg#2` keeps its key.
pub(super) fn assign_keys(sources: &[Source], rows: &[Row]) -> Vec<String> {
    let base: Vec<String> =
        rows.iter().map(|r| format!("{}/{}", sources[r.source_index as usize].name, r.path)).collect();
    let mut used = BTreeSet::new();
    let mut keys: Vec<Option<String>> = base.iter().map(|b| used.insert(b.clone()).then(|| b.clone())).collect();
    for (key, base) in keys.iter_mut().zip(&base).filter(|(k, _)| k.is_none()) {
        let mut n = 2;
        while !used.insert(format!("{base}#{n}")) {
            n += 1;
        }
        *key = Some(format!("{base}#{n}"));
    }
    keys.into_iter().map(|k| k.expect("every key assigned")).collect()
}

/// The manifest, a row group at a time: one frame of every row at once would be another copy of them all.
pub(super) fn manifest_frames<'a>(
    sources: &'a [Source],
    rows: &'a [Row],
) -> impl Iterator<Item = Result<DataFrame>> + 'a {
    let keys = assign_keys(sources, rows);
    row_group_ranges(rows.len()).map(move |r| manifest_frame(sources, &rows[r.clone()], &keys[r]))
}

fn manifest_frame(sources: &[Source], rows: &[Row], keys: &[String]) -> Result<DataFrame> {
    let pick = |f: fn(&Row) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    let names: Vec<String> = rows.iter().map(|r| sources[r.source_index as usize].name.clone()).collect();
    let cropped: Vec<bool> = rows.iter().map(|r| sources[r.source_index as usize].already_cropped).collect();
    let status = status_column(rows.iter().map(|r| Status::ok_if(r.out.is_ok())));
    let object = pick(|r| r.out.blake3.clone().filter(|_| r.out.is_ok()));
    frame(
        rows.len(),
        vec![
            col("key", keys.to_vec()),
            col("source", names),
            col("source_index", rows.iter().map(|r| r.source_index).collect::<Vec<u32>>()),
            col("path", rows.iter().map(|r| r.path.clone()).collect::<Vec<_>>()),
            col("path_hex", pick(|r| r.path_hex.clone())),
            col("already_cropped", cropped),
            col("bytes", rows.iter().map(|r| r.out.bytes).collect::<Vec<Option<u64>>>()),
            col("blake3", pick(|r| r.out.blake3.clone())),
            col("object", object),
            col("format", pick(|r| r.out.format.clone())),
            col("width", rows.iter().map(|r| r.out.width).collect::<Vec<Option<u32>>>()),
            col("height", rows.iter().map(|r| r.out.height).collect::<Vec<Option<u32>>>()),
            col("color", pick(|r| r.out.color.clone())),
            col("frames", rows.iter().map(|r| r.out.frames).collect::<Vec<Option<u32>>>()),
            status,
            col("reason", rows.iter().map(|r| r.out.reason.map(|r| r.name())).collect::<Vec<_>>()),
            col("error", pick(|r| r.out.error.clone())),
        ]
        .into_iter()
        .chain(measure_columns(rows.iter().map(|r| r.out.measures.as_deref())))
        .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
        sort_canonically(&mut rows);
        let keys = assign_keys(&sources, &rows);
        assert_eq!(keys, vec!["s/a.jpg", "s/a.jpg#3", "s/a.jpg#2", "s/b.jpg"]);
        let unique: BTreeSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
    }
}
