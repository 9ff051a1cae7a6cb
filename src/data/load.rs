//! Loading user preference data in the diffusers / Hugging Face imagefolder convention: a folder of PNG files
//! and a `metadata.jsonl` with `file_name`, `text` and optionally `loser_file_name` per line.
//!
//! Images are never resized: a size other than the configured one is an error. Nothing here panics on user data.

use super::image::Image;
use super::preference::{Fields, PreferenceItem, PreferenceSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a folder could not be loaded. Each variant names the file (and, for metadata, the 1-based line).
#[derive(Clone, Debug, PartialEq)]
pub enum LoadError {
    /// The folder has no `metadata.jsonl`.
    MissingMetadata {
        /// The path that was looked for.
        path: PathBuf,
    },
    /// A file exists but could not be read (permissions, a directory in its place).
    Io {
        /// The file.
        path: PathBuf,
        /// The system's message.
        message: String,
    },
    /// A metadata line is not valid UTF-8, e.g. a caption in Latin-1.
    BadUtf8 {
        /// The metadata file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
    },
    /// A metadata line is not a JSON object, e.g. `{"file_name": "a.png",`.
    BadJson {
        /// The metadata file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// serde_json's message.
        message: String,
    },
    /// A metadata line lacks a required field or has it with the wrong type, e.g. `{"file_name": "a.png"}`.
    MissingField {
        /// The metadata file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// `file_name` or `text` (or `loser_file_name` when it is not a string).
        field: &'static str,
    },
    /// A named image is not in the folder, or its name leaves the folder (`../x.png`, an absolute path).
    MissingImage {
        /// The image path.
        path: PathBuf,
        /// The metadata line naming it, from 1.
        line: usize,
    },
    /// A named file is not a decodable image (PNG or GIF).
    NotAnImage {
        /// The image path.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// An image is not `size × size`.
    WrongSize {
        /// The image path.
        path: PathBuf,
        /// The configured side.
        expected: usize,
        /// The file's `(width, height)`.
        found: (u32, u32),
    },
    /// `metadata.jsonl` has no records.
    Empty {
        /// The metadata file.
        path: PathBuf,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::MissingMetadata { path } => write!(f, "missing metadata file {}", path.display()),
            LoadError::Io { path, message } => write!(f, "cannot read {}: {message}", path.display()),
            LoadError::BadUtf8 { path, line } => write!(f, "{}:{line}: line is not valid UTF-8", path.display()),
            LoadError::BadJson { path, line, message } => {
                write!(f, "{}:{line}: bad JSON: {message}", path.display())
            }
            LoadError::MissingField { path, line, field } => {
                write!(f, "{}:{line}: missing string field `{field}`", path.display())
            }
            LoadError::MissingImage { path, line } => {
                write!(f, "image {} named on metadata line {line} does not exist in the folder", path.display())
            }
            LoadError::NotAnImage { path, message } => {
                write!(f, "{} is not a PNG or GIF image: {message}", path.display())
            }
            LoadError::WrongSize { path, expected, found } => write!(
                f,
                "{} is {}x{} but the model expects {expected}x{expected} (resize the data set; seppoc does not)",
                path.display(),
                found.0,
                found.1
            ),
            LoadError::Empty { path } => write!(f, "{} has no records", path.display()),
        }
    }
}

impl std::error::Error for LoadError {}

/// Loads `dir/metadata.jsonl` and the images it names; every image must be `image_size × image_size`.
/// Blank lines are skipped. Records with `loser_file_name` get a loser; the rest do not.
pub fn load_imagefolder(dir: &Path, image_size: usize) -> Result<PreferenceSet, LoadError> {
    let meta_path = dir.join("metadata.jsonl");
    let bytes = match std::fs::read(&meta_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::MissingMetadata { path: meta_path });
        }
        Err(e) => return Err(LoadError::Io { path: meta_path, message: e.to_string() }),
    };
    let mut items = Vec::new();
    for (idx, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = idx + 1;
        let text = std::str::from_utf8(raw).map_err(|_| LoadError::BadUtf8 { path: meta_path.clone(), line })?;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let record = parse_record(text, &meta_path, line)?;
        let winner = load_image(dir, &record.file_name, line, image_size)?;
        let loser = match &record.loser_file_name {
            Some(name) => Some(load_image(dir, name, line, image_size)?),
            None => None,
        };
        items.push(PreferenceItem { prompt: record.text, winner, loser, fields: Fields::DECIDED });
    }
    if items.is_empty() {
        return Err(LoadError::Empty { path: meta_path });
    }
    Ok(PreferenceSet { items })
}

/// The fields of one metadata line.
struct Record {
    file_name: String,
    text: String,
    loser_file_name: Option<String>,
}

/// Parses one non-blank metadata line.
fn parse_record(text: &str, path: &Path, line: usize) -> Result<Record, LoadError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| LoadError::BadJson {
        path: path.to_path_buf(),
        line,
        message: e.to_string(),
    })?;
    let Some(obj) = value.as_object() else {
        return Err(LoadError::BadJson { path: path.to_path_buf(), line, message: "expected a JSON object".into() });
    };
    let field = |name: &'static str| -> Result<String, LoadError> {
        obj.get(name).and_then(|v| v.as_str()).map(str::to_string).ok_or(LoadError::MissingField {
            path: path.to_path_buf(),
            line,
            field: name,
        })
    };
    let file_name = field("file_name")?;
    let text = field("text")?;
    let loser_file_name = match obj.get("loser_file_name") {
        None | Some(serde_json::Value::Null) => None,
        Some(_) => Some(field("loser_file_name")?),
    };
    Ok(Record { file_name, text, loser_file_name })
}

/// Reads and decodes one image named in the metadata, checking that it stays inside `dir` and has the size.
fn load_image(dir: &Path, name: &str, line: usize, size: usize) -> Result<Image, LoadError> {
    let rel = Path::new(name);
    let path = dir.join(rel);
    let stays_inside = rel.components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if !stays_inside || name.is_empty() {
        return Err(LoadError::MissingImage { path, line });
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(LoadError::MissingImage { path, line }),
        Err(e) => return Err(LoadError::Io { path, message: e.to_string() }),
    };
    let decoded = image::load_from_memory(&bytes)
        .map_err(|e| LoadError::NotAnImage { path: path.clone(), message: e.to_string() })?;
    let (w, h) = (decoded.width(), decoded.height());
    if w as usize != size || h as usize != size {
        return Err(LoadError::WrongSize { path, expected: size, found: (w, h) });
    }
    Ok(Image::from_rgb8(&decoded.to_rgb8()))
}
