//! Where ingest's findings go as they are found: manifest rows and re-run index rows into their sorts (spilled to
//! disk past a run's worth, [`super::spill`]), the summary's tallies kept on the way. Nothing holds every row.
use super::index::IndexRow;
use super::listing::FileStamp;
use super::rows::{Keys, Row};
use super::spill::{Sorted, Spill};
use super::Source;
use crate::named::Named;
use crate::report::Summary;
use anyhow::Result;
use std::collections::{BTreeMap, HashMap, HashSet};

pub(super) struct Sink<'a> {
    sources: &'a [Source],
    limits: String,
    pub(super) rows: Spill<Row>,
    index: Spill<IndexRow>,
    pub(super) keys: Keys,
    pub(super) tally: Tally,
    /// Archives streamed in this run, by origin: their row count once known, or None when the archive could not
    /// be opened (then its row is not remembered: it may be readable next time).
    archive_rows: HashMap<(String, FileStamp), Option<u32>>,
}

impl<'a> Sink<'a> {
    pub(super) fn new(sources: &'a [Source], limits: &str) -> Self {
        let (rows, index) = match spill_rows() {
            Some(n) => (Spill::with_run_rows("ingest-rows", n), Spill::with_run_rows("ingest-index", n)),
            None => (Spill::new("ingest-rows"), Spill::new("ingest-index")),
        };
        let (keys, tally, archive_rows) = (Keys::default(), Tally::default(), HashMap::new());
        Self { sources, limits: limits.to_string(), rows, index, keys, tally, archive_rows }
    }

    /// A manifest row.
    pub(super) fn row(&mut self, row: Row) -> Result<()> {
        self.keys.note(self.sources, &row);
        self.tally.add(&row);
        self.rows.push(row)
    }

    /// A re-run index row (an archive entry's row count is filled in by [`Sink::archive_done`]).
    pub(super) fn remember(&mut self, entry: IndexRow) -> Result<()> {
        self.index.push(IndexRow { limits: self.limits.clone(), ..entry })
    }

    /// The archive `origin` was streamed to its end: it has `rows` rows in all partitions, or None when it could
    /// not be opened.
    pub(super) fn archive_done(&mut self, origin: String, stamp: FileStamp, rows: Option<u32>) {
        self.archive_rows.insert((origin, stamp), rows);
    }

    /// The re-run index rows, in the index's order, with the row counts of the archives streamed.
    pub(super) fn take_index(&mut self) -> Result<impl Iterator<Item = Result<IndexRow>>> {
        let index = std::mem::replace(&mut self.index, Spill::with_run_rows("ingest-index", 1));
        let archive_rows = std::mem::take(&mut self.archive_rows);
        Ok(index.sorted()?.filter_map(move |entry| {
            let Ok(mut entry) = entry else { return Some(entry) };
            match archive_rows.get(&(entry.origin.clone(), entry.stamp)) {
                None => Some(Ok(entry)),
                Some(None) => None,
                Some(Some(rows)) => {
                    entry.origin_rows = *rows;
                    Some(Ok(entry))
                }
            }
        }))
    }

    /// The manifest rows in canonical order, with what assigns their keys.
    pub(super) fn into_rows(self) -> Result<(Sorted<Row>, Keys, Tally)> {
        Ok((self.rows.sorted()?, self.keys, self.tally))
    }
}

/// Rows per sorted run (`ANIME_PIPE_INGEST_SPILL_ROWS` overrides it: tests spill small collections to disk).
fn spill_rows() -> Option<usize> {
    std::env::var("ANIME_PIPE_INGEST_SPILL_ROWS").ok().and_then(|v| v.parse().ok()).filter(|&n: &usize| n > 0)
}

/// The summary's counts, kept as rows pass: files, accepted, distinct contents, rejections by reason.
#[derive(Default)]
pub(super) struct Tally {
    files: u64,
    accepted: u64,
    /// The first 128 bits of each accepted file's blake3 (16 bytes a content, instead of the row).
    unique: HashSet<u128>,
    reasons: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn add(&mut self, row: &Row) {
        self.files += 1;
        match row.out.reason {
            Some(reason) => *self.reasons.entry(reason.name()).or_default() += 1,
            None => {
                self.accepted += 1;
                if let Some(prefix) = row.out.blake3.as_deref().and_then(|h| h.get(..32)) {
                    self.unique.insert(u128::from_str_radix(prefix, 16).unwrap_or_default());
                }
            }
        }
    }

    pub(super) fn summarize(&self, summary: &mut Summary) {
        summary
            .count("files", self.files)
            .count("accepted", self.accepted)
            .count("rejected", self.files - self.accepted)
            .count("unique images", self.unique.len() as u64);
        for (reason, &n) in &self.reasons {
            summary.reject_n(reason, n);
        }
    }
}
