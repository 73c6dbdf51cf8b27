//! Listing sources: directories walked (symlinks followed, loops detected, the workdir's own folders skipped) and
//! archives recognised by content. The listing decides what changed since the last run.
use super::rows::Outcome;
use super::Source;
use crate::manifest::Reason;
use crate::named::Named;
use crate::workdir::Workdir;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

pub(super) enum Listing {
    Dir(DirListing),
    Archive(ArchiveFile),
}

pub(super) struct DirListing {
    pub(super) root: PathBuf,
    /// Sorted by `rel`.
    pub(super) files: Vec<DirFile>,
    /// Symlink loops, unreadable entries, special files: rows already decided at listing time.
    pub(super) problems: Vec<(Vec<u8>, Outcome)>,
}

/// One listed file. Its path is not kept whole (the listing is what ingest holds per file): it is the root
/// joined with `rel`, made when the file is read or looked up ([`DirListing::path_of`]).
pub(super) struct DirFile {
    pub(super) rel: Vec<u8>,
    pub(super) stamp: FileStamp,
}

impl DirListing {
    /// The file's path as the walk found it: the root joined with its '/'-separated components.
    pub(super) fn path_of(&self, f: &DirFile) -> PathBuf {
        let mut path = self.root.clone();
        for part in f.rel.split(|&b| b == b'/') {
            path.push(os_str(part));
        }
        path
    }
}

/// What decides whether a file changed since the last run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct FileStamp {
    pub(super) size: u64,
    pub(super) mtime_ns: i64,
    pub(super) ctime_ns: i64,
}

