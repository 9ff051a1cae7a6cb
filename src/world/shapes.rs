//! The shapes world of still images ([`crate::data::World`]) as a [`Testbed`].

use super::{parse_all, same_len, Judged, Split, Summary, Testbed, Verdict, WorldKind, WorldOptions};
use crate::data::{Colour, Image, Position, PreferenceSet, Prompt, Shape, SyntheticWorld, Vocab, World, WorldConfig};
use crate::eval::{judge, labelled_grid, GridConfig, GridLabels, Report};
use crate::model::DitConfig;
use anyhow::{anyhow, Context};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::path::Path;

pub(super) fn build(opts: &WorldOptions) -> anyhow::Result<Box<dyn Testbed>> {
    if opts.frames.is_some() {
        anyhow::bail!("the image world has no frames: --frames needs --world video");
    }
    let mut cfg = WorldConfig::default_16();
    cfg.image_size = opts.image_size.unwrap_or(cfg.image_size);
    cfg.web.p_degrade = opts.web_degrade.unwrap_or(cfg.web.p_degrade);
    Ok(Box::new(World::new(cfg).map_err(|e| anyhow!("image world: {e}"))?))
}

pub(super) fn from_config(json: &str) -> anyhow::Result<Box<dyn Testbed>> {
    let config: WorldConfig = serde_json::from_str(json).context("metadata `world_config` is not a world config")?;
    Ok(Box::new(World::new(config).map_err(|e| anyhow!("world config: {e}"))?))
}

/// The prompt grammar and vocabulary, for error messages.
fn vocabulary_help() -> String {
    let colours: Vec<&str> = Colour::ALL.iter().map(|c| c.word()).collect();
    let shapes: Vec<&str> = Shape::ALL.iter().map(|s| s.word()).collect();
    let positions: Vec<&str> = Position::ALL.iter().map(|p| p.phrase()).collect();
    format!(
        "  = note: a prompt is `a COLOUR SHAPE [POSITION]`, optionally `and` a second object\n  \
         = note: colours: {}; shapes: {}; positions: {}\n  \
         = help: e.g. `a red circle on the left and a blue square on the right`",
        colours.join(", "),
        shapes.join(", "),
        positions.join(", ")
    )
}

/// The headline numbers of an image report.
fn summary(r: &Report) -> anyhow::Result<Summary> {
    Summary::new(
        r,
        &[
            ("colour_acc", "colour accuracy", r.colour_acc),
            ("shape_acc", "shape accuracy", r.shape_acc),
            ("position_acc", "position accuracy", r.position_acc),
            ("all_correct", "all correct", r.all_correct),
            ("quality", "quality", r.mean_quality),
            ("score", "judge score", r.mean_score),
        ],
    )
}

impl Testbed for World {
    fn kind(&self) -> WorldKind {
        WorldKind::Image
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
        1
    }

    fn check_model(&self, model: &DitConfig) -> Result<(), String> {
        if model.frames != 1 {
            return Err(format!("an image-world checkpoint holds a {}-frame model", model.frames));
        }
        if self.config.image_size != model.image_size {
            return Err(format!(
                "world images are {}px but the model expects {}px",
                self.config.image_size, model.image_size
            ));
        }
        Ok(())
    }

    fn prompts(&self, split: Split) -> Vec<String> {
        let list = match split {
            Split::Heldout => &self.heldout,
            Split::Train => &self.train,
        };
        list.iter().map(Prompt::text).collect()
    }

    fn parse_prompt(&self, text: &str) -> anyhow::Result<String> {
        Prompt::parse(text).map(|p| p.text()).map_err(|e| anyhow!("prompt `{text}`: {e}\n{}", vocabulary_help()))
    }

    fn user_prompt(&self, rng: &mut ChaCha8Rng) -> String {
        let mut p = self.sample_train_prompt(rng);
        for o in &mut p.objects {
            if rng.gen_bool(self.config.web.p_drop_position) {
                o.position = None;
            }
        }
        p.text()
    }

    fn web_example(&self, rng: &mut ChaCha8Rng) -> (Image, String) {
        World::web_example(self, rng)
    }

    fn preference_set(&self, n: usize, rng: &mut ChaCha8Rng) -> PreferenceSet {
        SyntheticWorld::preference_set(self, n, rng)
    }

    fn judge(&self, prompts: &[String], samples: &[Image]) -> anyhow::Result<Judged> {
        same_len(prompts, samples)?;
        let parsed = parse_all(prompts, Prompt::parse)?;
        let js: Vec<_> = samples.iter().zip(&parsed).map(|(img, p)| judge(img, p)).collect();
        let verdicts = js
            .iter()
            .zip(prompts)
            .map(|(j, p)| Verdict {
                score: j.score,
                row: json!({ "prompt": p, "score": j.score, "faithfulness": j.faithfulness, "quality": j.quality,
                             "n_detected": j.n_detected }),
                line: format!(
                    "score {:.3}  faithfulness {:.3}  quality {:.3}  objects {}",
                    j.score, j.faithfulness, j.quality, j.n_detected
                ),
            })
            .collect();
        Ok(Judged { verdicts, summary: summary(&Report::from_judgements(&js))? })
    }

    fn write_samples(
        &self,
        samples: &[Image],
        layout: &GridConfig,
        labels: &GridLabels,
        path: &Path,
    ) -> anyhow::Result<()> {
        labelled_grid(samples, layout, labels)
            .save_with_format(path, image::ImageFormat::Png)
            .with_context(|| format!("cannot write `{}`", path.display()))
    }

    fn grid_cols(&self) -> usize {
        16
    }

    fn sample_noun(&self) -> &'static str {
        "image"
    }
}
