//! Preference data in the Pick-a-Pic v2 Parquet schema (arXiv 2305.01569; the Hugging Face data set
//! `yuvalkirstain/pickapic_v2`): one row per comparison of two images for a caption.
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `caption` | string | the prompt as the user typed it |
//! | `jpg_0`, `jpg_1` | binary | the two images, encoded (JPEG in Pick-a-Pic; seppoc writes PNG) |
//! | `label_0`, `label_1` | float64 | 1/0: that image won; 0.5/0.5: a tie |
//! | `model_0`, `model_1` | string | the generator of each image |
//! | `best_image_uid`, `image_0_uid`, `image_1_uid` | string | ids (`best_image_uid` is empty for a tie) |
//! | `has_label`, `are_different` | bool | a decision was recorded; the two images differ |
//! | `ranking_id`, `user_id`, `num_example_per_prompt` | int64 | the comparison chain, the annotator, chain length |
//!
//! seppoc also writes `judge_0`, `judge_1` (float64): the exact judge's score of each image, never read back for
//! training. The reader needs only `caption`, `jpg_0`, `jpg_1` and `label_0`, as the field's trainers do, and
//! ignores any other column. Images of any size are centre-cropped to a square and resized to the model's side
//! with a triangle (bilinear) filter, which at large reduction ratios averages over each output pixel's footprint.
//! Rows are counted from 0 in messages, as pandas counts them. Nothing here panics on a file's contents.

use super::image::Image;
use super::preference::{PreferenceItem, PreferenceSet};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The key of seppoc's own entry in the file's key-value metadata (how the set was made, as JSON).
pub const METADATA_KEY: &str = "seppoc";

/// Why a Parquet preference file could not be read or written. Each variant names the file; row-level ones
/// name the row (from 0) and the column.
#[derive(Clone, Debug, PartialEq)]
pub enum ParquetError {
    /// The file could not be opened, created, written or renamed.
    Io {
        /// The file.
        path: PathBuf,
        /// The system's message.
        message: String,
    },
    /// The bytes are not a readable Parquet file (not Parquet at all, truncated, corrupt).
    NotParquet {
        /// The file.
        path: PathBuf,
        /// The Parquet reader's message.
        message: String,
    },
    /// A required column is absent.
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: &'static str,
    },
    /// A column has a type the reader cannot use.
    WrongType {
        /// The file.
        path: PathBuf,
        /// The column.
        column: &'static str,
        /// What the file holds.
        found: String,
        /// What would do.
        expected: &'static str,
    },
    /// A required value is null.
    Null {
        /// The file.
        path: PathBuf,
        /// The row, from 0.
        row: usize,
        /// The column.
        column: &'static str,
    },
    /// A label is not 0, 0.5 or 1, or `label_1` is not `1 − label_0`.
    BadLabel {
        /// The file.
        path: PathBuf,
        /// The row, from 0.
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// An image's bytes do not decode.
    BadImage {
        /// The file.
        path: PathBuf,
        /// The row, from 0.
        row: usize,
        /// The column.
        column: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// The file has no rows with a decision.
    Empty {
        /// The file.
        path: PathBuf,
        /// Rows in the file.
        rows: usize,
    },
}

impl fmt::Display for ParquetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ParquetError::*;
        match self {
            Io { path, message } => write!(f, "`{}`: {message}", path.display()),
            NotParquet { path, message } => {
                write!(f, "`{}` is not a readable Parquet file (truncated or corrupt?): {message}", path.display())
            }
            MissingColumn { path, column } => write!(
                f,
                "`{}` has no column `{column}` (a Pick-a-Pic file needs `caption`, `jpg_0`, `jpg_1` and `label_0`)",
                path.display()
            ),
            WrongType { path, column, found, expected } => {
                write!(f, "`{}`: column `{column}` holds {found}, expected {expected}", path.display())
            }
            Null { path, row, column } => write!(f, "`{}` row {row}: `{column}` is null", path.display()),
            BadLabel { path, row, message } => write!(f, "`{}` row {row}: {message}", path.display()),
            BadImage { path, row, column, message } => {
                write!(f, "`{}` row {row}: `{column}` is not a decodable image: {message}", path.display())
            }
            Empty { path, rows } => write!(f, "`{}` has no decided comparison ({rows} rows)", path.display()),
        }
    }
}

