//! The world abstraction: everything the engine needs from a synthetic world, behind one object-safe trait.
//!
//! A world ([`Testbed`]) owns its prompt universe and train / held-out split, its renderer and noisy "web"
//! pretraining data, its synthetic preference sets, its exact judge with the report it aggregates to, and the
//! way its samples are written to disk (a PNG grid of images, a GIF or frame strip of clips). Prompts cross the
//! trait as plain text; each world parses them into its own structured prompt type.
//!
//! [`WorldKind`] is the one registration point: the only place that lists the worlds, maps their names (as
//! stored in checkpoints and given to `--world`) to constructors, and names their shipped base models. The
//! engine and the command line never match on a particular world.

mod clips;
mod shapes;

use crate::data::{Image, PreferenceSet, Vocab};
use crate::eval::{GridConfig, GridLabels};
use crate::model::DitConfig;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The registered worlds.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorldKind {
    /// The shapes world of still images (the default: a checkpoint that names no world holds one).
    #[default]
    Image,
    /// The video world of short clips in motion.
    Video,
}

/// What a world can be built from on the command line (`seppoc pretrain`); `None` keeps the world's default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorldOptions {
    /// Side of the square images in pixels.
    pub image_size: Option<usize>,
    /// Frames per clip (worlds of clips only).
    pub frames: Option<usize>,
    /// Probability that a web pretraining example is degraded.
    pub web_degrade: Option<f64>,
}

impl WorldKind {
    /// Every registered world.
    pub const ALL: [WorldKind; 2] = [WorldKind::Image, WorldKind::Video];

    /// The name stored in checkpoints and accepted by `--world`.
    pub fn name(self) -> &'static str {
        match self {
            WorldKind::Image => "image",
            WorldKind::Video => "video",
        }
    }

    /// The world a stored name refers to.
    pub fn from_name(name: &str) -> Option<WorldKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The directory of the shipped base model, relative to the assets folder (`assets/` in the repository).
    pub fn base_dir(self) -> &'static str {
        match self {
            WorldKind::Image => "base",
            WorldKind::Video => "base_video_flow",
        }
    }

    /// The world with its default configuration changed by `opts`.
    pub fn build(self, opts: &WorldOptions) -> anyhow::Result<Box<dyn Testbed>> {
        match self {
            WorldKind::Image => shapes::build(opts),
            WorldKind::Video => clips::build(opts),
        }
    }

    /// The world described by a stored configuration (JSON, as [`Testbed::config_json`] wrote it).
    pub fn from_config(self, json: &str) -> anyhow::Result<Box<dyn Testbed>> {
        match self {
            WorldKind::Image => shapes::from_config(json),
            WorldKind::Video => clips::from_config(json),
        }
    }
}

/// Which of a world's prompt lists.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Held-out prompts (combinations never shown in training).
    Heldout,
    /// Training prompts.
    Train,
}

impl Split {
    /// `heldout` or `train`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Heldout => "heldout",
            Split::Train => "train",
        }
    }
}

/// One aggregate number of a judge report.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Its key in JSON lines (`score`, `colour_acc`, ...).
    pub key: &'static str,
    /// Its label in printed tables.
    pub label: &'static str,
    /// Its value.
    pub value: f32,
}

/// A judge report over many samples, in every form the engine writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The headline numbers, the mean judge score last.
    pub metrics: Vec<Metric>,
    /// The mean judge score.
    pub mean_score: f32,
    /// The full report as a printed table.
    pub table: String,
    /// The full report as JSON.
    pub json: serde_json::Value,
}

impl Summary {
    /// A summary of a world's report: `metrics` as `(key, label, value)`, the mean judge score last.
    pub fn new<R: serde::Serialize + std::fmt::Display>(
        report: &R,
        metrics: &[(&'static str, &'static str, f32)],
    ) -> anyhow::Result<Summary> {
        let metrics: Vec<Metric> = metrics.iter().map(|&(key, label, value)| Metric { key, label, value }).collect();
        let mean_score = metrics.last().filter(|m| m.key == "score").map(|m| m.value);
        let mean_score = mean_score.ok_or_else(|| anyhow::anyhow!("a summary ends with the mean judge score"))?;
        // One name per quantity in every JSON file: the metric keys (`score`, `quality`, `colour_acc`, ...), each
        // value the f64 of its f32's shortest decimal form.
        let mut json = serde_json::to_value(report)?;
        if let Some(obj) = json.as_object_mut() {
            for m in &metrics {
                obj.remove(&format!("mean_{}", m.key));
                let short: f64 = format!("{}", m.value).parse().unwrap_or(f64::from(m.value));
                obj.insert(m.key.to_string(), serde_json::json!(short));
            }
        }
        Ok(Summary { metrics, mean_score, table: report.to_string(), json })
    }
}

