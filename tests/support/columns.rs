//! Writing a Parquet file from raw Arrow columns, for tests of files `seppoc` itself would not write (missing
//! or extra columns, other encodings).

use arrow_array::{ArrayRef, RecordBatch};
use parquet::arrow::ArrowWriter;
use std::path::Path;

/// Writes `columns` (name, array) as one record batch to `path`.
pub fn write_columns(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).expect("batch");
    let file = std::fs::File::create(path).expect("create");
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}
