//! `anime-pipe diff A B`: which rows two manifests (or the manifests of two workdirs) disagree on.
//!
//! Rows are matched by `key` (pack rows by `(key, size)`). A row is *changed* when one of [`COMPARED`] differs
//! (`object`: the image's bytes changed), or a score column both sides have ([`SCORES`]) differs by more than the
//! tolerance (absolute, or relative to the larger magnitude above 1).
use crate::manifest::{columns, read_parquet};
use crate::named::Named;
use crate::stages::Stage;
use crate::workdir::Workdir;
use anyhow::{bail, Result};
use polars::prelude::DataFrame;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Columns compared exactly, when both manifests have them.
pub const COMPARED: &[&str] = &["status", "reason", "duplicate_of", "object", "split"];
/// Score columns compared within the tolerance.
pub const SCORES: &[&str] = &["sharpness", "colorfulness", "entropy", "score", "aspect"];

/// One column of a changed row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub column: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

/// A row present on one side only: its key (`key@size` for pack), status and reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub key: String,
    pub status: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangedRow {
    pub key: String,
    pub changes: Vec<Change>,
}

/// One manifest's differences.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageDiff {
    pub stage: String,
    /// Rows only in B.
    pub added: Vec<Row>,
    /// Rows only in A.
    pub removed: Vec<Row>,
    pub changed: Vec<ChangedRow>,
    /// Rows in both, equal.
    pub same: u64,
    /// Set when the manifest exists on one side only.
    pub missing: Option<String>,
}

impl StageDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty() && self.missing.is_none()
    }
}

/// Compares two manifests of `stage`.
pub fn manifests(stage: &str, a: &DataFrame, b: &DataFrame, tolerance: f64) -> Result<StageDiff> {
    let (ra, rb) = (Rows::read(stage, a)?, Rows::read(stage, b)?);
    let mut diff = StageDiff {
        stage: stage.to_string(),
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
        same: 0,
        missing: None,
    };
    for (key, &i) in &ra.index {
        match rb.index.get(key) {
            None => diff.removed.push(ra.row(key, i)),
            Some(&j) => {
                let mut changes = Vec::new();
                for (column, va) in &ra.exact {
                    let Some(vb) = rb.exact.get(column) else { continue };
                    if va[i] != vb[j] {
                        changes.push(Change { column: column.clone(), a: va[i].clone(), b: vb[j].clone() });
                    }
                }
                for (column, va) in &ra.scores {
                    let Some(vb) = rb.scores.get(column) else { continue };
                    let differs = match (va[i], vb[j]) {
                        (Some(x), Some(y)) => (x - y).abs() > tolerance * x.abs().max(y.abs()).max(1.0),
                        (x, y) => x.is_some() != y.is_some(),
                    };
                    if differs {
                        let show = |v: Option<f64>| v.map(|v| format!("{v:.4}"));
                        changes.push(Change { column: column.clone(), a: show(va[i]), b: show(vb[j]) });
                    }
                }
                if changes.is_empty() {
                    diff.same += 1;
                } else {
                    diff.changed.push(ChangedRow { key: key.clone(), changes });
                }
            }
        }
    }
    for (key, &j) in &rb.index {
        if !ra.index.contains_key(key) {
            diff.added.push(rb.row(key, j));
        }
    }
    Ok(diff)
}

/// Compares every stage manifest of two workdirs (stages in pipeline order; a manifest on one side only is
/// reported as missing there).
pub fn workdirs(a: &Workdir, b: &Workdir, only: Option<Stage>, tolerance: f64) -> Result<Vec<StageDiff>> {
    let mut out = Vec::new();
    for &stage in Stage::ALL.iter().filter(|s| only.is_none_or(|o| o == **s)) {
        let (pa, pb) = (a.manifest_path(stage.name()), b.manifest_path(stage.name()));
        let side = |p: &Path| if p.exists() { Some(p.to_path_buf()) } else { None };
        match (side(&pa), side(&pb)) {
            (None, None) => {}
            (Some(pa), Some(pb)) => {
                out.push(manifests(stage.name(), &read_parquet(&pa)?, &read_parquet(&pb)?, tolerance)?)
            }
            (one, _) => out.push(StageDiff {
                stage: stage.name().to_string(),
                added: Vec::new(),
                removed: Vec::new(),
                changed: Vec::new(),
                same: 0,
                missing: Some(format!(
                    "manifests/{}.parquet exists only in {}",
                    stage.name(),
                    if one.is_some() { "A" } else { "B" }
                )),
            }),
        }
    }
    if out.is_empty() && only.is_some() {
        bail!("neither side has manifests/{}.parquet", only.map(|s| s.name()).unwrap_or_default());
    }
    Ok(out)
}

/// A manifest's rows by key, and the columns compared.
struct Rows {
    index: BTreeMap<String, usize>,
    status: Vec<Option<String>>,
    reason: Vec<Option<String>>,
    exact: BTreeMap<String, Vec<Option<String>>>,
    scores: BTreeMap<String, Vec<Option<f64>>>,
}

