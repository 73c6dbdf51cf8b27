//! Manifests a row group at a time, so a stage's memory does not grow with the number of rows it passes on.
//!
//! Every manifest is written by [`ManifestWriter`] in row groups of exactly [`ROW_GROUP`] rows (the last one
//! shorter), whatever batches the stage hands it: the file's bytes depend on its rows only, never on how a stage
//! chunked its work, its thread count or the number of partitions. [`RowGroups`] reads one back a row group at a
//! time, after checking that the file is the one the reading stage's fingerprint names.
use super::{reader_blake3, Upstream};
use crate::workdir::{temp_path_beside, Workdir};
use anyhow::{anyhow, Context, Result};
use polars::io::parquet::write::BatchedWriter;
use polars::prelude::*;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Rows per row group: what a streamed stage holds of its input (and of its output) at a time. 65,536 rows of
/// the widest manifest (ingest's, with its measures) are about 60 MB in memory.
pub const ROW_GROUP: usize = 65_536;

/// The row ranges of `rows` rows cut into row groups; one empty range when there are none, since even an empty
/// manifest is written from one (empty) frame, for its columns.
pub fn row_group_ranges(rows: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..rows.max(1)).step_by(ROW_GROUP).map(move |start| start..(start + ROW_GROUP).min(rows))
}

/// Writes one Parquet manifest atomically (a temporary file renamed on [`ManifestWriter::finish`]; dropped
/// unfinished, it leaves nothing), re-cutting whatever frames it is given into row groups of [`ROW_GROUP`] rows.
/// The frames must arrive in the manifest's canonical order and share one schema.
pub struct ManifestWriter {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<BatchedWriter<File>>,
    file: Option<File>,
    pending: Option<DataFrame>,
    rows: usize,
    group_rows: usize,
    compression: ParquetCompression,
}

impl ManifestWriter {
    pub fn create(path: &Path) -> Result<Self> {
        Self::with_row_group(path, ROW_GROUP)
    }

    /// A writer of row groups of `group_rows` rows: for private files read back by many readers at once (an
    /// external sort's runs), where a manifest's [`ROW_GROUP`] per reader would be too much to hold.
    pub fn with_row_group(path: &Path, group_rows: usize) -> Result<Self> {
        let tmp = temp_path_beside(path)?;
        let (writer, file, pending, rows) = (None, None, None, 0);
        let (group_rows, compression) = (group_rows.max(1), ParquetCompression::Zstd(None));
        Ok(Self { path: path.to_path_buf(), tmp, writer, file, pending, rows, group_rows, compression })
    }

    /// A writer for a scratch file read back once and deleted (an external sort's run): LZ4 rather than zstd,
    /// since such a file gains little from being smaller and is written and read in the middle of a run.
    pub fn scratch(path: &Path, group_rows: usize) -> Result<Self> {
        let mut writer = Self::with_row_group(path, group_rows)?;
        writer.compression = ParquetCompression::Lz4Raw;
        Ok(writer)
    }

    /// Appends `df`'s rows; full row groups are written at once, the rest waits for more rows or `finish`.
    pub fn push(&mut self, df: DataFrame) -> Result<()> {
        self.rows += df.height();
        let mut pending = match self.pending.take() {
            None => df,
            Some(mut pending) => {
                pending.vstack_mut_owned(df).map_err(|e| self.error(e))?;
                pending
            }
        };
        let group = self.group_rows;
        while pending.height() >= group {
            self.write_group(pending.slice(0, group))?;
            pending = pending.slice(group as i64, pending.height() - group);
        }
        self.pending = Some(pending);
        Ok(())
    }