impl std::error::Error for ParquetError {}

/// One comparison, as a row of the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The prompt.
    pub caption: String,
    /// The two images.
    pub images: [Image; 2],
    /// `label_0`: 1 when image 0 won, 0 when image 1 won, 0.5 for a tie (`label_1` is `1 − label_0`).
    pub label_0: f64,
    /// The generator of each image.
    pub models: [String; 2],
    /// The exact judge's score of each image (written for analysis; not read back).
    pub judge: [f64; 2],
    /// The comparison chain this row belongs to (one per prompt).
    pub ranking_id: i64,
    /// The (simulated) annotator.
    pub user_id: i64,
    /// Comparisons in the chain.
    pub num_example_per_prompt: i64,
}

/// What [`read`] found: the decided pairs as a preference set, the ties kept apart.
#[derive(Clone, Debug, PartialEq)]
pub struct PickapicData {
    /// Decided comparisons: winner and loser.
    pub pairs: PreferenceSet,
    /// Ties (`label_0` 0.5), image 0 as `winner` and image 1 as `loser`: left out of `pairs`, as Diffusion-DPO
    /// drops them, and kept for objectives that can use a label.
    pub ties: Vec<PreferenceItem>,
    /// Rows in the file.
    pub rows: usize,
    /// Rows with `has_label` false (no decision recorded), skipped.
    pub unlabelled: usize,
    /// seppoc's entry in the file's key-value metadata, if any.
    pub metadata: Option<String>,
}

fn io(path: &Path, e: impl fmt::Display) -> ParquetError {
    ParquetError::Io { path: path.to_path_buf(), message: e.to_string() }
}

