//! Reading Pick-a-Pic-shaped files: decoding and resizing images, guarding the decoder against corrupt input.

use super::columns::Columns;
use super::{io, winner_of, ParquetError, PickapicData, METADATA_KEY};
use crate::data::image::Image;
use crate::data::preference::{FieldNeeds, Fields, PreferenceItem, PreferenceSet};
use crate::panics::quiet_catch;
use arrow_array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::fmt;
use std::path::Path;

/// Decodes image bytes (JPEG, PNG, ...) to an RGB image of side `size`: centre-cropped to a square, resized with
/// a triangle filter when its side differs.
pub fn decode_image(bytes: &[u8], size: usize) -> Result<Image, String> {
    square_image(&image::load_from_memory(bytes).map_err(|e| e.to_string())?.to_rgb8(), size)
}

/// Decodes a clip of `frames` frames stored as a strip (its frames side by side, as
/// [`crate::data::video::clip_to_strip`] writes it), each frame resized to side `size`; `frames = 1` is
/// [`decode_image`].
pub fn decode_clip(bytes: &[u8], size: usize, frames: usize) -> Result<Image, String> {
    if frames == 1 {
        return decode_image(bytes, size);
    }
    let decoded = image::load_from_memory(bytes).map_err(|e| e.to_string())?.to_rgb8();
    crate::data::video::strip_to_clip(&decoded, frames, size, square_image)
}

/// An RGB picture centre-cropped to a square and resized to side `size`.
fn square_image(decoded: &image::RgbImage, size: usize) -> Result<Image, String> {
    let (w, h) = decoded.dimensions();
    if w == 0 || h == 0 {
        return Err("the image is empty".into());
    }
    let side = w.min(h);
    let square = image::imageops::crop_imm(decoded, (w - side) / 2, (h - side) / 2, side, side).to_image();
    let out = if side as usize == size {
        square
    } else {
        let s = u32::try_from(size).map_err(|_| format!("image side {size} is too large"))?;
        image::imageops::resize(&square, s, s, image::imageops::FilterType::Triangle)
    };
    Ok(Image::from_rgb8(&out))
}

/// Reads a Pick-a-Pic-shaped file, resizing every image to `size`: decided comparisons become winner/loser
/// pairs, ties are kept apart, rows with `has_label` false are skipped.
///
/// The Parquet library panics on some corrupt files (a negative column offset, a page that claims no values);
/// column chunks are checked against the file first, and any remaining panic inside the decoder becomes
/// [`ParquetError::NotParquet`] (found by `examples/fuzz_readers.rs`; the inputs are in `tests/fuzz_crashes/`).
pub fn read(path: &Path, size: usize) -> Result<PickapicData, ParquetError> {
    read_fields(path, size, FieldNeeds::default())
}

/// [`read`], also reading the optional fields `needs` names for every row: each image's reward (`reward_0`,
/// `reward_1`, or seppoc's `judge_0`, `judge_1`: finite numbers) and each comparison's `weight` (a finite
/// number ≥ 0). A missing column is [`ParquetError::MissingField`], checked before any image is decoded; a
/// null or invalid value names its row.
pub fn read_fields(path: &Path, size: usize, needs: FieldNeeds) -> Result<PickapicData, ParquetError> {
    read_clips(path, size, 1, needs)
}

/// [`read_fields`] for a file of clips of `frames` frames, each stored as a strip of its frames side by side
/// (`seppoc collect --world video` writes them so); `frames = 1` reads images. A picture that is not such a
/// strip is [`ParquetError::BadImage`] naming its row and column.
pub fn read_clips(path: &Path, size: usize, frames: usize, needs: FieldNeeds) -> Result<PickapicData, ParquetError> {
    match quiet_catch(|| read_unguarded(path, size, frames, needs)) {
        Ok(result) => result,
        Err(panic) => Err(ParquetError::NotParquet {
            path: path.to_path_buf(),
            message: format!("the Parquet decoder failed on it ({panic})"),
        }),
    }
}

/// A file for the Parquet decoder that ends the read with an error once the decoder has asked for bytes past the
/// end of the file [`EOF_READS`] times: a corrupt page header can claim a list of billions of elements, each
/// skipped by reading nothing at the end of the file, which would take hours (found by the reader fuzz campaign).
struct GuardedFile {
    file: std::fs::File,
    eof_reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Reads at the end of the file tolerated before a read fails; a sound file needs a handful.
const EOF_READS: usize = 4096;

/// A stream from [`GuardedFile`].
struct GuardedRead {
    inner: std::io::BufReader<std::fs::File>,
    eof_reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl std::io::Read for GuardedRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.eof_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= EOF_READS {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "a page header runs past the end of the file",
            ));
        }
        Ok(n)
    }
}

impl parquet::file::reader::Length for GuardedFile {
    fn len(&self) -> u64 {
        parquet::file::reader::Length::len(&self.file)
    }
}

impl parquet::file::reader::ChunkReader for GuardedFile {
    type T = GuardedRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<GuardedRead> {
        Ok(GuardedRead { inner: self.file.get_read(start)?, eof_reads: self.eof_reads.clone() })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        self.file.get_bytes(start, length)
    }
}

