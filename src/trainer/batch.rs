//! Batch assembly: the images of one step (data winners/losers and reference samples) and their noising,
//! with `(t, eps)` shared by all images of a prompt or drawn per image, as the objective declares, once per
//! draw (`draws(K, ...)`, `draw = k`).

use super::pool::{self, Slot};
use super::{TrainError, Trainer};
use crate::data::PreferenceItem;
use crate::device::Backend;
use crate::ir::{ImageRef, View};
use crate::model::NoiseSchedule;
use crate::sampler::{self, SamplerConfig, SamplerKind};
use rand::Rng;
use rand_distr::StandardNormal;
use std::collections::BTreeMap;

/// Every image kind of a step, `B` flattened CHW images each.
pub type Images = BTreeMap<ImageRef, Vec<f32>>;

/// Builds the step's images: winners, losers, and each `sample(...)`'s reference samples.
pub fn images<D: Backend>(
    tr: &mut Trainer<D>,
    items: &[PreferenceItem],
    tokens: &[Vec<usize>],
    slots: &[Vec<Slot>],
    nfe: &mut u64,
) -> Result<Images, TrainError> {
    let per = tr.policy.config().image_len();
    let mut out = Images::new();
    let views = tr.obj.views(None);
    let used = |kind: ImageRef| views.iter().any(|v| v.images == kind);
    if used(ImageRef::Winner) {
        out.insert(ImageRef::Winner, items.iter().flat_map(|it| it.winner.data.iter().copied()).collect());
    }
    if used(ImageRef::Image) {
        // An unpaired labelled sample keeps its one image where a pair keeps its winner.
        out.insert(ImageRef::Image, items.iter().flat_map(|it| it.winner.data.iter().copied()).collect());
    }
    if used(ImageRef::Loser) {
        out.insert(
            ImageRef::Loser,
            items.iter().flat_map(|it| it.loser.as_ref().map_or(&[][..], |l| &l.data[..]).iter().copied()).collect(),
        );
    }
    for (k, spec) in tr.obj.samples.clone().iter().enumerate() {
        let r = tr.obj.references.iter().position(|x| x.name == spec.model).unwrap_or(0);
        let cfg = SamplerConfig {
            kind: if spec.sampler == crate::check::SamplerKind::Ddpm { SamplerKind::Ddpm } else { SamplerKind::Ddim },
            steps: spec.steps as usize,
            cfg_scale: spec.cfg as f32,
            eta: spec.eta as f32,
        };
        let mut data = vec![0.0f32; items.len() * per];
        for (slot, idxs) in pool::groups(&slots[r]) {
            let model = pool::model(slot, &tr.pool, &tr.ref_emas);
            let toks: Vec<Vec<usize>> = idxs.iter().map(|&i| tokens[i].clone()).collect();
            let seed: u64 = tr.rng.gen();
            let imgs = sampler::sample(model, &tr.schedule, &cfg, &toks, seed)?;
            let per_step = if cfg.cfg_scale == 1.0 { 1 } else { 2 };
            *nfe += (cfg.steps * per_step * idxs.len()) as u64;
            for (img, &i) in imgs.iter().zip(&idxs) {
                data[i * per..(i + 1) * per].copy_from_slice(img);
            }
        }
        out.insert(ImageRef::Sample(k as u32), data);
    }
    Ok(out)
}

/// One image kind's noised batch: `x_t` (flattened), `t` per image, and the training target (flattened): `eps`
/// for an ε-prediction model, `v` or the flow velocity `eps − x_0` otherwise (the schedule's parametrisation).
pub type NoisedKind = (Vec<f32>, Vec<usize>, Vec<f32>);

/// One draw's timesteps (per image) and noise (flattened).
type TimesAndNoise = (Vec<usize>, Vec<f32>);

/// Noised images of a step: `x_t`, `t` and the target per view (images under one draw).
pub struct Noised {
    per: usize,
    kinds: BTreeMap<View, NoisedKind>,
}

/// Draws `(t, eps)` for each draw of `views` in order (once per prompt and draw when `shared`, else per view)
/// and forms `x_t = q_sample(x_0, t, eps)` and the schedule's target.
pub fn noise(
    schedule: &NoiseSchedule,
    images: &Images,
    views: &[View],
    shared: bool,
    b: usize,
    per: usize,
    rng: &mut impl Rng,
) -> Noised {
    let draw = |rng: &mut dyn rand::RngCore| -> TimesAndNoise {
        let t = (0..b).map(|_| schedule.draw_t(rng)).collect();
        let eps = (0..b * per).map(|_| rng.sample(StandardNormal)).collect();
        (t, eps)
    };
    let mut views = views.to_vec();
    views.sort();
    let mut kinds = BTreeMap::new();
    let mut common: Option<(u32, TimesAndNoise)> = None;
    for view in views {
        let Some(x0) = images.get(&view.images) else { continue };
        if shared && common.as_ref().is_none_or(|(d, _)| *d != view.draw) {
            common = Some((view.draw, draw(rng)));
        }
        let (t, eps) = match (shared, &common) {
            (true, Some((_, te))) => te.clone(),
            _ => draw(rng),
        };
        let xt = schedule.q_sample_batch(x0, &t, &eps, per);
        let target = schedule.target_batch(x0, &t, &eps, per);
        kinds.insert(view, (xt, t, target));
    }
    Noised { per, kinds }
}

impl Noised {
    /// Every view's `(x_t, t, target)`.
    pub fn kinds(&self) -> &BTreeMap<View, NoisedKind> {
        &self.kinds
    }

    /// Stacks the given kinds (optionally only samples `idxs`) into one batch: `(x_t, t, target, tokens)`.
    pub fn stack(
        &self,
        kinds: &[View],
        tokens: &[Vec<usize>],
        idxs: Option<&[usize]>,
    ) -> (Vec<f32>, Vec<usize>, Vec<f32>, Vec<Vec<usize>>) {
        let all: Vec<usize> = (0..tokens.len()).collect();
        let idxs = idxs.unwrap_or(&all);
        let (mut x, mut t, mut eps, mut toks) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let per = self.per;
        for kind in kinds {
            let Some((xt, tk, ek)) = self.kinds.get(kind) else { continue };
            for &i in idxs {
                x.extend_from_slice(&xt[i * per..(i + 1) * per]);
                eps.extend_from_slice(&ek[i * per..(i + 1) * per]);
                t.push(tk[i]);
                toks.push(tokens[i].clone());
            }
        }
        (x, t, eps, toks)
    }
}
