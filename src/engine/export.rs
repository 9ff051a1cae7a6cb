//! What a trainer outside seppoc needs to train the same model on the same data (`seppoc export-torch`):
//! the run's preference set as tensors with the noise schedule and model config, and the first step of the
//! native trainer (its drawn tokens, `x_t`, `t`, `eps` per image kind, the references drawn, and its loss), so
//! the other trainer can check that it computes the same loss from the same inputs.

use super::files::write_atomic;
use super::run::Training;
use crate::device::cpu;
use crate::trainer::{Slot, StepReport, Trainer, TrainerParts};
use anyhow::Context;
use safetensors::{tensor::TensorView, Dtype};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

/// What [`export`] wrote.
pub struct Exported {
    /// Preference items in `data.safetensors`.
    pub items: usize,
    /// The native trainer's first step on these data (its loss and logs).
    pub first_step: StepReport,
}

/// A named tensor to write: shape and little-endian bytes.
struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn f32s(name: &str, shape: Vec<usize>, v: &[f32]) -> Entry {
    Entry { name: name.into(), dtype: Dtype::F32, shape, bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
}

fn f64s(name: &str, shape: Vec<usize>, v: &[f64]) -> Entry {
    Entry { name: name.into(), dtype: Dtype::F64, shape, bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
}

fn i64s(name: &str, shape: Vec<usize>, v: impl Iterator<Item = usize>) -> Entry {
    Entry { name: name.into(), dtype: Dtype::I64, shape, bytes: v.flat_map(|x| (x as i64).to_le_bytes()).collect() }
}

fn write(path: &Path, entries: &[Entry], meta: HashMap<String, String>) -> anyhow::Result<()> {
    let views = entries
        .iter()
        .map(|e| Ok((e.name.clone(), TensorView::new(e.dtype, e.shape.clone(), &e.bytes)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .with_context(|| format!("cannot build `{}`", path.display()))?;
    let bytes =
        safetensors::serialize(views, &Some(meta)).with_context(|| format!("cannot build `{}`", path.display()))?;
    write_atomic(path, bytes)
}

/// Writes `out/data.safetensors` (the run's preference set: `winner`, `loser` when the set has pairs, `tokens`;
/// metadata: `dit_config`, `alphas_cumprod`) and `out/first_step.safetensors` (the native trainer's first step
/// on CPU with the run's settings and seed: `tokens`, `x_t.V`, `t.V`, `eps.V` (the target) per view `V`, and
/// `datum.NAME` (float64) for every datum the objective reads, one value per prompt or one per step; metadata:
/// `loss`, `logs`, `leaf_means`, `references`, `datums` (the datum names), the objective's hash).
pub fn export(training: Training, out: &Path) -> anyhow::Result<Exported> {
    let Training { objective, settings, base, data, .. } = training;
    // seppoc_torch's DiT family (`python/seppoc_torch/dit.py`) noises, samples and measures errors as an
    // ε-prediction model does.
    if base.schedule.param != crate::model::Parametrisation::Epsilon {
        anyhow::bail!(
            "`{}` is a {} model; the PyTorch trainer (`seppoc-torch train`) trains ε-prediction DiTs only, so \
             export-torch needs an ε-prediction checkpoint (train this one with `seppoc run`)",
            base.path.display(),
            base.schedule.param.describe()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create `{}`", out.display()))?;
    let cfg = base.model.config().clone();
    let (c, s) = (cfg.sample_channels(), cfg.image_size);
    let vocab = base.world.vocab().clone();
    let n = data.items.len();
    let mut entries = vec![f32s(
        "winner",
        vec![n, c, s, s],
        &data.items.iter().flat_map(|it| it.winner.data.iter().copied()).collect::<Vec<_>>(),
    )];
    if data.has_pairs() {
        let losers: Vec<f32> = data
            .items
            .iter()
            .flat_map(|it| it.loser.as_ref().map_or(&[][..], |l| &l.data[..]).iter().copied())
            .collect();
        entries.push(f32s("loser", vec![n, c, s, s], &losers));
    }
    let tokens: Vec<Vec<usize>> = data.items.iter().map(|it| vocab.encode(&it.prompt)).collect();
    let t_len = tokens.first().map_or(0, Vec::len);
    entries.push(i64s("tokens", vec![n, t_len], tokens.iter().flatten().copied()));
    let mut meta = HashMap::new();
    meta.insert("dit_config".to_string(), serde_json::to_string(&cfg)?);
    meta.insert("alphas_cumprod".to_string(), serde_json::to_string(&base.schedule.alphas_cumprod)?);
    meta.insert("settings".to_string(), serde_json::to_string(&settings)?);
    write(&out.join("data.safetensors"), &entries, meta)?;

    let dev = cpu();
    let parts = TrainerParts {
        objective: objective.obj.clone(),
        initial: base.model.to_device(&dev)?,
        schedule: base.schedule.clone(),
        data,
        vocab,
    };
    let train = settings.train_config();
    let mut trainer = Trainer::new(parts, train)?;
    let (report, record) = trainer.step_recorded()?;
    let b = record.tokens.len();
    let mut entries = vec![i64s("tokens", vec![b, t_len], record.tokens.iter().flatten().copied())];
    for (kind, (xt, t, eps)) in &record.kinds {
        entries.push(f32s(&format!("x_t.{kind}"), vec![b, c, s, s], xt));
        entries.push(i64s(&format!("t.{kind}"), vec![b], t.iter().copied()));
        entries.push(f32s(&format!("eps.{kind}"), vec![b, c, s, s], eps));
    }
    for (name, values) in &record.data {
        entries.push(f64s(&format!("datum.{name}"), vec![values.len()], values));
    }
    let references: serde_json::Map<String, serde_json::Value> = record
        .references
        .iter()
        .map(|(name, slots)| {
            let idx: Vec<serde_json::Value> = slots
                .iter()
                .map(|slot| match slot {
                    Slot::Pool(k) => json!(k),
                    Slot::Ema(_) => json!("ema"),
                })
                .collect();
            (name.clone(), json!(idx))
        })
        .collect();
    let logs: serde_json::Map<String, serde_json::Value> =
        report.logs.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let mut meta = HashMap::new();
    meta.insert("loss".to_string(), json!(report.loss).to_string());
    meta.insert("logs".to_string(), serde_json::Value::Object(logs).to_string());
    let leaves: serde_json::Map<String, serde_json::Value> =
        report.leaf_means.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    meta.insert("leaf_means".to_string(), serde_json::Value::Object(leaves).to_string());
    meta.insert("references".to_string(), serde_json::Value::Object(references).to_string());
    meta.insert("objective_sha256".to_string(), objective.sha256.clone());
    let datums: Vec<&str> = record.data.iter().map(|(name, _)| name.as_str()).collect();
    meta.insert("datums".to_string(), json!(datums).to_string());
    write(&out.join("first_step.safetensors"), &entries, meta)?;
    Ok(Exported { items: n, first_step: report })
}