impl Rows {
    fn read(stage: &str, df: &DataFrame) -> Result<Rows> {
        let keys = columns::strings(df, "key")?;
        let sizes = if stage == Stage::Pack.name() && columns::has(df, "size") {
            Some(columns::opt_u32s(df, "size")?)
        } else {
            None
        };
        let mut index = BTreeMap::new();
        for (i, key) in keys.into_iter().enumerate() {
            let key = match &sizes {
                Some(s) => format!("{key}@{}", s[i].map(|v| v.to_string()).unwrap_or_default()),
                None => key,
            };
            if index.insert(key.clone(), i).is_some() {
                bail!("{stage} manifest: key {key:?} appears twice");
            }
        }
        let optional = |name: &str| -> Result<Vec<Option<String>>> {
            if columns::has(df, name) {
                columns::opt_strings(df, name)
            } else {
                Ok(vec![None; df.height()])
            }
        };
        let mut exact = BTreeMap::new();
        for &c in COMPARED.iter().filter(|c| columns::has(df, c)) {
            exact.insert(c.to_string(), columns::opt_strings(df, c)?);
        }
        let mut scores = BTreeMap::new();
        for &c in SCORES.iter().filter(|c| columns::has(df, c)) {
            scores.insert(c.to_string(), columns::opt_f64s(df, c)?);
        }
        Ok(Rows { index, status: optional("status")?, reason: optional("reason")?, exact, scores })
    }

    fn row(&self, key: &str, i: usize) -> Row {
        Row { key: key.to_string(), status: self.status[i].clone(), reason: self.reason[i].clone() }
    }
}

/// The table `anime-pipe diff` prints: per stage its counts, then one line per differing row.
pub fn render(diffs: &[StageDiff]) -> String {
    let mut out = String::from("── diff ──\n");
    let width = diffs.iter().map(|d| d.stage.len()).max().unwrap_or(5).max(5);
    out.push_str(&format!("{:<width$}  {:>6}  {:>7}  {:>7}  {:>6}\n", "stage", "added", "removed", "changed", "same"));
    for d in diffs {
        match &d.missing {
            Some(m) => out.push_str(&format!("{:<width$}  {m}\n", d.stage)),
            None => out.push_str(&format!(
                "{:<width$}  {:>6}  {:>7}  {:>7}  {:>6}\n",
                d.stage,
                d.added.len(),
                d.removed.len(),
                d.changed.len(),
                d.same
            )),
        }
    }
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for d in diffs.iter().filter(|d| !d.is_empty() && d.missing.is_none()) {
        out.push_str(&format!("\n{}:\n", d.stage));
        for r in &d.added {
            out.push_str(&format!("  + {}  {} {}\n", r.key, or_dash(&r.status), r.reason.as_deref().unwrap_or("")));
        }
        for r in &d.removed {
            out.push_str(&format!("  - {}  {} {}\n", r.key, or_dash(&r.status), r.reason.as_deref().unwrap_or("")));
        }
        for r in &d.changed {
            let what: Vec<String> =
                r.changes.iter().map(|c| format!("{} {} -> {}", c.column, or_dash(&c.a), or_dash(&c.b))).collect();
            out.push_str(&format!("  ~ {}  {}\n", r.key, what.join("; ")));
        }
    }
    if diffs.iter().all(StageDiff::is_empty) {
        out.push_str("no differences\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;

    #[test]
    fn rows_are_matched_by_key_and_scores_within_the_tolerance() {
        let a = df!(
            "key" => ["a", "b", "c"],
            "status" => ["ok", "ok", "ok"],
            "reason" => [None::<&str>, None, None],
            "sharpness" => [1.0, 2.0, 3.0],
        )
        .unwrap();
        let b = df!(
            "key" => ["b", "c", "d"],
            "status" => ["ok", "rejected", "ok"],
            "reason" => [None, Some("too_small"), None],
            "sharpness" => [2.0 + 1e-9, 3.0, 4.0],
        )
        .unwrap();
        let d = manifests("clean", &a, &b, 1e-6).unwrap();
        assert_eq!(d.added.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["d"]);
        assert_eq!(d.removed.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].key, "c");
        assert_eq!(d.changed[0].changes.iter().map(|c| c.column.as_str()).collect::<Vec<_>>(), ["reason", "status"]);
        assert_eq!(d.same, 1);
        assert!(render(&[d]).contains("~ c  reason - -> too_small; status ok -> rejected"));
    }

    #[test]
    fn pack_rows_are_matched_by_key_and_size() {
        let a = df!("key" => ["a", "a"], "size" => [64u32, 128], "status" => ["ok", "ok"]).unwrap();
        let b = df!("key" => ["a"], "size" => [64u32], "status" => ["ok"]).unwrap();
        let d = manifests("pack", &a, &b, 0.0).unwrap();
        assert_eq!((d.removed.len(), d.removed[0].key.as_str(), d.same), (1, "a@128", 1));
    }
}