impl FileStamp {
    pub(super) fn of(meta: &fs::Metadata) -> Self {
        #[cfg(unix)]
        let ctime_ns = {
            use std::os::unix::fs::MetadataExt;
            meta.ctime().saturating_mul(1_000_000_000).saturating_add(meta.ctime_nsec())
        };
        #[cfg(not(unix))]
        let ctime_ns = 0;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(-1, |d| d.as_nanos() as i64);
        Self { size: meta.len(), mtime_ns, ctime_ns }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArchiveKind {
    Zip,
    Tar,
    TarGz,
}

pub(super) struct ArchiveFile {
    pub(super) path: PathBuf,
    pub(super) stamp: FileStamp,
    /// The archive kind, or the rejection of the whole archive (unreadable, unrecognised content).
    pub(super) kind: Result<ArchiveKind, (Reason, String)>,
}

pub(super) fn list_sources(sources: &[Source], workdir: &Workdir) -> Result<Listings> {
    if sources.is_empty() {
        bail!("no sources to ingest: add a `sources:` list to pipeline.yaml, or pass `--source PATH` (repeatable)");
    }
    let skip = workdir_dirs(workdir);
    Ok(Listings(sources.iter().map(|s| list_source(s, &skip)).collect::<Result<_>>()?))
}

pub(super) fn list_source(source: &Source, skip: &[PathBuf]) -> Result<Listing> {
    let meta = fs::metadata(&source.path).with_context(|| {
        format!(
            "source {:?}: cannot read {} (check sources[].path in pipeline.yaml)",
            source.name,
            source.path.display()
        )
    })?;
    if meta.is_dir() {
        return Ok(Listing::Dir(list_dir(&source.path, skip)));
    }
    if !meta.is_file() {
        bail!("source {:?}: {} is neither a directory nor an archive file", source.name, source.path.display());
    }
    let kind = match archive_kind(&source.path) {
        Ok(None) => bail!(
            "source {:?}: {} is neither a directory nor a .zip/.tar/.tar.gz/.tgz archive",
            source.name,
            source.path.display()
        ),
        Ok(Some(kind)) => Ok(kind),
        Err(rejection) => Err(rejection),
    };
    Ok(Listing::Archive(ArchiveFile { path: source.path.clone(), stamp: FileStamp::of(&meta), kind }))
}

/// By content first; the name only rescues magic-less v7 tars and names a broken archive.
/// `Ok(None)`: not an archive at all (a config error, not a rejected row).
pub(super) fn archive_kind(path: &Path) -> Result<Option<ArchiveKind>, (Reason, String)> {
    let mut head = Vec::with_capacity(512);
    File::open(path)
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .map_err(|e| (Reason::Unreadable, format!("cannot read the archive: {e}")))?;
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Ok(Some(ArchiveKind::Zip));
    }
    if head.starts_with(&[0x1F, 0x8B]) {
        return Ok(Some(ArchiveKind::TarGz));
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return Ok(Some(ArchiveKind::Tar));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if name.ends_with(".tar") && head.len() == 512 {
        return Ok(Some(ArchiveKind::Tar));
    }
    if [".zip", ".tar", ".tgz", ".gz"].iter().any(|ext| name.ends_with(ext)) {
        return Err((Reason::CorruptArchive, "not a zip, tar or gzip archive (unrecognised content)".into()));
    }
    Ok(None)
}

/// The workdir's own directories, never ingested when a source contains the workdir.
pub(super) fn workdir_dirs(workdir: &Workdir) -> Vec<PathBuf> {
    ["cache", "manifests", "shards", "runs"].iter().filter_map(|d| workdir.root().join(d).canonicalize().ok()).collect()
}

pub(super) fn list_dir(root: &Path, skip: &[PathBuf]) -> DirListing {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let walker = walkdir::WalkDir::new(root).follow_links(true).min_depth(1).into_iter().filter_entry(|e| {
        !(e.file_type().is_dir() && !skip.is_empty() && e.path().canonicalize().is_ok_and(|p| skip.contains(&p)))
    });
    for entry in walker {
        match entry {
            Ok(e) if e.file_type().is_dir() => {}
            Ok(e) => {
                let rel = rel_bytes(root, e.path());
                if !e.file_type().is_file() {
                    problems.push((
                        rel,
                        Outcome::rejected(Reason::NotAFile, "not a regular file (FIFO, socket or device)"),
                    ));
                    continue;
                }
                match e.metadata() {
                    Ok(meta) => files.push(DirFile { rel, stamp: FileStamp::of(&meta) }),
                    Err(err) => problems.push((rel, Outcome::rejected(Reason::Unreadable, err.to_string()))),
                }
            }
            Err(err) => {
                let path = err.path().unwrap_or(root);
                let rel = rel_bytes(root, path);
                let out = match err.loop_ancestor() {
                    Some(ancestor) => Outcome::rejected(
                        Reason::SymlinkLoop,
                        format!(
                            "symlink back to its ancestor {:?}",
                            String::from_utf8_lossy(&rel_bytes(root, ancestor))
                        ),
                    ),
                    None if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
                        && fs::metadata(path).is_err() =>
                    {
                        Outcome::rejected(Reason::Unreadable, format!("broken symlink: {err}"))
                    }
                    None => Outcome::rejected(Reason::Unreadable, err.to_string()),
                };
                problems.push((rel, out));
            }
        }
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    problems.sort_by(|a, b| a.0.cmp(&b.0));
    DirListing { root: root.to_path_buf(), files, problems }
}

/// The path of `path` inside `root`, '/'-separated, as raw bytes (non-UTF-8 names survive).
pub(super) fn rel_bytes(root: &Path, path: &Path) -> Vec<u8> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<Vec<u8>> = rel.components().map(|c| os_bytes(c.as_os_str())).collect();
    parts.join(&b'/')
}

#[cfg(unix)]
pub(super) fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    s.as_bytes().to_vec()
}

#[cfg(not(unix))]
pub(super) fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    s.to_string_lossy().as_bytes().to_vec()
}

#[cfg(unix)]
fn os_str(bytes: &[u8]) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(bytes)
}

/// Names were made lossy by `os_bytes` on this platform, so they are valid UTF-8 here.
#[cfg(not(unix))]
fn os_str(bytes: &[u8]) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(std::str::from_utf8(bytes).unwrap_or_default())
}

