//! Rows too many to hold: an external merge sort. Ingest finds one row per file in listing order, but writes its
//! manifest and its re-run index each in its own order, and a million rows with their measures (~1 KB each) are
//! more than a run should hold. A [`Spill`] keeps up to [`RUN_ROWS`] rows; past that it sorts them and writes them
//! as one run to a private folder under `TMPDIR` (removed when the spill or its merge is dropped); [`Spill::sorted`]
//! merges the runs back, holding one small row group of each. A collection that fits in one run never touches the
//! disk.
//!
//! Written here rather than taken from a crate (extsort, external-sort): those spill serde-encoded rows in their
//! own format, while these runs are the same Parquet frames as ingest's index (zstd, column by column), written and
//! read by the codecs the index already has.
use crate::manifest::{ManifestWriter, RowGroups};
use anyhow::{Context, Result};
use polars::prelude::DataFrame;
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::path::PathBuf;

/// Rows held before a run is written: about 130 MB of ingest rows with their measures.
const RUN_ROWS: usize = 1 << 17;
/// Rows per row group of a run: what the merge holds of each run at a time (about 2 MB), so 10M rows (77 runs)
/// merge in about 150 MB.
pub(super) const RUN_GROUP: usize = 2048;

/// A row that can be spilled: its order, and its frame codec.
pub(super) trait Spillable: Sized + Send {
    fn order(&self, other: &Self) -> Ordering;
    fn to_frame(rows: &[Self]) -> Result<DataFrame>;
    fn from_frame(df: &DataFrame) -> Result<Vec<Self>>;
}

/// Rows pushed in any order, handed back sorted by [`Spillable::order`].
pub(super) struct Spill<T: Spillable> {
    held: Vec<T>,
    runs: Vec<PathBuf>,
    dir: Option<tempfile::TempDir>,
    /// Names the temporary folder (`anime-pipe-<what>-…`).
    what: &'static str,
    run_rows: usize,
}

impl<T: Spillable> Spill<T> {
    pub(super) fn new(what: &'static str) -> Self {
        Self::with_run_rows(what, RUN_ROWS)
    }

    /// A spill that writes a run every `run_rows` rows (tests use small runs to spill small inputs).
    pub(super) fn with_run_rows(what: &'static str, run_rows: usize) -> Self {
        Self { held: Vec::new(), runs: Vec::new(), dir: None, what, run_rows: run_rows.max(1) }
    }

    pub(super) fn push(&mut self, row: T) -> Result<()> {
        self.held.push(row);
        if self.held.len() >= self.run_rows {
            self.write_run()?;
        }
        Ok(())
    }

    /// Runs written so far (0 while everything fits in memory).
    #[cfg(test)]
    pub(super) fn runs(&self) -> usize {
        self.runs.len()
    }

    fn write_run(&mut self) -> Result<()> {
        let dir = match &self.dir {
            Some(dir) => dir,
            None => self.dir.insert(
                tempfile::Builder::new()
                    .prefix(&format!("anime-pipe-{}-", self.what))
                    .tempdir()
                    .context("cannot create a temporary folder for ingest's sort (set TMPDIR to a folder with room)")?,
            ),
        };
        let path = dir.path().join(format!("run-{:06}.parquet", self.runs.len()));
        self.held.par_sort_by(T::order);
        let mut writer = ManifestWriter::scratch(&path, RUN_GROUP)?;
        for chunk in self.held.chunks(RUN_GROUP) {
            writer.push(T::to_frame(chunk)?)?;
        }
        writer.finish().with_context(|| format!("cannot write {} (is TMPDIR full?)", path.display()))?;
        self.held.clear();
        self.runs.push(path);
        Ok(())
    }

    /// Every row pushed, in order (rows that compare equal come in the order they were pushed).
    pub(super) fn sorted(self) -> Result<Sorted<T>> {
        self.sorted_with(&[])
    }

    /// Every row pushed merged with the rows of `files`, each already in order and in this row type's frames
    /// (read a row group at a time). Rows that compare equal come from the files first, in the order given.
    pub(super) fn sorted_with(mut self, files: &[PathBuf]) -> Result<Sorted<T>> {
        // A stable sort: equal rows keep their push order, as they do across runs (earlier run first).
        self.held.par_sort_by(T::order);
        let mut sources: Vec<Run<T>> = Vec::with_capacity(files.len() + self.runs.len() + 1);
        for path in files.iter().chain(&self.runs) {
            sources.push(Run { groups: Some(RowGroups::open(path)?), current: Vec::new().into_iter() });
        }
        sources.push(Run { groups: None, current: std::mem::take(&mut self.held).into_iter() });
        let mut sorted = Sorted { heap: BinaryHeap::new(), runs: sources, _dir: self.dir.take() };
        for run in 0..sorted.runs.len() {
            sorted.refill(run)?;
        }
        Ok(sorted)
    }
}