/// Writes comparisons in the Pick-a-Pic schema (snappy-compressed), atomically: `PATH.tmp` is written, synced
/// and renamed. `metadata` goes into the file's key-value metadata under [`METADATA_KEY`].
pub fn write(path: &Path, rows: &[Comparison], metadata: Option<&str>) -> Result<(), ParquetError> {
    let png = |img: &Image| -> Result<Vec<u8>, ParquetError> {
        let mut out = std::io::Cursor::new(Vec::new());
        img.to_rgb8().write_to(&mut out, image::ImageFormat::Png).map_err(|e| io(path, e))?;
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

/// Decodes image bytes (JPEG, PNG, ...) to an RGB image of side `size`: centre-cropped to a square, resized with
/// a triangle filter when its side differs.
pub fn decode_image(bytes: &[u8], size: usize) -> Result<Image, String> {
    let decoded = image::load_from_memory(bytes).map_err(|e| e.to_string())?.to_rgb8();
    let (w, h) = decoded.dimensions();
    if w == 0 || h == 0 {
        return Err("the image is empty".into());
    }
    let side = w.min(h);
    let square = image::imageops::crop_imm(&decoded, (w - side) / 2, (h - side) / 2, side, side).to_image();
    let out = if side as usize == size {
        square
    } else {
        let s = u32::try_from(size).map_err(|_| format!("image side {size} is too large"))?;
        image::imageops::resize(&square, s, s, image::imageops::FilterType::Triangle)
    };
    Ok(Image::from_rgb8(&out))
}

/// A column of strings, whatever its offset width.
enum Strings<'a> {
    Narrow(&'a arrow_array::StringArray),
    Wide(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
}

impl Strings<'_> {
    fn get(&self, i: usize) -> Option<&str> {
        match self {
            Strings::Narrow(a) => a.is_valid(i).then(|| a.value(i)),
            Strings::Wide(a) => a.is_valid(i).then(|| a.value(i)),
            Strings::View(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

/// A column of encoded images: binary, or Hugging Face's image struct `{bytes, path}`.
enum Bytes<'a> {
    Narrow(&'a arrow_array::BinaryArray),
    Wide(&'a arrow_array::LargeBinaryArray),
    View(&'a arrow_array::BinaryViewArray),
}

impl Bytes<'_> {
    fn get(&self, i: usize) -> Option<&[u8]> {
        match self {
            Bytes::Narrow(a) => a.is_valid(i).then(|| a.value(i)),
            Bytes::Wide(a) => a.is_valid(i).then(|| a.value(i)),
            Bytes::View(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

/// A batch's columns that the reader uses.
struct Columns<'a> {
    caption: Strings<'a>,
    jpg: [Bytes<'a>; 2],
    label_0: Vec<Option<f64>>,
    label_1: Option<Vec<Option<f64>>>,
    has_label: Option<&'a BooleanArray>,
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
    fn of(path: &Path, batch: &'a RecordBatch) -> Result<Self, ParquetError> {
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
        })
    }
}

/// Reads a Pick-a-Pic-shaped file, resizing every image to `size`: decided comparisons become winner/loser
/// pairs, ties are kept apart, rows with `has_label` false are skipped.
///
/// The Parquet library panics on some corrupt files (a negative column offset, a page that claims no values);
/// column chunks are checked against the file first, and any remaining panic inside the decoder becomes
/// [`ParquetError::NotParquet`] (found by `examples/fuzz_readers.rs`; the inputs are in `tests/fuzz_crashes/`).
pub fn read(path: &Path, size: usize) -> Result<PickapicData, ParquetError> {
    match quiet_catch(|| read_unguarded(path, size)) {
        Ok(result) => result,
        Err(panic) => Err(ParquetError::NotParquet {
            path: path.to_path_buf(),
            message: format!("the Parquet decoder failed on it ({panic})"),
        }),
    }
}

thread_local! {
    /// Set while this thread runs a guarded decoder: its panics are caught and reported as errors, not printed.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err(its message)` without printing it; other threads' panics print as before.
fn quiet_catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    outcome.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into())
    })
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

fn read_unguarded(path: &Path, size: usize) -> Result<PickapicData, ParquetError> {
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
    let reader = builder.build().map_err(|e| not_parquet(&e))?;
    let (mut pairs, mut ties, mut rows, mut unlabelled) = (Vec::new(), Vec::new(), 0usize, 0usize);
    for batch in reader {
        let batch = batch.map_err(|e| not_parquet(&e))?;
        let cols = Columns::of(path, &batch)?;
        for i in 0..batch.num_rows() {
            let row = rows + i;
            if cols.has_label.is_some_and(|h| h.is_valid(i) && !h.value(i)) {
                unlabelled += 1;
                continue;
            }
            let null = |column| ParquetError::Null { path: path.to_path_buf(), row, column };
            let label = cols.label_0[i].ok_or_else(|| null("label_0"))?;
            check_label(path, row, label, cols.label_1.as_ref().and_then(|l| l[i]))?;
            let caption = cols.caption.get(i).ok_or_else(|| null("caption"))?.to_string();
            let mut images = Vec::with_capacity(2);
            for (k, column) in ["jpg_0", "jpg_1"].into_iter().enumerate() {
                let raw = cols.jpg[k].get(i).ok_or_else(|| null(column))?;
                let img = decode_image(raw, size).map_err(|message| ParquetError::BadImage {
                    path: path.to_path_buf(),
                    row,
                    column,
                    message,
                })?;
                images.push(img);
            }
            let (second, first) = (images.pop(), images.pop());
            let (Some(a), Some(b)) = (first, second) else { continue };
            let item = |winner, loser| PreferenceItem { prompt: caption.clone(), winner, loser: Some(loser) };
            match winner_of(label) {
                Some(0) => pairs.push(item(a, b)),
                Some(_) => pairs.push(item(b, a)),
                None => ties.push(item(a, b)),
            }
        }
        rows += batch.num_rows();
    }
    if pairs.is_empty() {
        return Err(ParquetError::Empty { path: path.to_path_buf(), rows });
    }
    Ok(PickapicData { pairs: PreferenceSet { items: pairs }, ties, rows, unlabelled, metadata })
}

/// Which image won a comparison with this `label_0`: 0 for 1, 1 for 0, none for a tie.
fn winner_of(label_0: f64) -> Option<usize> {
    if label_0 == 1.0 {
        Some(0)
    } else if label_0 == 0.0 {
        Some(1)
    } else {
        None
    }
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
