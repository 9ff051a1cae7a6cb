//! Aggregation of judgements over many (image, prompt) or (clip, video prompt) pairs: per-attribute accuracy,
//! quality and score.

use super::video::VideoJudgement;
use super::Judgement;
use serde::Serialize;
use std::fmt;

/// Aggregate of many judgements. Accuracies are over prompt objects; means are over images.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Number of judged images.
    pub n_images: usize,
    /// Number of prompt objects over all images.
    pub n_objects: usize,
    /// Fraction of objects with the right colour.
    pub colour_acc: f32,
    /// Fraction of objects with the right shape.
    pub shape_acc: f32,
    /// Fraction of objects with a position in the prompt that sit at it.
    pub position_acc: f32,
    /// Fraction of images with every attribute right.
    pub all_correct: f32,
    /// Mean faithfulness.
    pub mean_faithfulness: f32,
    /// Mean quality.
    pub mean_quality: f32,
    /// Mean score.
    pub mean_score: f32,
}

impl Report {
    /// Aggregates judgements; all fields are 0 for an empty slice.
    pub fn from_judgements(js: &[Judgement]) -> Report {
        let objs: Vec<_> = js.iter().flat_map(|j| &j.objects).collect();
        let frac = |num: usize, den: usize| if den == 0 { 0.0 } else { num as f32 / den as f32 };
        let with_pos: Vec<bool> = objs.iter().filter_map(|o| o.position_ok).collect();
        let mean = |f: fn(&Judgement) -> f32| {
            if js.is_empty() {
                0.0
            } else {
                js.iter().map(f).sum::<f32>() / js.len() as f32
            }
        };
        Report {
            n_images: js.len(),
            n_objects: objs.len(),
            colour_acc: frac(objs.iter().filter(|o| o.colour_ok).count(), objs.len()),
            shape_acc: frac(objs.iter().filter(|o| o.shape_ok).count(), objs.len()),
            position_acc: frac(with_pos.iter().filter(|ok| **ok).count(), with_pos.len()),
            all_correct: frac(js.iter().filter(|j| j.faithfulness >= 1.0).count(), js.len()),
            mean_faithfulness: mean(|j| j.faithfulness),
            mean_quality: mean(|j| j.quality),
            mean_score: mean(|j| j.score),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<18} {:>8}", "metric", "value")?;
        writeln!(f, "{:<18} {:>8}", "images", self.n_images)?;
        writeln!(f, "{:<18} {:>8}", "objects", self.n_objects)?;
        let rows = [
            ("colour accuracy", self.colour_acc),
            ("shape accuracy", self.shape_acc),
            ("position accuracy", self.position_acc),
            ("all correct", self.all_correct),
            ("faithfulness", self.mean_faithfulness),
            ("quality", self.mean_quality),
            ("score", self.mean_score),
        ];
        for (name, v) in rows {
            writeln!(f, "{name:<18} {v:>8.4}")?;
        }
        Ok(())
    }
}

/// Aggregate of many video judgements. Accuracies and means are over clips.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VideoReport {
    /// Number of judged clips.
    pub n_clips: usize,
    /// Fraction of clips with the right colour.
    pub colour_acc: f32,
    /// Fraction of clips with the right shape.
    pub shape_acc: f32,
    /// Fraction of clips whose prompt gives a motion that show it.
    pub motion_acc: f32,
    /// Fraction of clips with every attribute right.
    pub all_correct: f32,
    /// Mean smoothness.
    pub mean_smoothness: f32,
    /// Mean temporal consistency.
    pub mean_consistency: f32,
    /// Mean per-frame quality.
    pub mean_quality: f32,
    /// Mean faithfulness.
    pub mean_faithfulness: f32,
    /// Mean score.
    pub mean_score: f32,
}

impl VideoReport {
    /// Aggregates judgements; all fields are 0 for an empty slice.
    pub fn from_judgements(js: &[VideoJudgement]) -> VideoReport {
        let n = js.len();
        let frac = |num: usize, den: usize| if den == 0 { 0.0 } else { num as f32 / den as f32 };
        let mean = |f: fn(&VideoJudgement) -> f32| if n == 0 { 0.0 } else { js.iter().map(f).sum::<f32>() / n as f32 };
        let with_motion: Vec<bool> = js.iter().filter_map(|j| j.motion_ok).collect();
        VideoReport {
            n_clips: n,
            colour_acc: frac(js.iter().filter(|j| j.colour_ok).count(), n),
            shape_acc: frac(js.iter().filter(|j| j.shape_ok).count(), n),
            motion_acc: frac(with_motion.iter().filter(|ok| **ok).count(), with_motion.len()),
            all_correct: frac(js.iter().filter(|j| j.faithfulness >= 1.0).count(), n),
            mean_smoothness: mean(|j| j.smoothness),
            mean_consistency: mean(|j| j.consistency),
            mean_quality: mean(|j| j.quality),
            mean_faithfulness: mean(|j| j.faithfulness),
            mean_score: mean(|j| j.score),
        }
    }
}

impl fmt::Display for VideoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<18} {:>8}", "metric", "value")?;
        writeln!(f, "{:<18} {:>8}", "clips", self.n_clips)?;
        let rows = [
            ("colour accuracy", self.colour_acc),
            ("shape accuracy", self.shape_acc),
            ("motion accuracy", self.motion_acc),
            ("all correct", self.all_correct),
            ("smoothness", self.mean_smoothness),
            ("consistency", self.mean_consistency),
            ("quality", self.mean_quality),
            ("faithfulness", self.mean_faithfulness),
            ("score", self.mean_score),
        ];
        for (name, v) in rows {
            writeln!(f, "{name:<18} {v:>8.4}")?;
        }
        Ok(())
    }
}