    /// Writes the last, shorter row group and the footer, syncs the file and renames it into place. Returns the
    /// number of rows. A manifest of no rows still needs one (empty) frame pushed, for its schema.
    pub fn finish(mut self) -> Result<usize> {
        let pending = self.pending.take().context("a manifest needs at least one frame, for its columns")?;
        if pending.height() > 0 || self.writer.is_none() {
            self.write_group(pending)?;
        }
        let writer = self.writer.take().expect("written above");
        writer.finish().map_err(|e| self.error(e))?;
        drop(writer);
        let file = self.file.take().expect("opened with the writer");
        file.sync_all().with_context(|| format!("cannot write {}", self.tmp.display()))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).with_context(|| format!("cannot publish {}", self.path.display()))?;
        Ok(self.rows)
    }

    fn write_group(&mut self, mut group: DataFrame) -> Result<()> {
        group.rechunk_mut_par();
        if self.writer.is_none() {
            let file = File::create(&self.tmp).with_context(|| format!("cannot create {}", self.tmp.display()))?;
            // The writer cannot hand its file back, so a second handle syncs it.
            self.file = Some(file.try_clone()?);
            let writer = ParquetWriter::new(file)
                .with_compression(self.compression)
                .with_statistics(StatisticsOptions::default())
                .batched(group.schema())
                .map_err(|e| self.error(e))?;
            self.writer = Some(writer);
        }
        let writer = self.writer.as_mut().expect("created above");
        writer.write_batch(&group).map_err(|e| anyhow!("cannot write {}: {e}", self.path.display()))
    }

    fn error(&self, e: PolarsError) -> anyhow::Error {
        anyhow!("cannot write {}: {e}", self.path.display())
    }
}

