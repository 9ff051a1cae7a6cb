//! The leaves of one step: one untaped pass per (reference, drawn model) and one taped policy pass, each over
//! every view (images under one draw) the model is evaluated on, never the same (model, view) twice; the
//! denoising errors and prediction-space distances they yield; and the data values (timestep quantities,
//! progress, data fields) and the rewards of generated samples the objective reads.

use super::batch::{Images, Noised};
use super::pool::{self, Slot};
use super::{TrainError, Trainer};
use crate::data::PreferenceItem;
use crate::device::Backend;
use crate::ir::{Datum, ImageRef, ModelRef, TimeQty, View};
use crate::model::per_sample_error;
use dfdx::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// Reference predictions kept for `dist` leaves: `(reference, view)` → `B` flattened CHW predictions.
pub(super) type Predictions = HashMap<(String, View), Vec<f32>>;

/// The policy's leaves stacked on the tape, with each policy leaf's first row (`None` for frozen leaves).
type PolicyLeaves<D> = (Tensor<(usize,), f32, D, OwnedTape<f32, D>>, Vec<Option<usize>>, u64);

impl<D: Backend> Trainer<D> {
    /// One untaped pass per (reference, drawn model) over that reference's views; fills its `err` leaves and
    /// the `dist` leaves between two references, and returns the network evaluations and the predictions
    /// `dist(policy, R, x)` compares with.
    pub(super) fn reference_passes(
        &self,
        noised: &Noised,
        tokens: &[Vec<usize>],
        slots: &[Vec<Slot>],
        leaves: &mut [Vec<f64>],
    ) -> Result<(u64, Predictions), TrainError> {
        let b = self.cfg.batch;
        let per = self.policy.config().image_len();
        let mut nfe = 0;
        let mut preds = Predictions::new();
        for (r, reference) in self.obj.references.iter().enumerate() {
            let model_ref = ModelRef::Reference(reference.name.clone());
            let views = self.obj.views(Some(&model_ref));
            if views.is_empty() {
                continue;
            }
            let mut values = vec![vec![0.0; b]; views.len()];
            let mut pred_rows = vec![vec![0.0f32; b * per]; views.len()];
            for (slot, idxs) in pool::groups(&slots[r]) {
                let model = pool::model(slot, &self.pool, &self.ref_emas);
                let (x, t, eps, toks) = noised.stack(&views, tokens, Some(&idxs));
                let pred = model.forward(model.images(x)?, &t, &toks)?;
                let e = per_sample_error(pred.clone(), &model.images(eps)?).as_vec();
                let p = pred.as_vec();
                nfe += e.len() as u64;
                for j in 0..views.len() {
                    for (n, &i) in idxs.iter().enumerate() {
                        values[j][i] = e[j * idxs.len() + n] as f64;
                        let row = (j * idxs.len() + n) * per;
                        pred_rows[j][i * per..(i + 1) * per].copy_from_slice(&p[row..row + per]);
                    }
                }
            }
            for (k, input) in self.obj.inputs.iter().enumerate() {
                if input.model == model_ref && input.against.is_none() {
                    let j = views.iter().position(|v| *v == input.view()).unwrap_or(0);
                    leaves[k] = values[j].clone();
                }
            }
            for (view, rows) in views.into_iter().zip(pred_rows) {
                preds.insert((reference.name.clone(), view), rows);
            }
        }
        // dist(R1, R2, x) between two frozen models: both predictions are known now.
        for (k, input) in self.obj.inputs.iter().enumerate() {
            if let (ModelRef::Reference(m), Some(r)) = (&input.model, &input.against) {
                let (a, c) = (&preds[&(m.clone(), input.view())], &preds[&(r.clone(), input.view())]);
                leaves[k] = (0..b)
                    .map(|i| {
                        let sq: f64 = (i * per..(i + 1) * per).map(|j| f64::from(a[j] - c[j]).powi(2)).sum();
                        sq / per as f64
                    })
                    .collect();
            }
        }
        Ok((nfe, preds))
    }

    /// The taped policy pass over every view the policy is evaluated on: its `err` leaves (target `eps`) and
    /// `dist` leaves (target the reference's prediction on the same input), stacked in one taped vector.
    pub(super) fn policy_pass(
        &self,
        noised: &Noised,
        tokens: &[Vec<usize>],
        preds: &Predictions,
        leaves: &mut [Vec<f64>],
    ) -> Result<PolicyLeaves<D>, TrainError> {
        let b = self.cfg.batch;
        let views = self.obj.views(Some(&ModelRef::Policy));
        let (x, t, eps, toks) = noised.stack(&views, tokens, None);
        let pred = self.policy.forward(self.policy.images(x)?.traced(self.policy.alloc_grads()), &t, &toks)?;
        let (pred, tape) = pred.split_tape();
        let mut stacked = per_sample_error(pred.clone().put_tape(tape), &self.policy.images(eps)?);
        let mut offsets = vec![None; self.obj.inputs.len()];
        let mut rows = views.len() * b;
        for (k, input) in self.obj.inputs.iter().enumerate() {
            if input.model != ModelRef::Policy {
                continue;
            }
            let pos = views.iter().position(|v| *v == input.view()).unwrap_or(0);
            let Some(r) = &input.against else {
                offsets[k] = Some(pos * b);
                continue;
            };
            let target = self.policy.images(preds[&(r.clone(), input.view())].clone())?;
            let mine = pred.retaped::<OwnedTape<f32, D>>().slice((pos * b..(pos + 1) * b, .., .., ..));
            let d = per_sample_error(mine, &target);
            offsets[k] = Some(rows);
            rows += b;
            stacked = (stacked, d).concat_along(Axis::<0>);
        }
        let values = stacked.retaped::<NoneTape>().as_vec();
        for (k, off) in offsets.iter().enumerate() {
            if let Some(off) = off {
                leaves[k] = values[*off..*off + b].iter().map(|&v| f64::from(v)).collect();
            }
        }
        Ok((stacked, offsets, (views.len() * b) as u64))
    }

