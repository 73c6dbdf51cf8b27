//! Stages stream their manifests a row group at a time: on inputs of more than one row group, clean and dedup
//! give every row its verdict, keep canonical order across the groups' boundaries, name a kept item in another
//! group, and write the same bytes whether their input arrived sorted (streamed) or not (read whole and sorted).
use crate::support::dataset::*;
use crate::support::Ctx;
use anime_pipe::manifest::columns::col;
use anime_pipe::manifest::{measure_columns, publish_stage, RowGroups, ROW_GROUP};
use anime_pipe::measure::Measures;
use anime_pipe::stages::Stage;
use polars::prelude::DataFrame;

/// Rows of the fixture manifests: two full row groups and a few more.
const ROWS: usize = 2 * ROW_GROUP + 11;

fn path_of(i: usize) -> String {
    format!("d{:02}/{i:07}.png", i % 7)
}

/// One measured picture, varied per row so no two rows are the same picture.
fn measures_of(base: &Measures, i: usize) -> Measures {
    let mut m = base.clone();
    m.pixel_hash = format!("{i:064x}");
    m.phash = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    m
}

/// An upstream manifest of `ROWS` accepted rows, in the order of `order` (indices into the sorted rows). Row i is
/// `width(i)` pixels wide; `object(i)` names its bytes.
fn manifest(
    order: &[usize],
    base: &Measures,
    width: impl Fn(usize) -> u32,
    object: impl Fn(usize) -> String,
    status: impl Fn(usize) -> &'static str,
) -> DataFrame {
    let measures: Vec<Measures> = order.iter().map(|&i| measures_of(base, i)).collect();
    let mut columns = vec![
        col("key", order.iter().map(|&i| format!("src0/{}", path_of(i))).collect::<Vec<_>>()),
        col("source", vec!["src0"; order.len()]),
        col("source_index", vec![0u32; order.len()]),
        col("path", order.iter().map(|&i| path_of(i)).collect::<Vec<_>>()),
        col("object", order.iter().map(|&i| object(i)).collect::<Vec<_>>()),
        col("width", order.iter().map(|&i| width(i)).collect::<Vec<u32>>()),
        col("height", vec![96u32; order.len()]),
        col("status", order.iter().map(|&i| status(i)).collect::<Vec<_>>()),
    ];
    columns.extend(measure_columns(measures.iter().map(Some)));
    DataFrame::new(order.len(), columns).unwrap()
}

/// The rows in canonical (source_index, path) order.
fn sorted_rows() -> Vec<usize> {
    let mut rows: Vec<usize> = (0..ROWS).collect();
    rows.sort_by_key(|&i| path_of(i));
    rows
}

fn base_measures() -> Measures {
    anime_pipe::measure::measure(noise_rgb(96, 96, 7))
}

fn object_of(i: usize) -> String {
    blake3::hash(&(i as u64).to_le_bytes()).to_hex().to_string()
}

fn clean_of(order: &[usize], base: &Measures) -> (tempfile::TempDir, Ctx) {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = context(dir.path());
    ctx.plan.clean.min_size = 64;
    let status = |i: usize| if i.is_multiple_of(5) { "duplicate" } else { "ok" };
    let mut df = manifest(order, base, |i| if i.is_multiple_of(3) { 32 } else { 96 }, object_of, status);
    publish_stage(&ctx.workdir, "dedup", &mut df, "fixture").unwrap();
    ctx.run(Stage::Clean).unwrap();
    (dir, ctx)
}

#[test]
fn clean_judges_every_row_of_several_row_groups_in_order_and_streaming_changes_no_byte() {
    let base = base_measures();
    let sorted = sorted_rows();
    let (_dir, ctx) = clean_of(&sorted, &base);
    let df = read_stage(&ctx.workdir, "clean");

    let accepted: Vec<usize> = sorted.iter().copied().filter(|i| !i.is_multiple_of(5)).collect();
    let keys: Vec<String> = accepted.iter().map(|&i| format!("src0/{}", path_of(i))).collect();
    assert_eq!(strs(&df, "key").into_iter().flatten().collect::<Vec<_>>(), keys);
    let reasons = strs(&df, "reason");
    for (row, &i) in accepted.iter().enumerate() {
        assert_eq!(reasons[row].as_deref(), (i.is_multiple_of(3)).then_some("too_small"), "row {i}");
    }
    let groups = RowGroups::open(&ctx.workdir.manifest_path("clean")).unwrap();
    let heights: Vec<usize> = groups.map(|g| g.unwrap().height()).collect();
    let expected: Vec<usize> =
        (0..accepted.len()).step_by(ROW_GROUP).map(|start| (accepted.len() - start).min(ROW_GROUP)).collect();
    assert!(expected.len() >= 2, "the output spans row groups");
    assert_eq!(heights, expected, "row groups of the documented size");

    // The same rows published in reverse order are read whole and sorted: the same manifest, byte for byte.
    let reversed: Vec<usize> = sorted.iter().rev().copied().collect();
    let (_dir2, other) = clean_of(&reversed, &base);
    let (a, b) = (ctx.workdir.manifest_path("clean"), other.workdir.manifest_path("clean"));
    assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap(), "sorted and unsorted inputs differ");
}

#[test]
fn dedup_names_a_kept_item_in_another_row_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = context(dir.path());
    ctx.plan.dedup.near = false;
    let sorted = sorted_rows();
    let (first, last) = (sorted[0], sorted[ROWS - 1]);
    // The last row holds the first row's bytes (and so its measures): an exact duplicate two row groups away.
    let object = |i: usize| object_of(if i == last { first } else { i });
    let base = base_measures();
    let mut df = manifest(&sorted, &base, |_| 96, object, |_| "ok");
    let mut measures: Vec<Measures> = sorted.iter().map(|&i| measures_of(&base, i)).collect();
    measures[ROWS - 1] = measures_of(&base, first);
    for column in measure_columns(measures.iter().map(Some)) {
        df.with_column(column).unwrap();
    }
    publish_stage(&ctx.workdir, "ingest", &mut df, "fixture").unwrap();
    ctx.run(Stage::Dedup).unwrap();

    let out = read_stage(&ctx.workdir, "dedup");
    assert_eq!(out.height(), ROWS);
    let (status, of, kind) = (strs(&out, "status"), strs(&out, "duplicate_of"), strs(&out, "dup_kind"));
    let duplicates: Vec<usize> = (0..ROWS).filter(|&r| status[r].as_deref() == Some("duplicate")).collect();
    assert_eq!(duplicates, [ROWS - 1]);
    assert_eq!(of[ROWS - 1].as_deref(), Some(format!("src0/{}", path_of(first)).as_str()));
    assert_eq!(kind[ROWS - 1].as_deref(), Some("exact_bytes"));
    let keys = strs(&out, "key");
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "canonical order across row groups");
}
