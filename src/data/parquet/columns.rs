//! The columns the reader uses, whatever their Arrow encoding (string offsets, binary or image structs,
//! float or integer labels).

use super::ParquetError;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use std::path::Path;

/// A column of strings, whatever its offset width.
pub(super) enum Strings<'a> {
    Narrow(&'a arrow_array::StringArray),
    Wide(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
}

impl Strings<'_> {
    pub(super) fn get(&self, i: usize) -> Option<&str> {
        match self {
            Strings::Narrow(a) => a.is_valid(i).then(|| a.value(i)),
            Strings::Wide(a) => a.is_valid(i).then(|| a.value(i)),
            Strings::View(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

/// A column of encoded images: binary, or Hugging Face's image struct `{bytes, path}`.
pub(super) enum Bytes<'a> {
    Narrow(&'a arrow_array::BinaryArray),
    Wide(&'a arrow_array::LargeBinaryArray),
    View(&'a arrow_array::BinaryViewArray),
}

impl Bytes<'_> {
    pub(super) fn get(&self, i: usize) -> Option<&[u8]> {
        match self {
            Bytes::Narrow(a) => a.is_valid(i).then(|| a.value(i)),
            Bytes::Wide(a) => a.is_valid(i).then(|| a.value(i)),
            Bytes::View(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

/// A batch's columns that the reader uses.
pub(super) struct Columns<'a> {
    pub(super) caption: Strings<'a>,
    pub(super) jpg: [Bytes<'a>; 2],
    pub(super) label_0: Vec<Option<f64>>,
    pub(super) label_1: Option<Vec<Option<f64>>>,
    pub(super) has_label: Option<&'a BooleanArray>,
    /// Each image's reward, from the columns named in [`Columns::of`]'s `reward`, when an objective reads it.
    pub(super) reward: Option<[Vec<Option<f64>>; 2]>,
    /// Each comparison's weight, when an objective reads it.
    pub(super) weight: Option<Vec<Option<f64>>>,
}

/// The reward columns of a file with this schema: `reward_0`/`reward_1`, else the `judge_0`/`judge_1` that
/// `seppoc collect` writes (the exact judge's score of each image); `None` if it has neither pair.
pub(super) fn reward_columns(schema: &arrow_schema::Schema) -> Option<[&'static str; 2]> {
    [["reward_0", "reward_1"], ["judge_0", "judge_1"]]
        .into_iter()
        .find(|pair| pair.iter().all(|c| schema.field_with_name(c).is_ok()))
}

fn strings<'a>(path: &Path, batch: &'a RecordBatch, column: &'static str) -> Result<Strings<'a>, ParquetError> {
    let col = batch.column_by_name(column).ok_or(ParquetError::MissingColumn { path: path.to_path_buf(), column })?;
    if let Some(a) = col.as_string_opt::<i32>() {
        Ok(Strings::Narrow(a))
    } else if let Some(a) = col.as_string_opt::<i64>() {
        Ok(Strings::Wide(a))
    } else if let Some(a) = col.as_string_view_opt() {
        Ok(Strings::View(a))
    } else {
        Err(wrong(path, column, col, "strings"))
    }
}

fn bytes<'a>(path: &Path, batch: &'a RecordBatch, column: &'static str) -> Result<Bytes<'a>, ParquetError> {
    let col = batch.column_by_name(column).ok_or(ParquetError::MissingColumn { path: path.to_path_buf(), column })?;
    let inner = match col.as_struct_opt() {
        Some(s) => s.column_by_name("bytes").ok_or_else(|| wrong(path, column, col, "binary image bytes"))?,
        None => col,
    };
    if let Some(a) = inner.as_binary_opt::<i32>() {
        Ok(Bytes::Narrow(a))
    } else if let Some(a) = inner.as_binary_opt::<i64>() {
        Ok(Bytes::Wide(a))
    } else if let Some(a) = inner.as_binary_view_opt() {
        Ok(Bytes::View(a))
    } else {
        Err(wrong(path, column, col, "binary image bytes"))
    }
}

fn numbers(path: &Path, batch: &RecordBatch, column: &'static str) -> Result<Option<Vec<Option<f64>>>, ParquetError> {
    let Some(col) = batch.column_by_name(column) else { return Ok(None) };
    let values: Vec<Option<f64>> = if let Some(a) = col.as_primitive_opt::<Float64Type>() {
        a.iter().collect()
    } else if let Some(a) = col.as_primitive_opt::<Float32Type>() {
        a.iter().map(|v| v.map(f64::from)).collect()
    } else if let Some(a) = col.as_primitive_opt::<Int64Type>() {
        a.iter().map(|v| v.map(|x| x as f64)).collect()
    } else {
        return Err(wrong(path, column, col, "numbers (float64)"));
    };
    Ok(Some(values))
}

fn wrong(path: &Path, column: &'static str, col: &ArrayRef, expected: &'static str) -> ParquetError {
    ParquetError::WrongType { path: path.to_path_buf(), column, found: col.data_type().to_string(), expected }
}

impl<'a> Columns<'a> {
    /// The columns of `batch`; `reward` names the two reward columns to read, `weight` whether to read `weight`
    /// (both absent from the file is an error the caller reports first).
    pub(super) fn of(
        path: &Path,
        batch: &'a RecordBatch,
        reward: Option<[&'static str; 2]>,
        weight: bool,
    ) -> Result<Self, ParquetError> {
        let missing = |column| ParquetError::MissingColumn { path: path.to_path_buf(), column };
        let has_label = match batch.column_by_name("has_label") {
            Some(c) => Some(c.as_boolean_opt().ok_or_else(|| wrong(path, "has_label", c, "booleans"))?),
            None => None,
        };
        Ok(Columns {
            caption: strings(path, batch, "caption")?,
            jpg: [bytes(path, batch, "jpg_0")?, bytes(path, batch, "jpg_1")?],
            label_0: numbers(path, batch, "label_0")?.ok_or_else(|| missing("label_0"))?,
            label_1: numbers(path, batch, "label_1")?,
            has_label,
            reward: match reward {
                Some([a, b]) => Some([
                    numbers(path, batch, a)?.ok_or_else(|| missing(a))?,
                    numbers(path, batch, b)?.ok_or_else(|| missing(b))?,
                ]),
                None => None,
            },
            weight: if weight { Some(numbers(path, batch, "weight")?.ok_or_else(|| missing("weight"))?) } else { None },
        })
    }
}