/// The judge's verdict on one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Its score in [0, 1].
    pub score: f32,
    /// The verdict as one JSON row (`prompt`, `score`, and the world's own fields).
    pub row: serde_json::Value,
    /// The verdict as one printed line (without the sample's index).
    pub line: String,
}

/// The judge's verdicts on samples and their summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    /// One verdict per sample, in order.
    pub verdicts: Vec<Verdict>,
    /// The aggregate.
    pub summary: Summary,
}

/// A synthetic world: prompts, renders, data, the exact judge, and how its samples are written.
pub trait Testbed: Send + Sync {
    /// Which registered world this is.
    fn kind(&self) -> WorldKind;
    /// Its configuration as JSON (what a checkpoint stores; [`WorldKind::from_config`] reads it back).
    fn config_json(&self) -> String;
    /// The tokenizer vocabulary of its prompts.
    fn vocab(&self) -> &Vocab;
    /// Side of its square images in pixels.
    fn image_size(&self) -> usize;
    /// Frames per sample (1 for still images).
    fn frames(&self) -> usize;
    /// Whether `model` fits this world (image side and frames); the error says what differs.
    fn check_model(&self, model: &DitConfig) -> Result<(), String>;

    /// A prompt list, as canonical prompt texts, in the world's fixed order.
    fn prompts(&self, split: Split) -> Vec<String>;
    /// Parses a user's prompt into its canonical text; the error quotes it and lists the world's words.
    fn parse_prompt(&self, text: &str) -> anyhow::Result<String>;

    /// A training prompt as a user would type it: the world's own words, sometimes leaving out what users often
    /// leave unsaid (a position, a motion) with the probability the web captions do.
    fn user_prompt(&self, rng: &mut ChaCha8Rng) -> String;
    /// One web pretraining example: a (possibly degraded) sample and its (often wrong) caption.
    fn web_example(&self, rng: &mut ChaCha8Rng) -> (Image, String);
    /// A synthetic preference set of `n` items (winner: a clean render; loser: a degraded or unfaithful one).
    fn preference_set(&self, n: usize, rng: &mut ChaCha8Rng) -> PreferenceSet;

    /// Judges `samples[i]` against `prompts[i]` and aggregates the verdicts.
    fn judge(&self, prompts: &[String], samples: &[Image]) -> anyhow::Result<Judged>;

    /// Writes samples to `path` with `labels` drawn in: still images as a PNG grid; clips as an animated GIF when
    /// `path` ends in `.gif`, else as a PNG frame strip (one row per clip, labelled with its row label and prompt).
    fn write_samples(
        &self,
        samples: &[Image],
        layout: &GridConfig,
        labels: &GridLabels,
        path: &Path,
    ) -> anyhow::Result<()>;
    /// Columns of an overview grid of many samples.
    fn grid_cols(&self) -> usize;
    /// Whether its samples are animated (an overview is then also written as a GIF).
    fn animated(&self) -> bool {
        self.frames() > 1
    }
    /// What one sample is called in messages (`image`, `clip`).
    fn sample_noun(&self) -> &'static str;
}

/// Parses each prompt text with `parse`, naming the first that is not a prompt of the world.
fn parse_all<P, E: std::fmt::Display>(
    prompts: &[String],
    parse: impl Fn(&str) -> Result<P, E>,
) -> anyhow::Result<Vec<P>> {
    prompts.iter().map(|t| parse(t).map_err(|e| anyhow::anyhow!("prompt `{t}`: {e}"))).collect()
}

/// Checks that there is one sample per prompt.
fn same_len(prompts: &[String], samples: &[Image]) -> anyhow::Result<()> {
    if prompts.len() != samples.len() {
        anyhow::bail!("{} prompts but {} samples to judge", prompts.len(), samples.len());
    }
    Ok(())
}
