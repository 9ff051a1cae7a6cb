//! What scores the generated samples of an online objective (`reward(x)` of a `sample(...)`): a reward model from
//! `seppoc reward train`, or the world's exact judge. `seppoc run --reward PATH|judge` picks one; the judge is
//! the quantity every evaluation reports, so training on it and then judging with it is circular — it is there
//! as the ceiling a learned reward is compared with, not as a fair competitor.

use super::{open_reward, score, OpenedReward};
use crate::data::Image;
use crate::engine::open::Opened;
use crate::trainer::SampleScorer;
use crate::world::Testbed;
use anyhow::bail;

/// `--reward judge`: the spelling that selects the exact judge.
pub const JUDGE: &str = "judge";

/// The scorer `--reward SPEC` names for a run on `base`: `judge`, or a reward model's file or training folder,
/// which must score the base model's world (same world, configuration and image shape).
pub fn sample_scorer(spec: &str, base: &Opened) -> anyhow::Result<Box<dyn SampleScorer>> {
    let shape = (base.model.config().sample_channels(), base.model.config().image_size);
    if spec == JUDGE {
        let world = base.world.kind().from_config(&base.world.config_json())?;
        return Ok(Box::new(JudgeScorer { world, shape }));
    }
    let reward = open_reward(std::path::Path::new(spec))?;
    let (rw, bw) = (reward.world.as_ref(), base.world.as_ref());
    if rw.kind() != bw.kind() || rw.config_json() != bw.config_json() {
        bail!(
            "reward model `{}` scores the {} world ({}) but the base model `{}` is of the {} world ({}); train a \
             reward model on this world's preferences (`seppoc reward train --base {}`)",
            reward.path.display(),
            rw.kind().name(),
            rw.config_json(),
            base.path.display(),
            bw.kind().name(),
            bw.config_json(),
            base.path.display()
        );
    }
    let rshape = (reward.model.config().sample_channels(), reward.model.config().image_size);
    if rshape != shape {
        bail!(
            "reward model `{}` scores {}-channel {}-pixel images but the base model `{}` makes {}-channel \
             {}-pixel ones",
            reward.path.display(),
            rshape.0,
            rshape.1,
            base.path.display(),
            shape.0,
            shape.1
        );
    }
    Ok(Box::new(ModelScorer { reward, shape }))
}

/// Flattened CHW rows as images of `(channels, size)` (a clip's frames stacked along the channel axis, as the
/// model and the judge see them); an error when the lengths do not fit.
fn as_images(data: &[f32], image_len: usize, n: usize, (channels, size): (usize, usize)) -> Result<Vec<Image>, String> {
    if image_len != channels * size * size || data.len() != n * image_len {
        return Err(format!(
            "{} values are not {n} images of {channels} × {size} × {size} values (rows of {image_len})",
            data.len()
        ));
    }
    Ok(data.chunks(image_len).map(|c| Image { channels, height: size, width: size, data: c.to_vec() }).collect())
}

/// A learned reward model scoring samples on the CPU.
struct ModelScorer {
    reward: OpenedReward,
    shape: (usize, usize),
}

impl SampleScorer for ModelScorer {
    fn score(
        &self,
        images: &[f32],
        image_len: usize,
        prompts: &[String],
        tokens: &[Vec<usize>],
    ) -> Result<Vec<f64>, String> {
        let images = as_images(images, image_len, prompts.len(), self.shape)?;
        let refs: Vec<&Image> = images.iter().collect();
        score(&self.reward.model, &refs, tokens)
            .map(|r| r.into_iter().map(f64::from).collect())
            .map_err(|e| e.to_string())
    }

    fn nfe_per_image(&self) -> u64 {
        1
    }

    fn describe(&self) -> String {
        format!("reward model `{}`", self.reward.path.display())
    }
}

/// The world's exact judge: each sample's score against its prompt.
struct JudgeScorer {
    world: Box<dyn Testbed>,
    shape: (usize, usize),
}

impl SampleScorer for JudgeScorer {
    fn score(
        &self,
        images: &[f32],
        image_len: usize,
        prompts: &[String],
        _tokens: &[Vec<usize>],
    ) -> Result<Vec<f64>, String> {
        let images = as_images(images, image_len, prompts.len(), self.shape)?;
        let judged = self.world.judge(prompts, &images).map_err(|e| format!("{e:#}"))?;
        Ok(judged.verdicts.iter().map(|v| f64::from(v.score)).collect())
    }

    fn nfe_per_image(&self) -> u64 {
        0
    }

    fn describe(&self) -> String {
        "the exact judge".into()
    }
}
