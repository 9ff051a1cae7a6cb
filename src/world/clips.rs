//! The video world of short clips in motion ([`crate::data::VideoWorld`]) as a [`Testbed`]. A clip is an
//! [`Image`] with `3·F` channels, so the engine samples, trains on and stores clips exactly like images.

use super::{parse_all, same_len, Judged, Split, Summary, Testbed, Verdict, WorldKind, WorldOptions};
use crate::data::{Image, Motion, PreferenceSet, SyntheticWorld, VideoPrompt, VideoWorld, VideoWorldConfig, Vocab};
use crate::eval::{judge_video, labelled_clip_strip, save_clip_gif, GridConfig, GridLabels, VideoReport};
use crate::model::DitConfig;
use anyhow::{anyhow, Context};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::path::Path;

/// How long each frame of a GIF is shown.
const GIF_FRAME_MS: u32 = 250;

pub(super) fn build(opts: &WorldOptions) -> anyhow::Result<Box<dyn Testbed>> {
    let mut cfg = VideoWorldConfig::default_16();
    cfg.image_size = opts.image_size.unwrap_or(cfg.image_size);
    cfg.frames = opts.frames.unwrap_or(cfg.frames);
    cfg.web.p_degrade = opts.web_degrade.unwrap_or(cfg.web.p_degrade);
    Ok(Box::new(VideoWorld::new(cfg).map_err(|e| anyhow!("video world: {e}"))?))
}

pub(super) fn from_config(json: &str) -> anyhow::Result<Box<dyn Testbed>> {
    let config: VideoWorldConfig =
        serde_json::from_str(json).context("metadata `world_config` is not a video world config")?;
    Ok(Box::new(VideoWorld::new(config).map_err(|e| anyhow!("world config: {e}"))?))
}

/// The headline numbers of a video report.
fn summary(r: &VideoReport) -> anyhow::Result<Summary> {
    Summary::new(
        r,
        &[
            ("colour_acc", "colour accuracy", r.colour_acc),
            ("shape_acc", "shape accuracy", r.shape_acc),
            ("motion_acc", "motion accuracy", r.motion_acc),
            ("all_correct", "all correct", r.all_correct),
            ("smoothness", "smoothness", r.mean_smoothness),
            ("consistency", "consistency", r.mean_consistency),
            ("quality", "quality", r.mean_quality),
            ("score", "judge score", r.mean_score),
        ],
    )
}

impl Testbed for VideoWorld {
    fn kind(&self) -> WorldKind {
        WorldKind::Video
    }

    fn config_json(&self) -> String {
        serde_json::to_string(&self.config).expect("a world config is plain data")
    }

    fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    fn image_size(&self) -> usize {
        self.config.image_size
    }

    fn frames(&self) -> usize {
        self.config.frames
    }

    fn check_model(&self, model: &DitConfig) -> Result<(), String> {
        let wc = &self.config;
        if (wc.image_size, wc.frames) != (model.image_size, model.frames) {
            return Err(format!(
                "world clips are {} frames of {}px but the model expects {} frames of {}px",
                wc.frames, wc.image_size, model.frames, model.image_size
            ));
        }
        Ok(())
    }

    fn prompts(&self, split: Split) -> Vec<String> {
        let list = match split {
            Split::Heldout => &self.heldout,
            Split::Train => &self.train,
        };
        list.iter().map(VideoPrompt::text).collect()
    }

    fn parse_prompt(&self, text: &str) -> anyhow::Result<String> {
        VideoPrompt::parse(text).map(|p| p.text()).map_err(|e| {
            let motions: Vec<&str> = Motion::ALL.iter().map(|m| m.phrase()).collect();
            anyhow!(
                "prompt `{text}`: {e}\n  = note: a video prompt is `a COLOUR SHAPE [MOTION]`\n  \
                 = note: motions: {}\n  = help: e.g. `a red circle moving right`",
                motions.join(", ")
            )
        })
    }

    fn user_prompt(&self, rng: &mut ChaCha8Rng) -> String {
        let mut p = self.sample_train_prompt(rng);
        if rng.gen_bool(self.config.web.p_drop_motion) {
            p.motion = None;
        }
        p.text()
    }

    fn web_example(&self, rng: &mut ChaCha8Rng) -> (Image, String) {
        VideoWorld::web_example(self, rng)
    }

    fn preference_set(&self, n: usize, rng: &mut ChaCha8Rng) -> PreferenceSet {
        SyntheticWorld::preference_set(self, n, rng)
    }

    fn judge(&self, prompts: &[String], samples: &[Image]) -> anyhow::Result<Judged> {
        same_len(prompts, samples)?;
        let parsed = parse_all(prompts, VideoPrompt::parse)?;
        let js: Vec<_> = samples.iter().zip(&parsed).map(|(clip, p)| judge_video(clip, p)).collect();
        let verdicts = js
            .iter()
            .zip(prompts)
            .map(|(j, p)| Verdict {
                score: j.score,
                row: json!({ "prompt": p, "score": j.score, "faithfulness": j.faithfulness, "quality": j.quality,
                             "motion": j.motion.map(|m| m.phrase()), "smoothness": j.smoothness,
                             "consistency": j.consistency }),
                line: format!(
                    "score {:.3}  faithfulness {:.3}  motion {}  smoothness {:.3}  consistency {:.3}  quality {:.3}",
                    j.score,
                    j.faithfulness,
                    j.motion.map_or("none", |m| m.phrase()),
                    j.smoothness,
                    j.consistency,
                    j.quality
                ),
            })
            .collect();
        Ok(Judged { verdicts, summary: summary(&VideoReport::from_judgements(&js))? })
    }

    fn write_samples(
        &self,
        samples: &[Image],
        layout: &GridConfig,
        labels: &GridLabels,
        path: &Path,
    ) -> anyhow::Result<()> {
        let gif = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gif"));
        let written = if gif {
            save_clip_gif(samples, layout, labels, GIF_FRAME_MS, path)
        } else {
            labelled_clip_strip(samples, layout, labels).save_with_format(path, image::ImageFormat::Png)
        };
        written.with_context(|| format!("cannot write `{}`", path.display()))
    }

    fn grid_cols(&self) -> usize {
        8
    }

    fn sample_noun(&self) -> &'static str {
        "clip"
    }
}
