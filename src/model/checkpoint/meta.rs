//! What a checkpoint records about the run that wrote it: one typed struct, stored as string entries of the
//! safetensors header.

use super::CheckpointError;
use crate::model::schedule::ScheduleSpec;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The metadata `kind` of a reward model (`seppoc reward train`): a scorer, not a denoiser.
pub const REWARD_KIND: &str = "reward";

/// What a checkpoint records about the run that wrote it, besides the weights and the model config.
///
/// It is stored as string entries of the safetensors `__metadata__` header, one key per field (`world`,
/// `world_config`, `schedule`, `seed`, `step`, `kind`, `command`, `train`, `objective`, `objective_sha256`,
/// `params`), so the file stays readable by any safetensors reader. A checkpoint that names no world holds an
/// image model; one that names no schedule was trained with linear betas over 1000 steps.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointMeta {
    /// The registered name of the world the model was trained on (`image`, `video`).
    pub world: String,
    /// That world's configuration, as JSON.
    pub world_config: String,
    /// The noise schedule the model was trained with.
    pub schedule: ScheduleSpec,
    /// Seed of the run.
    pub seed: u64,
    /// Optimizer step at which the checkpoint was written.
    pub step: u64,
    /// What wrote it: `pretrain` for a base model, `run` for a model trained with an objective, [`REWARD_KIND`]
    /// for a reward model.
    pub kind: Option<String>,
    /// The command line that wrote it.
    pub command: Option<String>,
    /// The training settings of that command, as JSON.
    pub train: Option<serde_json::Value>,
    /// The objective a model was trained with.
    pub objective: Option<ObjectiveMeta>,
}

/// The objective recorded in a checkpoint: its canonical text, that text's SHA-256 and the bound parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectiveMeta {
    /// The objective in canonical form (`seppoc fmt`).
    pub text: String,
    /// Hex SHA-256 of `text`.
    pub sha256: String,
    /// Every parameter's value, by name.
    pub params: BTreeMap<String, f64>,
}

impl CheckpointMeta {
    /// Metadata naming only a world, its config and a schedule; seed and step 0, nothing else recorded.
    pub fn new(world: &str, world_config: String, schedule: ScheduleSpec) -> Self {
        CheckpointMeta {
            world: world.to_string(),
            world_config,
            schedule,
            seed: 0,
            step: 0,
            kind: None,
            command: None,
            train: None,
            objective: None,
        }
    }

    /// The header entries (without `format` and `dit_config`, which come from the model).
    pub(super) fn to_header(&self) -> Result<HashMap<String, String>, serde_json::Error> {
        let mut h = HashMap::new();
        h.insert("world".to_string(), self.world.clone());
        h.insert("world_config".to_string(), self.world_config.clone());
        h.insert("schedule".to_string(), serde_json::to_string(&self.schedule)?);
        h.insert("seed".to_string(), self.seed.to_string());
        h.insert("step".to_string(), self.step.to_string());
        let optional = [("kind", &self.kind), ("command", &self.command)];
        for (key, value) in optional {
            if let Some(v) = value {
                h.insert(key.to_string(), v.clone());
            }
        }
        if let Some(train) = &self.train {
            h.insert("train".to_string(), train.to_string());
        }
        if let Some(o) = &self.objective {
            h.insert("objective".to_string(), o.text.clone());
            h.insert("objective_sha256".to_string(), o.sha256.clone());
            h.insert("params".to_string(), serde_json::to_string(&o.params)?);
        }
        Ok(h)
    }

    /// Reads the header entries; a missing required key or one that does not parse is an error naming it.
    pub(super) fn from_header(path: &Path, header: &HashMap<String, String>) -> Result<Self, CheckpointError> {
        let bad = |key: &str, message: String| CheckpointError::Metadata {
            path: path.to_path_buf(),
            key: key.into(),
            message,
        };
        let get = |key: &str| header.get(key).cloned();
        let json = |key: &str| -> Result<Option<serde_json::Value>, CheckpointError> {
            get(key).map(|t| serde_json::from_str(&t).map_err(|e| bad(key, e.to_string()))).transpose()
        };
        let schedule = match get("schedule") {
            Some(t) => serde_json::from_str(&t).map_err(|e| bad("schedule", e.to_string()))?,
            None => ScheduleSpec::default_linear(),
        };
        let objective = match (get("objective"), get("objective_sha256")) {
            (Some(text), Some(sha256)) => {
                let params = match json("params")? {
                    Some(v) => serde_json::from_value(v).map_err(|e| bad("params", e.to_string()))?,
                    None => BTreeMap::new(),
                };
                Some(ObjectiveMeta { text, sha256, params })
            }
            (Some(_), None) => return Err(bad("objective_sha256", "missing beside `objective`".into())),
            _ => None,
        };
        Ok(CheckpointMeta {
            world: get("world").unwrap_or_else(|| "image".to_string()),
            world_config: meta_value(path, header, "world_config")?.to_string(),
            schedule,
            seed: meta_value(path, header, "seed")?.parse().map_err(|e| bad("seed", format!("{e}")))?,
            step: meta_value(path, header, "step")?.parse().map_err(|e| bad("step", format!("{e}")))?,
            kind: get("kind"),
            command: get("command"),
            train: json("train")?,
            objective,
        })
    }
}

fn meta_value<'a>(path: &Path, header: &'a HashMap<String, String>, key: &str) -> Result<&'a str, CheckpointError> {
    header.get(key).map(String::as_str).ok_or_else(|| CheckpointError::Metadata {
        path: path.to_path_buf(),
        key: key.into(),
        message: "missing".into(),
    })
}
