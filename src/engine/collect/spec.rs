//! The generator pool: a generator's spec and the default pool.

use crate::engine::assets::Assets;
use crate::engine::eval::EvalSettings;
use crate::sampler::{SamplerConfig, SamplerKind};
use crate::world::WorldKind;
use anyhow::{bail, Context};
use clap::ValueEnum;
use serde::Serialize;
use std::path::PathBuf;

/// One generator of the pool: a checkpoint and how it samples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GeneratorSpec {
    /// Its name, written to `model_0` / `model_1`.
    pub name: String,
    /// Its checkpoint.
    pub model: PathBuf,
    /// How it samples.
    pub sampler: SamplerConfig,
}

impl GeneratorSpec {
    /// Parses `NAME=PATH[:cfg=W][:steps=N][:sampler=KIND][:eta=E]` (defaults: the standard evaluation's
    /// sampler, deterministic DDIM, with its guidance and steps; `KIND` is `ddim`, `ddpm`, `euler` or `heun`).
    pub fn parse(text: &str) -> anyhow::Result<GeneratorSpec> {
        let usage = "expected NAME=PATH[:cfg=W][:steps=N][:sampler=ddim|ddpm|euler|heun][:eta=E], e.g. \
                     `base=assets/base/model.safetensors:cfg=5:sampler=ddpm:steps=250`";
        let Some((name, rest)) = text.split_once('=') else { bail!("generator `{text}`: {usage}") };
        let mut parts = rest.split(':');
        let path = parts.next().filter(|p| !p.is_empty());
        let (name, Some(path)) = (name.trim(), path) else { bail!("generator `{text}`: {usage}") };
        if name.is_empty() {
            bail!("generator `{text}`: {usage}");
        }
        let mut sampler = EvalSettings::standard().sampler;
        for part in parts {
            match part.split_once('=') {
                Some(("cfg", v)) => {
                    sampler.cfg_scale = v
                        .parse()
                        .ok()
                        .filter(|w: &f32| w.is_finite())
                        .with_context(|| format!("generator `{text}`: cfg `{v}` is not a finite number"))?;
                }
                Some(("steps", v)) => {
                    sampler.steps = v
                        .parse()
                        .ok()
                        .filter(|s| *s > 0)
                        .with_context(|| format!("generator `{text}`: steps `{v}` is not a positive integer"))?;
                }
                Some(("sampler", v)) => {
                    sampler.kind = SamplerKind::from_str(v, true)
                        .map_err(|_| anyhow::anyhow!("generator `{text}`: unknown sampler `{v}`; {usage}"))?;
                }
                Some(("eta", v)) => {
                    sampler.eta = v
                        .parse()
                        .ok()
                        .filter(|e: &f32| (0.0..=1.0).contains(e))
                        .with_context(|| format!("generator `{text}`: eta `{v}` is not a number in [0, 1]"))?;
                }
                _ => bail!("generator `{text}`: unknown setting `{part}`; {usage}"),
            }
        }
        Ok(GeneratorSpec { name: name.to_string(), model: PathBuf::from(path), sampler })
    }
}

/// The default generator pool. As in Pick-a-Pic, whose images came from SD 2.1,
/// Dreamlike Photoreal and SDXL variants rather than from the SD 1.5 that is fine-tuned, every image is drawn by
/// an independently made model stronger than the base model: the rectified-flow base model (`assets/base_flow`),
/// sampled faithfully (Euler, 20 or 50 steps) at guidance 1, 1.5 and 2. The entries differ in quality (held-out
/// judge score about 0.69 at guidance 1, 0.79 at 2) but not by so much that the annotator, calibrated to agree
/// with the judge on 70% of decided pairs, has to be noisy on every close pair; pools spanning weaker models
/// forced it so noisy that DPO learned nothing, and cheap samplers' artifacts are what SFT on the winners copies
/// (RESULTS.md §8). The models are found in the assets folder ([`Assets::locate`]), as the default base model is.
///
/// The video world's pool is made the same way from its rectified-flow clip model (`assets/base_video_flow`, the
/// default video base model): the same samplers and guidance scales, so a video set is that model's faithful
/// samples ranked by the annotator, as the image set is for `assets/base_flow`.
pub fn default_pool(world: WorldKind) -> anyhow::Result<Vec<GeneratorSpec>> {
    let assets = Assets::locate()?;
    let model = assets.file(match world {
        WorldKind::Image => "base_flow/model.safetensors",
        WorldKind::Video => "base_video_flow/model.safetensors",
    })?;
    let at = |name: &str, kind: SamplerKind, steps: usize, cfg: f32| {
        let sampler = SamplerConfig { kind, steps, cfg_scale: cfg, eta: 0.0 };
        GeneratorSpec { name: name.to_string(), model: model.clone(), sampler }
    };
    let euler = SamplerKind::Euler;
    Ok(vec![
        at("flow_euler20_cfg1", euler, 20, 1.0),
        at("flow_euler50_cfg1", euler, 50, 1.0),
        at("flow_euler20_cfg1.5", euler, 20, 1.5),
        at("flow_euler50_cfg1.5", euler, 50, 1.5),
        at("flow_euler20_cfg2", euler, 20, 2.0),
    ])
}