/// One sorted run: a file read a row group at a time, or the rows still in memory.
struct Run<T> {
    groups: Option<RowGroups>,
    current: std::vec::IntoIter<T>,
}

impl<T: Spillable> Run<T> {
    fn next(&mut self) -> Result<Option<T>> {
        loop {
            if let Some(row) = self.current.next() {
                return Ok(Some(row));
            }
            let Some(group) = self.groups.as_mut().and_then(Iterator::next) else { return Ok(None) };
            self.current = T::from_frame(&group?)?.into_iter();
        }
    }
}

/// The next row of each run, smallest first; ties go to the earlier run.
struct Head<T> {
    row: T,
    run: usize,
}

impl<T: Spillable> Ord for Head<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap pops the greatest: reversed, so the smallest row (then the earliest run) comes first.
        other.row.order(&self.row).then(other.run.cmp(&self.run))
    }
}

impl<T: Spillable> PartialOrd for Head<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Spillable> PartialEq for Head<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T: Spillable> Eq for Head<T> {}

/// The merge of a spill's runs: an iterator of its rows in order.
pub(super) struct Sorted<T: Spillable> {
    heap: BinaryHeap<Head<T>>,
    runs: Vec<Run<T>>,
    /// Kept until the merge is done: dropping it removes the runs.
    _dir: Option<tempfile::TempDir>,
}

impl<T: Spillable> Sorted<T> {
    /// A merge of nothing.
    pub(super) fn empty() -> Self {
        Self { heap: BinaryHeap::new(), runs: Vec::new(), _dir: None }
    }

    fn refill(&mut self, run: usize) -> Result<()> {
        if let Some(row) = self.runs[run].next()? {
            self.heap.push(Head { row, run });
        }
        Ok(())
    }
}

impl<T: Spillable> Iterator for Sorted<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        let Head { row, run } = self.heap.pop()?;
        Some(self.refill(run).map(|()| row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::columns::{self, col, frame};

    /// (key, pushed position): the position shows whether equal keys keep their push order.
    #[derive(Debug, Clone, PartialEq)]
    struct Pair(u32, u32);

    impl Spillable for Pair {
        fn order(&self, other: &Self) -> Ordering {
            self.0.cmp(&other.0)
        }
        fn to_frame(rows: &[Self]) -> Result<DataFrame> {
            let (k, p): (Vec<u32>, Vec<u32>) = rows.iter().map(|r| (r.0, r.1)).unzip();
            frame(rows.len(), vec![col("k", k), col("p", p)])
        }
        fn from_frame(df: &DataFrame) -> Result<Vec<Self>> {
            let (k, p) = (columns::u32s(df, "k")?, columns::u32s(df, "p")?);
            Ok(k.into_iter().zip(p).map(|(k, p)| Pair(k, p)).collect())
        }
    }

    fn spilled(n: u32, run_rows: usize) -> (Vec<Pair>, usize, Option<PathBuf>) {
        let mut spill = Spill::with_run_rows("test", run_rows);
        // Keys in a scrambled order with many repeats.
        for i in 0..n {
            spill.push(Pair(i.wrapping_mul(2_654_435_761) % 97, i)).unwrap();
        }
        let runs = spill.runs();
        let dir = spill.dir.as_ref().map(|d| d.path().to_path_buf());
        let rows = spill.sorted().unwrap().collect::<Result<Vec<_>>>().unwrap();
        (rows, runs, dir)
    }

    #[test]
    fn spilled_runs_merge_to_the_same_stable_order_as_an_in_memory_sort() {
        let (in_memory, runs, dir) = spilled(10_000, 1 << 20);
        assert_eq!((runs, dir), (0, None), "10,000 rows fit in one run: nothing written");
        let mut expected = in_memory.clone();
        expected.sort_by_key(|p| (p.0, p.1));
        assert_eq!(in_memory, expected, "sorted by key, equal keys in push order");
        // 10,000 rows in runs of 1,500 (6 on disk, 1,000 left in memory), each run read back in groups of 2,048.
        let (merged, runs, dir) = spilled(10_000, 1_500);
        assert_eq!(runs, 6);
        assert_eq!(merged, expected);
        assert!(!dir.unwrap().exists(), "the runs' folder is removed once the merge is done");
    }

    #[test]
    fn an_empty_spill_yields_nothing() {
        let spill: Spill<Pair> = Spill::new("test");
        assert_eq!(spill.sorted().unwrap().count(), 0);
    }
}