impl Drop for ManifestWriter {
    fn drop(&mut self) {
        if self.writer.is_some() || self.tmp.exists() {
            self.writer = None;
            self.file = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A manifest's row groups, read one at a time from one open file.
pub struct RowGroups {
    file: File,
    path: PathBuf,
    metadata: Arc<polars::io::parquet::read::FileMetadata>,
    columns: Option<Vec<String>>,
    next: usize,
}

impl RowGroups {
    /// The row groups of the file at `path`, all columns.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Self::of_file(file, path)
    }

    fn of_file(mut file: File, path: &Path) -> Result<Self> {
        file.seek(SeekFrom::Start(0))?;
        let mut reader = ParquetReader::new(file.try_clone()?);
        let metadata = reader.get_metadata().map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?.clone();
        Ok(Self { file, path: path.to_path_buf(), metadata, columns: None, next: 0 })
    }

    /// Reads only these columns (those the file lacks are left out, so a reader can check with `columns::has`).
    pub fn with_columns(mut self, wanted: &[&str]) -> Self {
        let present = self.metadata.schema().fields().iter().map(|f| f.name().to_string()).collect::<Vec<_>>();
        self.columns = Some(wanted.iter().filter(|c| present.iter().any(|p| p == *c)).map(|c| c.to_string()).collect());
        self
    }

    /// The same file's row groups again, from the start, with only these columns.
    pub fn with_only(&self, wanted: &[&str]) -> Result<Self> {
        let (file, path, metadata) = (self.file.try_clone()?, self.path.clone(), self.metadata.clone());
        Ok(Self { file, path, metadata, columns: None, next: 0 }.with_columns(wanted))
    }

    pub fn rows(&self) -> usize {
        self.metadata.num_rows
    }
}

impl Iterator for RowGroups {
    type Item = Result<DataFrame>;

    fn next(&mut self) -> Option<Self::Item> {
        let group = self.metadata.row_groups.get(self.next)?;
        self.next += 1;
        // The reader is handed metadata naming this one row group: given a row slice instead, it would decode
        // every row group before it again (reading a file of G groups would cost G^2/2 group decodes).
        let mut one = (*self.metadata).clone();
        one.row_groups = vec![group.clone()];
        one.num_rows = group.num_rows();
        let read = || -> Result<DataFrame> {
            let mut reader = ParquetReader::new(self.file.try_clone()?)
                .with_columns(self.columns.clone())
                .read_parallel(ParallelStrategy::Columns);
            reader.set_metadata(Arc::new(one));
            reader.finish().map_err(|e| anyhow!("cannot read {}: {e}", self.path.display()))
        };
        Some(read())
    }
}

impl Upstream {
    /// The manifest's row groups, refusing a file that changed since [`Upstream::of`]: the hash is taken through
    /// the same open file that is then read, so a manifest renamed over it meanwhile cannot slip in.
    pub fn row_groups(&self, workdir: &Workdir) -> Result<RowGroups> {
        let path = workdir.manifest_path(&self.stage);
        let mut file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        if reader_blake3(&mut file).with_context(|| format!("cannot read {}", path.display()))? != self.blake3 {
            anyhow::bail!(
                "{} changed while this stage was starting (another process rewrote it): run the command again",
                path.display()
            );
        }
        RowGroups::of_file(file, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(range: std::ops::Range<u32>) -> DataFrame {
        let names: Vec<String> = range.clone().map(|i| format!("n{i}")).collect();
        df!("i" => range.collect::<Vec<u32>>(), "name" => names).unwrap()
    }

    fn write_in_batches(path: &Path, total: u32, batch: u32) {
        let mut writer = ManifestWriter::create(path).unwrap();
        let mut start = 0;
        while start < total {
            let end = (start + batch).min(total);
            writer.push(numbers(start..end)).unwrap();
            start = end;
        }
        assert_eq!(writer.finish().unwrap(), total as usize);
    }

    #[test]
    fn the_bytes_depend_on_the_rows_not_on_the_batches() {
        let dir = tempfile::tempdir().unwrap();
        let total = ROW_GROUP as u32 * 2 + 17;
        let paths: Vec<PathBuf> = [1_000, 65_535, 300_000].iter().map(|b| dir.path().join(format!("{b}"))).collect();
        for (path, batch) in paths.iter().zip([1_000, 65_535, 300_000]) {
            write_in_batches(path, total, batch);
        }
        let first = std::fs::read(&paths[0]).unwrap();
        for path in &paths[1..] {
            assert!(std::fs::read(path).unwrap() == first, "{} differs", path.display());
        }
        let groups: Vec<DataFrame> = RowGroups::open(&paths[0]).unwrap().map(Result::unwrap).collect();
        assert_eq!(groups.iter().map(DataFrame::height).collect::<Vec<_>>(), [ROW_GROUP, ROW_GROUP, 17]);
        let mut all = groups[0].clone();
        for g in &groups[1..] {
            all.vstack_mut(g).unwrap();
        }
        assert!(all.equals(&numbers(0..total)));
    }

    #[test]
    fn an_empty_manifest_keeps_its_columns_and_an_unfinished_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.parquet");
        let mut writer = ManifestWriter::create(&path).unwrap();
        writer.push(numbers(0..0)).unwrap();
        assert_eq!(writer.finish().unwrap(), 0);
        let groups = RowGroups::open(&path).unwrap().with_columns(&["name", "missing"]);
        assert_eq!(groups.rows(), 0);
        let read = crate::manifest::read_parquet(&path).unwrap();
        let names: Vec<&str> = read.get_column_names().iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ["i", "name"]);

        let unfinished = dir.path().join("unfinished.parquet");
        let mut writer = ManifestWriter::create(&unfinished).unwrap();
        writer.push(numbers(0..ROW_GROUP as u32 + 1)).unwrap();
        drop(writer);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("empty.parquet")]);
    }

    #[test]
    fn row_group_ranges_cover_every_row_once_and_an_empty_input_once() {
        let ends = |rows| row_group_ranges(rows).map(|r| (r.start, r.end)).collect::<Vec<_>>();
        assert_eq!(ends(0), [(0, 0)]);
        assert_eq!(ends(ROW_GROUP), [(0, ROW_GROUP)]);
        assert_eq!(ends(ROW_GROUP + 1), [(0, ROW_GROUP), (ROW_GROUP, ROW_GROUP + 1)]);
    }

    #[test]
    fn only_the_asked_columns_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.parquet");
        write_in_batches(&path, 10, 3);
        let groups: Vec<DataFrame> =
            RowGroups::open(&path).unwrap().with_columns(&["name", "absent"]).map(Result::unwrap).collect();
        assert_eq!(groups.len(), 1);
        let names: Vec<&str> = groups[0].get_column_names().iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ["name"]);
        assert_eq!(groups[0].height(), 10);
    }
}
