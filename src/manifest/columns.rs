//! Typed access to manifest columns as plain Rust vectors (stages do their logic in Rust, not in polars
//! expressions). Integer and string columns are cast, so a manifest written with e.g. i64 widths still reads.
use anyhow::{Context as _, Result};
use polars::prelude::{Column, DataFrame, DataType, NamedFrom, Series};

pub fn has(df: &DataFrame, name: &str) -> bool {
    df.get_column_names().iter().any(|c| c.as_str() == name)
}

fn cast(df: &DataFrame, name: &str, dtype: &DataType) -> Result<Column> {
    let column = df.column(name).with_context(|| format!("manifest has no column {name:?}"))?;
    column.cast(dtype).with_context(|| format!("column {name:?} ({}) cannot be read as {dtype}", column.dtype()))
}

pub fn opt_strings(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>> {
    let column = cast(df, name, &DataType::String)?;
    Ok(column.str()?.iter().map(|v| v.map(str::to_string)).collect())
}

/// A string column that must have no nulls.
pub fn strings(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    opt_strings(df, name)?
        .into_iter()
        .enumerate()
        .map(|(row, v)| v.with_context(|| format!("column {name:?} is null in row {row}")))
        .collect()
}

pub fn opt_u32s(df: &DataFrame, name: &str) -> Result<Vec<Option<u32>>> {
    let column = cast(df, name, &DataType::UInt32)?;
    Ok(column.u32()?.iter().collect())
}

/// A u32 column that must have no nulls.
pub fn u32s(df: &DataFrame, name: &str) -> Result<Vec<u32>> {
    opt_u32s(df, name)?
        .into_iter()
        .enumerate()
        .map(|(row, v)| v.with_context(|| format!("column {name:?} is null in row {row}")))
        .collect()
}

pub fn opt_bools(df: &DataFrame, name: &str) -> Result<Vec<Option<bool>>> {
    let column = cast(df, name, &DataType::Boolean)?;
    Ok(column.bool()?.iter().collect())
}

pub fn opt_binaries(df: &DataFrame, name: &str) -> Result<Vec<Option<Vec<u8>>>> {
    let column = cast(df, name, &DataType::Binary)?;
    Ok(column.binary()?.iter().map(|v| v.map(<[u8]>::to_vec)).collect())
}

pub fn opt_f64s(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let column = cast(df, name, &DataType::Float64)?;
    Ok(column.f64()?.iter().collect())
}

/// Builds a DataFrame from columns of equal length (the row count is given so that empty manifests work).
pub fn frame(rows: usize, columns: Vec<Column>) -> Result<DataFrame> {
    DataFrame::new(rows, columns).context("cannot assemble manifest columns")
}

pub fn col<T, P>(name: &str, values: T) -> Column
where
    Series: NamedFrom<T, P>,
    P: ?Sized,
{
    Column::new(name.into(), values)
}

pub fn opt_u64s(df: &DataFrame, name: &str) -> Result<Vec<Option<u64>>> {
    let column = cast(df, name, &DataType::UInt64)?;
    Ok(column.u64()?.iter().collect())
}

/// A u64 column that must have no nulls.
pub fn u64s(df: &DataFrame, name: &str) -> Result<Vec<u64>> {
    opt_u64s(df, name)?
        .into_iter()
        .enumerate()
        .map(|(row, v)| v.with_context(|| format!("column {name:?} is null in row {row}")))
        .collect()
}

/// An i64 column that must have no nulls.
pub fn i64s(df: &DataFrame, name: &str) -> Result<Vec<i64>> {
    let column = cast(df, name, &DataType::Int64)?;
    column
        .i64()?
        .iter()
        .enumerate()
        .map(|(row, v)| v.with_context(|| format!("column {name:?} is null in row {row}")))
        .collect()
}