/// Every source's listing, in `sources:` order.
pub struct Listings(pub(super) Vec<Listing>);

impl Listing {
    /// The smallest re-run index origin (hex of the absolute path) among this source's files, if any.
    fn first_origin(&self) -> Option<String> {
        let path = match self {
            Listing::Dir(dir) => dir.path_of(dir.files.first()?),
            Listing::Archive(a) => a.path.clone(),
        };
        Some(super::rows::hex(&os_bytes(path.as_os_str())))
    }
}

impl Listings {
    /// Source indices in the order of their files' origins, so the re-run index is read front to back (its rows
    /// go to a sort either way: the order sources are visited in changes no output).
    pub(super) fn visit_order(&self) -> Vec<usize> {
        let mut order: Vec<(Option<String>, usize)> =
            self.0.iter().enumerate().map(|(i, l)| (l.first_origin(), i)).collect();
        order.sort();
        order.into_iter().map(|(_, i)| i).collect()
    }
}

/// A listing is an input of ingest through its digest: file names with sizes and timestamps, the problems found
/// while listing, archives by size and timestamps, every field length-prefixed.
impl Serialize for Listings {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.digest())
    }
}

impl Listings {
    pub fn digest(&self) -> String {
        let mut h = blake3::Hasher::new();
        let mut field = |bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(b"anime-pipe ingest listing/2");
        for listing in &self.0 {
            match listing {
                Listing::Dir(d) => {
                    field(&os_bytes(d.root.as_os_str()));
                    for f in &d.files {
                        field(&f.rel);
                        field(&stamp_bytes(&f.stamp));
                    }
                    for (rel, out) in &d.problems {
                        field(rel);
                        field(out.reason.map(|r| r.name()).unwrap_or_default().as_bytes());
                    }
                }
                Listing::Archive(a) => {
                    field(&os_bytes(a.path.as_os_str()));
                    field(&stamp_bytes(&a.stamp));
                    field(format!("{:?}", a.kind).as_bytes());
                }
            }
        }
        h.finalize().to_hex().to_string()
    }
}

pub(super) fn stamp_bytes(s: &FileStamp) -> Vec<u8> {
    [s.size.to_le_bytes(), s.mtime_ns.to_le_bytes(), s.ctime_ns.to_le_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path made from root + name is the one the walk found, byte for byte, whatever way the root is
    /// spelt: the re-run index is keyed by it, so a different spelling would re-read every file.
    #[test]
    fn a_files_path_is_the_walked_path_for_any_spelling_of_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("src");
        fs::create_dir_all(base.join("a/b")).unwrap();
        for name in ["top.png", "a/mid.png", "a/b/deep.png"] {
            fs::write(base.join(name), b"x").unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            fs::write(base.join("a").join(std::ffi::OsStr::from_bytes(b"bad\xff.png")), b"x").unwrap();
        }
        let with_slash = PathBuf::from(format!("{}/", base.display()));
        let dotted = base.join(".").join("a").join("..");
        for root in [base.clone(), with_slash, dotted] {
            let listing = list_dir(&root, &[]);
            let mut walked: Vec<PathBuf> = walkdir::WalkDir::new(&root)
                .min_depth(1)
                .into_iter()
                .map(|e| e.unwrap())
                .filter(|e| e.file_type().is_file())
                .map(|e| e.path().to_path_buf())
                .collect();
            let mut made: Vec<PathBuf> = listing.files.iter().map(|f| listing.path_of(f)).collect();
            made.sort();
            walked.sort();
            assert_eq!(made.len(), if cfg!(unix) { 4 } else { 3 }, "{}", root.display());
            assert_eq!(
                made.iter().map(|p| os_bytes(p.as_os_str())).collect::<Vec<_>>(),
                walked.iter().map(|p| os_bytes(p.as_os_str())).collect::<Vec<_>>(),
                "root {}",
                root.display()
            );
        }
    }
}
