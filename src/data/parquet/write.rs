//! Writing comparisons in the Pick-a-Pic schema.

use super::{io, winner_of, Comparison, ParquetError, METADATA_KEY};
use crate::data::image::Image;
use crate::data::video::clip_to_strip;
use arrow_array::{ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Writes comparisons in the Pick-a-Pic schema (snappy-compressed), atomically: `PATH.tmp` is written, synced
/// and renamed. `metadata` goes into the file's key-value metadata under [`METADATA_KEY`].
pub fn write(path: &Path, rows: &[Comparison], metadata: Option<&str>) -> Result<(), ParquetError> {
    let png = |img: &Image| -> Result<Vec<u8>, ParquetError> {
        let mut out = std::io::Cursor::new(Vec::new());
        // A clip (3·F channels) is stored as its frames side by side; an RGB image as itself.
        clip_to_strip(img).write_to(&mut out, image::ImageFormat::Png).map_err(|e| io(path, e))?;
        Ok(out.into_inner())
    };
    let mut jpg = [Vec::with_capacity(rows.len()), Vec::with_capacity(rows.len())];
    for r in rows {
        for (k, col) in jpg.iter_mut().enumerate() {
            col.push(png(&r.images[k])?);
        }
    }
    let uid = |r: usize, k: usize| format!("{}-{r}-{k}", rows[r].ranking_id);
    let texts = |f: &dyn Fn(usize) -> String| -> ArrayRef {
        Arc::new(StringArray::from((0..rows.len()).map(f).collect::<Vec<_>>()))
    };
    let floats =
        |f: &dyn Fn(&Comparison) -> f64| -> ArrayRef { Arc::new(Float64Array::from_iter_values(rows.iter().map(f))) };
    let ints =
        |f: &dyn Fn(&Comparison) -> i64| -> ArrayRef { Arc::new(Int64Array::from_iter_values(rows.iter().map(f))) };
    let bools = |f: &dyn Fn(&Comparison) -> bool| -> ArrayRef {
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(f(r)))))
    };
    let binary = |col: &[Vec<u8>]| -> ArrayRef { Arc::new(BinaryArray::from_iter_values(col.iter())) };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("caption", texts(&|r| rows[r].caption.clone())),
        ("jpg_0", binary(&jpg[0])),
        ("jpg_1", binary(&jpg[1])),
        ("label_0", floats(&|r| r.label_0)),
        ("label_1", floats(&|r| 1.0 - r.label_0)),
        ("model_0", texts(&|r| rows[r].models[0].clone())),
        ("model_1", texts(&|r| rows[r].models[1].clone())),
        (
            "best_image_uid",
            texts(&|r| match winner_of(rows[r].label_0) {
                Some(k) => uid(r, k),
                None => String::new(),
            }),
        ),
        ("image_0_uid", texts(&|r| uid(r, 0))),
        ("image_1_uid", texts(&|r| uid(r, 1))),
        ("has_label", bools(&|_| true)),
        ("are_different", bools(&|r| r.images[0] != r.images[1])),
        ("ranking_id", ints(&|r| r.ranking_id)),
        ("user_id", ints(&|r| r.user_id)),
        ("num_example_per_prompt", ints(&|r| r.num_example_per_prompt)),
        ("judge_0", floats(&|r| r.judge[0])),
        ("judge_1", floats(&|r| r.judge[1])),
    ];
    let batch = RecordBatch::try_from_iter(columns).map_err(|e| io(path, e))?;
    let kv = metadata.map(|m| vec![KeyValue::new(METADATA_KEY.to_string(), m.to_string())]);
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(kv)
        .set_created_by(format!("seppoc {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(|e| io(&tmp, e))?;
    writer.write(&batch).map_err(|e| io(&tmp, e))?;
    let mut file = writer.into_inner().map_err(|e| io(&tmp, e))?;
    file.flush().and_then(|_| file.sync_all()).map_err(|e| io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}