    /// The values of every datum for this step: timestep quantities from the noise schedule, per sample of
    /// their view; `progress`, the updates applied so far over the run's updates; `num_timesteps`, the
    /// schedule's T; the batch's data fields `label`, `weight`, `reward(x)`.
    pub(super) fn data_values(
        &self,
        noised: &Noised,
        step: usize,
        items: &[PreferenceItem],
        sample_rewards: &BTreeMap<u32, Vec<f64>>,
    ) -> Result<Vec<Vec<f64>>, TrainError> {
        let mut out = Vec::with_capacity(self.obj.datums.len());
        for datum in &self.obj.datums {
            out.push(match datum {
                Datum::Time(q, view) => {
                    let t = noised.kinds().get(view).map(|k| k.1.clone()).unwrap_or_default();
                    t.iter()
                        .map(|&t| {
                            let v = self.schedule.time_values(t);
                            match q {
                                TimeQty::Timestep => v.timestep,
                                TimeQty::Alpha => v.alpha,
                                TimeQty::Sigma => v.sigma,
                                TimeQty::Snr => v.snr,
                            }
                        })
                        .collect()
                }
                Datum::Progress => {
                    if self.total_steps == 0 {
                        return Err(TrainError::Data(
                            "objective reads `progress` but the run's number of updates is unknown".into(),
                        ));
                    }
                    vec![(step - 1) as f64 / self.total_steps as f64]
                }
                Datum::Timesteps => vec![self.schedule.n_steps() as f64],
                Datum::Label => items.iter().map(|it| it.fields.label).collect(),
                Datum::Reward(ImageRef::Sample(k)) => sample_rewards.get(k).cloned().unwrap_or_default(),
                Datum::Weight | Datum::Reward(_) => field_values(*datum, items)?,
            });
        }
        Ok(out)
    }

    /// The reward of every `sample(...)` whose reward the objective reads, from the run's [`super::SampleScorer`],
    /// scored on the samples and their real captions; by sample number.
    pub(super) fn sample_rewards(
        &self,
        images: &Images,
        items: &[PreferenceItem],
        tokens: &[Vec<usize>],
        step: usize,
        nfe: &mut u64,
    ) -> Result<BTreeMap<u32, Vec<f64>>, TrainError> {
        let mut out = BTreeMap::new();
        for datum in &self.obj.datums {
            let Datum::Reward(ImageRef::Sample(k)) = datum else { continue };
            let Some(scorer) = self.scorer.as_ref() else {
                return Err(TrainError::Data(format!(
                    "objective `{}` reads `{}`, the reward of generated samples, but the run has no reward model: \
                     give `--reward PATH` (a model from `seppoc reward train`) or `--reward judge` (the exact \
                     judge, circular for evaluation)",
                    self.obj.name,
                    datum.name()
                )));
            };
            let data = images.get(&ImageRef::Sample(*k)).map_or(&[][..], Vec::as_slice);
            let prompts: Vec<String> = items.iter().map(|it| it.prompt.clone()).collect();
            let per = self.policy.config().image_len();
            let rewards = scorer.score(data, per, &prompts, tokens).map_err(|e| {
                TrainError::Data(format!("scoring `{}` with {} at step {step}: {e}", datum.name(), scorer.describe()))
            })?;
            if rewards.len() != items.len() {
                return Err(TrainError::Data(format!(
                    "{} gave {} rewards for {} samples of `{}`",
                    scorer.describe(),
                    rewards.len(),
                    items.len(),
                    datum.name()
                )));
            }
            *nfe += scorer.nfe_per_image() * items.len() as u64;
            out.insert(*k, rewards);
        }
        Ok(out)
    }
}

/// The batch's `weight` or `reward(x)` values; a sample without one is an error naming the field (the data
/// loader checks the file first, so this is for data sets built in code).
pub(super) fn field_values(datum: Datum, items: &[PreferenceItem]) -> Result<Vec<f64>, TrainError> {
    let pick = |it: &PreferenceItem| match datum {
        Datum::Weight => it.fields.weight,
        Datum::Reward(ImageRef::Winner | ImageRef::Image) => it.fields.reward[0],
        Datum::Reward(ImageRef::Loser) => it.fields.reward[1],
        _ => None,
    };
    items.iter().map(pick).collect::<Option<Vec<f64>>>().ok_or_else(|| {
        TrainError::Data(format!(
            "the objective reads `{}`, but a sample of the data set has none (the synthetic and imagefolder data \
             have no rewards or weights; give a Parquet file with `reward_0`/`reward_1` or `weight` columns)",
            datum.name()
        ))
    })
}
