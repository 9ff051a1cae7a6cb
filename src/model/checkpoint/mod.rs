//! Checkpoints in safetensors format with run metadata in the header; atomic writes, validated reads.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::config::DitConfig;
use super::dit::{param_specs, Dit};
mod meta;

use crate::device::Backend;
pub use meta::{CheckpointMeta, ObjectiveMeta, REWARD_KIND};

const FORMAT: &str = "seppoc-dit-v1";

/// Why a checkpoint could not be written or read. `Display` names the file and the problem.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckpointError {
    /// The file could not be created, read, synced or renamed.
    Io {
        /// File concerned.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The bytes are not a valid safetensors file (truncated, corrupt header, ...).
    Format {
        /// File concerned.
        path: PathBuf,
        /// What the parser reported.
        message: String,
    },
    /// A metadata entry is missing or does not parse.
    Metadata {
        /// File concerned.
        path: PathBuf,
        /// The metadata key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A parameter tensor is absent.
    MissingTensor {
        /// File concerned.
        path: PathBuf,
        /// Tensor name.
        name: String,
    },
    /// A parameter tensor has the wrong shape.
    WrongShape {
        /// File concerned.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// Shape the model needs.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// A parameter tensor is not f32.
    WrongDtype {
        /// File concerned.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// Dtype in the file.
        found: String,
    },
    /// The file's model config differs from the one the caller expects.
    ConfigMismatch {
        /// File concerned.
        path: PathBuf,
        /// Expected config (JSON).
        expected: String,
        /// Config in the file (JSON).
        found: String,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CheckpointError::*;
        match self {
            Io { path, message } => write!(f, "checkpoint `{}`: {message}", path.display()),
            Format { path, message } => write!(f, "`{}`: {message}", path.display()),
            Metadata { path, key, message } => {
                write!(f, "checkpoint `{}`: metadata `{key}`: {message}", path.display())
            }
            MissingTensor { path, name } => write!(f, "checkpoint `{}`: tensor `{name}` is missing", path.display()),
            WrongShape { path, name, expected, found } => {
                write!(f, "checkpoint `{}`: tensor `{name}` has shape {found:?}, expected {expected:?}", path.display())
            }
            WrongDtype { path, name, found } => {
                write!(f, "checkpoint `{}`: tensor `{name}` has dtype {found}, expected F32", path.display())
            }
            ConfigMismatch { path, expected, found } => write!(
                f,
                "checkpoint `{}`: model config {found} does not match the expected {expected}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CheckpointError {}

/// A safetensors parse error in the user's words: the file is truncated, or it is not a checkpoint at all.
fn read_error(path: &Path, buf: &[u8], e: safetensors::SafeTensorError) -> CheckpointError {
    use safetensors::SafeTensorError as E;
    let declared = buf.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
    let looks_like_header = buf.get(8) == Some(&b'{');
    let message = match e {
        E::HeaderTooSmall => format!("truncated: {} bytes, too short to be a seppoc model checkpoint", buf.len()),
        E::InvalidHeaderLength | E::MetadataIncompleteBuffer if looks_like_header => format!(
            "truncated: the file has {} bytes but its header describes more (copy it again, or use another checkpoint)",
            buf.len()
        ),
        E::InvalidHeaderLength | E::HeaderTooLarge
            if declared.is_some_and(|n| n > 100_000_000) || !looks_like_header =>
        {
            "not a seppoc model checkpoint (not a safetensors file)".to_string()
        }
        other => format!("not a seppoc model checkpoint (corrupt safetensors header: {other})"),
    };
    CheckpointError::Format { path: path.to_path_buf(), message }
}

fn io_err(path: &Path, e: impl fmt::Display) -> CheckpointError {
    CheckpointError::Io { path: path.to_path_buf(), message: e.to_string() }
}

/// Writes `model` and `meta` to `path` atomically: `path.tmp` is written, fsynced, then renamed.
pub fn save_checkpoint<D: Backend>(path: &Path, model: &Dit<D>, meta: &CheckpointMeta) -> Result<(), CheckpointError> {
    save_tensors(path, model.config(), &model.to_host(), meta)
}

/// Writes one f32 tensor per parameter of a model with config `cfg` — `values` in [`Dit::specs`] order, under the
/// parameters' names and shapes — with `meta`, in the checkpoint format (atomically, as [`save_checkpoint`]).
/// Per-parameter state that is not a model (AdamW's moments) is saved this way; [`load_tensors`] reads it back.
pub fn save_tensors(
    path: &Path,
    cfg: &DitConfig,
    values: &[Vec<f32>],
    meta: &CheckpointMeta,
) -> Result<(), CheckpointError> {
    let specs = param_specs(cfg).map_err(|e| CheckpointError::Metadata {
        path: path.to_path_buf(),
        key: "dit_config".into(),
        message: e.to_string(),
    })?;
    if values.len() != specs.len() {
        let message = format!("{} tensors for a model with {} parameters", values.len(), specs.len());
        return Err(CheckpointError::Format { path: path.to_path_buf(), message });
    }
    let mut header = meta.to_header().map_err(|e| io_err(path, e))?;
    let cfg = serde_json::to_string(cfg).map_err(|e| io_err(path, e))?;
    header.insert("format".into(), FORMAT.into());
    header.insert("dit_config".into(), cfg);

    let bytes: Vec<Vec<u8>> = values.iter().map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (spec, data) in specs.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, spec.shape.clone(), data)
            .map_err(|e| CheckpointError::Format { path: path.to_path_buf(), message: e.to_string() })?;
        views.push((spec.name.clone(), view));
    }
    let buf = safetensors::serialize(views, &Some(header))
        .map_err(|e| CheckpointError::Format { path: path.to_path_buf(), message: e.to_string() })?;
    let buf = canonical_header(buf);

    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(&buf)?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        // Never leave a half-written file behind (a full disk, a size limit): the old checkpoint stays.
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(path, e));
    }
    // Syncing the directory makes the rename durable; not every platform allows opening a directory.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn parse_meta(path: &Path, header: &HashMap<String, String>) -> Result<(DitConfig, CheckpointMeta), CheckpointError> {
    let bad =
        |key: &str, message: String| CheckpointError::Metadata { path: path.to_path_buf(), key: key.into(), message };
    let Some(cfg_text) = header.get("dit_config") else {
        let message = "not a seppoc model checkpoint (a safetensors file without seppoc's `dit_config` metadata)";
        return Err(CheckpointError::Format { path: path.to_path_buf(), message: message.into() });
    };
    let cfg: DitConfig = serde_json::from_str(cfg_text).map_err(|e| bad("dit_config", e.to_string()))?;
    cfg.validate().map_err(|e| bad("dit_config", e))?;
    Ok((cfg, CheckpointMeta::from_header(path, header)?))
}

fn read_file(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    std::fs::read(path).map_err(|e| io_err(path, e))
}

/// Reads only the header: the model config and the run metadata.
pub fn read_checkpoint_meta(path: &Path) -> Result<(DitConfig, CheckpointMeta), CheckpointError> {
    let buf = read_file(path)?;
    let (_, md) = SafeTensors::read_metadata(&buf).map_err(|e| read_error(path, &buf, e))?;
    let empty = HashMap::new();
    parse_meta(path, md.metadata().as_ref().unwrap_or(&empty))
}

/// Loads a model and its metadata; the model is built from the config stored in the file.
pub fn load_checkpoint<D: Backend>(path: &Path, dev: &D) -> Result<(Dit<D>, CheckpointMeta), CheckpointError> {
    let (cfg, values, meta) = load_tensors(path)?;
    let model = Dit::from_host(&cfg, dev, values)
        .map_err(|e| CheckpointError::Format { path: path.to_path_buf(), message: e.to_string() })?;
    Ok((model, meta))
}

/// Reads a file written by [`save_tensors`] or [`save_checkpoint`]: the stored model config, one host vector per
/// parameter of that config (in [`Dit::specs`] order, each checked for name, dtype and shape) and the metadata.
pub fn load_tensors(path: &Path) -> Result<(DitConfig, Vec<Vec<f32>>, CheckpointMeta), CheckpointError> {
    let buf = read_file(path)?;
    let fmt_err = |e: safetensors::SafeTensorError| read_error(path, &buf, e);
    let (_, md) = SafeTensors::read_metadata(&buf).map_err(fmt_err)?;
    let empty = HashMap::new();
    let (cfg, meta) = parse_meta(path, md.metadata().as_ref().unwrap_or(&empty))?;
    let st = SafeTensors::deserialize(&buf).map_err(fmt_err)?;
    let specs = param_specs(&cfg).map_err(|e| CheckpointError::Metadata {
        path: path.to_path_buf(),
        key: "dit_config".into(),
        message: e.to_string(),
    })?;
    let mut values = Vec::with_capacity(specs.len());
    for spec in &specs {
        let view = st
            .tensor(&spec.name)
            .map_err(|_| CheckpointError::MissingTensor { path: path.to_path_buf(), name: spec.name.clone() })?;
        if view.dtype() != Dtype::F32 {
            let found = format!("{:?}", view.dtype());
            return Err(CheckpointError::WrongDtype { path: path.to_path_buf(), name: spec.name.clone(), found });
        }
        if view.shape() != spec.shape.as_slice() {
            return Err(CheckpointError::WrongShape {
                path: path.to_path_buf(),
                name: spec.name.clone(),
                expected: spec.shape.clone(),
                found: view.shape().to_vec(),
            });
        }
        values.push(view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
    }
    Ok((cfg, values, meta))
}

/// Like [`load_checkpoint`], but fails with [`CheckpointError::ConfigMismatch`] unless the stored config equals `expected`.
pub fn load_checkpoint_expecting<D: Backend>(
    path: &Path,
    dev: &D,
    expected: &DitConfig,
) -> Result<(Dit<D>, CheckpointMeta), CheckpointError> {
    let (cfg, _) = read_checkpoint_meta(path)?;
    if &cfg != expected {
        let json = |c: &DitConfig| serde_json::to_string(c).unwrap_or_default();
        return Err(CheckpointError::ConfigMismatch {
            path: path.to_path_buf(),
            expected: json(expected),
            found: json(&cfg),
        });
    }
    load_checkpoint(path, dev)
}

/// Rewrites the JSON header with every object's keys sorted. safetensors serialises the metadata `HashMap` in
/// per-process random order, so without this two saves of the same model and metadata differ byte-wise.
fn canonical_header(buf: Vec<u8>) -> Vec<u8> {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let entries: BTreeMap<String, serde_json::Value> =
                    map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::Value::Object(entries.into_iter().collect())
            }
            other => other,
        }
    }
    let Some(n) = buf.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes) else { return buf };
    let Some(header) = usize::try_from(n).ok().and_then(|n| buf.get(8..8 + n)) else { return buf };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(header) else { return buf };
    let Ok(mut text) = serde_json::to_vec(&sorted(value)) else { return buf };
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(buf.len());
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&buf[8 + header.len()..]);
    out
}