fn read_unguarded(path: &Path, size: usize, frames: usize, needs: FieldNeeds) -> Result<PickapicData, ParquetError> {
    let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let file_len = file.metadata().map_err(|e| io(path, e))?.len();
    let not_parquet =
        |e: &dyn fmt::Display| ParquetError::NotParquet { path: path.to_path_buf(), message: e.to_string() };
    let file = GuardedFile { file, eof_reads: Default::default() };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| not_parquet(&e))?;
    for (g, group) in builder.metadata().row_groups().iter().enumerate() {
        for (c, chunk) in group.columns().iter().enumerate() {
            let start = chunk.dictionary_page_offset().unwrap_or(chunk.data_page_offset());
            let len = chunk.compressed_size();
            let inside = u64::try_from(start)
                .ok()
                .zip(u64::try_from(len).ok())
                .and_then(|(s, l)| s.checked_add(l))
                .is_some_and(|end| end <= file_len);
            if !inside {
                let message = format!("column {c} of row group {g} claims bytes {start}+{len}, outside the file");
                return Err(not_parquet(&message));
            }
        }
    }
    let metadata = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == METADATA_KEY).and_then(|e| e.value.clone()));
    for column in ["caption", "jpg_0", "jpg_1", "label_0"] {
        if builder.schema().field_with_name(column).is_err() {
            return Err(ParquetError::MissingColumn { path: path.to_path_buf(), column });
        }
    }
    let missing_field = |column, field| ParquetError::MissingField { path: path.to_path_buf(), column, field };
    let reward = match (needs.reward, super::columns::reward_columns(builder.schema())) {
        (false, _) => None,
        (true, Some(names)) => Some(names),
        (true, None) => return Err(missing_field("reward_0", "reward")),
    };
    if needs.weight && builder.schema().field_with_name("weight").is_err() {
        return Err(missing_field("weight", "weight"));
    }
    let reader = builder.build().map_err(|e| not_parquet(&e))?;
    let (mut pairs, mut ties, mut rows, mut unlabelled) = (Vec::new(), Vec::new(), 0usize, 0usize);
    for batch in reader {
        let batch = batch.map_err(|e| not_parquet(&e))?;
        let cols = Columns::of(path, &batch, reward, needs.weight)?;
        for i in 0..batch.num_rows() {
            let row = rows + i;
            if cols.has_label.is_some_and(|h| h.is_valid(i) && !h.value(i)) {
                unlabelled += 1;
                continue;
            }
            let null = |column| ParquetError::Null { path: path.to_path_buf(), row, column };
            let label = cols.label_0[i].ok_or_else(|| null("label_0"))?;
            check_label(path, row, label, cols.label_1.as_ref().and_then(|l| l[i]))?;
            let fields = fields(path, row, &cols, reward, i)?;
            let caption = cols.caption.get(i).ok_or_else(|| null("caption"))?.to_string();
            let mut images = Vec::with_capacity(2);
            for (k, column) in ["jpg_0", "jpg_1"].into_iter().enumerate() {
                let raw = cols.jpg[k].get(i).ok_or_else(|| null(column))?;
                let img = decode_clip(raw, size, frames).map_err(|message| ParquetError::BadImage {
                    path: path.to_path_buf(),
                    row,
                    column,
                    message,
                })?;
                images.push(img);
            }
            let (second, first) = (images.pop(), images.pop());
            let (Some(a), Some(b)) = (first, second) else { continue };
            let item =
                |winner, loser, fields| PreferenceItem { prompt: caption.clone(), winner, loser: Some(loser), fields };
            let swapped = Fields { reward: [fields.reward[1], fields.reward[0]], ..fields };
            match winner_of(label) {
                Some(0) => pairs.push(item(a, b, fields)),
                Some(_) => pairs.push(item(b, a, swapped)),
                None => ties.push(item(a, b, Fields { label: 0.5, ..fields })),
            }
        }
        rows += batch.num_rows();
    }
    if pairs.is_empty() {
        return Err(ParquetError::Empty { path: path.to_path_buf(), rows });
    }
    Ok(PickapicData { pairs: PreferenceSet { items: pairs }, ties, rows, unlabelled, metadata })
}

/// `label_0` must be 0, 0.5 or 1; `label_1`, when present, its complement.
fn check_label(path: &Path, row: usize, label_0: f64, label_1: Option<f64>) -> Result<(), ParquetError> {
    let bad = |message: String| ParquetError::BadLabel { path: path.to_path_buf(), row, message };
    if ![0.0, 0.5, 1.0].contains(&label_0) {
        return Err(bad(format!("label_0 is {label_0}; a label is 1 (won), 0 (lost) or 0.5 (tie)")));
    }
    match label_1 {
        Some(l1) if l1 != 1.0 - label_0 => Err(bad(format!("label_0 {label_0} and label_1 {l1} do not add up to 1"))),
        _ => Ok(()),
    }
}

/// Row `i`'s optional fields, image 0's reward first: each read value must be present and finite, a weight
/// also ≥ 0.
fn fields(
    path: &Path,
    row: usize,
    cols: &Columns<'_>,
    names: Option<[&'static str; 2]>,
    i: usize,
) -> Result<Fields, ParquetError> {
    let value = |values: &[Option<f64>], column: &'static str, what: &str, ok: fn(f64) -> bool| {
        let v = values[i].ok_or(ParquetError::Null { path: path.to_path_buf(), row, column })?;
        if ok(v) {
            Ok(v)
        } else {
            Err(ParquetError::BadValue { path: path.to_path_buf(), row, column, message: format!("{v} is not {what}") })
        }
    };
    let mut reward = [None, None];
    if let (Some(values), Some(names)) = (&cols.reward, names) {
        for k in 0..2 {
            reward[k] = Some(value(&values[k], names[k], "a finite reward", f64::is_finite)?);
        }
    }
    let weight = match &cols.weight {
        Some(w) => Some(value(w, "weight", "a finite weight >= 0", |v| v.is_finite() && v >= 0.0)?),
        None => None,
    };
    Ok(Fields { label: 1.0, reward, weight })
}
